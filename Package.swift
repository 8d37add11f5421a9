// swift-tools-version: 6.0
//
// pilot-host: many Pilot Protocol identities in one process.
// The module map and the dependency rules are in docs/ARCHITECTURE.md.

import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// The packet path's modules skip the run-time exclusivity checks in release builds: about 5%
/// of a stream's CPU went to them (`pilot-bench net`, perf). Debug builds, which the tests run,
/// keep them, and the compiler's static checks stay on everywhere.
let packetPath: [SwiftSetting] = strict + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

/// SwiftNIO's event loops and swift-log: what every target that does I/O links.
let eventLoops: [Target.Dependency] = [
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
    .product(name: "Logging", package: "swift-log"),
]

let package = Package(
    name: "pilot-host",
    products: [
        .executable(name: "pilot-rendezvous", targets: ["pilot-rendezvous"]),
        .executable(name: "pilot-bench", targets: ["pilot-bench"]),
        .executable(name: "pilot-host", targets: ["pilot-host"]),
        .executable(name: "pilotctl", targets: ["pilotctl"]),
        .executable(name: "pilot-mcp", targets: ["pilot-mcp"]),
        .executable(name: "pilot-host-apps", targets: ["pilot-host-apps"]),
        .executable(name: "pilot-app-launch", targets: ["pilot-app-launch"]),
        .library(name: "PilotWire", targets: ["PilotWire"]),
        .library(name: "PilotCrypto", targets: ["PilotCrypto"]),
        .library(name: "PilotClient", targets: ["PilotClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk", exact: "0.12.1"),
        // The MCP SDK's stdio transport takes its file descriptors (the tests' client of pilot-mcp).
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        // Prometheus metrics of pilot-host and pilot-rendezvous (PilotMetrics).
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // The registry's state on PostgreSQL (`pilot-rendezvous --database postgres://...`).
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // C libraries from Debian's -dev packages.
        .systemLibrary(
            name: "CSodium", pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(
            name: "CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(
            name: "CSystemd", pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(
            name: "CArchive", pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]),
        // Linux headers the Glibc module leaves out (epoll, eventfd, sendmmsg).
        .systemLibrary(name: "CLinux"),

        // systemd: notify, socket activation, watchdog, the journald log handler.
        .target(
            name: "PilotSystemd",
            dependencies: ["CSystemd", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),

        // Value types and codecs of the wire: no I/O, no C.
        .target(name: "PilotWire", dependencies: ["CCRC32"], swiftSettings: packetPath),
        // libsodium behind small types.
        .target(name: "PilotCrypto", dependencies: ["CSodium", "PilotWire"], swiftSettings: packetPath),
        // SQLite through a thin wrapper of our own.
        .target(name: "PilotStore", dependencies: ["CSQLite", "PilotWire"], swiftSettings: strict),
        // The app store's documents: manifests, their signatures, catalogues, the IPC envelope.
        .target(name: "PilotAppStore", dependencies: ["PilotWire", "PilotCrypto"], swiftSettings: strict),
        // The SDK an agent links to talk to its identity's control socket; pilotctl is built on it.
        .target(name: "PilotClient", dependencies: ["PilotWire"], swiftSettings: strict),
        // pilot-mcp's tools and resources: one identity's socket served as an MCP server.
        .target(
            name: "PilotMCP",
            dependencies: ["PilotClient", "PilotWire", .product(name: "MCP", package: "swift-sdk")],
            swiftSettings: strict),
        // Control sockets: peer credentials and the access policy.
        .target(
            name: "PilotControl",
            dependencies: ["PilotWire", "CLinux"] + eventLoops,
            swiftSettings: strict),
        // The data plane: shared UDP sockets, tunnels, routing.
        .target(
            name: "PilotNet",
            dependencies: ["PilotWire", "PilotCrypto", "CLinux"] + eventLoops,
            swiftSettings: packetPath),
        // Services on well-known ports, over any stream: echo, trust handshakes, data exchange,
        // the event stream.
        .target(name: "PilotServices", dependencies: ["PilotNet", "PilotWire"] + eventLoops, swiftSettings: strict),
        // Prometheus metrics: swift-metrics over a swift-prometheus registry, filled at scrape time,
        // and the GET /metrics listener (NIOHTTP1). Knows no series of its own: the host's and the
        // rendezvous's are theirs.
        .target(
            name: "PilotMetrics",
            dependencies: [
                "PilotWire",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ] + eventLoops,
            swiftSettings: strict),
        // Composition of the host: master key, identity pool, configuration, systemd.
        .target(
            name: "PilotHost",
            dependencies: [
                "PilotSystemd", "PilotWire", "PilotStore", "PilotCrypto", "PilotControl", "PilotNet", "PilotServices", "PilotAppStore",
                "PilotMetrics", "CLinux",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ] + eventLoops,
            swiftSettings: strict),
        // The app service: bundles into the store, apps run sandboxed and supervised.
        .target(
            name: "PilotApps",
            dependencies: [
                "PilotAppStore", "PilotControl", "PilotCrypto", "PilotWire", "PilotSystemd", "CArchive", "CLinux",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ] + eventLoops,
            swiftSettings: strict),
        // Registry, beacon and nameserver servers; the registry's state in SQLite or PostgreSQL.
        .target(
            name: "PilotRendezvous",
            dependencies: [
                "PilotWire", "PilotCrypto", "PilotStore", "PilotNet", "PilotServices", "PilotMetrics", "CLinux",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),

        .executableTarget(
            name: "pilot-rendezvous",
            dependencies: [
                "PilotRendezvous", "PilotNet", "PilotSystemd", "PilotCrypto", "PilotWire",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "pilot-host",
            dependencies: [
                "PilotHost", "PilotSystemd", "CCodePages",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict),
        // The app sandbox's last step, in C: Landlock, seccomp (libseccomp), rlimits, then the
        // verified binary; and the drop from root to the apps' user before bubblewrap.
        // The Swift driver links it, and would make it need libswiftCore.so, which a sandbox
        // does not see: -static-stdlib (it uses none of it).
        .executableTarget(name: "pilot-app-launch", linkerSettings: [.linkedLibrary("seccomp"), .unsafeFlags(["-static-stdlib"])]),
        .executableTarget(
            name: "pilot-host-apps",
            dependencies: [
                "PilotApps", "PilotControl", "PilotSystemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "pilotctl",
            dependencies: [
                "PilotClient", "PilotWire", "PilotAppStore", "PilotCrypto", "CArchive",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        // The MCP server (stdio) of one identity.
        .executableTarget(
            name: "pilot-mcp",
            dependencies: [
                "PilotMCP", "PilotClient", "PilotWire",
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        // The Swift SDK's example: a stream to an echo port, or a port that echoes every stream.
        .executableTarget(
            name: "pilot-example",
            dependencies: ["PilotClient", "PilotWire"],
            path: "Examples/pilot-example",
            swiftSettings: strict),
        // The app store's example app: a notebook kept in the app's state. Its standard library is
        // linked in, since a sandboxed app sees /usr but not the toolchain's libraries.
        .executableTarget(
            name: "pilot-app-notes",
            dependencies: ["PilotAppStore", "PilotWire"],
            path: "Examples/pilot-app-notes",
            exclude: ["manifest.template.json"],
            swiftSettings: strict,
            linkerSettings: [.unsafeFlags(["-static-stdlib", "-Xlinker", "--gc-sections", "-Xlinker", "--as-needed"])]),
        // Maps pilot-host's code a page at a time as it is used (no fault-around): its base memory.
        .target(name: "CCodePages"),
        // The bulk of the packet checksum by carry-less multiplication (PilotWire's CRC32).
        .target(name: "CCRC32"),
        // Counts heap allocations by defining malloc and its kin: pilot-bench's alone.
        .target(name: "CAllocationCounter"),
        .executableTarget(
            name: "pilot-bench",
            dependencies: [
                "PilotWire", "PilotCrypto", "PilotClient", "PilotControl", "PilotHost", "PilotStore", "PilotNet", "PilotServices", "CSodium",
                "PilotAppStore", "PilotRendezvous",
                "CAllocationCounter",
                // The official daemons, for `net`'s figure of their own `pilotctl bench`.
                "PilotTestSupport",
            ] + eventLoops,
            swiftSettings: strict),

        // Helpers for tests that run real processes: the official 1.18 binaries, child processes,
        // loopback sockets, the NAT lab. Linked by test targets and pilot-bench, never by what is installed.
        .target(name: "PilotTestSupport", dependencies: ["PilotWire", "PilotClient", "PilotAppStore", "PilotCrypto"], swiftSettings: strict),

        .testTarget(name: "PilotWireTests", dependencies: ["PilotWire", "PilotTestSupport"]),
        .testTarget(name: "PilotCryptoTests", dependencies: ["PilotCrypto", "PilotWire", "PilotTestSupport"]),
        .testTarget(name: "PilotStoreTests", dependencies: ["PilotStore"]),
        .testTarget(name: "PilotMetricsTests", dependencies: ["PilotMetrics", "PilotWire", "PilotTestSupport", .product(name: "CoreMetrics", package: "swift-metrics")] + eventLoops),
        .testTarget(name: "PilotAppStoreTests", dependencies: ["PilotAppStore", "PilotCrypto", "PilotWire"]),
        .testTarget(
            name: "PilotAppsTests",
            dependencies: [
                "PilotApps", "PilotAppStore", "PilotCrypto", "PilotWire", "PilotTestSupport",
                // LoopbackHTTPServer, the downloader's tests' server.
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ] + eventLoops),
        .testTarget(name: "PilotClientTests", dependencies: ["PilotClient", "PilotWire"]),
        .testTarget(name: "PilotMCPTests", dependencies: ["PilotMCP", "PilotClient", "PilotWire", .product(name: "MCP", package: "swift-sdk")]),
        .testTarget(
            name: "PilotNetTests",
            dependencies: ["PilotNet", "PilotHost", "PilotStore", "PilotCrypto", "PilotWire", "PilotTestSupport"] + eventLoops),
        .testTarget(
            name: "PilotServicesTests",
            dependencies: ["PilotServices", "PilotNet", "PilotCrypto", "PilotWire"] + eventLoops),
        .testTarget(
            name: "PilotControlTests",
            dependencies: ["PilotControl", "PilotWire", "PilotTestSupport"] + eventLoops),
        .testTarget(
            name: "PilotHostTests",
            dependencies: [
                "PilotHost", "PilotStore", "PilotCrypto", "PilotWire", "PilotRendezvous", "PilotTestSupport", "PilotSystemd", "PilotClient",
                "PilotAppStore",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                // pilot-mcp driven by the MCP SDK's client over its standard input and output.
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]),
        .testTarget(
            name: "PilotRendezvousTests",
            dependencies: [
                "PilotRendezvous", "PilotWire", "PilotCrypto", "PilotStore", "PilotTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "InteropTests", dependencies: ["PilotWire", "PilotCrypto", "PilotTestSupport"]),
        // A hostile local user against a real pilot-host: floods, stale connections, uploads.
        .testTarget(name: "AbuseTests", dependencies: ["PilotWire", "PilotTestSupport"]),
    ]
)
