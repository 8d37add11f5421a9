import ArgumentParser
import Foundation
import PilotClient
import PilotWire

// Identities that move between hosts, on the admin socket: `pilotctl host-key`,
// `pilotctl identity export`, `pilotctl identity import`.

struct HostKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host-key", abstract: "Print this host's key, which identities are exported to (admin socket).",
        discussion: "Give it to `pilotctl identity export NAME --to-host-key KEY` on the host the identity leaves.")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        try global.run(MoveControl.ShowHostKey(), on: global.runtime + "/admin.sock") { $0.publicKey }
    }
}

extension IdentityCommand {
    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Seal an identity to another host's key and write the file to stdout; it leaves this host.",
            discussion: """
                The file carries its key, address, hostname, tags, visibility, auto-approve, \
                trust table and installed apps with their approved grants (with --with-inbox, \
                its inbox too), signed by its key and sealed to KEY (the other host's `pilotctl \
                host-key`): only that host opens it. Once the file is made, this host keeps a \
                copy under its state directory (exported/, root's only), then deregisters and \
                deletes the identity, so redirect stdout to a file: NAME.pilot. Then, there: \
                pilotctl identity import NAME.pilot.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Option(help: "The destination host's key (its pilotctl host-key).") var toHostKey: String
        @Flag(help: "Carry its inbox too.") var withInbox = false

        func run() throws {
            // Checked before anything leaves: the identity is gone from here once the file exists.
            if !global.json, isatty(STDOUT_FILENO) == 1 {
                try exitWithError(
                    code: "invalid_argument", "the identity file is binary: refusing to write it to a terminal (nothing was exported)",
                    hint: "pilotctl identity export \(name) --to-host-key KEY > \(name).pilot", json: false)
            }
            let exported = try global.call(
                MoveControl.ExportIdentity(identity: name, hostKey: toHostKey, withInbox: withInbox), on: global.runtime + "/admin.sock")
            if global.json {
                print(ControlReply.ok(exported.json).json.encodedString())
                return
            }
            guard let file = try? Base64.decode(exported.file) else {
                try exitWithError(code: "internal", "the host sent a file that is not base64", hint: nil, json: false)
            }
            do {
                try FileHandle.standardOutput.write(contentsOf: Data(file))
            } catch {
                // The identity has left this host: its file must not be lost with the write.
                FileHandle.standardError.write(Data("""
                    error: writing the identity file failed (\(error)); \(name) has already left this host. \
                    The host keeps a copy at \(exported.kept). The file, base64 (decode it with base64 -d > \(name).pilot):
                    \(exported.file)

                    """.utf8))
                throw ExitCode(1)
            }
        }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bring up an identity exported to this host: same key, same address.",
            discussion: """
                The file is opened with this host's key and checked (a file sealed to another \
                host, or changed in any byte, is refused and nothing is made). The identity is \
                registered with its key, so it keeps its node id and address, its hostname, tags \
                and trust table come with it, and the peers it trusts are told where it is now: \
                their tunnels follow it within seconds, with no new handshake. Its apps are \
                installed again with the grants approved before, where this host can have the \
                very bundles that were approved; the others are named with the reason.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The identity file; read with your rights, not the host's.") var file: String
        @Option(help: "Owner (user name or uid); default: the caller.") var owner: String?
        @Option(help: "The name to give it here; default: the name it had.") var name: String?

        func run() throws {
            guard let contents = FileManager.default.contents(atPath: file) else {
                try global.fail(.error(ControlFailure(.invalidArgument, "cannot read \(file)")))
            }
            let request = MoveControl.ImportIdentity(file: Base64.encode(Array(contents)), owner: owner ?? String(getuid()), rename: name)
            try global.run(request, on: global.runtime + "/admin.sock") { imported in
                let apps = imported.appsNotRestored.map { "\n  not installed  \($0.app) \($0.version): \($0.reason)" }.joined()
                let restored = imported.appsRestored.isEmpty ? "" : "\n  apps      \(imported.appsRestored.joined(separator: ", "))"
                return IdentityCommand.describe(imported.identity) + restored + apps
            }
        }
    }
}
