internal import FoundationEssentials

/// Everything a training run measured; encodes as the `--metrics-json` document (schema in proto-spec/METRICS.md).
public struct TrainReport: Sendable, Codable {
    /// Input statistics.
    public struct DataStats: Sendable, Codable {
        /// Data rows read.
        public var rows = 0
        /// Events kept (after bad rows and duplicates).
        public var events = 0
        /// Distinct users.
        public var users = 0
        /// Distinct items.
        public var items = 0
        /// Distinct user-item pairs in the final model's matrix (the work of one ALS sweep scales with it).
        public var pairs = 0
        /// Rejected rows.
        public var badRows = 0
        /// Rejected rows per kind of problem (at most 20 kinds, the rest under `other`).
        public var badRowKinds: [String: Int] = [:]
        /// Exact repeats dropped.
        public var duplicates = 0
        /// Oldest event, unix seconds.
        public var firstEventTime: Int64 = 0
        /// Newest event, unix seconds.
        public var lastEventTime: Int64 = 0
        /// Users with more items than the history cap (the model keeps their heaviest `history_cap`).
        public var usersOverHistoryCap = 0
        /// Users with over 100 times the median events per user (and over 1000): likely bots, reported, not dropped.
        public var heavyUsers = 0
        /// Users left out by `--max-user-events` (not counted in `users`), and their events.
        public var droppedUsers = 0
        /// Events of the users left out (not counted in `events`).
        public var droppedEvents = 0
    }

    /// The temporal splits.
    public struct Split: Sendable, Codable {
        /// Test quantile (0: no test split).
        public var holdout = 0.0
        /// First test time, unix seconds.
        public var testStartTime: Int64?
        /// Events before the test split.
        public var trainEvents = 0
        /// Events in the test split.
        public var testEvents = 0
        /// First validation time, unix seconds.
        public var validationStartTime: Int64?
        /// protocol -> users evaluated on test.
        public var testUsers: [String: Int] = [:]
        /// protocol -> users evaluated on validation.
        public var validationUsers: [String: Int] = [:]
    }

    /// Schema tag.
    public var schema = "kairos-train-metrics/1"
    /// Input statistics.
    public var data = DataStats()
    /// Split sizes and times.
    public var split = Split()
    /// Seconds of the final factorization (the number compared with other ALS libraries).
    public var fitSeconds = 0.0
    /// Seconds per phase (`ingest`, `validation`, `test`, `fit`, `signals`, `write`, `total`).
    public var timings: [String: Double] = [:]
    /// Ingest speed, events per second.
    public var ingestEventsPerSecond = 0.0
    /// The process's peak resident memory when training ended, bytes (nil where the OS does not say).
    public var peakResidentBytes: Int?
    /// Hyper-parameters used.
    public var parameters: [String: Double] = [:]
    /// Decay summary, e.g. `exponential(half-life 30 d)`.
    public var decay = ""
    /// protocol -> blend weights learned on validation (what the server uses).
    public var scoring: [String: [String: Double]] = [:]
    /// protocol -> method -> metric -> value on the validation split.
    public var validation: [String: [String: [String: Double]]] = [:]
    /// protocol -> method -> metric -> value on the test split.
    public var test: [String: [String: [String: Double]]] = [:]
    /// protocol -> method -> the model's NDCG gain over that method on the test split, paired user by user:
    /// `ndcg@K_gain` (mean difference) and `ndcg@K_gain_se` (its standard error).
    public var comparisons: [String: [String: [String: Double]]] = [:]
    /// Push timing: split (`validation`, `test`) -> profile kind (`profile`, `population`, `raw-profile`) -> metric
    /// (`hit@3`, `log_likelihood`, their `_se`, `users`).
    public var timing: [String: [String: [String: Double]]] = [:]
    /// Profile kind -> the stored profiles' test gain over it, paired user by user (`hit@3_gain`, `hit@3_gain_se`,
    /// `log_likelihood_gain`, `log_likelihood_gain_se`).
    public var timingComparisons: [String: [String: Double]] = [:]
    /// The real-time fold-in on sessions (METRICS.md "Real-time events"): `validation` (NDCG@K per weight, the chosen
    /// one) and `test` (without events, with them at the chosen weight and at 1, paired gains).
    public var realtime: [String: [String: Double]] = [:]
    /// The quality gate's outcome (`--quality-gate`); nil when it was not asked for.
    public var qualityGate: QualityGate.Outcome?
    /// Final training loss per iteration where computed.
    public var losses: [Double] = []
    /// Model file written.
    public var output: String?
    /// Size of the model file written.
    public var outputBytes: Int?

    public init() {}

    /// Pretty, key-sorted JSON.
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = (try? encoder.encode(self)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
