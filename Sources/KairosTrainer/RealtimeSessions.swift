import KairosKernels
package import KairosModelFormat

/// Sessions that judge the real-time fold-in offline: what a user did first after a split point is a request's
/// events, and what they did in the day after that is the truth.
///
/// For each user known before the split with more than ``contextEvents`` events after it: the first ``contextEvents``
/// of those events (by time) are the context, `now` is the last context event's time, and the truth is the items
/// the user had within ``window`` after `now`, neither in the context nor seen before the split (exclude-seen). The
/// ranking skips what served TOPK skips: the user's stored (capped) history and the context's items.
package struct RealtimeSessions: Sendable {
    /// Events a session's request carries.
    package static let contextEvents = 3
    /// How long after the last context event the truth runs (seconds).
    package static let window: Int64 = 86_400
    /// The weights validation chooses among; 1 is the fold-in before weights existed, the incumbent. Above 1 for the
    /// least-squares fold: on test sessions (seed 0) ml-100k gained 0.013 at 1, 0.022 at 3 and 0.028 at 10, the
    /// synthetic log 0.008, 0.009 and 0.005, Instacart 0.0002, -0.0002 and -0.0013.
    package static let weights: [Double] = [0, 0.01, 0.03, 0.1, 0.3, 1, 3, 10]

    /// One request's events.
    package struct Event: Sendable {
        package var item: Int32
        package var strength: Float
        package var time: Int64
    }

    /// Users, truths and skipped items, as any evaluation set.
    package var set = EvaluationSet()
    /// Per user of ``set``: the context events, oldest first.
    package var context: [[Event]] = []
    /// Per user of ``set``: the request time.
    package var now: [Int64] = []

    /// Sessions of the users of `train` in `later` (at most `maxUsers`, evenly spaced); `history` is the history the
    /// model stores (what served TOPK excludes).
    package init(train: EventLog, later: EventLog, history: UserHistory, maxUsers: Int) {
        var seen = [Set<Int32>](repeating: [], count: train.userIds.count)
        // Items first seen after the split have no factors in the model: they cannot be recommended.
        var known = [Bool](repeating: false, count: train.itemIds.count)
        for e in 0..<train.count {
            seen[Int(train.users[e])].insert(Int32(train.items[e]))
            known[Int(train.items[e])] = true
        }
        var byUser = [[Int]](repeating: [], count: train.userIds.count)
        for e in 0..<later.count where Int(later.users[e]) < byUser.count && !seen[Int(later.users[e])].isEmpty {
            byUser[Int(later.users[e])].append(e)
        }
        for u in byUser.indices where byUser[u].count > Self.contextEvents {
            let events = byUser[u].sorted { (later.times[$0], $0) < (later.times[$1], $1) }
            let first = events.prefix(Self.contextEvents)
            let now = later.times[first.last!]
            let contextItems = Set(first.map { Int32(later.items[$0]) })
            var truth = Set<Int32>()
            for e in events.dropFirst(Self.contextEvents) where later.times[e] <= now + Self.window {
                let item = Int32(later.items[e])
                if Int(item) < known.count, known[Int(item)], !contextItems.contains(item), !seen[u].contains(item) {
                    truth.insert(item)
                }
            }
            guard !truth.isEmpty else { continue }
            set.users.append(u)
            set.truth.append(truth)
            let lo = Int(history.indptr[u])
            let hi = Int(history.indptr[u + 1])
            set.seen.append(Set((lo..<hi).map { Int32(history.items[$0]) }).union(contextItems))
            context.append(first.map { Event(item: Int32(later.items[$0]), strength: later.strengths[$0], time: later.times[$0]) })
            self.now.append(now)
        }
        if set.users.count > maxUsers {
            let picks = EvaluationSet.evenPicks(of: set.users.count, most: maxUsers)
            set = set.picked(picks)
            context = picks.map { context[$0] }
            now = picks.map { now[$0] }
        }
    }

    /// No sessions (for sessions built by hand).
    package init() {}

    /// Sessions of the users of `later` with no event in `train` (users the model does not know), with the same
    /// context and truth as known users' sessions; user `n` of ``set`` is the session's own row (`n`), since such a
    /// user has no row in the model.
    package static func newUsers(train: EventLog, later: EventLog, maxUsers: Int) -> RealtimeSessions {
        var trained = [Bool](repeating: false, count: max(train.userIds.count, later.userIds.count))
        var known = [Bool](repeating: false, count: train.itemIds.count)
        for e in 0..<train.count {
            trained[Int(train.users[e])] = true
            known[Int(train.items[e])] = true
        }
        var byUser: [Int: [Int]] = [:]
        for e in 0..<later.count where Int(later.users[e]) >= trained.count || !trained[Int(later.users[e])] {
            byUser[Int(later.users[e]), default: []].append(e)
        }
        var s = RealtimeSessions()
        for u in byUser.keys.sorted() where byUser[u]!.count > contextEvents {
            let events = byUser[u]!.sorted { (later.times[$0], $0) < (later.times[$1], $1) }
            let first = events.prefix(contextEvents)
            let now = later.times[first.last!]
            let contextItems = Set(first.map { Int32(later.items[$0]) })
            var truth = Set<Int32>()
            for e in events.dropFirst(contextEvents) where later.times[e] <= now + window {
                let item = Int32(later.items[e])
                if Int(item) < known.count, known[Int(item)], !contextItems.contains(item) { truth.insert(item) }
            }
            // A context with no item the model has factors for gives no vector: the server answers those with trending.
            guard !truth.isEmpty, contextItems.contains(where: { Int($0) < known.count && known[Int($0)] }) else { continue }
            s.set.users.append(s.set.users.count)
            s.set.truth.append(truth)
            s.set.seen.append(contextItems)
            // Events on items the model does not know are ignored when served; so are they here.
            s.context.append(
                first.filter { Int(later.items[$0]) < known.count && known[Int(later.items[$0])] }
                    .map { Event(item: Int32(later.items[$0]), strength: later.strengths[$0], time: later.times[$0]) }
            )
            s.now.append(now)
        }
        if s.set.users.count > maxUsers {
            let picks = EvaluationSet.evenPicks(of: s.set.users.count, most: maxUsers)
            s.set = s.set.picked(picks)
            s.set.users = Array(0..<picks.count)
            s.context = picks.map { s.context[$0] }
            s.now = picks.map { s.now[$0] }
        }
        return s
    }

    /// The vectors `kairos serve` ranks these sessions' users by when it does not know them (PROTOCOL.md, "realtime
    /// context"): `normalise(sum strength x w(now - t) x v_item)` to `typicalNorm`, row `n` for session `n` (zeros
    /// when no event counts: the server then answers with trending).
    package func newUserVectors(_ f: ALSFactors, typicalNorm: Float, decay: DecaySpec) -> [Float] {
        let k = f.factors
        let itemRow = { (item: Int32) in f.item[(Int(item) * k)..<((Int(item) + 1) * k)] }
        var out: [Float] = []
        out.reserveCapacity(set.users.count * k)
        for n in set.users.indices {
            // The server's operations: a sum in double precision, scaled to `typicalNorm`.
            var sum = [Double](repeating: 0, count: k)
            for e in context[n] where e.time <= now[n] {
                let w = Float(decay.weight(ageSeconds: Double(now[n] - e.time)))
                let scale = Double(e.strength) * Double(w)
                guard scale != 0, scale.isFinite else { continue }
                for (d, x) in itemRow(e.item).enumerated() { sum[d] += scale * Double(x) }
            }
            let norm = sum.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if norm > 0, norm.isFinite {
                let target = typicalNorm > 0 ? Double(typicalNorm) : min(norm, 1e30)
                out += sum.map { Float($0 * (target / norm)) }
            } else {
                out += [Float](repeating: 0, count: k)
            }
        }
        return out
    }

    /// The average norm of `f`'s user rows over an even sample of at most 10,000 (``ModelSnapshot/typicalUserNorm``'s
    /// rule): what a new user's vector is scaled to.
    package static func typicalUserNorm(_ f: ALSFactors) -> Float {
        let k = f.factors
        let users = k > 0 ? f.user.count / k : 0
        guard users > 0 else { return 1 }
        let sample = min(users, 10_000)
        var total = 0.0
        for i in 0..<sample {
            let u = i * (users / sample)
            var sq: Float = 0
            for x in f.user[(u * k)..<((u + 1) * k)] { sq += x * x }
            total += Double(sq.squareRoot())
        }
        return Float(total / Double(sample))
    }

    /// The ranking runs of the sessions under `blend`, one per weight, with the events folded in at that weight by
    /// `method` (0: without events; their items are skipped either way, as served TOPK skips them).
    package func evaluate(
        _ comps: ScoringComponents,
        blend: BlendWeights,
        weights: [Double],
        method: RealtimeFoldMethod,
        decay: DecaySpec,
        k: Int,
        threads: Int,
        dots: FactorDots
    ) -> [MetricsAccumulator] {
        let original = comps.factors!
        let folder = Folder(method: method, factors: original, history: comps.history)
        // One copy of the user rows for every weight (the sessions' rows are rewritten each time): a copy per weight
        // would hold 256 MB more at a time on a million users.
        var f = original
        return weights.map { w in
            if w == 0 { return BlendScorer(set: set, components: comps, k: k, threads: threads, dots: dots).accumulate(blend) }
            fold(original, into: &f, weight: w, decay: decay, folder: folder)
            return BlendScorer(set: set, components: comps.withFactors(f), k: k, threads: threads, dots: dots).accumulate(blend)
        }
    }

    /// Writes into `out` each session user's row of `f` folded with their context at `weight` by `folder`, as served.
    package func fold(_ f: ALSFactors, into out: inout ALSFactors, weight: Double, decay: DecaySpec, folder: Folder) {
        let k = f.factors
        for (n, u) in set.users.enumerated() {
            let row = Array(f.user[(u * k)..<((u + 1) * k)])
            let v = folder.fold(user: u, row: row, events: context[n], now: now[n], weight: weight, decay: decay)
            out.user.replaceSubrange((u * k)..<((u + 1) * k), with: v)
        }
    }

    /// Folds sessions' events into known users' rows by one ``RealtimeFoldMethod``, with what it needs computed once.
    package struct Folder: Sendable {
        let method: RealtimeFoldMethod
        let factors: ALSFactors
        let history: UserHistory
        /// `Y'Y` of the item rows, for the least-squares fold.
        let gram: [Double]

        /// A folder for users of `factors` whose stored history is `history`.
        package init(method: RealtimeFoldMethod, factors: ALSFactors, history: UserHistory) {
            self.method = method
            self.factors = factors
            self.history = history
            gram =
                method == .leastSquares
                ? factors.item.withUnsafeBufferPointer { LeastSquaresFold.gram(rows: $0, dimensions: factors.factors) } : []
        }

        /// User `u`'s vector `row` after `events` at `weight`, as `kairos serve` computes it.
        package func fold(user u: Int, row: [Float], events: [Event], now: Int64, weight: Double, decay: DecaySpec) -> [Float] {
            let k = factors.factors
            let itemRow = { (item: Int32) in Array(factors.item[(Int(item) * k)..<((Int(item) + 1) * k)]) }
            switch method {
            case .additive:
                return RealtimeSessions.fold(user: row, events: events, now: now, weight: weight, decay: decay, itemRow: itemRow)
            case .leastSquares:
                let lo = Int(history.indptr[u])
                let hi = Int(history.indptr[u + 1])
                return RealtimeSessions.leastSquaresFold(
                    user: row, historyItems: history.items[lo..<hi], historyWeights: history.weights[lo..<hi], events: events,
                    now: now, weight: weight, decay: decay, gram: gram, alpha: Double(factors.alpha),
                    regularization: Double(factors.regularization), itemRow: itemRow
                )
            }
        }
    }

    /// The user vector `kairos serve` ranks a known user by after these events under the least-squares fold
    /// (``LeastSquaresFold``, PROTOCOL.md "realtime context"), with the same operations: the history's weights
    /// normalised to mean 1, each event adding `weight x strength x w(now - t)` at that scale; events in the future
    /// are ignored.
    package static func leastSquaresFold(
        user u: [Float],
        historyItems: ArraySlice<UInt32>,
        historyWeights: ArraySlice<Float>,
        events: [Event],
        now: Int64,
        weight: Double,
        decay: DecaySpec,
        gram: [Double],
        alpha: Double,
        regularization: Double,
        itemRow: (Int32) -> [Float]
    ) -> [Float] {
        var confidences = LeastSquaresFold.Confidences(historyItems: historyItems, weights: historyWeights)
        for e in events where e.time <= now {
            let w = Float(decay.weight(ageSeconds: Double(now - e.time)))
            confidences.add(item: e.item, amount: weight * Double(e.strength) * Double(w))
        }
        guard confidences.changed else { return u }
        let rows = confidences.items.flatMap(itemRow)
        return LeastSquaresFold.fold(
            user: u, gram: gram, regularization: regularization, alpha: alpha, confidences: confidences, rows: rows
        ) ?? u
    }

    /// The user vector `kairos serve` ranks a known user by after these events under the additive fold, with the same
    /// operations (PROTOCOL.md,
    /// "realtime context"): `normalise(u + weight x sum strength x w(now - t) x v_item)` to the norm of `u`, summed in
    /// double precision; events in the future and weights of 0 leave `u` as it is.
    package static func fold(
        user u: [Float],
        events: [Event],
        now: Int64,
        weight: Double,
        decay: DecaySpec,
        itemRow: (Int32) -> [Float]
    ) -> [Float] {
        var sum: [Double] = []
        for e in events where e.time <= now {
            let w = Float(decay.weight(ageSeconds: Double(now - e.time)))
            let scale = weight * Double(e.strength) * Double(w)
            guard scale != 0, scale.isFinite else { continue }
            if sum.isEmpty { sum = u.map(Double.init) }
            let v = itemRow(e.item)
            for d in 0..<u.count { sum[d] += scale * Double(v[d]) }
        }
        guard !sum.isEmpty else { return u }
        var norm: Float = 0
        for x in u { norm += x * x }
        let targetNorm = norm.squareRoot()
        let n = sum.reduce(0) { $0 + $1 * $1 }.squareRoot()
        guard n > 0, n.isFinite else { return u }
        let target = targetNorm > 0 ? Double(targetNorm) : min(n, 1e30)
        return sum.map { Float($0 * (target / n)) }
    }
}
