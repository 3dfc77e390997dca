import KairosKernels
import KairosModelFormat
import KairosProtocol
import Synchronization
import Testing

@testable import KairosScoring

/// Known users' least-squares history solves kept between their requests with events.
@Suite struct FoldCacheTests {
    /// A solve of `k` factors with a recognisable first value.
    static func solve(_ k: Int, tag: Double) -> LeastSquaresFold.HistorySolve {
        var c = LeastSquaresFold.Confidences(historyItems: [UInt32(0)], weights: [Float(1)])
        c.add(item: 0, amount: 0)
        var gram = [Double](repeating: 0, count: k * k)
        for d in 0..<k { gram[d * k + d] = tag }
        return LeastSquaresFold.historySolve(
            gram: gram, regularization: 1, alpha: 1, confidences: c, historyRows: [Float](repeating: 0, count: k), dimensions: k
        )!
    }

    /// The second request of a user is a hit and returns the same solve; a nil solve is not kept; when the newer
    /// generation fills, the older is dropped, and a hit in the older moves the entry to the newer.
    @Test func keepsSolvesWithinItsBudget() {
        let k = 4
        let entry = (k * (k + 1) / 2 + 2 * k) * 8
        let told = Mutex((hits: 0, misses: 0))
        let observer = FoldCache.Observer(hit: { told.withLock { $0.hits += 1 } }, miss: { told.withLock { $0.misses += 1 } })
        let cache = FoldCache(budgetBytes: 4 * entry, dimensions: k, observer: observer)  // two entries per generation
        #expect(cache.capacity == 2 && cache.budgetBytes == 4 * entry)
        var made = 0
        func get(_ user: Int) -> LeastSquaresFold.HistorySolve? {
            cache.solve(user: user) {
                made += 1
                return Self.solve(k, tag: Double(user + 1))
            }
        }
        let a = get(1)
        #expect(get(1) === a && made == 1)
        #expect(cache.counts == (hits: 1, misses: 1))
        #expect(cache.solve(user: 9) { nil } == nil)
        #expect(cache.solve(user: 9) { nil } == nil && cache.counts.misses == 3)  // nothing kept for 9
        _ = get(2)  // newer: 1, 2
        _ = get(3)  // newer full: older 1, 2; newer 3
        #expect(made == 3)
        #expect(get(1) === a && made == 3)  // from the older generation, moved to the newer (3, 1)
        _ = get(4)  // newer full: older 3, 1; newer 4 (2 dropped)
        _ = get(2)
        #expect(made == 5)  // 2 made again
        #expect(get(1) === a && made == 5)
        #expect(told.withLock { $0 } == (hits: cache.counts.hits, misses: cache.counts.misses) && cache.counts == (hits: 3, misses: 7))
    }

    /// Serving with the cache gives the same scores, bit for bit, as without it (the history's half kept, then the
    /// events'; the whole fold without), on the first request of each user (a miss) and the next (a hit), and for
    /// more changed items than the kept half takes (the whole fold either way). The budget counts in the snapshot's
    /// derived bytes.
    @Test func servingFromTheCacheIsServingWithoutIt() throws {
        let parameters: [String: Double] = ["realtime_fold": 1, "alpha": 10, "regularization": 5, "realtime_weight": 2]
        let cached = try testSnapshot(parameters: parameters, foldCacheBytes: 1 << 20)
        let plain = try testSnapshot(parameters: parameters, foldCacheBytes: 0)
        #expect(plain.foldCache == nil && cached.foldCache != nil)
        #expect(cached.derivedBytes - plain.derivedBytes == cached.foldCache!.budgetBytes)
        let ref = ModelRef(name: "m")
        let candidates = IdList((0..<400).map { "item-\($0)" })
        for round in 0..<2 {
            for user in 0..<20 {
                let count = user == 7 ? 20 : 1 + user % 5
                let events = (0..<count).map { j in
                    RealtimeEvent(item: "item-\((user * 37 + j * 11 + round) % 400)", strength: Float(1 + j % 4), timestamp: now - Int64(60 * j))
                }
                let request = ScoreRequest(model: ref, user: "user-\(user)", candidates: candidates, context: RealtimeContext(events: events, now: now))
                let a = Scorer.score(request, on: cached, now: 0).scores
                let b = Scorer.score(request, on: plain, now: 0).scores
                #expect(a == b, "round \(round) user \(user)")
            }
        }
        // Each user's first request made the solve and every later one found it; user 7's 20 changed items took
        // the whole fold, but its solve was made and kept all the same.
        #expect(cached.foldCache!.counts == (hits: 20, misses: 20))
    }

    /// A snapshot warmed from the one it replaces holds, before it serves, the solves of the users the old one kept,
    /// matched by id (the new model's users are in reverse order, and one of them is new): their first requests find
    /// them, with the same answers as an unwarmed snapshot. Users the old one did not keep are not warmed, a passed
    /// deadline warms none, and a warm-up stops when both generations are full instead of evicting.
    @Test func aSwapWarmsTheSuccessorsCache() throws {
        let parameters: [String: Double] = ["realtime_fold": 1, "alpha": 10, "regularization": 5, "realtime_weight": 2]
        let old = try testSnapshot(parameters: parameters, foldCacheBytes: 1 << 20)
        let candidates = IdList((0..<400).map { "item-\($0)" })
        func request(_ user: Int) -> ScoreRequest {
            let events = (0..<3).map { j in RealtimeEvent(item: "item-\((user * 37 + j * 11) % 400)", strength: 2, timestamp: now - 60) }
            return ScoreRequest(model: ModelRef(name: "m"), user: "user-\(user)", candidates: candidates, context: RealtimeContext(events: events, now: now))
        }
        for user in 0..<10 { _ = Scorer.score(request(user), on: old, now: 0) }
        #expect(old.foldCache!.counts == (hits: 0, misses: 10))

        // user-3's row gets another id: the new model does not know user-3.
        func successor(_ foldCacheBytes: Int) throws -> ModelSnapshot {
            try testSnapshot(parameters: parameters, foldCacheBytes: foldCacheBytes) { c in
                c.userIds.reverse()
                c.userIds[c.userIds.firstIndex(of: "user-3")!] = "newcomer"
            }
        }
        let warm = try successor(1 << 20)
        let plain = try successor(0)
        #expect(warm.warmFoldCache(from: old, until: .now + .seconds(600)) == 9)
        #expect(warm.foldCache!.counts == (hits: 0, misses: 0))  // warming is not a lookup
        for user in 0..<12 {
            #expect(Scorer.score(request(user), on: warm, now: 0).scores == Scorer.score(request(user), on: plain, now: 0).scores, "user \(user)")
        }
        // 9 warmed users found their solves; users 10 and 11 were not kept by the old snapshot (user-3 is unknown).
        #expect(warm.foldCache!.counts == (hits: 9, misses: 2))

        #expect(try successor(1 << 20).warmFoldCache(from: old, until: .now - .seconds(1)) == 0)
        let entry = LeastSquaresFold.stateCount(dimensions: 16) * 8
        let small = try successor(6 * entry)  // three entries per generation
        #expect(small.warmFoldCache(from: old, until: .now + .seconds(600)) == 6)
        #expect(small.foldCache!.users().count == 6)
    }
}
