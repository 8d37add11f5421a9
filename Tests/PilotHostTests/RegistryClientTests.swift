import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import PilotCrypto
import PilotHost
import PilotRendezvous
import PilotTestSupport
import PilotWire
import XCTest

final class RegistryClientTests: XCTestCase {
    private func register(_ key: Ed25519PrivateKey) -> RegistryMessage {
        let text = key.publicKey.base64
        return RegistryMessage(
            type: "register",
            ["listen_addr": "127.0.0.1:4000", "public_key": .string(text),
             "signature": .string(Sodium.base64(key.sign("register:127.0.0.1:4000:\(text)")))])
    }

    func testBatchesAgainstPilotRendezvousAndSurvivesItsRestart() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try TemporaryDirectory(prefix: "pilot-client")
        defer { directory.remove() }
        let port = Int(try LoopbackSocket.freePort())
        func startServer() async throws -> RegistryServer {
            var configuration = Registry.Configuration()
            // 1500 new keys at once: more than strangers may bring, fine for the operator's host.
            configuration.hostCredential = "operator-host"
            let server = RegistryServer(
                registry: try Registry(stateDirectory: directory.path("state"), configuration: configuration),
                configuration: .init(host: "127.0.0.1", port: port), logger: Logger(label: "test"))
            _ = try await server.start(on: group)
            return server
        }
        var server = try await startServer()
        let client = RegistryClient(host: "127.0.0.1", port: port, group: group, credential: "operator-host")

        let keys = try (0..<1500).map { _ in try Ed25519PrivateKey() }
        let replies = try await client.send(batch: keys.map(register))
        XCTAssertEqual(replies.count, 1500)
        XCTAssertEqual(replies.compactMap { $0["node_id"]?.integerValue }, (1...1500).map(Int64.init))
        let batched = await client.supportsBatch
        XCTAssertEqual(batched, true)

        // The registry restarts: the next request re-dials and the ids are still there.
        try await server.shutdown()
        server = try await startServer()
        let again = try await client.send(register(keys[41]))
        XCTAssertEqual(again["node_id"], 42, again.json.encodedString())
        await client.disconnect()
        try await server.shutdown()
        try await group.shutdownGracefully()
    }

    func testFallsBackToSingleRequestsWhenTheRegistryHasNoBatch() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let listener = try LoopbackSocket.tcpListener()
        let official = Thread {
            // Stands in for a registry without our extension: "unknown type" for batch.
            guard let connection = try? listener.accept(timeout: 10) else { return }
            var decoder = RegistryFrameDecoder()
            while let frame = try? connection.readFrame(timeout: 10) {
                decoder.append(frame)
                guard case .message(let request)? = try? decoder.next() else { return }
                let reply =
                    request.type == "batch"
                    ? RegistryMessage(type: "error", ["error": "unknown type"])
                    : RegistryMessage(type: "\(request.type)_ok", ["echo": request["node_id"] ?? .null])
                try? connection.write(RegistryFrame.encode(reply))
            }
        }
        official.start()
        let client = RegistryClient(host: "127.0.0.1", port: Int(listener.localEndpoint.port), group: group)
        let requests = (1...5).map { RegistryMessage(type: "heartbeat", ["node_id": .integer(Int64($0))]) }
        let replies = try await client.send(batch: requests)
        XCTAssertEqual(replies.map(\.type), Array(repeating: "heartbeat_ok", count: 5))
        XCTAssertEqual(replies.compactMap { $0["echo"]?.integerValue }, [1, 2, 3, 4, 5])
        let batched = await client.supportsBatch
        XCTAssertEqual(batched, false)
        await client.disconnect()
        try await group.shutdownGracefully()
    }

    /// Requests sent at once on a client with no connection yet share the one it dials: each
    /// used to dial its own, and all but the last connection were left open, unused.
    func testConcurrentRequestsShareOneConnection() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let listener = try LoopbackSocket.tcpListener()
        let accepted = NIOLockedValueBox(0)
        let stop = NIOLockedValueBox(false)
        let server = Thread {
            while !stop.withLockedValue({ $0 }) {
                guard let connection = try? listener.accept(timeout: 0.2) else { continue }
                accepted.withLockedValue { $0 += 1 }
                Thread {
                    var decoder = RegistryFrameDecoder()
                    while let frame = try? connection.readFrame(timeout: 10) {
                        decoder.append(frame)
                        while case .message(let request)? = try? decoder.next() {
                            try? connection.write(RegistryFrame.encode(RegistryMessage(type: "\(request.type)_ok", ["echo": request["node_id"] ?? .null])))
                        }
                    }
                }.start()
            }
        }
        server.start()
        defer { stop.withLockedValue { $0 = true } }
        let client = RegistryClient(host: "127.0.0.1", port: Int(listener.localEndpoint.port), group: group)
        let echoes = try await withThrowingTaskGroup(of: Int64?.self) { tasks in
            for node in 1...20 { tasks.addTask { try await client.send(RegistryMessage(type: "heartbeat", ["node_id": .integer(Int64(node))]))["echo"]?.integerValue } }
            return try await tasks.reduce(into: []) { $0.append($1) }
        }
        XCTAssertEqual(Set(echoes.compactMap { $0 }), Set(1...20))
        XCTAssertEqual(accepted.withLockedValue { $0 }, 1, "one connection for all twenty requests")
        await client.disconnect()
        try await group.shutdownGracefully()
    }
}
