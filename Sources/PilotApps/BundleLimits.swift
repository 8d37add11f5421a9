/// How much a bundle may hold. `BundleStore` refuses the whole bundle when one is passed.
public struct BundleLimits: Hashable, Sendable {
    /// Bytes of the compressed bundle, the file hashed and read into memory (the official store's limit).
    public var compressed = 128 << 20
    /// Bytes of one unpacked file (the official store's limit).
    public var perFile = 64 << 20
    /// Bytes of every unpacked file together.
    public var total = 512 << 20
    /// Tar entries of any kind, the bundle's own `./` included.
    public var entries = 20_000
    /// Bytes of an entry's path.
    public var pathLength = 1024
    /// Components of an entry's path.
    public var depth = 32

    /// The default limits.
    public init() {}
}
