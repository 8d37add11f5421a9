import Foundation
import Logging
import NIOConcurrencyHelpers
import PilotCrypto
import PilotNet
import PilotServices
import PilotWire

/// The directory approves every handshake, as the official one does: a request that arrives on
/// its port 444 (signed by its sender, who the tunnel authenticated) is answered with an accept
/// there, and one relayed through the registry is answered through the registry. Either way the
/// registry records the trust. It keeps no trust table: it answers everyone anyway; approving
/// lets an asker whose daemon gates by trust take the answers it sends back.
final class DirectoryHandshakes: Sendable {
    let transport: HandshakeTransport
    private let node: InProcessNode
    private let registry: Registry
    private let logger: Logger
    /// When each peer was last answered: at most one answer per peer per `answerInterval`.
    private let answered = NIOLockedValueBox<[UInt32: Double]>([:])
    static let answerInterval = 2.0
    /// How old (or how far ahead) a request's timestamp may be.
    static let maxSkew = 300.0

    init(node: InProcessNode, registry: Registry, logger: Logger) {
        transport = HandshakeTransport(logger: logger)
        self.node = node
        self.registry = registry
        self.logger = logger
    }

    /// Answers the requests that arrive on port 444 until cancelled.
    func approveArrivals() async {
        await withTaskCancellationHandler {
            for await arrival in transport.arrivals {
                guard let request = try? HandshakeMessage(decoding: arrival.bytes), request.kind == .request, request.node == arrival.node,
                    abs(Date().timeIntervalSince1970 - Double(request.timestamp)) <= Self.maxSkew, isSigned(request), mayAnswer(request.node)
                else { continue }
                await accept(request.node)
            }
        } onCancel: { [transport] in transport.finish() }
    }

    /// Answers, every `interval`, the requests the registry relayed, until cancelled.
    func approveRelayed(every interval: Duration) async {
        while !Task.isCancelled {
            let reply = registry.handle(signed("poll_handshakes", "poll_handshakes:\(node.node)", [:]), peerIP: "127.0.0.1")
            for request in reply["requests"]?.arrayValue ?? [] {
                guard let id = request["from_node_id"]?.integerValue, let peer = UInt32(exactly: id), peer != node.node else { continue }
                let answer = registry.handle(
                    signed("respond_handshake", "respond:\(node.node):\(peer)", ["peer_id": .integer(Int64(peer)), "accept": true]),
                    peerIP: "127.0.0.1")
                if answer.type == "error" { logger.info("directory: relayed handshake not answered", metadata: ["PILOT_PEER": "\(peer)", "reply": "\(answer.json.encodedString())"]) }
                report(peer)
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// An accept to `peer`'s port 444, and the trust reported to the registry.
    private func accept(_ peer: UInt32) async {
        var message = HandshakeMessage(kind: .accept, node: node.node, publicKey: node.key.publicKey.base64, timestamp: Int64(Date().timeIntervalSince1970))
        message.signature = Base64.encode(node.key.sign(Array(message.signedText(receiver: peer).utf8)))
        report(peer)
        do {
            try await transport.send(message, from: "directory", to: peer) { [node] in
                try await node.fabric.dial(from: node.node, to: Address(node: peer), port: HandshakeTransport.port)
            }
            logger.info("directory: handshake approved", metadata: ["PILOT_PEER": "\(peer)"])
        } catch {
            logger.info("directory: handshake accept not sent", metadata: ["PILOT_PEER": "\(peer)", "error": "\(error)"])
        }
    }

    private func report(_ peer: UInt32) {
        _ = registry.handle(signed("report_trust", "report_trust:\(node.node):\(peer)", ["peer_id": .integer(Int64(peer))]), peerIP: "127.0.0.1")
    }

    /// The request's signature, by the key it carries (which must be the registry's for that
    /// node) or, when it carries none, by the registry's key for the node.
    private func isSigned(_ request: HandshakeMessage) -> Bool {
        guard let known = registry.signingKey(of: request.node) else { return false }
        if !request.publicKey.isEmpty {
            guard let carried = try? Ed25519PublicKey(base64: request.publicKey), carried.bytes == known.bytes else { return false }
        }
        guard let signature = try? Base64.decode(request.signature) else { return false }
        return known.isValidSignature(signature, for: Array(request.signedText(receiver: node.node).utf8))
    }

    /// Whether `peer` may be answered now (once per `answerInterval`); forgets old entries.
    private func mayAnswer(_ peer: UInt32) -> Bool {
        let now = ProcessInfo.processInfo.systemUptime
        return answered.withLockedValue { answered in
            if answered.count > 4096 { answered = answered.filter { now - $0.value < Self.answerInterval } }
            if let last = answered[peer], now - last < Self.answerInterval { return false }
            answered[peer] = now
            return true
        }
    }

    private func signed(_ type: String, _ challenge: String, _ fields: [String: JSON]) -> RegistryMessage {
        var all = fields
        all["node_id"] = .integer(Int64(node.node))
        return InProcessNode.signed(node.key, type, challenge, all)
    }
}
