import Foundation
import PilotTestSupport

/// The NAT lab's cases (issue 15, `NATLabCase.all`), one table row each: the NATs, the pair (the
/// end that asks for trust marked), the path each end reported last, the time from mutual trust
/// until both reported a direct path, and the MB/s of the files each way; then what else the
/// case saw (a rebinding, an idle spell, a capture's verdict). Needs root, `nft`, `conntrack`
/// and `tcpdump`; the cases with the official daemon need its 1.18 binaries.
struct NATBench {
    /// Case names to run (empty: all).
    let names: [String]
    let megabytes: Int
    let files: Int
    /// Case 6's conntrack timeout, in seconds (nil: the case's own).
    let idleTimeout: Int?
    /// Print each case's details (endpoints, path changes, router flows) under the table.
    let details: Bool
    let artifacts: URL

    func run() {
        let cases = NATLabCase.all.filter { names.isEmpty || names.contains($0.name) }.map(adjusted)
        guard !cases.isEmpty else {
            print("pilot-bench nat: no case named \(names.joined(separator: ", ")); the cases are \(NATLabCase.all.map(\.name).joined(separator: ", "))")
            exit(2)
        }
        var official: OfficialPilot?
        var missing = ""
        do { official = try OfficialPilot.binaries() } catch { missing = "\(error)" }
        print("NAT lab: \(files) file(s) of \(megabytes) MB each way per case; captures in \(artifacts.path)")
        print(NATLabOutcome.header)
        var reports: [String] = []
        for labCase in cases {
            guard !labCase.needsOfficial || official != nil else {
                print("\(labCase.name): skipped, no official daemon: \(missing)")
                continue
            }
            do {
                let outcome = try labCase.run(official: official, megabytes: megabytes, files: files, artifacts: artifacts)
                print(outcome.row)
                reports.append(outcome.details)
            } catch {
                print("\(labCase.name): failed: \("\(error)".split(separator: "\n").first ?? "")")
                reports.append("\(error)")
            }
        }
        if details { print("\n" + reports.joined(separator: "\n\n")) }
    }

    private func adjusted(_ labCase: NATLabCase) -> NATLabCase {
        guard let idleTimeout, case .idle = labCase.event else { return labCase }
        return NATLabCase(
            labCase.name, labCase.kinds, labCase.software, asker: labCase.asker, traversal: labCase.traversal,
            event: .idle(timeout: idleTimeout), capture: labCase.capture)
    }
}
