/// One message on the daemon's Unix socket, either way: `[u32 BE length][command][payload]`,
/// where the length counts the command byte and the payload (`docs/PROTOCOL.md §12.3`).
public struct DriverFrame: Sendable, Equatable {
    /// The longest frame, as counted by its length field; a longer one closes the connection.
    public static let maxSize = 1 << 20
    /// The longest payload a frame can carry: `maxSize` less the command byte.
    public static let maxPayloadSize = maxSize - 1

    /// The command byte; it may name no `DriverCommand` (a newer or a broken peer).
    public var command: UInt8
    /// Everything after the command byte.
    public var payload: [UInt8]

    /// A frame with any command byte.
    public init(command: UInt8, payload: [UInt8]) {
        self.command = command
        self.payload = payload
    }

    /// A frame of a known command.
    public init(_ command: DriverCommand, payload: [UInt8] = []) {
        self.init(command: command.rawValue, payload: payload)
    }

    /// The command, if the byte names one.
    public var knownCommand: DriverCommand? { DriverCommand(rawValue: command) }

    /// The frame as it goes on the socket. A payload over `maxPayloadSize` is the caller's to
    /// split or refuse: encoded anyway, the peer drops the connection on reading its length.
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 5 + payload.count)
        writer.writeUInt32(UInt32(clamping: 1 + payload.count))
        writer.writeUInt8(command)
        writer.writeBytes(payload)
        return writer.bytes
    }
}
