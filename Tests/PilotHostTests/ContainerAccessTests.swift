import Foundation
import PilotTestSupport
import PilotWire
import XCTest

/// An identity for a user-namespaced container: a "container" the test makes (host uid 100000
/// as its root, `unshare --user --map-root-user --mount`) with sockets bind-mounted in, and the
/// rest of pilot-host's runtime directory hidden under a tmpfs. The peer check judges the
/// container's processes by their uid as the host sees it.
final class ContainerAccessTests: HostProcessTestCase {
    /// The container's root as the host sees it, and a uid that is no one's.
    private let containerRoot: UInt32 = 100_000
    private let stranger: UInt32 = 100_001

    override func setUpWithError() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root: the test runs a process as uid \(containerRoot)") }
        let probe = ChildProcess.run(
            "/usr/bin/setpriv", ["--reuid=\(containerRoot)", "--regid=\(containerRoot)", "--clear-groups", "unshare", "--user", "--map-root-user", "--mount", "true"],
            timeout: 10)
        guard probe.status == 0 else { throw XCTSkip("no unprivileged user namespaces here (unshare --user as uid \(containerRoot)): \(probe.output)") }
        try super.setUpWithError()
    }

    func testAContainerReachesItsIdentityAndOnlyIt() throws {
        let registryPort = try startRendezvous()
        _ = try startHost(registryPort: registryPort, generation: 1)
        let boxed = pilotctl(["identity", "create", "boxed", "--owner-uid", "\(containerRoot)"])
        XCTAssertEqual(boxed.status, 0, "\(String(describing: boxed.json))")
        let address = try XCTUnwrap(boxed.json?["data"]?["address"]?.stringValue)
        // Another tenant's identity whose socket anyone may open (a group): only the peer check stands.
        XCTAssertEqual(pilotctl(["identity", "create", "other", "--owner-uid", "\(stranger)", "--group", "4242"]).status, 0)
        let socketPath = pilotctl(["identity", "socket-path", "boxed"])
        XCTAssertEqual(socketPath.json?["data"]?["socket"]?.stringValue, runtime + "/id/boxed.sock")

        let box = directory.path("box")
        try FileManager.default.createDirectory(atPath: box, withIntermediateDirectories: true)
        for file in ["pilot.sock", "other.sock", "admin.sock"] { _ = FileManager.default.createFile(atPath: box + "/" + file, contents: nil) }
        chown(box, containerRoot, containerRoot)
        // Opened to anyone, so that what refuses the container's root is the peer check itself.
        chmod(runtime + "/admin.sock", 0o666)
        let pilotctl = bin.appendingPathComponent("pilotctl").path
        var script = """
            set -u
            mount --bind '\(runtime)/id/boxed.sock' '\(box)/pilot.sock'
            mount --bind '\(runtime)/id/other.sock' '\(box)/other.sock'
            mount --bind '\(runtime)/admin.sock' '\(box)/admin.sock'
            mount -t tmpfs none '\(runtime)'
            echo "inside uid $(id -u); runtime holds $(ls -A '\(runtime)' | wc -l) files"
            echo "own: $(PILOT_SOCKET='\(box)/pilot.sock' '\(pilotctl)' --json info)"
            echo "other: $(PILOT_SOCKET='\(box)/other.sock' '\(pilotctl)' --json info 2>&1)"
            echo "admin: $('\(pilotctl)' --json --runtime-dir '\(box)' identity list 2>&1)"

            """
        if let official = try? OfficialPilot.binaries() {
            script += """
                echo "official: $(HOME='\(box)' PILOT_SOCKET='\(box)/pilot.sock' PILOT_REGISTRY=127.0.0.1:\(registryPort) timeout 20 '\(official.pilotctl.path)' --json info 2>&1)"

                """
        } else {
            print("the official pilotctl is not here: checked with ours only")
        }
        // The official Python SDK in the container, on the mounted socket.
        if let venv = try? PythonSDKTests.sdkVenv(at: directory.path("venv")) {
            script += """
                echo "python: $(HOME='\(box)' timeout 30 '\(venv)/bin/python' -c 'import json; from pilotprotocol.client import Driver; print(json.dumps(Driver("\(box)/pilot.sock").info()))' 2>&1 | tail -1)"

                """
        } else {
            print("the official Python SDK is not here: not checked in the container")
        }
        let result = ChildProcess.run(
            "/usr/bin/setpriv",
            ["--reuid=\(containerRoot)", "--regid=\(containerRoot)", "--clear-groups", "unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
            timeout: 60)
        print(result.output)
        let lines = result.output.split(separator: "\n").map(String.init)
        func line(_ prefix: String) -> String { lines.first { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) } ?? "" }

        XCTAssertEqual(line("inside uid "), "0; runtime holds 0 files", "the container's root is uid 0 inside, and sees none of the host's sockets")
        let own = try? JSON(parsing: line("own: "))
        XCTAssertEqual(own?["data"]?["address"]?.stringValue, address, "the container reaches its identity")
        let other = try? JSON(parsing: line("other: "))
        XCTAssertEqual(other?["code"]?.stringValue, "permission_denied", "another tenant's socket, though it opens: \(line("other: "))")
        XCTAssertTrue(line("other: ").contains("\(containerRoot)"), "the refusal names the uid the host sees: \(line("other: "))")
        let admin = try? JSON(parsing: line("admin: "))
        XCTAssertEqual(admin?["code"]?.stringValue, "permission_denied", "the container's root on the admin socket: \(line("admin: "))")
        XCTAssertTrue(line("admin: ").contains("uid \(containerRoot)"), "refused by the peer check, naming the host's uid: \(line("admin: "))")
        if lines.contains(where: { $0.hasPrefix("python: ") }) {
            let python = try? JSON(parsing: line("python: "))
            XCTAssertEqual(python?["address"]?.stringValue, address, "the Python SDK in the container: \(line("python: "))")
        }
        if lines.contains(where: { $0.hasPrefix("official: ") }) {
            let official = try? JSON(parsing: line("official: "))
            XCTAssertEqual(official?["data"]?["address"]?.stringValue, address, "the official pilotctl in the container: \(line("official: "))")
        }
    }
}
