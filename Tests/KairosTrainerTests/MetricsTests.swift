import KairosModelFormat
import Testing

@testable import KairosTrainer

@Suite struct MetricsTests {
    /// Recall, precision, NDCG and MAP at K = 3 against values computed by hand.
    @Test func handComputedRanking() {
        var acc = MetricsAccumulator(k: 3, catalogue: 10)
        // Ranked 1, 2, 3 (4 is beyond K); relevant 2, 4, 9: one hit at rank 2.
        acc.add(ranked: [1, 2, 3, 4], truth: [2, 4, 9])
        let m = acc.result
        #expect(abs(m.recall - 1.0 / 3) < 1e-12)
        #expect(abs(m.precision - 1.0 / 3) < 1e-12)
        // DCG = 1/log2(3); IDCG = 1 + 1/log2(3) + 1/log2(4).
        let dcg = 1 / 1.584962500721156
        #expect(abs(m.ndcg - dcg / (1 + dcg + 0.5)) < 1e-12)
        // AP@3 = (1/2) / min(3, 3).
        #expect(abs(m.map - 1.0 / 6) < 1e-12)
        #expect(abs(m.coverage - 0.3) < 1e-12)
    }

    /// The one-sort rankings of the baselines (one score vector for all users; a few listed items per user) equal
    /// ranking every user with `topK` over a full score vector: same items in the same order, so the same metrics,
    /// with tied scores, non-finite scores and excluded items in play.
    @Test func baselineRankingsEqualPerUserTopK() {
        var rng = SplitMix64(seed: 2026)
        for _ in 0..<20 {
            let items = Int.random(in: 1...60, using: &rng)
            let k = Int.random(in: 1...12, using: &rng)
            // Few distinct values, so ties are common; some NaN and infinities.
            let pool: [Float] = [0, 0.5, 1, 1, 2, -1, .nan, -.infinity, .infinity]
            let scores = (0..<items).map { _ in pool.randomElement(using: &rng)! }
            var set = EvaluationSet()
            var lists: [[(Int32, Float)]] = []
            for u in 0..<15 {
                set.users.append(u)
                set.truth.append(Set((0..<3).map { _ in Int32.random(in: 0..<Int32(items), using: &rng) }))
                set.seen.append(Set((0..<Int.random(in: 0...8, using: &rng)).map { _ in Int32.random(in: 0..<Int32(items), using: &rng) }))
                var seenItems = Set<Int32>()
                lists.append((0..<Int.random(in: 0...10, using: &rng)).compactMap { _ in
                    let i = Int32.random(in: 0..<Int32(items), using: &rng)
                    return seenItems.insert(i).inserted ? (i, pool.randomElement(using: &rng)!) : nil
                })
            }
            var global = MetricsAccumulator(k: k, catalogue: items)
            var listed = MetricsAccumulator(k: k, catalogue: items)
            for n in 0..<set.users.count {
                let g = scores.withUnsafeBufferPointer { topK($0, k: k, skip: set.seen[n]) }
                #expect(Evaluation.firstK(Evaluation.ranked(scores.indices.map { (Int32($0), scores[$0]) }), k: k, skip: set.seen[n]) == g)
                global.add(ranked: g, truth: set.truth[n])
                var v = [Float](repeating: -.infinity, count: items)
                for (i, w) in lists[n] { v[Int(i)] = w }
                let l = v.withUnsafeBufferPointer { topK($0, k: k, skip: set.seen[n]) }
                #expect(Evaluation.firstK(Evaluation.ranked(lists[n]), k: k, skip: set.seen[n]) == l)
                listed.add(ranked: l, truth: set.truth[n])
            }
            #expect(Evaluation.evaluate(set, k: k, catalogue: items, sameForAll: scores).result == global.result)
            #expect(Evaluation.evaluate(set, k: k, catalogue: items) { lists[$0] }.result == listed.result)
        }
    }

    /// A perfect ranking scores 1 on NDCG and MAP; users without truth are skipped; averages are over users.
    @Test func perfectAndAveraged() {
        var acc = MetricsAccumulator(k: 2, catalogue: 4)
        acc.add(ranked: [0, 1], truth: [0, 1])
        acc.add(ranked: [2, 3], truth: [0])
        acc.add(ranked: [2, 3], truth: [])
        let m = acc.result
        #expect(m.users == 2)
        #expect(abs(m.ndcg - 0.5) < 1e-12)
        #expect(abs(m.map - 0.5) < 1e-12)
        #expect(abs(m.recall - 0.5) < 1e-12)
    }

    /// Standard errors of the user means (sample standard deviation / sqrt(users)) against values computed by hand.
    @Test func standardErrorsOverUsers() {
        var acc = MetricsAccumulator(k: 2, catalogue: 10)
        acc.add(ranked: [1, 2], truth: [1])  // recall 1, NDCG 1, AP 1
        acc.add(ranked: [1, 2], truth: [5])  // 0, 0, 0
        acc.add(ranked: [1, 2], truth: [2])  // recall 1, NDCG 1/log2(3), AP 1/2
        let m = acc.result
        // Recall 1, 0, 1: mean 2/3, sample variance 1/3, SE sqrt(1/9).
        #expect(abs(m.recallStandardError - 1.0 / 3) < 1e-12)
        // MAP 1, 0, 1/2: mean 1/2, sample variance 1/4, SE sqrt(1/12).
        #expect(abs(m.mapStandardError - 0.28867513459481287) < 1e-12)
        // NDCG 1, 0, 0.6309...: SE 0.29196 (computed by hand from the three values).
        #expect(abs(m.ndcgStandardError - 0.291955590300664) < 1e-12)
        let d = m.dictionary(k: 2)
        #expect(d["ndcg@2_se"] == m.ndcgStandardError && d["recall@2_se"] == m.recallStandardError)
        // One user: no spread to measure.
        var one = MetricsAccumulator(k: 2, catalogue: 10)
        one.add(ranked: [1, 2], truth: [1])
        #expect(one.result.ndcgStandardError == 0)
    }

    /// The paired gain of one ranker over another: the mean of per-user differences and their standard error.
    @Test func pairedGainOverAnotherRanker() {
        var a = MetricsAccumulator(k: 3, catalogue: 10)
        var b = MetricsAccumulator(k: 3, catalogue: 10)
        a.add(ranked: [1, 2, 3], truth: [1])  // 1
        b.add(ranked: [7, 8, 1], truth: [1])  // 0.5
        a.add(ranked: [4, 5, 6], truth: [9])  // 0
        b.add(ranked: [4, 5, 6], truth: [9])  // 0
        a.add(ranked: [7, 8, 9], truth: [9])  // 0.5
        b.add(ranked: [7, 8, 6], truth: [9])  // 0
        // Differences 0.5, 0, 0.5: mean 1/3, sample variance 1/12, SE sqrt(1/36).
        let g = a.ndcgGain(over: b)
        #expect(abs(g.mean - 1.0 / 3) < 1e-12)
        #expect(abs(g.standardError - 1.0 / 6) < 1e-12)
        // Against itself: nothing.
        #expect(a.ndcgGain(over: a) == (0, 0))
    }

    /// Top-K is best first, breaks ties by lower row, skips excluded rows and non-finite scores.
    @Test func topKOrderAndExclusion() {
        let scores: [Float] = [0.5, 0.9, 0.5, -.infinity, 0.7, 0.1]
        scores.withUnsafeBufferPointer { s in
            #expect(topK(s, k: 3, skip: []) == [1, 4, 0])
            #expect(topK(s, k: 3, skip: [1]) == [4, 0, 2])
            #expect(topK(s, k: 10, skip: []).count == 5)
        }
    }

    /// The block-skipping scan equals a full sort (score descending, then row) on random vectors: lengths around
    /// the 16-row blocks and up to 5,000, K up to the shortlists' 200, many ties, NaN and infinities, skipped rows,
    /// and a late best row after a long dull run.
    @Test func topKEqualsAFullSort() {
        var rng = SplitMix64(seed: 11)
        let values: [Float] = [0, 0.25, 0.5, 0.75, 1, -1, .nan, .infinity, -.infinity]
        var checked = 0
        for n in [0, 1, 15, 16, 17, 31, 33, 64, 100, 1000, 5000] {
            for trial in 0..<20 {
                var v: [Float] = (0..<n).map { _ -> Float in
                    trial % 2 == 0 ? values[Int(rng.next() % UInt64(values.count))] : Float(rng.uniform())
                }
                if n > 40 && trial % 4 == 1 {
                    // A dull run, then one row above everything held: it lands in a block the scan must not pass.
                    for i in 0..<(n - 3) { v[i] = 0.1 }
                    v[n - 2] = 2
                }
                let skip = Set<Int32>((0..<(n / 5)).map { _ -> Int32 in Int32(rng.next() % UInt64(max(n, 1))) })
                for k in [1, 3, 10, 40, 200] {
                    let kept: [Int] = (0..<n).filter { v[$0].isFinite && !skip.contains(Int32($0)) }
                    let sorted: [Int] = kept.sorted { (a: Int, b: Int) -> Bool in v[a] != v[b] ? v[a] > v[b] : a < b }
                    let expected: [Int32] = sorted.prefix(k).map { Int32($0) }
                    let got = v.withUnsafeBufferPointer { topK($0, k: k, skip: skip) }
                    #expect(got == expected, "n \(n) trial \(trial) k \(k)")
                    checked += 1
                }
            }
        }
        #expect(checked == 1100)
    }
}

@Suite struct BlendSelectionTests {
    /// A weight change is kept only when its per-user gain clears one standard error of the paired difference.
    @Test func gainsMustClearOneStandardError() {
        let base = [0.2, 0.4, 0.1, 0.3, 0.5, 0.0, 0.6, 0.2]
        // The same small gain for every user: no noise, clearly better.
        #expect(BlendScorer.clearlyBetter(base.map { $0 + 0.01 }, than: base))
        // Mean gain +0.0125 from one big win and scattered losses: SE of the differences is larger than the mean.
        let noisy = zip(base, [0.3, -0.05, 0.0, -0.05, 0.0, -0.05, 0.0, -0.05]).map { $0 + $1 }
        #expect(!BlendScorer.clearlyBetter(noisy, than: base))
        // Worse, or equal: never.
        #expect(!BlendScorer.clearlyBetter(base.map { $0 - 0.01 }, than: base))
        #expect(!BlendScorer.clearlyBetter(base, than: base))
    }

    /// A run over `users` users where exactly the users in `hits` have NDCG 1 (a hit at rank 1), the rest 0.
    static func run(_ hits: Set<Int>, users: Int = 20) -> MetricsAccumulator {
        var acc = MetricsAccumulator(k: 1, catalogue: 2)
        for u in 0..<users { acc.add(ranked: [hits.contains(u) ? 0 : 1], truth: [0]) }
        return acc
    }

    /// Validation choices take the best candidate, and only when it clears the noise rule against the incumbent.
    @Test func clearWinnerIsTheBestCandidateThatClearsTheNoise() {
        let incumbent = Self.run(Set(0..<7))
        // Paired differences over 20 users: 3 wins -> mean 0.15, SE 0.08; 6 wins -> mean 0.30, SE 0.11.
        let good = Self.run(Set(0..<7).union([7, 8, 9]))
        let better = Self.run(Set(0..<7).union(7..<13))
        #expect(good.userNDCG.filter { $0 == 1 }.count == 10)
        // Both clear the rule; the better one wins even though the good one comes first (the old freshness rule
        // kept the first and let a later one replace it only if clearly better than the first).
        #expect(BlendScorer.clearWinner([good, better], over: incumbent) == 1)
        #expect(BlendScorer.clearWinner([better, good], over: incumbent) == 0)
        // Equal runs: the first.
        #expect(BlendScorer.clearWinner([better, better], over: incumbent) == 0)
        // 11 wins and 7 losses: mean 0.20 but SE 0.21, so within the noise, and it is the best candidate: the rule
        // judges the best, it does not fall back to the weaker `good`.
        let noisy = Self.run(Set(7..<18))
        #expect(BlendScorer.clearWinner([good, noisy], over: incumbent) == nil)
        #expect(BlendScorer.clearWinner([noisy], over: incumbent) == nil)
        // Worse, equal or no candidates: nil.
        #expect(BlendScorer.clearWinner([incumbent], over: better) == nil)
        #expect(BlendScorer.clearWinner([incumbent], over: incumbent) == nil)
        #expect(BlendScorer.clearWinner([], over: incumbent) == nil)
    }

    /// A synthetic log of 40 days split at its 0.7 time quantile, and 20 factors fitted on the earlier part (20: not a
    /// multiple of 16, so the scalar tail of the Swift dot product is in play).
    static func splitAndFit(
        users: Int, items: Int, categories: Int, eventsPerUser: Double
    ) throws -> (EventLog, EventLog, ALSFactors) {
        let dir = TempFolder()
        let path = try Logs.synthetic(
            in: dir, users: users, items: items, categories: categories, days: 40, eventsPerUser: eventsPerUser
        )
        let (log, _) = try EventLogReader.read(path: path)
        let (train, test) = log.split(at: Evaluation.cutTime(log, quantile: 0.7))
        var config = ALSConfig()
        config.factors = 20
        config.iterations = 3
        let m = Interactions.matrix(train, decay: DecaySpec(form: .none), reference: 0, normalizePerUser: true)
        return (train, test, WeightedALS.fit(m, config: config))
    }

    /// The shortlist scorer ranks every user exactly as a full scan of the catalogue does, for blends drawn from the
    /// search's grid over all five components (categories, freshness, buy-again and exclusions in play), whether the
    /// shortlist holds everything, its bounds decide, or they cannot and the candidates are refined (or, without the
    /// dot product, the catalogue scanned). Each of the four happens below, so each is checked.
    @Test func shortlistRankingsEqualFullScans() throws {
        let (train, test, factors) = try Self.splitAndFit(users: 90, items: 400, categories: 12, eventsPerUser: 30)
        // Every 9th item has no category, as items missing from an attributes file do.
        let categories = (0..<train.itemIds.count).map { $0 % 9 == 0 ? ItemAttributes.none : UInt32($0 % 12) }
        let comps = ScoringComponents(
            log: train,
            decay: .exponential(halfLifeDays: 10),
            trendingDecay: .exponential(halfLifeDays: 3),
            reference: train.timeRange!.upperBound,
            historyCap: 1000,
            categories: categories,
            factors: factors,
            freshnessHalfLifeDays: 7
        )
        var rng = SplitMix64(seed: 5)
        func pick() -> Double { BlendScorer.grid[Int(rng.next() % UInt64(BlendScorer.grid.count))] }
        var seen: Set<String> = []
        for (p, set) in Evaluation.sets(train: train, test: test, maxUsers: 1000) {
            let firstSeen = Signals.firstSeen(train, reference: train.timeRange!.upperBound)
            for per in [1, 3, 12, 400] {
                // Swift SIMD dot products for some, the C scan kernels for the others.
                let dots = per % 2 == 0 ? FactorDots(kernel: .auto) : .swift
                let first = BlendScorer(set: set, components: comps, k: 10, threads: 2, perComponent: per, dots: dots)
                // The freshness search's variant: the same lists, another freshness's best items added.
                let variant = BlendScorer(first, freshness: firstSeen.freshness(halfLifeDays: 2))
                var full: [Float] = []
                var short: [Float] = []
                for scorer in [first, variant] {
                    for _ in 0..<15 {
                        let w = BlendWeights(
                            dot: pick(), trending: pick(), buyAgain: pick(), category: pick(), freshness: pick()
                        )
                        for n in set.users.indices {
                            let fast = scorer.top(user: n, w, full: &full, short: &short)
                            let reference = scorer.ranking(user: n, w).map(\.item)
                            #expect(fast.items == reference, "\(p) per \(per) \(w) user \(n)")
                            seen.insert("\(fast.decided)")
                        }
                        let ranked = scorer.accumulate(w)
                        #expect(ranked.result.ndcg.isFinite)
                    }
                }
            }
        }
        #expect(seen == ["completeShortlist", "bounds", "refined", "fullScan"])
    }

    /// Evaluation sets are thinned to evenly spaced users, deterministically; the cap follows the catalogue size
    /// (users x items within 250M, never below 100 users) and `--eval-users`.
    @Test func evaluationUsersAreCappedAndEvenlyThinned() {
        let set = EvaluationSet(
            users: Array(10..<20), truth: (0..<10).map { [Int32($0)] }, seen: (0..<10).map { _ in [] }
        )
        let thin = set.thinned(to: 4)
        #expect(thin.users == [10, 12, 15, 17] && thin.truth == [[0], [2], [5], [7]] && thin.seen.count == 4)
        #expect(set.thinned(to: 10).users == set.users && set.thinned(to: 50).users == set.users)
        #expect(Session.evaluationUsers(items: 1_682, most: 5000) == 5000)
        #expect(Session.evaluationUsers(items: 50_000, most: 5000) == 5000)
        #expect(Session.evaluationUsers(items: 50_001, most: 5000) == 4999)
        #expect(Session.evaluationUsers(items: 1_000_000, most: 5000) == 250)
        #expect(Session.evaluationUsers(items: 10_000_000, most: 5000) == 100)
        #expect(Session.evaluationUsers(items: 50_000, most: 700) == 700)
    }

    /// Evaluation's dot products, rows of several users at once, whole rows and single items, agree bit for bit at
    /// every kernel level, and each level agrees with a plain sum to float rounding.
    @Test func factorDotsRowsEqualSingleItems() {
        var rng = SplitMix64(seed: 9)
        for factors in [4, 20, 64, 68] {
            let users = 3, items = 37
            let f = ALSFactors(
                factors: factors,
                user: (0..<(users * factors)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 997 },
                item: (0..<(items * factors)).map { _ in Float(Int(rng.next() % 2001) - 1000) / 991 },
                losses: []
            )
            for kernel in ALSKernel.allCases {
                let dots = FactorDots(kernel: kernel)
                // Users scanned together (in another order, one twice) get their rows alone, bit for bit.
                let batch = [2, 0, 2, 1]
                var together = [Float](repeating: .nan, count: batch.count * items)
                together.withUnsafeMutableBufferPointer { t in
                    dots.rows(f, users: batch, into: batch.indices.map {
                        UnsafeMutableBufferPointer(rebasing: t[$0 * items..<($0 + 1) * items])
                    })
                }
                for (j, u) in batch.enumerated() {
                    var alone = [Float](repeating: .nan, count: items)
                    alone.withUnsafeMutableBufferPointer { dots.row(f, user: u, into: $0) }
                    #expect(Array(together[j * items..<(j + 1) * items]).map(\.bitPattern) == alone.map(\.bitPattern), "\(kernel) \(factors)")
                }
                for u in 0..<users {
                    var row = [Float](repeating: .nan, count: items)
                    row.withUnsafeMutableBufferPointer { dots.row(f, user: u, into: $0) }
                    #expect(row == (0..<items).map { dots.one(f, user: u, item: $0) }, "\(kernel) \(factors)")
                    for i in 0..<items {
                        var exact = 0.0
                        for d in 0..<factors { exact += Double(f.user[u * factors + d]) * Double(f.item[i * factors + d]) }
                        #expect(abs(Double(row[i]) - exact) <= 1e-4 * (1 + abs(exact)), "\(kernel) \(factors)")
                    }
                }
            }
        }
    }

    /// The factorization search's dot-product run, one user at a time, ranks exactly as the blend scorer
    /// with the dot product alone: the same items per user, so the same per-user NDCG and coverage; and both give the
    /// same lists, in the same order, when the users are split over threads.
    @Test func dotProductRunEqualsTheBlendScorersDotRanking() throws {
        let (train, test, factors) = try Self.splitAndFit(users: 80, items: 120, categories: 20, eventsPerUser: 25)
        let comps = ScoringComponents(
            log: train,
            decay: DecaySpec(form: .none),
            trendingDecay: .exponential(halfLifeDays: 3),
            reference: train.timeRange!.upperBound,
            historyCap: 1000,
            categories: nil,
            factors: factors
        )
        for (p, set) in Evaluation.sets(train: train, test: test, maxUsers: 1000) {
            // Enough users for three parts of at least 16: the split over threads is in play below.
            #expect(set.users.count >= 48, "\(p)")
            let serial = BlendScorer(set: set, components: comps, k: 7)
            let scored = serial.accumulate(BlendWeights())
            let direct = BlendScorer.dotProductRun(set: set, factors: factors, items: train.itemIds.count, k: 7)
            #expect(direct.userNDCG == scored.userNDCG && direct.result == scored.result, "\(p)")
            // Split over threads: the same lists for the same users, in the same order, so the same metrics.
            let parallel = BlendScorer(set: set, components: comps, k: 7, threads: 3)
            let blend = BlendWeights(dot: 1, trending: 2)
            let lists = { (s: BlendScorer, threads: Int, batch: Int) in
                BlendScorer.rankEachUser(set, items: train.itemIds.count, k: 7, threads: threads, batch: batch) { users, b in
                    for (n, row) in zip(users, b) { s.scores(user: n, blend, into: row) }
                }
            }
            #expect(lists(parallel, 3, 1) == lists(serial, 1, 1), "\(p)")
            // Users handed over in batches (the last of each part short): the same lists.
            #expect(lists(parallel, 3, 5) == lists(serial, 1, 1), "\(p)")
            #expect(lists(parallel, 3, 1) == set.users.indices.map { parallel.ranking(user: $0, blend).map(\.item) })
            #expect(parallel.accumulate(blend).userNDCG == serial.accumulate(blend).userNDCG, "\(p)")
            let directParallel = BlendScorer.dotProductRun(
                set: set, factors: factors, items: train.itemIds.count, k: 7, threads: 2
            )
            #expect(directParallel.userNDCG == direct.userNDCG && directParallel.result == direct.result, "\(p)")
            // With the C kernels: users' rows are scanned in batches, and rank as the blend scorer's rows do.
            let kernels = FactorDots(kernel: .auto)
            let batched = BlendScorer.dotProductRun(
                set: set, factors: factors, items: train.itemIds.count, k: 7, threads: 2, dots: kernels
            )
            let kernelScored = BlendScorer(set: set, components: comps, k: 7, dots: kernels).accumulate(BlendWeights())
            #expect(batched.userNDCG == kernelScored.userNDCG && batched.result == kernelScored.result, "\(p)")
        }
    }

    /// The accumulator keeps each user's NDCG in order, and their mean is the reported NDCG.
    @Test func perUserNDCGMatchesTheMean() {
        var acc = MetricsAccumulator(k: 3, catalogue: 10)
        acc.add(ranked: [1, 2, 3], truth: [1])  // hit at rank 1: 1
        acc.add(ranked: [4, 5, 6], truth: [9])  // no hit: 0
        acc.add(ranked: [7, 8, 9], truth: [9])  // hit at rank 3 of 1 relevant: (1 / log2 4) / 1 = 0.5
        #expect(acc.userNDCG == [1, 0, 0.5])
        #expect(abs(acc.result.ndcg - 0.5) < 1e-12)
    }
}
