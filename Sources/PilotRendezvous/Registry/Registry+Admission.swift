import Foundation
import PilotCrypto
public import PilotWire

/// Who may bring new keys, and how fast (issue 12): each source IP has a bucket, all sources
/// together share a budget, and the operator's hosts, presenting the host credential in their
/// `batch` requests, are held to neither.
extension Registry {
    /// The credential an operator's host presents in `batch` requests, derived from the admin
    /// token (so a host holds no token that could create networks): hex SHA-256 of a fixed
    /// label and the token.
    public static func hostCredential(adminToken: String) -> String {
        Sodium.sha256(Array("pilot-rendezvous host credential:\(adminToken)".utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `request` is a batch carrying the host credential: an operator's host, which the
    /// server's per-connection request budget does not hold back either.
    public func isFromOperatorHost(_ request: RegistryMessage) -> Bool {
        guard request.type == "batch", let hostCredential, let credential = request["credential"]?.stringValue else { return false }
        return hostCredential.matches(credential)
    }

    /// Spends a new key's tokens: its source's and the registry-wide budget.
    func admitNewKey(from peerIP: String, now: Double) throws {
        if registrationBuckets[peerIP] == nil, registrationBuckets.count >= configuration.maxRegistrationSources {
            pruneRegistrationBuckets(now: now)
            guard registrationBuckets.count < configuration.maxRegistrationSources else {
                throw RegistryFailure("register: too many sources are registering new keys; try again later")
            }
        }
        var bucket = registrationBuckets[peerIP]
            ?? TokenBucket(capacity: configuration.registrationBurst, ratePerSecond: configuration.registrationsPerSecond, now: now)
        guard bucket.take(now: now) else { throw RegistryFailure("register: rate limit for new keys from \(peerIP)") }
        registrationBuckets[peerIP] = bucket
        guard newKeyBudget.take(now: now) else {
            throw RegistryFailure("register: the registry takes no more new keys for now (\(configuration.newKeysPerSecond) a second); try again later")
        }
    }

    /// Forgets the per-source buckets that have refilled: a source that comes back starts full,
    /// exactly as if it had been remembered.
    func pruneRegistrationBuckets(now: Double) {
        registrationBuckets = registrationBuckets.filter { !$0.value.isFull(now: now) }
    }

    /// Sources whose new-key bucket is remembered.
    public var registrationSourceCount: Int { lock.withLock { registrationBuckets.count } }
}
