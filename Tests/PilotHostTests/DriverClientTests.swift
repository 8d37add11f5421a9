import Foundation
import PilotClient
import PilotTestSupport
import PilotWire
import XCTest

/// The Swift SDK's driver connection (`PilotDriver`, Sources/PilotClient/Driver) against a real
/// pilot-host: two identities of one host that trust each other, alice and bob, each reached
/// through its own identity socket in the 1.18 driver protocol (docs/PROTOCOL.md §12.2). Every
/// wait is bounded: past its time the task is cancelled, which the driver's waits honour.
final class DriverClientTests: HostProcessTestCase {
    private var hostRuntime = ""

    private func socket(_ name: String) -> String { "\(hostRuntime)/id/\(name).sock" }

    /// Starts a registry and one host with `names` as its identities; returns their addresses.
    private func startHost(identities names: [String]) throws -> [Address] {
        let registryPort = try startRendezvous()
        hostRuntime = try startHosts(1, registryPort: registryPort)[0]
        return try names.map { name in
            let node = try XCTUnwrap(ctl(hostRuntime, ["identity", "create", name])?["data"]?["node_id"]?.integerValue, name)
            return Address(node: UInt32(node))
        }
    }

    /// alice and bob on one host, trusting each other: identities of one host are strangers
    /// until they do, and a private identity answers only the nodes it trusts.
    private func aliceAndBob() throws -> (alice: Address, bob: Address) {
        let addresses = try startHost(identities: ["alice", "bob"])
        let (alice, bob) = (addresses[0], addresses[1])
        XCTAssertEqual(ctl(hostRuntime, ["handshake", "\(bob.node)", "--identity", "alice"])?["data"]?["status"], "sent")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            !(self.ctl(self.hostRuntime, ["pending", "--identity", "bob"])?["data"]?["pending"]?.arrayValue ?? []).isEmpty
        })
        XCTAssertEqual(ctl(hostRuntime, ["approve", "\(alice.node)", "--identity", "bob"])?["data"]?["status"], "approved")
        XCTAssertTrue(ChildProcess.waitUntil(timeout: 10) {
            self.ctl(self.hostRuntime, ["trust", "--identity", "alice"])?["data"]?["total"] == 1
        })
        return (alice, bob)
    }

    func testInfoNamesTheIdentityAndAMegabyteComesBackFromTheEchoPortExactly() async throws {
        let (alice, bob) = try aliceAndBob()
        let driver = try PilotDriver(socketPath: socket("alice"))
        defer { driver.close() }

        let info = try await within(10, "info") { try await driver.info() }
        XCTAssertEqual(info["address"]?.stringValue, alice.description, "\(info)")
        XCTAssertEqual(info["node_id"]?.integerValue, Int64(alice.node))
        XCTAssertEqual(info["name"], "alice")

        // 1 MiB is more than one Send frame carries, so the write is cut in frames.
        let megabyte = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 11) }
        XCTAssertGreaterThan(megabyte.count, PilotStream.maxFrameData)
        let echoed = try await within(30, "1 MiB through bob's echo port") {
            let stream = try await driver.dial(bob, port: 7)
            XCTAssertEqual(stream.remote, bob)
            XCTAssertEqual(stream.remotePort, 7)
            async let written: Void = stream.write(megabyte)
            let received = try await Self.read(megabyte.count, from: stream)
            try await written
            try await stream.close()
            return received
        }
        XCTAssertEqual(echoed.count, megabyte.count)
        XCTAssertTrue(echoed == megabyte, "the echo differs from what was sent")
    }

    func testAStreamToAListenerCarriesBytesBothWaysAndItsEndReadsAsNil() async throws {
        let (alice, bob) = try aliceAndBob()
        let aliceDriver = try PilotDriver(socketPath: socket("alice"))
        let bobDriver = try PilotDriver(socketPath: socket("bob"))
        defer { aliceDriver.close(); bobDriver.close() }

        let listener = try await within(10, "listen") { try await bobDriver.listen(port: 5000) }
        XCTAssertEqual(listener.port, 5000)
        let dialed = try await within(20, "dial") { try await aliceDriver.dial(bob, port: 5000) }
        let accepted = try await within(10, "accept") { try await listener.accept() }
        XCTAssertEqual(accepted.remote, alice)

        try await within(10, "alice writes") { try await dialed.write(Array("to bob".utf8)) }
        let atBob = try await within(10, "bob reads") { try await Self.read(6, from: accepted) }
        XCTAssertEqual(String(decoding: atBob, as: UTF8.self), "to bob")
        try await within(10, "bob writes") { try await accepted.write(Array("to alice".utf8)) }
        let atAlice = try await within(10, "alice reads") { try await Self.read(8, from: dialed) }
        XCTAssertEqual(String(decoding: atAlice, as: UTF8.self), "to alice")

        // alice closes: bob reads the end, and can no longer write.
        try await within(10, "alice closes") { try await dialed.close() }
        let end = try await within(10, "bob reads the end") { try await accepted.read() }
        XCTAssertNil(end)
        do {
            try await accepted.write([1])
            XCTFail("a write after the remote closed went through")
        } catch {
            XCTAssertEqual(error, .streamClosed(connection: accepted.connection))
        }
        try await within(10, "bob closes") { try await accepted.close() }

        // An accept whose task is cancelled ends at once, and the listener goes on.
        let waiting = Task { try await listener.accept() }
        waiting.cancel()
        do {
            _ = try await within(10, "the cancelled accept") { try await waiting.value }
            XCTFail("a cancelled accept returned a stream")
        } catch {
            XCTAssertEqual(error as? PilotDriverError, .cancelled)
        }

        // Closing the listener frees the port: another connection binds it.
        try await within(10, "unbind") { try await listener.close() }
        let other = try PilotDriver(socketPath: socket("bob"))
        defer { other.close() }
        let again = try await within(10, "listen again") { try await other.listen(port: 5000) }
        try await within(10, "unbind again") { try await again.close() }
    }

    func testADatagramArrivesInTheDatagramsOfItsDestinationWithItsSource() async throws {
        let (alice, bob) = try aliceAndBob()
        let aliceDriver = try PilotDriver(socketPath: socket("alice"))
        let bobDriver = try PilotDriver(socketPath: socket("bob"))
        defer { aliceDriver.close(); bobDriver.close() }
        // pilot-host pushes datagrams to a driver connection from its first request on (the
        // driver sends one as it opens); once info is answered, that one has been served.
        _ = try await within(10, "bob's info") { try await bobDriver.info() }

        try await within(10, "send the datagram") {
            try await aliceDriver.sendDatagram(to: bob, port: 6000, data: Array("datagram!".utf8))
        }
        let datagram = try await within(10, "bob's datagram") { () -> PilotDatagram? in
            var datagrams = bobDriver.datagrams.makeAsyncIterator()
            return await datagrams.next()
        }
        XCTAssertEqual(datagram?.source, alice)
        XCTAssertEqual(datagram?.destinationPort, 6000)
        XCTAssertEqual(datagram.map { String(decoding: $0.data, as: UTF8.self) }, "datagram!")
    }

    func testDialingANodeThatDoesNotExistThrowsTheDaemonsMessage() async throws {
        _ = try startHost(identities: ["alice"])
        let driver = try PilotDriver(socketPath: socket("alice"))
        defer { driver.close() }
        let nowhere = Address(node: 0x00AB_CDEF)
        do {
            _ = try await within(20, "dial nowhere") { try await driver.dial(nowhere, port: 7) }
            XCTFail("a dial to a node that does not exist succeeded")
        } catch let error as PilotDriverError {
            guard case .refused(.dial, let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.hasPrefix("dial: "), message)
            XCTAssertTrue(message.contains(nowhere.description), message)
        }
        // The refusal answered the dial only: the connection goes on.
        let info = try await within(10, "info after the refusal") { try await driver.info() }
        XCTAssertEqual(info["name"], "alice")
    }

    func testAStreamReadTooSlowlyIsClosedAtItsBoundAfterWhatWasBuffered() async throws {
        let (_, bob) = try aliceAndBob()
        let driver = try PilotDriver(socketPath: socket("alice"))
        defer { driver.close() }
        let stream = try await within(20, "dial") { try await driver.dial(bob, port: 7) }
        // More than the bound comes back from the echo port, and nothing reads it.
        let payload = [UInt8](repeating: 0x61, count: PilotDriver.streamBufferLimit + (2 << 20))
        let writer = Task { try? await stream.write(payload) }
        // The overflow closes the stream at the daemon: it leaves the connection's count.
        var closed = false
        for _ in 0..<200 where !closed {
            try await Task.sleep(for: .milliseconds(100))
            closed = try await within(10, "info") { try await driver.info() }["connections"]?.integerValue == 0
        }
        XCTAssertTrue(closed, "the stream was not closed at its bound")
        _ = try await within(20, "the writer") { await writer.value }

        let buffered = try await within(10, "the buffered bytes") { try await stream.read() }
        XCTAssertLessThanOrEqual(buffered?.count ?? 0, PilotDriver.streamBufferLimit)
        // The push that did not fit carried at most what one frame carries.
        XCTAssertGreaterThan(buffered?.count ?? 0, PilotDriver.streamBufferLimit - DriverFrame.maxPayloadSize)
        let overflow = PilotDriverError.streamOverflow(connection: stream.connection, limit: PilotDriver.streamBufferLimit)
        do {
            _ = try await within(10, "the read after them") { try await stream.read() }
            XCTFail("the read after the buffered bytes did not fail")
        } catch {
            XCTAssertEqual(error as? PilotDriverError, overflow)
        }
        do {
            try await stream.write([1])
            XCTFail("a write on an overflowed stream went through")
        } catch {
            XCTAssertEqual(error, overflow)
        }
    }

    /// The example program, as its README section runs it: `echo` against bob's echo port, and
    /// `serve` as bob with `echo` to its port.
    func testTheExampleEchoesALineThroughBobsEchoPortAndThroughItsOwnServer() throws {
        let (_, bob) = try aliceAndBob()
        let example = bin.appendingPathComponent("pilot-example").path
        let echoed = ChildProcess.run(example, ["--socket", socket("alice"), "echo", bob.description], timeout: 30)
        XCTAssertEqual(echoed.status, 0, echoed.output)
        XCTAssertEqual(echoed.stdout, "hello from pilot-example\n", echoed.output)

        _ = try start("example-serve", "pilot-example", ["--socket", socket("bob"), "serve", "5000"], ready: "echoing every stream to port 5000")
        let served = ChildProcess.run(example, ["--socket", socket("alice"), "echo", bob.description, "5000"], timeout: 30)
        XCTAssertEqual(served.status, 0, served.output)
        XCTAssertEqual(served.stdout, "hello from pilot-example\n", served.output)
    }

    // MARK: Helpers

    /// Reads from `stream` until `count` bytes came, or its end.
    private static func read(_ count: Int, from stream: PilotStream) async throws -> [UInt8] {
        var received: [UInt8] = []
        while received.count < count, let bytes = try await stream.read() { received += bytes }
        return received
    }
}

/// `operation`'s result, or an error once `seconds` have passed; the operation is then
/// cancelled, and the driver's waits end at once when their task is.
private func within<Value: Sendable>(
    _ seconds: Double, _ what: String, _ operation: @escaping @Sendable () async throws -> Value
) async throws -> Value {
    try await withThrowingTaskGroup(of: Value?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw HostTestError("\(what): nothing within \(seconds) s")
        }
        return value
    }
}
