package import KairosModelFormat

/// How test truth and rankings treat items the user already had in training.
public enum EvaluationProtocol: String, Sendable, CaseIterable, Codable {
    /// Items seen in training are removed from rankings and from the truth (discovery).
    case excludeSeen = "exclude-seen"
    /// Nothing is removed: re-buying counts (grocery-style e-commerce).
    case allowRepeats = "allow-repeats"
}

/// Blend weights of the serving score
/// `dot * u.v + trending * T[i] + buyAgain * H[u,i] + category * A[u,cat(i)] + freshness * F[i]`.
public struct BlendWeights: Sendable, Equatable, Codable {
    /// Weight of the factor dot product.
    public var dot: Double
    /// Weight of trending (decayed popularity divided by its maximum).
    public var trending: Double
    /// Weight of buy-again (the user's decayed history weight divided by the user's maximum).
    public var buyAgain: Double
    /// Weight of category affinity (the user's decayed history share in the item's category).
    public var category: Double
    /// Weight of freshness (`0.5^(days since the item's first event / half-life)`: new arrivals).
    public var freshness: Double

    /// Weights; the default is the dot product alone.
    public init(dot: Double = 1, trending: Double = 0, buyAgain: Double = 0, category: Double = 0, freshness: Double = 0) {
        self.dot = dot
        self.trending = trending
        self.buyAgain = buyAgain
        self.category = category
        self.freshness = freshness
    }

    /// As stored in model metadata `scoring[protocol]`.
    public var dictionary: [String: Double] {
        ["dot": dot, "trending": trending, "buy-again": buyAgain, "category": category, "freshness": freshness]
    }
}

/// The users, truths and exclusions of one protocol on one split.
package struct EvaluationSet: Sendable {
    /// User rows evaluated.
    package var users: [Int] = []
    /// Per user: relevant (future) items.
    package var truth: [Set<Int32>] = []
    /// Per user: items removed from the ranking (training items under exclude-seen, else none).
    package var seen: [Set<Int32>] = []

    /// At most `maxUsers` of the users, evenly spaced (deterministic: keeps evaluation cost bounded on big logs).
    package func thinned(to maxUsers: Int) -> EvaluationSet { picked(Self.evenPicks(of: users.count, most: maxUsers)) }

    /// At most `most` of `count` positions, evenly spaced (all of them when `count <= most`).
    package static func evenPicks(of count: Int, most: Int) -> [Int] {
        guard count > most else { return Array(0..<count) }
        let step = Double(count) / Double(most)
        return (0..<most).map { Int(Double($0) * step) }
    }

    /// The users at `picks`, with their truths and exclusions.
    package func picked(_ picks: [Int]) -> EvaluationSet {
        EvaluationSet(users: picks.map { users[$0] }, truth: picks.map { truth[$0] }, seen: picks.map { seen[$0] })
    }
}

/// Per-item and per-user signals a ranking is made from, computed from one training log.
package struct ScoringComponents: Sendable {
    /// Catalogue size.
    package let items: Int
    /// Decayed popularity / max (or all-time popularity / max when decay is off).
    package let trending: [Float]
    /// All-time popularity / max.
    package let popularity: [Float]
    /// Per user: (item, decayed history weight / user's max), heaviest first, capped.
    package private(set) var history: UserHistory
    /// Category per item, or nil without attributes.
    package let categories: [UInt32]?
    /// Number of categories (0 without attributes).
    package let categoryCount: Int
    /// Factors for the dot product, if any.
    package private(set) var factors: ALSFactors?
    /// Freshness per item (all zeros without a freshness half-life).
    package private(set) var freshness: [Float]
    /// Whether ``freshness`` was computed (a half-life was given).
    package private(set) var hasFreshness: Bool

    /// Computes trending, popularity and history from `log` as of `reference`.
    package init(
        log: EventLog,
        decay: DecaySpec,
        trendingDecay: DecaySpec,
        reference: Int64,
        historyCap: Int,
        categories: [UInt32]?,
        factors: ALSFactors?,
        freshnessHalfLifeDays: Double = 0
    ) {
        items = log.itemIds.count
        hasFreshness = freshnessHalfLifeDays > 0
        freshness =
            hasFreshness
            ? Signals.firstSeen(log, reference: reference).freshness(halfLifeDays: freshnessHalfLifeDays)
            : [Float](repeating: 0, count: log.itemIds.count)
        let pop = Signals.popularity(log, decay: trendingDecay, reference: reference)
        trending = Self.unitMax(pop.decayed)
        popularity = Self.unitMax(pop.allTime)
        history = Signals.history(log, decay: decay, reference: reference, cap: historyCap)
        self.categories = categories
        categoryCount = Int(categories?.filter { $0 != ItemAttributes.none }.max().map { $0 + 1 } ?? 0)
        self.factors = factors
    }

    /// The same components with other factors (real-time events folded into some users' rows).
    package func withFactors(_ f: ALSFactors) -> ScoringComponents {
        var c = self
        c.factors = f
        return c
    }

    /// The same items' components for `factors.user`'s rows as users with no history: users the model does not know,
    /// ranked by vectors made from their requests' events (``RealtimeSessions/newUsers(train:later:maxUsers:)``).
    package func forNewUsers(_ factors: ALSFactors) -> ScoringComponents {
        var c = self
        let users = factors.factors > 0 ? factors.user.count / factors.factors : 0
        c.factors = factors
        c.history = UserHistory(indptr: [UInt64](repeating: 0, count: users + 1), items: [], weights: [], referenceTime: history.referenceTime)
        return c
    }

    /// The same components with another per-item freshness (another half-life), nothing recomputed.
    package func withFreshness(_ f: [Float]) -> ScoringComponents {
        var c = self
        c.freshness = f
        c.hasFreshness = true
        return c
    }

    static func unitMax(_ v: [Float]) -> [Float] {
        let m = v.max() ?? 0
        return m > 0 ? v.map { $0 / m } : v
    }

    /// The user's history items with weights scaled to a maximum of 1.
    package func buyAgain(_ u: Int) -> [(Int32, Float)] {
        let lo = Int(history.indptr[u])
        let hi = Int(history.indptr[u + 1])
        guard hi > lo else { return [] }
        let m = history.weights[lo]
        return (lo..<hi).map { (Int32(history.items[$0]), m > 0 ? history.weights[$0] / m : 0) }
    }

    /// Share of the user's decayed history weight per category.
    package func categoryAffinity(_ u: Int) -> [Float] {
        guard let categories, categoryCount > 0 else { return [] }
        var a = [Float](repeating: 0, count: categoryCount)
        var total: Float = 0
        for e in Int(history.indptr[u])..<Int(history.indptr[u + 1]) {
            let c = categories[Int(history.items[e])]
            total += history.weights[e]
            if c != ItemAttributes.none { a[Int(c)] += history.weights[e] }
        }
        return total > 0 ? a.map { $0 / total } : a
    }
}

/// Temporal splits, evaluation sets, baselines, blend tuning.
package enum Evaluation {
    /// The time at the `q`-quantile of event times: events before it train, the rest test.
    package static func cutTime(_ log: EventLog, quantile q: Double) -> Int64 {
        let sorted = log.times.sorted()
        let i = min(sorted.count - 1, max(0, Int(Double(sorted.count) * q)))
        return sorted[i]
    }

    /// Evaluation sets for both protocols: test events of users and items present in `train`.
    package static func sets(train: EventLog, test: EventLog, maxUsers: Int) -> [EvaluationProtocol: EvaluationSet] {
        var seen = [Set<Int32>](repeating: [], count: train.userIds.count)
        var knownItem = [Bool](repeating: false, count: train.itemIds.count)
        for e in 0..<train.count {
            seen[Int(train.users[e])].insert(Int32(train.items[e]))
            knownItem[Int(train.items[e])] = true
        }
        var future = [Set<Int32>](repeating: [], count: train.userIds.count)
        for e in 0..<test.count {
            let u = Int(test.users[e])
            let i = Int(test.items[e])
            guard !seen[u].isEmpty, knownItem[i] else { continue }
            future[u].insert(Int32(i))
        }
        var out: [EvaluationProtocol: EvaluationSet] = [:]
        for p in EvaluationProtocol.allCases {
            var set = EvaluationSet()
            for u in 0..<future.count where !future[u].isEmpty {
                let truth = p == .excludeSeen ? future[u].subtracting(seen[u]) : future[u]
                guard !truth.isEmpty else { continue }
                set.users.append(u)
                set.truth.append(truth)
                set.seen.append(p == .excludeSeen ? seen[u] : [])
            }
            out[p] = set.thinned(to: maxUsers)
        }
        return out
    }

    /// A ranking that is the same for every user (popularity, trending) against the set's truth: the catalogue is
    /// sorted once, then each user takes their first K items not excluded. Equal to ranking each user with
    /// ``topK(_:k:skip:)`` (best first, ties by lower row, non-finite scores left out) at the cost of one sort.
    package static func evaluate(_ set: EvaluationSet, k: Int, catalogue: Int, sameForAll scores: [Float])
        -> MetricsAccumulator
    {
        let order = ranked(scores.indices.lazy.map { (Int32($0), scores[$0]) })
        var acc = MetricsAccumulator(k: k, catalogue: catalogue)
        for n in 0..<set.users.count {
            acc.add(ranked: firstK(order, k: k, skip: set.seen[n]), truth: set.truth[n])
        }
        return acc
    }

    /// Rankings that score only a few items per user (buy-again: the user's own history), against the set's truth;
    /// items not listed are not ranked. Equal to ``topK(_:k:skip:)`` over a vector of -infinity with those entries.
    package static func evaluate(
        _ set: EvaluationSet,
        k: Int,
        catalogue: Int,
        listed: (Int) -> [(Int32, Float)]
    ) -> MetricsAccumulator {
        var acc = MetricsAccumulator(k: k, catalogue: catalogue)
        for (n, u) in set.users.enumerated() {
            acc.add(ranked: firstK(ranked(listed(u)), k: k, skip: set.seen[n]), truth: set.truth[n])
        }
        return acc
    }

    /// The finite-scored rows, best first, ties by lower row.
    static func ranked(_ scored: some Sequence<(Int32, Float)>) -> [Int32] {
        scored.filter { $0.1.isFinite }.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }.map(\.0)
    }

    /// The first `k` rows of `order` not in `skip`.
    static func firstK(_ order: [Int32], k: Int, skip: Set<Int32>) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(k)
        for row in order {
            if out.count == k { break }
            if skip.isEmpty || !skip.contains(row) { out.append(row) }
        }
        return out
    }

    /// Baselines that need no factors: popularity, trending and (with repeats allowed) buy-again.
    package static func baselines(
        _ set: EvaluationSet,
        _ p: EvaluationProtocol,
        _ c: ScoringComponents,
        k: Int
    ) -> [String: MetricsAccumulator] {
        var out: [String: MetricsAccumulator] = [:]
        out["popularity"] = evaluate(set, k: k, catalogue: c.items, sameForAll: c.popularity)
        out["trending"] = evaluate(set, k: k, catalogue: c.items, sameForAll: c.trending)
        if p == .allowRepeats { out["buy-again"] = buyAgain(set, c, k: k) }
        return out
    }

    /// The buy-again baseline: each user's own history items by decayed weight.
    package static func buyAgain(_ set: EvaluationSet, _ c: ScoringComponents, k: Int) -> MetricsAccumulator {
        evaluate(set, k: k, catalogue: c.items) { c.buyAgain($0) }
    }
}
