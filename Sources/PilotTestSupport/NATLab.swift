public import Foundation
import Synchronization

/// A small internet in network namespaces, for NAT traversal tests (issue 15): a "wan" namespace
/// holding the rendezvous at 203.0.113.1 (TEST-NET-3) on a bridge, and routers that each join
/// that bridge with a WAN address of their own (203.0.113.2, .3, ...) and serve a LAN of their
/// own (192.168.1.0/24, .2.0/24, ...) with one host in it (at .2), which reaches everything else
/// only through its router's NAT.
///
/// A router forwards IPv4, masquerades what leaves by its WAN side (as `Kind` says) and forwards
/// from WAN to LAN only what belongs to a connection its LAN opened (conntrack's established or
/// related), except a full-cone router (see `Kind.fullCone`); what arrives unasked for the router
/// itself is dropped silently, as most home routers do.
///
/// Needs root, `ip`, `nft` and `conntrack` (`startCapture` also `tcpdump`); names carry this
/// process's id and a counter, so labs of several processes and several labs of one process never
/// meet. Every command is bounded in time; everything is removed by `remove()`, on deinit, and
/// when `init` fails halfway (and what a killed process left is removed by the next lab).
public final class NATLab: @unchecked Sendable {
    // @unchecked: the namespaces and addresses are fixed at init; `removed` is a Mutex.

    /// How a router maps a LAN host's UDP flows to its WAN address and which inbound datagrams
    /// it lets through.
    public enum Kind: String, Sendable, CaseIterable, CustomStringConvertible {
        /// nftables `masquerade`: a flow keeps the host's source port while no other flow holds it
        /// (so every destination sees the same WAN port: endpoint-independent mapping), and only
        /// the address and port a flow was sent to may answer on it (endpoint-dependent filtering,
        /// what RFC 4787 calls address-and-port-dependent).
        case portPreserving = "port-preserving"
        /// `portPreserving` that also forwards every datagram reaching its WAN address to the host,
        /// at the same port: endpoint-independent filtering, a "full cone" NAT.
        ///
        /// Needed for a direct path between a fully-random NAT and a port-preserving one: the
        /// fully-random side's flow to the peer leaves from a WAN port nobody has seen (not the
        /// one the beacon saw), so the peer's punches go to the wrong port and its own NAT drops
        /// the fully-random side's datagrams, which come from a port it never sent to. With
        /// Linux conntrack on both sides nothing can open that path; when one side accepts any
        /// sender, the fully-random side's datagram gets in and the answer goes back to the port
        /// it came from, which the fully-random NAT does know.
        case fullCone = "full cone"
        /// `masquerade fully-random`: every flow (each destination address and port) gets a
        /// random WAN port, a "symmetric" NAT; endpoint-dependent filtering as above.
        case fullyRandom = "fully random"

        public var description: String { rawValue }
    }

    /// A namespace and its address.
    public struct Namespace: Sendable {
        public let name: String
        public let address: String
    }

    /// A router: its namespace, its two addresses, how it translates, and the host behind it.
    public struct Router: Sendable {
        public let namespace: String
        public let wanAddress: String
        public let lanAddress: String
        public let kind: Kind
        public let host: Namespace
    }

    /// Why the lab cannot be built here (not root, a tool missing, a command that failed).
    public struct Unavailable: Error, CustomStringConvertible {
        public let description: String
    }

    /// The wan namespace: the rendezvous' address, on the bridge every router joins.
    public let wan: Namespace
    public let routers: [Router]

    private let removed = Mutex(false)

    private static let made = Mutex(0)

    /// Builds the wan namespace and one router (with its host) per kind, in that order:
    /// `routers[i]` has WAN 203.0.113.(i+2) and LAN 192.168.(i+1).1, its host 192.168.(i+1).2.
    public init(_ kinds: [Kind]) throws {
        guard getuid() == 0 else { throw Unavailable(description: "the NAT lab needs root (uid \(getuid()))") }
        for tool in [Self.ip, Self.nft, Self.conntrack] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw Unavailable(description: "the NAT lab needs \(tool) (scripts/install-deps installs it)")
        }
        let number = Self.made.withLock { count in
            count += 1
            return count
        }
        let prefix = "natlab\(getpid())-\(number)"
        wan = Namespace(name: "\(prefix)-wan", address: "203.0.113.1")
        routers = kinds.enumerated().map { index, kind in
            let n = index + 1
            return Router(
                namespace: "\(prefix)-r\(n)", wanAddress: "203.0.113.\(n + 1)", lanAddress: "192.168.\(n).1", kind: kind,
                host: Namespace(name: "\(prefix)-h\(n)", address: "192.168.\(n).2"))
        }
        do {
            try build()
        } catch {
            remove()
            throw error
        }
    }

    deinit { remove() }

    /// Deletes the namespaces of labs whose process is gone (killed before it could remove them).
    private static func removeLeftovers() {
        for line in ChildProcess.run(ip, ["netns", "list"], timeout: 10).stdout.split(separator: "\n") {
            guard let name = line.split(separator: " ").first, name.hasPrefix("natlab"),
                let pid = Int32(name.dropFirst("natlab".count).prefix(while: \.isNumber)), kill(pid, 0) != 0, errno == ESRCH
            else { continue }
            _ = ChildProcess.run(ip, ["netns", "delete", String(name)], timeout: 10)
        }
    }

    private func build() throws {
        Self.removeLeftovers()
        // The interfaces are made inside their namespaces, so their names never meet another lab's.
        for name in [wan.name] + routers.flatMap({ [$0.namespace, $0.host.name] }) {
            _ = ChildProcess.run(Self.ip, ["netns", "delete", name], timeout: 10)  // a leftover of a dead process with our id
            try Self.run(Self.ip, ["netns", "add", name])
            try Self.run(Self.ip, ["-n", name, "link", "set", "lo", "up"])
        }
        try Self.run(Self.ip, ["-n", wan.name, "link", "add", "name", "wan", "type", "bridge"])
        try Self.run(Self.ip, ["-n", wan.name, "addr", "add", "\(wan.address)/24", "dev", "wan"])
        try Self.run(Self.ip, ["-n", wan.name, "link", "set", "wan", "up"])
        for (index, router) in routers.enumerated() {
            let port = "r\(index + 1)"
            try Self.run(Self.ip, ["link", "add", "wan", "netns", router.namespace, "type", "veth", "peer", "name", port, "netns", wan.name])
            try Self.run(Self.ip, ["-n", wan.name, "link", "set", port, "master", "wan", "up"])
            try Self.run(Self.ip, ["-n", router.namespace, "addr", "add", "\(router.wanAddress)/24", "dev", "wan"])
            try Self.run(Self.ip, ["-n", router.namespace, "link", "set", "wan", "up"])
            try Self.run(Self.ip, ["link", "add", "lan", "netns", router.namespace, "type", "veth", "peer", "name", "eth0", "netns", router.host.name])
            try Self.run(Self.ip, ["-n", router.namespace, "addr", "add", "\(router.lanAddress)/24", "dev", "lan"])
            try Self.run(Self.ip, ["-n", router.namespace, "link", "set", "lan", "up"])
            try Self.run(Self.ip, ["-n", router.host.name, "addr", "add", "\(router.host.address)/24", "dev", "eth0"])
            try Self.run(Self.ip, ["-n", router.host.name, "link", "set", "eth0", "up"])
            try Self.run(Self.ip, ["-n", router.host.name, "route", "add", "default", "via", router.lanAddress])
            try inside(router.namespace, Self.sysctl, ["-qw", "net.ipv4.ip_forward=1"])
            try loadRules(router, portRange: nil)
        }
    }

    /// `arguments` run inside namespace `namespace`: the command line for a child process.
    public func command(in namespace: String, _ executable: String, _ arguments: [String]) -> (executable: URL, arguments: [String]) {
        (URL(fileURLWithPath: Self.ip), ["netns", "exec", namespace, executable] + arguments)
    }

    /// Forgets every connection `router` tracks, and with them its NAT mappings: the next
    /// datagram of each flow is mapped anew, and what arrives for an old mapping is dropped.
    public func flushConntrack(_ router: Router) throws {
        try inside(router.namespace, Self.conntrack, ["-F"])
    }

    /// What `router` tracks of UDP now (`conntrack -L -p udp`), one flow a line.
    public func udpFlows(_ router: Router) -> String {
        let listing = ChildProcess.run(Self.ip, ["netns", "exec", router.namespace, Self.conntrack, "-L", "-p", "udp"], timeout: 10)
        return listing.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Masquerades `router`'s UDP into `range` from now on (nil: any port). Flows it already
    /// tracks keep their mappings until `flushConntrack`.
    public func setPortRange(_ router: Router, _ range: ClosedRange<Int>?) throws {
        try loadRules(router, portRange: range)
    }

    /// Sets `router`'s conntrack timeouts for UDP: `unreplied` seconds for a flow that has had
    /// no answer (`nf_conntrack_udp_timeout`), `stream` for one that has
    /// (`nf_conntrack_udp_timeout_stream`). Kernel defaults: 30 and 120. A flow gets the value
    /// in force when its last datagram passed.
    public func setUDPTimeouts(_ router: Router, unreplied: Int, stream: Int) throws {
        try inside(
            router.namespace, Self.sysctl,
            ["-qw", "net.netfilter.nf_conntrack_udp_timeout=\(unreplied)", "net.netfilter.nf_conntrack_udp_timeout_stream=\(stream)"])
    }

    /// Starts capturing every UDP datagram on the wan bridge (what the routers and the rendezvous
    /// send one another, after translation) into `file` (pcap), its first 96 bytes (the headers
    /// and a frame's type); stop the process to finish it.
    public func startCapture(to file: URL, logDirectory: URL) throws -> ChildProcess {
        guard FileManager.default.isExecutableFile(atPath: Self.tcpdump) else {
            throw Unavailable(description: "no \(Self.tcpdump) for the capture (scripts/install-deps installs it)")
        }
        let (executable, arguments) = command(in: wan.name, Self.tcpdump, ["-i", "wan", "-n", "-U", "-s", "96", "-w", file.path, "udp"])
        let capture = try ChildProcess(name: "tcpdump", executable: executable, arguments: arguments, logDirectory: logDirectory)
        guard ChildProcess.waitUntil(timeout: 10, { capture.output.contains("listening on") }) else {
            capture.stop()
            throw Unavailable(description: "tcpdump did not start: \(capture.output.suffix(300))")
        }
        return capture
    }

    /// Deletes every namespace of the lab (their interfaces and rules go with them). Processes
    /// still running inside keep their namespace alive until they end: stop them first.
    public func remove() {
        let first = removed.withLock { removed in
            defer { removed = true }
            return !removed
        }
        guard first else { return }
        for name in routers.flatMap({ [$0.host.name, $0.namespace] }) + [wan.name] {
            _ = ChildProcess.run(Self.ip, ["netns", "delete", name], timeout: 10)
        }
    }

    /// A rebinding, as a NAT that restarts does it: `router` masquerades UDP into `range` and
    /// forgets every flow, in one command run (two would leave a loaded machine's traffic
    /// between them for a while).
    public func rebind(_ router: Router, to range: ClosedRange<Int>) throws {
        try loadRules(router, portRange: range, thenFlush: true)
    }

    /// Replaces `router`'s ruleset in one nft transaction, and with `thenFlush` empties its
    /// conntrack table in the same command run.
    private func loadRules(_ router: Router, portRange: ClosedRange<Int>?, thenFlush: Bool = false) throws {
        let random = router.kind == .fullyRandom ? " fully-random" : ""
        let ports = portRange.map { " to :\($0.lowerBound)-\($0.upperBound)" } ?? ""
        let fullCone = router.kind == .fullCone
        let rules = """
            flush ruleset
            table ip lab {
                chain postrouting {
                    type nat hook postrouting priority srcnat; policy accept;
                    oifname "wan" meta l4proto udp masquerade\(ports)\(random)
                    oifname "wan" masquerade\(random)
                }
                chain prerouting {
                    type nat hook prerouting priority dstnat; policy accept;
                    \(fullCone ? "iifname \"wan\" meta l4proto udp dnat to \(router.host.address)" : "")
                }
                chain forward {
                    type filter hook forward priority filter; policy drop;
                    ct state established,related accept
                    iifname "lan" oifname "wan" accept
                    \(fullCone ? "iifname \"wan\" oifname \"lan\" meta l4proto udp ct status dnat accept" : "")
                }
                chain input {
                    type filter hook input priority filter; policy accept;
                    iifname "wan" ct state new drop
                }
            }

            """
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("\(router.namespace).nft")
        try rules.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        if thenFlush {
            try inside(router.namespace, "/bin/sh", ["-c", "\(Self.nft) -f \(file.path) && \(Self.conntrack) -F"])
        } else {
            try inside(router.namespace, Self.nft, ["-f", file.path])
        }
    }

    private func inside(_ namespace: String, _ executable: String, _ arguments: [String]) throws {
        try Self.run(Self.ip, ["netns", "exec", namespace, executable] + arguments)
    }

    private static let ip = "/usr/sbin/ip"
    private static let nft = "/usr/sbin/nft"
    private static let conntrack = "/usr/sbin/conntrack"
    private static let sysctl = "/usr/sbin/sysctl"
    private static let tcpdump = "/usr/bin/tcpdump"

    private static func run(_ executable: String, _ arguments: [String]) throws {
        let result = ChildProcess.run(executable, arguments, timeout: 10)
        guard result.status == 0 else {
            throw Unavailable(description: "\(executable) \(arguments.joined(separator: " ")): exit \(result.status): \(result.output.prefix(300))")
        }
    }
}
