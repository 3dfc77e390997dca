import KairosModelFormat
import Testing

@testable import KairosTrainer

/// The sessions that judge real-time events offline, and the weight the trainer learns from them.
@Suite struct RealtimeSessionsTests {
    /// A user's first three events after the split are the context, `now` the third's time; the truth is the next
    /// day's items that the model knows and the user neither had before nor named in the context. Users with no past,
    /// or three events or fewer, make no session.
    @Test func sessionsAreTheFirstEventsAndTheNextDay() {
        let ids = (0..<9).map { "i\($0)" }
        let users = ["a", "b", "c"]
        // Before the split: a had i0 and i1, b had i2-i5; i6-i8 have no event before it (no factors).
        let train = EventLog(
            userIds: users, itemIds: ids,
            users: [0, 0, 1, 1, 1, 1], items: [0, 1, 2, 3, 4, 5], times: [10, 20, 10, 11, 12, 13], strengths: [1, 1, 1, 1, 1, 1]
        )
        let day: Int64 = 86_400
        let later = EventLog(
            userIds: users, itemIds: ids,
            // a: context i3 (t 100), i4 (110), i0 (120, had before); then i5 (130: truth), i0 (140: had), i8 (150: no
            // factors), i2 (120 + day, the window's last second: truth), i3 (after the window). b: three events
            // only. c: no past.
            users: [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2],
            items: [3, 4, 0, 5, 0, 8, 2, 3, 0, 1, 3, 0, 1, 2, 3],
            times: [100, 110, 120, 130, 140, 150, 120 + day, 121 + day, 100, 101, 102, 100, 101, 102, 103],
            strengths: [2, 4, 1, 8, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
        )
        let history = Signals.history(train, decay: DecaySpec(form: .none), reference: 20, cap: 1000)
        let s = RealtimeSessions(train: train, later: later, history: history, maxUsers: 10)
        #expect(s.set.users == [0])
        #expect(s.context.first?.map(\.item) == [3, 4, 0] && s.context.first?.map(\.strength) == [2, 4, 1])
        #expect(s.now == [120])
        #expect(s.set.truth == [[5, 2]])
        #expect(s.set.seen == [[0, 1, 3, 4]])  // the stored history and the context's items
    }

    /// New-user sessions: only users with no event before the split; the context's events on items the model has no
    /// factors for are dropped (the server ignores them) but still left out of the ranking; a context of only such
    /// items makes no session; the truth is the next day's known items outside the context. Rows are the sessions'.
    @Test func newUserSessionsAreUsersWithNoPast() {
        let ids = (0..<9).map { "i\($0)" }
        let users = ["a", "b", "c", "d"]
        // Before the split only a (i0-i2); i6-i8 have no event before it.
        let train = EventLog(
            userIds: users, itemIds: ids, users: [0, 0, 0, 0], items: [0, 1, 2, 5], times: [10, 11, 12, 13], strengths: [1, 1, 1, 1]
        )
        let day: Int64 = 86_400
        let later = EventLog(
            userIds: users, itemIds: ids,
            // a: known, no session. b: context i8 (no factors), i1, i2; then i0 (truth), i6 (no factors), i5 after the
            // window. c: context i6, i7, i8 only (no factors): none. d: context i5, i5, i0; then i5 (in context), i2.
            users: [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3],
            items: [3, 4, 5, 0, 8, 1, 2, 0, 6, 5, 6, 7, 8, 0, 5, 5, 0, 5, 2],
            times: [100, 101, 102, 103, 100, 101, 102, 103, 104, 103 + day, 100, 101, 102, 103, 200, 201, 202, 203, 204],
            strengths: [1, 1, 1, 1, 2, 3, 4, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 1, 1]
        )
        let s = RealtimeSessions.newUsers(train: train, later: later, maxUsers: 10)
        #expect(s.set.users == [0, 1])
        #expect(s.set.truth == [[0], [2]])
        #expect(s.set.seen == [[8, 1, 2], [5, 0]])
        #expect(s.context.map { $0.map(\.item) } == [[1, 2], [5, 5, 0]])
        #expect(s.context.map { $0.map(\.strength) } == [[3, 4], [1, 2, 3]])
        #expect(s.now == [102, 202])
        let thinned = RealtimeSessions.newUsers(train: train, later: later, maxUsers: 1)
        #expect(thinned.set.users == [0] && thinned.now == [102])
    }

    /// The fold-in is the server's: `normalise(u + weight x sum strength x w(age) x v)` to |u|, in double precision;
    /// weight 0, or only events in the future, leave u as it is.
    @Test func foldMatchesTheDefinition() {
        let u: [Float] = [3, 4, 0, 0]
        let rows: [Int32: [Float]] = [1: [0, 0, 1, 0], 2: [0, 0, 0, 2]]
        let events = [RealtimeSessions.Event(item: 1, strength: 2, time: 90), RealtimeSessions.Event(item: 2, strength: 4, time: 100)]
        let decay = DecaySpec.exponential(halfLifeDays: 10.0 / 86_400)  // 10 s
        let folded = RealtimeSessions.fold(user: u, events: events, now: 100, weight: 0.5, decay: decay) { rows[$0]! }
        // 3, 4, 0.5 x 2 x 0.5 x 1 = 0.5, 0.5 x 4 x 1 x 2 = 4; scaled to |u| = 5.
        let raw: [Double] = [3, 4, 0.5, 4]
        let n = raw.reduce(0) { $0 + $1 * $1 }.squareRoot()
        for d in 0..<4 { #expect(abs(Double(folded[d]) - raw[d] * 5 / n) < 1e-6, "\(d)") }
        #expect(RealtimeSessions.fold(user: u, events: events, now: 100, weight: 0, decay: decay) { rows[$0]! } == u)
        #expect(RealtimeSessions.fold(user: u, events: events, now: 50, weight: 1, decay: decay) { rows[$0]! } == u)
    }

    /// Training chooses the weight on validation sessions (one of the grid), reports validation and test, and stores
    /// it in the model; `realtimeWeight` set by hand is stored as given, without choosing.
    @Test func theWeightIsChosenReportedAndStored() throws {
        let dir = TempFolder()
        var g = SyntheticLog()
        g.users = 150
        g.items = 200
        g.days = 60
        g.eventsPerUser = 30
        let events = "\(dir.path)/e.csv"
        try g.writeCSV(to: events)
        var c = TrainerConfig(input: events)
        c.als.factors = 8
        c.als.iterations = 3
        c.tuneFactorization = false
        let chosen = try Trainer.run(c)
        let weight = try #require(chosen.report.parameters["realtime_weight"])
        #expect(RealtimeSessions.weights.contains(weight))
        #expect(chosen.contents?.metadata.parameters["realtime_weight"] == weight)
        let validation = try #require(chosen.report.realtime["validation"])
        #expect(validation["chosen"] == weight && validation["users"]! > 1)
        for w in RealtimeSessions.weights { #expect(validation["ndcg@10 at \(Format.number(w))"] != nil, "\(w)") }
        let test = try #require(chosen.report.realtime["test"])
        #expect(test["weight"] == weight && test["no-events"] != nil && test["events"] != nil && test["events-weight-1_gain_se"] != nil)

        c.realtimeWeight = 0.2
        let fixed = try Trainer.run(c)
        #expect(fixed.report.parameters["realtime_weight"] == 0.2 && fixed.report.realtime["validation"] == nil)
        #expect(fixed.report.realtime["test"]?["weight"] == 0.2)
    }
}
