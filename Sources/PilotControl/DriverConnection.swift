import Logging
import NIOConcurrencyHelpers
import NIOCore
public import PilotWire

/// What serves the 1.18 driver protocol (docs/PROTOCOL.md §12.2) on one connection of a control
/// socket: the official `pilotctl`, the Python SDK and everything built on libpilot speak it.
///
/// Requests come to `handle` one at a time, in the order they arrived, after the socket's
/// policy has admitted the peer again; a request that takes long (a handshake wait, a dial)
/// answers from a task of its own, so the requests behind it are not held up. Replies and
/// pushes go out through the `DriverConnection` the session was made with.
public protocol DriverSession: Sendable {
    func handle(_ request: DriverRequest) async
    /// The connection is gone: whatever the session holds for it (bound ports, streams) goes.
    func closed() async
}

/// Makes the session of a new driver connection from `peer`.
public typealias DriverSessionFactory = @Sendable (PeerCredentials, DriverConnection) -> any DriverSession

/// The write side of one driver connection, for its session: replies, and pushes (accepted
/// streams, stream data, datagrams).
///
/// What the client has not read yet is bounded: `send` waits while more than
/// `DriverConnection.highWater` bytes are queued for it (so a stream the client reads slowly is
/// read slowly from the network too), and `offer`, for what may be lost (a datagram), drops
/// instead of waiting.
public final class DriverConnection: Sendable {
    /// Bytes queued for the client past which `send` waits and `offer` drops.
    public static let highWater = 1 << 20
    /// Bytes queued below which waiting senders go on.
    public static let lowWater = 256 << 10

    private let channel: any Channel
    private let state = NIOLockedValueBox(State())

    private struct State {
        var waiting: [CheckedContinuation<Bool, Never>] = []
        var closed = false
        var dropped = 0
    }

    init(channel: any Channel) {
        self.channel = channel
    }

    /// Sends `frame`, waiting while the client is behind; false once the connection is closed.
    @discardableResult
    public func send(_ frame: DriverFrame) async -> Bool {
        while !channel.isWritable {
            let open = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let resumeNow = state.withLockedValue { state -> Bool? in
                    if state.closed { return false }
                    if channel.isWritable { return true }
                    state.waiting.append(continuation)
                    return nil
                }
                if let resumeNow { continuation.resume(returning: resumeNow) }
            }
            guard open else { return false }
        }
        guard !state.withLockedValue({ $0.closed }) else { return false }
        write(frame)
        return true
    }

    /// Sends `frame` unless the client is behind; false (and counted) when dropped.
    @discardableResult
    public func offer(_ frame: DriverFrame) -> Bool {
        guard channel.isWritable, !state.withLockedValue({ $0.closed }) else {
            state.withLockedValue { $0.dropped += 1 }
            return false
        }
        write(frame)
        return true
    }

    /// Frames `offer` dropped so far.
    public var dropped: Int { state.withLockedValue { $0.dropped } }

    /// Closes the connection.
    public func close() {
        channel.close(promise: nil)
    }

    private func write(_ frame: DriverFrame) {
        let bytes = frame.encoded()
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        channel.writeAndFlush(buffer, promise: nil)
    }

    /// The channel became writable again, or closed: waiting senders go on.
    func wake(closed: Bool) {
        let waiting = state.withLockedValue { state -> [CheckedContinuation<Bool, Never>] in
            if closed { state.closed = true }
            defer { state.waiting = [] }
            return state.waiting
        }
        for continuation in waiting { continuation.resume(returning: !closed) }
    }
}

/// One admitted connection that speaks the driver protocol: decodes its frames, checks the
/// peer's rights before each request, and hands the requests to its session in order.
///
/// What may wait unanswered is bounded as for the JSON protocol (`ConnectionLimits`): past it
/// the handler stops reading, and the client's writes block in its socket. A frame that cannot
/// be a frame (length 0 or over 1 MiB) gets the driver's error reply and the connection is
/// closed; a request that cannot be decoded (an unknown command, a short payload) gets the
/// error reply and the connection goes on, as 1.18 does.
final class DriverConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler, @unchecked Sendable {
    // @unchecked: state is touched only on the channel's event loop.
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let peer: PeerCredentials
    private let policy: @Sendable () -> AccessPolicy
    /// Nil on a socket that serves no driver session (the admin socket): every driver request
    /// there gets `refusal` as its error reply, and the connection is closed.
    private let factory: DriverSessionFactory?
    private let refusal: String
    private let logger: Logger
    private var decoder = DriverFrameDecoder()
    private var queue: RequestQueue<DriverFrame>
    private var connection: DriverConnection?
    private var session: (any DriverSession)?
    private var serving = false
    private var closing = false

    init(
        peer: PeerCredentials, policy: @escaping @Sendable () -> AccessPolicy, factory: DriverSessionFactory?, refusal: String,
        limits: ConnectionLimits, logger: Logger
    ) {
        self.peer = peer
        self.policy = policy
        self.factory = factory
        self.refusal = refusal
        self.logger = logger
        queue = RequestQueue(limits: limits)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        context.channel.setOption(
            ChannelOptions.writeBufferWaterMark,
            value: ChannelOptions.Types.WriteBufferWaterMark(low: DriverConnection.lowWater, high: DriverConnection.highWater)
        ).whenComplete { _ in }
        guard let factory else { return }
        let connection = DriverConnection(channel: context.channel)
        self.connection = connection
        session = factory(peer, connection)
    }

    func read(context: ChannelHandlerContext) {
        queue.read(context, buffered: decoder.bufferedCount, closing: closing)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        decoder.append(unwrapInboundIn(data).readableBytesView)
        do {
            while let frame = try decoder.next() {
                queue.append(frame, size: frame.payload.count)
            }
        } catch {
            refuse(context, "malformed frame: \(error)")
            return
        }
        serveNext(context)
    }

    private func serveNext(_ context: ChannelHandlerContext) {
        guard !serving, !closing else { return }
        guard let frame = queue.next() else {
            queue.resume(context, buffered: decoder.bufferedCount)
            return
        }
        queue.resume(context, buffered: decoder.bufferedCount)
        // Rights are judged at every request, not only at accept.
        if case .failure(let denied) = policy().decide(peer) {
            logger.warning(
                "control request refused", metadata: [
                    "uid": "\(peer.uid)", "pid": "\(peer.pid)", "target": "\(denied.target)", "protocol": "driver"])
            refuse(context, "permission denied: \(denied.description)")
            return
        }
        guard let session else {
            logger.notice("driver request on a socket without driver sessions", metadata: ["uid": "\(peer.uid)", "pid": "\(peer.pid)"])
            refuse(context, refusal)
            return
        }
        let request: DriverRequest
        do {
            request = try DriverRequest(decoding: frame)
        } catch {
            // Send and SendTo are never answered (1.18 drops a bad one): an error reply would be
            // taken for the answer to whatever else the client waits for.
            if frame.command != DriverCommand.send.rawValue && frame.command != DriverCommand.sendTo.rawValue {
                write(context, DriverReply.error("\(error)"))
            }
            serveNext(context)
            return
        }
        serving = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let loop = context.eventLoop
        Task {
            await session.handle(request)
            loop.execute {
                let (handler, context) = bound.value
                handler.serving = false
                handler.serveNext(context)
            }
        }
    }

    private func write(_ context: ChannelHandlerContext, _ frame: DriverFrame) {
        ConnectionEnd.write(frame.encoded(), on: context)
    }

    /// The driver's error reply, then close (`ConnectionEnd.sendLast`).
    private func refuse(_ context: ChannelHandlerContext, _ message: String) {
        closing = true
        queue.removeAll()
        ConnectionEnd.sendLast(DriverReply.error(message).encoded(), on: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { connection?.wake(closed: false) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        end()
        context.fireChannelInactive()
    }

    /// Taken out of a connection that turned out to speak JSON (`ControlProtocolSniffer`).
    func handlerRemoved(context: ChannelHandlerContext) { end() }

    /// The session's connection is gone: what it holds goes.
    private func end() {
        closing = true
        queue.removeAll()
        connection?.wake(closed: true)
        if let session { Task { await session.closed() } }
        session = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            // The driver protocol is full duplex: a client that only reads pushes (datagrams,
            // as 1.18's `pilotctl listen`) is not idle. A connection without a session (a socket
            // that serves no driver) is closed when nothing is being answered.
            if session == nil, !serving, queue.isEmpty { context.close(promise: nil) }
            return
        }
        if let event = event as? ChannelEvent, event == .inputClosed {
            // The client sends no more: what it asked is answered, then the connection ends.
            context.close(mode: .all, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// The first handler of an admitted connection: reads until the first frame's first payload
/// byte (the fifth byte) and decides the connection's protocol from it, once: `{` is pilot-host's
/// JSON, anything else the 1.18 driver protocol (no whitespace is skipped: 0x09, 0x0A, 0x0D and
/// 0x20 are driver commands). It then puts the chosen handler in its place and hands it what it
/// read. A connection that ends before five bytes is the JSON handler's (which says the frame was
/// cut short), and so is a first length no frame of either protocol has (0, or over 1 MiB).
/// One that sends nothing for `silence` gets a driver session at once, provisionally: 1.18's
/// `pilotctl listen` sends nothing and reads the datagrams pushed to every client. Its first
/// frame still decides: a JSON one (a client that waited before asking) ends that session and
/// goes to the JSON handler.
final class ControlProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    // @unchecked: state is touched only on the channel's event loop.
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let jsonMarker = UInt8(ascii: "{")

    private let json: () -> any ChannelHandler
    private let driver: () -> any ChannelHandler
    private var buffered: ByteBuffer?
    private var decided = false
    /// The driver handler a silent connection was given, until its first frame decides.
    private var provisional: (any RemovableChannelHandler)?
    private let silence: TimeAmount
    private var silenceTimer: Scheduled<Void>?

    init(json: @escaping () -> any ChannelHandler, driver: @escaping () -> any ChannelHandler, silence: TimeAmount = .milliseconds(500)) {
        self.json = json
        self.driver = driver
        self.silence = silence
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        silenceTimer = context.eventLoop.scheduleTask(in: silence) {
            let (sniffer, context) = bound.value
            guard !sniffer.decided, sniffer.buffered == nil, let handler = sniffer.driver() as? any RemovableChannelHandler else { return }
            do {
                try context.pipeline.syncOperations.addHandler(handler, position: .after(sniffer))
                sniffer.provisional = handler
            } catch {
                context.close(promise: nil)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        guard !decided else { return context.fireChannelRead(data) }
        if buffered == nil {
            buffered = incoming
        } else {
            buffered!.writeBuffer(&incoming)
        }
        guard let first = buffered, let length = first.getInteger(at: first.readerIndex, as: UInt32.self) else { return }
        // A length no frame of either protocol has (0, or over 1 MiB) is the JSON handler's to
        // refuse, as it always was: no fifth byte is waited for.
        if length == 0 || length > UInt32(DriverFrame.maxSize) { return decide(context, json()) }
        guard let marker = first.getInteger(at: first.readerIndex + 4, as: UInt8.self) else { return }
        if let provisional {
            self.provisional = nil
            if marker != Self.jsonMarker { return decide(context, nil) }
            context.pipeline.syncOperations.removeHandler(provisional, promise: nil)
        }
        decide(context, marker == Self.jsonMarker ? json() : driver())
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if !decided, provisional == nil, event is IdleStateHandler.IdleStateEvent {
            // Part of a first frame, and nothing more since: nothing to answer.
            context.close(promise: nil)
            return
        }
        if !decided, let event = event as? ChannelEvent, event == .inputClosed {
            decide(context, provisional == nil ? json() : nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !decided { decide(context, provisional == nil ? json() : nil) }
        context.fireChannelInactive()
    }

    /// Hands the connection to `handler` (nil: to the provisional one already after this).
    private func decide(_ context: ChannelHandlerContext, _ handler: (any ChannelHandler)?) {
        decided = true
        silenceTimer?.cancel()
        if let handler {
            do {
                try context.pipeline.syncOperations.addHandler(handler, position: .after(self))
            } catch {
                context.close(promise: nil)
                return
            }
        }
        if let buffered {
            self.buffered = nil
            context.fireChannelRead(wrapInboundOut(buffered))
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
