/// How many control connections the host holds, for whom, and how much each may ask at once.
///
/// A control socket is a local tenant's way in, so a tenant must not be able to take what the
/// others need: descriptors (each connection is one), memory (what a connection sent and the host
/// has not answered yet) or room in the host's shared budget.
public struct ConnectionLimits: Hashable, Sendable {
    /// Open connections one uid may hold across every socket of the host, root included.
    public var perUser: Int
    /// Connections an identity's socket is always granted, whatever the others hold. Their
    /// descriptors are set aside when the socket opens.
    public var reservedPerIdentity: Int
    /// Connections the admin socket is always granted.
    public var reservedForAdmin: Int
    /// Requests a connection may have waiting behind the one being answered; past it the host
    /// stops reading from that connection (its client blocks in `write`, as with TCP).
    public var queuedRequests: Int
    /// Bytes of unanswered requests (and of a frame still arriving) a connection may have
    /// buffered before the host stops reading from it.
    public var queuedBytes: Int

    public init(
        perUser: Int = 64, reservedPerIdentity: Int = 1, reservedForAdmin: Int = 16, queuedRequests: Int = 4,
        queuedBytes: Int = 1 << 20
    ) {
        self.perUser = perUser
        self.reservedPerIdentity = reservedPerIdentity
        self.reservedForAdmin = reservedForAdmin
        self.queuedRequests = queuedRequests
        self.queuedBytes = queuedBytes
    }
}

/// The accounting behind `ConnectionLimits`: which listener and uid hold how many connections,
/// and whether one more fits. A value type, so its rules are tested without sockets.
///
/// A listener's reserved connections are always admitted (their descriptors are counted as
/// committed from the moment it opens); any other connection only while the descriptors committed
/// (open connections plus unused reserves) stay within the budget the caller gives.
struct ConnectionLedger {
    enum Refusal: Error, Equatable {
        /// The uid holds `perUser` connections already.
        case userAtLimit(held: Int)
        /// The host's descriptors for connections are committed.
        case hostFull(committed: Int)
    }

    private(set) var open = 0
    private var openByUser: [UInt32: Int] = [:]
    private var openByListener: [UInt64: (open: Int, reserved: Int)] = [:]
    /// Reserved connections not in use, summed over the listeners.
    private(set) var unusedReserves = 0
    let limits: ConnectionLimits

    init(limits: ConnectionLimits) { self.limits = limits }

    /// Descriptors promised to connections: those open, and every listener's unused reserve.
    var committed: Int { open + unusedReserves }

    mutating func addListener(_ token: UInt64, reserved: Int) {
        openByListener[token] = (0, reserved)
        unusedReserves += reserved
    }

    /// The listener is gone; its open connections stay counted until they close.
    mutating func removeListener(_ token: UInt64) {
        guard let entry = openByListener[token] else { return }
        unusedReserves -= max(0, entry.reserved - entry.open)
        openByListener[token]?.reserved = 0
        if entry.open == 0 { openByListener[token] = nil }
    }

    /// Admits one connection of `uid` to `listener` and counts it, or throws why not. `budget`
    /// is how many descriptors connections may have in all.
    mutating func admit(uid: UInt32, listener token: UInt64, budget: Int) throws(Refusal) {
        let held = openByUser[uid, default: 0]
        guard held < limits.perUser else { throw .userAtLimit(held: held) }
        let entry = openByListener[token, default: (0, 0)]
        if entry.open < entry.reserved {
            unusedReserves -= 1
        } else {
            guard committed < budget else { throw .hostFull(committed: committed) }
        }
        openByListener[token] = (entry.open + 1, entry.reserved)
        openByUser[uid] = held + 1
        open += 1
    }

    /// A connection admitted by `admit` closed.
    mutating func release(uid: UInt32, listener token: UInt64) {
        if let held = openByUser[uid] { openByUser[uid] = held > 1 ? held - 1 : nil }
        open -= 1
        guard let entry = openByListener[token] else { return }
        if entry.open <= entry.reserved { unusedReserves += 1 }
        if entry.open == 1, entry.reserved == 0 {
            openByListener[token] = nil
        } else {
            openByListener[token] = (entry.open - 1, entry.reserved)
        }
    }

    func held(by uid: UInt32) -> Int { openByUser[uid, default: 0] }
}
