import Glibc
import KairosKernels
import KairosModelFormat
import KairosProtocol
import KairosTestSupport
@testable import KairosScoring
import Testing

/// A snapshot of a small synthetic model, written to a temp file and mapped like the server does.
let testSnapshot: ModelSnapshot = {
    let path = "/tmp/kairos-scoring-test-\(getpid()).kmodel"
    try! ModelWriter.write(SyntheticModel.make(name: "m", version: 3, items: 400, users: 60, dimensions: 16, seed: 5), to: path)
    let model = try! MappedModel(path: path)
    unlink(path)  // the mapping stays valid
    return ModelSnapshot(model: model, loadedAt: 0)
}()

let now: Int64 = 1_767_225_600

/// A snapshot of `testSnapshot`'s model with `parameters` merged into its metadata (e.g. the real-time fold's) and
/// `edit` applied, its file written, mapped and removed as `testSnapshot`'s.
func testSnapshot(
    parameters: [String: Double], foldCacheBytes: Int = ModelSnapshot.defaultFoldCacheBytes, edit: (inout ModelContents) -> Void = { _ in }
) throws -> ModelSnapshot {
    var c = SyntheticModel.make(name: "m", version: 3, items: 400, users: 60, dimensions: 16, seed: 5)
    c.metadata.parameters.merge(parameters) { $1 }
    edit(&c)
    let path = "/tmp/kairos-scoring-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).kmodel"
    try ModelWriter.write(c, to: path)
    defer { unlink(path) }  // the mapping stays valid
    return ModelSnapshot(model: try MappedModel(path: path), loadedAt: 0, foldCacheBytes: foldCacheBytes)
}

/// Reference score in double precision: dot of dequantized rows plus bias.
func referenceScore(_ u: [Float], item: Int) -> Double {
    let m = testSnapshot.model
    let v = RowEncoder.decodeRow(item, of: m.itemFactors)
    return zip(u, v).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } + Double(m.itemBiases![item])
}

func userRow(_ u: Int) -> [Float] { RowEncoder.decodeRow(u, of: testSnapshot.model.userFactors!) }

@Suite struct ScorerTests {
    let ref = ModelRef(name: "m")

    /// SCORE of a known user equals dot + bias per candidate; unknown candidates are NaN and flagged.
    @Test func scoreMatchesReferenceAndFlagsUnknownItems() {
        let r = Scorer.score(ScoreRequest(model: ref, user: "user-7", candidates: ["item-1", "nope", "item-399"]), on: testSnapshot, now: now)
        #expect(r.model == ModelStamp(name: "m", version: 3) && r.flags == [])
        #expect(r.itemFlags == [0, ScoreResponse.unknownItem, 0])
        #expect(abs(Double(r.scores[0]) - referenceScore(userRow(7), item: 1)) < 1e-4)
        #expect(abs(Double(r.scores[2]) - referenceScore(userRow(7), item: 399)) < 1e-4)
        #expect(r.scores[1].isNaN)
    }

    /// A model without item biases (what `kairos train` writes) scores the plain dot product.
    @Test func scoreWithoutBiasesIsTheDotProduct() {
        var c = SyntheticModel.make(name: "nb", version: 1, items: 50, users: 5, dimensions: 8, seed: 9)
        c.itemBiases = nil
        let path = "/tmp/kairos-nobias-test-\(getpid()).kmodel"
        try! ModelWriter.write(c, to: path)
        defer { unlink(path) }
        let s = ModelSnapshot(model: try! MappedModel(path: path), loadedAt: 0)
        #expect(!s.hasBiases && testSnapshot.hasBiases)
        let r = Scorer.score(ScoreRequest(model: ModelRef(name: "nb"), user: "user-2", candidates: ["item-3", "item-49"]), on: s, now: now)
        let u = RowEncoder.decodeRow(2, of: s.model.userFactors!)
        for (n, item) in [3, 49].enumerated() {
            let v = RowEncoder.decodeRow(item, of: s.model.itemFactors)
            let dot = zip(u, v).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            #expect(abs(Double(r.scores[n]) - dot) < 1e-5)
        }
    }

    /// An unknown user without events gets trending scores, flagged as the fallback.
    @Test func unknownUserFallsBackToTrending() {
        let r = Scorer.score(ScoreRequest(model: ref, user: "stranger", candidates: ["item-0", "item-5"]), on: testSnapshot, now: now)
        #expect(r.flags == .fallback)
        #expect(r.scores == [testSnapshot.trend[0], testSnapshot.trend[5]])
        let top = Scorer.topK(TopKRequest(model: ref, user: "stranger", k: 5), on: testSnapshot, now: now)
        #expect(top.flags == .fallback)
        #expect(top.items.map(\.item) == testSnapshot.trendingOrder.prefix(5).map { "item-\($0)" })
    }

    /// A click a minute ago changes the answer: the folded vector is u + s w v, rescaled to |u| (checked by hand).
    @Test func realtimeEventsAreFoldedIn() {
        let event = RealtimeEvent(item: "item-42", strength: 8, timestamp: now - 60)
        let ctx = RealtimeContext(events: [event], decay: .exponential(halfLifeSeconds: 60), now: now)
        let r = Scorer.score(ScoreRequest(model: ref, user: "user-3", candidates: ["item-42", "item-9"], context: ctx), on: testSnapshot, now: 0)
        let u = userRow(3)
        let v = RowEncoder.decodeRow(42, of: testSnapshot.model.itemFactors)
        var folded = zip(u, v).map { $0 + 8 * 0.5 * $1 }  // one half-life old: weight 0.5
        let scale = ModelSnapshot.norm(u) / ModelSnapshot.norm(folded)
        folded = folded.map { $0 * scale }
        #expect(abs(Double(r.scores[0]) - referenceScore(folded, item: 42)) < 1e-4)
        #expect(abs(Double(r.scores[1]) - referenceScore(folded, item: 9)) < 1e-4)
        let before = Scorer.score(ScoreRequest(model: ref, user: "user-3", candidates: ["item-42"]), on: testSnapshot, now: now)
        #expect(r.scores[0] > before.scores[0])
    }

    /// The model's `realtime_weight` scales a known user's events against their vector (0: ignored), and leaves a
    /// user the model does not know personal from the events alone; a file without it folds at 1.
    @Test func storedRealtimeWeightScalesAKnownUsersEvents() throws {
        let event = RealtimeEvent(item: "item-42", strength: 8, timestamp: now - 60)
        let ctx = RealtimeContext(events: [event], decay: .exponential(halfLifeSeconds: 60), now: now)
        let u = userRow(3)
        let v = RowEncoder.decodeRow(42, of: testSnapshot.model.itemFactors)
        var cold: [ScoredItem]?
        for weight in [nil, 0.25, 0] as [Double?] {
            let s = try testSnapshot(parameters: weight.map { ["realtime_weight": $0] } ?? [:])
            #expect(s.realtimeWeight == weight ?? 1)
            let r = Scorer.score(ScoreRequest(model: ref, user: "user-3", candidates: ["item-42", "item-9"], context: ctx), on: s, now: 0)
            var folded = zip(u, v).map { $0 + Float(weight ?? 1) * 8 * 0.5 * $1 }  // one half-life old: 0.5
            let scale = ModelSnapshot.norm(u) / ModelSnapshot.norm(folded)
            folded = folded.map { $0 * scale }
            for (n, item) in [42, 9].enumerated() {
                #expect(abs(Double(r.scores[n]) - referenceScore(folded, item: item)) < 1e-4, "weight \(String(describing: weight)) item \(item)")
            }
            let unknown = Scorer.topK(TopKRequest(model: ref, user: "new-user", k: 5, context: ctx), on: s, now: 0)
            #expect(unknown.flags == .coldStartFromEvents && unknown.items.count == 5)
            #expect(cold == nil || unknown.items == cold!, "an unknown user's answer depends on the weight")
            cold = unknown.items
        }
    }

    /// `realtime_fold` 1: a known user's events move their vector by what they change in the user's least-squares
    /// solution (history weights normalised to mean 1, each event adding weight x strength x decay at that scale),
    /// checked against the solution from its definition (``ReferenceSolve``); events that change no weight change no
    /// score; a user the model does not know is folded as without it.
    @Test func leastSquaresFoldOfAKnownUser() throws {
        let s = try testSnapshot(parameters: ["realtime_fold": 1, "alpha": 10, "regularization": 5, "realtime_weight": 0.25])
        let m = s.model
        let k = 16
        let h = m.history!.entries(ofUser: 3)
        let had = Int(h.items[0])
        #expect(!h.items.contains(42))
        // item-42: new to the user, 8 x 0.5 (one half-life) x 0.25; their heaviest item again: 2 x 1 x 0.25.
        let events = [
            RealtimeEvent(item: "item-42", strength: 8, timestamp: now - 60),
            RealtimeEvent(item: m.items.table[had], strength: 2, timestamp: now),
        ]
        let ctx = RealtimeContext(events: events, decay: .exponential(halfLifeSeconds: 60), now: now)
        let y = (0..<400).flatMap { RowEncoder.decodeRow($0, of: m.itemFactors) }
        let sum = h.weights.reduce(0.0) { $0 + Double($1) }
        let scale = Double(h.weights.count) / sum
        var before = [Int: Double]()
        for (item, w) in zip(h.items, h.weights) { before[Int(item)] = Double(w) * scale }
        var after = before
        after[42] = 1.0 * scale
        after[had]! += 0.5 * scale
        let xb = ReferenceSolve.userSolution(y: y, items: 400, k: k, alpha: 10, lambda: 5) { before[$0] ?? 0 }
        let xa = ReferenceSolve.userSolution(y: y, items: 400, k: k, alpha: 10, lambda: 5) { after[$0] ?? 0 }
        let u = userRow(3)
        let expected = (0..<k).map { Float(Double(u[$0]) + xa[$0] - xb[$0]) }
        let candidates = [42, 9, 100, had]
        let r = Scorer.score(ScoreRequest(model: ref, user: "user-3", candidates: IdList(candidates.map { "item-\($0)" }), context: ctx), on: s, now: 0)
        let plain = Scorer.score(ScoreRequest(model: ref, user: "user-3", candidates: IdList(candidates.map { "item-\($0)" })), on: s, now: 0)
        var moved = 0.0
        for (n, item) in candidates.enumerated() {
            #expect(abs(Double(r.scores[n]) - referenceScore(expected, item: item)) < 1e-3, "item \(item)")
            moved = max(moved, abs(Double(r.scores[n] - plain.scores[n])))
        }
        #expect(moved > 0.01, "the events moved no score: \(moved)")
        // TOPK ranks by the same vector (its scores are the blend's: dot weight 1 and nothing else here).
        let top = Scorer.topK(TopKRequest(model: ref, user: "user-3", k: 5, options: [.allowRepeats], context: ctx), on: s, now: 0)
        for item in top.items {
            let row = Int(item.item.dropFirst(5))!
            #expect(abs(Double(item.score) - referenceScore(expected, item: row)) < 1e-3, "\(item.item)")
        }
        // Events in the future or on unknown items: no weight changes, the scores are the plain ones exactly.
        for e in [RealtimeEvent(item: "item-42", strength: 5, timestamp: now + 100), RealtimeEvent(item: "nope", strength: 5, timestamp: now)] {
            let q = Scorer.score(
                ScoreRequest(model: ref, user: "user-3", candidates: ["item-42"], context: RealtimeContext(events: [e], now: now)), on: s, now: 0
            )
            #expect(q.scores[0] == plain.scores[0], "\(e)")
        }
        // A user the model does not know: the additive fold of the events alone, as in a model without realtime_fold.
        let t = try testSnapshot(parameters: [:])
        #expect(t.leastSquaresFold == nil && s.leastSquaresFold != nil)
        let cold = TopKRequest(model: ref, user: "new-user", k: 5, context: ctx)
        let a = Scorer.topK(cold, on: s, now: 0)
        #expect(a.flags == .coldStartFromEvents && a.items == Scorer.topK(cold, on: t, now: 0).items)
    }

    /// The least-squares fold under extreme events: the largest finite strengths either way, and more changed items
    /// than the low-rank solve takes (a second factorisation). Every score stays finite, and removing every history
    /// item's weight (the largest negative strengths) still answers.
    @Test func leastSquaresFoldOfExtremeEventsStaysFinite() throws {
        let s = try testSnapshot(parameters: ["realtime_fold": 1, "alpha": 10, "regularization": 5, "realtime_weight": 10])
        let h = s.model.history!.entries(ofUser: 3)
        let big = Float.greatestFiniteMagnitude
        let cases: [[RealtimeEvent]] = [
            [RealtimeEvent(item: "item-42", strength: big, timestamp: now)],
            [RealtimeEvent(item: "item-42", strength: big, timestamp: now), RealtimeEvent(item: "item-43", strength: 1e-30, timestamp: now)],
            h.items.map { RealtimeEvent(item: "item-\($0)", strength: -big, timestamp: now) },
            (100..<140).map { RealtimeEvent(item: "item-\($0)", strength: $0 % 2 == 0 ? big : 1, timestamp: now - Int64($0)) },
        ]
        let candidates = IdList((0..<400).map { "item-\($0)" })
        for (n, events) in cases.enumerated() {
            let ctx = RealtimeContext(events: events, now: now)
            let r = Scorer.score(ScoreRequest(model: ref, user: "user-3", candidates: candidates, context: ctx), on: s, now: 0)
            #expect(r.scores.count == 400 && r.scores.allSatisfy(\.isFinite), "case \(n)")
            let top = Scorer.topK(TopKRequest(model: ref, user: "user-3", k: 10, context: ctx), on: s, now: 0)
            #expect(top.items.count == 10 && top.items.allSatisfy { $0.score.isFinite }, "case \(n)")
        }
    }

    /// Events in the future, on unknown items, or decayed to nothing leave the scores unchanged.
    @Test func uselessEventsChangeNothing() {
        let plain = Scorer.score(ScoreRequest(model: ref, user: "user-3", candidates: ["item-1"]), on: testSnapshot, now: now)
        for e in [
            RealtimeEvent(item: "item-1", strength: 5, timestamp: now + 100),
            RealtimeEvent(item: "nope", strength: 5, timestamp: now - 1),
            RealtimeEvent(item: "item-1", strength: 5, timestamp: now - 10 * 86_400),
        ] {
            let ctx = RealtimeContext(events: [e], decay: .linear(windowSeconds: 3600), now: now)
            let r = Scorer.score(ScoreRequest(model: ref, user: "user-3", candidates: ["item-1"], context: ctx), on: testSnapshot, now: 0)
            #expect(abs(r.scores[0] - plain.scores[0]) < 1e-5, "\(e)")
        }
    }

    /// An unknown user with events gets personal results, flagged as a cold start.
    @Test func unknownUserWithEventsIsPersonal() {
        let ctx = RealtimeContext(events: [RealtimeEvent(item: "item-10", strength: 4, timestamp: now - 5)], now: now)
        let r = Scorer.topK(TopKRequest(model: ref, user: "new-user", k: 5, options: .allowRepeats, context: ctx), on: testSnapshot, now: 0)
        #expect(r.flags == .coldStartFromEvents)
        #expect(r.items.count == 5)
        #expect(r.items.map(\.item) != testSnapshot.trendingOrder.prefix(5).map { "item-\($0)" })
    }

    /// k = 0 is a valid request with an empty answer, for every option (with repeats allowed and a history to merge,
    /// it read the scan's k-th best at index -1 and stopped the server).
    @Test func zeroKIsAnEmptyAnswer() throws {
        try #require(!testSnapshot.model.history!.entries(ofUser: 11).items.isEmpty)
        for options: TopKRequest.Options in [[], .allowRepeats, [.allowRepeats, .customWeights]] {
            for category in ["", "category-1"] {
                let r = Scorer.topK(TopKRequest(model: ref, user: "user-11", k: 0, options: options, category: category), on: testSnapshot, now: now)
                #expect(r.items.isEmpty, "\(options) \(category)")
            }
        }
        #expect(Scorer.similar(SimilarRequest(model: ref, item: "item-4", k: 0), on: testSnapshot)?.items.isEmpty == true)
        #expect(PushPolicy.decide(PushDecideRequest(model: ref, user: "user-11", k: 0), on: testSnapshot, now: now).items.isEmpty)
    }

    /// An event's strength sets how far it pulls the user's vector, never whether the answer is usable: strengths
    /// near the float maximum fold in as the item's direction (they used to overflow to a zero or NaN vector).
    @Test func extremeStrengthsFoldInAsTheItemsDirection() {
        let candidates: IdList = ["item-1", "item-50", "item-123", "item-399"]
        func scores(_ user: String, _ strengths: [Float]) -> [Float] {
            let events = strengths.enumerated().map { RealtimeEvent(item: $0.offset == 0 ? "item-10" : "item-11", strength: $0.element, timestamp: now - 5) }
            return Scorer.score(ScoreRequest(model: ref, user: user, candidates: candidates, context: RealtimeContext(events: events, now: now)), on: testSnapshot, now: now).scores
        }
        let unit = scores("new-user", [1])
        let cases: [([Float], [Float])] = [([1], [3e38]), ([1], [Float.greatestFiniteMagnitude]), ([1, 1], [3e38, 3e38])]
        for (plain, strengths) in cases {
            let (expected, extreme) = (scores("new-user", plain), scores("new-user", strengths))
            for (a, b) in zip(expected, extreme) { #expect(abs(a - b) < 1e-4, "\(strengths): \(expected) against \(extreme)") }
        }
        // A known user pulled by an extreme event scores like the event's item alone, at the user's own norm.
        let pulled = scores("user-3", [3e38])
        #expect(pulled.allSatisfy { $0.isFinite })
        let biases = [1, 50, 123, 399].map { testSnapshot.model.itemBiases![$0] }
        let ratio = (pulled[0] - biases[0]) / (unit[0] - biases[0])
        for i in 1..<4 { #expect(abs((pulled[i] - biases[i]) - ratio * (unit[i] - biases[i])) < 1e-3 * abs(pulled[i] - biases[i]) + 1e-5) }
    }

    /// TOPK equals a brute-force ranking of dot + bias over the catalogue minus the user's history.
    @Test func topKMatchesBruteForceAndExcludesHistory() throws {
        let history = testSnapshot.model.history!.entries(ofUser: 11).items.map { Int($0) }
        try #require(!history.isEmpty)
        let r = Scorer.topK(TopKRequest(model: ref, user: "user-11", k: 10), on: testSnapshot, now: now)
        let u = userRow(11)
        let expected = (0..<400).filter { !history.contains($0) }
            .map { ($0, referenceScore(u, item: $0)) }
            .sorted { $0.1 > $1.1 }
            .prefix(10)
        #expect(r.items.map(\.item) == expected.map { "item-\($0.0)" })
        let repeats = Scorer.topK(TopKRequest(model: ref, user: "user-11", k: 400, options: .allowRepeats), on: testSnapshot, now: now)
        #expect(Set(history.map { "item-\($0)" }).isSubset(of: Set(repeats.items.map(\.item))))
        #expect(Set(r.items.map(\.item)).isDisjoint(with: history.map { "item-\($0)" }))
    }

    /// Exclusions, category filters and k beyond the catalogue behave as documented.
    @Test func topKOptions() {
        let excluded = Scorer.topK(TopKRequest(model: ref, user: "user-1", k: 10), on: testSnapshot, now: now).items[0].item
        let r = Scorer.topK(TopKRequest(model: ref, user: "user-1", k: 10, exclude: [excluded]), on: testSnapshot, now: now)
        #expect(!r.items.map(\.item).contains(excluded))
        let cat = Scorer.topK(TopKRequest(model: ref, user: "user-1", k: 50, category: "category-2"), on: testSnapshot, now: now)
        let attrs = testSnapshot.model.attributes!
        #expect(!cat.items.isEmpty && cat.items.allSatisfy { attrs.category(testSnapshot.model.items.row(of: $0.item)!) == 2 })
        #expect(Scorer.topK(TopKRequest(model: ref, user: "user-1", k: 10, category: "no-such"), on: testSnapshot, now: now).items.isEmpty)
        #expect(Scorer.topK(TopKRequest(model: ref, user: "user-1", k: 1000, options: .allowRepeats), on: testSnapshot, now: now).items.count == 400)
    }

    /// Buy-again weight lifts the user's own history items when repeats are allowed.
    @Test func buyAgainWeightLiftsHistory() throws {
        let history = Set(testSnapshot.model.history!.entries(ofUser: 11).items.map { "item-\($0)" })
        try #require(!history.isEmpty)
        let r = Scorer.topK(
            TopKRequest(model: ref, user: "user-11", k: UInt16(history.count), options: [.allowRepeats, .customWeights], buyAgainWeight: 100),
            on: testSnapshot,
            now: now
        )
        #expect(Set(r.items.map(\.item)) == history)
    }

    /// SIMILAR ranks by cosine similarity, never returns the query item, and refuses unknown items.
    @Test func similarRanksByCosine() throws {
        let r = try #require(Scorer.similar(SimilarRequest(model: ref, item: "item-20", k: 5), on: testSnapshot))
        let m = testSnapshot.model
        let q = RowEncoder.decodeRow(20, of: m.itemFactors)
        func cosine(_ i: Int) -> Double {
            let v = RowEncoder.decodeRow(i, of: m.itemFactors)
            let dot = zip(q, v).reduce(0.0) { $0 + Double($1.0 * $1.1) }
            return dot / Double(ModelSnapshot.norm(q) * ModelSnapshot.norm(v))
        }
        let expected = (0..<400).filter { $0 != 20 }.sorted { cosine($0) > cosine($1) }.prefix(5)
        #expect(r.items.map(\.item) == expected.map { "item-\($0)" })
        #expect(Scorer.similar(SimilarRequest(model: ref, item: "nope", k: 5), on: testSnapshot) == nil)
    }

    /// SIMILAR with a category filter returns every item of that category (k above their count), never the query
    /// item, scores non-increasing and equal to the cosine; an unknown category returns nothing.
    @Test func similarFiltersByCategory() throws {
        let s = testSnapshot
        let m = s.model
        let names = try #require(m.categoryNames)
        let q = RowEncoder.decodeRow(20, of: m.itemFactors)
        let c = s.itemCategories[20]
        let r = try #require(Scorer.similar(SimilarRequest(model: ref, item: "item-20", k: 400, category: names[Int(c)]), on: s))
        let expected = (0..<400).filter { $0 != 20 && s.itemCategories[$0] == c }
        #expect(expected.count > 1 && expected.count < 399)
        #expect(Set(r.items.map(\.item)) == Set(expected.map { "item-\($0)" }))
        for (a, b) in zip(r.items, r.items.dropFirst()) { #expect(a.score >= b.score) }
        for item in r.items {
            let v = RowEncoder.decodeRow(Int(item.item.dropFirst(5))!, of: m.itemFactors)
            let cosine = zip(q, v).reduce(0.0) { $0 + Double($1.0 * $1.1) } / Double(ModelSnapshot.norm(q) * ModelSnapshot.norm(v))
            #expect(abs(Double(item.score) - cosine) < 1e-5)
        }
        let none = try #require(Scorer.similar(SimilarRequest(model: ref, item: "item-20", k: 5, category: "no-such"), on: s))
        #expect(none.items.isEmpty)
    }
}

/// The trending order (the unknown-user fallback) is by trend descending, ties by lower row, zeros last: the packed
/// sort key gives the comparator's order, on a model with many equal and zero trends.
@Test func trendingOrderIsByTrendThenRow() {
    let values = (0..<5000).map { (i: Int) -> Float in
        if i % 7 == 0 { return 0 }
        if i % 11 == 0 { return -0.0 }
        return Float((i * 7919) % 97) / 96
    }
    let order = ModelSnapshot.order(byDescending: values)
    let reference = (0..<Int32(values.count)).sorted { a, b in
        let x = values[Int(a)], y = values[Int(b)]
        return x != y ? x > y : a < b
    }
    #expect(order == reference)
    #expect(values[Int(order[0])] == 1 && values[Int(order.last!)] == 0)
    #expect(testSnapshot.trendingOrder == (0..<Int32(testSnapshot.trend.count)).sorted { a, b in
        let x = testSnapshot.trend[Int(a)], y = testSnapshot.trend[Int(b)]
        return x != y ? x > y : a < b
    })
}

/// SIMILAR answers the same once a snapshot's scan bounds are built (its bounded cosine scan skips rows), for every
/// item asked, with and without a category filter; the bounds' memory is counted.
@Test func similarIsUnchangedByScanBounds() throws {
    let path = "/tmp/kairos-similar-bounds-\(getpid()).kmodel"
    try ModelWriter.write(SyntheticModel.make(name: "m", version: 1, items: 3000, users: 20, dimensions: 16, seed: 9), to: path)
    let model = try MappedModel(path: path)
    unlink(path)
    let s = ModelSnapshot(model: model, loadedAt: 0)
    let names = try #require(model.categoryNames)
    let ref = ModelRef(name: "m")
    let requests = stride(from: 0, to: 3000, by: 97).flatMap { i in
        [SimilarRequest(model: ref, item: "item-\(i)", k: 50),
         SimilarRequest(model: ref, item: "item-\(i)", k: 10, category: names[i % names.count])]
    }
    #expect(s.derivedBytes == 0)
    let before = requests.map { Scorer.similar($0, on: s) }
    #expect(s.itemCosineBounds == nil)
    s.buildDerivedTables()
    guard let scan = s.itemScanBounds else { return }  // no AVX-512 VNNI here: nothing to compare
    let unit = try #require(s.itemCosineBounds)
    // The bounds, the norms, the category index and the trending order (4 bytes per item each, plus the category
    // offsets).
    let tables = 3 * 4 * 3000 + 8 * (names.count + 1)
    #expect(s.derivedBytes == scan.byteCount + unit.byteCount + tables && unit.byteCount == 8 * 3000)
    let after = requests.map { Scorer.similar($0, on: s) }
    #expect(before == after)
    #expect(before.allSatisfy { ($0?.items.count ?? 0) > 0 })
}

/// TOPK within a category equals TOPK over every item with that category's items kept, scores and order alike,
/// whether the category is ranked from its own rows (12 categories: a twelfth of the items each) or by a scan with
/// the others at -infinity (3 categories): with the stored blends' category affinity, repeats and buy-again, custom
/// weights, exclusions, real-time events, and an unknown user.
@Test(arguments: [12, 3])
func topKWithinACategoryIsTheCatalogueRankingFiltered(categories: Int) throws {
    var c = SyntheticModel.make(name: "c", version: 1, items: 600, users: 40, dimensions: 8, categories: categories, seed: 23)
    c.metadata.scoring = [
        "exclude-seen": ["dot": 1, "trending": 0.5, "buy-again": 0, "category": 2],
        "allow-repeats": ["dot": 0.5, "trending": 0.3, "buy-again": 1, "category": 1],
    ]
    let path = "/tmp/kairos-category-test-\(getpid())-\(categories).kmodel"
    try ModelWriter.write(c, to: path)
    defer { unlink(path) }
    let s = ModelSnapshot(model: try MappedModel(path: path), loadedAt: 0)
    let ref = ModelRef(name: "c")
    let names = try #require(s.model.categoryNames)
    let gathered = (0..<categories).filter { cat in
        s.itemCategories.filter { $0 == UInt32(cat) }.count * Scorer.topKGatherBelow <= 600
    }
    #expect(categories == 3 ? gathered.isEmpty : gathered.count >= 6)  // both ways of ranking are covered
    let events = RealtimeContext(events: [RealtimeEvent(item: "item-7", strength: 4, timestamp: now - 60)], now: now)
    var checked = 0
    for user in ["user-3", "user-17", "user-39", "stranger"] {
        let variants: [TopKRequest] = [
            TopKRequest(model: ref, user: user, k: 10),
            TopKRequest(model: ref, user: user, k: 10, options: .allowRepeats),
            TopKRequest(model: ref, user: user, k: 5, options: [.allowRepeats, .customWeights], trendingWeight: 2, buyAgainWeight: 3),
            TopKRequest(model: ref, user: user, k: 10, exclude: ["item-1", "item-2", "item-3", "item-4"]),
            TopKRequest(model: ref, user: user, k: 10, context: events),
        ]
        for var r in variants {
            let k = Int(r.k)
            r.k = 600
            let all = Scorer.topK(r, on: s, now: now)
            for cat in 0..<categories {
                r.k = UInt16(k)
                r.category = names[cat]
                let within = Scorer.topK(r, on: s, now: now)
                let expected = all.items.filter { s.itemCategories[s.model.items.row(of: $0.item)!] == UInt32(cat) }.prefix(k)
                #expect(within.items == Array(expected), "\(user) \(r.options) category \(cat)")
                #expect(within.flags == all.flags)
                checked += within.items.count
                r.category = ""
            }
        }
    }
    #expect(checked > 500)
}

@Suite struct StoredBlendTests {
    static let contents = SyntheticModel.make(name: "b", version: 1, items: 300, users: 30, dimensions: 8, seed: 21)

    /// A snapshot whose metadata carries the trainer's blend weights (and parameters).
    static func snapshot(scoring: [String: [String: Double]], parameters: [String: Double] = [:]) -> ModelSnapshot {
        var c = contents
        c.metadata.scoring = scoring
        c.metadata.parameters.merge(parameters) { _, new in new }
        let path = "/tmp/kairos-blend-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).kmodel"
        try! ModelWriter.write(c, to: path)
        defer { unlink(path) }
        return ModelSnapshot(model: try! MappedModel(path: path), loadedAt: 0)
    }

    /// The stored blend is what TOPK ranks by: all weight on trending gives the trending order minus history.
    @Test func storedTrendingOnlyBlendRanksByTrend() throws {
        let s = Self.snapshot(scoring: ["exclude-seen": ["dot": 0, "trending": 1, "buy-again": 0, "category": 0]])
        let row = 4
        let history = Set(s.model.history!.entries(ofUser: row).items.map { Int32($0) })
        let r = Scorer.topK(TopKRequest(model: ModelRef(name: "b"), user: "user-\(row)", k: 8), on: s, now: now)
        let expected = s.trendingOrder.filter { !history.contains($0) }.prefix(8).map { "item-\($0)" }
        #expect(r.items.map(\.item) == Array(expected))
    }

    /// Freshness is `0.5^(days since first seen / half-life)`, added with its weight: TOPK equals a brute-force
    /// ranking by `u.v + bias + 2 F` computed here from the first-seen times; without a half-life it adds nothing.
    @Test func freshnessWeightAddsNewArrivals() throws {
        let blend = ["exclude-seen": ["dot": 1.0, "freshness": 2]]
        let s = Self.snapshot(scoring: blend, parameters: ["freshness_half_life_days": 10])
        let firstSeen = try #require(Self.contents.firstSeen)
        let m = s.model
        let row = 6
        let u = RowEncoder.decodeRow(row, of: m.userFactors!)
        let history = Set(m.history!.entries(ofUser: row).items.map(Int.init))
        func fresh(_ i: Int) -> Double { pow(0.5, Double(firstSeen.referenceTime - firstSeen.times[i]) / 86_400 / 10) }
        func dotBias(_ i: Int) -> Double {
            zip(u, RowEncoder.decodeRow(i, of: m.itemFactors)).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } + Double(m.itemBiases![i])
        }
        let expected = (0..<300).filter { !history.contains($0) }.map { ($0, dotBias($0) + 2 * fresh($0)) }
            .sorted { $0.1 > $1.1 }.prefix(8)
        let r = Scorer.topK(TopKRequest(model: ModelRef(name: "b"), user: "user-\(row)", k: 8), on: s, now: now)
        #expect(r.items.map(\.item) == expected.map { "item-\($0.0)" })
        for (got, want) in zip(r.items, expected) { #expect(abs(Double(got.score) - want.1) < 1e-4) }
        // The plain dot product ranks differently here, so the term is doing the work.
        let plain = (0..<300).filter { !history.contains($0) }.map { ($0, dotBias($0)) }.sorted { $0.1 > $1.1 }.prefix(8)
        #expect(plain.map(\.0) != expected.map(\.0))
        // No half-life parameter: freshness is zero and the weight changes nothing.
        let without = Self.snapshot(scoring: blend)
        #expect(without.fresh.allSatisfy { $0 == 0 })
        let r0 = Scorer.topK(TopKRequest(model: ModelRef(name: "b"), user: "user-\(row)", k: 8), on: without, now: now)
        #expect(r0.items.map(\.item) == plain.map { "item-\($0.0)" })
    }

    /// Category affinity lifts items of the categories the user's history is in.
    @Test func categoryAffinityLiftsTheUsersCategories() throws {
        let s = Self.snapshot(scoring: ["exclude-seen": ["dot": 0, "trending": 0, "buy-again": 0, "category": 1]])
        let m = s.model
        let row = try #require((0..<30).first { !m.history!.entries(ofUser: $0).items.isEmpty })
        let cats = Set(m.history!.entries(ofUser: row).items.compactMap { m.attributes!.category(Int($0)) })
        let r = Scorer.topK(TopKRequest(model: ModelRef(name: "b"), user: "user-\(row)", k: 5), on: s, now: now)
        #expect(r.items.count == 5)
        #expect(r.items.allSatisfy { cats.contains(m.attributes!.category(m.items.row(of: $0.item)!)!) }, "\(cats) \(r.items.map { ($0.item, $0.score, m.attributes!.category(m.items.row(of: $0.item)!)) })")
    }
}
