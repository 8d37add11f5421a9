import NIOConcurrencyHelpers
import PilotServices
import PilotWire
import XCTest

/// `withTimeout` and `collect`: the work's result, or the timeout, or the caller's cancellation,
/// whichever comes first, and the work cancelled when it is not first.
final class TimeoutTests: XCTestCase {
    private struct WorkFailure: Error, Equatable {}

    /// A flag set from one task and read from another.
    private final class Flag: Sendable {
        private let value = NIOLockedValueBox(false)
        var isSet: Bool { value.withLockedValue { $0 } }
        func set() { value.withLockedValue { $0 = true } }
    }

    /// Work that waits for `open()` and does not look at its cancellation (as a dial waits on
    /// its own timers).
    private final class Gate: Sendable {
        private struct State {
            var isOpen = false
            var waiter: CheckedContinuation<Void, Never>?
        }

        private let state = NIOLockedValueBox(State())

        func wait() async {
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let open = state.withLockedValue { state -> Bool in
                    if !state.isOpen { state.waiter = waiter }
                    return state.isOpen
                }
                if open { waiter.resume() }
            }
        }

        func open() {
            let waiter = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
                state.isOpen = true
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }

    func testTheWorksValueIsReturned() async throws {
        let value = try await withTimeout(.seconds(5)) { () async throws -> Int in
            await Task.yield()
            return 42
        }
        XCTAssertEqual(value, 42)
    }

    func testTheWorksErrorIsThrown() async throws {
        do {
            _ = try await withTimeout(.seconds(5)) { () async throws -> Int in throw WorkFailure() }
            XCTFail("the work's error was lost")
        } catch let failure as WorkFailure {
            XCTAssertEqual(failure, WorkFailure())
        }
    }

    func testPastTheLimitItThrowsATimeoutAndCancelsTheWork() async throws {
        let cancelled = Flag()
        let start = ContinuousClock.now
        do {
            _ = try await withTimeout(.milliseconds(50)) { () async throws -> Int in
                do { try await Task.sleep(for: .seconds(30)) } catch { cancelled.set() }
                return 1
            }
            XCTFail("the work outlived its limit without a timeout")
        } catch let failure as ControlFailure {
            XCTAssertEqual(failure.code, .timeout)
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(5))
        let noticed = await eventually { cancelled.isSet }
        XCTAssertTrue(noticed, "the work was not cancelled at the timeout")
    }

    func testItReturnsAtTheLimitEvenIfTheWorkIgnoresCancellation() async throws {
        let gate = Gate()
        let finished = Flag()
        let start = ContinuousClock.now
        do {
            _ = try await withTimeout(.milliseconds(50)) { () async -> Int in
                await gate.wait()
                finished.set()
                return 1
            }
            XCTFail("the work's value came before it was released")
        } catch let failure as ControlFailure {
            XCTAssertEqual(failure.code, .timeout)
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(5))
        XCTAssertFalse(finished.isSet)
        gate.open()
        let ended = await eventually { finished.isSet }
        XCTAssertTrue(ended)
    }

    func testCancellingTheCallerCancelsTheWorkAtOnce() async throws {
        let started = Flag()
        let cancelled = Flag()
        let caller = Task {
            try await withTimeout(.seconds(30)) { () async throws -> Int in
                started.set()
                do { try await Task.sleep(for: .seconds(30)) } catch { cancelled.set() }
                return 1
            }
        }
        let running = await eventually { started.isSet }
        XCTAssertTrue(running)
        let start = ContinuousClock.now
        caller.cancel()
        do {
            _ = try await caller.value
            XCTFail("a cancelled caller got a value")
        } catch {
            XCTAssertTrue(error is CancellationError, "\(error)")
        }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(5))
        let noticed = await eventually { cancelled.isSet }
        XCTAssertTrue(noticed, "the work was not cancelled with its caller")
    }

    func testACallerCancelledBeforehandThrowsAtOnce() async throws {
        let cancelled = Flag()
        let caller = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await withTimeout(.seconds(30)) { () async throws -> Int in
                do { try await Task.sleep(for: .seconds(30)) } catch { cancelled.set() }
                return 1
            }
        }
        do {
            _ = try await withTimeout(.seconds(5)) { try await caller.value }
            XCTFail("a cancelled caller got a value")
        } catch {
            XCTAssertTrue(error is CancellationError, "\(error)")
        }
        let noticed = await eventually { cancelled.isSet }
        XCTAssertTrue(noticed)
    }

    func testCollectReturnsEveryItemWhenTheWorkEnds() async {
        let counts = NIOLockedValueBox<[Int]>([])
        let items = await collect(within: .seconds(5)) { (add: @escaping @Sendable (String) -> Int) in
            for item in ["a", "b", "c"] {
                let count = add(item)
                counts.withLockedValue { $0.append(count) }
            }
        }
        XCTAssertEqual(items, ["a", "b", "c"])
        XCTAssertEqual(counts.withLockedValue { $0 }, [1, 2, 3])
    }

    func testCollectKeepsWhatArrivedWhenTheLimitPasses() async {
        let start = ContinuousClock.now
        let items = await collect(within: .milliseconds(100)) { (add: @escaping @Sendable (Int) -> Int) in
            _ = add(1)
            _ = add(2)
            try? await Task.sleep(for: .seconds(30))
        }
        XCTAssertEqual(items, [1, 2])
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(5))
    }
}
