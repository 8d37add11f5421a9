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
    enum Trusted: UnavailableName {
        static let name = "trusted"
        static let hint: String? = "pilot-host has no directory of trusted service agents; the nodes this identity trusts: pilotctl trust"
    }
    enum SetWebhook: UnavailableName {
        static let name = "set-webhook"
        static let hint: String? = "pilot-host posts no events to a URL; webhooks are not available on it"
    }
    enum ClearWebhook: UnavailableName {
        static let name = "clear-webhook"
        static let hint: String? = SetWebhook.hint
    }

    /// At the top level.
    static let commands: [any ParsableCommand.Type] = [
        NotAvailable<Trusted>.self,
    ]

    /// Under `extras`.
    static let extras: [any ParsableCommand.Type] = [
        HealthCommand.self, Traceroute.self, Disconnect.self,
        NotAvailable<SetWebhook>.self, NotAvailable<ClearWebhook>.self,
    ]

    /// The names of the commands that are not available, for the help text.
    static var names: [String] {
        [Trusted.name, SetWebhook.name, ClearWebhook.name]
    }
}
