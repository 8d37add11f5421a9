import Logging
import NIOCore
import NIOPosix

/// An app's stdout or stderr, line by line into the log (the journal under systemd, with the
/// app's `PILOT_IDENTITY` and `PILOT_APP`). Lines are cut at 4 KiB, and an app that writes more
/// than 200 lines in 10 s has the rest counted, not logged, until the window turns.
final class AppOutput: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    // @unchecked: every member is touched only on the pipe channel's event loop.
    private let logger: Logger
    private let stream: String
    private var line: [UInt8] = []
    private var windowStart = NIODeadline.now()
    private var lines = 0
    private var dropped = 0
    static let longestLine = 4096
    static let linesPerWindow = 200
    static let window = TimeAmount.seconds(10)

    private init(logger: Logger, stream: String) {
        self.logger = logger
        self.stream = stream
    }

    /// Reads `descriptor` (taken over: closed at its end) into `logger`.
    static func attach(descriptor: Int32, stream: String, logger: Logger, group: any EventLoopGroup) {
        _ = NIOPipeBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AppOutput(logger: logger, stream: stream))
                }
            }
            .takingOwnershipOfDescriptor(input: descriptor)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        for byte in buffer.readableBytesView {
            if byte == UInt8(ascii: "\n") {
                emit()
            } else if line.count < Self.longestLine {
                line.append(byte)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !line.isEmpty { emit() }
        if dropped > 0 { logger.warning("app output dropped", metadata: ["stream": "\(stream)", "lines": "\(dropped)"]) }
    }

    private func emit() {
        defer { line.removeAll(keepingCapacity: true) }
        let now = NIODeadline.now()
        if now - windowStart > Self.window {
            if dropped > 0 { logger.warning("app output dropped", metadata: ["stream": "\(stream)", "lines": "\(dropped)"]) }
            windowStart = now
            lines = 0
            dropped = 0
        }
        guard lines < Self.linesPerWindow else {
            dropped += 1
            return
        }
        lines += 1
        logger.info("\(String(decoding: line, as: UTF8.self))", metadata: ["stream": "\(stream)"])
    }
}
