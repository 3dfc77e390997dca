import Glibc
import KairosModelFormat
import Testing

@testable import KairosTrainer

@Suite struct SignalsTests {
    let day = Logs.day
    let now = Logs.monday + 30 * Logs.day

    /// An item with many old events and one with a few recent ones: decay flips trending and history order
    /// and the confidences of the ALS matrix, while all-time popularity keeps the old item first.
    func driftLog() throws -> EventLog {
        var lines = ["user,item,timestamp"]
        for k in 0..<10 { lines.append("u1,old,\(now - 60 * day + Int64(k))") }
        for k in 0..<3 { lines.append("u1,new,\(now - day + Int64(k))") }
        let dir = TempFolder()
        return try EventLogReader.read(path: dir.write(lines.joined(separator: "\n") + "\n", to: "d.csv")).0
    }

    /// Decay changes the ranking: trending and history put the recent item first, all-time popularity the old one.
    @Test func decayChangesRanking() throws {
        let log = try driftLog()
        let old = log.itemIds.firstIndex(of: "old")!
        let new = log.itemIds.firstIndex(of: "new")!
        let pop = Signals.popularity(log, decay: .exponential(halfLifeDays: 7), reference: now)
        #expect(pop.allTime[old] > pop.allTime[new])
        #expect(pop.decayed[new] > pop.decayed[old])
        let h = Signals.history(log, decay: .exponential(halfLifeDays: 7), reference: now, cap: 10)
        #expect(h.items == [UInt32(new), UInt32(old)])
        let hNone = Signals.history(log, decay: DecaySpec(form: .none), reference: now, cap: 10)
        #expect(hNone.items == [UInt32(old), UInt32(new)])
        let capped = Signals.cappedHistory(log, decay: DecaySpec(form: .none), reference: now, cap: 1)
        #expect(capped.history.items == [UInt32(old)] && capped.usersOverCap == 1)
        #expect(Signals.cappedHistory(log, decay: DecaySpec(form: .none), reference: now, cap: 2).usersOverCap == 0)
        let m = Interactions.matrix(log, decay: .exponential(halfLifeDays: 7), reference: now, normalizePerUser: true)
        let value = Dictionary(uniqueKeysWithValues: zip(m.indices.map(Int.init), m.values))
        #expect(value[new]! > value[old]!)
        // Per-user normalisation: the user's values average 1.
        #expect(abs(m.values.reduce(0, +) / Float(m.values.count) - 1) < 1e-5)
    }

    /// First-seen is each item's earliest event whatever the log order; freshness follows from it: the new item
    /// (first seen 1 day before `now`) has 0.5^(1/7) with a 7-day half-life, the old one (60 days) 0.5^(60/7).
    @Test func firstSeenAndFreshness() throws {
        let log = try driftLog()
        let old = log.itemIds.firstIndex(of: "old")!
        let new = log.itemIds.firstIndex(of: "new")!
        let f = Signals.firstSeen(log, reference: now)
        #expect(f.times[old] == now - 60 * day && f.times[new] == now - day && f.referenceTime == now)
        let c = ScoringComponents(
            log: log, decay: .exponential(halfLifeDays: 7), trendingDecay: .exponential(halfLifeDays: 7), reference: now,
            historyCap: 10, categories: nil, factors: nil, freshnessHalfLifeDays: 7)
        #expect(c.hasFreshness)
        #expect(abs(Double(c.freshness[new]) - pow(0.5, 1.0 / 7)) < 1e-6)
        #expect(abs(Double(c.freshness[old]) - pow(0.5, 60.0 / 7)) < 1e-6)
        let none = ScoringComponents(
            log: log, decay: .exponential(halfLifeDays: 7), trendingDecay: .exponential(halfLifeDays: 7), reference: now,
            historyCap: 10, categories: nil, factors: nil)
        #expect(!none.hasFreshness && none.freshness == [0, 0])
    }

    @Test func hourOfWeekStartsOnMonday() {
        #expect(Signals.hourOfWeek(0) == 72)  // 1970-01-01 00:00 was a Thursday
        #expect(Signals.hourOfWeek(Logs.monday + 9 * 3600) == 9)
    }
}
