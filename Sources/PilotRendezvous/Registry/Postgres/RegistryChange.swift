/// What one transaction changed, as instances sharing a database tell each other: the rows
/// to read again. A notification on `channel` is `<instance> <change> <change>...`, changes as
/// `node:<id>`, `retired:<id>`, `trust:<a>:<b>`, `inbox:<id>` or `network:<id>`; PostgreSQL
/// delivers it only when the transaction commits.
enum RegistryChange: Hashable, Sendable {
    /// The node's row was written.
    case node(UInt32)
    /// The node was retired: its row is gone, with what hung on it.
    case retired(UInt32)
    /// The trust pair (lower id first) was added or removed.
    case trust(UInt32, UInt32)
    /// Relayed handshakes waiting for the node were added or taken.
    case inbox(UInt32)
    /// The network or its members changed.
    case network(UInt16)

    /// The channel every instance notifies and listens on.
    static let channel = "pilot_registry"

    /// PostgreSQL refuses payloads of 8000 bytes or more: a transaction that changed more
    /// sends several notifications.
    static let maxPayload = 7900

    var text: String {
        switch self {
        case .node(let id): "node:\(id)"
        case .retired(let id): "retired:\(id)"
        case .trust(let a, let b): "trust:\(a):\(b)"
        case .inbox(let id): "inbox:\(id)"
        case .network(let id): "network:\(id)"
        }
    }

    /// One change as `text` writes it; nil for anything else (from a newer version: ignored).
    init?(parsing text: Substring) {
        let parts = text.split(separator: ":")
        guard parts.count >= 2, let first = UInt32(parts[1]) else { return nil }
        switch (parts[0], parts.count) {
        case ("node", 2): self = .node(first)
        case ("retired", 2): self = .retired(first)
        case ("inbox", 2): self = .inbox(first)
        case ("network", 2):
            guard let id = UInt16(exactly: first) else { return nil }
            self = .network(id)
        case ("trust", 3):
            guard let second = UInt32(parts[2]) else { return nil }
            self = .trust(first, second)
        default: return nil
        }
    }

    /// The `NOTIFY` statements that tell `changes`, made by `instance`: none for none. Every
    /// part of them is ours (digits, letters, colons), so nothing needs quoting.
    static func notifications(of changes: [RegistryChange], from instance: String) -> [String] {
        var statements: [String] = []
        var payload = instance
        for change in changes {
            let text = change.text
            if payload.utf8.count + 1 + text.utf8.count > maxPayload {
                statements.append("NOTIFY \(channel), '\(payload)'")
                payload = instance
            }
            payload += " " + text
        }
        if payload != instance { statements.append("NOTIFY \(channel), '\(payload)'") }
        return statements
    }

    /// A notification's sender and its changes; nil when it is not one of ours.
    static func parse(_ payload: String) -> (instance: Substring, changes: [RegistryChange])? {
        let words = payload.split(separator: " ")
        guard let instance = words.first else { return nil }
        return (instance, words.dropFirst().compactMap(RegistryChange.init(parsing:)))
    }
}
