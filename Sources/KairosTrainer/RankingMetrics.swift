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
    /// Standard error of ``recall`` over users (sample standard deviation / sqrt(users)).
    public var recallStandardError = 0.0
    /// Standard error of ``ndcg`` over users.
    public var ndcgStandardError = 0.0
    /// Standard error of ``map`` over users.
    public var mapStandardError = 0.0

    public init() {}

    /// The metrics as `name@K -> value` (standard errors as `name@K_se`), the shape stored in model metadata and the
    /// metrics JSON.
    public func dictionary(k: Int) -> [String: Double] {
        [
            "recall@\(k)": recall, "ndcg@\(k)": ndcg, "map@\(k)": map, "precision@\(k)": precision,
            "coverage@\(k)": coverage, "users": Double(users),
            "recall@\(k)_se": recallStandardError, "ndcg@\(k)_se": ndcgStandardError, "map@\(k)_se": mapStandardError,
        ]
    }
}

/// Mean and standard error of `a - b`, paired element by element (the same users in the same order): how much one
/// ranker beats another on one evaluation set, and how much of that the set's own noise could explain.
package func pairedDifference(_ a: [Double], _ b: [Double]) -> (mean: Double, standardError: Double) {
    let n = min(a.count, b.count)
    guard n > 0 else { return (0, 0) }
    var sum = 0.0
    var squares = 0.0
    for i in 0..<n {
        let d = a[i] - b[i]
        sum += d
        squares += d * d
    }
    return (sum / Double(n), standardError(sum: sum, squares: squares, count: n))
}

/// Standard error of a mean from the sum and sum of squares of `count` values (0 below two values).
func standardError(sum: Double, squares: Double, count n: Int) -> Double {
    guard n > 1 else { return 0 }
    let mean = sum / Double(n)
    let variance = max(0, (squares - Double(n) * mean * mean) / Double(n - 1))
    return (variance / Double(n)).squareRoot()
}

/// Accumulates per-user rankings into ``RankingMetrics``.
package struct MetricsAccumulator {
    let k: Int
    let catalogue: Int
    var sums = RankingMetrics()
    /// Sums of squares of the per-user recall, NDCG and MAP (for their standard errors).
    var squares = (recall: 0.0, ndcg: 0.0, map: 0.0)
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
        let recall = Double(hits) / Double(truth.count)
        let ndcg = dcg / idcg
        let map = ap / Double(min(k, truth.count))
        sums.recall += recall
        sums.ndcg += ndcg
        sums.map += map
        squares.recall += recall * recall
        squares.ndcg += ndcg * ndcg
        squares.map += map * map
        userNDCG.append(ndcg)
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
        m.recallStandardError = standardError(sum: sums.recall, squares: squares.recall, count: sums.users)
        m.ndcgStandardError = standardError(sum: sums.ndcg, squares: squares.ndcg, count: sums.users)
        m.mapStandardError = standardError(sum: sums.map, squares: squares.map, count: sums.users)
        return m
    }

    /// This ranker's NDCG gain over `other`'s on the same users: mean and standard error of the per-user difference.
    package func ndcgGain(over other: MetricsAccumulator) -> (mean: Double, standardError: Double) {
        pairedDifference(userNDCG, other.userNDCG)
    }
}

/// Top-K selection over a dense score vector, best first, ties by lower row; rows in `skip` are left out.
package func topK(_ scores: UnsafeBufferPointer<Float>, k: Int, skip: Set<Int32>) -> [Int32] {
    guard k > 0, let base = scores.baseAddress else { return [] }
    // A small sorted buffer: K is 10-ish, so insertion beats a heap.
    var rows: [Int32] = []
    var vals: [Float] = []
    rows.reserveCapacity(k + 1)
    vals.reserveCapacity(k + 1)
    var threshold = -Float.infinity
    let n = scores.count
    var i = 0
    while i < n {
        var end = i + 1
        if rows.count == k {
            // Once K are held, blocks of 16 with nothing above the K-th best are passed over with one vector
            // compare each (4x faster on a 50k catalogue). The block that has a candidate goes through the scalar
            // test below row by row, in order, so the result is the same as a plain scan.
            let t = SIMD16<Float>(repeating: threshold)
            while i + 16 <= n {
                let block = UnsafeRawPointer(base + i).loadUnaligned(as: SIMD16<Float>.self)
                if (block .> t) != SIMDMask(repeating: false) { break }
                i += 16
            }
            if i >= n { break }
            end = min(n, i + 16)
        }
        while i < end {
            let s = base[i]
            let row = i
            i += 1
            if rows.count == k && !(s > threshold) { continue }
            if !s.isFinite { continue }
            if !skip.isEmpty && skip.contains(Int32(row)) { continue }
            var p = vals.count
            while p > 0 && vals[p - 1] < s { p -= 1 }
            vals.insert(s, at: p)
            rows.insert(Int32(row), at: p)
            if rows.count > k {
                vals.removeLast()
                rows.removeLast()
            }
            if rows.count == k { threshold = vals[k - 1] }
        }
    }
    return rows
}
