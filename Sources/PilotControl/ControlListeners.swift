import Dispatch
import FoundationEssentials
public import Glibc
public import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix
import CLinux
import PilotWire

/// Many listening control sockets watched by one epoll thread; each accepted connection is handed
/// to an event loop and served by `ControlConnectionHandler`.
///
/// A host with 100,000 identities has 100,000 listening sockets. As NIO server channels each
/// would cost a channel, a pipeline and a registration (several KiB, and tens of microseconds to
/// open); here a listener is a descriptor and a table entry, and listening sockets are idle
/// almost always. Only connections become NIO channels.
///
/// A socket file appears with its final mode and owner: it is bound under a temporary name,
/// `chmod`/`chown`ed, listened on, and then renamed over the path (which also replaces a stale
/// file from an earlier run atomically).
///
/// Every connection is judged in the accept thread, before it costs a channel: by the peer's
/// credentials against the listener's policy, then by `ConnectionLimits` (connections per uid,
/// each listener's reserve, the descriptors the host has for connections). A refused connection
/// gets one error frame and is closed a second later (so the client can still write its request
/// and read the answer instead of a reset).
public final class ControlListeners: @unchecked Sendable {
    // @unchecked: `listeners`, `tokens`, `nextToken`, `stopped`, `ledger`, `connections` and
    // `nextConnection` are guarded by `lock`; `refused` and `lastLimitWarning` are the accept
    // thread's alone; the descriptors are fixed at init.

    /// What one listening socket serves.
    struct Listener {
        let descriptor: Int32
        let path: String
        let policy: @Sendable () -> AccessPolicy
        let handler: ControlServer.Handler
        /// The session of each connection that speaks the 1.18 driver protocol; nil where only
        /// the JSON protocol is served (the admin socket).
        let driver: DriverSessionFactory?
        let idleTimeout: TimeAmount
        /// False for a socket passed by systemd: its file is the socket unit's, left in place.
        var ownsFile = true
        /// Connections it is always granted (`ConnectionLimits`).
        let reserved: Int
    }

    /// An admitted connection, until it closes.
    private struct Connection {
        let path: String
        let uid: UInt32
        let listener: UInt64
        var channel: (any Channel)?
        /// `closeConnections` came before the channel was made.
        var closeWanted = false
    }

    /// Descriptors connections never take: the database, the registry, the event loops, UDP
    /// sockets. Without them a host full of connections could not even make a timer.
    public static let reservedForHost = 256

    public let limits: ConnectionLimits

    private let group: any EventLoopGroup
    private let logger: Logger
    private let epoll: Int32
    private let wake: Int32
    private let lock = NIOLock()
    private var listeners: [UInt64: Listener] = [:]
    private var tokens: [String: UInt64] = [:]
    private var nextToken: UInt64 = 1
    private var stopped = false
    private var ledger: ConnectionLedger
    private var connections: [UInt64: Connection] = [:]
    private var nextConnection: UInt64 = 0
    /// Refused connections: waiting for the first bytes of their first frame (to answer in the
    /// protocol the client speaks), then, with the error frame sent, closed when their second
    /// is up. At most 256.
    private var refused: [Refused] = []

    private struct Refused {
        let descriptor: Int32
        /// Until the answer: why it is refused. Nil once answered.
        var failure: ControlFailure?
        /// The answer goes by then at the latest (in JSON, if the client has not said which
        /// protocol it speaks); once answered, the descriptor is closed then.
        var until: ContinuousClock.Instant
    }
    private var lastLimitWarning: [UInt32: ContinuousClock.Instant] = [:]
    private let finished = DispatchSemaphore(value: 0)

    /// The epoll token of the wake-up eventfd; listeners count from 1.
    private static let wakeToken: UInt64 = 0

    public init(group: any EventLoopGroup, limits: ConnectionLimits = ConnectionLimits(), logger: Logger) throws {
        self.group = group
        self.logger = logger
        self.limits = limits
        ledger = ConnectionLedger(limits: limits)
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw ControlListenerError.system("epoll_create1", errno) }
        wake = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard wake >= 0 else {
            let code = errno
            Glibc.close(epoll)
            throw ControlListenerError.system("eventfd", code)
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = Self.wakeToken
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &event) == 0 else {
            let code = errno
            Glibc.close(wake)
            Glibc.close(epoll)
            throw ControlListenerError.system("epoll_ctl", code)
        }
        try startThread(named: "control-accept") { [self] in acceptLoop() }
    }

    /// How many sockets listen.
    public var count: Int { lock.withLock { listeners.count } }

    /// How many connections are open.
    public var connectionCount: Int { lock.withLock { ledger.open } }

    /// Descriptors the host needs for `listeners` sockets: each one, each one's reserve, the
    /// admin socket's reserve, `reservedForHost`, and `shared` more for connections beyond the
    /// reserves. The host raises its open-file limit to this where the hard limit allows.
    public func descriptorsNeeded(listeners: Int, shared: Int = 1024) -> Int {
        listeners * (1 + limits.reservedPerIdentity) + limits.reservedForAdmin + Self.reservedForHost + shared
    }

    /// Binds `path` with `mode` (and `owner`/`group` when given), and serves it. Replaces a
    /// socket this set already serves at `path`. `reserved` connections are always admitted
    /// (default: `limits.reservedPerIdentity`).
    public func listen(
        path: String, mode: Glibc.mode_t, owner: Glibc.uid_t? = nil, group: Glibc.gid_t? = nil, reserved: Int? = nil,
        idleTimeout: TimeAmount = .minutes(10), policy: @escaping @Sendable () -> AccessPolicy, handler: @escaping ControlServer.Handler,
        driver: DriverSessionFactory? = nil
    ) throws {
        let token = try lock.withLock { () throws -> UInt64 in
            guard !stopped else { throw ControlListenerError.stopped }
            defer { nextToken += 1 }
            return nextToken
        }
        let descriptor = try Self.bind(path: path, token: token, mode: mode, owner: owner, group: group)
        let listener = Listener(
            descriptor: descriptor, path: path, policy: policy, handler: handler, driver: driver, idleTimeout: idleTimeout,
            reserved: reserved ?? limits.reservedPerIdentity)
        try serve(listener, token: token)
    }

    /// Serves a listening Unix socket that is already bound (passed by systemd's socket
    /// activation, with the mode and group its socket unit gave it). Its file stays when the
    /// set shuts down: it belongs to the socket unit and outlives restarts.
    public func adopt(
        descriptor: Int32, reserved: Int? = nil, idleTimeout: TimeAmount = .minutes(10), policy: @escaping @Sendable () -> AccessPolicy,
        handler: @escaping ControlServer.Handler, driver: DriverSessionFactory? = nil
    ) throws {
        let token = try lock.withLock { () throws -> UInt64 in
            guard !stopped else { throw ControlListenerError.stopped }
            defer { nextToken += 1 }
            return nextToken
        }
        let flags = fcntl(descriptor, F_GETFL)
        guard flags >= 0, fcntl(descriptor, F_SETFL, flags | O_NONBLOCK) == 0 else { throw ControlListenerError.system("fcntl", errno) }
        var listener = Listener(
            descriptor: descriptor, path: "fd:\(descriptor)", policy: policy, handler: handler, driver: driver, idleTimeout: idleTimeout,
            reserved: reserved ?? limits.reservedPerIdentity)
        listener.ownsFile = false
        try serve(listener, token: token)
    }

    private func serve(_ listener: Listener, token: UInt64) throws {
        let descriptor = listener.descriptor
        let path = listener.path
        try lock.withLock {
            guard !stopped else {
                Glibc.close(descriptor)
                throw ControlListenerError.stopped
            }
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.u64 = token
            guard epoll_ctl(epoll, EPOLL_CTL_ADD, descriptor, &event) == 0 else {
                let code = errno
                Glibc.close(descriptor)
                throw ControlListenerError.system("epoll_ctl", code)
            }
            listeners[token] = listener
            ledger.addListener(token, reserved: listener.reserved)
            // A socket served before at this path: its file is already replaced by the rename.
            if let oldToken = tokens.updateValue(token, forKey: path), let old = listeners.removeValue(forKey: oldToken) {
                Glibc.close(old.descriptor)  // closing also takes it out of the epoll set
                ledger.removeListener(oldToken)
            }
        }
    }

    /// Stops serving `path` and removes the file. Open connections are left to
    /// `closeConnections(path:)`.
    public func close(path: String) {
        lock.withLock {
            guard let token = tokens.removeValue(forKey: path), let listener = listeners.removeValue(forKey: token) else { return }
            Glibc.close(listener.descriptor)
            ledger.removeListener(token)
            unlink(path)
        }
    }

    /// Closes every open connection accepted at `path` (by any listener that served it), and
    /// returns how many. A request being answered on one is cancelled.
    @discardableResult
    public func closeConnections(path: String) -> Int {
        let channels = lock.withLock { () -> [any Channel] in
            var channels: [any Channel] = []
            for (id, connection) in connections where connection.path == path {
                if let channel = connection.channel {
                    channels.append(channel)
                } else {
                    connections[id]?.closeWanted = true
                }
            }
            return channels
        }
        for channel in channels { channel.close(promise: nil) }
        return channels.count
    }

    /// Closes every listening socket, removes their files and ends the accept thread. The accept
    /// thread holds the set alive until then: call this once the sockets are no longer wanted.
    public func shutdown() {
        let wasRunning = lock.withLock { () -> Bool in
            guard !stopped else { return false }
            stopped = true
            for listener in listeners.values {
                Glibc.close(listener.descriptor)
                if listener.ownsFile { unlink(listener.path) }
            }
            listeners = [:]
            tokens = [:]
            return true
        }
        guard wasRunning else { return }
        var one: UInt64 = 1
        _ = write(wake, &one, 8)
        finished.wait()
        Glibc.close(wake)
        Glibc.close(epoll)
    }

    // MARK: Binding

    /// A listening socket at `path` with its final mode and owner, or a clear error.
    private static func bind(path: String, token: UInt64, mode: mode_t, owner: uid_t?, group: gid_t?) throws -> Int32 {
        let directory = path.lastIndex(of: "/").map { String(path[...$0]) } ?? "./"
        let temporary = directory + ".bind-\(getpid())-\(token)"
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.utf8.count < capacity, temporary.utf8.count < capacity else {
            throw ControlListenerError.pathTooLong(path, limit: capacity - 1)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in temporary.utf8.enumerated() { raw[index] = byte }
        }
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw ControlListenerError.system("socket", errno) }
        func fail(_ call: String) -> ControlListenerError {
            let code = errno
            Glibc.close(descriptor)
            unlink(temporary)
            return .system("\(call) \(path)", code)
        }
        func bindTemporary() -> Bool {
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            } == 0
        }
        // The temporary name is unique to this process; a leftover can only be from a crashed
        // process that had our pid.
        guard bindTemporary() || (errno == EADDRINUSE && unlink(temporary) == 0 && bindTemporary()) else { throw fail("bind") }
        guard chmod(temporary, mode) == 0 else { throw fail("chmod") }
        if owner != nil || group != nil {
            guard chown(temporary, owner ?? UInt32.max, group ?? UInt32.max) == 0 else { throw fail("chown") }
        }
        guard Glibc.listen(descriptor, 128) == 0 else { throw fail("listen") }
        guard rename(temporary, path) == 0 else { throw fail("rename") }
        return descriptor
    }

    // MARK: Accepting

    private func acceptLoop() {
        defer {
            for refusal in refused { Glibc.close(refusal.descriptor) }
            refused = []
            finished.signal()
        }
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while true {
            // Refused clients waiting for their answer are looked at every 20 ms.
            let timeout: Int32 = refused.isEmpty ? -1 : refused.contains { $0.failure != nil } ? 20 : 250
            let ready = events.withUnsafeMutableBufferPointer { epoll_wait(epoll, $0.baseAddress, Int32($0.count), timeout) }
            answerRefused()
            closeRefused(all: false)
            if ready < 0 {
                if errno == EINTR { continue }
                logger.critical("control sockets: epoll_wait failed", metadata: ["errno": "\(errno)"])
                return
            }
            for event in events[0..<Int(ready)] {
                let token = event.data.u64
                if token == Self.wakeToken { return }
                acceptAll(token)
            }
        }
    }

    /// Accepts every waiting connection of one listener and admits or refuses each.
    private func acceptAll(_ token: UInt64) {
        var accepted: [Int32] = []
        var exhausted = false
        let found = lock.withLock { () -> (Listener, budget: Int)? in
            // Under the lock: `close(path:)` cannot close this descriptor while we accept on it.
            guard let listener = listeners[token] else { return nil }
            while accepted.count < 256 {
                let connection = accept4(listener.descriptor, nil, nil, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                if connection >= 0 {
                    accepted.append(connection)
                    continue
                }
                exhausted = errno == EMFILE || errno == ENFILE
                break
            }
            return (listener, Self.openFileLimit() - listeners.count - Self.reservedForHost)
        }
        guard let (listener, budget) = found else { return }
        for connection in accepted { admit(connection, to: listener, token: token, budget: budget) }
        if exhausted {
            // Out of descriptors: the listener stays readable, so back off instead of spinning.
            logger.error("control sockets: out of file descriptors; raise LimitNOFILE=", metadata: ["path": "\(listener.path)"])
            usleep(100_000)
        }
    }

    /// Judges one accepted connection: the peer against the listener's policy, then the limits.
    private func admit(_ descriptor: Int32, to listener: Listener, token: UInt64, budget: Int) {
        let peer: PeerCredentials
        do {
            peer = try PeerCredentials(socket: descriptor)
        } catch {
            turnAway(descriptor, ControlFailure(.permissionDenied, "cannot identify the peer: \(error)"))
            return
        }
        if case .failure(let denied) = listener.policy().decide(peer) {
            logger.warning(
                "control connection refused", metadata: ["uid": "\(peer.uid)", "pid": "\(peer.pid)", "target": "\(denied.target)"])
            turnAway(descriptor, ControlFailure(.permissionDenied, denied.description))
            return
        }
        let admitted = lock.withLock { () -> Result<UInt64, ConnectionLedger.Refusal> in
            do throws(ConnectionLedger.Refusal) {
                try ledger.admit(uid: peer.uid, listener: token, budget: budget)
            } catch {
                return .failure(error)
            }
            nextConnection += 1
            connections[nextConnection] = Connection(path: listener.path, uid: peer.uid, listener: token)
            return .success(nextConnection)
        }
        switch admitted {
        case .success(let id):
            serve(descriptor, listener, peer: peer, id: id)
        case .failure(let refusal):
            let message: String
            switch refusal {
            case .userAtLimit(let held):
                message = "uid \(peer.uid) holds \(held) control connections, the most one user may hold; close some and try again"
            case .hostFull(let committed):
                message = "the host has no room for more control connections (\(committed) committed); try again later"
            }
            // One line per uid every 10 s: a flood must not flood the journal too.
            let now = ContinuousClock.now
            if lastLimitWarning[peer.uid].map({ now - $0 > .seconds(10) }) ?? true {
                lastLimitWarning[peer.uid] = now
                logger.warning("control connection over the limits", metadata: [
                    "uid": "\(peer.uid)", "pid": "\(peer.pid)", "path": "\(listener.path)", "reason": "\(message)"])
            }
            turnAway(descriptor, ControlFailure(.unavailable, message))
        }
    }

    /// Refuses a connection with `failure` as its one reply, in the protocol its first frame
    /// speaks (`answerRefused`); the descriptor is kept a second after, so the client can still
    /// write its request and read the answer instead of a reset. At most 256 wait (a flood closes
    /// the oldest at once).
    private func turnAway(_ descriptor: Int32, _ failure: ControlFailure) {
        if refused.count >= 256 { Glibc.close(refused.removeFirst().descriptor) }
        refused.append(Refused(descriptor: descriptor, failure: failure, until: .now + .seconds(1)))
        answerRefused()
    }

    /// Answers each refused connection whose client has sent the first five bytes of a frame
    /// (or ended, or let its second pass): pilot-host's JSON error frame when the fifth byte is
    /// `{` (or the client sent part of a frame and ended), else the driver protocol's error reply,
    /// which the official clients can read (a client silent for its whole second is one of them).
    /// Then the write side is shut.
    private func answerRefused() {
        let now = ContinuousClock.now
        for index in refused.indices {
            guard let failure = refused[index].failure else { continue }
            let descriptor = refused[index].descriptor
            var head = [UInt8](repeating: 0, count: 5)
            let peeked = recv(descriptor, &head, 5, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
            let waiting = peeked < 0 ? errno == EAGAIN || errno == EWOULDBLOCK : peeked > 0 && peeked < 5
            if waiting && now < refused[index].until { continue }
            let bytes: [UInt8]
            // Silent: a driver client waiting for pushes (JSON clients ask at once).
            if (peeked == 5 && head[4] != ControlProtocolSniffer.jsonMarker) || (peeked < 0 && waiting) {
                bytes = DriverReply.error("\(failure.code.rawValue): \(failure.message)").encoded()
            } else {
                bytes = (try? ControlReply.error(failure).encoded()) ?? []
            }
            _ = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            Glibc.shutdown(descriptor, Int32(SHUT_WR))
            refused[index].failure = nil
            refused[index].until = now + .seconds(1)
        }
    }

    private func closeRefused(all: Bool) {
        let now = ContinuousClock.now
        refused.removeAll { refusal in
            guard all || (refusal.failure == nil && refusal.until <= now) else { return false }
            // Closing with unread input would have the kernel report a reset to the client, which
            // could then lose the answer: what it sent is read and dropped first.
            var scratch = [UInt8](repeating: 0, count: 4096)
            for _ in 0..<16 where recv(refusal.descriptor, &scratch, scratch.count, Int32(MSG_DONTWAIT)) > 0 {}
            Glibc.close(refusal.descriptor)
            return true
        }
    }

    private func serve(_ descriptor: Int32, _ listener: Listener, peer: PeerCredentials, id: UInt64) {
        let (logger, limits) = (logger, limits)
        let path = listener.path
        ClientBootstrap(group: group)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: listener.idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(
                        ControlProtocolSniffer(
                            json: {
                                ControlConnectionHandler(peer: peer, policy: listener.policy, handler: listener.handler, limits: limits, logger: logger)
                            },
                            driver: {
                                DriverConnectionHandler(
                                    peer: peer, policy: listener.policy, factory: listener.driver, refusal: Self.noDriverHere(path), limits: limits,
                                    logger: logger)
                            }))
                }
            }
            .withConnectedSocket(descriptor)
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    let closeNow = lock.withLock { () -> Bool in
                        connections[id]?.channel = channel
                        return connections[id]?.closeWanted ?? false
                    }
                    channel.closeFuture.whenComplete { [self] _ in release(id) }
                    if closeNow { channel.close(promise: nil) }
                case .failure(let error):
                    release(id)
                    logger.error("control connection could not be served", metadata: ["path": "\(path)", "error": "\(error)"])
                }
            }
    }

    /// The driver error reply on a socket that serves no driver sessions.
    static func noDriverHere(_ path: String) -> String {
        "\(path) speaks only pilot-host's JSON control protocol (it is the admin socket); point official Pilot clients "
            + "(pilotctl with PILOT_SOCKET, the SDKs) at an identity's socket, id/NAME.sock beside it"
    }

    private func release(_ id: UInt64) {
        lock.withLock {
            guard let connection = connections.removeValue(forKey: id) else { return }
            ledger.release(uid: connection.uid, listener: connection.listener)
        }
    }

    /// The soft limit on open files, as it is now (the host raises it as identities are added).
    private static func openFileLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        return limit.rlim_cur > rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }
}

/// Why a control socket could not be opened.
public enum ControlListenerError: Error, CustomStringConvertible {
    case system(String, Int32)
    case pathTooLong(String, limit: Int)
    case stopped

    public var description: String {
        switch self {
        case let .system(call, code): "\(call): \(String(cString: strerror(code)))"
        case let .pathTooLong(path, limit): "socket path \(path) is longer than the \(limit) bytes a Unix socket allows"
        case .stopped: "the control sockets are shut down"
        }
    }
}
