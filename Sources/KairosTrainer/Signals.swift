public import KairosModelFormat

/// The non-factor signals written next to the factors: popularity, trending, history; activity profiles are in ActivityTiming.swift.
public enum Signals {
    /// All-time strength sums and decayed ("trending") sums per item, as of `reference`.
    public static func popularity(_ log: EventLog, decay: DecaySpec, reference: Int64) -> ItemPopularity {
        var all = [Float](repeating: 0, count: log.itemIds.count)
        var decayed = [Double](repeating: 0, count: log.itemIds.count)
        let cache = DecayCache(decay: decay, reference: reference)
        for e in 0..<log.count {
            let i = Int(log.items[e])
            all[i] += log.strengths[e]
            decayed[i] += Double(log.strengths[e]) * cache.weight(log.times[e])
        }
        return ItemPopularity(allTime: all, decayed: decayed.map { Float($0) }, referenceTime: reference)
    }

    /// Each item's first event time, with freshness measured at `reference`.
    public static func firstSeen(_ log: EventLog, reference: Int64) -> ItemFirstSeen {
        var times = [Int64](repeating: ItemFirstSeen.never, count: log.itemIds.count)
        for e in 0..<log.count {
            let i = Int(log.items[e])
            if times[i] == ItemFirstSeen.never || log.times[e] < times[i] { times[i] = log.times[e] }
        }
        return ItemFirstSeen(times: times, referenceTime: reference)
    }

    /// Each user's items by decayed, strength-weighted sum, heaviest first, at most `cap` per user.
    public static func history(_ log: EventLog, decay: DecaySpec, reference: Int64, cap: Int) -> UserHistory {
        cappedHistory(log, decay: decay, reference: reference, cap: cap).history
    }

    /// ``history(_:decay:reference:cap:)`` and the number of users who had more than `cap` items: the server excludes
    /// and boosts only the kept ones, so their lightest items can come back under exclude-seen.
    public static func cappedHistory(
        _ log: EventLog,
        decay: DecaySpec,
        reference: Int64,
        cap: Int
    ) -> (history: UserHistory, usersOverCap: Int) {
        var usersOverCap = 0
        let nUsers = log.userIds.count
        var acc = [Double](repeating: 0, count: log.itemIds.count)
        var touched: [Int] = []
        var indptr: [UInt64] = [0]
        var items: [UInt32] = []
        var weights: [Float] = []
        let cache = DecayCache(decay: decay, reference: reference)
        for (u, events) in eventsByUser(log).enumerated() where u < nUsers {
            touched.removeAll(keepingCapacity: true)
            for e in events {
                let i = Int(log.items[e])
                if acc[i] == 0 { touched.append(i) }
                // A tiny floor keeps an item seen only long ago in the history (weight ~0), so exclusion still works.
                acc[i] += max(Double(log.strengths[e]) * cache.weight(log.times[e]), 1e-30)
            }
            // Heaviest first; ties by item row so the order is deterministic.
            touched.sort { acc[$0] != acc[$1] ? acc[$0] > acc[$1] : $0 < $1 }
            if touched.count > cap { usersOverCap += 1 }
            for i in touched.prefix(cap) {
                items.append(UInt32(i))
                weights.append(Float(acc[i]))
            }
            for i in touched { acc[i] = 0 }
            indptr.append(UInt64(items.count))
        }
        return (UserHistory(indptr: indptr, items: items, weights: weights, referenceTime: reference), usersOverCap)
    }

    /// Hour-of-week bucket of a unix time: 1970-01-01 was a Thursday (bucket 72).
    public static func hourOfWeek(_ t: Int64) -> Int {
        let day = t >= 0 ? t / 86400 : (t - 86399) / 86400
        let weekday = Int(((day + 3) % 7 + 7) % 7)
        let hour = Int((t - day * 86400) / 3600)
        return weekday * 24 + hour
    }

    /// Event indices per user (log order within a user).
    package static func eventsByUser(_ log: EventLog) -> [[Int]] {
        var out = [[Int]](repeating: [], count: log.userIds.count)
        for e in 0..<log.count { out[Int(log.users[e])].append(e) }
        return out
    }
}
