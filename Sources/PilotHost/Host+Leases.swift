import PilotControl
import PilotStore
import PilotWire

/// Leased identities (`identity create --lease`): each lasts as long as one process. The host
/// watches every holder by pidfd (`ProcessExits`); when one ends, its identity is deregistered
/// and deleted as `identity delete` does it. Holders are checked again at start, so a lease that
/// ended while the host was down ends then.
extension Host {
    /// Watches `record`'s lease holder, if it has one. Throws when the holder is already gone:
    /// the identity is then not served (its creation is undone).
    func watchLease(of record: IdentityRecord) throws(ControlFailure) {
        guard let lease = record.lease else { return }
        do {
            try leases.watch(lease, for: record.name)
        } catch {
            throw ControlFailure(.notFound, "identity \(record.name) is leased to process \(lease.pid): \(error)")
        }
    }

    /// At start, before any socket is served: identities whose holder ended while the host was
    /// down are deleted; the others are watched.
    func endLeasesOfGoneHolders() async {
        for record in await pool.all {
            guard record.lease != nil else { continue }
            do throws(ControlFailure) { try watchLease(of: record) } catch {
                await endLease(of: record.name, reason: "its holder ended while pilot-host was down")
            }
        }
    }

    /// Deletes the identities whose holder ends, for as long as the host runs.
    func startEndingLeases() {
        let ends = leaseEnds.stream
        leaseTask.withLockedValue {
            $0 = Task { [self] in
                for await name in ends { await endLease(of: name, reason: "its holder ended") }
            }
        }
    }

    /// Deletes `name` if its lease holder is really gone (the name may have been deleted and
    /// made again, leased to a process that runs).
    private func endLease(of name: String, reason: String) async {
        guard let lease = await pool.identity(named: name)?.lease else { return }
        if ProcessStamp.current(pid: lease.pid) == lease {
            // The same holder runs: watched again (a stale report from a replaced watch).
            do throws(ControlFailure) { if let record = await pool.identity(named: name) { try watchLease(of: record) } } catch {}
            return
        }
        do {
            try await pool.delete(name: name)
            try await identityChanged(.deleted(name))
            logger.notice("leased identity deleted", metadata: ["identity": "\(name)", "holder": "\(lease.pid)", "reason": "\(reason)"])
        } catch {
            logger.error("leased identity not deleted", metadata: ["identity": "\(name)", "holder": "\(lease.pid)", "error": "\(error)"])
        }
    }
}
