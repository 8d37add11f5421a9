import PilotWire

extension Manifest {
    /// Capabilities the official schema knows.
    public static let knownCaps: Set<String> = [
        "fs.read", "fs.write", "fs.append", "fs.delete", "net.dial", "net.call", "ipc.call", "key.sign", "audit.log", "proc.exec",
    ]
    static let knownConditionKinds: Set<String> = [
        "rate", "cap", "allowlist", "denylist", "time_window", "requires_user_consent", "requires_foreground", "signed_by",
    ]
    /// Runtimes the official schema knows. Each is run the same way here: the binary is
    /// executed (a script names its interpreter in its `#!` line).
    public static let knownRuntimes: Set<String> = ["go", "bun", "node", "python"]

    /// Every way the manifest breaks the official schema, plus this host's stricter rules on
    /// the binary's path (relative, no `..`, no empty or dot components) and on `exposes`
    /// (printable names, none twice). With `requireHelp` (catalogue installs), exactly one
    /// `<ns>.help` method, as the catalogue's CI requires. Empty when valid.
    public func problems(requireHelp: Bool) -> [String] {
        var problems: [String] = []
        if !Self.isReverseDNS(id) { problems.append("id \"\(id)\" must be reverse-DNS-shaped (e.g. io.example.hello)") }
        if !Self.isSemver(appVersion) { problems.append("app_version \"\(appVersion)\" must be semver (e.g. 1.4.7)") }
        if manifestVersion < 1 { problems.append("manifest_version must be >= 1, got \(manifestVersion)") }
        if !Self.knownRuntimes.contains(binary.runtime) {
            problems.append("binary.runtime \"\(binary.runtime)\" is not one of: go, bun, node, python")
        }
        if let reason = Self.pathProblem(binary.path) { problems.append("binary.path \"\(binary.path)\" \(reason)") }
        if !Hex.isLowercase(binary.sha256, bytes: 32) { problems.append("binary.sha256 must be 64 lowercase hex digits") }
        for method in exposes where !Self.isMethodName(method) {
            problems.append("exposes: \"\(method)\" is not a method name (1 to 128 printable characters, no spaces)")
        }
        if Set(exposes).count != exposes.count { problems.append("exposes lists a method twice") }
        if requireHelp, helpMethods.count != 1 {
            problems.append("exposes must contain exactly one <namespace>.help method, has \(helpMethods.count)")
        }
        if grants.isEmpty { problems.append("manifest must declare at least one grant") }
        for (index, grant) in grants.enumerated() { problems += Self.problems(of: grant, at: index) }
        if !["", "shareable", "guarded"].contains(protection) {
            problems.append("protection \"\(protection)\" must be empty, \"shareable\" or \"guarded\"")
        }
        if !Self.isPublisherKey(store.publisher) { problems.append("store.publisher must be \"ed25519:<base64>\"") }
        if store.signature.allSatisfy(\.isWhitespace) { problems.append("store.signature must not be empty") }
        for (index, affiliate) in affiliates.enumerated() {
            if !Self.isPublisherKey(affiliate.pubkey) { problems.append("affiliates[\(index)].pubkey must be \"ed25519:<base64>\"") }
            if affiliate.role.allSatisfy(\.isWhitespace) { problems.append("affiliates[\(index)].role must not be empty") }
        }
        for (index, dependency) in depends.enumerated() {
            if !Self.isReverseDNS(dependency.app) { problems.append("depends[\(index)].app \"\(dependency.app)\" must be reverse-DNS-shaped") }
            if dependency.methods.isEmpty { problems.append("depends[\(index)].methods must not be empty") }
        }
        for (index, hook) in extends.enumerated() {
            if !Self.isHookPoint(hook.primitive) {
                problems.append("extends[\(index)].primitive \"\(hook.primitive)\" must be <command>.<pre|post>")
            }
            if hook.method.allSatisfy(\.isWhitespace) {
                problems.append("extends[\(index)].method must not be empty")
            } else if !exposes.contains(hook.method) {
                problems.append("extends[\(index)].method \"\(hook.method)\" must appear in exposes")
            }
            for (flagIndex, flag) in hook.addsFlags.enumerated() {
                if !flag.name.hasPrefix("--") { problems.append("extends[\(index)].adds_flags[\(flagIndex)].name must start with --") }
                if !["string", "bool", "int"].contains(flag.type) {
                    problems.append("extends[\(index)].adds_flags[\(flagIndex)].type \"\(flag.type)\" must be string|bool|int")
                }
            }
        }
        for (index, point) in dynamicExtends.enumerated() where !Self.isHookPoint(point) {
            problems.append("dynamic_extends[\(index)] \"\(point)\" must be <command>.<pre|post>")
        }
        return problems
    }

    /// Throws `invalidManifest` with every problem, if there is any.
    public func validate(requireHelp: Bool) throws(AppStoreError) {
        let found = problems(requireHelp: requireHelp)
        if !found.isEmpty { throw .invalidManifest(id: id, problems: found) }
    }

    /// The sideload policy (`install DIR --local`): no signature is needed, so the app may ask
    /// for little: `audit.log`, and `fs.read`/`fs.write` under `$APP/`, unconditionally; no
    /// hooks, affiliates or dependencies; never `guarded`.
    public func checkSideloadPolicy() throws(AppStoreError) {
        func refuse(_ reason: String) -> AppStoreError { .sideloadRefused(id: id, reason: reason) }
        if protection == "guarded" { throw refuse("protection \"guarded\" is reserved for catalogue apps") }
        if !extends.isEmpty { throw refuse("extends is not permitted") }
        if !dynamicExtends.isEmpty { throw refuse("dynamic_extends is not permitted") }
        if !affiliates.isEmpty { throw refuse("affiliates is not permitted") }
        if !depends.isEmpty { throw refuse("depends is not permitted") }
        for (index, grant) in grants.enumerated() {
            switch grant.cap {
            case "audit.log": break
            case "fs.read", "fs.write":
                guard Self.isUnderApp(grant.target) else { throw refuse("grants[\(index)] \(grant.cap) target \"\(grant.target)\" must be under $APP/") }
            default: throw refuse("grants[\(index)] cap \"\(grant.cap)\" is not allowed (only audit.log, fs.read, fs.write)")
            }
            if grant.condition != nil { throw refuse("grants[\(index)] carries a condition; sideloaded grants must be unconditional") }
        }
    }

    // MARK: Rules

    private static func problems(of grant: Grant, at index: Int) -> [String] {
        var problems: [String] = []
        if !knownCaps.contains(grant.cap) { problems.append("grants[\(index)].cap \"\(grant.cap)\" is not a known capability") }
        let target = grant.target.trimmingWhitespace
        if target.isEmpty {
            problems.append("grants[\(index)].target must not be empty")
        } else if grant.cap == "proc.exec", target.contains("..") || !isExecutableTarget(target) {
            problems.append("grants[\(index)].target \"\(grant.target)\" for proc.exec must be an absolute path or a bare command name")
        }
        if let condition = grant.condition { problems += self.problems(of: condition, at: "grants[\(index)].if") }
        return problems
    }

    private static func problems(of condition: Condition, at path: String) -> [String] {
        switch condition {
        case .mixed(let kind, let params, let op, let compose):
            if kind.isEmpty, params.isEmpty, op.isEmpty, compose.isEmpty { return ["\(path): must specify either kind or op"] }
            return ["\(path): cannot be both leaf (kind/params) and composite (op/compose)"]
        case .leaf(let kind, _):
            return knownConditionKinds.contains(kind) ? [] : ["\(path).kind \"\(kind)\" is not a known condition kind"]
        case .composite(let op, let compose):
            var problems: [String] = []
            switch op {
            case "and", "or": if compose.count < 2 { problems.append("\(path): \(op) needs at least 2 sub-conditions") }
            case "not": if compose.count != 1 { problems.append("\(path): not needs exactly 1 sub-condition") }
            default: problems.append("\(path).op \"\(op)\" must be and|or|not")
            }
            for (index, part) in compose.enumerated() { problems += self.problems(of: part, at: "\(path).compose[\(index)]") }
            return problems
        }
    }

    /// Lowercase segments of letters and digits (with inner `_`/`-`), at least two, dot-joined.
    static func isReverseDNS(_ text: String) -> Bool {
        let segments = text.split(separator: ".", omittingEmptySubsequences: false)
        return segments.count >= 2 && segments.allSatisfy(isIdentifierSegment)
    }

    private static func isIdentifierSegment(_ segment: Substring) -> Bool {
        guard let first = segment.utf8.first, let last = segment.utf8.last else { return false }
        func alphanumeric(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
        return alphanumeric(first) && alphanumeric(last)
            && segment.utf8.allSatisfy { alphanumeric($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// 1 to 128 printable ASCII characters without spaces: a method travels in JSON envelopes
    /// and grant targets (`<app>.<method>`), and is shown in lists.
    static func isMethodName(_ text: String) -> Bool {
        (1...128).contains(text.utf8.count) && text.utf8.allSatisfy { (0x21...0x7E).contains($0) }
    }

    private static func isHookPoint(_ text: String) -> Bool {
        let segments = text.split(separator: ".", omittingEmptySubsequences: false)
        guard segments.count >= 2, let last = segments.last, last == "pre" || last == "post" else { return false }
        return segments.dropLast().allSatisfy { segment in
            !segment.isEmpty && segment.utf8.allSatisfy {
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                    || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
            }
        }
    }

    /// x.y.z with an optional `-pre.release` of letters, digits, `.` and `-`.
    static func isSemver(_ text: String) -> Bool {
        let (core, pre) = text.split(separator: "-", maxSplits: 1).count == 2
            ? (String(text.prefix { $0 != "-" }), String(text.drop { $0 != "-" }.dropFirst()))
            : (text, nil)
        let numbers = core.split(separator: ".", omittingEmptySubsequences: false)
        guard numbers.count == 3, numbers.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) }) else { return false }
        guard let pre else { return !text.hasSuffix("-") }
        return !pre.isEmpty && pre.allSatisfy { $0.isASCIIDigit || $0.isASCIILetter || $0 == "." || $0 == "-" }
    }

    private static func isPublisherKey(_ text: String) -> Bool {
        guard text.hasPrefix("ed25519:") else { return false }
        let key = text.dropFirst("ed25519:".count)
        return key.count >= 40 && key.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "+" || $0 == "/" || $0 == "=" }
    }

    private static func isExecutableTarget(_ text: String) -> Bool {
        let body = text.hasPrefix("/") ? text.dropFirst() : Substring(text)
        return body.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { segment in
            !segment.isEmpty && segment.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "." || $0 == "_" || $0 == "-" }
        }
    }

    static func isUnderApp(_ target: String) -> Bool {
        let text = target.trimmingWhitespace
        guard text.hasPrefix("$APP/") else { return false }
        let rest = text.dropFirst("$APP/".count)
        return !rest.isEmpty && !rest.contains("..") && !rest.hasPrefix("/")
    }

    /// Why a bundle-relative path is unsafe, or nil: it must be relative, without empty, `.`
    /// or `..` components, of printable characters.
    public static func pathProblem(_ path: String) -> String? {
        if path.isEmpty { return "must not be empty" }
        if path.hasPrefix("/") { return "must be relative to the app directory" }
        if path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { return "contains control characters" }
        for component in path.split(separator: "/", omittingEmptySubsequences: false) {
            if component.isEmpty || component == "." || component == ".." { return "must not contain empty, . or .. components" }
        }
        return nil
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
    var isASCIILetter: Bool { isASCII && isLetter }
}

extension String {
    var trimmingWhitespace: String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
