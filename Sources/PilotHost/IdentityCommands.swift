import FoundationEssentials
import PilotControl
import PilotStore
import PilotWire

/// The commands of an identity's own socket: its record (`info`, `set-hostname`,
/// `clear-hostname`, `set-tags`, `clear-tags`, `set-public`, `set-private`), the registry
/// (`lookup`, `find`), its standing there (`deregister`, `rotate-key`), the trust handshake (`handshake`, `pending`, `approve`, `reject`,
/// `untrust`, `trust`), streams and datagrams (`ping`, `bench`, `send`, which pilotctl's
/// `connect` uses too, `recv`, `listen`, `send-datagram`, `connections`, `peers`,
/// `prefer-direct`), messages and
/// files (`send-message`, `inbox`, `upload` then `send-file`, `received`, `received-chunk`) and
/// events (`subscribe`, `publish`), custom networks (`network-list`, `network-members`,
/// `network-join`, `network-leave`, `network-create`) and `broadcast`.
///
/// A class: the two closures an identity's socket keeps (its requests' handler and its driver
/// sessions' factory) capture this one object, and a closure whose one capture is an object
/// is that object, where a copy of a struct would be a context of its own for each.
final class IdentityCommands: Sendable {
    /// What every identity's commands use: one object for the host, so that each identity's
    /// socket holds a reference and a name (a host of 100,000 identities holds 100,000 of them).
    final class Services: Sendable {
        let pool: IdentityPool
        let presence: Presence
        let trust: TrustService
        let dataCommands: DataCommands
        let mailbox: Mailbox
        let uploads: Uploads
        let apps: AppStoreCommands
        /// When the host started (the uptime `health` reports).
        let started: Date

        init(
            pool: IdentityPool, presence: Presence, trust: TrustService, dataCommands: DataCommands, mailbox: Mailbox, uploads: Uploads,
            apps: AppStoreCommands, started: Date
        ) {
            self.pool = pool
            self.presence = presence
            self.trust = trust
            self.dataCommands = dataCommands
            self.mailbox = mailbox
            self.uploads = uploads
            self.apps = apps
            self.started = started
        }
    }

    let services: Services
    let name: String

    init(services: Services, name: String) {
        self.services = services
        self.name = name
    }

    var pool: IdentityPool { services.pool }
    var presence: Presence { services.presence }
    var trust: TrustService { services.trust }
    var dataCommands: DataCommands { services.dataCommands }
    var mailbox: Mailbox { services.mailbox }
    var uploads: Uploads { services.uploads }
    var apps: AppStoreCommands { services.apps }
    var started: Date { services.started }

    /// Answers `request`, sent by `peer` (whose rights the control socket has just checked).
    func handle(_ peer: PeerCredentials, _ request: ControlRequest) async -> ControlReply {
        do {
            return .ok(try await answer(from: peer, IdentitySocketCommand(request)))
        } catch let failure as ControlFailure {
            return .error(failure)
        } catch let error as PoolError {
            return .error(AdminCommands.failure(error))
        } catch {
            return .error(ControlFailure(.connectionFailed, "\(error)"))
        }
    }

    /// The data of `command`'s reply.
    func answer(from peer: PeerCredentials, _ command: IdentitySocketCommand) async throws -> JSON {
        switch command {
        case .health:
            return try await health()
        case .appCatalogue, .appPlan, .appInstall, .appSideload, .appList, .appStatus, .appUninstall, .appRestart, .appOutdated, .appCall:
            guard let identity = await pool.identity(named: name) else { throw PoolError.notFound(name) }
            let address = Address(network: identity.network, node: identity.nodeID).description
            return try await apps.answer(command, identity: name, address: address, peer: peer) ?? .null
        case .info:
            // The identity's record, over 1.18's Info keys with its figures.
            guard let identity = await pool.identity(named: name) else { throw PoolError.notFound(name) }
            return .object(
                try await referenceInfo().merging(AdminCommands.describe(identity, deregistered: await pool.isDeregistered(name)).json.objectValue ?? [:]) { $1 })
        case .setHostname(let command):
            return AdminCommands.describe(try await pool.setHostname(name: name, hostname: command.hostname)).json
        case .clearHostname:
            return AdminCommands.describe(try await pool.setHostname(name: name, hostname: nil)).json
        case .setTags(let command):
            guard !command.tags.isEmpty else { throw ControlFailure(.invalidArgument, "set-tags needs at least one tag (clear-tags removes them)") }
            return AdminCommands.describe(try await pool.setTags(name: name, tags: command.tags)).json
        case .clearTags:
            return AdminCommands.describe(try await pool.setTags(name: name, tags: [])).json
        case .setListing(let command):
            let listing: DirectoryListing
            do { listing = try command.listing.validated() } catch { throw ControlFailure(.invalidArgument, "\(error)") }
            return try wholeAnswer(try await pool.setListing(name: name, listing))
        case .setPublic:
            let record = try await pool.setPublic(name: name, isPublic: true)
            // Public: strangers may start key exchanges, so it needs its own socket now.
            await presence.leave(name)
            try await presence.join(name)
            return AdminCommands.describe(record).json
        case .setPrivate:
            let record = try await pool.setPublic(name: name, isPublic: false)
            // Its public services close to nodes it does not trust; it goes back to the
            // shared socket (its own socket stays bound until the host restarts).
            await presence.leave(name)
            try await pool.useSharedSocket(name)
            return AdminCommands.describe(record).json
        case .lookup(let command):
            guard case .address(let address) = NodeTarget(command.target) else {
                throw ControlFailure(.invalidArgument, "lookup needs a node id or an address N:XXXX.YYYY.YYYY, got \(command.target.prefix(64))")
            }
            // Whole, `type` (`lookup_ok`) too, as 1.18's pilotctl prints it.
            return try await registryAnswer(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(address.node))]), keepingType: true)
        case .find(let command):
            if let tag = command.tag { return try await findByTag(tag) }
            return try await registryAnswer(RegistryMessage(type: "resolve_hostname", ["hostname": .string(command.hostname)]))
        case .deregister:
            return try wholeAnswer(try await pool.deregister(name: name))
        case .rotateKey:
            return try wholeAnswer(try await presence.rotateKey(name))
        case .preferDirect(let command):
            return try await presence.preferDirect(from: name, to: try await resolve(command.peer).node).json
        case .ping(let command):
            return try await ping(command)
        case .traceroute(let command):
            var report = try await dataCommands.traceroute(
                from: name, to: try await resolve(command.target), timeout: .milliseconds(command.timeout ?? 30_000))
            report.to = command.target
            return report.json
        case .networkList:
            return try wholeAnswer(try await pool.query(RegistryMessage(type: "list_networks", [:])))
        case .networkMembers(let command):
            var fields: [String: JSON] = ["network_id": .integer(Int64(command.networkID))]
            if let token = command.adminToken { fields["admin_token"] = .string(token) }
            return try wholeAnswer(try await pool.query(RegistryMessage(type: "list_nodes", fields)))
        case .networkJoin(let command):
            return try wholeAnswer(try await pool.network(name, join: true, network: command.networkID, token: command.token ?? ""))
        case .networkLeave(let command):
            return try wholeAnswer(try await pool.network(name, join: false, network: command.networkID))
        case .networkCreate(let command):
            // The registry checks the admin token; this identity becomes the first member.
            guard let identity = await pool.identity(named: name) else { throw PoolError.notFound(name) }
            var fields: [String: JSON] = [
                "node_id": .integer(Int64(identity.nodeID)), "name": .string(command.network),
                "join_rule": .string(command.joinRule ?? "open"), "admin_token": .string(command.adminToken),
            ]
            if let token = command.token { fields["token"] = .string(token) }
            return try wholeAnswer(try await pool.query(RegistryMessage(type: "create_network", fields)))
        case .broadcast(let command):
            return try await dataCommands.broadcast(
                from: name, network: command.networkID, port: command.port, data: Array(command.data.utf8), token: command.adminToken ?? ""
            ).json
        case .handshake(let command):
            let peer = try await resolve(command.peer).node
            return try await trust.request(name, peer: peer, reason: command.reason ?? "").json
        case .approve(let command):
            return try await trust.approve(name, peer: try await resolve(command.peer).node).json
        case .reject(let command):
            let peer = try await resolve(command.peer).node
            return try await trust.reject(name, peer: peer, reason: command.reason ?? "").json
        case .untrust(let command):
            return try await trust.revoke(name, peer: try await resolve(command.peer).node).json
        case .pending(let command):
            return await trust.pending(name, page: command.page).json
        case .trusted(let command):
            return await trust.trusted(name, page: command.page).json
        case .send(let command):
            var sent = try await dataCommands.send(
                from: name, to: try await resolve(command.target), port: command.port, data: Array(command.data.utf8),
                wait: .seconds(Int64(try Self.seconds(command.timeout, default: 5, DataControl.Send.self))))
            sent.target = command.target
            return sent.json
        case .receive(let command):
            let count = try Self.count(command.count, default: 1, limit: 1000, DataControl.Receive.self)
            return try await dataCommands.receive(
                on: name, port: command.port, count: count,
                timeout: .seconds(Int64(try Self.seconds(command.timeout, default: 30, DataControl.Receive.self)))
            ).json
        case .listen(let command):
            let count = try Self.count(command.count, default: 1, limit: 1000, DataControl.Listen.self)
            return try await dataCommands.listenDatagrams(
                on: name, port: command.port, count: count,
                timeout: .seconds(Int64(try Self.seconds(command.timeout, default: 30, DataControl.Listen.self)))
            ).json
        case .sendDatagram(let command):
            var sent = try await dataCommands.sendDatagram(
                from: name, to: try await resolve(command.target), port: command.port, data: Array(command.data.utf8))
            sent.target = command.target
            return sent.json
        case .connections(let command):
            let all = try await dataCommands.connections(of: name).connections
            let (rows, next) = Paging.page(all, key: { $0.figures["id"] ?? 0 }, json: ConnectionList.row, page: command.page)
            return ConnectionList(connections: rows, total: all.count, next: next).json
        case .disconnect(let command):
            try await dataCommands.disconnect(name, connection: command.connection)
            return ["conn_id": .integer(Int64(command.connection))]
        case .peers(let command):
            let all = try await dataCommands.peers(of: name).peers
            let (rows, next) = Paging.page(all, key: { Int64($0.nodeID) }, json: PeerList.row, page: command.page)
            return PeerList(peers: rows, total: all.count, next: next).json
        case .bench(let command):
            let megabytes = command.megabytes ?? 1
            guard (1...1024).contains(megabytes) else { throw ControlFailure(.invalidArgument, "bench: 1 to 1024 MB") }
            var report = try await dataCommands.bench(from: name, to: try await resolve(command.target), megabytes: megabytes, timeout: .seconds(120))
            report.target = command.target
            return report.json
        case .sendMessage(let command):
            let kind: DataExchangeFrame.Kind
            switch command.type ?? .text {
            case .text: kind = .text
            case .json: kind = .json
            case .binary: kind = .binary
            }
            let data = try command.bytes
            if kind == .json, (try? JSON(parsing: data)) == nil {
                throw ControlFailure(.invalidArgument, "send-message: --type json needs valid JSON")
            }
            var replyTo: String?
            if let id = command.replyTo { replyTo = try await answered(id) }
            let target = try await resolve(command.target)
            let before = try await mailbox.lastMessageID(of: name)
            var sent = try await dataCommands.sendMessage(from: name, to: target, kind: kind, data: data, replyTo: replyTo, timeout: .seconds(15))
            sent.target = command.target
            if let wait = command.wait {
                guard let reply = try await mailbox.reply(
                    to: sent.messageID, from: target.description, for: name, after: before, within: .milliseconds(wait))
                else {
                    throw ControlFailure(.timeout, "no reply from \"\(target)\" within \(Self.seconds(milliseconds: wait))")
                }
                sent.reply = Self.describe(reply)
            }
            return sent.json
        case .inbox(let command):
            let (messages, total, more) = try await mailbox.page(
                of: name, after: command.after ?? 0, limit: command.limit ?? MessageControl.Inbox.longestPage, clear: command.clear)
            return InboxListing(
                messages: messages.map(Self.describe), directory: mailbox.spoolInbox(of: name), total: total,
                next: more ? messages.last?.id : nil
            ).json
        case .inboxChunk(let command):
            guard let bytes = try await mailbox.messageContents(of: name, id: command.id, offset: command.offset, length: FileChunk.size) else {
                throw ControlFailure(.notFound, "no inbox message \(command.id)")
            }
            return FileChunk(offset: command.offset, data: Base64.encode(bytes)).json
        case .subscribe(let command):
            let count = try Self.count(command.count, default: 1, limit: 10_000, MessageControl.Subscribe.self)
            return try await dataCommands.subscribe(
                from: name, to: try await resolve(command.target), topic: try Self.topic(command.topic, MessageControl.Subscribe.self),
                count: count, timeout: .seconds(try Self.seconds(command.timeout, default: 30, MessageControl.Subscribe.self))
            ).json
        case .publish(let command):
            return try await dataCommands.publish(
                from: name, to: try await resolve(command.target), topic: try Self.topic(command.topic, MessageControl.Publish.self),
                data: Array(command.data.utf8)
            ).json
        case .upload(let command):
            guard let chunk = try? Base64.decode(command.data) else {
                throw ControlFailure(.invalidArgument, "upload: data must be base64")
            }
            let held = try await uploads.append(
                identity: name, user: peer.uid, id: command.upload, size: command.size, offset: command.offset, chunk: chunk)
            return UploadReceived(received: held).json
        case .sendFile(let command):
            guard let fileName = DataExchangeFrame.safeFileName(command.file) else {
                throw ControlFailure(.invalidArgument, "send-file: the file needs a name")
            }
            let contents = try await uploads.take(identity: name, id: command.upload)
            var sent = try await dataCommands.sendFile(
                from: name, to: try await resolve(command.target), fileName: fileName, contents: contents, timeout: .seconds(120))
            sent.target = command.target
            return sent.json
        case .received(let command):
            let (files, total, next) = try await mailbox.filePage(of: name, page: command.page, clear: command.clear, describe: Self.describe)
            return ReceivedFiles(files: files.map(Self.describe), total: total, next: next).json
        case .receivedChunk(let command):
            guard command.offset >= 0 else { throw ControlFailure(.invalidArgument, "received-chunk: offset must not be negative") }
            guard let bytes = try await mailbox.fileContents(of: name, id: command.id, offset: command.offset, length: FileChunk.size) else {
                throw ControlFailure(.notFound, "no received file \(command.id)")
            }
            return FileChunk(offset: command.offset, data: Base64.encode(bytes)).json
        }
    }

    /// A topic of 1 to 1024 bytes.
    static func topic<C: ControlCommand>(_ topic: String, _ command: C.Type) throws -> String {
        guard (1...EventStreamFrame.maxTopic).contains(topic.utf8.count) else {
            throw ControlFailure(.invalidArgument, "\(C.name): a topic has 1 to \(EventStreamFrame.maxTopic) bytes")
        }
        return topic
    }

    /// A command's `count`, 1 to `limit` (`fallback` when absent).
    static func count<C: ControlCommand>(_ count: Int?, default fallback: Int, limit: Int, _ command: C.Type) throws -> Int {
        guard let count else { return fallback }
        guard (1...limit).contains(count) else { throw ControlFailure(.invalidArgument, "\(C.name): count must be 1 to \(limit)") }
        return count
    }

    /// A command's `timeout` in seconds, 1 to `limit` (`fallback` when absent).
    static func seconds<C: ControlCommand>(_ seconds: Int?, default fallback: Int, limit: Int = 3600, _ command: C.Type) throws -> Int {
        guard let seconds else { return fallback }
        guard (1...limit).contains(seconds) else {
            throw ControlFailure(.invalidArgument, "\(C.name): timeout must be 1 to \(limit) seconds")
        }
        return seconds
    }

    /// `ping TARGET [count] [timeout]`.
    private func ping(_ command: DataControl.Ping) async throws -> JSON {
        let count = try Self.count(command.count, default: 4, limit: 100, DataControl.Ping.self)
        let seconds = try Self.seconds(command.timeout, default: 10, limit: 300, DataControl.Ping.self)
        let address = try await resolve(command.target)
        let results = try await dataCommands.ping(from: name, target: address, count: count, timeout: .seconds(seconds))
        return PingReport(
            target: command.target, to: address.description, results: results,
            timeout: results.contains { $0.error?.contains("no answer within") == true }
        ).json
    }

    /// The one place a command's target or peer becomes an address: an address or a node id as
    /// it is, a hostname through the registry.
    private func resolve(_ target: String) async throws -> Address {
        switch NodeTarget(target) {
        case .address(let address):
            return address
        case .hostname(let hostname):
            let reply = try await pool.query(RegistryMessage(type: "resolve_hostname", ["hostname": .string(hostname)]))
            guard reply.type == "resolve_hostname_ok", let node = try? reply.nodeID("node_id") else {
                throw ControlFailure(.notFound, reply["error"]?.stringValue ?? "no node named \(hostname.prefix(64))")
            }
            return Address(node: node)
        }
    }

    /// The `message_id` a reply answers: `id` itself, or the one of this identity's inbox record
    /// named `id` (as both pilotctls list it). 1.18's id rule: 1 to 128 of `A-Za-z0-9._:-`.
    private func answered(_ id: String) async throws(ControlFailure) -> String {
        if let messageID = try await mailbox.messageID(ofRecord: id, of: name) { return messageID }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")
        guard (1...128).contains(id.count), id.allSatisfy(allowed.contains) else {
            throw ControlFailure(.invalidArgument, "send-message: reply_to must be 1 to 128 letters, digits or ._:- (a message_id or an inbox id)")
        }
        return id
    }

    /// `milliseconds` as 1.18 prints a duration: `3s`, `1.5s`, `250ms`.
    private static func seconds(milliseconds: Int) -> String {
        milliseconds < 1000 ? "\(milliseconds)ms" : milliseconds % 1000 == 0 ? "\(milliseconds / 1000)s" : "\(Double(milliseconds) / 1000)s"
    }

    /// An inbox record as the reference's `pilotctl inbox` lists it (id, type, from, bytes,
    /// preview, received_at in RFC 3339), plus the whole message: text as `data`, other bytes
    /// as `data_b64` (there are no inbox files to read here).
    static func describe(_ message: InboxMessage) -> InboxListing.Message {
        var described = InboxListing.Message(
            id: InboxSpool.recordName(message), type: message.type, from: message.sender, bytes: message.size,
            receivedAt: rfc3339(milliseconds: message.receivedAt), messageID: message.messageID, replyTo: message.replyTo)
        if message.size > message.data.count {
            // Listed without its data, which inbox-chunk reads; the preview from its start.
            described.truncated = true
            if message.type != "BINARY", message.type != "FILE" {
                described.preview = String(String(decoding: message.data.prefix(480), as: UTF8.self).prefix(120))
            }
        } else if message.type != "BINARY", message.type != "FILE", let text = String(validating: message.data, as: UTF8.self) {
            described.text = text
            described.preview = String(text.prefix(120))
        } else {
            described.base64 = Base64.encode(message.data)
        }
        return described
    }

    /// A received file as `pilotctl received` lists it.
    static func describe(_ file: ReceivedFile) -> ReceivedFiles.File {
        ReceivedFiles.File(
            id: file.id, name: file.name, from: file.sender, bytes: file.size, receivedAt: rfc3339(milliseconds: file.receivedAt))
    }

    /// Unix milliseconds as RFC 3339 with fractional seconds.
    private static func rfc3339(milliseconds: Int64) -> String { UTCStamp(milliseconds: milliseconds).rfc3339 }

    /// A registry reply as command data, whole (1.18 passes the registry's replies to network
    /// commands, deregister and rotate-key on with their `type`), or its error.
    private func wholeAnswer(_ reply: RegistryMessage) throws -> JSON {
        guard reply.type != "error", let fields = reply.json.objectValue else {
            throw ControlFailure(.invalidArgument, "registry: \(reply["error"]?.stringValue ?? "unexpected reply \(reply.type)")")
        }
        return .object(fields)
    }

    /// The online nodes tagged `tag`, from the registry's `find_by_tag` (our extension); a
    /// registry without it (the official one) is said to be one.
    private func findByTag(_ tag: String) async throws -> JSON {
        guard (1...64).contains(tag.utf8.count) else { throw ControlFailure(.invalidArgument, "find --tag: a tag has 1 to 64 bytes") }
        let reply = try await pool.query(RegistryMessage(type: "find_by_tag", ["tag": .string(tag)]))
        guard reply.type == "find_by_tag_ok", var fields = reply.json.objectValue else {
            let said = reply["error"]?.stringValue ?? reply.type
            if said.contains("unknown") { throw ControlFailure(.unavailable, "this registry cannot search tags (it said: \(said.prefix(200)))") }
            throw ControlFailure(.notFound, said)
        }
        fields["type"] = nil
        return .object(fields)
    }

    /// A registry reply as command data: its fields without `type` (unless `keepingType`), or
    /// its error as not_found.
    private func registryAnswer(_ request: RegistryMessage, keepingType: Bool = false) async throws -> JSON {
        let reply = try await pool.query(request)
        guard reply.type != "error", var fields = reply.json.objectValue else {
            throw ControlFailure(.notFound, reply["error"]?.stringValue ?? "registry error")
        }
        if !keepingType { fields["type"] = nil }
        return .object(fields)
    }
}
