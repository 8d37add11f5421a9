import PilotWire

/// What a `PilotDriver` holds of one stream between the reading thread and the stream's
/// reader: the bytes that arrived and were not yet read, how the stream stands, and who waits.
/// It lives in the driver's state, under its mutex.
struct StreamInbox {
    /// How the stream stands.
    enum Phase {
        /// Data flows both ways.
        case open
        /// The remote end closed it (the 0x09 push): what is buffered is read, then the end.
        case remoteClosed
        /// `close()` sent Close and waits for the daemon's 0x09.
        case closing
        /// More arrived unread than the bound allows; this side closed it.
        case overflowed(limit: Int)
        /// The connection to the daemon ended.
        case failed(PilotDriverError)
    }

    /// The stream's id on the driver connection.
    let connection: UInt32
    private(set) var phase = Phase.open
    /// Arrived and not yet read, in order.
    private var chunks: [[UInt8]] = []
    /// The bytes in `chunks`.
    private(set) var buffered = 0
    /// The `read()` that waits.
    var reader = WaitingCall<[UInt8]?>()
    /// The `close()` that waits for the daemon's 0x09.
    var closer = WaitingCall<Void>()

    init(connection: UInt32) { self.connection = connection }

    var isOpen: Bool {
        if case .open = phase { return true }
        return false
    }

    /// The error a write gets now, nil while the stream is open.
    var writeError: PilotDriverError? {
        switch phase {
        case .open: nil
        case .remoteClosed, .closing: .streamClosed(connection: connection)
        case .overflowed(let limit): .streamOverflow(connection: connection, limit: limit)
        case .failed(let error): error
        }
    }

    // MARK: The reading thread's side

    /// `data` arrived: handed to the waiting reader, or buffered. Returns false, and keeps
    /// nothing, when it would pass `room` bytes buffered; the caller then calls `overflow`.
    mutating func receive(_ data: [UInt8], room: Int) -> Bool {
        guard isOpen, !data.isEmpty else { return true }
        if reader.isWaiting {
            reader.resume(.success(data))
            return true
        }
        guard data.count <= room else { return false }
        chunks.append(data)
        buffered += data.count
        return true
    }

    /// The stream passed its bound and was closed by this side: what is buffered stays
    /// readable, then the reader gets `streamOverflow`.
    mutating func overflow(limit: Int) {
        phase = .overflowed(limit: limit)
        reader.resume(.failure(.streamOverflow(connection: connection, limit: limit)))
    }

    /// A 0x09 frame for this stream arrived. Returns true when it answers `close()`, and the
    /// inbox is then done with.
    mutating func closed() -> Bool {
        switch phase {
        case .open:
            phase = .remoteClosed
            reader.resume(.success(nil))
            return false
        case .closing:
            closer.resume(.success(()))
            return true
        case .remoteClosed, .overflowed, .failed:
            return false
        }
    }

    /// The connection ended: the waiting close returns (the stream is gone with it), and reads
    /// of an open stream, after the buffered bytes, fail with `error`.
    mutating func fail(_ error: PilotDriverError) {
        switch phase {
        case .open:
            phase = .failed(error)
            reader.resume(.failure(error))
        case .closing:
            closer.resume(.success(()))
        case .remoteClosed, .overflowed, .failed:
            break
        }
    }

    // MARK: The stream's side

    /// What a read gets now: every buffered byte, the end (nil), or the error the stream ended
    /// with; nil when it must wait.
    mutating func readNow() -> Result<[UInt8]?, PilotDriverError>? {
        if !chunks.isEmpty {
            let bytes = chunks.count == 1 ? chunks[0] : Array(chunks.joined())
            chunks = []
            buffered = 0
            return .success(bytes)
        }
        switch phase {
        case .open: return nil
        case .remoteClosed, .closing: return .success(nil)
        case .overflowed(let limit): return .failure(.streamOverflow(connection: connection, limit: limit))
        case .failed(let error): return .failure(error)
        }
    }

    /// What `close()` does, by how the stream stands.
    enum Closing {
        /// It was open: Close is to be sent, and the waiter waits for the daemon's 0x09.
        case sendClose
        /// Close went out already: the waiter waits for the same 0x09.
        case waitForTheDaemon
        /// Another `close()` waits already.
        case busy
        /// It had ended: nothing to wait for, and the inbox is done with.
        case ended
    }

    /// `close()`'s `waiter`, held until the daemon closes the stream if it has not yet.
    mutating func close(_ waiter: WaitingCall<Void>.Waiter, id: UInt64) -> Closing {
        switch phase {
        case .open:
            phase = .closing
            _ = closer.hold(waiter, id: id)
            return .sendClose
        case .closing:
            return closer.hold(waiter, id: id) ? .waitForTheDaemon : .busy
        case .remoteClosed, .overflowed, .failed:
            return .ended
        }
    }
}
