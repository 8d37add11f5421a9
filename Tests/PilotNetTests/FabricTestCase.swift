import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PilotCrypto
import PilotNet
import PilotTestSupport
import PilotWire
import XCTest

/// What the fabric tests share: a directory standing in for the registry, identities, and
/// fabrics on loopback set up as a host sets them up.
class FabricTestCase: XCTestCase {
    /// Ed25519 keys by node, as a registry would answer.
    final class Directory: PeerDirectory {
        private let keys = NIOLockedValueBox<[UInt32: Ed25519PublicKey]>([:])
        func add(_ node: UInt32, _ key: Ed25519PublicKey) { keys.withLockedValue { $0[node] = key } }
        func signingKey(of node: UInt32) async throws -> Ed25519PublicKey? { keys.withLockedValue { $0[node] } }
    }

    final class Inbox: Sendable {
        private let packets = NIOLockedValueBox<[Packet]>([])
        func append(_ packet: Packet) { packets.withLockedValue { $0.append(packet) } }
        var all: [Packet] { packets.withLockedValue { $0 } }
    }

    func identity(_ node: UInt32, _ directory: Directory) throws -> TunnelIdentity {
        let key = try Ed25519PrivateKey()
        directory.add(node, key.publicKey)
        return try TunnelIdentity(address: Address(node: node), signingKey: key)
    }

    /// Two fabrics on loopback (two hosts), each with its shared socket bound.
    func twoHosts(
        _ group: any EventLoopGroup, _ directory: Directory, busyPoll: TimeAmount = .zero, echoBudget: Int = Fabric.defaultEchoBudget
    ) async throws -> (Fabric, Fabric, socketB: (socket: Int, address: SocketAddress)) {
        let hostA = Fabric(group: group, directory: directory, busyPoll: busyPoll, logger: Logger(label: "a"))
        let hostB = Fabric(group: group, directory: directory, busyPoll: busyPoll, echoBudget: echoBudget, logger: Logger(label: "b"))
        for host in [hostA, hostB] { try await Self.serveEchoAndHandshake(on: host) }
        _ = try await hostA.bind(host: "127.0.0.1", port: 0)
        return (hostA, hostB, try await hostB.bind(host: "127.0.0.1", port: 0))
    }

    /// Node 1 on one fabric and node 2 (with a socket of its own) on another, trusting each other.
    func trustingPair(
        _ group: any EventLoopGroup, echoBudget: Int = Fabric.defaultEchoBudget
    ) async throws -> (Fabric, Fabric, b: TunnelIdentity, socketB: (socket: Int, address: SocketAddress)) {
        let directory = Directory()
        let (hostA, hostB, socketB) = try await twoHosts(group, directory, echoBudget: echoBudget)
        let a = try identity(1, directory), b = try identity(2, directory)
        try await hostA.add(a) { _ in }
        try await hostB.add(b, ownSocket: socketB.socket) { _ in }
        try await hostA.setTrusted(local: 1, remote: 2, true)
        try await hostB.setTrusted(local: 2, remote: 1, true)
        return (hostA, hostB, b, socketB)
    }

    /// A trusting pair with a stream from node 1 to node 2's port 9000: both ends of it.
    func acceptedStream(_ group: any EventLoopGroup) async throws -> (Fabric, Fabric, stream: StreamHandle, peer: StreamHandle) {
        let (hostA, hostB, b, socketB) = try await trustingPair(group)
        let accepted = AsyncStream<StreamHandle>.makeStream()
        try await hostB.listen(node: 2, port: 9000) { accepted.continuation.yield($0) }
        let stream = try await hostA.dial(from: 1, to: b.address, port: 9000, endpoint: socketB.address)
        var handles = accepted.stream.makeAsyncIterator()
        let next = await handles.next()
        return (hostA, hostB, stream, try XCTUnwrap(next))
    }

    /// As a host sets a fabric up: echo on `Port.echo`, the handshake's port open to strangers.
    static func serveEchoAndHandshake(on fabric: Fabric) async throws {
        try await fabric.echo(port: Port.echo)
        try await fabric.setOpenPorts([Port.handshake])
    }

    static func roundTrip(_ stream: StreamHandle, _ message: [UInt8]) async throws -> [UInt8] {
        try await stream.write(message)
        var echoed: [UInt8] = []
        for await event in stream.events {
            if case .data(let bytes) = event { echoed += bytes }
            if echoed.count >= message.count { break }
        }
        try await stream.close()
        return echoed
    }

    /// A flag one task sets and another reads.
    final class ManagedAtomicFlag: Sendable {
        private let value = NIOLockedValueBox(false)
        func set() { value.withLockedValue { $0 = true } }
        var isSet: Bool { value.withLockedValue { $0 } }
    }

    static func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    /// Each open descriptor as "number=what it is" (a socket, a pipe, an epoll set), for messages.
    static func descriptorTargets() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).sorted().map { fd in
            fd + "=" + ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd)) ?? "?")
        }
    }

    /// The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets), from
    /// /proc/net/snmp; nil if it cannot be read.
    static func udpReceiveBufferErrors() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/net/snmp", encoding: .utf8) else { return nil }
        let rows = text.split(separator: "\n").filter { $0.hasPrefix("Udp: ") }.map { $0.split(separator: " ") }
        guard rows.count >= 2, let column = rows[0].firstIndex(of: "RcvbufErrors"), column < rows[1].count else { return nil }
        return Int(rows[1][column])
    }
}
