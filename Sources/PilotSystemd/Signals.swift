import Dispatch
import Glibc

/// The signals in `signos`, as they arrive (their default actions are turned off).
public func signals(_ signos: [Int32]) -> AsyncStream<Int32> {
    let sources = SignalSources()
    return AsyncStream<Int32> { continuation in
        for signo in signos {
            sources.watch(signo) { continuation.yield(signo) }
        }
        continuation.onTermination = { _ in sources.cancel() }
    }
}

/// Keeps the dispatch signal sources alive while they are watched.
private final class SignalSources: @unchecked Sendable {
    // @unchecked: `sources` is only touched on the "signals" queue's setup path and in cancel,
    // which runs after the stream has ended.
    private let queue = DispatchQueue(label: "signals")
    private var sources: [any DispatchSourceSignal] = []

    func watch(_ signo: Int32, _ handler: @escaping @Sendable () -> Void) {
        signal(signo, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signo, queue: queue)
        source.setEventHandler(handler: handler)
        source.resume()
        sources.append(source)
    }

    func cancel() { sources.forEach { $0.cancel() } }
}
