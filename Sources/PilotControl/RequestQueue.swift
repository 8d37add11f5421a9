import NIOCore

/// The requests a control connection has read and not yet answered, bounded by
/// `ConnectionLimits` (`queuedRequests`, `queuedBytes`, counting what the frame decoder holds
/// too): past the bound the connection stops reading, and the client's writes block in its
/// socket, as with TCP; reading resumes once it drains. Touched only on the channel's loop.
struct RequestQueue<Request> {
    private let limits: ConnectionLimits
    private var requests: [(request: Request, size: Int)] = []
    private var bytes = 0
    /// A read the pipeline asked for while the queue was full, made once it drains.
    private var readHeld = false

    init(limits: ConnectionLimits) {
        self.limits = limits
    }

    var isEmpty: Bool { requests.isEmpty }

    mutating func append(_ request: Request, size: Int) {
        requests.append((request, size))
        bytes += size
    }

    /// The oldest request, taken off the queue.
    mutating func next() -> Request? {
        guard !requests.isEmpty else { return nil }
        let (request, size) = requests.removeFirst()
        bytes -= size
        return request
    }

    mutating func removeAll() {
        requests.removeAll()
        bytes = 0
    }

    /// Whether the queue, with `buffered` bytes of a frame not yet whole, is at its bound. A frame
    /// being read with nothing queued never is: reading must go on until it is whole (the
    /// decoder's own limit, 1 MiB, bounds it), or a frame near that size would stop the reading
    /// with nothing left to answer that could start it again.
    func isFull(buffered: Int) -> Bool {
        requests.count >= limits.queuedRequests || (!requests.isEmpty && bytes + buffered >= limits.queuedBytes)
    }

    /// The pipeline asks for a read: made now, or held while the queue is full. A connection
    /// that is `closing` is read to its end (and what comes dropped), so that closing sends no
    /// reset.
    mutating func read(_ context: ChannelHandlerContext, buffered: Int, closing: Bool) {
        if isFull(buffered: buffered), !closing {
            readHeld = true
        } else {
            context.read()
        }
    }

    /// Makes the read held back, once the queue has room again.
    mutating func resume(_ context: ChannelHandlerContext, buffered: Int) {
        guard readHeld, !isFull(buffered: buffered) else { return }
        readHeld = false
        context.read()
    }
}
