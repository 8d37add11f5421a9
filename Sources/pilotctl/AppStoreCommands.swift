import ArgumentParser
import Foundation
import PilotAppStore
import PilotCrypto
import PilotWire

/// `pilotctl appstore ...`: the app store. The publisher's tools (gen-key, sign, sign-catalogue,
/// verify) work on local files and need no host.
struct AppStore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "appstore", abstract: "Installable apps: catalogue, install, call; and the publisher's tools.",
        discussion: """
            An identity's apps: catalogue [--search WORD], view ID, install ID [--yes], list, status ID, \
            call ID METHOD [JSON] [--timeout S], restart ID, outdated, upgrade ID|--all [--yes], uninstall ID --yes. \
            Installing shows the grants the app asks for and needs your approval (--yes, or y at a terminal); \
            an upgrade asks again when they change. The publisher's tools work on local files: gen-key, sign, \
            sign-catalogue, verify.
            """,
        subcommands: [
            Catalogue.self, View.self, Install.self, List.self, Status.self, Call.self, Restart.self, Outdated.self, Upgrade.self,
            Uninstall.self, GenKey.self, Sign.self, SignCatalogue.self, VerifyBundle.self,
        ])
}

extension AppStore {
    /// Reads a whole file, or exits with an `invalid_argument` error naming it.
    static func read(_ path: String, json: Bool) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            try exitWithError(code: "invalid_argument", "cannot read \(path)", hint: nil, json: json)
        }
        return Array(data)
    }

    /// Writes `bytes` to `path` through a temporary file and a rename, with `mode`.
    static func write(_ bytes: [UInt8], to path: String, mode: mode_t, json: Bool) throws {
        let temporary = path + ".tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            try exitWithError(code: "invalid_argument", "cannot write \(temporary): \(String(cString: strerror(errno)))", hint: nil, json: json)
        }
        let written = bytes.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            unlink(temporary)
            try exitWithError(code: "internal", "cannot write \(path): \(String(cString: strerror(errno)))", hint: nil, json: json)
        }
    }

    static func key(at path: String, json: Bool) throws -> Ed25519PrivateKey {
        let text = String(decoding: try read(path, json: json), as: UTF8.self)
        do { return try PublisherKey.parse(text, path: path) } catch {
            try exitWithError(code: "invalid_argument", error.description, hint: "make one with: pilotctl appstore gen-key FILE", json: json)
        }
    }

    static func report(_ data: [String: JSON], text: String, json: Bool) {
        print(json ? ControlReply.ok(.object(data)).json.encodedString() : text)
    }

    struct GenKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gen-key", abstract: "Make a publisher key pair: the private key to FILE (mode 0600), the public side printed.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Where to write the private key (must not exist).") var file: String

        func run() throws {
            guard !FileManager.default.fileExists(atPath: file) else {
                try exitWithError(code: "already_exists", "\(file) exists: not overwritten", hint: nil, json: global.json)
            }
            let key = try Ed25519PrivateKey()
            try AppStore.write(Array(PublisherKey.fileText(key).utf8), to: file, mode: 0o600, json: global.json)
            let publisher = PublisherKey.publisher(key.publicKey)
            AppStore.report(
                ["key_file": .string(file), "publisher": .string(publisher)],
                text: "private key written to \(file) (mode 0600: keep it secret)\npublisher (for manifest store.publisher and the catalogue's publisher):\n\(publisher)",
                json: global.json)
        }
    }

    struct Sign: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign a manifest: sets store.publisher and store.signature (over id, manifest_version, binary.sha256, grants).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "The publisher key file (from gen-key).") var key: String
        @Argument(help: "The manifest.json to sign in place.") var manifest: String

        func run() throws {
            let signingKey = try AppStore.key(at: key, json: global.json)
            let bytes = try AppStore.read(manifest, json: global.json)
            var parsed: Manifest
            var tree: [String: JSON]
            do {
                parsed = try Manifest(parsing: bytes)
                tree = try JSON(parsing: bytes).objectValue ?? [:]
            } catch {
                try exitWithError(code: "invalid_argument", "\(manifest): \(error)", hint: nil, json: global.json)
            }
            ManifestSignature.sign(&parsed, with: signingKey)
            // The schema's rules, with the publisher filled in; the help rule is the catalogue's.
            let problems = parsed.problems(requireHelp: false)
            guard problems.isEmpty else {
                try exitWithError(code: "invalid_argument", AppStoreError.invalidManifest(id: parsed.id, problems: problems).description, hint: nil, json: global.json)
            }
            tree["store"] = ["publisher": .string(parsed.store.publisher), "signature": .string(parsed.store.signature)]
            try AppStore.write(Array(JSON.object(tree).prettyEncoded(escapeHTML: true).utf8), to: manifest, mode: 0o644, json: global.json)
            AppStore.report(
                ["manifest": .string(manifest), "publisher": .string(parsed.store.publisher), "signature": .string(parsed.store.signature)],
                text: "signed \(manifest)\npublisher: \(parsed.store.publisher)", json: global.json)
        }
    }

    struct SignCatalogue: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sign-catalogue", abstract: "Sign a catalogue: writes the detached CATALOGUE.sig over its exact bytes.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "The catalogue key file (from gen-key).") var key: String
        @Argument(help: "The catalogue.json to sign.") var catalogue: String

        func run() throws {
            let signingKey = try AppStore.key(at: key, json: global.json)
            let bytes = try AppStore.read(catalogue, json: global.json)
            let parsed: PilotAppStore.Catalogue
            do { parsed = try PilotAppStore.Catalogue(parsing: bytes) } catch {
                try exitWithError(code: "invalid_argument", error.description, hint: nil, json: global.json)
            }
            let signature = Base64.encode(signingKey.sign(bytes))
            try AppStore.write(Array(signature.utf8), to: catalogue + ".sig", mode: 0o644, json: global.json)
            AppStore.report(
                ["catalogue": .string(catalogue), "signature_file": .string(catalogue + ".sig"), "apps": .integer(Int64(parsed.apps.count)),
                 "key": .string(signingKey.publicKey.base64)],
                text: "signed \(catalogue) (\(parsed.apps.count) apps): \(catalogue).sig\ncatalogue key: \(signingKey.publicKey.base64)",
                json: global.json)
        }
    }

    struct VerifyBundle: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify", abstract: "Check an unpacked bundle: its manifest, its binary's sha256, its signature.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The bundle directory (holding manifest.json).") var bundle: String

        func run() throws {
            let manifest: Manifest
            do { manifest = try Manifest(parsing: try AppStore.read(bundle + "/manifest.json", json: global.json)) } catch let error as AppStoreError {
                try exitWithError(code: "invalid_argument", error.description, hint: nil, json: global.json)
            }
            var problems = manifest.problems(requireHelp: true)
            let binaryPath = bundle + "/" + manifest.binary.path
            var isDirectory: ObjCBool = false
            if Manifest.pathProblem(manifest.binary.path) == nil {
                let attributes = try? FileManager.default.attributesOfItem(atPath: binaryPath)
                if attributes?[.type] as? FileAttributeType != .typeRegular || !FileManager.default.fileExists(atPath: binaryPath, isDirectory: &isDirectory) {
                    problems.append("binary \(manifest.binary.path) is missing or not a regular file (links are refused)")
                } else if let data = FileManager.default.contents(atPath: binaryPath), Hex.lowercase(Sodium.sha256(data)) != manifest.binary.sha256 {
                    problems.append("binary \(manifest.binary.path) has sha256 \(Hex.lowercase(Sodium.sha256(data))), the manifest pins \(manifest.binary.sha256)")
                }
            }
            do { try ManifestSignature.verify(manifest) } catch { problems.append(error.description) }
            guard problems.isEmpty else {
                try exitWithError(code: "invalid_argument", "\(bundle): " + problems.joined(separator: "; "), hint: nil, json: global.json)
            }
            AppStore.report(
                ["id": .string(manifest.id), "app_version": .string(manifest.appVersion), "manifest_version": .integer(Int64(manifest.manifestVersion)),
                 "sha256": .string(manifest.binary.sha256), "publisher": .string(manifest.store.publisher)],
                text: "\(bundle): \(manifest.id) \(manifest.appVersion) verified (binary sha256, signature by \(manifest.store.publisher))",
                json: global.json)
        }
    }
}
