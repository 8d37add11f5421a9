import PilotClient
import PilotWire

/// The directory's pattern (search, then help, then data), each a text message to an agent
/// and its reply, waited for as `pilotctl send-message --wait` waits.
extension PilotTools {
    /// The hostname of the directory agent that answers searches.
    public static let directoryAgent = "list-agents"
    /// Seconds a directory question waits for its reply (`--wait` alone).
    static let replyWait = 30
    /// Seconds a summary waits: agents that synthesise take longer.
    static let summaryWait = 60

    static let directory: [PilotTool] = [
        PilotTool(
            name: "pilot_search",
            description: """
                Search the directory of specialist agents (the agent "\(directoryAgent)") for a keyword. It matches \
                literal words of the agents' descriptions: use one short word (weather, bitcoin, papers), not a phrase. \
                Returns the directory's reply: hostnames and what each agent does. Then pilot_help an agent, then pilot_query it.
                """,
            parameters: [
                .required("keyword", .string, "One short word to look for; try a synonym when nothing matches."),
                .optional("limit", .integer, "Most agents to return.", default: 10),
            ],
            readOnly: true
        ) { arguments, client in
            let query: JSON = ["search": .string(try arguments.string("keyword")), "limit": .integer(Int64(try arguments.integer("limit", default: 10, in: 1...1000)))]
            return .string(try await client.ask(directoryAgent, "/data " + query.encodedString(), waitingSeconds: replyWait))
        },
        PilotTool(
            name: "pilot_help",
            description: "Ask an agent what it answers and how (it is sent /help); returns its reply, which names the filters pilot_query takes.",
            parameters: [.required("agent", .string, "The agent's hostname (from pilot_search), or a node id or address.")],
            readOnly: true
        ) { arguments, client in
            .string(try await client.ask(try arguments.string("agent"), "/help", waitingSeconds: replyWait))
        },
        PilotTool(
            name: "pilot_query",
            description: "Ask an agent for data (it is sent /data with the filters as JSON); returns its reply. pilot_help says which filters it takes.",
            parameters: [
                .required("agent", .string, "The agent's hostname, or a node id or address."),
                .optional("filters", .object, "The filters its /help reply documents; {} for its default answer. Give a limit to agents that list.", default: [:]),
            ],
            readOnly: true
        ) { arguments, client in
            let filters = JSON.object(try arguments.object("filters", default: [:]))
            return .string(try await client.ask(try arguments.string("agent"), "/data " + filters.encodedString(), waitingSeconds: replyWait))
        },
        PilotTool(
            name: "pilot_summary",
            description: "Ask an agent for a summary in prose (it is sent /summary, with the question if given); waits up to 60 s for its reply.",
            parameters: [
                .required("agent", .string, "The agent's hostname, or a node id or address."),
                .optional("question", .string, "A question to steer the summary."),
            ],
            readOnly: true
        ) { arguments, client in
            let question = try arguments.optionalString("question")
            return .string(try await client.ask(try arguments.string("agent"), question.map { "/summary " + $0 } ?? "/summary", waitingSeconds: summaryWait))
        },
    ]
}
