/// The replies of `AppStoreControl`.

/// One grant an app asks for (or was granted): capability, target, and its condition as JSON.
public struct AppGrant: Hashable, Sendable {
    public var cap: String
    public var target: String
    public var condition: JSON?

    public init(cap: String, target: String, condition: JSON? = nil) {
        self.cap = cap
        self.target = target
        self.condition = condition
    }

    init(fields: ControlFields) throws(ControlFailure) {
        self.init(cap: try fields.string("cap"), target: try fields.string("target"), condition: fields.values["if"].flatMap { $0 == .null ? nil : $0 })
    }

    public var json: JSON {
        var members: [String: JSON] = ["cap": .string(cap), "target": .string(target)]
        if let condition { members["if"] = condition }
        return .object(members)
    }
}

/// `appstore-catalogue`'s reply: the listed apps, as the catalogue describes them.
public struct AppCatalogue: ControlReplyData {
    /// One app: its catalogue entry's fields (`id`, `version`, `description`, `display_name`,
    /// `vendor`, `categories`, `publisher`…) and whether this identity installed it.
    public var apps: [[String: JSON]]
    public var updatedAt: String

    public init(apps: [[String: JSON]], updatedAt: String) {
        self.apps = apps
        self.updatedAt = updatedAt
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        apps = try fields.objects("apps") { (entry: ControlFields) throws(ControlFailure) in entry.values }
        updatedAt = try fields.optionalString("updated_at") ?? ""
    }

    public var json: JSON { ["apps": .array(apps.map(JSON.object)), "updated_at": .string(updatedAt)] }
}

/// `appstore-plan`'s reply: a verified bundle, what it asks for, and what is installed now.
public struct AppPlan: ControlReplyData {
    public var app: String
    public var version: String
    public var manifestVersion: Int
    public var bundleSHA256: String
    public var publisher: String
    public var description: String
    public var runtime: String
    public var exposes: [String]
    public var grants: [AppGrant]
    /// The version installed now, if any, and whether installing this needs the owner's
    /// approval again (a first install, a higher manifest version, or other grants).
    public var installedVersion: String?
    public var needsApproval: Bool

    public init(
        app: String, version: String, manifestVersion: Int, bundleSHA256: String, publisher: String, description: String, runtime: String,
        exposes: [String], grants: [AppGrant], installedVersion: String?, needsApproval: Bool
    ) {
        self.app = app
        self.version = version
        self.manifestVersion = manifestVersion
        self.bundleSHA256 = bundleSHA256
        self.publisher = publisher
        self.description = description
        self.runtime = runtime
        self.exposes = exposes
        self.grants = grants
        self.installedVersion = installedVersion
        self.needsApproval = needsApproval
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            app: try fields.string("app"), version: try fields.string("version"),
            manifestVersion: try fields.integer("manifest_version", as: Int.self), bundleSHA256: try fields.string("bundle_sha256"),
            publisher: try fields.string("publisher"), description: try fields.optionalString("description") ?? "",
            runtime: try fields.optionalString("runtime") ?? "", exposes: try fields.strings("exposes"),
            grants: try fields.objects("grants", AppGrant.init(fields:)), installedVersion: try fields.optionalString("installed_version"),
            needsApproval: try fields.bool("needs_approval"))
    }

    public var json: JSON {
        var members: [String: JSON] = [
            "app": .string(app), "version": .string(version), "manifest_version": .integer(Int64(manifestVersion)),
            "bundle_sha256": .string(bundleSHA256), "publisher": .string(publisher), "description": .string(description),
            "runtime": .string(runtime), "exposes": .array(exposes.map(JSON.string)), "grants": .array(grants.map(\.json)),
            "needs_approval": .bool(needsApproval),
        ]
        if let installedVersion { members["installed_version"] = .string(installedVersion) }
        return .object(members)
    }
}

/// An installed app: what was installed, who approved its grants and when, and its process.
public struct InstalledApp: ControlReplyData {
    public var app: String
    public var version: String
    public var manifestVersion: Int
    public var bundleSHA256: String
    public var publisher: String
    /// `catalogue` or `sideload`.
    public var source: String
    /// Unix seconds.
    public var installedAt: Int64
    /// The uid that approved the grants, and when (Unix seconds).
    public var approvedBy: UInt32
    public var approvedAt: Int64
    public var exposes: [String]
    public var grants: [AppGrant]
    /// `stopped`, `starting`, `running`, `suspended` or `removed`; `unknown` when the app
    /// service cannot be asked.
    public var state: String
    /// Why it is suspended, or the last error.
    public var reason: String?
    public var pid: Int?
    public var restarts: Int
    /// The catalogue's version, when `appstore-outdated` compared them.
    public var available: String?

    public init(
        app: String, version: String, manifestVersion: Int, bundleSHA256: String, publisher: String, source: String, installedAt: Int64,
        approvedBy: UInt32, approvedAt: Int64, exposes: [String], grants: [AppGrant], state: String, reason: String? = nil, pid: Int? = nil,
        restarts: Int = 0, available: String? = nil
    ) {
        self.app = app
        self.version = version
        self.manifestVersion = manifestVersion
        self.bundleSHA256 = bundleSHA256
        self.publisher = publisher
        self.source = source
        self.installedAt = installedAt
        self.approvedBy = approvedBy
        self.approvedAt = approvedAt
        self.exposes = exposes
        self.grants = grants
        self.state = state
        self.reason = reason
        self.pid = pid
        self.restarts = restarts
        self.available = available
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            app: try fields.string("app"), version: try fields.string("version"),
            manifestVersion: try fields.integer("manifest_version", as: Int.self), bundleSHA256: try fields.string("bundle_sha256"),
            publisher: try fields.string("publisher"), source: try fields.string("source"), installedAt: try fields.integer("installed_at"),
            approvedBy: try fields.integer("approved_by", as: UInt32.self), approvedAt: try fields.integer("approved_at"),
            exposes: try fields.strings("exposes"), grants: try fields.objects("grants", AppGrant.init(fields:)),
            state: try fields.string("state"), reason: try fields.optionalString("reason"), pid: try fields.optionalInteger("pid", as: Int.self),
            restarts: try fields.optionalInteger("restarts", as: Int.self) ?? 0, available: try fields.optionalString("available"))
    }

    public var json: JSON {
        var members: [String: JSON] = [
            "app": .string(app), "version": .string(version), "manifest_version": .integer(Int64(manifestVersion)),
            "bundle_sha256": .string(bundleSHA256), "publisher": .string(publisher), "source": .string(source),
            "installed_at": .integer(installedAt), "approved_by": .integer(Int64(approvedBy)), "approved_at": .integer(approvedAt),
            "exposes": .array(exposes.map(JSON.string)), "grants": .array(grants.map(\.json)), "state": .string(state),
            "restarts": .integer(Int64(restarts)),
        ]
        if let reason { members["reason"] = .string(reason) }
        if let pid { members["pid"] = .integer(Int64(pid)) }
        if let available { members["available"] = .string(available) }
        return .object(members)
    }
}

/// `appstore-list`'s and `appstore-outdated`'s reply.
public struct InstalledApps: ControlReplyData {
    public var apps: [InstalledApp]

    public init(apps: [InstalledApp]) { self.apps = apps }
    public init(fields: ControlFields) throws(ControlFailure) { apps = try fields.objects("apps", InstalledApp.init(fields:)) }
    public var json: JSON { ["apps": .array(apps.map(\.json))] }
}

/// `appstore-call`'s reply: the app's reply payload.
public struct AppCallReply: ControlReplyData {
    public var app: String
    public var method: String
    public var reply: JSON

    public init(app: String, method: String, reply: JSON) {
        self.app = app
        self.method = method
        self.reply = reply
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(app: try fields.string("app"), method: try fields.string("method"), reply: fields.values["reply"] ?? .null)
    }

    public var json: JSON { ["app": .string(app), "method": .string(method), "reply": reply] }
}
