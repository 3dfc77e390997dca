import KairosModelFormat

/// What validation decided: blend weights per protocol (for the decayed and the no-decay model) and trending's half-life.
struct Tuned: Sendable {
    var weights: [EvaluationProtocol: BlendWeights]
    var noDecayWeights: [EvaluationProtocol: BlendWeights]
    /// 0 means no decay (all-time popularity).
    var trendingHalfLifeDays: Double

    init(config: TrainerConfig) {
        let dotOnly = Dictionary(uniqueKeysWithValues: EvaluationProtocol.allCases.map { ($0, BlendWeights()) })
        weights = dotOnly
        noDecayWeights = dotOnly
        trendingHalfLifeDays = config.trendingHalfLifeDays ?? 7
    }

    func trendingDecay(fallback: DecaySpec) -> DecaySpec {
        trendingHalfLifeDays > 0 ? .exponential(halfLifeDays: trendingHalfLifeDays) : DecaySpec(form: .none)
    }
}

/// The fits and evaluations of one training run.
struct Session {
    let config: TrainerConfig
    let categories: [UInt32]?
    let progress: Progress

    /// Candidate trending half-lives in days (0 = all-time), searched on validation when not given.
    static let trendingGrid: [Double] = [0.5, 1, 2, 4, 7, 14, 30, 60, 120, 365, 0]

    /// Factorizes `m` with per-iteration progress lines (loss and ETA).
    func fit(_ m: SparseMatrix, label: String) -> ALSFactors {
        let start = ContinuousClock.now
        let total = config.als.iterations
        return WeightedALS.fit(m, config: config.als) { it, loss in
            let elapsed = Progress.seconds(ContinuousClock.now - start)
            let eta = elapsed / Double(it) * Double(total - it)
            let lossText = loss.map { "loss \(Format.number($0, digits: 6))" } ?? "loss -"
            progress.line(label, "iteration \(it)/\(total) \(lossText) elapsed \(Format.seconds(elapsed)) ETA \(Format.seconds(eta))")
        }
    }

    func components(_ log: EventLog, decayed: Bool, trending: DecaySpec, factors: ALSFactors?) -> ScoringComponents {
        ScoringComponents(
            log: log, decay: decayed ? config.decay : DecaySpec(form: .none), trendingDecay: decayed ? trending : DecaySpec(form: .none),
            reference: log.timeRange?.upperBound ?? 0, historyCap: config.historyCap, categories: categories, factors: factors)
    }

    func matrix(_ log: EventLog, decayed: Bool) -> SparseMatrix {
        Interactions.matrix(
            log, decay: decayed ? config.decay : DecaySpec(form: .none), reference: log.timeRange?.upperBound ?? 0,
            normalizePerUser: config.normalizePerUser)
    }

    /// Learns blend weights (and trending's half-life) on a validation split cut inside `train`.
    mutating func tune(on train: EventLog, report: inout TrainReport) -> Tuned {
        var tuned = Tuned(config: config)
        let vcut = Evaluation.cutTime(train, quantile: config.validation)
        let sub = train.filtered { train.times[$0] < vcut }
        let val = train.filtered { train.times[$0] >= vcut }
        guard sub.count > 0, val.count > 0 else {
            progress.line("validation", "split is empty; keeping default blend weights (dot product only)")
            return tuned
        }
        let sets = Evaluation.sets(train: sub, test: val, maxUsers: config.maxEvalUsers)
        report.split.validationStartTime = vcut
        report.split.validationUsers = Dictionary(uniqueKeysWithValues: sets.map { ($0.key.rawValue, $0.value.users.count) })
        let reference = sub.timeRange!.upperBound
        if config.trendingHalfLifeDays == nil {
            var best = (-1.0, tuned.trendingHalfLifeDays)
            for h in Self.trendingGrid {
                let decay = h > 0 ? DecaySpec.exponential(halfLifeDays: h) : DecaySpec(form: .none)
                let trend = ScoringComponents.unitMax(Signals.popularity(sub, decay: decay, reference: reference).decayed)
                var score = 0.0
                for p in EvaluationProtocol.allCases {
                    score += Evaluation.evaluate(sets[p]!, k: config.k, catalogue: sub.itemIds.count) { _, b in
                        for i in 0..<b.count { b[i] = trend[i] }
                    }.ndcg
                }
                if score > best.0 + 1e-9 { best = (score, h) }
            }
            tuned.trendingHalfLifeDays = best.1
            progress.line("validation", "trending half-life \(best.1 > 0 ? "\(Format.number(best.1)) d" : "none (all-time)")")
        }
        let trending = tuned.trendingDecay(fallback: config.decay)
        for decayed in [true, false] {
            let factors = fit(matrix(sub, decayed: decayed), label: decayed ? "validation fit" : "validation fit (no decay)")
            let comps = components(sub, decayed: decayed, trending: trending, factors: factors)
            for p in EvaluationProtocol.allCases {
                let scorer = BlendScorer(set: sets[p]!, components: comps, k: config.k)
                let (w, metrics) = scorer.tune()
                if decayed {
                    tuned.weights[p] = w
                    var methods = Evaluation.baselines(sets[p]!, p, comps, k: config.k)
                    methods["als"] = scorer.evaluate(BlendWeights())
                    methods["model"] = metrics
                    report.validation[p.rawValue] = methods.mapValues { $0.dictionary(k: config.k) }
                } else {
                    tuned.noDecayWeights[p] = w
                    report.validation[p.rawValue]?["model-no-decay"] = metrics.dictionary(k: config.k)
                }
                let name = decayed ? "blend" : "blend (no decay)"
                progress.line(
                    "validation",
                    "\(p.rawValue) \(name): dot \(Format.number(w.dot)) trending \(Format.number(w.trending)) "
                        + "buy-again \(Format.number(w.buyAgain)) category \(Format.number(w.category)) -> ndcg@\(config.k) \(Format.fixed(metrics.ndcg, 4))")
            }
        }
        return tuned
    }

    /// Fits on `train`, ranks for `test`, fills `report.test` for every method and protocol.
    func test(train: EventLog, test: EventLog, tuned: Tuned, report: inout TrainReport) {
        let sets = Evaluation.sets(train: train, test: test, maxUsers: config.maxEvalUsers)
        report.split.testUsers = Dictionary(uniqueKeysWithValues: sets.map { ($0.key.rawValue, $0.value.users.count) })
        let trending = tuned.trendingDecay(fallback: config.decay)
        let f = fit(matrix(train, decayed: true), label: "test fit")
        let f0 = fit(matrix(train, decayed: false), label: "test fit (no decay)")
        let comps = components(train, decayed: true, trending: trending, factors: f)
        let comps0 = components(train, decayed: false, trending: trending, factors: f0)
        for p in EvaluationProtocol.allCases {
            let set = sets[p]!
            var methods = Evaluation.baselines(set, p, comps, k: config.k)
            let scorer = BlendScorer(set: set, components: comps, k: config.k)
            methods["als"] = scorer.evaluate(BlendWeights())
            methods["model"] = scorer.evaluate(tuned.weights[p]!)
            let scorer0 = BlendScorer(set: set, components: comps0, k: config.k)
            methods["als-no-decay"] = scorer0.evaluate(BlendWeights())
            methods["model-no-decay"] = scorer0.evaluate(tuned.noDecayWeights[p]!)
            report.test[p.rawValue] = methods.mapValues { $0.dictionary(k: config.k) }
            for name in methods.keys.sorted() {
                let m = methods[name]!
                progress.line(
                    "test",
                    "\(p.rawValue) \(name.padding(14)) recall@\(config.k) \(Format.fixed(m.recall, 4)) ndcg@\(config.k) \(Format.fixed(m.ndcg, 4)) "
                        + "map@\(config.k) \(Format.fixed(m.map, 4)) coverage \(Format.fixed(m.coverage, 3)) (\(m.users) users)")
            }
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
