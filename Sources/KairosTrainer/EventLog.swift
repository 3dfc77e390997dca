/// An interaction log held as parallel arrays of interned ids (about 20 bytes per event, no strings per row).
public struct EventLog: Sendable {
    /// External user ids; user row = index.
    public var userIds: [String]
    /// External item ids; item row = index.
    public var itemIds: [String]
    /// User row per event.
    public var users: [UInt32]
    /// Item row per event.
    public var items: [UInt32]
    /// Unix seconds per event.
    public var times: [Int64]
    /// Strength per event (event-type weight or value).
    public var strengths: [Float]

    /// A log from parallel arrays (all of equal length; ids index the two id tables).
    public init(
        userIds: [String],
        itemIds: [String],
        users: [UInt32],
        items: [UInt32],
        times: [Int64],
        strengths: [Float]
    ) {
        self.userIds = userIds
        self.itemIds = itemIds
        self.users = users
        self.items = items
        self.times = times
        self.strengths = strengths
    }

    /// Number of events.
    public var count: Int { users.count }

    /// Oldest and newest event time.
    public var timeRange: ClosedRange<Int64>? {
        guard let lo = times.min(), let hi = times.max() else { return nil }
        return lo...hi
    }

    /// The events whose index passes `keep`, with the same id tables.
    package func filtered(_ keep: (Int) -> Bool) -> EventLog {
        var out = EventLog(userIds: userIds, itemIds: itemIds, users: [], items: [], times: [], strengths: [])
        for e in 0..<count where keep(e) {
            out.users.append(users[e])
            out.items.append(items[e])
            out.times.append(times[e])
            out.strengths.append(strengths[e])
        }
        return out
    }

    /// Sorts events by (user, time, item, strength) and drops exact repeats; returns how many were dropped.
    ///
    /// A counting sort by user keeps this linear in the number of events; only each user's own events are
    /// compared. Exact repeats (same user, item, second and strength) are logging duplicates, not behaviour.
    package mutating func sortAndDeduplicate() -> Int {
        let n = count
        guard n > 0 else { return 0 }
        var start = [Int](repeating: 0, count: userIds.count + 1)
        for u in users { start[Int(u) + 1] += 1 }
        for u in 0..<userIds.count { start[u + 1] += start[u] }
        var order = [Int32](repeating: 0, count: n)
        var fill = start
        for e in 0..<n {
            let u = Int(users[e])
            order[fill[u]] = Int32(e)
            fill[u] += 1
        }
        let t = times
        let it = items
        let s = strengths
        for u in 0..<userIds.count where start[u + 1] - start[u] > 1 {
            order[start[u]..<start[u + 1]].sort { a, b in
                let ia = Int(a)
                let ib = Int(b)
                if t[ia] != t[ib] { return t[ia] < t[ib] }
                if it[ia] != it[ib] { return it[ia] < it[ib] }
                if s[ia] != s[ib] { return s[ia] < s[ib] }
                return a < b
            }
        }
        var nu = [UInt32]()
        var ni = [UInt32]()
        var nt = [Int64]()
        var ns = [Float]()
        nu.reserveCapacity(n)
        ni.reserveCapacity(n)
        nt.reserveCapacity(n)
        ns.reserveCapacity(n)
        var dropped = 0
        for k in 0..<n {
            let e = Int(order[k])
            if let last = nu.last, last == users[e], ni.last == items[e], nt.last == times[e], ns.last == strengths[e] {
                dropped += 1
                continue
            }
            nu.append(users[e])
            ni.append(items[e])
            nt.append(times[e])
            ns.append(strengths[e])
        }
        users = nu
        items = ni
        times = nt
        strengths = ns
        return dropped
    }
}
