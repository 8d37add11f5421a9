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
