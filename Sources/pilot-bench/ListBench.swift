import Foundation
import NIOPosix
import PilotControl
import PilotHost
import PilotStore
import PilotWire

/// `identity list` at scale: `count` identities in `host.db` (one made properly, the rest
/// stored beside it with its sealed key, as `IdentityPoolTests` does), loaded as pilot-host
/// loads them, then listed page by page by the admin commands as the admin socket would answer:
/// the time of the first page and of all of them, each answered and encoded.
struct ListBench {
    let count: Int

    func run() {
        do { try measure() } catch {
            print("pilot-bench list: \(error)")
            exit(1)
        }
    }

    private func measure() throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("pilot-bench-list-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let (rendezvous, registry) = try startRendezvous(bin: bin, stateDirectory: work.path + "/rdv")
        defer { rendezvous.process.terminate(); rendezvous.process.waitUntilExit() }
        let state = work.path + "/state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let count = self.count
        let line = try runBlocking { () async throws -> String in
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let (first, client) = try PoolBench.open(state: state, registry: registry, group: group)
            let record = try await first.create(name: "a-first", IdentityPool.Request(owner: 0))
            let database = try Database(path: state + "/host.db")
            try database.transaction {
                for index in 0..<count {
                    try database.run(
                        "INSERT INTO identity (name, node_id, network, sealed_key, tags, public, owner_uid, created_at) VALUES (?, ?, 0, ?, '', 0, 0, 0)",
                        [.text("agent\(index)"), .integer(Int64(1_000_000 + index)), .blob(record.sealedKey)])
                }
            }
            let (pool, _) = try PoolBench.open(state: state, registry: registry, group: group)
            try await pool.load()
            let admin = AdminCommands(pool: pool, socketPath: { "/run/pilot-host/id/\($0).sock" }) { _ in }
            let peer = PeerCredentials(pid: getpid(), uid: 0, gid: 0)
            let clock = ContinuousClock()
            var after: String?
            var pages = 0
            var rows = 0
            var firstPage = Duration.zero
            let started = clock.now
            repeat {
                let reply = await admin.handle(peer, AdminControl.ListIdentities(after: after).request)
                let encoded = try reply.encoded()
                if pages == 0 { firstPage = started.duration(to: clock.now) }
                let list = try AdminControl.ListIdentities.data(of: reply)
                precondition(encoded.count < 1 << 20)
                rows += list.identities.count
                after = list.next
                pages += 1
            } while after != nil
            let all = started.duration(to: clock.now)
            await client.disconnect()
            try await group.shutdownGracefully()
            return String(
                format: "%7d identities: identity list, first page in %.1f ms, all %d rows in %d pages in %.0f ms (answered and encoded, decoding included)",
                count + 1, firstPage.inMilliseconds, rows, pages, all.inMilliseconds)
        }
        print(line)
    }
}

extension Duration {
    fileprivate var inMilliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}
