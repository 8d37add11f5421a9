@testable import PilotHost
import PilotWire
import XCTest

final class UploadsTests: XCTestCase {
    private func failure(_ body: () async throws -> Void) async -> ControlFailure? {
        do { try await body() } catch let failure as ControlFailure { return failure } catch { return ControlFailure(.internalError, "\(error)") }
        return nil
    }

    func testOneUserDeclaresNoMoreThanItsShareWhateverIdentitiesItUses() async throws {
        let uploads = Uploads()
        var accepted = 0
        var refusal: ControlFailure?
        // Four identities of one user, four uploads each: the host-wide total would take them all.
        for identity in ["a1", "a2", "a3", "a4"] {
            for index in 0..<Uploads.perIdentity {
                refusal = await failure {
                    _ = try await uploads.append(identity: identity, user: 1000, id: "u\(index)", size: Uploads.maxFile, offset: 0, chunk: [])
                }
                if refusal == nil { accepted += 1 }
            }
        }
        XCTAssertEqual(accepted, Uploads.perUser / Uploads.maxFile)
        XCTAssertEqual(refusal?.code, .unavailable)
        XCTAssertTrue(refusal?.message.contains("uid 1000") == true, "\(String(describing: refusal))")
        // Another user still uploads a file of the largest size.
        let held = try await uploads.append(identity: "b", user: 1001, id: "b0", size: Uploads.maxFile, offset: 0, chunk: [1, 2, 3])
        XCTAssertEqual(held, 3)
        let bytes = await uploads.held(by: 1001)
        XCTAssertEqual(bytes, Uploads.maxFile)
    }

    func testAnUploadThatAddsNothingExpiresEvenIfChunksKeepComing() async throws {
        let uploads = Uploads(idle: .milliseconds(300))
        _ = try await uploads.append(identity: "a", user: 1000, id: "stalled", size: 10, offset: 0, chunk: [7])
        let started = ContinuousClock.now
        var expired = false
        // Empty chunks every 50 ms: before the fix each one renewed the upload for another idle period.
        while !expired, started.duration(to: .now) < .seconds(5) {
            try await Task.sleep(for: .milliseconds(50))  // deliberate: the pace of the chunks
            expired = await failure {
                _ = try await uploads.append(identity: "a", user: 1000, id: "stalled", size: 10, offset: 1, chunk: [])
            }?.message.contains("unknown upload") == true
        }
        XCTAssertTrue(expired, "an upload that never grows must expire")
        let left = await uploads.held(by: 1000)
        XCTAssertEqual(left, 0, "its declared bytes are given back")
    }

    func testDroppingAnIdentitysUploadsGivesBackTheirBytes() async throws {
        let uploads = Uploads()
        _ = try await uploads.append(identity: "a", user: 1000, id: "x", size: 100, offset: 0, chunk: [0])
        await uploads.drop(identity: "a")
        let total = await uploads.held()
        XCTAssertEqual(total, 0)
        let missing = await failure { _ = try await uploads.take(identity: "a", id: "x") }
        XCTAssertEqual(missing?.code, .notFound)
    }
}
