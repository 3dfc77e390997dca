import CKairosKernels
#if canImport(Glibc)
import Glibc
#endif

/// Instruction-set level of a kernel implementation, chosen once at run time from the CPU's features.
public enum KernelISA: Int, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    /// Plain C loops, any CPU (the tested fallback).
    case portable = 0
    /// AVX2 + FMA + F16C.
    case avx2 = 1
    /// AVX-512 F/BW/VL (+ FMA, F16C).
    case avx512 = 2

    /// Orders levels by capability (portable < avx2 < avx512).
    public static func < (a: KernelISA, b: KernelISA) -> Bool { a.rawValue < b.rawValue }

    /// The level's name as used in logs and test output.
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

    /// Creates a scored row.
    public init(row: Int32, score: Float) {
        self.row = row
        self.score = score
    }
}

/// A set of row indices to leave out of a top-k scan (e.g. items the user already bought).
public struct ExclusionSet: Sendable {
    /// Sorted, de-duplicated rows.
    public let sortedRows: [Int32]

    /// Builds the set from any rows (duplicates and order do not matter).
    public init(_ rows: some Sequence<Int32>) {
        var sorted = Array(rows)
        sorted.sort()
        // Drop adjacent duplicates in place.
        var kept = 0
        for i in sorted.indices where kept == 0 || sorted[kept - 1] != sorted[i] {
            sorted[kept] = sorted[i]
            kept += 1
        }
        sorted.removeLast(sorted.count - kept)
        sortedRows = sorted
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
///
/// Each value holds the C function table of one ISA level, so several levels can be used side by side in one
/// process (there is no global "current ISA").
public struct ScoringKernels: Sendable {
    /// Largest k accepted by ``topK(_:of:k:excluding:)``.
    public static let maxK = 1000

    /// Rows scored per C call in ``topK(_:of:k:excluding:)``: the score block (4 KB) stays in L1 while the
    /// threshold filter runs over it, and the per-call overhead is amortized.
    public static let scanBlockRows = 1024

    /// The instruction-set level these kernels run at.
    public let isa: KernelISA

    /// The C function table for `isa` (immutable static data, hence safe to share across threads).
    nonisolated(unsafe) private let table: UnsafePointer<ckk_kernel_table>

    /// The fastest kernels this CPU supports (detected once).
    public static let best = ScoringKernels(isa: supportedISAs.last!)!

    /// ISA levels this CPU supports, lowest first.
    public static let supportedISAs: [KernelISA] = {
        let mask = ckk_supported_isa_mask()
        return KernelISA.allCases.filter { mask & (1 << $0.rawValue) != 0 }
    }()

    /// Kernels at `isa`, or nil when the CPU does not support it.
    public init?(isa: KernelISA) {
        guard let table = ckk_table(Int32(isa.rawValue)) else { return nil }
        self.isa = isa
        self.table = table
    }

    @inline(__always)
    private func dotKernel(_ encoding: RowEncoding) -> ckk_dot_fn {
        switch encoding {
        case .float32: table.pointee.dot.1!
        case .float16: table.pointee.dot.2!
        case .int8: table.pointee.dot.3!
        }
    }

    @inline(__always)
    private func scanKernel(_ encoding: RowEncoding) -> ckk_scan_fn {
        switch encoding {
        case .float32: table.pointee.scan.1!
        case .float16: table.pointee.scan.2!
        case .int8: table.pointee.scan.3!
        }
    }

    @inline(__always)
    private func gatherKernel(_ encoding: RowEncoding) -> ckk_gather_fn {
        switch encoding {
        case .float32: table.pointee.gather.1!
        case .float16: table.pointee.gather.2!
        case .int8: table.pointee.gather.3!
        }
    }

    /// Dot product of `query` (count == matrix.cols) with row `row` of `matrix` (dequantized for int8).
    public func dot(_ query: UnsafeBufferPointer<Float>, row: Int, of matrix: MatrixView) -> Float {
        precondition(query.count == matrix.cols && row >= 0 && row < matrix.rows)
        let scale = matrix.scales.map { $0[row] } ?? 1
        return dotKernel(matrix.encoding)(query.baseAddress!, matrix.rowPointer(row), scale, Int32(matrix.cols))
    }

    /// Every row's dot product with `query`, into `scores` (one per row): the values ``topK(_:of:k:excluding:)``
    /// ranks, bit for bit the same as ``dot(_:row:of:)`` gives row by row.
    public func scores(
        _ query: UnsafeBufferPointer<Float>,
        of matrix: MatrixView,
        into scores: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(query.count == matrix.cols && scores.count >= matrix.rows)
        guard matrix.rows > 0 else { return }
        scanKernel(matrix.encoding)(
            query.baseAddress!, matrix.base, matrix.rowStride, matrix.scales, 0, matrix.rows, Int32(matrix.cols),
            scores.baseAddress!
        )
    }

    /// Bytes of rows the multi-query scan scores for every query before moving on: small enough to stay in L1
    /// across the queries.
    static let multiQueryBlockBytes = 8 << 10

    /// Every row's dot product with each of `queries`, into the matching buffer of `scores`: bit for bit what
    /// ``scores(_:of:into:)`` gives each query alone, but each block of rows is read from memory once for all of
    /// them. A catalogue larger than the cache is otherwise streamed once per query (measured: 8 queries at a time
    /// scan a 50k x 64 float32 matrix about 3x faster per query).
    public func scores(
        _ queries: [UnsafeBufferPointer<Float>],
        of matrix: MatrixView,
        into scores: [UnsafeMutableBufferPointer<Float>]
    ) {
        precondition(queries.count == scores.count)
        for (q, s) in zip(queries, scores) { precondition(q.count == matrix.cols && s.count >= matrix.rows) }
        guard matrix.rows > 0, !queries.isEmpty else { return }
        let scan = scanKernel(matrix.encoding)
        // A multiple of 4 rows: the kernels score rows four at a time, and each row's bits do not depend on where
        // its block starts (the single-row tail adds in the same order).
        let block = max(4, Self.multiQueryBlockBytes / max(matrix.rowStride, 1)) & ~3
        var start = 0
        while start < matrix.rows {
            let n = min(block, matrix.rows - start)
            for (q, s) in zip(queries, scores) {
                scan(
                    q.baseAddress!, matrix.base, matrix.rowStride, matrix.scales, start, n, Int32(matrix.cols),
                    s.baseAddress! + start
                )
            }
            start += n
        }
    }

    /// Asks the CPU to fetch `values[row]` for each of `rows` into cache ahead of use (rows out of range are skipped).
    public static func prefetch(_ values: UnsafeBufferPointer<Float>, at rows: UnsafeBufferPointer<Int32>) {
        guard let base = values.baseAddress else { return }
        for r in rows where r >= 0 && Int(r) < values.count { ckk_prefetch(base + Int(r)) }
    }

    /// Scores `rows` (each in `0..<matrix.rows`) into `scores` (same count), in order.
    public func gather(
        _ query: UnsafeBufferPointer<Float>,
        rows: UnsafeBufferPointer<Int32>,
        of matrix: MatrixView,
        into scores: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(query.count == matrix.cols && scores.count >= rows.count)
        guard let rowBase = rows.baseAddress, !rows.isEmpty else { return }
        // An out-of-range index would read arbitrary memory: check them all (cheap next to the cache misses).
        var lo = Int32.max
        var hi = Int32.min
        for r in rows {
            lo = min(lo, r)
            hi = max(hi, r)
        }
        precondition(lo >= 0 && Int(hi) < matrix.rows, "row index out of range")
        gatherKernel(matrix.encoding)(
            query.baseAddress!, matrix.base, matrix.rowStride, matrix.scales, rowBase, rows.count,
            Int32(matrix.cols), scores.baseAddress!
        )
    }

    /// The `k` best rows of `matrix` by dot product with `query`, best first (ties: lower row first), skipping
    /// `excluding` and NaN scores. Fewer than `k` rows come back when the matrix has fewer eligible rows; a query
    /// containing NaN scores every row NaN and so returns `[]`.
    public func topK(
        _ query: UnsafeBufferPointer<Float>,
        of matrix: MatrixView,
        k: Int,
        excluding: ExclusionSet? = nil
    ) -> [ScoredRow] {
        topK(query, of: matrix, k: k, excluding: excluding, adding: nil)
    }

    /// Like ``topK(_:of:k:excluding:)``, ranking by `dot + offsets[row]` (per-row terms such as a bias or a
    /// popularity blend; `-infinity` removes a row). Offsets are added block by block inside the scan, so the blend
    /// costs no extra pass over memory.
    ///
    /// With `bounds` (built for this matrix, on a CPU with AVX-512 VNNI) the scan first bounds every row's score with
    /// integer arithmetic and scores exactly only the rows that could enter the top k: same result, less work.
    public func topK(
        _ query: UnsafeBufferPointer<Float>,
        of matrix: MatrixView,
        k: Int,
        excluding: ExclusionSet?,
        adding offsets: UnsafeBufferPointer<Float>?,
        bounds: ScanBounds? = nil
    ) -> [ScoredRow] {
        precondition(k >= 0 && k <= Self.maxK)
        precondition(query.count == matrix.cols)
        precondition(offsets == nil || offsets!.count >= matrix.rows, "one offset per row")
        guard k > 0, matrix.rows > 0 else { return [] }
        precondition(bounds == nil || bounds!.fits(matrix), "bounds of another matrix")
        return blockTopK(
            query.baseAddress!, of: matrix, k: k, excluding: excluding, add: offsets?.baseAddress,
            bounds: bounds.map { ($0, $0.rowScale, $0.rowError) }, kernelThreshold: { $0 }, finish: nil
        )
    }

    /// The scan behind ``topK(_:of:k:excluding:adding:bounds:)`` and ``topKCosine(_:of:k:norms:queryNorm:excluding:mask:bounds:)``:
    /// each block's dot products plus `add`, then `finish` on the block, kept in a top-k heap. With `bounds` (codes,
    /// and the row scales and errors to bound with) and once the heap is full, a block is bounded against
    /// `kernelThreshold(k-th best)` and only the rows above it are computed exactly (the rest come back -infinity); a
    /// nil threshold, or a query the quantizer declines, scores the block exactly.
    private func blockTopK(
        _ q: UnsafePointer<Float>,
        of matrix: MatrixView,
        k: Int,
        excluding: ExclusionSet?,
        add: UnsafePointer<Float>?,
        bounds: (codes: ScanBounds, rowScale: UnsafeMutablePointer<Float>, rowError: UnsafeMutablePointer<Float>)?,
        kernelThreshold: (Float) -> Float?,
        finish: ((Int, Int, UnsafeMutablePointer<Float>) -> Void)?
    ) -> [ScoredRow] {
        let scan = scanKernel(matrix.encoding)
        func exact(_ start: Int, _ n: Int, _ out: UnsafeMutablePointer<Float>) {
            scan(q, matrix.base, matrix.rowStride, matrix.scales, start, n, Int32(matrix.cols), out)
            if let add { for i in 0..<n { out[i] += add[start &+ i] } }
        }
        guard let bounds, let bounded = ckk_scan_bounded(Int32(isa.rawValue)) else {
            return scanTopK(rows: matrix.rows, k: k, excluding: excluding) { start, n, _, out in
                exact(start, n, out)
                finish?(start, n, out)
            }
        }
        let b = bounds.codes
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: matrix.cols) { qq in
            var slack: Float = 0
            var qL1: Float = 0
            let qs = ckk_quantize_query_u8(q, Int32(matrix.cols), qq.baseAddress!, &slack, &qL1)
            return scanTopK(rows: matrix.rows, k: k, excluding: excluding) { start, n, threshold, out in
                if qs > 0 && threshold > -.infinity, let limit = kernelThreshold(threshold) {
                    bounded(q, qq.baseAddress!, qs, slack, qL1, b.blocked, b.corr, b.l1, bounds.rowScale,
                            bounds.rowError, Int32(matrix.encoding.rawValue), matrix.base, matrix.rowStride,
                            matrix.scales, add, start, n, Int32(matrix.cols), limit, out)
                } else {  // filling the heap (every row counts) or a query the quantizer declined
                    exact(start, n, out)
                }
                finish?(start, n, out)
            }
        }
    }

    /// The `k` best rows of `matrix` by cosine similarity with `query` (`dot / (queryNorm * norms[row])`), best first
    /// (ties: lower row first), skipping `excluding` and the rows `mask` sets to -infinity (0 keeps a row; no other
    /// value is meaningful). A row whose cosine is not finite or whose norm is not positive is left out, as
    /// ``cosines`` does.
    ///
    /// With `bounds` (built for this matrix and these norms) the scan bounds each row's cosine with integer
    /// arithmetic first and computes exactly only the rows that could enter the top k, never a masked one: the same
    /// rows and scores.
    public func topKCosine(
        _ query: UnsafeBufferPointer<Float>,
        of matrix: MatrixView,
        k: Int,
        norms: UnsafeBufferPointer<Float>,
        queryNorm: Float,
        excluding: ExclusionSet? = nil,
        mask: UnsafeBufferPointer<Float>? = nil,
        bounds: UnitRowBounds? = nil
    ) -> [ScoredRow] {
        precondition(k >= 0 && k <= Self.maxK)
        precondition(query.count == matrix.cols)
        precondition(norms.count >= matrix.rows, "one norm per row")
        precondition(mask == nil || mask!.count >= matrix.rows, "one mask value per row")
        guard k > 0, matrix.rows > 0 else { return [] }
        precondition(bounds == nil || bounds!.rows.fits(matrix), "bounds of another matrix")
        return blockTopK(
            query.baseAddress!, of: matrix, k: k, excluding: excluding, add: mask?.baseAddress,
            bounds: bounds.map { ($0.rows, $0.rowScale, $0.rowError) },
            kernelThreshold: { threshold in
                // The kernel bounds q . (row / norm), which is the cosine times the query's norm. Its threshold is
                // lowered by a relative 1e-5, far above the rounding of the division that makes a cosine, so a row
                // it drops scores strictly below the k-th best as a cosine too.
                let limit = threshold * queryNorm
                let lowered = limit - abs(limit) * 1e-5 - Float.leastNormalMagnitude
                return queryNorm > 0 && lowered.isFinite ? lowered : nil
            },
            finish: { start, n, out in
                // Masked and dropped rows (-infinity) become NaN here, which the scan leaves out.
                Self.cosines(
                    UnsafeMutableBufferPointer(start: out, count: n),
                    norms: UnsafeBufferPointer(rebasing: norms[start..<(start + n)]), queryNorm: queryNorm
                )
            }
        )
    }

    /// ``topK(_:of:k:excluding:adding:bounds:)`` over only `rows` (ascending, each in `0..<matrix.rows`), with
    /// `offsets[j]` added to row `rows[j]`'s dot product: the same answer as an offset of -infinity on every other row
    /// (less the rows at -infinity a scan may fill an unfilled answer with), from gathered rows instead of a scan.
    public func topK(
        _ query: UnsafeBufferPointer<Float>,
        of matrix: MatrixView,
        rows: UnsafeBufferPointer<Int32>,
        k: Int,
        excluding: ExclusionSet?,
        adding offsets: UnsafeBufferPointer<Float>
    ) -> [ScoredRow] {
        precondition(offsets.count >= rows.count, "one offset per row")
        return gatheredTopK(query, of: matrix, rows: rows, k: k, excluding: excluding) { block, start, out in
            for j in 0..<block.count { out[j] += offsets[start + j] }
        }
    }

    /// The gathered top-k: `rows` scored in blocks, `finish(block, start, scores)` applied to each block's dot products,
    /// NaN left out, ties to the earlier (lower) row.
    private func gatheredTopK(
        _ query: UnsafeBufferPointer<Float>,
        of matrix: MatrixView,
        rows: UnsafeBufferPointer<Int32>,
        k: Int,
        excluding: ExclusionSet?,
        finish: (UnsafeBufferPointer<Int32>, Int, UnsafeMutableBufferPointer<Float>) -> Void
    ) -> [ScoredRow] {
        precondition(k >= 0 && k <= Self.maxK)
        precondition(query.count == matrix.cols)
        guard k > 0, !rows.isEmpty else { return [] }
        // Ties are broken by the order rows come in (lower first), as in a scan.
        for i in 1..<rows.count { precondition(rows[i - 1] < rows[i], "rows must ascend") }
        var heap = TopKHeap(capacity: min(k, rows.count))
        let blockRows = Self.scanBlockRows
        withUnsafeTemporaryAllocation(of: Float.self, capacity: blockRows) { buffer in
            var start = 0
            while start < rows.count {
                let n = min(blockRows, rows.count - start)
                let block = UnsafeBufferPointer(rebasing: rows[start..<(start + n)])
                let out = UnsafeMutableBufferPointer(rebasing: buffer[0..<n])
                gather(query, rows: block, of: matrix, into: out)  // checks every row is in range
                finish(block, start, out)
                for j in 0..<n {
                    let score = out[j]
                    if score.isNaN || (heap.isFull && !(score > heap.worstScore)) { continue }
                    if let excluding, excluding.contains(block[j]) { continue }
                    heap.insert(score: score, row: block[j])  // a later row tying the k-th score loses to it
                }
                start += n
            }
        }
        return heap.sortedBestFirst()
    }

    /// ``topKCosine(_:of:k:norms:queryNorm:excluding:mask:bounds:)`` over only `rows` (ascending, each in
    /// `0..<matrix.rows`): the same answer as masking every other row, from gathered rows instead of a scan, which
    /// is faster when `rows` is a small part of the matrix (a category).
    public func topKCosine(
        _ query: UnsafeBufferPointer<Float>,
        of matrix: MatrixView,
        rows: UnsafeBufferPointer<Int32>,
        k: Int,
        norms: UnsafeBufferPointer<Float>,
        queryNorm: Float,
        excluding: ExclusionSet? = nil
    ) -> [ScoredRow] {
        precondition(k >= 0 && k <= Self.maxK)
        precondition(query.count == matrix.cols)
        precondition(norms.count >= matrix.rows, "one norm per row")
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: Self.scanBlockRows) { blockNorms in
            gatheredTopK(query, of: matrix, rows: rows, k: k, excluding: excluding) { block, _, out in
                for j in 0..<block.count { blockNorms[j] = norms[Int(block[j])] }
                Self.cosines(out, norms: UnsafeBufferPointer(rebasing: blockNorms[0..<block.count]), queryNorm: queryNorm)
            }
        }
    }

    /// Turns a block of dot products into cosines in place: `dot / (queryNorm * norms[j])`, or NaN (row left out)
    /// where that product is not positive or the cosine is not finite. `norms` holds the block's own rows.
    public static func cosines(_ block: UnsafeMutableBufferPointer<Float>, norms: UnsafeBufferPointer<Float>, queryNorm: Float) {
        precondition(norms.count >= block.count)
        guard let out = block.baseAddress, let n = norms.baseAddress else { return }
        let count = block.count
        let nan = SIMD16<Float>(repeating: .nan)
        var j = 0
        // 16 lanes at a time: the same division as the scalar tail, so the values are identical.
        while j + 16 <= count {
            let dots = UnsafeRawPointer(out + j).loadUnaligned(as: SIMD16<Float>.self)
            let d = queryNorm * UnsafeRawPointer(n + j).loadUnaligned(as: SIMD16<Float>.self)
            let v = dots / d
            let keep = (d .> 0) .& ((v - v) .== 0)  // v - v is 0 exactly when v is finite
            UnsafeMutableRawPointer(out + j).storeBytes(of: nan.replacing(with: v, where: keep), as: SIMD16<Float>.self)
            j += 16
        }
        while j < count {
            let d = queryNorm * n[j]
            let v = d > 0 ? out[j] / d : .nan
            out[j] = v.isFinite ? v : .nan
            j += 1
        }
    }

    /// Scores all rows block by block with `scoreBlock(start, count, threshold, out)` (a row scored below the
    /// current threshold may come back as -infinity) and keeps the best `k` in a bounded
    /// heap. Once the heap is full, the C filter picks the few scores above the k-th best; only those reach the
    /// slow path (exclusion check, heap update).
    @inline(__always)
    private func scanTopK(
        rows: Int,
        k: Int,
        excluding: ExclusionSet?,
        scoreBlock: (Int, Int, Float, UnsafeMutablePointer<Float>) -> Void
    ) -> [ScoredRow] {
        var heap = TopKHeap(capacity: min(k, rows))
        let filter = table.pointee.filter_gt!
        let blockRows = Self.scanBlockRows
        withUnsafeTemporaryAllocation(of: Float.self, capacity: blockRows) { block in
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: blockRows) { picks in
                let out = block.baseAddress!
                let idx = picks.baseAddress!
                var threshold = -Float.infinity
                var start = 0
                while start < rows {
                    let n = min(blockRows, rows - start)
                    scoreBlock(start, n, heap.isFull ? threshold : -.infinity, out)
                    var i = 0
                    // Filling: every non-NaN score is admitted (even -infinity, which no `>` filter passes).
                    while !heap.isFull && i < n {
                        let s = out[i]
                        let row = Int32(truncatingIfNeeded: start + i)
                        i += 1
                        if s.isNaN { continue }
                        if let excluding, excluding.contains(row) { continue }
                        heap.insert(score: s, row: row)
                        if heap.isFull { threshold = heap.worstScore }
                    }
                    if i < n {
                        let count = filter(out + i, n - i, threshold, idx)
                        for j in 0..<count {
                            let at = i + Int(idx[j])
                            let s = out[at]
                            // The threshold rises as rows are admitted. Strict `>`: a later row tying the k-th
                            // score loses to it (lower row wins ties).
                            guard s > threshold else { continue }
                            let row = Int32(truncatingIfNeeded: start + at)
                            if let excluding, excluding.contains(row) { continue }
                            heap.insert(score: s, row: row)
                            threshold = heap.worstScore
                        }
                    }
                    start += n
                }
            }
        }
        return heap.sortedBestFirst()
    }
}

/// What a bounded scan needs besides the matrix (see `ckk_scan_bounded` in ckairos_kernels.h): an int8 copy of the
/// rows (the rows themselves for int8 matrices, else quantized with a per-row scale and its largest error) laid out
/// in blocks of 16 for VNNI, and a few numbers per row. About 80 bytes per row at 64 columns; built once per model.
public final class ScanBounds: @unchecked Sendable {
    /// Rows and columns of the matrix these bounds were built from.
    public let rows: Int
    public let cols: Int
    /// Encoding of that matrix.
    public let encoding: RowEncoding
    let blocked: UnsafeMutablePointer<Int8>
    let corr: UnsafeMutablePointer<Int32>
    let l1: UnsafeMutablePointer<Int32>
    let rowScale: UnsafeMutablePointer<Float>
    let rowError: UnsafeMutablePointer<Float>
    /// Bytes held.
    public let byteCount: Int

    /// Whether these bounds were built from a matrix of `matrix`'s shape and encoding.
    func fits(_ matrix: MatrixView) -> Bool { rows == matrix.rows && cols == matrix.cols && encoding == matrix.encoding }

    /// Bounds for `matrix`, or nil when this CPU cannot run bounded scans at `kernels`' level (they need AVX-512
    /// VNNI) or a row holds a NaN or infinity.
    public init?(matrix: MatrixView, kernels: ScoringKernels) {
        guard matrix.rows > 0, ckk_scan_bounded(Int32(kernels.isa.rawValue)) != nil else { return nil }
        let rows = matrix.rows, cols = matrix.cols
        let blockedBytes = (rows + 15) / 16 * cols * 16
        // One mapping for everything, returned to the OS by munmap: a server swapping models again and again would
        // otherwise raise malloc's mmap threshold past these sizes and keep their memory in its arena (resident
        // memory grew 105% over 100 swaps in run-reload-soak.py before this).
        let size = blockedBytes + 16 * rows
        guard let region = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            region != MAP_FAILED
        else { return nil }
        let blocked = region.bindMemory(to: Int8.self, capacity: blockedBytes)  // zero pages from the kernel
        let corr = (region + blockedBytes).bindMemory(to: Int32.self, capacity: rows)
        let l1 = (region + blockedBytes + 4 * rows).bindMemory(to: Int32.self, capacity: rows)
        let rowScale = (region + blockedBytes + 8 * rows).bindMemory(to: Float.self, capacity: rows)
        let rowError = (region + blockedBytes + 12 * rows).bindMemory(to: Float.self, capacity: rows)
        func release() { munmap(region, size) }
        if matrix.encoding == .int8 {
            // The rows are their own codes: no error term.
            rowScale.update(from: matrix.scales!, count: rows)
            rowError.update(repeating: 0, count: rows)
            ckk_i8_bound_tables(matrix.base, matrix.rowStride, rows, Int32(cols), blocked, corr, l1)
        } else {
            // Scratch for the codes, also mapped (a freed malloc block this large would raise the mmap threshold).
            guard let scratch = mmap(nil, rows * cols, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                scratch != MAP_FAILED
            else {
                release()
                return nil
            }
            defer { munmap(scratch, rows * cols) }
            let codes = scratch.bindMemory(to: Int8.self, capacity: rows * cols)
            guard ckk_quantize_rows(matrix.base, matrix.rowStride, rows, Int32(cols), Int32(matrix.encoding.rawValue),
                                    codes, rowScale, rowError) == 1 else {
                release()
                return nil  // a NaN or infinity in a row: no bound holds
            }
            ckk_i8_bound_tables(codes, cols, rows, Int32(cols), blocked, corr, l1)
        }
        self.rows = rows
        self.cols = cols
        encoding = matrix.encoding
        self.blocked = blocked
        self.corr = corr
        self.l1 = l1
        self.rowScale = rowScale
        self.rowError = rowError
        self.region = region
        byteCount = size
    }

    private let region: UnsafeMutableRawPointer

    deinit { munmap(region, byteCount) }
}

/// ``ScanBounds`` for the rows divided by their norms, which bound cosine similarities (``ScoringKernels/topKCosine``).
/// A positive factor per row leaves the int8 codes as they are and divides only the row's scale and error, so these
/// share the codes of `rows` and add 8 bytes per row.
public final class UnitRowBounds: @unchecked Sendable {
    /// The bounds of the rows themselves, whose codes these share.
    public let rows: ScanBounds
    let rowScale: UnsafeMutablePointer<Float>
    let rowError: UnsafeMutablePointer<Float>
    /// Bytes held beyond `rows`.
    public let byteCount: Int
    private let region: UnsafeMutableRawPointer

    /// Bounds of `rows`' matrix with row `r` divided by `norms[r]`; nil when the norms do not match or memory cannot
    /// be had. A row whose norm is not positive and finite gets an infinite error: it is always computed exactly (and
    /// then left out, as its cosine is).
    public init?(_ rows: ScanBounds, norms: UnsafeBufferPointer<Float>) {
        guard norms.count == rows.rows, rows.rows > 0 else { return nil }
        let n = rows.rows
        let size = 8 * n
        // Mapped, not malloc'd, for the reason ScanBounds gives.
        guard let region = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            region != MAP_FAILED
        else { return nil }
        let scale = region.bindMemory(to: Float.self, capacity: 2 * n)
        let error = scale + n
        for r in 0..<n {
            let norm = norms[r]
            if norm > 0 && norm.isFinite {
                scale[r] = rows.rowScale[r] / norm
                // Room for rounding the divided scale (2^-24 of terms at most |q|_1 x the row's largest value) and
                // the cosine's own division: 1e-6 of the largest value (127 x scale) on top. int8 rows carry no
                // error term of their own to hide that in.
                error[r] = (rows.rowError[r] * 1.01 + 1e-6 * 127 * abs(rows.rowScale[r])) / norm
            } else {
                scale[r] = 0
                error[r] = .infinity
            }
        }
        self.rows = rows
        rowScale = scale
        rowError = error
        byteCount = size
        self.region = region
    }

    deinit { munmap(region, byteCount) }
}

/// A bounded min-heap of the best rows seen so far; its root is the worst kept row (lowest score, then highest
/// row index), i.e. the one a better candidate replaces.
struct TopKHeap {
    private var items: ContiguousArray<ScoredRow> = []
    private let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        items.reserveCapacity(capacity)
    }

    var isFull: Bool { items.count == capacity }

    /// Score of the worst kept row (only meaningful once the heap is non-empty).
    var worstScore: Float { items[0].score }

    /// `a` ranks below `b`: lower score, or equal score and higher row.
    @inline(__always)
    private static func worse(_ a: ScoredRow, _ b: ScoredRow) -> Bool {
        a.score < b.score || (a.score == b.score && a.row > b.row)
    }

    /// Adds a row when there is room, else replaces the root if the row ranks above it.
    mutating func insert(score: Float, row: Int32) {
        let item = ScoredRow(row: row, score: score)
        if items.count < capacity {
            items.append(item)
            items.withUnsafeMutableBufferPointer { h in
                var i = h.count - 1
                while i > 0 {
                    let parent = (i - 1) >> 1
                    guard Self.worse(h[i], h[parent]) else { break }
                    h.swapAt(i, parent)
                    i = parent
                }
            }
            return
        }
        guard Self.worse(items[0], item) else { return }
        items.withUnsafeMutableBufferPointer { h in
            let n = h.count
            var i = 0
            while true {
                let l = 2 * i + 1
                if l >= n { break }
                var c = l
                if l + 1 < n && Self.worse(h[l + 1], h[l]) { c = l + 1 }
                guard Self.worse(h[c], item) else { break }
                h[i] = h[c]
                i = c
            }
            h[i] = item
        }
    }

    /// The kept rows, best first (ties: lower row first).
    func sortedBestFirst() -> [ScoredRow] {
        items.sorted { Self.worse($1, $0) }
    }
}
