import CSodium
import Glibc

/// The AES-256-GCM cipher of one tunnel session, as Pilot Protocol 1.18 uses it.
///
/// - Nonce: this side's 4-byte random prefix (drawn per session: it names the epoch) followed by
///   a big-endian 64-bit counter that starts at 1 and never wraps.
/// - Additional data: the sender's node id, 4 bytes big-endian — seal with your own id, open with
///   the id the frame names.
/// - The key schedule is expanded once (`crypto_aead_aes256gcm_beforenm`) into a 16-byte-aligned
///   state; seal and open then cost no allocation when given output buffers.
///
/// Not thread-safe: a session belongs to the one event loop that carries its tunnel.
public final class TunnelCipher {
    /// The GCM tag's size, at the end of every sealed packet.
    public static let tagSize = Int(crypto_aead_aes256gcm_ABYTES)
    /// The nonce's size: 4-byte prefix and 8-byte counter.
    public static let nonceSize = Int(crypto_aead_aes256gcm_NPUBBYTES)

    private let state: UnsafeMutableRawPointer
    private let stateSize: Int
    /// This side's nonce prefix for the session.
    public let noncePrefix: UInt32
    /// The counter of the last sealed frame; 0 before the first.
    public private(set) var sentCounter: UInt64 = 0

    /// A session under `key` (32 bytes). Throws `aesGCMUnavailable` on a CPU without AES-NI.
    public init(key: SecretBytes, noncePrefix: UInt32 = Sodium.randomUInt32()) throws(CryptoError) {
        try Sodium.ensureInitialised()
        guard Sodium.isAESGCMAvailable else { throw .aesGCMUnavailable }
        guard key.count == Int(crypto_aead_aes256gcm_KEYBYTES) else {
            throw .invalidLength(what: "tunnel key", expected: Int(crypto_aead_aes256gcm_KEYBYTES), actual: key.count)
        }
        stateSize = crypto_aead_aes256gcm_statebytes()
        var pointer: UnsafeMutableRawPointer?
        guard posix_memalign(&pointer, 16, stateSize) == 0, let pointer else {
            throw .bufferTooSmall(needed: stateSize, available: 0)
        }
        state = pointer
        key.withUnsafeBytes { keyBytes in
            _ = crypto_aead_aes256gcm_beforenm(
                pointer.assumingMemoryBound(to: crypto_aead_aes256gcm_state.self),
                keyBytes.bindMemory(to: UInt8.self).baseAddress.unsafelyAssumingNonNil)
        }
        self.noncePrefix = noncePrefix
    }

    deinit {
        Sodium.zero(state, count: stateSize)
        free(state)
    }

    /// Seals `plaintext` from `sender` into `output` (at least `plaintext.count + tagSize` bytes).
    /// Returns the counter used and the number of bytes written (ciphertext ‖ tag).
    public func seal(
        _ plaintext: UnsafeRawBufferPointer, sender: UInt32, into output: UnsafeMutableRawBufferPointer
    ) throws(CryptoError) -> (counter: UInt64, count: Int) {
        let needed = plaintext.count + Self.tagSize
        guard output.count >= needed, let out = output.baseAddress else {
            throw .bufferTooSmall(needed: needed, available: output.count)
        }
        guard sentCounter < UInt64.max else { throw .nonceExhausted }
        sentCounter += 1
        var written: UInt64 = 0
        var empty: UInt8 = 0
        let message = plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self)
        Self.withNonceAndAAD(prefix: noncePrefix, counter: sentCounter, sender: sender) { nonce, aad in
            withUnsafeMutablePointer(to: &empty) { placeholder in
                _ = crypto_aead_aes256gcm_encrypt_afternm(
                    out.assumingMemoryBound(to: UInt8.self), &written,
                    message ?? UnsafePointer(placeholder), UInt64(plaintext.count),
                    aad, 4, nil, nonce,
                    state.assumingMemoryBound(to: crypto_aead_aes256gcm_state.self))
            }
        }
        return (sentCounter, Int(written))
    }

    /// Opens `sealed` (ciphertext ‖ tag) named by `prefix`/`counter` and claimed to come from
    /// `sender`, into `output` (at least `sealed.count - tagSize` bytes). Returns the plaintext
    /// length. Authentication comes first: a forged frame changes nothing.
    public func open(
        _ sealed: UnsafeRawBufferPointer, prefix: UInt32, counter: UInt64, sender: UInt32,
        into output: UnsafeMutableRawBufferPointer
    ) throws(CryptoError) -> Int {
        guard sealed.count >= Self.tagSize, let input = sealed.baseAddress else { throw .authenticationFailed }
        let needed = sealed.count - Self.tagSize
        guard output.count >= needed else { throw .bufferTooSmall(needed: needed, available: output.count) }
        var written: UInt64 = 0
        var scratch: UInt8 = 0
        let status = Self.withNonceAndAAD(prefix: prefix, counter: counter, sender: sender) { nonce, aad in
            withUnsafeMutablePointer(to: &scratch) { placeholder in
                crypto_aead_aes256gcm_decrypt_afternm(
                    output.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? placeholder, &written, nil,
                    input.assumingMemoryBound(to: UInt8.self), UInt64(sealed.count),
                    aad, 4, nonce,
                    state.assumingMemoryBound(to: crypto_aead_aes256gcm_state.self))
            }
        }
        guard status == 0 else { throw .authenticationFailed }
        return Int(written)
    }

    /// Convenience: seals into a new array; returns the counter and ciphertext ‖ tag.
    public func seal(_ plaintext: [UInt8], sender: UInt32) throws(CryptoError) -> (counter: UInt64, sealed: [UInt8]) {
        var output = [UInt8](repeating: 0, count: plaintext.count + Self.tagSize)
        let result = plaintext.withUnsafeBytes { input in
            output.withUnsafeMutableBytes { out in
                Result { () throws(CryptoError) in try seal(input, sender: sender, into: out) }
            }
        }
        return (try result.get().counter, output)
    }

    /// Convenience: opens into a new array (decrypted straight into its storage: one
    /// allocation per packet).
    public func open(_ sealed: some Collection<UInt8>, prefix: UInt32, counter: UInt64, sender: UInt32) throws(CryptoError) -> [UInt8] {
        var failure: CryptoError?
        let output = [UInt8](unsafeUninitializedCapacity: max(0, sealed.count - Self.tagSize)) { buffer, initialized in
            func openInto(_ input: UnsafeRawBufferPointer) -> Int {
                do {
                    return try open(input, prefix: prefix, counter: counter, sender: sender, into: UnsafeMutableRawBufferPointer(buffer))
                } catch {
                    failure = error
                    return 0
                }
            }
            // Contiguous input (an array or a slice of one, as frames are) is read in place.
            initialized = sealed.withContiguousStorageIfAvailable { openInto(UnsafeRawBufferPointer($0)) }
                ?? Array(sealed).withUnsafeBytes { openInto($0) }
        }
        if let failure { throw failure }
        return output
    }

    /// Calls `body` with the 12-byte nonce (prefix then counter, big-endian) and the 4-byte AAD
    /// (sender id, big-endian) laid out in stack memory: no allocation per packet.
    private static func withNonceAndAAD<R>(
        prefix: UInt32, counter: UInt64, sender: UInt32,
        _ body: (UnsafePointer<UInt8>, UnsafePointer<UInt8>) -> R
    ) -> R {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 16) { buffer in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw.storeBytes(of: prefix.bigEndian, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: counter.bigEndian, toByteOffset: 4, as: UInt64.self)
            raw.storeBytes(of: sender.bigEndian, toByteOffset: 12, as: UInt32.self)
            let base = UnsafePointer(buffer.baseAddress.unsafelyAssumingNonNil)
            return body(base, base + 12)
        }
    }
}
