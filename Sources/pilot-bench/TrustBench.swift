import Foundation
import PilotClient
import PilotWire

/// Two measurements between identities of two pilot-host processes on loopback (one
/// pilot-rendezvous):
/// - handshake to mutual trust with auto-approve: for each pair, the time from `handshake` on
///   the asking identity's socket until its `trust` lists the peer; every pair is a first
///   contact (key exchange included);
/// - a relayed request between private identities (neither can reach the other): the time from
///   `handshake` until the target's `pending` lists it, through the registry and the beacon's
///   poke (the hosts' own polls are set to an hour, so only the poke can bring it).
struct TrustBench {
    let pairs: Int

    func run() {
        do { try measure() } catch {
            print("pilot-bench trust: \(error)")
            exit(1)
        }
    }

    private func measure() throws {
        let overlay = try TwoHosts(name: "trust", ports: [37100, 37101], extra: ["--log-level", "warning", "--handshake-poll", "3600"])
        defer { overlay.stop() }
        let work = overlay.work
        let adminA = try ControlConnection(path: work.path + "/run0/admin.sock")
        let adminB = try ControlConnection(path: work.path + "/run1/admin.sock")
        var samples: [Double] = []
        for index in 0..<pairs {
            let node: UInt32
            do {
                _ = try adminA.send(AdminControl.CreateIdentity(identity: "asker\(index)", owner: "0"))
                node = try adminB.send(AdminControl.CreateIdentity(identity: "service\(index)", owner: "0", isPublic: true, autoApprove: true)).nodeID
            } catch { throw BenchError("cannot create the identities of pair \(index): \(error)") }
            let asker = try ControlConnection(path: work.path + "/run0/id/asker\(index).sock")
            let started = Date()
            do {
                _ = try asker.send(TrustControl.Handshake(peer: "\(node)", reason: "bench"))
            } catch let failure as ControlFailure { throw BenchError("handshake \(index) refused: \(failure)") }
            while true {
                if try asker.send(TrustControl.Trusted()).trusted.count == 1 { break }
                guard Date().timeIntervalSince(started) < 10 else { throw BenchError("pair \(index): no trust after 10 s") }
            }
            samples.append(Date().timeIntervalSince(started) * 1000)
        }
        report("handshake to mutual trust (auto-approve, two pilot-hosts, first contact)", samples)

        var relayed: [Double] = []
        for index in 0..<pairs {
            let askingNode: UInt32, node: UInt32
            do {
                askingNode = try adminA.send(AdminControl.CreateIdentity(identity: "private\(index)", owner: "0")).nodeID
                node = try adminB.send(AdminControl.CreateIdentity(identity: "target\(index)", owner: "0")).nodeID
            } catch { throw BenchError("cannot create the private identities of pair \(index): \(error)") }
            let asker = try ControlConnection(path: work.path + "/run0/id/private\(index).sock")
            let receiver = try ControlConnection(path: work.path + "/run1/id/target\(index).sock")
            let started = Date()
            do {
                _ = try asker.send(TrustControl.Handshake(peer: "\(node)", reason: "bench"))
            } catch let failure as ControlFailure { throw BenchError("relayed handshake \(index) refused: \(failure)") }
            while true {
                if try receiver.send(TrustControl.Pending()).pending.contains(where: { $0.nodeID == askingNode }) { break }
                guard Date().timeIntervalSince(started) < 10 else { throw BenchError("pair \(index): the relayed request did not arrive in 10 s") }
            }
            relayed.append(Date().timeIntervalSince(started) * 1000)
        }
        report("relayed request between private identities (registry + beacon poke, no polling)", relayed)
    }

    private func report(_ what: String, _ unsorted: [Double]) {
        let samples = unsorted.sorted()
        print(String(
            format: "%@, %d pairs: p50 %.2f ms, p99 %.2f ms, max %.2f ms",
            what, pairs, samples[samples.count / 2], samples[min(samples.count - 1, samples.count * 99 / 100)], samples.last ?? 0))
    }
}

/// A pilot-rendezvous and two pilot-host processes beside pilot-bench, in a scratch directory
/// (`work`; host N keeps its runtime in `work/runN`); `stop()` ends them and removes it.
final class TwoHosts {
    let work: URL
    private var processes: [Launched] = []

    init(name: String, ports: [Int], extra: [String]) throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        work = FileManager.default.temporaryDirectory.appendingPathComponent("pilot-bench-\(name)-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        do {
            let (rendezvous, registry) = try startRendezvous(bin: bin, stateDirectory: work.path + "/rdv")
            processes.append(rendezvous)
            guard let beaconLine = rendezvous.readLine(), beaconLine.hasPrefix("beacon ") else { throw BenchError("pilot-rendezvous names no beacon") }
            for (index, port) in ports.enumerated() {
                processes.append(try Launched.start(
                    bin.appendingPathComponent("pilot-host"),
                    ["--state-dir", work.path + "/state\(index)", "--runtime-dir", work.path + "/run\(index)", "--registry", registry,
                     "--beacon", String(beaconLine.dropFirst("beacon ".count)), "--listen", "127.0.0.1:\(port)"] + extra,
                    stderr: true))
            }
            // "serving" is logged at info: wait for the admin sockets instead.
            for index in ports.indices {
                let deadline = Date().addingTimeInterval(30)
                while !FileManager.default.fileExists(atPath: work.path + "/run\(index)/admin.sock") {
                    guard Date() < deadline else { throw BenchError("pilot-host \(index) did not start") }
                    Thread.sleep(forTimeInterval: 0.05)
                }
            }
        } catch {
            stop()
            throw error
        }
    }

    /// pilot-host number `index`'s process id.
    func hostPID(_ index: Int) -> Int32 { processes[index + 1].process.processIdentifier }

    func stop() {
        for process in processes.reversed() {
            process.process.terminate()
            process.process.waitUntilExit()
        }
        processes = []
        try? FileManager.default.removeItem(at: work)
    }
}
