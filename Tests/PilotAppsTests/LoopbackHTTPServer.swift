import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// An HTTP/1.1 server on 127.0.0.1 (an ephemeral port) for the downloader's tests, so that they
/// need nothing outside the package: each request's path is answered as `route` says, and every
/// path asked for is recorded.
final class LoopbackHTTPServer: Sendable {
    /// How the server answers one path.
    enum Reply: Sendable {
        /// 200 with `bytes`: with a Content-Length when `announced`, else chunked.
        case body([UInt8], announced: Bool)
        /// 302 to `location`, as it is written.
        case redirect(String)
        /// `code` with an empty body.
        case status(Int)
        /// No answer at all: the connection stays open and silent.
        case silence
        /// 200 announcing `length` bytes, then one byte every `interval`, for ever.
        case trickle(length: Int, interval: TimeAmount)
    }

    /// The port it listens on, on 127.0.0.1.
    let port: Int
    private let channel: any Channel
    private let asked: NIOLockedValueBox<[String]>

    /// Listens on `group` until `stop()`.
    init(group: any EventLoopGroup, route: @escaping @Sendable (String) -> Reply) async throws {
        let asked = NIOLockedValueBox<[String]>([])
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Responder(route: route, asked: asked))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        guard let port = channel.localAddress?.port else { throw ChannelError.unknownLocalAddress }
        self.port = port
        self.asked = asked
    }

    /// The paths asked for so far, in order.
    var requests: [String] { asked.withLockedValue { $0 } }

    /// Stops listening; open connections end with the event loop group.
    func stop() async {
        try? await channel.close()
    }
}

/// Answers each request once its end has arrived.
private final class Responder: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let route: @Sendable (String) -> LoopbackHTTPServer.Reply
    private let asked: NIOLockedValueBox<[String]>
    private var path: String?
    private var trickling: Scheduled<Void>?

    init(route: @escaping @Sendable (String) -> LoopbackHTTPServer.Reply, asked: NIOLockedValueBox<[String]>) {
        self.route = route
        self.asked = asked
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = head.uri
            asked.withLockedValue { $0.append(head.uri) }
        case .body:
            break
        case .end:
            guard let path else { return }
            answer(route(path), context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        trickling?.cancel()
        context.fireChannelInactive()
    }

    private func answer(_ reply: LoopbackHTTPServer.Reply, context: ChannelHandlerContext) {
        switch reply {
        case .body(let bytes, let announced):
            sendHead(.ok, length: announced ? bytes.count : nil, context: context)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: bytes)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        case .redirect(let location):
            let headers = HTTPHeaders([("location", location), ("content-length", "0")])
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .found, headers: headers))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        case .status(let code):
            sendHead(HTTPResponseStatus(statusCode: code), length: 0, context: context)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        case .silence:
            break
        case .trickle(let length, let interval):
            sendHead(.ok, length: length, context: context)
            context.flush()
            trickle(every: interval, context: context)
        }
    }

    private func sendHead(_ status: HTTPResponseStatus, length: Int?, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        if let length { headers.add(name: "content-length", value: "\(length)") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
    }

    private func trickle(every interval: TimeAmount, context: ChannelHandlerContext) {
        trickling = context.eventLoop.assumeIsolated().scheduleTask(in: interval) {
            context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: [0x2E])))), promise: nil)
            self.trickle(every: interval, context: context)
        }
    }
}
