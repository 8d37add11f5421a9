import FoundationEssentials
import PilotWire

/// Files on their way from pilotctl to the network. A control frame holds at most 1 MiB, so
/// pilotctl (which reads the file with its user's rights, not the host's) sends it in chunks;
/// they are put together here, per identity, until `send-file` takes them.
///
/// Bounded so that no tenant can hold up another's: one file at most `maxFile` bytes (16 MiB less
/// 257), four at once per identity, `perUser` bytes declared by one local user (the caller, by
/// uid) and `maxTotal` by all. An upload is dropped when no byte has been added to it for `idle`
/// (a chunk that adds nothing does not keep it), when its identity is deleted or changes owner.
actor Uploads {
    /// A file and its name fit one FILE frame any daemon takes.
    static let maxFile = DataExchangeFrame.maxSentPayload - 2 - DataExchangeFrame.maxFileName
    static let maxTotal = 256 << 20
    /// Three files of the largest size, with room to spare.
    static let perUser = 64 << 20
    static let perIdentity = 4
    /// How long an upload may go without a byte added.
    let idle: Duration

    private struct Upload {
        var bytes: [UInt8]
        let size: Int
        let user: UInt32
        var progressed: ContinuousClock.Instant
    }

    private struct Key: Hashable {
        let identity: String
        let id: String
    }

    private var uploads: [Key: Upload] = [:]
    private var total = 0
    private var byUser: [UInt32: Int] = [:]

    init(idle: Duration = .seconds(60)) {
        self.idle = idle
    }

    /// Adds `chunk` at `offset` to upload `id` of `identity` (created by its first chunk, at
    /// offset 0, with its final `size`, charged to `user`); returns the bytes held so far.
    func append(identity: String, user: UInt32, id: String, size: Int, offset: Int, chunk: [UInt8]) throws(ControlFailure) -> Int {
        expire()
        guard (1...64).contains(id.utf8.count), id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw ControlFailure(.invalidArgument, "upload: id must be 1 to 64 letters, digits or '-'")
        }
        let key = Key(identity: identity, id: id)
        if uploads[key] == nil {
            guard offset == 0 else { throw ControlFailure(.invalidArgument, "upload: unknown upload \(id) (expired?); start at offset 0") }
            guard (0...Self.maxFile).contains(size) else {
                throw ControlFailure(.invalidArgument, "upload: a file may have at most \(Self.maxFile) bytes, not \(size)")
            }
            guard uploads.keys.filter({ $0.identity == identity }).count < Self.perIdentity else {
                throw ControlFailure(.unavailable, "upload: \(Self.perIdentity) uploads are already open for \(identity)")
            }
            let mine = byUser[user, default: 0]
            guard mine + size <= Self.perUser else {
                throw ControlFailure(.unavailable, "upload: uid \(user) has \(mine) bytes of uploads open (at most \(Self.perUser)); finish those first")
            }
            guard total + size <= Self.maxTotal else { throw ControlFailure(.unavailable, "upload: the host holds \(total) bytes of uploads; try again") }
            uploads[key] = Upload(bytes: [], size: size, user: user, progressed: .now)
            total += size
            byUser[user] = mine + size
        }
        // Only counts are read here: a copy of the upload would make the append below copy
        // every byte held so far, for each chunk.
        let (expected, held) = (uploads[key]?.size ?? 0, uploads[key]?.bytes.count ?? 0)
        guard expected == size, offset == held, held + chunk.count <= size else {
            throw ControlFailure(.invalidArgument, "upload: chunk at \(offset) of \(chunk.count) bytes does not follow \(held) of \(expected)")
        }
        if !chunk.isEmpty {
            uploads[key]?.bytes.append(contentsOf: chunk)
            uploads[key]?.progressed = .now
        }
        return held + chunk.count
    }

    /// Takes a complete upload away.
    func take(identity: String, id: String) throws(ControlFailure) -> [UInt8] {
        let key = Key(identity: identity, id: id)
        guard let upload = uploads[key] else { throw ControlFailure(.notFound, "upload: no upload \(id.prefix(64))") }
        guard upload.bytes.count == upload.size else {
            throw ControlFailure(.invalidArgument, "upload: \(id) has \(upload.bytes.count) of \(upload.size) bytes")
        }
        remove(key)
        return upload.bytes
    }

    /// Drops every upload of `identity` (deleted, or given to another owner).
    func drop(identity: String) {
        for key in uploads.keys where key.identity == identity { remove(key) }
    }

    /// Bytes declared by open uploads: in all, and by `user`.
    func held(by user: UInt32? = nil) -> Int { user.map { byUser[$0, default: 0] } ?? total }

    private func expire() {
        let now = ContinuousClock.now
        for (key, upload) in uploads where now - upload.progressed > idle { remove(key) }
    }

    private func remove(_ key: Key) {
        guard let upload = uploads.removeValue(forKey: key) else { return }
        total -= upload.size
        let left = byUser[upload.user, default: 0] - upload.size
        byUser[upload.user] = left > 0 ? left : nil
    }
}
