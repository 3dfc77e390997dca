import CKairosTrainerKernels
public import KairosModelFormat

#if canImport(Glibc)
    import Glibc
#endif

/// Runs a whole training: ingest, temporal evaluation with validation tuning, final fit, signals, model file.
public enum Trainer {
    /// Generator string stored in model metadata.
    public static let generator = "kairos train 0.1"

    /// The result: the model contents (written when `config.output` is set) and the report.
    public struct Result: Sendable {
        /// What was (or would be) written; nil when the quality gate refused the model (`report.qualityGate`).
        public var contents: ModelContents?
        /// Everything measured.
        public var report: TrainReport

        /// ``contents``, or the gate's failed checks as an error.
        public func requireContents() throws(TrainerError) -> ModelContents {
            guard let contents else {
                throw TrainerError(.qualityGate, "the model was refused: " + (report.qualityGate?.failures ?? ""))
            }
            return contents
        }
    }

    /// Trains according to `config`, reporting each phase through `progress`.
    /// - Throws: ``TrainerError`` for unreadable input, a bad row under `--strict`, an invalid configuration, or a
    ///   model that cannot be written.
    public static func run(_ requested: TrainerConfig, progress: Progress = .silent) throws(TrainerError) -> Result {
        try requested.validate()
        var config = requested
        // Checked and read before hours of training, so that a wrong path fails now.
        if let out = config.output { try checkWritable(out, what: "--out") }
        if let items = config.itemsPath, access(items, R_OK) != 0 {
            throw TrainerError(.io, "--items \(items): cannot read it: \(String(cString: strerror(errno)))")
        }
        let previous = try config.qualityGateAgainst.map { path throws(TrainerError) in
            try QualityGate.Previous.load(path: path)
        }
        let t0 = ContinuousClock.now
        var report = TrainReport()
        var ((log, ingest), ingestSeconds) = try Progress.timedThrowing { () throws(TrainerError) in
            try EventLogReader.read(path: config.input, options: config.ingest)
        }
        report.timings["ingest"] = ingestSeconds
        report.ingestEventsPerSecond = Double(ingest.rows) / max(ingestSeconds, 1e-9)
        progress.line(
            "ingest",
            "\(ingest.rows) rows -> \(log.count) events, \(log.userIds.count) users, \(log.itemIds.count) items, "
                + "\(ingest.badRows) bad rows, \(ingest.duplicates) duplicates, strength from \(ingest.strengthSource.rawValue), "
                + "\(Format.bytes(ingest.bytes)) in \(Format.seconds(ingestSeconds)) "
                + "(\(Format.fixed(report.ingestEventsPerSecond / 1e6, 2))M rows/s)"
        )
        for b in ingest.firstBadRows { progress.line("ingest", "bad row: \(b)") }
        if ingest.badRows > ingest.firstBadRows.count {
            progress.line("ingest", "... and \(ingest.badRows - ingest.firstBadRows.count) more bad rows")
            // With more bad rows than are described, the tally says what to fix (a missing --event-weights entry, say).
            let kinds = ingest.badRowKinds.sorted { $0.value > $1.value || $0.value == $1.value && $0.key < $1.key }
            progress.line("ingest", "bad rows by kind: " + kinds.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        let (heavyUsers, dropped) = try screenUsers(&log, maxEvents: config.maxUserEvents, progress: progress)
        let range = log.timeRange!
        report.data = .init(
            rows: ingest.rows,
            events: log.count,
            users: log.userIds.count,
            items: log.itemIds.count,
            badRows: ingest.badRows,
            duplicates: ingest.duplicates,
            firstEventTime: range.lowerBound,
            lastEventTime: range.upperBound
        )
        report.data.badRowKinds = ingest.badRowKinds
        report.data.heavyUsers = heavyUsers
        report.data.droppedUsers = dropped.users
        report.data.droppedEvents = dropped.events

        var categories: [UInt32]?
        var attributes: ItemAttributes?
        if let path = config.itemsPath {
            let (a, skipped) = try ItemAttributesReader.read(
                path: path,
                itemIds: log.itemIds,
                categoryColumn: config.categoryColumn
            )
            attributes = a
            categories = a.categoryNames.isEmpty ? nil : a.category
            let known = a.category.filter { $0 != ItemAttributes.none }.count
            progress.line(
                "items",
                "\(a.categoryNames.count) categories, \(known)/\(log.itemIds.count) items with a category, \(skipped) rows for unknown items"
            )
        }

        var session = Session(config: config, categories: categories, progress: progress)
        // 1. Tuning on a validation split cut inside the training period (never on test).
        var tuned = Tuned(config: config)
        var trainPart: EventLog
        var testPart: EventLog?
        if config.holdout > 0 {
            let cut = Evaluation.cutTime(log, quantile: config.holdout)
            (trainPart, testPart) = log.split(at: cut)
            // The two parts hold every event: the whole log is rebuilt from them for the final fit rather than kept
            // beside them through validation and test (on a 10M-event log, the peak fell by 190 MB).
            log.removeEvents()
            report.split.holdout = config.holdout
            report.split.testStartTime = cut
            report.split.trainEvents = trainPart.count
            report.split.testEvents = testPart!.count
            if trainPart.count == 0 {
                // Every event is at or after the cut (one timestamp for the whole log, say): say so rather than
                // silently skipping validation and test.
                progress.line(
                    "split",
                    "no event is older than the holdout cut \(cut): no validation, no test evaluation; the model keeps the "
                        + "default blend (dot product only)"
                )
            }
        } else {
            trainPart = log
        }
        if config.tune && trainPart.count > 0 {
            let (result, seconds) = Progress.timed { () -> Tuned in
                session.tune(on: &trainPart, report: &report)
            }
            tuned = result
            report.timings["validation"] = seconds
            releaseFreedMemory()
        }
        report.scoring = Dictionary(uniqueKeysWithValues: tuned.weights.map { ($0.key.rawValue, $0.value.dictionary) })
        report.parameters["trending_half_life_days"] = tuned.trendingHalfLifeDays
        report.parameters["freshness_half_life_days"] = tuned.freshnessHalfLifeDays
        report.parameters["realtime_weight"] = tuned.realtimeWeight
        report.parameters["realtime_fold"] = config.resolvedRealtimeFold.parameter
        if let h = tuned.historyHalfLifeDays { report.parameters["history_half_life_days"] = h }
        report.parameters.merge(tuned.activity.parameters, uniquingKeysWith: { _, new in new })

        // Validation may have changed regularization, alpha and the decay half-life.
        config = session.config
        report.decay = config.decay.summary

        // 2. Test evaluation: fit on the past, score the future.
        if let testPart, trainPart.count > 0 {
            let (_, seconds) = Progress.timed { () -> Void in
                session.test(train: trainPart, test: testPart, tuned: tuned, report: &report)
                session.testTiming(train: trainPart, test: testPart, tuned: tuned, report: &report)
            }
            report.timings["test"] = seconds
            releaseFreedMemory()
        }

        // The gate needs only the test evaluation: a refused model costs no final fit.
        if config.qualityGate || previous != nil {
            let outcome = QualityGate.Outcome(QualityGate.checks(report: report, k: config.k, previous: previous))
            report.qualityGate = outcome
            for c in outcome.checks {
                progress.line("quality gate", "\(c.passed ? "pass" : "FAIL") \(c.name): \(c.detail)")
            }
            if !outcome.passed {
                progress.line("quality gate", "the model is refused: no final fit, no model file")
                report.timings["total"] = Progress.seconds(ContinuousClock.now - t0)
                report.peakResidentBytes = peakResidentBytes()
                return Result(contents: nil, report: report)
            }
        }

        // 3. The final model on every event.
        if testPart != nil {
            log = EventLog.rejoining(&trainPart, &testPart!)
        }
        let reference = config.now ?? range.upperBound
        let factors: ALSFactors
        do {
            // Scoped so the matrix is freed before the model file is built.
            let matrix = Interactions.matrix(
                log,
                decay: config.decay,
                reference: reference,
                normalizePerUser: config.normalizePerUser
            )
            // Every event decayed to nothing (a --now decades after the newest event, or a linear window that ends
            // before it): the factors would be all zeros, so say so instead of writing that model.
            guard matrix.nonZeros > 0 else {
                throw TrainerError(
                    .invalidConfiguration,
                    "no event keeps any weight under \(config.decay.summary) as of \(reference) (newest event "
                        + "\(range.upperBound)): check --now and the decay"
                )
            }
            let (fitted, fitSeconds) = Progress.timed { () -> ALSFactors in
                session.fit(matrix, label: "fit", reportingLosses: true)
            }
            factors = fitted
            report.parameters.merge(parameterTable(config), uniquingKeysWith: { _, new in new })
            report.parameters["regularization"] = Double(session.regularization(for: matrix))
            report.fitSeconds = fitSeconds
            report.data.pairs = matrix.nonZeros
            report.timings["fit"] = fitSeconds
            report.losses = factors.losses
            progress.line(
                "fit",
                "\(config.als.iterations) iterations in \(Format.seconds(fitSeconds)), \(matrix.nonZeros) user-item pairs, \(config.als.threads) threads, solver \(config.als.kernel.effectiveDescription)"
            )
        }

        let ((contents, usersOverCap), signalsSeconds) = Progress.timed { () -> (ModelContents, Int) in
            makeContents(
                log: log,
                factors: factors,
                config: config,
                tuned: tuned,
                reference: reference,
                attributes: attributes,
                report: report
            )
        }
        // Everything the file needs from the events is in `contents` now.
        log.removeEvents()
        report.timings["signals"] = signalsSeconds
        report.data.usersOverHistoryCap = usersOverCap
        progress.line("signals", "popularity, trending, history, activity in \(Format.seconds(signalsSeconds))")
        if usersOverCap > 0 {
            progress.line(
                "signals",
                "\(usersOverCap) users have more than --history-cap \(config.historyCap) items: the model keeps their "
                    + "\(config.historyCap) heaviest, so the server can recommend their lightest ones again"
            )
        }
        var result = Result(contents: contents, report: report)
        if let out = config.output {
            let t = ContinuousClock.now
            do {
                try ModelWriter.write(contents, to: out)
            } catch {
                throw TrainerError(.io, "writing \(out): \(error)")
            }
            result.report.timings["write"] = Progress.seconds(ContinuousClock.now - t)
            result.report.output = out
            result.report.outputBytes = fileSize(out)
        }
        result.report.timings["total"] = Progress.seconds(ContinuousClock.now - t0)
        result.report.peakResidentBytes = peakResidentBytes()
        return result
    }

    static func makeContents(
        log: EventLog,
        factors: ALSFactors,
        config: TrainerConfig,
        tuned: Tuned,
        reference: Int64,
        attributes: ItemAttributes?,
        report: TrainReport
    ) -> (ModelContents, usersOverHistoryCap: Int) {
        let trendingDecay = tuned.trendingDecay(fallback: config.decay)
        var popularity = Signals.popularity(log, decay: trendingDecay, reference: reference)
        popularity.referenceTime = reference
        let (history, usersOverCap) = Signals.cappedHistory(
            log,
            decay: tuned.historyDecay(fallback: config.decay),
            reference: reference,
            cap: config.historyCap
        )
        let activity = ActivityTiming.profiles(log, spec: tuned.activity, reference: reference)
        let parameters = report.parameters
        let metadata = ModelMetadata(
            generator: generator,
            description:
                "weighted ALS (conjugate gradient) on time-decayed confidences, trained on \(log.count) events",
            algorithm: "wals-cg",
            parameters: parameters,
            decay: config.decay,
            dataSpan: DataSpan(
                firstEventTime: log.timeRange!.lowerBound,
                lastEventTime: log.timeRange!.upperBound,
                events: log.count,
                users: log.userIds.count,
                items: log.itemIds.count
            ),
            evaluation: report.test,
            scoring: report.scoring,
            timing: report.timing["test"]
        )
        let k = config.als.factors
        let contents = ModelContents(
            name: config.name,
            version: config.version,
            createdAt: config.createdAt ?? reference,
            metadata: metadata,
            itemIds: log.itemIds,
            itemFactors: FactorMatrix(rows: log.itemIds.count, cols: k, values: factors.item, encoding: config.encoding),
            userIds: log.userIds,
            userFactors: FactorMatrix(rows: log.userIds.count, cols: k, values: factors.user, encoding: config.encoding),
            popularity: popularity,
            attributes: attributes,
            firstSeen: Signals.firstSeen(log, reference: reference),
            history: history,
            activity: activity
        )
        return (contents, usersOverCap)
    }

    /// The hyper-parameters stored in metadata `parameters` and the metrics JSON.
    static func parameterTable(_ config: TrainerConfig) -> [String: Double] {
        [
            "factors": Double(config.als.factors),
            "iterations": Double(config.als.iterations),
            "regularization": Double(config.als.regularization),
            "alpha": Double(config.als.alpha),
            "cg_steps": Double(config.als.cgSteps),
            "seed": Double(config.als.seed),
            "normalize_per_user": config.normalizePerUser ? 1 : 0,
            "history_cap": Double(config.historyCap),
            "holdout": config.holdout,
            "k": Double(config.k),
        ]
    }

    /// A user with more events than this many times the median, and more than ``heavyUserFloor``, is reported as
    /// heavy: a bot or crawler is the usual reason, and it weighs on popularity and the factors like a crowd.
    static let heavyUserFactor = 100
    /// Fewest events a heavy user has (so that a log of light users, median 2, does not flag someone with 300).
    static let heavyUserFloor = 1000

    /// Reports heavy users (see ``heavyUserFactor``) and drops the users with more than `maxEvents` events, with the
    /// items only they touched. Returns the heavy-user count and what was dropped.
    /// - Throws: ``TrainerError`` `invalidConfiguration` when `maxEvents` leaves no event.
    static func screenUsers(
        _ log: inout EventLog,
        maxEvents: Int?,
        progress: Progress
    ) throws(TrainerError) -> (heavy: Int, dropped: (users: Int, events: Int)) {
        let counts = log.eventsPerUser()
        let median = counts.sorted()[counts.count / 2]
        let limit = max(heavyUserFloor, heavyUserFactor * median)
        let heavy = counts.indices.filter { counts[$0] > limit }.sorted { counts[$0] > counts[$1] }
        if !heavy.isEmpty {
            let top = heavy.prefix(3).map { "\(log.userIds[$0]) (\(counts[$0]))" }.joined(separator: ", ")
            progress.line(
                "ingest",
                "\(heavy.count) users have over \(limit) events (\(heavyUserFactor)x the median \(median)), bots? "
                    + "largest: \(top)\(maxEvents == nil ? "; --max-user-events N leaves out users above N" : "")"
            )
        }
        guard let maxEvents else { return (heavy.count, (0, 0)) }
        let drop = counts.map { $0 > maxEvents }
        let users = drop.filter { $0 }.count
        guard users > 0 else { return (heavy.count, (0, 0)) }
        let before = log.count
        log = log.removingUsers(drop)
        guard log.count > 0 else {
            throw TrainerError(.invalidConfiguration, "--max-user-events \(maxEvents) leaves out every user")
        }
        progress.line(
            "ingest",
            "--max-user-events \(maxEvents): left out \(users) users and their \(before - log.count) events; "
                + "\(log.userIds.count) users and \(log.itemIds.count) items remain"
        )
        return (heavy.count, (users, before - log.count))
    }

    /// Hands memory freed by the phase just ended back to the system. glibc keeps freed blocks below its mmap
    /// threshold (which grows up to 32 MB as large blocks are freed) for reuse, so without this the resident size
    /// carries every earlier phase's high-water mark into the next.
    static func releaseFreedMemory() {
        ckt_release_free_memory()
    }

    /// The process's peak resident set size so far (Linux reports `ru_maxrss` in kilobytes).
    static func peakResidentBytes() -> Int? {
        #if os(Linux)
            var usage = rusage()
            guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0, usage.ru_maxrss > 0 else { return nil }
            return usage.ru_maxrss * 1024
        #else
            return nil
        #endif
    }

    /// Throws now, not after the training, when `path` cannot be written: its folder must exist and be writable, and
    /// so must the file if it exists.
    /// - Throws: ``TrainerError`` `io`, naming `what` (the option that gave the path).
    public static func checkWritable(_ path: String, what: String) throws(TrainerError) {
        let (dir, _) = AtomicFile.split(path)  // the folder the writer's temp file goes to
        guard ckt_path_kind(dir, nil) == Int32(CKT_PATH_DIR) else {
            throw TrainerError(.io, "\(what) \(path): folder \(dir) does not exist")
        }
        guard access(dir, W_OK | X_OK) == 0 else {
            let why = String(cString: strerror(errno))
            throw TrainerError(.io, "\(what) \(path): folder \(dir) is not writable: \(why)")
        }
        let kind = ckt_path_kind(path, nil)
        if kind != Int32(CKT_PATH_NONE) && kind != Int32(CKT_PATH_FILE) {
            throw TrainerError(.io, "\(what) \(path): not a regular file")
        }
    }

    static func fileSize(_ path: String) -> Int? {
        var size: Int64 = 0
        return ckt_path_kind(path, &size) == Int32(CKT_PATH_NONE) ? nil : Int(size)
    }
}
