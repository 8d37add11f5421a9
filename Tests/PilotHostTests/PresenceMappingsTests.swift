import Foundation
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

/// The registry gets each tunnel socket's mapping as the beacon reports it (0x02), not the
/// socket's local port: at start, for a public identity's own socket, and again when the
/// mapping changes.
final class PresenceMappingsTests: HostProcessTestCase {
    /// A beacon in front of which a NAT stands: it answers every discover with 203.0.113.7 and a
    /// port of its own making per source, and can move a source to a new port (the NAT's
    /// mapping changed) or give every source a new one (the NAT forgot them all).
    final class MappingBeacon: @unchecked Sendable {
        // @unchecked: `socket` is fixed; the rest is guarded by `lock`.
        let socket: LoopbackSocket
        private let lock = NSLock()
        private var ports: [LoopbackEndpoint: UInt16] = [:]
        private var nodes: [LoopbackEndpoint: Set<UInt32>] = [:]
        private var nextPort: UInt16 = 41000
        private var stopped = false
        private let finished = DispatchSemaphore(value: 0)

        init() throws {
            socket = try LoopbackSocket.udp()
            Thread { [self] in run() }.start()
        }

        var port: UInt16 { socket.localEndpoint.port }

        func stop() {
            guard lock.withLock({ () -> Bool in defer { stopped = true }; return !stopped }) else { return }
            finished.wait()
        }

        /// The port handed to the source that discovered as `node` (0: the shared socket's STUN).
        func mappedPort(discoveredAs node: UInt32) -> UInt16? {
            lock.withLock { nodes.first { $0.value.contains(node) }.flatMap { ports[$0.key] } }
        }

        /// Moves the source that discovered as `node` to a new port and tells it at once, as a
        /// beacon answers a discover; returns the port.
        func remap(discoveredAs node: UInt32) throws -> UInt16? {
            let moved: (LoopbackEndpoint, UInt16)? = lock.withLock {
                guard let source = nodes.first(where: { $0.value.contains(node) })?.key else { return nil }
                ports[source] = nextPort
                nextPort += 1
                return (source, ports[source] ?? 0)
            }
            guard let (source, port) = moved else { return nil }
            try socket.send(try BeaconMessage.discoverReply(ip: [203, 0, 113, 7], port: port).encoded(), to: source)
            return port
        }

        /// Every source gets a new port at its next discover.
        func forgetMappings() {
            lock.withLock {
                ports = [:]
                nextPort += 100
            }
        }

        private func run() {
            defer { finished.signal() }
            while !lock.withLock({ stopped }) {
                guard let (bytes, source) = try? socket.receiveDatagram(timeout: 0.05),
                    let message = try? BeaconMessage(decoding: bytes[...])
                else { continue }
                let node: UInt32
                switch message {
                case .discover(let discovered), .discoverExtended(let discovered): node = discovered
                default: continue
                }
                let port = lock.withLock { () -> UInt16 in
                    nodes[source, default: []].insert(node)
                    if let port = ports[source] { return port }
                    ports[source] = nextPort
                    nextPort += 1
                    return nextPort - 1
                }
                if let reply = try? BeaconMessage.discoverReply(ip: [203, 0, 113, 7], port: port).encoded() { try? socket.send(reply, to: source) }
            }
        }
    }

    /// The endpoint the registry hands out for `node` (pilot-rendezvous's own record: the IP the
    /// registration came from, the port it named).
    private func registeredEndpoint(_ node: Int64) -> String? {
        let registry = try? Database(path: directory.path("rendezvous") + "/registry.db")
        return try? registry?.rows("SELECT real_addr FROM node WHERE id = ?", [.integer(node)]).first?.first?.text
    }

    func testTheRegistryGetsEachSocketsMappingAtStartAndAgainWhenItChanges() throws {
        let registryPort = try startRendezvous()
        let beacon = try MappingBeacon()
        defer { beacon.stop() }
        let listen = "127.0.0.1:\(try LoopbackSocket.freePort())"
        let extra = ["--beacon", "127.0.0.1:\(beacon.port)", "--log-level", "info"]
        var (host, runtime) = try startHost(0, registryPort: registryPort, listen: listen, extra: extra)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) { host.output.contains("identities registered") }, host.output)
        let shared = try XCTUnwrap(beacon.mappedPort(discoveredAs: 0), "the shared socket asked the beacon before registering")

        // A private identity is registered with the shared socket's mapping, a public one with
        // its own socket's.
        let alice = try XCTUnwrap(ctl(runtime, ["identity", "create", "alice"])?["data"]?["node_id"]?.integerValue)
        XCTAssertEqual(registeredEndpoint(alice), "127.0.0.1:\(shared)")
        let service = try XCTUnwrap(ctl(runtime, ["identity", "create", "service", "--public"])?["data"]?["node_id"]?.integerValue)
        let own = try XCTUnwrap(beacon.mappedPort(discoveredAs: UInt32(service)), "the public identity's socket asked the beacon")
        XCTAssertNotEqual(own, shared)
        XCTAssertEqual(registeredEndpoint(service), "127.0.0.1:\(own)")

        // The NAT moves the shared socket: the identities behind it are registered again.
        let moved = try XCTUnwrap(try beacon.remap(discoveredAs: 0))
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) { self.registeredEndpoint(alice) == "127.0.0.1:\(moved)" },
            "\(String(describing: registeredEndpoint(alice))) \(host.output.suffix(2000))")
        XCTAssertEqual(registeredEndpoint(service), "127.0.0.1:\(own)", "the public identity is on a socket of its own")
        XCTAssertTrue(host.output.contains("registered again with the socket's mapping"))

        // A restart behind a NAT that forgot its mappings: the first registration carries the
        // new ones (nothing is registered again after it).
        host.stop()
        beacon.forgetMappings()
        (host, runtime) = try startHost(0, registryPort: registryPort, listen: listen, extra: extra, generation: 2)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) { host.output.contains("identities registered") }, host.output)
        let sharedNow = try XCTUnwrap(beacon.mappedPort(discoveredAs: 0))
        let ownNow = try XCTUnwrap(beacon.mappedPort(discoveredAs: UInt32(service)))
        XCTAssertFalse([shared, moved, own].contains(sharedNow) || [shared, moved, own].contains(ownNow))
        XCTAssertEqual(registeredEndpoint(alice), "127.0.0.1:\(sharedNow)")
        XCTAssertEqual(registeredEndpoint(service), "127.0.0.1:\(ownNow)")
        XCTAssertFalse(host.output.contains("registered again with the socket's mapping"), host.output)
    }
}
