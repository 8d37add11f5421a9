/// The commands of an identity's own socket that read or change its record in the registry, and
/// look other nodes up there.
public enum IdentityControl {
    /// `info`: this identity.
    public struct Info: ArgumentlessControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "info"
        /// The command.
        public init() {}
    }

    /// `health`: how this identity is doing, with 1.18's keys (docs/PROTOCOL.md §12.2).
    public struct Health: ArgumentlessControlCommand {
        public typealias Reply = ControlData
        public static let name = "health"
        /// The command.
        public init() {}
    }

    /// `set-hostname`: this identity's hostname, set.
    public struct SetHostname: ControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "set-hostname"
        /// The new hostname.
        public var hostname: String

        /// The command setting `hostname`.
        public init(hostname: String) { self.hostname = hostname }
        public init(fields: ControlFields) throws(ControlFailure) { hostname = try fields.string("hostname") }
        public var arguments: [String: JSON] { ["hostname": .string(hostname)] }
    }

    /// `clear-hostname`: this identity's hostname, removed.
    public struct ClearHostname: ArgumentlessControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "clear-hostname"
        /// The command.
        public init() {}
    }

    /// `set-tags`: this identity's tags, replaced (at least one; `clear-tags` removes them).
    public struct SetTags: ControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "set-tags"
        /// The new tags.
        public var tags: [String]

        /// The command setting `tags`.
        public init(tags: [String]) { self.tags = tags }
        public init(fields: ControlFields) throws(ControlFailure) { tags = try fields.strings("tags") }
        public var arguments: [String: JSON] { ["tags": .array(tags.map(JSON.string))] }
    }

    /// `clear-tags`: this identity's tags, removed.
    public struct ClearTags: ArgumentlessControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "clear-tags"
        /// The command.
        public init() {}
    }

    /// `set-public`: any node may resolve this identity's endpoint.
    public struct SetPublic: ArgumentlessControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "set-public"
        /// The command.
        public init() {}
    }

    /// `set-private`: only trusted peers may resolve this identity's endpoint.
    public struct SetPrivate: ArgumentlessControlCommand {
        public typealias Reply = IdentityInfo
        public static let name = "set-private"
        /// The command.
        public init() {}
    }

    /// `lookup`: a node's record in the registry, by node id or address. The reply is the
    /// registry's answer without its `type`.
    public struct Lookup: ControlCommand {
        public typealias Reply = ControlData
        public static let name = "lookup"
        /// A node id or an address `N:XXXX.YYYY.YYYY`.
        public var target: String

        /// The command looking `target` up.
        public init(target: String) { self.target = target }
        public init(fields: ControlFields) throws(ControlFailure) { target = try fields.string("target") }
        public var arguments: [String: JSON] { ["target": .string(target)] }
    }

    /// `find`: a node's address by hostname, or the online nodes with a tag (our registry's
    /// `find_by_tag`). The reply is the registry's answer without its `type`.
    public struct Find: ControlCommand {
        public typealias Reply = ControlData
        public static let name = "find"
        /// The hostname; empty when finding by `tag`.
        public var hostname: String
        /// The tag, when finding by tag.
        public var tag: String?

        /// The command finding `hostname`.
        public init(hostname: String) { self.hostname = hostname }
        /// The command finding the nodes tagged `tag`.
        public init(tag: String) {
            hostname = ""
            self.tag = tag
        }
        public init(fields: ControlFields) throws(ControlFailure) {
            tag = try fields.optionalString("tag")
            hostname = tag == nil ? try fields.string("hostname") : (try fields.optionalString("hostname") ?? "")
        }
        public var arguments: [String: JSON] {
            if let tag { return ["tag": .string(tag)] }
            return ["hostname": .string(hostname)]
        }
    }
}

/// A node named the way a command's `target` or `peer` names it: an address, a node id (an
/// address in network 0), or a hostname for the registry to resolve.
public enum NodeTarget: Hashable, Sendable {
    case address(Address)
    case hostname(String)

    /// `text` read as an address, else as a node id, else as a hostname.
    public init(_ text: String) {
        if let address = Address(text) {
            self = .address(address)
        } else if let node = UInt32(text) {
            self = .address(Address(node: node))
        } else {
            self = .hostname(text)
        }
    }
}
