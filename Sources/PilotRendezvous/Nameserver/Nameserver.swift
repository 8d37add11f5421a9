import Foundation
public import Logging
public import NIOCore
import NIOConcurrencyHelpers
import PilotCrypto
import PilotNet
import PilotServices
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
    private let running = NIOLockedValueBox<InProcessNode?>(nil)

    public init(registry: Registry, configuration: Configuration, logger: Logger) {
        self.registry = registry
        self.configuration = configuration
        self.logger = logger
        records = NIOLockedValueBox(NameRecords(limits: configuration.limits))
    }

    /// Binds the tunnel socket, registers the node and starts answering; returns the socket's
    /// address and the node's address.
    public func start(on group: any EventLoopGroup) async throws -> (socket: SocketAddress, address: Address) {
        let node = try await InProcessNode.start(
            registry: registry,
            configuration: InProcessNode.Configuration(
                host: configuration.host, port: configuration.port, advertiseHost: configuration.advertiseHost,
                hostname: configuration.hostname, keyPath: configuration.keyPath, role: "nameserver",
                heartbeatInterval: configuration.heartbeatInterval),
            on: group, logger: logger)
        try await node.fabric.setPublicPorts(local: node.node, [NameserverRequest.port, EchoService.port])
        try await node.fabric.listen(node: node.node, port: NameserverRequest.port) { [self] stream in
            Task { await self.serve(stream) }
        }
        running.withLockedValue { $0 = node }
        logger.info("nameserver serving", metadata: ["address": "\(node.address)", "socket": "\(node.socket)"])
        return (node.socket, node.address)
    }

    public func shutdown() async {
        guard let node = running.withLockedValue({ current in defer { current = nil }; return current }) else { return }
        await node.shutdown()
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
}
