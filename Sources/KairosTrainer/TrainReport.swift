internal import FoundationEssentials

/// Everything a training run measured; encodes as the `--metrics-json` document (schema in proto-spec/METRICS.md).
public struct TrainReport: Sendable, Codable {
    /// Input statistics.
    public struct DataStats: Sendable, Codable {
        public var rows = 0
        public var events = 0
        public var users = 0
        public var items = 0
        public var badRows = 0
        public var duplicates = 0
        public var firstEventTime: Int64 = 0
        public var lastEventTime: Int64 = 0
    }

    /// The temporal splits.
    public struct Split: Sendable, Codable {
        public var holdout = 0.0
        public var testStartTime: Int64?
        public var trainEvents = 0
        public var testEvents = 0
        public var validationStartTime: Int64?
        /// protocol -> users evaluated on test.
        public var testUsers: [String: Int] = [:]
        /// protocol -> users evaluated on validation.
        public var validationUsers: [String: Int] = [:]
    }

    /// Schema tag.
    public var schema = "kairos-train-metrics/1"
    public var data = DataStats()
    public var split = Split()
    /// Seconds of the final factorization (the number compared with other ALS libraries).
    public var fitSeconds = 0.0
    /// Seconds per phase (`ingest`, `validation`, `test`, `fit`, `signals`, `write`, `total`).
    public var timings: [String: Double] = [:]
    /// Ingest speed, events per second.
    public var ingestEventsPerSecond = 0.0
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
    /// Final training loss per iteration where computed.
    public var losses: [Double] = []
    /// Model file written, and its size.
    public var output: String?
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
