import KairosModelFormat

/// What validation decided: blend weights per protocol (for the decayed and the no-decay model) and trending's half-life.
struct Tuned: Sendable {
    var weights: [EvaluationProtocol: BlendWeights]
    var noDecayWeights: [EvaluationProtocol: BlendWeights]
    /// 0 means no decay (all-time popularity).
    var trendingHalfLifeDays: Double
    /// Half-life of buy-again history weights in days (0: none); nil means the confidence decay.
    var historyHalfLifeDays: Double?
    /// Half-life of item freshness in days; 0 means no freshness term.
    var freshnessHalfLifeDays: Double
    /// How the push-timing activity profiles are built.
    var activity = ActivitySpec.standard
    /// How much a known user's real-time events weigh when served (`parameters.realtime_weight`).
    var realtimeWeight: Double

    init(config: TrainerConfig) {
        let dotOnly = Dictionary(uniqueKeysWithValues: EvaluationProtocol.allCases.map { ($0, BlendWeights()) })
        weights = dotOnly
        noDecayWeights = dotOnly
        trendingHalfLifeDays = config.trendingHalfLifeDays ?? 7
        freshnessHalfLifeDays = config.freshnessHalfLifeDays ?? 0
        realtimeWeight = config.realtimeWeight ?? 1
    }

    func trendingDecay(fallback: DecaySpec) -> DecaySpec {
        trendingHalfLifeDays > 0 ? .exponential(halfLifeDays: trendingHalfLifeDays) : DecaySpec(form: .none)
    }

    func historyDecay(fallback: DecaySpec) -> DecaySpec {
        guard let h = historyHalfLifeDays else { return fallback }
        return h > 0 ? .exponential(halfLifeDays: h) : DecaySpec(form: .none)
    }
}

/// The fits and evaluations of one training run.
struct Session {
    var config: TrainerConfig
    let categories: [UInt32]?
    let progress: Progress
    /// Regularization per user-item pair, set when validation chose the regularization: the data term of the loss
    /// grows with the number of pairs, so a fit on more data (the test fit, the final fit) gets a proportionally
    /// larger lambda to keep the balance validation found.
    var regularizationPerPair: Double?

    /// How evaluation computes dot products (the ALS kernel's instruction-set level).
    var factorDots: FactorDots { FactorDots(kernel: config.als.kernel) }

    /// The regularization a fit on `m` uses.
    func regularization(for m: SparseMatrix) -> Float {
        guard let r = regularizationPerPair else { return config.als.regularization }
        return Float(r * Double(m.nonZeros))
    }

    /// Candidate trending half-lives in days (0 = all-time), searched on validation when not given.
    static let trendingGrid: [Double] = [0.5, 1, 2, 4, 7, 14, 30, 60, 120, 365, 0]
    /// Iterations of the first factorization-search fit (from the seeded random start).
    static let coldSearchIterations = 8
    /// Iterations of the later search fits, which start from the incumbent's factors.
    static let warmSearchIterations = 4
    /// Candidate freshness half-lives in days (see ``chooseFreshness``).
    static let freshnessGrid: [Double] = [3, 7, 14, 30, 60, 120]

    /// Factorizes `m` with per-iteration progress lines (loss and ETA); `reportingLosses`: its losses are reported.
    func fit(_ m: SparseMatrix, label: String, reportingLosses: Bool = false) -> ALSFactors {
        let start = ContinuousClock.now
        let total = config.als.iterations
        var als = config.als
        als.regularization = regularization(for: m)
        // The loss costs about a tenth of an iteration (5% of a default run on the 10M-event log, perf) and changes
        // nothing in the fit: an evaluation fit whose lines nobody reads skips it.
        if progress.isSilent && !reportingLosses { als.lossEvery = 0 }
        let factors = WeightedALS.fit(m, config: als) { it, loss in
            let elapsed = Progress.seconds(ContinuousClock.now - start)
            let eta = elapsed / Double(it) * Double(total - it)
            let lossText = loss.map { "loss \(Format.number($0, digits: 6))" } ?? "loss -"
            progress.line(
                label,
                "iteration \(it)/\(total) \(lossText) elapsed \(Format.seconds(elapsed)) ETA \(Format.seconds(eta))"
            )
        }
        return factors.stored(as: config.encoding)  // evaluated as the model file will hold them
    }

    /// Users per evaluation set: `--eval-users`, lowered on big catalogues so that the dot products computed for
    /// the shortlists (users x items) stay within 250M per evaluation set: 5000 users up to 50k items, 250 users at 1M.
    func evalUsers(items: Int) -> Int { Self.evaluationUsers(items: items, most: config.maxEvalUsers) }

    /// ``evalUsers(items:)`` for a catalogue of `items` and `--eval-users` `most`.
    static func evaluationUsers(items: Int, most: Int) -> Int {
        max(100, min(most, 250_000_000 / max(items, 1)))
    }

    func components(_ log: EventLog, decayed: Bool, tuned: Tuned, factors: ALSFactors?) -> ScoringComponents {
        let trending = tuned.trendingDecay(fallback: config.decay)
        return ScoringComponents(
            log: log,
            decay: decayed ? tuned.historyDecay(fallback: config.decay) : DecaySpec(form: .none),
            trendingDecay: decayed ? trending : DecaySpec(form: .none),
            reference: log.timeRange?.upperBound ?? 0,
            historyCap: config.historyCap,
            categories: categories,
            factors: factors,
            freshnessHalfLifeDays: decayed ? tuned.freshnessHalfLifeDays : 0
        )
    }

    func matrix(_ log: EventLog, decayed: Bool) -> SparseMatrix {
        Interactions.matrix(
            log,
            decay: decayed ? config.decay : DecaySpec(form: .none),
            reference: log.timeRange?.upperBound ?? 0,
            normalizePerUser: config.normalizePerUser
        )
    }

    /// Learns blend weights (and trending's half-life) on a validation split cut inside `train`.
    ///
    /// `train` is handed back as it came; meanwhile its events live only in the two validation parts, not twice (190 MB
    /// on a 10M-event log).
    mutating func tune(on train: inout EventLog, report: inout TrainReport) -> Tuned {
        var tuned = Tuned(config: config)
        let vcut = Evaluation.cutTime(train, quantile: config.validation)
        var (sub, val) = train.split(at: vcut)
        train.removeEvents()
        defer { train = EventLog.rejoining(&sub, &val) }
        guard sub.count > 0, val.count > 0 else {
            progress.line("validation", "split is empty; keeping default blend weights (dot product only)")
            return tuned
        }
        let sets = Evaluation.sets(train: sub, test: val, maxUsers: evalUsers(items: sub.itemIds.count))
        report.split.validationStartTime = vcut
        report.split.validationUsers = Dictionary(
            uniqueKeysWithValues: sets.map { ($0.key.rawValue, $0.value.users.count) }
        )
        let reference = sub.timeRange!.upperBound
        if config.trendingHalfLifeDays == nil {
            var best = (-1.0, tuned.trendingHalfLifeDays)
            for h in Self.trendingGrid {
                let decay = h > 0 ? DecaySpec.exponential(halfLifeDays: h) : DecaySpec(form: .none)
                let trend = ScoringComponents.unitMax(
                    Signals.popularity(sub, decay: decay, reference: reference).decayed
                )
                var score = 0.0
                for p in EvaluationProtocol.allCases {
                    score += Evaluation.evaluate(sets[p]!, k: config.k, catalogue: sub.itemIds.count, sameForAll: trend).result.ndcg
                }
                if score > best.0 + 1e-9 { best = (score, h) }
            }
            tuned.trendingHalfLifeDays = best.1
            progress.line(
                "validation",
                "trending half-life \(best.1 > 0 ? "\(Format.number(best.1)) d" : "none (all-time)")"
            )
        }
        if let set = sets[.allowRepeats], !set.users.isEmpty {
            // Buy-again's own half-life: repeat behaviour has its own clock (a weekly shop vs a yearly purchase).
            var best = (-1.0, nil as Double?)
            for h in Self.trendingGrid {
                let decay = h > 0 ? DecaySpec.exponential(halfLifeDays: h) : DecaySpec(form: .none)
                let comps = ScoringComponents(
                    log: sub,
                    decay: decay,
                    trendingDecay: DecaySpec(form: .none),
                    reference: reference,
                    historyCap: config.historyCap,
                    categories: nil,
                    factors: nil
                )
                let v = Evaluation.buyAgain(set, comps, k: config.k).result.ndcg
                if v > best.0 + 1e-9 { best = (v, h) }
            }
            if best.0 > 0 {
                tuned.historyHalfLifeDays = best.1
                progress.line(
                    "validation",
                    "buy-again half-life \(best.1! > 0 ? "\(Format.number(best.1!)) d" : "none (all-time)")"
                )
            }
        }
        if let chosen = ActivityTiming.choose(sub: sub, val: val, threads: config.als.threads) {
            tuned.activity = chosen.spec
            report.timing["validation"] = [
                "profile": ["log_likelihood": chosen.logLikelihood],
                "population": ["log_likelihood": chosen.population],
            ]
            progress.line(
                "validation",
                "activity profiles: \(chosen.spec.summary) -> log-likelihood \(Format.fixed(chosen.logLikelihood, 4)) "
                    + "(population profile \(Format.fixed(chosen.population, 4)))"
            )
        }
        if config.tuneFactorization { tuneFactorization(sub: sub, sets: sets) }
        let decayedFactors = fit(matrix(sub, decayed: true), label: "validation fit")
        // The freshness search's scorer for its choice: the decayed exclude-seen blend's, shortlists already built.
        var chosenScorer: BlendScorer?
        var decayedComponents: ScoringComponents?  // the real-time weight is chosen on them below
        if config.freshnessHalfLifeDays == nil {
            chosenScorer = chooseFreshness(sub: sub, sets: sets, factors: decayedFactors, tuned: &tuned)
        }
        for decayed in [true, false] {
            let factors = decayed ? decayedFactors : fit(matrix(sub, decayed: false), label: "validation fit (no decay)")
            let comps = components(sub, decayed: decayed, tuned: tuned, factors: factors)
            if decayed { decayedComponents = comps }
            for p in EvaluationProtocol.allCases {
                let reuse = decayed && p == .excludeSeen ? chosenScorer : nil
                if reuse != nil { chosenScorer = nil }  // held here only: freed with the loop's scorer
                let scorer =
                    reuse
                    ?? BlendScorer(
                        set: sets[p]!,
                        components: comps,
                        k: config.k,
                        threads: config.als.threads,
                        dots: factorDots
                    )
                let (w, run) = scorer.tune()
                let metrics = run.result
                if decayed {
                    tuned.weights[p] = w
                    var methods = Evaluation.baselines(sets[p]!, p, comps, k: config.k)
                    methods["als"] = scorer.accumulate(BlendWeights())
                    methods["model"] = run
                    report.validation[p.rawValue] = methods.mapValues { $0.result.dictionary(k: config.k) }
                } else {
                    tuned.noDecayWeights[p] = w
                    report.validation[p.rawValue]?["model-no-decay"] = metrics.dictionary(k: config.k)
                }
                let name = decayed ? "blend" : "blend (no decay)"
                progress.line(
                    "validation",
                    "\(p.rawValue) \(name): dot \(Format.number(w.dot)) trending \(Format.number(w.trending)) "
                        + "buy-again \(Format.number(w.buyAgain)) category \(Format.number(w.category)) "
                        + "freshness \(Format.number(w.freshness)) -> ndcg@\(config.k) \(Format.fixed(metrics.ndcg, 4))"
                )
            }
        }
        if config.realtimeWeight == nil, let comps = decayedComponents {
            tuned.realtimeWeight = chooseRealtimeWeight(sub: sub, val: val, comps: comps, blend: tuned.weights[.excludeSeen]!, report: &report)
        }
        return tuned
    }

    /// Picks how much real-time events weigh (``RealtimeSessions``): each weight of the grid ranks the validation
    /// sessions with the exclude-seen blend; the best is kept if it clears the noise rule against 1, the fold-in as
    /// it was before the weight existed. Measured on three logs, that fold-in cost 0.004-0.007 NDCG@10 on the next
    /// day's items against no events at all (`Tests/Benchmarks/run-realtime-quality.py`).
    func chooseRealtimeWeight(sub: EventLog, val: EventLog, comps: ScoringComponents, blend: BlendWeights, report: inout TrainReport) -> Double {
        let sessions = RealtimeSessions(train: sub, later: val, history: comps.history, maxUsers: evalUsers(items: sub.itemIds.count))
        guard sessions.set.users.count > 1, comps.factors != nil else {
            progress.line("validation", "real-time weight 1 (\(sessions.set.users.count) validation sessions: too few to choose)")
            return 1
        }
        let grid = RealtimeSessions.weights
        let runs = sessions.evaluate(
            comps, blend: blend, weights: grid, method: config.resolvedRealtimeFold, decay: config.decay, k: config.k,
            threads: config.als.threads, dots: factorDots
        )
        let incumbent = grid.firstIndex(of: 1)!
        let others = grid.indices.filter { $0 != incumbent }
        let pick = BlendScorer.clearWinner(others.map { runs[$0] }, over: runs[incumbent]).map { others[$0] } ?? incumbent
        var row: [String: Double] = ["users": Double(sessions.set.users.count), "chosen": grid[pick]]
        for (w, run) in zip(grid, runs) { row["ndcg@\(config.k) at \(Format.number(w))"] = run.result.ndcg }
        report.realtime["validation"] = row
        progress.line(
            "validation",
            "real-time weight \(Format.number(grid[pick])) (\(sessions.set.users.count) sessions; ndcg@\(config.k) "
                + zip(grid, runs).map { "\(Format.number($0.0)): \(Format.fixed($0.1.result.ndcg, 4))" }.joined(separator: ", ") + ")"
        )
        return grid[pick]
    }

    /// Picks the freshness half-life ("new arrivals": items whose first event is recent) on validation, exclude-seen.
    ///
    /// The blend without freshness is tuned once; each half-life then gets its best freshness weight on top of it.
    /// The half-life with the best validation NDCG is kept if its gain over no freshness clears the noise rule
    /// (``BlendScorer/clearlyBetter``); none clearing it leaves freshness out (Instacart's steady catalogue). An
    /// earlier rule (the shortest half-life that clears the rule, replaced only when another is clearly better
    /// again) let 14 days win on 5 of 8 seeds on ml-100k and cost 0.015-0.02 test NDCG each time.
    ///
    /// - Returns: the scorer of the chosen components (the same rankings as one built from them afresh).
    func chooseFreshness(
        sub: EventLog,
        sets: [EvaluationProtocol: EvaluationSet],
        factors: ALSFactors,
        tuned: inout Tuned
    ) -> BlendScorer? {
        guard let set = sets[.excludeSeen], !set.users.isEmpty else { return nil }
        var t = tuned
        t.freshnessHalfLifeDays = 0  // the components without freshness; each half-life below only swaps it in
        let baseScorer = BlendScorer(
            set: set,
            components: components(sub, decayed: true, tuned: t, factors: factors),
            k: config.k,
            threads: config.als.threads,
            dots: factorDots
        )
        let (base, _) = baseScorer.tune()
        let baseRun = baseScorer.accumulate(base)
        let firstSeen = Signals.firstSeen(sub, reference: sub.timeRange?.upperBound ?? 0)
        var tried: [(days: Double, run: MetricsAccumulator, scorer: BlendScorer)] = []
        for days in Self.freshnessGrid {
            let scorer = BlendScorer(baseScorer, freshness: firstSeen.freshness(halfLifeDays: days))
            guard let (w, run) = scorer.bestFreshness(added: base, baseline: baseRun.result.ndcg) else { continue }
            tried.append((days, run, scorer))
            progress.line(
                "validation",
                "freshness half-life \(Format.number(days)) d, weight \(Format.number(w.freshness)) -> ndcg@\(config.k) "
                    + "\(Format.fixed(run.result.ndcg, 4))"
            )
        }
        let chosen =
            BlendScorer.clearWinner(tried.map(\.run), over: baseRun).map { tried[$0] }
            ?? (days: 0, run: baseRun, scorer: baseScorer)
        tuned.freshnessHalfLifeDays = chosen.days
        progress.line(
            "validation",
            chosen.days > 0 ? "freshness half-life \(Format.number(chosen.days)) d" : "no freshness term (no clear gain)"
        )
        return chosen.scorer
    }

    /// Coordinate search of regularization, alpha and half-life on validation NDCG of the factor model alone.
    ///
    /// The objective is the exclude-seen protocol (discovery), where the factors matter most; with repeats allowed
    /// buy-again carries the blend whatever the factors do. Measured here: the best regularization differs by
    /// data set (ml-100k and instacart both want 30-100, far above the customary 0.01), which is why it is searched.
    ///
    /// Only the first fit starts cold; each candidate then starts from the incumbent's factors and runs
    /// ``warmSearchIterations``. Measured on a 10M-event log: the search went from 107 s to 59 s with the same
    /// choices; on ml-100k (8 seeds) and Instacart (4 seeds) all but one seed each chose the same values, and the
    /// seed means of test NDCG moved by less than 0.002.
    mutating func tuneFactorization(sub: EventLog, sets: [EvaluationProtocol: EvaluationSet]) {
        // Each candidate ranks every user over the whole catalogue, 17 times over: a thinner set than the blend's
        // (at most 32M dot products per candidate, 671 users on a 50k-item catalogue) keeps the search's cost where
        // it was before the blend sets grew. Measured on a 2M-event, 50k-item log: on the blend's 5000 users the
        // search took 23 s instead of 12.
        guard let full = sets[.excludeSeen], !full.users.isEmpty else { return }
        let set = full.thinned(to: max(100, (32 << 20) / max(sub.itemIds.count, 1)))
        var cache: [String: MetricsAccumulator] = [:]
        var pairs = 0
        // The incumbent's factors, unquantized (nil: the next fit starts cold). Only the incumbent's and the current
        // leader's are held, so the search needs two factor sets beyond the fit running, not one per candidate.
        var incumbentFactors: ALSFactors?
        /// A candidate's run, and its factors when it was fitted now (nil when the run came from the cache).
        func score(_ c: TrainerConfig) -> (run: MetricsAccumulator, factors: ALSFactors?) {
            let key = "\(c.als.regularization) \(c.als.alpha) \(c.decay.halfLifeSeconds ?? -1)"
            if let v = cache[key] { return (v, nil) }
            let m = Interactions.matrix(
                sub,
                decay: c.decay,
                reference: sub.timeRange!.upperBound,
                normalizePerUser: c.normalizePerUser
            )
            pairs = m.nonZeros
            var als = c.als
            als.lossEvery = 0
            // The ranking has settled by 8 iterations from a cold start (loss within ~0.5% of 15 on the benchmark
            // logs), and by 4 from the incumbent's factors: the search fits stop there.
            als.iterations = min(als.iterations, incumbentFactors == nil ? Self.coldSearchIterations : Self.warmSearchIterations)
            let raw = WeightedALS.fit(m, config: als, initial: incumbentFactors)
            let run = BlendScorer.dotProductRun(
                set: set, factors: raw.stored(as: c.encoding), items: sub.itemIds.count, k: c.k, threads: c.als.threads,
                dots: factorDots
            )
            let v = run.result.ndcg
            cache[key] = run
            progress.line(
                "validation",
                "factors: regularization \(Format.number(Double(c.als.regularization))) alpha \(Format.number(Double(c.als.alpha))) "
                    + "decay \(c.decay.summary) -> als ndcg@\(c.k) \(Format.fixed(v, 4))"
            )
            return (run, raw)
        }
        var best = config
        let start = score(best)
        var bestRun = start.run
        incumbentFactors = start.factors
        // One coordinate at a time: its best candidate replaces the incumbent only when clearly better (the noise
        // rule of the blend search). Measured on Instacart: validation differences of 0.0001 NDCG flipped the decay
        // half-life between 30 and 120 days across seeds, which moved test NDCG by 0.005.
        func consider(_ candidates: [TrainerConfig]) {
            var runs: [MetricsAccumulator] = []
            // The run clearWinner would pick so far (same rule: beats the incumbent, then each earlier leader).
            var leader: (index: Int, factors: ALSFactors?)?
            for c in candidates {
                let (run, factors) = score(c)
                if run.result.ndcg > (leader.map { runs[$0.index] } ?? bestRun).result.ndcg + 1e-9 {
                    leader = (runs.count, factors)
                }
                runs.append(run)
            }
            if let j = BlendScorer.clearWinner(runs, over: bestRun) {
                best = candidates[j]
                bestRun = runs[j]
                incumbentFactors = leader?.index == j ? leader?.factors : nil
            }
        }
        let grid: [Float] = [5, 10, 40, 60, 100, 150, 250]
        consider(grid.map { reg in
            var c = best
            c.als.regularization = reg
            return c
        })
        // Best at the top of the grid: keep going up while it still helps (a few more fits at most).
        var top = grid.last!
        for _ in 0..<3 where best.als.regularization == top {
            top *= 2
            var c = best
            c.als.regularization = top
            consider([c])
        }
        consider([3, 10, 30].map { (alpha: Float) in
            var c = best
            c.als.alpha = alpha
            return c
        })
        if best.decay.form == .exponential {
            consider([3.0, 10, 30, 120].map { days in
                var c = best
                c.decay = .exponential(halfLifeDays: days)
                return c
            })
        }
        config = best
        regularizationPerPair = Double(best.als.regularization) / Double(max(pairs, 1))
        progress.line(
            "validation",
            "chose regularization \(Format.number(Double(best.als.regularization))) (per pair: scaled with the data) alpha \(Format.number(Double(best.als.alpha))) decay \(best.decay.summary)"
        )
    }

    /// Fits on `train`, ranks for `test`, fills `report.test` for every method and protocol.
    func test(train: EventLog, test: EventLog, tuned: Tuned, report: inout TrainReport) {
        let sets = Evaluation.sets(train: train, test: test, maxUsers: evalUsers(items: train.itemIds.count))
        report.split.testUsers = Dictionary(uniqueKeysWithValues: sets.map { ($0.key.rawValue, $0.value.users.count) })
        let f = fit(matrix(train, decayed: true), label: "test fit")
        let f0 = fit(matrix(train, decayed: false), label: "test fit (no decay)")
        let comps = components(train, decayed: true, tuned: tuned, factors: f)
        let comps0 = components(train, decayed: false, tuned: tuned, factors: f0)
        for p in EvaluationProtocol.allCases {
            let set = sets[p]!
            var runs = Evaluation.baselines(set, p, comps, k: config.k)
            let scorer = BlendScorer(
                set: set,
                components: comps,
                k: config.k,
                threads: config.als.threads,
                dots: factorDots
            )
            runs["als"] = scorer.accumulate(BlendWeights())
            runs["model"] = scorer.accumulate(tuned.weights[p]!)
            let scorer0 = BlendScorer(
                set: set,
                components: comps0,
                k: config.k,
                threads: config.als.threads,
                dots: factorDots
            )
            runs["als-no-decay"] = scorer0.accumulate(BlendWeights())
            runs["model-no-decay"] = scorer0.accumulate(tuned.noDecayWeights[p]!)
            let methods = runs.mapValues(\.result)
            report.test[p.rawValue] = methods.mapValues { $0.dictionary(k: config.k) }
            for name in methods.keys.sorted() {
                let m = methods[name]!
                progress.line(
                    "test",
                    "\(p.rawValue) \(name.padding(14)) recall@\(config.k) \(Format.fixed(m.recall, 4)) ndcg@\(config.k) \(Format.fixed(m.ndcg, 4)) "
                        + "(se \(Format.fixed(m.ndcgStandardError, 4))) map@\(config.k) \(Format.fixed(m.map, 4)) "
                        + "coverage \(Format.fixed(m.coverage, 3)) (\(m.users) users)"
                )
            }
            // The model against every other method on the same users: a gain is worth reporting only next to the
            // noise of this test set, which on a hundred users is of the size of the differences between methods.
            let model = runs["model"]!
            var gains: [String: [String: Double]] = [:]
            for name in runs.keys.sorted() where name != "model" {
                let g = model.ndcgGain(over: runs[name]!)
                gains[name] = ["ndcg@\(config.k)_gain": g.mean, "ndcg@\(config.k)_gain_se": g.standardError]
                progress.line(
                    "test",
                    "\(p.rawValue) model vs \(name.padding(14)) ndcg@\(config.k) gain \(Format.fixed(g.mean, 4)) "
                        + "(paired se \(Format.fixed(g.standardError, 4)))"
                )
            }
            report.comparisons[p.rawValue] = gains
        }
        testRealtime(train: train, test: test, comps: comps, tuned: tuned, report: &report)
    }

    /// The real-time fold-in on test sessions: the exclude-seen model without events, with them at the chosen weight,
    /// and at 1 (the fold-in before the weight existed), each with its paired gain over no events.
    func testRealtime(train: EventLog, test: EventLog, comps: ScoringComponents, tuned: Tuned, report: inout TrainReport) {
        let sessions = RealtimeSessions(train: train, later: test, history: comps.history, maxUsers: evalUsers(items: train.itemIds.count))
        guard sessions.set.users.count > 1, comps.factors != nil else { return }
        let cases = [("events", tuned.realtimeWeight), ("events-weight-1", 1.0)]
        let runs = sessions.evaluate(
            comps, blend: tuned.weights[.excludeSeen]!, weights: [0] + cases.map(\.1), method: config.resolvedRealtimeFold,
            decay: config.decay, k: config.k,
            threads: config.als.threads, dots: factorDots
        )
        let none = runs[0]
        var row: [String: Double] = ["users": Double(sessions.set.users.count), "weight": tuned.realtimeWeight, "no-events": none.result.ndcg]
        for ((name, w), r) in zip(cases, runs.dropFirst()) {
            let g = r.ndcgGain(over: none)
            row[name] = r.result.ndcg
            row["\(name)_gain"] = g.mean
            row["\(name)_gain_se"] = g.standardError
            progress.line(
                "test",
                "real-time \(name) (weight \(Format.number(w))) ndcg@\(config.k) \(Format.fixed(r.result.ndcg, 4)) vs no events "
                    + "\(Format.fixed(none.result.ndcg, 4)): gain \(Format.fixed(g.mean, 4)) (paired se \(Format.fixed(g.standardError, 4)), "
                    + "\(sessions.set.users.count) sessions)"
            )
        }
        report.realtime["test"] = row
        testNewUserRealtime(train: train, test: test, comps: comps, tuned: tuned, report: &report)
    }

    /// Users the model does not know, ranked from their first events on test as the server ranks them (its cold
    /// start from events: the additive fold scaled to a typical user's norm) against no events (the blend's item
    /// terms alone, as for a zero vector), with the paired gain.
    func testNewUserRealtime(train: EventLog, test: EventLog, comps: ScoringComponents, tuned: Tuned, report: inout TrainReport) {
        guard let f = comps.factors else { return }
        let sessions = RealtimeSessions.newUsers(train: train, later: test, maxUsers: evalUsers(items: train.itemIds.count))
        guard sessions.set.users.count > 1 else { return }
        let blend = tuned.weights[.excludeSeen]!
        func run(_ vectors: [Float]) -> MetricsAccumulator {
            var g = f
            g.user = vectors
            return BlendScorer(set: sessions.set, components: comps.forNewUsers(g), k: config.k, threads: config.als.threads, dots: factorDots)
                .accumulate(blend)
        }
        let none = run([Float](repeating: 0, count: sessions.set.users.count * f.factors))
        let events = run(sessions.newUserVectors(f, typicalNorm: RealtimeSessions.typicalUserNorm(f), decay: config.decay))
        let g = events.ndcgGain(over: none)
        report.realtime["test-new-users"] = [
            "users": Double(sessions.set.users.count), "no-events": none.result.ndcg, "events": events.result.ndcg,
            "events_gain": g.mean, "events_gain_se": g.standardError,
        ]
        progress.line(
            "test",
            "real-time new users ndcg@\(config.k) \(Format.fixed(events.result.ndcg, 4)) vs no events \(Format.fixed(none.result.ndcg, 4)): "
                + "gain \(Format.fixed(g.mean, 4)) (paired se \(Format.fixed(g.standardError, 4)), \(sessions.set.users.count) sessions)"
        )
    }

    /// Scores the activity profiles (push timing) on the test window: the stored kind, the population's, and the raw
    /// counts earlier versions stored. Called after ``test(train:test:tuned:report:)`` has freed its fits.
    func testTiming(train: EventLog, test: EventLog, tuned: Tuned, report: inout TrainReport) {
        let runs = ActivityTiming.evaluate(train: train, test: test, spec: tuned.activity, rawDecay: config.decay)
        guard let profile = runs["profile"] else { return }
        report.timing["test"] = runs.mapValues(\.dictionary)
        let top = TimingRun.top
        for name in runs.keys.sorted() {
            let m = runs[name]!.dictionary
            progress.line(
                "test",
                "timing \(name.padding(12)) hit@\(top) \(Format.fixed(m["hit@\(top)"]!, 4)) (se \(Format.fixed(m["hit@\(top)_se"]!, 4)))"
                    + (m["log_likelihood"].map { " log-likelihood \(Format.fixed($0, 4))" } ?? "")
                    + " (\(Int(m["users"]!)) users)"
            )
        }
        for name in runs.keys.sorted() where name != "profile" {
            let g = profile.gains(over: runs[name]!)
            report.timingComparisons[name] = g
            progress.line(
                "test",
                "timing profile vs \(name.padding(12)) hit@\(top) gain \(Format.fixed(g["hit@\(top)_gain"]!, 4)) "
                    + "(paired se \(Format.fixed(g["hit@\(top)_gain_se"]!, 4)))"
            )
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
