// An example app for pilot-host's app store: a notebook. It keeps notes in its state directory
// ($APP/notes.jsonl) and exposes notes.help, notes.add, notes.list and notes.clear.
//
// An app is a program the host starts with the official argv (--addr --db --socket --identity
// --manifest --cap-state); it serves its socket, one request per connection: a 4-byte
// big-endian length, then a JSON envelope {type, req_id, method, payload}; it answers with
// {type: "reply", req_id, payload} or {type: "err", req_id, error}.
import Glibc
import PilotAppStore
import PilotWire

/// A line on standard error.
func complain(_ text: String) {
    let bytes = Array((text + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// The value after `flag` on the command line.
func argument(_ flag: String) -> String? {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

guard let socketPath = argument("--socket") else {
    complain("usage: pilot-app-notes --socket PATH [--addr ADDR] [--db PATH] ...")
    exit(2)
}
let address = argument("--addr") ?? "unknown"
let directory = String(socketPath[..<(socketPath.lastIndex(of: "/") ?? socketPath.startIndex)])
let notesPath = (directory.isEmpty ? "." : directory) + "/notes.jsonl"

// MARK: The notebook

func readNotes() -> [JSON] {
    guard let file = fopen(notesPath, "r") else { return [] }
    defer { fclose(file) }
    var notes: [JSON] = []
    var line: UnsafeMutablePointer<CChar>?
    var capacity = 0
    while getline(&line, &capacity, file) > 0, let line {
        if let note = try? JSON(parsing: String(cString: line)) { notes.append(note) }
    }
    free(line)
    return notes
}

func append(_ note: JSON) -> Bool {
    let descriptor = open(notesPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
    guard descriptor >= 0 else { return false }
    defer { close(descriptor) }
    let bytes = note.encoded() + [UInt8(ascii: "\n")]
    return bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) } == bytes.count && fsync(descriptor) == 0
}

let help: JSON = [
    "app": "dev.pilot-host.notes", "version": "1.0.0",
    "description": "A notebook kept in the app's own state: add notes, list them, clear them.",
    "duration_classes": ["fast": "under 10 ms, local file"],
    "methods": [
        ["method": "notes.help", "kind": "meta", "summary": "This description.", "params": [:], "duration": "fast"],
        ["method": "notes.add", "kind": "utility", "summary": "Keep a note.", "params": ["text": "string (required)"], "duration": "fast"],
        ["method": "notes.list", "kind": "utility", "summary": "The notes, oldest first.", "params": ["limit": "integer"], "duration": "fast"],
        ["method": "notes.clear", "kind": "utility", "summary": "Forget every note.", "params": [:], "duration": "fast"],
    ],
]

/// The reply to one request: a payload, or an error text.
func answer(_ request: AppEnvelope) -> Result<JSON, AppStoreError> {
    switch request.method {
    case "notes.help":
        return .success(help)
    case "notes.add":
        guard let text = request.payload?["text"]?.stringValue, !text.isEmpty, text.utf8.count <= 4096 else {
            return .failure(.badFrame(reason: "notes.add needs {\"text\": \"...\"} of 1 to 4096 bytes"))
        }
        let note: JSON = ["text": .string(text), "at": .integer(Int64(time(nil))), "node": .string(address)]
        guard append(note) else { return .failure(.badFrame(reason: "cannot write \(notesPath): \(String(cString: strerror(errno)))")) }
        return .success(["added": note, "count": .integer(Int64(readNotes().count))])
    case "notes.list":
        let notes = readNotes()
        let limit = request.payload?["limit"]?.integerValue.map(Int.init) ?? notes.count
        return .success(["notes": .array(Array(notes.suffix(max(0, limit)))), "count": .integer(Int64(notes.count))])
    case "notes.clear":
        let count = readNotes().count
        unlink(notesPath)
        return .success(["cleared": .integer(Int64(count))])
    default:
        return .failure(.badFrame(reason: "method not found: \(request.method)"))
    }
}

// MARK: The socket

func readFully(_ descriptor: Int32, _ count: Int) -> [UInt8]? {
    var bytes = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let got = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress.map { $0 + done }, count - done) }
        if got < 0, errno == EINTR { continue }
        guard got > 0 else { return nil }
        done += got
    }
    return bytes
}

func serve(_ connection: Int32) {
    defer { close(connection) }
    guard let prefix = readFully(connection, 4), let length = try? AppEnvelope.bodyLength(prefix: prefix),
        let body = readFully(connection, length), let request = try? AppEnvelope(decoding: body)
    else { return }
    var reply = AppEnvelope(kind: .reply, requestID: request.requestID)
    switch answer(request) {
    case .success(let payload): reply.payload = payload
    case .failure(let error):
        reply.kind = .error
        if case .badFrame(let reason) = error { reply.error = reason } else { reply.error = "\(error)" }
    }
    guard let frame = try? reply.frame() else { return }
    _ = frame.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
}

unlink(socketPath)
let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
var socketAddress = sockaddr_un()
socketAddress.sun_family = sa_family_t(AF_UNIX)
let pathBytes = Array(socketPath.utf8)
guard listener >= 0, pathBytes.count < MemoryLayout.size(ofValue: socketAddress.sun_path) else {
    complain("cannot make a socket at \(socketPath)")
    exit(1)
}
withUnsafeMutableBytes(of: &socketAddress.sun_path) { $0.copyBytes(from: pathBytes) }
let bound = withUnsafePointer(to: &socketAddress) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
}
guard bound == 0, listen(listener, 16) == 0 else {
    complain("cannot listen on \(socketPath): \(String(cString: strerror(errno)))")
    exit(1)
}
complain("notes app for \(address) serving \(socketPath)")
while true {
    let connection = accept(listener, nil, nil)
    if connection >= 0 { serve(connection) }
}
