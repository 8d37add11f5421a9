public import NIOCore
public import PilotWire

/// One reliable stream between a local identity's port and a remote node's port, as 1.18 runs
/// it (docs/PROTOCOL.md §3): ISN 0, 1152-byte segments, windows counted in
/// segments, cumulative ACKs with SACK blocks in an ACK's payload, retransmission on an RFC 6298
/// timer with backoff, fast retransmit on three duplicate ACKs, FIN sent only once everything is
/// acknowledged, a FIN answered once with FIN|ACK and a FIN|ACK never answered, TIME_WAIT.
///
/// No I/O and no clock of its own: packets, writes and time in; `StreamOutput`s out.
public final class StreamConnection {
    /// Where a connection is in its life (1.18 has no listen or half-closed states of its own).
    public enum State: Sendable, Equatable {
        case synSent, established, timeWait, closed

        /// The name 1.18 lists a connection's state by (`conn_list`, `connections`).
        public var referenceName: String {
            switch self {
            case .synSent: "SYN_SENT"
            case .established: "ESTABLISHED"
            case .timeWait: "TIME_WAIT"
            case .closed: "CLOSED"
            }
        }
    }

    /// What the connection asks for after an event, in order.
    public typealias Outputs = SmallList<Output>

    /// What the connection asks for after an event.
    public enum Output: Sendable, Equatable {
        case packet(Packet)
        /// Bytes that arrived in order.
        case data([UInt8])
        /// The peer finished sending (FIN): no more data.
        case finished
        /// The dial succeeded.
        case connected
        /// The connection is over: `reason` is nil for an orderly close.
        case closed(reason: String?)
    }

    /// What names a stream: both ends' addresses and ports.
    public struct Key: Hashable, Sendable {
        /// This side's address and port.
        public let local: Address
        /// This side's port.
        public let localPort: UInt16
        /// The peer's address and port.
        public let remote: Address
        /// The peer's port.
        public let remotePort: UInt16

        /// The key of the stream between these two ends.
        public init(local: Address, localPort: UInt16, remote: Address, remotePort: UInt16) {
            self.local = local
            self.localPort = localPort
            self.remote = remote
            self.remotePort = remotePort
        }

        /// Two words instead of six fields: every packet of a stream looks its key up.
        public func hash(into hasher: inout Hasher) {
            hasher.combine(UInt64(local.network) << 48 | UInt64(local.node) << 16 | UInt64(localPort))
            hasher.combine(UInt64(remote.network) << 48 | UInt64(remote.node) << 16 | UInt64(remotePort))
        }
    }

    /// The most payload one segment carries (1.18's).
    public static let segmentSize = 1152
    /// The receive window in segments (1.18's).
    public static let receiveSlots = 512
    /// The most a reader may leave unread: the window closes as its backlog nears this, and
    /// data past it is dropped (the sender's probes find the window open again once it reads).
    /// 2 MiB: at 250 MB/s, 8 ms of a reader's task waiting for a CPU (1 MiB shut the window of a
    /// reader that kept up, on a 2-vCPU machine whose loops were busy).
    public static let receiveBufferLimit = 2 << 20
    /// Segments held out of order: a whole window's worth, so a pilot-host sender never loses
    /// a segment it was allowed to send (1.18 holds 128 and drops the rest).
    static let outOfOrderLimit = receiveSlots
    /// What 1.18 holds out of order: past a hole, segments beyond these are dropped, and its
    /// reader's queue has room for no more than its window when the hole fills. A sender never
    /// has more than this many segments unacknowledged (SACKed ones included) toward a peer
    /// not known to be pilot-host.
    public static let officialOutOfOrderLimit = 128
    /// The window pilot-host advertises in its SYN and SYN|ACK: one more than 1.18 ever can
    /// (its queue has 512 slots), so each end of a stream knows whether the other is
    /// pilot-host. Later packets advertise the free slots, as 1.18 does.
    public static let pilotHostSynWindow = UInt16(receiveSlots + 1)
    static let initialWindow = 10
    static let maxRetransmissions = 8
    static let synAttempts = 7
    static let timeWait: TimeAmount = .seconds(10)
    static let delayedAck: TimeAmount = .milliseconds(40)
    /// An established stream with nothing sent for this long gets an empty ACK (1.18: 30 s).
    static let keepalive: TimeAmount = .seconds(30)
    /// An established stream nothing arrived on for this long is over (1.18: 120 s); this
    /// also ends a stream whose peer's FIN was lost, which 1.18 never retransmits.
    static let idleTimeout: TimeAmount = .seconds(120)

    struct Segment {
        let sequence: UInt32
        let payload: [UInt8]
        var sentAt: NIODeadline?
        var transmissions = 0
        /// Taken for lost when the retransmission timer fired: to be sent again as the window
        /// allows (`transmit`), as TCP starts again from the oldest after a timeout.
        var lost = false
        /// Of those, the ones not counted toward giving up: probes of a shut window (not
        /// losses), and the ones lost on a path the tunnel has since left (`pathChanged`).
        var probes = 0
        var sacked = false
        var end: UInt32 { sequence &+ UInt32(payload.count) }
    }

    /// Both ends of this stream.
    public let key: Key
    /// Where the connection is in its life.
    public internal(set) var state: State
    // Sending.
    var sendNext: UInt32 = 1
    /// Segments written and not yet acknowledged are `segments[head...]`; those from
    /// `firstUnsent` on were never sent. Taking from the front moves `head` (the array is
    /// compacted now and then), so a long queue costs nothing per acknowledgement.
    var segments: [Segment] = []
    var head = 0
    var firstUnsent = 0
    /// How many of the sent, unacknowledged segments the peer holds (SACK).
    var sackedCount = 0
    /// How many of them the retransmission timer took for lost (`Segment.lost`): not in flight
    /// any more, so the window sends them again, oldest first, before anything new.
    var lostCount = 0
    var queuedBytes = 0
    var peerWindow = StreamConnection.receiveSlots
    var congestionWindow = StreamConnection.initialWindow
    var slowStartThreshold = StreamConnection.receiveSlots
    var duplicateAcks = 0
    /// The peer's SYN or SYN|ACK said it is pilot-host (`pilotHostSynWindow`): it holds a whole
    /// window out of order, so nothing caps what is unacknowledged but the windows.
    public internal(set) var peerIsPilotHost = false
    /// Times the peer's cumulative ACK stopped at a segment it had SACKed: it no longer holds
    /// it (1.18 puts back what its reader's queue could not take), so it was sent again.
    public internal(set) var reneged = 0
    /// When the cumulative ACK last moved (or the stream opened): how long a stall has lasted.
    public internal(set) var lastProgress: NIODeadline
    /// While recovering from a loss: the sequence that, once acknowledged, ends the episode.
    var recoveryPoint: UInt32?
    var lastAck: UInt32 = 0
    var smoothedRTT: Double?
    var rttVariance = 0.0
    var retransmissionTimeout: TimeAmount = .seconds(1)
    /// The timeout the round-trip measurements give, before any backoff.
    var measuredTimeout: TimeAmount = .seconds(1)
    var closeRequested = false
    var finSent = false
    /// The latest send time of any segment the peer has acknowledged or SACKed (RFC 8985's
    /// RACK): a hole sent well before it is lost, one sent after it is still on its way.
    var deliveredSentAt: NIODeadline?
    /// When data was last sent, and whether a tail-loss probe is out since the last progress.
    var lastDataSentAt: NIODeadline?
    var probing = false
    // Receiving.
    /// Bytes handed to the reader and not yet read, as the fabric last looked.
    public var readerBacklog = 0
    /// The most this stream may hold (unread, or for an echo its echo not yet acknowledged):
    /// `receiveBufferLimit`, unless the fabric lowers it (its echo streams share a budget).
    public var holdLimit = StreamConnection.receiveBufferLimit
    /// An echo (the echo service): its backlog is what it has echoed and the peer has not yet
    /// acknowledged, counted here after each ACK, so a peer that does not read the echo stops
    /// sending.
    public var echoesBack = false
    /// The window the last packet advertised: a shut window (0) that has room again is said
    /// at the next tick, even if the update the reader's catching up sent was lost.
    var lastAdvertisedWindow = UInt16(StreamConnection.receiveSlots)
    /// Segments sent again (lost, or probes of a shut window), and ACKs that said our window
    /// was shut: what an operator looks at when a stream is slower than the path.
    public internal(set) var retransmitted = 0
    /// Times this side advertised a shut window (a reader `receiveBufferLimit` behind).
    public internal(set) var shutWindowsAdvertised = 0
    /// What it carried (`StreamTraffic`).
    public internal(set) var traffic = StreamTraffic()
    /// Its number among the fabric's streams, from 1 in the order they opened (1.18's `id`;
    /// 0 until the fabric lists it).
    public internal(set) var id = 0
    /// Bytes written that were still unacknowledged when the peer finished: a flush of them
    /// cannot succeed.
    public internal(set) var unacknowledgedAtPeerFin = 0
    var receiveNext: UInt32 = 0
    var outOfOrder: [UInt32: [UInt8]] = [:]
    var unacknowledgedSegments = 0
    var ackDeadline: NIODeadline?
    var peerFinished = false
    // Timers.
    var synSentAt: NIODeadline?
    var synAttemptsMade = 0
    var timeWaitUntil: NIODeadline?
    var lastReceived: NIODeadline
    /// When a packet last went out, as of the last tick (keepalives need no finer clock).
    var lastSent: NIODeadline
    var sentSinceTick = false

    private init(key: Key, state: State, now: NIODeadline) {
        self.key = key
        self.state = state
        lastReceived = now
        lastSent = now
        lastProgress = now
    }

    /// Opens a stream: the SYN to send.
    public static func dial(_ key: Key, now: NIODeadline) -> (StreamConnection, Outputs) {
        let connection = StreamConnection(key: key, state: .synSent, now: now)
        connection.synSentAt = now
        connection.synAttemptsMade = 1
        return (connection, [.packet(connection.syn())])
    }

    /// Accepts a SYN on a listening port: established at once (as 1.18), the SYN|ACK to send.
    public static func accept(_ syn: Packet, local: Address, now: NIODeadline) -> (StreamConnection, Outputs) {
        let key = Key(local: local, localPort: syn.destinationPort, remote: syn.source, remotePort: syn.sourcePort)
        let connection = StreamConnection(key: key, state: .established, now: now)
        connection.receiveNext = syn.sequence &+ 1
        connection.peerWindow = min(Int(syn.window), Self.receiveSlots)
        connection.peerIsPilotHost = syn.window == Self.pilotHostSynWindow
        return (connection, [.packet(connection.synAck())])
    }

    /// The SYN, marked as pilot-host's (`pilotHostSynWindow`).
    func syn() -> Packet {
        packet(flags: .syn, sequence: 0, acknowledgment: 0, window: Self.pilotHostSynWindow)
    }

    /// The SYN|ACK, marked as pilot-host's (`pilotHostSynWindow`).
    func synAck() -> Packet {
        packet(flags: [.syn, .ack], sequence: 0, acknowledgment: receiveNext, window: Self.pilotHostSynWindow)
    }

    /// Aborts with a RST.
    public func reset() -> Outputs {
        guard state != .closed else { return [] }
        let wasOpen = state != .timeWait
        state = .closed
        // Out of TIME_WAIT: nothing to tell the peer, but the stream is over all the same.
        return wasOpen ? [.packet(packet(flags: .rst, sequence: sendNext, acknowledgment: receiveNext)), .closed(reason: "reset")] : [.closed(reason: nil)]
    }

    /// Over: nothing is sent or accepted any more.
    public var isClosed: Bool { state == .closed }

    /// Bytes written and not yet acknowledged.
    public var unacknowledgedBytes: Int { queuedBytes }

    /// Whether the last window advertised was 0: the reader's backlog decides when it opens.
    public var windowShut: Bool { lastAdvertisedWindow == 0 }

    /// Serial-number order: `a` comes after `b`.
    static func isAfter(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: a &- b) > 0 }
}
