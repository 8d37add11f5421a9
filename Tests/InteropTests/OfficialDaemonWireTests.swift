import Foundation
import PilotCrypto
import PilotTestSupport
import PilotWire
import XCTest

/// Proof against the real thing: the official 1.18 `pilot-daemon` talks to a TCP listener and a
/// UDP socket of this test standing in for its registry and its beacon, and everything it sends
/// them decodes with PilotWire into the expected fields.
final class OfficialDaemonWireTests: XCTestCase {
    private var directory: TemporaryDirectory?
    private var daemon: ChildProcess?

    override func tearDown() {
        daemon?.stop()
        if let directory {
            if let daemon, (testRun?.totalFailureCount ?? 0) > 0 { print("pilot-daemon log:\n\(daemon.output)") }
            directory.remove()
        }
        super.tearDown()
    }

    func testDaemonRegistrationAndBeaconDiscoveryDecodeWithPilotWire() throws {
        let official: OfficialPilot
        do { official = try OfficialPilot.binaries() } catch {
            throw XCTSkip("official pilot-daemon unavailable: \(error)")
        }
        let directory = try TemporaryDirectory(prefix: "pilot-interop")
        self.directory = directory
        let registry = try LoopbackSocket.tcpListener()
        let beacon = try LoopbackSocket.udp()
        let assignedNode: UInt32 = 0x00A3_F291

        daemon = try ChildProcess(
            name: "pilot-daemon", executable: official.daemon,
            arguments: [
                "-registry", "\(registry.localEndpoint)", "-beacon", "\(beacon.localEndpoint)",
                "-listen", "127.0.0.1:0", "-socket", directory.path("d.sock"),
                "-telemetry-url", "", "-motd-feed-url", "", "-log-level", "debug",
            ],
            environment: ["HOME": directory.url.path], logDirectory: directory.url)

        // 1. Endpoint discovery: a beacon discover with node id 0 from a throwaway socket.
        let (first, stunSource) = try XCTUnwrap(
            try beacon.receiveDatagram(timeout: 15), "no beacon discover from pilot-daemon")
        XCTAssertEqual(try BeaconMessage(decoding: first), .discover(node: 0))
        // Answer as a beacon does: the observed source.
        try beacon.send(
            try BeaconMessage.discoverReply(ip: stunSource.ip, port: stunSource.port).encoded(), to: stunSource)

        // 2. Registration over TCP: a length-prefixed JSON `register`, signed by the node key.
        let connection = try XCTUnwrap(try registry.accept(timeout: 15), "pilot-daemon never dialled the registry")
        let register = try XCTUnwrap(try readRegistryMessage(connection), "no registry message")
        XCTAssertEqual(register.type, "register")
        XCTAssertEqual(try register.string("version"), OfficialPilot.version)
        let listenAddress = try register.string("listen_addr")
        XCTAssertTrue(listenAddress.hasPrefix("127.0.0.1:"), "listen_addr \(listenAddress)")
        let tunnelPort = try XCTUnwrap(UInt16(listenAddress.dropFirst("127.0.0.1:".count)))
        let publicKeyText = try register.string("public_key")
        let publicKey = try Ed25519PublicKey(base64: publicKeyText)
        let signature = try Base64.decode(try register.string("signature"))
        XCTAssertTrue(
            publicKey.isValidSignature(signature, for: Array("register:\(listenAddress):\(publicKeyText)".utf8)),
            "the register signature does not verify over register:<listen_addr>:<public_key>")
        let owner = try register.string("owner")
        // Without -email the daemon names itself after the first 6 bytes of its key.
        let keyPrefix = publicKey.bytes.prefix(6).map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(owner, "\(keyPrefix)@nodes.pilotprotocol.network")

        let address = Address(network: 0, node: assignedNode)
        try connection.write(
            RegistryFrame.encode(
                RegistryMessage(
                    type: "register_ok",
                    [
                        "node_id": .integer(Int64(assignedNode)), "network_id": 0,
                        "address": .string(address.description), "public_key": .string(publicKeyText),
                    ])))

        // The daemon opens more registry connections (lookup, list_networks, beacon_list, ...);
        // answer them as an old registry would, so it never waits on us.
        let responder = RegistryErrorResponder(listener: registry, handled: connection)
        defer { responder.stop() }

        // 3. With its node id, the daemon announces itself to the beacon from its tunnel socket.
        let deadline = Date().addingTimeInterval(15)
        var announced = false
        while !announced, Date() < deadline {
            guard let (bytes, source) = try beacon.receiveDatagram(timeout: deadline.timeIntervalSinceNow) else { break }
            guard case .discover(let node) = try BeaconMessage(decoding: bytes), node != 0 else { continue }
            XCTAssertEqual(node, assignedNode)
            XCTAssertEqual(source.port, tunnelPort, "discover must come from the registered tunnel socket")
            announced = true
        }
        XCTAssertTrue(announced, "no beacon discover carrying node \(assignedNode)")

        // 4. Its own status agrees: the official pilotctl reads the address we assigned.
        // Its control socket appears once start-up is done.
        var info = ChildProcess.Result(status: -1, output: "", stdout: "")
        _ = ChildProcess.waitUntil(timeout: 20, every: 0.2) {
            info = ChildProcess.run(
                official.pilotctl.path, ["--json", "info"],
                environment: ["HOME": directory.url.path, "PILOT_SOCKET": directory.path("d.sock")], timeout: 20)
            return info.status == 0
        }
        XCTAssertEqual(info.status, 0, info.output)
        let envelope = try JSON(parsing: info.stdout)
        XCTAssertEqual(envelope["status"], "ok")
        XCTAssertEqual(envelope["data"]?["address"]?.stringValue, "0:0000.00A3.F291")
        XCTAssertEqual(envelope["data"]?["node_id"]?.integerValue, Int64(assignedNode))
        XCTAssertEqual(Address(try XCTUnwrap(envelope["data"]?["address"]?.stringValue)), address)
    }
}

/// Serves every further registry connection of the daemon on a background thread, answering
/// `heartbeat` with `heartbeat_ok` and anything else with the error an old registry gives for
/// types it does not know.
private final class RegistryErrorResponder: @unchecked Sendable {
    // @unchecked: `stopped` is guarded by `lock`; the sockets are used by the thread alone.
    private let lock = NSLock()
    private var stopped = false

    init(listener: LoopbackSocket, handled: LoopbackSocket) {
        let thread = Thread { [self] in
            var connections = [handled]
            while !isStopped {
                if let client = try? listener.accept(timeout: 0.02) { connections.append(client) }
                var open: [LoopbackSocket] = []
                for connection in connections {
                    guard connection.waitReadable(timeout: 0) else {
                        open.append(connection)
                        continue
                    }
                    // A closed or broken connection is dropped; everything else gets an answer.
                    guard let message = try? readRegistryMessage(connection, timeout: 1) else { continue }
                    open.append(connection)
                    let reply =
                        message.type == "heartbeat"
                        ? RegistryMessage(type: "heartbeat_ok", ["time": .integer(Int64(Date().timeIntervalSince1970))])
                        : RegistryMessage(type: "error", ["error": "unknown type"])
                    try? connection.write(RegistryFrame.encode(reply))
                }
                connections = open
            }
        }
        thread.start()
    }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    func stop() { lock.lock(); stopped = true; lock.unlock() }
}

/// Reads one length-prefixed registry message with PilotWire's decoder; `nil` if the peer closed.
private func readRegistryMessage(_ socket: LoopbackSocket, timeout: TimeInterval = 15) throws -> RegistryMessage? {
    var decoder = RegistryFrameDecoder()
    guard let frame = try socket.readFrame(timeout: timeout) else { return nil }
    decoder.append(frame)
    guard case .message(let message)? = try decoder.next() else { return nil }
    return message
}
