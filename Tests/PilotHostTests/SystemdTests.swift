import Foundation
import Logging
import PilotHost
import PilotSystemd
import PilotTestSupport
import PilotWire
import XCTest

/// A service manager's notification socket, as a test holds it: every message, in order.
final class NotifySocket: @unchecked Sendable {
    // @unchecked: `received` is guarded by `lock`; the descriptor is fixed at init.
    let path: String
    private let descriptor: Int32
    private let lock = NSLock()
    private var received: [String] = []

    init(path: String) throws {
        self.path = path
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard descriptor >= 0, bound == 0 else { throw HostTestError("cannot bind \(path): errno \(errno)") }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = recv(descriptor, &buffer, buffer.count, 0)
                if count > 0 {
                    let text = String(decoding: buffer[0..<count], as: UTF8.self)
                    lock.withLock { received.append(text) }
                } else if count < 0, errno != EAGAIN, errno != EINTR {
                    return
                }
            }
        }.start()
    }

    var messages: [String] { lock.withLock { received } }

    func close() { shutdown(descriptor, Int32(SHUT_RDWR)); Glibc.close(descriptor) }
}

final class SystemdTests: HostProcessTestCase {
    /// Under `systemd-socket-activate` (datagram and stream sockets, named): the host serves the
    /// passed sockets and binds none of its own; READY, STATUS, WATCHDOG, RELOADING and STOPPING
    /// reach NOTIFY_SOCKET in order.
    func testSocketActivationUsesThePassedSocketsAndNotifiesInOrder() throws {
        let activate = "/usr/bin/systemd-socket-activate"
        guard FileManager.default.isExecutableFile(atPath: activate) else {
            throw XCTSkip("systemd-socket-activate is not installed (apt-get install systemd)")
        }
        let registryPort = try startRendezvous()
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
        let notify = try NotifySocket(path: directory.path("notify.sock"))
        defer { notify.close() }
        let tunnelPort = try LoopbackSocket.freePort()
        let unusedPort = try LoopbackSocket.freePort()
        let admin = runtime + "/admin.sock"
        // Started through a shell that waits for it: the activator closes every descriptor it
        // does not pass on, which Foundation's Process would take for the child's exit.
        let pidFile = directory.path("host.pid")
        let launcher = try ChildProcess(
            name: "activated-host", executable: URL(fileURLWithPath: "/bin/sh"),
            arguments: [
                "-c", "\"$0\" \"$@\" & echo $! > \(pidFile); wait", activate, "-l", admin, activate, "-d", "-l", "127.0.0.1:\(tunnelPort)", "--fdname=admin:tunnel",
                "-E", "NOTIFY_SOCKET=\(notify.path)", "-E", "WATCHDOG_USEC=400000",
                bin.appendingPathComponent("pilot-host").path, "--state-dir", directory.path("state"), "--runtime-dir", runtime,
                "--registry", "127.0.0.1:\(registryPort)", "--listen", "127.0.0.1:\(unusedPort)",
            ],
            logDirectory: directory.url)
        processes.append(launcher)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) { FileManager.default.fileExists(atPath: admin) })
        // The activator execs the host: same pid.
        let pid = try XCTUnwrap(Int32((try String(contentsOfFile: pidFile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { kill(pid, SIGKILL) }
        // The activator starts the host at the first connection; pilotctl is that connection.
        let alice = pilotctl(["identity", "create", "alice", "--hostname", "alice"])
        XCTAssertEqual(alice.json?["data"]?["address"], "0:0000.0000.0001", "\(alice)")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { notify.messages.contains { $0.hasPrefix("READY=1") } }, launcher.output)
        XCTAssertEqual(pilotctl(["info", "--identity", "alice"]).json?["data"]?["hostname"], "alice")

        // The host bound nothing of its own: not the configured listen port, not admin.sock
        // (the activator made it 0644; ours would be 0600).
        XCTAssertTrue(try LoopbackSocket.canBindUDP(port: unusedPort), "pilot-host bound --listen despite the passed socket")
        XCTAssertFalse(try LoopbackSocket.canBindUDP(port: tunnelPort), "the passed tunnel socket is not held")
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: admin)[.posixPermissions] as? Int, 0o644)
        XCTAssertTrue(launcher.output.contains("tunnel socket from systemd"), launcher.output)

        XCTAssertTrue(ChildProcess.waitUntil(timeout: 5) { notify.messages.filter { $0 == "WATCHDOG=1" }.count >= 3 })
        kill(pid, SIGHUP)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) { notify.messages.filter { $0.hasPrefix("READY=1") }.count == 2 }, "\(notify.messages)")
        kill(pid, SIGTERM)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) { kill(pid, 0) != 0 }, "pilot-host did not stop on SIGTERM")
        XCTAssertEqual(notify.messages.last?.hasPrefix("STOPPING=1"), true, "\(notify.messages)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: admin), "the passed admin socket's file belongs to the socket unit")

        // In order: READY (with a status), watchdog pings, RELOADING, READY again, STOPPING.
        let kinds = notify.messages.map { $0.split(separator: "\n").first.map(String.init) ?? "" }
        let order = kinds.reduce(into: [String]()) { if $0.last != $1 { $0.append($1) } }.filter { $0 != "WATCHDOG=1" && !$0.hasPrefix("STATUS=") }
        XCTAssertEqual(order, ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], "\(notify.messages)")
        XCTAssertTrue(notify.messages.first?.contains("STATUS=1 identities") == true || notify.messages.first?.contains("STATUS=0 identities") == true, "\(notify.messages)")
        XCTAssertLessThan(try XCTUnwrap(kinds.firstIndex(of: "READY=1")), try XCTUnwrap(kinds.firstIndex(of: "WATCHDOG=1")))
    }

    /// The service's user model: pilot-host as an unprivileged user whose only capability is
    /// CAP_CHOWN (as units/pilot-host.service runs it) reaches the registry, creates identities
    /// and hands each identity's socket to its owner, who alone can use it.
    func testAnUnprivilegedHostWithOnlyCapChownServesIdentityOwners() throws {
        let setpriv = "/usr/bin/setpriv"
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: setpriv) else {
            throw XCTSkip("needs root and setpriv to run pilot-host as another user")
        }
        let registryPort = try startRendezvous()
        let serviceUID: uid_t = 65533
        for path in [directory.path("state"), runtime] {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            XCTAssertEqual(chown(path, serviceUID, serviceUID), 0)
        }
        let host = try ChildProcess(
            name: "unprivileged-host", executable: URL(fileURLWithPath: setpriv),
            arguments: [
                "--reuid=\(serviceUID)", "--regid=\(serviceUID)", "--clear-groups", "--inh-caps=+chown", "--ambient-caps=+chown",
                bin.appendingPathComponent("pilot-host").path, "--state-dir", directory.path("state"), "--runtime-dir", runtime,
                "--registry", "127.0.0.1:\(registryPort)", "--listen", "127.0.0.1:\(try LoopbackSocket.freePort())",
            ],
            logDirectory: directory.url)
        processes.append(host)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 20) { host.output.contains("pilot-host serving") }, host.output)
        let status = try String(contentsOfFile: "/proc/\(host.pid)/status", encoding: .utf8)
        XCTAssertTrue(status.contains("Uid:\t\(serviceUID)\t\(serviceUID)"), status)

        let alice = pilotctl(["identity", "create", "alice", "--owner", "65534"])
        XCTAssertEqual(alice.json?["data"]?["address"], "0:0000.0000.0001", "\(alice) \(host.output)")
        var info = stat()
        XCTAssertEqual(stat(runtime + "/id/alice.sock", &info), 0)
        XCTAssertEqual(info.st_uid, 65534, "the socket belongs to alice's owner")
        XCTAssertEqual(info.st_mode & 0o777, 0o600)
        XCTAssertEqual(pilotctl(["info"], asNobody: true).json?["data"]?["name"], "alice")
    }

    /// Sockets are sorted by name, else by kind; a socket of the wrong kind stops the start.
    func testActivatedSocketsAreSortedByNameAndKind() throws {
        let udp = Int32(SOCK_DGRAM.rawValue), stream = Int32(SOCK_STREAM.rawValue)
        let sockets = try ActivatedSockets([
            .init(descriptor: 3, name: "admin", type: stream, family: AF_UNIX),
            .init(descriptor: 4, name: "tunnel", type: udp, family: AF_INET),
            .init(descriptor: 5, name: "pilot-host.socket", type: udp, family: AF_INET6),
        ])
        XCTAssertEqual(sockets.tunnels, [4, 5])
        XCTAssertEqual(sockets.admin, 3)
        XCTAssertThrowsError(try ActivatedSockets([.init(descriptor: 3, name: "tunnel", type: stream, family: AF_UNIX)])) { error in
            XCTAssertTrue("\(error)".contains("expected a UDP socket (tunnel) or a Unix stream socket (admin)"), "\(error)")
        }
        XCTAssertThrowsError(try ActivatedSockets([
            .init(descriptor: 3, name: "admin", type: stream, family: AF_UNIX), .init(descriptor: 4, name: "x", type: stream, family: AF_UNIX),
        ]))
        XCTAssertTrue(try ActivatedSockets([]).isEmpty)
    }

    /// Metadata becomes journal fields named PILOT_*, and the message carries it readably.
    func testJournalEntriesCarryIdentityFields() {
        let fields = JournalLogHandler.fields(
            level: .warning, message: "handshake refused", metadata: ["identity": "alice", "peer": "0:0000.0000.0007", "node-id": "3"],
            label: "pilot-host", file: "F", function: "f", line: 9)
        XCTAssertEqual(fields, [
            "MESSAGE=handshake refused identity=alice node-id=3 peer=0:0000.0000.0007", "PRIORITY=4", "SYSLOG_IDENTIFIER=pilot-host",
            "CODE_FILE=F", "CODE_LINE=9", "CODE_FUNC=f", "PILOT_IDENTITY=alice", "PILOT_NODE_ID=3", "PILOT_PEER=0:0000.0000.0007",
        ])
        XCTAssertEqual(JournalLogHandler.fieldName("PILOT_IDENTITY"), "PILOT_IDENTITY")
    }

    /// Where journald runs, a line logged with an identity is found by `journalctl PILOT_IDENTITY=`.
    func testJournaldFindsALogLineByIdentity() throws {
        guard FileManager.default.fileExists(atPath: "/run/systemd/journal/socket") else {
            throw XCTSkip("journald is not running here (no /run/systemd/journal/socket)")
        }
        let token = "test-\(UInt64.random(in: 0...UInt64.max))"
        var logger = Logger(label: "pilot-host-test") { JournalLogHandler(label: $0) }
        logger.logLevel = .info
        logger.info("journald test line", metadata: ["identity": .string(token)])
        let found = ChildProcess.waitUntil(timeout: 10, every: 0.2) {
            ChildProcess.run("/usr/bin/journalctl", ["PILOT_IDENTITY=\(token)", "-o", "cat", "--no-pager"]).stdout.contains("journald test line")
        }
        XCTAssertTrue(found, "journalctl PILOT_IDENTITY=\(token) found nothing")
    }
}
