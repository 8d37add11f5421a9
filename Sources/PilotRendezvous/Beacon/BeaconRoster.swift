import Dispatch
import Foundation
public import Logging
import NIOConcurrencyHelpers
import NIOCore
import PilotStore
import PilotWire
import PostgresNIO

/// This instance's beacon among those that share the registry's database
/// (`pilot-rendezvous --database`): its row in the `beacon` table (id, the address peers send
/// to, when it was last refreshed) is refreshed every `refreshInterval`, and the other beacons
/// refreshed within `lifetime` become the beacon's peers (`BeaconServer.findPeers(_:)`).
///
/// It runs on a thread of its own with a connection of its own (`PostgresSession`, blocking),
/// never on an event loop. While the database cannot be reached the beacon keeps the peers it
/// last had; the outage is logged once, and its end. `shutdown()` deletes the row.
public final class BeaconRoster: @unchecked Sendable {
    // @unchecked: `session` is used by one thread at a time: `start()`'s caller until the
    // thread is started, then the thread, then `shutdown()`'s caller once the thread has ended
    // (`finished`). The rest is locked or immutable.

    public struct Configuration: Sendable {
        /// Where the other beacons send to, `HOST:PORT`: the address they will recognise this
        /// beacon's datagrams by.
        public var address: String
        /// This beacon's id in the table and in its syncs; nil: a free one, chosen at random.
        public var beaconID: UInt32?
        /// Seconds between refreshes of the row (and readings of the others').
        public var refreshInterval: Double = 5
        /// A beacon whose row was not refreshed for this many seconds is no peer; its id may
        /// be taken by another.
        public var lifetime: Double = 30

        public init(address: String, beaconID: UInt32? = nil) {
            self.address = address
            self.beaconID = beaconID
        }
    }

    private let configuration: Configuration
    private let beacon: BeaconServer
    private let logger: Logger
    private let session: PostgresSession
    private let timeouts: PostgresSession.Timeouts
    private let id: NIOLockedValueBox<UInt32?> = NIOLockedValueBox(nil)
    private let stopping = NIOLockedValueBox(false)
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let running = NIOLockedValueBox(false)

    /// How many random ids are tried when none is given before giving up.
    private static let randomTries = 8

    public init(location: PostgresLocation, configuration: Configuration, beacon: BeaconServer, logger: Logger) {
        self.configuration = configuration
        self.beacon = beacon
        self.logger = logger
        timeouts = PostgresSession.Timeouts()
        // The first connect may be slow (a server starting, TLS): given more time.
        var starting = timeouts
        starting.connect = .seconds(5)
        session = PostgresSession(location: location, timeouts: starting, logger: logger)
    }

    /// The id this beacon holds in the table, once started.
    public var beaconID: UInt32? { id.withLockedValue { $0 } }

    /// Brings the schema up to date, claims this beacon's row, gives the beacon its id and
    /// starts refreshing. Blocks: call it where blocking is allowed, never on an event loop.
    /// Throws when the database cannot be used, or the id asked for is held by a live beacon
    /// at another address.
    @discardableResult
    public func start() throws -> UInt32 {
        try PostgresSchema.migrate(session, timeout: .seconds(30))
        let claimed = try claimAtStart()
        session.timeouts = timeouts
        id.withLockedValue { $0 = claimed }
        beacon.adopt(beaconID: claimed)
        try refresh(as: claimed)
        running.withLockedValue { $0 = true }
        let thread = Thread { [self] in
            run(as: claimed)
            finished.signal()
        }
        thread.name = "beacon-roster"
        thread.start()
        logger.notice("beacon announced in the database", metadata: ["beacon": "\(claimed)", "address": "\(configuration.address)"])
        return claimed
    }

    /// Stops refreshing and deletes this beacon's row, so the others drop it at their next
    /// reading rather than after `lifetime`. Blocks for at most a few seconds.
    public func shutdown() {
        guard running.withLockedValue({ $0 }) else { return }
        stopping.withLockedValue { $0 = true }
        wake.signal()
        finished.wait()
        running.withLockedValue { $0 = false }
        guard let claimed = beaconID else { return }
        do {
            try session.rows("DELETE FROM beacon WHERE id = \(Int64(claimed)) AND address = \(configuration.address)")
        } catch {
            logger.warning(
                "beacon row not deleted; the others drop it when it goes stale",
                metadata: ["beacon": "\(claimed)", "error": "\(error)"])
        }
    }

    // MARK: The thread

    private func run(as claimed: UInt32) {
        var outage = false
        var taken = false
        while true {
            _ = wake.wait(timeout: .now() + .nanoseconds(Int(configuration.refreshInterval * 1_000_000_000)))
            if stopping.withLockedValue({ $0 }) { return }
            do {
                // Right after an outage the others' rows are as old as it was long: they get
                // one interval to refresh theirs before they are read, rather than dropping out.
                let holder = try refresh(as: claimed, reading: !outage)
                if outage {
                    outage = false
                    logger.notice("beacon table reachable again", metadata: ["database": "\(session.location)"])
                }
                if let holder, !taken {
                    logger.error(
                        "beacon id taken by another beacon while this one was not seen; it is no longer announced (restart it)",
                        metadata: ["beacon": "\(claimed)", "holder": "\(holder)"])
                }
                taken = holder != nil
            } catch {
                if !outage {
                    outage = true
                    logger.warning(
                        "beacon table unreachable; keeping the last known peer beacons",
                        metadata: ["database": "\(session.location)", "error": "\(error)"])
                }
            }
        }
    }

    /// Refreshes this beacon's row and (when `reading`) hands the others that are live to the
    /// beacon. Returns the address of a live beacon at another address now holding this id, if
    /// one does.
    @discardableResult
    private func refresh(as claimed: UInt32, reading: Bool = true) throws -> String? {
        let holder = try claim(claimed)
        guard reading else { return holder }
        let addresses = try session.rows(
            """
            SELECT address FROM beacon
            WHERE id <> \(Int64(claimed)) AND address <> \(configuration.address)
                AND last_seen >= now() - make_interval(secs => \(configuration.lifetime))
            """
        ).map { try $0.decode(String.self) }
        beacon.findPeers(addresses.compactMap(resolved))
        return holder
    }

    /// Claims the id asked for, or a random free one: the first start of a beacon.
    private func claimAtStart() throws -> UInt32 {
        if let wanted = configuration.beaconID {
            if let holder = try claim(wanted) {
                throw BeaconRosterError(
                    "beacon id \(wanted) is held by a live beacon at \(holder) (seen within \(Int(configuration.lifetime)) s); "
                        + "give another --beacon-id, or none to have a free one chosen")
            }
            try forgetEarlierRuns(claimed: wanted)
            return wanted
        }
        for _ in 0..<Self.randomTries {
            let candidate = UInt32.random(in: 1...UInt32.max)
            if try claim(candidate) == nil {
                try forgetEarlierRuns(claimed: candidate)
                return candidate
            }
        }
        throw BeaconRosterError("no free beacon id found in \(Self.randomTries) tries")
    }

    /// Deletes rows of this address under other ids: earlier runs that ended without deleting
    /// theirs, which would otherwise look like a peer at our own address until they go stale.
    private func forgetEarlierRuns(claimed: UInt32) throws {
        try session.rows("DELETE FROM beacon WHERE address = \(configuration.address) AND id <> \(Int64(claimed))")
    }

    /// Writes this beacon's row under `candidate`, unless a live beacon at another address holds
    /// it: then returns that one's address.
    private func claim(_ candidate: UInt32) throws -> String? {
        let id = Int64(candidate)
        let address = configuration.address
        let written = try session.rows(
            """
            INSERT INTO beacon (id, address, last_seen) VALUES (\(id), \(address), now())
            ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, last_seen = now()
            WHERE beacon.address = EXCLUDED.address OR beacon.last_seen < now() - make_interval(secs => \(configuration.lifetime))
            RETURNING id
            """)
        guard written.rows.isEmpty else { return nil }
        let holder = try session.rows("SELECT address FROM beacon WHERE id = \(id)").rows.first?.decode(String.self)
        return holder ?? "?"
    }

    /// A peer's address from its row; nil (and a debug line) for one that does not parse or resolve.
    private func resolved(_ address: String) -> SocketAddress? {
        do {
            let endpoint = try Endpoint(parsing: address)
            return try SocketAddress.makeAddressResolvingHost(endpoint.host, port: Int(endpoint.port))
        } catch {
            logger.debug("peer beacon address unusable", metadata: ["address": "\(address)", "error": "\(error)"])
            return nil
        }
    }
}

/// Why this beacon could not take its place in the database's beacon table.
public struct BeaconRosterError: Error, CustomStringConvertible {
    public let description: String

    init(_ description: String) { self.description = description }
}
