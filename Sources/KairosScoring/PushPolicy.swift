import KairosModelFormat
public import KairosProtocol

/// PUSH_DECIDE: whether to push now, what, and if not now, when (the policy in PROTOCOL.md).
public enum PushPolicy {
    static let hour: Int64 = 3600
    static let day: Int64 = 86_400

    /// Hour-of-week bucket of a UTC time: 24 x weekday + hour, Monday = 0 (1970-01-01 was a Thursday).
    public static func bucket(_ t: Int64) -> Int {
        let days = floorDiv(t, day)
        let weekday = Int(((days + 3) % 7 + 7) % 7)
        return weekday * 24 + Int((t - days * day) / hour)
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }

    /// Whether UTC time `t` falls in the quiet hours `[start, end)` of local time (UTC + offset).
    static func isQuiet(_ t: Int64, _ r: PushDecideRequest) -> Bool {
        guard r.quietStartHour != r.quietEndHour else { return false }
        let local = t + Int64(r.utcOffsetMinutes) * 60
        let h = Int(((local % day) + day) % day / hour)
        let s = Int(r.quietStartHour), e = Int(r.quietEndHour)
        return s < e ? (h >= s && h < e) : (h >= s || h < e)
    }

    /// The first time at or after `t` outside the quiet hours (at most a day later).
    static func endOfQuiet(after t: Int64, _ r: PushDecideRequest) -> Int64 {
        var x = t
        while isQuiet(x, r) { x = (floorDiv(x, hour) + 1) * hour }
        return x
    }

    /// Decides for `r` against snapshot `s`.
    public static func decide(_ r: PushDecideRequest, on s: ModelSnapshot, now serverNow: Int64) -> PushDecideResponse {
        let now = Scorer.effectiveNow(r.context, serverNow)
        let topK = TopKRequest(model: r.model, user: r.user, k: r.k, context: r.context)
        let list = Scorer.topK(topK, on: s, now: now)
        func answer(_ d: PushDecision, _ reason: PushReason, _ at: Int64, _ items: [ScoredItem]) -> PushDecideResponse {
            PushDecideResponse(model: list.model, flags: list.flags, decision: d, reason: reason, sendAt: at, items: items)
        }
        guard let best = list.items.first else { return answer(.never, .noCandidates, 0, []) }
        if best.score < r.threshold { return answer(.never, .belowThreshold, 0, list.items) }

        // Caps and gap: the earliest time every one of them allows, and the first one that binds.
        let pushes = r.recentPushes.filter { $0 <= now }.sorted()
        var earliest = now
        var reason: PushReason? = nil
        func limit(_ cap: UInt8, window: Int64, _ why: PushReason) {
            guard cap > 0 else { return }
            let inWindow = pushes.filter { $0 > now - window }
            guard inWindow.count >= Int(cap) else { return }
            // Allowed again once enough of them have left the window.
            let frees = inWindow[inWindow.count - Int(cap)] + window
            earliest = max(earliest, frees)
            if reason == nil { reason = why }
        }
        limit(r.maxPerWeek, window: 7 * day, .weeklyCap)
        limit(r.maxPerDay, window: day, .dailyCap)
        if let last = pushes.last, r.minGapSeconds > 0, last + Int64(r.minGapSeconds) > now {
            earliest = max(earliest, last + Int64(r.minGapSeconds))
            if reason == nil { reason = .minimumGap }
        }
        if isQuiet(earliest, r) {
            earliest = endOfQuiet(after: earliest, r)
            if reason == nil { reason = .quietHours }
        }
        if let reason { return answer(.notNow, reason, earliest, list.items) }

        // Timing: the most active allowed hour in the next 24, from the user's profile (population's if none).
        guard let activity = s.model.activity else { return answer(.pushNow, .ok, now, list.items) }
        let userRow = s.model.users?.row(of: r.user)
        let profile = userRow.map { activity.profile(ofUser: $0) } ?? activity.population
        let current = Int(profile[bucket(now)])
        var bestAt = now
        var bestLevel = current
        let hourStart = floorDiv(now, hour) * hour
        for h in 1..<24 {
            let t = hourStart + Int64(h) * hour
            if isQuiet(t, r) { continue }
            let level = Int(profile[bucket(t)])
            if level > bestLevel {
                bestLevel = level
                bestAt = t
            }
        }
        if bestLevel == 0 || current * 2 >= bestLevel { return answer(.pushNow, .ok, now, list.items) }
        return answer(.notNow, .betterTimeLater, bestAt, list.items)
    }
}
