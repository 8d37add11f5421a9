import NIOCore
import NIOPosix

/// `struct ucred` as the kernel lays it out (pid_t, uid_t, gid_t); Swift does not import it.
struct KernelPeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// Room for 32 supplementary groups from `SO_PEERGROUPS`. The kernel keeps a process's groups
/// sorted, so unused (zero) slots can only trail the real ones.
struct KernelPeerGroups: Sendable {
    var gids: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    var list: [UInt32] {
        let all = withUnsafeBytes(of: gids) { Array($0.bindMemory(to: UInt32.self)) }
        // Trailing zeros are unused slots; a real group 0 would sort first, never last alone.
        var end = all.count
        while end > 0, all[end - 1] == 0 { end -= 1 }
        return Array(all[0..<end])
    }
}

extension PeerCredentials {
    /// The credentials of a connected NIO Unix socket channel, read on its event loop.
    static func of(_ channel: any Channel) -> EventLoopFuture<PeerCredentials> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(PeerCredentialsError.unreadable(errno: ENOTSOCK))
        }
        let credentials: EventLoopFuture<KernelPeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return credentials.flatMap { credentials in
            let groups: EventLoopFuture<KernelPeerGroups> = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(59))  // SO_PEERGROUPS
            return groups.map { groups in
                PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid, groups: groups.list)
            }.flatMapErrorThrowing { _ in
                // More than 32 groups (ERANGE) or an old kernel: judge by uid and primary group.
                PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
            }
        }
    }
}
