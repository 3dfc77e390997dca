import Dispatch
import CKairosTrainerKernels

/// Rows of float32 factors padded to whole `SIMD16<Float>` chunks (padding lanes stay 0 through training).
final class FactorBlock: @unchecked Sendable {
    // @unchecked: rows are written by exactly one thread per half-iteration (disjoint ranges), read by all only
    // while no thread writes this block; the fork-join of concurrentPerform orders the phases.
    let rows: Int
    let chunks: Int
    let base: UnsafeMutablePointer<SIMD16<Float>>

    init(rows: Int, chunks: Int) {
        self.rows = rows
        self.chunks = chunks
        base = .allocate(capacity: max(1, rows * chunks))
        base.initialize(repeating: SIMD16<Float>(), count: max(1, rows * chunks))
    }

    deinit { base.deallocate() }

    @inline(__always)
    func row(_ r: Int) -> UnsafeMutablePointer<SIMD16<Float>> { base + r &* chunks }

    /// The rows as plain floats, `16 * chunks` per row (for the C solver).
    var floats: UnsafeMutablePointer<Float> { UnsafeMutableRawPointer(base).assumingMemoryBound(to: Float.self) }

    func set(_ r: Int, _ d: Int, _ v: Float) { base[r * chunks + d / 16][d % 16] = v }

    /// Row-major values without padding.
    func export(factors k: Int) -> [Float] {
        var out = [Float](repeating: 0, count: rows * k)
        for r in 0..<rows {
            for d in 0..<k { out[r * k + d] = base[r * chunks + d / 16][d % 16] }
        }
        return out
    }

    func squaredNorm() -> Double {
        var s = 0.0
        for i in 0..<(rows * chunks) { s += Double((base[i] * base[i]).sum()) }
        return s
    }
}

/// One side's sparse rows with `alpha * r` (confidence minus 1) per entry.
struct ConfidenceRows: Sendable {
    let rows: Int
    let indptr: [Int]
    let indices: [Int32]
    let values: [Float]

    init(_ m: SparseMatrix, alpha: Float) {
        rows = m.rows
        indptr = m.indptr
        indices = m.indices
        values = m.values.map { alpha * $0 }
    }
}

/// `Y'Y + lambda I` for the fixed side, `kp x kp` with `kp = 16 * chunks`.
final class GramMatrix: @unchecked Sendable {
    // @unchecked: written only inside `compute` (per-thread partials, then one thread sums), read-only afterwards.
    let chunks: Int
    let dim: Int
    let base: UnsafeMutablePointer<SIMD16<Float>>
    /// The diagonal before the regularization was added (for ``innerProduct(_:)``).
    private(set) var diagonal: [Float]

    init(chunks: Int) {
        self.chunks = chunks
        dim = chunks * 16
        base = .allocate(capacity: dim * chunks)
        base.initialize(repeating: SIMD16<Float>(), count: dim * chunks)
        diagonal = [Float](repeating: 0, count: dim)
    }

    deinit { base.deallocate() }

    @inline(__always)
    func row(_ a: Int) -> UnsafeMutablePointer<SIMD16<Float>> { base + a &* chunks }

    /// Row-major `dim x dim` floats (for the C solver).
    var floats: UnsafeMutablePointer<Float> { UnsafeMutableRawPointer(base).assumingMemoryBound(to: Float.self) }

    /// Recomputes from `y`: two fixed halves of the rows are summed separately (one per thread when there are two)
    /// and then added, so the bits do not depend on the thread count. `isa`: the C loop at that level, nil for the
    /// Swift loop; both give the same bits. The C loop runs 8-16 lanes wide where Swift's SIMD16 compiles to 4-lane
    /// SSE, and at 64 factors sums four rows of the Gram in registers: measured on a 2M-event, 50k-item log, the
    /// Gram's share of a fit's CPU time fell from 11% to 4%.
    func compute(_ y: FactorBlock, regularization: Float, threads: Int, isa: Int32? = nil) {
        let parts = 2
        let size = dim * chunks
        let partials = UnsafeMutablePointer<SIMD16<Float>>.allocate(capacity: size * parts)
        partials.initialize(repeating: SIMD16<Float>(), count: size * parts)
        defer { partials.deallocate() }
        let box = SendablePointer(partials)
        let chunks = self.chunks
        let dim = self.dim
        let work: @Sendable (Int) -> Void = { p in
            let out = box.pointer + p * size
            let lo = y.rows * p / parts
            let hi = y.rows * (p + 1) / parts
            // Only chunks at or right of the diagonal's: the Gram is symmetric, and the mirror below copies each
            // entry from its twin, which summed the same products (`a * b == b * a`) in the same order, so the
            // result is bit for bit that of the full product at 5/8 of its work (64 factors).
            if let isa, dim <= 1024 {  // the C loop's limit, as the solver's
                ckt_gram_add(
                    isa, UnsafeMutableRawPointer(out).assumingMemoryBound(to: Float.self), y.floats, Int32(dim),
                    Int64(lo), Int64(hi)
                )
                return
            }
            for r in lo..<hi {
                let v = y.row(r)
                for ca in 0..<chunks {
                    let va = v[ca]
                    for l in 0..<16 {
                        let s = va[l]
                        if s == 0 { continue }
                        let g = out + (ca &* 16 &+ l) &* chunks
                        for c in ca..<chunks { g[c] = g[c] + SIMD16(repeating: s) * v[c] }
                    }
                }
            }
        }
        if threads == 1 {
            for p in 0..<parts { work(p) }
        } else {
            DispatchQueue.concurrentPerform(iterations: parts, execute: work)
        }
        for i in 0..<size {
            var s = partials[i]
            for p in 1..<parts { s = s + partials[p * size + i] }
            base[i] = s
        }
        for a in 0..<dim {
            for b in 0..<((a / 16) * 16) { base[a * chunks + b / 16][b % 16] = base[b * chunks + a / 16][a % 16] }
        }
        for a in 0..<dim {
            diagonal[a] = base[a * chunks + a / 16][a % 16]
            base[a * chunks + a / 16][a % 16] += regularization
        }
    }

    /// `sum_ab G_ab H_ab` over the two Gram matrices without their regularization: `sum_u x_u' (Y'Y) x_u` when
    /// `self` is `X'X` and `other` is `Y'Y` (trace(X'X Y'Y)), in `dim^2` steps instead of one quadratic form per row.
    func innerProduct(_ other: GramMatrix) -> Double {
        var total = 0.0
        for a in 0..<dim {
            for b in 0..<dim {
                let x = a == b ? diagonal[a] : row(a)[b / 16][b % 16]
                let y = a == b ? other.diagonal[a] : other.row(a)[b / 16][b % 16]
                total += Double(x) * Double(y)
            }
        }
        return total
    }
}

/// A raw pointer handed to worker closures; the caller guarantees disjoint writes.
struct SendablePointer<T>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<T>
    init(_ p: UnsafeMutablePointer<T>) { pointer = p }
}

/// The number of SIMD16 chunks per row, as a type so the solver is specialised (loops unrolled) per width.
protocol ChunkWidth { static func chunks(_ dynamic: Int) -> Int }
enum W1: ChunkWidth { @inline(__always) static func chunks(_: Int) -> Int { 1 } }
enum W2: ChunkWidth { @inline(__always) static func chunks(_: Int) -> Int { 2 } }
enum W4: ChunkWidth { @inline(__always) static func chunks(_: Int) -> Int { 4 } }
enum W8: ChunkWidth { @inline(__always) static func chunks(_: Int) -> Int { 8 } }
enum WAny: ChunkWidth { @inline(__always) static func chunks(_ d: Int) -> Int { d } }

@inline(__always)
func horizontalSum(_ v: SIMD16<Float>) -> Float {
    let a = v.lowHalf + v.highHalf
    let b = a.lowHalf + a.highHalf
    let c = b.lowHalf + b.highHalf
    return c[0] + c[1]
}

/// The conjugate-gradient row solver, specialised per chunk width.
///
/// Written as `a * b + c` on `SIMD16<Float>` rather than `addingProduct`: without an FMA target the latter becomes
/// per-lane `fmaf` calls (25x slower, see STYLE.md (c)); this form compiles to packed mul + add at any x86-64 level.
enum RowSolver<W: ChunkWidth> {
    static func solve(
        _ x: FactorBlock,
        _ y: FactorBlock,
        _ m: ConfidenceRows,
        _ g: GramMatrix,
        _ steps: Int,
        _ range: Range<Int>
    ) {
        let C = W.chunks(x.chunks)
        let scratch = UnsafeMutablePointer<SIMD16<Float>>.allocate(capacity: 3 * C)
        scratch.initialize(repeating: SIMD16<Float>(), count: 3 * C)
        defer { scratch.deallocate() }
        let r = scratch
        let p = scratch + C
        let ap = scratch + 2 * C
        m.indptr.withUnsafeBufferPointer { indptr in
            m.indices.withUnsafeBufferPointer { indices in
                m.values.withUnsafeBufferPointer { values in
                    for u in range {
                        let xu = x.row(u)
                        let start = indptr[u]
                        let end = indptr[u + 1]
                        // r = b - A x = sum (1 + cm1 - cm1 (y.x)) y - (Y'Y + lambda I) x
                        gemv(g, xu, into: r, C, negate: true)
                        for e in start..<end {
                            let yj = y.row(Int(indices[e]))
                            let cm1 = values[e]
                            let d = dot(yj, xu, C)
                            let coef = SIMD16<Float>(repeating: 1 + cm1 - cm1 * d)
                            for c in 0..<C { r[c] = coef * yj[c] + r[c] }
                        }
                        for c in 0..<C { p[c] = r[c] }
                        var rs = dot(r, r, C)
                        for _ in 0..<steps {
                            if rs < 1e-20 { break }
                            gemv(g, p, into: ap, C, negate: false)
                            for e in start..<end {
                                let yj = y.row(Int(indices[e]))
                                let coef = SIMD16<Float>(repeating: values[e] * dot(yj, p, C))
                                for c in 0..<C { ap[c] = coef * yj[c] + ap[c] }
                            }
                            let pap = dot(p, ap, C)
                            if !(pap > 0) { break }
                            let a = SIMD16<Float>(repeating: rs / pap)
                            for c in 0..<C {
                                xu[c] = a * p[c] + xu[c]
                                r[c] = r[c] - a * ap[c]
                            }
                            let next = dot(r, r, C)
                            let beta = SIMD16<Float>(repeating: next / rs)
                            for c in 0..<C { p[c] = beta * p[c] + r[c] }
                            rs = next
                        }
                    }
                }
            }
        }
    }

    @inline(__always)
    static func dot(_ a: UnsafeMutablePointer<SIMD16<Float>>, _ b: UnsafeMutablePointer<SIMD16<Float>>, _ C: Int)
        -> Float
    {
        var acc = a[0] * b[0]
        for c in 1..<max(C, 1) { acc = a[c] * b[c] + acc }
        return horizontalSum(acc)
    }

    /// `out = (+/-) G v` as a sum of G's rows scaled by v's lanes (G is symmetric), so no horizontal sums.
    @inline(__always)
    static func gemv(
        _ g: GramMatrix,
        _ v: UnsafeMutablePointer<SIMD16<Float>>,
        into out: UnsafeMutablePointer<SIMD16<Float>>,
        _ C: Int,
        negate: Bool
    ) {
        for c in 0..<C { out[c] = SIMD16<Float>() }
        for ca in 0..<C {
            let va = negate ? -v[ca] : v[ca]
            for l in 0..<16 {
                let s = SIMD16<Float>(repeating: va[l])
                let row = g.row(ca &* 16 &+ l)
                for c in 0..<C { out[c] = s * row[c] + out[c] }
            }
        }
    }
}
