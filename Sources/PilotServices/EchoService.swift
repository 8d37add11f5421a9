public import PilotNet
import PilotWire

/// The echo service (`docs/PROTOCOL.md §1.2`, port 7): every byte a stream brings goes back,
/// and the stream is closed when the peer finishes. `pilotctl ping` and `pilotctl bench` measure
/// with it, so every identity of a host answers on it.
///
/// It attaches to a fabric as an echoed port (`Fabric.echo(port:)`): served on the fabric's
/// event loop, with no task, under the fabric's echo budget (strangers reaching a public
/// identity's echo cannot make the host hold more).
public struct EchoService: Sendable {
    /// The port it serves.
    public static let port = Port.echo

    /// The echo service; it holds nothing of its own.
    public init() {}

    /// Every identity of `fabric`, added before or after, answers on `port` from now on.
    public func attach(to fabric: Fabric) async throws {
        try await fabric.echo(port: Self.port)
    }
}
