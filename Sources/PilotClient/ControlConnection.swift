import Glibc
public import PilotWire

/// A connection to a pilot-host control socket (an identity's own, or the admin socket): the
/// Swift SDK an agent links, and what `pilotctl` is built on. Blocking; one request at a time.
public final class ControlConnection {
    private let fd: Int32
    public let path: String
    private var decoder = LengthPrefixedFrames.Decoder(maxSize: ControlFrame.maxSize, field: "control reply")

    public init(path: String) throws(ControlClientError) {
        self.path = path
        do {
            fd = try connectUnixSocket(to: path)
        } catch {
            throw ControlClientError("\(error.reason)\(error.hint)", permission: error.code == EACCES)
        }
    }

    deinit { close(fd) }

    /// Sends `request` and waits for its reply.
    public func request(_ request: ControlRequest) throws -> ControlReply {
        let frame = try request.encoded()
        var sent = 0
        while sent < frame.count {
            let n = frame[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            // A host that refused us has already answered and shut its side: read that answer.
            guard n > 0 else { break }
            sent += n
        }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            if let body = try decoder.next() { return try ControlReply(decoding: body) }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw ControlClientError("\(path) closed the connection without a reply") }
            decoder.append(buffer[0..<n])
        }
    }
}

/// Why a control socket could not be used.
public struct ControlClientError: Error, CustomStringConvertible {
    public let description: String
    /// The socket's file mode refused us (the host never saw the connection).
    public let permission: Bool

    public init(_ description: String, permission: Bool = false) {
        self.description = description
        self.permission = permission
    }
}
