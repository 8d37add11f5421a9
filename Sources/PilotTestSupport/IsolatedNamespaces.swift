public import Foundation

/// Network namespaces that each reach this namespace over a veth pair but not one another: a
/// machine split into hosts behind firewalls that let them reach a rendezvous server (at
/// `gateway` addresses, all in this namespace) and nothing else. Needs root and `ip`; removed
/// by `remove()` or on deinit.
public final class IsolatedNamespaces: @unchecked Sendable {
    // @unchecked: immutable after init; `remove` is idempotent.

    /// One namespace: its name, its own address and this namespace's address on its link.
    public struct Side: Sendable {
        public let name: String
        public let address: String
        public let gateway: String
    }

    /// Why namespaces cannot be made here (not root, no `ip`, no netns support).
    public struct Unavailable: Error, CustomStringConvertible {
        public let description: String
    }

    public let sides: [Side]
    private var removed = false
    /// What /proc/sys/net/ipv4/ip_forward said before `connect()` turned it on (restored by
    /// `remove`); nil while it was not touched.
    private var forwardingBefore: String?
    /// The `ip rule`s `blackhole(true)` added (removed again by `blackhole(false)` and `remove`).
    private var dropRules: [[String]] = []

    /// Makes `count` namespaces; side i has 10.231.<i+1>.2 and this namespace 10.231.<i+1>.1 on
    /// their link, with a route from each side to every gateway and to nothing else.
    public init(count: Int) throws {
        guard getuid() == 0 else { throw Unavailable(description: "network namespaces need root (uid \(getuid()))") }
        guard FileManager.default.isExecutableFile(atPath: Self.ip) else { throw Unavailable(description: "no \(Self.ip)") }
        let tag = "\(getpid() % 100_000)"
        sides = (1...count).map { Side(name: "pilot\(tag)n\($0)", address: "10.231.\($0).2", gateway: "10.231.\($0).1") }
        do {
            for (index, side) in sides.enumerated() {
                let outer = "pv\(tag)o\(index + 1)", inner = "pv\(tag)i\(index + 1)"
                try Self.run(["netns", "add", side.name])
                try Self.run(["link", "add", outer, "type", "veth", "peer", "name", inner])
                try Self.run(["link", "set", inner, "netns", side.name])
                try Self.run(["addr", "add", "\(side.gateway)/24", "dev", outer])
                try Self.run(["link", "set", outer, "up"])
                try Self.run(["-n", side.name, "addr", "add", "\(side.address)/24", "dev", inner])
                try Self.run(["-n", side.name, "link", "set", inner, "up"])
                try Self.run(["-n", side.name, "link", "set", "lo", "up"])
            }
            for side in sides {
                for other in sides where other.name != side.name {
                    try Self.run(["-n", side.name, "route", "add", "\(other.gateway)/32", "via", side.gateway])
                }
            }
        } catch {
            remove()
            throw error
        }
    }

    deinit { remove() }

    /// `arguments` run inside namespace `side`: the command line for a child process.
    public func command(in side: Side, _ executable: String, _ arguments: [String]) -> (executable: URL, arguments: [String]) {
        (URL(fileURLWithPath: Self.ip), ["netns", "exec", side.name, executable] + arguments)
    }

    /// Lets the sides reach one another through this namespace: a route on each side to every
    /// other side's address, and IPv4 forwarding on here (as it was again after `remove`).
    public func connect() throws {
        let forwarding = "/proc/sys/net/ipv4/ip_forward"
        if forwardingBefore == nil {
            forwardingBefore = (try? String(contentsOfFile: forwarding, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "0"
        }
        do { try "1\n".write(toFile: forwarding, atomically: false, encoding: .utf8) } catch {
            throw Unavailable(description: "cannot turn on IPv4 forwarding: \(error)")
        }
        for side in sides {
            for other in sides where other.name != side.name {
                try Self.run(["-n", side.name, "route", "replace", "\(other.address)/32", "via", side.gateway])
            }
        }
    }

    /// Drops, silently, what the sides send one another through this namespace (as a NAT that
    /// forgot its mapping would), or lets it through again; what they send to this namespace's
    /// own addresses (the rendezvous) still goes.
    public func blackhole(_ on: Bool) throws {
        if on {
            for side in sides {
                for other in sides where other.name != side.name {
                    let rule = ["from", "\(side.address)/32", "to", "\(other.address)/32", "blackhole"]
                    try Self.run(["rule", "add"] + rule)
                    dropRules.append(rule)
                }
            }
        } else {
            for rule in dropRules { _ = ChildProcess.run(Self.ip, ["rule", "del"] + rule, timeout: 10) }
            dropRules = []
        }
    }

    /// Deletes the namespaces (their veth pairs go with them), and puts back what `connect` and
    /// `blackhole` changed here.
    public func remove() {
        guard !removed else { return }
        removed = true
        try? blackhole(false)
        for side in sides { _ = ChildProcess.run(Self.ip, ["netns", "delete", side.name], timeout: 10) }
        if let forwardingBefore {
            try? (forwardingBefore + "\n").write(toFile: "/proc/sys/net/ipv4/ip_forward", atomically: false, encoding: .utf8)
        }
    }

    private static let ip = "/usr/sbin/ip"

    private static func run(_ arguments: [String]) throws {
        let result = ChildProcess.run(ip, arguments, timeout: 10)
        guard result.status == 0 else {
            throw Unavailable(description: "ip \(arguments.joined(separator: " ")): \(result.output.prefix(300))")
        }
    }
}
