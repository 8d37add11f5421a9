import ArgumentParser
import Foundation
import PilotClient
import PilotWire

// The commands that read or change the identity's own record, and look others up.

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Show this identity.")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        try global.run(IdentityControl.Info(), on: try global.identitySocket(), text: IdentityCommand.describe)
    }
}

/// Runs `command` on the chosen identity's socket and prints the identity as it is afterwards.
private func identityChange<Command: ControlCommand>(_ global: GlobalOptions, _ command: Command) throws where Command.Reply == IdentityInfo {
    try global.run(command, on: try global.identitySocket(), text: IdentityCommand.describe)
}

struct SetHostname: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-hostname", abstract: "Set this identity's hostname.")
    @OptionGroup var global: GlobalOptions
    @Argument var hostname: String
    func run() throws { try identityChange(global, IdentityControl.SetHostname(hostname: hostname)) }
}

struct ClearHostname: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clear-hostname", abstract: "Remove this identity's hostname.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try identityChange(global, IdentityControl.ClearHostname()) }
}

struct SetTags: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-tags", abstract: "Replace this identity's tags.")
    @OptionGroup var global: GlobalOptions
    @Argument var tags: [String]
    func run() throws { try identityChange(global, IdentityControl.SetTags(tags: tags)) }
}

struct ClearTags: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clear-tags", abstract: "Remove this identity's tags.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try identityChange(global, IdentityControl.ClearTags()) }
}

struct SetPublic: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-public", abstract: "Let any node resolve this identity's endpoint.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try identityChange(global, IdentityControl.SetPublic()) }
}

struct SetPrivate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-private", abstract: "Show this identity's endpoint only to trusted peers.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try identityChange(global, IdentityControl.SetPrivate()) }
}

/// Prints a registry answer as `key: value` lines.
func fields(_ data: ControlData) -> String {
    data.values.keys.sorted().map { key in
        let value = data[key] ?? .null
        return "\(key): \(value.stringValue ?? value.encodedString())"
    }.joined(separator: "\n")
}

struct Lookup: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Look a node up in the registry by node id, address or hostname.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "A node id, an address N:XXXX.YYYY.YYYY, or a hostname.") var target: String
    func run() throws {
        let socket = try global.identitySocket()
        var node = target
        // The host's lookup takes a node id; a hostname is found first, as 1.18's pilotctl does.
        if case .hostname(let hostname) = NodeTarget(target) {
            let found = try global.call(IdentityControl.Find(hostname: hostname), on: socket)
            guard let id = found["node_id"]?.integerValue.map(String.init) ?? found["address"]?.stringValue else {
                try global.fail(.error(ControlFailure(.notFound, "the registry gave no node for hostname \(hostname)")))
            }
            node = id
        }
        try global.run(IdentityControl.Lookup(target: node), on: socket, text: fields)
    }
}

struct Find: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find a node's address by hostname, or the online nodes with a tag (--tag).")
    @OptionGroup var global: GlobalOptions
    @Argument var hostname: String?
    @Option(help: "Find the online nodes with this tag (pilot-rendezvous's registry can; the official one cannot).") var tag: String?
    func validate() throws {
        guard (hostname == nil) != (tag == nil) else { throw ValidationError("find takes a hostname or --tag TAG, one of them") }
    }
    func run() throws {
        let command = tag.map(IdentityControl.Find.init(tag:)) ?? IdentityControl.Find(hostname: hostname ?? "")
        try global.run(command, on: try global.identitySocket(), text: fields)
    }
}

/// 1.18's `deregister`: this identity leaves the registry and stays offline until pilot-host
/// restarts; it is not deleted.
struct Deregister: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Take this identity out of the registry until pilot-host restarts (it is not deleted).")
    @OptionGroup var global: GlobalOptions
    func run() throws { try global.run(IdentityControl.Deregister(), on: try global.identitySocket(), text: fields) }
}

/// 1.18's `rotate-key`: a new Ed25519 key, the same address.
struct RotateKey: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rotate-key", abstract: "Give this identity a new key; its address stays.")
    @OptionGroup var global: GlobalOptions
    func run() throws { try global.run(IdentityControl.RotateKey(), on: try global.identitySocket(), text: fields) }
}
