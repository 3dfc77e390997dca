import Glibc
import KairosClient
import KairosModelFormat
import KairosProtocol
import KairosScoring
import KairosServer
import Logging
import NIOCore
import Synchronization
import Testing

/// Follows a folder's reconcile reports; `until` waits for one that satisfies a condition, with a deadline so a
/// missing event fails the test instead of hanging it.
final class ReportFollower: @unchecked Sendable {
    private var iterator: AsyncStream<ModelDirectory.Report>.Iterator

    init(_ directory: ModelDirectory) { iterator = directory.reports.makeAsyncIterator() }

    func next() async -> ModelDirectory.Report? { await iterator.next() }

    func until(seconds: Double = 20, _ done: @escaping @Sendable (ModelDirectory.Report) -> Bool) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                while let report = await self.next() {
                    if done(report) { return true }
                }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))  // a deadline, not synchronization
                return false
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
    }
}

/// What the load connections saw, and whether they should keep going.
final class LoadLog: Sendable {
    let state = Mutex<(versions: [[UInt64]], failures: [String])>(([], []))
    let running = Atomic<Bool>(true)
    /// Connections that have been answered at least once.
    let answering = Atomic<Int>(0)
}

@Suite(.serialized) struct HotReloadTests {
    /// 50 publications under continuous load (renames, corrupt and truncated files, in-place writes caught half
    /// written): zero failed requests, every answer from a version that was valid, versions only moving forward
    /// on each connection, and the bad files never serving.
    @Test func fiftyPublicationsUnderLoad() async throws {
        let f = ModelFolder()
        f.publish(version: 1)
        f.directory.reconcile()
        let reports = ReportFollower(f.directory)
        _ = await reports.next()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        var config = ServerConfiguration()
        config.port = 0
        let server = KairosServer(configuration: config, store: f.store, directory: f.directory, logger: logger)
        let port = try await server.start()
        let watcher = ModelWatcher(directory: f.directory, debounce: .milliseconds(20), rescanInterval: .seconds(3600), logger: logger)
        let watching = Task { try await watcher.run() }

        let log = LoadLog()
        var load: [Task<Void, Never>] = []
        for c in 0..<4 {
            load.append(Task {
                var seen: [UInt64] = []
                do {
                    // The timeout only bounds a failure (5 s, the default, timed out about once in ten full runs).
                    let client = try await KairosClient.connect(port: port, timeout: .seconds(30))
                    while log.running.load(ordering: .relaxed) {
                        let r = try await client.score(ScoreRequest(model: ModelRef(name: "default"), user: "user-\(c)", candidates: ["item-1", "item-7"]))
                        if seen.isEmpty { log.answering.add(1, ordering: .relaxed) }
                        if seen.last != r.model.version { seen.append(r.model.version) }
                    }
                    await client.close()
                } catch {
                    log.state.withLock { $0.failures.append("connection \(c): \(error)") }
                }
                log.state.withLock { $0.versions.append(seen) }
            })
        }

        // The load must overlap the publications: under other tests' load its tasks can start late.
        let deadline = ContinuousClock.now + .seconds(20)
        while log.answering.load(ordering: .relaxed) < load.count && ContinuousClock.now < deadline { await Task.yield() }
        var valid: Set<UInt64> = [1]
        var invalid: Set<UInt64> = []
        publications: for v in UInt64(2)...51 {
            switch v % 5 {
            case 0:  // corrupt, published by rename
                var bytes = ModelFolder.bytes(version: v)
                bytes[bytes.count / 2] ^= 0x20
                try ModelWriterTestSupport.rename(bytes, into: f.path, as: "corrupt-\(v).kmodel")
                invalid.insert(v)
                guard await reports.until({ $0.rejected.contains { $0.file == "corrupt-\(v).kmodel" } }) else {
                    Issue.record("publication \(v): the expected reload report did not come")
                    break publications
                }
            case 1:  // truncated, published by rename
                let bytes = ModelFolder.bytes(version: v)
                try ModelWriterTestSupport.rename(Array(bytes.prefix(bytes.count - 64)), into: f.path, as: "cut-\(v).kmodel")
                invalid.insert(v)
                guard await reports.until({ $0.rejected.contains { $0.file == "cut-\(v).kmodel" } }) else {
                    Issue.record("publication \(v): the expected reload report did not come")
                    break publications
                }
            case 2:  // written in place, and seen half written by a rescan first
                let bytes = ModelFolder.bytes(version: v)
                let fd = open("\(f.path)/inplace.kmodel", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                bytes.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count / 2) }
                let early = f.directory.reconcile()
                #expect(early.installed.isEmpty && early.rejected.contains { $0.file == "inplace.kmodel" })
                bytes.withUnsafeBytes { _ = write(fd, $0.baseAddress! + $0.count / 2, $0.count - $0.count / 2) }
                close(fd)
                valid.insert(v)
                guard await reports.until({ $0.installed.contains { $0.to == v } }) else {
                    Issue.record("publication \(v): the expected reload report did not come")
                    break publications
                }
            default:
                f.publish(version: v)
                valid.insert(v)
                guard await reports.until({ $0.installed.contains { $0.to == v } }) else {
                    Issue.record("publication \(v): the expected reload report did not come")
                    break publications
                }
            }
        }
        log.running.store(false, ordering: .relaxed)
        for t in load { await t.value }
        watcher.stop()
        _ = try? await watching.value
        await server.shutdown()

        let (versions, failures) = log.state.withLock { ($0.versions, $0.failures) }
        #expect(failures.isEmpty, "\(failures)")
        #expect(versions.count == 4)
        for seen in versions {
            #expect(seen == seen.sorted(), "versions went backwards: \(seen)")
            #expect(Set(seen).isSubset(of: valid) && Set(seen).isDisjoint(with: invalid), "\(seen)")
        }
        #expect(f.serving == valid.max())
        #expect(versions.contains { $0.count > 1 }, "no connection saw a swap: the load did not overlap the publications")
    }

    /// A deploy that flips the models path (a symlink to a release folder) is noticed by inotify, not by the periodic
    /// rescan (an hour here), atomically or not, and files published into the new folder are seen too.
    @Test func aReplacedFolderIsWatchedAgain() async throws {
        var template = Array("/tmp/kairos-flip-test-XXXXXX".utf8CString)
        let root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer {
            for release in ["r1", "r2", "r3"] {
                for name in ModelStoreFiles.list("\(root)/\(release)") { unlink("\(root)/\(release)/\(name)") }
                rmdir("\(root)/\(release)")
            }
            unlink("\(root)/models")
            unlink("\(root)/models.next")
            rmdir(root)
        }
        func release(_ v: UInt64) throws {
            mkdir("\(root)/r\(v)", 0o755)
            try ModelWriterTestSupport.rename(ModelFolder.bytes(version: v), into: "\(root)/r\(v)", as: "default.kmodel")
        }
        try release(1)
        try release(2)
        try release(3)
        symlink("r1", "\(root)/models")
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let store = ModelStore()
        let directory = ModelDirectory(path: "\(root)/models", store: store, logger: logger)
        directory.reconcile()
        #expect(store.snapshot("default")?.version == 1)
        let reports = ReportFollower(directory)
        let watcher = ModelWatcher(directory: directory, debounce: .milliseconds(20), rescanInterval: .seconds(3600), logger: logger)
        let watching = Task { try await watcher.run() }
        _ = await reports.next()  // the pass at start

        symlink("r2", "\(root)/models.next")
        #expect(rename("\(root)/models.next", "\(root)/models") == 0)  // the atomic flip
        #expect(await reports.until(seconds: 10) { $0.installed.contains { $0.to == 2 } }, "the flip to r2 was not noticed")
        unlink("\(root)/models")
        symlink("r3", "\(root)/models")  // as `ln -sfn` does it: remove, then create
        #expect(await reports.until(seconds: 10) { $0.installed.contains { $0.to == 3 } }, "the flip to r3 was not noticed")
        try ModelWriterTestSupport.rename(ModelFolder.bytes(version: 4), into: "\(root)/r3", as: "default-v4.kmodel")
        #expect(await reports.until(seconds: 10) { $0.installed.contains { $0.to == 4 } }, "a file in the new folder was not noticed")
        watcher.stop()
        _ = try? await watching.value
        #expect(store.snapshot("default")?.version == 4)
    }
}

/// Publishing helpers for tests (the server's own publish path is `kairos publish` / ModelWriter.publish).
enum ModelWriterTestSupport {
    /// Writes `bytes` to a hidden temp file in `folder` and renames it to `name` (the right way, even for bad bytes).
    static func rename(_ bytes: [UInt8], into folder: String, as name: String) throws {
        let tmp = "\(folder)/.\(name).tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        bytes.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard Glibc.rename(tmp, "\(folder)/\(name)") == 0 else { throw ServingError("rename failed") }
    }
}
