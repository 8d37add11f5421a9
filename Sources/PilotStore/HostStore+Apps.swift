extension HostStore {
    /// Records `app` as installed by `identity`, replacing an earlier install of the same app
    /// and its grants, in one transaction. Throws if there is no such identity.
    public func installApp(_ app: AppInstallRecord, identity: String) throws {
        try db.transaction {
            guard let identityID = try db.rows("SELECT id FROM identity WHERE name = ?", [.text(identity)]).first?[0].integer else {
                throw StoreError(code: 12, message: "no identity named \(identity)")
            }
            try db.run("DELETE FROM app_install WHERE identity_id = ? AND app_id = ?", [.integer(identityID), .text(app.appID)])
            try db.run(
                """
                INSERT INTO app_install (identity_id, app_id, version, manifest_version, bundle_sha256, publisher, source, exposes,
                    state_dir, installed_at, approved_by, approved_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .integer(identityID), .text(app.appID), .text(app.version), .integer(Int64(app.manifestVersion)),
                    .text(app.bundleSHA256), .text(app.publisher), .text(app.source), .text(app.exposes.joined(separator: "\n")),
                    .text(app.stateDirectory), .integer(app.installedAt), .integer(Int64(app.approvedBy)), .integer(app.approvedAt),
                ])
            for (position, grant) in app.grants.enumerated() {
                try db.run(
                    "INSERT INTO app_grant (identity_id, app_id, position, cap, target, condition) VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        .integer(identityID), .text(app.appID), .integer(Int64(position)), .text(grant.cap), .text(grant.target),
                        grant.condition.map(SQLValue.text) ?? .null,
                    ])
            }
        }
    }

    /// The apps `identity` installed, by id.
    public func apps(identity: String) throws -> [AppInstallRecord] {
        try appRecords(where: "i.name = ?", [.text(identity)])
    }

    /// The app `appID` of `identity`, if installed.
    public func app(_ appID: String, identity: String) throws -> AppInstallRecord? {
        try appRecords(where: "i.name = ? AND a.app_id = ?", [.text(identity), .text(appID)]).first
    }

    /// Forgets `identity`'s install of `appID` and its grants; returns whether there was one.
    @discardableResult
    public func removeApp(_ appID: String, identity: String) throws -> Bool {
        try db.transaction {
            try db.run(
                "DELETE FROM app_install WHERE app_id = ? AND identity_id = (SELECT id FROM identity WHERE name = ?)",
                [.text(appID), .text(identity)])
            return db.changes == 1
        }
    }

    /// Every bundle some identity has installed.
    public func installedBundles() throws -> Set<String> {
        Set(try db.rows("SELECT DISTINCT bundle_sha256 FROM app_install").compactMap { $0[0].text })
    }

    private func appRecords(where condition: String, _ bindings: [SQLValue]) throws -> [AppInstallRecord] {
        var grants: [String: [AppInstallRecord.Grant]] = [:]
        for row in try db.rows(
            """
            SELECT g.app_id, g.cap, g.target, g.condition FROM app_grant g
            JOIN app_install a ON a.identity_id = g.identity_id AND a.app_id = g.app_id
            JOIN identity i ON i.id = a.identity_id WHERE \(condition) ORDER BY g.app_id, g.position
            """, bindings)
        {
            grants[row[0].text ?? "", default: []].append(
                AppInstallRecord.Grant(cap: row[1].text ?? "", target: row[2].text ?? "", condition: row[3].text))
        }
        return try db.rows(
            """
            SELECT a.app_id, a.version, a.manifest_version, a.bundle_sha256, a.publisher, a.source, a.exposes, a.state_dir,
                a.installed_at, a.approved_by, a.approved_at
            FROM app_install a JOIN identity i ON i.id = a.identity_id WHERE \(condition) ORDER BY a.app_id
            """, bindings
        ).map { row in
            let appID = row[0].text ?? ""
            return AppInstallRecord(
                appID: appID, version: row[1].text ?? "", manifestVersion: Int(row[2].integer ?? 0), bundleSHA256: row[3].text ?? "",
                publisher: row[4].text ?? "", source: row[5].text ?? "",
                exposes: (row[6].text ?? "").split(separator: "\n").map(String.init), stateDirectory: row[7].text ?? "",
                installedAt: row[8].integer ?? 0, approvedBy: UInt32(truncatingIfNeeded: row[9].integer ?? 0), approvedAt: row[10].integer ?? 0,
                grants: grants[appID] ?? [])
        }
    }
}
