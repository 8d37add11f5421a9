import Foundation
import PilotClient
import PilotWire

/// Handshake to mutual trust with auto-approve, between identities of two pilot-host processes
/// on loopback (one pilot-rendezvous): for each pair, the time from `handshake` on the asking
/// identity's socket until its `trust` lists the peer. Every pair is a first contact (key
/// exchange included).
struct TrustBench {
    let pairs: Int

    func run() {
        do { try measure() } catch {
            print("pilot-bench trust: \(error)")
            exit(1)
        }
    }

    private func measure() throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("pilot-bench-trust-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let (rendezvous, registry) = try startRendezvous(bin: bin, stateDirectory: work.path + "/rdv")
        defer { rendezvous.process.terminate(); rendezvous.process.waitUntilExit() }

        var hosts: [Launched] = []
        defer { for host in hosts { host.process.terminate(); host.process.waitUntilExit() } }
        for (index, port) in [37100, 37101].enumerated() {
            let host = try Launched.start(
                bin.appendingPathComponent("pilot-host"),
                ["--state-dir", work.path + "/state\(index)", "--runtime-dir", work.path + "/run\(index)", "--registry", registry,
                 "--listen", "127.0.0.1:\(port)", "--log-level", "warning"],
                stderr: true)
            hosts.append(host)
        }
        // "serving" is logged at info: wait for the admin sockets instead.
        for index in 0..<2 {
            let deadline = Date().addingTimeInterval(30)
            while !FileManager.default.fileExists(atPath: work.path + "/run\(index)/admin.sock") {
                guard Date() < deadline else { throw BenchError("pilot-host \(index) did not start") }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        let adminA = try ControlConnection(path: work.path + "/run0/admin.sock")
        let adminB = try ControlConnection(path: work.path + "/run1/admin.sock")
        var samples: [Double] = []
        for index in 0..<pairs {
            guard case .ok = try adminA.request(ControlRequest("identity.create", ["name": .string("asker\(index)"), "owner": "0"])),
                case .ok(let service) = try adminB.request(ControlRequest(
                    "identity.create", ["name": .string("service\(index)"), "owner": "0", "public": true, "auto_approve": true])),
                let node = service["node_id"]?.integerValue
            else { throw BenchError("cannot create the identities of pair \(index)") }
            let asker = try ControlConnection(path: work.path + "/run0/id/asker\(index).sock")
            let started = Date()
            guard case .ok = try asker.request(ControlRequest("handshake", ["peer": .string("\(node)"), "reason": "bench"])) else {
                throw BenchError("handshake \(index) refused")
            }
            while true {
                if case .ok(let trust) = try asker.request(ControlRequest("trust")), trust["total"]?.integerValue == 1 { break }
                guard Date().timeIntervalSince(started) < 10 else { throw BenchError("pair \(index): no trust after 10 s") }
            }
            samples.append(Date().timeIntervalSince(started) * 1000)
        }
        samples.sort()
        print(String(
            format: "handshake to mutual trust (auto-approve, two pilot-hosts, first contact), %d pairs: p50 %.2f ms, p99 %.2f ms, max %.2f ms",
            pairs, samples[samples.count / 2], samples[min(samples.count - 1, samples.count * 99 / 100)], samples.last ?? 0))
    }
}
