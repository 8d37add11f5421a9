import Glibc

/// Which identity socket a client acts as, the rule pilotctl and pilot-mcp share: the one
/// `--identity NAME` names (`RUNTIME/id/NAME.sock`), else `$PILOT_SOCKET` as it is, else the one
/// `$PILOT_IDENTITY` names, else the only identity socket under `RUNTIME/id` that the caller may
/// open. RUNTIME is `--runtime-dir`, else `$PILOT_RUNTIME_DIR`, else `/run/pilot-host`. An empty
/// variable counts as unset.
public enum IdentitySocket {
    /// pilot-host's runtime directory when nothing names another.
    public static let defaultRuntimeDirectory = "/run/pilot-host"

    /// The runtime directory: `flag` (`--runtime-dir`), else `$PILOT_RUNTIME_DIR`, else the default.
    public static func runtimeDirectory(_ flag: String?, environment: [String: String]) -> String {
        flag ?? environment["PILOT_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? defaultRuntimeDirectory
    }

    /// The path of the identity socket to act as, by the rule above; throws when no variable
    /// names one and the runtime directory holds none, or several, that the caller may open.
    public static func path(identity: String?, runtimeDirectory runtime: String, environment: [String: String]) throws(ControlClientError) -> String {
        let environment = environment.filter { !$0.value.isEmpty }
        if let identity { return runtime + "/id/\(identity).sock" }
        if let socket = environment["PILOT_SOCKET"] { return socket }
        if let name = environment["PILOT_IDENTITY"] { return runtime + "/id/\(name).sock" }
        let usable = socketNames(in: runtime + "/id").filter { access(runtime + "/id/\($0).sock", R_OK | W_OK) == 0 }
        guard usable.count == 1, let only = usable.first else {
            throw ControlClientError(
                usable.isEmpty
                    ? "no identity socket you may use under \(runtime)/id; name one with --identity"
                    : "several identities are yours (\(usable.joined(separator: ", "))): pick one with --identity")
        }
        return runtime + "/id/\(only).sock"
    }

    /// The names of the `NAME.sock` entries of `directory`, sorted; none if it cannot be read.
    private static func socketNames(in directory: String) -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasSuffix(".sock"), name.count > 5 { names.append(String(name.dropLast(5))) }
        }
        return names.sorted()
    }
}
