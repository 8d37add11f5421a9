import ArgumentParser
import Foundation
import PilotWire

// The reference pilotctl's (1.18's) command names that ours lacked: `extras`, `version`, and
// the commands pilot-host cannot do yet, which say so instead of doing something else.

/// pilot-host's version, of which pilotctl is a part: the version `scripts/package` numbers its
/// packages from (a package adds `~git<commits>.<hash>`; `dpkg -s pilot-host` shows it).
let pilotHostVersion = "0.1.0"

/// 1.18's `health`: the identity's figures, as the official daemon's keys.
struct HealthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "health", abstract: "How this identity is doing (1.18's health keys).")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        try global.run(IdentityControl.Health(), on: try global.identitySocket()) { data in
            data.values.keys.sorted().map { key in "\(key): \(data[key].map { $0.stringValue ?? $0.encodedString() } ?? "")" }.joined(separator: "\n")
        }
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print pilot-host's version.")
    @OptionGroup var global: GlobalOptions

    func run() {
        print(global.json ? ControlReply.ok(["version": .string(pilotHostVersion)]).json.encodedString() : pilotHostVersion)
    }
}

/// 1.18's `pilotctl extras ...`: its operator commands, here the ones pilot-host has, under the
/// same names as at the top level.
struct Extras: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The reference pilotctl's operator commands (set-tags, clear-tags, connect, dgram, ...).",
        subcommands: [
            SetTags.self, ClearTags.self, SetHostname.self, ClearHostname.self, Connect.self, Send.self, Recv.self,
            SendDatagram.self, Listen.self, Broadcast.self, Connections.self, Peers.self, Bench.self,
        ] + Unavailable.extras)
}

/// 1.18's `trusted list`. The official pilotctl prints the public network's service agents from a
/// list compiled into it; pilot-host's asks the overlay's own directory (list-agents) for every
/// agent it lists, page after page, and prints them with 1.18's keys (`count`; `trusted`:
/// `hostname`, `address`, `node_id`) plus the directory's (`tags`, `description`, `category`).
/// The directory does not say whether an agent approves handshakes at once.
struct TrustedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trusted", abstract: "The service agents the overlay's directory lists (1.18's trusted list).",
        subcommands: [List.self], defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every agent the directory (list-agents) lists, by hostname.",
            discussion: """
                1.18 prints the public network's service agents from a list compiled into its \
                pilotctl; this asks the overlay's directory for every agent it lists, \
                \(DirectoryQuery.maxLimit) a page. Whether an agent approves a handshake at once \
                is the agent's choice: pilotctl handshake asks.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "The directory's hostname or address.") var agent = "list-agents"
        @Option(help: "Seconds to wait for each page.") var timeout = 10
        @Option(help: "At most this many agents.") var max = 10_000
        @Option(help: "Agents asked for per page (at most \(DirectoryQuery.maxLimit)).") var pageSize = DirectoryQuery.maxLimit

        func validate() throws {
            guard (1...DirectoryQuery.maxLimit).contains(pageSize) else {
                throw ValidationError("--page-size must be 1 to \(DirectoryQuery.maxLimit)")
            }
            guard (1...600).contains(timeout) else { throw ValidationError("--timeout must be 1 to 600 seconds") }
            guard max >= 1 else { throw ValidationError("--max must be 1 or more") }
        }

        func run() throws {
            let socket = try global.identitySocket()
            var agents: [JSON] = []
            var page = 1
            while agents.count < max {
                let filters: [String: JSON] = ["limit": .integer(Int64(pageSize)), "page": .integer(Int64(page))]
                let answer = try askDirectory(global, on: socket, agent: agent, filters: filters, timeout: timeout)
                agents += answer.items.prefix(max - agents.count)
                guard let next = answer.page["next"]?.integerValue, next > page else { break }
                page = Int(next)
            }
            let listed = agents.compactMap(TrustedCommand.entry).sorted { ($0.hostname, $0.nodeID) < ($1.hostname, $1.nodeID) }
            if global.json {
                let trusted = listed.map(\.json)
                return print(ControlReply.ok(["count": .integer(Int64(trusted.count)), "trusted": .array(trusted)]).json.encodedString())
            }
            guard !listed.isEmpty else { return print("\(agent) lists no agents") }
            for entry in listed {
                // 1.18's %-32s: padded to 32, never cut.
                let hostname = entry.hostname.padding(toLength: Swift.max(32, entry.hostname.count), withPad: " ", startingAt: 0)
                print("  \(hostname) \(entry.address)  node_id=\(entry.nodeID)")
            }
        }
    }

    /// One directory item as a `trusted` entry; nil for an item without a valid address.
    private static func entry(_ item: JSON) -> (hostname: String, address: String, nodeID: UInt32, json: JSON)? {
        guard let text = item["address"]?.stringValue, let address = Address(text) else { return nil }
        let hostname = item["hostname"]?.stringValue ?? ""
        var json: [String: JSON] = ["hostname": .string(hostname), "address": .string(text), "node_id": .integer(Int64(address.node))]
        for key in ["tags", "description", "category"] { json[key] = item[key] }
        return (hostname, text, address.node, .object(json))
    }
}

/// The name of a reference command that pilot-host cannot do yet, and where to look instead.
protocol UnavailableName {
    static var name: String { get }
    static var hint: String? { get }
}

extension UnavailableName {
    static var hint: String? { nil }
}

/// A reference command pilot-host cannot do yet: it takes any arguments and fails with code
/// `unsupported`, so that a script written for 1.18 learns it at once.
struct NotAvailable<Name: UnavailableName>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: Name.name, abstract: "The reference pilotctl's \(Name.name): not available yet.", shouldDisplay: false)
    }

    @OptionGroup var global: GlobalOptions
    @Argument(parsing: .allUnrecognized) var ignored: [String] = []

    func run() throws {
        try exitWithError(code: "unsupported", "pilotctl \(Name.name): not available on pilot-host yet", hint: Name.hint, json: global.json)
    }
}

/// The reference commands that nothing on an identity's socket does today.
enum Unavailable {
    enum SetWebhook: UnavailableName {
        static let name = "set-webhook"
        static let hint: String? = "pilot-host posts no events to a URL; webhooks are not available on it"
    }
    enum ClearWebhook: UnavailableName {
        static let name = "clear-webhook"
        static let hint: String? = SetWebhook.hint
    }

    /// Under `extras`.
    static let extras: [any ParsableCommand.Type] = [
        HealthCommand.self, Traceroute.self, Disconnect.self,
        NotAvailable<SetWebhook>.self, NotAvailable<ClearWebhook>.self,
    ]

    /// The names of the commands that are not available, for the help text.
    static var names: [String] {
        [SetWebhook.name, ClearWebhook.name]
    }
}
