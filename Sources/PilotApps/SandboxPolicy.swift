/// What one app may see and do in its sandbox.
public struct SandboxPolicy: Sendable {
    /// The unpacked bundle: its top-level entries appear read-only under /app.
    public var storeDirectory: String
    /// The app's own state: /app, read-write.
    public var stateDirectory: String
    /// `net.dial` granted: the host's network, DNS and CA files; else no network at all.
    public var network: Bool
    /// `proc.exec` targets: absolute paths the app may execute (besides itself).
    public var execAllowList: [String]
    public var addressSpace: UInt64 = 4 << 30
    public var openFiles: UInt64 = 256
    public var processes: UInt64 = 64
    public var fileSize: UInt64 = 1 << 30
    /// Variables set for the app, besides PATH and HOME.
    public var environment: [String: String]
    /// The app's broker socket, bound into the sandbox at /run/pilot/broker.sock.
    public var brokerSocket: String?

    public init(storeDirectory: String, stateDirectory: String, network: Bool, execAllowList: [String], environment: [String: String]) {
        self.storeDirectory = storeDirectory
        self.stateDirectory = stateDirectory
        self.network = network
        self.execAllowList = execAllowList
        self.environment = environment
    }
}
