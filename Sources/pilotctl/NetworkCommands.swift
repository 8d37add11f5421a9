import ArgumentParser
import Foundation
import PilotClient
import PilotWire

/// The admin token, where 1.18's pilotctl looks for it: `$PILOT_ADMIN_TOKEN`, else `admin_token`
/// in `~/.pilot/config.json`. Without one, the command stops here as 1.18's does.
func adminToken(json: Bool) throws -> String {
    let environment = ProcessInfo.processInfo.environment
    if let token = environment["PILOT_ADMIN_TOKEN"], !token.isEmpty { return token }
    let home = environment["HOME"] ?? NSHomeDirectory()
    if let bytes = FileManager.default.contents(atPath: home + "/.pilot/config.json"),
        let token = (try? JSON(parsing: Array(bytes)))?["admin_token"]?.stringValue, !token.isEmpty
    {
        return token
    }
    try exitWithError(
        code: ControlErrorCode.authRequired.rawValue, "admin token required for this operation",
        hint: "set PILOT_ADMIN_TOKEN env var or admin_token in ~/.pilot/config.json", json: json)
}

struct Broadcast: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a datagram to every member of a custom network (needs the admin token: $PILOT_ADMIN_TOKEN or admin_token in ~/.pilot/config.json).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The network id.") var networkID: Int
    @Argument var message: String
    @Option var port = 1000

    func run() throws {
        let token = try adminToken(json: global.json)
        let request = NetworkControl.Broadcast(
            networkID: try global.networkID(networkID, for: NetworkControl.Broadcast.self),
            port: try global.port(port, for: NetworkControl.Broadcast.self), data: message, adminToken: token)
        try global.run(request, on: try global.identitySocket()) { sent in
            "broadcast on network \(sent.networkID) port \(sent.port) (\(sent.bytes) bytes)"
        }
    }
}

struct NetworkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "network", abstract: "Custom networks in the registry: list, join, leave, members, create.",
        subcommands: [List.self, Join.self, Leave.self, Members.self, Create.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The registry's networks.")
        @OptionGroup var global: GlobalOptions
        func run() throws {
            try global.run(NetworkControl.List(), on: try global.identitySocket()) { data in
                let rows = data.networks.map { network in
                    ["\(network.id ?? 0)", network.name ?? "", network.joinRule ?? "", "\(network.members ?? 0)"]
                }
                return table(["ID", "NAME", "JOIN RULE", "MEMBERS"], rows)
            }
        }
    }

    struct Join: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Join a network (with its token if it has the token rule).")
        @OptionGroup var global: GlobalOptions
        @Argument var networkID: Int
        @Option var token: String?
        func run() throws {
            let request = NetworkControl.Join(networkID: try global.networkID(networkID, for: NetworkControl.Join.self), token: token)
            try global.run(request, on: try global.identitySocket()) { data in
                "joined network \(data.networkID ?? 0)"
            }
        }
    }

    struct Leave: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Leave a network.")
        @OptionGroup var global: GlobalOptions
        @Argument var networkID: Int
        func run() throws {
            let request = NetworkControl.Leave(networkID: try global.networkID(networkID, for: NetworkControl.Leave.self))
            try global.run(request, on: try global.identitySocket()) { data in
                "left network \(data.networkID ?? 0)"
            }
        }
    }

    struct Members: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The members of a network.")
        @OptionGroup var global: GlobalOptions
        @Argument var networkID: Int
        func run() throws {
            let token = ProcessInfo.processInfo.environment["PILOT_ADMIN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            let request = NetworkControl.Members(networkID: try global.networkID(networkID, for: NetworkControl.Members.self), adminToken: token)
            try global.run(request, on: try global.identitySocket()) { data in
                let rows = data.nodes.map { node in
                    ["\(node.nodeID ?? 0)", node.hostname ?? "-", node.version ?? "-", node.isPublic == true ? "yes" : "no"]
                }
                return table(["NODE ID", "HOSTNAME", "VERSION", "PUBLIC"], rows)
            }
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a network in the registry (needs the registry's admin token); this identity is its first member.")
        @OptionGroup var global: GlobalOptions
        @Option var name: String
        @Option(help: "open or token.") var joinRule = "open"
        @Option(help: "The token members join with (join rule token).") var token: String?
        func run() throws {
            let request = NetworkControl.Create(network: name, joinRule: joinRule, adminToken: try adminToken(json: global.json), token: token)
            try global.run(request, on: try global.identitySocket()) { data in
                "created network \(data.networkID ?? 0) (\(data.name ?? name))"
            }
        }
    }
}

/// Rows under a header, in columns as wide as their widest cell.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
        row.enumerated().map { $0.element.padding(toLength: widths[$0.offset] + 2, withPad: " ", startingAt: 0) }.joined()
            .trimmingCharacters(in: .whitespaces)
    }.joined(separator: "\n")
}
