import KairosKernels
import KairosModelFormat
public import KairosProtocol
import KairosScoring
public import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Turns one decoded frame into a response: decode, look up the model, score. Knows nothing of sockets.
public final class RequestRouter: Sendable {
    /// What to do with one request.
    public enum Plan: Sendable {
        /// The response, computed inline (microseconds of work).
        case done(Response)
        /// A full-catalogue scan: run it off the event loop so it cannot stall other connections.
        case offload(@Sendable () -> Response)
    }

    /// Protocol versions this server speaks.
    public static let versions: [UInt8] = [FrameHeader.version]
    /// The server's name in HELLO.
    public static let serverName = "kairos 0.1"

    public let store: ModelStore
    public let limits: ServerLimits
    public let stats: ServerStats
    /// Full scans that read more item-row bytes than this run on the thread pool, smaller ones inline. A scan's cost
    /// follows the bytes it reads, not the item count (an int8 row is a quarter of a float32 one; a bounded ranking
    /// scan reads one byte per column whatever the encoding).
    public let offloadAboveBytes: Int
    /// 8 MiB: about 0.2 ms of scanning here (100k int8 rows of 64 stay inline, 100k float32 rows go to the pool).
    /// Measured with 2,000 TOPK/s beside 50 SCORE connections on 2 cores: inline int8 scans took TOPK p99 from
    /// 6.7-7.3 ms (offloaded: two thread hand-offs waiting for a busy CPU) to 3.0-3.9 ms, for 5-10% of the SCORE
    /// throughput alongside.
    public static let defaultOffloadAboveBytes = 8 << 20
    /// The clock for requests without `now` (unix seconds).
    let clock: @Sendable () -> Int64
    /// The models folder, for the admin operations (RELOAD, PIN, ROLLBACK); nil disables them.
    public let directory: ModelDirectory?

    public init(
        store: ModelStore,
        limits: ServerLimits = .standard,
        stats: ServerStats = ServerStats(),
        offloadAboveBytes: Int = RequestRouter.defaultOffloadAboveBytes,
        directory: ModelDirectory? = nil,
        clock: @escaping @Sendable () -> Int64 = RequestRouter.systemClock
    ) {
        self.directory = directory
        self.store = store
        self.limits = limits
        self.stats = stats
        self.offloadAboveBytes = offloadAboveBytes
        self.clock = clock
    }

    /// Unix seconds from the system clock.
    public static let systemClock: @Sendable () -> Int64 = { Int64(time(nil)) }

    /// Plans the answer to a frame with `opcode` and `payload`.
    public func plan(opcode: UInt8, payload: ByteBuffer) -> Plan {
        let request: Request
        do {
            request = try Request.decode(opcode: opcode, payload: payload, limits: limits)
        } catch {
            return .done(.error(error))
        }
        let now = clock()
        switch request {
        case .ping:
            return .done(.pong)
        case .hello(let offered):
            let chosen = Self.versions.filter { offered.contains($0) }.max() ?? 0
            return .done(.hello(chosen: chosen, versions: Self.versions, limits: limits, server: Self.serverName))
        case .info:
            return .done(.info(limits: limits, models: modelInfos()))
        case .reload, .pin, .rollback:
            guard let directory else {
                return .done(.error(ProtocolError(.badRequest, "admin operations are disabled on this server")))
            }
            // Loading and verifying a model takes milliseconds to seconds: never on an event loop.
            return .offload {
                do throws(ServingError) {
                    let report: ModelDirectory.Report
                    switch request {
                    case .pin(let name, let version): report = try directory.pin(name, version: version)
                    case .rollback(let name): report = try directory.rollback(name)
                    default: report = directory.reconcile()
                    }
                    let rejected = report.rejected.map { "\($0.file): \($0.reason)" }
                    return .serving(opcode: request.opcode, models: self.modelInfos(), rejected: rejected)
                } catch {
                    return .error(ProtocolError(.unknownModel, error.description))
                }
            }
        case .stats:
            let uptime = (ServerStats.nanoseconds() - stats.startedAt) / 1_000_000_000
            return .done(stats.snapshot(uptimeSeconds: uptime))
        case .score(let r):
            return withModel(r.model) { s in .score(Scorer.score(r, on: s, now: now)) }
        case .topK(let r):
            return withModel(r.model, scan: .ranking(category: r.category, gatherBelow: Scorer.topKGatherBelow)) { s in
                .topK(Scorer.topK(r, on: s, now: now))
            }
        case .similar(let r):
            return withModel(r.model, scan: .ranking(category: r.category, gatherBelow: Scorer.similarGatherBelow)) { s in
                guard let list = Scorer.similar(r, on: s) else {
                    return .error(ProtocolError(.unknownItem, "item \"\(r.item)\" is not in model \(s.name) v\(s.version)"))
                }
                return .similar(list)
            }
        case .pushDecide(let r):
            return withModel(r.model, scan: .ranking(category: "", gatherBelow: 0)) { s in
                .pushDecide(PushPolicy.decide(r, on: s, now: now))
            }
        }
    }

    /// INFO's description of every model serving.
    func modelInfos() -> [ModelInfo] {
        store.all().map { s in
            ModelInfo(
                name: s.name,
                version: s.version,
                dimensions: UInt32(s.model.dimensions),
                items: UInt32(s.model.itemCount),
                users: UInt32(s.model.userCount),
                encoding: s.model.itemFactors.encoding.description,
                loadedAt: s.loadedAt,
                checksum: s.model.header.checksum
            )
        }
    }

    /// What a request reads of the item rows: nothing (SCORE) or a ranking scan (TOPK, SIMILAR, PUSH_DECIDE), which
    /// reads mostly the 1-byte codes once the snapshot has scan bounds, or only a category's rows when the request
    /// gathers them (a category of at most 1/`gatherBelow` of the items; see ``Scorer/rowsToGather``).
    enum ScanKind {
        case none
        case ranking(category: String, gatherBelow: Int)
    }

    /// Resolves the model, then runs `body` inline or (for scans of large catalogues) off the event loop.
    func withModel(_ ref: ModelRef, scan: ScanKind = .none, _ body: @escaping @Sendable (ModelSnapshot) -> Response) -> Plan {
        guard let s = store.snapshot(ref.name) else {
            return .done(.error(ProtocolError(.unknownModel, "no model named \"\(ref.name)\" is loaded")))
        }
        guard ref.version == 0 || ref.version == s.version else {
            return .done(.error(ProtocolError(.unknownModel, "model \(ref.name) serves version \(s.version), not \(ref.version)")))
        }
        let m = s.model.itemFactors
        let bytes: Int
        switch scan {
        case .none:
            bytes = 0
        case .ranking(let category, let below):
            let catalogue = m.rows * (s.itemScanBounds != nil ? m.cols : m.rowStride)
            if category.isEmpty {
                bytes = catalogue
            } else if let c = s.categoryIDs[category] {
                // A small category is ranked from its own rows, so it stays on the event loop like a SCORE; until the
                // category index is built it counts as a scan.
                let rows = Scorer.rowsToGather(category: c, below: below, on: s, build: false)
                bytes = rows.map { $0.count * m.rowStride } ?? catalogue
            } else {
                bytes = 0  // no item has an unknown category: answered at once
            }
        }
        if bytes > offloadAboveBytes { return .offload { body(s) } }
        return .done(body(s))
    }
}
