import Logging
import NIOCore
import PilotNet
import PilotWire

/// Several beacons (`beacon = A, B`: instances beside the overlay's registries). The host uses
/// the first; with more than one, it probes the one in use every 2 s (a discover, which a beacon
/// answers with the socket's mapping), and when that one has said nothing for 6 s it moves to
/// the next and announces every identity there, as it does with each heartbeat.
extension Presence {
    static let beaconProbe: Duration = .seconds(2)
    static let beaconGivenUp: Duration = .seconds(6)

    /// Uses the beacons at `addresses` (host:port each), the first one first; `poked` as for
    /// `useBeacon`.
    func useBeacons(_ addresses: [String], poked: @escaping @Sendable () -> Void) async throws {
        beacons = try addresses.map { address in
            let (host, port) = try Host.split(address, key: "beacon")
            return try SocketAddress.makeAddressResolvingHost(host, port: port)
        }
        guard let first = beacons.first else { return }
        try await useBeacon(first, poked: poked)
        guard beacons.count > 1 else { return }
        beaconWatch = Task { [weak self] in
            while !Task.isCancelled {
                do { try await Task.sleep(for: Self.beaconProbe) } catch { return }
                await self?.probeBeacon(poked: poked)
            }
        }
    }

    /// Ends the probing (at stop).
    func stopBeaconWatch() {
        beaconWatch?.cancel()
        beaconWatch = nil
    }

    /// Moves on if the beacon in use fell silent, else probes it.
    private func probeBeacon(poked: @escaping @Sendable () -> Void) async {
        guard let beacon else { return }
        guard beaconHeard.withLockedValue({ $0 }).duration(to: .now) > Self.beaconGivenUp else {
            try? await fabric.sendBeacon([.discover(node: 0)], to: beacon)
            return
        }
        let next = beacons[((beacons.firstIndex(of: beacon) ?? 0) + 1) % beacons.count]
        logger.warning("beacon silent: moving to the next", metadata: ["beacon": "\(beacon)", "next": "\(next)"])
        do { try await useBeacon(next, poked: poked) } catch {
            logger.error("cannot use the next beacon", metadata: ["beacon": "\(next)", "error": "\(error)"])
            return
        }
        await announce(await pool.privateNodes)
    }
}
