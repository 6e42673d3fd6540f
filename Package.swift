// swift-tools-version:6.1
// Gallocy: a distributed shared memory engine. The layering (lower never imports higher) is
// described in docs/architecture.md:
//   C shims -> GallocyRaft (pure) -> GallocyCodec -> GallocyStorage / GallocyStateMachine
//   -> GallocyRuntime -> Gallocy (engine) -> gallocy (tool)
import PackageDescription

let package = Package(
    name: "Gallocy",
    products: [
        .executable(name: "gallocy", targets: ["gallocy"]),
        .library(name: "Gallocy", targets: ["Gallocy"]),
        // libgallocy, the C interface (docs/c-api.md). SwiftPM names the file libGallocyC.so (a
        // product may not share the executable's name); its soname is libgallocy.so.0.
        .library(name: "GallocyC", type: .dynamic, targets: ["GallocyC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    ],
    targets: [
        // C shims over the Debian libraries; each module map also carries its link line.
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // The C runtime: fault handler and the few system helpers Swift cannot do safely.
        .target(name: "CGallocyRuntime"),
        // The SSE4.2 crc32 instruction for the codec's checksums (a table in Swift elsewhere).
        .target(name: "CCRC32C"),

        // The pure Raft core: standard library only.
        .target(name: "GallocyRaft"),
        // A deterministic, seeded cluster simulator for the Raft core (tests and `gallocy sim`).
        .target(name: "GallocyRaftSim", dependencies: ["GallocyRaft"]),
        // Binary encodings (entries, messages, commands), checksums, page diffs.
        .target(name: "GallocyCodec", dependencies: ["GallocyRaft", "CLZ4", "CCRC32C"]),
        // LMDB wrapper and the Raft storage on it.
        .target(name: "GallocyStorage", dependencies: ["CLMDB", "GallocyCodec", "GallocyRaft"]),
        // The deterministic state machine: SQLite page table, allocator, locks, heap image.
        .target(name: "GallocyStateMachine", dependencies: ["CSQLite", "CLZ4", "GallocyCodec", "GallocyRaft"]),
        // The shared heap of a process: mappings, fault service, twins, release/acquire.
        .target(name: "GallocyRuntime", dependencies: ["CGallocyRuntime", "GallocyStateMachine", "GallocyCodec"]),
        // The engine: a member, wiring Raft to storage, transport, state machine and heap.
        .target(
            name: "Gallocy",
            dependencies: [
                "GallocyRaft", "GallocyCodec", "GallocyStorage", "GallocyStateMachine", "GallocyRuntime",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The C interface: gallocy.h (include/) for plain C programs, and its implementation in
        // Swift (@c @implementation, checked against the header) over the engine's Member API.
        .target(name: "CGallocyABI"),
        .target(
            name: "GallocyC",
            dependencies: ["CGallocyABI", "Gallocy", .product(name: "Logging", package: "swift-log")],
            linkerSettings: [.unsafeFlags(["-Xlinker", "-soname=libgallocy.so.0"])]
        ),
        // The command-line tool: argument parsing and printing only.
        .executableTarget(
            name: "gallocy",
            dependencies: [
                "Gallocy", "GallocyRaft", "GallocyRaftSim", "GallocyCodec", "GallocyStorage", "GallocyStateMachine",
                "GallocyRuntime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(name: "GallocyRaftTests", dependencies: ["GallocyRaft", "GallocyRaftSim"]),
        .testTarget(name: "GallocyCodecTests", dependencies: ["GallocyCodec", "GallocyRaft"]),
        .testTarget(
            name: "GallocyStorageTests",
            dependencies: ["GallocyStorage", "GallocyCodec", "GallocyRaft", "gallocy"]
        ),
        .testTarget(name: "GallocyStateMachineTests", dependencies: ["GallocyStateMachine", "GallocyCodec", "GallocyRaft"]),
        // The fault handler and the heap's mappings: real memfds, mprotect, signals and threads.
        .testTarget(
            name: "GallocyRuntimeTests",
            dependencies: ["GallocyRuntime", "CGallocyRuntime", "GallocyCodec", "GallocyStateMachine"]
        ),
        // Unit tests of the engine's parts (HTTP, transport) over real sockets on loopback.
        .testTarget(
            name: "GallocyTests",
            dependencies: [
                "Gallocy", "GallocyCodec", "GallocyRaft",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The log tool: its logic in-process and its command-line contract through the real binary.
        .testTarget(
            name: "GallocyLogToolTests",
            dependencies: ["Gallocy", "GallocyStorage", "GallocyStateMachine", "GallocyCodec", "GallocyRaft", "gallocy"]
        ),
        // The C interface from C: gcc builds a C program against gallocy.h and libgallocy, and
        // three of its processes form a cluster.
        .testTarget(name: "GallocyCTests"),
        // Whole-system tests: real `gallocy node` processes on loopback.
        .testTarget(name: "GallocyIntegrationTests", dependencies: ["gallocy", "GallocyCodec"]),
    ]
)

for target in package.targets where target.type != .system {
    guard target.type != .regular || !target.name.hasPrefix("C") else { continue }
    var settings = target.swiftSettings ?? []
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    target.swiftSettings = settings
}
