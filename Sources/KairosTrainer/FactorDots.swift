import KairosKernels

/// The user-item dot products the evaluation ranks by: the scoring kernels' scan (C, vectorised for the CPU) at the
/// instruction-set level of the chosen ALS kernel, so that `--kernel portable` gives the same rankings, and models,
/// on every machine. Swift SIMD for the Swift solver. Whole rows and single items get the same bits either way.
package struct FactorDots: Sendable {
    /// nil: Swift `SIMD16<Float>`.
    let kernels: ScoringKernels?

    /// Swift SIMD, any CPU and any factor count.
    package static let swift = FactorDots(kernels: nil)

    init(kernels: ScoringKernels?) { self.kernels = kernels }

    /// The kernels matching the ALS kernel `kernel` on this CPU.
    package init(kernel: ALSKernel) {
        let levels = ScoringKernels.supportedISAs
        switch kernel {
        case .auto: kernels = .best
        case .portable: kernels = ScoringKernels(isa: .portable)
        case .avx2: kernels = levels.last(where: { $0 <= .avx2 }).flatMap { ScoringKernels(isa: $0) }
        case .avx512: kernels = levels.last(where: { $0 <= .avx512 }).flatMap { ScoringKernels(isa: $0) }
        case .swift: kernels = nil
        }
    }

    /// `out[i] = user . item_i` for every item.
    package func row(_ f: ALSFactors, user u: Int, into out: UnsafeMutableBufferPointer<Float>) {
        let k = f.factors
        f.user.withUnsafeBufferPointer { U in
            f.item.withUnsafeBufferPointer { V in
                let x = U.baseAddress! + u * k
                if let kernels, let m = Self.view(V, factors: k, rows: out.count) {
                    kernels.scores(UnsafeBufferPointer(start: x, count: k), of: m, into: out)
                } else {
                    for i in 0..<out.count { out[i] = Self.dot(x, V.baseAddress! + i * k, k) }
                }
            }
        }
    }

    /// How many users' rows ``rows(_:users:into:)`` should be given at once for a catalogue of `items`: up to 8 (a
    /// 50k-item float32 scan is then about 3x faster per user than one at a time), while their score rows stay
    /// within 16 MB.
    package static func batch(items: Int) -> Int { max(1, min(8, (16 << 20) / max(items * 4, 1))) }

    /// `out[j][i] = users[j] . item_i` for every item: the same bits as ``row(_:user:into:)`` gives each user, with
    /// the item rows read once for all the users.
    package func rows(_ f: ALSFactors, users: [Int], into out: [UnsafeMutableBufferPointer<Float>]) {
        precondition(users.count == out.count)
        let k = f.factors
        func eachAlone() { for (u, o) in zip(users, out) { row(f, user: u, into: o) } }
        guard let kernels, let first = out.first, out.allSatisfy({ $0.count == first.count }) else { return eachAlone() }
        f.user.withUnsafeBufferPointer { U in
            f.item.withUnsafeBufferPointer { V in
                guard let m = Self.view(V, factors: k, rows: first.count) else { return eachAlone() }
                let queries = users.map { UnsafeBufferPointer(start: U.baseAddress! + $0 * k, count: k) }
                kernels.scores(queries, of: m, into: out)
            }
        }
    }

    /// `user . item`, the same bits as ``row(_:user:into:)`` gives that item.
    package func one(_ f: ALSFactors, user u: Int, item i: Int) -> Float {
        let k = f.factors
        return f.user.withUnsafeBufferPointer { U in
            f.item.withUnsafeBufferPointer { V in
                let x = U.baseAddress! + u * k
                if let kernels, let m = Self.view(V, factors: k, rows: i + 1) {
                    return kernels.dot(UnsafeBufferPointer(start: x, count: k), row: i, of: m)
                }
                return Self.dot(x, V.baseAddress! + i * k, k)
            }
        }
    }

    /// The item factors as a matrix view, when the C kernels take them (a multiple of 4 columns, at most 1024).
    static func view(_ v: UnsafeBufferPointer<Float>, factors k: Int, rows: Int) -> MatrixView? {
        guard k > 0, k % 4 == 0, k <= MatrixView.maxCols, let base = v.baseAddress, rows * k <= v.count else {
            return nil
        }
        return MatrixView(base: base, rows: rows, cols: k, rowStride: k * 4, encoding: .float32)
    }

    @inline(__always)
    static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ k: Int) -> Float {
        var acc = SIMD16<Float>()
        var d = 0
        while d + 16 <= k {
            let a = UnsafeRawPointer(x + d).loadUnaligned(as: SIMD16<Float>.self)
            let b = UnsafeRawPointer(y + d).loadUnaligned(as: SIMD16<Float>.self)
            acc = a * b + acc
            d += 16
        }
        var s = horizontalSum(acc)
        while d < k {
            s += x[d] * y[d]
            d += 1
        }
        return s
    }
}
