import Foundation

/// A client of a control socket written in Python, so tests speak to the server exactly as a
/// foreign process would: it sends bytes, reads length-prefixed replies, and reports how the
/// connection ended.
public enum ControlProbe {
    /// What one probe saw.
    public struct Outcome: CustomStringConvertible, Sendable {
        /// Each reply frame's body, as text; a driver-protocol frame (one not starting with `{`)
        /// as "DRIVER <command in hex> <message>".
        public var replies: [String]
        /// "CLOSED" (the server closed), "OPEN" (still open a second after the last reply),
        /// "MORE" (unexpected bytes), or what went wrong.
        public var end: String
        public var description: String { "replies \(replies), end \(end)" }
    }

    /// Connects to `path` (as uid/gid 65534 with `asNobody`), sends `payload` (a Python bytes
    /// expression; `frame(text)` makes a length-prefixed frame), shuts the write side with
    /// `halfClose`, and reads up to `replies` frames.
    public static func run(_ path: String, _ payload: String, replies: Int, halfClose: Bool = false, asNobody: Bool = false) -> Outcome {
        let script = """
            import socket, struct
            def frame(text):
                data = text.encode() if isinstance(text, str) else text
                return struct.pack('>I', len(data)) + data
            s = socket.socket(socket.AF_UNIX); s.connect(\(path.debugDescription))
            s.sendall(\(payload))
            \(halfClose ? "s.shutdown(socket.SHUT_WR)" : "")
            s.settimeout(5)
            buf, got = b'', 0
            while got < \(replies):
                try:
                    chunk = s.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    break
                if not chunk: break
                buf += chunk
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack('>I', buf[:4])[0]:
                    n = struct.unpack('>I', buf[:4])[0]; body = buf[4:4+n]; buf = buf[4+n:]; got += 1
                    if body[:1] == b'{': print(body.decode(), flush=True)
                    else: print('DRIVER %02x %s' % (body[0], body[3:].decode(errors='replace').replace('\\n', ' ')), flush=True)
            s.settimeout(1)
            try:
                print('END ' + ('CLOSED' if not s.recv(65536) else 'MORE'), flush=True)
            except socket.timeout:
                print('END OPEN', flush=True)
            except ConnectionResetError:
                print('END CLOSED', flush=True)
            """
        var arguments = ["/usr/bin/python3", "-c", script]
        if asNobody { arguments = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + arguments }
        let result = ChildProcess.run(arguments[0], Array(arguments.dropFirst()), timeout: 20)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let end = lines.last { $0.hasPrefix("END ") }.map { String($0.dropFirst(4)) } ?? "no end: \(result.output)"
        return Outcome(replies: lines.filter { !$0.hasPrefix("END ") }, end: end)
    }

    /// A payload of one frame per request body.
    public static func frames(_ bodies: [String]) -> String {
        bodies.isEmpty ? "b''" : bodies.map { "frame(\($0.debugDescription))" }.joined(separator: " + ")
    }
}
