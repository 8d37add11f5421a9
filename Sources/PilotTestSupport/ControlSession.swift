public import Foundation

/// One control connection kept open across a test, from another process (Python, run as `user`
/// through setpriv when given): the test sends a request, the server's reply comes back, and the
/// connection stays open in between, as an agent's would while an admin changes its identity.
public final class ControlSession: @unchecked Sendable {
    // @unchecked: `lines` is guarded by `lock`; the process and pipes are fixed at init.
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let lock = NSCondition()
    private var lines: [String] = []
    private var ended = false

    /// What became of a request.
    public enum Outcome: Equatable, CustomStringConvertible, Sendable {
        /// The reply frame's body.
        case reply(String)
        /// The server closed the connection (before or instead of replying).
        case closed
        /// Nothing within the time given.
        case timedOut

        public var description: String {
            switch self {
            case .reply(let body): "reply \(body)"
            case .closed: "closed"
            case .timedOut: "timed out"
            }
        }

        /// The reply's `status` is "ok".
        public var isOK: Bool { if case .reply(let body) = self { body.contains(#""status":"ok""#) } else { false } }
    }

    /// Connects to `path` as `user` (nil: as this process's user); throws when it cannot.
    public init(path: String, user: String? = nil, timeout: TimeInterval = 10) throws {
        let script = """
            import socket, struct, sys
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(\(path.debugDescription))
            except OSError as error:
                print('REFUSED ' + str(error), flush=True); sys.exit(0)
            print('CONNECTED', flush=True)
            def exactly(n):
                data = b''
                while len(data) < n:
                    chunk = s.recv(n - len(data))
                    if not chunk: return None
                    data += chunk
                return data
            for line in sys.stdin:
                body = line.rstrip('\\n').encode()
                try:
                    s.sendall(struct.pack('>I', len(body)) + body)
                    head = exactly(4)
                    reply = exactly(struct.unpack('>I', head)[0]) if head else None
                    print('CLOSED' if reply is None else 'REPLY ' + reply.decode(), flush=True)
                except OSError:
                    print('CLOSED', flush=True)
            """
        var arguments = ["/usr/bin/python3", "-u", "-c", script]
        if let user { arguments = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--init-groups"] + arguments }
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let handle = output.fileHandleForReading
        Thread.detachNewThread { [self] in
            var pending = Data()
            while true {
                let data = handle.availableData
                lock.lock()
                if data.isEmpty {
                    ended = true
                    lock.broadcast()
                    lock.unlock()
                    return
                }
                pending.append(data)
                while let newline = pending.firstIndex(of: 0x0A) {
                    lines.append(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                    pending = Data(pending[pending.index(after: newline)...])
                }
                lock.broadcast()
                lock.unlock()
            }
        }
        guard let first = nextLine(timeout: timeout), first == "CONNECTED" else {
            stop()
            throw SocketError(description: "cannot open a control session on \(path)")
        }
    }

    deinit { stop() }

    /// Sends one request (a JSON text) and waits up to `timeout` for what becomes of it.
    public func request(_ body: String, timeout: TimeInterval = 10) -> Outcome {
        guard process.isRunning, let data = (body + "\n").data(using: .utf8) else { return .closed }
        input.fileHandleForWriting.write(data)
        guard let line = nextLine(timeout: timeout) else { return .timedOut }
        return line.hasPrefix("REPLY ") ? .reply(String(line.dropFirst(6))) : .closed
    }

    /// `{"command": command, "args": {}}`.
    public func request(command: String, timeout: TimeInterval = 10) -> Outcome {
        request(#"{"command":"\#(command)","args":{}}"#, timeout: timeout)
    }

    /// Ends the client: its input closes (it leaves its loop and exits), then SIGKILL if it is
    /// still there a second later.
    public func stop() {
        guard process.isRunning else { return }
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(1)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        while process.isRunning { usleep(10_000) }
    }

    private func nextLine(timeout: TimeInterval) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock()
        defer { lock.unlock() }
        while lines.isEmpty {
            if ended || !lock.wait(until: deadline) { return lines.isEmpty ? nil : lines.removeFirst() }
        }
        return lines.removeFirst()
    }
}
