/// What a node tells the directory about itself (`set_listing`, our registry extension): whether
/// it is listed, and the words it is found by.
///
/// A public node is listed unless it withdrew; a private one only once it published. Nothing of
/// a node's endpoint is ever listed.
public struct DirectoryListing: Hashable, Sendable {
    /// The node's choice.
    public enum Choice: String, Sendable, CaseIterable {
        /// Listed while it is public (the default).
        case automatic = ""
        /// Listed, public or private.
        case published
        /// Never listed.
        case withdrawn
    }

    /// At most this many bytes of UTF-8 in a description.
    public static let maxDescription = 500

    public var choice: Choice
    /// Free text, at most `maxDescription` bytes, no control characters.
    public var description: String
    /// A label (lower-case letters, digits, inner hyphens, at most 32), or empty.
    public var category: String

    /// A listing; `validated()` checks it.
    public init(choice: Choice, description: String = "", category: String = "") {
        self.choice = choice
        self.description = description
        self.category = category
    }

    /// This listing with its category lower-cased and its description trimmed; throws naming
    /// what breaks a rule.
    public func validated() throws(WireError) -> DirectoryListing {
        var listing = self
        listing.category = category.lowercased()
        listing.description = description.trimmed
        guard listing.description.utf8.count <= Self.maxDescription else {
            throw .oversized(field: "description", limit: Self.maxDescription, actual: listing.description.utf8.count)
        }
        guard !listing.description.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .invalidValue(field: "description", reason: "must not hold control characters (newlines, tabs...)")
        }
        guard listing.category.isEmpty || RegistryMessage.isLabel(listing.category, maxLength: 32) else {
            throw .invalidValue(field: "category", reason: "lower-case letters, digits and inner hyphens, at most 32")
        }
        return listing
    }
}

/// A `/data` request to the directory: `{"search": WORD, "tag": T, "category": C, "limit": N,
/// "page": P}`, every key optional. Unknown keys are ignored, as the official directory does.
public struct DirectoryQuery: Hashable, Sendable {
    /// Items per page when `limit` is not given, and the most a page holds.
    public static let defaultLimit = 10
    public static let maxLimit = 25
    /// Words of `search` used (the rest ignored), and their longest.
    public static let maxWords = 8
    public static let maxWordLength = 64

    /// The search words, lower-cased: letters and digits only.
    public var words: [String]
    /// The search as given, lower-cased and trimmed (for exact hostname and tag matches).
    public var search: String
    public var tag: String?
    public var category: String?
    public var limit: Int
    /// 1-based.
    public var page: Int

    /// A query; `words` are taken from `search`.
    public init(search: String = "", tag: String? = nil, category: String? = nil, limit: Int = Self.defaultLimit, page: Int = 1) {
        self.search = search.trimmed.lowercased()
        words = Array(Self.words(in: self.search).prefix(Self.maxWords))
        self.tag = tag.map { RegistryMessage.storedTag($0.trimmed.lowercased()) }
        self.category = category.map { $0.trimmed.lowercased() }
        self.limit = limit
        self.page = page
    }

    /// Parses the JSON after `/data`; throws naming the bad key.
    public init(json text: some Collection<UInt8>) throws(WireError) {
        let json = text.isEmpty ? JSON.object([:]) : try JSON(parsing: text)
        guard case .object = json else { throw .invalidValue(field: "/data", reason: "takes a JSON object, such as {\"search\":\"weather\",\"limit\":10}") }
        func string(_ key: String) throws(WireError) -> String? {
            guard let value = json[key], value != .null else { return nil }
            guard let text = value.stringValue else { throw .invalidValue(field: key, reason: "must be a string") }
            return text
        }
        func integer(_ key: String, _ range: ClosedRange<Int>, _ fallback: Int) throws(WireError) -> Int {
            guard let value = json[key], value != .null else { return fallback }
            guard let number = value.integerValue, let int = Int(exactly: number), range.contains(int) else {
                throw .invalidValue(field: key, reason: "must be an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            return int
        }
        self.init(
            search: try string("search") ?? "", tag: try string("tag"), category: try string("category"),
            limit: try integer("limit", 1...1000, Self.defaultLimit), page: try integer("page", 1...1_000_000, 1))
        limit = min(limit, Self.maxLimit)
    }

    /// Letter-and-digit runs of `text`, each at most `maxWordLength`.
    static func words(in text: String) -> [String] {
        var words: [String] = []
        var current = ""
        for character in text {
            if character.isLetter || character.isNumber {
                current.append(character)
            } else if !current.isEmpty {
                words.append(String(current.prefix(maxWordLength)))
                current = ""
            }
        }
        if !current.isEmpty { words.append(String(current.prefix(maxWordLength))) }
        return words
    }
}

/// One listed node, as the directory shows it: never its endpoint.
public struct DirectoryItem: Hashable, Sendable {
    public var address: Address
    public var hostname: String?
    public var tags: [String]
    public var description: String
    public var category: String

    public init(address: Address, hostname: String?, tags: [String], description: String, category: String) {
        self.address = address
        self.hostname = hostname
        self.tags = tags
        self.description = description
        self.category = category
    }

    /// `{address, hostname, category, description, tags}`.
    public var json: JSON {
        .object([
            "address": .string(address.description), "hostname": .string(hostname ?? ""), "category": .string(category),
            "description": .string(description), "tags": .array(tags.map(JSON.string)),
        ])
    }
}

/// The directory's answer to `/data`, as the official list-agents shapes it:
/// `{"source":"list-agents","items":[...],"count":n,"total":n,"page":p,"next":p+1 or null}`.
public struct DirectoryPage: Hashable, Sendable {
    public var source: String
    public var items: [DirectoryItem]
    /// Matches in all.
    public var total: Int
    public var page: Int
    /// The next page's number, if there are more.
    public var next: Int?
    /// `total` counts only the matches that were ranked (`DirectoryIndex.rankedMatches`): a word
    /// in too many listings, with a filter.
    public var truncated: Bool

    public init(source: String, items: [DirectoryItem], total: Int, page: Int, next: Int?, truncated: Bool = false) {
        self.source = source
        self.items = items
        self.total = total
        self.page = page
        self.next = next
        self.truncated = truncated
    }

    public var json: JSON {
        var fields: [String: JSON] = [
            "source": .string(source), "items": .array(items.map(\.json)), "count": .integer(Int64(items.count)),
            "total": .integer(Int64(total)), "page": .integer(Int64(page)), "next": next.map { .integer(Int64($0)) } ?? .null,
        ]
        if truncated { fields["truncated"] = true }
        return .object(fields)
    }

    /// The most bytes a page can take once encoded: `maxLimit` items of the longest fields, each
    /// character escaped (`\u00XX`), and the envelope. A reply always fits one frame whole.
    public static let maxEncodedSize = 4096 + DirectoryQuery.maxLimit * (6 * (DirectoryListing.maxDescription + 63 + 32 + 10 * 33) + 256)
}

extension String {
    /// Without leading and trailing white space.
    fileprivate var trimmed: String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
