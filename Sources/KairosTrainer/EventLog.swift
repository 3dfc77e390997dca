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

    /// The events before `cut` and those at or after it, in their order, with the same id tables.
    ///
    /// Each part's arrays are allocated at their exact size: grown by appending, they kept up to twice the capacity
    /// they needed, and the splits of a 10M-event log (train, test, then validation inside train) are held together.
    package func split(at cut: Int64) -> (before: EventLog, after: EventLog) {
        var n = 0
        for t in times where t < cut { n += 1 }
        func part(_ size: Int) -> EventLog {
            var p = EventLog(userIds: userIds, itemIds: itemIds, users: [], items: [], times: [], strengths: [])
            p.users.reserveCapacity(size)
            p.items.reserveCapacity(size)
            p.times.reserveCapacity(size)
            p.strengths.reserveCapacity(size)
            return p
        }
        var before = part(n)
        var after = part(count - n)
        for e in 0..<count {
            if times[e] < cut {
                before.append(e, of: self)
            } else {
                after.append(e, of: self)
            }
        }
        return (before, after)
    }

    /// The log of `before` and `after` (the two parts of ``split(at:)``) in the order the split log had, each user's
    /// events before the cut then theirs after it; `before` and `after` are emptied as it is built, so the events are
    /// held once, not twice. Parts not grouped by user (a log that skipped ingest's sort) are sorted again.
    package static func rejoining(_ before: inout EventLog, _ after: inout EventLog) -> EventLog {
        var out = EventLog(userIds: before.userIds, itemIds: before.itemIds, users: [], items: [], times: [], strengths: [])
        guard before.isGroupedByUser, after.isGroupedByUser else {
            for part in [before, after] {
                out.users += part.users
                out.items += part.items
                out.times += part.times
                out.strengths += part.strengths
            }
            before.removeEvents()
            after.removeEvents()
            _ = out.sortAndDeduplicate()
            return out
        }
        let n = before.count + after.count
        out.users.reserveCapacity(n)
        out.items.reserveCapacity(n)
        out.times.reserveCapacity(n)
        out.strengths.reserveCapacity(n)
        var a = 0
        var b = 0
        while a < before.count || b < after.count {
            // The next user's events: the lower user row of the two heads, `before`'s first on a tie.
            let takeBefore = b == after.count || a < before.count && before.users[a] <= after.users[b]
            let u = takeBefore ? before.users[a] : after.users[b]
            while a < before.count && before.users[a] == u {
                out.append(a, of: before)
                a += 1
            }
            while b < after.count && after.users[b] == u {
                out.append(b, of: after)
                b += 1
            }
        }
        before.removeEvents()
        after.removeEvents()
        return out
    }

    /// Events per user row.
    package func eventsPerUser() -> [Int] {
        var n = [Int](repeating: 0, count: userIds.count)
        for u in users { n[Int(u)] += 1 }
        return n
    }

    /// The log without the users `drop` marks (and without the items only they touched), ids renumbered densely in
    /// their old order, so event order, grouping and de-duplication are kept.
    package func removingUsers(_ drop: [Bool]) -> EventLog {
        var userRow = [UInt32](repeating: .max, count: userIds.count)
        var keptUsers: [String] = []
        for u in userIds.indices where !drop[u] {
            userRow[u] = UInt32(keptUsers.count)
            keptUsers.append(userIds[u])
        }
        var used = [Bool](repeating: false, count: itemIds.count)
        var n = 0
        for e in 0..<count where !drop[Int(users[e])] {
            used[Int(items[e])] = true
            n += 1
        }
        var itemRow = [UInt32](repeating: .max, count: itemIds.count)
        var keptItems: [String] = []
        for i in itemIds.indices where used[i] {
            itemRow[i] = UInt32(keptItems.count)
            keptItems.append(itemIds[i])
        }
        var out = EventLog(userIds: keptUsers, itemIds: keptItems, users: [], items: [], times: [], strengths: [])
        out.users.reserveCapacity(n)
        out.items.reserveCapacity(n)
        out.times.reserveCapacity(n)
        out.strengths.reserveCapacity(n)
        for e in 0..<count where !drop[Int(users[e])] {
            out.users.append(userRow[Int(users[e])])
            out.items.append(itemRow[Int(items[e])])
            out.times.append(times[e])
            out.strengths.append(strengths[e])
        }
        return out
    }

    /// Whether each user's events are contiguous, users ascending (as ingest leaves them).
    var isGroupedByUser: Bool { zip(users, users.dropFirst()).allSatisfy { $0 <= $1 } }

    /// Drops every event (and its memory), keeping the id tables.
    package mutating func removeEvents() {
        users = []
        items = []
        times = []
        strengths = []
    }

    private mutating func append(_ e: Int, of log: EventLog) {
        users.append(log.users[e])
        items.append(log.items[e])
        times.append(log.times[e])
        strengths.append(log.strengths[e])
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
