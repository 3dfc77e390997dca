import KairosKernels
import KairosModelFormat
public import KairosProtocol

/// Answers scoring requests against one snapshot. Pure: the same snapshot, request and `now` give the same answer.
public enum Scorer {
    /// A user's query vector after folding in real-time events, or nil when there is nothing personal to go on.
    struct UserVector {
        var values: [Float]
        var flags: AnswerFlags
        var userRow: Int?
        /// Rows of the items the events named (excluded from TOPK unless repeats are allowed).
        var eventRows: [Int]
    }

    /// Resolves `user`, folds `context`'s events into their vector: by ``LeastSquaresFold`` when the model asks for it
    /// and knows the user, else `u' = normalise(u + sum s w(age) v_item)`.
    static func userVector(_ user: String, _ context: RealtimeContext, now: Int64, on s: ModelSnapshot) -> UserVector? {
        let m = s.model
        let row = m.users?.row(of: user)
        let dims = m.dimensions
        var u: [Float]
        var targetNorm: Float
        if let row, let uf = m.userFactors {
            u = RowEncoder.decodeRow(row, of: uf)
            targetNorm = ModelSnapshot.norm(u)
        } else {
            u = [Float](repeating: 0, count: dims)
            targetNorm = s.typicalUserNorm
        }
        var eventRows: [Int] = []
        if let row, m.userFactors != nil, let fold = s.leastSquaresFold {
            var amounts: [(item: Int32, amount: Double)] = []
            for e in context.events {
                guard let item = m.items.row(of: e.item), e.timestamp <= now else { continue }
                let w = Float(DecayWeight.weight(age: Double(now - e.timestamp), decay: context.decay, modelDefault: m.metadata.decay))
                eventRows.append(item)
                amounts.append((Int32(item), s.realtimeWeight * Double(e.strength) * Double(w)))
            }
            // The history's weights are read only for a request with usable events: most requests carry none.
            var confidences =
                amounts.isEmpty ? LeastSquaresFold.Confidences(historyItems: [], weights: []) : s.storedConfidences(userRow: row)
            for a in amounts { confidences.add(item: a.item, amount: a.amount) }
            if confidences.changed {
                func rows(_ entries: some Collection<Int>) -> [Float] {
                    var rows: [Float] = []
                    rows.reserveCapacity(entries.count * dims)
                    for e in entries { RowEncoder.decodeRow(Int(confidences.items[e]), of: m.itemFactors, appendingTo: &rows) }
                    return rows
                }
                // The history's half from the cache (made on a miss), then the events' half: the same bits as the
                // whole fold, which runs when that cannot (over 16 changed weights).
                var folded: [Float]? = nil
                if let cache = s.foldCache {
                    let solve = cache.solve(user: row) { s.historySolve(confidences: confidences) }
                    if let solve {
                        folded = LeastSquaresFold.fold(
                            user: u, history: solve, alpha: fold.alpha, confidences: confidences, changedRows: rows(confidences.changedIndices)
                        )
                    }
                }
                u =
                    folded
                    ?? LeastSquaresFold.fold(
                        user: u, gram: fold.gram, regularization: fold.regularization, alpha: fold.alpha,
                        confidences: confidences, rows: rows(confidences.items.indices)
                    ) ?? u
            }
            return UserVector(values: u, flags: [], userRow: row, eventRows: eventRows)
        }
        // A known user's events weigh `realtimeWeight` against their vector; for a user the model does not know, the
        // events are the whole vector (the normalisation below makes any positive weight the same).
        let weight = row != nil ? s.realtimeWeight : 1
        // Summed in double precision: a float sum of strengths near Float.greatestFiniteMagnitude overflowed, and the
        // infinite norm then scaled the vector to zeros or NaN instead of toward the events' items.
        var sum: [Double] = []
        for e in context.events {
            guard let item = m.items.row(of: e.item), e.timestamp <= now else { continue }
            let w = Float(DecayWeight.weight(age: Double(now - e.timestamp), decay: context.decay, modelDefault: m.metadata.decay))
            let scale = weight * Double(e.strength) * Double(w)
            eventRows.append(item)
            guard scale != 0, scale.isFinite else { continue }
            if sum.isEmpty { sum = u.map(Double.init) }
            let v = RowEncoder.decodeRow(item, of: m.itemFactors)
            for d in 0..<dims { sum[d] += scale * Double(v[d]) }
        }
        let folded = !sum.isEmpty
        if folded {
            let n = sum.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if n > 0, n.isFinite {
                // Without a norm to scale to (a zero user row or a model of zero users), the sum stays as it is,
                // unless it is too large for a float.
                let target = targetNorm > 0 ? Double(targetNorm) : min(n, 1e30)
                for d in 0..<dims { u[d] = Float(sum[d] * (target / n)) }
            }
        }
        if row == nil && !folded { return nil }
        let flags: AnswerFlags = row == nil ? .coldStartFromEvents : []
        return UserVector(values: u, flags: flags, userRow: row, eventRows: eventRows)
    }

    static func stamp(_ s: ModelSnapshot) -> ModelStamp { ModelStamp(name: s.name, version: s.version) }

    /// SCORE: one score per candidate; unknown items are NaN with flag bit 0; unknown users get trending scores.
    public static func score(_ r: ScoreRequest, on s: ModelSnapshot, now: Int64) -> ScoreResponse {
        let n = r.candidates.count
        var rows = [Int32](unsafeUninitializedCapacity: n) { out, count in
            r.candidates.withPackedBytes { s.model.items.rows(ofPacked: $0, count: n, into: out, prefetching: s.model.itemFactors) }
            count = n
        }
        var itemFlags = [UInt8](repeating: 0, count: n)
        var anyUnknown = false
        rows.withUnsafeMutableBufferPointer { rows in
            itemFlags.withUnsafeMutableBufferPointer { flags in
                for i in 0..<n where rows[i] < 0 {
                    flags[i] = ScoreResponse.unknownItem
                    rows[i] = 0  // scored harmlessly, then replaced by NaN
                    anyUnknown = true
                }
            }
        }
        if s.hasBiases {
            // Each candidate's bias is one more scattered cache line: fetched while the user vector is looked up and
            // the rows are scored (adding them unprefetched was 3% of a 100-candidate SCORE's server time).
            rows.withUnsafeBufferPointer { rows in s.biases.withUnsafeBufferPointer { ScoringKernels.prefetch($0, at: rows) } }
        }
        guard let u = userVector(r.user, r.context, now: effectiveNow(r.context, now), on: s) else {
            var scores = [Float](repeating: .nan, count: n)
            for i in 0..<n where itemFlags[i] == 0 { scores[i] = s.trend[Int(rows[i])] }
            return ScoreResponse(model: stamp(s), flags: .fallback, scores: scores, itemFlags: itemFlags)
        }
        // Unsafe buffers in the per-candidate loops: the checked subscripts were a third of this function's cost.
        let scores = [Float](unsafeUninitializedCapacity: n) { out, count in
            u.values.withUnsafeBufferPointer { q in
                rows.withUnsafeBufferPointer { rows in
                    s.kernels.gather(q, rows: rows, of: s.model.itemFactors, into: out)
                    if s.hasBiases {
                        s.biases.withUnsafeBufferPointer { biases in
                            for i in 0..<n { out[i] += biases[Int(rows[i])] }
                        }
                    }
                }
            }
            if anyUnknown {
                for i in 0..<n where itemFlags[i] != 0 { out[i] = .nan }
            }
            count = n
        }
        return ScoreResponse(model: stamp(s), flags: u.flags, scores: scores, itemFlags: itemFlags)
    }

    static func effectiveNow(_ c: RealtimeContext, _ serverNow: Int64) -> Int64 { c.now != 0 ? c.now : serverNow }

    /// TOPK within a category of at most 1/this of the items gathers the category's rows instead of scanning. The
    /// crossover measured on a 1M x 64 float32 model (p50 against the scan, interleaved): 0.5% of the items 0.05x,
    /// 12.5% 0.67x, 20% 1.05x.
    public static let topKGatherBelow = 6
    /// The same for SIMILAR, whose scan costs more (cosines): 8.3% 0.43x, 20% 0.89x; 0.5% 0.015x.
    public static let similarGatherBelow = 5

    /// The rows of category `c` when a request within it ranks them alone, gathered: when the category holds at
    /// most 1/`below` of the items (else nil, and the request scans the catalogue). Without `build`, nil also until
    /// the category index exists (so a caller that only estimates never builds it).
    public static func rowsToGather(category c: UInt32, below: Int, on s: ModelSnapshot, build: Bool = true) -> ArraySlice<Int32>? {
        guard let index = build ? s.categoryRows : s.builtCategoryRows else { return nil }
        let c = Int(c)
        guard c + 1 < index.offsets.count, (index.offsets[c + 1] - index.offsets[c]) * below <= s.model.itemCount else {
            return nil
        }
        return index.rows[index.offsets[c]..<index.offsets[c + 1]]
    }

    /// TOPK: the blend of dot product, bias, trending and buy-again over the whole catalogue, best first.
    ///
    /// One fused scan: the kernel adds per-item offsets (bias + trending and freshness terms, -infinity outside the
    /// category) block by block and skips excluded rows. The user's own history is scored apart (with its buy-again
    /// boost) and merged in when repeats are allowed.
    public static func topK(_ r: TopKRequest, on s: ModelSnapshot, now: Int64) -> ItemListResponse {
        let m = s.model
        let n = m.itemCount
        let k = min(Int(r.k), n)
        let category: UInt32?
        if r.category.isEmpty {
            category = nil
        } else if let c = s.categoryIDs[r.category] {
            category = c
        } else {
            return ItemListResponse(model: stamp(s), flags: [], items: [])  // no item has an unknown category
        }
        let custom = r.options.contains(.customWeights)
        let allowRepeats = r.options.contains(.allowRepeats)
        var blend = s.blend(allowRepeats: allowRepeats)
        if custom {
            blend.trending = r.trendingWeight
            blend.buyAgain = r.buyAgainWeight
        }
        var excluded = Set<Int32>()
        for id in r.exclude { if let row = m.items.row(of: id) { excluded.insert(Int32(row)) } }
        func inCategory(_ row: Int) -> Bool { category == nil || (!s.itemCategories.isEmpty && s.itemCategories[row] == category) }

        guard let u = userVector(r.user, r.context, now: effectiveNow(r.context, now), on: s) else {
            // Unknown user, no events: the trending list, walked in order until k items pass the filters.
            var items: [ScoredItem] = []
            let order = s.trendingOrder
            for row in order where items.count < k {
                if excluded.contains(row) || !inCategory(Int(row)) { continue }
                items.append(ScoredItem(item: m.items.table[Int(row)], score: s.trend[Int(row)]))
            }
            return ItemListResponse(model: stamp(s), flags: .fallback, items: items)
        }

        var history: (items: UnsafeBufferPointer<UInt32>, weights: UnsafeBufferPointer<Float>)? = nil
        if let row = u.userRow, let h = m.history { history = h.entries(ofUser: row) }
        // Rows the scan skips, gathered in an array: ExclusionSet sorts and de-duplicates them (hashing up to the
        // history cap of rows into a Set first cost more than the sort).
        var skip = Array(excluded)
        if let history {
            skip.reserveCapacity(skip.count + history.items.count + u.eventRows.count)
            for item in history.items { skip.append(Int32(item)) }
        }
        if !allowRepeats { for row in u.eventRows { skip.append(Int32(row)) } }

        // Category affinity: the user's share of history weight per category, dense by category id.
        var affinity: [Float] = []
        if blend.category != 0, let history, !s.itemCategories.isEmpty {
            let total = history.weights.reduce(0, +)
            if total > 0 {
                // Sized by the name table, which the loader checked every item's category against (ids may repeat a
                // name, so `categoryIDs` can be smaller).
                var a = [Float](repeating: 0, count: m.categoryNames?.count ?? 0)
                var any = false
                for (j, item) in history.items.enumerated() {
                    let c = s.itemCategories[Int(item)]
                    if c != ItemAttributes.none {
                        a[Int(c)] += history.weights[j] / total
                        any = true
                    }
                }
                if any { affinity = a }
            }
        }
        let wc = blend.category
        // A category of at most a sixth of the items is ranked from its own rows, gathered, with offsets computed
        // for those rows only (the same operations as the per-item array below), instead of a scan of the catalogue
        // with -infinity outside it: the same answer.
        let categoryRows = category.flatMap { Self.rowsToGather(category: $0, below: Self.topKGatherBelow, on: s) }
        let defaults = s.defaultOffsets(allowRepeats: allowRepeats)
        let offsets: [Float]
        if categoryRows != nil || (!custom && category == nil && affinity.isEmpty) {
            offsets = defaults  // unused when gathering: `offset(_:)` computes each row's
        } else {
            // The stored blend's per-item terms, plus the user's category term and the category filter: array loads
            // per item (a dictionary lookup per item here was ~20 us per request on a 1,682-item catalogue).
            var o = custom ? blend.offsets(biases: s.biases, trend: s.trend, fresh: s.fresh) : defaults
            o.withUnsafeMutableBufferPointer { o in
                s.itemCategories.withUnsafeBufferPointer { cats in
                    if !affinity.isEmpty {
                        affinity.withUnsafeBufferPointer { a in
                            for i in 0..<n where cats[i] != ItemAttributes.none { o[i] += wc * a[Int(cats[i])] }
                        }
                    }
                    if let category {
                        for i in 0..<n where cats.isEmpty || cats[i] != category { o[i] = -.infinity }
                    }
                }
            }
            offsets = o
        }
        // Item `i`'s offset (only asked for items in the category, if there is one).
        let shift: Float? = categoryRows != nil && !affinity.isEmpty ? wc * affinity[Int(category!)] : nil
        func offset(_ i: Int) -> Float {
            guard categoryRows != nil else { return offsets[i] }
            let base = custom ? blend.offset(i, biases: s.biases, trend: s.trend, fresh: s.fresh) : defaults[i]
            return shift.map { base + $0 } ?? base
        }
        // The dot weight scales the query, so the kernel's dot product comes out weighted.
        let query = blend.dot == 1 ? u.values : u.values.map { $0 * blend.dot }
        let exclusions = skip.isEmpty ? nil : ExclusionSet(skip)
        var best: [ScoredRow]
        if let categoryRows {
            best = query.withUnsafeBufferPointer { q in
                categoryRows.withUnsafeBufferPointer { rows in
                    // A plain loop over the rows: mapping the slice through `offset(_:)` ran as generic code (a third
                    // of the request in retains and witness calls).
                    var rowOffsets = [Float](repeating: 0, count: rows.count)
                    rowOffsets.withUnsafeMutableBufferPointer { o in
                        if custom {
                            let (biases, trend, fresh) = (s.biases, s.trend, s.fresh)
                            for j in 0..<rows.count { o[j] = blend.offset(Int(rows[j]), biases: biases, trend: trend, fresh: fresh) }
                        } else {
                            defaults.withUnsafeBufferPointer { d in for j in 0..<rows.count { o[j] = d[Int(rows[j])] } }
                        }
                        if let shift { for j in 0..<rows.count { o[j] = o[j] + shift } }
                    }
                    return rowOffsets.withUnsafeBufferPointer { off in
                        s.kernels.topK(q, of: m.itemFactors, rows: rows, k: k, excluding: exclusions, adding: off)
                    }
                }
            }
        } else {
            best = query.withUnsafeBufferPointer { q in
                offsets.withUnsafeBufferPointer { off in
                    s.kernels.topK(q, of: m.itemFactors, k: k, excluding: exclusions, adding: off, bounds: s.itemScanBounds)
                }
            }
        }
        if allowRepeats, let history {
            let top = history.weights.first ?? 0
            func better(_ a: ScoredRow, _ b: ScoredRow) -> Bool { a.score != b.score ? a.score > b.score : a.row < b.row }
            // Only a history item that beats the scan's k-th can be in the answer: merging just those keeps the sort
            // small for users with long histories (up to the trainer's history cap, 1000 by default).
            let floor = k > 0 && best.count >= k ? best[k - 1] : nil  // (k = 0 is a valid request with no answer)
            for (j, item) in history.items.enumerated() where !excluded.contains(Int32(item)) && inCategory(Int(item)) {
                let row = Int(item)
                let dot = query.withUnsafeBufferPointer { s.kernels.dot($0, row: row, of: m.itemFactors) }
                let boost = top > 0 ? blend.buyAgain * history.weights[j] / top : 0
                let scored = ScoredRow(row: Int32(row), score: dot + offset(row) + boost)
                if let floor, !better(scored, floor) { continue }
                best.append(scored)
            }
            best.sort(by: better)
            if best.count > k { best.removeLast(best.count - k) }
        }
        let items = best.filter { $0.score.isFinite }.map { ScoredItem(item: m.items.table[Int($0.row)], score: $0.score) }
        return ItemListResponse(model: stamp(s), flags: u.flags, items: items)
    }

    /// SIMILAR: items with the largest cosine similarity to `r.item`; nil when the item is unknown.
    public static func similar(_ r: SimilarRequest, on s: ModelSnapshot) -> ItemListResponse? {
        let m = s.model
        guard let row = m.items.row(of: r.item) else { return nil }
        let n = m.itemCount
        let q = RowEncoder.decodeRow(row, of: m.itemFactors)
        // A category filter naming no known category (or a model without categories) matches no item.
        var category: UInt32?
        if !r.category.isEmpty {
            guard let c = s.categoryIDs[r.category], !s.itemCategories.isEmpty else {
                return ItemListResponse(model: stamp(s), flags: [], items: [])
            }
            category = c
        }
        let norms = s.itemNorms
        let qNorm = norms[row]
        // Cosines are applied block by block inside the scan (k is within the protocol's limit, as for TOPK):
        // gathering every row into a full score vector and heap-selecting it made SIMILAR 1.5x slower on a 50k-item
        // model. Once the snapshot's bounds are built, rows that cannot make the top k are skipped as TOPK skips them.
        let k = min(Int(r.k), n)
        let excluded = ExclusionSet([Int32(row)])
        let best: [ScoredRow]
        // A category of at most a fifth of the items is scored from its own rows, gathered (a full row each), rather
        // than by scanning the catalogue (about a quarter of a row's bytes each with bounds): the same answer.
        if let category, let gathered = Self.rowsToGather(category: category, below: Self.similarGatherBelow, on: s) {
            best = q.withUnsafeBufferPointer { qp in
                norms.withUnsafeBufferPointer { N in
                    gathered.withUnsafeBufferPointer { rows in
                        s.kernels.topKCosine(qp, of: m.itemFactors, rows: rows, k: k, norms: N, queryNorm: qNorm, excluding: excluded)
                    }
                }
            }
        } else {
            // A larger category is a mask the kernel adds (-infinity outside it), so the bounded scan never computes a
            // row of another category exactly: filtering after the cosines made a filtered SIMILAR slower with bounds
            // than without (16.9 ms against 13.8 on a 1M-item model).
            let mask = category.map { c in s.itemCategories.map { $0 == c ? Float(0) : -.infinity } }
            func scan(_ M: UnsafeBufferPointer<Float>?) -> [ScoredRow] {
                q.withUnsafeBufferPointer { qp in
                    norms.withUnsafeBufferPointer { N in
                        s.kernels.topKCosine(
                            qp, of: m.itemFactors, k: k, norms: N, queryNorm: qNorm, excluding: excluded, mask: M,
                            bounds: s.itemCosineBounds
                        )
                    }
                }
            }
            best = mask.map { $0.withUnsafeBufferPointer { scan($0) } } ?? scan(nil)
        }
        return ItemListResponse(model: stamp(s), flags: [], items: best.map { ScoredItem(item: m.items.table[Int($0.row)], score: $0.score) })
    }
}
