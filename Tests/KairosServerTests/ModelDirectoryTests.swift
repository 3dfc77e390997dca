import Glibc
import KairosModelFormat
import KairosProtocol
import KairosScoring
@testable import KairosServer
import Logging
import Synchronization
import Testing

/// A models folder in /tmp with a directory policy over it.
final class ModelFolder {
    let path: String
    let store = ModelStore()
    let directory: ModelDirectory

    init(
        memoryBudget: Int? = nil, foldCacheWarmup: Duration = .milliseconds(250),
        availableMemory: @escaping @Sendable () -> Int? = AvailableMemory.bytes
    ) {
        var template = Array("/tmp/kairos-folder-test-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        directory = ModelDirectory(
            path: path, store: store, memoryBudget: memoryBudget, foldCacheWarmup: foldCacheWarmup, availableMemory: availableMemory,
            logger: logger
        )
    }

    deinit {
        for name in ModelStoreFiles.list(path) { unlink("\(path)/\(name)") }
        rmdir(path)
    }

    static func bytes(version: UInt64, name: String = "default", items: Int = 200) -> [UInt8] {
        try! ModelWriter.encode(SyntheticModel.make(name: name, version: version, items: items, users: 20, dimensions: 8, seed: version))
    }

    /// Publishes by rename (the right way), with `parameters` in the model's metadata.
    func publish(version: UInt64, as file: String? = nil, name: String = "default", parameters: [String: Double] = [:]) {
        var contents = SyntheticModel.make(name: name, version: version, items: 200, users: 20, dimensions: 8, seed: version)
        contents.metadata.parameters.merge(parameters) { $1 }
        try! ModelWriter.write(contents, to: "\(path)/\(file ?? "\(name)-v\(version).kmodel")")
    }

    /// Writes raw bytes in place (the wrong way), truncating whatever was there.
    func writeInPlace(_ bytes: [UInt8], as file: String) {
        let fd = open("\(path)/\(file)", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        bytes.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    var serving: UInt64? { store.snapshot("default")?.version }
}

@Suite struct ModelDirectoryTests {
    /// The highest valid version serves; a lower one published later does not take over.
    @Test func highestValidVersionServesAndNeverMovesBack() {
        let f = ModelFolder()
        f.publish(version: 3)
        f.publish(version: 5)
        f.directory.reconcile()
        #expect(f.serving == 5)
        f.publish(version: 4)
        let report = f.directory.reconcile()
        #expect(f.serving == 5 && report.installed.isEmpty)
    }

    /// Corrupt, truncated and half-written files are rejected with a reason; what served keeps serving; a rejected
    /// file is retried once it changes, and then serves.
    @Test func badFilesAreRejectedAndRetriedWhenTheyChange() {
        let f = ModelFolder()
        f.publish(version: 1)
        f.directory.reconcile()
        var corrupt = ModelFolder.bytes(version: 2)
        corrupt[corrupt.count - 100] ^= 0xFF
        f.writeInPlace(corrupt, as: "corrupt.kmodel")
        let full = ModelFolder.bytes(version: 3)
        f.writeInPlace(Array(full.prefix(full.count / 2)), as: "half.kmodel")
        let report = f.directory.reconcile()
        #expect(f.serving == 1)
        #expect(Set(report.rejected.map(\.file)) == ["corrupt.kmodel", "half.kmodel"])
        #expect(report.rejected.first { $0.file == "half.kmodel" }!.reason.contains("truncated"))
        // Unchanged rejected files are not reloaded on every pass.
        #expect(f.directory.reconcile().rejected.isEmpty)
        // The in-place writer finishes: the same name now verifies and serves.
        f.writeInPlace(full, as: "half.kmodel")
        f.directory.reconcile()
        #expect(f.serving == 3)
    }

    /// PIN serves an exact version, ROLLBACK the previous valid one, unpinning returns to the highest; a missing
    /// version is refused without changing anything.
    @Test func pinRollbackAndUnpin() throws {
        let f = ModelFolder()
        for v: UInt64 in [1, 2, 3] { f.publish(version: v) }
        f.directory.reconcile()
        #expect(f.serving == 3)
        _ = try f.directory.rollback("default")
        #expect(f.serving == 2)
        _ = try f.directory.rollback("default")
        #expect(f.serving == 1)
        #expect(throws: ServingError.self) { _ = try f.directory.rollback("default") }
        #expect(throws: ServingError.self) { _ = try f.directory.pin("default", version: 9) }
        #expect(f.serving == 1)
        _ = try f.directory.pin("default", version: 0)
        #expect(f.serving == 3)
        _ = try f.directory.pin("default", version: 2)
        f.publish(version: 4)
        f.directory.reconcile()
        #expect(f.serving == 2, "a pin holds even when newer versions arrive")
    }

    /// A swap to a least-squares model makes the new snapshot's history solves for the users the old one kept, before
    /// it serves (the report says how many), so their first requests with events find them; with no time allowed
    /// for it, none are made.
    @Test func aSwapWarmsTheFoldCacheForTheUsersTheOldModelKept() {
        let fold: [String: Double] = ["realtime_fold": 1, "alpha": 10, "regularization": 5]
        for warmup in [Duration.milliseconds(250), .zero] {
            let f = ModelFolder(foldCacheWarmup: warmup)
            func scoreWithEvents(_ users: Range<Int>) -> (hits: Int, misses: Int) {
                let s = f.store.snapshot("default")!
                for user in users {
                    let request = ScoreRequest(
                        model: ModelRef(name: "default"), user: "user-\(user)", candidates: ["item-1", "item-2"],
                        context: RealtimeContext(events: [RealtimeEvent(item: "item-\(user)", strength: 4, timestamp: 1000)], now: 1000)
                    )
                    _ = Scorer.score(request, on: s, now: 1000)
                }
                return s.foldCache!.counts
            }
            f.publish(version: 1, parameters: fold)
            f.directory.reconcile()
            #expect(scoreWithEvents(0..<5) == (hits: 0, misses: 5))
            f.publish(version: 2, parameters: fold)
            let report = f.directory.reconcile()
            #expect(f.serving == 2)
            if warmup == .zero {
                #expect(report.warmedUsers.isEmpty && scoreWithEvents(0..<5) == (hits: 0, misses: 5))
            } else {
                #expect(report.warmedUsers == ["default": 5] && scoreWithEvents(0..<5) == (hits: 5, misses: 0))
            }
        }
    }

    /// The data time a server reports is the trending reference time (the newest training event), or the file's
    /// creation time for a model without popularity.
    @Test func dataTimeFallsBackToTheCreationTime() throws {
        var contents = SyntheticModel.make(name: "t", version: 1, items: 50, users: 5, dimensions: 8, seed: 1)
        contents.createdAt = 1_700_000_000
        let path = "/tmp/kairos-data-time-test-\(getpid()).kmodel"
        defer { unlink(path) }
        try ModelWriter.write(contents, to: path)
        let reference = try #require(contents.popularity?.referenceTime)
        #expect(reference != contents.createdAt)
        #expect(ModelDirectory.dataTime(of: try MappedModel(path: path)) == reference)
        contents.popularity = nil
        try ModelWriter.write(contents, to: path)
        #expect(ModelDirectory.dataTime(of: try MappedModel(path: path)) == 1_700_000_000)
    }

    /// Deleting the serving file does not unload its model (documented policy).
    @Test func deletingAFileKeepsItsModelServing() {
        let f = ModelFolder()
        f.publish(version: 1)
        f.directory.reconcile()
        unlink("\(f.path)/default-v1.kmodel")
        f.directory.reconcile()
        #expect(f.serving == 1)
        #expect(f.store.snapshot("default")?.model.items.row(of: "item-3") == 3)
    }

    /// A model that would exceed the memory budget is refused and the current one keeps serving.
    @Test func memoryBudgetRefusesOversizeModels() {
        let small = ModelFolder.bytes(version: 1).count
        let f = ModelFolder(memoryBudget: small * 3)
        f.publish(version: 1)
        f.directory.reconcile()
        #expect(f.serving == 1)
        f.writeInPlace(ModelFolder.bytes(version: 2, items: 5000), as: "big.kmodel")
        let report = f.directory.reconcile()
        #expect(f.serving == 1 && report.rejected.first?.reason.contains("memory budget") == true)
    }

    /// A copied load that the available memory cannot hold is refused (the OOM killer would otherwise end the process
    /// and every model with it); the current model keeps serving, and the load goes ahead once memory is there.
    @Test func aModelTheMemoryCannotHoldIsRefusedUntilItCan() {
        let available = Mutex<Int?>(100 << 20)
        let f = ModelFolder(availableMemory: { available.withLock { $0 } })
        f.publish(version: 1)
        f.directory.reconcile()
        #expect(f.serving == 1)
        available.withLock { $0 = 64 << 20 }  // less than the 64 MiB to spare alone
        f.publish(version: 2)
        let refused = f.directory.reconcile()
        #expect(f.serving == 1)
        #expect(refused.rejected.first?.reason.contains("MiB of memory are available") == true)
        available.withLock { $0 = nil }  // unknown: no check
        f.directory.reconcile()
        #expect(f.serving == 2)
    }

    /// The memory available is read from /proc/meminfo and from the memory cgroup, v1 or v2, whichever is less.
    @Test func availableMemoryParsesMeminfoAndCgroups() {
        #expect(AvailableMemory.memAvailable(meminfo: "MemTotal:  1000 kB\nMemFree: 10 kB\nMemAvailable:    2048 kB\n") == 2_097_152)
        #expect(AvailableMemory.memAvailable(meminfo: "MemTotal: 1000 kB\n") == nil)
        let files: [String: String] = [
            "/sys/fs/cgroup/app/memory.max": "1073741824\n", "/sys/fs/cgroup/app/memory.current": "73741824\n",
            "/sys/fs/cgroup/free/memory.max": "max\n", "/sys/fs/cgroup/free/memory.current": "5\n",
            "/sys/fs/cgroup/memory/box/memory.limit_in_bytes": "2000\n", "/sys/fs/cgroup/memory/box/memory.usage_in_bytes": "500\n",
            "/sys/fs/cgroup/memory/none/memory.limit_in_bytes": "9223372036854771712\n",
            "/sys/fs/cgroup/memory/none/memory.usage_in_bytes": "500\n",
        ]
        let read: (String) -> String? = { files[$0] }
        #expect(AvailableMemory.cgroupRoom(cgroupFile: "0::/app\n", read: read) == 1_000_000_000)
        #expect(AvailableMemory.cgroupRoom(cgroupFile: "0::/free\n", read: read) == nil)
        #expect(AvailableMemory.cgroupRoom(cgroupFile: "9:name=systemd:/\n4:memory:/box\n0::/\n", read: read) == 1_500)
        #expect(AvailableMemory.cgroupRoom(cgroupFile: "4:cpu,memory:/none\n", read: read) == nil)
        #expect(AvailableMemory.cgroupRoom(cgroupFile: "0::/gone\n", read: read) == nil)
        #expect((AvailableMemory.bytes() ?? 0) > 0)  // this machine has /proc/meminfo
    }

    /// A model held as a private copy survives its file being truncated and rewritten in place (no SIGBUS, same
    /// verified bytes).
    @Test func copiedModelSurvivesInPlaceRewriteOfItsFile() throws {
        let f = ModelFolder()
        f.publish(version: 1, as: "m.kmodel")
        f.directory.reconcile()
        let served = try #require(f.store.snapshot("default"))
        f.writeInPlace([1, 2, 3], as: "m.kmodel")
        #expect(served.model.items.row(of: "item-199") == 199)
        try served.model.verifyGolden()
        f.directory.reconcile()
        #expect(f.serving == 1)
    }
}
