import Dispatch
public import PilotWire

/// The Swift SDK of a pilot-host control socket: pilot-host's own commands as typed async
/// calls. Point it at an identity's socket (`/run/pilot-host/id/NAME.sock`) for the identity
/// commands, or at the admin socket for the `identity.*` commands.
///
/// Each call opens a connection, sends one request and waits for its reply on a Dispatch
/// thread, not on the cooperative pool: a command may wait up to an hour (`recv`, `listen`,
/// `subscribe`), and a blocked cooperative thread would starve the caller's other tasks.
/// An error reply is thrown as its `ControlFailure`; a socket that cannot be used as a
/// `ControlClientError`.
public struct PilotClient: Sendable {
    /// The control socket's path.
    public let socketPath: String

    /// A client of the socket at `socketPath`.
    public init(socketPath: String) { self.socketPath = socketPath }

    /// A client of identity `name`'s socket under pilot-host's runtime directory.
    public init(identity name: String, runtimeDirectory: String = "/run/pilot-host") {
        self.init(socketPath: runtimeDirectory + "/id/\(name).sock")
    }

    /// A client of the admin socket under pilot-host's runtime directory.
    public static func admin(runtimeDirectory: String = "/run/pilot-host") -> PilotClient {
        PilotClient(socketPath: runtimeDirectory + "/admin.sock")
    }

    /// Sends `command` and returns its reply's data.
    public func send<Command: ControlCommand>(_ command: Command) async throws -> Command.Reply {
        try Command.data(of: await reply(to: command.request))
    }

    /// Sends `request` and returns its reply as it came, an error reply included.
    public func reply(to request: ControlRequest) async throws -> ControlReply {
        let path = socketPath
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try ControlConnection(path: path).request(request) })
            }
        }
    }

    // MARK: Admin socket

    /// Creates an identity, registers it, and returns it.
    public func createIdentity(_ command: AdminControl.CreateIdentity) async throws -> IdentityInfo { try await send(command) }

    /// Every identity on the host, page after page (`identity.list`).
    public func identities() async throws -> [IdentityInfo] {
        var identities: [IdentityInfo] = []
        var after: String?
        repeat {
            let page = try await send(AdminControl.ListIdentities(after: after))
            identities += page.identities
            after = page.next
        } while after != nil
        return identities
    }

    /// One page of identities: up to `limit` after `after`, and the `next` to ask for.
    public func identities(limit: Int?, after: String?) async throws -> IdentityList {
        try await send(AdminControl.ListIdentities(limit: limit, after: after))
    }

    /// The identity named `name`.
    public func identity(named name: String) async throws -> IdentityInfo { try await send(AdminControl.ShowIdentity(identity: name)) }

    /// Deregisters and deletes the identity named `name`.
    public func deleteIdentity(named name: String) async throws { _ = try await send(AdminControl.DeleteIdentity(identity: name)) }

    /// Gives the identity named `name` to `owner` (a user name or a uid), and returns it.
    public func setOwner(of name: String, to owner: String) async throws -> IdentityInfo {
        try await send(AdminControl.SetOwner(identity: name, owner: owner))
    }

    // MARK: The identity's record

    /// This identity.
    public func info() async throws -> IdentityInfo { try await send(IdentityControl.Info()) }

    /// Sets this identity's hostname (nil removes it), and returns the identity.
    public func setHostname(_ hostname: String?) async throws -> IdentityInfo {
        guard let hostname else { return try await send(IdentityControl.ClearHostname()) }
        return try await send(IdentityControl.SetHostname(hostname: hostname))
    }

    /// Replaces this identity's tags (an empty list removes them), and returns the identity.
    public func setTags(_ tags: [String]) async throws -> IdentityInfo {
        tags.isEmpty ? try await send(IdentityControl.ClearTags()) : try await send(IdentityControl.SetTags(tags: tags))
    }

    /// Makes this identity's endpoint resolvable by any node (true) or by trusted peers only.
    public func setPublic(_ isPublic: Bool) async throws -> IdentityInfo {
        isPublic ? try await send(IdentityControl.SetPublic()) : try await send(IdentityControl.SetPrivate())
    }

    /// A node's record in the registry, by node id or address, as the registry gives it.
    public func lookup(_ target: String) async throws -> ControlData { try await send(IdentityControl.Lookup(target: target)) }

    /// A node's address by hostname, as the registry gives it.
    public func find(hostname: String) async throws -> ControlData { try await send(IdentityControl.Find(hostname: hostname)) }

    /// The online nodes tagged `tag` (`tag` and `nodes`, each as `lookup` shows it), from a
    /// registry that can search tags (pilot-rendezvous's).
    public func find(tag: String) async throws -> ControlData { try await send(IdentityControl.Find(tag: tag)) }

    /// Takes this identity out of the registry until pilot-host restarts (it is not deleted);
    /// the registry's `deregister_ok`.
    public func deregister() async throws -> ControlData { try await send(IdentityControl.Deregister()) }

    /// Gives this identity a new key, same address; the registry's `rotate_key_ok`.
    public func rotateKey() async throws -> ControlData { try await send(IdentityControl.RotateKey()) }

    /// Tries a session with `peer` relayed through the beacon directly, now.
    public func preferDirect(_ peer: String) async throws -> DirectPreferenceReport {
        try await send(IdentityControl.PreferDirect(peer: peer))
    }

    // MARK: Trust

    /// Asks `peer` (an address, a node id or a hostname) for trust.
    public func handshake(with peer: String, reason: String? = nil) async throws -> TrustChange {
        try await send(TrustControl.Handshake(peer: peer, reason: reason))
    }

    /// Approves `peer`'s pending request.
    public func approve(_ peer: String) async throws -> TrustChange { try await send(TrustControl.Approve(peer: peer)) }

    /// Rejects `peer`'s pending request.
    public func reject(_ peer: String, reason: String? = nil) async throws -> TrustChange {
        try await send(TrustControl.Reject(peer: peer, reason: reason))
    }

    /// Revokes the trust of `peer`.
    public func untrust(_ peer: String) async throws -> TrustChange { try await send(TrustControl.Untrust(peer: peer)) }

    /// The trust requests waiting for an answer.
    public func pendingTrust() async throws -> [PendingTrust.Request] {
        try await allPages(TrustControl.Pending.self, rows: \.pending, next: \.next)
    }

    /// The nodes this identity trusts.
    public func trustedPeers() async throws -> [TrustedPeers.Peer] {
        try await allPages(TrustControl.Trusted.self, rows: \.trusted, next: \.next)
    }

    /// The rows of every page of a paged list, asked for one after another.
    private func allPages<Command: PagedListCommand, Row>(
        _ command: Command.Type, rows: KeyPath<Command.Reply, [Row]>, next: KeyPath<Command.Reply, Int64?>
    ) async throws -> [Row] {
        var all: [Row] = []
        var page = ListPage()
        while true {
            let reply = try await send(Command(page: page))
            all += reply[keyPath: rows]
            guard let after = reply[keyPath: next] else { return all }
            page = ListPage(after: after)
        }
    }

    // MARK: Networks

    /// The registry's networks, as it lists them.
    public func networks() async throws -> NetworkListing { try await send(NetworkControl.List()) }

    /// The members of network `id`, as the registry lists them.
    public func members(ofNetwork id: UInt16, adminToken: String? = nil) async throws -> NetworkMembers {
        try await send(NetworkControl.Members(networkID: id, adminToken: adminToken))
    }

    /// Joins network `id`, with its token if it has the token join rule.
    public func joinNetwork(_ id: UInt16, token: String? = nil) async throws -> NetworkChange {
        try await send(NetworkControl.Join(networkID: id, token: token))
    }

    /// Leaves network `id`.
    public func leaveNetwork(_ id: UInt16) async throws -> NetworkChange { try await send(NetworkControl.Leave(networkID: id)) }

    /// Creates a network with the registry's admin token; this identity is its first member.
    public func createNetwork(_ command: NetworkControl.Create) async throws -> NetworkChange { try await send(command) }

    /// Sends `data` to `port` of every other member of network `id`.
    public func broadcast(_ data: String, toNetwork id: UInt16, port: UInt16, adminToken: String? = nil) async throws -> BroadcastSent {
        try await send(NetworkControl.Broadcast(networkID: id, port: port, data: data, adminToken: adminToken))
    }

    // MARK: Messages and files

    /// Sends a message to `target`'s data-exchange port (1001) and returns its ACK.
    public func sendMessage(to target: String, _ data: String, type: MessageControl.MessageType? = nil) async throws -> MessageSent {
        try await send(MessageControl.SendMessage(target: target, data: data, type: type))
    }

    /// Hands the host one piece of a file for `sendFile` (pieces of at most `FileChunk.size`
    /// bytes, in base64), and returns how many bytes of the upload it holds.
    public func upload(_ piece: MessageControl.Upload) async throws -> UploadReceived { try await send(piece) }

    /// Sends the file held by upload `upload` as `name` to `target`'s data-exchange port (1001).
    public func sendFile(to target: String, name: String, upload: String) async throws -> FileSent {
        try await send(MessageControl.SendFile(target: target, file: name, upload: upload))
    }

    /// Uploads `contents` in pieces, then sends them as file `name` to `target`'s data-exchange
    /// port (1001).
    public func sendFile(to target: String, name: String, contents: [UInt8]) async throws -> FileSent {
        let upload = MessageControl.Upload.newID()
        for piece in MessageControl.Upload.pieces(of: contents, upload: upload) { _ = try await self.upload(piece) }
        return try await sendFile(to: target, name: name, upload: upload)
    }

    /// The messages that arrived, deleted afterwards if `clear`.
    public func inbox(clear: Bool = false) async throws -> [InboxListing.Message] {
        var messages: [InboxListing.Message] = []
        var after: Int64?
        repeat {
            // With clear, each page deletes what it listed, and the next starts after it.
            let page = try await send(MessageControl.Inbox(clear: clear, after: after))
            messages += page.messages
            after = page.next
        } while after != nil
        return messages
    }

    /// The whole of inbox message `message` (one listed `truncated` too), read in pieces.
    public func contents(of message: InboxListing.Message) async throws -> [UInt8] {
        guard message.truncated, let number = message.number else {
            return message.text.map { Array($0.utf8) } ?? message.base64.flatMap { try? Base64.decode($0) } ?? []
        }
        var bytes: [UInt8] = []
        while bytes.count < message.bytes {
            let chunk = try await send(MessageControl.InboxChunk(id: number, offset: bytes.count))
            guard let piece = try? Base64.decode(chunk.data), !piece.isEmpty else { break }
            bytes += piece
        }
        return bytes
    }

    /// The files that arrived, deleted afterwards if `clear`.
    public func receivedFiles(clear: Bool = false) async throws -> [ReceivedFiles.File] {
        var files: [ReceivedFiles.File] = []
        var page = ListPage()
        while true {
            // With clear, each page deletes what it listed, and the next starts after it.
            let reply = try await send(MessageControl.Received(clear: clear, page: page))
            files += reply.files
            guard let next = reply.next else { return files }
            page = ListPage(after: next)
        }
    }

    /// A piece of received file `id` from `offset` (empty past its end).
    public func receivedChunk(id: Int64, offset: Int) async throws -> FileChunk {
        try await send(MessageControl.ReceivedChunk(id: id, offset: offset))
    }

    /// Events on `topic` from `target`'s event stream (1002), until `count` or `timeout` seconds.
    public func subscribe(to target: String, topic: String, count: Int? = nil, timeout: Int? = nil) async throws -> EventsReceived {
        try await send(MessageControl.Subscribe(target: target, topic: topic, count: count, timeout: timeout))
    }

    /// Publishes `data` on `topic` to `target`'s event stream (1002).
    public func publish(_ data: String, topic: String, to target: String) async throws -> EventPublished {
        try await send(MessageControl.Publish(target: target, topic: topic, data: data))
    }

    // MARK: Streams and datagrams

    /// Times round trips to `target`'s echo port.
    public func ping(_ target: String, count: Int? = nil, timeout: Int? = nil) async throws -> PingReport {
        try await send(DataControl.Ping(target: target, count: count, timeout: timeout))
    }

    /// Streams `megabytes` MB through `target`'s echo port and times it.
    public func bench(_ target: String, megabytes: Int? = nil) async throws -> BenchReport {
        try await send(DataControl.Bench(target: target, megabytes: megabytes))
    }

    /// Opens a stream to `target`'s `port`, sends `data`, and returns the first answer.
    public func sendStream(to target: String, port: UInt16, _ data: String, timeout: Int? = nil) async throws -> StreamSent {
        try await send(DataControl.Send(target: target, port: port, data: data, timeout: timeout))
    }

    /// Accepts streams on this identity's `port` and returns what each sends first.
    public func receiveStreams(on port: UInt16, count: Int? = nil, timeout: Int? = nil) async throws -> PortArrivals {
        try await send(DataControl.Receive(port: port, count: count, timeout: timeout))
    }

    /// The datagrams that arrive on this identity's `port`.
    public func listen(on port: UInt16, count: Int? = nil, timeout: Int? = nil) async throws -> PortArrivals {
        try await send(DataControl.Listen(port: port, count: count, timeout: timeout))
    }

    /// Sends one datagram to `target`'s `port`.
    public func sendDatagram(to target: String, port: UInt16, _ data: String) async throws -> DatagramSent {
        try await send(DataControl.SendDatagram(target: target, port: port, data: data))
    }

    /// This identity's streams.
    public func connections() async throws -> [ConnectionList.Connection] {
        try await allPages(DataControl.Connections.self, rows: \.connections, next: \.next)
    }

    /// The nodes this identity has a tunnel with.
    public func peers() async throws -> [PeerList.Peer] { try await allPages(DataControl.Peers.self, rows: \.peers, next: \.next) }
}
