import Foundation
import PilotRendezvous
import PilotStore
import PilotWire

/// The directory's search at scale: `nodes` listed nodes (public or published, with hostnames,
/// tags, a category and a description of words drawn from a vocabulary) written into a
/// registry's `registry.db` beside a registry that made its tables, then questions of each kind
/// asked of `DirectoryIndex` `queries` times: latency p50 and p99, and the matches found.
struct DirectoryBench {
    let nodes: Int
    let queries: Int

    func run() {
        do { try measure() } catch {
            print("pilot-bench directory: \(error)")
            exit(1)
        }
    }

    private func measure() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("pilot-bench-directory-\(getpid())")
        defer { try? FileManager.default.removeItem(at: work) }
        let registry = try Registry(stateDirectory: work.path)
        var random = SplitMix64(seed: 17)
        // A vocabulary with a long tail, as real descriptions have: word k is drawn with weight ~1/k.
        let vocabulary = (0..<5000).map { "w\($0)" } + ["weather", "forecast", "translate", "vision", "ocr", "search", "finance", "maps"]
        func word() -> String {
            let u = Double(random.next() % 1_000_000) / 1_000_000
            return vocabulary[min(vocabulary.count - 1, Int(pow(Double(vocabulary.count), u)) - 1)]
        }
        let tags = (0..<100).map { "tag\($0)" } + ["gpu", "weather", "llm"]
        let categories = ["data", "vision", "language", "finance", "maps", "tools", "search", "audio", "code", "misc"]
        let started = Date()
        let database = try Database(path: registry.databasePath)
        try database.transaction {
            for index in 0..<nodes {
                let description = (0..<12).map { _ in word() }.joined(separator: " ")
                let nodeTags = (0..<3).map { _ in tags[Int(random.next() % UInt64(tags.count))] }
                let published = index % 4 == 0
                try database.run(
                    """
                    INSERT INTO node (id, public_key, hostname, tags, public, online, listing, description, category, listed)
                    VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, 1)
                    """,
                    [
                        .integer(Int64(index + 1)), .blob((0..<32).map { _ in UInt8(truncatingIfNeeded: random.next()) }), .text("agent-\(index)"),
                        .text(Array(Set(nodeTags)).sorted().joined(separator: ",")), .integer(published ? 0 : 1),
                        .text(published ? "published" : ""), .text(description), .text(categories[index % categories.count]),
                    ])
            }
        }
        print(String(format: "%d listed nodes written and indexed in %.1f s", nodes, Date().timeIntervalSince(started)))
        let index = try DirectoryIndex(path: registry.databasePath)
        let kinds: [(String, DirectoryQuery)] = [
            ("common word", DirectoryQuery(search: "w0")),
            ("rare word", DirectoryQuery(search: "weather")),
            ("prefix", DirectoryQuery(search: "w12")),
            ("two words", DirectoryQuery(search: "w0 w1")),
            ("exact hostname", DirectoryQuery(search: "agent-4242")),
            ("tag only", DirectoryQuery(tag: "gpu")),
            ("category only", DirectoryQuery(category: "vision")),
            ("word + category", DirectoryQuery(search: "w3", category: "data")),
            ("no filter, page 1", DirectoryQuery()),
            ("no filter, page 1000", DirectoryQuery(limit: 10, page: 1000)),
        ]
        print("query                   matches      p50 ms    p99 ms")
        for (name, query) in kinds {
            var times: [Double] = []
            var total = 0
            for _ in 0..<queries {
                let start = DispatchTime.now().uptimeNanoseconds
                total = try index.search(query, source: "list-agents").total
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            }
            times.sort()
            print(
                name.padding(toLength: 22, withPad: " ", startingAt: 0)
                    + String(format: "%9d %10.2f %9.2f", total, times[times.count / 2], times[min(times.count - 1, times.count * 99 / 100)]))
        }
    }
}
