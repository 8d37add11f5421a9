import Glibc

/// A secret (an admin token, a network's join token) kept only as its SHA-256 and checked in
/// constant time. Comparing digests, always 32 bytes, hides even the secret's length.
public struct SecretDigest: Sendable, Equatable {
    /// The digest's bytes.
    public let bytes: [UInt8]

    /// The digest of `secret`.
    public init(of secret: String) { bytes = Sodium.sha256(Array(secret.utf8)) }

    /// A digest as stored.
    public init(stored bytes: [UInt8]) { self.bytes = bytes }

    /// Whether `candidate` is the secret.
    public func matches(_ candidate: String) -> Bool {
        Sodium.constantTimeEqual(Sodium.sha256(Array(candidate.utf8)), bytes)
    }
}

/// A file whose first line is a token: the rendezvous's `--admin-token-file` and the host's
/// `admin-token-file`.
public enum TokenFile {
    /// Why a token file could not be read.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        /// The file could not be read (`errno`).
        case unreadable(errno: Int32)
        /// The file's first line is empty: no token.
        case emptyFirstLine
        /// The file is over 64 KiB.
        case tooLong

        /// What is wrong with the file.
        public var description: String {
            switch self {
            case .unreadable(let code): "cannot be read (\(String(cString: strerror(code))))"
            case .emptyFirstLine: "its first line is empty"
            case .tooLong: "is longer than 64 KiB, not a token file"
            }
        }
    }

    /// The file's first line, without surrounding white space; the rest of the file is ignored.
    public static func read(_ path: String) throws(Failure) -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .unreadable(errno: errno) }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count <= 65536 {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 { throw .unreadable(errno: errno) }
            if count == 0 { break }
            bytes += chunk.prefix(count)
        }
        defer { Sodium.zero(&bytes) }
        guard bytes.count <= 65536 else { throw .tooLong }
        let line = bytes.prefix { $0 != UInt8(ascii: "\n") }
        let token = String(decoding: line, as: UTF8.self).trimmingWhiteSpace
        guard !token.isEmpty else { throw .emptyFirstLine }
        return token
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and carriage returns.
    fileprivate var trimmingWhiteSpace: String {
        let blank: Set<Character> = [" ", "\t", "\r"]
        return String(drop { blank.contains($0) }.reversed().drop { blank.contains($0) }.reversed())
    }
}
