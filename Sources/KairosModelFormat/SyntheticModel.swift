public import KairosKernels

#if canImport(Glibc)
import Glibc
#endif

/// A deterministic generator of random (untrained) models of any size: benchmark models and test fixtures.
///
/// NOT a trained model: items cluster around category centroids, users prefer a few categories, popularity is
/// Zipf-like and activity peaks in each user's evening. `kairos train` replaces it with the real thing.
public enum SyntheticModel {
    /// Generator text stored in the metadata of every synthetic model, so nobody mistakes one for a trained model.
    public static let generatorLabel = "kairos synthetic placeholder generator (NOT trained; replace with `kairos train`)"

    /// Builds deterministic model contents from `seed`.
    public static func make(
        name: String = "default",
        version: UInt64 = 1,
        items: Int,
        users: Int,
        dimensions: Int,
        categories: Int = 8,
        encoding: RowEncoding = .float32,
        seed: UInt64 = 42,
        createdAt: Int64 = 1_767_225_600  // 2026-01-01T00:00:00Z: fixed so the file is byte-for-byte reproducible.
    ) -> ModelContents {
        var rng = SplitMix64(seed: seed)
        let categories = max(1, categories)
        let centroids = (0..<(categories * dimensions)).map { _ in rng.normal() * 0.3 }
        var itemCategory: [UInt32] = []
        var itemValues: [Float] = []
        itemValues.reserveCapacity(items * dimensions)
        for _ in 0..<items {
            let c = Int(rng.next() % UInt64(categories))
            itemCategory.append(UInt32(c))
            for d in 0..<dimensions { itemValues.append(centroids[c * dimensions + d] + rng.normal() * 0.1) }
        }
        var userValues: [Float] = []
        userValues.reserveCapacity(users * dimensions)
        var favourite: [Int] = []
        for _ in 0..<users {
            let c = Int(rng.next() % UInt64(categories))
            favourite.append(c)
            for d in 0..<dimensions { userValues.append(centroids[c * dimensions + d] * 1.5 + rng.normal() * 0.1) }
        }
        let itemIds = (0..<items).map { "item-\($0)" }
        let userIds = (0..<users).map { "user-\($0)" }
        let referenceTime = createdAt - 3600
        let allTime = (0..<items).map { 1000 / Float($0 % 97 + 1) + Float(rng.next() % 10) }
        let decayed = allTime.map { $0 * (0.2 + Float(rng.uniform())) }

        // History: each user's few items from their favourite category, heaviest first.
        var indptr: [UInt64] = [0]
        var historyItems: [UInt32] = []
        var weights: [Float] = []
        for u in 0..<users {
            let n = items == 0 ? 0 : Int(rng.next() % 6)
            var picked: [(UInt32, Float)] = []
            for _ in 0..<n {
                let i = UInt32(rng.next() % UInt64(items))
                if itemCategory[Int(i)] == UInt32(favourite[u]) || rng.uniform() < 0.3, !picked.contains(where: { $0.0 == i }) {
                    picked.append((i, Float(rng.uniform()) * 8 + 0.1))
                }
            }
            picked.sort { $0.1 > $1.1 }
            historyItems += picked.map(\.0)
            weights += picked.map(\.1)
            indptr.append(UInt64(historyItems.count))
        }

        // Activity: one evening peak per user (hour 17-22 local in a random zone), weekends a little busier.
        var activity: [UInt8] = []
        var population = [Double](repeating: 0, count: ActivityProfiles.buckets)
        for _ in 0..<users {
            let peak = 17 + Int(rng.next() % 6) - Int(rng.next() % 4)
            var row = [Double](repeating: 0, count: ActivityProfiles.buckets)
            for b in 0..<ActivityProfiles.buckets {
                let hour = b % 24
                let day = b / 24
                let distance = Double(min(abs(hour - peak), 24 - abs(hour - peak)))
                row[b] = exp(-distance * distance / 8) * (day >= 5 ? 1.3 : 1.0) + 0.02
                population[b] += row[b]
            }
            activity += unorm8(row)
        }
        activity += unorm8(population)

        let metadata = ModelMetadata(
            generator: generatorLabel,
            description: "Synthetic placeholder so that `kairos` works out of the box; its scores mean nothing.",
            algorithm: "synthetic",
            parameters: ["factors": Double(dimensions), "seed": Double(seed), "categories": Double(categories)],
            decay: DecaySpec(form: .exponential, halfLifeSeconds: 7 * 86_400),
            dataSpan: DataSpan(firstEventTime: referenceTime - 90 * 86_400, lastEventTime: referenceTime, events: 0, users: users, items: items),
            evaluation: [:]
        )
        return ModelContents(
            name: name,
            version: version,
            createdAt: createdAt,
            metadata: metadata,
            itemIds: itemIds,
            itemFactors: FactorMatrix(rows: items, cols: dimensions, values: itemValues, encoding: encoding),
            userIds: userIds,
            userFactors: FactorMatrix(rows: users, cols: dimensions, values: userValues, encoding: encoding),
            itemBiases: (0..<items).map { _ in Float(rng.normal() * 0.05) },
            popularity: ItemPopularity(allTime: allTime, decayed: decayed, referenceTime: referenceTime),
            attributes: ItemAttributes(
                category: itemCategory,
                brand: (0..<items).map { _ in rng.uniform() < 0.1 ? ItemAttributes.none : UInt32(rng.next() % 5) },
                price: (0..<items).map { _ in rng.uniform() < 0.1 ? Float.nan : Float(Int(rng.uniform() * 10_000)) / 100 },
                categoryNames: (0..<categories).map { "category-\($0)" },
                brandNames: (0..<5).map { "brand-\($0)" }
            ),
            // First-seen times spread over the 90 days (not drawn from `rng`, so every other section stays as it was).
            firstSeen: ItemFirstSeen(
                times: (0..<items).map { referenceTime - Int64(($0 &* 2_654_435_761) % (90 * 86_400)) },
                referenceTime: referenceTime
            ),
            history: UserHistory(indptr: indptr, items: historyItems, weights: weights, referenceTime: referenceTime),
            activity: ActivityProfiles(values: activity)
        )
    }

    static func unorm8(_ row: [Double]) -> [UInt8] {
        let top = row.max() ?? 0
        return row.map { top > 0 ? UInt8(($0 / top * 255).rounded()) : 0 }
    }
}

/// SplitMix64: a tiny, fast, seedable generator (deterministic across platforms).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64

    /// Creates a generator from `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Standard normal (Box-Muller), as Float.
    public mutating func normal() -> Float {
        let u = max(uniform(), 1e-300)
        return Float((-2 * log(u)).squareRoot() * cos(2 * Double.pi * uniform()))
    }
}
