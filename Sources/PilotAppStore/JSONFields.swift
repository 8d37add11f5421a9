import PilotWire

/// Reads one JSON object's members as Go's `encoding/json` fills a struct: a missing member or
/// `null` leaves the zero value, a member of the wrong type is an error, unknown members are
/// ignored. Keys match exactly (Go also matches them case-insensitively; a manifest that relies
/// on that fails here, closed).
struct JSONFields {
    let members: [String: JSON]
    let document: String

    init(_ value: JSON?, document: String) throws(AppStoreError) {
        switch value {
        case .object(let members)?: self.members = members
        case nil, .null?: self.members = [:]
        default: throw .malformed(document: document, reason: "expected a JSON object")
        }
        self.document = document
    }

    private func wrongType(_ key: String, _ expected: String) -> AppStoreError {
        .malformed(document: document, reason: "\(key) must be \(expected)")
    }

    func string(_ key: String) throws(AppStoreError) -> String {
        switch members[key] {
        case nil, .null?: return ""
        case .string(let value)?: return value
        default: throw wrongType(key, "a string")
        }
    }

    func integer(_ key: String) throws(AppStoreError) -> Int {
        switch members[key] {
        case nil, .null?: return 0
        case .integer(let value)?:
            guard let value = Int(exactly: value) else { throw wrongType(key, "an integer") }
            return value
        default: throw wrongType(key, "an integer")
        }
    }

    func strings(_ key: String) throws(AppStoreError) -> [String] {
        var out: [String] = []
        for element in try array(key) {
            guard case .string(let value) = element else { throw wrongType(key, "an array of strings") }
            out.append(value)
        }
        return out
    }

    func array(_ key: String) throws(AppStoreError) -> [JSON] {
        switch members[key] {
        case nil, .null?: return []
        case .array(let values)?: return values
        default: throw wrongType(key, "an array")
        }
    }

    func objects<T>(_ key: String, _ make: (JSONFields) throws(AppStoreError) -> T) throws(AppStoreError) -> [T] {
        var out: [T] = []
        for (index, element) in try array(key).enumerated() {
            out.append(try make(JSONFields(element, document: "\(document) \(key)[\(index)]")))
        }
        return out
    }

    func object(_ key: String) throws(AppStoreError) -> JSONFields {
        try JSONFields(members[key], document: "\(document) \(key)")
    }

    func has(_ key: String) -> Bool {
        switch members[key] {
        case nil, .null?: false
        default: true
        }
    }
}
