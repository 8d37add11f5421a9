import CLinux
import Glibc
import NIOCore

/// Busy polling, as the kernel's SO_BUSY_POLL does it, for the loops of a fabric: after the loop
/// has sent, it keeps looking at its sockets for a while before its thread may sleep. A reply
/// that comes back within that while is read at once, with no thread to wake. Where waking a
/// sleeping CPU is dear (a virtual machine whose idle vCPUs halt, tens of microseconds each
/// time), that halves a round trip; it costs the CPU time spent looking, at most `window` after
/// each burst of traffic.
///
/// Looking is kept for when it pays. After `missesBeforeResting` looks in a row that found
/// nothing before their window ended (traffic that does not answer quickly: a trickle of
/// keepalives, a peer on another continent), the loop rests: only one burst in `probeEvery`
/// is followed by a look, until a look finds something again. Idle or sparse traffic then
/// costs almost nothing; a conversation of quick replies gets the short round trip.
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
    /// Looks in a row whose window ended with nothing to read.
    private(set) var misses = 0
    /// Bursts not followed by a look since the last one, while resting.
    private var skipped = 0

    static let missesBeforeResting = 16
    static let probeEvery = 16

    /// True while looking has stopped paying (see the type's comment).
    var isResting: Bool { misses >= Self.missesBeforeResting }

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
    /// looking and should: the caller queues the first look.
    func extend() -> Bool {
        guard !closed else { return false }
        if until != nil {
            until = .now() + window
            return false
        }
        if isResting {
            skipped += 1
            guard skipped >= Self.probeEvery else { return false }
            skipped = 0
        }
        until = .now() + window
        return true
    }

    /// One look, as a task of the loop. False (stop) when a socket is readable (the loop's
    /// wait reads it next) or the window is over; true: queue another look, to run after
    /// whatever the loop has queued meanwhile.
    func look() -> Bool {
        guard let until else { return false }
        var event = epoll_event()
        if epoll_wait(watched, &event, 1, 0) > 0 {
            self.until = nil
            misses = 0
            return false
        }
        if NIODeadline.now() >= until {
            self.until = nil
            misses = min(misses + 1, Self.missesBeforeResting)
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
