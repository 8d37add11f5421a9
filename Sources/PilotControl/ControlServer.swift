import FoundationEssentials
public import Glibc
public import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix
public import PilotWire

/// A control socket: a Unix stream socket whose every connection is judged by the kernel-reported
/// credentials of its peer before a byte of it is read.
///
/// A refused peer gets one error frame (`permission_denied`, naming its uid) and the connection is
/// closed; the refusal is logged with the peer's uid and pid. An admitted peer's requests are
/// answered one at a time, in order; each goes to `handler` with the peer's credentials, after
/// the policy is asked again.
public final class ControlServer: Sendable {
    public typealias Handler = @Sendable (PeerCredentials, ControlRequest) async -> ControlReply

    public let path: String
    private let policy: @Sendable () -> AccessPolicy
    private let handler: Handler
    private let logger: Logger
    /// The listener set serving this socket, and whether this server made it (and ends it).
    private let listeners: NIOLockedValueBox<(set: ControlListeners, owned: Bool)?> = NIOLockedValueBox(nil)
    /// A connection that sends nothing for this long is closed (a silent client holds nothing
    /// else up, but should not hold a descriptor forever).
    public let idleTimeout: TimeAmount

    /// `policy` is asked at every accept and before every request, so a change of owner applies
    /// to connections already open.
    public init(
        path: String, policy: @escaping @Sendable () -> AccessPolicy, idleTimeout: TimeAmount = .minutes(10),
        logger: Logger, handler: @escaping Handler
    ) {
        self.idleTimeout = idleTimeout
        self.path = path
        self.policy = policy
        self.handler = handler
        self.logger = logger
    }

    /// Binds `path` (a stale socket file is replaced) with `mode`, `owner` and `group`, and
    /// serves it from `listeners`, the set shared by all of a host's sockets.
    public func start(on listeners: ControlListeners, mode: Glibc.mode_t = 0o600, owner: Glibc.uid_t? = nil, group: Glibc.gid_t? = nil) throws {
        try listeners.listen(
            path: path, mode: mode, owner: owner, group: group, idleTimeout: idleTimeout, policy: policy, handler: handler)
        self.listeners.withLockedValue { $0 = (listeners, false) }
    }

    /// Binds `path` with `mode` and serves it from a listener set of its own, held to `limits`.
    public func start(on group: any EventLoopGroup, mode: Glibc.mode_t = 0o600, limits: ConnectionLimits = ConnectionLimits()) throws {
        let own = try ControlListeners(group: group, limits: limits, logger: logger)
        do {
            try own.listen(path: path, mode: mode, idleTimeout: idleTimeout, policy: policy, handler: handler)
        } catch {
            own.shutdown()
            throw error
        }
        listeners.withLockedValue { $0 = (own, true) }
    }

    /// Stops accepting and removes the socket file.
    public func stop() {
        guard let (set, owned) = listeners.withLockedValue({ value in defer { value = nil }; return value }) else { return }
        set.close(path: path)
        if owned { set.shutdown() }
    }
}

/// One admitted connection: answers its requests in order, one at a time.
///
/// The peer's credentials were read and judged when the connection was accepted; `policy` is
/// asked again before every request, so a connection opened for an identity that has since been
/// deleted, or given to another owner, gets nothing more. What a connection may have waiting is
/// bounded (`ConnectionLimits.queuedRequests`, `.queuedBytes`): past it the handler stops reading,
/// and the client's writes block in its socket, as with TCP. When the client goes, its queued
/// requests are dropped and the one being answered is cancelled.
final class ControlConnectionHandler: ChannelDuplexHandler, @unchecked Sendable {
    // @unchecked: state is touched only on the channel's event loop.
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let peer: PeerCredentials
    private let policy: @Sendable () -> AccessPolicy
    private let handler: ControlServer.Handler
    private let logger: Logger
    private var decoder = LengthPrefixedFrames.Decoder(maxSize: ControlFrame.maxSize, field: "control request")
    private var queue: RequestQueue<[UInt8]>
    /// The request being answered, cancelled if the client goes.
    private var inFlight: Task<Void, Never>?
    private var closing = false
    /// The client shut its write side: answer what it sent, then close.
    private var inputEnded = false

    init(
        peer: PeerCredentials, policy: @escaping @Sendable () -> AccessPolicy, handler: @escaping ControlServer.Handler,
        limits: ConnectionLimits, logger: Logger
    ) {
        self.peer = peer
        self.policy = policy
        self.handler = handler
        self.logger = logger
        queue = RequestQueue(limits: limits)
    }

    func read(context: ChannelHandlerContext) {
        queue.read(context, buffered: decoder.bufferedCount, closing: closing)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        decoder.append(unwrapInboundIn(data).readableBytesView)
        do {
            while let body = try decoder.next() {
                queue.append(body, size: body.count)
            }
        } catch {
            refuse(context, ControlFailure(.invalidArgument, "malformed frame: \(error)"))
            return
        }
        serveNext(context)
    }

    private func serveNext(_ context: ChannelHandlerContext) {
        guard inFlight == nil, !closing else { return }
        guard let body = queue.next() else {
            if inputEnded { context.close(promise: nil) }
            queue.resume(context, buffered: decoder.bufferedCount)
            return
        }
        queue.resume(context, buffered: decoder.bufferedCount)
        // Rights are judged at every request, not only at accept.
        if case .failure(let denied) = policy().decide(peer) {
            logger.warning(
                "control request refused", metadata: ["uid": "\(peer.uid)", "pid": "\(peer.pid)", "target": "\(denied.target)"])
            refuse(context, ControlFailure(.permissionDenied, denied.description))
            return
        }
        let request: ControlRequest
        do {
            request = try ControlRequest(decoding: body)
        } catch {
            write(context, .error(ControlFailure(.invalidArgument, "malformed request: \(error)")))
            serveNext(context)
            return
        }
        let (handler, peer) = (handler, peer)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let loop = context.eventLoop
        inFlight = Task {
            let reply = await handler(peer, request)
            loop.execute {
                let (connection, context) = bound.value
                guard connection.inFlight != nil else { return }
                connection.inFlight = nil
                connection.write(context, reply)
                connection.serveNext(context)
            }
        }
    }

    private func write(_ context: ChannelHandlerContext, _ reply: ControlReply) {
        let bytes = (try? reply.encoded())
            ?? (try? ControlReply.error(ControlFailure(.internalError, "reply too large")).encoded()) ?? []
        ConnectionEnd.write(bytes, on: context)
    }

    /// One error frame, then close (`ConnectionEnd.sendLast`).
    private func refuse(_ context: ChannelHandlerContext, _ failure: ControlFailure) {
        closing = true
        dropQueue()
        ConnectionEnd.sendLast((try? ControlReply.error(failure).encoded()) ?? [], on: context)
    }

    /// Queued requests go, and the one being answered is cancelled: nothing is held for a
    /// client that cannot read the answers.
    private func dropQueue() {
        queue.removeAll()
        inFlight?.cancel()
        inFlight = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        dropQueue()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            // Silent for too long: close, but never while a request is being answered.
            if inFlight == nil { context.close(promise: nil) }
            return
        }
        if let event = event as? ChannelEvent, event == .inputClosed {
            if closing {
                // The client finished sending after a refusal: nothing left to wait for.
                context.close(promise: nil)
            } else if decoder.bufferedCount > 0 {
                refuse(context, ControlFailure(
                    .invalidArgument, "truncated frame: the client stopped sending after \(decoder.bufferedCount) bytes of a frame"))
            } else {
                // Answer every request already received, then close.
                inputEnded = true
                serveNext(context)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
