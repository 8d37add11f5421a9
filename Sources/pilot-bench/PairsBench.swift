import Foundation
import PilotClient
import PilotWire

/// Many identity pairs on two pilot-host processes on loopback (one pilot-rendezvous), all at
/// once: a sender on host A and an auto-approving receiver on host B per pair. First every
/// sender asks its receiver for trust (all handshakes in flight together), then every sender
/// sends `messages` messages to its receiver, all pairs together. Prints the time to mutual
/// trust for all, the messages per second, and the per-message latency (request to ACK, as
/// `pilotctl send-message` sees it).
struct PairsBench {
    let pairs: Int
    let messages: Int
    /// Client threads driving the pairs (each pair's requests are sequential).
    let lanes = 64

    func run() {
        do { try measure() } catch {
            print("pilot-bench pairs: \(error)")
            exit(1)
        }
    }

    private func measure() throws {
        // All the pairs are driven by this one process, hence one uid: `lanes` sender connections
        // at once on host A, beside the admin connection, and a closed connection is only counted
        // out once the host's event loop has seen it close, which under this load can take as
        // long as a request (twice the lanes was seen to run out, 3 runs in 5). The hosts'
        // default of 64 control connections per user is a tenant's share, so these hosts are
        // given sixteen times the lanes.
        let overlay = try TwoHosts(
            name: "pairs", ports: [37200, 37201], extra: ["--log-level", "error", "--control-connections-per-user", "\(16 * lanes)"])
        defer { overlay.stop() }
        let work = overlay.work
        let adminA = try ControlConnection(path: work.path + "/run0/admin.sock")
        let adminB = try ControlConnection(path: work.path + "/run1/admin.sock")
        var receivers: [UInt32] = []
        for index in 0..<pairs {
            do {
                _ = try adminA.send(AdminControl.CreateIdentity(identity: "s\(index)", owner: "0"))
                let receiver = try adminB.send(AdminControl.CreateIdentity(identity: "r\(index)", owner: "0", isPublic: true, autoApprove: true))
                receivers.append(receiver.nodeID)
            } catch { throw BenchError("cannot create pair \(index): \(error)") }
        }
        let rss = residentKiB(overlay.hostPID(1))

        // Every pair at once, each lane driving its share of the pairs.
        let senders = work.path + "/run0/id"
        func allPairs(_ body: @escaping @Sendable (Int, ControlConnection) throws -> [Double]) throws -> (seconds: Double, samples: [Double]) {
            let results = ResultsBox()
            let started = Date()
            let group = DispatchGroup()
            for lane in 0..<lanes {
                group.enter()
                Thread { [pairs, lanes] in
                    defer { group.leave() }
                    for index in stride(from: lane, to: pairs, by: lanes) {
                        do {
                            let sender = try ControlConnection(path: senders + "/s\(index).sock")
                            results.add(try body(index, sender))
                        } catch { results.fail("pair \(index): \(error)") }
                    }
                }.start()
            }
            group.wait()
            if let failure = results.failure { throw BenchError(failure) }
            return (Date().timeIntervalSince(started), results.samples.sorted())
        }

        let receiverIDs = receivers
        let trust = try allPairs { index, sender in
            let started = Date()
            do {
                _ = try sender.send(TrustControl.Handshake(peer: "\(receiverIDs[index])", reason: "bench"))
            } catch let failure as ControlFailure { throw BenchError("handshake refused: \(failure)") }
            while true {
                if try sender.send(TrustControl.Trusted()).trusted.count == 1 { break }
                guard Date().timeIntervalSince(started) < 60 else { throw BenchError("no trust after 60 s") }
                Thread.sleep(forTimeInterval: 0.005)
            }
            return [Date().timeIntervalSince(started) * 1000]
        }
        print(String(
            format: "%d pairs on two pilot-hosts, all handshaking at once: all trusted in %.2f s (per pair p50 %.1f ms, p99 %.1f ms); receiving host RSS %d KiB",
            pairs, trust.seconds, trust.samples[trust.samples.count / 2], trust.samples[trust.samples.count * 99 / 100], rss))

        let messages = self.messages
        let exchange = try allPairs { index, sender in
            try (0..<messages).map { sequence in
                let started = Date()
                let message = MessageControl.SendMessage(target: "\(receiverIDs[index])", data: "message \(sequence) of pair \(index)")
                let sent: MessageSent
                do { sent = try sender.send(message) } catch let failure as ControlFailure { throw BenchError("send-message: \(failure)") }
                guard sent.ack.hasPrefix("ACK TEXT") else { throw BenchError("send-message: \(sent.json.encodedString())") }
                return Date().timeIntervalSince(started) * 1000
            }
        }
        let total = pairs * messages
        print(String(
            format: "then %d messages (%d per pair, all pairs at once) in %.2f s: %.0f messages/s, each p50 %.2f ms, p99 %.2f ms (request to ACK)",
            total, messages, exchange.seconds, Double(total) / exchange.seconds, exchange.samples[exchange.samples.count / 2],
            exchange.samples[exchange.samples.count * 99 / 100]))
        // Every message is in its receiver's inbox.
        var stored = 0
        for index in 0..<pairs {
            stored += try ControlConnection(path: work.path + "/run1/id/r\(index).sock").send(MessageControl.Inbox()).messages.count
        }
        print("inboxes hold \(stored) of \(total) messages")
    }
}

/// Samples and the first failure from the client threads.
private final class ResultsBox: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var collected: [Double] = []
    private var firstFailure: String?

    func add(_ samples: [Double]) { lock.withLock { collected += samples } }
    func fail(_ message: String) { lock.withLock { if firstFailure == nil { firstFailure = message } } }
    var samples: [Double] { lock.withLock { collected } }
    var failure: String? { lock.withLock { firstFailure } }
}
