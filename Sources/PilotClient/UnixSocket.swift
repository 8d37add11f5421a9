import Glibc

/// Why a Unix stream socket could not be connected: the path and the C library's reason.
struct UnixSocketError: Error {
    /// The socket's path.
    let path: String
    /// `errno` of the call that failed, or nil when the path itself was refused (too long).
    let code: Int32?
    /// The reason in words, as `strerror` gives it.
    let reason: String
}

/// Opens a Unix stream socket connected to `path` and returns its descriptor, which the caller
/// owns and closes. Both the JSON protocol's `ControlConnection` and `PilotDriver` start here.
func connectUnixSocket(to path: String) throws(UnixSocketError) -> Int32 {
    let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else {
        throw UnixSocketError(path: path, code: errno, reason: "socket: \(String(cString: strerror(errno)))")
    }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
        close(descriptor)
        throw UnixSocketError(path: path, code: nil, reason: "socket path too long: \(path)")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    guard connected == 0 else {
        let code = errno
        close(descriptor)
        throw UnixSocketError(path: path, code: code, reason: "cannot connect to \(path): \(String(cString: strerror(code)))")
    }
    return descriptor
}

extension UnixSocketError {
    /// A hint for the usual reasons a host socket is not there.
    var hint: String {
        code == ENOENT || code == ECONNREFUSED ? " (is pilot-host running, and is the identity name right?)" : ""
    }
}
