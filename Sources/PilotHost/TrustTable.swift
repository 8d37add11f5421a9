import PilotStore

/// One identity's trust entries, at most one per peer node, kept in order of peer node.
///
/// A sorted array, not a dictionary: most identities trust one or two peers, and a host keeps a
/// table for each of its identities (a one-entry dictionary is 192 bytes, this 88). Lookups are
/// binary searches; adding or removing moves the entries after it.
struct TrustTable: Sendable {
    /// Every entry, in order of peer node.
    private(set) var entries: [TrustRecord] = []

    init() {}

    /// `entries` in any order; of two for the same peer, the later wins. Entries already in
    /// order, one per peer (as `host.db` lists them), are kept as they are, in the same array.
    init(_ entries: [TrustRecord]) {
        if zip(entries, entries.dropFirst()).allSatisfy({ $0.peerNode < $1.peerNode }) {
            self.entries = entries
        } else {
            for entry in entries { self[entry.peerNode] = entry }
        }
    }

    /// The entry for `peer`; setting nil removes it.
    subscript(peer: UInt32) -> TrustRecord? {
        get {
            let index = position(of: peer)
            return index < entries.count && entries[index].peerNode == peer ? entries[index] : nil
        }
        set {
            let index = position(of: peer)
            let present = index < entries.count && entries[index].peerNode == peer
            switch (newValue, present) {
            case (let entry?, true): entries[index] = entry
            case (let entry?, false): entries.insert(entry, at: index)
            case (nil, true): entries.remove(at: index)
            case (nil, false): break
            }
        }
    }

    /// Where `peer`'s entry is, or would go.
    private func position(of peer: UInt32) -> Int { entries.partitionPoint { $0.peerNode >= peer } }
}
