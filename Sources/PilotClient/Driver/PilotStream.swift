public import PilotWire

/// A reliable stream of bytes to a port of another node, opened by `PilotDriver.dial` or taken
/// from `PilotListener.accept`, carried by the driver connection it came from.
///
/// One task reads and one task writes at a time; the two may run at once. A stream released
/// without `close()` is closed when the last reference to it goes.
public final class PilotStream: Sendable {
    /// The most bytes `write` puts in one Send frame: 256 KiB, though a frame could carry a
    /// megabyte less the 4-byte connection id. The daemon handles a Send before any request
    /// behind it, so smaller frames keep an `info()` or a `close()` from waiting behind a
    /// megabyte on its way into a slow stream.
    public static let maxFrameData = 256 << 10

    /// The node at the other end.
    public let remote: Address
    /// The other end's port: the port dialed, or the port the remote dialed from.
    public let remotePort: UInt16
    /// The stream's id on its driver connection.
    public let connection: UInt32

    private let driver: PilotDriver

    init(driver: PilotDriver, connection: UInt32, remote: Address, remotePort: UInt16) {
        self.driver = driver
        self.connection = connection
        self.remote = remote
        self.remotePort = remotePort
    }

    deinit {
        driver.release(connection)
    }

    /// Sends `bytes`, in frames of at most `maxFrameData`, and returns once the last is written
    /// to the socket: a daemon that cannot send as fast as this side writes slows the writer
    /// down. Throws `streamClosed` once either end has closed the stream.
    public func write(_ bytes: [UInt8]) async throws(PilotDriverError) {
        var start = 0
        while start < bytes.count {
            if Task.isCancelled { throw .cancelled }
            if let error = driver.writeError(connection) { throw error }
            let end = min(bytes.count, start + Self.maxFrameData)
            try await driver.send(DriverRequest.send(connection: connection, data: Array(bytes[start..<end])).frame())
            start = end
        }
    }

    /// The bytes that arrived since the last read (all of them, at least one byte), waiting
    /// for some if none are here; nil once the stream has ended and everything was read.
    /// Throws `streamOverflow` after the buffered bytes of a stream read too slowly.
    public func read() async throws(PilotDriverError) -> [UInt8]? {
        let connection = connection
        return try await driver.suspend { state, id, waiter in
            guard state.streams[connection] != nil else { return .success(nil) }
            let before = state.streams[connection]?.buffered ?? 0
            if let now = state.streams[connection]?.readNow() {
                state.buffered -= before
                return now
            }
            guard state.streams[connection]?.reader.hold(waiter, id: id) == true else {
                return .failure(.invalidArgument(reason: "stream \(connection) has a read waiting already"))
            }
            return nil
        } withdraw: { state, id in
            state.streams[connection]?.reader.withdraw(id)
        }
    }

    /// Closes the stream: the remote end reads its end, and this side's reads return nil. Waits
    /// for the daemon to close it; returns at once if it had ended already.
    public func close() async throws(PilotDriverError) {
        let connection = connection
        let driver = driver
        try await driver.suspend { state, id, waiter in
            // After the connection's end no 0x09 comes: the stream is gone with it.
            guard state.ended == nil, let closing = state.streams[connection]?.close(waiter, id: id) else {
                state.removeStream(connection)
                return .success(())
            }
            switch closing {
            case .sendClose:
                driver.writeClose(connection)
                return nil
            case .waitForTheDaemon:
                return nil
            case .busy:
                return .failure(.invalidArgument(reason: "stream \(connection) has a close waiting already"))
            case .ended:
                state.removeStream(connection)
                return .success(())
            }
        } withdraw: { state, id in
            state.streams[connection]?.closer.withdraw(id)
        }
    }
}

extension PilotDriver {
    /// The error a write on stream `connection` gets now, nil if it may write.
    func writeError(_ connection: UInt32) -> PilotDriverError? {
        state.withLock { state in
            guard let inbox = state.streams[connection] else { return .streamClosed(connection: connection) }
            return inbox.writeError
        }
    }

    /// The last reference to stream `connection` went: its inbox goes, and an open stream is
    /// closed at the daemon (the 0x09 that answers is then dropped).
    func release(_ connection: UInt32) {
        state.withLock { state in
            guard let inbox = state.removeStream(connection) else { return }
            if inbox.isOpen, state.ended == nil {
                writeClose(connection)
            }
        }
    }
}
