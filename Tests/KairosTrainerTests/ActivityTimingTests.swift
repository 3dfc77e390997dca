import Glibc
import KairosModelFormat
import Testing

@testable import KairosTrainer

@Suite struct ActivityTimingTests {
    let day = Logs.day
    let n = ActivityProfiles.buckets

    /// A log from (user, unix time) pairs, in the order given.
    func eventLog(_ events: [(UInt32, Int64)], users: Int) -> EventLog {
        EventLog(
            userIds: (0..<users).map { "u\($0)" },
            itemIds: ["i"],
            users: events.map(\.0),
            items: events.map { _ in 0 },
            times: events.map(\.1),
            strengths: events.map { _ in 1 }
        )
    }

    @Test func spreadKeepsTheTotalAroundTheWeek() {
        var c = [Float](repeating: 0, count: n)
        c[0] = 4  // Monday 00:00: its neighbours are Monday 01:00 and Sunday 23:00, across the week's end
        let s = ActiveHours.spread(c, bandwidthHours: 1, dailyShare: 0)
        #expect(s[0] == 2 && s[1] == 1 && s[167] == 1)
        #expect(s.reduce(0, +) == 4)
        var d = [Float](repeating: 0, count: n)
        d[9] = 7  // Monday 09:00; half of it goes to 09:00 of all seven days
        let daily = ActiveHours.spread(d, bandwidthHours: 0, dailyShare: 0.5)
        #expect(daily[9] == 4)
        for w in 1..<7 { #expect(daily[w * 24 + 9] == 0.5) }
        #expect(daily.reduce(0, +) == 7)
    }

    @Test func hitRateRanksWithinTheWeekdayAndCountsTiesByChance() {
        let flat = [Float](repeating: 1, count: n)
        #expect(TimingSet.hitRate(flat, firstOfDay: [30], top: 3) == 3.0 / 24)
        var p = flat
        p[30] = 5  // Tuesday 06:00 is that day's best hour
        p[100] = 50  // a better hour on another day does not count
        #expect(TimingSet.hitRate(p, firstOfDay: [30], top: 3) == 1)
        for h in [25, 26, 27] { p[h] = 9 }  // three better hours on Tuesday
        #expect(TimingSet.hitRate(p, firstOfDay: [30], top: 3) == 0)
        p[26] = 1
        p[27] = 1
        for h in [40, 41, 42] { p[h] = 5 }  // one above, four tied (30, 40, 41, 42) for the last two places
        #expect(TimingSet.hitRate(p, firstOfDay: [30], top: 3) == 0.5)
        #expect(TimingSet.hitRate(p, firstOfDay: [30, 25], top: 3) == 0.75)
    }

    @Test func logLikelihoodOfActiveHours() {
        let uniform = [Float](repeating: 1 / Float(n), count: n)
        let l = TimingSet.logLikelihood(uniform, hours: [0, 5, 167])!
        #expect(abs(l + log(168.0)) < 1e-6)
        var p = uniform
        p[5] = 0
        #expect(TimingSet.logLikelihood(p, hours: [0, 5]) == nil)
    }

    /// Events in the same clock hour are one active hour, whatever order the log is in.
    @Test func activeHoursCountEachClockHourOnce() {
        let m = Logs.monday
        let events: [(UInt32, Int64)] = [
            (0, m + 9 * 3600 + 60), (0, m + 9 * 3600 + 3540), (0, m + 10 * 3600),
            (1, m + day + 20 * 3600 + 1800), (1, m + day + 20 * 3600 + 1900), (0, m + 7 * day + 9 * 3600 + 5),
        ]
        let rows: [Int32] = [0, 1]
        let sorted = ActiveHours(eventLog(events, users: 2), halfLifeDays: 0, reference: m, rowOfUser: rows, rows: 2)
        let shuffled = ActiveHours(eventLog(events.reversed(), users: 2), halfLifeDays: 0, reference: m, rowOfUser: rows, rows: 2)
        #expect(sorted.counts == shuffled.counts && sorted.population == shuffled.population)
        #expect(sorted.counts[9] == 2 && sorted.counts[10] == 1)  // two Mondays at 09:00, one at 10:00
        #expect(sorted.counts[n + 44] == 1)  // Tuesday 20:00
        #expect(sorted.counts.reduce(0, +) == 4 && sorted.population.reduce(0, +) == 4)
        // Halved weight after one half-life: the 09:00 of a week before the reference counts 0.5.
        let decayed = ActiveHours(
            eventLog(events, users: 2), halfLifeDays: 7, reference: m + 7 * day + 9 * 3600, rowOfUser: rows, rows: 2)
        #expect(abs(decayed.counts[9] - 1.5) < 1e-6)
    }

    @Test func profileIsShrunkTowardThePopulation() {
        let m = Logs.monday
        let counts = ActiveHours(
            eventLog([(0, m + 9 * 3600), (0, m + day + 9 * 3600)], users: 2),
            halfLifeDays: 0, reference: m, rowOfUser: [0, 1], rows: 2)
        let prior = ActiveHours.populationDistribution(counts.population, bandwidthHours: 0)
        #expect(abs(prior.reduce(0, +) - 1) < 1e-5 && prior.allSatisfy { $0 > 0 })
        let spec = ActivitySpec(halfLifeDays: 0, bandwidthHours: 0, dailyShare: 0, priorWeight: 2)
        let p = counts.profile(row: 0, spec: spec, prior: prior)
        #expect(abs(p[9] - (1 + 2 * prior[9]) / 4) < 1e-6)  // (count + beta * prior) / (total + beta)
        #expect(abs(p[50] - 2 * prior[50] / 4) < 1e-6)
        #expect(counts.profile(row: 1, spec: spec, prior: prior) == prior)  // no activity: the population's
    }

    /// Validation keeps personal profiles for users with fixed habits and falls back toward the population for users
    /// whose hours are random.
    @Test func validationChoosesByTheData() throws {
        let dir = TempFolder()
        var seed: UInt64 = 7
        func random(_ bound: Int) -> Int {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((seed >> 33) % UInt64(bound))
        }
        let habitual = try EventLogReader.read(
            path: dir.write(Logs.dailyVisits(users: 60, days: 40) { u, _ in u % 24 }, to: "h.csv")).0
        let scattered = try EventLogReader.read(
            path: dir.write(Logs.dailyVisits(users: 60, days: 40) { _, _ in random(24) }, to: "r.csv")).0
        let cut = Logs.monday + 32 * day
        let (hSub, hVal) = habitual.split(at: cut)
        let (rSub, rVal) = scattered.split(at: cut)
        let h = try #require(ActivityTiming.choose(sub: hSub, val: hVal))
        let r = try #require(ActivityTiming.choose(sub: rSub, val: rVal))
        #expect(h.spec.priorWeight <= 3 && h.logLikelihood > h.population + 1)
        #expect(r.spec.priorWeight >= 30 && abs(r.logLikelihood - r.population) < 0.1)
        let h2 = try #require(ActivityTiming.choose(sub: hSub, val: hVal, threads: 2))
        #expect(h2.spec == h.spec && h2.logLikelihood == h.logLikelihood)  // the thread count changes nothing
    }

    /// End to end: the test report scores the stored profiles against the population's and the raw counts, and the
    /// model file's profiles peak at each user's habitual hour on every weekday.
    @Test func trainerReportsAndStoresTimingProfiles() throws {
        let dir = TempFolder()
        // Users keep their hour, except one day in five at a random-looking other hour.
        let input = dir.write(Logs.dailyVisits(users: 48, days: 56) { u, d in d % 5 == 0 ? (u * 7 + d) % 24 : u % 24 }, to: "v.csv")
        var c = TrainerConfig(input: input)
        c.output = "\(dir.path)/m.kmodel"
        c.als.factors = 8
        c.als.iterations = 4
        c.k = 5
        let result = try Trainer.run(c)
        let test = try #require(result.report.timing["test"])
        let profile = try #require(test["profile"])
        let population = try #require(test["population"])
        #expect(test["raw-profile"]?["hit@3"] != nil && test["raw-profile"]?["log_likelihood"] == nil)
        #expect(profile["hit@3"]! > population["hit@3"]! + 0.3)
        let gain = try #require(result.report.timingComparisons["population"])
        #expect(abs(gain["hit@3_gain"]! - (profile["hit@3"]! - population["hit@3"]!)) < 1e-9)
        #expect(gain["hit@3_gain_se"]! > 0)
        #expect(result.report.timing["validation"]?["profile"]?["log_likelihood"] != nil)
        #expect(result.report.parameters["activity_prior_weight"] != nil)

        let model = try MappedModel(path: c.output!)
        let activity = try #require(model.activity)
        #expect(model.metadata.parameters["activity_bandwidth_hours"] != nil)
        #expect(model.metadata.timing?["profile"] == profile && model.metadata.timing?["population"] == population)
        for u in [0, 5, 13] {
            let row = try #require(model.users?.row(of: "u\(u)"))
            let p = activity.profile(ofUser: row)
            for w in 0..<7 {
                let dayRow = (0..<24).map { p[w * 24 + $0] }
                #expect(dayRow.firstIndex(of: dayRow.max()!) == u % 24, "user u\(u), weekday \(w)")
            }
        }
    }
}
