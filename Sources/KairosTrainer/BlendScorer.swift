import Dispatch

/// Scores an evaluation set with ``BlendWeights``, keeping for each user a shortlist of the items that can reach a
/// top K, so that trying many weight vectors (the validation search) costs a pass over a few hundred items per user
/// and try, not over the catalogue.
///
/// The shortlist holds each component's best ``shortlistPerComponent`` items (dot product, trending, freshness,
/// category affinity) and the user's buy-again items, with bounds on each component over the items left out. An item
/// left out scores at most the blend of those bounds; when the K-th best shortlisted score beats that, the shortlist's
/// top K is the catalogue's, ties and all. Otherwise the user is scored over the whole catalogue. The rankings are
/// exactly those of a full scan (a test checks it), while memory per user is a few KB instead of 4 bytes per item:
/// a 50k-item catalogue is evaluated on 5000 users instead of the 671 whose dot products fitted in 128 MB.
package struct BlendScorer: Sendable {
    let set: EvaluationSet
    let components: ScoringComponents
    let k: Int
    /// Threads the users are split over; results do not depend on it.
    let threads: Int
    let buy: [[(Int32, Float)]]
    let affinity: [[Float]]
    /// Items per component in each shortlist.
    let perComponent: Int
    /// How dot products are computed.
    let factorDots: FactorDots
    /// One per user of `set`.
    let shortlists: [Shortlist]

    /// Items per component in a shortlist by default.
    static let shortlistPerComponent = 200

    /// A user's shortlist: items in ascending order (excluded items left out), their dot products and buy-again
    /// weights, and upper bounds of each component over the items not in it.
    struct Shortlist: Sendable {
        var items: [Int32] = []
        var dots: [Float] = []
        var buyAgain: [Float] = []
        // A component not computed is 0 everywhere (freshness without a half-life) or not blended (no categories).
        var dotBound: Float = 0
        var trendingBound: Float = 0
        var freshnessBound: Float = 0
        var categoryBound: Float = 0
        /// Every item the user may be shown is in the list (no bound needed).
        var complete = true
    }

    /// Builds every user's shortlist (`perComponent` items per component).
    package init(
        set: EvaluationSet,
        components c: ScoringComponents,
        k: Int,
        threads: Int = 1,
        perComponent: Int = BlendScorer.shortlistPerComponent,
        dots: FactorDots = .swift
    ) {
        self.set = set
        factorDots = dots
        components = c
        self.k = k
        self.threads = threads
        self.perComponent = max(perComponent, 1)
        let buy = set.users.map { c.buyAgain($0) }
        let affinity = set.users.map { c.categoryAffinity($0) }
        self.buy = buy
        self.affinity = affinity
        shortlists = Self.shortlists(
            set, c, per: self.perComponent, buy: buy, affinity: affinity, earlier: nil, dots: dots, threads: threads
        )
    }

    /// The same scorer with another per-item freshness (another half-life); each shortlist is reused, with the new
    /// freshness's best items added.
    package init(_ other: BlendScorer, freshness: [Float]) {
        set = other.set
        components = other.components.withFreshness(freshness)
        k = other.k
        threads = other.threads
        perComponent = other.perComponent
        factorDots = other.factorDots
        buy = other.buy
        affinity = other.affinity
        shortlists = Self.shortlists(
            set, components, per: perComponent, buy: buy, affinity: affinity, earlier: other.shortlists,
            dots: factorDots, threads: threads
        )
    }

    /// Shortlists for every user. With `earlier` (another scorer's, for the same set and factors, differing only in
    /// freshness), each user's list and bounds are taken from it and only the freshness items are added.
    static func shortlists(
        _ set: EvaluationSet,
        _ c: ScoringComponents,
        per: Int,
        buy: [[(Int32, Float)]],
        affinity: [[Float]],
        earlier: [Shortlist]?,
        dots: FactorDots,
        threads: Int
    ) -> [Shortlist] {
        let items = c.items
        // Global components are walked in their own order (best first, ties by item as `topK` breaks them), so a
        // user's top `per` costs `per` plus the user's excluded items, not a pass over the catalogue.
        func order(_ v: [Float]) -> [Int32] {
            (0..<Int32(v.count)).filter { v[Int($0)].isFinite }.sorted {
                v[Int($0)] > v[Int($1)] || (v[Int($0)] == v[Int($1)] && $0 < $1)
            }
        }
        let trendingOrder = earlier == nil ? order(c.trending) : []
        let freshnessOrder = c.hasFreshness ? order(c.freshness) : []
        var out = [Shortlist](repeating: Shortlist(), count: set.users.count)
        out.withUnsafeMutableBufferPointer { o in
            let lists = SendablePointer(o.baseAddress!)
            forEachPart(of: set.users.count, threads: threads) { range in
                // The dot rows of a batch of users are scanned together (``FactorDots/rows(_:users:into:)``).
                let scanning = c.factors != nil && earlier == nil
                let batch = scanning ? FactorDots.batch(items: items) : 1
                var dotRows = [Float](repeating: 0, count: scanning ? batch * items : 0)
                var catRow = [Float](repeating: 0, count: c.categories == nil || earlier != nil ? 0 : items)
                for n in range {
                    let slot = (n - range.lowerBound) % batch
                    if let f = c.factors, scanning, slot == 0 {
                        let users = n..<min(n + batch, range.upperBound)
                        dotRows.withUnsafeMutableBufferPointer { d in
                            dots.rows(
                                f, users: users.map { set.users[$0] },
                                into: (0..<users.count).map { UnsafeMutableBufferPointer(rebasing: d[$0 * items..<($0 + 1) * items]) }
                            )
                        }
                    }
                    let skip = set.seen[n]
                    var s = Shortlist()
                    var chosen = Set<Int32>()
                    // Each returns the bound over the items it leaves out: -inf when it left out no finite value.
                    func take(_ values: UnsafeBufferPointer<Float>) -> Float {
                        let top = topK(values, k: per, skip: skip)
                        chosen.formUnion(top)
                        return top.count < per ? -.infinity : values[Int(top[per - 1])]
                    }
                    func take(_ order: [Int32], _ values: [Float]) -> Float {
                        var taken = 0
                        for i in order where !skip.contains(i) {
                            chosen.insert(i)
                            taken += 1
                            if taken == per { return values[Int(i)] }
                        }
                        return -.infinity
                    }
                    if let e = earlier?[n] {
                        s = e
                        chosen.formUnion(e.items)
                    } else {
                        if scanning {
                            dotRows.withUnsafeBufferPointer { d in
                                s.dotBound = take(UnsafeBufferPointer(rebasing: d[slot * items..<(slot + 1) * items]))
                            }
                        }
                        s.trendingBound = take(trendingOrder, c.trending)
                        if let cats = c.categories, !affinity[n].isEmpty {
                            let a = affinity[n]
                            for i in 0..<items { catRow[i] = cats[i] < a.count ? a[Int(cats[i])] : 0 }
                            s.categoryBound = catRow.withUnsafeBufferPointer { take($0) }
                        }
                        for (i, _) in buy[n] where !skip.contains(i) { chosen.insert(i) }
                    }
                    if c.hasFreshness { s.freshnessBound = take(freshnessOrder, c.freshness) }
                    let old = s.items
                    s.items = chosen.sorted()
                    s.complete = s.items.count >= items - skip.count
                    guard s.items != old else {
                        lists.pointer[n] = s
                        continue
                    }
                    // Dot products and buy-again weights for the items, reusing those already known.
                    var known: [Int32: Float] = [:]
                    for (j, i) in old.enumerated() where j < s.dots.count { known[i] = s.dots[j] }
                    if let f = c.factors {
                        s.dots = s.items.map { known[$0] ?? dots.one(f, user: set.users[n], item: Int($0)) }
                    }
                    var weight: [Int32: Float] = [:]
                    for (i, v) in buy[n] { weight[i] = v }
                    s.buyAgain = s.items.map { weight[$0] ?? 0 }
                    lists.pointer[n] = s
                }
            }
        }
        return out
    }

    /// The metrics of the dot product alone (``BlendWeights``'s default) on `set`, one user at a time: the same
    /// rankings as `BlendScorer(...).accumulate(BlendWeights())` without building shortlists, which a single
    /// weight vector does not repay.
    package static func dotProductRun(
        set: EvaluationSet,
        factors f: ALSFactors,
        items: Int,
        k: Int,
        threads: Int = 1,
        dots: FactorDots = .swift
    ) -> MetricsAccumulator {
        let ranked = rankEachUser(set, items: items, k: k, threads: threads, batch: FactorDots.batch(items: items)) {
            users, b in dots.rows(f, users: users.map { set.users[$0] }, into: b)
        }
        return accumulate(ranked, set: set, k: k, catalogue: items)
    }

    /// Metrics of the blend `w` on the set.
    package func evaluate(_ w: BlendWeights) -> RankingMetrics { accumulate(w).result }

    /// Every user's ranking under the blend `w`, accumulated.
    func accumulate(_ w: BlendWeights) -> MetricsAccumulator {
        var ranked = [[Int32]](repeating: [], count: set.users.count)
        ranked.withUnsafeMutableBufferPointer { out in
            guard let base = out.baseAddress else { return }
            let lists = SendablePointer(base)
            forEachPart(of: set.users.count, threads: threads) { range in
                var full: [Float] = []
                var short: [Float] = []
                for n in range { lists.pointer[n] = top(user: n, w, full: &full, short: &short).items }
            }
        }
        return Self.accumulate(ranked, set: set, k: k, catalogue: components.items)
    }

    /// How a user's top K was found.
    enum Decided { case completeShortlist, bounds, refined, fullScan }

    /// A blend's weights for one user, with the terms `scores` skips, so that one item's blend can be computed alone.
    struct UserBlend {
        let wd, wt, wb, wc, wf: Float
        /// The dot product is not blended (no factors, or weight 0).
        let noDot: Bool
        /// The user's category affinities when the category term is blended.
        let affinity: [Float]?

        init(_ w: BlendWeights, hasDots: Bool, affinity a: [Float], categories: [UInt32]?) {
            wd = Float(w.dot)
            wt = Float(w.trending)
            wb = Float(w.buyAgain)
            wc = Float(w.category)
            wf = Float(w.freshness)
            noDot = !hasDots || wd == 0
            affinity = wc != 0 && categories != nil && !a.isEmpty ? a : nil
        }

        /// Item `i`'s blend: the operations of `scores`, in its order, so the same bits as a full scan gives it.
        @inline(__always)
        func value(_ i: Int, dot: Float, buyAgain: Float, _ c: ScoringComponents) -> Float {
            var v = noDot ? wt * c.trending[i] : wd * dot + wt * c.trending[i]
            if wf != 0 { v += wf * c.freshness[i] }
            if wb != 0 && buyAgain != 0 { v += wb * buyAgain }
            if let a = affinity, let cats = c.categories, cats[i] < a.count { v += wc * a[Int(cats[i])] }
            return v
        }
    }

    /// The set's `n`-th user's top `k` under `w`: from the shortlist when its bounds prove it, else from every item.
    func top(user n: Int, _ w: BlendWeights, full: inout [Float], short: inout [Float]) -> (
        items: [Int32], decided: Decided
    ) {
        let s = shortlists[n]
        let c = components
        let b = UserBlend(w, hasDots: !s.dots.isEmpty, affinity: affinity[n], categories: c.categories)
        short.removeAll(keepingCapacity: true)
        for (j, item) in s.items.enumerated() {
            short.append(b.value(Int(item), dot: b.noDot ? 0 : s.dots[j], buyAgain: s.buyAgain[j], c))
        }
        let picked = short.withUnsafeBufferPointer { topK($0, k: k, skip: []) }
        if s.complete { return (picked.map { s.items[Int($0)] }, .completeShortlist) }
        if picked.count == k, w.dot >= 0, w.trending >= 0, w.freshness >= 0, w.category >= 0, w.buyAgain >= 0 {
            // An item left out scores at most the blend of the bounds (buy-again is 0 off the list); a margin covers
            // rounding. Strictly below the K-th best, it can neither enter nor tie.
            var bound: Float = 0
            var size: Float = 0
            func add(_ weight: Float, _ limit: Float) {
                guard weight != 0 else { return }
                bound += weight * limit
                size += abs(weight * limit)
            }
            add(b.noDot ? 0 : b.wd, s.dotBound)
            add(b.wt, s.trendingBound)
            add(b.wf, s.freshnessBound)
            add(b.affinity == nil ? 0 : b.wc, s.categoryBound)
            // -inf: a component whose every finite value is listed; anything left out scores NaN or inf and is
            // skipped by a full scan too.
            if bound == -.infinity || short[Int(picked[k - 1])] > bound + 1e-4 * size + Float.leastNormalMagnitude {
                return (picked.map { s.items[Int($0)] }, .bounds)
            }
        }
        if full.count != c.items { full = [Float](repeating: 0, count: c.items) }
        if !b.noDot, w.dot > 0, s.dotBound.isFinite, w.trending >= 0, w.freshness >= 0, w.category >= 0 {
            return (refine(user: n, b, picked: picked, rest: &full, short: short), .refined)
        }
        let items = full.withUnsafeMutableBufferPointer { b in
            scores(user: n, w, into: b)
            return topK(UnsafeBufferPointer(b), k: k, skip: set.seen[n])
        }
        return (items, .fullScan)
    }

    /// The top K when the shortlist's bounds do not settle it: every item's blend without the dot product is cheap,
    /// and only the items whose blend could still reach the shortlist's K-th best with the largest dot product left
    /// out get their dot product computed and join the candidates. Exact, at a small part of a full scan's cost.
    func refine(user n: Int, _ b: UserBlend, picked: [Int32], rest: inout [Float], short: [Float]) -> [Int32] {
        let s = shortlists[n]
        let c = components
        let count = c.items
        let kth = picked.count == k ? short[Int(picked[k - 1])] : -Float.infinity
        let top = b.wd * s.dotBound
        // An item left out can reach `kth` only if its non-dot blend is at least `kth - top` (less a rounding margin).
        let need = kth - top - (1e-4 * (abs(kth) + abs(top)) + Float.leastNormalMagnitude)
        rest.withUnsafeMutableBufferPointer { r in
            c.trending.withUnsafeBufferPointer { T in for i in 0..<count { r[i] = b.wt * T[i] } }
            if b.wf != 0 { c.freshness.withUnsafeBufferPointer { F in for i in 0..<count { r[i] += b.wf * F[i] } } }
            if let a = b.affinity, let cats = c.categories {
                for i in 0..<count where cats[i] < a.count { r[i] += b.wc * a[Int(cats[i])] }
            }
        }
        // Merge the shortlist with the new candidates, in item order (the order ties are broken in).
        var items: [Int32] = []
        var scores: [Float] = []
        var j = 0
        let f = c.factors!
        for i in 0..<count {
            if j < s.items.count && Int(s.items[j]) == i {
                items.append(s.items[j])
                scores.append(short[j])
                j += 1
            } else if !(rest[i] < need), !set.seen[n].contains(Int32(i)) {
                items.append(Int32(i))
                scores.append(b.value(i, dot: factorDots.one(f, user: set.users[n], item: i), buyAgain: 0, c))
            }
        }
        return scores.withUnsafeBufferPointer { topK($0, k: k, skip: []) }.map { items[Int($0)] }
    }

    /// Each user's top `k` (excluded items skipped) under `fill`, which writes each of up to `batch` users' scores of
    /// every item into the matching buffer. The users are split over `threads`, each ranked alone, and the lists
    /// come back in user order: the result does not depend on the thread count or the batch.
    static func rankEachUser(
        _ set: EvaluationSet,
        items: Int,
        k: Int,
        threads: Int,
        batch: Int = 1,
        fill: @escaping @Sendable (Range<Int>, [UnsafeMutableBufferPointer<Float>]) -> Void
    ) -> [[Int32]] {
        var ranked = [[Int32]](repeating: [], count: set.users.count)
        ranked.withUnsafeMutableBufferPointer { out in
            guard let base = out.baseAddress else { return }
            let lists = SendablePointer(base)
            forEachPart(of: set.users.count, threads: threads) { range in
                let batch = max(1, batch)
                var buffer = [Float](repeating: 0, count: batch * items)
                buffer.withUnsafeMutableBufferPointer { b in
                    let rows = (0..<batch).map { UnsafeMutableBufferPointer(rebasing: b[$0 * items..<($0 + 1) * items]) }
                    for first in stride(from: range.lowerBound, to: range.upperBound, by: batch) {
                        let users = first..<min(first + batch, range.upperBound)
                        fill(users, Array(rows[0..<users.count]))
                        for (j, n) in users.enumerated() {
                            lists.pointer[n] = topK(UnsafeBufferPointer(rows[j]), k: k, skip: set.seen[n])
                        }
                    }
                }
            }
        }
        return ranked
    }

    /// The metrics of per-user rankings, added in user order.
    static func accumulate(_ ranked: [[Int32]], set: EvaluationSet, k: Int, catalogue: Int) -> MetricsAccumulator {
        var acc = MetricsAccumulator(k: k, catalogue: catalogue)
        for n in ranked.indices { acc.add(ranked: ranked[n], truth: set.truth[n]) }
        return acc
    }

    /// The top `k` items of the set's `n`-th user under the blend `w` (its excluded items skipped), best first, with
    /// their blend scores: what the validation and test metrics rank, and what the server must reproduce.
    package func ranking(user n: Int, _ w: BlendWeights) -> [(item: Int32, score: Float)] {
        var buffer = [Float](repeating: 0, count: components.items)
        return buffer.withUnsafeMutableBufferPointer { b in
            scores(user: n, w, into: b)
            return topK(UnsafeBufferPointer(b), k: k, skip: set.seen[n]).map { ($0, b[Int($0)]) }
        }
    }

    /// The blend `w` of every item for the set's `user`-th user, written into `b` (one entry per item).
    func scores(user: Int, _ w: BlendWeights, into b: UnsafeMutableBufferPointer<Float>) {
        let c = components
        let wd = Float(w.dot)
        let wt = Float(w.trending)
        let wb = Float(w.buyAgain)
        let wc = Float(w.category)
        let wf = Float(w.freshness)
        let n = b.count
        if let f = c.factors, wd != 0 {
            factorDots.row(f, user: set.users[user], into: b)
            c.trending.withUnsafeBufferPointer { T in for i in 0..<n { b[i] = wd * b[i] + wt * T[i] } }
        } else {
            c.trending.withUnsafeBufferPointer { T in for i in 0..<n { b[i] = wt * T[i] } }
        }
        if wf != 0 {
            c.freshness.withUnsafeBufferPointer { F in for i in 0..<n { b[i] += wf * F[i] } }
        }
        if wb != 0 { for (i, v) in buy[user] { b[Int(i)] += wb * v } }
        if wc != 0, let cats = c.categories, !affinity[user].isEmpty {
            affinity[user].withUnsafeBufferPointer { A in
                cats.withUnsafeBufferPointer { C in
                    for i in 0..<n where C[i] < A.count { b[i] += wc * A[Int(C[i])] }
                }
            }
        }
    }

    /// Coordinate ascent on NDCG@K over a log-spaced grid per weight, starting from the dot product alone.
    ///
    /// A direct search on the metric itself: the calibration found it beats fitting pairwise logistic weights. A
    /// change of weights is kept only when its gain over the current best, user by user, exceeds one standard error
    /// of that paired difference: a validation set of a few hundred users has NDCG noise of the size of the small
    /// gains a search finds, and a weight fitted to that noise costs on new data.
    package func tune(rounds: Int = 3) -> (BlendWeights, MetricsAccumulator) {
        let grid = Self.grid
        let noDots = components.factors == nil
        var best = BlendWeights(dot: noDots ? 0 : 1, trending: noDots ? 1 : 0)
        var bestRun = accumulate(best)
        let hasCategories = components.categoryCount > 0
        let paths: [WritableKeyPath<BlendWeights, Double>] =
            (noDots ? [] : [\.dot]) + [\.trending, \.buyAgain] + (hasCategories ? [\.category] : [])
            + (components.hasFreshness ? [\.freshness] : [])
        for _ in 0..<rounds {
            var changed = false
            for path in paths {
                // The best candidate for this weight, if it clears the noise.
                var candidates: [BlendWeights] = []
                for v in grid where v != best[keyPath: path] {
                    var w = best
                    w[keyPath: path] = v
                    if w.dot == 0 && w.trending == 0 && w.buyAgain == 0 && w.category == 0 && w.freshness == 0 { continue }
                    candidates.append(w)
                }
                let runs = candidates.map { accumulate($0) }
                if let j = Self.clearWinner(runs, over: bestRun) {
                    best = candidates[j]
                    bestRun = runs[j]
                    changed = true
                }
            }
            if !changed { break }
        }
        return (best, bestRun)
    }

    /// The weights each search tries, log-spaced.
    static let grid: [Double] = [0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]

    /// The best freshness weight added to `base` (others fixed): the weights and their run, or nil if none beats
    /// `baseline`, the NDCG of `base` itself.
    func bestFreshness(added base: BlendWeights, baseline: Double) -> (BlendWeights, MetricsAccumulator)? {
        var best: (BlendWeights, MetricsAccumulator)?
        var top = baseline
        for v in Self.grid where v > 0 {
            var w = base
            w.freshness = v
            let run = accumulate(w)
            if run.result.ndcg > top + 1e-9 {
                best = (w, run)
                top = run.result.ndcg
            }
        }
        return best
    }

    /// The run with the best mean NDCG (the first of equals), if its gain over `reference` (the same users) clears
    /// ``clearlyBetter``; nil keeps the reference. Blend weights, the freshness half-life and the factorization
    /// search all choose by this rule.
    static func clearWinner(_ runs: [MetricsAccumulator], over reference: MetricsAccumulator) -> Int? {
        var top: Int?
        for (j, run) in runs.enumerated() where run.result.ndcg > (top.map { runs[$0] } ?? reference).result.ndcg + 1e-9 {
            top = j
        }
        guard let top, clearlyBetter(runs[top].userNDCG, than: reference.userNDCG) else { return nil }
        return top
    }

    /// Whether the mean of `a - b` (same users, same order) exceeds one standard error of that difference.
    static func clearlyBetter(_ a: [Double], than b: [Double]) -> Bool {
        guard min(a.count, b.count) > 1 else { return (a.first ?? 0) > (b.first ?? 0) }
        let d = pairedDifference(a, b)
        return d.mean > 1e-12 && d.mean > d.standardError
    }
}

/// Runs `body` over `0..<count` in `threads` contiguous parts at once (one part when `threads` is 1 or the work is
/// small), returning when all are done.
func forEachPart(of count: Int, threads: Int, _ body: @escaping @Sendable (Range<Int>) -> Void) {
    let parts = max(1, min(threads, count / 16))
    if parts == 1 {
        body(0..<count)
        return
    }
    DispatchQueue.concurrentPerform(iterations: parts) { p in body((count * p / parts)..<(count * (p + 1) / parts)) }
}
