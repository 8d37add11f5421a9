import NIOConcurrencyHelpers
import PilotNet
import PilotWire

/// The ports on which `listen` commands wait for datagrams, by identity. A datagram to any other
/// port is dropped, as a closed UDP port drops it.
final class DatagramPorts: Sendable {
    /// Datagrams one listener holds before the oldest are dropped (a reader that is behind).
    static let backlog = 1000

    private let listeners = NIOLockedValueBox<[String: [UInt16: AsyncStream<Packet>.Continuation]]>([:])
    /// Those who take every datagram of an identity no port listener takes (driver connections,
    /// 1.18's RecvFrom), by identity and subscriber; at most `subscriberLimit` per identity.
    private let everything = NIOLockedValueBox<(next: UInt64, by: [String: [UInt64: AsyncStream<Packet>.Continuation]])>((0, [:]))
    static let subscriberLimit = 256

    /// The datagrams to `port` of `identity` from now until `stop` (nil: the port is taken).
    func listen(_ identity: String, port: UInt16) -> AsyncStream<Packet>? {
        let (packets, continuation) = AsyncStream.makeStream(of: Packet.self, bufferingPolicy: .bufferingNewest(Self.backlog))
        let taken = listeners.withLockedValue { listeners -> Bool in
            guard listeners[identity]?[port] == nil else { return true }
            listeners[identity, default: [:]][port] = continuation
            return false
        }
        return taken ? nil : packets
    }

    /// Ends the listening on `port` of `identity`.
    func stop(_ identity: String, port: UInt16) {
        let continuation = listeners.withLockedValue { listeners -> AsyncStream<Packet>.Continuation? in
            let continuation = listeners[identity]?.removeValue(forKey: port)
            if listeners[identity]?.isEmpty == true { listeners[identity] = nil }
            return continuation
        }
        continuation?.finish()
    }

    /// Every datagram to `identity` that no port listener takes, from now until `stopAll`, each
    /// subscriber its own copy (the newest `backlog` kept); the oldest subscriber is ended when
    /// a new one would pass `subscriberLimit`.
    func listenAll(_ identity: String) -> (subscriber: UInt64, packets: AsyncStream<Packet>) {
        let (packets, continuation) = AsyncStream.makeStream(of: Packet.self, bufferingPolicy: .bufferingNewest(Self.backlog))
        let (id, evicted) = everything.withLockedValue { everything -> (UInt64, AsyncStream<Packet>.Continuation?) in
            everything.next += 1
            var evicted: AsyncStream<Packet>.Continuation?
            if let oldest = everything.by[identity]?.keys.min(), everything.by[identity]!.count >= Self.subscriberLimit {
                evicted = everything.by[identity]?.removeValue(forKey: oldest)
            }
            everything.by[identity, default: [:]][everything.next] = continuation
            return (everything.next, evicted)
        }
        evicted?.finish()
        return (id, packets)
    }

    /// Ends subscription `subscriber` of `listenAll`.
    func stopAll(_ identity: String, subscriber: UInt64) {
        let continuation = everything.withLockedValue { everything -> AsyncStream<Packet>.Continuation? in
            let continuation = everything.by[identity]?.removeValue(forKey: subscriber)
            if everything.by[identity]?.isEmpty == true { everything.by[identity] = nil }
            return continuation
        }
        continuation?.finish()
    }

    /// A datagram for `identity` (on the fabric's loop: returns at once): to the listener of its
    /// port, else to every `listenAll` subscriber.
    func deliver(_ packet: Packet, to identity: String) {
        if let continuation = listeners.withLockedValue({ $0[identity]?[packet.destinationPort] }) {
            continuation.yield(packet)
            return
        }
        let subscribers = everything.withLockedValue { $0.by[identity].map { Array($0.values) } ?? [] }
        for continuation in subscribers { continuation.yield(packet) }
    }
}
