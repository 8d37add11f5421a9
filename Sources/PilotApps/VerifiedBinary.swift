import CLinux
import Glibc
import PilotCrypto
import PilotWire

/// An app's binary, copied out of the store into a sealed memfd and hashed there: the bytes
/// hashed are the bytes executed (`execveat` of this descriptor), whatever happens to the store
/// file afterwards, renamed over or rewritten in place.
///
/// The store file is opened beneath the bundle's directory with `openat2` and
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: no link anywhere on the path,
/// no way out of the bundle.
public final class VerifiedBinary: Sendable {
    /// The sealed memfd (close-on-exec; the spawn puts a copy at a fixed number).
    public let descriptor: Int32
    public let sha256: String
    /// The interpreter of a script (`#!/usr/bin/python3` → `/usr/bin/python3`; for
    /// `#!/usr/bin/env NAME`, `/usr/bin/env` then NAME in /usr/bin); empty for an ELF binary.
    public let interpreters: [String]

    private init(descriptor: Int32, sha256: String, interpreters: [String]) {
        self.descriptor = descriptor
        self.sha256 = sha256
        self.interpreters = interpreters
    }

    deinit { close(descriptor) }

    // <linux/openat2.h> and <linux/memfd.h>, <fcntl.h> (F_ADD_SEALS, F_SEAL_*).
    private static let resolveNoMagicLinks: UInt64 = 0x02
    private static let resolveNoSymlinks: UInt64 = 0x04
    private static let resolveBeneath: UInt64 = 0x08
    private static let memfdCloseOnExec: UInt32 = 0x1
    private static let memfdAllowSealing: UInt32 = 0x2
    private static let addSeals: Int32 = 1033
    private static let seals: Int32 = 0x1 | 0x2 | 0x4 | 0x8  // seal, shrink, grow, write

    /// Copies `relativePath` beneath `storeDirectory` into a sealed memfd and checks its hash.
    public static func open(storeDirectory: String, relativePath: String, expectedSHA256: String, maxBytes: Int) throws(SandboxError) -> VerifiedBinary {
        let directory = Glibc.open(storeDirectory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard directory >= 0 else { throw .badBinary(path: storeDirectory, reason: "the bundle directory: \(String(cString: strerror(errno)))") }
        defer { close(directory) }
        // O_NONBLOCK: a FIFO (or a device) planted at the path must not block the open; it is
        // refused below as not a regular file. On a regular file the flag changes nothing.
        var source = pilot_openat2(
            directory, relativePath, UInt64(O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK), resolveBeneath | resolveNoSymlinks | resolveNoMagicLinks)
        if source < 0, errno == ENOSYS {
            // No openat2 (a kernel before 5.6, or a seccomp filter that does not know it): the
            // same walk by hand, one component at a time, never following a link.
            source = try openBeneath(directory, relativePath)
        }
        guard source >= 0 else {
            let reason = errno == ELOOP ? "a link on its path (refused)" : errno == EXDEV ? "outside the bundle" : String(cString: strerror(errno))
            throw .badBinary(path: relativePath, reason: reason)
        }
        defer { close(source) }
        var status = stat()
        guard fstat(source, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else {
            throw .badBinary(path: relativePath, reason: "not a regular file")
        }
        guard Int(status.st_size) <= maxBytes else { throw .badBinary(path: relativePath, reason: "larger than \(maxBytes) bytes") }
        let memfd = memfd_create("pilot-app", memfdCloseOnExec | memfdAllowSealing)
        guard memfd >= 0 else { throw .system(step: "memfd_create", errno: errno) }
        do throws(SandboxError) {
            try copy(from: source, to: memfd, limit: maxBytes, path: relativePath)
            guard fcntl(memfd, addSeals, seals) == 0 else { throw .system(step: "sealing the binary's copy", errno: errno) }
            // Hashed after sealing: nothing can change these bytes any more.
            let (actual, head) = try hash(memfd)
            guard actual == expectedSHA256.lowercased() else { throw .hashMismatch(path: relativePath, expected: expectedSHA256, actual: actual) }
            return VerifiedBinary(descriptor: memfd, sha256: actual, interpreters: interpreters(head))
        } catch {
            close(memfd)
            throw error
        }
    }

    /// Opens `path` beneath `directory` component by component with `O_NOFOLLOW`: no link is
    /// followed and no `.`/`..` accepted, so the file is inside the directory.
    private static func openBeneath(_ directory: Int32, _ path: String) throws(SandboxError) -> Int32 {
        let components = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !path.hasPrefix("/"), !components.isEmpty, components.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
            throw .badBinary(path: path, reason: "outside the bundle")
        }
        var current = directory
        for (index, component) in components.enumerated() {
            let last = index == components.count - 1
            let next = openat(current, component, (last ? O_RDONLY | O_NONBLOCK : O_RDONLY | O_DIRECTORY) | O_NOFOLLOW | O_CLOEXEC)
            let code = errno
            if current != directory { close(current) }
            guard next >= 0 else {
                errno = code
                return -1
            }
            current = next
        }
        return current
    }

    private static func copy(from source: Int32, to target: Int32, limit: Int, path: String) throws(SandboxError) {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var total = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw .system(step: "reading \(path)", errno: errno) }
            if count == 0 { return }
            total += count
            guard total <= limit else { throw .badBinary(path: path, reason: "larger than \(limit) bytes") }
            var done = 0
            while done < count {
                let written = buffer.withUnsafeBytes { write(target, $0.baseAddress.map { $0 + done }, count - done) }
                guard written > 0 else { throw .system(step: "copying \(path)", errno: errno) }
                done += written
            }
        }
    }

    /// The SHA-256 of the descriptor's contents, and its first line (for `#!`).
    private static func hash(_ descriptor: Int32) throws(SandboxError) -> (String, [UInt8]) {
        var hasher = SHA256Hasher()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var offset = 0
        var head: [UInt8] = []
        while true {
            let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, off_t(offset)) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw .system(step: "hashing the binary", errno: errno) }
            if count == 0 { break }
            if offset == 0 { head = Array(buffer[..<min(count, 256)]) }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            offset += count
        }
        return (Hex.lowercase(hasher.finalize()), head)
    }

    private static func interpreters(_ head: [UInt8]) -> [String] {
        guard head.starts(with: Array("#!".utf8)) else { return [] }
        let line = head.dropFirst(2).prefix { $0 != UInt8(ascii: "\n") }
        let words = String(decoding: line, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let interpreter = words.first, interpreter.hasPrefix("/") else { return [] }
        if interpreter.hasSuffix("/env"), words.count > 1 {
            let name = words[1].hasPrefix("-") ? (words.count > 2 ? words[2] : "") : words[1]
            return name.isEmpty || name.contains("/") ? [interpreter] : [interpreter, "/usr/bin/" + name]
        }
        return [interpreter]
    }
}
