public import KairosKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A dense float32 matrix to be written with a chosen row encoding.
public struct FactorMatrix: Sendable {
    /// Number of rows.
    public var rows: Int
    /// Number of columns (a multiple of 4, at most 1024).
    public var cols: Int
    /// Row-major values, `rows * cols` of them.
    public var values: [Float]
    /// How the rows are stored in the file.
    public var encoding: RowEncoding

    public init(rows: Int, cols: Int, values: [Float], encoding: RowEncoding = .float32) {
        self.rows = rows
        self.cols = cols
        self.values = values
        self.encoding = encoding
    }
}

/// When each item was first seen (its first event), for freshness ("new arrival") scoring.
public struct ItemFirstSeen: Sendable, Equatable {
    /// Marks an item never seen.
    public static let never = Int64.min
    /// Unix seconds of each item's first event, or ``never``.
    public var times: [Int64]
    /// Unix seconds freshness is measured at (the newest event of the log).
    public var referenceTime: Int64

    public init(times: [Int64], referenceTime: Int64) {
        self.times = times
        self.referenceTime = referenceTime
    }

    /// Freshness of an item first seen at `time`, as of `reference`: `0.5^(age / half-life)`, 1 for an item first
    /// seen at or after `reference`, 0 for one never seen or without a half-life. The trainer and the server share
    /// this definition (`proto-spec/MODEL_FORMAT.md`, `scoring`).
    public static func freshness(firstSeen time: Int64?, reference: Int64, halfLifeDays: Double) -> Float {
        guard let time, time != never, halfLifeDays > 0, halfLifeDays.isFinite else { return 0 }
        let ageDays = max(0, Double(reference) - Double(time)) / 86_400
        return Float(exp2(-ageDays / halfLifeDays))
    }

    /// Every item's freshness as of ``referenceTime``.
    public func freshness(halfLifeDays: Double) -> [Float] {
        times.map { Self.freshness(firstSeen: $0, reference: referenceTime, halfLifeDays: halfLifeDays) }
    }
}

/// Item popularity: all-time and time-decayed ("trending") counts.
public struct ItemPopularity: Sendable {
    /// All-time strength-weighted counts, one per item.
    public var allTime: [Float]
    /// Decayed counts, one per item, as of ``referenceTime``.
    public var decayed: [Float]
    /// Unix seconds the decayed counts were computed at.
    public var referenceTime: Int64

    public init(allTime: [Float], decayed: [Float], referenceTime: Int64) {
        self.allTime = allTime
        self.decayed = decayed
        self.referenceTime = referenceTime
    }
}

/// Item attributes; ``ItemAttributes/none`` marks a missing category or brand, NaN a missing price.
public struct ItemAttributes: Sendable {
    /// Marker for "no category / no brand".
    public static let none = UInt32.max
    /// Category id per item (index into ``categoryNames``).
    public var category: [UInt32]
    /// Brand id per item (index into ``brandNames``).
    public var brand: [UInt32]
    /// Price per item.
    public var price: [Float]
    /// Category names; category id = index.
    public var categoryNames: [String]
    /// Brand names; brand id = index.
    public var brandNames: [String]

    public init(category: [UInt32], brand: [UInt32], price: [Float], categoryNames: [String], brandNames: [String]) {
        self.category = category
        self.brand = brand
        self.price = price
        self.categoryNames = categoryNames
        self.brandNames = brandNames
    }
}

/// Each user's recent items with decayed weights, in CSR layout, heaviest first within a user.
public struct UserHistory: Sendable {
    /// `users + 1` offsets into ``items``/``weights``.
    public var indptr: [UInt64]
    /// Item rows.
    public var items: [UInt32]
    /// Decayed weights as of ``referenceTime``.
    public var weights: [Float]
    /// Unix seconds the weights were computed at.
    public var referenceTime: Int64

    public init(indptr: [UInt64], items: [UInt32], weights: [Float], referenceTime: Int64) {
        self.indptr = indptr
        self.items = items
        self.weights = weights
        self.referenceTime = referenceTime
    }
}

/// Hour-of-week activity profiles: one row of 168 values per user plus a last row for the whole population.
public struct ActivityProfiles: Sendable {
    /// Buckets per profile (hour of week, Monday 00:00 UTC = bucket 0).
    public static let buckets = 168
    /// `(users + 1) * 168` values, each row scaled so its maximum is 255 (all-zero rows allowed).
    public var values: [UInt8]

    public init(values: [UInt8]) { self.values = values }
}

/// One (user, item, expected score) triple a loader re-scores to prove train/serve parity.
public struct GoldenTriple: Sendable, Hashable {
    /// User row.
    public var user: UInt32
    /// Item row.
    public var item: UInt32
    /// Score the trainer computed in float precision: user . item (+ item bias).
    public var score: Float
    /// Allowed absolute difference (quantization error of the stored rows plus summation slack).
    public var tolerance: Float

    public init(user: UInt32, item: UInt32, score: Float, tolerance: Float) {
        self.user = user
        self.item = item
        self.score = score
        self.tolerance = tolerance
    }
}

/// Everything a model file holds, in memory: what the trainer fills and the writer serializes.
public struct ModelContents: Sendable {
    /// Model name, `[A-Za-z0-9._-]{1,48}`.
    public var name: String
    /// Model version, monotonic per name.
    public var version: UInt64
    /// Creation time, unix seconds.
    public var createdAt: Int64
    /// Training metadata.
    public var metadata: ModelMetadata
    /// External item ids, unique; row i of every per-item section is item `itemIds[i]`.
    public var itemIds: [String]
    /// Item factors, `itemIds.count` rows.
    public var itemFactors: FactorMatrix
    /// External user ids, unique (empty if there are no user sections).
    public var userIds: [String]
    /// User factors, `userIds.count` rows, same cols as the item factors.
    public var userFactors: FactorMatrix?
    /// Item biases, one per item, added to the dot product.
    public var itemBiases: [Float]?
    /// Item popularity.
    public var popularity: ItemPopularity?
    /// Item attributes.
    public var attributes: ItemAttributes?
    /// When each item was first seen (format 1.1).
    public var firstSeen: ItemFirstSeen?
    /// Per-user history.
    public var history: UserHistory?
    /// Per-user activity profiles.
    public var activity: ActivityProfiles?
    /// How many golden triples the writer derives from the float factors (0 for none).
    public var goldenCount: Int

    public init(
        name: String,
        version: UInt64,
        createdAt: Int64,
        metadata: ModelMetadata,
        itemIds: [String],
        itemFactors: FactorMatrix,
        userIds: [String] = [],
        userFactors: FactorMatrix? = nil,
        itemBiases: [Float]? = nil,
        popularity: ItemPopularity? = nil,
        attributes: ItemAttributes? = nil,
        firstSeen: ItemFirstSeen? = nil,
        history: UserHistory? = nil,
        activity: ActivityProfiles? = nil,
        goldenCount: Int = 16
    ) {
        self.name = name
        self.version = version
        self.createdAt = createdAt
        self.metadata = metadata
        self.itemIds = itemIds
        self.itemFactors = itemFactors
        self.userIds = userIds
        self.userFactors = userFactors
        self.itemBiases = itemBiases
        self.popularity = popularity
        self.attributes = attributes
        self.firstSeen = firstSeen
        self.history = history
        self.activity = activity
        self.goldenCount = goldenCount
    }
}
