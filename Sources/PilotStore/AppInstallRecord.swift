/// An app one identity installed: which bundle, from where, and the grants its owner approved
/// (who, when). Conditions are kept as the JSON text they came as.
public struct AppInstallRecord: Hashable, Sendable {
    /// One approved grant.
    public struct Grant: Hashable, Sendable {
        public var cap: String
        public var target: String
        /// The grant's `if`, as JSON text.
        public var condition: String?

        public init(cap: String, target: String, condition: String? = nil) {
            self.cap = cap
            self.target = target
            self.condition = condition
        }
    }

    public var appID: String
    public var version: String
    public var manifestVersion: Int
    public var bundleSHA256: String
    public var publisher: String
    /// `catalogue` or `sideload`.
    public var source: String
    public var exposes: [String]
    /// The app's state directory (its `$APP`, read-write).
    public var stateDirectory: String
    /// Unix seconds.
    public var installedAt: Int64
    public var approvedBy: UInt32
    public var approvedAt: Int64
    public var grants: [Grant]

    public init(
        appID: String, version: String, manifestVersion: Int, bundleSHA256: String, publisher: String, source: String, exposes: [String],
        stateDirectory: String, installedAt: Int64, approvedBy: UInt32, approvedAt: Int64, grants: [Grant]
    ) {
        self.appID = appID
        self.version = version
        self.manifestVersion = manifestVersion
        self.bundleSHA256 = bundleSHA256
        self.publisher = publisher
        self.source = source
        self.exposes = exposes
        self.stateDirectory = stateDirectory
        self.installedAt = installedAt
        self.approvedBy = approvedBy
        self.approvedAt = approvedAt
        self.grants = grants
    }
}
