/// A frame the daemon sends without being asked (`docs/PROTOCOL.md §12.3`); clients route these
/// by command byte, apart from the replies they wait for.
public enum DriverPush: Equatable, Sendable {
    /// 0x05 `[local port][connection u32][remote address][remote port]`: a bound port accepted
    /// a connection.
    case accept(localPort: UInt16, connection: UInt32, remote: Address, remotePort: UInt16)
    /// 0x07 `[connection u32][data]`: stream data arrived.
    case recv(connection: UInt32, data: [UInt8])
    /// 0x09 `[connection u32]`: the remote end closed the connection. The same frame answers a
    /// `close` request; the official driver takes every 0x09 as this push.
    case remoteClosed(connection: UInt32)
    /// 0x0C `[source address][source port][destination port][data]`: a datagram arrived; it
    /// goes to every client of the socket, which pick theirs by destination port.
    case recvFrom(source: Address, sourcePort: UInt16, destinationPort: UInt16, data: [UInt8])

    /// The push carried by `frame`, `nil` if its command is not one of the four. Throws for a
    /// payload that is short or, for the fixed-size ones, too long.
    public init?(decoding frame: DriverFrame) throws(WireError) {
        guard let command = frame.knownCommand else { return nil }
        var reader = ByteReader(frame.payload)
        switch command {
        case .accept:
            let localPort = try reader.readUInt16("accept local port")
            let connection = try reader.readUInt32("accept connection id")
            let remote = try Address(decoding: &reader)
            self = .accept(
                localPort: localPort, connection: connection, remote: remote,
                remotePort: try reader.readUInt16("accept remote port"))
        case .recv:
            let connection = try reader.readUInt32("recv connection id")
            self = .recv(connection: connection, data: Array(reader.readRemaining()))
        case .closeOK:
            self = .remoteClosed(connection: try reader.readUInt32("closed connection id"))
        case .recvFrom:
            let source = try Address(decoding: &reader)
            let sourcePort = try reader.readUInt16("recvfrom source port")
            let destinationPort = try reader.readUInt16("recvfrom destination port")
            self = .recvFrom(
                source: source, sourcePort: sourcePort, destinationPort: destinationPort,
                data: Array(reader.readRemaining()))
        default:
            return nil
        }
        try reader.expectEnd("\(command.name) push")
    }

    /// The push as a frame; `init(decoding:)` reads it back equal.
    public func frame() -> DriverFrame {
        switch self {
        case .accept(let localPort, let connection, let remote, let remotePort):
            var writer = ByteWriter(capacity: 14)
            writer.writeUInt16(localPort)
            writer.writeUInt32(connection)
            remote.encode(into: &writer)
            writer.writeUInt16(remotePort)
            return DriverFrame(.accept, payload: writer.bytes)
        case .recv(let connection, let data):
            var writer = ByteWriter(capacity: 4 + data.count)
            writer.writeUInt32(connection)
            writer.writeBytes(data)
            return DriverFrame(.recv, payload: writer.bytes)
        case .remoteClosed(let connection):
            return DriverReply.connection(.closeOK, connection)
        case .recvFrom(let source, let sourcePort, let destinationPort, let data):
            var writer = ByteWriter(capacity: 10 + data.count)
            source.encode(into: &writer)
            writer.writeUInt16(sourcePort)
            writer.writeUInt16(destinationPort)
            writer.writeBytes(data)
            return DriverFrame(.recvFrom, payload: writer.bytes)
        }
    }
}
