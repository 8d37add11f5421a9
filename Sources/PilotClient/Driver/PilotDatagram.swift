public import PilotWire

/// A datagram that arrived for the identity and that no `listen` of pilot-host took (the
/// driver protocol's RecvFrom push, docs/PROTOCOL.md §12.3).
public struct PilotDatagram: Sendable, Equatable {
    /// The node that sent it.
    public var source: Address
    /// The port it was sent from.
    public var sourcePort: UInt16
    /// The identity's port it was sent to.
    public var destinationPort: UInt16
    /// What it carries.
    public var data: [UInt8]

    /// A datagram from `source`:`sourcePort` to `destinationPort`.
    public init(source: Address, sourcePort: UInt16, destinationPort: UInt16, data: [UInt8]) {
        self.source = source
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.data = data
    }
}
