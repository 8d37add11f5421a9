import PilotWire

/// `set_listing`, our extension: what a node tells the directory of itself (docs/PROTOCOL.md
/// §8.6). Signed over its values with a nonce only (`SignedChange`): the 1.18 form, which signs
/// no values, is refused.
extension Registry {
    func setListing(_ request: RegistryMessage, peerIP: String) throws -> RegistryMessage {
        guard request["nonce"] != nil else {
            throw RegistryFailure("set_listing: sign it over its values with a nonce (the 1.18 form covers no values)")
        }
        guard let choice = DirectoryListing.Choice(rawValue: try request.string("listing")) else {
            throw RegistryFailure("set_listing: listing must be \"published\", \"withdrawn\" or \"\" (listed while public)")
        }
        let listing: DirectoryListing
        do {
            listing = try DirectoryListing(
                choice: choice, description: try request.string("description"), category: try request.string("category")
            ).validated()
        } catch {
            throw RegistryFailure("set_listing: \(error)")
        }
        var node = try changedNode(request, peerIP: peerIP)
        node.listing = listing
        try store.save(node)
        nodes[node.id] = node
        return RegistryMessage(
            type: "set_listing_ok",
            [
                "node_id": .integer(Int64(node.id)), "listing": .string(listing.choice.rawValue), "description": .string(listing.description),
                "category": .string(listing.category), "listed": .bool(node.isListed),
            ])
    }
}

/// What the directory shows of a listed node, and searches.
public struct DirectoryEntry: Equatable, Sendable {
    public var id: UInt32
    public var hostname: String?
    public var tags: [String]
    public var description: String
    public var category: String
}

extension NodeRecord {
    /// What the directory shows of it; nil when it is not listed.
    var directoryEntry: DirectoryEntry? {
        guard isListed else { return nil }
        return DirectoryEntry(id: id, hostname: hostname, tags: tags, description: listing.description, category: listing.category)
    }
}

/// For a directory whose search does not read registry.db (a registry on PostgreSQL keeps
/// none): the listed nodes, then what changed of them (`DirectoryMirror`).
extension Registry {
    /// Every listed node now; from now on the nodes whose listing changes (listed, unlisted,
    /// or what the directory shows of them) are collected for `takeListingChanges`.
    public func watchListings() -> [DirectoryEntry] {
        lock.withLock {
            nodes.watch = { old, new in old?.directoryEntry != new?.directoryEntry }
            _ = nodes.takeChanged()
            return nodes.values.compactMap(\.directoryEntry)
        }
    }

    /// The nodes whose listing changed since the last call (or `watchListings`): each with
    /// what the directory shows of it now, nil for one no longer listed (or gone).
    public func takeListingChanges() -> [(id: UInt32, entry: DirectoryEntry?)] {
        lock.withLock { nodes.takeChanged().map { ($0, nodes[$0]?.directoryEntry) } }
    }
}
