import Logging
import NIOCore
import NIOPosix
import PilotCrypto
import PilotNet
import PilotServices
import PilotWire
import XCTest

/// The echo service on a real fabric: two identities of one fabric on loopback, one dialing the
/// other's echo port.
final class EchoServiceTests: XCTestCase {
    /// No registry: the identities of one fabric never exchange keys.
    struct NoDirectory: PeerDirectory {
        func signingKey(of node: UInt32) async throws -> Ed25519PublicKey? { nil }
    }

    private func fabric(_ group: any EventLoopGroup) async throws -> (Fabric, client: TunnelIdentity, server: TunnelIdentity) {
        let fabric = Fabric(group: group, directory: NoDirectory(), logger: Logger(label: "echo"))
        _ = try await fabric.bind(host: "127.0.0.1", port: 0)
        let client = try TunnelIdentity(address: Address(node: 20), signingKey: try Ed25519PrivateKey())
        let server = try TunnelIdentity(address: Address(node: 21), signingKey: try Ed25519PrivateKey())
        try await fabric.add(client) { _ in }
        try await fabric.add(server) { _ in }
        try await fabric.setTrusted(local: 21, remote: 20, true)
        return (fabric, client, server)
    }

    func testServesPortSeven() {
        XCTAssertEqual(EchoService.port, 7)
        XCTAssertEqual(EchoService.port, Port.echo)
    }

    func testEveryByteComesBackAndTheStreamClosesWhenThePeerFinishes() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let (fabric, client, server) = try await fabric(group)
        try await EchoService().attach(to: fabric)
        let message = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let stream = try await fabric.dial(from: client.node, to: server.address, port: EchoService.port)
        try await stream.write(message)
        let echoed = await stream.readMessage(limit: message.count, timeout: .seconds(30)) { _ in false }
        XCTAssertEqual(echoed.count, message.count)
        XCTAssertTrue(echoed == message)
        // We finish: the echo closes its end too (and waits out TIME_WAIT, as 1.18 does).
        try await stream.close()
        let deadline = ContinuousClock.now + .seconds(5)
        var served = try await fabric.connections(of: server.node)
        while served.contains(where: { $0.state == "ESTABLISHED" }) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
            served = try await fabric.connections(of: server.node)
        }
        XCTAssertEqual(served.map(\.state), ["TIME_WAIT"], "the echo's end is still open")
        await fabric.shutdown()
        try await group.shutdownGracefully()
    }

    func testIdentitiesAddedAfterAttachingAnswerToo() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let fabric = Fabric(group: group, directory: NoDirectory(), logger: Logger(label: "echo"))
        try await EchoService().attach(to: fabric)
        let late = try TunnelIdentity(address: Address(node: 30), signingKey: try Ed25519PrivateKey())
        try await fabric.add(late) { _ in }
        let listening = try await fabric.isListening(node: late.node, port: EchoService.port)
        XCTAssertTrue(listening)
        await fabric.shutdown()
        try await group.shutdownGracefully()
    }

    func testWithoutTheServiceThePortIsClosed() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let (fabric, client, server) = try await fabric(group)
        let listening = try await fabric.isListening(node: server.node, port: EchoService.port)
        XCTAssertFalse(listening)
        do {
            _ = try await fabric.dial(from: client.node, to: server.address, port: EchoService.port)
            XCTFail("a stream to a port nobody serves was accepted")
        } catch {}
        await fabric.shutdown()
        try await group.shutdownGracefully()
    }
}
