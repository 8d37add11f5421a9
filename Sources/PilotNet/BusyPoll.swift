import CLinux
import Glibc
import NIOCore

/// Busy polling, as the kernel's SO_BUSY_POLL does it, for the loops of a fabric: after the loop
/// has read or sent, it keeps looking at its sockets for a while before its thread may sleep.
/// A reply that comes back within that while is read at once, with no thread to wake. Where
/// waking a sleeping CPU is dear (a virtual machine whose idle vCPUs halt, tens of
/// microseconds each time), that halves a round trip; it costs the CPU time spent looking,
/// at most `window` after each burst of traffic. Off unless asked for.
///
/// Each look is one task of the loop, queued behind whatever else is waiting, so the loop's
/// own tasks, timers and other threads' submissions run in between. Other channels on the same
/// loop (none in a fabric) would get no I/O until the looking stops, at most `window` (1 ms).
final class BusyPoll {
    let window: TimeAmount
    /// An epoll set of the fabric's sockets, only ever asked "is anything ready" (never waited
    /// on): the loop's own wait then finds what is.
    private let watched: Int32
    /// When looking stops; nil while the loop is not looking.
    private var until: NIODeadline?
    private var closed = false

    /// Nil when `window` is zero (off), or when the system gives no epoll set.
    init?(window: TimeAmount) {
        guard window > .zero else { return nil }
        let descriptor = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard descriptor >= 0 else { return nil }
        self.window = window
        watched = descriptor
    }

    /// Looks at `descriptor` too. A descriptor that is closed leaves the set by itself.
    func watch(_ descriptor: Int32) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = descriptor
        _ = epoll_ctl(watched, EPOLL_CTL_ADD, descriptor, &event)
    }

    /// There was traffic: look for another `window` from now. True if the loop was not
    /// looking: the caller queues the first look.
    func extend() -> Bool {
        guard !closed else { return false }
        let idle = until == nil
        until = .now() + window
        return idle
    }

    /// One look, as a task of the loop. False (stop) when a socket is readable (the loop's
    /// wait reads it next) or the window is over; true: queue another look, to run after
    /// whatever the loop has queued meanwhile.
    func look() -> Bool {
        guard let until else { return false }
        var event = epoll_event()
        if epoll_wait(watched, &event, 1, 0) > 0 || NIODeadline.now() >= until {
            self.until = nil
            return false
        }
        return true
    }

    deinit { close() }

    /// Stops looking; the set is closed.
    func close() {
        guard !closed else { return }
        closed = true
        until = nil
        Glibc.close(watched)
    }
}
