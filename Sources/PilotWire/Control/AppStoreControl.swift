/// The app store's commands on an identity's socket (`pilotctl appstore ...`). The host checks
/// the caller on every request; it forwards to the app service what needs the network, the
/// store or a running app, and keeps who installed what, and which grants its owner approved,
/// in host.db.
public enum AppStoreControl {
    /// `appstore-catalogue`: the signed catalogue's listed apps, maybe only those matching a word.
    public struct Catalogue: ControlCommand {
        public typealias Reply = AppCatalogue
        public static let name = "appstore-catalogue"
        public var search: String?

        public init(search: String? = nil) { self.search = search }
        public init(fields: ControlFields) throws(ControlFailure) { self.init(search: try fields.optionalString("search")) }
        public var arguments: [String: JSON] { search.map { ["search": .string($0)] } ?? [:] }
    }

    /// `appstore-plan`: fetch and verify an app's bundle (nothing is installed) and say what it
    /// asks for: its grants, its methods, its bundle's hash (which `appstore-install` must name).
    public struct Plan: ControlCommand {
        public typealias Reply = AppPlan
        public static let name = "appstore-plan"
        public var app: String
        /// A version the caller wants; the catalogue offers one per app.
        public var version: String?

        public init(app: String, version: String? = nil) {
            self.app = app
            self.version = version
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(app: try fields.string("app"), version: try fields.optionalString("version"))
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = ["app": .string(app)]
            if let version { arguments["version"] = .string(version) }
            return arguments
        }
    }

    /// `appstore-install`: install (or upgrade to) the bundle a plan showed, approving its
    /// grants. The hash must be the plan's: what was approved is what is installed.
    public struct Install: ControlCommand {
        public typealias Reply = InstalledApp
        public static let name = "appstore-install"
        public var app: String
        public var bundleSHA256: String
        /// The owner approves the plan's grants: required.
        public var approve: Bool

        public init(app: String, bundleSHA256: String, approve: Bool) {
            self.app = app
            self.bundleSHA256 = bundleSHA256
            self.approve = approve
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(app: try fields.string("app"), bundleSHA256: try fields.string("bundle_sha256"), approve: try fields.bool("approve"))
        }

        public var arguments: [String: JSON] { ["app": .string(app), "bundle_sha256": .string(bundleSHA256), "approve": .bool(approve)] }
    }

    /// `appstore-sideload`: install the bundle pilotctl packed from a local directory and
    /// uploaded (`upload`), under the sideload policy, when the host allows sideloading.
    public struct Sideload: ControlCommand {
        public typealias Reply = InstalledApp
        public static let name = "appstore-sideload"
        /// The upload that holds the bundle (tar.gz).
        public var upload: String
        /// The owner approves the grants pilotctl showed: required.
        public var approve: Bool

        public init(upload: String, approve: Bool) {
            self.upload = upload
            self.approve = approve
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(upload: try fields.string("upload"), approve: try fields.bool("approve"))
        }

        public var arguments: [String: JSON] { ["upload": .string(upload), "approve": .bool(approve)] }
    }

    /// `appstore-list`: the apps this identity installed, with their state.
    public struct List: ArgumentlessControlCommand {
        public typealias Reply = InstalledApps
        public static let name = "appstore-list"
        public init() {}
    }

    /// A command naming one installed app.
    public protocol AppCommand: ControlCommand {
        var app: String { get }
        init(app: String)
    }

    /// `appstore-status`: one installed app, its grants and its process.
    public struct Status: AppCommand {
        public typealias Reply = InstalledApp
        public static let name = "appstore-status"
        public var app: String
        public init(app: String) { self.app = app }
    }

    /// `appstore-uninstall`: stop the app, forget its grants, delete its state.
    public struct Uninstall: AppCommand {
        public typealias Reply = InstalledApp
        public static let name = "appstore-uninstall"
        public var app: String
        public init(app: String) { self.app = app }
    }

    /// `appstore-restart`: clear a suspension (crash loop, failed verification) and start again.
    public struct Restart: AppCommand {
        public typealias Reply = InstalledApp
        public static let name = "appstore-restart"
        public var app: String
        public init(app: String) { self.app = app }
    }

    /// `appstore-outdated`: installed apps the catalogue has another version of.
    public struct Outdated: ArgumentlessControlCommand {
        public typealias Reply = InstalledApps
        public static let name = "appstore-outdated"
        public init() {}
    }

    /// `appstore-call`: call an exposed method of an installed app with a JSON payload.
    public struct Call: ControlCommand {
        public typealias Reply = AppCallReply
        public static let name = "appstore-call"
        /// The longest a call may wait, and the default.
        public static let longestTimeout = 600_000
        public static let defaultTimeout = 120_000
        public var app: String
        public var method: String
        public var payload: JSON
        /// Milliseconds; nil: `defaultTimeout`.
        public var timeout: Int?

        public init(app: String, method: String, payload: JSON, timeout: Int? = nil) {
            self.app = app
            self.method = method
            self.payload = payload
            self.timeout = timeout
        }

        public init(fields: ControlFields) throws(ControlFailure) {
            self.init(
                app: try fields.string("app"), method: try fields.string("method"), payload: fields.values["payload"] ?? .object([:]),
                timeout: try fields.optionalInteger("timeout", as: Int.self))
            if let timeout, !(1...Self.longestTimeout).contains(timeout) {
                throw fields.failure("timeout", "1 to \(Self.longestTimeout) milliseconds")
            }
        }

        public var arguments: [String: JSON] {
            var arguments: [String: JSON] = ["app": .string(app), "method": .string(method), "payload": payload]
            if let timeout { arguments["timeout"] = .integer(Int64(timeout)) }
            return arguments
        }
    }
}

extension AppStoreControl.AppCommand {
    public init(fields: ControlFields) throws(ControlFailure) { self.init(app: try fields.string("app")) }
    public var arguments: [String: JSON] { ["app": .string(app)] }
}
