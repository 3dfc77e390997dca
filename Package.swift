// swift-tools-version:6.2
import PackageDescription

// Dependencies are pinned with `from:` at the majors available on the build machines.
let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let systemPackage: Target.Dependency = .product(name: "SystemPackage", package: "swift-system")

let package = Package(
    name: "Kairos",
    products: [
        .executable(name: "kairos", targets: ["kairos"]),
        .executable(name: "kairos-kernel-bench", targets: ["KairosKernelBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
    ],
    targets: [
        // MARK: C shims (leaves)
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        // Vector kernels with per-function ISA attributes and a one-time runtime CPU check:
        // no CPU-specific flags anywhere, so the binary runs on any x86-64 (and builds elsewhere).
        .target(name: "CKairosKernels"),

        // MARK: Numeric kernels and model format
        .target(name: "KairosKernels", dependencies: ["CKairosKernels"]),
        .target(name: "KairosModelFormat", dependencies: ["CLZ4", "KairosKernels", systemPackage]),

        // MARK: Trainer
        // The ALS conjugate-gradient solver, compiled per ISA level and chosen at run time (like CKairosKernels).
        .target(name: "CKairosTrainerKernels"),
        .target(name: "KairosTrainer", dependencies: ["CKairosTrainerKernels", "KairosKernels", "KairosModelFormat"]),

        // MARK: Executables
        .target(name: "KairosCLI", dependencies: ["KairosModelFormat", "KairosKernels", "KairosTrainer", argumentParser]),
        .executableTarget(name: "kairos", dependencies: ["KairosCLI", argumentParser]),
        .executableTarget(
            name: "KairosKernelBench",
            dependencies: ["KairosKernels", "KairosModelFormat", "CKairosBenchPeer"],
            path: "Tests/Benchmarks/KairosKernelBench"
        ),
        .target(name: "CKairosBenchPeer", path: "Tests/Benchmarks/CKairosBenchPeer"),

        // MARK: Tests
        .testTarget(name: "KairosKernelsTests", dependencies: ["KairosKernels"]),
        .testTarget(name: "KairosModelFormatTests", dependencies: ["KairosModelFormat", "KairosKernels"]),
        .testTarget(name: "KairosTrainerTests", dependencies: ["KairosTrainer", "KairosModelFormat"]),
        .testTarget(
            name: "KairosCLITests",
            dependencies: ["KairosCLI", "KairosModelFormat", "KairosTrainer", argumentParser]
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
