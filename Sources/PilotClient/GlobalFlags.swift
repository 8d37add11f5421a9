/// pilotctl's global flags, taken wherever the user wrote them, as the reference pilotctl takes
/// them: `pilotctl --json info`, `pilotctl info --json` and `pilotctl identity --json list` are
/// one command. It lives in the library, not in pilotctl, so that a test can call it.
///
/// The rule, applied to the arguments before swift-argument-parser sees them:
/// - Up to a literal `--`, every `--json`, `--identity NAME`, `--identity=NAME`,
///   `--runtime-dir DIR` and `--runtime-dir=DIR` is taken out, wherever it stands.
/// - They go back, in the order they came, right after the subcommand path: the leading words
///   that name a command of `commands` one level after the other (by name or alias). There each
///   command's own options find them.
/// - Nothing at or after `--` moves, and nothing else moves either: `-h`/`--help` stays where it
///   is, so that `pilotctl --help info` and `pilotctl info --help` keep their meaning.
/// - `--identity` or `--runtime-dir` with no value after it (the end, or `--`) stays in place
///   for the parser to report.
public enum GlobalFlags {
    /// The flags that take no value.
    public static let switches: Set<String> = ["--json"]
    /// The options that take a value, as `--name VALUE` or `--name=VALUE`.
    public static let options: Set<String> = ["--identity", "--runtime-dir"]

    /// The commands of a command line, for finding where its subcommand path ends.
    public struct CommandTree: Hashable, Sendable {
        /// The subcommands, under every name each answers to (its name and its aliases).
        public var subcommands: [String: CommandTree]

        /// A command with `subcommands`.
        public init(_ subcommands: [String: CommandTree] = [:]) { self.subcommands = subcommands }
    }

    /// `arguments` (without the program's name) with the global flags moved right after the
    /// subcommand path of `commands`.
    public static func placed(_ arguments: [String], commands: CommandTree) -> [String] {
        let end = arguments.firstIndex(of: "--") ?? arguments.endIndex
        var flags: [String] = []
        var rest: [String] = []
        var index = arguments.startIndex
        while index < end {
            let word = arguments[index]
            if switches.contains(word) || options.contains(where: { word.hasPrefix($0 + "=") }) {
                flags.append(word)
            } else if options.contains(word), index + 1 < end {
                flags += [word, arguments[index + 1]]
                index += 1
            } else {
                rest.append(word)
            }
            index += 1
        }
        var path = 0
        var command = commands
        while path < rest.count, let next = command.subcommands[rest[path]] {
            command = next
            path += 1
        }
        return Array(rest[..<path]) + flags + rest[path...] + arguments[end...]
    }
}
