import PilotAppStore
import PilotWire

/// One identity's installed app as the supervisor runs it: its process, its state, its crashes.
/// Owned by `AppSupervisor` (an actor): never shared.
final class AppInstance {
    /// What the process is doing.
    enum State: Equatable {
        case stopped
        case starting
        case running
        /// Not started again until `restart`: why.
        case suspended(String)

        var name: String {
            switch self {
            case .stopped: "stopped"
            case .starting: "starting"
            case .running: "running"
            case .suspended: "suspended"
            }
        }
    }

    let identity: String
    let app: String
    let stateDirectory: String
    /// The latest installation the host sent: the bundle, the pinned publisher, the grants.
    var installation: AppServiceControl.Installation?
    var state: State = .stopped
    var process: SandboxedProcess?
    /// Its broker while it runs.
    var broker: AppBroker?
    /// The start in progress, which callers that arrive meanwhile wait for.
    var starting: Task<Void, any Error>?
    /// The supervisor asked this process to end: its exit is no crash.
    var stopping = false
    /// When it crashed, in the last minute.
    var crashes: [ContinuousClock.Instant] = []
    /// Starts after crashes since the service started.
    var restarts = 0
    var lastExit: String?
    var lastUsed = ContinuousClock.now
    /// The automatic start after a crash, waiting out its back-off.
    var restart: Task<Void, Never>?

    init(identity: String, app: String, stateDirectory: String) {
        self.identity = identity
        self.app = app
        self.stateDirectory = stateDirectory
    }

    /// The back-off before the automatic start after the `count`th crash in a row: 1, 2, 4,
    /// 8, 16, then 30 s.
    static func backOff(after count: Int) -> Duration {
        .seconds(min(30, 1 << min(max(count - 1, 0), 5)))
    }
}
