public import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOHTTP1
import NIOPosix

/// The metrics endpoint: one HTTP/1.1 listener answering `GET /metrics` with the registry's
/// exposition, 404 to every other path, 405 to every other method.
///
/// Each connection carries one request and is closed after the answer (Prometheus dials again
/// at each scrape); it may send at most `maxRequestBytes`, and is closed when it stays silent
/// for `idleTimeout`. Bound to what `MetricsListener` allows.
public final class MetricsServer: Sendable {
    /// The most bytes one connection may send: a scrape's request is a few hundred.
    public static let maxRequestBytes = 8192
    /// A connection that sends and receives nothing for this long is closed.
    public static let idleTimeout: TimeAmount = .seconds(10)

    private let listener: MetricsListener
    private let registry: MetricsRegistry
    private let logger: Logger
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)

    /// A server of `registry` on `listener`'s address, once started.
    public init(listener: MetricsListener, registry: MetricsRegistry, logger: Logger) {
        self.listener = listener
        self.registry = registry
        self.logger = logger
    }

    /// Binds and serves; returns the bound address (port 0 picks one).
    public func start(on group: any EventLoopGroup) async throws -> SocketAddress {
        let registry = registry
        let bound = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 16)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(IdleStateHandler(allTimeout: Self.idleTimeout))
                    try pipeline.addHandler(RequestBounds(limit: Self.maxRequestBytes))
                    try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
                    try pipeline.addHandler(ScrapeHandler(registry: registry))
                }
            }
            .bind(host: listener.endpoint.host, port: Int(listener.endpoint.port)).get()
        channel.withLockedValue { $0 = bound }
        guard let address = bound.localAddress else { throw ChannelError.unknownLocalAddress }
        logger.info("metrics endpoint listening", metadata: ["address": "\(address)"])
        return address
    }

    /// Stops listening; a scrape under way ends with its connection's idle timeout at the latest.
    public func shutdown() async {
        guard let channel = channel.withLockedValue({ $0 }) else { return }
        try? await channel.close()
    }
}

/// Closes a connection that sends more than `limit` bytes, or that stays idle.
private final class RequestBounds: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let limit: Int
    private var received = 0

    init(limit: Int) { self.limit = limit }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += unwrapInboundIn(data).readableBytes
        guard received <= limit else {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// Answers the connection's one request once its end has arrived.
private final class ScrapeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: MetricsRegistry
    private var status: HTTPResponseStatus?

    init(registry: MetricsRegistry) { self.registry = registry }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            status = path != "/metrics" ? .notFound : head.method != .GET ? .methodNotAllowed : .ok
        case .body:
            break
        case .end:
            guard let status else { return }
            self.status = nil
            guard status == .ok else {
                respond(context, status, Array("\(status.reasonPhrase)\n".utf8))
                return
            }
            let registry = registry
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            Task {
                let body = await registry.exposition()
                loop.execute {
                    let (handler, context) = bound.value
                    handler.respond(context, .ok, body)
                }
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: [UInt8]) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
    }
}
