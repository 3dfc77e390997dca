public import KairosKernels
public import KairosModelFormat

#if canImport(Glibc)
import Glibc
#endif

/// One loaded model plus what scoring derives from it once at load time; immutable, shared by all requests.
///
/// Requests hold a reference for their whole duration, so a swapped-out model stays mapped until the last request
/// computed on it finishes (ARC is the reclamation scheme).
public final class ModelSnapshot: Sendable {
    /// The verified, mapped model file.
    public let model: MappedModel
    /// Unix seconds this snapshot started serving.
    public let loadedAt: Int64
    /// Decayed popularity divided by the largest one (0...1), per item; zeros without popularity.
    public let trend: [Float]
    /// Item rows ordered by decayed popularity, best first (the fallback ranking).
    public let trendingOrder: [Int32]
    /// Item bias per item (zeros when the model has none).
    public let biases: [Float]
    /// Euclidean norm of each item's (dequantized) factors, for cosine similarity.
    public let itemNorms: [Float]
    /// Typical (average) user vector norm: the scale a cold-start user's event-built vector is normalised to.
    public let typicalUserNorm: Float
    /// Category name -> id.
    public let categoryIDs: [String: UInt32]
    /// Every item row, 0..<n, for full scans through the gather kernel.
    public let allRows: [Int32]
    /// Per-item additive terms of the default blend: bias + default trending weight x trend.
    public let defaultOffsets: [Float]
    /// Default blend weights stored by the trainer (metadata parameters `blend.trending`, `blend.buyAgain`).
    public let defaultTrendingWeight: Float
    public let defaultBuyAgainWeight: Float
    /// The kernels used for this snapshot.
    public let kernels: ScoringKernels

    /// Name of the model.
    public var name: String { model.header.modelName }
    /// Version of the model.
    public var version: UInt64 { model.header.modelVersion }

    /// Derives the scoring tables of `model` (call off the event loop: it touches every row).
    public init(model: MappedModel, loadedAt: Int64, kernels: ScoringKernels = .best) {
        self.model = model
        self.loadedAt = loadedAt
        self.kernels = kernels
        let n = model.itemCount
        var trend = [Float](repeating: 0, count: n)
        if let p = model.popularity {
            var top: Float = 0
            for i in 0..<n { top = max(top, p.decayed(i)) }
            if top > 0 { for i in 0..<n { trend[i] = max(0, p.decayed(i) / top) } }
        }
        self.trend = trend
        trendingOrder = (0..<Int32(n)).sorted { trend[Int($0)] != trend[Int($1)] ? trend[Int($0)] > trend[Int($1)] : $0 < $1 }
        let biases = model.itemBiases.map(Array.init) ?? [Float](repeating: 0, count: n)
        self.biases = biases
        var norms = [Float](repeating: 0, count: n)
        for i in 0..<n {
            let row = RowEncoder.decodeRow(i, of: model.itemFactors)
            norms[i] = row.withUnsafeBufferPointer { kernels.dot($0, row: i, of: model.itemFactors) }.squareRoot()
        }
        itemNorms = norms
        if let users = model.userFactors, users.rows > 0 {
            // Average norm over an even sample of at most 10k users.
            let sample = min(users.rows, 10_000)
            var total = 0.0
            for u in 0..<sample { total += Double(Self.norm(RowEncoder.decodeRow(u * (users.rows / sample), of: users))) }
            typicalUserNorm = Float(total / Double(sample))
        } else {
            typicalUserNorm = 1
        }
        var ids: [String: UInt32] = [:]
        if let names = model.categoryNames { for c in 0..<names.count { ids[names[c]] = UInt32(c) } }
        categoryIDs = ids
        allRows = Array(0..<Int32(n))
        let wTrend = Float(model.metadata.parameters["blend.trending"] ?? 0)
        defaultTrendingWeight = wTrend
        defaultBuyAgainWeight = Float(model.metadata.parameters["blend.buyAgain"] ?? 0)
        defaultOffsets = (0..<n).map { biases[$0] + wTrend * trend[$0] }
    }

    static func norm(_ v: [Float]) -> Float {
        var s: Float = 0
        for x in v { s += x * x }
        return s.squareRoot()
    }
}
