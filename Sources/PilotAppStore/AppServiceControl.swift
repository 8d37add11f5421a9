public import PilotWire

/// The app service's commands, sent by pilot-host on the service's socket (control frames, as on
/// an identity socket). The host is the authority on who installed what and which grants were
/// approved (host.db); it sends what a command needs with each request, so the service keeps
/// no list of its own beyond the store, the apps' state directories and their processes.
public enum AppServiceControl {
    /// Where the catalogue is and which keys may sign it (from pilot-host.conf).
    public struct CatalogueSource: Hashable, Sendable {
        public var urls: [String]
        public var keys: [String]

        public init(urls: [String], keys: [String]) {
            self.urls = urls
            self.keys = keys
        }

        init(fields: ControlFields) throws(ControlFailure) {
            self.init(urls: try fields.strings("catalogue_urls"), keys: try fields.strings("catalogue_keys"))
        }

        var arguments: [String: JSON] {
            ["catalogue_urls": .array(urls.map(JSON.string)), "catalogue_keys": .array(keys.map(JSON.string))]
        }
    }

    /// `catalogue`: fetch the catalogue, check its signature, list its apps.
    public struct Catalogue: ControlCommand {
        public typealias Reply = AppCatalogue
        public static let name = "catalogue"
        public var source: CatalogueSource

        public init(source: CatalogueSource) { self.source = source }
        public init(fields: ControlFields) throws(ControlFailure) { self.init(source: try CatalogueSource(fields: fields)) }
        public var arguments: [String: JSON] { source.arguments }
    }

    /// `prepare`: fetch an app's bundle, check its hash against the catalogue, unpack it into
    /// the store, and check its manifest (schema, signature, the catalogue's publisher pin, the
    /// binary's hash). Installs nothing: the reply is what the owner is asked to approve.
    public struct Prepare: ControlCommand {
        public typealias Reply = AppPlan
        public static let name = "prepare"
        public var source: CatalogueSource
        public var app: String
        public var version: String?

        public init(source: CatalogueSource, app: String, version: String?) {
            self.source = source
            self.app = app
            self.version = version
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(source: try CatalogueSource(fields: fields), app: try fields.string("app"), version: try fields.optionalString("version"))
        }

        public var arguments: [String: JSON] {
            var arguments = source.arguments
            arguments["app"] = .string(app)
            if let version { arguments["version"] = .string(version) }
            return arguments
        }
    }

    /// `stage`: a piece of a sideloaded bundle, which pilot-host passes on from its upload.
    public struct Stage: ControlCommand {
        public typealias Reply = ControlData
        public static let name = "stage"
        /// Names the staged bundle (random, chosen by the host).
        public var token: String
        public var offset: Int
        /// The piece, base64.
        public var data: String

        public init(token: String, offset: Int, data: String) {
            self.token = token
            self.offset = offset
            self.data = data
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(token: try fields.string("token"), offset: try fields.integer("offset", as: Int.self), data: try fields.string("data"))
        }

        public var arguments: [String: JSON] { ["token": .string(token), "offset": .integer(Int64(offset)), "data": .string(data)] }
    }

    /// `prepare-local`: the staged bundle into the store, checked under the sideload policy (no
    /// signature: the grants are held to audit.log and files under $APP, unconditionally).
    public struct PrepareLocal: ControlCommand {
        public typealias Reply = AppPlan
        public static let name = "prepare-local"
        public var token: String

        public init(token: String) { self.token = token }
        public init(fields: ControlFields) throws(ControlFailure) { self.init(token: try fields.string("token")) }
        public var arguments: [String: JSON] { ["token": .string(token)] }
    }

    /// What the service needs to run one identity's installed app: the bundle, the publisher
    /// pinned at install, and the grants its owner approved.
    public struct Installation: Hashable, Sendable {
        public var identity: String
        /// The identity's overlay address (the app's `--addr`).
        public var address: String
        public var app: String
        public var bundleSHA256: String
        public var publisher: String
        public var grants: [AppGrant]
        /// Installed from a local directory: checked under the sideload policy, not signed.
        public var sideloaded: Bool
        /// The methods its installed manifest exposes.
        public var exposes: [String]

        public init(
            identity: String, address: String, app: String, bundleSHA256: String, publisher: String, grants: [AppGrant], sideloaded: Bool = false,
            exposes: [String] = []
        ) {
            self.identity = identity
            self.address = address
            self.app = app
            self.bundleSHA256 = bundleSHA256
            self.publisher = publisher
            self.grants = grants
            self.sideloaded = sideloaded
            self.exposes = exposes
        }

        init(fields: ControlFields) throws(ControlFailure) {
            self.init(
                identity: try fields.string("identity"), address: try fields.string("address"), app: try fields.string("app"),
                bundleSHA256: try fields.string("bundle_sha256"), publisher: try fields.string("publisher"),
                grants: try fields.objects("grants") { (grant: ControlFields) throws(ControlFailure) in
                    AppGrant(cap: try grant.string("cap"), target: try grant.string("target"), condition: grant.values["if"])
                }, sideloaded: try fields.bool("sideloaded"), exposes: try fields.strings("exposes"))
        }

        var arguments: [String: JSON] {
            [
                "identity": .string(identity), "address": .string(address), "app": .string(app), "bundle_sha256": .string(bundleSHA256),
                "publisher": .string(publisher), "grants": .array(grants.map(\.json)), "sideloaded": .bool(sideloaded),
                "exposes": .array(exposes.map(JSON.string)),
            ]
        }
    }

    /// `call`: start the app if it is not running (verifying it first), then send it one
    /// request envelope and wait for its reply.
    public struct Call: ControlCommand {
        public typealias Reply = AppCallReply
        public static let name = "call"
        public var installation: Installation
        public var method: String
        public var payload: JSON
        /// Milliseconds.
        public var timeout: Int
        /// The identity's other installed apps: those its apps may call through their broker
        /// (with an `ipc.call` grant), refreshed with every call.
        public var neighbours: [Installation]

        public init(installation: Installation, method: String, payload: JSON, timeout: Int, neighbours: [Installation] = []) {
            self.installation = installation
            self.method = method
            self.payload = payload
            self.timeout = timeout
            self.neighbours = neighbours
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(
                installation: try Installation(fields: fields), method: try fields.string("method"),
                payload: fields.values["payload"] ?? .object([:]), timeout: try fields.integer("timeout", as: Int.self),
                neighbours: try fields.objects("neighbours", Installation.init(fields:)))
        }

        public var arguments: [String: JSON] {
            var arguments = installation.arguments
            arguments["method"] = .string(method)
            arguments["payload"] = payload
            arguments["timeout"] = .integer(Int64(timeout))
            arguments["neighbours"] = .array(neighbours.map { .object($0.arguments) })
            return arguments
        }
    }

    /// A command about one identity's app.
    public protocol AppProcessCommand: ControlCommand where Reply == AppProcessStatus {
        var identity: String { get }
        var app: String { get }
        init(identity: String, app: String)
    }

    /// `status`: the app's process.
    public struct Status: AppProcessCommand {
        public static let name = "status"
        public var identity: String
        public var app: String
        public init(identity: String, app: String) {
            self.identity = identity
            self.app = app
        }
    }

    /// `restart`: clear a suspension and stop the app; the next call starts it, verified.
    public struct Restart: AppProcessCommand {
        public static let name = "restart"
        public var identity: String
        public var app: String
        public init(identity: String, app: String) {
            self.identity = identity
            self.app = app
        }
    }

    /// `remove`: stop the app and delete its state directory.
    public struct Remove: AppProcessCommand {
        public static let name = "remove"
        public var identity: String
        public var app: String
        public init(identity: String, app: String) {
            self.identity = identity
            self.app = app
        }
    }

    /// `forget`: stop every app of a deleted identity and delete all their state.
    public struct Forget: ControlCommand {
        public typealias Reply = ControlData
        public static let name = "forget"
        public var identity: String

        public init(identity: String) { self.identity = identity }
        public init(fields: ControlFields) throws(ControlFailure) { self.init(identity: try fields.string("identity")) }
        public var arguments: [String: JSON] { ["identity": .string(identity)] }
    }

    /// `collect`: delete the store's bundles that no installation uses any more.
    public struct Collect: ControlCommand {
        public typealias Reply = ControlData
        public static let name = "collect"
        /// The bundles still installed somewhere.
        public var keep: [String]

        public init(keep: [String]) { self.keep = keep }
        public init(fields: ControlFields) throws(ControlFailure) { self.init(keep: try fields.strings("keep")) }
        public var arguments: [String: JSON] { ["keep": .array(keep.map(JSON.string))] }
    }
}

extension AppServiceControl.AppProcessCommand {
    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(identity: try fields.string("identity"), app: try fields.string("app"))
    }

    public var arguments: [String: JSON] { ["identity": .string(identity), "app": .string(app)] }
}

/// An app's process as the service sees it.
public struct AppProcessStatus: ControlReplyData {
    /// `stopped`, `starting`, `running`, `suspended` or `removed`.
    public var state: String
    public var pid: Int?
    /// Starts after a crash in this service's lifetime.
    public var restarts: Int
    /// Why it is suspended, or how it last ended.
    public var reason: String?

    public init(state: String, pid: Int? = nil, restarts: Int = 0, reason: String? = nil) {
        self.state = state
        self.pid = pid
        self.restarts = restarts
        self.reason = reason
    }

    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(
            state: try fields.string("state"), pid: try fields.optionalInteger("pid", as: Int.self),
            restarts: try fields.optionalInteger("restarts", as: Int.self) ?? 0, reason: try fields.optionalString("reason"))
    }

    public var json: JSON {
        var members: [String: JSON] = ["state": .string(state), "restarts": .integer(Int64(restarts))]
        if let pid { members["pid"] = .integer(Int64(pid)) }
        if let reason { members["reason"] = .string(reason) }
        return .object(members)
    }
}
