import PilotControl
import PilotWire

/// The commands of an identity's own socket: `info`, `set-hostname`, `clear-hostname`,
/// `set-tags`, `clear-tags`, `set-public`, `set-private`, `lookup`, `find`.
struct IdentityCommands: Sendable {
    let pool: IdentityPool
    let name: String

    func handle(_ request: ControlRequest) async -> ControlReply {
        do {
            switch request.command {
            case "info":
                guard let identity = await pool.identity(named: name) else { throw PoolError.notFound(name) }
                return .ok(AdminCommands.describe(identity))
            case "set-hostname":
                return .ok(AdminCommands.describe(try await pool.setHostname(name: name, hostname: try request.string("hostname"))))
            case "clear-hostname":
                return .ok(AdminCommands.describe(try await pool.setHostname(name: name, hostname: nil)))
            case "set-tags":
                let tags = try request.strings("tags")
                guard !tags.isEmpty else { throw ControlFailure(.invalidArgument, "set-tags needs at least one tag (clear-tags removes them)") }
                return .ok(AdminCommands.describe(try await pool.setTags(name: name, tags: tags)))
            case "clear-tags":
                return .ok(AdminCommands.describe(try await pool.setTags(name: name, tags: [])))
            case "set-public":
                return .ok(AdminCommands.describe(try await pool.setPublic(name: name, isPublic: true)))
            case "set-private":
                return .ok(AdminCommands.describe(try await pool.setPublic(name: name, isPublic: false)))
            case "lookup":
                let target = try request.string("target")
                let node: UInt32
                if let address = Address(target) {
                    node = address.node
                } else if let number = UInt32(target) {
                    node = number
                } else {
                    throw ControlFailure(.invalidArgument, "lookup needs a node id or an address N:XXXX.YYYY.YYYY, got \(target.prefix(64))")
                }
                return try await registryAnswer(RegistryMessage(type: "lookup", ["node_id": .integer(Int64(node))]))
            case "find":
                let hostname = try request.string("hostname")
                return try await registryAnswer(RegistryMessage(type: "resolve_hostname", ["hostname": .string(hostname)]))
            default:
                throw ControlFailure(.invalidArgument, "unknown command: \(request.command.prefix(64))")
            }
        } catch let failure as ControlFailure {
            return .error(failure)
        } catch let error as PoolError {
            return .error(AdminCommands.failure(error))
        } catch {
            return .error(ControlFailure(.connectionFailed, "registry: \(error)"))
        }
    }

    /// A registry reply as command data: its fields without `type`, or its error as not_found.
    private func registryAnswer(_ request: RegistryMessage) async throws -> ControlReply {
        let reply = try await pool.query(request)
        guard reply.type != "error", var fields = reply.json.objectValue else {
            throw ControlFailure(.notFound, reply["error"]?.stringValue ?? "registry error")
        }
        fields["type"] = nil
        return .ok(.object(fields))
    }
}
