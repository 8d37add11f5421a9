import ArgumentParser
import Foundation
import PilotClient
import PilotWire

// The directory (list-agents): being listed, and searching it.

struct DirectoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "directory", abstract: "Be listed in the overlay's directory (list-agents), or search it.",
        discussion: """
            A public identity is listed unless it withdraws; a private one once it publishes. The \
            directory shows an identity's address, hostname, tags, description and category, \
            never its endpoint. Publishing needs a registry that takes set_listing (pilot-rendezvous).
            """,
        subcommands: [Publish.self, Withdraw.self, Reset.self, Search.self])

    struct Publish: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List this identity, public or private, with what it is found by.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "What it does, in at most 500 bytes (one line).") var description = ""
        @Option(help: "A category: lower-case letters, digits and inner hyphens.") var category = ""
        func run() throws { try setListing(global, DirectoryListing(choice: .published, description: description, category: category)) }
    }

    struct Withdraw: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Never list this identity, even while it is public.")
        @OptionGroup var global: GlobalOptions
        func run() throws { try setListing(global, DirectoryListing(choice: .withdrawn)) }
    }

    struct Reset: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Back to the default: listed while public, without a description.")
        @OptionGroup var global: GlobalOptions
        func run() throws { try setListing(global, DirectoryListing(choice: .automatic)) }
    }

    struct Search: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask the directory (/data) and print its answer.",
            discussion: "The same as: pilotctl send-message list-agents --data '/data {...}' --wait 10s")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Words to find in hostnames, tags, descriptions and categories.") var words: [String] = []
        @Option(help: "Only agents with this tag.") var tag: String?
        @Option(help: "Only agents in this category.") var category: String?
        @Option(help: "Items per page (at most 25).") var limit = 10
        @Option(help: "Which page.") var page = 1
        @Option(help: "The directory's hostname or address.") var agent = "list-agents"
        @Option(help: "Seconds to wait for the answer.") var timeout = 10

        func validate() throws {
            guard (1...DirectoryQuery.maxLimit).contains(limit) else { throw ValidationError("--limit must be 1 to \(DirectoryQuery.maxLimit)") }
            guard page >= 1 else { throw ValidationError("--page must be 1 or more") }
            guard (1...600).contains(timeout) else { throw ValidationError("--timeout must be 1 to 600 seconds") }
        }

        func run() throws {
            var filters: [String: JSON] = ["limit": .integer(Int64(limit)), "page": .integer(Int64(page))]
            if !words.isEmpty { filters["search"] = .string(words.joined(separator: " ")) }
            if let tag { filters["tag"] = .string(tag) }
            if let category { filters["category"] = .string(category) }
            let (answer, items) = try askDirectory(global, on: try global.identitySocket(), agent: agent, filters: filters, timeout: timeout)
            if global.json { return print(ControlReply.ok(answer).json.encodedString()) }
            for item in items {
                let tags = (item["tags"]?.arrayValue ?? []).compactMap(\.stringValue).map { "#" + $0 }.joined(separator: " ")
                let hostname = item["hostname"]?.stringValue ?? ""
                var line = "\(item["address"]?.stringValue ?? "")  \(hostname.isEmpty ? "-" : hostname)"
                if let category = item["category"]?.stringValue, !category.isEmpty { line += "  [\(category)]" }
                if !tags.isEmpty { line += "  \(tags)" }
                print(line)
                if let description = item["description"]?.stringValue, !description.isEmpty { print("    \(description)") }
            }
            let total = answer["total"]?.integerValue ?? 0
            let next = answer["next"]?.integerValue.map { ", next page: --page \($0)" } ?? ""
            print("\(items.count) of \(total)\(next)")
        }
    }
}

/// One page of the directory's answer to `/data FILTERS`, asked as `send-message AGENT --wait`
/// (the same as `pilotctl send-message list-agents --data '/data {...}' --wait 10s`). The
/// directory's rate limit (its `ERR ... rate limited`) is waited out, asking again each second,
/// 10 times at most; any other failure, or an answer that is not a page, fails with its words.
func askDirectory(
    _ global: GlobalOptions, on socket: String, agent: String, filters: [String: JSON], timeout: Int
) throws -> (page: JSON, items: [JSON]) {
    let question = MessageControl.SendMessage(target: agent, data: "/data " + JSON.object(filters).encodedString(), wait: timeout * 1000)
    var attempts = 0
    while true {
        attempts += 1
        let reply = global.reply(question.request, on: socket)
        if case .error(let failure) = reply, failure.message.contains("rate limited"), attempts < 10 {
            Thread.sleep(forTimeInterval: 1)
            continue
        }
        let sent = try global.call(question, replied: reply)
        // A large page is listed without its data: read whole.
        guard let message = try sent.reply.map({ try global.whole($0, on: socket) }), let text = message.text else {
            try global.fail(.error(ControlFailure(.timeout, "\(agent) did not answer within \(timeout) s")))
        }
        guard let answer = try? JSON(parsing: Array(text.utf8)), let items = answer["items"]?.arrayValue else {
            try global.fail(.error(ControlFailure(.invalidArgument, "\(agent): \(text)")))
        }
        return (answer, items)
    }
}

/// Sends `set-listing` and prints the registry's answer.
private func setListing(_ global: GlobalOptions, _ listing: DirectoryListing) throws {
    try global.run(IdentityControl.SetListing(listing), on: try global.identitySocket()) { data in
        let listed = data["listed"]?.boolValue == true
        return listed ? "listed in the directory" + (listing.description.isEmpty ? "" : ": \(listing.description)") : "not listed in the directory"
    }
}
