import Foundation
public import Logging
public import NIOCore
import NIOConcurrencyHelpers
import PilotCrypto
import PilotNet
public import PilotWire

extension Registry: NameAuthority {}

/// The nameserver: a Pilot node of its own, registered with this registry (public, hostname
/// `nameserver` by default), that answers the text protocol of port 53 on the overlay. Its
/// Ed25519 key is kept in `<state dir>/nameserver.key`, so it keeps its node id across restarts.
/// Official 1.18 daemons have no nameserver client; any node reaches it with a stream, e.g.
/// `pilotctl connect nameserver 53 --message "QUERY A alpha"`.
public final class Nameserver: Sendable {
    public struct Configuration: Sendable {
        /// UDP address of the nameserver's tunnel socket.
        public var host: String
        public var port: Int
        /// Host registered as the node's endpoint; nil: `host`, with 0.0.0.0 read as 127.0.0.1.
        public var advertiseHost: String?
        /// The registry hostname it takes (nil: none).
        public var hostname: String? = "nameserver"
        public var keyPath: String
        public var limits = NameRecords.Limits()
        public var heartbeatInterval: Duration = .seconds(60)

        public init(host: String, port: Int, stateDirectory: String) {
            self.host = host
            self.port = port
            keyPath = (stateDirectory as NSString).appendingPathComponent("nameserver.key")
        }
    }

    private let registry: Registry
    private let configuration: Configuration
    private let logger: Logger
    private let records: NIOLockedValueBox<NameRecords>
    private let running = NIOLockedValueBox<(fabric: Fabric, heartbeat: Task<Void, Never>)?>(nil)

    public init(registry: Registry, configuration: Configuration, logger: Logger) {
        self.registry = registry
        self.configuration = configuration
        self.logger = logger
        records = NIOLockedValueBox(NameRecords(limits: configuration.limits))
    }

    /// Binds the tunnel socket, registers the node and starts answering; returns the socket's
    /// address and the node's address.
    public func start(on group: any EventLoopGroup) async throws -> (socket: SocketAddress, address: Address) {
        let key = try Self.loadKey(configuration.keyPath)
        let fabric = Fabric(group: group, directory: LocalDirectory(registry: registry), logger: logger)
        let bound = try await fabric.bind(host: configuration.host, port: configuration.port)
        let advertised = configuration.advertiseHost ?? advertisedHost(bound: configuration.host)
        let node = try register(key, endpoint: "\(advertised):\(bound.address.port ?? configuration.port)", peerIP: advertised)
        let identity = try TunnelIdentity(address: Address(node: node), signingKey: key)
        // Its datagrams are not a service: dropped.
        try await fabric.add(identity, ownSocket: bound.socket) { _ in }
        try await fabric.setPublicPorts(local: node, [NameserverRequest.port, 7])
        try await fabric.listen(node: node, port: NameserverRequest.port) { [self] stream in
            Task { await self.serve(stream) }
        }
        let heartbeat = Task { [registry, configuration, logger] in
            while !Task.isCancelled {
                try? await Task.sleep(for: configuration.heartbeatInterval)
                let reply = registry.handle(Self.signed(key, "heartbeat", "heartbeat:\(node)", ["node_id": .integer(Int64(node))]), peerIP: advertised)
                if reply.type != "heartbeat_ok" { logger.warning("nameserver heartbeat failed", metadata: ["reply": "\(reply.json.encodedString())"]) }
            }
        }
        running.withLockedValue { $0 = (fabric, heartbeat) }
        logger.info("nameserver serving", metadata: ["address": "\(Address(node: node))", "socket": "\(bound.address)"])
        return (bound.address, Address(node: node))
    }

    public func shutdown() async {
        guard let (fabric, heartbeat) = running.withLockedValue({ current in defer { current = nil }; return current }) else { return }
        heartbeat.cancel()
        await fabric.shutdown()
    }

    /// One request, one reply, then close. As in the reference, the request is what one read
    /// returns: the first chunk (a valid request is under 600 bytes, inside one segment).
    private func serve(_ stream: StreamHandle) async {
        let bytes = await stream.readMessage(limit: NameserverRequest.maxSize, timeout: .seconds(10)) { _ in true }
        guard !bytes.isEmpty else {
            try? await stream.close()
            return
        }
        let reply: NameserverReply
        do {
            let request = try NameserverRequest(decoding: bytes)
            reply = records.withLockedValue {
                $0.answer(request, from: stream.key.remote.node, now: ProcessInfo.processInfo.systemUptime, authority: registry)
            }
            logger.debug("nameserver", metadata: ["from": "\(stream.key.remote)", "request": "\(String(decoding: request.encoded, as: UTF8.self))"])
        } catch {
            reply = .error("\(error)")
        }
        try? await stream.write(reply.encoded)
        try? await stream.close()
    }

    /// Registers (or re-registers) the node in-process, public, with its hostname.
    private func register(_ key: Ed25519PrivateKey, endpoint: String, peerIP: String) throws -> UInt32 {
        let publicKey = key.publicKey.base64
        let reply = registry.handle(
            Self.signed(key, "register", "register:\(endpoint):\(publicKey)", [
                "listen_addr": .string(endpoint), "public_key": .string(publicKey), "version": "pilot-rendezvous",
                "owner": "nameserver",
            ]), peerIP: peerIP)
        guard reply.type == "register_ok", let node = try? reply.nodeID("node_id") else {
            throw NameserverError("cannot register the nameserver node: \(reply["error"]?.stringValue ?? reply.json.encodedString())")
        }
        let visibility = registry.handle(
            Self.signed(key, "set_visibility", "set_visibility:\(node)", ["node_id": .integer(Int64(node)), "public": true]), peerIP: peerIP)
        guard visibility.type == "set_visibility_ok" else {
            throw NameserverError("cannot make the nameserver node public: \(visibility.json.encodedString())")
        }
        if let hostname = configuration.hostname, reply["hostname"]?.stringValue != hostname {
            let named = registry.handle(
                Self.signed(key, "set_hostname", "set_hostname:\(node)", ["node_id": .integer(Int64(node)), "hostname": .string(hostname)]),
                peerIP: peerIP)
            if named.type != "set_hostname_ok" {
                logger.warning("nameserver runs without its hostname", metadata: ["hostname": "\(hostname)", "reply": "\(named.json.encodedString())"])
            }
        }
        return node
    }

    private static func signed(_ key: Ed25519PrivateKey, _ type: String, _ challenge: String, _ fields: [String: JSON]) -> RegistryMessage {
        var all = fields
        all["signature"] = .string(Base64.encode(key.sign(Array(challenge.utf8))))
        return RegistryMessage(type: type, all)
    }

    /// The node's key: read from `path`, or made and written there (0600) on first start.
    static func loadKey(_ path: String) throws -> Ed25519PrivateKey {
        if FileManager.default.fileExists(atPath: path) {
            return try Ed25519PrivateKey(seed: try KeyFile.read(path, what: "nameserver key").bytes)
        }
        let key = try Ed25519PrivateKey()
        try KeyFile.create(path, what: "nameserver key", secret: key.seed)
        return key
    }
}

/// Peer keys straight from the registry in this process.
private struct LocalDirectory: PeerDirectory {
    let registry: Registry
    func signingKey(of node: UInt32) async throws -> Ed25519PublicKey? { registry.signingKey(of: node) }
}

public struct NameserverError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
