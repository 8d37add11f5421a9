import ArgumentParser
import Foundation
import PilotClient
import PilotWire

// `pilotctl identity ...` on the admin socket.

struct IdentityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identity", abstract: "Manage identities (admin socket).",
        subcommands: [Create.self, List.self, Show.self, Delete.self, SetOwner.self, SocketPath.self, Export.self, Import.self])

    static func describe(_ identity: IdentityInfo) -> String {
        let groups = identity.groups.map(String.init).joined(separator: ",")
        let tags = identity.tags.joined(separator: ",")
        return """
            \(identity.name)  \(identity.address)
              owner     \(identity.owner) (uid \(identity.ownerUID))\(groups.isEmpty ? "" : ", groups \(groups)")
              hostname  \(identity.hostname ?? "-")
              tags      \(tags.isEmpty ? "-" : tags)
              public    \(identity.isPublic ? "yes" : "no")\(identity.isEphemeral ? ", ephemeral" : "")\(identity.autoApprove ? ", auto-approve" : "")\(identity.isDeregistered ? "\n  registry  deregistered: offline until pilot-host restarts" : "")\(identity.leasePID.map { "\n  lease     while process \($0) runs" } ?? "")\(identity.socket.map { "\n  socket    \($0)" } ?? "")
            """
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an identity, register it, and print its address.",
            discussion: """
                A leased identity lasts as long as one process: when it ends (exits, crashes, is \
                killed), pilot-host deregisters and deletes the identity, running or not at the \
                time. --lease -- COMMAND...: pilotctl creates it leased to itself, runs COMMAND \
                with PILOT_SOCKET and PILOT_IDENTITY set, and exits with its status; the identity \
                ends with it. --lease-pid PID: leased to a process that runs already.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Option(help: "Owner (user name or uid); default: the caller.") var owner: String?
        @Option(help: "Owner by uid as the host sees it (a user-namespaced container's root, say).") var ownerUid: UInt32?
        @Option(help: "A group whose members may also use it (repeatable).") var group: [String] = []
        @Option var hostname: String?
        @Option(help: "Comma-separated tags.") var tags: String?
        @Flag var `public` = false
        @Flag(help: "Deregister and delete it when pilot-host stops.") var ephemeral = false
        @Flag(help: "Trust every node that asks (a service identity).") var autoApprove = false
        @Flag(help: "Lease it to the command after --: deleted when that command ends.") var lease = false
        @Option(help: "Lease it to this running process: deleted when it ends.") var leasePid: Int32?
        @Argument(parsing: .postTerminator, help: "With --lease: the command to run as the identity.") var command: [String] = []

        func validate() throws {
            if owner != nil, ownerUid != nil { throw ValidationError("give --owner or --owner-uid, not both") }
            if lease, leasePid != nil { throw ValidationError("give --lease or --lease-pid, not both") }
            if lease, command.isEmpty {
                throw ValidationError("--lease needs the command to run after --, which holds the lease (or use --lease-pid)")
            }
            if !lease, !command.isEmpty { throw ValidationError("a command after -- is run only with --lease") }
            if let leasePid, leasePid < 1 { throw ValidationError("--lease-pid must be a process id") }
        }

        func run() throws {
            let leaseAsked: AdminControl.Lease? = lease ? .caller : leasePid.map { .process($0) }
            let create = AdminControl.CreateIdentity(
                identity: name, owner: owner ?? ownerUid.map(String.init) ?? String(getuid()), groups: group, hostname: hostname,
                tags: tags.map { $0.split(separator: ",").map(String.init) }, isPublic: self.public, isEphemeral: ephemeral,
                autoApprove: autoApprove, lease: leaseAsked)
            guard lease else {
                try global.run(create, on: global.runtime + "/admin.sock", text: IdentityCommand.describe)
                return
            }
            let identity = try global.call(create, on: global.runtime + "/admin.sock")
            throw ExitCode(try LeaseHolder.run(command, as: identity, socket: identity.socket ?? global.runtime + "/id/\(name).sock"))
        }
    }

    struct SocketPath: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "socket-path", abstract: "Print the path of an identity's control socket (to bind-mount it).")
        @OptionGroup var global: GlobalOptions
        @Argument var name: String

        func run() throws {
            try global.run(AdminControl.ShowIdentity(identity: name), on: global.runtime + "/admin.sock") { identity in
                identity.socket ?? global.runtime + "/id/\(identity.name).sock"
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List identities, in name order.",
            discussion: """
                The host answers in pages (at most 5000 rows, or 512 KiB, each); pilotctl asks \
                for them one after another on one connection and prints each as it comes, so a \
                host of 100,000 identities lists whole. With --json: one document, its next the \
                name to give --after for more (null: none).
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "At most this many.") var limit: Int?
        @Option(help: "Start after this name.") var after: String?

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit must be 1 or more") }
        }

        func run() throws {
            let socket = global.runtime + "/admin.sock"
            let connection: ControlConnection
            do { connection = try ControlConnection(path: socket) } catch {
                try global.fail(global.reply(AdminControl.ListIdentities(limit: 1).request, on: socket))
            }
            var rows: [IdentityInfo] = []
            var (shown, total, cursor, next) = (0, 0, after, String?.none)
            repeat {
                let page = AdminControl.ListIdentities(limit: min(AdminControl.ListIdentities.longestPage, (limit ?? .max) - shown), after: cursor)
                let reply: ControlReply
                do { reply = try connection.request(page.request) } catch { reply = global.reply(page.request, on: socket) }
                let list = try global.checked { () throws(ControlFailure) in try AdminControl.ListIdentities.data(of: reply) }
                (total, next, cursor) = (list.total, list.next, list.next)
                shown += list.identities.count
                if global.json {
                    rows += list.identities
                } else {
                    for row in list.identities { print("\(row.name)\t\(row.address)\t\(row.owner)\t\(row.hostname ?? "-")") }
                }
            } while next != nil && shown < (limit ?? .max)
            if global.json {
                print(ControlReply.ok(IdentityList(identities: rows, total: total, next: next).json).json.encodedString())
            } else if shown == 0 {
                print("no identities")
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
