public import ArgumentParser
import KairosKernels
import KairosModelFormat
package import KairosTrainer

#if canImport(Glibc)
    import Glibc
#endif

/// `kairos train`: learns a model file from an interaction log, evaluates it on a temporal split, reports metrics.
public struct Train: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a time-aware implicit-feedback model from an event log and write a model file.",
        discussion: """
            Events: CSV/TSV with a header (user,item,timestamp[,event][,value]) or JSON Lines; timestamps in unix \
            seconds or ISO-8601. CSV fields may be quoted as RFC 4180 has it ("" for a quote; delimiters and line \
            breaks inside), line breaks only in columns Kairos does not read. Progress goes to stderr, one line per \
            phase and iteration.
            """
    )

    @Argument(help: "Event log (CSV, TSV or JSON Lines); - reads standard input.")
    var input: String

    @Option(name: .shortAndLong, help: "Model file to write (omit to only train and evaluate).")
    var out: String?
    @Option(help: "Model name in the file header.")
    var name = "default"
    @Option(help: "Model version in the file header.")
    var modelVersion: UInt64 = 1
    @Option(help: "Creation time (unix seconds) written into the file; default: the decay reference time.")
    var createdAt: Int64?

    // MARK: Input

    @Option(help: "Input format: auto, csv, tsv, jsonl.")
    var format = "auto"
    @Option(help: "User id column (default: user, user_id, ...).")
    var userColumn: String?
    @Option(help: "Item id column (default: item, item_id, product_id, ...).")
    var itemColumn: String?
    @Option(help: "Timestamp column (default: timestamp, time, ts, ...).")
    var timeColumn: String?
    @Option(help: "Event type column (default: event, event_type, type, action).")
    var eventColumn: String?
    @Option(help: "Numeric value column (default: value, rating, weight, quantity).")
    var valueColumn: String?
    @Option(help: "Strength source: auto (event column, else value column, else 1), event, value, constant.")
    var strength = "auto"
    @Option(help: "Event type weights, e.g. view=1,click=2,cart=4,purchase=8.")
    var eventWeights: String?
    @Flag(help: "Fail on the first bad row instead of counting it.")
    var strict = false
    @Option(
        help: """
            Leave out users with more events than this (bots, crawlers, test accounts), with the items only they \
            touched. Without it, users over 100x the median (and over 1000 events) are only reported.
            """
    )
    var maxUserEvents: Int?
    @Option(
        help: """
            Rows stamped later are bad rows (unix seconds or ISO-8601; none: no limit); default: one day from now. \
            The newest event is the decay reference, so one row from a wrong clock would decay all the others away.
            """
    )
    var latestEventTime: String?
    @Option(help: "Item attributes CSV (item,category[,brand][,price]).")
    var items: String?
    @Option(help: "Category column of the attributes file.")
    var categoryColumn: String?

    // MARK: Model

    @Option(help: "Latent factors (multiple of 4).")
    var factors = 64
    @Option(help: "ALS iterations.")
    var iterations = 15
    @Option(help: "L2 regularization.")
    var regularization: Float = 20
    @Option(help: "Confidence slope: c = 1 + alpha * r.")
    var alpha: Float = 10
    @Option(help: "Conjugate-gradient steps per row solve.")
    var cgSteps = 3
    @Option(help: "Random seed.")
    var seed: UInt64 = 42
    @Option(help: "Worker threads for the factorization and the evaluation (the results do not depend on it).")
    var threads = 2
    @Option(help: "ALS row solver: auto (best for this CPU), portable, avx2, avx512, swift. Results are deterministic per seed and solver; portable gives the same bytes on every x86-64 CPU.")
    var kernel = "auto"
    @Option(help: "Compute the training loss every N iterations (0: never).")
    var lossEvery = 1
    @Flag(inversion: .prefixedNo, help: "Scale each user's decayed confidences to mean 1.")
    var normalize = true

    // MARK: Time decay

    @Option(help: "Decay form: exponential, linear, sigmoid, none.")
    var decay = "exponential"
    @Option(help: "Exponential half-life in days.")
    var halfLife = 30.0
    @Option(help: "Linear window in days (weight 0 after it).")
    var window = 90.0
    @Option(help: "Sigmoid midpoint age in days.")
    var midpoint = 30.0
    @Option(help: "Sigmoid steepness per day.")
    var steepness = 0.2
    @Option(help: "Trending half-life in days (0: all-time); default: chosen on the validation split.")
    var trendingHalfLife: Double?
    @Option(help: "Freshness (new arrivals) half-life in days (0: no freshness term); default: chosen on the validation split.")
    var freshnessHalfLife: Double?
    @Option(help: "How much a known user's real-time events weigh against their vector when served (0: not at all, their items are still left out; 1: their strengths as given); default: chosen on validation sessions.")
    var realtimeWeight: Double?
    @Option(help: "How a known user's real-time events are folded into their vector when served: least-squares (what the events change in their least-squares solution) or additive (added to it, then rescaled); default: least-squares up to 128 factors.")
    var realtimeFold: RealtimeFoldMethod?
    @Option(help: "Decay reference time for the final model (unix seconds or ISO-8601); default: newest event.")
    var now: String?
    @Option(help: "History items kept per user, heaviest first: what the server excludes (exclude-seen) and boosts (buy-again).")
    var historyCap = 1000
    @Option(help: "Factor encoding in the model file: float32 (default), float16 (half the size) or int8 (a quarter); evaluation scores the encoded factors.")
    var encoding: RowEncoding?

    // MARK: Evaluation

    @Option(help: "Test split starts at this quantile of event times (0 disables test evaluation).")
    var holdout = 0.8
    @Option(help: "Validation split starts at this quantile of training times.")
    var validation = 0.8
    @Flag(inversion: .prefixedNo, help: "Learn blend weights and trending half-life on the validation split.")
    var tune = true
    @Flag(
        inversion: .prefixedNo,
        help: "Also choose regularization, alpha and half-life on the validation split (flags are starting points)."
    )
    var tuneFactorization = true
    @Option(help: "Ranking cut-off K.")
    var k = 10
    @Option(help: "Most users per evaluation set (fewer when users x items would pass 250M).")
    var evalUsers = 5000
    @Option(help: "Write every metric as JSON to this file.")
    var metricsJson: String?
    @Flag(
        help: """
            Write no model (exit status 3) when the test evaluation is clearly worse (by more than 2 standard errors) \
            than popularity, trending or buy-again.
            """
    )
    var qualityGate = false
    @Option(
        help: """
            Also refuse the model when its test NDCG is clearly worse than the one stored in this model file (the one \
            being served, say); implies --quality-gate.
            """
    )
    var qualityGateAgainst: String?
    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    public init() {}

    public func validate() throws {
        guard IngestOptions.Format(rawValue: format) != nil else {
            throw ValidationError("--format must be auto, csv, tsv or jsonl")
        }
        guard IngestOptions.StrengthSource(rawValue: strength) != nil else {
            throw ValidationError("--strength must be auto, event, value or constant")
        }
        guard ALSKernel(rawValue: kernel) != nil else {
            throw ValidationError("--kernel must be one of \(ALSKernel.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard DecayForm(rawValue: decay) != nil else {
            throw ValidationError("--decay must be exponential, linear, sigmoid or none")
        }
        if let w = eventWeights, IngestOptions.parseEventWeights(w) == nil {
            throw ValidationError("--event-weights must look like view=1,click=2 with non-negative numbers")
        }
        if let now, parseTime(now) == nil { throw ValidationError("--now must be unix seconds or ISO-8601") }
        if let latestEventTime, latestEventTime != "none", parseTime(latestEventTime) == nil {
            throw ValidationError("--latest-event-time must be unix seconds, ISO-8601 or none")
        }
        guard halfLife > 0, window > 0, steepness > 0 else {
            throw ValidationError("--half-life, --window and --steepness must be positive")
        }
        for (name, v) in [("--trending-half-life", trendingHalfLife), ("--freshness-half-life", freshnessHalfLife)] {
            if let v, !(v >= 0 && v.isFinite) { throw ValidationError("\(name) must be 0 or a positive number of days") }
        }
        if let realtimeWeight, !(realtimeWeight >= 0 && realtimeWeight <= 1e6) {
            throw ValidationError("--realtime-weight must be 0 to 1e6")
        }
    }

    func parseTime(_ s: String) -> Int64? {
        var s = s
        return s.withUTF8 { Timestamp.parse(UnsafeRawBufferPointer($0)) }
    }

    /// The trainer configuration these options describe.
    package func makeConfig() -> TrainerConfig {
        var c = TrainerConfig(input: input)
        c.ingest.format = IngestOptions.Format(rawValue: format)!
        c.ingest.userColumn = userColumn
        c.ingest.itemColumn = itemColumn
        c.ingest.timeColumn = timeColumn
        c.ingest.eventColumn = eventColumn
        c.ingest.valueColumn = valueColumn
        c.ingest.strength = IngestOptions.StrengthSource(rawValue: strength)!
        if let w = eventWeights { c.ingest.eventWeights = IngestOptions.parseEventWeights(w)! }
        c.ingest.strict = strict
        c.maxUserEvents = maxUserEvents
        if let latestEventTime { c.ingest.latestTime = latestEventTime == "none" ? nil : parseTime(latestEventTime) }
        c.itemsPath = items
        c.categoryColumn = categoryColumn
        c.output = out
        c.name = name
        c.version = modelVersion
        c.createdAt = createdAt
        c.als.factors = factors
        c.als.iterations = iterations
        c.als.regularization = regularization
        c.als.alpha = alpha
        c.als.cgSteps = cgSteps
        c.als.seed = seed
        c.als.threads = threads
        c.als.kernel = ALSKernel(rawValue: kernel)!
        c.als.lossEvery = lossEvery
        c.normalizePerUser = normalize
        switch DecayForm(rawValue: decay)! {
        case .none: c.decay = DecaySpec(form: .none)
        case .exponential: c.decay = .exponential(halfLifeDays: halfLife)
        case .linear: c.decay = .linear(windowDays: window)
        case .sigmoid: c.decay = .sigmoid(midpointDays: midpoint, steepnessPerDay: steepness)
        }
        c.trendingHalfLifeDays = trendingHalfLife
        c.freshnessHalfLifeDays = freshnessHalfLife
        c.realtimeWeight = realtimeWeight
        c.realtimeFold = realtimeFold
        c.now = now.flatMap(parseTime)
        c.historyCap = historyCap
        c.encoding = encoding ?? .float32
        c.holdout = holdout
        c.validation = validation
        c.tune = tune
        c.tuneFactorization = tuneFactorization
        c.k = k
        c.maxEvalUsers = evalUsers
        c.qualityGate = qualityGate || qualityGateAgainst != nil
        c.qualityGateAgainst = qualityGateAgainst
        return c
    }

    public func run() throws {
        let progress = quiet ? Progress.silent : Progress { line in writeStandardError(line + "\n") }
        let result: Trainer.Result
        do {
            if let metricsJson { try Trainer.checkWritable(metricsJson, what: "--metrics-json") }
            result = try Trainer.run(makeConfig(), progress: progress)
        } catch {
            writeStandardError("kairos train: \(error)\n")
            throw ExitCode.failure
        }
        let r = result.report
        if let path = metricsJson {
            let text = r.json() + "\n"
            guard let f = fopen(path, "w") else {
                writeStandardError("kairos train: cannot write \(path)\n")
                throw ExitCode.failure
            }
            fputs(text, f)
            fclose(f)
        }
        print(summary(r))
        if let gate = r.qualityGate, !gate.passed {
            // A distinct status, so that a retrain script can tell "refused" from "crashed".
            writeStandardError("kairos train: the quality gate refused the model; no model file was written\n")
            throw ExitCode(Self.refusedStatus)
        }
    }

    /// Exit status when `--quality-gate` refuses the model (the metrics JSON is still written).
    static let refusedStatus: Int32 = 3

    func summary(_ r: TrainReport) -> String {
        var lines: [String] = []
        lines.append(
            "data: \(r.data.events) events (\(r.data.badRows) bad rows, \(r.data.duplicates) duplicates), \(r.data.users) users, \(r.data.items) items"
        )
        let order = ["ingest", "validation", "test", "fit", "signals", "write", "total"]
        lines.append(
            "time: " + order.compactMap { key in r.timings[key].map { "\(key) \(fmt($0)) s" } }.joined(separator: ", ")
        )
        if let peak = r.peakResidentBytes { lines.append("memory: peak resident \(fmt(Double(peak) / 1e6, 1)) MB") }
        for p in ["exclude-seen", "allow-repeats"] {
            guard let methods = r.test[p] else { continue }
            let parts = methods.keys.sorted().map { "\($0) \(fmt(methods[$0]!["ndcg@\(k)"] ?? 0, 4))" }
            lines.append("test ndcg@\(k) \(p): " + parts.joined(separator: ", "))
            // The model against the best other method (first by name among equals), with the paired noise of the
            // test users: a gain is read against it.
            let ndcg = { (name: String) in methods[name]?["ndcg@\(k)"] ?? 0 }
            let others = methods.keys.sorted().filter { $0 != "model" && $0 != "model-no-decay" }
            if let model = methods["model"], let best = others.max(by: { ndcg($0) < ndcg($1) || ndcg($0) == ndcg($1) && $0 > $1 }),
                let gain = r.comparisons[p]?[best]
            {
                lines.append(
                    "test ndcg@\(k) \(p): model \(fmt(model["ndcg@\(k)"] ?? 0, 4)) (se \(fmt(model["ndcg@\(k)_se"] ?? 0, 4))), "
                        + "gain over \(best) \(fmt(gain["ndcg@\(k)_gain"] ?? 0, 4)) (paired se \(fmt(gain["ndcg@\(k)_gain_se"] ?? 0, 4)))"
                )
            }
        }
        if let t = r.timing["test"], let profile = t["profile"], let gain = r.timingComparisons["population"] {
            let others = ["population", "raw-profile"].compactMap { name in
                t[name]?["hit@3"].map { "\(name) \(fmt($0, 4))" }
            }
            lines.append(
                "test push timing hit@3: profile \(fmt(profile["hit@3"] ?? 0, 4)) (se \(fmt(profile["hit@3_se"] ?? 0, 4))), "
                    + others.joined(separator: ", ") + "; gain over population \(fmt(gain["hit@3_gain"] ?? 0, 4)) "
                    + "(paired se \(fmt(gain["hit@3_gain_se"] ?? 0, 4)))"
            )
        }
        for (p, w) in r.scoring.sorted(by: { $0.key < $1.key }) {
            lines.append("blend \(p): " + w.keys.sorted().map { "\($0) \(w[$0]!)" }.joined(separator: ", "))
        }
        if let gate = r.qualityGate {
            lines.append(
                gate.passed
                    ? "quality gate: passed (\(gate.checks.count) checks)"
                    : "quality gate: FAILED " + gate.failures
            )
        }
        if let out = r.output { lines.append("model: \(out) (\(r.outputBytes ?? 0) bytes)") }
        return lines.joined(separator: "\n")
    }

    func fmt(_ x: Double, _ decimals: Int = 2) -> String {
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        return "\((x * scale).rounded() / scale)"
    }
}

/// Writes `text` to file descriptor 2 (unbuffered, so progress lines appear as they happen).
func writeStandardError(_ text: String) {
    var t = text
    t.withUTF8 { b in _ = write(2, b.baseAddress, b.count) }
}

/// `--realtime-fold least-squares|additive`.
extension RealtimeFoldMethod: ExpressibleByArgument {}
