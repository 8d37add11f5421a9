// pilot-bench: benchmarks that print figures. Speed and memory targets are checked here, never
// by timed assertions in tests.
//
//   pilot-bench crypto [--seconds N]     tunnel seal+open beside raw libsodium, key agreement, signatures
//   pilot-bench registry [--nodes N] [--connections C] [--database postgres://... [--instances 2]]
//                                        registrations and heartbeats per second against pilot-rendezvous
//   pilot-bench host [--identities 1000,10000]
//                                        identity creation rate, cold start and RSS of pilot-host
//   pilot-bench net [--megabytes 200] [--echoes 2000] [--only raw,stream,loops,echo-bench,official,rtt]
//                                        stream throughput beside raw UDP, echo round trip
//   pilot-bench trust [--pairs 50]        handshake to mutual trust with auto-approve, two pilot-hosts
//   pilot-bench pairs [--pairs 1000] [--messages 10]
//                                        that many identity pairs on two pilot-hosts, trusting and messaging at once
//   pilot-bench fleet [--cycles 100000] [--lanes 8]
//                                        leased identities created and deleted: rate, host.db and registry.db sizes
//   pilot-bench pool [--identities 100000]
//                                        the identity pool alone (no sockets): creation, load, re-registration, RSS
//   pilot-bench interop [--megabytes 50] [--runs 10]
//                                        bulk streams with the official 1.18 daemon both ways, failures counted
//   pilot-bench apps [--identities 20] [--calls 1000]
//                                        the app store (root): spawn to ready, call round trip, app service RSS per app
//   pilot-bench directory [--nodes 100000] [--queries 200]
//                                        the directory's search (FTS5 in registry.db): query latency by kind
//   pilot-bench nat [--cases 1a,3] [--megabytes 10] [--files 1] [--idle-timeout S] [--details]
//                                        the NAT lab's cases (root): path, time to direct, MB/s each way

import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())

func usage() -> Never {
    print("""
        usage: pilot-bench crypto [--seconds N]
               pilot-bench registry [--nodes N] [--connections C] [--database postgres://... [--instances 2]]   (pilot-rendezvous must sit beside pilot-bench)
               pilot-bench host [--identities 1000,10000]           (pilot-host and pilot-rendezvous beside it)
               pilot-bench pool [--identities 100000]               (pilot-rendezvous beside it)
               pilot-bench list [--identities 100000]               (pilot-rendezvous beside it)
               pilot-bench fleet [--cycles 100000] [--lanes 8]      (pilot-host and pilot-rendezvous beside it)
               pilot-bench net [--megabytes 200] [--echoes 2000] [--only raw,stream,loops,echo-bench,official,rtt]
               pilot-bench trust [--pairs 50]                     (pilot-host and pilot-rendezvous beside it)
               pilot-bench pairs [--pairs 1000] [--messages 10]   (pilot-host and pilot-rendezvous beside it)
               pilot-bench interop [--megabytes 50] [--runs 10]       (pilot-rendezvous beside it; the official wheel)
               pilot-bench apps [--identities 20] [--calls 1000]  (root; pilot-host, pilot-host-apps, pilot-rendezvous, pilot-app-notes beside it)
               pilot-bench directory [--nodes 100000] [--queries 200]
               pilot-bench nat [--cases 1a,3] [--megabytes 10] [--files 1] [--idle-timeout S] [--details] [--artifacts DIR]
                                                                  (root; pilot-host, pilotctl and pilot-rendezvous beside it)
        """)
    exit(2)
}

func option(_ name: String, default value: Double) -> Double {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count,
        let parsed = Double(arguments[index + 1]), parsed > 0
    else { return value }
    return parsed
}

if arguments.contains("--help") || arguments.contains("-h") { usage() }

switch arguments.first {
case "crypto": CryptoBench(seconds: option("--seconds", default: 2)).run()
case "registry":
    let database = arguments.firstIndex(of: "--database").flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }
    RegistryBench(
        nodes: Int(option("--nodes", default: 100_000)), connections: Int(option("--connections", default: 4)), database: database,
        instances: Int(option("--instances", default: 1))
    ).run()
case "host":
    let sizes = arguments.firstIndex(of: "--identities").flatMap { index in
        index + 1 < arguments.count ? arguments[index + 1].split(separator: ",").compactMap { Int($0) } : nil
    } ?? [1000, 10_000]
    HostBench(sizes: sizes).run()
case "net":
    let only = arguments.firstIndex(of: "--only").flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil }
        .map { Set($0.split(separator: ",").map(String.init)) } ?? []
    if let unknown = only.subtracting(NetBench.parts).first {
        print("pilot-bench net: no part \(unknown) (the parts: \(NetBench.parts.joined(separator: ",")))")
        exit(2)
    }
    NetBench(megabytes: Int(option("--megabytes", default: 200)), echoes: Int(option("--echoes", default: 2000)), only: only).run()
case "interop": InteropBench(megabytes: Int(option("--megabytes", default: 50)), runs: Int(option("--runs", default: 10))).run()
case "trust": TrustBench(pairs: Int(option("--pairs", default: 50))).run()
case "pairs": PairsBench(pairs: Int(option("--pairs", default: 1000)), messages: Int(option("--messages", default: 10))).run()
case "nat":
    let value = { (name: String) in arguments.firstIndex(of: name).flatMap { $0 + 1 < arguments.count ? arguments[$0 + 1] : nil } }
    NATBench(
        names: value("--cases")?.split(separator: ",").map(String.init) ?? [], megabytes: Int(option("--megabytes", default: 10)),
        files: Int(option("--files", default: ProcessInfo.processInfo.environment["PILOT_LONG"] == "1" ? 10 : 1)),
        idleTimeout: value("--idle-timeout").flatMap { Int($0) }, details: arguments.contains("--details"),
        artifacts: URL(fileURLWithPath: value("--artifacts") ?? FileManager.default.temporaryDirectory.appendingPathComponent("pilot-nat-artifacts").path)
    ).run()
case "apps": AppsBench(identities: Int(option("--identities", default: 20)), calls: Int(option("--calls", default: 1000))).run()
case "directory": DirectoryBench(nodes: Int(option("--nodes", default: 100_000)), queries: Int(option("--queries", default: 200))).run()
case "pool": PoolBench(count: Int(option("--identities", default: 100_000))).run()
case "list": ListBench(count: Int(option("--identities", default: 100_000))).run()
case "fleet": FleetBench(cycles: Int(option("--cycles", default: 100_000)), lanes: Int(option("--lanes", default: 8))).run()
case "pool-load" where arguments.count == 3: PoolBench.load(state: arguments[1], registry: arguments[2])
default: usage()
}
