import Dispatch
import KairosModelFormat

#if canImport(Glibc)
    import Glibc
#endif

/// How the hour-of-week activity profiles behind PUSH_DECIDE's send time are built from the log.
///
/// A user's profile counts their *active hours* (distinct clock hours with at least one event, so that a 20-line
/// order or a 30-rating session is one visit, not 30), each weighted by its decay, per hour-of-week bucket. The counts
/// are spread over `bandwidthHours` neighbouring hours (a triangular kernel around the week's ring), a `dailyShare` of
/// them over the same hour of every weekday (a daily habit), and shrunk toward the population profile with
/// `priorWeight` pseudo active hours. Measured on Instacart's real order hours: per-user counts alone put the first
/// order of a day among the profile's 3 best hours less often than the population profile does (0.231 against
/// 0.254); smoothed and shrunk, 0.34.
public struct ActivitySpec: Sendable, Hashable {
    /// Half-life in days of an active hour's weight (0: no decay).
    public var halfLifeDays: Double
    /// Hours on each side an active hour is spread over (0: its own bucket only).
    public var bandwidthHours: Int
    /// Share of a user's weight spread evenly over the same hour of all seven weekdays.
    public var dailyShare: Double
    /// Pseudo active hours of the population profile added to each user's.
    public var priorWeight: Double

    /// Creates a spec.
    public init(halfLifeDays: Double, bandwidthHours: Int, dailyShare: Double, priorWeight: Double) {
        self.halfLifeDays = halfLifeDays
        self.bandwidthHours = bandwidthHours
        self.dailyShare = dailyShare
        self.priorWeight = priorWeight
    }

    /// What the trainer uses without validation (`--no-tune`, or a log too short to split): the middle of the values
    /// validation chose on ml-100k and Instacart.
    public static let standard = ActivitySpec(halfLifeDays: 0, bandwidthHours: 2, dailyShare: 0.5, priorWeight: 10)

    static let halfLives: [Double] = [0, 90, 30]
    static let bandwidths = [0, 1, 2, 3]
    static let dailyShares = [0, 0.5, 0.8]
    static let priorWeights: [Double] = [1, 3, 10, 30, 100]

    /// The spec's entries in metadata `parameters` and the metrics JSON.
    var parameters: [String: Double] {
        [
            "activity_half_life_days": halfLifeDays,
            "activity_bandwidth_hours": Double(bandwidthHours),
            "activity_daily_share": dailyShare,
            "activity_prior_weight": priorWeight,
        ]
    }

    var summary: String {
        "half-life \(halfLifeDays > 0 ? "\(Format.number(halfLifeDays)) d" : "none"), bandwidth \(bandwidthHours) h, "
            + "daily share \(Format.number(dailyShare)), prior \(Format.number(priorWeight)) active hours"
    }
}

/// Decayed active-hour counts per hour-of-week bucket, for some users and for the whole population.
struct ActiveHours {
    static let buckets = ActivityProfiles.buckets
    /// `rows x 168` counts; row `r` belongs to the user whose `rowOfUser` entry is `r`.
    var counts: [Float]
    /// Every user's counts added up (168 values).
    var population: [Float]

    /// Counts `log`'s active hours; `rowOfUser[u]` is user `u`'s row, or -1 to count them in the population only.
    init(_ log: EventLog, halfLifeDays: Double, reference: Int64, rowOfUser: [Int32], rows: Int) {
        let n = Self.buckets
        var counts = [Float](repeating: 0, count: rows * n)
        var population = [Float](repeating: 0, count: n)
        let decay = halfLifeDays > 0 ? DecaySpec.exponential(halfLifeDays: halfLifeDays) : DecaySpec(form: .none)
        let cache = DecayCache(decay: decay, reference: reference)
        Self.forEachActiveHour(log) { user, hour in
            let t = hour * 3600
            let b = Signals.hourOfWeek(t)
            let w = Float(cache.weight(t))
            population[b] += w
            let r = rowOfUser[Int(user)]
            if r >= 0 { counts[Int(r) * n + b] += w }
        }
        self.counts = counts
        self.population = population
    }

    /// Calls `body(user, hour)` once per distinct (user, clock hour since the epoch) of `log`, in user order.
    static func forEachActiveHour(_ log: EventLog, _ body: (UInt32, Int64) -> Void) {
        // Ingest leaves each user's events together and in time order: one pass. Other logs are sorted here.
        var ordered = log.isGroupedByUser
        if ordered {
            for e in 1..<max(1, log.count) where log.users[e] == log.users[e - 1] && log.times[e] < log.times[e - 1] {
                ordered = false
                break
            }
        }
        if ordered {
            for e in 0..<log.count {
                let h = floorHour(log.times[e])
                if e > 0 && log.users[e] == log.users[e - 1] && floorHour(log.times[e - 1]) == h { continue }
                body(log.users[e], h)
            }
            return
        }
        var pairs = (0..<log.count).map { (log.users[$0], floorHour(log.times[$0])) }
        pairs.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        for k in pairs.indices where k == 0 || pairs[k] != pairs[k - 1] { body(pairs[k].0, pairs[k].1) }
    }

    static func floorHour(_ t: Int64) -> Int64 { t >= 0 ? t / 3600 : (t - 3599) / 3600 }

    /// The population's profile as a distribution: its counts spread like a user's, plus one active hour spread
    /// evenly, so that no bucket has probability 0.
    static func populationDistribution(_ population: [Float], bandwidthHours: Int) -> [Float] {
        let s = spread(population, bandwidthHours: bandwidthHours, dailyShare: 0)
        let total = s.reduce(0, +) + 1
        return s.map { ($0 + 1 / Float(buckets)) / total }
    }

    /// `c` spread over neighbouring hours (triangular kernel, weights `bw + 1 - |d|`, around the week's ring) and a
    /// `dailyShare` of it over the same hour of every weekday; the total is kept.
    static func spread(_ c: some Collection<Float>, bandwidthHours bw: Int, dailyShare: Double) -> [Float] {
        let n = buckets
        let src = Array(c)
        var s = src
        if bw > 0 {
            let norm = Float((bw + 1) * (bw + 1))
            for b in 0..<n {
                var acc: Float = 0
                for d in -bw...bw { acc += Float(bw + 1 - abs(d)) * src[(b + d + n) % n] }
                s[b] = acc / norm
            }
        }
        if dailyShare > 0 {
            let g = Float(dailyShare)
            var hourly = [Float](repeating: 0, count: 24)
            for b in 0..<n { hourly[b % 24] += s[b] }
            for b in 0..<n { s[b] = (1 - g) * s[b] + g * hourly[b % 24] / 7 }
        }
        return s
    }

    /// The profile of the user in `row` as a distribution over the 168 buckets, shrunk toward `prior` (a
    /// distribution) with `spec.priorWeight` pseudo active hours; `prior` itself when the user has no weight.
    func profile(row: Int, spec: ActivitySpec, prior: [Float]) -> [Float] {
        let n = Self.buckets
        let c = counts[(row * n)..<((row + 1) * n)]
        let total = c.reduce(0, +)
        let beta = Float(spec.priorWeight)
        guard total + beta > 0 else { return prior }
        let s = Self.spread(c, bandwidthHours: spec.bandwidthHours, dailyShare: spec.dailyShare)
        return (0..<n).map { (s[$0] + beta * prior[$0]) / (total + beta) }
    }

    /// A distribution as the model stores it: scaled so its largest value is 255, rounded (all zeros stay zeros).
    static func quantized(_ p: [Float]) -> [UInt8] {
        guard let m = p.max(), m > 0 else { return [UInt8](repeating: 0, count: p.count) }
        return p.map { UInt8(min(255, ($0 / m * 255).rounded())) }
    }
}

/// Active hours after a cut, for judging profiles built before it.
struct TimingSet {
    /// Users (rows of the log's id table) with events both before and after the cut.
    var users: [Int] = []
    /// Per user, the bucket of each active hour after the cut.
    var hours: [[UInt8]] = []
    /// Per user, the bucket of the first active hour of each UTC day with activity after the cut.
    var firstOfDay: [[UInt8]] = []
    /// Per user of the log's id table, their index in ``users``, or -1.
    var rowOfUser: [Int32] = []

    /// The set for `future` against `past` (same id tables), thinned evenly to at most `maxUsers` users.
    init(past: EventLog, future: EventLog, maxUsers: Int) {
        var known = [Bool](repeating: false, count: past.userIds.count)
        for u in past.users { known[Int(u)] = true }
        // Two passes, so that only the kept users' hours are ever held (20k of 200k users on a 10M-event log).
        var active = [Bool](repeating: false, count: past.userIds.count)
        for u in future.users where known[Int(u)] { active[Int(u)] = true }
        var users = active.indices.filter { active[$0] }
        if users.count > maxUsers {
            let step = Double(users.count) / Double(maxUsers)
            users = (0..<maxUsers).map { users[Int(Double($0) * step)] }
        }
        var row = [Int32](repeating: -1, count: past.userIds.count)
        for (n, u) in users.enumerated() { row[u] = Int32(n) }
        rowOfUser = row
        self.users = users
        hours = [[UInt8]](repeating: [], count: users.count)
        firstOfDay = [[UInt8]](repeating: [], count: users.count)
        var lastDay = [Int64](repeating: .min, count: users.count)
        // forEachActiveHour goes through each user's hours in ascending order: the first of each day comes first.
        ActiveHours.forEachActiveHour(future) { user, hour in
            let n = Int(row[Int(user)])
            guard n >= 0 else { return }
            let b = UInt8(Signals.hourOfWeek(hour * 3600))
            hours[n].append(b)
            let day = hour >= 0 ? hour / 24 : (hour - 23) / 24
            if day != lastDay[n] { firstOfDay[n].append(b) }
            lastDay[n] = day
        }
    }

    /// The share of the user's active days whose first active hour is among the profile's `top` best hours of that
    /// weekday, counting ties at the cut-off by their chance under a random order (a flat profile scores top/24).
    static func hitRate(_ p: [Float], firstOfDay: [UInt8], top: Int) -> Double {
        guard !firstOfDay.isEmpty else { return 0 }
        var sum = 0.0
        for b in firstOfDay {
            let day = Int(b) / 24 * 24
            let v = p[Int(b)]
            var above = 0
            var equal = 0
            for h in day..<(day + 24) {
                if p[h] > v { above += 1 } else if p[h] == v { equal += 1 }
            }
            sum += min(1, max(0, Double(top - above) / Double(equal)))
        }
        return sum / Double(firstOfDay.count)
    }

    /// Mean natural log of the profile's probability of each active hour (nil if any has probability 0).
    static func logLikelihood(_ p: [Float], hours: [UInt8]) -> Double? {
        guard !hours.isEmpty else { return 0 }
        var sum = 0.0
        for b in hours {
            let x = Double(p[Int(b)])
            guard x > 0 else { return nil }
            sum += log(x)
        }
        return sum / Double(hours.count)
    }
}

/// Per-user push-timing scores of one kind of profile on a ``TimingSet``.
struct TimingRun {
    /// Top hours of the day a hit must fall in.
    static let top = 3
    var userHit: [Double] = []
    /// Empty when some profile gives an active hour probability 0 (raw counts).
    var userLogLikelihood: [Double] = []

    /// Scores `profileOf(n)`, the profile for the set's `n`-th user: `hit@3` on its 8-bit form (what the model file
    /// stores and PUSH_DECIDE compares, ties included), the log-likelihood on the distribution itself.
    init(_ set: TimingSet, profileOf: (Int) -> [Float]) {
        var ll: [Double]? = []
        for n in set.users.indices {
            let p = profileOf(n)
            let stored = ActiveHours.quantized(p).map { Float($0) }
            userHit.append(TimingSet.hitRate(stored, firstOfDay: set.firstOfDay[n], top: Self.top))
            if let l = TimingSet.logLikelihood(p, hours: set.hours[n]) { ll?.append(l) } else { ll = nil }
        }
        userLogLikelihood = ll ?? []
    }

    /// `hit@3` and `log_likelihood` (means over users) with their standard errors, as the metrics JSON has them.
    var dictionary: [String: Double] {
        var d: [String: Double] = ["users": Double(userHit.count)]
        let h = pairedDifference(userHit, [Double](repeating: 0, count: userHit.count))
        d["hit@\(Self.top)"] = h.mean
        d["hit@\(Self.top)_se"] = h.standardError
        if !userLogLikelihood.isEmpty {
            let l = pairedDifference(userLogLikelihood, [Double](repeating: 0, count: userLogLikelihood.count))
            d["log_likelihood"] = l.mean
            d["log_likelihood_se"] = l.standardError
        }
        return d
    }

    /// This run's mean gain over `other` on the same users, paired, with its standard error: `hit@3_gain(_se)` and,
    /// where both have one, `log_likelihood_gain(_se)`.
    func gains(over other: TimingRun) -> [String: Double] {
        let h = pairedDifference(userHit, other.userHit)
        var d = ["hit@\(Self.top)_gain": h.mean, "hit@\(Self.top)_gain_se": h.standardError]
        if !userLogLikelihood.isEmpty && userLogLikelihood.count == other.userLogLikelihood.count {
            let l = pairedDifference(userLogLikelihood, other.userLogLikelihood)
            d["log_likelihood_gain"] = l.mean
            d["log_likelihood_gain_se"] = l.standardError
        }
        return d
    }
}

/// Choosing and judging activity profiles.
enum ActivityTiming {
    /// Most users a timing set keeps (scoring one is a few microseconds per candidate profile).
    static let maxUsers = 20_000

    /// The spec with the best mean log-likelihood of the validation window's active hours, over the grid of
    /// half-lives, bandwidths, daily shares and prior weights; with it, that likelihood and the population's.
    static func choose(
        sub: EventLog,
        val: EventLog,
        threads: Int = 1
    ) -> (spec: ActivitySpec, logLikelihood: Double, population: Double)? {
        let set = TimingSet(past: sub, future: val, maxUsers: maxUsers)
        guard !set.users.isEmpty, let reference = sub.timeRange?.upperBound else { return nil }
        var best: (spec: ActivitySpec, logLikelihood: Double, population: Double)?
        for h in ActivitySpec.halfLives {
            let counts = ActiveHours(
                sub, halfLifeDays: h, reference: reference, rowOfUser: set.rowOfUser, rows: set.users.count)
            let priors = ActivitySpec.bandwidths.map { ActiveHours.populationDistribution(counts.population, bandwidthHours: $0) }
            let populationLL = priors.map { prior in
                set.hours.map { TimingSet.logLikelihood(prior, hours: $0)! }.reduce(0, +) / Double(set.users.count)
            }
            let combos = ActivitySpec.bandwidths.indices.flatMap { i in ActivitySpec.dailyShares.map { (i, $0) } }
            // Per combination, the summed per-user mean log-likelihood of every prior weight. Each combination is
            // summed in user order by one thread, so the result does not depend on the thread count.
            var sums = [[Double]](repeating: [], count: combos.count)
            sums.withUnsafeMutableBufferPointer { out in
                let slots = SendablePointer(out.baseAddress!)
                let parts = max(1, min(threads, combos.count))
                DispatchQueue.concurrentPerform(iterations: parts) { part in
                    for c in stride(from: part, to: combos.count, by: parts) {
                        let (i, share) = combos[c]
                        slots.pointer[c] = logLikelihoodSums(
                            set, counts, bandwidthHours: ActivitySpec.bandwidths[i], dailyShare: share, prior: priors[i])
                    }
                }
            }
            for (c, (i, share)) in combos.enumerated() {
                for (j, beta) in ActivitySpec.priorWeights.enumerated() {
                    let mean = sums[c][j] / Double(set.users.count)
                    if best == nil || mean > best!.logLikelihood + 1e-12 {
                        let spec = ActivitySpec(
                            halfLifeDays: h, bandwidthHours: ActivitySpec.bandwidths[i], dailyShare: share, priorWeight: beta)
                        best = (spec, mean, populationLL[i])
                    }
                }
            }
        }
        return best
    }

    /// For each prior weight of the grid, the sum over the set's users of their mean log-likelihood under counts spread
    /// by `bandwidthHours` and `dailyShare` and shrunk toward `prior`. Each weight only rescales the same spread counts,
    /// so each user is spread once and scored for all of them.
    static func logLikelihoodSums(
        _ set: TimingSet,
        _ counts: ActiveHours,
        bandwidthHours: Int,
        dailyShare: Double,
        prior: [Float]
    ) -> [Double] {
        var sums = [Double](repeating: 0, count: ActivitySpec.priorWeights.count)
        for n in set.users.indices {
            let c = counts.counts[(n * ActiveHours.buckets)..<((n + 1) * ActiveHours.buckets)]
            let total = Double(c.reduce(0, +))
            let s = ActiveHours.spread(c, bandwidthHours: bandwidthHours, dailyShare: dailyShare)
            let hours = set.hours[n]
            for (j, beta) in ActivitySpec.priorWeights.enumerated() {
                var l = 0.0
                for b in hours { l += log((Double(s[Int(b)]) + beta * Double(prior[Int(b)])) / (total + beta)) }
                sums[j] += l / Double(hours.count)
            }
        }
        return sums
    }

    /// The stored profiles of every user of `log` (plus the population's last row) under `spec`.
    static func profiles(_ log: EventLog, spec: ActivitySpec, reference: Int64) -> ActivityProfiles {
        let users = log.userIds.count
        let n = ActiveHours.buckets
        let counts = ActiveHours(
            log,
            halfLifeDays: spec.halfLifeDays,
            reference: reference,
            rowOfUser: (0..<users).map { Int32($0) },
            rows: users
        )
        let prior = ActiveHours.populationDistribution(counts.population, bandwidthHours: spec.bandwidthHours)
        var out = [UInt8](repeating: 0, count: (users + 1) * n)
        for u in 0..<users {
            let q = ActiveHours.quantized(counts.profile(row: u, spec: spec, prior: prior))
            for b in 0..<n { out[u * n + b] = q[b] }
        }
        let q = ActiveHours.quantized(prior)
        for b in 0..<n { out[users * n + b] = q[b] }
        return ActivityProfiles(values: out)
    }

    /// The test-window scores of the profiles built under `spec`, of the population profile, and of the raw
    /// per-user event counts earlier versions stored (decayed by `rawDecay`, no spreading, no prior).
    static func evaluate(train: EventLog, test: EventLog, spec: ActivitySpec, rawDecay: DecaySpec) -> [String: TimingRun] {
        let set = TimingSet(past: train, future: test, maxUsers: maxUsers)
        guard !set.users.isEmpty, let reference = train.timeRange?.upperBound else { return [:] }
        let counts = ActiveHours(
            train,
            halfLifeDays: spec.halfLifeDays,
            reference: reference,
            rowOfUser: set.rowOfUser,
            rows: set.users.count
        )
        let prior = ActiveHours.populationDistribution(counts.population, bandwidthHours: spec.bandwidthHours)
        // The raw profiles: decayed event counts per bucket, as stored before profiles were smoothed.
        var raw = [Float](repeating: 0, count: set.users.count * ActiveHours.buckets)
        let cache = DecayCache(decay: rawDecay, reference: reference)
        for e in 0..<train.count {
            let r = set.rowOfUser[Int(train.users[e])]
            guard r >= 0 else { continue }
            raw[Int(r) * ActiveHours.buckets + Signals.hourOfWeek(train.times[e])] += Float(cache.weight(train.times[e]))
        }
        return [
            "profile": TimingRun(set) { counts.profile(row: $0, spec: spec, prior: prior) },
            "population": TimingRun(set) { _ in prior },
            "raw-profile": TimingRun(set) { n in
                let row = Array(raw[(n * ActiveHours.buckets)..<((n + 1) * ActiveHours.buckets)])
                return row.contains { $0 > 0 } ? row : prior
            },
        ]
    }
}
