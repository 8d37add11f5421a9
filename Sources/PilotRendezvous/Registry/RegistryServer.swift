import Foundation
public import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix
import NIOSSL
import PilotCrypto
public import PilotMetrics
import PilotWire

/// The registry's TCP server (optionally TLS): length-prefixed JSON requests, one reply each,
/// handed to `Registry` on a thread pool so SQLite never blocks an event loop.
public final class RegistryServer: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// PEM files for TLS; nil serves plain TCP.
        public var tlsCertificatePath: String?
        public var tlsKeyPath: String?
        /// Requests per connection: per-second refill and burst (two seconds' worth); beyond it
        /// requests get an error. A batch counts as one request; one with the host credential
        /// (`Registry.Configuration.hostCredential`) is not counted.
        public var requestsPerSecond: Double = 1000 {
            didSet { requestBurst = requestsPerSecond * 2 }
        }
        public var requestBurst: Double = 2000
        /// A connection that sends nothing for this long is closed.
        public var idleTimeout: TimeAmount = .minutes(5)
        /// Where each request is counted and timed; nil: nowhere.
        public var metrics: RegistryRequestMetrics?

        public init(host: String, port: Int, tlsCertificatePath: String? = nil, tlsKeyPath: String? = nil) {
            self.host = host
            self.port = port
            self.tlsCertificatePath = tlsCertificatePath
            self.tlsKeyPath = tlsKeyPath
        }
    }

    public let registry: Registry
    private let configuration: Configuration
    private let logger: Logger
    private let threadPool: NIOThreadPool
    private let channel: NIOLockedValueBox<(any Channel)?> = NIOLockedValueBox(nil)
    private let reaper: NIOLockedValueBox<RepeatedTask?> = NIOLockedValueBox(nil)
    /// Writes the liveness this instance saw, for the others sharing its database.
    private let livenessWriter: NIOLockedValueBox<RepeatedTask?> = NIOLockedValueBox(nil)
    /// Open client connections, closed on shutdown so no client waits on a stopped server.
    private let clients: NIOLockedValueBox<[ObjectIdentifier: any Channel]> = NIOLockedValueBox([:])

    public init(registry: Registry, configuration: Configuration, logger: Logger) {
        self.registry = registry
        self.configuration = configuration
        self.logger = logger
        threadPool = NIOThreadPool(numberOfThreads: 1)
    }

    /// Binds and starts serving; returns the bound address (port 0 picks one).
    public func start(on group: any EventLoopGroup) async throws -> SocketAddress {
        threadPool.start()
        let configuration = configuration
        let tls: NIOSSLContext? = try configuration.tlsCertificatePath.map { certificate in
            guard let key = configuration.tlsKeyPath else {
                throw RegistryServerError("--tls-cert needs --tls-key")
            }
            return try NIOSSLContext(
                configuration: .makeServerConfiguration(
                    certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
                    privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))))
        }
        let registry = registry
        let threadPool = threadPool
        let logger = logger
        let clients = clients
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let id = ObjectIdentifier(channel)
                clients.withLockedValue { $0[id] = channel }
                channel.closeFuture.whenComplete { _ in clients.withLockedValue { $0[id] = nil } }
                return channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: configuration.idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(
                        RegistryConnectionHandler(
                            registry: registry, threadPool: threadPool, logger: logger, metrics: configuration.metrics,
                            peerIP: channel.remoteAddress?.ipAddress ?? "unknown",
                            budget: TokenBucket(
                                capacity: configuration.requestBurst, ratePerSecond: configuration.requestsPerSecond,
                                now: Registry.uptime())))
                }
            }
        let bound = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        channel.withLockedValue { $0 = bound }
        reaper.withLockedValue {
            $0 = bound.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(30), delay: .seconds(30)) { _ in
                threadPool.submit { _ in
                    let count = registry.reap()
                    if count > 0 { logger.info("nodes went offline", metadata: ["count": "\(count)"]) }
                }
            }
        }
        let interval = TimeAmount.nanoseconds(Int64(max(registry.configuration.livenessWriteInterval, 0.01) * 1e9))
        livenessWriter.withLockedValue {
            $0 = bound.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                threadPool.submit { _ in registry.shareLiveness() }
            }
        }
        guard let address = bound.localAddress else { throw RegistryServerError("registry socket has no address") }
        return address
    }

    public func shutdown() async throws {
        reaper.withLockedValue { $0?.cancel() }
        livenessWriter.withLockedValue { $0?.cancel() }
        if let channel = channel.withLockedValue({ $0 }) { try? await channel.close() }
        for client in clients.withLockedValue({ Array($0.values) }) { try? await client.close() }
        try await threadPool.shutdownGracefully()
    }
}

extension RegistryServer {
    /// The hex SHA-256 of the DER of the first certificate in the PEM file at `path`: what
    /// clients pin (1.18's `-registry-fingerprint`, pilot-host's `registry-fingerprint`).
    public static func fingerprint(ofCertificateAt path: String) throws -> String {
        guard let leaf = try NIOSSLCertificate.fromPEMFile(path).first else {
            throw RegistryServerError("\(path) holds no certificate")
        }
        return Sodium.sha256(try leaf.toDERBytes()).map { String(format: "%02x", $0) }.joined()
    }
}

public struct RegistryServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// One client connection: reassembles frames, answers them in order, one at a time.
final class RegistryConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: every field is touched only on the channel's event loop.
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let registry: Registry
    private let threadPool: NIOThreadPool
    private let logger: Logger
    private let metrics: RegistryRequestMetrics?
    private let peerIP: String
    private var decoder = RegistryFrameDecoder()
    private var budget: TokenBucket
    private enum Pending {
        case request(RegistryMessage)
        case malformed(WireError)
    }

    private var queue: [Pending] = []
    private var busy = false
    private var closing = false

    init(registry: Registry, threadPool: NIOThreadPool, logger: Logger, metrics: RegistryRequestMetrics?, peerIP: String, budget: TokenBucket) {
        self.registry = registry
        self.metrics = metrics
        self.threadPool = threadPool
        self.logger = logger
        self.peerIP = peerIP
        self.budget = budget
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let buffer = unwrapInboundIn(data)
        decoder.append(buffer.readableBytesView)
        do {
            while let event = try decoder.next() {
                switch event {
                case .message(let message):
                    queue.append(.request(message))
                case .malformed(let error):
                    queue.append(.malformed(error))
                case .binaryModeRequested:
                    // The binary mode is optional; refusing it keeps the client on JSON.
                    fail(context, "binary registry mode is not supported; use JSON framing")
                    return
                }
            }
        } catch {
            fail(context, "malformed request: \(error)")
            return
        }
        serveNext(context)
    }

    private func serveNext(_ context: ChannelHandlerContext) {
        guard !busy, !closing, !queue.isEmpty else { return }
        let next = queue.removeFirst()
        guard case .request(let request) = next else {
            if case .malformed(let error) = next {
                write(context, RegistryMessage(type: "error", ["error": .string("malformed request: \(error)")]))
            }
            serveNext(context)
            return
        }
        // One connection carries all of an operator's host's identities: its batches are exempt.
        guard registry.isFromOperatorHost(request) || budget.take(now: Registry.uptime()) else {
            write(context, RegistryMessage(type: "error", ["error": "rate limit: too many requests"]))
            metrics?.record(request, .rateLimited, nanoseconds: 0)
            serveNext(context)
            return
        }
        busy = true
        let registry = registry
        let peerIP = peerIP
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let start = NIODeadline.now()
        threadPool.runIfActive(eventLoop: loop) {
            registry.handle(request, peerIP: peerIP)
        }.whenComplete { result in
            let (handler, context) = bound.value
            handler.busy = false
            let outcome: RegistryRequestMetrics.Outcome
            var answer: RegistryMessage?
            if case .success(let reply) = result {
                outcome = RegistryRequestMetrics.outcome(of: reply)
                answer = reply
            } else { outcome = .failed }
            handler.metrics?.record(request, outcome, nanoseconds: (NIODeadline.now() - start).nanoseconds, reply: answer)
            switch result {
            case .success(let reply):
                if reply.type == "error" {
                    handler.logger.debug(
                        "registry request refused",
                        metadata: ["peer": "\(peerIP)", "type": "\(request.type.prefix(64))", "error": "\(reply["error"]?.stringValue ?? "")"])
                }
                handler.write(context, reply)
            case .failure: handler.write(context, RegistryMessage(type: "error", ["error": "server shutting down"]))
            }
            handler.serveNext(context)
        }
    }

    private func write(_ context: ChannelHandlerContext, _ message: RegistryMessage) {
        guard let bytes = try? RegistryFrame.encode(message) else { return }
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    /// Answers once with an error, then closes: the stream's framing can no longer be trusted.
    private func fail(_ context: ChannelHandlerContext, _ reason: String) {
        closing = true
        queue.removeAll()
        logger.notice("closing registry connection", metadata: ["peer": "\(peerIP)", "reason": "\(reason)"])
        guard let bytes = try? RegistryFrame.encode(RegistryMessage(type: "error", ["error": .string(reason)])) else { return }
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in bound.value.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("registry connection error", metadata: ["peer": "\(peerIP)", "error": "\(error)"])
        context.close(promise: nil)
    }
}
