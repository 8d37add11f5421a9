public import NIOCore
import NIOPosix
import NIOSSL
import PilotCrypto
public import PilotMetrics
public import PilotWire

/// One registry connection shared by every identity of the host.
///
/// The registry protocol has no request ids: replies come back in request order, so each request
/// carries a promise that the next reply fulfils. `send(batch:)` uses pilot-rendezvous's `batch`
/// extension and falls back to one request per item against a registry that does not know it
/// (the official one), remembering the answer. A broken connection is re-dialled once per request.
/// With `tls`, the connection is TLS, the certificate pinned by its SHA-256 or checked against
/// the system's trust roots.
///
/// Several registries (instances of one overlay, on one database) are tried in turn: the
/// connection goes to the first that answers, and when it breaks or a reply is late
/// (`replyTimeout`), to the next. `whenSwitched` hears of each move, so the identities can
/// register again there.
public actor RegistryClient {
    /// How the registry's TLS certificate is checked.
    public struct TLS: Sendable, Equatable {
        /// SHA-256 of the certificate's DER (as 1.18's `-registry-fingerprint`): that certificate
        /// and no other, self-signed or not. Nil: the system's trust roots and the host name.
        public var fingerprint: [UInt8]?

        public init(fingerprint: [UInt8]? = nil) { self.fingerprint = fingerprint }
    }

    /// The registries, in the order they are tried.
    public let targets: [Endpoint]
    /// The one in use, or tried first next.
    private var current = 0
    /// Which of `targets` `channel` goes to, or the last connection went to.
    private var channelTarget = 0
    /// Whether a connection was ever made: a move before the first is no switch.
    private var everConnected = false
    private var switched: (@Sendable (Endpoint) async -> Void)?
    /// A request whose reply takes longer than this fails, and its connection is dropped.
    private let replyTimeout: TimeAmount
    private let group: any EventLoopGroup
    private var channel: (any Channel)?
    /// The connect under way: concurrent requests wait for this one instead of each dialling
    /// (and all but the last connection leaking). Numbered, so that whichever of its waiters
    /// resumes first clears it, and only it.
    private var connecting: (number: Int, task: Task<(any Channel, Int), any Error>)?
    private var connects = 0
    /// nil until a batch was tried; then whether the registry understood it.
    public private(set) var supportsBatch: Bool?
    /// The registry's host credential, sent with every batch: this host's new identities are
    /// then not held to the registry's budget for new keys from strangers.
    private let credential: String?
    /// Nil: plain TCP.
    private let tls: TLS?
    /// Where each request is counted and timed; nil: nowhere.
    private let metrics: RegistryRequestMetrics?
    /// Whether a small batch is out; those asked for meanwhile wait in `joining` and go
    /// together when it is back: the registry commits each batch once, so identities created
    /// and deleted at once share its fsyncs instead of queueing for one each.
    private var smallBatchOut = false
    private var joining: [(requests: [RegistryMessage], reply: CheckedContinuation<[RegistryMessage], any Error>)] = []
    /// Batches of up to this many requests go together (heartbeats of a whole host are larger,
    /// and go at once).
    static let joinable = 64

    public init(
        host: String, port: Int, group: any EventLoopGroup, credential: String? = nil, tls: TLS? = nil, metrics: RegistryRequestMetrics? = nil
    ) {
        self.init(targets: [Endpoint(host: host, port: UInt16(clamping: port))], group: group, credential: credential, tls: tls, metrics: metrics)
    }

    /// A client of the registries `targets` (at least one), tried in that order.
    public init(
        targets: [Endpoint], group: any EventLoopGroup, credential: String? = nil, tls: TLS? = nil,
        replyTimeout: TimeAmount = .seconds(15), metrics: RegistryRequestMetrics? = nil
    ) {
        precondition(!targets.isEmpty, "a registry client needs a registry")
        self.targets = targets
        self.group = group
        self.credential = credential
        self.tls = tls
        self.replyTimeout = replyTimeout
        self.metrics = metrics
    }

    /// The registry in use (or to be tried first).
    public var inUse: Endpoint { targets[current] }

    /// `handler` runs after each move to another registry than the one used before.
    public func whenSwitched(_ handler: @escaping @Sendable (Endpoint) async -> Void) { switched = handler }

    /// Sends one request and returns its reply (which may be `{"type":"error",...}`). A batch
    /// is counted once, as `batch`, and its requests each by type (`RegistryRequestMetrics`).
    public func send(_ request: RegistryMessage) async throws -> RegistryMessage {
        let start = NIODeadline.now()
        do {
            let reply = try await sendRetrying(request)
            metrics?.record(request, RegistryRequestMetrics.outcome(of: reply), nanoseconds: (NIODeadline.now() - start).nanoseconds, reply: reply)
            return reply
        } catch {
            metrics?.record(request, .failed, nanoseconds: (NIODeadline.now() - start).nanoseconds)
            throw error
        }
    }

    private func sendRetrying(_ request: RegistryMessage) async throws -> RegistryMessage {
        // One retry on a fresh connection: the registry may have restarted; with several, one
        // try at each. Only the connection this request used is dropped, not one a concurrent
        // request has just made. A connect that failed has tried every registry already.
        var attempt = 1
        while true {
            var used: (any Channel)?
            do {
                let channel = try await connected()
                used = channel
                return try await exchange(request, on: channel)
            } catch {
                if let used { await drop(used) }
                guard attempt < max(2, targets.count), used != nil || attempt == 1 else { throw error }
                attempt += 1
            }
        }
    }

    /// Sends many register / heartbeat / poll_handshakes / set_* / deregister requests, in one
    /// round trip per 1000 where the registry supports batches (with the host credential, if
    /// any); replies in request order. A small batch asked for while another is out waits for
    /// it and goes with the others that waited (`joining`).
    public func send(batch requests: [RegistryMessage]) async throws -> [RegistryMessage] {
        guard supportsBatch == true, !requests.isEmpty, requests.count <= Self.joinable else { return try await sendNow(batch: requests) }
        if smallBatchOut {
            return try await withCheckedThrowingContinuation { joining.append((requests, $0)) }
        }
        smallBatchOut = true
        defer { sendJoining() }
        return try await sendNow(batch: requests)
    }

    /// Sends what waited in `joining` as one batch, and gives each waiter its replies; then
    /// again for what waited meanwhile, until nothing did.
    private func sendJoining() {
        guard !joining.isEmpty else {
            smallBatchOut = false
            return
        }
        let waiting = joining
        joining = []
        Task {
            do {
                let replies = try await sendNow(batch: waiting.flatMap(\.requests))
                var start = 0
                for waiter in waiting {
                    waiter.reply.resume(returning: Array(replies[start..<start + waiter.requests.count]))
                    start += waiter.requests.count
                }
            } catch {
                for waiter in waiting { waiter.reply.resume(throwing: error) }
            }
            sendJoining()
        }
    }

    private func sendNow(batch requests: [RegistryMessage]) async throws -> [RegistryMessage] {
        if supportsBatch != false, !requests.isEmpty {
            var replies: [RegistryMessage] = []
            for start in stride(from: 0, to: requests.count, by: 1000) {
                let chunk = requests[start..<min(start + 1000, requests.count)]
                var fields: [String: JSON] = ["requests": .array(chunk.map(\.json))]
                if let credential { fields["credential"] = .string(credential) }
                let reply = try await send(RegistryMessage(type: "batch", fields))
                if reply.type == "error", reply["error"]?.stringValue?.contains("unknown type") == true, start == 0 {
                    supportsBatch = false
                    break
                }
                if reply.type == "error", let reason = reply["error"]?.stringValue {
                    throw RegistryClientError("registry refused the batch: \(reason)")
                }
                guard reply.type == "batch_ok", let items = reply["replies"]?.arrayValue, items.count == chunk.count else {
                    throw RegistryClientError("malformed batch reply: \(reply.json.encodedString().prefix(200))")
                }
                supportsBatch = true
                for item in items { replies.append(try RegistryMessage(json: item)) }
            }
            if supportsBatch == true { return replies }
        }
        var replies: [RegistryMessage] = []
        for request in requests { replies.append(try await send(request)) }
        return replies
    }

    public func disconnect() async {
        // A connect under way would otherwise leave its connection open behind us.
        if let connecting, let pending = try? await connecting.task.value { try? await pending.0.close() }
        if let channel { try? await channel.close() }
        channel = nil
    }

    /// Closes `failed`, and forgets it if it is still the connection in use; the next connect
    /// tries the next registry first (requests that failed together move once).
    private func drop(_ failed: any Channel) async {
        if channel === failed {
            channel = nil
            current = (channelTarget + 1) % targets.count
        }
        try? await failed.close()
    }

    private func exchange(_ request: RegistryMessage, on channel: any Channel) async throws -> RegistryMessage {
        let bytes = try RegistryFrame.encode(request)
        let promise = channel.eventLoop.makePromise(of: RegistryMessage.self)
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        // A write to a connection already gone never reaches the handler: its failure is the answer.
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { promise.fail($0) }
        // A registry that holds the connection but does not answer (stopped, overloaded) is
        // left like one that closed it.
        let timeout = channel.eventLoop.scheduleTask(in: replyTimeout) { [replyTimeout] in
            promise.fail(RegistryClientError("no reply from the registry within \(replyTimeout.nanoseconds / 1_000_000_000) s"))
            channel.close(promise: nil)
        }
        promise.futureResult.whenComplete { _ in timeout.cancel() }
        channel.writeAndFlush(RegistryClientHandler.Outbound(frame: buffer, reply: promise), promise: written)
        return try await promise.futureResult.get()
    }

    private func connected() async throws -> any Channel {
        if let channel, channel.isActive { return channel }
        let (number, task): (Int, Task<(any Channel, Int), any Error>)
        if let connecting {
            (number, task) = connecting
        } else {
            connects += 1
            (number, task) = (connects, Task { [group, targets, current, tls] in try await Self.connect(group: group, targets: targets, from: current, tls: tls) })
            connecting = (number, task)
        }
        // The first waiter to resume, the dialler or not, ends this connect: a failed one is not
        // handed to the next request's retry.
        defer { if connecting?.number == number { connecting = nil } }
        let (channel, index) = try await task.value
        if self.channel !== channel, connecting?.number == number {
            self.channel = channel
            let moved = everConnected && index != channelTarget
            channelTarget = index
            current = index
            everConnected = true
            if moved, let switched { Task { await switched(targets[index]) } }
        }
        return channel
    }

    /// A connection to the first of `targets`, from `from` on and around, that accepts one, and
    /// its index; with several, each has 2 s to answer, not 5.
    private static func connect(group: any EventLoopGroup, targets: [Endpoint], from: Int, tls: TLS?) async throws -> (any Channel, Int) {
        var failures: [String] = []
        for step in 0..<targets.count {
            let index = (from + step) % targets.count
            do {
                return (try await connect(group: group, host: targets[index].host, port: Int(targets[index].port), tls: tls,
                                          timeout: .seconds(targets.count > 1 ? 2 : 5)), index)
            } catch {
                if targets.count == 1 { throw error }
                failures.append("\(targets[index]): \(error)")
            }
        }
        throw RegistryClientError("no registry answers: \(failures.joined(separator: "; "))")
    }

    private static func connect(group: any EventLoopGroup, host: String, port: Int, tls: TLS?, timeout: TimeAmount) async throws -> any Channel {
        let context = try tls.map { tls in
            var configuration = TLSConfiguration.makeClientConfiguration()
            // A pinned certificate names no host: the pin is the whole check.
            if tls.fingerprint != nil { configuration.certificateVerification = .noHostnameVerification }
            return try NIOSSLContext(configuration: configuration)
        }
        return try await ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(try Self.tlsHandler(context, host: host, pinned: tls?.fingerprint))
                    }
                    try channel.pipeline.syncOperations.addHandler(RegistryClientHandler())
                }
            }
            .connect(host: host, port: port).get()
    }

    /// A pinned certificate is the whole check (pilot-rendezvous's own is self-signed, for no
    /// host name); otherwise the usual one, with the host name when `host` is one.
    private static func tlsHandler(_ context: NIOSSLContext, host: String, pinned: [UInt8]?) throws -> NIOSSLClientHandler {
        guard let pinned else {
            let isAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
            return try NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : host)
        }
        return try NIOSSLClientHandler(context: context, serverHostname: nil) { certificates, promise in
            let leaf = certificates.first.flatMap { try? $0.toDERBytes() }
            let matches = leaf.map { Sodium.constantTimeEqual(Sodium.sha256($0), pinned) } ?? false
            promise.succeed(matches ? .certificateVerified : .failed)
        }
    }
}

/// Pairs each written request with the next reply; fails every waiting request when the
/// connection breaks.
final class RegistryClientHandler: ChannelDuplexHandler, @unchecked Sendable {
    // @unchecked: all state is used on the channel's event loop only.
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = Outbound
    typealias OutboundOut = ByteBuffer

    struct Outbound {
        var frame: ByteBuffer
        var reply: EventLoopPromise<RegistryMessage>
    }

    private var waiting: [EventLoopPromise<RegistryMessage>] = []
    private var decoder = RegistryFrameDecoder()
    private var closed = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let outbound = unwrapOutboundIn(data)
        // A request written after the connection went (a TLS handshake refused at once) would
        // otherwise wait for a reply forever.
        guard !closed else {
            let error = RegistryClientError("registry connection closed")
            outbound.reply.fail(error)
            promise?.fail(error)
            return
        }
        waiting.append(outbound.reply)
        let written = context.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenComplete { [self] result in
            promise?.completeWith(result)
            guard case .failure(let error) = result,
                let index = waiting.firstIndex(where: { $0.futureResult === outbound.reply.futureResult })
            else { return }
            waiting.remove(at: index).fail(error)
        }
        context.write(wrapOutboundOut(outbound.frame), promise: written)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        decoder.append(unwrapInboundIn(data).readableBytesView)
        do {
            while let event = try decoder.next() {
                guard !waiting.isEmpty else { continue }  // an unasked-for reply: ignore it
                let promise = waiting.removeFirst()
                switch event {
                case .message(let reply): promise.succeed(reply)
                case .malformed(let error): promise.fail(RegistryClientError("malformed registry reply: \(error)"))
                case .binaryModeRequested: promise.fail(RegistryClientError("registry answered in binary mode"))
                }
            }
        } catch {
            failAll(RegistryClientError("registry stream broken: \(error)"))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        failAll(RegistryClientError("registry closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: any Error) {
        let promises = waiting
        waiting.removeAll()
        for promise in promises { promise.fail(error) }
    }
}

public struct RegistryClientError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
