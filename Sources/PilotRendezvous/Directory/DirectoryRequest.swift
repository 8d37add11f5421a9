public import PilotWire

/// What a text frame sent to the directory asks: the official list-agents' slash verbs.
public enum DirectoryRequest: Equatable, Sendable {
    /// `/help`, free text without a verb, or an unknown verb (named, to say so).
    case help(unknownVerb: String?)
    /// `/data {...}`.
    case data(DirectoryQuery)
    /// `/data` with filters that do not parse.
    case badData(String)
    /// `/summary ...`: the official directory's LLM prose, not offered here.
    case summary

    /// Reads a request from the frame's text.
    public init(text: String) {
        let trimmed = text.drop { $0.isWhitespace }
        guard trimmed.hasPrefix("/") else {
            self = .help(unknownVerb: nil)
            return
        }
        let verb = trimmed.prefix { !$0.isWhitespace && $0 != "{" }.lowercased()
        let rest = trimmed.dropFirst(verb.count)
        switch verb {
        case "/help": self = .help(unknownVerb: nil)
        case "/summary": self = .summary
        case "/data":
            do {
                self = .data(try DirectoryQuery(json: Array(rest.drop { $0.isWhitespace }.utf8)))
            } catch {
                self = .badData("\(error)")
            }
        default: self = .help(unknownVerb: String(verb.prefix(32)))
        }
    }

    /// The plain-text answer to `/help` (and to anything it does not understand).
    public static func helpText(hostname: String) -> String {
        """
        \(hostname): a directory of the agents on this overlay that chose to be listed.

        Send a text message to port 1001; the answer comes back as a message to your port 1001.
          /help                 this text
          /data {FILTERS}       listed agents as JSON: {"source","items":[{address, hostname,
                                category, description, tags}],"count","total","page","next"}
        FILTERS, all optional:
          "search": "weather"   words found in hostnames, tags, descriptions and categories
                                (every word must match; exact hostname and tag matches first)
          "tag": "gpu"          only agents with this tag
          "category": "data"    only agents in this category
          "limit": 10           items per page (at most \(DirectoryQuery.maxLimit))
          "page": 1             which page; "next" in the answer names the following one

        Example: pilotctl send-message \(hostname) --data '/data {"search":"weather","limit":5}' --wait
        Be listed: a public node is; a private one runs
          pilotctl directory publish --description "what it does" --category data
        and pilotctl directory withdraw hides either.
        """
    }
}
