/// Everything the registry keeps durably, as loaded at start.
struct RegistryState {
    var nodes: [NodeRecord]
    var trust: [(UInt32, UInt32)]
    var requests: [UInt32: [PendingHandshake]]
    var responses: [UInt32: [PendingResponse]]
    var networks: [CustomNetwork]
}

/// Where the registry writes its state through before answering: SQLite (`RegistryStore`,
/// registry.db, one instance) or PostgreSQL (`PostgresRegistryStore`, shared by instances).
///
/// Used with `Registry.lock` held, from a thread that may block (the registry server's thread
/// pool, a test, start-up), never from an event loop. Every method either does all it says or
/// throws; inside `transaction` nothing is kept unless the outermost one returns.
protocol RegistryStorage: AnyObject {
    /// Where the state is, for logs and errors: a file path, or a URL without its password.
    var location: String { get }

    /// Everything, for the in-memory state at start.
    func load(now: Double) throws -> RegistryState

    /// Inserts or replaces `node`'s row.
    func save(_ node: NodeRecord) throws

    /// Deletes `node` (its trust pairs, relayed handshakes and memberships go with it) and keeps
    /// its tombstone: its id and the SHA-256 of its key.
    func retire(_ node: NodeRecord) throws

    /// The id a retired node with `key` had, if one did.
    func retiredID(of key: [UInt8]) throws -> UInt32?

    /// A retired node's key came back: its tombstone goes, its row is saved again.
    func revive(_ id: UInt32) throws

    /// The highest id ever handed out to a node now retired (0: none).
    func highestRetiredID() throws -> UInt32

    /// The id a new node gets. `next` is the one past the highest this process knows of: one
    /// registry alone hands it out; a database shared by instances allocates its own, so two
    /// instances never give out the same id. Nil when ids are exhausted.
    func newNodeID(next: UInt32) throws -> UInt32?

    func setTrust(_ a: UInt32, _ b: UInt32, _ trusted: Bool) throws

    func addRequest(to: UInt32, _ request: PendingHandshake) throws

    func addResponse(to: UInt32, _ response: PendingResponse) throws

    func clearInbox(of node: UInt32) throws

    /// Stores a new network with its first members.
    func add(_ network: CustomNetwork) throws

    func setMember(_ node: UInt32, of network: UInt16, _ member: Bool) throws

    /// Drops `node` from every network (an explicit deregister).
    func removeMemberships(of node: UInt32) throws

    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    /// Inside another it is a savepoint of that one: undone alone when it throws.
    func transaction<R>(_ body: () throws -> R) throws -> R

    // MARK: Instances sharing the store

    /// Whether other registry instances may share this store: then heartbeats are written
    /// (`recordSeen`) and the reaper asks it (`stillSilent`). False for registry.db.
    var isShared: Bool { get }

    /// The stored node holding `key`, for a key memory does not know: another instance may
    /// have registered it. Nil when none does (always, for a store nobody shares).
    func storedNode(withKey key: [UInt8]) throws -> NodeRecord?

    /// For the registrations of a batch whose keys memory does not know, asked at once: the
    /// stored nodes holding any of `keys` (another instance registered them; none for a store
    /// nobody shares) and the ids of those retired.
    func lookUp(keys: [[UInt8]]) throws -> (stored: [NodeRecord], retired: [[UInt8]: UInt32])

    /// Heartbeats (and registrations) of `nodes` seen here lately, for the other instances'
    /// reapers.
    func recordSeen(_ nodes: [UInt32]) throws

    /// Of `nodes`, silent for `timeout` seconds in this instance's memory, those no instance
    /// has seen for that long either; nil when another instance is reaping at the same time
    /// (this round is left to it). Called inside the transaction that takes them offline.
    func stillSilent(_ nodes: [UInt32], timeout: Double) throws -> [UInt32]?
}

/// The `node` table's columns as both stores' `save` writes them, in order, and the clause that
/// makes an insert of an id already there an update of every other column.
enum NodeColumns {
    static let saved = [
        "id", "public_key", "owner", "real_addr", "hostname", "tags", "public", "version", "online", "relay_only", "reclaimable_hostname",
        "offline_since", "registered_from", "signs_values", "last_nonce", "lan_addrs", "listing", "description", "category", "listed",
        "register_sequence",
    ]
    static let list = saved.joined(separator: ", ")
    static let updateOnConflict = "ON CONFLICT (id) DO UPDATE SET " + saved.dropFirst().map { "\($0) = excluded.\($0)" }.joined(separator: ", ")
}

/// The registry's database cannot be reached (PostgreSQL down, a timeout, a lost connection):
/// the change was not made. Requests that need no write are still answered from memory.
public struct RegistryStorageUnavailable: Error, CustomStringConvertible {
    /// The database, as `RegistryStorage.location` names it.
    public let database: String
    public let reason: String

    public var description: String { "registry database \(database) unavailable: \(reason)" }
}

/// A unique value (a key, a hostname) is already held by a row another instance sharing the
/// database committed, which this instance's memory did not have yet: the change was not made.
/// The registry reloads the rows that hold it and answers as it answers a value taken.
public struct RegistryStorageConflict: Error, CustomStringConvertible {
    /// The database, as `RegistryStorage.location` names it.
    public let database: String
    public let reason: String

    public var description: String { "registry database \(database) refused a taken value: \(reason)" }
}
