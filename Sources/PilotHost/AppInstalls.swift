import PilotStore

/// Which apps each identity installed, with the grants its owner approved: host.db's
/// `app_install` and `app_grant`, through a connection of its own.
actor AppInstalls {
    private let store: HostStore

    /// The installs in the `host.db` at `path` (opened, not created: the pool made it).
    init(path: String) throws {
        store = try HostStore(path: path)
    }

    func install(_ record: AppInstallRecord, identity: String) throws { try store.installApp(record, identity: identity) }
    func apps(of identity: String) throws -> [AppInstallRecord] { try store.apps(identity: identity) }
    func app(_ id: String, of identity: String) throws -> AppInstallRecord? { try store.app(id, identity: identity) }
    @discardableResult func remove(_ id: String, of identity: String) throws -> Bool { try store.removeApp(id, identity: identity) }
    func bundles() throws -> Set<String> { try store.installedBundles() }
}
