import Foundation
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
/// closed; the refusal is logged with the peer's uid and pid. An admitted peer sends requests one
/// at a time; each goes to `handler` with the peer's credentials.
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

    /// `policy` is asked at every accept, so a change of owner applies to the next connection.
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

    /// Binds `path` with `mode` and serves it from a listener set of its own.
    public func start(on group: any EventLoopGroup, mode: Glibc.mode_t = 0o600) throws {
        let own = try ControlListeners(group: group, logger: logger)
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

/// One connection: waits for the peer's credentials, judges them, then answers requests in order.
final class ControlConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: state is touched only on the channel's event loop.
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let policy: @Sendable () -> AccessPolicy
    private let handler: ControlServer.Handler
    private let logger: Logger
    private var peer: PeerCredentials?
    private var decoder = LengthPrefixedFrames.Decoder(maxSize: ControlFrame.maxSize, field: "control request")
    private var queue: [[UInt8]] = []
    private var busy = false
    private var closing = false
    /// The client shut its write side: answer what it sent, then close.
    private var inputEnded = false

    init(policy: @escaping @Sendable () -> AccessPolicy, handler: @escaping ControlServer.Handler, logger: Logger) {
        self.policy = policy
        self.handler = handler
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        PeerCredentials.of(context.channel).whenComplete { result in
            let (handler, context) = bound.value
            switch result {
            case .success(let peer):
                switch handler.policy().decide(peer) {
                case .success:
                    handler.peer = peer
                    handler.serveNext(context)
                case .failure(let denied):
                    handler.logger.warning(
                        "control connection refused",
                        metadata: ["uid": "\(peer.uid)", "pid": "\(peer.pid)", "target": "\(denied.target)"])
                    handler.refuse(context, ControlFailure(.permissionDenied, denied.description))
                }
            case .failure(let error):
                handler.refuse(context, ControlFailure(.permissionDenied, "cannot identify the peer: \(error)"))
            }
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        decoder.append(unwrapInboundIn(data).readableBytesView)
        do {
            while let body = try decoder.next() { queue.append(body) }
        } catch {
            refuse(context, ControlFailure(.invalidArgument, "malformed frame: \(error)"))
            return
        }
        serveNext(context)
    }

    private func serveNext(_ context: ChannelHandlerContext) {
        guard let peer, !busy, !closing else { return }
        guard !queue.isEmpty else {
            if inputEnded { context.close(promise: nil) }
            return
        }
        let body = queue.removeFirst()
        let request: ControlRequest
        do {
            request = try ControlRequest(decoding: body)
        } catch {
            write(context, .error(ControlFailure(.invalidArgument, "malformed request: \(error)")))
            serveNext(context)
            return
        }
        busy = true
        let handler = handler
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let promise = context.eventLoop.makePromise(of: ControlReply.self)
        promise.completeWithTask { await handler(peer, request) }
        promise.futureResult.whenSuccess { reply in
            let (connection, context) = bound.value
            connection.busy = false
            connection.write(context, reply)
            connection.serveNext(context)
        }
    }

    private func write(_ context: ChannelHandlerContext, _ reply: ControlReply) {
        let bytes = (try? reply.encoded())
            ?? (try? ControlReply.error(ControlFailure(.internalError, "reply too large")).encoded()) ?? []
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    /// One error frame, then close. The write side is shut first and whatever the client still
    /// sends is read and dropped for a moment: closing with unread input would make the kernel
    /// answer with a reset, and the client could lose the error frame.
    private func refuse(_ context: ChannelHandlerContext, _ failure: ControlFailure) {
        closing = true
        queue.removeAll()
        let bytes = (try? ControlReply.error(failure).encoded()) ?? []
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in
            let context = bound.value
            context.close(mode: .output, promise: nil)
            context.eventLoop.scheduleTask(in: .seconds(2)) { bound.value.close(promise: nil) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            // Silent for too long: close, but never while a request is being answered.
            if !busy { context.close(promise: nil) }
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
