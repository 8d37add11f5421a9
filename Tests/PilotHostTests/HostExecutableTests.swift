import Foundation
import PilotCrypto
import PilotHost
import PilotStore
import PilotTestSupport
import PilotWire
import XCTest

/// `pilot-host` and `pilotctl` as users run them, with `pilot-rendezvous` as the registry.
final class HostExecutableTests: HostProcessTestCase {
    /// An admin token file that cannot be used stops the host at start, naming the file and
    /// why: broadcasts must not be silently off when the operator configured them on.
    func testAnUnusableAdminTokenFileStopsTheHostWithTheReason() throws {
        let empty = directory.path("empty-token")
        try Data("\nsecond line\n".utf8).write(to: URL(fileURLWithPath: empty))
        for (file, reason) in [(directory.path("no-such-token"), "cannot be read"), (empty, "its first line is empty")] {
            let result = ChildProcess.run(
                bin.appendingPathComponent("pilot-host").path,
                ["--state-dir", directory.path("state"), "--runtime-dir", runtime, "--listen", "127.0.0.1:0", "--admin-token-file", file],
                timeout: 20)
            XCTAssertNotEqual(result.status, 0)
            XCTAssertTrue(result.output.contains("admin-token-file = \(file): \(reason)"), result.output)
        }
    }

    /// host.db holds identities but the master key is gone: the start fails saying that the key
    /// was missing and just created, and the key it created is removed again (the next start
    /// says the same, not "does not open with this master key").
    func testAMissingMasterKeyIsNamedAsJustCreatedAndNotLeftBehind() throws {
        let state = directory.path("state")
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let otherKeys = try IdentityKeys(masterKey: SecretBox.generateKey())
        try HostStore(path: state + "/host.db").create(
            IdentityRecord(name: "alice", sealedKey: otherKeys.seal(try Ed25519PrivateKey()), ownerUID: 0, createdAt: 0))
        for _ in 0..<2 {
            let result = ChildProcess.run(
                bin.appendingPathComponent("pilot-host").path,
                ["--state-dir", state, "--runtime-dir", runtime, "--listen", "127.0.0.1:0", "--registry", "127.0.0.1:1"], timeout: 20)
            XCTAssertNotEqual(result.status, 0)
            XCTAssertTrue(result.output.contains("no master key was found at \(state)/master-key"), result.output)
            XCTAssertTrue(result.output.contains("just created"), result.output)
            XCTAssertFalse(FileManager.default.fileExists(atPath: state + "/master-key"), "the key made for nothing is removed")
        }
    }

    /// The host's code is mapped a page at a time (CCodePages): the kernel shows the binary's
    /// executable mapping registered for asynchronous write-protection (`uw` in its VmFlags),
    /// which turns fault-around off, and the text resident is a fraction of what fault-around
    /// maps. `map-code-on-demand = no` leaves the mapping as the kernel made it. Needs Linux 6.7;
    /// skipped, saying so, on an older kernel.
    func testTheHostsCodeIsMappedAPageAtATimeUnlessSetOtherwise() throws {
        let registryPort = try startRendezvous()
        func start(_ name: String, _ extra: [String]) throws -> ChildProcess {
            try self.start(
                name, "pilot-host",
                ["--state-dir", directory.path(name), "--runtime-dir", directory.path(name + "-run"), "--registry", "127.0.0.1:\(registryPort)",
                 "--beacon", "127.0.0.1:1", "--listen", "127.0.0.1:0"] + extra,
                ready: "pilot-host serving")
        }
        let onDemand = try start("on-demand", [])
        let kernel = ProcessInfo.processInfo.operatingSystemVersion
        if (kernel.majorVersion, kernel.minorVersion) < (6, 7) {
            throw XCTSkip("Linux \(kernel.majorVersion).\(kernel.minorVersion) cannot map code a page at a time (6.7 can): \(onDemand.output)")
        }
        XCTAssertTrue(onDemand.output.contains("code mapped a page at a time"), onDemand.output)
        let byKernel = try start("by-kernel", ["--map-code-on-demand", "no"])
        let binary = bin.appendingPathComponent("pilot-host").resolvingSymlinksInPath().path
        let registered = try executableMappings(of: onDemand.pid, file: binary)
        let unregistered = try executableMappings(of: byKernel.pid, file: binary)
        XCTAssertFalse(registered.isEmpty, "the binary's code is mapped")
        XCTAssertTrue(registered.allSatisfy { $0.flags.contains("uw") }, "\(registered)")
        XCTAssertFalse(unregistered.contains { $0.flags.contains("uw") }, "\(unregistered)")
        let resident = (registered.map(\.residentKB).reduce(0, +), unregistered.map(\.residentKB).reduce(0, +))
        print("the binary's code resident: \(resident.0) kB a page at a time, \(resident.1) kB with fault-around")
        XCTAssertLessThan(resident.0, resident.1, "only the pages used are mapped")
    }

    /// The executable mappings of `file` in process `pid`: their VmFlags and resident kB.
    private func executableMappings(of pid: Int32, file: String) throws -> [(flags: [Substring], residentKB: Int)] {
        let smaps = try String(contentsOfFile: "/proc/\(pid)/smaps", encoding: .utf8)
        var mappings: [(flags: [Substring], residentKB: Int)] = []
        var inside = false
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let range = fields.first, range.contains("-"), fields.count >= 5, !range.hasSuffix(":") {
                inside = fields.count >= 6 && fields[1].hasPrefix("r-x") && fields[5...].joined(separator: " ") == file
                if inside { mappings.append(([], 0)) }
            } else if inside, fields.first == "Rss:", fields.count >= 2 {
                mappings[mappings.count - 1].residentKB = Int(fields[1]) ?? 0
            } else if inside, fields.first == "VmFlags:" {
                mappings[mappings.count - 1].flags = Array(fields.dropFirst())
            }
        }
        return mappings
    }

    func testAdminCreatesIdentitiesThatKeepTheirAddressesAcrossARestart() throws {
        let registryPort = try startRendezvous()
        let host = try startHost(registryPort: registryPort, generation: 1)

        let alice = pilotctl(["identity", "create", "alice", "--hostname", "alice", "--tags", "worker"])
        XCTAssertEqual(alice.status, 0)
        XCTAssertEqual(alice.json?["data"]?["address"], "0:0000.0000.0001")
        let bob = pilotctl(["identity", "create", "bob", "--owner", "65534"])
        XCTAssertEqual(bob.json?["data"]?["node_id"], 2)
        let duplicate = pilotctl(["identity", "create", "alice"])
        XCTAssertEqual(duplicate.status, 1)
        XCTAssertEqual(duplicate.json?["code"], "already_exists")
        let badName = pilotctl(["identity", "create", "../x"])
        XCTAssertEqual(badName.json?["code"], "invalid_argument")
        let missing = pilotctl(["identity", "show", "carol"])
        XCTAssertEqual(missing.json?["code"], "not_found")
        XCTAssertEqual(pilotctl(["identity", "list"]).json?["data"]?["identities"]?.arrayValue?.count, 2)

        // Sockets: each identity's is owned by its owner.
        var info = stat()
        XCTAssertEqual(stat(runtime + "/id/bob.sock", &info), 0)
        XCTAssertEqual(info.st_uid, 65534)

        host.stop()
        _ = try startHost(registryPort: registryPort, generation: 2)
        let shown = pilotctl(["identity", "show", "alice"])
        XCTAssertEqual(shown.json?["data"]?["address"], "0:0000.0000.0001")
        XCTAssertEqual(pilotctl(["info", "--identity", "bob"]).json?["data"]?["node_id"], 2)

        // The identity's own commands go to the registry and stick across restarts of the host.
        let tagged = pilotctl(["set-tags", "gpu", "batch", "--identity", "alice"])
        XCTAssertEqual(tagged.json?["data"]?["tags"], ["gpu", "batch"])
        XCTAssertEqual(pilotctl(["set-hostname", "alice2", "--identity", "alice"]).json?["data"]?["hostname"], "alice2")
        XCTAssertEqual(pilotctl(["set-public", "--identity", "alice"]).json?["data"]?["public"], true)
        let found = pilotctl(["find", "alice2", "--identity", "bob"])
        XCTAssertEqual(found.json?["data"]?["address"], "0:0000.0000.0001")
        let looked = pilotctl(["lookup", "0:0000.0000.0001", "--identity", "bob"])
        XCTAssertEqual(looked.json?["data"]?["tags"], ["gpu", "batch"])
        XCTAssertEqual(looked.json?["data"]?["public"], true)
        XCTAssertEqual(pilotctl(["find", "nobody-here", "--identity", "bob"]).json?["code"], "not_found")
        XCTAssertEqual(pilotctl(["set-hostname", "Bad Name", "--identity", "alice"]).json?["code"], "invalid_argument")
        _ = pilotctl(["clear-tags", "--identity", "alice"])
        _ = pilotctl(["clear-hostname", "--identity", "alice"])
        let cleared = pilotctl(["info", "--identity", "alice"]).json?["data"]
        XCTAssertEqual(cleared?["tags"], [])
        XCTAssertEqual(cleared?["hostname"], .null)

        XCTAssertEqual(pilotctl(["identity", "delete", "alice"]).status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: runtime + "/id/alice.sock"))
        XCTAssertEqual(pilotctl(["identity", "list"]).json?["data"]?["identities"]?.arrayValue?.count, 1)
    }

    /// Under the defaults the units ship: the registry on TLS, the host pinning its certificate
    /// and presenting the host credential. The registry takes no new keys from strangers at all
    /// here, so every identity made is the credential's doing.
    func testAHostPinningTheRegistrysCertificateCreatesIdentitiesWithItsCredential() throws {
        let certificate = directory.path("cert.pem")
        let key = directory.path("key.pem")
        let made = ChildProcess.run(
            "/usr/bin/env",
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", key,
             "-out", certificate, "-days", "2", "-nodes", "-subj", "/CN=pilot-rendezvous"])
        guard made.status == 0 else { throw XCTSkip("openssl cannot make a test certificate: \(made.output.suffix(300))") }
        let token = directory.path("admin-token")
        try Data("operator-secret\n".utf8).write(to: URL(fileURLWithPath: token))
        let rendezvous = bin.appendingPathComponent("pilot-rendezvous").path
        let printed = ChildProcess.run(rendezvous, ["--admin-token-file", token, "--print-host-credential"], timeout: 20)
        XCTAssertEqual(printed.status, 0, printed.output)
        let credential = directory.path("credential")
        try Data(printed.stdout.utf8).write(to: URL(fileURLWithPath: credential))

        let registryPort = try LoopbackSocket.freePort()
        let server = try start(
            "rendezvous", "pilot-rendezvous",
            ["--registry-addr", "127.0.0.1:\(registryPort)", "--beacon-addr", "127.0.0.1:0", "--state-dir", directory.path("rendezvous"),
             "--tls", "--tls-cert", certificate, "--tls-key", key, "--admin-token-file", token,
             "--new-keys-per-second", "0.001", "--all-new-keys-per-second", "0.001"],
            ready: "registry-fingerprint ")
        let line = server.output.split(separator: "\n").first { $0.hasPrefix("registry-fingerprint ") }
        let fingerprint = String(line?.dropFirst("registry-fingerprint ".count) ?? "")
        XCTAssertEqual(fingerprint.count, 64)

        let runtime = try XCTUnwrap(
            try startHosts(
                1, registryPort: registryPort,
                extra: ["--registry-tls", "yes", "--registry-fingerprint", fingerprint, "--registry-credential-file", credential]
            ).first)
        for name in ["alice", "bob", "carol"] {
            XCTAssertEqual(ctl(runtime, ["identity", "create", name, "--hostname", name])?["status"], "ok", name)
        }
        XCTAssertEqual(ctl(runtime, ["set-hostname", "alice-2", "--identity", "alice"])?["data"]?["hostname"], "alice-2")
        XCTAssertEqual(ctl(runtime, ["find", "alice-2", "--identity", "bob"])?["data"]?["address"], "0:0000.0000.0001")
    }

    func testAnotherUserReachesOnlyItsOwnIdentity() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to run pilotctl as another uid (running as uid \(getuid()))") }
        let registryPort = try startRendezvous()
        _ = try startHost(registryPort: registryPort, generation: 1)
        XCTAssertEqual(pilotctl(["identity", "create", "root-agent"]).status, 0)
        XCTAssertEqual(pilotctl(["identity", "create", "nobody-agent", "--owner", "65534"]).status, 0)

        // With no identity named, nobody gets the one it may use.
        let own = pilotctl(["info"], asNobody: true)
        XCTAssertEqual(own.status, 0)
        XCTAssertEqual(own.json?["data"]?["name"], "nobody-agent")
        let other = pilotctl(["info", "--identity", "root-agent"], asNobody: true)
        XCTAssertEqual(other.status, 1)
        XCTAssertEqual(other.json?["code"], "permission_denied")
        let admin = pilotctl(["identity", "list"], asNobody: true)
        XCTAssertEqual(admin.json?["code"], "permission_denied")

        // Ownership moves with set-owner: now root-agent is nobody's too.
        XCTAssertEqual(pilotctl(["identity", "set-owner", "root-agent", "65534"]).status, 0)
        XCTAssertEqual(pilotctl(["info", "--identity", "root-agent"], asNobody: true).status, 0)
    }
}

extension HostExecutableTests {
    /// Two pilot-host processes: a private identity asks a public auto-approving service on the
    /// other host; the service must report the trust before answering (the registry resolves a
    /// private asker only then), and the asker trusts it at once, mutually.
    func testAPrivateIdentityGetsTrustFromAnAutoApprovingServiceOnAnotherHost() throws {
        let registryPort = try startRendezvous()
        let runtimes = try startHosts(2, registryPort: registryPort)
        func ctl(_ host: Int, _ arguments: [String]) -> JSON? { self.ctl(runtimes[host], arguments) }
        let asker = try XCTUnwrap(ctl(0, ["identity", "create", "asker"])?["data"]?["node_id"]?.integerValue)
        let service = try XCTUnwrap(ctl(1, ["identity", "create", "service", "--public", "--auto-approve"])?["data"]?["node_id"]?.integerValue)
        XCTAssertEqual(ctl(0, ["handshake", "\(service)", "please", "--identity", "asker"])?["data"]?["status"], "sent")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            ctl(0, ["trust", "--identity", "asker"])?["data"]?["trusted"]?.arrayValue?.first?["mutual"] == true
        }, "\(String(describing: ctl(0, ["trust", "--identity", "asker"])))")
        XCTAssertEqual(ctl(1, ["trust", "--identity", "service"])?["data"]?["total"], 1)
        // Trusted both ways now: a message from the service reaches the private asker.
        XCTAssertEqual(ctl(1, ["send-message", "\(asker)", "--data", "welcome", "--identity", "service"])?["data"]?["ack"], "ACK TEXT 7 bytes")
        XCTAssertEqual(ctl(0, ["inbox", "--identity", "asker"])?["data"]?["messages"]?.arrayValue?.first?["data"], "welcome")

        // 50 MB through the service's echo, across the two processes, compared byte for byte.
        let bench = ctl(0, ["bench", "\(service)", "50", "--identity", "asker"])
        XCTAssertEqual(bench?["data"]?["verified"], true, "\(String(describing: bench))")
        XCTAssertEqual(bench?["data"]?["bytes"]?.integerValue, 50 << 20)

        // connect: a stream, a message, one answer (the service's echo).
        XCTAssertEqual(ctl(0, ["connect", "\(service)", "7", "--message", "echo me", "--identity", "asker"])?["data"]?["reply"], "echo me")
        // Datagrams between trusted identities: the service listens, the asker sends.
        let listener = try ChildProcess(
            name: "listen", executable: bin.appendingPathComponent("pilotctl"),
            arguments: ["listen", "6000", "--timeout", "15", "--json", "--identity", "service", "--runtime-dir", runtimes[1]],
            logDirectory: directory.url)
        processes.append(listener)
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 15) {
            // The listener may not be registered yet when the first datagram goes: send until it ends.
            _ = ctl(0, ["send-datagram", "\(service)", "6000", "--data", "a datagram", "--identity", "asker"])
            return !listener.isRunning
        })
        let heard = try JSON(parsing: Array(listener.output.trimmingCharacters(in: .whitespacesAndNewlines).utf8))
        XCTAssertEqual(heard["data"]?["datagrams"]?.arrayValue?.first?["data"], "a datagram", "\(heard)")
        XCTAssertEqual(heard["data"]?["datagrams"]?.arrayValue?.first?["from"]?.stringValue, Address(node: UInt32(asker)).description)
    }

    /// Private identities on two hosts cannot reach each other, so a handshake goes through the
    /// registry; the beacon pokes the target's host, which polls at once: the request arrives
    /// although the target's host polls only every hour by itself.
    func testARelayedHandshakeArrivesAtOnceThroughTheBeaconsPoke() throws {
        let (registryPort, beaconPort) = try startRendezvousAndBeacon()
        let runtimes = try startHosts(2, registryPort: registryPort, extra: ["--beacon", "127.0.0.1:\(beaconPort)", "--handshake-poll", "3600"])
        func ctl(_ host: Int, _ arguments: [String]) -> JSON? { self.ctl(runtimes[host], arguments) }
        let alice = try XCTUnwrap(ctl(0, ["identity", "create", "alice"])?["data"]?["node_id"]?.integerValue)
        let bob = try XCTUnwrap(ctl(1, ["identity", "create", "bob"])?["data"]?["node_id"]?.integerValue)
        // Host 1 told the beacon where bob is when it created him.
        XCTAssertEqual(ctl(0, ["handshake", "\(bob)", "relayed, please", "--identity", "alice"])?["data"]?["status"], "sent")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            ctl(1, ["pending", "--identity", "bob"])?["data"]?["pending"]?.arrayValue?.contains { $0["node_id"]?.integerValue == alice } == true
        }, "bob never saw alice's request: \(String(describing: ctl(1, ["pending", "--identity", "bob"])))")
        // bob's approval goes back the same way and host 0 is poked too.
        XCTAssertEqual(ctl(1, ["approve", "\(alice)", "--identity", "bob"])?["data"]?["status"], "approved")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 5) {
            ctl(0, ["trust", "--identity", "alice"])?["data"]?["trusted"]?.arrayValue?.contains { $0["node_id"]?.integerValue == bob } == true
        }, "\(String(describing: ctl(0, ["trust", "--identity", "alice"])))")
    }

    /// `--listen 127.0.0.1:0`: identities are registered with the port the kernel gave the
    /// socket, so a peer that resolves one through the registry can reach it.
    func testAListenPortOfZeroRegistersThePortTheSocketGot() throws {
        let registryPort = try startRendezvous()
        let (host, zero) = try startHost(0, registryPort: registryPort, listen: "127.0.0.1:0")
        let line = host.output.split(separator: "\n").first { $0.contains("tunnel socket") }
        let port = try XCTUnwrap(line.flatMap { $0.split(separator: ":").last.flatMap { Int($0.prefix { $0.isNumber }) } }, host.output)
        XCTAssertNotEqual(port, 0)
        let alice = try XCTUnwrap(ctl(zero, ["identity", "create", "alice"])?["data"]?["node_id"]?.integerValue)
        // What the registry hands out to peers allowed to resolve alice (she is private, so
        // `lookup` would hide it): its own record.
        let registry = try Database(path: directory.path("rendezvous") + "/registry.db")
        let endpoint = try registry.rows("SELECT real_addr FROM node WHERE id = ?", [.integer(alice)]).first?.first?.text
        XCTAssertEqual(endpoint, "127.0.0.1:\(port)")
    }

    /// After a restart every private identity is reachable before its owner uses it: a peer it
    /// trusts sends it a message, both when the peer still holds a session from before the
    /// restart (its frames no longer open) and when it never talked to it (a fresh key
    /// exchange); the messages arrive although nobody used either identity on this host.
    func testAPrivateIdentityIsReachableAfterARestartBeforeItsOwnerUsesIt() throws {
        let registryPort = try startRendezvous()
        let extra = ["--handshake-poll", "1", "--beacon", "127.0.0.1:1"]
        let listen = "127.0.0.1:\(try LoopbackSocket.freePort())"
        var (restarting, here) = try startHost(0, registryPort: registryPort, listen: listen, extra: extra)
        let other = try startHost(1, registryPort: registryPort, listen: "127.0.0.1:\(try LoopbackSocket.freePort())", extra: extra).runtime
        let alice = try XCTUnwrap(ctl(here, ["identity", "create", "alice"])?["data"]?["node_id"]?.integerValue)
        let carol = try XCTUnwrap(ctl(here, ["identity", "create", "carol"])?["data"]?["node_id"]?.integerValue)
        let bob = try XCTUnwrap(ctl(other, ["identity", "create", "bob"])?["data"]?["node_id"]?.integerValue)
        try trustThroughTheRegistry(asker: (other, "bob", bob), target: (here, "alice", alice))
        try trustThroughTheRegistry(asker: (other, "bob", bob), target: (here, "carol", carol))
        XCTAssertEqual(ctl(other, ["send-message", "\(alice)", "--data", "before", "--identity", "bob"])?["data"]?["ack"], "ACK TEXT 6 bytes")

        restarting.stop()
        (restarting, here) = try startHost(0, registryPort: registryPort, listen: listen, extra: extra, generation: 2)
        for (node, text) in [(alice, "after the restart"), (carol, "first words")] {
            let started = Date()
            let sent = ctl(other, ["send-message", "\(node)", "--data", text, "--identity", "bob"])
            XCTAssertEqual(sent?["data"]?["ack"], .string("ACK TEXT \(text.utf8.count) bytes"), "to \(node): \(String(describing: sent))\n\(restarting.output.suffix(3000))")
            print("send-message to \(node) acknowledged in \(String(format: "%.3f", Date().timeIntervalSince(started))) s")
        }
        for line in restarting.output.split(separator: "\n") where line.contains("resting identity joined") { print(line) }
        let inboxes = ["alice", "carol"].map { name in
            (ctl(here, ["inbox", "--identity", name])?["data"]?["messages"]?.arrayValue ?? []).compactMap { $0["data"]?.stringValue }
        }
        XCTAssertEqual(inboxes, [["before", "after the restart"], ["first words"]])
    }

    /// After a restart a public identity serves its own socket, on the port it had, from READY
    /// on, even with the registry down: peers' tunnels to it go on without waiting for the
    /// registration (which, before, came first and bound the socket only once it succeeded).
    func testAPublicIdentityServesItsOwnSocketFromReadyWithTheRegistryDown() throws {
        let registryPort = try startRendezvous()
        let listen = "127.0.0.1:\(try LoopbackSocket.freePort())"
        var (host, runtime) = try startHost(0, registryPort: registryPort, listen: listen, extra: ["--beacon", "127.0.0.1:1"])
        let port = try publicIdentityWithItsOwnPort(runtime)

        host.stop()
        processes.first { $0.name == "rendezvous" }?.stop()
        (host, runtime) = try startHost(0, registryPort: registryPort, listen: listen, extra: ["--beacon", "127.0.0.1:1"], generation: 2)
        // READY ("pilot-host serving") has been logged: the port must be held already.
        XCTAssertEqual(Self.bindError(port), EADDRINUSE, "port \(port) of the public identity was free at READY\n\(host.output.suffix(2000))")
        // The registration follows READY, after a second of waiting for the (absent) beacon.
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) { host.output.contains("registry unreachable at start") }, "the registry was down")
    }

    /// A public identity made private leaves its socket of its own: the port is closed at once
    /// (before, the socket stayed open, read and unused, until the host stopped); made public
    /// again, it binds the same port anew.
    func testAPublicIdentityMadePrivateClosesItsOwnSocket() throws {
        let registryPort = try startRendezvous()
        let (host, runtime) = try startHost(0, registryPort: registryPort, listen: "127.0.0.1:\(try LoopbackSocket.freePort())")
        let port = try publicIdentityWithItsOwnPort(runtime)
        XCTAssertEqual(Self.bindError(port), EADDRINUSE, "the public identity's port \(port) is held")

        XCTAssertEqual(ctl(runtime, ["set-private", "--identity", "service"])?["status"], "ok")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 5) { Self.bindError(port) == 0 }, "port \(port) stayed open\n\(host.output.suffix(2000))")
        XCTAssertEqual(ctl(runtime, ["set-public", "--identity", "service"])?["status"], "ok")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 5) { Self.bindError(port) == EADDRINUSE }, "port \(port) was not bound again")
    }

    /// Creates public identity "service" on the host with runtime `runtime` (state0) and returns
    /// the port of its own socket, once host.db has it.
    func publicIdentityWithItsOwnPort(_ runtime: String) throws -> UInt16 {
        XCTAssertEqual(ctl(runtime, ["identity", "create", "service", "--public"])?["status"], "ok")
        let store = try HostStore(path: directory.path("state0") + "/host.db")
        var port: UInt16 = 0
        guard ChildProcess.waitUntil(timeout: 10, {
            port = (try? store.all())?.first { $0.name == "service" }?.ownPort ?? 0
            return port != 0
        }) else { throw HostTestError("the public identity never got a socket of its own") }
        return port
    }

    /// 0 if a UDP socket can be bound to 127.0.0.1:`port` now (it is closed at once), else errno.
    static func bindError(_ port: UInt16) -> Int32 {
        let probe = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(probe) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(probe, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return bound == 0 ? 0 : errno
    }

    /// `asker` (private, on the host with runtime `asker.runtime`) asks private `target` for
    /// trust: neither can resolve the other, so it goes through the registry (the hosts poll
    /// it); the target approves; returns when the asker trusts the target.
    func trustThroughTheRegistry(asker: (runtime: String, name: String, node: Int64), target: (runtime: String, name: String, node: Int64)) throws {
        let asked = ctl(asker.runtime, ["handshake", "\(target.node)", "let me in", "--identity", asker.name])
        XCTAssertEqual(asked?["data"]?["status"], "sent", "\(String(describing: asked))")
        guard ChildProcess.waitUntil(timeout: 15, {
            ctl(target.runtime, ["pending", "--identity", target.name])?["data"]?["pending"]?.arrayValue?.contains { $0["node_id"]?.integerValue == asker.node } == true
        }) else { throw HostTestError("\(target.name) never saw the request of \(asker.name)") }
        XCTAssertEqual(ctl(target.runtime, ["approve", "\(asker.node)", "--identity", target.name])?["data"]?["status"], "approved")
        guard ChildProcess.waitUntil(timeout: 15, {
            ctl(asker.runtime, ["trust", "--identity", asker.name])?["data"]?["trusted"]?.arrayValue?.contains { $0["node_id"]?.integerValue == target.node } == true
        }) else { throw HostTestError("\(asker.name) never learnt that \(target.name) approved") }
    }

    /// A host whose open-file limit cannot be raised (as LimitNOFILE= too low, without
    /// CAP_SYS_RESOURCE): past the limit, identity.create is refused with a clear error and leaves
    /// nothing behind, while the admin socket and every existing identity keep being served.
    func testAFullFileTableRefusesNewIdentitiesAndKeepsServingTheRest() throws {
        let registryPort = try startRendezvous()
        // 256 descriptors are kept for the host and 16 for the admin socket's connections, so
        // about 45 identity sockets fit under 320.
        let limit = 320
        var command = ["/usr/bin/prlimit", "--nofile=\(limit):\(limit)"]
        if getuid() == 0 { command += ["/usr/bin/setpriv", "--bounding-set=-sys_resource"] }
        command += [bin.appendingPathComponent("pilot-host").path,
                    "--state-dir", directory.path("state"), "--runtime-dir", runtime, "--registry", "127.0.0.1:\(registryPort)",
                    "--beacon", "127.0.0.1:1", "--listen", "127.0.0.1:0"]
        let host = try ChildProcess(
            name: "pilot-host", executable: URL(fileURLWithPath: command[0]), arguments: Array(command.dropFirst()), logDirectory: directory.url)
        processes.append(host)
        guard ChildProcess.waitUntil(timeout: 20, { host.output.contains("pilot-host serving") }) else {
            throw HostTestError("pilot-host did not start: \(host.output)")
        }

        var created: [String] = []
        var refusal: JSON?
        for index in 0..<limit {
            let reply = pilotctl(["identity", "create", "agent\(index)"])
            guard reply.status == 0 else {
                refusal = reply.json
                break
            }
            created.append("agent\(index)")
        }
        XCTAssertGreaterThan(created.count, 20)
        XCTAssertLessThan(created.count, limit - 256)
        XCTAssertEqual(refusal?["code"], "unavailable")
        XCTAssertTrue(refusal?["message"]?.stringValue?.contains("LimitNOFILE=") == true, "\(String(describing: refusal))")

        // The refused identity left nothing: not listed, no socket, and forgotten at the registry
        // (only its tombstone keeps the node id it gave).
        let refused = "agent\(created.count)"
        let names = pilotctl(["identity", "list"]).json?["data"]?["identities"]?.arrayValue?.compactMap { $0["name"]?.stringValue }
        XCTAssertEqual(names?.sorted(), created.sorted())
        XCTAssertFalse(FileManager.default.fileExists(atPath: runtime + "/id/\(refused).sock"))
        let lookup = pilotctl(["lookup", "0:0000.0000.\(String(format: "%04X", created.count + 1))", "--identity", "agent0"]).json
        XCTAssertEqual(lookup?["code"], "not_found", "\(String(describing: lookup))")
        XCTAssertTrue(lookup?["message"]?.stringValue?.contains("is not registered") == true, "\(String(describing: lookup))")

        // Everyone else is still served, and a deletion makes room again.
        XCTAssertTrue(host.isRunning)
        for name in [created.first!, created.last!] {
            XCTAssertEqual(pilotctl(["info", "--identity", name]).json?["data"]?["name"]?.stringValue, name)
        }
        XCTAssertEqual(pilotctl(["identity", "delete", created.last!]).status, 0)
        XCTAssertEqual(pilotctl(["identity", "create", refused]).status, 0)
        XCTAssertEqual(pilotctl(["info", "--identity", refused]).json?["data"]?["name"]?.stringValue, refused)
    }

    /// kill -9 of pilot-host at random moments while 1,000 creations and deletions run: afterwards
    /// the database is sound, every create that returned success (and was not deleted) is there
    /// with a key that opens, and nothing is half-made.
    func testKillNineDuringCreationsAndDeletionsLosesNothingThatSucceeded() throws {
        let registryPort = try LoopbackSocket.freePort()
        _ = try start(
            "rendezvous", "pilot-rendezvous",
            ["--registry-addr", "127.0.0.1:\(registryPort)", "--beacon-addr", "127.0.0.1:0", "--state-dir", directory.path("rendezvous"),
             "--new-keys-per-second", "100000", "--all-new-keys-per-second", "100000"],
            ready: "registry 127.0.0.1")
        var generation = 1
        var host = try startHost(registryPort: registryPort, generation: generation)

        let outcomes = Outcomes()
        let ctl = bin.appendingPathComponent("pilotctl").path
        let runtime = runtime
        let worker = Thread {
            var live: [String] = []
            for index in 0..<1000 {
                if index % 4 == 3, let victim = live.first {
                    let result = ChildProcess.run(ctl, ["identity", "delete", victim, "--json", "--runtime-dir", runtime], timeout: 20)
                    outcomes.record(delete: victim, ok: result.status == 0)
                    if result.status == 0 { live.removeFirst() }
                } else {
                    let name = "id\(index)"
                    let result = ChildProcess.run(ctl, ["identity", "create", name, "--json", "--runtime-dir", runtime], timeout: 20)
                    outcomes.record(create: name, ok: result.status == 0)
                    if result.status == 0 { live.append(name) }
                }
            }
            outcomes.finish()
        }
        worker.start()
        var kills = 0
        let deadline = Date().addingTimeInterval(300)
        while !outcomes.finished, Date() < deadline {
            // A deliberate random pause: the kill lands anywhere in an operation.
            usleep(useconds_t.random(in: 150_000...600_000))
            guard !outcomes.finished else { break }
            host.kill9()
            kills += 1
            generation += 1
            host = try startHost(registryPort: registryPort, generation: generation)
        }
        XCTAssertTrue(outcomes.finished, "the 1,000 operations did not finish in time")
        host.stop()
        XCTAssertGreaterThan(kills, 3)

        let store = try HostStore(path: directory.path("state/host.db"))
        XCTAssertEqual(try store.integrityCheck(), "ok")
        let (master, _) = try MasterKey.load(stateDirectory: directory.path("state"), environment: [:])
        let keys = try IdentityKeys(masterKey: master)
        let rows = try store.all()
        for row in rows {
            XCTAssertNotEqual(row.nodeID, 0, "\(row.name) has no address")
            XCTAssertNoThrow(try keys.unseal(row.sealedKey), "\(row.name)'s key does not open")
        }
        let present = Set(rows.map(\.name))
        let (mustExist, mustNotExist) = outcomes.expectations()
        XCTAssertTrue(mustExist.isSubset(of: present), "lost: \(mustExist.subtracting(present).sorted())")
        XCTAssertTrue(mustNotExist.isDisjoint(with: present), "deleted but back: \(mustNotExist.intersection(present).sorted())")
        print("kill -9 test: \(kills) kills, \(outcomes.successes) successful operations, \(rows.count) identities left")
    }
}

/// What each create and delete answered, for the crash test.
final class Outcomes: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var created: Set<String> = []
    private var deleted: Set<String> = []
    private var uncertain: Set<String> = []
    private var done = false
    private var count = 0

    func record(create name: String, ok: Bool) {
        lock.withLock {
            if ok { created.insert(name); count += 1 } else { uncertain.insert(name) }
        }
    }

    func record(delete name: String, ok: Bool) {
        lock.withLock {
            if ok { deleted.insert(name); count += 1 } else { uncertain.insert(name) }
        }
    }

    func finish() { lock.withLock { done = true } }
    var finished: Bool { lock.withLock { done } }
    var successes: Int { lock.withLock { count } }

    /// Names that must exist (created, never deleted or in doubt) and names that must not.
    func expectations() -> (Set<String>, Set<String>) {
        lock.withLock { (created.subtracting(deleted).subtracting(uncertain), deleted.subtracting(uncertain)) }
    }
}

struct HostTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
