import PilotWire

/// A port of the identity bound by `PilotDriver.listen(port:)`: the streams other nodes dial
/// to it, in the order they arrive. Each is buffered from its first byte on, before `accept()`
/// takes it.
///
/// One `accept()` waits at a time. A listener released without `close()` is closed when the
/// last reference to it goes.
public final class PilotListener: Sendable {
    /// The bound port.
    public let port: UInt16

    private let driver: PilotDriver

    init(driver: PilotDriver, port: UInt16) {
        self.driver = driver
        self.port = port
    }

    deinit {
        if driver.removeListener(port) { driver.sendUnanswered(.unbind(port: port), reply: .unbindOK) }
    }

    /// The next stream dialed to the port, waiting for one if none is here. Throws
    /// `listenerClosed` once the listener is closed.
    public func accept() async throws(PilotDriverError) -> PilotStream {
        let port = port
        let accepted = try await driver.suspend { state, id, waiter in
            guard state.listeners[port] != nil else { return .failure(state.ended ?? .listenerClosed(port: port)) }
            if let stream = state.listeners[port]?.acceptNow() { return .success(stream) }
            guard state.listeners[port]?.acceptor.hold(waiter, id: id) == true else {
                return .failure(.invalidArgument(reason: "the listener on port \(port) has an accept waiting already"))
            }
            return nil
        } withdraw: { state, id in
            state.listeners[port]?.acceptor.withdraw(id)
        }
        return PilotStream(driver: driver, connection: accepted.connection, remote: accepted.remote, remotePort: accepted.remotePort)
    }

    /// Stops listening: the port is unbound at the daemon, the waiting `accept()` throws
    /// `listenerClosed`, and the streams accepted but never taken are closed. Nothing is left
    /// to do once the connection has ended.
    public func close() async throws(PilotDriverError) {
        guard driver.removeListener(port) else { return }
        do throws(PilotDriverError) {
            _ = try await driver.request(.unbind(port: port), reply: .unbindOK)
        } catch .connectionClosed {
            return
        }
    }
}

extension PilotDriver {
    /// Takes listener `port` out of the connection, failing its waiting `accept()` and
    /// closing the streams it never handed out; false if it was not there.
    func removeListener(_ port: UInt16) -> Bool {
        state.withLock { state in
            guard var listener = state.listeners.removeValue(forKey: port) else { return false }
            for stream in listener.close(.listenerClosed(port: port)) {
                state.removeStream(stream.connection)
                if state.ended == nil { writeClose(stream.connection) }
            }
            return true
        }
    }
}
