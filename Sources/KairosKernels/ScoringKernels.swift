/// Instruction-set level of a kernel implementation, chosen once at run time from the CPU's features.
public enum KernelISA: Int, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    /// Plain C loops, any CPU (the tested fallback).
    case portable = 0
    /// AVX2 + FMA + F16C.
    case avx2 = 1
    /// AVX-512 F/BW/VL (+VNNI where present).
    case avx512 = 2

    public static func < (a: KernelISA, b: KernelISA) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .portable: "portable"
        case .avx2: "avx2"
        case .avx512: "avx512"
        }
    }
}

/// One scored row: a row index and its dot-product score.
public struct ScoredRow: Sendable, Hashable {
    /// Row index in the matrix.
    public var row: Int32
    /// Dot product of the query with the (dequantized) row.
    public var score: Float

    public init(row: Int32, score: Float) {
        self.row = row
        self.score = score
    }
}

/// A set of row indices to leave out of a top-k scan (e.g. items the user already bought).
public struct ExclusionSet: Sendable {
    /// Sorted, de-duplicated rows.
    public let sortedRows: [Int32]

    public init(_ rows: some Sequence<Int32>) {
        sortedRows = Array(Set(rows)).sorted()
    }

    /// Whether `row` is excluded (binary search; called only for rows that beat the current top-k threshold).
    @inlinable
    public func contains(_ row: Int32) -> Bool {
        var lo = 0
        var hi = sortedRows.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if sortedRows[mid] < row { lo = mid + 1 } else { hi = mid }
        }
        return lo < sortedRows.count && sortedRows[lo] == row
    }
}

/// Dot-product kernels over a ``MatrixView``: one row, a gathered list of rows, or a full scan with a running top-k.
public struct ScoringKernels: Sendable {
    /// Largest k accepted by ``topK(query:in:k:excluding:)``.
    public static let maxK = 1000

    /// The instruction-set level these kernels run at.
    public let isa: KernelISA

    /// The fastest kernels this CPU supports (detected once).
    public static let best = ScoringKernels(uncheckedISA: .portable)

    /// ISA levels this CPU supports, lowest first.
    public static let supportedISAs: [KernelISA] = [.portable]

    /// Kernels at `isa`, or nil when the CPU does not support it.
    public init?(isa: KernelISA) {
        guard Self.supportedISAs.contains(isa) else { return nil }
        self.isa = isa
    }

    private init(uncheckedISA: KernelISA) { isa = uncheckedISA }

    /// Dot product of `query` (count == matrix.cols) with row `row` of `matrix` (dequantized for int8).
    public func dot(_ query: UnsafeBufferPointer<Float>, row: Int, of matrix: MatrixView) -> Float {
        // STUB (scalar); to be replaced by the dispatched SIMD implementation.
        precondition(query.count == matrix.cols && row >= 0 && row < matrix.rows)
        let values = RowEncoder.decodeRow(row, of: matrix)
        var s: Float = 0
        for c in 0..<matrix.cols { s += query[c] * values[c] }
        return s
    }

    /// Scores `rows` (each in `0..<matrix.rows`) into `scores` (same count), in order.
    public func gather(
        _ query: UnsafeBufferPointer<Float>,
        rows: UnsafeBufferPointer<Int32>,
        of matrix: MatrixView,
        into scores: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(scores.count >= rows.count)
        for (i, r) in rows.enumerated() { scores[i] = dot(query, row: Int(r), of: matrix) }
    }

    /// The `k` best rows of `matrix` by dot product with `query`, best first (ties: lower row first), skipping
    /// `excluding` and NaN scores.
    public func topK(
        _ query: UnsafeBufferPointer<Float>,
        of matrix: MatrixView,
        k: Int,
        excluding: ExclusionSet? = nil
    ) -> [ScoredRow] {
        precondition(k >= 0 && k <= Self.maxK)
        var all: [ScoredRow] = []
        for r in 0..<matrix.rows {
            if let excluding, excluding.contains(Int32(r)) { continue }
            let s = dot(query, row: r, of: matrix)
            if s.isNaN { continue }
            all.append(ScoredRow(row: Int32(r), score: s))
        }
        all.sort { $0.score != $1.score ? $0.score > $1.score : $0.row < $1.row }
        return Array(all.prefix(k))
    }
}
