public import KairosKernels
public import KairosModelFormat
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One loaded model plus what scoring derives from it once at load time; immutable, shared by all requests.
///
/// Requests hold a reference for their whole duration, so a swapped-out model stays mapped until the last request
/// computed on it finishes (ARC is the reclamation scheme).
public final class ModelSnapshot: Sendable {
    /// The verified, mapped model file.
    public let model: MappedModel
    /// Unix seconds this snapshot started serving.
    public let loadedAt: Int64
    /// Decayed popularity divided by the largest one (0...1), per item; zeros without popularity.
    public let trend: [Float]
    /// Item rows ordered by decayed popularity, best first (the fallback ranking); sorted on first use, not at
    /// load, so a swap does not pay for it.
    public var trendingOrder: [Int32] {
        lazyTables.withLock { t in
            if let order = t.trendingOrder { return order }
            let order = Self.order(byDescending: trend)
            t.trendingOrder = order
            return order
        }
    }

    /// Rows by `values` descending, ties by lower row first; `values` are finite and >= 0 (as `trend` is). Sorted as
    /// one 64-bit key per row (bits of the complemented value, then the row): the first unknown-user TOPK on a 1M-item
    /// model, which sorts, took 80-82 ms this way against 132-154 ms with a comparator reading the values.
    static func order(byDescending values: [Float]) -> [Int32] {
        // For values >= 0 the bit patterns order as the values do; + 0 turns -0 into 0.
        var keys = values.enumerated().map { UInt64(~($0.element + 0).bitPattern) << 32 | UInt64($0.offset) }
        keys.sort()
        return keys.map { Int32(truncatingIfNeeded: $0 & 0xFFFF_FFFF) }
    }
    /// Freshness per item (0...1, `ItemFirstSeen.freshness` with the trainer's half-life); zeros when the model has
    /// no first-seen times or no `freshness_half_life_days` parameter.
    public let fresh: [Float]
    /// Item bias per item (zeros when the model has none).
    public let biases: [Float]
    /// Whether the model has item biases (`kairos train` writes none; SCORE then skips adding zeros).
    public var hasBiases: Bool { model.itemBiases != nil }
    /// Euclidean norm of each item's (dequantized) factors, for cosine similarity; computed on first use.
    public var itemNorms: [Float] {
        lazyTables.withLock { t in
            if let norms = t.itemNorms { return norms }
            let m = model.itemFactors
            var norms = [Float](repeating: 0, count: m.rows)
            for i in 0..<m.rows {
                let row = RowEncoder.decodeRow(i, of: m)
                norms[i] = row.withUnsafeBufferPointer { kernels.dot($0, row: i, of: m) }.squareRoot()
            }
            t.itemNorms = norms
            return norms
        }
    }

    /// Item rows by category id, ascending: category `c`'s are `rows[offsets[c]..<offsets[c + 1]]` (items without a
    /// category are in none); empty without attributes. Built on first use.
    public var categoryRows: (offsets: [Int], rows: [Int32]) {
        lazyTables.withLock { t in
            if let index = t.categoryRows { return index }
            let count = model.categoryNames?.count ?? 0
            var offsets = [Int](repeating: 0, count: count + 1)
            for c in itemCategories where Int(c) < count { offsets[Int(c) + 1] += 1 }
            for c in 0..<count { offsets[c + 1] += offsets[c] }
            var next = offsets
            var rows = [Int32](repeating: 0, count: offsets[count])
            for (i, c) in itemCategories.enumerated() where Int(c) < count {
                rows[next[Int(c)]] = Int32(i)
                next[Int(c)] += 1
            }
            t.categoryRows = (offsets, rows)
            return (offsets, rows)
        }
    }

    /// ``categoryRows`` if it is built already, else nil (without building it).
    public var builtCategoryRows: (offsets: [Int], rows: [Int32])? { lazyTables.withLock { $0.categoryRows } }

    /// Tables only some requests need, built by the first one.
    private let lazyTables = Mutex<(trendingOrder: [Int32]?, itemNorms: [Float]?, categoryRows: (offsets: [Int], rows: [Int32])?)>(
        (nil, nil, nil)
    )
    /// Typical (average) user vector norm: the scale a cold-start user's event-built vector is normalised to.
    public let typicalUserNorm: Float
    /// How much a known user's real-time events weigh against their vector (`parameters.realtime_weight`, learned
    /// by the trainer on validation sessions; 1 in files from before it was).
    public let realtimeWeight: Double
    /// Set when the model asks for the least-squares fold of a known user's real-time events
    /// (`parameters.realtime_fold` 1, PROTOCOL.md "realtime context"): the Gram matrix `Y'Y` of the item rows (the
    /// same function over the same rows as the trainer's, so both fold alike), with the fit's `alpha` and
    /// `regularization`. Nil: events are added to the user's vector and renormalised.
    public let leastSquaresFold: (gram: [Double], alpha: Double, regularization: Double)?
    /// With ``leastSquaresFold``: known users' history solves, kept for their next request with events (nil when the
    /// budget is 0).
    public let foldCache: FoldCache?
    /// Category name -> id.
    public let categoryIDs: [String: UInt32]
    /// Category id per item (`ItemAttributes.none` for none); empty without attributes. A plain array, because TOPK
    /// reads it for every item when it adds the user's category affinity or filters by category.
    public let itemCategories: [UInt32]
    /// The trainer's blend for ranking with the user's history excluded (metadata `scoring["exclude-seen"]`).
    public let excludeSeenBlend: BlendWeights
    /// The trainer's blend for ranking with repeats allowed (metadata `scoring["allow-repeats"]`).
    public let allowRepeatsBlend: BlendWeights
    /// Per-item additive terms of each default blend: dot weight x bias + trending weight x trend.
    let excludeSeenOffsets: [Float]
    let allowRepeatsOffsets: [Float]
    /// The kernels used for this snapshot.
    public let kernels: ScoringKernels
    /// On a CPU with AVX-512 VNNI, once ``buildDerivedTables()`` ran: what lets TOPK scans skip item rows that cannot
    /// make the top k (until then, and elsewhere, TOPK scans every row exactly, with the same results).
    public var itemScanBounds: ScanBounds? { scanBounds.withLock { $0?.rows } }
    /// Set with ``itemScanBounds`` (float32 and float16 rows): the same bounds for the item rows divided by their
    /// norms, which let SIMILAR's cosine scan skip rows the same way.
    public var itemCosineBounds: UnitRowBounds? { scanBounds.withLock { $0?.unit } }
    private let scanBounds = Mutex<(rows: ScanBounds, unit: UnitRowBounds?)?>(nil)
    /// Bytes this snapshot holds beyond its model (counted by the memory budget): the scan bounds and the tables
    /// built on first use, once built.
    public var derivedBytes: Int {
        let bounds = scanBounds.withLock { b in (b?.rows.byteCount ?? 0) + (b?.unit?.byteCount ?? 0) }
        let tables = lazyTables.withLock { t in
            4 * ((t.trendingOrder?.count ?? 0) + (t.itemNorms?.count ?? 0) + (t.categoryRows?.rows.count ?? 0))
                + 8 * (t.categoryRows?.offsets.count ?? 0)
        }
        return bounds + tables + (foldCache?.budgetBytes ?? 0)
    }

    /// Builds what requests would otherwise build on first use, and the scan bounds: the trending order (the
    /// unknown-user fallback), the category index, the item norms and the bounds (on 1M float32 items ~0.5 s). Not
    /// done in `init`, so a model starts serving without waiting for it; the server runs it in the background a
    /// second after the swap, so that the first unknown user after a swap does not wait for the sort.
    public func buildDerivedTables() {
        _ = trendingOrder
        if !itemCategories.isEmpty { _ = categoryRows }
        _ = itemNorms
        guard itemScanBounds == nil, let bounds = ScanBounds(matrix: model.itemFactors, kernels: kernels) else { return }
        // Not for int8 rows: their exact scan already reads one byte per value, and SIMILAR measured 15% slower with
        // bounds on a 1M-item int8 model (p50 4.7 ms against 4.1) instead of 2.5x faster as on float32.
        let unit =
            model.itemFactors.encoding == .int8 ? nil : itemNorms.withUnsafeBufferPointer { UnitRowBounds(bounds, norms: $0) }
        scanBounds.withLock { $0 = $0 ?? (bounds, unit) }
    }

    /// Name of the model.
    public var name: String { model.header.modelName }
    /// Version of the model.
    public var version: UInt64 { model.header.modelVersion }

    /// Bytes a snapshot keeps of known users' least-squares history solves unless told otherwise (about 3,800 users
    /// at 64 factors).
    public static let defaultFoldCacheBytes = 64 << 20

    /// Derives the scoring tables of `model` (call off the event loop: it touches every row); `foldCacheBytes` bounds
    /// ``foldCache``, which tells `foldCacheObserver` of its lookups.
    public init(
        model: MappedModel, loadedAt: Int64, kernels: ScoringKernels = .best, foldCacheBytes: Int = defaultFoldCacheBytes,
        foldCacheObserver: FoldCache.Observer? = nil
    ) {
        self.model = model
        self.loadedAt = loadedAt
        self.kernels = kernels
        let n = model.itemCount
        var trend = [Float](repeating: 0, count: n)
        if let p = model.popularity {
            var top: Float = 0
            for i in 0..<n { top = max(top, p.decayed(i)) }
            if top > 0 { for i in 0..<n { trend[i] = max(0, p.decayed(i) / top) } }
        }
        self.trend = trend
        realtimeWeight = model.metadata.parameters["realtime_weight"] ?? 1  // the loader checked 0...1e6
        let parameters = model.metadata.parameters
        if parameters["realtime_fold"] == 1, model.userFactors != nil {
            // The loader checked alpha, regularization and the factor count. 1M x 64 float32 rows: about 0.13 s (README).
            leastSquaresFold = (LeastSquaresFold.gram(of: model.itemFactors), parameters["alpha"]!, parameters["regularization"]!)
        } else {
            leastSquaresFold = nil
        }
        foldCache = leastSquaresFold != nil && foldCacheBytes > 0 ? FoldCache(budgetBytes: foldCacheBytes, dimensions: model.dimensions, observer: foldCacheObserver)
            : nil
        let freshHalfLife = model.metadata.parameters["freshness_half_life_days"] ?? 0
        if let firstSeen = model.firstSeen, freshHalfLife > 0 {
            fresh = firstSeen.freshness(halfLifeDays: freshHalfLife)
        } else {
            fresh = [Float](repeating: 0, count: n)
        }
        let biases = model.itemBiases.map(Array.init) ?? [Float](repeating: 0, count: n)
        self.biases = biases
        if let users = model.userFactors, users.rows > 0 {
            // Average norm over an even sample of at most 10k users.
            let sample = min(users.rows, 10_000)
            var total = 0.0
            for u in 0..<sample { total += Double(Self.norm(RowEncoder.decodeRow(u * (users.rows / sample), of: users))) }
            typicalUserNorm = Float(total / Double(sample))
        } else {
            typicalUserNorm = 1
        }
        var ids: [String: UInt32] = [:]
        if let names = model.categoryNames { for c in 0..<names.count { ids[names[c]] = UInt32(c) } }
        categoryIDs = ids
        if let attributes = model.attributes {
            itemCategories = (0..<n).map { attributes.category($0) ?? ItemAttributes.none }
        } else {
            itemCategories = []
        }
        excludeSeenBlend = BlendWeights(model.metadata.scoring?["exclude-seen"])
        allowRepeatsBlend = BlendWeights(model.metadata.scoring?["allow-repeats"])
        excludeSeenOffsets = excludeSeenBlend.offsets(biases: biases, trend: trend, fresh: fresh)
        allowRepeatsOffsets = allowRepeatsBlend.offsets(biases: biases, trend: trend, fresh: fresh)
    }

    /// The trainer's blend for one protocol.
    public func blend(allowRepeats: Bool) -> BlendWeights { allowRepeats ? allowRepeatsBlend : excludeSeenBlend }

    /// Precomputed offsets of the stored blend for one protocol.
    func defaultOffsets(allowRepeats: Bool) -> [Float] { allowRepeats ? allowRepeatsOffsets : excludeSeenOffsets }

    static func norm(_ v: [Float]) -> Float {
        var s: Float = 0
        for x in v { s += x * x }
        return s.squareRoot()
    }

    /// User row `row`'s stored history as least-squares fold weights, before any event.
    func storedConfidences(userRow row: Int) -> LeastSquaresFold.Confidences {
        guard let entries = model.history?.entries(ofUser: row) else {
            return LeastSquaresFold.Confidences(historyItems: [], weights: [])
        }
        return LeastSquaresFold.Confidences(historyItems: entries.items, weights: entries.weights)
    }

    /// The history's half of a least-squares fold for `confidences` (the requests' and the warm-up's one way of
    /// making it, so a kept solve is the one a miss would make); nil without ``leastSquaresFold``.
    func historySolve(confidences: LeastSquaresFold.Confidences) -> LeastSquaresFold.HistorySolve? {
        guard let fold = leastSquaresFold else { return nil }
        var rows: [Float] = []
        rows.reserveCapacity(confidences.historyCount * model.dimensions)
        for e in 0..<confidences.historyCount {
            RowEncoder.decodeRow(Int(confidences.items[e]), of: model.itemFactors, appendingTo: &rows)
        }
        return LeastSquaresFold.historySolve(
            gram: fold.gram, regularization: fold.regularization, alpha: fold.alpha, confidences: confidences,
            historyRows: rows, dimensions: model.dimensions
        )
    }

    /// Makes this snapshot's ``foldCache`` solves for the users `predecessor`'s cache keeps (matched by id: rows
    /// differ between models), newest first, until the cache is full or `deadline` passes. Call
    /// before this snapshot serves: a swap then does not turn every active user's next request with events into a
    /// whole fold. Returns how many users it warmed.
    public func warmFoldCache(from predecessor: ModelSnapshot, until deadline: ContinuousClock.Instant) -> Int {
        // A fold cache exists only for a least-squares model with user factors.
        guard let cache = foldCache, let kept = predecessor.foldCache, let ids = predecessor.model.users, let users = model.users
        else { return 0 }
        var warmed = 0
        for oldRow in kept.users() {
            guard ContinuousClock.now < deadline else { break }
            guard let row = users.row(ofUTF8: UnsafeRawBufferPointer(ids.table.bytes(at: oldRow))),
                let solve = historySolve(confidences: storedConfidences(userRow: row))
            else { continue }
            guard cache.warm(user: row, solve: solve) else { break }
            warmed += 1
        }
        return warmed
    }
}

/// How TOPK combines its signals: `dot x (u . v + bias) + trending x T + buy-again x H + category x A + freshness x F`,
/// where T is decayed popularity over its maximum, H the user's history weight of the item over their largest, A the
/// user's share of history weight in the item's category and F the item's freshness (the trainer's definitions,
/// `proto-spec/METRICS.md`).
public struct BlendWeights: Sendable, Equatable {
    public var dot: Float
    public var trending: Float
    public var buyAgain: Float
    public var category: Float
    public var freshness: Float

    public init(dot: Float = 1, trending: Float = 0, buyAgain: Float = 0, category: Float = 0, freshness: Float = 0) {
        self.dot = dot
        self.trending = trending
        self.buyAgain = buyAgain
        self.category = category
        self.freshness = freshness
    }

    /// Weights from a metadata `scoring` entry; a model without one ranks by the dot product (plus bias) alone.
    init(_ stored: [String: Double]?) {
        guard let stored else {
            self.init()
            return
        }
        self.init(
            dot: Float(stored["dot"] ?? 0),
            trending: Float(stored["trending"] ?? 0),
            buyAgain: Float(stored["buy-again"] ?? 0),
            category: Float(stored["category"] ?? 0),
            freshness: Float(stored["freshness"] ?? 0)
        )
    }

    /// `dot x bias + trending x trend + freshness x fresh` per item.
    func offsets(biases: [Float], trend: [Float], fresh: [Float]) -> [Float] {
        (0..<biases.count).map { offset($0, biases: biases, trend: trend, fresh: fresh) }
    }

    /// Item `i`'s entry of ``offsets(biases:trend:fresh:)``, the same operations.
    @inline(__always)
    func offset(_ i: Int, biases: [Float], trend: [Float], fresh: [Float]) -> Float {
        dot * biases[i] + trending * trend[i] + freshness * fresh[i]
    }
}
