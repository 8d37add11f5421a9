/// Everything an identity takes to another host (`pilotctl identity export`), as bytes: what
/// `IdentityFile` seals and signs (docs/PROTOCOL.md §7.1). A value type with a total codec; the
/// seed is secret, and whoever holds a decoded parcel zeroes it when done (`Sodium.zero`).
///
/// Big-endian. `text8` is a u8 length and UTF-8, `text16` a u16 length and UTF-8, `bytes32` a
/// u32 length and bytes. Decoding is strict: every byte is read, a wrong length or an unknown
/// flag is an error.
public struct IdentityParcel: Hashable, Sendable {
    /// The version this code writes. It reads 1 too (no apps).
    public static let version: UInt8 = 2
    /// The most trust entries and messages a parcel carries; a decoder refuses more before it
    /// allocates anything for them.
    public static let maxEntries = 100_000

    /// The X25519 host key the parcel is for: the signature covers it, so a file opened by
    /// one host cannot be sealed again to another as if made for it.
    public var recipient: [UInt8]
    /// When it was exported: Unix microseconds.
    public var exportedAt: Int64
    /// The highest sequence and nonce its old host signed for it (`RegisterSequence`,
    /// `SignedChange`): the new host's start above it even if its clock is behind.
    public var lastSequence: Int64
    /// The 32-byte Ed25519 seed: the identity itself.
    public var seed: [UInt8]
    /// The seed's public key, as the registry holds it.
    public var publicKey: [UInt8]
    public var node: UInt32
    public var network: UInt16
    /// The name it had on its old host (the importer may give another).
    public var name: String
    public var hostname: String?
    public var tags: [String]
    public var isPublic: Bool
    public var autoApprove: Bool
    public var trust: [Trust]
    /// Its inbox, when the export asked for it (else empty).
    public var messages: [Message]
    /// The apps it installed and the grants approved for each (version 2; the bundles and the
    /// apps' state stay behind).
    public var apps: [App]

    /// One entry of its trust table, as `TrustRecord` holds it.
    public struct Trust: Hashable, Sendable {
        public var peer: UInt32
        /// The peer's Ed25519 key, when known.
        public var peerKey: [UInt8]?
        /// `TrustRecord.State`'s raw value (`trusted`, `pending-in`, ...).
        public var state: String
        public var reason: String
        /// Unix seconds.
        public var updatedAt: Int64
        public var mutual: Bool

        public init(peer: UInt32, peerKey: [UInt8]?, state: String, reason: String, updatedAt: Int64, mutual: Bool) {
            self.peer = peer
            self.peerKey = peerKey
            self.state = state
            self.reason = reason
            self.updatedAt = updatedAt
            self.mutual = mutual
        }
    }

    /// One message of its inbox, as `InboxMessage` holds it.
    public struct Message: Hashable, Sendable {
        public var sender: String
        public var type: String
        public var data: [UInt8]
        public var messageID: String?
        public var replyTo: String?
        /// Unix milliseconds.
        public var receivedAt: Int64

        public init(sender: String, type: String, data: [UInt8], messageID: String?, replyTo: String?, receivedAt: Int64) {
            self.sender = sender
            self.type = type
            self.data = data
            self.messageID = messageID
            self.replyTo = replyTo
            self.receivedAt = receivedAt
        }
    }

    /// One app it installed, as `AppInstallRecord` holds it, less what is the old host's own
    /// (the state directory).
    public struct App: Hashable, Sendable {
        public var appID: String
        public var version: String
        public var manifestVersion: Int
        /// Lower-case hex SHA-256 of the bundle: the new host installs that bundle or none.
        public var bundleSHA256: String
        public var publisher: String
        /// `catalogue` or `sideload`.
        public var source: String
        public var exposes: [String]
        /// Unix seconds.
        public var installedAt: Int64
        /// The uid that approved the grants, on the old host.
        public var approvedBy: UInt32
        /// Unix seconds.
        public var approvedAt: Int64
        public var grants: [Grant]

        /// One approved grant; `condition` is the grant's `if` as JSON text.
        public struct Grant: Hashable, Sendable {
            public var cap: String
            public var target: String
            public var condition: String?

            public init(cap: String, target: String, condition: String?) {
                self.cap = cap
                self.target = target
                self.condition = condition
            }
        }

        public init(
            appID: String, version: String, manifestVersion: Int, bundleSHA256: String, publisher: String, source: String, exposes: [String],
            installedAt: Int64, approvedBy: UInt32, approvedAt: Int64, grants: [Grant]
        ) {
            self.appID = appID
            self.version = version
            self.manifestVersion = manifestVersion
            self.bundleSHA256 = bundleSHA256
            self.publisher = publisher
            self.source = source
            self.exposes = exposes
            self.installedAt = installedAt
            self.approvedBy = approvedBy
            self.approvedAt = approvedAt
            self.grants = grants
        }
    }

    public init(
        recipient: [UInt8], exportedAt: Int64, lastSequence: Int64, seed: [UInt8], publicKey: [UInt8], node: UInt32, network: UInt16,
        name: String, hostname: String?, tags: [String], isPublic: Bool, autoApprove: Bool, trust: [Trust], messages: [Message],
        apps: [App] = []
    ) {
        self.recipient = recipient
        self.exportedAt = exportedAt
        self.lastSequence = lastSequence
        self.seed = seed
        self.publicKey = publicKey
        self.node = node
        self.network = network
        self.name = name
        self.hostname = hostname
        self.tags = tags
        self.isPublic = isPublic
        self.autoApprove = autoApprove
        self.trust = trust
        self.messages = messages
        self.apps = apps
    }
}

extension IdentityParcel {
    private enum Flag {
        static let isPublic: UInt8 = 1
        static let autoApprove: UInt8 = 2
        static let hostname: UInt8 = 4
        static let mutual: UInt8 = 1
        static let peerKey: UInt8 = 2
        static let messageID: UInt8 = 1
        static let replyTo: UInt8 = 2
        static let condition: UInt8 = 1
    }

    /// The parcel's bytes. Texts longer than their length field holds are cut (names, tags and
    /// hostnames are short by the registry's rules; a reason is at most 1024 bytes).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 256 + trust.count * 64 + messages.reduce(0) { $0 + $1.data.count + 64 })
        writer.writeUInt8(Self.version)
        writer.writeBytes(recipient)
        writer.writeUInt64(UInt64(bitPattern: exportedAt))
        writer.writeUInt64(UInt64(bitPattern: lastSequence))
        writer.writeBytes(seed)
        writer.writeBytes(publicKey)
        writer.writeUInt32(node)
        writer.writeUInt16(network)
        writer.writeText8(name)
        writer.writeUInt8((isPublic ? Flag.isPublic : 0) | (autoApprove ? Flag.autoApprove : 0) | (hostname == nil ? 0 : Flag.hostname))
        if let hostname { writer.writeText8(hostname) }
        writer.writeUInt8(UInt8(min(tags.count, 255)))
        for tag in tags.prefix(255) { writer.writeText8(tag) }
        writer.writeUInt32(UInt32(trust.count))
        for entry in trust {
            writer.writeUInt32(entry.peer)
            writer.writeText8(entry.state)
            writer.writeUInt8((entry.mutual ? Flag.mutual : 0) | (entry.peerKey == nil ? 0 : Flag.peerKey))
            if let key = entry.peerKey { writer.writeBytes(key) }
            writer.writeText16(entry.reason)
            writer.writeUInt64(UInt64(bitPattern: entry.updatedAt))
        }
        writer.writeUInt32(UInt32(messages.count))
        for message in messages {
            writer.writeText8(message.sender)
            writer.writeText8(message.type)
            writer.writeUInt8((message.messageID == nil ? 0 : Flag.messageID) | (message.replyTo == nil ? 0 : Flag.replyTo))
            if let id = message.messageID { writer.writeText8(id) }
            if let replyTo = message.replyTo { writer.writeText8(replyTo) }
            writer.writeUInt64(UInt64(bitPattern: message.receivedAt))
            writer.writeUInt32(UInt32(message.data.count))
            writer.writeBytes(message.data)
        }
        writer.writeUInt16(UInt16(min(apps.count, Int(UInt16.max))))
        for app in apps.prefix(Int(UInt16.max)) {
            writer.writeText8(app.appID)
            writer.writeText8(app.version)
            writer.writeUInt32(UInt32(clamping: app.manifestVersion))
            writer.writeText8(app.bundleSHA256)
            writer.writeText8(app.publisher)
            writer.writeText8(app.source)
            writer.writeUInt16(UInt16(min(app.exposes.count, Int(UInt16.max))))
            for method in app.exposes.prefix(Int(UInt16.max)) { writer.writeText8(method) }
            writer.writeUInt64(UInt64(bitPattern: app.installedAt))
            writer.writeUInt32(app.approvedBy)
            writer.writeUInt64(UInt64(bitPattern: app.approvedAt))
            writer.writeUInt16(UInt16(min(app.grants.count, Int(UInt16.max))))
            for grant in app.grants.prefix(Int(UInt16.max)) {
                writer.writeText8(grant.cap)
                writer.writeText16(grant.target)
                writer.writeUInt8(grant.condition == nil ? 0 : Flag.condition)
                if let condition = grant.condition { writer.writeText16(condition) }
            }
        }
        return writer.bytes
    }

    /// Decodes a parcel that fills `bytes` exactly; throws `unsupportedVersion` for a version
    /// other than 1 and 2, and a typed error naming the field for anything malformed.
    public init(decoding bytes: [UInt8]) throws(WireError) {
        var reader = ByteReader(bytes)
        let version = try reader.readUInt8("identity parcel version")
        guard version == 1 || version == Self.version else { throw .unsupportedVersion(version) }
        recipient = Array(try reader.readBytes(32, "identity parcel recipient"))
        exportedAt = Int64(bitPattern: try reader.readUInt64("identity parcel exported_at"))
        lastSequence = Int64(bitPattern: try reader.readUInt64("identity parcel last_sequence"))
        seed = Array(try reader.readBytes(32, "identity parcel seed"))
        publicKey = Array(try reader.readBytes(32, "identity parcel public key"))
        node = try reader.readUInt32("identity parcel node")
        network = try reader.readUInt16("identity parcel network")
        name = try reader.readText8("identity parcel name")
        let flags = try Self.flags(&reader, "identity parcel flags", allowed: Flag.isPublic | Flag.autoApprove | Flag.hostname)
        isPublic = flags & Flag.isPublic != 0
        autoApprove = flags & Flag.autoApprove != 0
        hostname = flags & Flag.hostname != 0 ? try reader.readText8("identity parcel hostname") : nil
        let tagCount = Int(try reader.readUInt8("identity parcel tag count"))
        tags = []
        for _ in 0..<tagCount { tags.append(try reader.readText8("identity parcel tag")) }
        let trustCount = try Self.count(&reader, "identity parcel trust count")
        trust = []
        for _ in 0..<trustCount {
            let peer = try reader.readUInt32("identity parcel trust peer")
            let state = try reader.readText8("identity parcel trust state")
            let entryFlags = try Self.flags(&reader, "identity parcel trust flags", allowed: Flag.mutual | Flag.peerKey)
            let key = entryFlags & Flag.peerKey != 0 ? Array(try reader.readBytes(32, "identity parcel trust key")) : nil
            let reason = try reader.readText16("identity parcel trust reason")
            let updatedAt = Int64(bitPattern: try reader.readUInt64("identity parcel trust updated_at"))
            trust.append(Trust(peer: peer, peerKey: key, state: state, reason: reason, updatedAt: updatedAt, mutual: entryFlags & Flag.mutual != 0))
        }
        let messageCount = try Self.count(&reader, "identity parcel message count")
        messages = []
        for _ in 0..<messageCount {
            let sender = try reader.readText8("identity parcel message sender")
            let type = try reader.readText8("identity parcel message type")
            let messageFlags = try Self.flags(&reader, "identity parcel message flags", allowed: Flag.messageID | Flag.replyTo)
            let id = messageFlags & Flag.messageID != 0 ? try reader.readText8("identity parcel message id") : nil
            let replyTo = messageFlags & Flag.replyTo != 0 ? try reader.readText8("identity parcel message reply_to") : nil
            let receivedAt = Int64(bitPattern: try reader.readUInt64("identity parcel message received_at"))
            let length = Int(try reader.readUInt32("identity parcel message length"))
            let data = Array(try reader.readBytes(length, "identity parcel message data"))
            messages.append(Message(sender: sender, type: type, data: data, messageID: id, replyTo: replyTo, receivedAt: receivedAt))
        }
        apps = []
        if version >= 2 {
            let appCount = Int(try reader.readUInt16("identity parcel app count"))
            for _ in 0..<appCount { apps.append(try Self.app(&reader)) }
        }
        try reader.expectEnd("identity parcel")
    }

    private static func app(_ reader: inout ByteReader) throws(WireError) -> App {
        let appID = try reader.readText8("identity parcel app id")
        let version = try reader.readText8("identity parcel app version")
        let manifestVersion = Int(try reader.readUInt32("identity parcel app manifest_version"))
        let bundle = try reader.readText8("identity parcel app bundle")
        let publisher = try reader.readText8("identity parcel app publisher")
        let source = try reader.readText8("identity parcel app source")
        var exposes: [String] = []
        for _ in 0..<Int(try reader.readUInt16("identity parcel app method count")) { exposes.append(try reader.readText8("identity parcel app method")) }
        let installedAt = Int64(bitPattern: try reader.readUInt64("identity parcel app installed_at"))
        let approvedBy = try reader.readUInt32("identity parcel app approved_by")
        let approvedAt = Int64(bitPattern: try reader.readUInt64("identity parcel app approved_at"))
        var grants: [App.Grant] = []
        for _ in 0..<Int(try reader.readUInt16("identity parcel grant count")) {
            let cap = try reader.readText8("identity parcel grant cap")
            let target = try reader.readText16("identity parcel grant target")
            let flags = try Self.flags(&reader, "identity parcel grant flags", allowed: Flag.condition)
            let condition = flags & Flag.condition != 0 ? try reader.readText16("identity parcel grant condition") : nil
            grants.append(App.Grant(cap: cap, target: target, condition: condition))
        }
        return App(
            appID: appID, version: version, manifestVersion: manifestVersion, bundleSHA256: bundle, publisher: publisher, source: source,
            exposes: exposes, installedAt: installedAt, approvedBy: approvedBy, approvedAt: approvedAt, grants: grants)
    }

    /// A flags byte; a flag outside `allowed` is refused (a later version's, which this one
    /// would misread).
    private static func flags(_ reader: inout ByteReader, _ field: String, allowed: UInt8) throws(WireError) -> UInt8 {
        let flags = try reader.readUInt8(field)
        guard flags & ~allowed == 0 else { throw .invalidValue(field: field, reason: "unknown flags \(flags)") }
        return flags
    }

    /// A u32 count, refused above `maxEntries` before anything is allocated for it.
    private static func count(_ reader: inout ByteReader, _ field: String) throws(WireError) -> Int {
        let count = Int(try reader.readUInt32(field))
        guard count <= maxEntries else { throw .oversized(field: field, limit: maxEntries, actual: count) }
        return count
    }
}

extension ByteWriter {
    /// A u8 length and at most 255 bytes of `text`'s UTF-8 (cut at a character boundary).
    mutating func writeText8(_ text: String) { writeLengthPrefixed(text, limit: Int(UInt8.max), width: 1) }

    /// A u16 length and at most 65535 bytes of `text`'s UTF-8 (cut at a character boundary).
    mutating func writeText16(_ text: String) { writeLengthPrefixed(text, limit: Int(UInt16.max), width: 2) }

    private mutating func writeLengthPrefixed(_ text: String, limit: Int, width: Int) {
        var cut = Substring(text)
        while cut.utf8.count > limit { cut = cut.dropLast() }
        if width == 1 { writeUInt8(UInt8(cut.utf8.count)) } else { writeUInt16(UInt16(cut.utf8.count)) }
        writeBytes(cut.utf8)
    }
}

extension ByteReader {
    /// A u8 length and that many bytes of UTF-8.
    mutating func readText8(_ field: String) throws(WireError) -> String {
        try utf8(readBytes(Int(try readUInt8(field)), field), field)
    }

    /// A u16 length and that many bytes of UTF-8.
    mutating func readText16(_ field: String) throws(WireError) -> String {
        try utf8(readBytes(Int(try readUInt16(field)), field), field)
    }

    private func utf8(_ bytes: ArraySlice<UInt8>, _ field: String) throws(WireError) -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .invalidValue(field: field, reason: "not UTF-8") }
        return text
    }
}
