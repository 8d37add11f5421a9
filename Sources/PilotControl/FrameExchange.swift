public import NIOCore
import NIOPosix
import PilotWire

/// One request frame sent on a new connection to a Unix stream socket, and the one reply frame
/// read back (`[u32 big-endian length][body]`): how pilot-host asks the app service, and how the
/// app service asks an app. The connection is closed after the reply, or at the deadline.
public enum FrameExchange {
    /// Why an exchange failed.
    public enum Failure: Error, Sendable, CustomStringConvertible {
        /// Nothing listens at the path (or it cannot be reached).
        case unreachable(path: String, reason: String)
        /// No reply before the deadline.
        case timedOut(path: String)
        /// The connection ended before a whole reply, or the reply broke the framing.
        case broken(path: String, reason: String)

        public var description: String {
            switch self {
            case let .unreachable(path, reason): "\(path): cannot connect: \(reason)"
            case let .timedOut(path): "\(path): no reply in time"
            case let .broken(path, reason): "\(path): \(reason)"
            }
        }
    }

    /// Sends `body` as one frame to `path` and returns the body of the reply frame, which may be
    /// at most `maxReply` bytes.
    public static func exchange(
        path: String, body: [UInt8], maxReply: Int, timeout: Duration, group: any EventLoopGroup
    ) async throws(Failure) -> [UInt8] {
        let frame: [UInt8]
        do { frame = try LengthPrefixedFrames.frame(body, maxSize: max(body.count, 1), field: "request") } catch {
            throw .broken(path: path, reason: "\(error)")
        }
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ReplyFrameHandler(path: path, maxReply: maxReply))
                    }
                }
                .connect(unixDomainSocketPath: path).get()
        } catch {
            throw .unreachable(path: path, reason: "\(error)")
        }
        defer { channel.close(promise: nil) }
        let promise = channel.eventLoop.makePromise(of: [UInt8].self)
        let deadline = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) { promise.fail(Failure.timedOut(path: path)) }
        defer { deadline.cancel() }
        do {
            try await channel.pipeline.handler(type: ReplyFrameHandler.self).map { $0.reply = promise }.get()
            var buffer = channel.allocator.buffer(capacity: frame.count)
            buffer.writeBytes(frame)
            try await channel.writeAndFlush(buffer).get()
            return try await promise.futureResult.get()
        } catch let failure as Failure {
            throw failure
        } catch {
            promise.fail(error)
            throw .broken(path: path, reason: "\(error)")
        }
    }
}

/// Reads one frame and fulfils `reply` with its body; a connection that ends first fails it.
private final class ReplyFrameHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    /// Set once, on the channel's event loop, before the request is written; every use below
    /// runs on that loop too.
    var reply: EventLoopPromise<[UInt8]>?
    private let path: String
    private var decoder: LengthPrefixedFrames.Decoder

    init(path: String, maxReply: Int) {
        self.path = path
        decoder = LengthPrefixedFrames.Decoder(maxSize: maxReply, field: "reply")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        decoder.append(buffer.readBytes(length: buffer.readableBytes) ?? [])
        do {
            guard let body = try decoder.next() else { return }
            reply?.succeed(body)
        } catch {
            reply?.fail(FrameExchange.Failure.broken(path: path, reason: "\(error)"))
        }
        reply = nil
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        reply?.fail(FrameExchange.Failure.broken(path: path, reason: "closed without a whole reply"))
        reply = nil
    }
}
