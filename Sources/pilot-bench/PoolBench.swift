import Foundation
import NIOPosix
import PilotHost
import PilotStore
import PilotWire

/// The identity pool without its sockets: what 100,000 identities cost where the open-file
/// limit cannot be raised to 100,000 (each identity's control socket is a descriptor). Creates
/// `count` identities in-process (registered with a real pilot-rendezvous, stored in host.db),
/// then a fresh `pilot-bench pool-load` process loads them, registers them again and reports
/// the time and the resident memory it took, as pilot-host does before and after its sockets.
struct PoolBench {
    let count: Int

    func run() {
        do { try measure() } catch {
            print("pilot-bench pool: \(error)")
            exit(1)
        }
    }

    private func measure() throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("pilot-bench-pool-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let (rendezvous, registry) = try startRendezvous(bin: bin, stateDirectory: work.path + "/rdv")
        defer { rendezvous.process.terminate(); rendezvous.process.waitUntilExit() }

        let state = work.path + "/state"
        let created = try runBlocking { try await Self.create(self.count, state: state, registry: registry) }
        let loader = try Launched.start(bin.appendingPathComponent("pilot-bench"), ["pool-load", state, registry])
        loader.process.waitUntilExit()
        var figures: [String] = []
        while let line = loader.readLine(timeout: 1) { figures.append(line) }
        guard loader.process.terminationStatus == 0, figures.count == 1 else {
            throw BenchError("pool-load failed: \(figures.joined(separator: "\n"))")
        }
        print(String(format: "%7d identities (no sockets): create %4.0f /s; ", count, created) + figures[0])
    }

    /// Creates `count` identities, 8 at a time; returns identities per second.
    private static func create(_ count: Int, state: String, registry: String) async throws -> Double {
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let (pool, client) = try open(state: state, registry: registry, group: group)
        let start = Date()
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for lane in 0..<8 {
                tasks.addTask {
                    for index in stride(from: lane, to: count, by: 8) {
                        _ = try await pool.create(name: "agent\(index)", IdentityPool.Request(owner: 0))
                    }
                }
            }
            try await tasks.waitForAll()
        }
        let rate = Double(count) / Date().timeIntervalSince(start)
        await client.disconnect()
        try await group.shutdownGracefully()
        return rate
    }

    static func open(state: String, registry: String, group: MultiThreadedEventLoopGroup) throws -> (IdentityPool, RegistryClient) {
        let (master, _) = try MasterKey.load(stateDirectory: state, environment: [:])
        let endpoint: Endpoint
        do { endpoint = try Endpoint(parsing: registry) } catch { throw BenchError("bad registry address: \(error)") }
        let client = RegistryClient(host: endpoint.host, port: Int(endpoint.port), group: group)
        let pool = IdentityPool(
            store: try HostStore(path: state + "/host.db"), keys: try IdentityKeys(masterKey: master), registry: client,
            listenAddress: "127.0.0.1:37000")
        return (pool, client)
    }

    /// `pilot-bench pool-load STATE REGISTRY`: one line of figures, from a process that has
    /// loaded nothing else.
    static func load(state: String, registry: String) {
        do {
            let figures = try runBlocking { () async throws -> String in
                let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
                let empty = residentKiB()
                let (pool, client) = try open(state: state, registry: registry, group: group)
                let start = Date()
                try await pool.load()
                let loaded = Date().timeIntervalSince(start)
                let loadedRSS = residentKiB()
                let (_, failed) = try await pool.registerAll()
                guard failed.isEmpty else { throw BenchError("\(failed.count) registrations failed: \(failed.first!)") }
                let registered = Date().timeIntervalSince(start)
                let registeredRSS = residentKiB()
                let count = await pool.count
                await client.disconnect()
                try await group.shutdownGracefully()
                return String(
                    format: "loaded in %.2f s, re-registered after %.2f s; RSS: empty %d KiB, loaded %d KiB, registered %d KiB = %.2f KiB per identity",
                    loaded, registered, empty, loadedRSS, registeredRSS, Double(registeredRSS - empty) / Double(max(count, 1)))
            }
            print(figures)
        } catch {
            print("pool-load: \(error)")
            exit(1)
        }
    }
}

/// Starts pilot-rendezvous (beside pilot-bench) without rate limits; returns it and its registry
/// address.
func startRendezvous(bin: URL, stateDirectory: String) throws -> (Launched, String) {
    let rendezvous = try Launched.start(
        bin.appendingPathComponent("pilot-rendezvous"),
        ["--registry-addr", "127.0.0.1:0", "--beacon-addr", "127.0.0.1:0", "--state-dir", stateDirectory,
         "--new-keys-per-second", "1000000", "--all-new-keys-per-second", "1000000", "--connection-requests-per-second", "1000000", "--log-level", "warning"])
    guard let line = rendezvous.readLine(), line.hasPrefix("registry ") else {
        rendezvous.process.terminate()
        throw BenchError("pilot-rendezvous did not start")
    }
    return (rendezvous, String(line.dropFirst("registry ".count)))
}

/// This process's resident set, from /proc.
func residentKiB(_ pid: Int32 = getpid()) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return -1 }
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
}

/// Runs async work from the synchronous benchmark code and waits for it.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.result!.get()
}

private final class ResultBox<T>: @unchecked Sendable {
    // @unchecked: written once before the semaphore is signalled, read after the wait.
    var result: Result<T, any Error>?
}
