import ArgumentParser
import Foundation
import PilotClient
import PilotWire

// The trust handshake and the trust list.

/// Unix seconds as a readable UTC time.
private func time(_ seconds: Int64) -> String {
    ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
}

/// Prints a trust command's status line.
private func status(_ change: TrustChange) -> String {
    "\(change.status): node \(change.nodeID)"
}

struct Handshake: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ask a node for trust, with a reason.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "An address, a node id, or a hostname.") var peer: String
    @Argument var reason: String = ""
    func run() throws {
        try global.run(TrustControl.Handshake(peer: peer, reason: reason), on: try global.identitySocket(), text: status)
    }
}

struct Pending: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Handshake requests waiting for approval.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        let socket = try global.identitySocket()
        try global.runPages(TrustControl.Pending.self, on: socket, next: \.next, join: { $0.pending += $1.pending; $0.next = $1.next }) { data in
            guard !data.pending.isEmpty else { return "no pending requests" }
            return data.pending.map { entry in "node \(entry.nodeID)  \(time(entry.receivedAt))  \(entry.justification)" }
                .joined(separator: "\n")
        }
    }
}

struct Approve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Approve a pending handshake request.")
    @OptionGroup var global: GlobalOptions
    @Argument var peer: String
    func run() throws {
        try global.run(TrustControl.Approve(peer: peer), on: try global.identitySocket(), text: status)
    }
}

struct Reject: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reject a pending handshake request.")
    @OptionGroup var global: GlobalOptions
    @Argument var peer: String
    @Argument var reason: String = ""
    func run() throws {
        try global.run(TrustControl.Reject(peer: peer, reason: reason), on: try global.identitySocket(), text: status)
    }
}

struct Untrust: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Revoke the trust of a node.")
    @OptionGroup var global: GlobalOptions
    @Argument var peer: String
    func run() throws {
        try global.run(TrustControl.Untrust(peer: peer), on: try global.identitySocket(), text: status)
    }
}

struct TrustList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "trust", abstract: "The nodes this identity trusts.")
    @OptionGroup var global: GlobalOptions
    func run() throws {
        let socket = try global.identitySocket()
        try global.runPages(TrustControl.Trusted.self, on: socket, next: \.next, join: { $0.trusted += $1.trusted; $0.next = $1.next }) { data in
            guard !data.trusted.isEmpty else { return "no trusted nodes" }
            return data.trusted.map { entry in "node \(entry.nodeID)  since \(time(entry.approvedAt))\(entry.mutual ? "  mutual" : "")" }
                .joined(separator: "\n")
        }
    }
}
