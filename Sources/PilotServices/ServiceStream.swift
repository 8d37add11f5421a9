public import PilotNet
public import PilotWire

/// A stream as a service sees it: what arrives, in order, and writing, flushing and closing.
/// PilotNet's `StreamHandle` is one; a service's tests hand it a fake, so the services can be
/// checked without sockets or tunnels.
public protocol ServiceStream: AnyObject, Sendable {
    /// What the stream brings, in order (one reader per stream).
    associatedtype Events: AsyncSequence<StreamEvent, Never> & Sendable

    /// What arrives, in order.
    var events: Events { get }
    /// The node and port at the other end.
    var remote: Address { get }
    /// Queues `bytes` for the peer; throws once the stream no longer takes them.
    func write(_ bytes: [UInt8]) async throws
    /// Returns once the peer has acknowledged everything written; throws if the stream ends first.
    func flush() async throws
    /// Closes this side once everything written is acknowledged.
    func close() async throws
    /// Ends the stream at once; what is unacknowledged is dropped.
    func abort() async
    /// One message: until `complete` holds for what has arrived, `limit` bytes, the peer finishes,
    /// or `timeout` passes (then nothing).
    func readMessage(limit: Int, timeout: Duration, complete: @escaping @Sendable ([UInt8]) -> Bool) async -> [UInt8]
}

extension StreamHandle: ServiceStream {
    /// The node at the other end (`key.remote`).
    public var remote: Address { key.remote }
}
