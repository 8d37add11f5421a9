import FoundationEssentials
import NIOConcurrencyHelpers
import PilotControl
import PilotNet
import NIOCore
import PilotWire

/// One connection to an identity's socket that speaks the 1.18 driver protocol (the official
/// pilotctl, the Python SDK, anything on libpilot): each request answered as the identity,
/// with the reference's reply (docs/PROTOCOL.md §12.2).
///
/// Requests come in order (`DriverSession`). What can take long answers from a task of its own:
/// a dial (up to 15 s), a handshake wait (up to 30 s), a registry question. The connection's
/// streams and bound ports are its own and end with it. Bounded: at most `streamLimit` streams
/// and `portLimit` bound ports per connection, and `slowLimit` slow requests under way.
final class IdentityDriverSession: DriverSession {
    static let streamLimit = 256
    static let portLimit = 64
    static let slowLimit = 16

    /// What `info` and `health` give as the version (1.18 gives its release).
    static let version = "pilot-host"

    private let commands: IdentityCommands
    private let peer: PeerCredentials
    private let connection: DriverConnection
    private let state = NIOLockedValueBox(State())

    private struct State {
        var streams: [UInt32: StreamHandle] = [:]
        var ports: Set<UInt16> = []
        var slow = 0
        var tasks: [UInt64: Task<Void, Never>] = [:]
        var nextTask: UInt64 = 0
        var datagrams: (id: UInt64, task: Task<Void, Never>)?
        var closed = false
    }

    init(commands: IdentityCommands, peer: PeerCredentials, connection: DriverConnection) {
        self.commands = commands
        self.peer = peer
        self.connection = connection
        // Datagrams no listen takes are pushed to every driver connection from its start (1.18's
        // RecvFrom): its `pilotctl listen` asks nothing and only reads them.
        listenForDatagrams()
    }

    private var name: String { commands.name }

    func handle(_ request: DriverRequest) async {
        switch request {
        case .info:
            await reply(.infoOK) { try await self.info() }
        case .health:
            await reply(.healthOK) { try await self.commands.health(connections: self.state.withLockedValue { $0.streams.count }) }
        case .handshake(let handshake):
            await handshakeRequest(handshake)
        case .resolveHostname(let hostname):
            slow(.resolveHostnameOK) { try await self.commands.answer(from: self.peer, .find(.init(hostname: hostname))) }
        case .setHostname(let hostname):
            await reply(.setHostnameOK) {
                try await self.commands.answer(from: self.peer, hostname.isEmpty ? .clearHostname(.init()) : .setHostname(.init(hostname: hostname)))
            }
        case .setTags(let tags):
            await reply(.setTagsOK) { try await self.commands.answer(from: self.peer, tags.isEmpty ? .clearTags(.init()) : .setTags(.init(tags: tags))) }
        case .setVisibility(let isPublic):
            await reply(.setVisibilityOK) { try await self.commands.answer(from: self.peer, isPublic ? .setPublic(.init()) : .setPrivate(.init())) }
        case .network(let request):
            await networkRequest(request)
        case let .broadcast(network, port, token, data):
            broadcast(network: network, port: port, token: token, data: data)
        case .setWebhook:
            // Nothing on pilot-host posts events to a URL: saying so beats taking a URL and
            // never calling it.
            await connection.send(DriverReply.error("set_webhook: webhooks are not available on pilot-host"))
        case .bind(let port):
            await bind(port)
        case .unbind(let port):
            await unbind(port)
        case let .dial(address, port):
            dial(address, port: port)
        case let .send(id, data):
            // In order, as the client wrote them; a stream that is gone drops them (1.18 never
            // answers a Send).
            guard let stream = state.withLockedValue({ $0.streams[id] }) else { return }
            do { try await stream.write(data) } catch { forget(id, notify: true) }
        case .close(let id):
            if let stream = state.withLockedValue({ $0.streams.removeValue(forKey: id) }) {
                try? await stream.close()
            } else if let identity = await commands.presence.joinedIdentity(name) {
                // Another client's stream of this identity, or one its services hold: 1.18's
                // `pilotctl disconnect ID` closes any of the daemon's connections.
                _ = await commands.presence.fabric.closeStream(of: identity.node, id: Int(id))
            }
            await connection.send(DriverReply.connection(.closeOK, id))
        case let .sendTo(address, port, data, confirm):
            await sendTo(address, port: port, data: data, confirm: confirm)
        case .cancel:
            cancelSlow()
        case .deregister:
            slow(.deregisterOK) { try await self.commands.answer(from: self.peer, .deregister(.init())) }
        case .rotateKey:
            slow(.rotateKeyOK) { try await self.commands.answer(from: self.peer, .rotateKey(.init())) }
        case .preferDirect(let node):
            slow(.preferDirectOK) { try await self.commands.answer(from: self.peer, .preferDirect(.init(peer: "\(node)"))) }
        case .other:
            await connection.send(DriverReply.error(Self.unsupported(request)))
        }
    }

    func closed() async {
        let (streams, tasks, datagrams, ports) = state.withLockedValue { state in
            state.closed = true
            defer { state.streams = [:]; state.tasks = [:]; state.datagrams = nil; state.ports = [] }
            return (Array(state.streams.values), Array(state.tasks.values), state.datagrams, state.ports)
        }
        for task in tasks { task.cancel() }
        datagrams?.task.cancel()
        if let datagrams { commands.dataCommands.datagrams.stopAll(name, subscriber: datagrams.id) }
        for stream in streams { try? await stream.close() }
        if let identity = try? await commands.presence.join(name) {
            for port in ports { try? await commands.presence.fabric.unlisten(node: identity.node, port: port) }
        }
    }

    // MARK: Replies

    /// Answers with `command` and `answer`'s JSON, or the driver's error reply with its failure.
    private func reply(_ command: DriverCommand, _ answer: () async throws -> JSON) async {
        do {
            await connection.send(DriverReply.json(command, try await answer()))
        } catch {
            await connection.send(DriverReply.error(Self.message(error)))
        }
    }

    /// As `reply`, from a task of its own (a registry question, a wait): the requests behind it
    /// go on. Beyond `slowLimit` under way, the error reply says to slow down.
    private func slow(_ command: DriverCommand, _ answer: @escaping @Sendable () async throws -> JSON) {
        startSlow(command) { await self.reply(command, answer) }
    }

    private func startSlow(_ command: DriverCommand, _ work: @escaping @Sendable () async -> Void) {
        // The task is made and recorded under the lock, so its own end (which takes the lock)
        // always comes after the record and removes it: a task that finished at once is not
        // left behind in `tasks`.
        let started = state.withLockedValue { state -> Bool in
            guard !state.closed, state.slow < Self.slowLimit else { return false }
            state.slow += 1
            state.nextTask += 1
            let id = state.nextTask
            state.tasks[id] = Task {
                await work()
                self.state.withLockedValue { state in
                    state.slow -= 1
                    state.tasks[id] = nil
                }
            }
            return true
        }
        if !started {
            _ = connection.offer(DriverReply.error("\(command.name): more than \(Self.slowLimit) requests under way on this connection"))
        }
    }

    /// Cancel (0x2B): what this connection has under way (dials, waits) ends, unanswered.
    private func cancelSlow() {
        let tasks = state.withLockedValue { state in defer { state.tasks = [:] }; return Array(state.tasks.values) }
        for task in tasks { task.cancel() }
    }

    static func message(_ error: any Error) -> String {
        switch error {
        case let failure as ControlFailure: return failure.message
        case let failure as PoolError: return AdminCommands.failure(failure).message
        default: return "\(error)"
        }
    }

    static func unsupported(_ request: DriverRequest) -> String {
        let command = request.frame().command
        let name = DriverCommand(rawValue: command)?.name ?? "0x" + (command < 16 ? "0" : "") + String(command, radix: 16, uppercase: true)
        return "\(name) is not available on a pilot-host identity socket"
    }

    // MARK: Record and health

    /// Info: the identity's, with this connection's streams and bound ports (and the
    /// identity's services) as `connections` and `ports`.
    private func info() async throws -> JSON {
        let (streams, bound) = state.withLockedValue { ($0.streams.count, $0.ports.count) }
        return .object(try await commands.referenceInfo(connections: streams, ports: await commands.presence.servicePorts.count + bound))
    }

    /// "host:port" of a socket address (IPv6 in brackets).
    static func hostPort(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port, let port = UInt16(exactly: port) else { return "\(address)" }
        return Endpoint(host: ip, port: port).description
    }

    // MARK: Trust

    private func handshakeRequest(_ request: DriverHandshake) async {
        switch request {
        case let .send(node, justification):
            slow(.handshakeOK) { try await self.commands.answer(from: self.peer, .handshake(.init(peer: "\(node)", reason: justification))) }
        case .approve(let node):
            slow(.handshakeOK) { try await self.commands.answer(from: self.peer, .approve(.init(peer: "\(node)"))) }
        case let .reject(node, reason):
            slow(.handshakeOK) { try await self.commands.answer(from: self.peer, .reject(.init(peer: "\(node)", reason: reason))) }
        case .pending:
            await reply(.handshakeOK) { try await self.commands.answer(from: self.peer, .pending(.init())) }
        case .trusted:
            await reply(.handshakeOK) { try await self.commands.answer(from: self.peer, .trusted(.init())) }
        case .revoke(let node):
            slow(.handshakeOK) { try await self.commands.answer(from: self.peer, .untrust(.init(peer: "\(node)"))) }
        case let .wait(node, milliseconds):
            // 1.18's reply: whether `node` is trusted, once it is or the wait (at most 30 s) is
            // over; the official pilotctl asks with 0 ms before every ping, send or dial, as a
            // check.
            let limit = Duration.milliseconds(min(Int64(milliseconds), 30_000))
            slow(.handshakeOK) {
                let deadline = ContinuousClock.now + limit
                while true {
                    let trusted = await self.commands.trust.trusted(self.name).trusted.contains { $0.nodeID == node }
                    if trusted || ContinuousClock.now >= deadline { return ["node_id": .integer(Int64(node)), "trusted": .bool(trusted)] }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        }
    }

    // MARK: Networks

    /// The registry's custom networks, as this identity: list, members, join (with the
    /// network's token) and leave are the JSON protocol's `network-*` commands; the registry's
    /// reply is passed on whole, as 1.18 passes it. Invitations are not served (pilot-rendezvous
    /// has open and token networks only), and say so.
    private func networkRequest(_ request: DriverNetworkRequest) async {
        let command: IdentitySocketCommand
        switch request {
        case .list: command = .networkList(.init())
        case .members(let network): command = .networkMembers(.init(networkID: network))
        case let .join(network, token): command = .networkJoin(.init(networkID: network, token: token))
        case .leave(let network): command = .networkLeave(.init(networkID: network))
        case .invite, .pollInvites, .respond:
            await connection.send(DriverReply.error(
                "network: invitations are not available on pilot-host: its networks are joined openly or with their token (network join)"))
            return
        }
        slow(.networkOK) { try await self.commands.answer(from: self.peer, command) }
    }

    /// 1.18's broadcast: with the host's admin token, a datagram to every other member of a
    /// custom network this identity belongs to; the empty 0x2A once sent, else the error reply
    /// starting `broadcast: ` as 1.18 words it.
    private func broadcast(network: UInt16, port: UInt16, token: [UInt8], data: [UInt8]) {
        startSlow(.broadcastOK) {
            do {
                guard let token = String(validating: token, as: UTF8.self) else {
                    throw ControlFailure(.invalidArgument, "broadcast: the admin token is not UTF-8")
                }
                _ = try await self.commands.dataCommands.broadcast(from: self.name, network: network, port: port, data: data, token: token)
                await self.connection.send(DriverFrame(.broadcastOK))
            } catch {
                let message = Self.message(error)
                await self.connection.send(DriverReply.error(message.hasPrefix("broadcast: ") ? message : "broadcast: \(message)"))
            }
        }
    }

    // MARK: Streams

    private func bind(_ port: UInt16) async {
        do {
            let identity = try await commands.presence.join(name)
            let fabric = commands.presence.fabric
            guard state.withLockedValue({ $0.ports.count < Self.portLimit }) else {
                throw ControlFailure(.unavailable, "bind: at most \(Self.portLimit) ports per connection")
            }
            guard try await !fabric.isListening(node: identity.node, port: port) else {
                throw ControlFailure(.alreadyExists, "bind: port \(port) of \(name) is in use")
            }
            try await fabric.listen(node: identity.node, port: port) { [weak self] stream in self?.accepted(stream, on: port) }
            state.withLockedValue { _ = $0.ports.insert(port) }
            await connection.send(DriverReply.port(.bindOK, port))
        } catch {
            await connection.send(DriverReply.error("bind: \(Self.message(error))"))
        }
    }

    private func unbind(_ port: UInt16) async {
        guard state.withLockedValue({ $0.ports.remove(port) }) != nil, let identity = try? await commands.presence.join(name) else {
            await connection.send(DriverReply.error("unbind: port \(port) is not bound on this connection"))
            return
        }
        try? await commands.presence.fabric.unlisten(node: identity.node, port: port)
        await connection.send(DriverReply.port(.unbindOK, port))
    }

    /// A stream accepted on a bound port: pushed as Accept, then read.
    private func accepted(_ stream: StreamHandle, on port: UInt16) {
        guard let id = register(stream) else {
            Task { try? await stream.close() }
            return
        }
        Task {
            await self.connection.send(DriverReply.accept(localPort: port, connection: id, remote: stream.key.remote, remotePort: stream.key.remotePort))
            await self.pump(stream, id: id)
        }
    }

    private func dial(_ address: Address, port: UInt16) {
        startSlow(.dialOK) {
            do {
                let stream = try await self.commands.presence.dial(from: self.name, to: address, port: port)
                guard let id = self.register(stream) else {
                    try? await stream.close()
                    throw ControlFailure(.unavailable, "dial: at most \(Self.streamLimit) streams per connection")
                }
                await self.connection.send(DriverReply.connection(.dialOK, id))
                await self.pump(stream, id: id)
            } catch {
                await self.connection.send(DriverReply.error("dial: \(Self.message(error))"))
            }
        }
    }

    private func register(_ stream: StreamHandle) -> UInt32? {
        state.withLockedValue { state in
            // The fabric's number of the stream, as `connections` lists it (1.18's connection
            // ids are the daemon's, not the client's).
            guard !state.closed, state.streams.count < Self.streamLimit, let id = UInt32(exactly: stream.id), id != 0 else { return nil }
            state.streams[id] = stream
            return id
        }
    }

    /// Stream `id`'s data as Recv pushes, in order, at the pace the client reads them; its end
    /// as the close push.
    private func pump(_ stream: StreamHandle, id: UInt32) async {
        for await event in stream.events {
            guard case .data(let bytes) = event else { break }
            guard await connection.send(DriverReply.recv(connection: id, data: bytes)) else { break }
        }
        forget(id, notify: true)
    }

    private func forget(_ id: UInt32, notify: Bool) {
        guard state.withLockedValue({ $0.streams.removeValue(forKey: id) }) != nil else { return }
        if notify { _ = connection.offer(DriverReply.connection(.closeOK, id)) }
    }

    // MARK: Datagrams

    private func sendTo(_ address: Address, port: UInt16, data: [UInt8], confirm: Bool) async {
        do {
            _ = try await commands.dataCommands.sendDatagram(from: name, to: address, port: port, data: data)
            if confirm { await connection.send(DriverFrame(.sendToConfirmOK)) }
        } catch {
            if confirm { await connection.send(DriverReply.error("sendto: \(Self.message(error))")) }
        }
    }

    /// Datagrams to this identity that no `listen` takes are pushed to this connection
    /// (RecvFrom), dropped when the client is behind.
    private func listenForDatagrams() {
        guard state.withLockedValue({ $0.datagrams == nil && !$0.closed }) else { return }
        let (id, packets) = commands.dataCommands.datagrams.listenAll(name)
        let task = Task {
            for await packet in packets {
                _ = self.connection.offer(DriverReply.recvFrom(
                    source: packet.source, sourcePort: packet.sourcePort, destinationPort: packet.destinationPort, data: packet.payload))
            }
        }
        state.withLockedValue { $0.datagrams = (id, task) }
    }
}
