import PilotNet
import PilotWire

/// An identity that just moved here tells the peers it trusts where it is now.
extension Presence {
    /// Joins `name` and starts a key exchange with each peer it trusts, from here: their
    /// endpoints asked of the registry as `name`, and a keepalive sent to each (queued behind
    /// the exchange, swallowed by the peer). The peer checks the exchange's signature against
    /// the registry's key for the node, which the move did not change, installs the new
    /// session and takes the endpoint it came from as the node's path: its tunnel follows the
    /// identity within a round trip instead of sending to the old host until it gives up.
    /// Returns the peers reached and those that could not be, with why.
    func reachPeers(of name: String) async -> (reached: [UInt32], failed: [UInt32: String]) {
        let identity: TunnelIdentity
        do { identity = try await join(name) } catch { return ([], [0: "cannot join the network: \(error)"]) }
        var reached: [UInt32] = []
        var failed: [UInt32: String] = [:]
        for entry in await pool.trust(of: name) where entry.state == .trusted {
            let peer = Address(network: 0, node: entry.peerNode)
            do {
                let endpoint = try await endpoint(of: peer, for: name)
                let keepalive = Packet(proto: .control, source: identity.address, destination: peer, sourcePort: 0, destinationPort: 0)
                try await fabric.send(keepalive, to: entry.peerNode, endpoint: endpoint)
                reached.append(entry.peerNode)
            } catch {
                failed[entry.peerNode] = "\(error)"
            }
        }
        return (reached, failed)
    }
}
