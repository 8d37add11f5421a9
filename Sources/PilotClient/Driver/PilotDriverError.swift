public import PilotWire

/// Why a call on a `PilotDriver`, a `PilotStream` or a `PilotListener` failed.
public enum PilotDriverError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The identity socket could not be opened; `reason` is the C library's, with a hint.
    case cannotConnect(path: String, reason: String)
    /// The daemon answered the request with its error reply (0x0A); `message` is the daemon's
    /// own text, such as `dial: cannot reach 0:0000.0000.0009: ...` or `bind: port 5000 of
    /// alice is in use`.
    case refused(DriverCommand, message: String)
    /// The connection to the daemon has ended: `close()` was called, the daemon closed it (its
    /// last error message, if it sent one nobody waited for, is in `reason`), or the socket
    /// failed. Every stream and listener of the connection ends with it.
    case connectionClosed(reason: String)
    /// The stream has ended on this side or the remote's, so nothing more can be written.
    case streamClosed(connection: UInt32)
    /// More than `limit` bytes of the stream arrived unread, so it was closed: the driver
    /// protocol cannot ask the daemon to wait, and the alternative is to buffer without bound.
    /// The bytes buffered before the limit are still read; this error comes after them.
    case streamOverflow(connection: UInt32, limit: Int)
    /// The listener was closed while, or before, `accept()` waited.
    case listenerClosed(port: UInt16)
    /// A reply the daemon sent does not read as its command's layout.
    case malformedReply(DriverCommand, reason: String)
    /// The call asked for something the protocol cannot carry or a second wait the type does
    /// not allow (two reads of one stream at once); `reason` says which.
    case invalidArgument(reason: String)
    /// The calling task was cancelled while it waited. A request already sent is still
    /// answered by the daemon; the answer is dropped, and a stream it opened is closed.
    case cancelled

    public var description: String {
        switch self {
        case .cannotConnect(_, let reason): reason
        case .refused(_, let message): message
        case .connectionClosed(let reason): "the connection to the daemon has ended: \(reason)"
        case .streamClosed(let connection): "stream \(connection) has ended"
        case .streamOverflow(let connection, let limit):
            "stream \(connection) was closed: more than \(limit) bytes arrived that were not read"
        case .listenerClosed(let port): "the listener on port \(port) is closed"
        case .malformedReply(let command, let reason): "the daemon's \(command.name) reply is malformed: \(reason)"
        case .invalidArgument(let reason): reason
        case .cancelled: "cancelled while waiting for the daemon"
        }
    }
}
