import CSodium

/// SHA-256 over bytes given in pieces (libsodium's incremental API): bundles and binaries too
/// large to hash in one buffer.
public struct SHA256Hasher: ~Copyable {
    private var state = crypto_hash_sha256_state()

    public init() { _ = crypto_hash_sha256_init(&state) }

    /// Adds `bytes`.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        _ = crypto_hash_sha256_update(&state, base.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    /// The digest of everything added: 32 bytes.
    public consuming func finalize() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        _ = crypto_hash_sha256_final(&state, &digest)
        return digest
    }
}
