import FoundationEssentials
import Logging
import PilotControl
import PilotCrypto
import PilotStore
import PilotWire

/// The admin socket's move commands (`MoveControl`): `host.key`, `identity.export`,
/// `identity.import`. An export leaves nothing live here once its file is made and kept
/// (`ExportedFiles`): the identity is deregistered, its rows and socket gone, so there are
/// never two live copies; an import brings it up as `identity create` does, installs its apps
/// again where it can, then has its peers' tunnels follow it here.
struct MoveCommands: Sendable {
    let pool: IdentityPool
    let hostKey: HostKey
    let presence: Presence
    /// Where exported files are kept.
    let exported: ExportedFiles
    /// Installs a moved identity's apps again.
    let apps: AppStoreCommands
    /// Where identity `name`'s control socket is.
    let socketPath: @Sendable (String) -> String
    /// As `AdminCommands.identitiesChanged`: the socket follows the identity.
    let identitiesChanged: @Sendable (AdminCommands.Change) async throws -> Void
    let logger: Logger

    /// Answers `request`, one of `MoveControl.Command.names`.
    func handle(_ request: ControlRequest) async -> ControlReply {
        do {
            switch try MoveControl.Command(request) {
            case .hostKey: return .ok(HostKeyInfo(publicKey: hostKey.base64).json)
            case .export(let command): return .ok(try await export(command).json)
            case .import(let command): return .ok(try await importIdentity(command).json)
            }
        } catch let failure as ControlFailure {
            return .error(failure)
        } catch let error as PoolError {
            return .error(AdminCommands.failure(error))
        } catch let error as IdentityFileError {
            return .error(ControlFailure(.invalidArgument, error.description))
        } catch {
            return .error(ControlFailure(.internalError, "\(error)"))
        }
    }

    private func export(_ command: MoveControl.ExportIdentity) async throws -> ExportedIdentity {
        guard let recipient = HostKey.publicKey(base64: command.hostKey) else {
            throw ControlFailure(.invalidArgument, "--to-host-key must be base64 of a 32-byte X25519 key (the other host's pilotctl host-key)")
        }
        guard recipient != hostKey.publicKey else {
            throw ControlFailure(.invalidArgument, "that is this host's own key: an identity is exported to another host")
        }
        let name = command.identity
        let (file, record, messages, apps) = try await pool.exportFile(name: name, to: recipient, withInbox: command.withInbox)
        let kept: String
        do { kept = try exported.keep(file, name: name, node: record.nodeID) } catch {
            throw ControlFailure(.internalError, "\(error): nothing was exported, \(name) stays here")
        }
        // The file exists, and is kept: from here on this host serves no copy.
        // Not forgotten at the registry: its record keeps the sequence that refuses this host's
        // old registration, should it come back.
        try await pool.delete(name: name, forget: false)
        try await identitiesChanged(.deleted(name))
        logger.notice("identity exported", metadata: [
            "identity": "\(name)", "node": "\(record.nodeID)", "to_host_key": "\(Base64.encode(recipient))", "messages": "\(messages)",
            "apps": "\(apps)", "kept": "\(kept)"])
        return ExportedIdentity(
            name: name, nodeID: record.nodeID, address: Address(network: record.network, node: record.nodeID).description,
            file: Base64.encode(file), messages: messages, apps: apps, kept: kept)
    }

    private func importIdentity(_ command: MoveControl.ImportIdentity) async throws -> ImportedIdentity {
        guard let file = try? Base64.decode(command.file) else { throw ControlFailure(.invalidArgument, "identity.import: file must be base64") }
        let owner = try AdminCommands.user(command.owner)
        var parcel = try IdentityFile.open(file, with: hostKey)
        defer { Sodium.zero(&parcel.seed) }
        let name = command.rename ?? parcel.name
        let record = try await pool.importIdentity(parcel, name: name, owner: owner)
        do {
            try await identitiesChanged(.created(name))
        } catch {
            // Not reachable here: taken back (the file can be imported again, so the registry
            // keeps the node and its sequence).
            try? await pool.delete(name: name, forget: false)
            throw error
        }
        logger.notice("identity imported", metadata: [
            "identity": "\(name)", "node": "\(record.nodeID)", "trust": "\(parcel.trust.count)", "messages": "\(parcel.messages.count)",
            "apps": "\(parcel.apps.count)"])
        let (restored, notRestored) = await apps.restore(parcel.apps, identity: name)
        let (presence, logger) = (presence, logger)
        Task {
            let (reached, failed) = await presence.reachPeers(of: name)
            logger.info("moved identity's peers re-keyed", metadata: ["identity": "\(name)", "peers": "\(reached)"])
            for (peer, reason) in failed.sorted(by: { $0.key < $1.key }) {
                logger.warning("moved identity's peer not reached", metadata: ["identity": "\(name)", "peer": "\(peer)", "error": "\(reason)"])
            }
        }
        return ImportedIdentity(
            identity: AdminCommands.describe(record, socket: socketPath(name)), appsRestored: restored, appsNotRestored: notRestored)
    }
}
