import CKairosTrainerKernels
import Dispatch
import KairosKernels
import KairosModelFormat

/// Which implementation solves the rows.
public enum ALSKernel: String, Sendable, CaseIterable {
    /// The C solver at the best instruction-set level this CPU supports.
    case auto
    /// The C solver, plain C (any CPU).
    case portable
    /// The C solver with AVX2 + FMA.
    case avx2
    /// The C solver with AVX-512.
    case avx512
    /// The Swift `SIMD16<Float>` solver (reference implementation).
    case swift

    /// The level the C solver runs at for this choice on this CPU (nil for the Swift solver).
    public var effectiveISA: Int32? {
        let best = ckt_best_isa()
        switch self {
        case .auto: return best
        case .portable: return Int32(CKT_ISA_PORTABLE)
        case .avx2: return min(best, Int32(CKT_ISA_AVX2))
        case .avx512: return min(best, Int32(CKT_ISA_AVX512))
        case .swift: return nil
        }
    }

    /// Human name of what actually runs, e.g. `avx512`.
    public var effectiveDescription: String {
        switch effectiveISA {
        case nil: "swift-simd16"
        case Int32(CKT_ISA_AVX512)?: "avx512"
        case Int32(CKT_ISA_AVX2)?: "avx2"
        default: "portable"
        }
    }
}

/// Hyper-parameters of weighted ALS.
public struct ALSConfig: Sendable, Equatable {
    /// Latent dimension (a multiple of 4 for the model file).
    public var factors = 64
    /// Alternating sweeps (users then items).
    public var iterations = 15
    /// L2 regularization `lambda`.
    public var regularization: Float = 20
    /// Confidence slope: `c = 1 + alpha * r`.
    public var alpha: Float = 10
    /// Conjugate-gradient steps per row solve (as the `implicit` library: 3).
    public var cgSteps = 3
    /// Seed of the factor initialisation.
    public var seed: UInt64 = 42
    /// Worker threads.
    public var threads = 2
    /// Compute the training loss every this many iterations (0: never; it costs about one extra pass).
    public var lossEvery = 1
    /// Row solver implementation (results are deterministic per seed and kernel level).
    public var kernel = ALSKernel.auto

    public init() {}
}

/// Learned factors, row-major float32, `factors` values per row.
public struct ALSFactors: Sendable {
    /// Latent dimension.
    public var factors: Int
    /// `users x factors` values.
    public var user: [Float]
    /// `items x factors` values.
    public var item: [Float]
    /// Training loss after each iteration where it was computed.
    public var losses: [Double]
    /// The confidence slope the factors were fit with (the real-time least-squares fold solves with it).
    public var alpha: Float = 0
    /// The regularization the factors were fit with.
    public var regularization: Float = 0

    /// Dot product of user row `u` and item row `i`.
    @inline(__always)
    public func score(user u: Int, item i: Int) -> Float {
        var s: Float = 0
        let k = factors
        for d in 0..<k { s += user[u * k + d] * item[i * k + d] }
        return s
    }
}

extension ALSFactors {
    /// The factors as a model file stores them in `encoding` (float16 rounding, int8 quantization per row), so that
    /// what the trainer evaluates and tunes on is what the server will score.
    func stored(as encoding: RowEncoding) -> ALSFactors {
        // Non-finite factors stay as they are: the encoders assume finite input, and the model writer refuses them
        // with a clear error.
        guard encoding != .float32, user.allSatisfy(\.isFinite), item.allSatisfy(\.isFinite) else { return self }
        var out = self
        out.user = Self.roundTrip(user, cols: factors, encoding)
        out.item = Self.roundTrip(item, cols: factors, encoding)
        return out
    }

    static func roundTrip(_ values: [Float], cols: Int, _ encoding: RowEncoding) -> [Float] {
        let rows = cols > 0 ? values.count / cols : 0
        guard rows > 0 else { return values }
        let stride = encoding.alignedStride(cols: cols)
        var bytes = [UInt8](repeating: 0, count: rows * stride)
        var scales = [Float](repeating: 1, count: rows)
        values.withUnsafeBufferPointer { src in
            bytes.withUnsafeMutableBytes { dst in
                scales.withUnsafeMutableBufferPointer { RowEncoder.encode(src, rows: rows, cols: cols, as: encoding, into: dst, scales: $0) }
            }
        }
        return bytes.withUnsafeBytes { raw in
            scales.withUnsafeBufferPointer { sc in
                let m = MatrixView(base: raw.baseAddress!, rows: rows, cols: cols, rowStride: stride, encoding: encoding,
                                   scales: encoding == .int8 ? sc.baseAddress : nil)
                return (0..<rows).flatMap { RowEncoder.decodeRow($0, of: m) }
            }
        }
    }
}

/// Weighted ALS for implicit feedback (Hu, Koren, Volinsky 2008) with the conjugate-gradient row solver of Takács et
/// al. that the `implicit` library uses: preference 1 for every stored entry, confidence `1 + alpha * r`.
///
/// Each half-iteration solves every row of one side against the fixed other side. Rows are split into contiguous
/// ranges of about equal work, one per thread; a row's solution depends only on its own data and the fixed side,
/// and the Gram matrix is reduced in a fixed order, so the result is bit-identical whatever the thread scheduling.
public enum WeightedALS {
    /// Fits user and item factors to `r` (users x items).
    /// - Parameters:
    ///   - initial: factors to start from instead of the seeded random start (a warm start); used only when its
    ///     shape matches `r` and `config.factors`.
    ///   - progress: called after each iteration with (iteration, loss if computed).
    package static func fit(
        _ r: SparseMatrix,
        config: ALSConfig,
        initial: ALSFactors? = nil,
        progress: (Int, Double?) -> Void = { _, _ in }
    ) -> ALSFactors {
        let rt = r.transposed()
        return fit(r, transposed: rt, config: config, initial: initial, progress: progress)
    }

    static func fit(
        _ r: SparseMatrix,
        transposed rt: SparseMatrix,
        config: ALSConfig,
        initial: ALSFactors? = nil,
        progress: (Int, Double?) -> Void
    ) -> ALSFactors {
        let k = config.factors
        let chunks = (k + 15) / 16
        var rng = SplitMix64(seed: config.seed)
        let users = FactorBlock(rows: r.rows, chunks: chunks)
        let items = FactorBlock(rows: r.cols, chunks: chunks)
        if let initial, initial.factors == k, initial.user.count == r.rows * k, initial.item.count == r.cols * k {
            for (block, values) in [(users, initial.user), (items, initial.item)] {
                for row in 0..<block.rows {
                    for d in 0..<k { block.set(row, d, values[row * k + d]) }
                }
            }
        } else {
            // Same initialisation as `implicit`: uniform [0, 0.01), users first, padding lanes stay 0.
            for block in [users, items] {
                for row in 0..<block.rows {
                    for d in 0..<k { block.set(row, d, Float(rng.uniform()) * 0.01) }
                }
            }
        }
        let scaled = ConfidenceRows(r, alpha: config.alpha)
        let scaledT = ConfidenceRows(rt, alpha: config.alpha)
        let gram = GramMatrix(chunks: chunks)
        let isa = config.kernel.effectiveISA
        var losses: [Double] = []
        for it in 0..<config.iterations {
            gram.compute(items, regularization: config.regularization, threads: config.threads, isa: isa)
            solve(users, against: items, rows: scaled, gram: gram, config: config)
            gram.compute(users, regularization: config.regularization, threads: config.threads, isa: isa)
            solve(items, against: users, rows: scaledT, gram: gram, config: config)
            var loss: Double?
            if config.lossEvery > 0 && (it + 1) % config.lossEvery == 0
                || it + 1 == config.iterations && config.lossEvery > 0
            {
                // `gram` holds X'X from the item half-step; users have not changed since.
                loss = Self.loss(
                    users, items, scaled, regularization: config.regularization, threads: config.threads, userGram: gram,
                    isa: isa
                )
                losses.append(loss!)
            }
            progress(it + 1, loss)
        }
        return ALSFactors(
            factors: k, user: users.export(factors: k), item: items.export(factors: k), losses: losses,
            alpha: config.alpha, regularization: config.regularization
        )
    }

    /// Splits `rows` into `parts` contiguous ranges of about equal cost (entries plus a fixed per-row cost).
    static func partition(_ m: ConfidenceRows, parts: Int, rowCost: Int) -> [Range<Int>] {
        let total = m.indptr[m.rows] + m.rows * rowCost
        var out: [Range<Int>] = []
        var start = 0
        for p in 1...parts {
            var end = start
            let target = total * p / parts
            while end < m.rows && m.indptr[end] + end * rowCost < target { end += 1 }
            if p == parts { end = m.rows }
            out.append(start..<end)
            start = end
        }
        return out
    }

    /// Solves every row of `x` against the fixed `y` with `cgSteps` conjugate-gradient steps, warm-started.
    static func solve(
        _ x: FactorBlock,
        against y: FactorBlock,
        rows m: ConfidenceRows,
        gram: GramMatrix,
        config: ALSConfig
    ) {
        let parts = partition(m, parts: max(1, config.threads), rowCost: 16 * x.chunks * x.chunks)
        let cgSteps = config.cgSteps
        let isa = config.kernel.effectiveISA
        let run: @Sendable (Int) -> Void = { p in
            if let isa {
                m.indptr.withUnsafeBufferPointer { indptr in
                    m.indices.withUnsafeBufferPointer { indices in
                        m.values.withUnsafeBufferPointer { values in
                            ckt_cg_solve(
                                isa,
                                x.floats,
                                y.floats,
                                Int32(x.chunks * 16),
                                gram.floats,
                                UnsafeRawPointer(indptr.baseAddress!).assumingMemoryBound(to: Int64.self),
                                indices.baseAddress,
                                values.baseAddress,
                                Int64(parts[p].lowerBound),
                                Int64(parts[p].upperBound),
                                Int32(cgSteps)
                            )
                        }
                    }
                }
                return
            }
            switch x.chunks {
            case 1: RowSolver<W1>.solve(x, y, m, gram, cgSteps, parts[p])
            case 2: RowSolver<W2>.solve(x, y, m, gram, cgSteps, parts[p])
            case 4: RowSolver<W4>.solve(x, y, m, gram, cgSteps, parts[p])
            case 8: RowSolver<W8>.solve(x, y, m, gram, cgSteps, parts[p])
            default: RowSolver<WAny>.solve(x, y, m, gram, cgSteps, parts[p])
            }
        }
        if parts.count == 1 { run(0) } else { DispatchQueue.concurrentPerform(iterations: parts.count, execute: run) }
    }

    /// `sum_u x_u' (Y'Y) x_u + sum_(u,i) [c (1 - s)^2 - s^2] + lambda (|X|^2 + |Y|^2)`, divided by the total
    /// confidence weight, where `s = x_u . y_i`: the weighted squared error over all cells without visiting them.
    ///
    /// `userGram` is `X'X` (``fit`` passes the one its item half-step has just used), so the first term is
    /// trace(X'X Y'Y) rather than a quadratic form per user. The per-entry sum runs in two fixed halves of the rows,
    /// one per thread, added in order: the result does not depend on the thread count.
    static func loss(
        _ x: FactorBlock,
        _ y: FactorBlock,
        _ m: ConfidenceRows,
        regularization: Float,
        threads: Int,
        userGram: GramMatrix,
        isa: Int32? = nil
    ) -> Double {
        let itemGram = GramMatrix(chunks: x.chunks)
        itemGram.compute(y, regularization: 0, threads: threads, isa: isa)
        let parts = 2
        let partials = UnsafeMutablePointer<(total: Double, weight: Double)>.allocate(capacity: parts)
        partials.initialize(repeating: (0, 0), count: parts)
        defer { partials.deallocate() }
        let box = SendablePointer(partials)
        let work: @Sendable (Int) -> Void = { p in
            var total = 0.0
            var weight = 0.0
            for u in (m.rows * p / parts)..<(m.rows * (p + 1) / parts) {
                let xu = x.row(u)
                for e in m.indptr[u]..<m.indptr[u + 1] {
                    let yi = y.row(Int(m.indices[e]))
                    var s = SIMD16<Float>()
                    for c in 0..<x.chunks { s += xu[c] * yi[c] }
                    let score = Double(s.sum())
                    let c = 1 + Double(m.values[e])
                    total += c * (1 - score) * (1 - score) - score * score
                    weight += Double(m.values[e])
                }
            }
            box.pointer[p] = (total, weight)
        }
        if threads == 1 {
            for p in 0..<parts { work(p) }
        } else {
            DispatchQueue.concurrentPerform(iterations: parts, execute: work)
        }
        var total = userGram.innerProduct(itemGram)
        var weight = Double(m.rows) * Double(y.rows)
        for p in 0..<parts {
            total += partials[p].total
            weight += partials[p].weight
        }
        total += Double(regularization) * (x.squaredNorm() + y.squaredNorm())
        return total / weight
    }
}
