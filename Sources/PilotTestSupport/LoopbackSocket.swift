public import Foundation

/// An IPv4 endpoint on this machine.
public struct LoopbackEndpoint: Hashable, Sendable, CustomStringConvertible {
    public var ip: [UInt8]
    public var port: UInt16

    public var description: String { "\(ip.map(String.init).joined(separator: ".")):\(port)" }

    public init(ip: [UInt8], port: UInt16) {
        self.ip = ip
        self.port = port
    }

    init(_ address: sockaddr_in) {
        let host = UInt32(bigEndian: address.sin_addr.s_addr)
        ip = [UInt8(host >> 24), UInt8(host >> 16 & 0xFF), UInt8(host >> 8 & 0xFF), UInt8(host & 0xFF)]
        port = UInt16(bigEndian: address.sin_port)
    }

    var sockaddr: sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = (UInt32(ip[0]) << 24 | UInt32(ip[1]) << 16 | UInt32(ip[2]) << 8 | UInt32(ip[3])).bigEndian
        return address
    }
}

/// Why a test socket call failed.
public struct SocketError: Error, CustomStringConvertible {
    public let description: String

    public init(description: String) { self.description = description }

    public static func posix(_ call: String) -> SocketError {
        SocketError(description: "\(call): \(String(cString: strerror(errno)))")
    }
}

/// A blocking POSIX socket on 127.0.0.1 with deadlines, for tests that stand in for a registry or
/// a beacon. Not for production code: the daemon uses SwiftNIO.
public final class LoopbackSocket: @unchecked Sendable {
    // @unchecked: a socket is used by one test thread at a time; `fd` never changes.
    public let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// A UDP socket bound to 127.0.0.1 on an ephemeral port.
    public static func udp() throws -> LoopbackSocket {
        try bound(type: Int32(SOCK_DGRAM.rawValue))
    }

    /// A listening TCP socket on 127.0.0.1 on an ephemeral port.
    public static func tcpListener() throws -> LoopbackSocket {
        let socket = try bound(type: Int32(SOCK_STREAM.rawValue))
        guard listen(socket.fd, 16) == 0 else { throw SocketError.posix("listen") }
        return socket
    }

    private static func bound(type: Int32) throws -> LoopbackSocket {
        let fd = socket(AF_INET, type, 0)
        guard fd >= 0 else { throw SocketError.posix("socket") }
        let result = LoopbackSocket(fd: fd)
        var address = LoopbackEndpoint(ip: [127, 0, 0, 1], port: 0).sockaddr
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else { throw SocketError.posix("bind") }
        return result
    }

    /// A TCP connection to `endpoint`.
    public static func connect(to endpoint: LoopbackEndpoint) throws -> LoopbackSocket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError.posix("socket") }
        let result = LoopbackSocket(fd: fd)
        var address = endpoint.sockaddr
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else { throw SocketError.posix("connect") }
        return result
    }

    /// A free TCP port on 127.0.0.1 (bound and released, so there is a small race).
    public static func freePort() throws -> UInt16 {
        try tcpListener().localEndpoint.port
    }

    /// Whether a UDP socket can be bound to 127.0.0.1:`port` now (nobody else holds it).
    public static func canBindUDP(port: UInt16) throws -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw SocketError.posix("socket") }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    /// The bound local endpoint.
    public var localEndpoint: LoopbackEndpoint {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return LoopbackEndpoint(address)
    }

    /// Waits up to `timeout` seconds for the socket to become readable.
    public func waitReadable(timeout: TimeInterval) -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&poller, 1, Int32(max(0, timeout * 1000))) == 1
    }

    /// Accepts one connection, or `nil` if none arrives in time.
    public func accept(timeout: TimeInterval) throws -> LoopbackSocket? {
        guard waitReadable(timeout: timeout) else { return nil }
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { throw SocketError.posix("accept") }
        return LoopbackSocket(fd: client)
    }

    /// Receives one datagram and its sender, or `nil` if none arrives in time.
    public func receiveDatagram(timeout: TimeInterval) throws -> (bytes: [UInt8], from: LoopbackEndpoint)? {
        guard waitReadable(timeout: timeout) else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let count = buffer.withUnsafeMutableBytes { raw in
            withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(fd, raw.baseAddress, raw.count, 0, $0, &length)
                }
            }
        }
        guard count >= 0 else { throw SocketError.posix("recvfrom") }
        return (Array(buffer[0..<count]), LoopbackEndpoint(address))
    }

    public func send(_ bytes: [UInt8], to endpoint: LoopbackEndpoint) throws {
        var address = endpoint.sockaddr
        let sent = bytes.withUnsafeBytes { raw in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard sent == bytes.count else { throw SocketError.posix("sendto") }
    }

    /// Reads exactly `count` bytes from a stream, or `nil` if the peer closes or time runs out.
    public func read(exactly count: Int, timeout: TimeInterval) throws -> [UInt8]? {
        var result: [UInt8] = []
        result.reserveCapacity(count)
        let deadline = Date().addingTimeInterval(timeout)
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while result.count < count {
            guard waitReadable(timeout: deadline.timeIntervalSinceNow) else { return nil }
            let wanted = min(chunk.count, count - result.count)
            let got = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, wanted) }
            if got < 0 { throw SocketError.posix("read") }
            if got == 0 { return nil }
            result.append(contentsOf: chunk[0..<got])
        }
        return result
    }

    /// Reads one frame of a length-prefixed stream (u32 big-endian length, then the body, as the
    /// registry speaks); `nil` if the peer closes or time runs out.
    public func readFrame(timeout: TimeInterval) throws -> [UInt8]? {
        let deadline = Date().addingTimeInterval(timeout)
        guard let header = try read(exactly: 4, timeout: timeout) else { return nil }
        let length = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
        guard let body = try read(exactly: length, timeout: deadline.timeIntervalSinceNow) else { return nil }
        return header + body
    }

    /// Writes all of `bytes` to a stream.
    public func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            // MSG_NOSIGNAL: a peer that closed gives EPIPE here, not a SIGPIPE that kills the tests.
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw SocketError.posix("write") }
            offset += written
        }
    }
}
