#if canImport(Glibc)
    import Glibc
#endif

/// Binary-relevance ranking metrics at a cut-off K, averaged over users (definitions in proto-spec/METRICS.md).
public struct RankingMetrics: Sendable, Equatable {
    /// Mean of `hits@K / |truth|`.
    public var recall = 0.0
    /// Mean of `DCG@K / IDCG@K` with gains `1 / log2(rank + 1)`.
    public var ndcg = 0.0
    /// Mean of `(sum over hit ranks r of precision@r) / min(K, |truth|)`.
    public var map = 0.0
    /// Mean of `hits@K / K`.
    public var precision = 0.0
    /// Distinct items recommended across all users / catalogue size.
    public var coverage = 0.0
    /// Users averaged over.
    public var users = 0

    public init() {}

    /// The metrics as `name@K -> value`, the shape stored in model metadata and the metrics JSON.
    public func dictionary(k: Int) -> [String: Double] {
        [
            "recall@\(k)": recall, "ndcg@\(k)": ndcg, "map@\(k)": map, "precision@\(k)": precision,
            "coverage@\(k)": coverage, "users": Double(users),
        ]
    }
}

/// Accumulates per-user rankings into ``RankingMetrics``.
package struct MetricsAccumulator {
    let k: Int
    let catalogue: Int
    var sums = RankingMetrics()
    var recommended: Set<Int32> = []
    /// NDCG@K of each user added, in order (for paired comparisons of two rankers on the same users).
    package var userNDCG: [Double] = []

    /// An empty accumulator for cut-off `k` over a catalogue of `catalogue` items.
    package init(k: Int, catalogue: Int) {
        self.k = k
        self.catalogue = catalogue
    }

    /// Adds one user's ranking (best first, at most K used) against their relevant items.
    package mutating func add(ranked: [Int32], truth: Set<Int32>) {
        guard !truth.isEmpty else { return }
        var hits = 0
        var dcg = 0.0
        var ap = 0.0
        for (r, item) in ranked.prefix(k).enumerated() {
            recommended.insert(item)
            if truth.contains(item) {
                hits += 1
                dcg += 1 / log2(Double(r + 2))
                ap += Double(hits) / Double(r + 1)
            }
        }
        var idcg = 0.0
        for r in 0..<min(k, truth.count) { idcg += 1 / log2(Double(r + 2)) }
        sums.recall += Double(hits) / Double(truth.count)
        sums.ndcg += dcg / idcg
        userNDCG.append(dcg / idcg)
        sums.map += ap / Double(min(k, truth.count))
        sums.precision += Double(hits) / Double(k)
        sums.users += 1
    }

    /// The averages.
    package var result: RankingMetrics {
        var m = RankingMetrics()
        let n = Double(max(sums.users, 1))
        m.recall = sums.recall / n
        m.ndcg = sums.ndcg / n
        m.map = sums.map / n
        m.precision = sums.precision / n
        m.coverage = catalogue > 0 ? Double(recommended.count) / Double(catalogue) : 0
        m.users = sums.users
        return m
    }
}

/// Top-K selection over a dense score vector, best first, ties by lower row; rows in `skip` are left out.
package func topK(_ scores: UnsafeBufferPointer<Float>, k: Int, skip: Set<Int32>) -> [Int32] {
    guard k > 0 else { return [] }
    // A small sorted buffer: K is 10-ish, so insertion beats a heap.
    var rows: [Int32] = []
    var vals: [Float] = []
    rows.reserveCapacity(k + 1)
    vals.reserveCapacity(k + 1)
    var threshold = -Float.infinity
    for i in 0..<scores.count {
        let s = scores[i]
        if rows.count == k && !(s > threshold) { continue }
        if !s.isFinite { continue }
        if !skip.isEmpty && skip.contains(Int32(i)) { continue }
        var p = vals.count
        while p > 0 && vals[p - 1] < s { p -= 1 }
        vals.insert(s, at: p)
        rows.insert(Int32(i), at: p)
        if rows.count > k {
            vals.removeLast()
            rows.removeLast()
        }
        if rows.count == k { threshold = vals[k - 1] }
    }
    return rows
}
