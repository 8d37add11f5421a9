import CSodium

/// Secret key material in one heap buffer that is zeroed when the last reference goes away.
///
/// A final class so the bytes are never copied by value; read them only inside `withUnsafeBytes`.
public final class SecretBytes: @unchecked Sendable {
    // @unchecked: the buffer is written once in init and only read afterwards.
    private let storage: UnsafeMutableRawBufferPointer

    /// The number of bytes held.
    public var count: Int { storage.count }

    /// Takes a copy of `bytes`; the caller should zero its own copy if it has one.
    public init(copying bytes: [UInt8]) {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0)
        bytes.withUnsafeBytes { storage.copyMemory(from: $0) }
        self.storage = storage
        trimmedCount = bytes.count
    }

    /// Fills the buffer by calling `fill` with a zeroed buffer of `count` bytes.
    public init<E: Error>(count: Int, _ fill: (UnsafeMutableRawBufferPointer) throws(E) -> Void) throws(E) {
        storage = .allocate(byteCount: max(count, 1), alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0)
        trimmedCount = count
        // On a throw the fully initialised object is released and deinit zeroes the buffer.
        try fill(UnsafeMutableRawBufferPointer(rebasing: storage[0..<count]))
    }

    private let trimmedCount: Int

    deinit {
        Sodium.zero(storage.baseAddress.unsafelyAssumingNonNil, count: storage.count)
        storage.deallocate()
    }

    /// Calls `body` with the bytes; the pointer must not escape it.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(rebasing: storage[0..<trimmedCount]))
    }

    /// A copy as an array: for tests and for sealing at rest; avoid elsewhere.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// Constant-time comparison.
    public func isEqual(to other: SecretBytes) -> Bool {
        withUnsafeBytes { left in
            other.withUnsafeBytes { right in
                left.count == right.count
                    && (left.count == 0 || sodium_memcmp(left.baseAddress, right.baseAddress, left.count) == 0)
            }
        }
    }
}
