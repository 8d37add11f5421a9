public import Foundation

/// One plain HTTP/1.1 request to a metrics endpoint on 127.0.0.1 and its whole answer (the
/// endpoint closes after it), for tests of `GET /metrics`.
public struct MetricsScrape: Sendable {
    /// The status code, the headers (names lowercased) and the body.
    public var status: Int
    public var headers: [String: String]
    public var body: String

    /// Sends `request` as it is (so that tests can send what no client would), reads to the end.
    public static func raw(port: UInt16, _ request: [UInt8], timeout: TimeInterval = 10) throws -> MetricsScrape {
        let socket = try LoopbackSocket.connect(to: LoopbackEndpoint(ip: [127, 0, 0, 1], port: port))
        try socket.write(request)
        var bytes: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline, socket.waitReadable(timeout: deadline.timeIntervalSinceNow) {
            let count = chunk.withUnsafeMutableBytes { recv(socket.fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            bytes += chunk[..<count]
        }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw SocketError(description: "no HTTP answer: \(text.prefix(200))") }
        let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let statusWords = lines.first?.split(separator: " ") ?? []
        guard statusWords.count >= 2, let status = Int(statusWords[1]) else { throw SocketError(description: "bad status line: \(lines.first ?? "")") }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return MetricsScrape(status: status, headers: headers, body: String(text[split.upperBound...]))
    }

    /// `GET path`.
    public static func get(port: UInt16, path: String = "/metrics", timeout: TimeInterval = 10) throws -> MetricsScrape {
        try raw(port: port, Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n".utf8), timeout: timeout)
    }

    /// The body parsed as Prometheus' text exposition format.
    public var exposition: Exposition { Exposition(parsing: body) }
}

/// Samples of Prometheus' text exposition format (0.0.4), parsed strictly enough that a
/// malformed line fails the test that reads it.
public struct Exposition: Sendable {
    /// One sample: its name, labels and value.
    public struct Sample: Sendable, Equatable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    /// Every sample, in the order written.
    public var samples: [Sample] = []
    /// Lines that are neither comments nor samples.
    public var malformed: [String] = []
    /// `# TYPE` lines: name → counter, gauge, histogram...
    public var types: [String: String] = [:]
    /// `# HELP` lines: name → text.
    public var help: [String: String] = [:]

    public init(parsing text: String) {
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let words = line.split(separator: " ")
                if words.count == 4 { types[String(words[2])] = String(words[3]) }
                continue
            }
            if line.hasPrefix("# HELP ") {
                let words = line.split(separator: " ", maxSplits: 3)
                if words.count == 4 { help[String(words[2])] = String(words[3]) }
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let sample = Self.sample(line) else {
                malformed.append(String(line))
                continue
            }
            samples.append(sample)
        }
    }

    /// The series `etc/grafana/pilot-host.json` queries whose names begin with `prefix`, as
    /// `# TYPE` names them (a histogram's `_bucket` dropped).
    public static func dashboardSeries(prefix: String) throws -> Set<String> {
        let text = try String(contentsOf: OfficialPilot.packageRoot().appendingPathComponent("etc/grafana/pilot-host.json"), encoding: .utf8)
        let names = text.matches(of: /pilot_[a-z_]+/).map { String($0.output) }.filter { $0.hasPrefix(prefix) }
        return Set(names.map { $0.hasSuffix("_bucket") ? String($0.dropLast("_bucket".count)) : $0 })
    }

    /// The value of the sample `name` whose labels include `labels`, summed over every such sample;
    /// nil when there is none.
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        let matching = samples.filter { sample in sample.name == name && labels.allSatisfy { key, value in sample.labels[key] == value } }
        return matching.isEmpty ? nil : matching.reduce(0) { $0 + $1.value }
    }

    private static func sample(_ line: Substring) -> Sample? {
        var labels: [String: String] = [:]
        let name: Substring
        let rest: Substring
        if let open = line.firstIndex(of: "{") {
            guard let close = line.lastIndex(of: "}") else { return nil }
            name = line[..<open]
            for pair in line[line.index(after: open)..<close].split(separator: ",") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, parts[1].count >= 2, parts[1].hasPrefix("\""), parts[1].hasSuffix("\"") else { return nil }
                labels[String(parts[0])] = String(parts[1].dropFirst().dropLast())
            }
            rest = line[line.index(after: close)...]
        } else {
            guard let space = line.firstIndex(of: " ") else { return nil }
            name = line[..<space]
            rest = line[space...]
        }
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }) else { return nil }
        let words = rest.split(separator: " ")
        guard (1...2).contains(words.count), let value = Double(words[0]) ?? (words[0] == "+Inf" ? Double.infinity : nil) else { return nil }
        return Sample(name: String(name), labels: labels, value: value)
    }
}
