public import PilotWire

/// One identity as `host.db` keeps it. The Ed25519 key is stored sealed (the caller seals it
/// under the host master key; this module never sees it in clear).
public struct IdentityRecord: Hashable, Sendable {
    public var name: String
    /// Node id from the registry; 0 until the first registration succeeds.
    public var nodeID: UInt32
    public var network: UInt16
    public var sealedKey: [UInt8]
    public var hostname: String?
    public var tags: [String]
    public var isPublic: Bool
    public var ownerUID: UInt32
    public var allowedGIDs: [UInt32]
    /// Unix seconds.
    public var createdAt: Int64
    /// Deregistered and deleted at clean shutdown.
    public var isEphemeral: Bool
    /// Trusts every node that asks (a service identity).
    public var autoApprove: Bool
    /// The UDP port of a public identity's own socket, bound again after a restart so that
    /// peers' tunnels keep working (0: none yet).
    public var ownPort: UInt16
    /// A new key being rotated in, sealed as `sealedKey` is: stored before the registry is
    /// asked, so that whichever key the registry ends up holding is on disk. Nil when no
    /// rotation is unsettled.
    public var pendingSealedKey: [UInt8]?
    /// The process whose life this identity's lasts (`identity create --lease`): when it ends,
    /// the identity is deregistered and deleted, host running or not (checked again at start).
    public var lease: ProcessStamp?

    public init(
        name: String, nodeID: UInt32 = 0, network: UInt16 = 0, sealedKey: [UInt8], hostname: String? = nil,
        tags: [String] = [], isPublic: Bool = false, ownerUID: UInt32, allowedGIDs: [UInt32] = [],
        createdAt: Int64, isEphemeral: Bool = false, autoApprove: Bool = false, ownPort: UInt16 = 0, pendingSealedKey: [UInt8]? = nil,
        lease: ProcessStamp? = nil
    ) {
        self.lease = lease
        self.pendingSealedKey = pendingSealedKey
        self.autoApprove = autoApprove
        self.ownPort = ownPort
        self.name = name
        self.nodeID = nodeID
        self.network = network
        self.sealedKey = sealedKey
        self.hostname = hostname
        self.tags = tags
        self.isPublic = isPublic
        self.ownerUID = ownerUID
        self.allowedGIDs = allowedGIDs
        self.createdAt = createdAt
        self.isEphemeral = isEphemeral
    }
}

/// `host.db`: the identities of a pilot-host and everything they own. Every tenant-owned table
/// references `identity(id)` with `ON DELETE CASCADE`, so deleting an identity leaves nothing.
/// One identity's standing with one peer node.
public struct TrustRecord: Hashable, Sendable {
    public enum State: String, Sendable {
        /// The peer asked; waiting for this identity's owner to approve or reject.
        case pendingIn = "pending-in"
        /// This identity asked; waiting for the peer.
        case pendingOut = "pending-out"
        case trusted
        case rejected
        case revoked
    }

    public var peerNode: UInt32
    /// The peer's Ed25519 key, when known.
    public var peerKey: [UInt8]?
    public var state: State
    /// The justification the peer gave, or the reason of a rejection.
    public var reason: String
    public var updatedAt: Int64
    /// Both sides asked (1.18's "mutual").
    public var mutual: Bool

    public init(peerNode: UInt32, peerKey: [UInt8]? = nil, state: State, reason: String = "", updatedAt: Int64, mutual: Bool = false) {
        self.peerNode = peerNode
        self.peerKey = peerKey
        self.state = state
        self.reason = reason
        self.updatedAt = updatedAt
        self.mutual = mutual
    }
}

/// A message that arrived on an identity's data-exchange port (1001).
/// A file that arrived for an identity (its contents stay in the store).
public struct ReceivedFile: Hashable, Sendable {
    public var id: Int64
    public var sender: String
    /// A base name, made safe on arrival.
    public var name: String
    public var size: Int
    /// Unix milliseconds.
    public var receivedAt: Int64

    public init(id: Int64 = 0, sender: String, name: String, size: Int, receivedAt: Int64) {
        self.id = id
        self.sender = sender
        self.name = name
        self.size = size
        self.receivedAt = receivedAt
    }
}

/// What one identity's inbox may hold: a message beyond either bound is refused (its sender
/// gets an ERR) and nothing held is lost.
public struct InboxQuota: Sendable {
    public var messages: Int
    public var bytes: Int

    public init(messages: Int, bytes: Int) {
        self.messages = messages
        self.bytes = bytes
    }

    public static let unlimited = InboxQuota(messages: .max, bytes: .max)
}

public struct InboxMessage: Hashable, Sendable {
    public var id: Int64
    /// The sender's address.
    public var sender: String
    /// TEXT, JSON, BINARY, FILE, ...
    public var type: String
    public var data: [UInt8]
    public var messageID: String?
    public var replyTo: String?
    /// Unix milliseconds.
    public var receivedAt: Int64
    /// The message's whole size: more than `data` holds when `data` is only its start (a page
    /// of the inbox, `messagePage`).
    public var size: Int

    public init(
        id: Int64 = 0, sender: String, type: String, data: [UInt8], messageID: String? = nil, replyTo: String? = nil, receivedAt: Int64,
        size: Int? = nil
    ) {
        self.id = id
        self.sender = sender
        self.type = type
        self.data = data
        self.size = size ?? data.count
        self.messageID = messageID
        self.replyTo = replyTo
        self.receivedAt = receivedAt
    }
}

/// Each change is one transaction with `synchronous=FULL`: durable when the call returns, never
/// half-made after a crash.
///
/// Not thread-safe: one owner (the host's store actor).
public final class HostStore {
    let db: Database

    static let migrations = [
        """
        CREATE TABLE identity (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 63),
            node_id INTEGER NOT NULL DEFAULT 0,
            network INTEGER NOT NULL DEFAULT 0,
            sealed_key BLOB NOT NULL,
            hostname TEXT,
            tags TEXT NOT NULL DEFAULT '',
            public INTEGER NOT NULL DEFAULT 0,
            owner_uid INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            ephemeral INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE identity_group (
            identity_id INTEGER NOT NULL REFERENCES identity(id) ON DELETE CASCADE,
            gid INTEGER NOT NULL,
            PRIMARY KEY (identity_id, gid)
        );
        CREATE TABLE trust (
            identity_id INTEGER NOT NULL REFERENCES identity(id) ON DELETE CASCADE,
            peer_node INTEGER NOT NULL,
            peer_key BLOB,
            state TEXT NOT NULL CHECK (state IN ('pending-in', 'pending-out', 'trusted', 'rejected', 'revoked')),
            reason TEXT NOT NULL DEFAULT '',
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (identity_id, peer_node)
        );
        """,
        // 2: whether a trust is mutual (both asked), as 1.18 records it.
        """
        ALTER TABLE trust ADD COLUMN mutual INTEGER NOT NULL DEFAULT 0;
        """,
        // 3: identities that trust whoever asks.
        """
        ALTER TABLE identity ADD COLUMN auto_approve INTEGER NOT NULL DEFAULT 0;
        """,
        // 4: messages that arrived on an identity's data-exchange port.
        """
        CREATE TABLE inbox (
            id INTEGER PRIMARY KEY,
            identity_id INTEGER NOT NULL REFERENCES identity(id) ON DELETE CASCADE,
            sender TEXT NOT NULL,
            type TEXT NOT NULL,
            data BLOB NOT NULL,
            message_id TEXT,
            reply_to TEXT,
            received_at INTEGER NOT NULL
        );
        CREATE INDEX inbox_by_identity ON inbox (identity_id, id);
        """,
        // 5: files that arrived on an identity's data-exchange port (FILE frames).
        """
        CREATE TABLE received_file (
            id INTEGER PRIMARY KEY,
            identity_id INTEGER NOT NULL REFERENCES identity(id) ON DELETE CASCADE,
            sender TEXT NOT NULL,
            name TEXT NOT NULL,
            data BLOB NOT NULL,
            received_at INTEGER NOT NULL
        );
        CREATE INDEX received_file_by_identity ON received_file (identity_id, id);
        """,
        // 6: the port of a public identity's own UDP socket, kept across restarts.
        """
        ALTER TABLE identity ADD COLUMN own_port INTEGER NOT NULL DEFAULT 0;
        """,
        // 7: a message sent again with the same id (a sender re-sending after a lost ACK) is
        // found without a scan.
        """
        CREATE INDEX inbox_by_message_id ON inbox (identity_id, sender, message_id) WHERE message_id IS NOT NULL;
        """,
        // 8: a key being rotated in, until the registry's answer settles it.
        """
        ALTER TABLE identity ADD COLUMN pending_key BLOB;
        """,
        // 9: the apps each identity installed, and the grants its owner approved for each.
        """
        CREATE TABLE app_install (
            identity_id INTEGER NOT NULL REFERENCES identity(id) ON DELETE CASCADE,
            app_id TEXT NOT NULL,
            version TEXT NOT NULL,
            manifest_version INTEGER NOT NULL,
            bundle_sha256 TEXT NOT NULL CHECK (length(bundle_sha256) = 64),
            publisher TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('catalogue', 'sideload')),
            exposes TEXT NOT NULL,
            state_dir TEXT NOT NULL,
            installed_at INTEGER NOT NULL,
            approved_by INTEGER NOT NULL,
            approved_at INTEGER NOT NULL,
            PRIMARY KEY (identity_id, app_id)
        );
        CREATE TABLE app_grant (
            identity_id INTEGER NOT NULL,
            app_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            cap TEXT NOT NULL,
            target TEXT NOT NULL,
            condition TEXT,
            PRIMARY KEY (identity_id, app_id, position),
            FOREIGN KEY (identity_id, app_id) REFERENCES app_install (identity_id, app_id) ON DELETE CASCADE
        );
        CREATE INDEX app_install_by_bundle ON app_install (bundle_sha256);
        """,
        // 10: the process an identity's life is leased to (all three null: no lease).
        """
        ALTER TABLE identity ADD COLUMN lease_pid INTEGER;
        ALTER TABLE identity ADD COLUMN lease_start INTEGER;
        ALTER TABLE identity ADD COLUMN lease_boot TEXT;
        """,
    ]

    /// Opens (creating and migrating) `host.db` at `path`.
    public init(path: String) throws {
        db = try Database(path: path)
        try db.migrate(Self.migrations)
    }

    /// Adds an identity; throws a constraint error if the name is taken. A leased identity's row
    /// is committed without waiting for the disk (`Database.setDurable`): its holder does not
    /// outlive a reboot, and a row a power loss took back names a key nobody holds, which the
    /// registry reaps.
    public func create(_ identity: IdentityRecord) throws {
        try committed(durably: identity.lease == nil) { try insert(identity) }
    }

    private func insert(_ identity: IdentityRecord) throws {
        try db.transaction {
            try db.run(
                """
                INSERT INTO identity (name, node_id, network, sealed_key, hostname, tags, public, owner_uid, created_at, ephemeral, auto_approve, own_port, pending_key,
                    lease_pid, lease_start, lease_boot)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(identity.name), .integer(Int64(identity.nodeID)), .integer(Int64(identity.network)),
                    .blob(identity.sealedKey), identity.hostname.map(SQLValue.text) ?? .null,
                    .text(identity.tags.joined(separator: ",")), .integer(identity.isPublic ? 1 : 0),
                    .integer(Int64(identity.ownerUID)), .integer(identity.createdAt), .integer(identity.isEphemeral ? 1 : 0),
                    .integer(identity.autoApprove ? 1 : 0), .integer(Int64(identity.ownPort)), identity.pendingSealedKey.map(SQLValue.blob) ?? .null,
                ] + Self.leaseValues(identity.lease))
            let rowID = db.lastInsertRowID
            for gid in Set(identity.allowedGIDs) {
                try db.run("INSERT INTO identity_group (identity_id, gid) VALUES (?, ?)", [.integer(rowID), .integer(Int64(gid))])
            }
        }
    }

    /// Replaces the stored fields of the identity named `identity.name`; throws if there is none.
    public func update(_ identity: IdentityRecord) throws {
        try db.transaction {
            try db.run(
                """
                UPDATE identity SET node_id = ?, network = ?, sealed_key = ?, hostname = ?, tags = ?, public = ?,
                    owner_uid = ?, ephemeral = ?, auto_approve = ?, own_port = ?, pending_key = ?, lease_pid = ?, lease_start = ?, lease_boot = ? WHERE name = ?
                """,
                [
                    .integer(Int64(identity.nodeID)), .integer(Int64(identity.network)), .blob(identity.sealedKey),
                    identity.hostname.map(SQLValue.text) ?? .null, .text(identity.tags.joined(separator: ",")),
                    .integer(identity.isPublic ? 1 : 0), .integer(Int64(identity.ownerUID)),
                    .integer(identity.isEphemeral ? 1 : 0), .integer(identity.autoApprove ? 1 : 0), .integer(Int64(identity.ownPort)),
                    identity.pendingSealedKey.map(SQLValue.blob) ?? .null,
                ] + Self.leaseValues(identity.lease) + [.text(identity.name)])
            guard db.changes == 1 else { throw StoreError(code: 12, message: "no identity named \(identity.name)") }
            try db.run(
                "DELETE FROM identity_group WHERE identity_id = (SELECT id FROM identity WHERE name = ?)", [.text(identity.name)])
            for gid in Set(identity.allowedGIDs) {
                try db.run(
                    "INSERT INTO identity_group (identity_id, gid) SELECT id, ? FROM identity WHERE name = ?",
                    [.integer(Int64(gid)), .text(identity.name)])
            }
        }
    }

    /// Removes an identity and everything it owns; returns whether it existed. With `durably`
    /// false (a leased identity: see `create`), the commit does not wait for the disk; a delete
    /// a power loss took back leaves a lease whose holder is gone, ended at the next start.
    @discardableResult
    public func delete(name: String, durably: Bool = true) throws -> Bool {
        try committed(durably: durably) {
            try db.transaction {
                try db.run("DELETE FROM identity WHERE name = ?", [.text(name)])
                return db.changes == 1
            }
        }
    }

    /// `body`'s commits, waiting for the disk or not.
    private func committed<R>(durably: Bool, _ body: () throws -> R) throws -> R {
        if durably { return try body() }
        try db.setDurable(false)
        defer { try? db.setDurable(true) }
        return try body()
    }

    /// Gives back SQLite's cache of the pages read so far (see `Database.releaseMemory`).
    public func releaseMemory() { db.releaseMemory() }

    /// Every identity, by name.
    public func all() throws -> [IdentityRecord] {
        try records(where: "1", [])
    }

    /// The identity named `name`, if any.
    public func identity(named name: String) throws -> IdentityRecord? {
        try records(where: "name = ?", [.text(name)]).first
    }

    private func records(where condition: String, _ bindings: [SQLValue]) throws -> [IdentityRecord] {
        var groups: [Int64: [UInt32]] = [:]
        let groupRows = try db.rows(
            "SELECT identity_id, gid FROM identity_group WHERE identity_id IN (SELECT id FROM identity WHERE \(condition)) ORDER BY gid",
            bindings)
        for row in groupRows {
            groups[row[0].integer ?? 0, default: []].append(UInt32(truncatingIfNeeded: row[1].integer ?? 0))
        }
        return try db.rows(
            """
            SELECT id, name, node_id, network, sealed_key, hostname, tags, public, owner_uid, created_at, ephemeral, auto_approve, own_port,
                pending_key, lease_pid, lease_start, lease_boot
            FROM identity WHERE \(condition) ORDER BY name
            """, bindings
        ) { row in
            IdentityRecord(
                name: row[1].text ?? "", nodeID: UInt32(truncatingIfNeeded: row[2].integer ?? 0),
                network: UInt16(truncatingIfNeeded: row[3].integer ?? 0), sealedKey: row[4].blob ?? [],
                hostname: row[5].text, tags: (row[6].text ?? "").split(separator: ",").map(String.init),
                isPublic: row[7].integer == 1, ownerUID: UInt32(truncatingIfNeeded: row[8].integer ?? 0),
                allowedGIDs: groups[row[0].integer ?? 0] ?? [], createdAt: row[9].integer ?? 0, isEphemeral: row[10].integer == 1,
                autoApprove: row[11].integer == 1, ownPort: UInt16(truncatingIfNeeded: row[12].integer ?? 0), pendingSealedKey: row[13].blob,
                lease: Self.lease(pid: row[14], start: row[15], boot: row[16]))
        }
    }

    private static func leaseValues(_ lease: ProcessStamp?) -> [SQLValue] {
        guard let lease else { return [.null, .null, .null] }
        return [.integer(Int64(lease.pid)), .integer(Int64(truncatingIfNeeded: lease.startTime)), .text(lease.boot)]
    }

    private static func lease(pid: SQLValue, start: SQLValue, boot: SQLValue) -> ProcessStamp? {
        guard let pid = pid.integer, let start = start.integer, let boot = boot.text else { return nil }
        return ProcessStamp(pid: Int32(truncatingIfNeeded: pid), startTime: UInt64(truncatingIfNeeded: start), boot: boot)
    }

    // MARK: Trust

    /// `identity`'s trust entry for `record.peerNode`, replacing what was there.
    public func setTrust(_ record: TrustRecord, identity: String) throws {
        try db.transaction {
            try db.run(
                """
                INSERT INTO trust (identity_id, peer_node, peer_key, state, reason, updated_at, mutual)
                SELECT id, ?, ?, ?, ?, ?, ? FROM identity WHERE name = ?
                ON CONFLICT (identity_id, peer_node) DO UPDATE SET
                    peer_key = excluded.peer_key, state = excluded.state, reason = excluded.reason,
                    updated_at = excluded.updated_at, mutual = excluded.mutual
                """,
                [
                    .integer(Int64(record.peerNode)), record.peerKey.map(SQLValue.blob) ?? .null, .text(record.state.rawValue),
                    .text(record.reason), .integer(record.updatedAt), .integer(record.mutual ? 1 : 0), .text(identity),
                ])
            guard db.changes == 1 else { throw StoreError(code: 12, message: "no identity named \(identity)") }
        }
    }

    /// Forgets `identity`'s entry for `peer`; returns whether there was one.
    @discardableResult
    public func removeTrust(peer: UInt32, identity: String) throws -> Bool {
        try db.transaction {
            try db.run(
                "DELETE FROM trust WHERE peer_node = ? AND identity_id = (SELECT id FROM identity WHERE name = ?)",
                [.integer(Int64(peer)), .text(identity)])
            return db.changes == 1
        }
    }

    /// Every trust entry, by identity name.
    public func allTrust() throws -> [String: [TrustRecord]] {
        var entries: [String: [TrustRecord]] = [:]
        try db.forEachRow(
            """
            SELECT identity.name, peer_node, peer_key, state, reason, updated_at, mutual
            FROM trust JOIN identity ON identity.id = trust.identity_id ORDER BY identity.name, peer_node
            """
        ) { row in
            guard let name = row[0].text, let state = row[3].text.flatMap(TrustRecord.State.init(rawValue:)) else { return }
            entries[name, default: []].append(TrustRecord(
                peerNode: UInt32(truncatingIfNeeded: row[1].integer ?? 0), peerKey: row[2].blob, state: state,
                reason: row[4].text ?? "", updatedAt: row[5].integer ?? 0, mutual: row[6].integer == 1))
        }
        return entries
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    public func integrityCheck() throws -> String {
        try db.rows("PRAGMA integrity_check").first?.first?.text ?? "no answer"
    }
}
