import Glibc
import KairosModelFormat
import KairosProtocol
import KairosScoring
import Testing

@testable import KairosTrainer

/// The model the trainer writes must rank, when served, exactly as the trainer's evaluation ranked: the blend weights
/// were learned on the trainer's scores, so any drift between the two scorers silently changes what was tuned.
@Suite struct ServingParityTests {
    /// A trained model of a synthetic log with categories, served from a file with `scoring` as its blend, and the
    /// trainer's components of it (rebuilt from the log and the stored factors, as the evaluation builds them).
    struct Fixture {
        var config: TrainerConfig
        var contents: ModelContents
        var snapshot: ModelSnapshot
        var log: EventLog
        var components: ScoringComponents
        var reference: Int64
        var usersOverHistoryCap: Int
    }

    static func fixture(
        in dir: TempFolder,
        users: Int,
        items: Int,
        categories: Int,
        days: Int,
        eventsPerUser: Double,
        scoring: [EvaluationProtocol: KairosTrainer.BlendWeights],
        configure: (inout TrainerConfig) -> Void = { _ in }
    ) throws -> Fixture {
        var g = SyntheticLog()
        g.users = users
        g.items = items
        g.categories = categories
        g.days = days
        g.eventsPerUser = eventsPerUser
        let events = "\(dir.path)/e.csv"
        let itemsPath = "\(dir.path)/i.csv"
        try g.writeCSV(to: events)
        try g.writeItemsCSV(to: itemsPath)
        var c = TrainerConfig(input: events)
        c.itemsPath = itemsPath
        c.als.factors = 16
        c.als.iterations = 4
        c.holdout = 0
        c.tune = false  // the weights are set below, so that no term is left out
        c.trendingHalfLifeDays = 7
        c.freshnessHalfLifeDays = 10
        configure(&c)
        let trained = try Trainer.run(c)
        var contents = try trained.requireContents()
        contents.metadata.scoring = Dictionary(uniqueKeysWithValues: scoring.map { ($0.key.rawValue, $0.value.dictionary) })
        let path = "\(dir.path)/m.kmodel"
        try ModelWriter.write(contents, to: path)
        let snapshot = ModelSnapshot(model: try MappedModel(path: path), loadedAt: 0)
        let (log, _) = try EventLogReader.read(path: events)
        let (attributes, _) = try ItemAttributesReader.read(path: itemsPath, itemIds: log.itemIds)
        let reference = log.timeRange!.upperBound
        let parameters = contents.metadata.parameters
        let factors = ALSFactors(
            factors: c.als.factors, user: contents.userFactors!.values, item: contents.itemFactors.values, losses: [],
            alpha: Float(parameters["alpha"]!), regularization: Float(parameters["regularization"]!)
        )
        let components = ScoringComponents(
            log: log,
            decay: c.decay,
            trendingDecay: .exponential(halfLifeDays: c.trendingHalfLifeDays!),
            reference: reference,
            historyCap: c.historyCap,
            categories: attributes.category,
            factors: factors,
            freshnessHalfLifeDays: c.freshnessHalfLifeDays!
        )
        return Fixture(
            config: c, contents: contents, snapshot: snapshot, log: log, components: components, reference: reference,
            usersOverHistoryCap: trained.report.data.usersOverHistoryCap
        )
    }

    /// For every term of the blend (dot, trending, buy-again, category, freshness) at once, the server's TOPK of each
    /// user equals the trainer's ranking of the same user under the weights stored in the model: the same items in
    /// the same order with the same scores, excluding the user's history or (allow-repeats) boosting it.
    @Test func servedTopKIsTheTrainersRanking() throws {
        let dir = TempFolder()
        let weights: [EvaluationProtocol: KairosTrainer.BlendWeights] = [
            .excludeSeen: KairosTrainer.BlendWeights(dot: 2, trending: 0.5, buyAgain: 0, category: 0.3, freshness: 0.2),
            .allowRepeats: KairosTrainer.BlendWeights(dot: 0.7, trending: 0.2, buyAgain: 1.5, category: 0.1, freshness: 0.05),
        ]
        // History capped below most users' item counts: exclusion and buy-again see the capped history.
        let f = try Self.fixture(in: dir, users: 90, items: 150, categories: 6, days: 60, eventsPerUser: 20, scoring: weights) {
            $0.historyCap = 12
        }
        let (c, contents, snapshot, log, components, reference) = (f.config, f.contents, f.snapshot, f.log, f.components, f.reference)
        var itemsPerUser = [Set<UInt32>](repeating: [], count: log.userIds.count)
        for e in 0..<log.count { itemsPerUser[Int(log.users[e])].insert(log.items[e]) }
        let overCap = itemsPerUser.filter { $0.count > c.historyCap }.count
        #expect(overCap > 10 && f.usersOverHistoryCap == overCap)
        // The stored weights of each protocol, plus repeats allowed with the request's own weights and no buy-again
        // boost: the user's history then competes with the catalogue on equal terms, so a merge that drops history
        // items which belong in the top k shows.
        let cases: [(EvaluationProtocol, TopKRequest.Options, custom: (trending: Float, buyAgain: Float)?)] = [
            (.excludeSeen, [], nil),
            (.allowRepeats, .allowRepeats, nil),
            (.allowRepeats, [.allowRepeats, .customWeights], (trending: 0.1, buyAgain: 0)),
        ]
        var compared = 0
        var historyInAnswers = 0
        for (p, options, custom) in cases {
            var w = weights[p]!
            if let custom {
                w.trending = Double(custom.trending)
                w.buyAgain = Double(custom.buyAgain)
            }
            var set = EvaluationSet()
            set.users = Array(0..<min(40, log.userIds.count))
            set.truth = set.users.map { _ in [] }
            set.seen = set.users.map { u in
                p == .allowRepeats ? [] : Set(components.buyAgain(u).map(\.0))
            }
            let scorer = BlendScorer(set: set, components: components, k: 10)
            for (n, u) in set.users.enumerated() {
                let expected = scorer.ranking(user: n, w)
                let served = Scorer.topK(
                    TopKRequest(
                        model: ModelRef(name: contents.name),
                        user: log.userIds[u],
                        k: 10,
                        options: options,
                        trendingWeight: custom?.trending ?? 0,
                        buyAgainWeight: custom?.buyAgain ?? 0
                    ),
                    on: snapshot,
                    now: reference
                ).items
                #expect(served.map(\.item) == expected.map { log.itemIds[Int($0.item)] }, "\(p) \(options) user \(u)")
                for (s, e) in zip(served, expected) {
                    #expect(abs(s.score - e.score) <= 1e-4 * max(1, abs(e.score)), "\(p) user \(u) \(s.item)")
                }
                if custom != nil {
                    let history = Set(components.buyAgain(u).map(\.0))
                    historyInAnswers += expected.filter { history.contains($0.item) }.count
                }
                compared += 1
            }
        }
        #expect(compared == 120)
        // Without the boost, history items are still a good part of the answers (and not all of them).
        #expect(historyInAnswers > 40 && historyInAnswers < 360, "\(historyInAnswers)")
        // Every term reached the rankings: the fixture has categories, fresh items and histories.
        #expect(components.categoryCount > 1 && components.freshness.contains { $0 > 0.01 })
    }

    /// Real-time events: the server's TOPK of a user with events equals the trainer's session ranking (the user's row
    /// folded as ``RealtimeSessions/Folder`` folds it, the stored history and the events' items skipped), at the
    /// weight and by the fold method the model stores; weight 0 leaves the answer as without events (less the events'
    /// items).
    @Test(arguments: [0.3, 0, 1], RealtimeFoldMethod.allCases)
    func servedTopKWithEventsIsTheTrainersSessionRanking(weight: Double, method: RealtimeFoldMethod) throws {
        let dir = TempFolder()
        let blend = KairosTrainer.BlendWeights(dot: 2, trending: 0.5, buyAgain: 0, category: 0.3, freshness: 0.2)
        let f = try Self.fixture(in: dir, users: 60, items: 120, categories: 5, days: 40, eventsPerUser: 15, scoring: [.excludeSeen: blend]) {
            $0.realtimeWeight = weight
            $0.realtimeFold = method
        }
        let (c, contents, snapshot, log, components, reference) = (f.config, f.contents, f.snapshot, f.log, f.components, f.reference)
        #expect(contents.metadata.parameters["realtime_weight"] == weight)
        #expect(contents.metadata.parameters["realtime_fold"] == (method == .leastSquares ? 1 : 0))
        #expect((snapshot.leastSquaresFold != nil) == (method == .leastSquares))
        let factors = components.factors!
        // Sessions by hand: three events each (strengths 1-8, minutes to days old) on items the user has not had.
        var sessions = RealtimeSessions()
        var rng = SplitMix64(seed: 17)
        for u in 0..<30 {
            let had = Set(components.buyAgain(u).map(\.0))
            let fresh = (0..<Int32(log.itemIds.count)).filter { !had.contains($0) }
            let context = (0..<3).map { j in
                RealtimeSessions.Event(
                    item: fresh[Int(rng.next() % UInt64(fresh.count))],
                    strength: [1, 2, 4, 8][Int(rng.next() % 4)],
                    time: reference - Int64(rng.next() % 200_000) - Int64(j)
                )
            }
            sessions.set.users.append(u)
            sessions.set.truth.append([])
            sessions.set.seen.append(had.union(context.map(\.item)))
            sessions.context.append(context)
            sessions.now.append(reference)
        }
        var rows = factors
        sessions.fold(
            factors, into: &rows, weight: weight, decay: c.decay,
            folder: RealtimeSessions.Folder(method: method, factors: factors, history: components.history)
        )
        let folded = components.withFactors(rows)
        let scorer = BlendScorer(set: sessions.set, components: folded, k: 10)
        var moved = 0
        for (n, u) in sessions.set.users.enumerated() {
            let expected = scorer.ranking(user: n, blend)
            let request = TopKRequest(
                model: ModelRef(name: contents.name),
                user: log.userIds[u],
                k: 10,
                context: RealtimeContext(
                    events: sessions.context[n].map { RealtimeEvent(item: log.itemIds[Int($0.item)], strength: $0.strength, timestamp: $0.time) },
                    now: reference
                )
            )
            let served = Scorer.topK(request, on: snapshot, now: reference).items
            #expect(served.map(\.item) == expected.map { log.itemIds[Int($0.item)] }, "\(method) weight \(weight) user \(u)")
            for (s, e) in zip(served, expected) {
                #expect(abs(s.score - e.score) <= 1e-4 * max(1, abs(e.score)), "weight \(weight) user \(u) \(s.item)")
            }
            var plain = request
            plain.context = RealtimeContext(now: reference)
            plain.k = 13
            let without = Scorer.topK(plain, on: snapshot, now: reference).items.filter { item in
                !sessions.context[n].contains { log.itemIds[Int($0.item)] == item.item }
            }.prefix(10)
            if served.map(\.item) != without.map(\.item) { moved += 1 }
        }
        // The events moved answers exactly when they weigh something.
        #expect(weight == 0 ? moved == 0 : moved > 10, "\(moved) answers moved at weight \(weight) (\(method))")
    }

    /// A user the model does not know, with events: the server's TOPK equals the trainer's new-user session ranking
    /// (``RealtimeSessions/newUserVectors(_:typicalNorm:decay:)``: the events' items summed, scaled to a typical user's
    /// norm, no history), and the trainer's typical norm is the snapshot's.
    @Test func servedTopKOfANewUserIsTheTrainersNewUserRanking() throws {
        let dir = TempFolder()
        let blend = KairosTrainer.BlendWeights(dot: 2, trending: 0.5, buyAgain: 0, category: 0.3, freshness: 0.2)
        let f = try Self.fixture(in: dir, users: 60, items: 120, categories: 5, days: 40, eventsPerUser: 15, scoring: [.excludeSeen: blend])
        let (c, contents, snapshot, log, components, reference) = (f.config, f.contents, f.snapshot, f.log, f.components, f.reference)
        let factors = components.factors!
        #expect(RealtimeSessions.typicalUserNorm(factors) == snapshot.typicalUserNorm)
        var sessions = RealtimeSessions()
        var rng = SplitMix64(seed: 23)
        for n in 0..<20 {
            let context = (0..<3).map { j in
                RealtimeSessions.Event(
                    item: Int32(rng.next() % UInt64(log.itemIds.count)),
                    strength: [1, 2, 4, 8][Int(rng.next() % 4)],
                    time: reference - Int64(rng.next() % 200_000) - Int64(j)
                )
            }
            sessions.set.users.append(n)
            sessions.set.truth.append([])
            sessions.set.seen.append(Set(context.map(\.item)))
            sessions.context.append(context)
            sessions.now.append(reference)
        }
        var rows = factors
        rows.user = sessions.newUserVectors(factors, typicalNorm: snapshot.typicalUserNorm, decay: c.decay)
        let scorer = BlendScorer(set: sessions.set, components: components.forNewUsers(rows), k: 10)
        for n in sessions.set.users {
            let expected = scorer.ranking(user: n, blend)
            let request = TopKRequest(
                model: ModelRef(name: contents.name),
                user: "not-a-user-\(n)",
                k: 10,
                context: RealtimeContext(
                    events: sessions.context[n].map { RealtimeEvent(item: log.itemIds[Int($0.item)], strength: $0.strength, timestamp: $0.time) },
                    now: reference
                )
            )
            let served = Scorer.topK(request, on: snapshot, now: reference)
            #expect(served.flags == .coldStartFromEvents)
            #expect(served.items.map(\.item) == expected.map { log.itemIds[Int($0.item)] }, "session \(n)")
            for (s, e) in zip(served.items, expected) {
                #expect(abs(s.score - e.score) <= 1e-4 * max(1, abs(e.score)), "session \(n) \(s.item)")
            }
        }
    }

    /// Trained timing reaches PUSH_DECIDE: asked at 09:00 UTC, the server holds each user's push until the hour they
    /// visit every day, pushes at once when that hour is now, and a user it does not know gets the population's
    /// busiest hours. (The default quiet hours, 22-08 UTC here, keep the habits inside 10-20 allowed.)
    @Test func servedPushTimeIsTheUsersHabit() throws {
        let dir = TempFolder()
        let input = dir.write(Logs.dailyVisits(users: 40, days: 42) { u, _ in 9 + u % 12 }, to: "v.csv")
        var c = TrainerConfig(input: input)
        c.output = "\(dir.path)/m.kmodel"
        c.als.factors = 8
        c.als.iterations = 4
        c.k = 5
        _ = try Trainer.run(c)
        let snapshot = ModelSnapshot(model: try MappedModel(path: c.output!), loadedAt: 0)
        let morning = Logs.monday + 42 * Logs.day + 9 * 3600  // the day after the log, 09:00 UTC
        func decide(_ user: String, at now: Int64 = morning) -> PushDecideResponse {
            let r = PushDecideRequest(
                model: ModelRef(name: "default"), user: user, recentPushes: [], threshold: -.infinity)
            return PushPolicy.decide(r, on: snapshot, now: now)
        }
        for u in [1, 4, 7, 11] {  // habits at 10:00, 13:00, 16:00 and 20:00
            let answer = decide("u\(u)")
            #expect(answer.decision == .notNow && answer.reason == .betterTimeLater, "u\(u)")
            #expect(answer.sendAt == morning + Int64(u % 12) * 3600, "u\(u)")
        }
        let now = decide("u0")  // visits at 09:00
        #expect(now.decision == .pushNow && now.sendAt == morning)
        // A stranger gets the population's profile, busiest at 09:00-12:00 (four habits each, the later hours three):
        // pushed at once at 09:00; at 21:00, held until those hours the next morning.
        let stranger = decide("nobody", at: morning)
        #expect(stranger.decision == .pushNow && stranger.sendAt == morning)
        let evening = decide("nobody", at: morning + 12 * 3600)
        #expect(evening.decision == .notNow && evening.reason == .betterTimeLater)
        #expect((morning + 24 * 3600...morning + 27 * 3600).contains(evening.sendAt), "\(evening.sendAt - morning)")
    }
}
