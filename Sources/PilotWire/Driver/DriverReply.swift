/// The frames the daemon side of the Unix socket sends: replies to requests and the pushes
/// (`docs/PROTOCOL.md §12.3`). Data over what one frame carries is the caller's to split.
public enum DriverReply {
    /// The code every 1.18 error reply carries.
    public static let errorCode: UInt16 = 1

    /// 0x0A `[u16 code = 1][UTF-8 message]`: the request failed. Clients show the message, and
    /// some match its start (`sendto: `, `unknown command: `).
    public static func error(_ message: String) -> DriverFrame {
        var writer = ByteWriter(capacity: 2 + message.utf8.count)
        writer.writeUInt16(errorCode)
        writer.writeBytes(message.utf8)
        return DriverFrame(.error, payload: writer.bytes)
    }

    /// A reply whose payload is `value` as compact JSON, escaped as Go's `json.Marshal` escapes
    /// (`<`, `>`, `&` as `\u003c` and so on) so it reads byte for byte like 1.18's.
    public static func json(_ command: DriverCommand, _ value: JSON) -> DriverFrame {
        DriverFrame(command, payload: value.encoded(escapeHTML: true))
    }

    /// `[port u16]`: the reply to `bind` (`bindOK`) or `unbind` (`unbindOK`).
    public static func port(_ command: DriverCommand, _ port: UInt16) -> DriverFrame {
        var writer = ByteWriter(capacity: 2)
        writer.writeUInt16(port)
        return DriverFrame(command, payload: writer.bytes)
    }

    /// `[connection u32]`: `dialOK`, `closeOK`, and the `closeOK` push for a remote close.
    public static func connection(_ command: DriverCommand, _ id: UInt32) -> DriverFrame {
        var writer = ByteWriter(capacity: 4)
        writer.writeUInt32(id)
        return DriverFrame(command, payload: writer.bytes)
    }

    /// The 0x05 push: `localPort` accepted connection `connection` from `remote`:`remotePort`.
    public static func accept(localPort: UInt16, connection: UInt32, remote: Address, remotePort: UInt16) -> DriverFrame {
        DriverPush.accept(localPort: localPort, connection: connection, remote: remote, remotePort: remotePort).frame()
    }

    /// The 0x07 push: `data` arrived on `connection`.
    public static func recv(connection: UInt32, data: [UInt8]) -> DriverFrame {
        DriverPush.recv(connection: connection, data: data).frame()
    }

    /// The 0x0C push: a datagram from `source`:`sourcePort` to this node's `destinationPort`.
    public static func recvFrom(source: Address, sourcePort: UInt16, destinationPort: UInt16, data: [UInt8]) -> DriverFrame {
        DriverPush.recvFrom(source: source, sourcePort: sourcePort, destinationPort: destinationPort, data: data).frame()
    }
}
