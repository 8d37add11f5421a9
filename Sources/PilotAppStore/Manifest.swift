public import PilotWire

/// An app's `manifest.json`, the official app store's schema: who published it, which binary
/// (pinned by its SHA-256), what it exposes, and the grants it asks for. Decoded as the official
/// store decodes it (unknown members ignored); `validate()` applies the schema's rules and
/// `ManifestSignature` checks the publisher's signature.
public struct Manifest: Hashable, Sendable {
    /// The app's reverse-DNS id, e.g. `io.example.hello`.
    public var id: String
    /// Semantic version of the app (x.y.z with an optional pre-release).
    public var appVersion: String
    /// Raised only when a security-relevant field (the grants) changes: owners approve again.
    public var manifestVersion: Int
    /// The executable and its pinned hash.
    public var binary: Binary
    /// The methods callers may invoke; nothing else is callable.
    public var exposes: [String]
    /// What the app may do, each scoped to a target.
    public var grants: [Grant]
    /// "", "shareable" or "guarded".
    public var protection: String
    /// The publisher key and its signature.
    public var store: Store
    public var affiliates: [Affiliate]
    public var depends: [Dependency]
    public var extends: [Extension]
    public var dynamicExtends: [String]

    /// `binary`: how to run the app.
    public struct Binary: Hashable, Sendable {
        /// go, bun, node or python.
        public var runtime: String
        /// The executable, relative to the app directory.
        public var path: String
        /// 64 lowercase hex digits.
        public var sha256: String

        public init(runtime: String, path: String, sha256: String) {
            self.runtime = runtime
            self.path = path
            self.sha256 = sha256
        }
    }

    /// One capability the app asks for: `cap` on `target`, maybe under a condition.
    public struct Grant: Hashable, Sendable {
        public var cap: String
        public var target: String
        public var condition: Condition?

        public init(cap: String, target: String, condition: Condition? = nil) {
            self.cap = cap
            self.target = target
            self.condition = condition
        }
    }

    /// A grant's `if`: a leaf (`kind` and `params`) or a composite (`op` over `compose`).
    public indirect enum Condition: Hashable, Sendable {
        case leaf(kind: String, params: [String: JSON])
        case composite(op: String, compose: [Condition])
        /// Both halves set, or neither: invalid, kept so `validate()` can say so and the signed
        /// bytes stay what the publisher wrote.
        case mixed(kind: String, params: [String: JSON], op: String, compose: [Condition])
    }

    /// `store`: the publisher's key (`ed25519:<base64>`) and its signature (base64).
    public struct Store: Hashable, Sendable {
        public var publisher: String
        public var signature: String

        public init(publisher: String, signature: String) {
            self.publisher = publisher
            self.signature = signature
        }
    }

    public struct Affiliate: Hashable, Sendable {
        public var pubkey: String
        public var role: String
        public var purpose: String
    }

    public struct Dependency: Hashable, Sendable {
        public var app: String
        public var methods: [String]
    }

    /// A hook on a pilotctl primitive (`<command>.pre|post`) served by an exposed method.
    public struct Extension: Hashable, Sendable {
        public var primitive: String
        public var method: String
        public var addsFlags: [FlagSpec]
        public var order: Int
    }

    public struct FlagSpec: Hashable, Sendable {
        public var name: String
        public var type: String
        public var help: String
    }

    /// A manifest built in code (tests, the publisher's tools).
    public init(
        id: String, appVersion: String, manifestVersion: Int, binary: Binary, exposes: [String], grants: [Grant],
        protection: String = "", store: Store
    ) {
        self.id = id
        self.appVersion = appVersion
        self.manifestVersion = manifestVersion
        self.binary = binary
        self.exposes = exposes
        self.grants = grants
        self.protection = protection
        self.store = store
        affiliates = []
        depends = []
        extends = []
        dynamicExtends = []
    }

    /// Decodes `manifest.json`. Fails on bytes that are not JSON or members of the wrong type;
    /// the schema's rules are `validate()`'s.
    public init(parsing bytes: some Collection<UInt8>) throws(AppStoreError) {
        let json: JSON
        do { json = try JSON(parsing: bytes) } catch { throw .malformed(document: "manifest.json", reason: "\(error)") }
        let root = try JSONFields(json, document: "manifest.json")
        guard case .object = json else { throw .malformed(document: "manifest.json", reason: "expected a JSON object") }
        id = try root.string("id")
        appVersion = try root.string("app_version")
        manifestVersion = try root.integer("manifest_version")
        let binaryFields = try root.object("binary")
        binary = Binary(
            runtime: try binaryFields.string("runtime"), path: try binaryFields.string("path"),
            sha256: try binaryFields.string("sha256"))
        exposes = try root.strings("exposes")
        grants = try root.objects("grants") { (fields: JSONFields) throws(AppStoreError) -> Grant in
            Grant(
                cap: try fields.string("cap"), target: try fields.string("target"),
                condition: fields.has("if") ? try Condition(try fields.object("if")) : nil)
        }
        protection = try root.string("protection")
        let storeFields = try root.object("store")
        store = Store(publisher: try storeFields.string("publisher"), signature: try storeFields.string("signature"))
        affiliates = try root.objects("affiliates") { (fields: JSONFields) throws(AppStoreError) -> Affiliate in
            Affiliate(pubkey: try fields.string("pubkey"), role: try fields.string("role"), purpose: try fields.string("purpose"))
        }
        depends = try root.objects("depends") { (fields: JSONFields) throws(AppStoreError) -> Dependency in
            Dependency(app: try fields.string("app"), methods: try fields.strings("methods"))
        }
        extends = try root.objects("extends") { (fields: JSONFields) throws(AppStoreError) -> Extension in
            Extension(
                primitive: try fields.string("primitive"), method: try fields.string("method"),
                addsFlags: try fields.objects("adds_flags") { (flag: JSONFields) throws(AppStoreError) -> FlagSpec in
                    FlagSpec(name: try flag.string("name"), type: try flag.string("type"), help: try flag.string("help"))
                },
                order: try fields.integer("order"))
        }
        dynamicExtends = try root.strings("dynamic_extends")
    }

    /// The `<ns>.help` methods in `exposes`: the official catalogue requires exactly one.
    public var helpMethods: [String] { exposes.filter { $0.hasSuffix(".help") && $0.count > ".help".count } }

    /// Whether `method` is in `exposes`.
    public func exposes(method: String) -> Bool { exposes.contains(method) }

    /// Whether some grant of capability `cap` covers `target` (`*`, the exact target, or a
    /// `prefix.*` pattern), as the official broker matches `ipc.call` targets.
    public func grants(_ cap: String, covering target: String) -> Bool {
        grants.contains { $0.cap == cap && Self.pattern($0.target, covers: target) }
    }

    /// Whether a grant target `pattern` covers `target`: `*`, the exact target, or `prefix.*`.
    public static func pattern(_ pattern: String, covers target: String) -> Bool {
        if pattern == "*" || pattern == target { return true }
        guard pattern.hasSuffix(".*") else { return false }
        return target.hasPrefix(pattern.dropLast())
    }
}

extension Manifest.Condition {
    init(_ fields: JSONFields) throws(AppStoreError) {
        let kind = try fields.string("kind")
        var params: [String: JSON] = [:]
        switch fields.members["params"] {
        case nil, .null?: break
        case .object(let members)?: params = members
        default: throw .malformed(document: fields.document, reason: "params must be an object")
        }
        let op = try fields.string("op")
        let compose = try fields.objects("compose") { (sub: JSONFields) throws(AppStoreError) -> Manifest.Condition in
            try Manifest.Condition(sub)
        }
        let leaf = !kind.isEmpty || !params.isEmpty
        let composite = !op.isEmpty || !compose.isEmpty
        switch (leaf, composite) {
        case (true, false): self = .leaf(kind: kind, params: params)
        case (false, true): self = .composite(op: op, compose: compose)
        default: self = .mixed(kind: kind, params: params, op: op, compose: compose)
        }
    }
}
