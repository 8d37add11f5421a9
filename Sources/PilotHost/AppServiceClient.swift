import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PilotWire

/// The host's side of the app service's socket: one connection per request (control frames,
/// one request and one reply), at most `concurrency` at once in all. A service that is not
/// there is an `unavailable` failure that says how to start it.
final class AppServiceClient: Sendable {
    let path: String
    private let group: any EventLoopGroup
    private let concurrency: Int
    private let inFlight = NIOLockedValueBox(0)

    init(path: String, group: any EventLoopGroup, concurrency: Int = 256) {
        self.path = path
        self.group = group
        self.concurrency = concurrency
    }

    /// `command`'s reply, or its failure; the wait ends after `timeout`.
    func send<Command: ControlCommand>(_ command: Command, timeout: Duration) async throws(ControlFailure) -> Command.Reply {
        let admitted = inFlight.withLockedValue { count -> Bool in
            guard count < concurrency else { return false }
            count += 1
            return true
        }
        guard admitted else { throw ControlFailure(.unavailable, "the app service has \(concurrency) requests in flight: try again") }
        defer { inFlight.withLockedValue { $0 -= 1 } }
        let reply = try await exchange(command.request, timeout: timeout)
        return try Command.data(of: reply)
    }

    private func exchange(_ request: ControlRequest, timeout: Duration) async throws(ControlFailure) -> ControlReply {
        let frame: [UInt8]
        do { frame = try request.encoded() } catch { throw ControlFailure(.invalidArgument, "\(error)") }
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(AppServiceReplyHandler()) }
                }
                .connect(unixDomainSocketPath: path).get()
        } catch {
            throw ControlFailure(
                .unavailable, "the app service is not running (\(path): \(error)); start it: systemctl start pilot-host-apps.socket")
        }
        defer { channel.close(promise: nil) }
        let promise = channel.eventLoop.makePromise(of: ControlReply.self)
        let deadline = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            promise.fail(ControlFailure(.timeout, "the app service did not answer \(request.command) within \(timeout)"))
        }
        defer { deadline.cancel() }
        do {
            try await channel.pipeline.handler(type: AppServiceReplyHandler.self).map { $0.reply = promise }.get()
            var buffer = channel.allocator.buffer(capacity: frame.count)
            buffer.writeBytes(frame)
            try await channel.writeAndFlush(buffer).get()
            return try await promise.futureResult.get()
        } catch let failure as ControlFailure {
            throw failure
        } catch {
            promise.fail(error)
            throw ControlFailure(.unavailable, "the app service's connection failed during \(request.command): \(error)")
        }
    }
}

/// Reads one reply frame and fulfils `reply` with it; a connection that ends first fails it.
private final class AppServiceReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    /// Set once, on the channel's event loop, before the request is written; every use below
    /// runs on that loop too.
    var reply: EventLoopPromise<ControlReply>?
    private var decoder = LengthPrefixedFrames.Decoder(maxSize: ControlFrame.maxSize, field: "app service reply")

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        decoder.append(buffer.readBytes(length: buffer.readableBytes) ?? [])
        do {
            guard let body = try decoder.next() else { return }
            reply?.succeed(try ControlReply(decoding: body))
        } catch {
            reply?.fail(ControlFailure(.internalError, "the app service sent a bad reply: \(error)"))
        }
        reply = nil
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        reply?.fail(ControlFailure(.unavailable, "the app service closed the connection without a reply"))
        reply = nil
    }
}
