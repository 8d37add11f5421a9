import Foundation
import PilotCrypto
import PilotWire

/// Trust reports and handshakes relayed through the registry, and punch requests.
extension Registry {
    func reportTrust(_ request: RegistryMessage) throws -> RegistryMessage {
        let peer = try existing(try request.nodeID("peer_id"))
        let node = try signedNode(request, "node_id") { "report_trust:\($0):\(peer.id)" }
        guard node.id != peer.id else { throw RegistryFailure("report_trust: a node cannot trust itself") }
        try store.setTrust(node.id, peer.id, true)
        trust.insert(Self.pair(node.id, peer.id))
        return RegistryMessage(type: "report_trust_ok", ["node_id": .integer(Int64(node.id)), "peer_id": .integer(Int64(peer.id))])
    }

    func revokeTrust(_ request: RegistryMessage) throws -> RegistryMessage {
        let peerID = try request.nodeID("peer_id")
        let node = try signedNode(request, "node_id") { "revoke_trust:\($0):\(peerID)" }
        guard trust.contains(Self.pair(node.id, peerID)) else {
            throw RegistryFailure("revoke_trust: no trust between \(node.id) and \(peerID)")
        }
        try store.setTrust(node.id, peerID, false)
        trust.remove(Self.pair(node.id, peerID))
        return RegistryMessage(type: "revoke_trust_ok", ["node_id": .integer(Int64(node.id)), "peer_id": .integer(Int64(peerID))])
    }

    /// Trusted: a trust pair, or (as 1.18's registry has it) members of a common custom network,
    /// so a private node accepts datagrams, broadcasts among them, from fellow members.
    func checkTrust(_ request: RegistryMessage) throws -> RegistryMessage {
        let node = try request.nodeID("node_id")
        let peer = try request.nodeID("peer_id")
        let trusted = trust.contains(Self.pair(node, peer)) || networks.shareNetwork(node, peer)
        return RegistryMessage(
            type: "check_trust_ok", ["node_id": .integer(Int64(node)), "peer_id": .integer(Int64(peer)), "trusted": .bool(trusted)])
    }

    func requestHandshake(_ request: RegistryMessage, notify: inout [UInt32]) throws -> RegistryMessage {
        let target = try existing(try request.nodeID("to_node_id"))
        let from = try signedNode(request, "from_node_id") { "handshake:\($0):\(target.id)" }
        let justification = request["justification"]?.stringValue ?? ""
        guard justification.utf8.count <= Self.maxJustification else {
            throw RegistryFailure("request_handshake: justification longer than \(Self.maxJustification) bytes")
        }
        var inbox = requests[target.id] ?? []
        inbox.removeAll { $0.from == from.id }
        guard inbox.count < 100 else { throw RegistryFailure("request_handshake: node \(target.id) has 100 requests waiting") }
        let pending = PendingHandshake(from: from.id, justification: justification, timestamp: Int64(Date().timeIntervalSince1970))
        try store.addRequest(to: target.id, pending)
        inbox.append(pending)
        requests[target.id] = inbox
        notify.append(target.id)
        return RegistryMessage(type: "request_handshake_ok", ["status": "delivered"])
    }

    func pollHandshakes(_ request: RegistryMessage) throws -> RegistryMessage {
        let node = try signedNode(request, "node_id") { "poll_handshakes:\($0)" }
        let waiting = requests[node.id] ?? []
        let answered = responses[node.id] ?? []
        if !waiting.isEmpty || !answered.isEmpty { try store.clearInbox(of: node.id) }
        requests[node.id] = nil
        responses[node.id] = nil
        return RegistryMessage(
            type: "poll_handshakes_ok",
            [
                "requests": .array(waiting.map {
                    ["from_node_id": .integer(Int64($0.from)), "justification": .string($0.justification), "timestamp": .integer($0.timestamp)]
                }),
                "responses": .array(answered.map {
                    ["from_node_id": .integer(Int64($0.from)), "accept": .bool($0.accept), "timestamp": .integer($0.timestamp)]
                }),
            ])
    }

    func respondHandshake(_ request: RegistryMessage, notify: inout [UInt32]) throws -> RegistryMessage {
        let peer = try existing(try request.nodeID("peer_id"))
        let node = try signedNode(request, "node_id") { "respond:\($0):\(peer.id)" }
        let accept = try request.bool("accept")
        let response = PendingResponse(from: node.id, accept: accept, timestamp: Int64(Date().timeIntervalSince1970))
        try store.transaction {
            try store.addResponse(to: peer.id, response)
            if accept { try store.setTrust(node.id, peer.id, true) }
        }
        responses[peer.id, default: []].removeAll { $0.from == node.id }
        responses[peer.id, default: []].append(response)
        if accept { trust.insert(Self.pair(node.id, peer.id)) }
        notify.append(peer.id)
        return RegistryMessage(type: "respond_handshake_ok", ["accept": .bool(accept), "peer_id": .integer(Int64(peer.id))])
    }

    func punch(_ request: RegistryMessage) throws -> RegistryMessage {
        let a = try existing(try request.nodeID("node_a"))
        let b = try existing(try request.nodeID("node_b"))
        let requester = try signedNode(request, "requester_id") { _ in "punch:\(a.id):\(b.id)" }
        guard requester.id == a.id || requester.id == b.id else { throw RegistryFailure("punch: requester must be node_a or node_b") }
        let other = requester.id == a.id ? b : a
        // Unlike the old registry, never hand out a private node's endpoint to a stranger.
        guard other.isPublic || trust.contains(Self.pair(a.id, b.id)) else {
            throw RegistryFailure("punch: node \(other.id) is private and does not trust \(requester.id)")
        }
        guard !other.relayOnly else { throw RegistryFailure("punch: node \(other.id) is relay-only") }
        return RegistryMessage(
            type: "punch_ok",
            [
                "node_a": .integer(Int64(a.id)), "node_a_addr": .string(endpoint(of: a)),
                "node_b": .integer(Int64(b.id)), "node_b_addr": .string(endpoint(of: b)),
            ])
    }
}
