import Logging
import PilotNet
import PilotServices
import PilotWire

extension DataCommands {
    /// Members a broadcast sends to at once (each may need a registry resolve first).
    static let broadcastFanOut = 16
    /// How long one member may take (resolve, then the datagram queued on its tunnel).
    static let broadcastMemberLimit: Duration = .seconds(5)

    /// `broadcast NETWORK DATA --port P`, as 1.18 does it: with the host's admin token, `name`
    /// (a member of custom network `network`) sends every other member one datagram from
    /// `network:<self>` to `network:<member>` on `port`, all from one ephemeral port. Best
    /// effort, as a datagram is: a member that cannot be reached is skipped (and counted in
    /// the log), and a member that does not trust `name` drops it unless the port is public.
    func broadcast(from name: String, network: UInt16, port: UInt16, data: [UInt8], token: String) async throws -> BroadcastSent {
        func denied(_ reason: String) -> ControlFailure { ControlFailure(.broadcastFailed, "broadcast: \(reason)") }
        guard let adminToken else { throw denied("broadcast denied: daemon has no admin token configured") }
        guard !token.isEmpty, adminToken.matches(token) else { throw denied("broadcast denied: invalid admin token") }
        guard network != 0 else { throw denied("broadcast not permitted on backbone network") }
        guard !data.isEmpty, data.count <= 65_000 else { throw ControlFailure(.invalidArgument, "broadcast: 1 to 65000 bytes of data") }
        let identity = try await presence.join(name)
        // The member list needs no token here; the host's token stays the host's (the
        // registry's may be another).
        let reply = try await pool.query(RegistryMessage(type: "list_nodes", ["network_id": .integer(Int64(network))]))
        guard reply.type == "list_nodes_ok" else {
            throw denied("list nodes for broadcast: registry: \(reply["error"]?.stringValue ?? reply.type)")
        }
        let nodes = reply["nodes"]?.arrayValue ?? []
        func nodeID(_ node: JSON) -> UInt32? { node["node_id"]?.integerValue.flatMap(UInt32.init(exactly:)) }
        let members = nodes.compactMap(nodeID)
        guard members.contains(identity.node) else {
            throw denied("broadcast denied: node \(identity.node) is not a member of network \(network)")
        }
        if reply["truncated"]?.boolValue == true {
            logger.warning("broadcast: the registry listed only part of the network; the rest get nothing", metadata: [
                "PILOT_IDENTITY": "\(name)", "network": "\(network)", "listed": "\(nodes.count)",
                "total": "\(reply["total"]?.integerValue ?? 0)",
            ])
        }
        let source = Address(network: network, node: identity.node)
        let sourcePort = UInt16.random(in: 49152...65535)
        // Members the registry knows to be offline would each cost the member limit for nothing.
        let others = nodes.filter { $0["offline"]?.boolValue != true }.compactMap(nodeID).filter { $0 != identity.node }
        let sent = await withTaskGroup(of: Bool.self) { group in
            var sent = 0
            var next = others.makeIterator()
            func start(_ member: UInt32) {
                group.addTask { [self] in
                    let packet = Packet(
                        proto: .datagram, source: source, destination: Address(network: network, node: member), sourcePort: sourcePort,
                        destinationPort: port, payload: data)
                    do {
                        try await withTimeout(Self.broadcastMemberLimit) { [self] in
                            try await presence.fabric.send(packet, to: member, endpoint: try await presence.endpoint(of: packet.destination, for: name))
                        }
                        return true
                    } catch {
                        logger.debug("broadcast: member skipped", metadata: ["PILOT_IDENTITY": "\(name)", "PILOT_PEER": "\(member)", "error": "\(error)"])
                        return false
                    }
                }
            }
            for _ in 0..<Self.broadcastFanOut { if let member = next.next() { start(member) } }
            for await delivered in group {
                if delivered { sent += 1 }
                if let member = next.next() { start(member) }
            }
            return sent
        }
        logger.info("broadcast", metadata: [
            "PILOT_IDENTITY": "\(name)", "network": "\(network)", "port": "\(port)", "bytes": "\(data.count)",
            "members": "\(members.count - 1)", "online": "\(others.count)", "sent": "\(sent)",
        ])
        return BroadcastSent(bytes: data.count, networkID: network, port: port)
    }
}
