import Foundation
import PilotApps
import PilotCrypto
import PilotTestSupport
import PilotWire
import XCTest

/// The sandbox against a hostile app: a Python script that tries to read host.db and the
/// master key, reach another identity's socket and another app's state, connect over TCP, signal
/// and ptrace the host, and run /bin/sh. Run in the sandbox every probe must fail; run plainly,
/// as root, every probe must succeed, so the failures are the sandbox's doing.
final class AppSandboxTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private var cleanups: [() -> Void] = []

    override func setUpWithError() throws {
        if let reason = Self.unavailableReason { throw XCTSkip(reason) }
        directory = try TemporaryDirectory(prefix: "pilot-sandbox")
        chmod(directory.url.path, 0o755)
    }

    override func tearDown() {
        cleanups.forEach { $0() }
        directory?.remove()
    }

    /// Why sandboxes cannot be tried here, or nil.
    static var unavailableReason: String? {
        if getuid() != 0 { return "needs root (to run apps as another uid, and the plain run's probes)" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/bwrap") { return "bubblewrap is not installed (apt-get install bubblewrap)" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") { return "python3 is not installed" }
        return LandlockProbe.unavailableReason
    }

    private var bin: URL { URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent() }
    private var launcher: String { bin.appendingPathComponent("pilot-app-launch").path }

    static let hostileScript = """
        #!/usr/bin/python3
        import ctypes, json, os, socket, subprocess, sys
        probes = json.loads(sys.argv[sys.argv.index("--probes") + 1])
        results = []
        def probe(kind, target, action):
            try:
                action()
                results.append({"probe": kind, "target": str(target), "ok": True})
            except BaseException as error:
                results.append({"probe": kind, "target": str(target), "ok": False, "error": type(error).__name__ + ": " + str(error)})
        def connect_unix(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.close()
        def ptrace(pid):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.ptrace(0x4206, pid, 0, 0) != 0:  # PTRACE_SEIZE: attaches without stopping it
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            libc.ptrace(17, pid, 0, 0)  # PTRACE_DETACH
        def personality(value):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.personality.restype = ctypes.c_int
            if libc.personality(ctypes.c_ulong(value)) == -1:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        def write(path):
            with open(path, "w") as f:
                f.write("x")
        for path in probes.get("read", []): probe("read", path, lambda p=path: open(p, "rb").read())
        for path in probes.get("list", []): probe("list", path, lambda p=path: os.listdir(p))
        for path in probes.get("unix", []): probe("unix", path, lambda p=path: connect_unix(p))
        for port in probes.get("tcp", []): probe("tcp", port, lambda p=port: socket.create_connection(("127.0.0.1", p), timeout=2).close())
        for pid in probes.get("kill", []): probe("kill", pid, lambda p=pid: os.kill(p, 0))
        for pid in probes.get("ptrace", []): probe("ptrace", pid, lambda p=pid: ptrace(p))
        for path in probes.get("exec", []): probe("exec", path, lambda p=path: subprocess.run([p, "-c", "true"], check=True))
        for path in probes.get("write", []): probe("write", path, lambda p=path: write(p))
        for value in probes.get("personality", []): probe("personality", value, lambda v=value: personality(v))
        print(json.dumps(results))
        sys.stdout.flush()
        """

    /// The stand-ins for what an app must not reach, and probes aimed at them.
    private struct Targets {
        var probes: JSON
        var hostileIDs: [String]
    }

    private func targets() throws -> Targets {
        let secrets = directory.path("host-state")
        try FileManager.default.createDirectory(atPath: secrets + "/other-app", withIntermediateDirectories: true)
        for name in ["host.db", "master.key", "other-app/data.db"] {
            try Data("secret".utf8).write(to: URL(fileURLWithPath: secrets + "/" + name))
            chmod(secrets + "/" + name, 0o644)  // plain permissions do not stop the app: the sandbox must
        }
        chmod(secrets, 0o755)
        chmod(secrets + "/other-app", 0o755)
        let socketPath = directory.path("other.sock")
        let listener = try Self.unixListener(path: socketPath)
        chmod(socketPath, 0o777)
        let tcp = try LoopbackSocket.tcpListener()
        let host = Process()
        host.executableURL = URL(fileURLWithPath: "/bin/sleep")
        host.arguments = ["60"]
        try host.run()
        cleanups.append {
            host.terminate()
            close(listener)
            _ = tcp
        }
        let probes: JSON = [
            "read": [.string(secrets + "/host.db"), .string(secrets + "/master.key"), .string(secrets + "/other-app/data.db")],
            "list": [.string(secrets + "/other-app")],
            "unix": [.string(socketPath)],
            "tcp": [.integer(Int64(tcp.localEndpoint.port))],
            "kill": [.integer(Int64(host.processIdentifier))],
            "ptrace": [.integer(Int64(host.processIdentifier))],
            "exec": ["/bin/sh"],
            "write": [],
            // ADDR_NO_RANDOMIZE: a process must not switch off its own ASLR.
            "personality": [.integer(0x0040000)],
        ]
        return Targets(probes: probes, hostileIDs: [])
    }

    private func bundle(_ script: String) throws -> (store: String, state: String, hash: String) {
        let store = directory.path("store")
        try FileManager.default.createDirectory(atPath: store + "/bin", withIntermediateDirectories: true)
        try Data(script.utf8).write(to: URL(fileURLWithPath: store + "/bin/app"))
        chmod(store + "/bin/app", 0o755)
        for path in [directory.url.path, store, store + "/bin"] { chmod(path, 0o755) }
        let state = directory.path("state")
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        chown(state, 65534, 65534)
        return (store, state, Hex.lowercase(Sodium.sha256(Array(script.utf8))))
    }

    /// Runs the app in its sandbox as nobody; its stdout.
    private func runSandboxed(_ store: String, _ state: String, hash: String, arguments: [String], policy: (inout SandboxPolicy) -> Void = { _ in })
        throws -> String
    {
        let binary = try VerifiedBinary.open(storeDirectory: store, relativePath: "bin/app", expectedSHA256: hash, maxBytes: 1 << 20)
        var sandbox = SandboxPolicy(storeDirectory: store, stateDirectory: state, network: false, execAllowList: [], environment: [:])
        policy(&sandbox)
        let process = try AppSandbox.spawn(
            binary: binary, argv: ["/app/bin/app"] + arguments, policy: sandbox, runAs: (65534, 65534), launcherPath: launcher)
        let output = FileHandle(fileDescriptor: process.takeStandardOutput(), closeOnDealloc: true).readDataToEndOfFile()
        let errors = FileHandle(fileDescriptor: process.takeStandardError(), closeOnDealloc: true).readDataToEndOfFile()
        var status: Int32 = 0
        waitpid(process.pid, &status, 0)
        let text = String(decoding: output, as: UTF8.self)
        if text.isEmpty { print("sandboxed app's stderr: \(String(decoding: errors, as: UTF8.self))") }
        return text
    }

    private func results(_ text: String) throws -> [(probe: String, target: String, ok: Bool, error: String)] {
        let json = try JSON(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines))
        return (json.arrayValue ?? []).map {
            ($0["probe"]?.stringValue ?? "", $0["target"]?.stringValue ?? "", $0["ok"]?.boolValue ?? false, $0["error"]?.stringValue ?? "")
        }
    }

    func testAHostileAppIsDeniedEverythingTheSameAppDoesUnconfined() throws {
        let targets = try targets()
        let (store, state, hash) = try bundle(Self.hostileScript)
        let arguments = ["--probes", targets.probes.encodedString()]
        // Unconfined (root, no sandbox): every probe succeeds.
        let plain = ChildProcess.run("/usr/bin/python3", [store + "/bin/app"] + arguments, timeout: 30)
        let plainResults = try results(plain.stdout)
        XCTAssertEqual(plainResults.count, 10, plain.output)
        for result in plainResults { XCTAssertTrue(result.ok, "unconfined \(result.probe) \(result.target) failed: \(result.error)") }
        // Sandboxed: every probe fails.
        let confined = try results(try runSandboxed(store, state, hash: hash, arguments: arguments))
        XCTAssertEqual(confined.count, 10)
        for result in confined { XCTAssertFalse(result.ok, "sandboxed \(result.probe) \(result.target) succeeded") }
        print("sandbox denials:\n" + confined.map { "  \($0.probe) \($0.target): \($0.error)" }.joined(separator: "\n"))
    }

    func testTheAppWritesItsStateButNotItsBundleAndRunsOnlyWhatItWasGranted() throws {
        let (store, state, hash) = try bundle(Self.hostileScript)
        let probes: JSON = [
            "read": ["/app/bin/app"], "list": ["/app"], "unix": [], "tcp": [], "kill": [], "ptrace": [],
            "exec": ["/bin/sh", "/usr/bin/true"], "write": ["/app/notes.txt", "/app/bin/app", "/usr/lib/evil"],
            "personality": [.integer(0xffff_ffff), .integer(0)],
        ]
        let granted = try results(try runSandboxed(store, state, hash: hash, arguments: ["--probes", probes.encodedString()]) {
            $0.execAllowList = ["/usr/bin/true"]
        })
        let outcome = Dictionary(granted.map { ("\($0.probe) \($0.target)", $0.ok) }) { first, _ in first }
        XCTAssertEqual(outcome["read /app/bin/app"], true)
        XCTAssertEqual(outcome["list /app"], true)
        XCTAssertEqual(outcome["write /app/notes.txt"], true)
        XCTAssertEqual(outcome["write /app/bin/app"], false, "the bundle is read-only")
        XCTAssertEqual(outcome["write /usr/lib/evil"], false)
        XCTAssertEqual(outcome["exec /bin/sh"], false, "not granted")
        XCTAssertEqual(outcome["exec /usr/bin/true"], true, "granted by proc.exec")
        XCTAssertEqual(outcome["personality 4294967295"], true, "a runtime may query its personality")
        XCTAssertEqual(outcome["personality 0"], true, "and set the default")
        XCTAssertEqual(try String(contentsOfFile: state + "/notes.txt", encoding: .utf8), "x")
    }

    func testWithNetDialTheAppReachesTheNetwork() throws {
        let tcp = try LoopbackSocket.tcpListener()
        let (store, state, hash) = try bundle(Self.hostileScript)
        let probes: JSON = ["read": [], "list": [], "unix": [], "tcp": [.integer(Int64(tcp.localEndpoint.port))], "kill": [], "ptrace": [], "exec": [], "write": []]
        let output = try results(try runSandboxed(store, state, hash: hash, arguments: ["--probes", probes.encodedString()]) { $0.network = true })
        XCTAssertEqual(output.first?.ok, true, "\(output)")
    }

    // MARK: The binary that runs is the binary that was hashed

    func testOnlyTheBytesTheManifestPinsAreOpened() throws {
        let (store, _, hash) = try bundle("#!/bin/true\n")
        XCTAssertNoThrow(try VerifiedBinary.open(storeDirectory: store, relativePath: "bin/app", expectedSHA256: hash, maxBytes: 100))
        XCTAssertThrowsError(try VerifiedBinary.open(storeDirectory: store, relativePath: "bin/app", expectedSHA256: String(repeating: "0", count: 64), maxBytes: 100)) {
            guard case .hashMismatch = $0 as? SandboxError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try VerifiedBinary.open(storeDirectory: store, relativePath: "bin/app", expectedSHA256: hash, maxBytes: 5))
        symlink(store + "/bin/app", store + "/bin/link")
        symlink(store + "/bin", store + "/linkdir")
        // A FIFO at the path is refused at once; it does not wait for a writer.
        mkfifo(store + "/bin/fifo", 0o644)
        for path in ["bin/link", "linkdir/app", "../store/bin/app", "bin", "/etc/passwd", "bin/fifo"] {
            XCTAssertThrowsError(try VerifiedBinary.open(storeDirectory: store, relativePath: path, expectedSHA256: hash, maxBytes: 100), path) {
                guard case .badBinary = $0 as? SandboxError else { return XCTFail("\(path): \($0)") }
            }
        }
    }

    func testAFileSwappedOrRewrittenUnderneathNeverRunsUnverified() throws {
        let good = "#!/usr/bin/python3\nprint('verified')\n"
        let evil = "#!/usr/bin/python3\nprint('EVIL')\n"
        let (store, state, hash) = try bundle(good)
        try Data(evil.utf8).write(to: URL(fileURLWithPath: store + "/bin/evil"))
        try Data(good.utf8).write(to: URL(fileURLWithPath: store + "/bin/good"))
        // A thread swaps the two files in and out while the binary is opened again and again.
        let stop = ManagedAtomicFlag()
        let swapper = Thread {
            while !stop.isSet {
                rename(store + "/bin/evil", store + "/bin/app")
                usleep(300)
                link(store + "/bin/good", store + "/bin/app.tmp")
                rename(store + "/bin/app.tmp", store + "/bin/app")
                usleep(300)
            }
        }
        swapper.start()
        var opened = 0
        var refused = 0
        for _ in 0..<200 {
            do {
                let binary = try VerifiedBinary.open(storeDirectory: store, relativePath: "bin/app", expectedSHA256: hash, maxBytes: 1000)
                XCTAssertEqual(Hex.lowercase(Sodium.sha256(Self.contents(of: binary.descriptor))), hash, "the sealed copy is the verified bytes")
                opened += 1
            } catch {
                refused += 1
            }
            if !FileManager.default.fileExists(atPath: store + "/bin/evil") {
                try? Data(evil.utf8).write(to: URL(fileURLWithPath: store + "/bin/evil"))
            }
        }
        stop.set()
        while swapper.isExecuting { usleep(1000) }
        print("swapped underneath: \(opened) opened verified, \(refused) refused")
        // Which side of each race an open lands on is the scheduler's choice; both sides, met
        // for certain: the other file in place is refused, the pinned one opens.
        try Data(evil.utf8).write(to: URL(fileURLWithPath: store + "/bin/evil"))
        rename(store + "/bin/evil", store + "/bin/app")
        XCTAssertThrowsError(try VerifiedBinary.open(storeDirectory: store, relativePath: "bin/app", expectedSHA256: hash, maxBytes: 1000)) {
            guard case .hashMismatch = $0 as? SandboxError else { return XCTFail("\($0)") }
        }
        rename(store + "/bin/good", store + "/bin/app")
        XCTAssertNoThrow(try VerifiedBinary.open(storeDirectory: store, relativePath: "bin/app", expectedSHA256: hash, maxBytes: 1000))
        // Rewritten in place after the check: what runs is still the verified copy.
        try Data(good.utf8).write(to: URL(fileURLWithPath: store + "/bin/app"))
        let binary = try VerifiedBinary.open(storeDirectory: store, relativePath: "bin/app", expectedSHA256: hash, maxBytes: 1000)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: store + "/bin/app"))
        try handle.write(contentsOf: Data(evil.utf8))
        try handle.close()
        let process = try AppSandbox.spawn(
            binary: binary, argv: ["/app/bin/app"],
            policy: SandboxPolicy(storeDirectory: store, stateDirectory: state, network: false, execAllowList: [], environment: [:]),
            runAs: (65534, 65534), launcherPath: launcher)
        let output = FileHandle(fileDescriptor: process.takeStandardOutput(), closeOnDealloc: true).readDataToEndOfFile()
        var status: Int32 = 0
        waitpid(process.pid, &status, 0)
        XCTAssertEqual(String(decoding: output, as: UTF8.self), "verified\n")
    }

    /// A listening Unix stream socket at `path`.
    private static func unixListener(path: String) throws -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard descriptor >= 0, bound == 0, listen(descriptor, 8) == 0 else { throw SocketError.posix("unix listener") }
        return descriptor
    }

    private static func contents(of descriptor: Int32) -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var offset: off_t = 0
        while true {
            let count = pread(descriptor, &buffer, buffer.count, offset)
            guard count > 0 else { return bytes }
            bytes += buffer[..<count]
            offset += off_t(count)
        }
    }
}

/// A flag one thread sets and another reads.
private final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
