import NIOConcurrencyHelpers
import PilotNet
import PilotWire

/// The ports on which `listen` commands wait for datagrams, by identity. A datagram to any other
/// port is dropped, as a closed UDP port drops it.
final class DatagramPorts: Sendable {
    /// Datagrams one listener holds before the oldest are dropped (a reader that is behind).
    static let backlog = 1000

    private let listeners = NIOLockedValueBox<[String: [UInt16: AsyncStream<Packet>.Continuation]]>([:])

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

    /// A datagram for `identity` (on the fabric's loop: returns at once).
    func deliver(_ packet: Packet, to identity: String) {
        let continuation = listeners.withLockedValue { $0[identity]?[packet.destinationPort] }
        continuation?.yield(packet)
    }
}
