import Dispatch
public import KairosModelFormat
import KairosScoring
public import Logging
import Metrics
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The models folder and the policy that decides what serves from it.
///
/// Files: any `*.kmodel` not starting with a dot (publishers write `.name.tmp` files and rename them). Each file's
/// header names its model and version. Per model name the highest version whose file fully verifies serves, unless a
/// version is pinned (PIN / ROLLBACK). Versions never move backwards on their own: a file with a lower version than
/// the one serving is ignored until pinned. A file that fails verification is rejected once per identity (inode,
/// size, mtime) and retried only when it changes; what served keeps serving. Deleting a file does not unload its
/// model (an accidental `rm` must not take traffic down); publish a newer version or pin another one instead.
public final class ModelDirectory: Sendable {
    /// What a reconcile pass did.
    public struct Report: Sendable, CustomStringConvertible {
        /// Models whose serving version changed: (name, old version or nil, new version).
        public var installed: [(name: String, from: UInt64?, to: UInt64)] = []
        /// Files rejected in this pass, with why.
        public var rejected: [(file: String, reason: String)] = []
        /// Per installed model: the users whose least-squares history solves were made before it served, for the
        /// users its predecessor had kept (``ModelSnapshot/warmFoldCache(from:until:)``).
        public var warmedUsers: [String: Int] = [:]

        public var description: String {
            (installed.map { "\($0.name) \($0.from.map { "v\($0)" } ?? "-") -> v\($0.to)" }
                + rejected.map { "rejected \($0.file): \($0.reason)" }).joined(separator: "; ")
        }
    }

    struct FileRecord {
        var identity: ModelFileIdentity
        var name: String?
        var version: UInt64?
        /// Why the file cannot serve (nil if it can, as far as is known).
        var error: String?
    }

    struct State {
        var files: [String: FileRecord] = [:]
        var pins: [String: UInt64] = [:]
        /// The file each model serves from, with its identity when loaded.
        var serving: [String: (file: String, identity: ModelFileIdentity)] = [:]
    }

    /// The folder.
    public let path: String
    /// The snapshots served.
    public let store: ModelStore
    /// How files are loaded (copied into memory by default: safe against in-place rewrites).
    public let storage: LoadOptions.Storage
    /// Upper bound on the bytes all loaded models may hold, the one being loaded included.
    public let memoryBudget: Int?
    /// Bytes of memory available to a load now (nil: unknown), checked before a copied load.
    let availableMemory: @Sendable () -> Int?
    /// What a copied load needs beyond the file: its derived tables (scan bounds, at most a quarter of the rows) and
    /// this much to spare.
    static let loadHeadroom = 64 << 20
    /// Bytes each snapshot keeps of least-squares history solves (``ModelSnapshot/foldCache``).
    let foldCacheBytes: Int
    /// At most this long per swap is spent making the new snapshot's fold cache for the users the old one kept (zero:
    /// no warm-up); the swap waits for it.
    let foldCacheWarmup: Duration
    let logger: Logger
    private let state = Mutex(State())
    private let generationCounter = Atomic<UInt64>(0)
    private let reloads = Counter(label: "kairos_model_reloads_total", dimensions: [("result", "ok")])
    private let rejections = Counter(label: "kairos_model_reloads_total", dimensions: [("result", "rejected")])
    private let generationGauge = Gauge(label: "kairos_model_generation")
    private let loadTimer = Metrics.Timer(label: "kairos_model_load_seconds")
    private let foldCacheHits = Counter(label: "kairos_fold_cache_requests_total", dimensions: [("result", "hit")])
    private let foldCacheMisses = Counter(label: "kairos_fold_cache_requests_total", dimensions: [("result", "miss")])
    /// Every reconcile pass's report, for whoever wants to follow the folder (tests, tooling).
    public let reports: AsyncStream<Report>
    private let reportSink: AsyncStream<Report>.Continuation

    public init(
        path: String,
        store: ModelStore,
        storage: LoadOptions.Storage = .copied,
        memoryBudget: Int? = nil,
        foldCacheBytes: Int = 64 << 20,  // ModelSnapshot.defaultFoldCacheBytes (internal import here)
        foldCacheWarmup: Duration = .milliseconds(250),
        availableMemory: @escaping @Sendable () -> Int? = AvailableMemory.bytes,
        logger: Logger
    ) {
        self.foldCacheBytes = foldCacheBytes
        self.foldCacheWarmup = foldCacheWarmup
        self.path = path
        self.store = store
        self.storage = storage
        self.memoryBudget = memoryBudget
        self.availableMemory = availableMemory
        self.logger = logger
        (reports, reportSink) = AsyncStream.makeStream(of: Report.self, bufferingPolicy: .bufferingNewest(1024))
    }

    /// How many model installs have happened (the model generation).
    public var generation: UInt64 { generationCounter.load(ordering: .relaxed) }

    /// Pins `name` to `version` (0 = unpin) and reconciles. Throws when no valid file of that version exists.
    public func pin(_ name: String, version: UInt64) throws(ServingError) -> Report {
        let known = state.withLock { s in s.files.values.contains { $0.name == name && $0.version == version && $0.error == nil } }
        if version != 0 && !known {
            _ = reconcile()  // maybe the file just arrived
            let found = state.withLock { s in s.files.values.contains { $0.name == name && $0.version == version && $0.error == nil } }
            guard found else { throw ServingError("no valid file of \(name) version \(version) in \(path)") }
        }
        state.withLock { s in
            if version == 0 { s.pins[name] = nil } else { s.pins[name] = version }
        }
        let report = reconcile()
        if version != 0, store.snapshot(name)?.version != version {
            state.withLock { $0.pins[name] = nil }
            throw ServingError("version \(version) of \(name) could not be loaded: \(report)")
        }
        return report
    }

    /// Pins `name` to the highest valid version below the one serving.
    public func rollback(_ name: String) throws(ServingError) -> Report {
        guard let current = store.snapshot(name)?.version else { throw ServingError("no model named \(name) serves") }
        let previous = state.withLock { s in
            s.files.values.filter { $0.name == name && $0.error == nil && ($0.version ?? 0) < current }.compactMap(\.version).max()
        }
        guard let previous else { throw ServingError("no valid version of \(name) below \(current) in \(path)") }
        return try pin(name, version: previous)
    }

    /// Pinned versions by model name.
    public var pins: [String: UInt64] { state.withLock { $0.pins } }

    /// Brings what serves in line with the folder (one pass at a time; loads happen on the calling thread).
    @discardableResult
    public func reconcile() -> Report {
        let report = state.withLock { s in reconcile(&s) }
        reportSink.yield(report)
        return report
    }

    private func reconcile(_ s: inout State) -> Report {
        var report = Report()
        let names = ModelStore.modelFiles(in: path)
        // Forget files that are gone (their models keep serving, by policy).
        for gone in Set(s.files.keys).subtracting(names) { s.files[gone] = nil }
        for file in names {
            guard let identity = ModelFileIdentity(path: "\(path)/\(file)") else { continue }
            if let known = s.files[file], known.identity == identity { continue }
            do {
                let header = try ModelFileLayout.readHeader(path: "\(path)/\(file)")
                s.files[file] = FileRecord(identity: identity, name: header.modelName, version: header.modelVersion, error: nil)
            } catch {
                s.files[file] = FileRecord(identity: identity, name: nil, version: nil, error: "\(error)")
                report.rejected.append((file, "\(error)"))
                rejected(file, "\(error)")
            }
        }
        let modelNames = Set(s.files.values.compactMap(\.name))
        for name in modelNames.sorted() {
            let current = store.snapshot(name)
            // Candidates best first: the pinned version only, or every version not below the one serving.
            let candidates = s.files.filter { $0.value.name == name && $0.value.error == nil }
                .filter { entry in
                    let v = entry.value.version!
                    if let pin = s.pins[name] { return v == pin }
                    return current == nil || v >= current!.version
                }
                .sorted { ($0.value.version!, $0.key) > ($1.value.version!, $1.key) }
            for (file, record) in candidates {
                if let serving = s.serving[name], serving.file == file, serving.identity == record.identity,
                    current?.version == record.version
                {
                    break  // already serving this very file
                }
                if let budget = memoryBudget {
                    let loaded = store.all().reduce(0) { $0 + $1.model.residentBytes + $1.derivedBytes }
                    if loaded + record.identity.size > budget {
                        let reason = "over the memory budget: \(loaded) bytes loaded + \(record.identity.size) > \(budget)"
                        report.rejected.append((file, reason))
                        rejected(file, reason)
                        continue  // retried next pass: the budget may allow it then
                    }
                }
                // A copied load of a file larger than the memory left would not fail cleanly: the copy's pages are
                // committed as they are written, and the OOM killer then ends the process, the models already serving
                // with it. So it is refused (and retried next pass) while the memory is not there.
                if storage == .copied, let available = availableMemory() {
                    let size = Int(record.identity.size)
                    let needed = size + size / 4 + Self.loadHeadroom
                    if needed > available {
                        let reason = "needs about \(needed >> 20) MiB to load (the file, its derived tables and 64 MiB to spare), "
                            + "and \(available >> 20) MiB of memory are available (--load mmap maps files instead of copying them)"
                        report.rejected.append((file, reason))
                        rejected(file, reason)
                        continue
                    }
                }
                let started = ContinuousClock.now
                do {
                    let model = try MappedModel(path: "\(path)/\(file)", options: LoadOptions(storage: storage, prefault: true, verifyGolden: true))
                    // The bytes read must be the bytes we identified (an in-place writer may be mid-way).
                    guard model.header.modelName == name, model.header.modelVersion == record.version,
                        ModelFileIdentity(path: "\(path)/\(file)") == record.identity
                    else { throw ServingError("the file changed while it was loading") }
                    let (hits, misses) = (foldCacheHits, foldCacheMisses)
                    let snapshot = ModelSnapshot(
                        model: model, loadedAt: Int64(time(nil)), foldCacheBytes: foldCacheBytes,
                        foldCacheObserver: FoldCache.Observer(hit: { hits.increment() }, miss: { misses.increment() })
                    )
                    // The users the old snapshot kept solves for are the ones sending events now: made before the
                    // swap, their first requests after it find them (934 ml-100k users: about 50-60 ms more per swap,
                    // run-fold-cache-warmup.sh).
                    let warmed = current.map { snapshot.warmFoldCache(from: $0, until: .now + foldCacheWarmup) } ?? 0
                    store.install(snapshot)
                    buildDerivedTables(for: snapshot, name: name)
                    s.serving[name] = (file, record.identity)
                    let generation = generationCounter.add(1, ordering: .relaxed).newValue
                    generationGauge.record(Int(generation))
                    Self.recordServing(model, name: name, loadedAt: snapshot.loadedAt)
                    reloads.increment()
                    let took = ContinuousClock.now - started
                    loadTimer.record(duration: took)
                    report.installed.append((name, current?.version, record.version!))
                    if warmed > 0 { report.warmedUsers[name] = warmed }
                    logger.info(
                        "model serving",
                        metadata: [
                            "model.name": "\(name)", "model.version": "\(record.version!)", "model.path": "\(path)/\(file)",
                            "model.generation": "\(generation)", "model.previous": "\(current.map { "\($0.version)" } ?? "none")",
                            "model.load_ms": "\(took.milliseconds)", "model.fold_cache_warmed_users": "\(warmed)",
                        ]
                    )
                    break
                } catch {
                    s.files[file]?.error = "\(error)"
                    report.rejected.append((file, "\(error)"))
                    rejected(file, "\(error)")
                }
            }
        }
        return report
    }

    /// Builds a freshly installed snapshot's derived tables and scan bounds on a background queue, once it has served
    /// for a second: the swap does not wait for them (TOPK scans exactly until they exist, and a request that needs a
    /// table first builds it), and in a burst of swaps the snapshots superseded within that second are never built for (in run-reload-soak.py's back-to-back swaps, building each
    /// one at once took CPU from the next load: rename -> serving p50 58-61 ms without builds, 81-85 ms with, measured
    /// when the soak still polled INFO in a busy loop).
    private func buildDerivedTables(for snapshot: ModelSnapshot, name: String) {
        let store = self.store
        Self.boundsQueue.asyncAfter(deadline: .now() + .seconds(1)) { [weak snapshot] in
            guard let snapshot, store.snapshot(name) === snapshot else { return }
            snapshot.buildDerivedTables()
        }
    }

    /// Per-model gauges of what serves now, so that a stalled retrain pipeline can be alerted on (`time() -
    /// kairos_model_data_time_seconds > 2 * 86400`) and a fleet's versions compared.
    static func recordServing(_ model: MappedModel, name: String, loadedAt: Int64) {
        let labels = [("model", name)]
        Gauge(label: "kairos_model_version", dimensions: labels).record(Double(model.header.modelVersion))
        Gauge(label: "kairos_model_data_time_seconds", dimensions: labels).record(Double(dataTime(of: model)))
        Gauge(label: "kairos_model_loaded_time_seconds", dimensions: labels).record(Double(loadedAt))
    }

    /// What `kairos_model_data_time_seconds` reports: the newest event of the training data (the trending reference
    /// time), or the file's creation time for a model without popularity.
    static func dataTime(of model: MappedModel) -> Int64 { model.popularity?.referenceTime ?? model.header.createdAt }

    /// One queue for every directory: builds run one at a time, at low priority.
    private static let boundsQueue = DispatchQueue(label: "kairos.scan-bounds", qos: .utility)

    private func rejected(_ file: String, _ reason: String) {
        rejections.increment()
        logger.error("model file rejected", metadata: ["model.path": "\(path)/\(file)", "error": "\(reason)"])
    }
}

/// A serving-policy failure (pin to a missing version, rollback with nothing to roll back to).
public struct ServingError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension Duration {
    /// Whole milliseconds.
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
