public import KairosKernels
public import KairosModelFormat

#if canImport(Glibc)
    import Glibc
#endif

/// Everything `kairos train` can be told; the defaults are the configuration the quality bar applies to.
public struct TrainerConfig: Sendable {
    /// Event log path (CSV, TSV or JSON Lines).
    public var input: String
    /// How to read it.
    public var ingest = IngestOptions()
    /// Optional item attributes CSV.
    public var itemsPath: String?
    /// Category column of the attributes file (default: first of category, genres, genre, department, aisle).
    public var categoryColumn: String?
    /// Model file to write (nil: train and evaluate only).
    public var output: String?
    /// Model name in the file header.
    public var name = "default"
    /// Model version in the file header.
    public var version: UInt64 = 1
    /// Creation time written into the file; nil means the decay reference time, so output is reproducible.
    public var createdAt: Int64?
    /// Factorization hyper-parameters.
    public var als = ALSConfig()
    /// Decay of confidences, buy-again history and activity profiles.
    public var decay = DecaySpec.exponential(halfLifeDays: 30)
    /// Half-life of trending in days; nil picks it on the validation split, 0 means no decay (all-time).
    public var trendingHalfLifeDays: Double?
    /// Half-life of item freshness (new arrivals) in days; nil picks it on the validation split, 0 leaves it out.
    public var freshnessHalfLifeDays: Double?
    /// How much a known user's real-time events weigh against their vector when served (0 ignores them; 1 is the
    /// fold-in of PROTOCOL.md); nil picks it on validation sessions (``RealtimeSessions``).
    public var realtimeWeight: Double?
    /// How a known user's real-time events are folded into their vector when served; nil: least squares when the
    /// fit allows it (at most ``LeastSquaresFold/maxDimensions`` factors and a regularization above 0), else additive.
    public var realtimeFold: RealtimeFoldMethod?
    /// ``realtimeFold`` with nil resolved.
    public var resolvedRealtimeFold: RealtimeFoldMethod {
        realtimeFold ?? (als.factors <= LeastSquaresFold.maxDimensions && als.regularization > 0 ? .leastSquares : .additive)
    }
    /// Scale each user's decayed confidences to mean 1 (see ``Interactions``).
    public var normalizePerUser = true
    /// Decay reference time for the final model; nil means the newest event.
    public var now: Int64?
    /// Most history items kept per user. The server excludes only these, so the cap must cover whole histories:
    /// at 200, 148 of ml-100k's 943 users (37 of its 107 test users) had more, and served exclude-seen NDCG@10
    /// would have been 0.255 where the evaluation (all training items excluded) reported 0.286.
    public var historyCap = 1000
    /// How the model file stores the factors (float16 halves them, int8 quarters them).
    public var encoding = RowEncoding.float32
    /// Quantile of event times where the test split starts; 0 turns test evaluation off.
    public var holdout = 0.8
    /// Quantile of training times where the validation split starts (for tuning).
    public var validation = 0.8
    /// Learn blend weights (and the trending half-life) on the validation split.
    public var tune = true
    /// Also choose regularization, alpha and the decay half-life on the validation split (about 13 extra fits on the
    /// validation training part; the chosen lambda is then scaled with each fit's pair count); explicit flags are
    /// then starting points.
    public var tuneFactorization = true
    /// Ranking cut-off K for metrics and tuning.
    public var k = 10
    /// Most users per evaluation set (a deterministic spread is kept beyond this).
    public var maxEvalUsers = 5000
    /// Users with more events than this (bots, crawlers, test accounts) are left out with the items only they touched;
    /// nil keeps everyone.
    public var maxUserEvents: Int?
    /// Refuse to write the model when its test evaluation is clearly worse than a simple baseline (``QualityGate``).
    public var qualityGate = false
    /// A model file (the one being served, typically) the new model must not be clearly worse than on test NDCG;
    /// setting it turns ``qualityGate`` on.
    public var qualityGateAgainst: String?

    /// The default configuration for the log at `input`; rows stamped more than ``futureTolerance`` after the present
    /// are bad rows (``IngestOptions/latestTime``).
    public init(input: String) {
        self.input = input
        ingest.latestTime = Int64(time(nil)) + Self.futureTolerance
    }

    /// Seconds a row may be stamped after the present (clocks disagree by minutes, time zones mislabelled by hours).
    public static let futureTolerance: Int64 = 86400

    /// Checks ranges.
    /// - Throws: ``TrainerError`` with code `invalidConfiguration`.
    public func validate() throws(TrainerError) {
        func fail(_ m: String) -> TrainerError { TrainerError(.invalidConfiguration, m) }
        guard als.factors > 0, als.factors % 4 == 0, als.factors <= 1024 else {
            throw fail("factors must be a multiple of 4 in 4...1024")
        }
        guard als.iterations >= 0 else { throw fail("iterations must not be negative") }
        guard als.regularization >= 0, als.regularization.isFinite else { throw fail("regularization must be >= 0") }
        guard als.alpha >= 0, als.alpha.isFinite else { throw fail("alpha must be >= 0") }
        guard als.cgSteps >= 1 else { throw fail("cg-steps must be >= 1") }
        guard als.threads >= 1 && als.threads <= 256 else { throw fail("threads must be in 1...256") }
        guard (0..<1).contains(holdout) else { throw fail("holdout must be in [0, 1)") }
        guard validation > 0 && validation < 1 else { throw fail("validation must be in (0, 1)") }
        guard k >= 1 && k <= 1000 else { throw fail("k must be in 1...1000") }
        guard historyCap >= 1 else { throw fail("history cap must be >= 1") }
        if realtimeFold == .leastSquares {
            guard als.factors <= LeastSquaresFold.maxDimensions else {
                throw fail("the least-squares real-time fold is for at most \(LeastSquaresFold.maxDimensions) factors")
            }
            guard als.regularization > 0 else { throw fail("the least-squares real-time fold needs a regularization above 0") }
        }
        // 0 used to train with empty validation sets: every choice made on nothing, every metric of no user.
        guard maxEvalUsers >= 1 else { throw fail("eval users must be >= 1") }
        if let m = maxUserEvents, m < 1 { throw fail("max user events must be >= 1") }
        if (qualityGate || qualityGateAgainst != nil) && holdout == 0 {
            throw fail("the quality gate checks the test split: it needs --holdout above 0")
        }
        switch decay.form {
        case .none: break
        case .exponential: guard (decay.halfLifeSeconds ?? 0) > 0 else { throw fail("half-life must be > 0") }
        case .linear: guard (decay.windowSeconds ?? 0) > 0 else { throw fail("window must be > 0") }
        case .sigmoid:
            guard decay.midpointSeconds != nil, (decay.steepnessPerSecond ?? 0) > 0 else {
                throw fail("sigmoid needs a midpoint and a positive steepness")
            }
        }
    }
}

/// How `kairos serve` folds a known user's real-time events into their vector (metadata `parameters.realtime_fold`,
/// PROTOCOL.md "realtime context").
public enum RealtimeFoldMethod: String, Sendable, CaseIterable {
    /// `normalise(u + weight x sum strength x w(age) x v_item)` (`realtime_fold` 0, or absent).
    case additive
    /// ``LeastSquaresFold``: what the events change in the user's least-squares solution (`realtime_fold` 1).
    case leastSquares = "least-squares"

    /// The `parameters.realtime_fold` value.
    public var parameter: Double { self == .leastSquares ? 1 : 0 }
}
