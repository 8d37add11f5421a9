import ArgumentParser
import Foundation
import PilotAppStore
import PilotClient
import PilotWire

/// `pilotctl appstore` on an identity's socket: what the identity's apps are and do.
extension AppStore {
    static func text(_ app: InstalledApp) -> String {
        var lines = ["\(app.app) \(app.version) (manifest v\(app.manifestVersion), \(app.source)): \(app.state)"
            + (app.pid.map { " pid \($0)" } ?? "") + (app.restarts > 0 ? ", \(app.restarts) restarts" : "")]
        if let reason = app.reason { lines.append("  \(app.state == "suspended" ? "suspended" : "last"): \(reason)") }
        lines.append("  methods: \(app.exposes.joined(separator: ", "))")
        lines.append("  grants (approved by uid \(app.approvedBy) at \(Date(timeIntervalSince1970: TimeInterval(app.approvedAt)))):")
        lines += app.grants.map { "    " + grantText($0) }
        if let available = app.available { lines.append("  the catalogue has \(available)") }
        return lines.joined(separator: "\n")
    }

    static func grantText(_ grant: AppGrant) -> String {
        "\(grant.cap) \(grant.target)" + (grant.condition.map { " if \($0.encodedString())" } ?? "")
    }

    /// Plans `app`, shows what it asks for, asks the owner when needed, and installs it.
    static func install(_ app: String, version: String?, yes: Bool, global: GlobalOptions, socket: String) throws {
        let plan = try global.call(AppStoreControl.Plan(app: app, version: version), on: socket)
        if let installed = plan.installedVersion, installed == plan.version, !plan.needsApproval {
            let status = try global.call(AppStoreControl.Status(app: plan.app), on: socket)
            print(global.json ? ControlReply.ok(status.json).json.encodedString() : "\(plan.app) \(plan.version) is installed and up to date")
            return
        }
        if plan.needsApproval {
            let heading = plan.installedVersion.map { "\(plan.app) \(plan.version) (installed: \($0)) asks again for:" }
                ?? "\(plan.app) \(plan.version) asks for:"
            let lines = [heading] + plan.grants.map { "  " + grantText($0) }
                + ["methods: \(plan.exposes.joined(separator: ", "))", "publisher: \(plan.publisher)", "bundle sha256: \(plan.bundleSHA256)"]
            try approve(plan.app, lines: lines, yes: yes, global: global)
        }
        try global.run(AppStoreControl.Install(app: plan.app, bundleSHA256: plan.bundleSHA256, approve: true), on: socket) { app in
            "installed " + text(app)
        }
    }

    /// Shows what `app` asks for (`lines`, not with --json: only the reply is printed then) and
    /// returns once the owner approved: --yes, or y at a terminal; otherwise exits 1.
    static func approve(_ app: String, lines: [String], yes: Bool, global: GlobalOptions) throws {
        if !global.json { FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8)) }
        guard !yes else { return }
        guard isatty(STDIN_FILENO) == 1, !global.json else {
            try exitWithError(code: "invalid_argument", "\(app): its grants need your approval", hint: "read them, then add --yes", json: global.json)
        }
        FileHandle.standardError.write(Data("Grant these and install? [y/N] ".utf8))
        guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
            try exitWithError(code: "invalid_argument", "not installed", hint: nil, json: global.json)
        }
    }

    /// `install DIR --local`: the manifest checked here first (the host checks it again), its
    /// grants shown and approved, the directory packed and uploaded with the caller's rights.
    static func sideload(directory: String, yes: Bool, global: GlobalOptions, socket: String) throws {
        let manifest: Manifest
        do {
            manifest = try Manifest(parsing: try read(directory + "/manifest.json", json: global.json))
            try manifest.validate(requireHelp: false)
            try manifest.checkSideloadPolicy()
        } catch let error as AppStoreError {
            try exitWithError(code: "invalid_argument", error.description, hint: nil, json: global.json)
        }
        let lines = ["\(manifest.id) \(manifest.appVersion) (sideloaded, unsigned) asks for:"] + manifest.grants.map { "  \($0.cap) \($0.target)" }
            + ["methods: \(manifest.exposes.joined(separator: ", "))"]
        try approve(manifest.id, lines: lines, yes: yes, global: global)
        let bundle: [UInt8]
        do { bundle = try BundlePacker.pack(directory: directory, limit: 16 << 20 - 257) } catch {
            try exitWithError(code: "invalid_argument", "\(error)", hint: nil, json: global.json)
        }
        let upload = try global.upload(bundle, on: socket)
        try global.run(AppStoreControl.Sideload(upload: upload, approve: true), on: socket) { app in "installed " + text(app) }
    }

    struct Catalogue: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The apps the signed catalogue offers.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only apps whose id, name, description, vendor or category has this word.") var search: String?

        func run() throws {
            try global.run(AppStoreControl.Catalogue(search: search), on: try global.identitySocket()) { catalogue in
                guard !catalogue.apps.isEmpty else { return search == nil ? "the catalogue is empty" : "no app matches \(search ?? "")" }
                return catalogue.apps.map { entry in
                    let installed = entry["installed"]?.boolValue == true ? "  [installed]" : ""
                    return "\(entry["id"]?.stringValue ?? "?") \(entry["version"]?.stringValue ?? "")\(installed)\n  \(entry["description"]?.stringValue ?? "")"
                }.joined(separator: "\n")
            }
        }
    }

    struct View: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "An app's catalogue entry, and what is installed of it.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The app's id.") var app: String

        func run() throws {
            let socket = try global.identitySocket()
            let catalogue = try global.call(AppStoreControl.Catalogue(), on: socket)
            let entry = catalogue.apps.first { $0["id"]?.stringValue == app }
            let status = entry?["installed"]?.boolValue == true ? try? global.call(AppStoreControl.Status(app: app), on: socket) : nil
            guard entry != nil || status != nil else {
                try exitWithError(code: "not_found", "the catalogue has no app \(app)", hint: "pilotctl appstore catalogue", json: global.json)
            }
            if global.json {
                var data: [String: JSON] = ["catalogue": entry.map(JSON.object) ?? .null]
                if let status { data["installed"] = status.json }
                print(ControlReply.ok(.object(data)).json.encodedString())
                return
            }
            if let entry { print(entry.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value.stringValue ?? $0.value.encodedString())" }.joined(separator: "\n")) }
            if let status { print("\ninstalled: " + text(status)) }
        }
    }

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install an app from the catalogue (or, with --local, from a directory): shows the grants it asks for, installs with your approval.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The app's id; with --local, its bundle directory (manifest.json, bin/...).") var app: String
        @Option(help: "The version expected (the catalogue offers one).") var version: String?
        @Flag(help: "Approve the grants shown.") var yes = false
        @Flag(help: "Sideload: the app is a local directory, unsigned, held to the sideload policy (if the host allows it).") var local = false

        func run() throws {
            let socket = try global.identitySocket()
            guard local else { return try AppStore.install(app, version: version, yes: yes, global: global, socket: socket) }
            try AppStore.sideload(directory: app, yes: yes, global: global, socket: socket)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The apps this identity installed.")
        @OptionGroup var global: GlobalOptions

        func run() throws {
            try global.run(AppStoreControl.List(), on: try global.identitySocket()) { list in
                list.apps.isEmpty ? "no apps installed" : list.apps.map(AppStore.text).joined(separator: "\n")
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One installed app: version, grants, process.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The app's id.") var app: String

        func run() throws { try global.run(AppStoreControl.Status(app: app), on: try global.identitySocket(), text: AppStore.text) }
    }

    struct Call: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Call an installed app's method with a JSON payload.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The app's id.") var app: String
        @Argument(help: "The method (one the app exposes).") var method: String
        @Argument(help: "The payload, JSON (default {}).") var payload = "{}"
        @Option(help: "Seconds to wait for the reply (default 120, or $PILOT_APPSTORE_CALL_TIMEOUT).") var timeout: Double?

        func run() throws {
            let value: JSON
            do { value = try JSON(parsing: payload) } catch {
                try exitWithError(code: "invalid_argument", "the payload is not JSON: \(error)", hint: nil, json: global.json)
            }
            let seconds = timeout ?? ProcessInfo.processInfo.environment["PILOT_APPSTORE_CALL_TIMEOUT"].flatMap(Double.init) ?? 120
            guard seconds > 0, seconds <= Double(AppStoreControl.Call.longestTimeout / 1000) else {
                try exitWithError(
                    code: "invalid_argument", "--timeout must be above 0 and at most \(AppStoreControl.Call.longestTimeout / 1000) s", hint: nil,
                    json: global.json)
            }
            let command = AppStoreControl.Call(app: app, method: method, payload: value, timeout: Int(seconds * 1000))
            try global.run(command, on: try global.identitySocket()) { reply in reply.reply.prettyEncoded().trimmingCharacters(in: .newlines) }
        }
    }

    struct Restart: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Clear an app's suspension; the next call starts it, verified.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The app's id.") var app: String

        func run() throws { try global.run(AppStoreControl.Restart(app: app), on: try global.identitySocket(), text: AppStore.text) }
    }

    struct Outdated: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Installed apps the catalogue has another version of.")
        @OptionGroup var global: GlobalOptions

        func run() throws {
            try global.run(AppStoreControl.Outdated(), on: try global.identitySocket()) { list in
                list.apps.isEmpty ? "every app is up to date"
                    : list.apps.map { "\($0.app) \($0.version) → \($0.available ?? "?")" }.joined(separator: "\n")
            }
        }
    }

    struct Upgrade: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Install the catalogue's version of an app (or of every outdated one).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The app's id.") var app: String?
        @Flag(help: "Every outdated app.") var all = false
        @Flag(help: "Approve changed grants.") var yes = false

        func validate() throws {
            guard (app == nil) == all else { throw ValidationError("name one app, or --all") }
        }

        func run() throws {
            let socket = try global.identitySocket()
            let names = all ? try global.call(AppStoreControl.Outdated(), on: socket).apps.map(\.app) : [app ?? ""]
            if names.isEmpty { print(global.json ? ControlReply.ok(InstalledApps(apps: []).json).json.encodedString() : "every app is up to date") }
            for name in names { try AppStore.install(name, version: nil, yes: yes, global: global, socket: socket) }
        }
    }

    struct Uninstall: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop an app, forget its grants and delete its state.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The app's id.") var app: String
        @Flag(help: "Confirm: the app's state is deleted.") var yes = false

        func run() throws {
            guard yes else {
                try exitWithError(code: "invalid_argument", "uninstall deletes \(app)'s state", hint: "confirm with --yes", json: global.json)
            }
            try global.run(AppStoreControl.Uninstall(app: app), on: try global.identitySocket()) { "uninstalled \($0.app) \($0.version)" }
        }
    }
}
