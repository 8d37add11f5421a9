/// Why an app was not started. Each case names the file or the step.
public enum SandboxError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The binary is missing, a link, not a regular file, outside the bundle, or too large.
    case badBinary(path: String, reason: String)
    /// The binary's bytes are not the ones the manifest pins.
    case hashMismatch(path: String, expected: String, actual: String)
    /// A system call failed while preparing or starting the sandbox.
    case system(step: String, errno: Int32)

    public var description: String {
        switch self {
        case let .badBinary(path, reason): "binary \(path): \(reason)"
        case let .hashMismatch(path, expected, actual): "binary \(path) has sha256 \(actual), the manifest pins \(expected)"
        case let .system(step, code): "\(step): \(String(cString: strerror(code)))"
        }
    }
}

import Glibc
