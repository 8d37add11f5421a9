import PilotWire

/// A stream a bound port accepted (the Accept push), until `accept()` takes it.
struct AcceptedStream: Sendable {
    var connection: UInt32
    var remote: Address
    var remotePort: UInt16
}

/// What a `PilotDriver` holds of one bound port: the accepted streams not yet taken, and the
/// `accept()` that waits. It lives in the driver's state, under its mutex.
struct ListenerInbox {
    /// Accepted and not yet taken, oldest first. pilot-host keeps at most 256 streams per
    /// connection, which bounds this queue.
    private(set) var pending: [AcceptedStream] = []
    /// The `accept()` that waits.
    var acceptor = WaitingCall<AcceptedStream>()

    /// A stream arrived: handed to the waiting `accept()`, or queued.
    mutating func receive(_ stream: AcceptedStream) {
        if acceptor.isWaiting {
            acceptor.resume(.success(stream))
        } else {
            pending.append(stream)
        }
    }

    /// What `accept()` gets now, or nil when it must wait.
    mutating func acceptNow() -> AcceptedStream? {
        pending.isEmpty ? nil : pending.removeFirst()
    }

    /// The listener is closed, or the connection ended: the waiting `accept()` fails with
    /// `error`, and the streams never taken are returned for the caller to close.
    mutating func close(_ error: PilotDriverError) -> [AcceptedStream] {
        acceptor.resume(.failure(error))
        defer { pending = [] }
        return pending
    }
}
