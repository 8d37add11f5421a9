import NIOConcurrencyHelpers

/// The access policy of one control socket's subject as it is now, shared by its listener and
/// every connection it accepted: changing it changes who may send the next request on
/// connections already open, not only who may connect.
///
/// An identity has one gate for its lifetime. One created again under a deleted identity's name
/// gets a new gate, so a connection opened for the old one is never served as the new one.
public final class AccessGate: Sendable {
    private let current: NIOLockedValueBox<AccessPolicy>

    public init(_ policy: AccessPolicy) {
        current = NIOLockedValueBox(policy)
    }

    public var policy: AccessPolicy {
        get { current.withLockedValue { $0 } }
        set { current.withLockedValue { $0 = newValue } }
    }
}
