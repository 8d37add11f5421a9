import NIOCore
public import PilotWire

extension Fabric {
    /// Tunnels (sessions with remote nodes) and open streams, for a status line.
    public func load() async throws -> (tunnels: Int, streams: Int) {
        try await loop.submit { [state] in (state.value.table.sessionCount, state.value.streams.entries.count) }.get()
    }

    /// What the tunnels counted (frames in and out, drops by reason).
    public func counters() async throws -> TunnelCounters {
        try await loop.submit { [state] in state.value.table.counters }.get()
    }

    /// What every identity's tunnels carried so far (`TunnelTable.totalTraffic`).
    public func totalTraffic() async throws -> TunnelTraffic {
        try await loop.submit { [state] in state.value.table.totalTraffic }.get()
    }

    /// What each identity's tunnels carried so far, by node (`TunnelTable.trafficByIdentity`).
    public func trafficByIdentity() async throws -> [UInt32: TunnelTraffic] {
        try await loop.submit { [state] in state.value.table.trafficByIdentity }.get()
    }

    /// Tunnels (sessions) by path: straight to the remote, or relayed through the beacon.
    public func tunnelPaths() async throws -> (direct: Int, relayed: Int) {
        try await loop.submit { [state] in state.value.table.tunnelPaths }.get()
    }

    /// What identity `node`'s tunnels carried (`TunnelTraffic`).
    public func traffic(of node: UInt32) async throws -> TunnelTraffic {
        try await loop.submit { [state] in state.value.table.traffic(of: node) }.get()
    }

    /// One of an identity's streams, as `pilotctl connections` lists it.
    public struct ConnectionInfo: Sendable, Equatable {
        /// The identity's port.
        public var localPort: UInt16
        /// The other end's address and port.
        public var remote: Address
        /// The peer's port.
        public var remotePort: UInt16
        /// The connection's state as 1.18 names it (`StreamConnection.State.referenceName`: ESTABLISHED, TIME_WAIT, ...).
        public var state: String
        /// Bytes written and not yet acknowledged by the peer.
        public var unacknowledgedBytes: Int
        /// The figures 1.18 lists for a stream (its `conn_list`).
        public var figures: StreamFigures
    }

    /// A stream's figures as 1.18's `conn_list` has them. The stream counts windows in
    /// segments; here they are bytes (segments × 1152), as 1.18 gives them.
    public struct StreamFigures: Sendable, Equatable {
        /// Its number among the fabric's streams (`StreamConnection.id`).
        public var id: Int
        /// What it carried.
        public var traffic: StreamTraffic
        /// Segments sent again.
        public var retransmitted: Int
        /// Duplicate ACKs in a row.
        public var duplicateAcks: Int
        /// Whether it is recovering from a loss.
        public var inRecovery: Bool
        /// The congestion window, the slow-start threshold, the peer's window and ours.
        public var congestionWindow: Int
        /// See `congestionWindow`.
        public var slowStartThreshold: Int
        /// See `congestionWindow`.
        public var peerWindow: Int
        /// See `congestionWindow`.
        public var receiveWindow: Int
        /// Bytes sent and not acknowledged, and of those the ones in flight.
        public var sentUnacknowledged: Int
        /// See `sentUnacknowledged`.
        public var inFlight: Int
        /// Segments held out of order.
        public var outOfOrder: Int
        /// The smoothed round trip and its variation, in seconds (0 before a sample).
        public var smoothedRTT: Double
        /// See `smoothedRTT`.
        public var rttVariance: Double
        /// The oldest byte not acknowledged, the next byte to send for the first time, and the
        /// next byte expected from the peer (sequence numbers: what a stall is compared by).
        public var sendUnacknowledged: UInt32
        /// See `sendUnacknowledged`.
        public var sendNext: UInt32
        /// See `sendUnacknowledged`.
        public var receiveNext: UInt32
        /// Sent segments the peer SACKed, and those the retransmission timer took for lost.
        public var sackedSegments: Int
        /// See `sackedSegments`.
        public var lostSegments: Int
        /// What the peer SACKed, merged, lowest first.
        public var sackedRanges: [StreamConnection.SequenceRange]
        /// Times the peer's ACK stopped at a segment it had SACKed (`StreamConnection.reneged`).
        public var reneged: Int
        /// The most segments left unacknowledged toward this peer (nil: pilot-host, no cap).
        public var outstandingLimit: Int?
        /// The peer said it is pilot-host in its SYN or SYN|ACK.
        public var peerIsPilotHost: Bool
        /// Seconds since the cumulative ACK last moved (or the stream opened).
        public var secondsSinceProgress: Double

        init(_ connection: StreamConnection, now: NIODeadline) {
            let size = StreamConnection.segmentSize
            let sent = connection.sentUnacknowledged
            id = connection.id
            traffic = connection.traffic
            retransmitted = connection.retransmitted
            duplicateAcks = connection.duplicateAcks
            inRecovery = connection.recoveryPoint != nil
            congestionWindow = connection.congestionWindow * size
            slowStartThreshold = connection.slowStartThreshold * size
            peerWindow = connection.peerWindow * size
            receiveWindow = Int(connection.advertisedWindow) * size
            sentUnacknowledged = sent.bytes
            inFlight = sent.inFlight
            outOfOrder = connection.outOfOrder.count
            smoothedRTT = connection.smoothedRTT ?? 0
            rttVariance = connection.rttVariance
            let sending = connection.sendingPosition
            (sendUnacknowledged, sendNext, receiveNext) = (sending.unacknowledged, sending.next, connection.receiveNext)
            (sackedSegments, lostSegments, sackedRanges) = (connection.sackedCount, connection.lostCount, connection.sackedRanges)
            reneged = connection.reneged
            outstandingLimit = connection.peerIsPilotHost ? nil : connection.outstandingLimit
            peerIsPilotHost = connection.peerIsPilotHost
            secondsSinceProgress = Double((now - connection.lastProgress).nanoseconds) / 1e9
        }
    }

    /// One of an identity's tunnel peers, as `pilotctl peers` lists it.
    public struct PeerInfo: Sendable, Equatable {
        /// The peer's node id.
        public var node: UInt32
        /// Where it was last heard (`ip:port`), empty if never.
        public var endpoint: String
        /// Seconds since a frame of its session last opened.
        public var secondsSinceHeard: Double
        /// The identity trusts it (it passes the trust gate).
        public var trusted: Bool
        /// Frames go through the beacon.
        public var relayed: Bool
        /// Seconds since frames to it last turned relayed or direct (or since it was first
        /// reached).
        public var secondsOnPath: Double
    }

    /// The open streams of identity `node`, by local port, remote and remote port.
    public func connections(of node: UInt32) async throws -> [ConnectionInfo] {
        try await loop.submit { [state] in
            let now = NIODeadline.now()
            return state.value.streams.entries.filter { $0.key.local.node == node }.map { key, entry in
                ConnectionInfo(
                    localPort: key.localPort, remote: key.remote, remotePort: key.remotePort, state: entry.connection.state.referenceName,
                    unacknowledgedBytes: entry.connection.unacknowledgedBytes,
                    figures: StreamFigures(entry.connection, now: now))
            }.sorted { ($0.localPort, $0.remote.node, $0.remotePort) < ($1.localPort, $1.remote.node, $1.remotePort) }
        }.get()
    }

    /// The remote nodes identity `node` holds a session with.
    public func peers(of node: UInt32) async throws -> [PeerInfo] {
        try await loop.submit { [state] in
            let state = state.value
            let now = NIODeadline.now()
            return state.table.sessions(of: node).map { session in
                PeerInfo(
                    node: session.remote, endpoint: session.endpoint.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "",
                    secondsSinceHeard: Double((now - session.lastReceived).nanoseconds) / 1e9,
                    trusted: state.gate.trusts(local: node, remote: session.remote), relayed: session.relayed,
                    secondsOnPath: Double((now - session.pathSince).nanoseconds) / 1e9)
            }
        }.get()
    }

    /// What the stream layer counted: SYNs dropped by the rate limits, streams refused at the
    /// connection limits, RSTs sent for ports nobody listens on, packets delivered in-process.
    public struct StreamCounters: Sendable, Equatable {
        /// Streams open now.
        public var open: Int
        /// SYNs dropped by the rate limits.
        public var synsRateLimited: Int
        /// Streams refused at the connection limits.
        public var refusedAtLimit: Int
        /// RSTs sent for ports nobody listens on.
        public var resetsSent: Int
        /// Packets between identities of this fabric, delivered in-process.
        public var localPackets: Int
        /// SYNs and datagrams from nodes the identity does not trust, to ports it has not opened.
        public var untrustedDropped: Int
        /// Over every stream so far: segments sent again (window probes included), and times a
        /// stream's window shut because its reader fell `StreamConnection.receiveBufferLimit`
        /// behind (for an echo stream: its echo went unacknowledged that long).
        public var retransmitted: Int
        /// Times a stream advertised a shut window.
        public var shutWindows: Int
        /// What the echo streams held at the last tick (see `defaultEchoBudget`).
        public var echoHeld: Int
    }

    /// What the stream layer counted so far (see `StreamCounters`).
    public func streamCounters() async throws -> StreamCounters {
        try await loop.submit { [state] in
            let state = state.value
            return StreamCounters(
                open: state.streams.entries.count, synsRateLimited: state.streams.synsRateLimited,
                refusedAtLimit: state.streams.refusedAtLimit, resetsSent: state.streams.resetsSent, localPackets: state.localPackets,
                untrustedDropped: state.gate.dropped,
                retransmitted: state.streams.entries.values.reduce(state.streams.retransmittedByClosed) { $0 + $1.connection.retransmitted },
                shutWindows: state.streams.entries.values.reduce(state.streams.shutWindowsByClosed) { $0 + $1.connection.shutWindowsAdvertised },
                echoHeld: state.echoHeld)
        }.get()
    }

    /// Runs of datagrams the kernel handed over coalesced (UDP_GRO, on sockets bound with
    /// 64 KiB read slots), and how many datagrams they held.
    public func coalescedReads() async throws -> (runs: Int, datagrams: Int) {
        try await loop.submit { [state] in (state.value.coalescedRuns, state.value.coalescedDatagrams) }.get()
    }

    /// Datagrams the kernel refused to send, by errno (each skipped: the socket serves on), and
    /// datagrams dropped because a send buffer stayed full.
    public func sendFailures() async throws -> (refused: [Int32: Int], backlogDropped: Int) {
        try await loop.submit { [state] in (state.value.sendErrors, state.value.sendBacklogDropped) }.get()
    }

    /// Whether identity `local` holds a tunnel session with node `remote`.
    public func hasSession(local: UInt32, remote: UInt32) async throws -> Bool {
        try await loop.submit { [state] in state.value.table.hasSession(local: local, remote: remote) }.get()
    }
}
