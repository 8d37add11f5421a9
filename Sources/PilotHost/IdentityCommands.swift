import Foundation
import PilotControl
import PilotStore
import PilotWire

/// The commands of an identity's own socket: its record (`info`, `set-hostname`,
/// `clear-hostname`, `set-tags`, `clear-tags`, `set-public`, `set-private`), the registry
/// (`lookup`, `find`), the trust handshake (`handshake`, `pending`, `approve`, `reject`,
/// `untrust`, `trust`), streams and datagrams (`ping`, `bench`, `send`, which pilotctl's
/// `connect` uses too, `recv`, `listen`, `send-datagram`, `connections`, `peers`), messages and
/// files (`send-message`, `inbox`, `upload` then `send-file`, `received`, `received-chunk`) and
/// events (`subscribe`, `publish`), custom networks (`network-list`, `network-members`,
/// `network-join`, `network-leave`, `network-create`) and `broadcast`.
struct IdentityCommands: Sendable {
    let pool: IdentityPool
    let dataPlane: DataPlane
    let uploads: Uploads
    let name: String

    /// Answers `request`, sent by `peer` (whose rights the control socket has just checked).
    func handle(_ peer: PeerCredentials, _ request: ControlRequest) async -> ControlReply {
        do {
            switch request.command {
            case "info":
                guard let identity = await pool.identity(named: name) else { throw PoolError.notFound(name) }
                return .ok(AdminCommands.describe(identity))
            case "set-hostname":
                return .ok(AdminCommands.describe(try await pool.setHostname(name: name, hostname: try request.string("hostname"))))
            case "clear-hostname":
                return .ok(AdminCommands.describe(try await pool.setHostname(name: name, hostname: nil)))
            case "set-tags":
                let tags = try request.strings("tags")
                guard !tags.isEmpty else { throw ControlFailure(.invalidArgument, "set-tags needs at least one tag (clear-tags removes them)") }
                return .ok(AdminCommands.describe(try await pool.setTags(name: name, tags: tags)))
            case "clear-tags":
                return .ok(AdminCommands.describe(try await pool.setTags(name: name, tags: [])))
            case "set-public":
                let record = try await pool.setPublic(name: name, isPublic: true)
                // Public: strangers may start key exchanges, so it needs its own socket now.
                await dataPlane.leave(name)
                try await dataPlane.join(name)
                return .ok(AdminCommands.describe(record))
            case "set-private":
                let record = try await pool.setPublic(name: name, isPublic: false)
                // Its public services close to nodes it does not trust; it goes back to the
                // shared socket (its own socket stays bound until the host restarts).
                await dataPlane.leave(name)
                try await pool.useSharedSocket(name)
                return .ok(AdminCommands.describe(record))
            case "lookup":
                let target = try request.string("target")
                let node: UInt32
                if let address = Address(target) {
                    node = address.node
                } else if let number = UInt32(target) {
                    node = number
                } else {
                    throw ControlFailure(.invalidArgument, "lookup needs a node id or an address N:XXXX.YYYY.YYYY, got \(target.prefix(64))")
                }
                return try await registryAnswer(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(node))]))
            case "find":
                let hostname = try request.string("hostname")
                return try await registryAnswer(RegistryMessage(type: "resolve_hostname", ["hostname": .string(hostname)]))
            case "ping":
                return try await ping(request)
            case "network-list":
                return try await networkAnswer(try await pool.query(RegistryMessage(type: "list_networks", [:])))
            case "network-members":
                var fields: [String: JSON] = ["network_id": .integer(Int64(try Self.network(request)))]
                if let token = try request.optionalString("admin_token") { fields["admin_token"] = .string(token) }
                return try await networkAnswer(try await pool.query(RegistryMessage(type: "list_nodes", fields)))
            case "network-join":
                let token = try request.optionalString("token") ?? ""
                return try await networkAnswer(try await pool.network(name, join: true, network: try Self.network(request), token: token))
            case "network-leave":
                return try await networkAnswer(try await pool.network(name, join: false, network: try Self.network(request)))
            case "network-create":
                // The registry checks the admin token; this identity becomes the first member.
                guard let identity = await pool.identity(named: name) else { throw PoolError.notFound(name) }
                var fields: [String: JSON] = [
                    "node_id": .integer(Int64(identity.nodeID)), "name": .string(try request.string("name")),
                    "join_rule": .string(try request.optionalString("join_rule") ?? "open"), "admin_token": .string(try request.string("admin_token")),
                ]
                if let token = try request.optionalString("token") { fields["token"] = .string(token) }
                return try await networkAnswer(try await pool.query(RegistryMessage(type: "create_network", fields)))
            case "broadcast":
                let network = try Self.network(request)
                return .ok(try await dataPlane.broadcast(
                    from: name, network: network, port: try Self.port(request), data: Array(try request.string("data").utf8),
                    token: try request.optionalString("admin_token") ?? ""))
            case "handshake":
                let peer = try await resolveTarget(try request.string("peer")).node
                return .ok(try await dataPlane.trust.request(name, peer: peer, reason: try request.optionalString("reason") ?? ""))
            case "approve":
                return .ok(try await dataPlane.trust.approve(name, peer: try await resolveTarget(try request.string("peer")).node))
            case "reject":
                let peer = try await resolveTarget(try request.string("peer")).node
                return .ok(try await dataPlane.trust.reject(name, peer: peer, reason: try request.optionalString("reason") ?? ""))
            case "untrust":
                return .ok(try await dataPlane.trust.revoke(name, peer: try await resolveTarget(try request.string("peer")).node))
            case "send":
                let target = try request.string("target")
                let port = try Self.port(request)
                var result = try await dataPlane.send(
                    from: name, to: try await resolveTarget(target), port: port, data: Array(try request.string("data").utf8),
                    wait: .seconds(Int64(try Self.seconds(request, default: 5)))).objectValue ?? [:]
                result["target"] = .string(target)
                return .ok(.object(result))
            case "recv":
                let count = try Self.count(request, default: 1, limit: 1000)
                return .ok(try await dataPlane.receive(
                    on: name, port: try Self.port(request), count: count, timeout: .seconds(Int64(try Self.seconds(request, default: 30)))))
            case "listen":
                let count = try Self.count(request, default: 1, limit: 1000)
                return .ok(try await dataPlane.listenDatagrams(
                    on: name, port: try Self.port(request), count: count, timeout: .seconds(Int64(try Self.seconds(request, default: 30)))))
            case "send-datagram":
                let target = try request.string("target")
                var result = try await dataPlane.sendDatagram(
                    from: name, to: try await resolveTarget(target), port: try Self.port(request), data: Array(try request.string("data").utf8)).objectValue ?? [:]
                result["target"] = .string(target)
                return .ok(.object(result))
            case "connections":
                return .ok(try await dataPlane.connections(of: name))
            case "peers":
                return .ok(try await dataPlane.peers(of: name))
            case "bench":
                let target = try request.string("target")
                let megabytes = request.arguments["megabytes"] == nil ? 1 : Int(try request.integer("megabytes"))
                guard (1...1024).contains(megabytes) else { throw ControlFailure(.invalidArgument, "bench: 1 to 1024 MB") }
                var result = try await dataPlane.bench(
                    from: name, to: try await resolveTarget(target), megabytes: megabytes, timeout: .seconds(120)).objectValue ?? [:]
                result["target"] = .string(target)
                return .ok(.object(result))
            case "send-message":
                let target = try request.string("target")
                let kind: DataExchangeFrame.Kind
                switch try request.optionalString("type") ?? "text" {
                case "text": kind = .text
                case "json": kind = .json
                case "binary": kind = .binary
                case let other: throw ControlFailure(.invalidArgument, "send-message: type must be text, json or binary, not \(other.prefix(32))")
                }
                let data = Array(try request.string("data").utf8)
                if kind == .json, (try? JSON(parsing: data)) == nil {
                    throw ControlFailure(.invalidArgument, "send-message: --type json needs valid JSON")
                }
                var result = try await dataPlane.sendMessage(
                    from: name, to: try await resolveTarget(target), kind: kind, data: data, timeout: .seconds(15)).objectValue ?? [:]
                result["target"] = .string(target)
                return .ok(.object(result))
            case "inbox":
                let messages = try await pool.messages(of: name)
                if try request.bool("clear") { try await pool.clearMessages(of: name) }
                return .ok([
                    "total": .integer(Int64(messages.count)), "shown": .integer(Int64(messages.count)),
                    "messages": .array(messages.map(Self.describe)),
                ])
            case "subscribe":
                let target = try request.string("target")
                let count = try Self.count(request, default: 1, limit: 10_000)
                return .ok(try await dataPlane.subscribe(
                    from: name, to: try await resolveTarget(target), topic: try Self.topic(request), count: count,
                    timeout: .seconds(try Self.seconds(request, default: 30))))
            case "publish":
                let target = try request.string("target")
                return .ok(try await dataPlane.publish(
                    from: name, to: try await resolveTarget(target), topic: try Self.topic(request), data: Array(try request.string("data").utf8)))
            case "upload":
                guard let chunk = try? Base64.decode(try request.string("data")) else {
                    throw ControlFailure(.invalidArgument, "upload: data must be base64")
                }
                let held = try await uploads.append(
                    identity: name, user: peer.uid, id: try request.string("upload"), size: Int(try request.integer("size")),
                    offset: Int(try request.integer("offset")), chunk: chunk)
                return .ok(["received": .integer(Int64(held))])
            case "send-file":
                let target = try request.string("target")
                guard let fileName = DataExchangeFrame.safeFileName(try request.string("name")) else {
                    throw ControlFailure(.invalidArgument, "send-file: the file needs a name")
                }
                let contents = try await uploads.take(identity: name, id: try request.string("upload"))
                var result = try await dataPlane.sendFile(
                    from: name, to: try await resolveTarget(target), fileName: fileName, contents: contents, timeout: .seconds(120)
                ).objectValue ?? [:]
                result["target"] = .string(target)
                return .ok(.object(result))
            case "received":
                let files = try await pool.files(of: name)
                if try request.bool("clear") { try await pool.clearFiles(of: name) }
                return .ok(["total": .integer(Int64(files.count)), "files": .array(files.map(Self.describe))])
            case "received-chunk":
                let offset = Int(try request.integer("offset"))
                guard offset >= 0 else { throw ControlFailure(.invalidArgument, "received-chunk: offset must not be negative") }
                let id = try request.integer("id")
                guard let bytes = try await pool.fileContents(of: name, id: id, offset: offset, length: Self.chunkSize) else {
                    throw ControlFailure(.notFound, "no received file \(id)")
                }
                return .ok(["offset": .integer(Int64(offset)), "data": .string(Base64.encode(bytes))])
            case "pending":
                return .ok(await dataPlane.trust.pending(name))
            case "trust":
                return .ok(await dataPlane.trust.trusted(name))
            default:
                throw ControlFailure(.invalidArgument, "unknown command: \(request.command.prefix(64))")
            }
        } catch let failure as ControlFailure {
            return .error(failure)
        } catch let error as PoolError {
            return .error(AdminCommands.failure(error))
        } catch {
            return .error(ControlFailure(.connectionFailed, "\(error)"))
        }
    }

    static func port(_ request: ControlRequest) throws -> UInt16 {
        guard let port = UInt16(exactly: try request.integer("port")), port > 0 else {
            throw ControlFailure(.invalidArgument, "\(request.command): port must be 1 to 65535")
        }
        return port
    }

    /// A topic of 1 to 1024 bytes.
    static func topic(_ request: ControlRequest) throws -> String {
        let topic = try request.string("topic")
        guard (1...EventStreamFrame.maxTopic).contains(topic.utf8.count) else {
            throw ControlFailure(.invalidArgument, "\(request.command): a topic has 1 to \(EventStreamFrame.maxTopic) bytes")
        }
        return topic
    }

    /// The request's `count`, 1 to `limit` (`fallback` when absent).
    static func count(_ request: ControlRequest, default fallback: Int, limit: Int) throws -> Int {
        guard request.arguments["count"] != nil else { return fallback }
        let count = Int(try request.integer("count"))
        guard (1...limit).contains(count) else { throw ControlFailure(.invalidArgument, "\(request.command): count must be 1 to \(limit)") }
        return count
    }

    static func seconds(_ request: ControlRequest, default fallback: Int) throws -> Int {
        guard request.arguments["timeout"] != nil else { return fallback }
        let seconds = Int(try request.integer("timeout"))
        guard (1...3600).contains(seconds) else { throw ControlFailure(.invalidArgument, "\(request.command): timeout must be 1 to 3600 seconds") }
        return seconds
    }

    /// `ping TARGET [count] [timeout]`: TARGET is an address, a node id or a hostname.
    private func ping(_ request: ControlRequest) async throws -> ControlReply {
        let target = try request.string("target")
        let count = try Self.count(request, default: 4, limit: 100)
        let seconds = request.arguments["timeout"] == nil ? 10 : Int(try request.integer("timeout"))
        guard (1...300).contains(seconds) else { throw ControlFailure(.invalidArgument, "ping: timeout must be 1 to 300 seconds") }
        let address = try await resolveTarget(target)
        let results = try await dataPlane.ping(from: name, target: address, count: count, timeout: .seconds(seconds))
        return .ok([
            "target": .string(target), "to": .string(address.description), "results": .array(results),
            "timeout": .bool(results.contains { $0["error"]?.stringValue?.contains("no answer within") == true }),
        ])
    }

    /// An address, a node id, or a hostname the registry knows.
    private func resolveTarget(_ target: String) async throws -> Address {
        if let address = Address(target) { return address }
        if let node = UInt32(target) { return Address(node: node) }
        let reply = try await pool.query(RegistryMessage(type: "resolve_hostname", ["hostname": .string(target)]))
        guard reply.type == "resolve_hostname_ok", let node = try? reply.nodeID("node_id") else {
            throw ControlFailure(.notFound, reply["error"]?.stringValue ?? "no node named \(target.prefix(64))")
        }
        return Address(node: node)
    }

    /// An inbox record as the reference's `pilotctl inbox` lists it (id, type, from, bytes,
    /// preview, received_at in RFC 3339), plus the whole message: text as `data`, other bytes
    /// as `data_b64` (there are no inbox files to read here).
    static func describe(_ message: InboxMessage) -> JSON {
        let received = Date(timeIntervalSince1970: Double(message.receivedAt) / 1000)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var fields: [String: JSON] = [
            "id": .string("\(message.type)-\(message.id)"), "type": .string(message.type), "from": .string(message.sender),
            "bytes": .integer(Int64(message.data.count)), "received_at": .string(formatter.string(from: received)),
        ]
        if message.type != "BINARY", message.type != "FILE", let text = String(validating: message.data, as: UTF8.self) {
            fields["data"] = .string(text)
            fields["preview"] = .string(String(text.prefix(120)))
        } else {
            fields["data_b64"] = .string(Base64.encode(message.data))
        }
        if let id = message.messageID { fields["message_id"] = .string(id) }
        if let replyTo = message.replyTo { fields["reply_to"] = .string(replyTo) }
        return .object(fields)
    }

    /// Bytes of a file per control frame, each way: 512 KiB (in base64, well inside 1 MiB).
    static let chunkSize = 512 << 10

    /// A received file as `pilotctl received` lists it.
    static func describe(_ file: ReceivedFile) -> JSON {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return [
            "id": .integer(file.id), "name": .string(file.name), "from": .string(file.sender), "bytes": .integer(Int64(file.size)),
            "received_at": .string(formatter.string(from: Date(timeIntervalSince1970: Double(file.receivedAt) / 1000))),
        ]
    }

    /// A network command's registry reply as command data, whole (1.18's pilotctl prints it
    /// with its `type`), or its error.
    private func networkAnswer(_ reply: RegistryMessage) async throws -> ControlReply {
        guard reply.type != "error", let fields = reply.json.objectValue else {
            throw ControlFailure(.invalidArgument, "registry: \(reply["error"]?.stringValue ?? "unexpected reply \(reply.type)")")
        }
        return .ok(.object(fields))
    }

    /// The request's `network_id`: a network number, 0 to 65535.
    private static func network(_ request: ControlRequest) throws -> UInt16 {
        guard let network = UInt16(exactly: try request.integer("network_id")) else {
            throw ControlFailure(.invalidArgument, "network_id must be 0 to 65535")
        }
        return network
    }

    /// A registry reply as command data: its fields without `type`, or its error as not_found.
    private func registryAnswer(_ request: RegistryMessage) async throws -> ControlReply {
        let reply = try await pool.query(request)
        guard reply.type != "error", var fields = reply.json.objectValue else {
            throw ControlFailure(.notFound, reply["error"]?.stringValue ?? "registry error")
        }
        fields["type"] = nil
        return .ok(.object(fields))
    }
}
