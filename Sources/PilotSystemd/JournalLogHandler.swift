import CSystemd
import Glibc
public import Logging

/// A swift-log handler that writes structured entries to journald (`sd_journal_sendv`).
///
/// `MESSAGE` is the message followed by its metadata as `key=value` (what `journalctl` shows);
/// every metadata key is also a field of its own, upper-cased and prefixed `PILOT_`
/// (`identity` → `PILOT_IDENTITY`, `peer` → `PILOT_PEER`), so that
/// `journalctl -u pilot-host PILOT_IDENTITY=alice` finds one identity's lines. `PRIORITY` follows
/// the level; `SYSLOG_IDENTIFIER` is the label.
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let entry = Self.fields(
            level: event.level, message: event.message, metadata: metadata.merging(event.metadata ?? [:]) { $1 },
            label: label, file: event.file, function: event.function, line: event.line)
        Self.send(entry)
    }

    /// The journal fields of one entry, each `NAME=value`.
    public static func fields(
        level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata, label: String,
        file: String = #fileID, function: String = #function, line: UInt = #line
    ) -> [String] {
        let sorted = metadata.sorted { $0.key < $1.key }
        var text = message.description
        for (key, value) in sorted { text += " \(key)=\(value)" }
        var fields = [
            "MESSAGE=\(text)", "PRIORITY=\(priority(level))", "SYSLOG_IDENTIFIER=\(label)",
            "CODE_FILE=\(file)", "CODE_LINE=\(line)", "CODE_FUNC=\(function)",
        ]
        for (key, value) in sorted { fields.append("\(fieldName(key))=\(value)") }
        return fields
    }

    /// `identity` → `PILOT_IDENTITY`; characters journald does not allow in names become `_`.
    public static func fieldName(_ key: String) -> String {
        let upper = String(key.uppercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
        let name = upper.hasPrefix("PILOT_") ? upper : "PILOT_" + upper
        return String(name.prefix(64))
    }

    /// syslog priorities: debug 7 ... critical 2.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Hands `fields` to journald in one `sd_journal_sendv` call; on failure the line goes to
    /// standard error so that it is not lost.
    static func send(_ fields: [String]) {
        var buffers = fields.map { Array($0.utf8) }
        let sent: Int32 = buffers.withUnsafeMutableBufferPointer { all in
            var vectors = all.indices.map { index in
                all[index].withUnsafeMutableBytes { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
            }
            // The pointers stay valid: `all` is neither resized nor moved while they are used.
            return vectors.withUnsafeMutableBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) }
        }
        if sent < 0, let message = fields.first {
            let line = Array("\(message.dropFirst("MESSAGE=".count))\n".utf8)
            _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        }
    }
}
