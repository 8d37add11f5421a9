import Glibc
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PilotAppStore
import PilotWire

/// One running app's broker: a Unix socket, bound into its sandbox at
/// `/run/pilot/broker.sock` (`$PILOT_BROKER_SOCKET`), on which it calls another app of the same
/// identity. One envelope per connection, as on an app's own socket: `{"type":"req",
/// "app_id": TARGET, "method": M, "payload": ...}`. The supervisor answers it after checking
/// that TARGET is installed for the identity and exposes M, and that the caller holds an
/// `ipc.call` grant for `TARGET.M`; the target receives the request with `app_id` set to the
/// caller. At most `concurrency` calls at once per app.
final class AppBroker: Sendable {
    typealias Bridge = @Sendable (AppEnvelope) async -> AppEnvelope

    let path: String
    private let channel: any Channel
    static let concurrency = 8

    private init(path: String, channel: any Channel) {
        self.path = path
        self.channel = channel
    }

    /// Listens at `path` (made connectable by the apps' user) and answers with `bridge`.
    static func open(path: String, group: any EventLoopGroup, bridge: @escaping Bridge) async throws -> AppBroker {
        unlink(path)
        let open = NIOLockedValueBox(0)
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(BrokerConnection(bridge: bridge, open: open))
                }
            }
            .bind(unixDomainSocketPath: path).get()
        chmod(path, 0o666)  // the app runs as another user; the socket is only ever bound into its sandbox
        return AppBroker(path: path, channel: channel)
    }

    func close() {
        channel.close(promise: nil)
        unlink(path)
    }
}

/// One connection to a broker: one request frame, one reply frame.
private final class BrokerConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    // @unchecked: every member is touched on the connection's event loop only.
    private let bridge: AppBroker.Bridge
    private let open: NIOLockedValueBox<Int>
    private var decoder = LengthPrefixedFrames.Decoder(maxSize: AppEnvelope.maxFrameSize, field: "broker request")
    private var counted = false
    private var answered = false

    init(bridge: @escaping AppBroker.Bridge, open: NIOLockedValueBox<Int>) {
        self.bridge = bridge
        self.open = open
    }

    func channelActive(context: ChannelHandlerContext) {
        counted = open.withLockedValue { count in
            guard count < AppBroker.concurrency else { return false }
            count += 1
            return true
        }
        if !counted { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if counted { open.withLockedValue { $0 -= 1 } }
        counted = false
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        var buffer = unwrapInboundIn(data)
        decoder.append(buffer.readBytes(length: buffer.readableBytes) ?? [])
        let request: AppEnvelope
        do {
            guard let body = try decoder.next() else { return }
            request = try AppEnvelope(decoding: body)
        } catch {
            context.close(promise: nil)
            return
        }
        answered = true
        let bridge = bridge
        let loop = context.eventLoop
        let channel = context.channel
        Task {
            let reply = await bridge(request)
            let frame = (try? reply.frame()) ?? []
            loop.execute {
                var out = channel.allocator.buffer(capacity: frame.count)
                out.writeBytes(frame)
                channel.writeAndFlush(out).whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }
}
