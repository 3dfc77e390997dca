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
    /// Linear in the number of events apart from each user's own sort, which is skipped when that user's events
    /// already come in order (as they do in time-ordered and user-grouped logs). Exact repeats (same user, item,
    /// second and strength) are logging duplicates, not behaviour.
    package mutating func sortAndDeduplicate() -> Int {
        guard count > 0 else { return 0 }
        if !isGroupedByUser { groupByUser() }
        sortEachUsersEvents()
        return removeRepeats()
    }

    /// One event, packed so that moving it touches one cache line instead of four arrays' lines.
    private struct PackedEvent {
        var time: Int64
        var user: UInt32
        var item: UInt32
        var strength: Float
    }

    /// Makes each user's events contiguous, users ascending, each user's in their log order (a stable sort by user).
    ///
    /// Two stable counting passes: by a coarse bucket of user rows (at most 2,048 buckets) into one packed array,
    /// then each bucket, small enough to stay in cache, by user into the final arrays. One pass straight to the
    /// final positions lands on a different cache line per event in a time-ordered log, and its misses cost about
    /// 1.1 s of a 10M-event ingest (perf); a user-grouped log never comes here.
    private mutating func groupByUser() {
        let n = count
        let userCount = userIds.count
        var shift = 0
        while (userCount - 1) >> shift >= 2048 { shift += 1 }
        let buckets = ((userCount - 1) >> shift) + 1
        var bucketStart = [Int](repeating: 0, count: buckets + 1)
        for u in users { bucketStart[Int(u) >> shift + 1] += 1 }
        for b in 0..<buckets { bucketStart[b + 1] += bucketStart[b] }

        var fill = bucketStart
        let packed = [PackedEvent](unsafeUninitializedCapacity: n) { out, initialized in
            fill.withUnsafeMutableBufferPointer { fill in
                for e in 0..<n {
                    let u = users[e]
                    let b = Int(u) >> shift
                    out[fill[b]] = PackedEvent(time: times[e], user: u, item: items[e], strength: strengths[e])
                    fill[b] += 1
                }
            }
            initialized = n
        }
        removeEvents()

        var perUser = [Int](repeating: 0, count: 1 << shift)
        var nu = [UInt32](repeating: 0, count: n)
        var ni = [UInt32](repeating: 0, count: n)
        var nt = [Int64](repeating: 0, count: n)
        var ns = [Float](repeating: 0, count: n)
        packed.withUnsafeBufferPointer { packed in
            perUser.withUnsafeMutableBufferPointer { slot in
                for b in 0..<buckets {
                    let lo = bucketStart[b]
                    let hi = bucketStart[b + 1]
                    guard hi > lo else { continue }
                    let first = b << shift
                    for k in slot.indices { slot[k] = 0 }
                    for k in lo..<hi { slot[Int(packed[k].user) - first] += 1 }
                    var at = lo
                    for k in slot.indices {
                        let c = slot[k]
                        slot[k] = at
                        at += c
                    }
                    for k in lo..<hi {
                        let p = packed[k]
                        let s = Int(p.user) - first
                        let d = slot[s]
                        slot[s] = d + 1
                        nu[d] = p.user
                        ni[d] = p.item
                        nt[d] = p.time
                        ns[d] = p.strength
                    }
                }
            }
        }
        users = nu
        items = ni
        times = nt
        strengths = ns
    }

    /// Sorts each user's events by (time, item, strength), ties in log order; events must be grouped by user.
    private mutating func sortEachUsersEvents() {
        let n = count
        var start = 0
        while start < n {
            let u = users[start]
            var end = start + 1
            var ordered = true
            while end < n && users[end] == u {
                if ordered && Self.precedes(end, end - 1, times, items, strengths) { ordered = false }
                end += 1
            }
            if !ordered { sortEvents(start..<end) }
            start = end
        }
    }

    /// Whether event `a` sorts before event `b` by (time, item, strength).
    private static func precedes(_ a: Int, _ b: Int, _ t: [Int64], _ it: [UInt32], _ s: [Float]) -> Bool {
        if t[a] != t[b] { return t[a] < t[b] }
        if it[a] != it[b] { return it[a] < it[b] }
        return s[a] < s[b]
    }

    /// Sorts the events in `range` by (time, item, strength), ties in their current order.
    private mutating func sortEvents(_ range: Range<Int>) {
        // Copies of the range only: copying the whole arrays (or writing while they are shared) costs O(events) per user.
        let t = Array(times[range])
        let it = Array(items[range])
        let s = Array(strengths[range])
        let order = t.indices.sorted { a, b in
            Self.precedes(a, b, t, it, s) || !Self.precedes(b, a, t, it, s) && a < b
        }
        for (k, e) in zip(range, order) {
            items[k] = it[e]
            times[k] = t[e]
            strengths[k] = s[e]
        }
    }

    /// Drops each event equal in user, item, time and strength to the one before it; returns how many.
    private mutating func removeRepeats() -> Int {
        let n = count
        var kept = 1
        for e in 1..<n {
            if users[e] == users[kept - 1] && items[e] == items[kept - 1] && times[e] == times[kept - 1]
                && strengths[e] == strengths[kept - 1]
            {
                continue
            }
            if kept != e {
                users[kept] = users[e]
                items[kept] = items[e]
                times[kept] = times[e]
                strengths[kept] = strengths[e]
            }
            kept += 1
        }
        let dropped = n - kept
        if dropped > 0 {
            users.removeLast(dropped)
            items.removeLast(dropped)
            times.removeLast(dropped)
            strengths.removeLast(dropped)
        }
        return dropped
    }
}
