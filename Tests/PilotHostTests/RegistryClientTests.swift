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
             "signature": .string(Base64.encode(key.sign("register:127.0.0.1:4000:\(text)")))])
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

    /// Several registries: the client takes the first that answers, moves to the next when the
    /// one in use goes away or holds a request without answering, and says so (`inUse`,
    /// `whenSwitched`); a request asked at the moment of the move is answered by the next.
    func testSeveralRegistriesTheClientMovesOnWhenOneDiesOrGoesSilent() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try TemporaryDirectory(prefix: "pilot-client-failover")
        defer { directory.remove() }
        func startServer(_ name: String) async throws -> (RegistryServer, Int) {
            let server = RegistryServer(
                registry: try Registry(stateDirectory: directory.path(name)), configuration: .init(host: "127.0.0.1", port: 0),
                logger: Logger(label: "test"))
            return (server, try await server.start(on: group).port ?? 0)
        }
        // One that listens and never answers: the kernel accepts the connection for it.
        let silent = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = bind(silent, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        XCTAssertEqual(listen(silent, 16), 0)
        defer { close(silent) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(silent, $0, &length) } }
        let silentPort = Int(UInt16(bigEndian: address.sin_port))
        let deadPort = Int(try LoopbackSocket.freePort())

        let (a, portA) = try await startServer("a")
        let (b, portB) = try await startServer("b")
        let targets = [deadPort, portA, silentPort, portB].map { Endpoint(host: "127.0.0.1", port: UInt16($0)) }
        let client = RegistryClient(targets: targets, group: group, replyTimeout: .seconds(1))
        let moves = NIOLockedValueBox<[Int]>([])
        await client.whenSwitched { target in moves.withLockedValue { $0.append(Int(target.port)) } }

        // Nobody listens on the first: the second answers, and that is no move.
        let key = try Ed25519PrivateKey()
        let first = try await client.send(register(key))
        XCTAssertEqual(first["node_id"], 1)
        var inUse = await client.inUse
        XCTAssertEqual(Int(inUse.port), portA)
        XCTAssertEqual(moves.withLockedValue { $0 }, [])

        // A goes: the silent one takes the connection but never answers; after 1 s, B answers.
        try await a.shutdown()
        let started = Date()
        let reply = try await client.send(RegistryMessage(type: "lookup", ["node_id": 1]))
        XCTAssertEqual(reply.type, "error", "B has never seen node 1: \(reply.json.encodedString())")
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        inUse = await client.inUse
        XCTAssertEqual(Int(inUse.port), portB)
        try await Task.sleep(for: .milliseconds(100))
        XCTAssertEqual(moves.withLockedValue { $0 }.last, portB, "told of the move to B")
        let atB = try await client.send(register(key))
        XCTAssertEqual(atB["node_id"], 1, "registered at B")

        await client.disconnect()
        try await b.shutdown()
        try await group.shutdownGracefully()
    }

    /// pilot-rendezvous over TLS with a self-signed certificate: the client that pins its
    /// SHA-256 registers; a wrong pin, no pin (no trust root vouches for it) and plain TCP fail.
    func testTLSWithAPinnedCertificateConnectsAndAWrongPinDoesNot() async throws {
        let directory = try TemporaryDirectory(prefix: "pilot-client-tls")
        defer { directory.remove() }
        let certificate = directory.path("cert.pem")
        let made = ChildProcess.run(
            "/usr/bin/env",
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", directory.path("key.pem"),
             "-out", certificate, "-days", "2", "-nodes", "-subj", "/CN=pilot-rendezvous"])
        guard made.status == 0 else { throw XCTSkip("openssl cannot make a test certificate: \(made.output.suffix(300))") }
        let der = ChildProcess.run("/usr/bin/env", ["sh", "-c", "openssl x509 -in '\(certificate)' -outform DER | sha256sum"])
        let fingerprint = try RegistryServer.fingerprint(ofCertificateAt: certificate)
        XCTAssertEqual(fingerprint, String(der.stdout.prefix(64)), "the fingerprint official daemons pin")

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = RegistryServer(
            registry: try Registry(stateDirectory: directory.path("state")),
            configuration: .init(host: "127.0.0.1", port: 0, tlsCertificatePath: certificate, tlsKeyPath: directory.path("key.pem")),
            logger: Logger(label: "test"))
        let port = try await server.start(on: group).port ?? 0
        // The pin as pilot-host reads it from its config.
        func pinning(_ fingerprint: String) throws -> RegistryClient.TLS? {
            var settings = HostConfiguration()
            try settings.set("registry-tls", "yes")
            try settings.set("registry-fingerprint", fingerprint)
            return try settings.registryTLSSettings()
        }
        var pin = try pinning(fingerprint)
        let pinned = RegistryClient(host: "127.0.0.1", port: port, group: group, tls: pin)
        let reply = try await pinned.send(register(try Ed25519PrivateKey()))
        XCTAssertEqual(reply.type, "register_ok")
        await pinned.disconnect()

        pin = try pinning(String(repeating: "ab:", count: 31) + "ab")
        for (client, why) in [
            (RegistryClient(host: "127.0.0.1", port: port, group: group, tls: pin), "a wrong pin"),
            (RegistryClient(host: "127.0.0.1", port: port, group: group, tls: RegistryClient.TLS()), "no pin, self-signed"),
        ] {
            do {
                _ = try await client.send(register(try Ed25519PrivateKey()))
                XCTFail("\(why): connected")
            } catch {}
            await client.disconnect()
        }
        try await server.shutdown()
        try await group.shutdownGracefully()
    }

    func testABatchRefusedWholeSaysWhy() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory = try TemporaryDirectory(prefix: "pilot-client-refused")
        defer { directory.remove() }
        var configuration = Registry.Configuration()
        configuration.hostCredential = "operator-host"
        let server = RegistryServer(
            registry: try Registry(stateDirectory: directory.path("state"), configuration: configuration),
            configuration: .init(host: "127.0.0.1", port: 0), logger: Logger(label: "test"))
        let port = try await server.start(on: group).port ?? 0
        let client = RegistryClient(host: "127.0.0.1", port: port, group: group, credential: "stale-credential")
        do {
            _ = try await client.send(batch: [register(try Ed25519PrivateKey())])
            XCTFail("a wrong credential was taken")
        } catch {
            XCTAssertEqual("\(error)", "registry refused the batch: batch: host credential not recognised")
        }
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
