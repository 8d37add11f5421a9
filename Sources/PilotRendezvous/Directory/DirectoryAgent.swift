import Foundation
public import Logging
public import NIOCore
import NIOConcurrencyHelpers
import PilotCrypto
import PilotNet
import PilotServices
public import PilotWire

/// The directory agent (`pilot-rendezvous --directory`): a public node of its own, registered
/// with this registry under the hostname `list-agents`, that answers the official directory's
/// text protocol on port 1001 (`/help`, `/data {...}`) with the nodes that chose to be listed
/// (`DirectoryIndex`). The answer goes back as a new stream to the asker's port 1001, never
/// anywhere else: the asker is the node the tunnel authenticated, and a question names no
/// address. Handshakes to it are approved at once, as the official one's are.
///
/// It lives beside the registry because the registry holds what it lists (every node's record,
/// and what each said of itself with `set_listing`): a search reads `registry.db` directly, and
/// no registry request can list nodes wholesale. With the registry on PostgreSQL it searches a
/// copy of the listed nodes in a file of its own (`DirectoryMirror`), filled from the
/// registry's memory at start and kept in step every `mirrorInterval`.
public final class DirectoryAgent: Sendable {
    public struct Configuration: Sendable {
        /// UDP address of its tunnel socket.
        public var host: String
        public var port: Int
        /// Host registered as its endpoint; nil: `host`, with 0.0.0.0 read as 127.0.0.1.
        public var advertiseHost: String?
        /// The hostname it takes, and the `source` of its answers.
        public var hostname = "list-agents"
        public var keyPath: String
        /// The search's copy of the listings when the registry keeps no registry.db.
        public var mirrorPath: String
        /// How often that copy takes the registry's changes.
        public var mirrorInterval: Duration = .milliseconds(250)
        public var heartbeatInterval: Duration = .seconds(60)
        /// How often it looks for handshakes relayed through the registry.
        public var handshakePollInterval: Duration = .seconds(1)
        /// How long delivering one answer may take.
        public var answerTimeout: Duration = .seconds(15)
        /// The longest question read.
        public var maxQuestion = 8192
        var admission = DirectoryAdmission.Limits()

        /// Questions one node may ask per second, after a burst of ten seconds' worth.
        public var questionsPerSecond: Double {
            get { admission.questionsPerSecond }
            set {
                admission.questionsPerSecond = newValue
                admission.burst = max(1, newValue * 5)
            }
        }

        public init(host: String, port: Int, stateDirectory: String) {
            self.host = host
            self.port = port
            keyPath = (stateDirectory as NSString).appendingPathComponent("directory.key")
            mirrorPath = (stateDirectory as NSString).appendingPathComponent("directory-index.db")
        }
    }

    private let registry: Registry
    private let index: DirectoryIndex
    /// The listings' copy that `index` reads, for a registry on PostgreSQL; nil: registry.db.
    private let mirror: DirectoryMirror?
    private let configuration: Configuration
    private let logger: Logger
    private let admission: NIOLockedValueBox<DirectoryAdmission>
    private let running = NIOLockedValueBox<(node: InProcessNode, tasks: [Task<Void, Never>])?>(nil)

    /// The directory over `registry`'s nodes; `start` puts it on the overlay. Its search reads
    /// registry.db, or for a registry on PostgreSQL a copy made now at `mirrorPath`.
    public init(registry: Registry, configuration: Configuration, logger: Logger) throws {
        self.registry = registry
        if let path = registry.sqlitePath {
            mirror = nil
            index = try DirectoryIndex(path: path)
        } else {
            let mirror = try DirectoryMirror(path: configuration.mirrorPath, registry: registry)
            self.mirror = mirror
            index = try DirectoryIndex(path: mirror.path)
        }
        self.configuration = configuration
        self.logger = logger
        admission = NIOLockedValueBox(DirectoryAdmission(limits: configuration.admission))
    }

    /// Binds the tunnel socket, registers the node and starts answering; returns the socket's
    /// address and the node's address.
    public func start(on group: any EventLoopGroup) async throws -> (socket: SocketAddress, address: Address) {
        let node = try await InProcessNode.start(
            registry: registry,
            configuration: InProcessNode.Configuration(
                host: configuration.host, port: configuration.port, advertiseHost: configuration.advertiseHost,
                hostname: configuration.hostname, keyPath: configuration.keyPath, role: "directory",
                heartbeatInterval: configuration.heartbeatInterval),
            on: group, logger: logger)
        let fabric = node.fabric
        try await fabric.setPublicPorts(local: node.node, [DataExchangeService.port, EchoService.port])
        try await fabric.setOpenPorts([HandshakeTransport.port])
        let service = DataExchangeService(
            inbox: Questions { [self] message in try await self.received(message, node: node) }, maxPayload: configuration.maxQuestion,
            logger: logger)
        try await fabric.listen(node: node.node, port: DataExchangeService.port) { stream in service.serve(stream, for: "directory") }
        let handshakes = DirectoryHandshakes(node: node, registry: registry, logger: logger)
        try await fabric.listen(node: node.node, port: HandshakeTransport.port) { stream in handshakes.transport.serve(stream, for: "directory") }
        var tasks = [
            Task { await handshakes.approveArrivals() },
            Task { [configuration] in await handshakes.approveRelayed(every: configuration.handshakePollInterval) },
        ]
        if let mirror { tasks.append(Task { [configuration, logger] in await Self.keep(mirror, every: configuration.mirrorInterval, logger: logger) }) }
        running.withLockedValue { $0 = (node, tasks) }
        logger.info("directory serving", metadata: ["address": "\(node.address)", "socket": "\(node.socket)", "hostname": "\(configuration.hostname)"])
        return (node.socket, node.address)
    }

    /// Brings `mirror` up to the registry's changes every `interval` until cancelled. A write
    /// that fails (a full disk) is logged once, and its changes written with a later one.
    private static func keep(_ mirror: DirectoryMirror, every interval: Duration, logger: Logger) async {
        var failing = false
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            do {
                try mirror.catchUp()
                if failing { logger.notice("directory index written again", metadata: ["path": "\(mirror.path)"]) }
                failing = false
            } catch {
                if !failing { logger.error("directory index not written; its search is behind", metadata: ["path": "\(mirror.path)", "error": "\(error)"]) }
                failing = true
            }
        }
    }

    public func shutdown() async {
        guard let (node, tasks) = running.withLockedValue({ current in defer { current = nil }; return current }) else { return }
        tasks.forEach { $0.cancel() }
        await node.shutdown()
    }

    /// The answer to `request`, as the text of a frame.
    public func answer(_ request: DirectoryRequest) -> String {
        switch request {
        case .help(nil): return DirectoryRequest.helpText(hostname: configuration.hostname)
        case .help(let verb?): return "unknown command \(verb)\n\n" + DirectoryRequest.helpText(hostname: configuration.hostname)
        case .summary: return "/summary is not offered by this directory; ask /data {\"search\": WORD} (see /help)"
        case .badData(let problem): return "bad /data filters: \(problem) (see /help)"
        case .data(let query):
            do {
                return try index.search(query, source: configuration.hostname).json.encodedString()
            } catch {
                logger.error("directory search failed", metadata: ["error": "\(error)"])
                return "the directory cannot search now: \(error)"
            }
        }
    }

    /// A question arrived: refused at once when its asker asks too fast or the directory is
    /// busy (the asker's send gets the ERR with the reason), else answered on a new stream.
    private func received(_ message: DataExchangeService.Message, node: InProcessNode) async throws {
        let asker = message.sender
        switch admission.withLockedValue({ $0.admit(asker.node, now: ProcessInfo.processInfo.systemUptime) }) {
        case .throttled:
            throw DirectoryRefusal(
                "rate limited: at most \(configuration.admission.questionsPerSecond) questions a second from one node; ask again shortly")
        case .busy:
            throw DirectoryRefusal("the directory is busy; ask again in a few seconds")
        case .answer:
            break
        }
        let text = answer(DirectoryRequest(text: String(decoding: message.payload, as: UTF8.self)))
        var frame = DataExchangeFrame(kind: .text, payload: Array(text.utf8))
        if let asked = message.messageID {
            frame = .tagged(frame, messageID: Hex.lowercase(Sodium.randomBytes(16)), replyTo: asked)
        }
        let reply = frame
        Task { [configuration, logger, admission] in
            defer { admission.withLockedValue { $0.answered() } }
            do {
                try await withTimeout(configuration.answerTimeout) {
                    let stream = try await node.fabric.dial(from: node.node, to: asker, port: DataExchangeService.port)
                    _ = try await DataExchangeService.exchange(reply, over: stream)
                }
            } catch {
                logger.info("directory answer not delivered", metadata: ["PILOT_PEER": "\(asker)", "error": "\(error)"])
            }
        }
    }
}

/// Why a question was not taken; the asker reads it in the ERR.
struct DirectoryRefusal: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The data-exchange service's inbox, which hands questions to the directory. Files are refused.
private struct Questions: DataExchangeInbox {
    let received: @Sendable (DataExchangeService.Message) async throws -> Void

    func keep(_ message: DataExchangeService.Message, for identity: String) async throws { try await received(message) }

    func keep(_ file: DataExchangeService.File, for identity: String) async throws {
        throw DirectoryRefusal("the directory takes text messages only (/help)")
    }
}
