import CSodium
import Foundation
import PilotCrypto
import PilotWire

/// Tunnel crypto figures: seal+open of 1400-byte packets through `TunnelCipher`, beside the same
/// libsodium calls made directly in the same run, so the wrapper's cost shows; then key agreement
/// and Ed25519.
struct CryptoBench {
    let seconds: Double
    let packetSize = 1400

    func run() {
        do {
            try Sodium.ensureInitialised()
            guard Sodium.isAESGCMAvailable else { throw CryptoError.aesGCMUnavailable }
            print("pilot-bench crypto: \(packetSize)-byte packets, \(seconds) s per figure, 1 thread")
            print(row("what", "ops/s", "GB/s (payload)"))
            let sealOpen = try measureTunnelCipher()
            print(row("TunnelCipher seal+open", format(sealOpen), gigabytes(sealOpen)))
            let raw = measureRawLibsodium()
            print(row("raw libsodium seal+open", format(raw), gigabytes(raw)))
            print("  wrapper cost: \(String(format: "%.1f", (1 - sealOpen / raw) * 100))% of raw")
            let frame = try measureFrameDecodeAndOpen()
            print(row("PILS decode+open+packet", format(frame), gigabytes(frame)))
            let crc = measureCRC32()
            print(row("packet CRC32", format(crc), gigabytes(crc)))
            print(row("X25519 + HKDF tunnel key", format(try measureKeyAgreement()), "-"))
            let (sign, verify) = try measureEd25519()
            print(row("Ed25519 sign", format(sign), "-"))
            print(row("Ed25519 verify", format(verify), "-"))
        } catch {
            print("pilot-bench crypto: \(error)")
            exit(1)
        }
    }

    private func row(_ a: String, _ b: String, _ c: String) -> String {
        a.padding(toLength: 28, withPad: " ", startingAt: 0) + b.padding(toLength: 14, withPad: " ", startingAt: 0) + c
    }

    private func format(_ rate: Double) -> String { String(format: "%.0f", rate) }

    private func gigabytes(_ rate: Double) -> String { String(format: "%.2f", rate * Double(packetSize) / 1e9) }

    /// Operations per second of `body`, which performs `batch` operations per call.
    private func measure(batch: Int, _ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        let deadline = start + UInt64(seconds * 1e9)
        var operations = 0
        var now = start
        while now < deadline {
            try body()
            operations += batch
            now = DispatchTime.now().uptimeNanoseconds
        }
        return Double(operations) / (Double(now - start) / 1e9)
    }

    private func measureTunnelCipher() throws -> Double {
        let key = SecretBytes(copying: Sodium.randomBytes(32))
        let sender = try TunnelCipher(key: key)
        let receiver = try TunnelCipher(key: key)
        let plaintext = Sodium.randomBytes(packetSize)
        var sealed = [UInt8](repeating: 0, count: packetSize + TunnelCipher.tagSize)
        var opened = [UInt8](repeating: 0, count: packetSize)
        return try measure(batch: 256) {
            try plaintext.withUnsafeBytes { input in
                try sealed.withUnsafeMutableBytes { box in
                    try opened.withUnsafeMutableBytes { output in
                        for _ in 0..<256 {
                            let (counter, count) = try sender.seal(input, sender: 7, into: box)
                            _ = try receiver.open(
                                UnsafeRawBufferPointer(rebasing: box[0..<count]), prefix: sender.noncePrefix,
                                counter: counter, sender: 7, into: output)
                        }
                    }
                }
            }
        }
    }

    private func measureRawLibsodium() -> Double {
        let key = Sodium.randomBytes(32)
        let stateSize = crypto_aead_aes256gcm_statebytes()
        var pointer: UnsafeMutableRawPointer?
        guard posix_memalign(&pointer, 16, stateSize) == 0, let pointer else { return 0 }
        defer { free(pointer) }
        let state = pointer.assumingMemoryBound(to: crypto_aead_aes256gcm_state.self)
        _ = crypto_aead_aes256gcm_beforenm(state, key)
        let plaintext = Sodium.randomBytes(packetSize)
        var sealed = [UInt8](repeating: 0, count: packetSize + 16)
        var opened = [UInt8](repeating: 0, count: packetSize)
        var nonce = [UInt8](repeating: 0, count: 12)
        let aad: [UInt8] = [0, 0, 0, 7]
        var counter: UInt64 = 0
        return measure(batch: 256) {
            for _ in 0..<256 {
                counter += 1
                withUnsafeBytes(of: counter.bigEndian) { nonce.replaceSubrange(4..<12, with: $0) }
                var length: UInt64 = 0
                _ = crypto_aead_aes256gcm_encrypt_afternm(
                    &sealed, &length, plaintext, UInt64(packetSize), aad, 4, nil, nonce, state)
                _ = crypto_aead_aes256gcm_decrypt_afternm(&opened, &length, nil, sealed, length, aad, 4, nonce, state)
            }
        }
    }

    /// The receive path minus the network: decode the PILS frame, open it, decode the packet.
    private func measureFrameDecodeAndOpen() throws -> Double {
        let key = SecretBytes(copying: Sodium.randomBytes(32))
        let sender = try TunnelCipher(key: key)
        let receiver = try TunnelCipher(key: key)
        let packet = try Packet(
            flags: .ack, proto: .stream, source: Address(node: 7), destination: Address(node: 8),
            sourcePort: 49152, destinationPort: 1001, sequence: 1, acknowledgment: 1, window: 512,
            payload: Sodium.randomBytes(packetSize - Packet.headerSize)
        ).encoded()
        let (counter, sealed) = try sender.seal(packet, sender: 7)
        let datagram = TunnelFrame.encrypted(
            EncryptedFrame(sender: 7, nonce: TunnelNonce(prefix: sender.noncePrefix, counter: counter), sealed: sealed[...])
        ).encoded()
        var opened = [UInt8](repeating: 0, count: packetSize)
        return try measure(batch: 64) {
            for _ in 0..<64 {
                guard case .encrypted(let frame) = try TunnelFrame(decoding: datagram) else { return }
                let count = try frame.sealed.withUnsafeBytes { input in
                    try opened.withUnsafeMutableBytes { output in
                        try receiver.open(
                            input, prefix: frame.nonce.prefix, counter: frame.nonce.counter, sender: frame.sender,
                            into: output)
                    }
                }
                _ = try Packet(decoding: opened[0..<count])
            }
        }
    }

    /// The packet checksum alone, over a packet's worth of bytes.
    private func measureCRC32() -> Double {
        let bytes = Sodium.randomBytes(packetSize)
        var sink: UInt32 = 0
        let rate = measure(batch: 64) {
            for _ in 0..<64 { sink &+= CRC32.checksum(bytes) }
        }
        if sink == 1 { print("") }  // keeps the loop from being optimised away
        return rate
    }

    private func measureKeyAgreement() throws -> Double {
        let mine = try X25519KeyPair()
        let peer = try X25519KeyPair()
        return try measure(batch: 16) {
            for _ in 0..<16 {
                _ = TunnelKeyDerivation.hkdf.key(fromSharedSecret: try mine.sharedSecret(with: peer.publicKey))
            }
        }
    }

    private func measureEd25519() throws -> (Double, Double) {
        let key = try Ed25519PrivateKey()
        let message = Array("heartbeat:4242".utf8)
        let signature = key.sign(message)
        let sign = measure(batch: 16) { for _ in 0..<16 { _ = key.sign(message) } }
        let verify = measure(batch: 16) {
            for _ in 0..<16 { _ = key.publicKey.isValidSignature(signature, for: message) }
        }
        return (sign, verify)
    }
}
