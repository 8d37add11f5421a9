import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PilotCrypto
import PilotHost
import PilotNet
import PilotStore
import PilotTestSupport
import PilotWire

/// Bulk streams between a pilot-host identity and the official 1.18 daemon on loopback, both
/// ways, `runs` times each: ours to 1.18's echo port and back (as `pilotctl bench`), and 1.18's
/// own `pilotctl bench` to our identity's echo port. Failures (a reset, a stall past the
/// deadline, bytes that differ) are counted, not fatal; each run's figures are printed.
struct InteropBench {
    let megabytes: Int
    let runs: Int

    func run() {
        do {
            try runBlocking { [megabytes, runs] in try await Self.measure(megabytes: megabytes, runs: runs) }
        } catch {
            print("pilot-bench interop: \(error)")
            exit(1)
        }
    }

    private static func measure(megabytes: Int, runs: Int) async throws {
        let (overlay, daemon) = try OverlayHarness.started(daemon: "alpha", extra: ["-public"])
        defer { overlay.stopAll() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let registry = RegistryClient(host: "127.0.0.1", port: Int(overlay.registryPort), group: group)
        let fabric = Fabric(group: group, directory: RegistryDirectory(registry: registry), logger: Logger(label: "interop"))
        try await fabric.echo(port: Port.echo)
        let socket = try await fabric.bind(host: "127.0.0.1", port: 0)
        let (master, _) = try MasterKey.load(stateDirectory: overlay.directory.url.path, environment: [:])
        let pool = IdentityPool(
            store: try HostStore(path: overlay.directory.path("bench.db")), keys: try IdentityKeys(masterKey: master), registry: registry,
            listenAddress: "127.0.0.1:\(socket.address.port ?? 0)")
        var request = IdentityPool.Request(owner: 0)
        request.isPublic = true
        let record = try await pool.create(name: "bench", request)
        let ours = try TunnelIdentity(address: Address(network: record.network, node: record.nodeID), signingKey: try await pool.signingKey(of: "bench"))
        // A socket of its own: the daemon's key exchange, when it dials first, comes to it.
        try await fabric.add(ours, ownSocket: socket.socket) { _ in }
        try await fabric.setPublicPorts(local: ours.node, [Port.echo])
        let size = megabytes * 1_000_000
        let resolved = try await pool.resolve(node: daemon, as: "bench") ?? ""
        let parts = resolved.split(separator: ":")
        let endpoint = try SocketAddress(ipAddress: parts.first.map(String.init) ?? "", port: Int(parts.last ?? "") ?? 0)

        print("pilot-host identity → official 1.18 echo port and back, \(megabytes) MB, \(runs) runs:")
        var rates: [Double] = [], failures = 0
        for run in 1...runs {
            let started = ContinuousClock.now
            let outcome = await ourStream(fabric, from: ours.node, to: daemon, at: endpoint, size: size, seed: UInt64(run))
            let seconds = started.duration(to: .now).inSeconds
            let figures = try await fabric.connections(of: ours.node).last { $0.remote.node == daemon && $0.remotePort == Port.echo }?.figures
            let note = "retransmitted \(figures?.retransmitted ?? 0), reneged \(figures?.reneged ?? 0)"
            if let failure = outcome {
                failures += 1
                print(String(format: "  run %2d: FAILED after %.2f s: %@ (%@); official %@", run, seconds, failure, note, "\(overlay.officialStreams())"))
            } else {
                rates.append(Double(size) / seconds / 1e6)
                print(String(format: "  run %2d: %.2f s, %.1f MB/s (%@)", run, seconds, rates.last ?? 0, note))
            }
        }
        summarize(rates, failures: failures, runs: runs)

        print("official 1.18 pilotctl bench → pilot-host identity's echo port, \(megabytes) MB, \(runs) runs:")
        rates = []
        failures = 0
        for run in 1...runs {
            do {
                let result = try overlay.ctl("alpha", ["bench", ours.address.description, "\(megabytes)", "--timeout", "120s"], timeout: 150)
                // Its total_mbps is MiB/s (docs/PROTOCOL.md §11.7).
                guard let rate = result["total_mbps"]?.doubleValue, result["complete"] != .bool(false) else { throw BenchError("\(result)") }
                rates.append(rate * 1.048576)
                print(String(format: "  run %2d: %.1f MB/s", run, rates.last ?? 0))
            } catch {
                failures += 1
                print("  run \(run): FAILED: \(error)")
            }
        }
        summarize(rates, failures: failures, runs: runs)
        await fabric.shutdown()
        await registry.disconnect()
        try await group.shutdownGracefully()
    }

    /// One run of ours: `size` bytes to 1.18's echo, read back; nil when all came back exactly.
    private static func ourStream(_ fabric: Fabric, from node: UInt32, to daemon: UInt32, at endpoint: SocketAddress, size: Int, seed: UInt64) async -> String? {
        var random = SplitMix64(seed: seed)
        let message = random.bytes(size)
        let stream: StreamHandle
        do { stream = try await fabric.dial(from: node, to: Address(node: daemon), port: Port.echo, endpoint: endpoint) } catch { return "dial: \(error)" }
        let writer = Task {
            for offset in stride(from: 0, to: message.count, by: 65_536) {
                try await stream.write(Array(message[offset..<min(offset + 65_536, message.count)]))
            }
        }
        let echoed = await stream.readMessage(limit: size, timeout: .seconds(120)) { _ in false }
        writer.cancel()
        try? await stream.close()
        if echoed.count != size { return "\(echoed.count) of \(size) bytes came back" }
        return echoed == message ? nil : "the echo differs"
    }

    private static func summarize(_ rates: [Double], failures: Int, runs: Int) {
        let sorted = rates.sorted()
        let median = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
        print(String(format: "  %d of %d failed; MB/s min %.1f, median %.1f, max %.1f", failures, runs, sorted.first ?? 0, median, sorted.last ?? 0))
    }
}

extension OverlayHarness {
    /// The official daemon `alpha`'s streams (1.18's `conn_list` rows), for a failed run.
    fileprivate func officialStreams() -> String {
        ((try? ctl("alpha", ["info"], timeout: 10))?["conn_list"]).map { "\($0)" } ?? "?"
    }
}
