import PilotClient
import PilotWire

/// Trust: asking for it, answering requests, revoking it, and where it stands with a node.
extension PilotTools {
    static let trust: [PilotTool] = [
        PilotTool(
            name: "pilot_trust_check",
            description: """
                Where trust stands with a node, before pilot_send, pilot_send_file, pilot_publish or pilot_subscribe: \
                state is trusted (mutual), one-way (you trust them, they have not approved you), pending-from (they asked: \
                pilot_approve), untrusted (pilot_handshake first) or unknown (no such node). Cheap; changes nothing.
                """,
            parameters: [.required("target", .string, "The node's hostname, node id or address.")],
            readOnly: true
        ) { arguments, client in
            try await trustState(of: try arguments.string("target"), client: client)
        },
        PilotTool(
            name: "pilot_handshake",
            description: "Ask a node for trust; it approves (or rejects) on its side. Mutual trust lets the two exchange messages, files and events.",
            parameters: [
                .required("target", .string, "The node's hostname, node id or address."),
                .optional("reason", .string, "Why you ask, shown to the node's owner."),
            ]
        ) { arguments, client in
            try await client.handshake(with: try arguments.string("target"), reason: try arguments.optionalString("reason")).json
        },
        PilotTool(
            name: "pilot_approve",
            description: "Approve a node's pending trust request (pilot_pending lists them).",
            parameters: [.required("target", .string, "The asking node's node id, address or hostname.")]
        ) { arguments, client in
            try await client.approve(try arguments.string("target")).json
        },
        PilotTool(
            name: "pilot_reject",
            description: "Reject a node's pending trust request.",
            parameters: [
                .required("target", .string, "The asking node's node id, address or hostname."),
                .optional("reason", .string, "Why, sent to the node."),
            ]
        ) { arguments, client in
            try await client.reject(try arguments.string("target"), reason: try arguments.optionalString("reason")).json
        },
        PilotTool(
            name: "pilot_untrust",
            description: "Revoke the trust of a node; it can no longer reach this identity's private ports.",
            parameters: [.required("target", .string, "The node's node id, address or hostname.")]
        ) { arguments, client in
            try await client.untrust(try arguments.string("target")).json
        },
        PilotTool(
            name: "pilot_pending",
            description: "The trust requests waiting for this identity's answer, with each node's reason.",
            readOnly: true
        ) { _, client in
            PendingTrust(pending: try await client.pendingTrust()).json
        },
    ]

    /// What `pilot_trust_check` says of `target`: its node, and `state` with a hint of what to do.
    static func trustState(of target: String, client: PilotClient) async throws -> JSON {
        let node: UInt32
        switch NodeTarget(target) {
        case .address(let address):
            node = address.node
        case .hostname(let hostname):
            let found: ControlData
            do {
                found = try await client.find(hostname: hostname)
            } catch let failure as ControlFailure where failure.code == .notFound {
                return ["target": .string(target), "state": "unknown", "hint": .string("no node has the hostname \(hostname): \(failure.message)")]
            }
            guard let id = found["node_id"]?.integerValue.flatMap(UInt32.init(exactly:)) else {
                return ["target": .string(target), "state": "unknown", "hint": "the registry named no node id"]
            }
            node = id
        }
        let (state, hint): (String, String)
        if let peer = try await client.trustedPeers().first(where: { $0.nodeID == node }) {
            (state, hint) = peer.mutual
                ? ("trusted", "mutual trust: pilot_send, pilot_send_file, pilot_publish and pilot_subscribe work")
                : ("one-way", "you trust them; they have not approved you yet")
        } else if try await client.pendingTrust().contains(where: { $0.nodeID == node }) {
            (state, hint) = ("pending-from", "they asked for trust: pilot_approve (or pilot_reject) it")
        } else {
            (state, hint) = ("untrusted", "no trust: pilot_handshake first, then wait for their approval")
        }
        return [
            "target": .string(target), "node_id": .integer(Int64(node)), "address": .string(Address(node: node).description),
            "state": .string(state), "hint": .string(hint),
        ]
    }
}
