import NIOCore

/// Writing to a control connection, and ending one, the same way for both protocols.
enum ConnectionEnd {
    /// Writes `bytes` to the connection of `context`.
    static func write(_ bytes: [UInt8], on context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        context.writeAndFlush(NIOAny(buffer), promise: nil)
    }

    /// Writes `bytes` as the last thing the connection sends, then closes it. The write side is
    /// shut first and whatever the client still sends is read and dropped for 2 s: closing with
    /// unread input would make the kernel answer with a reset, and the client could lose the
    /// frame.
    static func sendLast(_ bytes: [UInt8], on context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(NIOAny(buffer)).whenComplete { _ in
            let context = bound.value
            context.close(mode: .output, promise: nil)
            context.read()
            context.eventLoop.scheduleTask(in: .seconds(2)) { bound.value.close(promise: nil) }
        }
    }
}
