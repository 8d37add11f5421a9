import CLinux
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Sends datagrams on UDP sockets with `sendmmsg`, itself, beside the NIO channels that read
/// them. One per fabric: its buffers serve every socket of the fabric's event loop.
///
/// NIO closes a datagram channel on any write error but EMSGSIZE and EHOSTUNREACH: one peer
/// whose endpoint has no route (ENETUNREACH), an address of the other family (EAFNOSUPPORT), a
/// firewall rule (EPERM) would take the shared socket, and every identity on it, down. Here each
/// failed datagram is counted and skipped, and the socket serves on. A full send buffer (EAGAIN)
/// is reported back, so the caller can keep the rest for later.
///
/// Runs of datagrams of one size to one endpoint (a stream's segments) go as one message with
/// UDP generic segmentation offload (`UDP_SEGMENT`): the kernel cuts them into the same
/// datagrams, paying its per-datagram routing and bookkeeping once per run. A kernel that
/// refuses it is not asked again.
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

    /// Messages per sendmmsg, and bytes they may hold in all.
    private static let batch = 64
    private static let arenaSize = 256 << 10
    /// A datagram's largest size here, and what one segmented message may carry (the kernel's
    /// limits: 64 segments, one IP packet's 65,507 bytes of UDP payload).
    private static let largestDatagram = 65_507
    private static let segmentsPerMessage = 64
    /// Only datagrams this short are run together: segments must fit the path's MTU (1,500
    /// bytes less 28 of headers on Ethernet, with room for tunnels); a stream's are 1,222.
    private static let largestSegment = 1400
    private static let udpSegment: Int32 = 103  // UDP_SEGMENT, <linux/udp.h>
    /// CMSG_SPACE(sizeof(uint16_t)) on 64-bit Linux: a 16-byte cmsghdr, 2 bytes, padding to 8.
    private static let controlSpace = 24
    private let arena = UnsafeMutableRawPointer.allocate(byteCount: arenaSize, alignment: 16)
    private let headers = UnsafeMutablePointer<pilot_mmsghdr>.allocate(capacity: batch)
    private let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: batch)
    private let addresses = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: batch)
    private let controls = UnsafeMutableRawPointer.allocate(byteCount: batch * controlSpace, alignment: 8)
    /// Whether the kernel takes UDP_SEGMENT: asked once (a kernel before 4.18 would ignore the
    /// control message and send a run as one oversized datagram, so it must not be tried
    /// blind), and forgotten if a send says it is not supported after all.
    private(set) var segments: Bool?

    init() {}

    deinit {
        arena.deallocate()
        headers.deallocate()
        vectors.deallocate()
        addresses.deallocate()
        controls.deallocate()
    }

    /// Sends `datagrams` in order on the socket `descriptor`.
    func send(_ datagrams: [(bytes: [UInt8], endpoint: SocketAddress)], on descriptor: Int32) -> Outcome {
        if segments == nil {
            var size: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            segments = getsockopt(descriptor, Int32(IPPROTO_UDP), Self.udpSegment, &size, &length) == 0
        }
        var outcome = Outcome()
        var next = 0
        // Datagrams before this index go one per message (their run failed as a whole once).
        var alone = 0
        while next < datagrams.count {
            // Fill one sendmmsg: each message a datagram, or a run of them segmented.
            var firsts: [Int] = []
            var counts: [Int] = []
            var used = 0
            while next < datagrams.count, firsts.count < Self.batch {
                let (bytes, endpoint) = datagrams[next]
                let message = firsts.count
                guard bytes.count <= Self.largestDatagram else {
                    outcome.failed.append((EMSGSIZE, endpoint))
                    next += 1
                    continue
                }
                let length = Self.write(endpoint, into: addresses + message)
                guard used + bytes.count <= Self.arenaSize else { break }
                let start = arena + used
                var size = copy(bytes, to: start)
                var count = 1
                next += 1
                if segments == true, next > alone, bytes.count <= Self.largestSegment {
                    while next < datagrams.count, count < Self.segmentsPerMessage, datagrams[next].endpoint == endpoint {
                        let following = datagrams[next].bytes
                        guard following.count <= bytes.count, size + following.count <= Self.largestDatagram,
                            used + size + following.count <= Self.arenaSize
                        else { break }
                        size += copy(following, to: start + size)
                        count += 1
                        next += 1
                        if following.count < bytes.count { break }  // only the last may be shorter
                    }
                }
                vectors[message] = iovec(iov_base: start, iov_len: size)
                var control: UnsafeMutableRawPointer?
                if count > 1 {
                    control = controls + message * Self.controlSpace
                    Self.writeSegmentSize(UInt16(bytes.count), into: control!)
                }
                headers[message] = pilot_mmsghdr(
                    msg_hdr: msghdr(
                        msg_name: UnsafeMutableRawPointer(addresses + message), msg_namelen: length, msg_iov: vectors + message,
                        msg_iovlen: 1, msg_control: control, msg_controllen: control == nil ? 0 : Self.controlSpace, msg_flags: 0),
                    msg_len: 0)
                firsts.append(next - count)
                counts.append(count)
                used += size
            }
            var done = 0
            while done < firsts.count {
                let result = pilot_sendmmsg(descriptor, headers + done, UInt32(firsts.count - done), 0)
                if result > 0 {
                    for message in done..<done + Int(result) { outcome.sent += counts[message] }
                    done += Int(result)
                    continue
                }
                let error = errno
                if error == EINTR { continue }
                if error == EAGAIN || error == EWOULDBLOCK {
                    outcome.blockedFrom = firsts[done]
                    return outcome
                }
                if counts[done] > 1 {
                    // A run failed: its datagrams again one by one, so that each fails (or not)
                    // on its own (EINVAL: the segments do not fit this route's MTU); if the
                    // kernel says segmentation is not supported, never ask again.
                    if error == ENOPROTOOPT || error == EOPNOTSUPP { segments = false }
                    next = firsts[done]
                    alone = firsts[done] + counts[done]
                    break
                }
                // The first message of the rest failed: skip its datagrams, send on.
                for index in firsts[done]..<firsts[done] + counts[done] { outcome.failed.append((error, datagrams[index].endpoint)) }
                done += 1
            }
        }
        return outcome
    }

    private func copy(_ bytes: [UInt8], to destination: UnsafeMutableRawPointer) -> Int {
        bytes.withUnsafeBytes { if let base = $0.baseAddress { destination.copyMemory(from: base, byteCount: $0.count) } }
        return bytes.count
    }

    /// A cmsghdr (length u64, level i32, type i32) for UDP_SEGMENT with `size`.
    private static func writeSegmentSize(_ size: UInt16, into control: UnsafeMutableRawPointer) {
        control.storeBytes(of: 18, as: UInt.self)  // CMSG_LEN(2)
        control.storeBytes(of: Int32(IPPROTO_UDP), toByteOffset: 8, as: Int32.self)  // SOL_UDP
        control.storeBytes(of: udpSegment, toByteOffset: 12, as: Int32.self)
        control.storeBytes(of: size, toByteOffset: 16, as: UInt16.self)
    }

    /// Writes `endpoint` as a sockaddr into `storage`; its length. (A family the socket does
    /// not take is refused by the kernel, and counted as any refusal.)
    private static func write(_ endpoint: SocketAddress, into storage: UnsafeMutablePointer<sockaddr_storage>) -> socklen_t {
        endpoint.withSockAddr { address, length in
            UnsafeMutableRawPointer(storage).copyMemory(from: address, byteCount: length)
            return socklen_t(length)
        }
    }
}
