public import PilotWire
import Synchronization

/// A connection to an identity's socket (`/run/pilot-host/id/NAME.sock`) in the 1.18 driver
/// protocol, the one the official SDKs speak (docs/PROTOCOL.md §12.2): streams, listeners and
/// datagrams of that identity, as typed async calls.
///
/// ```swift
/// let driver = try PilotDriver(socketPath: "/run/pilot-host/id/alice.sock")
/// let stream = try await driver.dial(bob, port: 7)
/// try await stream.write(Array("hello\n".utf8))
/// let echoed = try await stream.read()
/// ```
///
/// One socket carries everything: frames are written in call order from a serial queue and
/// read by a thread of the connection's own, which routes replies to the calls that wait for
/// them and pushes to their stream, listener or `datagrams`. The protocol has no request id;
/// how replies still find their request, and why a dial makes the other requests wait, is
/// `PendingRequests`'s rule. Streams, listeners and the datagrams end with the connection.
///
/// Bounded: each stream buffers at most `streamBufferLimit` bytes that were not read, and the
/// connection `connectionBufferLimit` in all; a stream that would pass either is closed, and
/// its reader gets `PilotDriverError.streamOverflow` after the bytes buffered before. The
/// driver protocol cannot ask the daemon to wait, so the choice is that or memory without
/// bound. `datagrams` keeps the newest `datagramBufferLimit` datagrams not yet taken.
///
/// Every call may be made from any task. A wait for the daemon ends with
/// `PilotDriverError.cancelled` when its task is cancelled; a frame being written to the
/// socket is finished first.
public final class PilotDriver: Sendable {
    /// The most bytes of one stream that are buffered unread before it is closed: 4 MiB.
    public static let streamBufferLimit = 4 << 20
    /// The most bytes of all the connection's streams buffered unread: 64 MiB.
    public static let connectionBufferLimit = 64 << 20
    /// The most datagrams `datagrams` keeps untaken; older ones are dropped first.
    public static let datagramBufferLimit = 1000

    /// The identity socket's path.
    public let socketPath: String
    /// The datagrams that arrive for the identity, from the connection's start until its end,
    /// but those a `pilotctl listen` on the identity's port takes first. One consumer at a time.
    public let datagrams: AsyncStream<PilotDatagram>

    let socket: DriverSocket
    let state = Mutex(State())
    let datagramInput: AsyncStream<PilotDatagram>.Continuation

    /// What the connection holds, under `state`'s mutex. Waiters may be resumed while it is
    /// held: resuming only schedules the waiting task.
    struct State {
        var requests = PendingRequests()
        var streams: [UInt32: StreamInbox] = [:]
        var listeners: [UInt16: ListenerInbox] = [:]
        /// Bytes buffered unread across `streams`.
        var buffered = 0
        /// Names each wait, for taking it back on cancellation.
        var nextWaiter: UInt64 = 0
        /// Set once, when the connection ends; every call after fails with it.
        var ended: PilotDriverError?
        /// The last error reply that no request waited for: a refusal the daemon sends before
        /// it closes the connection. It goes into `ended`'s reason.
        var unclaimedError: String?

        /// Takes stream `connection`'s inbox out, and its unread bytes out of `buffered`.
        @discardableResult
        mutating func removeStream(_ connection: UInt32) -> StreamInbox? {
            guard let inbox = streams.removeValue(forKey: connection) else { return nil }
            buffered -= inbox.buffered
            return inbox
        }
    }

    /// Opens the socket at `socketPath` and starts reading it. The first request goes out at
    /// once (Health, its reply dropped): pilot-host pushes datagrams to a driver connection
    /// from its first request on.
    public init(socketPath: String) throws(PilotDriverError) {
        self.socketPath = socketPath
        socket = try DriverSocket(path: socketPath)
        (datagrams, datagramInput) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(Self.datagramBufferLimit))
        socket.startReading { [weak self] frame in
            self?.receive(frame) ?? false
        } ended: { [weak self] reason in
            self?.end(reason: reason)
        }
        sendUnanswered(.health, reply: .healthOK)
    }

    deinit {
        socket.shutDown()
        datagramInput.finish()
    }

    /// Ends the connection: every stream and listener of it ends, and the calls that wait fail
    /// with `connectionClosed`. pilot-host then closes the streams and frees the ports.
    public func close() {
        end(.connectionClosed(reason: "closed by this side"))
        socket.shutDown()
    }

    // MARK: Requests

    /// The identity's status, as 1.18's `info` gives it (`node_id`, `address`, `hostname`,
    /// `connections`, ...), with pilot-host's `name`, `tags` and `public`.
    public func info() async throws(PilotDriverError) -> JSON {
        let reply = try await request(.info, reply: .infoOK)
        do {
            return try JSON(parsing: reply.payload)
        } catch {
            throw .malformedReply(.infoOK, reason: "\(error)")
        }
    }

    /// Opens a stream to `port` of `address`. pilot-host gives up after 15 s; meanwhile this
    /// connection's other requests wait (see `PendingRequests`), its streams do not.
    public func dial(_ address: Address, port: UInt16) async throws(PilotDriverError) -> PilotStream {
        let reply = try await request(.dial(address, port: port), reply: .dialOK, order: .outOfOrder)
        // The reading thread made the stream's inbox from this id, before any data came.
        guard let connection = try? Self.connectionID(of: reply) else {
            throw .malformedReply(.dialOK, reason: "not a connection id")
        }
        return PilotStream(driver: self, connection: connection, remote: address, remotePort: port)
    }

    /// Binds `port` of the identity: streams dialed to it are accepted by the returned
    /// listener. A port this connection has bound already is refused here, one bound by any
    /// other client by the daemon. If the call is cancelled after the request went out, the
    /// port may stay bound until the connection ends.
    public func listen(port: UInt16) async throws(PilotDriverError) -> PilotListener {
        let claimed = state.withLock { state in
            guard state.listeners[port] == nil else { return false }
            state.listeners[port] = ListenerInbox()
            return true
        }
        guard claimed else { throw .invalidArgument(reason: "port \(port) is already bound on this connection") }
        do throws(PilotDriverError) {
            _ = try await request(.bind(port: port), reply: .bindOK)
        } catch {
            state.withLock { _ = $0.listeners.removeValue(forKey: port) }
            throw error
        }
        return PilotListener(driver: self, port: port)
    }

    /// Sends one datagram to `port` of `address`. With `confirm`, waits for the daemon to say
    /// it left (or why not, as `refused`); without, returns once it is written to the socket,
    /// and a datagram that cannot leave is dropped without a word (1.18's SendTo).
    public func sendDatagram(to address: Address, port: UInt16, data: [UInt8], confirm: Bool = true) async throws(PilotDriverError) {
        let room = DriverFrame.maxPayloadSize - Address.encodedSize - 2
        guard data.count <= room else {
            throw .invalidArgument(reason: "a datagram carries at most \(room) bytes on the driver protocol, not \(data.count)")
        }
        let request = DriverRequest.sendTo(address, port: port, data: data, confirm: confirm)
        if confirm {
            _ = try await self.request(request, reply: .sendToConfirmOK)
        } else {
            try await send(request.frame())
        }
    }

    // MARK: Plumbing for streams and listeners

    /// Sends `request` and waits for its reply: the frame with command `reply`, or the error
    /// reply thrown as `refused`.
    func request(
        _ request: DriverRequest, reply: DriverCommand, order: PendingRequests.Order = .inOrder
    ) async throws(PilotDriverError) -> DriverFrame {
        let frame = request.frame()
        return try await suspend { state, id, waiter in
            if let ended = state.ended { return .failure(ended) }
            let admitted = state.requests.add(.init(id: id, frame: frame, reply: reply, order: order, waiter: waiter))
            for frame in admitted { socket.write(frame.encoded()) }
            return nil
        } withdraw: { state, id in
            state.requests.abandon(id)
        }
    }

    /// Sends `request` as `request(_:reply:)` does, with no one waiting: its reply is dropped.
    func sendUnanswered(_ request: DriverRequest, reply: DriverCommand) {
        state.withLock { state in
            guard state.ended == nil else { return }
            state.nextWaiter += 1
            let admitted = state.requests.add(.init(id: state.nextWaiter, frame: request.frame(), reply: reply, order: .inOrder, waiter: nil))
            for frame in admitted { socket.write(frame.encoded()) }
        }
    }

    /// Writes a frame that has no reply, after everything before it, and returns once it is in
    /// the socket.
    func send(_ frame: DriverFrame) async throws(PilotDriverError) {
        if let ended = state.withLock({ $0.ended }) { throw ended }
        let failure: String? = await withCheckedContinuation { continuation in
            socket.write(frame.encoded()) { continuation.resume(returning: $0) }
        }
        if let failure { throw state.withLock { $0.ended } ?? .connectionClosed(reason: failure) }
    }

    /// Writes Close for stream `connection` without waiting: the 0x09 that answers it finds
    /// no inbox and is dropped.
    func writeClose(_ connection: UInt32) {
        socket.write(DriverRequest.close(connection: connection).frame().encoded())
    }

    /// Suspends the caller until the waiter it hands `register` is resumed, or, if `register`
    /// returns a result, not at all. Cancellation takes the waiter back through `withdraw` and
    /// resumes it with `cancelled`; a task cancelled before it registers never waits.
    func suspend<Value: Sendable>(
        _ register: (inout State, UInt64, CheckedContinuation<Result<Value, PilotDriverError>, Never>) -> Result<Value, PilotDriverError>?,
        withdraw: @escaping @Sendable (inout State, UInt64) -> CheckedContinuation<Result<Value, PilotDriverError>, Never>?
    ) async throws(PilotDriverError) -> Value {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (waiter: CheckedContinuation<Result<Value, PilotDriverError>, Never>) in
                let now = state.withLock { state -> Result<Value, PilotDriverError>? in
                    if Task.isCancelled { return .failure(.cancelled) }
                    return register(&state, id, waiter)
                }
                if let now { waiter.resume(returning: now) }
            }
        } onCancel: {
            state.withLock { withdraw(&$0, id) }?.resume(returning: .failure(.cancelled))
        }
        return try result.get()
    }

    /// The connection id a dial's reply carries.
    static func connectionID(of reply: DriverFrame) throws(WireError) -> UInt32 {
        var reader = ByteReader(reply.payload)
        let connection = try reader.readUInt32("dial reply connection id")
        try reader.expectEnd("dial reply")
        return connection
    }
}
