public import PilotClient
public import PilotWire

/// A resource pilot-mcp serves: the identity's state as JSON text, read afresh from its socket
/// at every read.
public struct PilotResource: Sendable {
    /// Its URI, `pilot://NAME`.
    public let uri: String
    /// Its name.
    public let name: String
    /// What it holds.
    public let description: String
    let read: @Sendable (PilotClient) async throws -> JSON

    /// The resources: the identity, its inbox, its trust, its tunnels.
    public static let all: [PilotResource] = [
        PilotResource(uri: "pilot://identity", name: "Identity", description: "This identity: address, hostname, tags, public key, registration, its figures.") {
            try await $0.info().json
        },
        PilotResource(uri: "pilot://inbox", name: "Inbox", description: "The newest 50 messages that arrived for this identity, with their data.") {
            let messages = try await $0.inbox()
            return InboxListing(messages: Array(messages.suffix(50)), total: messages.count).json
        },
        PilotResource(
            uri: "pilot://trust", name: "Trust", description: "The nodes this identity trusts (mutual or not), and the requests waiting for its answer."
        ) { client in
            let trusted = TrustedPeers(trusted: try await client.trustedPeers()).json
            return ["trusted": trusted["trusted"] ?? [], "total": trusted["total"] ?? 0, "pending": PendingTrust(pending: try await client.pendingTrust()).json["pending"] ?? []]
        },
        PilotResource(uri: "pilot://peers", name: "Peers", description: "The nodes this identity has a tunnel with: endpoint, direct or relayed, last heard.") {
            PeerList(peers: try await $0.peers()).json
        },
    ]

    /// The resource at `uri`, whose JSON `read` gives.
    public init(uri: String, name: String, description: String, read: @escaping @Sendable (PilotClient) async throws -> JSON) {
        self.uri = uri
        self.name = name
        self.description = description
        self.read = read
    }

    /// Its JSON, read on `client`'s identity.
    public func contents(on client: PilotClient) async throws -> JSON { try await read(client) }
}
