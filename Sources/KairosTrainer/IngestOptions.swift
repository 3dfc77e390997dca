/// How to read an event log: format, column names, how an event's strength is derived, and error policy.
public struct IngestOptions: Sendable, Equatable {
    /// Input format.
    public enum Format: String, Sendable, CaseIterable {
        /// From the file extension (`.jsonl`/`.ndjson` JSON Lines, `.tsv` TSV) or the header (tabs mean TSV).
        case auto
        /// Comma-separated with a header row.
        case csv
        /// Tab-separated with a header row.
        case tsv
        /// One flat JSON object per line.
        case jsonl
    }

    /// Where an event's strength comes from.
    public enum StrengthSource: String, Sendable, CaseIterable {
        /// The event column if present, else the value column if present, else 1.
        case auto
        /// The event type's weight from ``IngestOptions/eventWeights``.
        case event
        /// The numeric value column (e.g. a rating); negative values are bad rows.
        case value
        /// Every event weighs 1.
        case constant
    }

    /// Input format.
    public var format: Format = .auto
    /// User id column (or JSON key).
    public var userColumn: String?
    /// Item id column.
    public var itemColumn: String?
    /// Timestamp column: unix seconds (milliseconds from 10^11 on) or ISO-8601.
    public var timeColumn: String?
    /// Event-type column.
    public var eventColumn: String?
    /// Numeric value column.
    public var valueColumn: String?
    /// Event type -> strength; types not listed make a row bad.
    public var eventWeights: [String: Float] = IngestOptions.defaultEventWeights
    /// Where strengths come from.
    public var strength: StrengthSource = .auto
    /// Fail on the first bad row instead of counting it.
    public var strict = false
    /// How many bad rows are described in the report.
    public var reportedBadRows = 5
    /// Rows stamped later than this (unix seconds) are bad rows; nil: no limit. The newest event is the decay
    /// reference, so one row from a wrong clock (year 2100, say) would otherwise decay every real event to nothing.
    public var latestTime: Int64?

    /// The largest strength a row (value or event weight) may have: 10^9 events of it still sum to a finite float32
    /// (popularity and confidences are float sums), where one absurd value (3e38) made an item's popularity infinite.
    public static let largestStrength: Float = 1e9

    /// View 1, click 2, add-to-cart 4, purchase 8 (DOMAIN.md), with common spellings.
    public static let defaultEventWeights: [String: Float] = [
        "view": 1, "click": 2, "cart": 4, "add_to_cart": 4, "addtocart": 4, "add-to-cart": 4, "purchase": 8,
        "buy": 8, "order": 8, "transaction": 8,
    ]

    /// Names tried, in order, when a column is not given explicitly.
    static let defaultNames: [Role: [String]] = [
        .user: ["user", "user_id", "userid", "visitorid", "customer_id"],
        .item: ["item", "item_id", "itemid", "product_id", "product"],
        .time: ["timestamp", "time", "ts", "event_time", "date"],
        .event: ["event", "event_type", "type", "action"],
        .value: ["value", "rating", "weight", "quantity"],
    ]

    /// A column's meaning.
    enum Role: Int, CaseIterable {
        case user = 0, item, time, event, value
    }

    public init() {}

    /// Parses `view=1,click=2,...` into event weights.
    public static func parseEventWeights(_ text: String) -> [String: Float]? {
        var out: [String: Float] = [:]
        for part in text.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let w = Float(kv[1].trimmingSpaces), w >= 0, w <= largestStrength else { return nil }
            out[String(kv[0].trimmingSpaces).lowercased()] = w
        }
        return out.isEmpty ? nil : out
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return s
    }
}

/// What ingest saw: counts, the first bad rows with line numbers, and duplicates dropped.
public struct IngestReport: Sendable, Equatable {
    /// One described bad row.
    public struct BadRow: Sendable, Equatable, CustomStringConvertible {
        /// 1-based line number in the file (the header is line 1).
        public var line: Int
        /// Why the row was rejected.
        public var reason: String
        public var description: String { "line \(line): \(reason)" }
    }

    /// Data rows read (excluding the header and blank lines).
    public var rows = 0
    /// Rows turned into events.
    public var events = 0
    /// Rows rejected.
    public var badRows = 0
    /// The first few rejected rows.
    public var firstBadRows: [BadRow] = []
    /// Rejected rows per kind of problem (`unknown event type "wishlist"`, `missing user`, ...): the first
    /// ``IngestReport/reportedKinds`` kinds seen, the rest counted under `other`.
    public var badRowKinds: [String: Int] = [:]
    /// Most distinct kinds in ``badRowKinds`` (a log of a thousand event types stays readable).
    public static let reportedKinds = 20
    /// Exact repeats (same user, item, second and strength) dropped.
    public var duplicates = 0
    /// Bytes read.
    public var bytes = 0
    /// Where strengths came from.
    public var strengthSource: IngestOptions.StrengthSource = .auto
}
