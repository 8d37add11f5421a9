import Foundation
import Logging
import NIOCore
import PilotCrypto
import PilotNet
import PilotServices
import PilotWire

/// A node of the overlay that lives inside pilot-rendezvous (the nameserver, the directory): its
/// Ed25519 key kept in a file (so it keeps its node id across restarts), registered with this
/// process's registry directly, public, with a hostname, kept online by heartbeats, on a fabric
/// and tunnel socket of its own that answers echo (port 7).
final class InProcessNode: Sendable {
    struct Configuration: Sendable {
        /// UDP address of its tunnel socket.
        var host: String
        var port: Int
        /// Host registered as its endpoint; nil: `host`, with 0.0.0.0 read as 127.0.0.1.
        var advertiseHost: String?
        /// The hostname it takes (nil: none).
        var hostname: String?
        var keyPath: String
        /// Registered as its `owner`, and named in logs.
        var role: String
        var heartbeatInterval: Duration
    }

    let key: Ed25519PrivateKey
    let node: UInt32
    let fabric: Fabric
    /// Its tunnel socket's bound address.
    let socket: SocketAddress
    private let heartbeat: Task<Void, Never>

    private init(key: Ed25519PrivateKey, node: UInt32, fabric: Fabric, socket: SocketAddress, heartbeat: Task<Void, Never>) {
        self.key = key
        self.node = node
        self.fabric = fabric
        self.socket = socket
        self.heartbeat = heartbeat
    }

    var address: Address { Address(node: node) }

    /// Binds the socket, registers the node and keeps it online. Its services are the caller's
    /// to add (`fabric.listen`, `fabric.setPublicPorts`).
    static func start(
        registry: Registry, configuration: Configuration, on group: any EventLoopGroup, logger: Logger
    ) async throws -> InProcessNode {
        let key = try loadKey(configuration.keyPath, role: configuration.role)
        let fabric = Fabric(group: group, directory: LocalDirectory(registry: registry), logger: logger)
        try await EchoService().attach(to: fabric)
        let bound = try await fabric.bind(host: configuration.host, port: configuration.port)
        let advertised = configuration.advertiseHost ?? advertisedHost(bound: configuration.host)
        let node = try register(
            key, registry: registry, endpoint: "\(advertised):\(bound.address.port ?? configuration.port)", peerIP: advertised,
            configuration: configuration, logger: logger)
        let identity = try TunnelIdentity(address: Address(node: node), signingKey: key)
        // Its datagrams are not a service: dropped.
        try await fabric.add(identity, ownSocket: bound.socket) { _ in }
        let heartbeat = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: configuration.heartbeatInterval)
                guard !Task.isCancelled else { return }
                let reply = registry.handle(signed(key, "heartbeat", "heartbeat:\(node)", ["node_id": .integer(Int64(node))]), peerIP: advertised)
                if reply.type != "heartbeat_ok" {
                    logger.warning("\(configuration.role) heartbeat failed", metadata: ["reply": "\(reply.json.encodedString())"])
                }
            }
        }
        return InProcessNode(key: key, node: node, fabric: fabric, socket: bound.address, heartbeat: heartbeat)
    }

    func shutdown() async {
        heartbeat.cancel()
        await fabric.shutdown()
    }

    /// Registers (or re-registers) the node in-process, public, with its hostname.
    private static func register(
        _ key: Ed25519PrivateKey, registry: Registry, endpoint: String, peerIP: String, configuration: Configuration, logger: Logger
    ) throws -> UInt32 {
        let role = configuration.role
        let publicKey = key.publicKey.base64
        let reply = registry.handle(
            signed(key, "register", "register:\(endpoint):\(publicKey)", [
                "listen_addr": .string(endpoint), "public_key": .string(publicKey), "version": "pilot-rendezvous", "owner": .string(role),
            ]), peerIP: peerIP)
        guard reply.type == "register_ok", let node = try? reply.nodeID("node_id") else {
            throw InProcessNodeError("cannot register the \(role) node: \(reply["error"]?.stringValue ?? reply.json.encodedString())")
        }
        let visibility = registry.handle(
            signed(key, "set_visibility", "set_visibility:\(node)", ["node_id": .integer(Int64(node)), "public": true]), peerIP: peerIP)
        guard visibility.type == "set_visibility_ok" else {
            throw InProcessNodeError("cannot make the \(role) node public: \(visibility.json.encodedString())")
        }
        if let hostname = configuration.hostname, reply["hostname"]?.stringValue != hostname {
            let named = registry.handle(
                signed(key, "set_hostname", "set_hostname:\(node)", ["node_id": .integer(Int64(node)), "hostname": .string(hostname)]),
                peerIP: peerIP)
            if named.type != "set_hostname_ok" {
                logger.warning("\(role) runs without its hostname", metadata: ["hostname": "\(hostname)", "reply": "\(named.json.encodedString())"])
            }
        }
        return node
    }

    /// `fields` with the node's signature over `challenge`, as a registry request of `type`.
    static func signed(_ key: Ed25519PrivateKey, _ type: String, _ challenge: String, _ fields: [String: JSON]) -> RegistryMessage {
        var all = fields
        all["signature"] = .string(Base64.encode(key.sign(Array(challenge.utf8))))
        return RegistryMessage(type: type, all)
    }

    /// The node's key: read from `path`, or made and written there (0600) on first start.
    static func loadKey(_ path: String, role: String) throws -> Ed25519PrivateKey {
        if FileManager.default.fileExists(atPath: path) {
            return try Ed25519PrivateKey(seed: try KeyFile.read(path, what: "\(role) key").bytes)
        }
        let key = try Ed25519PrivateKey()
        try KeyFile.create(path, what: "\(role) key", secret: key.seed)
        return key
    }
}

/// Peer keys straight from the registry in this process.
struct LocalDirectory: PeerDirectory {
    let registry: Registry
    func signingKey(of node: UInt32) async throws -> Ed25519PublicKey? { registry.signingKey(of: node) }
}

/// An in-process node could not start.
public struct InProcessNodeError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
