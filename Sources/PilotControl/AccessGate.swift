import Synchronization

/// The access policy of one control socket's subject as it is now, shared by its listener and
/// every connection it accepted: changing it changes who may send the next request on
/// connections already open, not only who may connect.
///
/// An identity has one gate for its lifetime. One created again under a deleted identity's name
/// gets a new gate, so a connection opened for the old one is never served as the new one.
///
/// The policy and its lock are in the gate itself, one allocation: a host keeps a gate for each
/// of its identities.
public final class AccessGate: Sendable {
    private let current: Mutex<AccessPolicy>

    public init(_ policy: AccessPolicy) {
        current = Mutex(policy)
    }

    public var policy: AccessPolicy {
        get { current.withLock { $0 } }
        set { current.withLock { $0 = newValue } }
    }
}
