import PilotWire

/// The reading thread's side of `PilotDriver`: each frame the daemon sends, in order, goes to
/// the request it answers or, for a push, to its stream, listener or `datagrams`.
extension PilotDriver {
    /// Routes one frame; returns false when the connection must end (the daemon broke the
    /// protocol, or it was closed here).
    func receive(_ frame: DriverFrame) -> Bool {
        let push: DriverPush?
        do {
            push = try DriverPush(decoding: frame)
        } catch {
            end(.connectionClosed(reason: "the daemon sent a malformed \(frame.knownCommand?.name ?? "push") frame: \(error)"))
            return false
        }
        switch push {
        case .recv(let connection, let data):
            receive(data, on: connection)
        case .remoteClosed(let connection):
            closed(connection)
        case .accept(let port, let connection, let remote, let remotePort):
            accepted(AcceptedStream(connection: connection, remote: remote, remotePort: remotePort), on: port)
        case .recvFrom(let source, let sourcePort, let destinationPort, let data):
            datagramInput.yield(PilotDatagram(source: source, sourcePort: sourcePort, destinationPort: destinationPort, data: data))
        case nil:
            answer(frame)
        }
        return state.withLock { $0.ended == nil }
    }

    /// Ends the connection with the reason the reading thread gives, unless it ended already.
    func end(reason: String) {
        let unclaimed = state.withLock { $0.unclaimedError }
        end(.connectionClosed(reason: unclaimed.map { "\(reason) after its error reply: \($0)" } ?? reason))
    }

    /// Ends the connection with `error` (the first reason given stays): every waiter is
    /// answered, and every later call fails with it.
    func end(_ error: PilotDriverError) {
        state.withLock { state in
            guard state.ended == nil else { return }
            state.ended = error
            for waiter in state.requests.removeAll() { waiter.resume(returning: .failure(error)) }
            for connection in state.streams.keys { state.streams[connection]?.fail(error) }
            for port in state.listeners.keys { _ = state.listeners[port]?.close(error) }
            state.listeners = [:]
        }
        datagramInput.finish()
    }

    // MARK: Replies

    /// A reply, or an error reply, to the request it answers (`PendingRequests`'s rule).
    private func answer(_ frame: DriverFrame) {
        state.withLock { state in
            guard let (request, admitted) = state.requests.answer(frame) else {
                if frame.command == DriverCommand.error.rawValue { state.unclaimedError = Self.message(ofError: frame) }
                return
            }
            for next in admitted { socket.write(next.encoded()) }
            let command = request.frame.knownCommand ?? .error
            guard frame.command != DriverCommand.error.rawValue else {
                request.waiter?.resume(returning: .failure(.refused(command, message: Self.message(ofError: frame))))
                return
            }
            if request.reply == .dialOK {
                guard let connection = try? Self.connectionID(of: frame) else {
                    request.waiter?.resume(returning: .failure(.malformedReply(.dialOK, reason: "not a connection id")))
                    return
                }
                if request.waiter == nil {
                    // Its caller gave up: nobody will read the stream.
                    writeClose(connection)
                    return
                }
                state.streams[connection] = StreamInbox(connection: connection)
            }
            request.waiter?.resume(returning: .success(frame))
        }
    }

    /// The message of an error reply (`[u16 code][UTF-8 message]`).
    private static func message(ofError frame: DriverFrame) -> String {
        String(decoding: frame.payload.dropFirst(2), as: UTF8.self)
    }

    // MARK: Pushes

    /// Stream data: to the stream's reader or buffer. Data for a stream closed here is dropped.
    private func receive(_ data: [UInt8], on connection: UInt32) {
        state.withLock { state in
            // Only the count is read first: a copy of the inbox would make the append copy its chunks.
            guard let before = state.streams[connection]?.buffered else { return }
            let streamRoom = Self.streamBufferLimit - before
            let connectionRoom = Self.connectionBufferLimit - state.buffered
            if state.streams[connection]?.receive(data, room: min(streamRoom, connectionRoom)) == false {
                state.streams[connection]?.overflow(limit: streamRoom <= connectionRoom ? Self.streamBufferLimit : Self.connectionBufferLimit)
                writeClose(connection)
            }
            state.buffered += (state.streams[connection]?.buffered ?? before) - before
        }
    }

    /// The 0x09 frame: the remote end closed the stream, or the daemon answers `close()`.
    private func closed(_ connection: UInt32) {
        state.withLock { state in
            guard state.streams[connection]?.closed() == true else { return }
            state.removeStream(connection)
        }
    }

    /// A bound port accepted a stream: its inbox starts now, so no data is missed, and the
    /// listener gets it. A port no listener holds (it was just closed) has it closed at once.
    private func accepted(_ stream: AcceptedStream, on port: UInt16) {
        state.withLock { state in
            guard state.listeners[port] != nil else {
                writeClose(stream.connection)
                return
            }
            state.streams[stream.connection] = StreamInbox(connection: stream.connection)
            state.listeners[port]?.receive(stream)
        }
    }
}
