public import Logging
import Synchronization

/// One log level for every logger of a process, changeable while it runs (a reload).
public final class SharedLogLevel: Sendable {
    private let level: Mutex<Logger.Level>

    public init(_ level: Logger.Level) { self.level = Mutex(level) }

    public var value: Logger.Level {
        get { level.withLock { $0 } }
        set { level.withLock { $0 = newValue } }
    }

    /// The handler the process should log through: the journal when standard error is
    /// connected to it (started by systemd), else plain lines on standard error.
    public func handler(label: String) -> any LogHandler {
        if Systemd.stderrIsJournal {
            return LevelGatedHandler(base: JournalLogHandler(label: label), level: self)
        }
        return LevelGatedHandler(base: StreamLogHandler.standardError(label: label), level: self)
    }
}

/// A handler whose level is the shared one.
struct LevelGatedHandler<Base: LogHandler>: LogHandler {
    var base: Base
    let level: SharedLogLevel

    var logLevel: Logger.Level {
        get { level.value }
        set { level.value = newValue }
    }

    var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    /// Logger has already compared the event's level with `logLevel`.
    func log(event: LogEvent) { base.log(event: event) }
}
