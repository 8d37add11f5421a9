import FoundationEssentials
import PilotWire

/// Each tunnel socket's public mapping (docs/PROTOCOL.md §8.5, §9): the beacon answers every
/// discover with the endpoint it saw the socket's datagrams come from, which is where peers
/// reach the socket past a NAT. The identities behind a socket are registered with its mapping:
/// before the first registration the host asks for the mappings (as 1.18 asks before it
/// registers), and a mapping that changes later has them registered again.
extension Presence {
    /// How long the beacon's answer is waited for before registering (1.18: 5 s).
    static let mappingWait: Duration = .seconds(5)

    /// How long a beacon that has answered no socket at all is waited for at start: after that
    /// it is taken to be down and the registration goes ahead with the local addresses (an
    /// answer that comes later registers again). A restart with no beacon then registers a
    /// second after READY, not five.
    static let beaconSilence: Duration = .seconds(1)

    /// The socket every identity without a socket of its own is on (`Fabric.bind`).
    static let sharedSocket = 0

    /// The `listen_addr` for socket `socket`, whose own address is `local`: its mapping's, if
    /// the beacon reported one (see `ObservedEndpoint`), else `local`.
    func address(of socket: Int, local: Endpoint) -> String {
        mappings.withLockedValue { $0[socket] }?.listenAddress(localHost: local.host) ?? local.description
    }

    /// The shared socket is bound at `local`: registered from now on with that, or its mapping.
    func useLocalAddress(_ local: Endpoint, ofSharedSocket socket: Int) async {
        localAddresses[socket] = local
        let address = address(of: socket, local: local)
        await pool.useSharedAddress(address)
        registeredAddresses[socket] = address
    }

    /// Asks the beacon for the mapping of each of `sockets` (socket → the node id to discover
    /// as; 0 asks without telling the beacon where a node is) that has none yet, again every
    /// second, until each has one or `wait` has passed, or, with `silence`, until that has
    /// passed with no socket's mapping known at all.
    func discoverMappings(_ sockets: [Int: UInt32], within wait: Duration, silence: Duration? = nil) async {
        guard let beacon, wait > .zero else { return }
        let clock = ContinuousClock()
        let start = clock.now
        var nextAsk = start
        while clock.now < start + wait {
            let (missing, none) = mappings.withLockedValue { known in (sockets.filter { known[$0.key] == nil }, known.isEmpty) }
            if missing.isEmpty { return }
            if let silence, none, clock.now >= start + silence { return }
            if clock.now >= nextAsk {
                for (socket, node) in missing.sorted(by: { $0.key < $1.key }) {
                    try? await fabric.sendBeacon([.discover(node: node)], to: beacon, socket: socket)
                }
                nextAsk = nextAsk + .seconds(1)
            }
            // A stop cancels the wait: it ends now.
            do { try await Task.sleep(for: .milliseconds(20)) } catch { return }
        }
    }

    /// Before the first registration: the mappings of the shared socket and of every public
    /// identity's own socket, waited for at most `mappingWait` (`beaconSilence` if the beacon
    /// answers nothing; nothing waits with no beacon), are what the registration that follows
    /// sends. From then on a changed mapping is registered at once.
    func learnMappings() async {
        var sockets = [Self.sharedSocket: UInt32(0)]
        for (node, socket) in ownSockets { sockets[socket] = node }
        await discoverMappings(sockets, within: Self.mappingWait, silence: Self.beaconSilence)
        let answered = mappings.withLockedValue { known in sockets.keys.filter { known[$0] != nil }.count }
        logger.info("tunnel sockets' mappings", metadata: ["sockets": "\(sockets.count)", "answered": "\(answered)"])
        await follow(Array(sockets.keys))
        registrationBegun = true
    }

    /// The beacon reports a new mapping for socket `socket`.
    func mappingChanged(socket: Int, to observed: ObservedEndpoint) async {
        logger.info("tunnel socket mapping", metadata: [
            "PILOT_SOCKET": "\(socket)", "mapping": "\(Endpoint(host: observed.host, port: observed.port))"])
        await follow([socket])
    }

    /// Every socket's identities are registered with what its mapping says now, if that is not
    /// what they registered last: with the heartbeats, so that a registration that failed is
    /// tried again.
    func followMappings() async {
        await follow([Self.sharedSocket] + ownSockets.values.sorted())
    }

    /// The identities behind each of `sockets` are given what its mapping says now, if that is
    /// not what they were given last, and, once the first registration has begun, registered
    /// with it. One pass runs at a time: sockets that change meanwhile are taken after it, so a
    /// flapping mapping costs one registration of the shared socket's identities at a time.
    func follow(_ sockets: [Int]) async {
        staleSockets.formUnion(sockets)
        guard !following else { return }
        following = true
        defer { following = false }
        while let socket = staleSockets.popFirst() {
            guard let local = localAddresses[socket] else { continue }
            let address = address(of: socket, local: local)
            guard address != registeredAddresses[socket] else { continue }
            let names: [String]
            if socket == Self.sharedSocket {
                await pool.useSharedAddress(address)
                names = await pool.namesOnSharedSocket
            } else if let node = ownSockets.first(where: { $0.value == socket })?.key, let record = await pool.identity(withNode: node) {
                // Not on the network yet (joining): its join registers it.
                do { try await pool.noteOwnSocket(record.name, address: address, port: local.port) } catch { continue }
                names = [record.name]
            } else {
                continue
            }
            registeredAddresses[socket] = address
            guard registrationBegun, !names.isEmpty else { continue }
            do {
                let failed = try await pool.registerAll(names).failed
                for (name, reason) in failed.sorted(by: { $0.key < $1.key }).prefix(20) {
                    logger.error("registration with a new mapping failed", metadata: ["PILOT_IDENTITY": "\(name)", "reason": "\(reason)"])
                }
                logger.notice("registered again with the socket's mapping", metadata: [
                    "PILOT_SOCKET": "\(socket)", "address": "\(address)", "identities": "\(names.count)", "failed": "\(failed.count)"])
                // The beacon, too, relays to the identities behind the shared socket at the old
                // mapping until it hears them from the new one: tell it now, not at the next
                // heartbeat. (An own socket's discover, which brought the mapping, did already.)
                if socket == Self.sharedSocket { await announce(await pool.privateNodes) }
            } catch {
                // The registry is out of reach: the next heartbeat tries again.
                registeredAddresses[socket] = nil
                logger.error("cannot register with a new mapping", metadata: ["PILOT_SOCKET": "\(socket)", "error": "\(error)"])
            }
        }
    }

    /// Socket `socket` is no identity's any more: its addresses and mapping are forgotten.
    func forget(socket: Int) {
        localAddresses[socket] = nil
        registeredAddresses[socket] = nil
        staleSockets.remove(socket)
        mappings.withLockedValue { $0[socket] = nil }
    }
}
