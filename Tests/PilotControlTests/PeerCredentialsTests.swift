import Foundation
import Glibc
import PilotControl
import PilotTestSupport
import XCTest

final class PeerCredentialsTests: XCTestCase {
    func testSocketPairReportsThisProcess() throws {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        defer { close(pair[0]); close(pair[1]) }

        let peer = try PeerCredentials(socket: pair[0])

        XCTAssertEqual(peer.pid, getpid())
        XCTAssertEqual(peer.uid, getuid())
        XCTAssertEqual(peer.gid, getgid())
        var groups = [gid_t](repeating: 0, count: Int(getgroups(0, nil)))
        let count = getgroups(Int32(groups.count), &groups)
        XCTAssertEqual(Set(peer.groups), Set(groups.prefix(Int(max(count, 0)))))
    }

    func testNonSocketDescriptorIsAnError() throws {
        let descriptor = open("/dev/null", O_RDONLY)
        defer { close(descriptor) }
        XCTAssertThrowsError(try PeerCredentials(socket: descriptor)) { error in
            guard case PeerCredentialsError.unreadable = error else {
                return XCTFail("unexpected \(error)")
            }
        }
    }

    /// A container-like caller: root inside a new user namespace, made by an unprivileged user,
    /// is seen as that user and so cannot pass as root of the host.
    func testRootOfAUserNamespaceIsSeenAsItsHostUser() throws {
        guard getuid() == 0 else {
            throw XCTSkip("needs root to start a client as another uid (running as uid \(getuid()))")
        }
        let nobody: UInt32 = 65_534
        let directory = try TemporaryDirectory(prefix: "pilot-peercred")
        defer { directory.remove() }
        chmod(directory.url.path, 0o777)
        let path = directory.path("test.sock")
        let listener = try UnixListener(path: path)
        chmod(path, 0o666)

        let client = try ChildProcess(
            name: "userns-client", executable: URL(fileURLWithPath: "/usr/bin/setpriv"),
            arguments: [
                "--reuid=\(nobody)", "--regid=\(nobody)", "--clear-groups",
                "unshare", "--user", "--map-root-user",
                "python3", "-c",
                "import os, socket, time; assert os.getuid() == 0, os.getuid(); "
                    + "s = socket.socket(socket.AF_UNIX); s.connect('\(path)'); time.sleep(5)",
            ],
            logDirectory: directory.url)
        defer { client.stop() }

        guard let connection = try listener.accept(timeout: 10) else {
            if client.output.contains("Operation not permitted") || client.output.contains("unshare failed") {
                throw XCTSkip("user namespaces are not available here: \(client.output)")
            }
            return XCTFail("the namespaced client never connected: \(client.output)")
        }
        defer { close(connection) }
        let peer = try PeerCredentials(socket: connection)

        XCTAssertEqual(peer.uid, nobody)
        XCTAssertEqual(peer.gid, nobody)
        XCTAssertFalse(peer.isRoot)
        let policy = AccessPolicy(.identity(name: "alice", owner: 1000, allowedGroups: [100]))
        XCTAssertThrowsError(try policy.decide(peer).get())
        XCTAssertThrowsError(try AccessPolicy(.admin(adminGroup: 0)).decide(peer).get())
    }
}

/// A listening Unix stream socket for tests.
final class UnixListener {
    let descriptor: Int32

    init(path: String) throws {
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw POSIXError(.ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard status == 0, listen(descriptor, 8) == 0 else { throw POSIXError(.EADDRINUSE) }
    }

    deinit { close(descriptor) }

    func accept(timeout: TimeInterval) throws -> Int32? {
        var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(timeout * 1000)) == 1 else { return nil }
        let connection = Glibc.accept(descriptor, nil, nil)
        return connection >= 0 ? connection : nil
    }
}
