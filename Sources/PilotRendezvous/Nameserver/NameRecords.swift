public import PilotWire

/// What the nameserver must learn from the registry: who holds a hostname, which networks exist.
public protocol NameAuthority: Sendable {
    /// The online node whose registry hostname is `name`.
    func node(withHostname name: String) -> UInt32?
    /// The id of the network called `name`.
    func network(named name: String) -> UInt16?
    func networkExists(_ id: UInt16) -> Bool
}

/// The nameserver's records and its answers (docs/PROTOCOL.md §11.6), without I/O.
///
/// A records map a name to the address of the node that registered it; S records list the
/// services on a (network, port). Both are soft state: they expire `ttl` seconds after their
/// last registration (5 minutes, as in the reference) and clients re-register, so they live in
/// memory only. Registry hostnames come first: they are proven by the registry and unique, so
/// `QUERY A` of a hostname answers with its holder and nobody can register an A record over
/// another node's hostname. Network names are the registry's; `REGISTER N` is refused.
public struct NameRecords: Sendable {
    public struct Limits: Sendable {
        public var ttl: Double = 300
        /// Records (A and S together) one node may hold.
        public var perNode = 64
        /// Records in all.
        public var total = 100_000
        public init() {}
    }

    private struct AddressRecord {
        var address: Address
        var expires: Double
    }

    private struct ServiceKey: Hashable, Comparable {
        var network: UInt16
        var port: UInt16
        var name: String
        var node: UInt32

        static func < (a: ServiceKey, b: ServiceKey) -> Bool { (a.name, a.node) < (b.name, b.node) }
    }

    private let limits: Limits
    private var addresses: [String: AddressRecord] = [:]
    private var services: [ServiceKey: Double] = [:]
    private var held: [UInt32: Int] = [:]
    private var nextSweep = 0.0

    public init(limits: Limits = Limits()) { self.limits = limits }

    /// Live records, A and S.
    public var count: Int { addresses.count + services.count }

    /// The answer to `request` from node `requester` at monotonic time `now`.
    public mutating func answer(
        _ request: NameserverRequest, from requester: UInt32, now: Double, authority: some NameAuthority
    ) -> NameserverReply {
        if now >= nextSweep { sweep(now: now) }
        switch request {
        case .queryAddress(let name):
            if let node = authority.node(withHostname: name) { return .address(name: name, address: Address(node: node)) }
            guard let record = addresses[name], record.expires > now else { return .error("no A record for \(name)") }
            return .address(name: name, address: record.address)

        case .queryNetwork(let name):
            guard let network = authority.network(named: name) else { return .error("no network named \(name)") }
            return .network(name: name, network: network)

        case .queryService(let network, let port):
            let matching = services.filter { $0.key.network == network && $0.key.port == port && $0.value > now }.keys.sorted()
            var listed: [NameserverReply.Service] = []
            var size = 0
            for key in matching {
                let service = NameserverReply.Service(name: key.name, address: Address(network: network, node: key.node), port: port)
                // One reply must fit the reader's single read.
                size += NameserverReply.services([service]).encoded.count + 1
                guard size <= NameserverRequest.maxSize else { break }
                listed.append(service)
            }
            return .services(listed)

        case .registerAddress(let name, let address):
            guard address.node == requester else {
                return .error("REGISTER A: \(address) is not the registering node \(Address(node: requester))")
            }
            if let holder = authority.node(withHostname: name), holder != requester {
                return .error("REGISTER A: \(name) is the hostname of \(Address(node: holder))")
            }
            if let record = addresses[name], record.expires > now, record.address.node != requester {
                return .error("REGISTER A: \(name) is held by \(record.address) until it expires")
            }
            if let expired = addresses[name], expired.address.node != requester {
                addresses[name] = nil
                release(expired.address.node)
            }
            let isNew = addresses[name] == nil
            guard !isNew || admit(requester) else { return full(requester) }
            addresses[name] = AddressRecord(address: address, expires: now + limits.ttl)
            return .ok

        case .registerNetwork:
            return .error("REGISTER N: networks are named by the registry")

        case .registerService(let name, let address, let network, let port):
            guard address.node == requester else {
                return .error("REGISTER S: \(address) is not the registering node \(Address(node: requester))")
            }
            guard authority.networkExists(network) else { return .error("REGISTER S: network \(network) does not exist") }
            let key = ServiceKey(network: network, port: port, name: name, node: requester)
            let isNew = services[key] == nil
            guard !isNew || admit(requester) else { return full(requester) }
            services[key] = now + limits.ttl
            return .ok
        }
    }

    /// Counts a new record for `node` if the limits allow it.
    private mutating func admit(_ node: UInt32) -> Bool {
        guard count < limits.total, held[node, default: 0] < limits.perNode else { return false }
        held[node, default: 0] += 1
        return true
    }

    private func full(_ node: UInt32) -> NameserverReply {
        count >= limits.total
            ? .error("nameserver full (\(limits.total) records)")
            : .error("\(Address(node: node)) holds \(limits.perNode) records already")
    }

    /// Drops expired records; runs at most every ten seconds.
    private mutating func sweep(now: Double) {
        nextSweep = now + 10
        for (name, record) in addresses where record.expires <= now {
            addresses[name] = nil
            release(record.address.node)
        }
        for (key, expires) in services where expires <= now {
            services[key] = nil
            release(key.node)
        }
    }

    private mutating func release(_ node: UInt32) {
        let remaining = held[node, default: 1] - 1
        held[node] = remaining > 0 ? remaining : nil
    }
}
