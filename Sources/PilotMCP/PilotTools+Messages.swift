import Foundation
import PilotClient
import PilotWire

/// Messages, files and events between this identity and its peers; broadcasts to a network.
extension PilotTools {
    /// The port a broadcast goes to when none is named, as pilotctl's.
    static let broadcastPort = 1000

    static let messages: [PilotTool] = [
        PilotTool(
            name: "pilot_send",
            description: """
                Send a text message to a peer's data-exchange port (1001) and, unless wait_seconds is 0, wait for its reply. \
                Needs mutual trust (pilot_trust_check, pilot_handshake). Returns the receiver's acknowledgement and the reply.
                """,
            parameters: [
                .required("peer", .string, "The peer's hostname, node id or address."),
                .required("message", .string, "The message; plain prose is fine."),
                .optional("wait_seconds", .integer, "Seconds to wait for a reply; 0 sends without waiting (read replies later with pilot_inbox).", default: 30),
            ]
        ) { arguments, client in
            let wait = try arguments.integer("wait_seconds", default: 30, in: 0...(MessageControl.SendMessage.longestWait / 1000))
            let command = MessageControl.SendMessage(
                target: try arguments.string("peer"), data: try arguments.string("message"), wait: wait > 0 ? wait * 1000 : nil)
            return try await withTrustHint { try await client.wholeReply(of: try await client.send(command)).json }
        },
        PilotTool(
            name: "pilot_send_file",
            description: "Send a local file (read with this server's rights, at most 16 MiB) to a peer's data-exchange port (1001). Needs mutual trust.",
            parameters: [
                .required("peer", .string, "The peer's hostname, node id or address."),
                .required("path", .string, "The file's absolute path."),
            ]
        ) { arguments, client in
            let path = try arguments.string("path")
            guard let contents = FileManager.default.contents(atPath: path) else {
                throw ToolArgumentError(tool: "pilot_send_file", argument: "path", problem: "cannot be read: \(path)")
            }
            let name = URL(fileURLWithPath: path).lastPathComponent
            let peer = try arguments.string("peer")
            return try await withTrustHint { try await client.sendFile(to: peer, name: name, contents: Array(contents)).json }
        },
        PilotTool(
            name: "pilot_inbox",
            description: "The newest messages that arrived for this identity (oldest of them first), with their data.",
            parameters: [.optional("limit", .integer, "Most messages to return.", default: 10)],
            readOnly: true
        ) { arguments, client in
            let limit = try arguments.integer("limit", default: 10, in: 1...MessageControl.Inbox.longestPage)
            let messages = try await client.inbox()
            return InboxListing(messages: Array(messages.suffix(limit)), total: messages.count).json
        },
        PilotTool(
            name: "pilot_received",
            description: "The files that arrived for this identity; with clear, they are deleted after listing.",
            parameters: [.optional("clear", .boolean, "Delete them after listing.", default: false)]
        ) { arguments, client in
            ReceivedFiles(files: try await client.receivedFiles(clear: try arguments.bool("clear", default: false))).json
        },
        PilotTool(
            name: "pilot_broadcast",
            description: "Send a datagram to every other member of a custom network. Needs the registry's admin token in $PILOT_ADMIN_TOKEN of this server.",
            parameters: [
                .required("network_id", .integer, "The network's id (pilotctl network list)."),
                .required("message", .string, "The datagram's text."),
                .optional("port", .integer, "The port it goes to.", default: .int(broadcastPort)),
            ]
        ) { arguments, client in
            let network = try arguments.integer("network_id", in: 0...Int(UInt16.max))
            let port = try arguments.integer("port", default: broadcastPort, in: 1...Int(UInt16.max))
            let token = ProcessInfo.processInfo.environment["PILOT_ADMIN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            return try await client.broadcast(
                try arguments.string("message"), toNetwork: UInt16(network), port: UInt16(port), adminToken: token
            ).json
        },
        PilotTool(
            name: "pilot_publish",
            description: "Publish an event on a topic of a peer's event stream (1002). Needs mutual trust.",
            parameters: [
                .required("peer", .string, "The hostname, node id or address of the peer holding the topic."),
                .required("topic", .string, "The topic."),
                .required("message", .string, "The event's text."),
            ]
        ) { arguments, client in
            let (message, topic, peer) = (try arguments.string("message"), try arguments.string("topic"), try arguments.string("peer"))
            return try await withTrustHint { try await client.publish(message, topic: topic, to: peer).json }
        },
        PilotTool(
            name: "pilot_subscribe",
            description: "Subscribe to a topic of a peer's event stream (1002) and return the events that arrive, until count of them or the timeout.",
            parameters: [
                .required("peer", .string, "The hostname, node id or address of the peer holding the topic."),
                .required("topic", .string, "The topic (* for every topic)."),
                .optional("count", .integer, "Events to collect before returning.", default: 1),
                .optional("timeout_seconds", .integer, "Longest wait, in seconds.", default: 60),
            ],
            readOnly: true
        ) { arguments, client in
            try await client.subscribe(
                to: try arguments.string("peer"), topic: try arguments.string("topic"),
                count: try arguments.integer("count", default: 1, in: 1...10_000),
                timeout: try arguments.integer("timeout_seconds", default: 60, in: 1...3600)
            ).json
        },
    ]

    /// `send`'s result; a peer that never answered (a stream it did not accept: no trust) is
    /// said to be that, with what to check.
    static func withTrustHint(_ send: () async throws -> JSON) async throws -> JSON {
        do {
            return try await send()
        } catch let failure as ControlFailure where failure.code == .timeout && failure.message.hasPrefix("no answer") {
            throw ControlFailure(.timeout, failure.message + " (a peer that does not trust this identity never answers: pilot_trust_check)")
        }
    }
}
