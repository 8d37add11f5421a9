import Foundation
import PilotTestSupport
import XCTest

/// The proof of NAT traversal (issue 15): each case of `NATLabCase` built with network
/// namespaces, veth pairs and nftables (`NATLab`), ten MB each way compared byte for byte, and
/// the path each end reports from the moment of mutual trust.
///
/// What must hold whatever the traversal does is asserted always: every file arrives whole,
/// fully-random NATs on both sides stay on the relay, a transfer survives its NAT's rebinding,
/// and a path idle past the conntrack timeouts carries the next message within 2 s. Between two
/// pilot-host and another node the direct path is asserted always: within 5 s of mutual trust
/// behind two port-preserving NATs, with pilot-host (1a), or the official daemon asking first
/// (1c) or asked (1b); within one upgrade round (20 s) between a fully-random NAT and a
/// full-cone one (4); and back after a rebinding (5). Between two official daemons (2) the
/// capture must explain a path that stays relayed, and the direct path is asserted only with
/// `PILOT_NAT_EXPECT_DIRECT=1`: there 1.18's own path choices decide. `PILOT_LONG=1` sends ten
/// files each way instead of one.
///
/// Skipped, saying why, without root, nft, conntrack or network namespaces; the cases with the
/// official daemon also without its 1.18 binaries. The captures of the cases with the official
/// daemon are kept in `$PILOT_TEST_ARTIFACTS` (else `.build/test-artifacts` at the package root).
final class NATTraversalLabTests: XCTestCase {
    private var expectsDirect: Bool { ProcessInfo.processInfo.environment["PILOT_NAT_EXPECT_DIRECT"] == "1" }

    func testPortPreservingNATsBetweenPilotHosts() throws {
        let outcome = try run("1a")
        expectDirect(outcome, within: 5, always: true)
    }

    func testPortPreservingNATsFromPilotHostToTheOfficialDaemon() throws {
        let outcome = try run("1b")
        expectDirect(outcome, within: 5, always: true)
    }

    func testPortPreservingNATsFromTheOfficialDaemonToPilotHost() throws {
        let outcome = try run("1c")
        expectDirect(outcome, within: 5, always: true)
    }

    /// Two official daemons through our rendezvous; where they do not both go direct, the
    /// capture on the wan bridge must say why: the NATs dropped what they sent each other, or let
    /// it through while a daemon still sent everything through the beacon.
    func testPortPreservingNATsBetweenOfficialDaemonsThroughOurRendezvous() throws {
        let outcome = try run("2")
        let capture = try XCTUnwrap(outcome.capture, "no capture")
        XCTAssertTrue(FileManager.default.fileExists(atPath: capture.file.path), "the capture was not kept")
        print("case 2 capture (\(capture.file.path)): \(capture.reason)")
        if outcome.timeToDirect == nil {
            switch capture.verdict {
            case .noAttempt, .oneWay, .crossed:
                break  // the NATs kept the daemons apart, and the verdict says how
            case .open:
                // The NATs let the path through: then a daemon chose the beacon, and its data shows there.
                XCTAssertTrue(capture.toRendezvous.values.contains { $0 > 1000 }, "open both ways and nothing relayed: \(capture.reason)")
            }
        }
        expectDirectWithinFiveSeconds(outcome)
    }

    func testFullyRandomNATsOnBothSidesStayOnTheRelay() throws {
        let outcome = try run("3")
        for (index, seen) in outcome.seen.enumerated() {
            XCTAssertEqual(seen.last, .relay, "end \(index)\n\(outcome.details)")
            XCTAssertNil(seen.firstDirect, "end \(index) reported a direct path through two fully-random NATs\n\(outcome.details)")
        }
    }

    func testAFullyRandomNATAndAFullConeOne() throws {
        let outcome = try run("4")
        expectDirect(outcome, within: 20, always: true)
    }

    /// Router 0 changes every mapping of its host as the first file starts on its way: the file
    /// still arrives whole, and a message goes each way after.
    func testATransferSurvivesItsNATRebinding() throws {
        let outcome = try run("5")
        let rebinding = try XCTUnwrap(outcome.rebinding)
        XCTAssertNil(rebinding.error)
        let into = try XCTUnwrap(rebinding.secondsIntoTransfer, "the rebinding did not happen")
        let transfer = try XCTUnwrap(outcome.transfers.first?.seconds, "the first transfer failed\n\(outcome.details)")
        XCTAssertLessThan(into, transfer, "the rebinding was done after the transfer: it proves nothing")
        XCTAssertEqual(outcome.messagesAfterEvent, [true, true], outcome.details)
        XCTAssertEqual(outcome.seen.map(\.last), [.direct, .direct], "the direct path did not come back\n\(outcome.details)")
    }

    /// Conntrack timeouts of 30 s on both routers (stream ones included) and 35 s without a
    /// message: the next message each way is acknowledged within 2 s.
    func testAPathIdlePastTheConntrackTimeoutsCarriesTheNextMessage() throws {
        let outcome = try run("6")
        let idle = try XCTUnwrap(outcome.idle)
        XCTAssertEqual(idle.delays.count, 2)
        for (index, delay) in idle.delays.enumerated() {
            let seconds = try XCTUnwrap(delay, "message \(index) after the idle spell was not acknowledged\n\(outcome.details)")
            XCTAssertLessThanOrEqual(seconds, 2, "message \(index) after the idle spell\n\(outcome.details)")
        }
    }

    /// Runs case `name`, prints its row and details, and asserts what every case must show:
    /// every file whole both ways, and a path reported by each end.
    private func run(_ name: String) throws -> NATLabOutcome {
        let labCase = try XCTUnwrap(NATLabCase.named(name))
        var official: OfficialPilot?
        if labCase.needsOfficial {
            do { official = try OfficialPilot.binaries() } catch { throw XCTSkip("official pilot-daemon unavailable: \(error)") }
        }
        let files = ProcessInfo.processInfo.environment["PILOT_LONG"] == "1" ? 10 : 1
        let outcome: NATLabOutcome
        do {
            outcome = try labCase.run(official: official, megabytes: 10, files: files, artifacts: Self.artifacts)
        } catch let unavailable as NATLab.Unavailable {
            throw XCTSkip("no NAT lab here: \(unavailable)")
        }
        print(NATLabOutcome.header)
        print(outcome.row)
        print(outcome.details)
        XCTAssertTrue(outcome.everyFileExact, "\(outcome.details)\n\(outcome.logs)")
        XCTAssertTrue(outcome.seen.allSatisfy { $0.last != nil }, "an end never listed the other\n\(outcome.details)")
        return outcome
    }

    /// With PILOT_NAT_EXPECT_DIRECT=1: both ends report a direct path within 5 s of their
    /// tunnel's first frame. Otherwise the path is only printed (by `run`).
    private func expectDirectWithinFiveSeconds(_ outcome: NATLabOutcome) {
        expectDirect(outcome, within: 5, always: false)
    }

    /// Both ends report a direct path within `seconds` of their tunnel's first frame: asserted
    /// when `always`, else only with PILOT_NAT_EXPECT_DIRECT=1. (Counted from the first frame, not
    /// from mutual trust: where the official SDK sends, it uploads the whole file to its daemon
    /// before the first frame, seconds of CPU that say nothing of the traversal.)
    private func expectDirect(_ outcome: NATLabOutcome, within limit: Double, always: Bool) {
        guard always || expectsDirect else { return }
        guard let seconds = outcome.timeToDirectFromFirstFrame else {
            return XCTFail("no direct path (\(outcome.seen.map { $0.last?.rawValue ?? "none" }))\n\(outcome.details)")
        }
        XCTAssertLessThanOrEqual(seconds, limit, "direct only \(seconds) s after the first frame\n\(outcome.details)")
    }

    private static var artifacts: URL {
        if let directory = ProcessInfo.processInfo.environment["PILOT_TEST_ARTIFACTS"], !directory.isEmpty {
            return URL(fileURLWithPath: directory)
        }
        return OfficialPilot.packageRoot().appendingPathComponent(".build/test-artifacts")
    }
}
