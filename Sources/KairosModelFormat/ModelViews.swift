/// Per-item popularity read in place: `(allTime, decayed)` float32 pairs.
public struct PopularityView: @unchecked Sendable {
    /// Number of items.
    public let count: Int
    /// Unix seconds the decayed values were computed at.
    public let referenceTime: Int64
    let pairs: UnsafePointer<Float>

    /// All-time popularity of item `i`.
    public func allTime(_ i: Int) -> Float { precondition(i >= 0 && i < count); return pairs[2 * i] }
    /// Decayed ("trending") popularity of item `i` as of ``referenceTime``.
    public func decayed(_ i: Int) -> Float { precondition(i >= 0 && i < count); return pairs[2 * i + 1] }
}

/// Per-item first-seen times read in place: `i64` unix seconds per item, `Int64.min` for never.
public struct FirstSeenView: @unchecked Sendable {
    /// Number of items.
    public let count: Int
    /// Unix seconds freshness is measured at (the section's param).
    public let referenceTime: Int64
    let times: UnsafeRawPointer

    /// Unix seconds of item `i`'s first event, nil if never seen.
    public func time(_ i: Int) -> Int64? {
        precondition(i >= 0 && i < count)
        let t = Int64(littleEndian: times.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
        return t == ItemFirstSeen.never ? nil : t
    }

    /// Every item's freshness as of ``referenceTime`` (``ItemFirstSeen/freshness(firstSeen:reference:halfLifeDays:)``).
    public func freshness(halfLifeDays: Double) -> [Float] {
        (0..<count).map { ItemFirstSeen.freshness(firstSeen: time($0), reference: referenceTime, halfLifeDays: halfLifeDays) }
    }
}

/// Per-item attributes read in place: `u32 category, u32 brand, f32 price` per item.
public struct AttributesView: @unchecked Sendable {
    /// Number of items.
    public let count: Int
    let records: UnsafeRawPointer

    /// Category id of item `i`, nil if none.
    public func category(_ i: Int) -> UInt32? { field(i, 0) }
    /// Brand id of item `i`, nil if none.
    public func brand(_ i: Int) -> UInt32? { field(i, 4) }
    /// Price of item `i`, nil if unknown.
    public func price(_ i: Int) -> Float? {
        precondition(i >= 0 && i < count)
        let v = Float(bitPattern: UInt32(littleEndian: records.load(fromByteOffset: i * 12 + 8, as: UInt32.self)))
        return v.isNaN ? nil : v
    }

    private func field(_ i: Int, _ offset: Int) -> UInt32? {
        precondition(i >= 0 && i < count)
        let v = UInt32(littleEndian: records.load(fromByteOffset: i * 12 + offset, as: UInt32.self))
        return v == ItemAttributes.none ? nil : v
    }
}

/// Per-user history in CSR layout: `u64 indptr[users + 1]`, `u32 items[nnz]`, `f32 weights[nnz]`.
public struct HistoryView: @unchecked Sendable {
    /// Number of users.
    public let users: Int
    /// Total entries.
    public let entryCount: Int
    /// Unix seconds the weights were computed at.
    public let referenceTime: Int64
    let indptr: UnsafePointer<UInt64>
    let items: UnsafePointer<UInt32>
    let weights: UnsafePointer<Float>

    /// Items (rows) and decayed weights of `user`, heaviest first.
    public func entries(ofUser user: Int) -> (items: UnsafeBufferPointer<UInt32>, weights: UnsafeBufferPointer<Float>) {
        precondition(user >= 0 && user < users)
        let start = Int(indptr[user])
        let n = Int(indptr[user + 1]) - start
        return (UnsafeBufferPointer(start: items + start, count: n), UnsafeBufferPointer(start: weights + start, count: n))
    }
}

/// Hour-of-week activity profiles: 168 unorm8 values per user, then one population row.
public struct ActivityView: @unchecked Sendable {
    /// Number of users (the population row is extra).
    public let users: Int
    let values: UnsafePointer<UInt8>

    /// The 168-bucket profile of `user` (bucket 0 = Monday 00:00-01:00 UTC).
    public func profile(ofUser user: Int) -> UnsafeBufferPointer<UInt8> {
        precondition(user >= 0 && user < users)
        return UnsafeBufferPointer(start: values + user * ActivityProfiles.buckets, count: ActivityProfiles.buckets)
    }

    /// The whole population's profile, for users without one.
    public var population: UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: values + users * ActivityProfiles.buckets, count: ActivityProfiles.buckets)
    }
}
