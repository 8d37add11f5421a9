import Glibc
import PilotAppStore
import PilotStore
import PilotWire

/// The apps of an identity that moved here (`identity import`): each is installed again with
/// the grants its owner approved on the old host, but only from the very bundle that was
/// approved. Nothing else is installed in its place: an app that cannot be had here as it was
/// is named with the reason, for its owner to install again.
extension AppStoreCommands {
    /// Installs `apps` for `identity` where this host can have the same bundle: a catalogue
    /// app whose catalogue here offers that version as the same bundle with the same grants,
    /// or any app whose bundle another identity here installed already (a sideloaded one
    /// among them). Each restored install keeps its approval (who, when).
    func restore(_ apps: [IdentityParcel.App], identity: String) async -> (restored: [String], notRestored: [AppNotRestored]) {
        guard !apps.isEmpty else { return ([], []) }
        guard access(service.path, F_OK) == 0 else {
            return ([], apps.map { AppNotRestored(app: $0.appID, version: $0.version, reason: "this host runs no app service (pilot-host-apps)") })
        }
        let present = (try? await installs.bundles()) ?? []
        var restored: [String] = []
        var notRestored: [AppNotRestored] = []
        for app in apps {
            let record = Self.installRecord(of: app, identity: identity)
            if let reason = await reasonNotToRestore(record, bundlePresent: present.contains(app.bundleSHA256)) {
                notRestored.append(AppNotRestored(app: app.appID, version: app.version, reason: reason))
                continue
            }
            do {
                try await installs.install(record, identity: identity)
                restored.append(app.appID)
            } catch {
                notRestored.append(AppNotRestored(app: app.appID, version: app.version, reason: "host.db: \(error)"))
            }
        }
        logger.notice(
            "moved identity's apps installed again",
            metadata: [
                "identity": "\(identity)", "restored": "\(restored.joined(separator: ","))",
                "not_restored": "\(notRestored.map(\.app).joined(separator: ","))",
            ])
        if !notRestored.isEmpty { await collectBundles() }
        return (restored, notRestored)
    }

    /// Why `record` cannot be installed here as it was approved, or nil when it can.
    private func reasonNotToRestore(_ record: AppInstallRecord, bundlePresent: Bool) async -> String? {
        if bundlePresent { return nil }
        guard record.source == "catalogue" else {
            return "sideloaded, and its bundle is not on this host: sideload it again"
        }
        let source: AppServiceControl.CatalogueSource
        do { source = try configuredSource() } catch { return error.message }
        let plan: AppPlan
        do throws(ControlFailure) {
            plan = try await service.send(AppServiceControl.Prepare(source: source, app: record.appID, version: record.version), timeout: .seconds(300))
        } catch {
            return "not had from this host's catalogue: \(error.message)"
        }
        guard plan.bundleSHA256 == record.bundleSHA256 else {
            return "this host's catalogue offers \(record.version) as bundle \(plan.bundleSHA256.prefix(12))…, not the approved \(record.bundleSHA256.prefix(12))…"
        }
        guard plan.manifestVersion == record.manifestVersion, plan.grants == Self.grants(of: record) else {
            return "this host's catalogue asks for other grants than were approved: install it again and approve them"
        }
        return nil
    }

    /// The install row of `app` for `identity` on this host.
    static func installRecord(of app: IdentityParcel.App, identity: String) -> AppInstallRecord {
        AppInstallRecord(
            appID: app.appID, version: app.version, manifestVersion: app.manifestVersion, bundleSHA256: app.bundleSHA256,
            publisher: app.publisher, source: app.source, exposes: app.exposes, stateDirectory: stateDirectory(of: app.appID, identity: identity),
            installedAt: app.installedAt, approvedBy: app.approvedBy, approvedAt: app.approvedAt,
            grants: app.grants.map { AppInstallRecord.Grant(cap: $0.cap, target: $0.target, condition: $0.condition) })
    }
}
