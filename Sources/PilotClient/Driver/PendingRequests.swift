import PilotWire

/// The requests of one driver connection that wait for a reply, and the rule that gives each
/// reply to its request. The driver protocol has no request id (docs/PROTOCOL.md §12.2), so:
///
/// - A reply goes to the oldest request sent that waits for its command code.
/// - An error reply (0x0A) goes to the oldest request sent, whatever its code.
///
/// The second rule is only right if the daemon answers in the order it was asked. pilot-host
/// answers most requests before it reads the next one (`inOrder`), but a dial, which can take
/// 15 s, is answered from a task of its own, after requests sent behind it (`outOfOrder`). So
/// an out-of-order request goes out only when nothing else waits for a reply, and nothing goes
/// out after it until it is answered; the requests meanwhile queue, in call order. Requests
/// that are never answered (Send, SendTo, Cancel) and Close, which is answered by a frame that
/// carries its connection id, bypass this table.
///
/// A waiter that is cancelled leaves its request in the table without a waiter, so that the
/// reply still finds it and is dropped rather than taken by the next request.
struct PendingRequests {
    /// Whether the daemon answers a request before it reads the next one.
    enum Order {
        case inOrder
        case outOfOrder
    }

    /// The caller waiting for a reply, resumed with the reply frame or the failure.
    typealias Waiter = CheckedContinuation<Result<DriverFrame, PilotDriverError>, Never>

    /// A request and who waits for its reply.
    struct Request {
        /// Names the request in `abandon`.
        var id: UInt64
        /// What goes on the wire.
        var frame: DriverFrame
        /// The command code of the reply that answers it.
        var reply: DriverCommand
        var order: Order
        /// Nil once the caller stopped waiting; the reply is then dropped.
        var waiter: Waiter?
    }

    /// Sent and not yet answered, oldest first.
    private var sent: [Request] = []
    /// Not yet sent, in call order.
    private var queued: [Request] = []

    /// Adds `request` and returns the frames that may go out now, in order; the caller writes
    /// them before anything else takes the table, so the wire order is the table's.
    mutating func add(_ request: Request) -> [DriverFrame] {
        queued.append(request)
        return admit()
    }

    /// The request `frame` answers, taken out of the table, and the frames that may go out now
    /// that it is answered; nil for a reply that no request sent waits for.
    mutating func answer(_ frame: DriverFrame) -> (request: Request, admitted: [DriverFrame])? {
        let index: Int?
        if frame.command == DriverCommand.error.rawValue {
            index = sent.isEmpty ? nil : 0
        } else {
            index = sent.firstIndex { $0.reply.rawValue == frame.command }
        }
        guard let index else { return nil }
        let request = sent.remove(at: index)
        return (request, admit())
    }

    /// Takes the waiter of request `id` away from it: a queued request is dropped, a sent one
    /// stays to absorb its reply.
    mutating func abandon(_ id: UInt64) -> Waiter? {
        if let index = queued.firstIndex(where: { $0.id == id }) {
            return queued.remove(at: index).waiter
        }
        guard let index = sent.firstIndex(where: { $0.id == id }) else { return nil }
        defer { sent[index].waiter = nil }
        return sent[index].waiter
    }

    /// Empties the table and returns every waiter, for the end of the connection.
    mutating func removeAll() -> [Waiter] {
        defer { sent = []; queued = [] }
        return (sent + queued).compactMap(\.waiter)
    }

    /// Moves queued requests to `sent` while the ordering rule allows, and returns their frames.
    private mutating func admit() -> [DriverFrame] {
        var frames: [DriverFrame] = []
        while let next = queued.first {
            let clear = next.order == .outOfOrder ? sent.isEmpty : !sent.contains { $0.order == .outOfOrder }
            guard clear else { break }
            sent.append(queued.removeFirst())
            frames.append(next.frame)
        }
        return frames
    }
}
