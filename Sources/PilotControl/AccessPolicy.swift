/// Who may use a control socket, decided from the peer's kernel-reported credentials.
///
/// An identity's socket admits its owner, members of the identity's allowed groups, and root.
/// The admin socket admits root and members of the admin group. Nothing else: in particular being
/// an admin does not make one an identity's user (least privilege; an admin can add itself to an
/// identity's groups through the admin socket, which is logged).
public struct AccessPolicy: Hashable, Sendable {
    public enum Subject: Hashable, Sendable {
        /// The per-identity socket of the identity named `identity`.
        case identity(name: String, owner: UInt32, allowedGroups: Set<UInt32>)
        /// The host's admin socket.
        case admin(adminGroup: UInt32?)
        /// An identity that was deleted: nobody, root included, may act as it any more.
        case removed(name: String)
        /// A service's socket that one program uses (the app service, used by pilot-host): root
        /// and the uid `client` only.
        case service(name: String, client: UInt32)
    }

    public var subject: Subject

    public init(_ subject: Subject) {
        self.subject = subject
    }

    /// Why a peer was let in, for the log.
    public enum Grant: Hashable, Sendable {
        case root
        case owner
        case group(UInt32)
    }

    /// Admits or refuses `peer`.
    public func decide(_ peer: PeerCredentials) -> Result<Grant, AccessDenied> {
        switch subject {
        case .removed(let name):
            return .failure(AccessDenied(peer: peer, target: "identity \(name), which was deleted"))
        case _ where peer.isRoot:
            return .success(.root)
        case let .identity(name, owner, allowedGroups):
            if peer.uid == owner { return .success(.owner) }
            if let group = peer.allGroups.intersection(allowedGroups).min() { return .success(.group(group)) }
            return .failure(AccessDenied(peer: peer, target: "identity \(name)"))
        case let .service(name, client):
            if peer.uid == client { return .success(.owner) }
            return .failure(AccessDenied(peer: peer, target: name))
        case .admin(let adminGroup):
            if let adminGroup, peer.allGroups.contains(adminGroup) { return .success(.group(adminGroup)) }
            return .failure(AccessDenied(peer: peer, target: "the admin socket"))
        }
    }
}

/// A refused connection: what the client is told before the socket closes.
public struct AccessDenied: Error, Hashable, Sendable, CustomStringConvertible {
    public var peer: PeerCredentials
    public var target: String

    public var description: String {
        "permission denied: uid \(peer.uid) (pid \(peer.pid)) may not use \(target)"
    }
}
