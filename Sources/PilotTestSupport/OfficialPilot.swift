public import Foundation

/// The official Pilot Protocol 1.18 binaries from the PyPI package `pilotprotocol`: the judge of
/// wire compatibility in our tests.
///
/// The wheel is fetched once with `pip download` and unpacked into a cache directory
/// (`$PILOT_TEST_CACHE`, else `.cache/pilotprotocol` at the package root), so later runs and CI
/// re-runs on the same machine do not touch the network. Nothing from it is committed.
public struct OfficialPilot: Sendable {
    /// The version every interop test is pinned to.
    public static let version = "1.18.0"

    public let daemon: URL
    public let pilotctl: URL

    /// Why the binaries could not be had; tests skip with this text.
    public struct Unavailable: Error, CustomStringConvertible {
        public let description: String
    }

    /// Returns the cached binaries, downloading the wheel first if needed.
    public static func binaries() throws(Unavailable) -> OfficialPilot {
        let cache = cacheDirectory()
        let bin = cache.appendingPathComponent("pilotprotocol/bin")
        let found = OfficialPilot(
            daemon: bin.appendingPathComponent("pilot-daemon"),
            pilotctl: bin.appendingPathComponent("pilotctl"))
        if found.isExecutable { return found }
        // One fetch at a time across test processes: the lock file serialises them.
        let lock = open(cache.appendingPathComponent(".lock").path, O_CREAT | O_RDWR, 0o644)
        if lock >= 0 { _ = flock(lock, LOCK_EX) }
        defer { if lock >= 0 { close(lock) } }
        if found.isExecutable { return found }
        try fetchWheel(into: cache)
        guard found.isExecutable else {
            throw Unavailable(description: "the pilotprotocol wheel has no pilotprotocol/bin/pilot-daemon")
        }
        return found
    }

    private var isExecutable: Bool {
        FileManager.default.isExecutableFile(atPath: daemon.path)
            && FileManager.default.isExecutableFile(atPath: pilotctl.path)
    }

    /// `$PILOT_TEST_CACHE`, else `.cache/pilotprotocol` at the package root.
    public static func cacheDirectory() -> URL {
        let url: URL
        if let env = ProcessInfo.processInfo.environment["PILOT_TEST_CACHE"], !env.isEmpty {
            url = URL(fileURLWithPath: env)
        } else {
            url = packageRoot().appendingPathComponent(".cache/pilotprotocol")
        }
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// The package root: three levels up from this source file.
    public static func packageRoot() -> URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    private static func fetchWheel(into cache: URL) throws(Unavailable) {
        let download = cache.appendingPathComponent("wheel")
        try? FileManager.default.removeItem(at: download)
        let pip = ChildProcess.run(
            "/usr/bin/env",
            ["python3", "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             "--only-binary=:all:", "-d", download.path, "pilotprotocol==\(version)"],
            timeout: 180)
        guard pip.status == 0 else {
            throw Unavailable(
                description: "pip could not download pilotprotocol \(version) "
                    + "(exit \(pip.status)): \(pip.output.suffix(400))")
        }
        let wheels = (try? FileManager.default.contentsOfDirectory(atPath: download.path))?
            .filter { $0.hasSuffix(".whl") } ?? []
        guard let wheel = wheels.first else {
            throw Unavailable(description: "pip reported success but left no wheel in \(download.path)")
        }
        // A wheel is a zip; Python's zipfile unpacks it without needing unzip(1).
        let unzip = ChildProcess.run(
            "/usr/bin/env",
            ["python3", "-m", "zipfile", "-e", download.appendingPathComponent(wheel).path, cache.path],
            timeout: 120)
        guard unzip.status == 0 else {
            throw Unavailable(description: "could not unpack \(wheel): \(unzip.output.suffix(400))")
        }
        for name in ["pilot-daemon", "pilotctl"] {
            chmod(cache.appendingPathComponent("pilotprotocol/bin/\(name)").path, 0o755)
        }
    }
}
