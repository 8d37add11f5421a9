import PilotClient
import PilotWire

/// The app store on pilot-host: the signed catalogue, installing with the owner's consent to
/// an app's grants, the installed apps, and calling them.
extension PilotTools {
    static let appStore: [PilotTool] = [
        PilotTool(
            name: "pilot_appstore_catalogue",
            description: "The apps the host's signed catalogue offers, each with its id, version and description, and whether this identity installed it.",
            parameters: [.optional("search", .string, "Only apps whose id, name, description, vendor or category has this word.")],
            readOnly: true
        ) { arguments, client in
            try await client.send(AppStoreControl.Catalogue(search: try arguments.optionalString("search"))).json
        },
        PilotTool(
            name: "pilot_appstore_install",
            description: """
                Install an app from the catalogue. Without approve: true nothing is installed: it returns the plan, the \
                grants (capabilities) the app asks for and its bundle_sha256, for the user to read and consent to. \
                Only after the user agrees, call again with approve: true and that bundle_sha256, which installs exactly that bundle.
                """,
            parameters: [
                .required("app_id", .string, "The app's id in the catalogue."),
                .optional("approve", .boolean, "The user read the plan's grants and consents to them.", default: false),
                .optional("bundle_sha256", .string, "The plan's bundle_sha256: what was approved is what is installed."),
            ]
        ) { arguments, client in
            try await install(
                app: try arguments.string("app_id"), approve: try arguments.bool("approve", default: false),
                bundle: try arguments.optionalString("bundle_sha256"), client: client)
        },
        PilotTool(
            name: "pilot_appstore_list",
            description: "The apps this identity installed: version, the methods each exposes, its grants, its state.",
            readOnly: true
        ) { _, client in
            try await client.send(AppStoreControl.List()).json
        },
        PilotTool(
            name: "pilot_appstore_call",
            description: "Call a method an installed app exposes, with a JSON payload; returns the app's reply.",
            parameters: [
                .required("app_id", .string, "The installed app's id."),
                .required("method", .string, "The method, one the app exposes (pilot_appstore_list)."),
                .optional("payload_json", .string, "The payload, as JSON text.", default: "{}"),
                .optional("timeout_seconds", .integer, "Seconds to wait for the reply.", default: .int(AppStoreControl.Call.defaultTimeout / 1000)),
            ]
        ) { arguments, client in
            let command = AppStoreControl.Call(
                app: try arguments.string("app_id"), method: try arguments.string("method"),
                payload: try arguments.jsonText("payload_json", default: .object([:])),
                timeout: try arguments.integer(
                    "timeout_seconds", default: AppStoreControl.Call.defaultTimeout / 1000, in: 1...(AppStoreControl.Call.longestTimeout / 1000)) * 1000)
            return try await client.send(command).json
        },
    ]

    /// `pilot_appstore_install`: the plan, unless approved; then the install of `bundle` (or,
    /// when none is named, of the plan's bundle, as `pilotctl appstore install --yes` does).
    static func install(app: String, approve: Bool, bundle: String?, client: PilotClient) async throws -> JSON {
        guard approve else {
            let plan = try await client.send(AppStoreControl.Plan(app: app))
            var shown = plan.json.objectValue ?? [:]
            shown["installed"] = false
            shown["next"] = .string(
                plan.needsApproval || plan.installedVersion != plan.version
                    ? "show the user these grants; if they consent, call pilot_appstore_install with approve: true and bundle_sha256: \(plan.bundleSHA256)"
                    : "this version is installed and needs no new approval")
            return .object(shown)
        }
        let hash: String
        if let bundle { hash = bundle } else { hash = try await client.send(AppStoreControl.Plan(app: app)).bundleSHA256 }
        return try await client.send(AppStoreControl.Install(app: app, bundleSHA256: hash, approve: true)).json
    }
}
