import Glibc

/// Who is at the other end of a connected Unix stream socket, as the kernel saw it at connect(2).
///
/// Read with `SO_PEERCRED` (pid, uid, gid) and `SO_PEERGROUPS` (supplementary groups). The values
/// are frozen at connect time: a process that later drops privileges, or passes the descriptor on,
/// keeps the identity it connected with. Decisions use uid and groups only; the pid is for logs
/// (it can be recycled). A client inside a user namespace is reported with its *host* ids, so root
/// of a container arrives as the unprivileged uid it maps to.
public struct PeerCredentials: Hashable, Sendable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    /// Supplementary groups; empty where the kernel does not report them.
    public var groups: [UInt32]

    public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32] = []) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// The primary group and every supplementary group.
    public var allGroups: Set<UInt32> { Set(groups).union([gid]) }

    public var isRoot: Bool { uid == 0 }

    /// Reads the credentials of the peer of `descriptor`.
    public init(socket descriptor: Int32) throws(PeerCredentialsError) {
        // `struct ucred` is not imported into Swift: mirror its layout (pid_t, uid_t, gid_t).
        var credentials = (pid: Int32(0), uid: UInt32(0), gid: UInt32(0))
        var length = socklen_t(MemoryLayout.size(ofValue: credentials))
        guard getsockopt(descriptor, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else {
            throw .unreadable(errno: errno)
        }
        guard length == socklen_t(MemoryLayout.size(ofValue: credentials)) else {
            throw .unexpectedLength(Int(length))
        }
        pid = credentials.pid
        uid = credentials.uid
        gid = credentials.gid
        groups = try Self.supplementaryGroups(of: descriptor)
    }

    /// `SO_PEERGROUPS` (Linux 4.13+): answers ERANGE with the needed size when the buffer is short.
    private static func supplementaryGroups(of descriptor: Int32) throws(PeerCredentialsError) -> [UInt32] {
        var capacity = 32
        // NGROUPS_MAX is 65536; two rounds always suffice, a third guards against a racing change.
        for _ in 0..<3 {
            var buffer = [UInt32](repeating: 0, count: capacity)
            var length = socklen_t(capacity * MemoryLayout<UInt32>.size)
            let status = buffer.withUnsafeMutableBytes {
                getsockopt(descriptor, SOL_SOCKET, peerGroupsOption, $0.baseAddress, &length)
            }
            if status == 0 {
                return Array(buffer.prefix(Int(length) / MemoryLayout<UInt32>.size))
            }
            switch errno {
            case ERANGE:
                capacity = max(capacity * 2, Int(length) / MemoryLayout<UInt32>.size)
            case ENOPROTOOPT:
                return []
            case let code:
                throw .unreadable(errno: code)
            }
        }
        throw .unreadable(errno: ERANGE)
    }
}

/// `SO_PEERGROUPS` from the kernel's uapi `asm-generic/socket.h`.
private let peerGroupsOption: Int32 = 59

/// Why the peer of a socket could not be identified; the connection is refused.
public enum PeerCredentialsError: Error, Hashable, Sendable, CustomStringConvertible {
    case unreadable(errno: Int32)
    case unexpectedLength(Int)

    public var description: String {
        switch self {
        case .unreadable(let code):
            return "cannot read peer credentials: \(String(cString: strerror(code)))"
        case .unexpectedLength(let length):
            return "peer credentials of unexpected size \(length)"
        }
    }
}
