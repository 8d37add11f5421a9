// pilot-example: the Swift SDK's streams in a few lines, on an identity socket of pilot-host.
//
//   pilot-example --socket /run/pilot-host/id/alice.sock echo 0:0000.0000.0005     # bob's echo port, 7
//   pilot-example --socket /run/pilot-host/id/bob.sock serve 5000                  # echo every stream
//   pilot-example --socket /run/pilot-host/id/alice.sock echo 0:0000.0000.0005 5000
//
// Without --socket, $PILOT_SOCKET names the socket, as for pilotctl.

import Foundation
import PilotClient
import PilotWire

/// Dials `port` of `address`, writes one line, and prints what comes back.
func echo(_ driver: PilotDriver, to address: Address, port: UInt16) async throws {
    let stream = try await driver.dial(address, port: port)
    let line = Array("hello from pilot-example\n".utf8)
    try await stream.write(line)
    var echoed: [UInt8] = []
    while echoed.count < line.count, let bytes = try await stream.read() {
        echoed += bytes
    }
    FileHandle.standardOutput.write(Data(echoed))
    try await stream.close()
}

/// Accepts the streams dialed to `port`, each writing back what it reads until the other end
/// closes it; runs until the process is stopped.
func serve(_ driver: PilotDriver, port: UInt16) async throws {
    let listener = try await driver.listen(port: port)
    say("echoing every stream to port \(port)")
    while true {
        let stream = try await listener.accept()
        say("stream from \(stream.remote) port \(stream.remotePort)")
        Task {
            do {
                while let bytes = try await stream.read() { try await stream.write(bytes) }
                try await stream.close()
            } catch {
                say("stream from \(stream.remote): \(error)")
            }
        }
    }
}

/// Prints `line` at once, also when standard output is a pipe (`print` would hold it back).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Prints `message` to standard error and exits with `status`.
func fail(_ message: String, status: Int32) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(status)
}

var arguments = Array(CommandLine.arguments.dropFirst())
var socketPath = ProcessInfo.processInfo.environment["PILOT_SOCKET"]
if let flag = arguments.firstIndex(of: "--socket"), flag + 1 < arguments.count {
    socketPath = arguments[flag + 1]
    arguments.removeSubrange(flag...flag + 1)
}
let usage = "usage: pilot-example --socket PATH echo ADDRESS [PORT] | serve PORT"
guard let socketPath, let command = arguments.first else { fail(usage, status: 2) }

do {
    let driver = try PilotDriver(socketPath: socketPath)
    switch (command, arguments.count) {
    case ("echo", 2), ("echo", 3):
        guard let address = Address(arguments[1]) else { fail("not an address (N:NNNN.HHHH.LLLL): \(arguments[1])", status: 2) }
        guard let port = arguments.count == 3 ? UInt16(arguments[2]) : 7 else { fail("not a port: \(arguments[2])", status: 2) }
        try await echo(driver, to: address, port: port)
    case ("serve", 2):
        guard let port = UInt16(arguments[1]) else { fail("not a port: \(arguments[1])", status: 2) }
        try await serve(driver, port: port)
    default:
        fail(usage, status: 2)
    }
    driver.close()
} catch {
    fail("pilot-example: \(error)", status: 1)
}
