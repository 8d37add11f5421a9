import CLinux
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Sends datagrams on a UDP socket with `sendmmsg`, itself, beside the NIO channel that reads
/// it.
///
/// NIO closes a datagram channel on any write error but EMSGSIZE and EHOSTUNREACH: one peer
/// whose endpoint has no route (ENETUNREACH), an address of the other family (EAFNOSUPPORT), a
/// firewall rule (EPERM) would take the shared socket, and every identity on it, down. Here each
/// failed datagram is counted and skipped, and the socket serves on. A full send buffer (EAGAIN)
/// is reported back, so the caller can queue what is left behind NIO's writability handling.
///
/// Not thread-safe: used on the fabric's event loop only.
final class DatagramSender {
    /// What one `send` did.
    struct Outcome {
        var sent = 0
        /// Datagrams the kernel refused, by errno (each skipped).
        var failed: [(errno: Int32, endpoint: SocketAddress)] = []
        /// From this index on nothing was sent: the send buffer is full.
        var blockedFrom: Int?
    }

    private let descriptor: Int32
    private static let batch = 64
    private static let slot = 2048
    private let scratch = UnsafeMutableRawPointer.allocate(byteCount: batch * slot, alignment: 16)
    private let headers = UnsafeMutablePointer<pilot_mmsghdr>.allocate(capacity: batch)
    private let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: batch)
    private let addresses = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: batch)

    init(descriptor: Int32) { self.descriptor = descriptor }

    deinit {
        scratch.deallocate()
        headers.deallocate()
        vectors.deallocate()
        addresses.deallocate()
    }

    /// Sends `datagrams` in order, up to 64 per system call.
    func send(_ datagrams: [(bytes: [UInt8], endpoint: SocketAddress)]) -> Outcome {
        var outcome = Outcome()
        var start = 0
        while start < datagrams.count {
            let chunk = datagrams[start..<min(start + Self.batch, datagrams.count)]
            var count = 0
            // Datagrams that cannot be put in a message (too big for a slot, an unknown address
            // family) fail on their own, as the kernel would fail them.
            var prepared: [Int] = []
            for index in chunk.indices {
                let (bytes, endpoint) = datagrams[index]
                guard bytes.count <= Self.slot, let length = Self.write(endpoint, into: addresses + count) else {
                    outcome.failed.append((bytes.count > Self.slot ? EMSGSIZE : EAFNOSUPPORT, endpoint))
                    continue
                }
                let buffer = scratch + count * Self.slot
                bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
                vectors[count] = iovec(iov_base: buffer, iov_len: bytes.count)
                headers[count] = pilot_mmsghdr(
                    msg_hdr: msghdr(
                        msg_name: UnsafeMutableRawPointer(addresses + count), msg_namelen: length, msg_iov: vectors + count,
                        msg_iovlen: 1, msg_control: nil, msg_controllen: 0, msg_flags: 0),
                    msg_len: 0)
                prepared.append(index)
                count += 1
            }
            var done = 0
            while done < count {
                let result = pilot_sendmmsg(descriptor, headers + done, UInt32(count - done), 0)
                if result > 0 {
                    outcome.sent += Int(result)
                    done += Int(result)
                    continue
                }
                let error = errno
                if error == EINTR { continue }
                if error == EAGAIN || error == EWOULDBLOCK {
                    outcome.blockedFrom = prepared[done]
                    return outcome
                }
                // The first message of the rest failed: skip it, send on.
                outcome.failed.append((error, datagrams[prepared[done]].endpoint))
                done += 1
            }
            start += chunk.count
        }
        return outcome
    }

    /// Writes `endpoint` as a sockaddr into `storage`; its length, or nil for a family that is
    /// neither IPv4 nor IPv6.
    private static func write(_ endpoint: SocketAddress, into storage: UnsafeMutablePointer<sockaddr_storage>) -> socklen_t? {
        switch endpoint {
        case .v4(let v4):
            UnsafeMutableRawPointer(storage).assumingMemoryBound(to: sockaddr_in.self).pointee = v4.address
            return socklen_t(MemoryLayout<sockaddr_in>.size)
        case .v6(let v6):
            UnsafeMutableRawPointer(storage).assumingMemoryBound(to: sockaddr_in6.self).pointee = v6.address
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        default:
            return nil
        }
    }
}
