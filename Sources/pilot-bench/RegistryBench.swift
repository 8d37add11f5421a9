import Foundation
import PilotCrypto
import PilotWire

/// Registry figures against real `pilot-rendezvous` processes (the one built beside this
/// binary): registrations per second (one request per node, as official daemons send them, and
/// batched, as pilot-host sends them), lookups and heartbeats per second with every node
/// registered, and the servers' resident memory at that size. With `database` (a
/// `postgres://` URL), the same again with the state in PostgreSQL, after SQLite's; with
/// `instances` 2 as well, on two instances sharing that database: the connections are spread
/// over both, every lookup asks the instance that did not register the node, and the time
/// until one instance sees what the other registered is printed.
struct RegistryBench {
    let nodes: Int
    let connections: Int
    var database: String?
    var instances = 1

    func run() {
        do {
            try measure(database: nil, instances: 1)
            if let database {
                try measure(database: database, instances: 1)
                if instances > 1 { try measure(database: database, instances: instances) }
            }
        } catch {
            print("pilot-bench registry: \(error)")
            exit(1)
        }
    }

    private func measure(database: String?, instances: Int) throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("pilot-rendezvous")
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("pilot-bench-\(getpid())")
        defer { try? FileManager.default.removeItem(at: state) }
        var servers: [Process] = []
        defer {
            for server in servers { server.terminate() }
            for server in servers { server.waitUntilExit() }
        }
        var ports: [UInt16] = []
        for instance in 0..<instances {
            let server = Process()
            server.executableURL = binary
            server.arguments = ["--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", "--state-dir", state.path + "/\(instance)",
                "--log-level", "warning", "--new-keys-per-second", "1000000", "--all-new-keys-per-second", "1000000",
                "--connection-requests-per-second", "1000000"]
                + (database.map { ["--database", $0] } ?? [])
            let output = Pipe()
            server.standardOutput = output
            try server.run()
            servers.append(server)
            guard let first = readLine(output), first.hasPrefix("registry "),
                let port = (try? Endpoint(parsing: String(first.dropFirst("registry ".count))))?.port
            else { throw BenchError("pilot-rendezvous did not report its port") }
            ports.append(port)
        }
        let pids = servers.map(\.processIdentifier)
        func rss() -> String { pids.map { "\(self.rss($0))" }.joined(separator: " + ") }

        print("pilot-bench registry: \(nodes) nodes, \(connections) connections, pilot-rendezvous pid \(pids.map(String.init).joined(separator: ", "))")
        let store = database.map { "PostgreSQL \($0.split(separator: "@").last ?? "")" } ?? "SQLite (registry.db)"
        print("store: \(store)" + (instances > 1 ? ", \(instances) instances sharing it" : ""))
        print("generating \(nodes) Ed25519 keys and signatures...")
        let keys = try (0..<nodes).map { _ in try Ed25519PrivateKey() }
        let registers: [RegistryMessage] = keys.enumerated().map { index, key in
            let listen = "127.0.0.1:\(10_000 + index % 50_000)"
            let text = key.publicKey.base64
            return RegistryMessage(
                type: "register",
                ["listen_addr": .string(listen), "public_key": .string(text),
                 "signature": .string(Base64.encode(key.sign("register:\(listen):\(text)")))])
        }
        // Connection c talks to instance c % instances; `others[c]` to the next instance, where
        // it looks up what it did not register.
        let clients = try (0..<connections).map { try BlockingClient(port: ports[$0 % instances]) }
        let others = try (0..<connections).map { try BlockingClient(port: ports[($0 + 1) % instances]) }
        let registeredBy = IDBox(count: nodes)
        print("RSS before: \(rss()) KiB")

        // 1. One request per node, as official daemons register: the first 5% of the nodes.
        let singles = max(connections, nodes / 20)
        let ids = IDBox(count: nodes)
        let single = try timed(items: singles) { connection, range in
            for index in range {
                let reply = try clients[connection].request(registers[index])
                guard reply.type == "register_ok" else { throw BenchError("register failed: \(reply.json.encodedString().prefix(200))") }
                ids.set(index, try reply.nodeID("node_id"))
                registeredBy.set(index, UInt32(connection))
            }
        }
        print(String(format: "register, one per request:   %8.0f /s  (%d nodes)", single, singles))

        // 2. The rest in batches of 500, as pilot-host does.
        let batched = try timed(items: nodes - singles, offset: singles) { connection, range in
            for chunk in stride(from: range.lowerBound, to: range.upperBound, by: 500) {
                let items = registers[chunk..<min(chunk + 500, range.upperBound)].map(\.json)
                let reply = try clients[connection].request(RegistryMessage(type: "batch", ["requests": .array(items)]))
                guard reply.type == "batch_ok", let replies = reply["replies"]?.arrayValue, replies.count == items.count else {
                    throw BenchError("batch failed: \(reply.json.encodedString().prefix(200))")
                }
                for (offset, item) in replies.enumerated() {
                    guard let id = item["node_id"]?.integerValue else {
                        throw BenchError("batched register failed: \(item.encodedString().prefix(200))")
                    }
                    ids.set(chunk + offset, UInt32(truncatingIfNeeded: id))
                    registeredBy.set(chunk + offset, UInt32(connection))
                }
            }
        }
        print(String(format: "register, batched by 500:    %8.0f /s  (%d nodes)", batched, nodes - singles))
        print("RSS with \(nodes) nodes: \(rss()) KiB")

        // With several instances: how long until the last node registered is seen elsewhere.
        if instances > 1 {
            let last = nodes - 1
            let lookUp = RegistryMessage(type: "lookup", ["node_id": .integer(Int64(ids.get(last)))])
            let asked = Date()
            while try others[Int(registeredBy.get(last))].request(lookUp).type != "lookup_ok" {
                guard Date().timeIntervalSince(asked) < 30 else { throw BenchError("the last node never appeared at the other instance") }
                usleep(1000)
            }
            print(String(format: "seen at the other instance:  %8.1f ms after its registration was answered", Date().timeIntervalSince(asked) * 1000))
        }

        // 3. Lookups, answered from memory whatever the store; with several instances, each at
        // an instance that did not register the node.
        let lookups = try timed(items: nodes) { connection, range in
            for index in range {
                let at = instances > 1 && Int(registeredBy.get(index)) % instances == connection % instances ? others[connection] : clients[connection]
                let reply = try at.request(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(ids.get(index)))]))
                guard reply.type == "lookup_ok" else { throw BenchError("lookup failed: \(reply.json.encodedString().prefix(200))") }
            }
        }
        print(String(format: "lookup, one per request:     %8.0f /s  (%d nodes", lookups, nodes) + (instances > 1 ? ", at the other instance)" : ")"))

        // 4. Heartbeats with every node registered, each signed by its node.
        let heartbeats = keys.enumerated().map { index, key in
            let id = ids.get(index)
            return RegistryMessage(
                type: "heartbeat",
                ["node_id": .integer(Int64(id)), "signature": .string(Base64.encode(key.sign("heartbeat:\(id)")))])
        }
        let beats = try timed(items: nodes) { connection, range in
            for index in range {
                let reply = try clients[connection].request(heartbeats[index])
                guard reply.type == "heartbeat_ok" else { throw BenchError("heartbeat failed: \(reply.json.encodedString().prefix(200))") }
            }
        }
        print(String(format: "heartbeat, one per request:  %8.0f /s  (%d nodes)", beats, nodes))
        let batchedBeats = try timed(items: nodes) { connection, range in
            for chunk in stride(from: range.lowerBound, to: range.upperBound, by: 500) {
                let items = heartbeats[chunk..<min(chunk + 500, range.upperBound)].map(\.json)
                let reply = try clients[connection].request(RegistryMessage(type: "batch", ["requests": .array(items)]))
                guard reply["replies"]?.arrayValue?.allSatisfy({ $0["type"] == "heartbeat_ok" }) == true else {
                    throw BenchError("batched heartbeat failed")
                }
            }
        }
        print(String(format: "heartbeat, batched by 500:   %8.0f /s", batchedBeats))
        print("RSS after heartbeats: \(rss()) KiB")
    }

    /// Splits `items` over the connections, runs them in parallel, returns items per second.
    private func timed(items: Int, offset: Int = 0, _ body: @escaping @Sendable (Int, Range<Int>) throws -> Void) throws -> Double {
        let share = (items + connections - 1) / connections
        let failure = FailureBox()
        let start = Date()
        DispatchQueue.concurrentPerform(iterations: connections) { connection in
            let lower = offset + min(items, connection * share)
            let upper = offset + min(items, (connection + 1) * share)
            do { try body(connection, lower..<upper) } catch { failure.set(error) }
        }
        if let error = failure.error { throw error }
        return Double(items) / Date().timeIntervalSince(start)
    }

    private func rss(_ pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return -1 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }

    private func readLine(_ pipe: Pipe) -> String? {
        var bytes: [UInt8] = []
        let handle = pipe.fileHandleForReading
        while bytes.last != 0x0A {
            let chunk = handle.readData(ofLength: 1)
            guard let byte = chunk.first else { return nil }
            bytes.append(byte)
        }
        return String(decoding: bytes.dropLast(), as: UTF8.self)
    }
}

/// A blocking registry client over one TCP connection: one request, one reply.
final class BlockingClient: @unchecked Sendable {
    // @unchecked: each client is used by one thread at a time.
    private let fd: Int32

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else { throw BenchError("connect: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(fd) }

    func request(_ message: RegistryMessage) throws -> RegistryMessage {
        let frame = try RegistryFrame.encode(message)
        var sent = 0
        while sent < frame.count {
            let n = frame[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw BenchError("send failed") }
            sent += n
        }
        let header = try read(4)
        let length = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
        return try RegistryMessage(decoding: try read(length))
    }

    private func read(_ count: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buffer[got...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw BenchError("connection closed") }
            got += n
        }
        return buffer
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The first error of parallel work.
final class FailureBox: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var first: (any Error)?
    func set(_ error: any Error) { lock.withLock { if first == nil { first = error } } }
    var error: (any Error)? { lock.withLock { first } }
}

/// Node ids by key index, filled from several threads at distinct indices.
final class IDBox: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var ids: [UInt32]
    init(count: Int) { ids = [UInt32](repeating: 0, count: count) }
    func set(_ index: Int, _ id: UInt32) { lock.withLock { ids[index] = id } }
    func get(_ index: Int) -> UInt32 { lock.withLock { ids[index] } }
}
