// swift-tools-version:6.2
import PackageDescription

// Dependencies are pinned with `from:` at the majors available on the build machines.
let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let nioCore: Target.Dependency = .product(name: "NIOCore", package: "swift-nio")
let nioPosix: Target.Dependency = .product(name: "NIOPosix", package: "swift-nio")
let nioEmbedded: Target.Dependency = .product(name: "NIOEmbedded", package: "swift-nio")
let nioHTTP1: Target.Dependency = .product(name: "NIOHTTP1", package: "swift-nio")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let metrics: Target.Dependency = .product(name: "Metrics", package: "swift-metrics")
let prometheus: Target.Dependency = .product(name: "Prometheus", package: "swift-prometheus")
let serviceLifecycle: Target.Dependency = .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let unixSignals: Target.Dependency = .product(name: "UnixSignals", package: "swift-service-lifecycle")
let histogram: Target.Dependency = .product(name: "Histogram", package: "hdrhistogram-swift")
let deque: Target.Dependency = .product(name: "DequeModule", package: "swift-collections")

let package = Package(
    name: "Kairos",
    products: [
        .executable(name: "kairos", targets: ["kairos"]),
        .executable(name: "kairos-kernel-bench", targets: ["KairosKernelBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    ],
    targets: [
        // MARK: C shims (leaves)
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        // Vector kernels with per-function ISA attributes and a one-time runtime CPU check:
        // no CPU-specific flags anywhere, so the binary runs on any x86-64 (and builds elsewhere).
        .target(name: "CKairosKernels"),

        // MARK: Numeric kernels and model format
        .target(name: "KairosKernels", dependencies: ["CKairosKernels"]),
        .target(name: "KairosModelFormat", dependencies: ["CLZ4", "CKairosKernels", "KairosKernels"]),

        // MARK: Wire protocol (pure: bytes in, values out; no sockets)
        .target(name: "KairosProtocol", dependencies: [nioCore]),

        // MARK: Scoring on top of the kernels (answers protocol requests against one model snapshot)
        .target(name: "KairosScoring", dependencies: ["KairosKernels", "KairosModelFormat", "KairosProtocol"]),

        // MARK: Server and client
        .target(
            name: "KairosServer",
            dependencies: ["KairosScoring", "KairosProtocol", "KairosModelFormat", nioCore, nioPosix, nioHTTP1, logging, metrics, prometheus, serviceLifecycle, histogram, deque]
        ),
        .target(name: "KairosClient", dependencies: ["KairosProtocol", nioCore, nioPosix]),

        // MARK: Trainer
        // The ALS conjugate-gradient solver, compiled per ISA level and chosen at run time (like CKairosKernels).
        // Optimized in debug builds too: the tests train real models (the shipped default model is rebuilt and
        // compared), which takes minutes at -O0. IEEE results are the same at every optimization level here
        // (no fast-math, no FMA contraction on the portable path), which that comparison checks.
        .target(name: "CKairosTrainerKernels", cSettings: [.unsafeFlags(["-O2"], .when(configuration: .debug))]),
        .target(
            name: "KairosTrainer",
            dependencies: ["CKairosTrainerKernels", "KairosKernels", "KairosModelFormat"],
            swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]
        ),

        // MARK: Executables
        .target(
            name: "KairosCLI",
            dependencies: ["KairosModelFormat", "KairosKernels", "KairosTrainer", "KairosScoring", "KairosServer", "KairosClient", "KairosProtocol", argumentParser, logging, serviceLifecycle, unixSignals, prometheus, metrics, histogram, nioCore, nioPosix]
        ),
        .executableTarget(name: "kairos", dependencies: ["KairosCLI", argumentParser]),
        .executableTarget(
            name: "KairosKernelBench",
            dependencies: ["KairosKernels", "KairosModelFormat", "CKairosBenchPeer"],
            path: "Tests/Benchmarks/KairosKernelBench"
        ),
        .target(name: "CKairosBenchPeer", path: "Tests/Benchmarks/CKairosBenchPeer"),

        // MARK: Tests
        .testTarget(name: "KairosKernelsTests", dependencies: ["KairosKernels", "KairosTestSupport"]),
        .target(name: "KairosTestSupport", dependencies: ["KairosKernels"], path: "Sources/KairosTestSupport"),
        .testTarget(name: "KairosProtocolTests", dependencies: ["KairosProtocol", "KairosModelFormat", "KairosTestSupport", nioCore]),
        .testTarget(
            name: "KairosServerTests",
            dependencies: ["KairosServer", "KairosClient", "KairosProtocol", "KairosModelFormat", "KairosScoring", "KairosTestSupport", logging, nioCore, nioPosix, nioEmbedded, serviceLifecycle, prometheus]
        ),
        .testTarget(name: "KairosScoringTests", dependencies: ["KairosScoring", "KairosModelFormat", "KairosProtocol", "KairosTestSupport"]),
        .testTarget(name: "KairosModelFormatTests", dependencies: ["KairosModelFormat", "KairosKernels", "KairosTestSupport"]),
        .testTarget(name: "KairosTrainerTests", dependencies: ["KairosTrainer", "KairosKernels", "KairosModelFormat", "KairosScoring", "KairosProtocol", "KairosTestSupport"]),
        .testTarget(
            name: "KairosCLITests",
            dependencies: ["KairosCLI", "KairosKernels", "KairosModelFormat", "KairosTrainer", argumentParser]
        ),
    ]
)

for target in package.targets where target.type != .system {
    guard !target.name.hasPrefix("C") else { continue }
    var settings = target.swiftSettings ?? []
    settings.append(contentsOf: [
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("MemberImportVisibility"),
        .enableUpcomingFeature("InternalImportsByDefault"),
    ])
    target.swiftSettings = settings
}
