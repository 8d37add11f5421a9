import ArgumentParser
import Foundation
import PilotClient
import PilotWire

// `pilotctl identity ...` on the admin socket.

struct IdentityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identity", abstract: "Manage identities (admin socket).",
        subcommands: [Create.self, List.self, Show.self, Delete.self, SetOwner.self])

    static func describe(_ identity: IdentityInfo) -> String {
        let groups = identity.groups.map(String.init).joined(separator: ",")
        let tags = identity.tags.joined(separator: ",")
        return """
            \(identity.name)  \(identity.address)
              owner     \(identity.owner) (uid \(identity.ownerUID))\(groups.isEmpty ? "" : ", groups \(groups)")
              hostname  \(identity.hostname ?? "-")
              tags      \(tags.isEmpty ? "-" : tags)
              public    \(identity.isPublic ? "yes" : "no")\(identity.isEphemeral ? ", ephemeral" : "")\(identity.autoApprove ? ", auto-approve" : "")\(identity.isDeregistered ? "\n  registry  deregistered: offline until pilot-host restarts" : "")
            """
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an identity, register it, and print its address.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Option(help: "Owner (user name or uid); default: the caller.") var owner: String?
        @Option(help: "A group whose members may also use it (repeatable).") var group: [String] = []
        @Option var hostname: String?
        @Option(help: "Comma-separated tags.") var tags: String?
        @Flag var `public` = false
        @Flag(help: "Deregister and delete it when pilot-host stops.") var ephemeral = false
        @Flag(help: "Trust every node that asks (a service identity).") var autoApprove = false

        func run() throws {
            let command = AdminControl.CreateIdentity(
                identity: name, owner: owner ?? String(getuid()), groups: group, hostname: hostname,
                tags: tags.map { $0.split(separator: ",").map(String.init) }, isPublic: self.public, isEphemeral: ephemeral,
                autoApprove: autoApprove)
            try global.run(command, on: global.runtime + "/admin.sock", text: IdentityCommand.describe)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List identities.")
        @OptionGroup var global: GlobalOptions

        func run() throws {
            try global.run(AdminControl.ListIdentities(), on: global.runtime + "/admin.sock") { data in
                guard !data.identities.isEmpty else { return "no identities" }
                return data.identities.map { row in "\(row.name)\t\(row.address)\t\(row.owner)\t\(row.hostname ?? "-")" }
                    .joined(separator: "\n")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one identity.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String

        func run() throws {
            try global.run(AdminControl.ShowIdentity(identity: name), on: global.runtime + "/admin.sock", text: IdentityCommand.describe)
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deregister and delete an identity.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String

        func run() throws {
            try global.run(AdminControl.DeleteIdentity(identity: name), on: global.runtime + "/admin.sock") { _ in "deleted \(name)" }
        }
    }

    struct SetOwner: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-owner", abstract: "Give an identity to another user.")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Argument var user: String

        func run() throws {
            try global.run(
                AdminControl.SetOwner(identity: name, owner: user), on: global.runtime + "/admin.sock",
                text: IdentityCommand.describe)
        }
    }
}
