/// One of pilot-host's own control commands, typed: its name on the wire, its arguments (the
/// request's `args`) and what its ok reply carries. The host, `pilotctl` and `PilotClient` all
/// go through these types, so a command's name and fields are written once.
public protocol ControlCommand: Hashable, Sendable {
    /// The `data` of the command's ok reply.
    associatedtype Reply: ControlReplyData
    /// The command's name on the wire: the request's `command`.
    static var name: String { get }
    /// The command read from a request's arguments; a missing or mistyped field is an
    /// `invalid_argument` failure that names the command and the field.
    init(fields: ControlFields) throws(ControlFailure)
    /// The request's `args`: absent optional fields are left out.
    var arguments: [String: JSON] { get }
}

extension ControlCommand {
    /// The request that carries this command.
    public var request: ControlRequest { ControlRequest(Self.name, arguments) }

    /// The command carried by `request`, which must be this command.
    public init(_ request: ControlRequest) throws(ControlFailure) {
        guard request.command == Self.name else {
            throw ControlFailure(.invalidArgument, "expected \(Self.name), got \(request.command.prefix(64))")
        }
        try self.init(fields: request.fields)
    }

    /// The typed data of `reply`, a reply to this command; an error reply is thrown as it is.
    public static func data(of reply: ControlReply) throws(ControlFailure) -> Reply {
        switch reply {
        case .ok(let data):
            guard let object = data.objectValue else { throw ControlFailure(.internalError, "\(name) reply: data must be an object") }
            return try Reply(fields: ControlFields(object, context: "\(name) reply", code: .internalError))
        case .error(let failure):
            throw failure
        }
    }
}

/// A command that takes no arguments.
public protocol ArgumentlessControlCommand: ControlCommand {
    /// The command.
    init()
}

extension ArgumentlessControlCommand {
    /// The command; any arguments are ignored, as the host always has.
    public init(fields: ControlFields) { self.init() }
    /// No arguments.
    public var arguments: [String: JSON] { [:] }
}

/// Which page of a long list a command asks for: the rows whose key is above `after` (nil:
/// from the first), at most `limit` (1 to `longest`; nil: `longest`). The host also ends a page
/// before its reply's rows pass `bytes`, and its reply's `next` is the `after` of the page
/// that follows (none: the last page).
public struct ListPage: Hashable, Sendable {
    /// The most rows in a page, and the default.
    public static let longest = 5000
    /// A page's rows stay under this much JSON (the frame limit is 1 MiB).
    public static let bytes = 768 << 10
    public var after: Int64?
    public var limit: Int?

    /// The page of up to `limit` rows after `after`.
    public init(after: Int64? = nil, limit: Int? = nil) {
        self.after = after
        self.limit = limit
    }

    /// The page `fields` ask for (`after`, `limit`), checked.
    public init(fields: ControlFields) throws(ControlFailure) {
        self.init(after: try fields.optionalInteger("after"), limit: try fields.optionalInteger("limit", as: Int.self))
        if let limit, !(1...Self.longest).contains(limit) { throw fields.failure("limit", "1 to \(Self.longest)") }
    }

    /// Its arguments (none for the first page of the longest size).
    public var arguments: [String: JSON] {
        var arguments: [String: JSON] = [:]
        if let after { arguments["after"] = .integer(after) }
        if let limit { arguments["limit"] = .integer(Int64(limit)) }
        return arguments
    }
}

/// A command listing something long, a page at a time (`ListPage`).
public protocol PagedListCommand: ControlCommand {
    var page: ListPage { get }
    /// The command for `page`.
    init(page: ListPage)
}

extension PagedListCommand {
    public init(fields: ControlFields) throws(ControlFailure) { self.init(page: try ListPage(fields: fields)) }
    public var arguments: [String: JSON] { page.arguments }
}

/// The `data` of a command's ok reply, typed. Decoding it again from `json` gives it back.
public protocol ControlReplyData: Hashable, Sendable {
    /// The reply read from its `data` object; a missing or mistyped field names the command and
    /// the field.
    init(fields: ControlFields) throws(ControlFailure)
    /// The reply's `data` as the host sends it.
    var json: JSON { get }
}

/// A reply whose fields pass through as they are: the registry's answers to `lookup` and
/// `find`, whose fields are the registry's to choose (pilotctl prints them one by one).
public struct ControlData: ControlReplyData {
    /// The reply's fields.
    public var values: [String: JSON]

    /// A reply of `values`.
    public init(_ values: [String: JSON]) { self.values = values }

    /// Any object.
    public init(fields: ControlFields) { values = fields.values }

    /// The field `key`, if the reply has it.
    public subscript(key: String) -> JSON? { values[key] }

    /// The fields as an object.
    public var json: JSON { .object(values) }
}

/// The fields of a request's `args` or of a reply's `data`, read with errors that name the
/// command (`context`) and the field. Absent and `null` fields are the same.
public struct ControlFields: Sendable {
    /// The fields as they came.
    public let values: [String: JSON]
    /// What they belong to, for errors: a command's name, or "NAME reply".
    public let context: String
    /// The code of a failure to read them: `invalid_argument` for a request's fields.
    public let code: ControlErrorCode

    /// The fields `values` of `context`.
    public init(_ values: [String: JSON], context: String, code: ControlErrorCode = .invalidArgument) {
        self.values = values
        self.context = context
        self.code = code
    }

    /// The failure for field `key` that is not `expectation`.
    public func failure(_ key: String, _ expectation: String) -> ControlFailure {
        ControlFailure(code, "\(context): \(key) must be \(expectation)")
    }

    private func present(_ key: String) -> JSON? {
        guard let value = values[key], value != .null else { return nil }
        return value
    }

    /// A string field that must be there.
    public func string(_ key: String) throws(ControlFailure) -> String {
        guard let value = values[key]?.stringValue else { throw failure(key, "a string") }
        return value
    }

    /// A string field that may be absent.
    public func optionalString(_ key: String) throws(ControlFailure) -> String? {
        guard let value = present(key) else { return nil }
        guard let text = value.stringValue else { throw failure(key, "a string") }
        return text
    }

    /// A flag, `fallback` when absent.
    public func bool(_ key: String, default fallback: Bool = false) throws(ControlFailure) -> Bool {
        try optionalBool(key) ?? fallback
    }

    /// A flag that may be absent.
    public func optionalBool(_ key: String) throws(ControlFailure) -> Bool? {
        guard let value = present(key) else { return nil }
        guard let flag = value.boolValue else { throw failure(key, "true or false") }
        return flag
    }

    /// An integer field that must be there and fit `T`.
    public func integer<T: FixedWidthInteger>(_ key: String, as type: T.Type = Int64.self) throws(ControlFailure) -> T {
        guard let value = try optionalInteger(key, as: type) else { throw failure(key, "an integer") }
        return value
    }

    /// An integer field that may be absent, and must fit `T` when there.
    public func optionalInteger<T: FixedWidthInteger>(_ key: String, as type: T.Type = Int64.self) throws(ControlFailure) -> T? {
        guard let value = present(key) else { return nil }
        guard let number = value.integerValue else { throw failure(key, "an integer") }
        guard let fitted = T(exactly: number) else { throw failure(key, "\(T.min) to \(T.max)") }
        return fitted
    }

    /// The `port` field: 1 to 65535.
    public func port() throws(ControlFailure) -> UInt16 {
        guard let port = values["port"]?.integerValue.flatMap(UInt16.init(exactly:)), port > 0 else { throw failure("port", "1 to 65535") }
        return port
    }

    /// The `network_id` field: a network number, 0 to 65535.
    public func networkID() throws(ControlFailure) -> UInt16 { try integer("network_id", as: UInt16.self) }

    /// `value` as `command`'s port, checked as the host checks a request's `port`.
    public static func port(_ value: Int, of command: String) throws(ControlFailure) -> UInt16 {
        try ControlFields(["port": .integer(Int64(value))], context: command).port()
    }

    /// `value` as `command`'s network, checked as the host checks a request's `network_id`.
    public static func networkID(_ value: Int, of command: String) throws(ControlFailure) -> UInt16 {
        try ControlFields(["network_id": .integer(Int64(value))], context: command).networkID()
    }

    /// A number field that must be there.
    public func double(_ key: String) throws(ControlFailure) -> Double {
        guard let value = values[key]?.doubleValue else { throw failure(key, "a number") }
        return value
    }

    /// A number field that may be absent.
    public func optionalDouble(_ key: String) throws(ControlFailure) -> Double? {
        guard let value = present(key) else { return nil }
        guard let number = value.doubleValue else { throw failure(key, "a number") }
        return number
    }

    /// A list of strings, empty when absent.
    public func strings(_ key: String) throws(ControlFailure) -> [String] {
        try optionalStrings(key) ?? []
    }

    /// A list of strings that may be absent.
    public func optionalStrings(_ key: String) throws(ControlFailure) -> [String]? {
        guard let value = present(key) else { return nil }
        guard let items = value.arrayValue, case let texts = items.compactMap(\.stringValue), texts.count == items.count else {
            throw failure(key, "a list of strings")
        }
        return texts
    }

    /// A list of integers that fit `T`, empty when absent.
    public func integers<T: FixedWidthInteger>(_ key: String, as type: T.Type = Int64.self) throws(ControlFailure) -> [T] {
        guard let value = present(key) else { return [] }
        guard let items = value.arrayValue, case let numbers = items.compactMap({ $0.integerValue.flatMap(T.init(exactly:)) }),
            numbers.count == items.count
        else { throw failure(key, "a list of integers from \(T.min) to \(T.max)") }
        return numbers
    }

    /// An object field that may be absent, as fields.
    public func optionalObject(_ key: String) throws(ControlFailure) -> ControlFields? {
        guard let value = present(key) else { return nil }
        guard let object = value.objectValue else { throw failure(key, "an object") }
        return ControlFields(object, context: "\(context) \(key)", code: code)
    }

    /// A list of objects (empty when absent), each read with `read`.
    public func objects<T>(_ key: String, _ read: (ControlFields) throws(ControlFailure) -> T) throws(ControlFailure) -> [T] {
        guard let value = present(key) else { return [] }
        guard let items = value.arrayValue else { throw failure(key, "a list of objects") }
        var result: [T] = []
        result.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            guard let object = item.objectValue else { throw failure("\(key)[\(index)]", "an object") }
            result.append(try read(ControlFields(object, context: "\(context) \(key)[\(index)]", code: code)))
        }
        return result
    }
}
