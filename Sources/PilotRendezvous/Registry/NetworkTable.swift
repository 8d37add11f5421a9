import PilotCrypto
/// How a node may join a custom network (`join_rule` on the wire). `invite` exists on the wire
/// but this registry serves no invites, so no network has it.
enum JoinRule: String, Sendable {
    case open
    case token
}

/// A custom network (id 1 and up): its name, join rule and members. The backbone (0) is not
/// one: every registered node is in it.
struct CustomNetwork: Sendable {
    var id: UInt16
    var name: String
    var joinRule: JoinRule
    /// The join token for `.token` (as its digest: the token itself is never kept); nil for `.open`.
    var token: SecretDigest?
    var members: Set<UInt32> = []

    /// Whether a node presenting `token` may join.
    func accepts(token candidate: String) -> Bool {
        switch joinRule {
        case .open: true
        case .token: token?.matches(candidate) ?? false
        }
    }
}

/// The registry's custom networks with an index from node to networks, so `check_trust` and
/// `lookup` need not scan every network. Owned by `Registry`, which serialises all access.
struct NetworkTable: Sendable {
    private(set) var byID: [UInt16: CustomNetwork] = [:]
    private var byName: [String: UInt16] = [:]
    private var ofNode: [UInt32: Set<UInt16>] = [:]
    /// The id the next network gets; nil once 65535 is taken. Ids are never reused: networks
    /// are never deleted, so this is one past the highest.
    private(set) var nextID: UInt16? = 1

    /// The id of the network called `name`.
    func id(named name: String) -> UInt16? { byName[name] }

    /// Adds `network` (as created or loaded), members and all.
    mutating func add(_ network: CustomNetwork) {
        byID[network.id] = network
        byName[network.name] = network.id
        for node in network.members { ofNode[node, default: []].insert(network.id) }
        if network.id == .max {
            nextID = nil
        } else if let next = nextID {
            nextID = max(next, network.id + 1)
        }
    }

    /// Puts `network` as stored in place of what the table had of it, members and all.
    mutating func replace(_ network: CustomNetwork) {
        for node in byID[network.id]?.members.subtracting(network.members) ?? [] { remove(node, from: network.id) }
        add(network)
    }

    /// Records `node` as a member of `network`, which must exist.
    mutating func insert(_ node: UInt32, into network: UInt16) {
        byID[network]?.members.insert(node)
        ofNode[node, default: []].insert(network)
    }

    /// Removes `node` from `network`.
    mutating func remove(_ node: UInt32, from network: UInt16) {
        byID[network]?.members.remove(node)
        ofNode[node]?.remove(network)
        if ofNode[node]?.isEmpty == true { ofNode[node] = nil }
    }

    /// Removes `node` from every network.
    mutating func removeEverywhere(_ node: UInt32) {
        for network in ofNode[node] ?? [] { byID[network]?.members.remove(node) }
        ofNode[node] = nil
    }

    /// The custom networks `node` is in, by id.
    func networks(of node: UInt32) -> [UInt16] { (ofNode[node] ?? []).sorted() }

    /// Whether `a` and `b` are both members of some custom network.
    func shareNetwork(_ a: UInt32, _ b: UInt32) -> Bool {
        guard let mine = ofNode[a], let theirs = ofNode[b] else { return false }
        return !mine.isDisjoint(with: theirs)
    }
}
