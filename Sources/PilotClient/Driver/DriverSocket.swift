import Dispatch
import Foundation
import Glibc
import PilotWire
import Synchronization

/// The Unix socket under a `PilotDriver`: frames are written on one serial queue, in the order
/// they were handed over, and read on a thread of its own, so that neither a daemon that reads
/// slowly nor one that is silent holds a thread of Swift's cooperative pool.
///
/// The descriptor is closed once, on the write queue, after the reading thread has stopped,
/// and never shut down after that: no call can then reach a number the kernel has given to
/// another file.
final class DriverSocket: Sendable {
    private let descriptor: Int32
    private let writes = DispatchQueue(label: "pilot-driver.write")
    /// Whether `descriptor` is still this socket's; set false, under the mutex, as it is closed.
    private let isOpen = Mutex(true)

    /// The socket connected to `path`.
    init(path: String) throws(PilotDriverError) {
        do {
            descriptor = try connectUnixSocket(to: path)
        } catch {
            throw .cannotConnect(path: path, reason: "\(error.reason)\(error.hint)")
        }
    }

    /// Writes `bytes`, after everything handed over before them, and then calls `done` with
    /// nil, or with the reason they could not be written. A failed write shuts the connection
    /// down, so that the reading thread ends it for everyone.
    func write(_ bytes: [UInt8], done: (@Sendable (String?) -> Void)? = nil) {
        writes.async { [self] in
            // Only this queue closes the descriptor, so it stays open while the write runs.
            let outcome = isOpen.withLock { $0 } ? writeAll(bytes) : "the socket is closed"
            if outcome != nil { shutDown() }
            done?(outcome)
        }
    }

    /// Ends the connection both ways: a read under way returns at once, writes fail.
    func shutDown() {
        isOpen.withLock { isOpen in
            if isOpen { _ = Glibc.shutdown(descriptor, Int32(SHUT_RDWR)) }
        }
    }

    /// Starts the thread that reads frames and hands each to `frame`, in order, until the
    /// connection ends or `frame` returns false; then `ended` is called with the reason, and
    /// the descriptor is closed.
    func startReading(frame: @escaping @Sendable (DriverFrame) -> Bool, ended: @escaping @Sendable (String) -> Void) {
        let thread = Thread { [self] in
            let reason = readFrames(frame)
            ended(reason)
            writes.async { [self] in
                isOpen.withLock { isOpen in
                    isOpen = false
                    close(descriptor)
                }
            }
        }
        thread.name = "pilot-driver.read"
        thread.start()
    }

    // MARK: Reading and writing

    /// Reads until the end of the connection, and returns why it ended.
    private func readFrames(_ frame: @Sendable (DriverFrame) -> Bool) -> String {
        var decoder = DriverFrameDecoder()
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count == 0 { return "the daemon closed the connection" }
            if count < 0 {
                if errno == EINTR { continue }
                return "read: \(String(cString: strerror(errno)))"
            }
            decoder.append(buffer[0..<count])
            do {
                while let next = try decoder.next() {
                    guard frame(next) else { return "closed by this side" }
                }
            } catch {
                return "the daemon sent what is not a driver frame: \(error)"
            }
        }
    }

    /// Sends every byte, and returns nil or the reason it could not.
    private func writeAll(_ bytes: [UInt8]) -> String? {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count < 0 {
                if errno == EINTR { continue }
                return "write: \(String(cString: strerror(errno)))"
            }
            sent += count
        }
        return nil
    }
}
