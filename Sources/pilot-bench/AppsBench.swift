import Foundation
import PilotAppStore
import PilotClient
import PilotTestSupport
import PilotWire

/// App store figures, through pilot-host as pilotctl goes (each identity's socket, the host, the
/// app service, the app's socket): spawn-to-ready (the first call of each identity's app, which
/// verifies and starts its sandbox), the call round trip once it runs (p50, p99), and the app
/// service's memory per running app.
struct AppsBench {
    let identities: Int
    let calls: Int

    func run() {
        do { try measure() } catch {
            print("pilot-bench apps: \(error)")
            exit(1)
        }
    }

    private func measure() throws {
        guard getuid() == 0 else { throw BenchError("run as root: apps run as nobody, which needs the service to start as root") }
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let work = "/tmp/pilot-bench-apps-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        chmod(work, 0o755)
        defer { try? FileManager.default.removeItem(atPath: work) }

        // The example app, in a catalogue of the bench's own.
        let catalogue = try AppCatalogueFixture(directory: work + "/catalogue")
        let binary = Array(try Data(contentsOf: bin.appendingPathComponent("pilot-app-notes")))
        let manifest = catalogue.manifest(
            id: "dev.pilot-host.notes", binaryPath: "bin/pilot-app-notes", binary: binary,
            exposes: ["notes.help", "notes.add", "notes.list", "notes.clear"], grants: [.init(cap: "fs.write", target: "$APP/notes.jsonl")])
        try catalogue.addBundle(id: "dev.pilot-host.notes", members: AppCatalogueFixture.members(manifest, binary: binary))
        try catalogue.writeCatalogue()

        let (rendezvous, registry) = try startRendezvous(bin: bin, stateDirectory: work + "/rdv")
        defer { rendezvous.process.terminate(); rendezvous.process.waitUntilExit() }
        let runtime = work + "/run"
        let apps = try Launched.start(
            bin.appendingPathComponent("pilot-host-apps"),
            ["--state-dir", work + "/apps", "--socket", runtime + "/apps.sock", "--host-user", "0", "--app-user", "nobody", "--log-level", "notice"],
            stderr: true)
        defer { apps.process.terminate(); apps.process.waitUntilExit() }
        guard apps.waitFor("serving", timeout: 30) else { throw BenchError("pilot-host-apps did not start") }
        let host = try Launched.start(
            bin.appendingPathComponent("pilot-host"),
            ["--state-dir", work + "/state", "--runtime-dir", runtime, "--registry", registry, "--listen", "127.0.0.1:0",
             "--app-catalogue", catalogue.catalogueURL, "--app-catalogue-keys", catalogue.catalogueKeyText, "--log-level", "info"],
            stderr: true)
        defer { host.process.terminate(); host.process.waitUntilExit() }
        guard host.waitFor("pilot-host serving", timeout: 30) else { throw BenchError("pilot-host did not start") }

        let admin = try ControlConnection(path: runtime + "/admin.sock")
        for index in 0..<identities { _ = try admin.send(AdminControl.CreateIdentity(identity: "agent\(index)", owner: "0")) }
        let idleRSS = residentKiB(apps.process.processIdentifier)
        var installs: [Double] = []
        for index in 0..<identities {
            let socket = try ControlConnection(path: runtime + "/id/agent\(index).sock")
            let started = Date()
            let plan = try socket.send(AppStoreControl.Plan(app: "dev.pilot-host.notes"))
            _ = try socket.send(AppStoreControl.Install(app: plan.app, bundleSHA256: plan.bundleSHA256, approve: true))
            installs.append(Date().timeIntervalSince(started))
        }
        // First calls: verification, sandbox, the app's start, the call.
        var firsts: [Double] = []
        for index in 0..<identities {
            let socket = try ControlConnection(path: runtime + "/id/agent\(index).sock")
            let started = Date()
            _ = try socket.send(AppStoreControl.Call(app: "dev.pilot-host.notes", method: "notes.help", payload: [:]))
            firsts.append(Date().timeIntervalSince(started))
        }
        let runningRSS = residentKiB(apps.process.processIdentifier)
        // Warm calls, on one connection, to one running app.
        let socket = try ControlConnection(path: runtime + "/id/agent0.sock")
        var round: [Double] = []
        for _ in 0..<calls {
            let started = Date()
            _ = try socket.send(AppStoreControl.Call(app: "dev.pilot-host.notes", method: "notes.help", payload: [:]))
            round.append(Date().timeIntervalSince(started))
        }
        func ms(_ values: [Double], _ quantile: Double) -> Double {
            let sorted = values.sorted()
            return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * quantile))] * 1000
        }
        print(String(
            format: """
                %d identities, one app each (install: first %.0f ms with the bundle's fetch and unpack, then p50 %.1f ms)
                  spawn to ready (first call: verify, sandbox, start, call): p50 %.1f ms, p99 %.1f ms
                  call round trip through pilot-host (%d calls, app running): p50 %.2f ms, p99 %.2f ms
                  app service RSS: idle %d KiB, with %d apps running %d KiB = %.1f KiB per running app (the apps' own processes not counted)
                """,
            identities, (installs.first ?? 0) * 1000, ms(Array(installs.dropFirst()), 0.5), ms(firsts, 0.5), ms(firsts, 0.99), calls,
            ms(round, 0.5), ms(round, 0.99), idleRSS, identities, runningRSS, Double(runningRSS - idleRSS) / Double(max(identities, 1))))
    }
}
