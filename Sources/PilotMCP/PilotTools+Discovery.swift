import PilotClient
import PilotWire

/// Finding nodes (by hostname, by tag), their registry records, this identity's tunnels, pings.
extension PilotTools {
    static let discovery: [PilotTool] = [
        PilotTool(
            name: "pilot_find",
            description: "A node's address by its hostname, from the registry.",
            parameters: [.required("hostname", .string, "The hostname.")],
            readOnly: true
        ) { arguments, client in
            try await client.find(hostname: try arguments.string("hostname")).json
        },
        PilotTool(
            name: "pilot_find_by_tag",
            description: "The online nodes carrying a tag, each with its registry record (pilot-host's registry can search tags; the official one cannot).",
            parameters: [.required("tag", .string, "The tag, e.g. gpu.")],
            readOnly: true
        ) { arguments, client in
            try await client.find(tag: try arguments.string("tag")).json
        },
        PilotTool(
            name: "pilot_lookup",
            description: "A node's record in the registry: address, public key, hostname, tags, whether it is public and online.",
            parameters: [.required("target", .string, "The node's node id, address or hostname.")],
            readOnly: true
        ) { arguments, client in
            let target = try arguments.string("target")
            // The host's lookup takes a node id or an address; a hostname is found first, as pilotctl does.
            guard case .hostname(let hostname) = NodeTarget(target) else { return try await client.lookup(target).json }
            guard let node = try await client.find(hostname: hostname)["node_id"]?.integerValue else {
                throw ControlFailure(.notFound, "the registry named no node id for \(hostname)")
            }
            return try await client.lookup(String(node)).json
        },
        PilotTool(
            name: "pilot_peers",
            description: "The nodes this identity has an encrypted tunnel with: endpoint, direct or relayed, trusted, last heard.",
            readOnly: true
        ) { _, client in
            PeerList(peers: try await client.peers()).json
        },
        PilotTool(
            name: "pilot_ping",
            description: "Round trips to a node's echo port (7): whether it is reachable, and how fast.",
            parameters: [
                .required("target", .string, "The node's hostname, node id or address."),
                .optional("count", .integer, "Pings to send.", default: 1),
                .optional("timeout_seconds", .integer, "Seconds to wait for each.", default: 10),
            ],
            readOnly: true
        ) { arguments, client in
            try await client.ping(
                try arguments.string("target"), count: try arguments.integer("count", default: 1, in: 1...100),
                timeout: try arguments.integer("timeout_seconds", default: 10, in: 1...300)
            ).json
        },
    ]
}
