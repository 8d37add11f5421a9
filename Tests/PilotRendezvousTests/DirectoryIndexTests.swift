import Foundation
import PilotCrypto
import PilotRendezvous
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

/// The directory's listing (`set_listing`) and search (`DirectoryIndex`, FTS5 in registry.db):
/// who is listed, in which order, page by page; nothing of a private node unless it published.
final class DirectoryIndexTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private var nonce: Int64 = 0

    override func setUpWithError() throws { directory = try TemporaryDirectory(prefix: "pilot-directory") }
    override func tearDown() { directory.remove() }

    private func registered(_ registry: Registry, hostname: String, tags: [String] = [], isPublic: Bool) throws -> TestNode {
        var node = try TestNode()
        let reply = registry.handle(node.register(), peerIP: "127.0.0.1")
        node.id = try reply.nodeID("node_id")
        XCTAssertEqual(change(registry, node, "set_hostname", ["hostname": .string(hostname)], values: hostname).type, "set_hostname_ok")
        if !tags.isEmpty {
            XCTAssertEqual(change(registry, node, "set_tags", ["tags": .array(tags.map(JSON.string))], values: tags.joined(separator: ",")).type, "set_tags_ok")
        }
        if isPublic { XCTAssertEqual(change(registry, node, "set_visibility", ["public": true], values: "public").type, "set_visibility_ok") }
        return node
    }

    /// A change signed our way (values and a nonce).
    private func change(_ registry: Registry, _ node: TestNode, _ type: String, _ fields: [String: JSON], values: String) -> RegistryMessage {
        nonce += 1
        var all = fields
        all["node_id"] = .integer(Int64(node.id))
        all["nonce"] = .integer(nonce)
        return registry.handle(node.signed(type, SignedChange.text(type: type, node: node.id, nonce: nonce, values: values), all), peerIP: "127.0.0.1")
    }

    private func list(_ registry: Registry, _ node: TestNode, _ listing: DirectoryListing) -> RegistryMessage {
        change(
            registry, node, "set_listing",
            ["listing": .string(listing.choice.rawValue), "description": .string(listing.description), "category": .string(listing.category)],
            values: "\(listing.choice.rawValue):\(listing.category):\(listing.description)")
    }

    private func hostnames(_ page: DirectoryPage) -> [String] { page.items.map { $0.hostname ?? "-" } }

    /// The nodes both tests below list: some public, one published, one private, one withdrawn.
    @discardableResult
    private func listSome(in registry: Registry) throws -> (forecaster: TestNode, weather: TestNode, chaser: TestNode) {
        let forecaster = try registered(registry, hostname: "forecaster", tags: ["forecast"], isPublic: false)
        XCTAssertEqual(list(registry, forecaster, DirectoryListing(choice: .published, description: "Weather forecasts by region, hourly", category: "data"))["listed"], true)
        let weather = try registered(registry, hostname: "weather", tags: ["maps"], isPublic: true)
        let chaser = try registered(registry, hostname: "storm-chaser", tags: ["weather", "gpu"], isPublic: true)
        _ = try registered(registry, hostname: "secret-weather", tags: ["weather"], isPublic: false)
        let hidden = try registered(registry, hostname: "hidden-weather", tags: ["weather"], isPublic: true)
        XCTAssertEqual(list(registry, hidden, DirectoryListing(choice: .withdrawn))["listed"], false)
        _ = try registered(registry, hostname: "unrelated", isPublic: true)
        return (forecaster, weather, chaser)
    }

    /// Questions whose answers both stores must give alike.
    private static let questions = [
        DirectoryQuery(search: "weather"), DirectoryQuery(search: "forec"), DirectoryQuery(search: "hourly weather"), DirectoryQuery(tag: "#gpu"),
        DirectoryQuery(search: "weather", category: "data"), DirectoryQuery(search: "!!!"), DirectoryQuery(), DirectoryQuery(limit: 3),
        DirectoryQuery(limit: 3, page: 2),
    ]

    func testOnlyListedNodesAreFoundRankedExactHostnameAndTagFirst() throws {
        let registry = try Registry(stateDirectory: directory.path("state"))
        let index = try DirectoryIndex(path: registry.databasePath)
        let forecaster = try listSome(in: registry).forecaster

        let found = try index.search(DirectoryQuery(search: "weather"), source: "list-agents")
        XCTAssertEqual(hostnames(found), ["weather", "storm-chaser", "forecaster"], "exact hostname, then exact tag, then text")
        XCTAssertEqual(found.total, 3)
        XCTAssertNil(found.next)
        XCTAssertEqual(found.items.last?.description, "Weather forecasts by region, hourly")
        XCTAssertEqual(found.items.last?.category, "data")
        XCTAssertEqual(found.items.last?.address, Address(node: forecaster.id))
        XCTAssertEqual(hostnames(try index.search(DirectoryQuery(search: "forec"), source: "d")), ["forecaster"], "a word matches by its prefix")
        XCTAssertEqual(hostnames(try index.search(DirectoryQuery(search: "hourly weather"), source: "d")), ["forecaster"], "every word must match")
        XCTAssertEqual(hostnames(try index.search(DirectoryQuery(tag: "#gpu"), source: "d")), ["storm-chaser"])
        XCTAssertEqual(hostnames(try index.search(DirectoryQuery(search: "weather", category: "data"), source: "d")), ["forecaster"])
        XCTAssertEqual(try index.search(DirectoryQuery(search: "!!!"), source: "d").total, 0, "no word: nothing")
        // No search: every listed node, by hostname.
        let all = try index.search(DirectoryQuery(), source: "d")
        XCTAssertEqual(hostnames(all), ["forecaster", "storm-chaser", "unrelated", "weather"])
        // Paged.
        let first = try index.search(DirectoryQuery(limit: 3), source: "d")
        XCTAssertEqual(first.next, 2)
        let second = try index.search(DirectoryQuery(limit: 3, page: 2), source: "d")
        XCTAssertEqual(hostnames(first) + hostnames(second), hostnames(all))
        XCTAssertNil(second.next)
        // The JSON as the official directory shapes it, and nothing of any endpoint.
        let json = found.json
        XCTAssertEqual(json["source"], "list-agents")
        XCTAssertEqual(json["count"], 3)
        XCTAssertEqual(Set(json["items"]?.arrayValue?.first?.objectValue?.keys.map { $0 } ?? []), ["address", "hostname", "category", "description", "tags"])
        XCTAssertFalse(json.encodedString().contains("127.0.0.1"))
        XCTAssertNoThrow(try Database(path: registry.databasePath).execute("INSERT INTO node_search (node_search) VALUES ('integrity-check')"))
    }

    /// A registry on PostgreSQL keeps no registry.db: its directory searches a copy of the
    /// listings (`DirectoryMirror`), which answers every question as registry.db does, and
    /// follows listings that change, nodes withdrawn and nodes gone.
    func testARegistryOnPostgreSQLIsSearchedThroughACopyThatAnswersAlikeAndFollowsItsChanges() throws {
        if let reason = PostgresServer.unavailableReason { throw XCTSkip(reason) }
        let postgres = try PostgresServer()
        defer { postgres.remove() }
        let sqlite = try Registry(stateDirectory: directory.path("state"))
        let registry = try Registry(postgres: try PostgresRegistryStore(location: try PostgresLocation(parsing: postgres.url())))
        try listSome(in: sqlite)
        let (forecaster, weather, chaser) = try listSome(in: registry)
        let mirror = try DirectoryMirror(path: directory.path("directory-index.db"), registry: registry)
        let copy = try DirectoryIndex(path: mirror.path)
        let original = try DirectoryIndex(path: sqlite.databasePath)
        for question in Self.questions {
            let (expected, found) = (try original.search(question, source: "d"), try copy.search(question, source: "d"))
            XCTAssertEqual(hostnames(found), hostnames(expected), "\(question)")
            XCTAssertEqual(found.total, expected.total, "\(question)")
            XCTAssertEqual(found.next, expected.next, "\(question)")
        }
        XCTAssertEqual(hostnames(try copy.search(DirectoryQuery(search: "weather"), source: "d")), ["weather", "storm-chaser", "forecaster"])

        // Changes reach the copy at its next catch-up: a new description, a withdrawal, a node
        // gone offline, a new listing.
        XCTAssertEqual(list(registry, forecaster, DirectoryListing(choice: .published, description: "Tide tables", category: "data")).type, "set_listing_ok")
        XCTAssertEqual(list(registry, weather, DirectoryListing(choice: .withdrawn)).type, "set_listing_ok")
        let gone = registry.handle(chaser.signed("deregister", "deregister:\(chaser.id)", ["node_id": .integer(Int64(chaser.id))]), peerIP: "127.0.0.1")
        XCTAssertEqual(gone.type, "deregister_ok", gone.json.encodedString())
        _ = try registered(registry, hostname: "tide-watcher", tags: ["weather"], isPublic: true)
        XCTAssertEqual(hostnames(try copy.search(DirectoryQuery(search: "weather"), source: "d")), ["weather", "storm-chaser", "forecaster"], "not yet caught up")
        try mirror.catchUp()
        XCTAssertEqual(hostnames(try copy.search(DirectoryQuery(search: "weather"), source: "d")), ["tide-watcher"])
        XCTAssertEqual(hostnames(try copy.search(DirectoryQuery(search: "tide"), source: "d")), ["tide-watcher", "forecaster"], "the hostname weighs more")
        XCTAssertEqual(hostnames(try copy.search(DirectoryQuery(), source: "d")), ["forecaster", "tide-watcher", "unrelated"])
        XCTAssertNoThrow(try Database(path: mirror.path).execute("INSERT INTO node_search (node_search) VALUES ('integrity-check')"))
    }

    func testAListingIsChangedWithdrawnAndKeptAcrossARestart() throws {
        var node: TestNode
        do {
            let registry = try Registry(stateDirectory: directory.path("state"))
            node = try registered(registry, hostname: "ocr", isPublic: false)
            XCTAssertEqual(list(registry, node, DirectoryListing(choice: .published, description: "Reads text from images", category: "vision"))["listed"], true)
            XCTAssertEqual(list(registry, node, DirectoryListing(choice: .published, description: "Reads text and tables from images", category: "vision")).type, "set_listing_ok")
        }
        let registry = try Registry(stateDirectory: directory.path("state"))
        let index = try DirectoryIndex(path: registry.databasePath)
        XCTAssertEqual(hostnames(try index.search(DirectoryQuery(search: "tables"), source: "d")), ["ocr"], "the new words, after a restart")
        XCTAssertEqual(try index.search(DirectoryQuery(search: "text"), source: "d").total, 1)
        XCTAssertEqual(list(registry, node, DirectoryListing(choice: .automatic)).type, "set_listing_ok")
        XCTAssertEqual(try index.search(DirectoryQuery(), source: "d").total, 0, "private and no longer published")
        // Refused: the 1.18 form (no values signed), a bad category, a description too long or with a newline.
        let legacy = node.signed("set_listing", "set_listing:\(node.id)", [
            "node_id": .integer(Int64(node.id)), "listing": "published", "description": "x", "category": "",
        ])
        XCTAssertEqual(registry.handle(legacy, peerIP: "127.0.0.1").type, "error")
        XCTAssertEqual(list(registry, node, DirectoryListing(choice: .published, category: "Not A Label!")).type, "error")
        XCTAssertEqual(list(registry, node, DirectoryListing(choice: .published, description: String(repeating: "x", count: 501))).type, "error")
        XCTAssertEqual(list(registry, node, DirectoryListing(choice: .published, description: "two\nlines")).type, "error")
        XCTAssertEqual(try index.search(DirectoryQuery(), source: "d").total, 0)
        // The index agrees with `node` after every change (FTS5 checks it against its content).
        XCTAssertNoThrow(try Database(path: registry.databasePath).execute("INSERT INTO node_search (node_search) VALUES ('integrity-check')"))
    }

    /// A word in more listings than are ranked: the count stays exact, the exact hostname and the
    /// exact tag still come first wherever they sit, and a filter says it counted the ranked only.
    func testAWordInTooManyListingsIsRankedWithinItsBound() throws {
        let registry = try Registry(stateDirectory: directory.path("state"))
        let database = try Database(path: registry.databasePath)
        let count = DirectoryIndex.rankedMatches + 1000
        try database.transaction {
            for id in 1...count {
                // The last two carry the search as their hostname and as a tag: beyond the bound by id.
                let hostname = id == count ? "common" : "agent-\(id)"
                let tags = id == count - 1 ? "common" : "misc"
                try database.run(
                    "INSERT INTO node (id, public_key, hostname, tags, public, online, description, category, listed) VALUES (?, ?, ?, ?, 1, 1, 'a common word', 'data', 1)",
                    [.integer(Int64(id)), .blob(Array(repeating: UInt8(id % 256), count: 31) + [UInt8(id / 256)]), .text(hostname), .text(tags)])
            }
        }
        let index = try DirectoryIndex(path: registry.databasePath)
        let page = try index.search(DirectoryQuery(search: "common", limit: 3), source: "d")
        XCTAssertEqual(page.total, count, "the count is the index's, exact")
        XCTAssertEqual(page.items.map(\.address.node), [UInt32(count), UInt32(count - 1), 1])
        XCTAssertEqual(page.next, 2)
        XCTAssertFalse(page.truncated)
        let filtered = try index.search(DirectoryQuery(search: "common", category: "data", limit: 3), source: "d")
        XCTAssertTrue(filtered.truncated)
        XCTAssertEqual(filtered.items.first?.address.node, UInt32(count))
        XCTAssertNil(try index.search(DirectoryQuery(search: "common", limit: 25, page: 201), source: "d").next, "no page past the ranked")
    }

    func testQuestionsAreReadAsTheOfficialDirectoryReadsThem() {
        XCTAssertEqual(DirectoryRequest(text: "/help"), .help(unknownVerb: nil))
        XCTAssertEqual(DirectoryRequest(text: "what can you do?"), .help(unknownVerb: nil), "free text gets the help")
        XCTAssertEqual(DirectoryRequest(text: "/frobnicate"), .help(unknownVerb: "/frobnicate"))
        XCTAssertEqual(DirectoryRequest(text: "/summary {}"), .summary)
        XCTAssertEqual(DirectoryRequest(text: "/data {\"search\":\"Weather\",\"limit\":100,\"page\":2}"), .data(DirectoryQuery(search: "weather", limit: 25, page: 2)))
        XCTAssertEqual(DirectoryRequest(text: "/data"), .data(DirectoryQuery()))
        XCTAssertEqual(DirectoryRequest(text: "/data{\"tag\":\"#GPU\"}"), .data(DirectoryQuery(tag: "gpu")))
        guard case .badData = DirectoryRequest(text: "/data {\"limit\":\"ten\"}") else { return XCTFail("a string limit is refused") }
        guard case .badData = DirectoryRequest(text: "/data [1]") else { return XCTFail("not an object") }
        guard case .badData = DirectoryRequest(text: "/data {nope") else { return XCTFail("not JSON") }
    }

    /// The largest page the rules allow still fits `maxEncodedSize`.
    func testTheLargestPageFitsItsBound() throws {
        let description = String(repeating: "\u{1}", count: 0) + String(repeating: "\"", count: DirectoryListing.maxDescription)
        let item = DirectoryItem(
            address: Address(node: .max), hostname: String(repeating: "h", count: 63), tags: (0..<10).map { _ in String(repeating: "t", count: 32) },
            description: description, category: String(repeating: "c", count: 32))
        let page = DirectoryPage(source: "list-agents", items: Array(repeating: item, count: DirectoryQuery.maxLimit), total: .max, page: .max, next: .max)
        XCTAssertLessThanOrEqual(page.json.encodedString().utf8.count, DirectoryPage.maxEncodedSize)
    }
}
