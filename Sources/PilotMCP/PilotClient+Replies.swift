import PilotClient
import PilotWire

extension PilotClient {
    /// Sends `text` to `agent` and waits up to `seconds` for its reply, as
    /// `pilotctl send-message AGENT --data TEXT --wait` does; returns the reply's data, whole.
    /// No reply in time is the host's `timeout` failure.
    func ask(_ agent: String, _ text: String, waitingSeconds seconds: Int) async throws -> String {
        let sent = try await send(MessageControl.SendMessage(target: agent, data: text, wait: seconds * 1000))
        guard let reply = sent.reply else { throw ControlFailure(.timeout, "no reply from \(agent) within \(seconds) s") }
        return try await data(of: reply)
    }

    /// `sent` with its reply's data whole (a reply too large for a listing is read in pieces).
    func wholeReply(of sent: MessageSent) async throws -> MessageSent {
        guard var reply = sent.reply, reply.truncated else { return sent }
        let bytes = try await contents(of: reply)
        reply.truncated = false
        if let text = String(validating: bytes, as: UTF8.self) { reply.text = text } else { reply.base64 = Base64.encode(bytes) }
        var whole = sent
        whole.reply = reply
        return whole
    }

    /// A message's data: its text, or its bytes in base64 when they are not UTF-8.
    func data(of message: InboxListing.Message) async throws -> String {
        let bytes = try await contents(of: message)
        return String(validating: bytes, as: UTF8.self) ?? Base64.encode(bytes)
    }
}
