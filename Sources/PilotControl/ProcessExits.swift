import CLinux
import Glibc
import NIOConcurrencyHelpers
public import PilotWire

/// Why a process cannot be watched.
public enum ProcessWatchError: Error, Hashable, Sendable, CustomStringConvertible {
    /// No such process, or it has ended, or it is no longer the process that was named.
    case gone(Int32)
    case system(String, Int32)

    public var description: String {
        switch self {
        case .gone(let pid): "no process \(pid) is running (or it is not the one named)"
        case .system(let call, let code): "\(call): \(String(cString: strerror(code)))"
        }
    }
}

/// Watches processes by pidfd, on one thread, and reports each one's exit once to `exited`
/// (called on that thread: hand the work on). A watch is for a key the caller chooses; watching
/// a key again replaces its watch, and `unwatch` forgets one. The pidfd makes it exact: a pid
/// reused by another process is not mistaken for the one watched.
public final class ProcessExits: Sendable {
    private struct Watch {
        var key: String
        var descriptor: Int32
    }

    private struct State {
        /// Descriptor → watch, and key → descriptor.
        var watches: [Int32: Watch] = [:]
        var byKey: [String: Int32] = [:]
        var stopped = false
        /// The eventfd `stop` adds to wake the thread, closed by it.
        var wake: Int32 = -1
    }

    private let poll: Int32
    private let state = NIOLockedValueBox(State())
    private let exited: @Sendable (String) -> Void

    /// Starts the watching thread.
    public init(exited: @escaping @Sendable (String) -> Void) throws(ProcessWatchError) {
        poll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard poll >= 0 else { throw .system("epoll_create1", errno) }
        self.exited = exited
        do { try startThread(named: "process-exits") { [self] in run() } } catch {
            close(poll)
            throw .system("pthread_create", EAGAIN)
        }
    }

    /// How many processes are watched.
    public var count: Int { state.withLockedValue { $0.watches.count } }

    /// Watches `stamp` for `key`. Throws `.gone` when that process has already ended (or its pid
    /// now names another); then nothing is watched for `key`.
    public func watch(_ stamp: ProcessStamp, for key: String) throws(ProcessWatchError) {
        let descriptor = pilot_pidfd_open(stamp.pid)
        guard descriptor >= 0 else {
            let code = errno
            unwatch(key)
            throw code == ESRCH ? .gone(stamp.pid) : .system("pidfd_open", code)
        }
        // Read after the pidfd is open: if the pid still names the same process now, the
        // descriptor names that process, whatever happens to the pid later.
        guard ProcessStamp.current(pid: stamp.pid) == stamp else {
            close(descriptor)
            unwatch(key)
            throw .gone(stamp.pid)
        }
        let stopped = state.withLockedValue { state -> Bool in
            guard !state.stopped else { return true }
            if let previous = state.byKey[key] { Self.forget(previous, in: &state, poll: poll) }
            state.watches[descriptor] = Watch(key: key, descriptor: descriptor)
            state.byKey[key] = descriptor
            return false
        }
        guard !stopped else {
            close(descriptor)
            throw .system("watch", ECANCELED)
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = descriptor
        // Added after the maps hold it, so an exit reported at once finds its key.
        if epoll_ctl(poll, EPOLL_CTL_ADD, descriptor, &event) != 0 {
            let code = errno
            unwatch(key)
            throw .system("epoll_ctl", code)
        }
    }

    /// Stops watching for `key`; nothing is reported for it.
    public func unwatch(_ key: String) {
        state.withLockedValue { state in
            if let descriptor = state.byKey[key] { Self.forget(descriptor, in: &state, poll: poll) }
        }
    }

    /// Stops the thread; nothing more is reported.
    public func stop() {
        state.withLockedValue { state in
            state.stopped = true
            for descriptor in state.watches.keys { Self.forget(descriptor, in: &state, poll: poll) }
        }
        // Wakes the thread's epoll_wait: an eventfd that is readable for good.
        let wake = eventfd(1, Int32(EFD_CLOEXEC))
        state.withLockedValue { $0.wake = wake }
        if wake >= 0 {
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.fd = wake
            epoll_ctl(poll, EPOLL_CTL_ADD, wake, &event)
        }
    }

    private static func forget(_ descriptor: Int32, in state: inout State, poll: Int32) {
        guard let watch = state.watches.removeValue(forKey: descriptor) else { return }
        if state.byKey[watch.key] == descriptor { state.byKey[watch.key] = nil }
        epoll_ctl(poll, EPOLL_CTL_DEL, descriptor, nil)
        close(descriptor)
    }

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while true {
            let count = events.withUnsafeMutableBufferPointer { epoll_wait(poll, $0.baseAddress, Int32($0.count), -1) }
            if count < 0 {
                if errno == EINTR { continue }
                return
            }
            var ended: [String] = []
            let stopped = state.withLockedValue { state -> Bool in
                guard !state.stopped else { return true }
                for event in events[..<Int(count)] {
                    let descriptor = event.data.fd
                    guard let watch = state.watches[descriptor] else { continue }
                    Self.forget(descriptor, in: &state, poll: poll)
                    ended.append(watch.key)
                }
                return false
            }
            if stopped {
                let wake = state.withLockedValue { $0.wake }
                if wake >= 0 { close(wake) }
                close(poll)
                return
            }
            for key in ended { exited(key) }
        }
    }
}
