import KairosKernels
import KairosTestSupport
import Testing

@Suite struct LeastSquaresFoldTests {
    /// `Y'Y` of two rows, by hand: [1 2] and [3 4] give [[1+9, 2+12], [2+12, 4+16]].
    @Test func gramOfTwoRows() {
        let g = [Float]([1, 2, 3, 4]).withUnsafeBufferPointer { LeastSquaresFold.gram(rows: $0, dimensions: 2) }
        #expect(g == [10, 14, 14, 20])
    }

    /// Past one block of float partial sums (256 rows), the Gram is still the exact sum: 1,000 rows of 0.1 give
    /// 1,000 x 0.01 in every entry (0.1 is inexact, so within float rounding of one block).
    @Test func gramSumsManyRowsAccurately() {
        let rows = [Float](repeating: 0.1, count: 1000 * 4)
        let g = rows.withUnsafeBufferPointer { LeastSquaresFold.gram(rows: $0, dimensions: 4) }
        #expect(g.count == 16)
        for v in g { #expect(abs(v - 10) < 1e-4, "\(v)") }
    }

    /// The Gram of a stored matrix is that of its decoded rows: bit for bit for float32 (so a served model's Gram is
    /// the trainer's), and of the dequantized values for int8.
    @Test(arguments: [RowEncoding.float32, .float16, .int8])
    func gramOfAStoredMatrixIsTheGramOfItsRows(encoding: RowEncoding) {
        let rows = 300
        let cols = 8
        var state: UInt64 = 7
        let values = (0..<(rows * cols)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(state >> 40) % 2001 - 1000) / 700
        }
        let stride = encoding.alignedStride(cols: cols)
        var bytes = [UInt8](repeating: 0, count: rows * stride)
        var scales = [Float](repeating: 1, count: rows)
        values.withUnsafeBufferPointer { src in
            bytes.withUnsafeMutableBytes { dst in
                scales.withUnsafeMutableBufferPointer { RowEncoder.encode(src, rows: rows, cols: cols, as: encoding, into: dst, scales: $0) }
            }
        }
        bytes.withUnsafeBytes { raw in
            scales.withUnsafeBufferPointer { sc in
                let m = MatrixView(
                    base: raw.baseAddress!, rows: rows, cols: cols, rowStride: stride, encoding: encoding,
                    scales: encoding == .int8 ? sc.baseAddress : nil
                )
                let decoded = (0..<rows).flatMap { RowEncoder.decodeRow($0, of: m) }
                if encoding == .float32 { #expect(decoded == values) }
                let fromRows = decoded.withUnsafeBufferPointer { LeastSquaresFold.gram(rows: $0, dimensions: cols) }
                #expect(LeastSquaresFold.gram(of: m) == fromRows)
                // Symmetric, and each entry the double-precision sum within float rounding.
                for a in 0..<cols {
                    for b in 0..<cols {
                        #expect(fromRows[a * cols + b] == fromRows[b * cols + a])
                        var exact = 0.0
                        for r in 0..<rows { exact += Double(decoded[r * cols + a]) * Double(decoded[r * cols + b]) }
                        #expect(abs(fromRows[a * cols + b] - exact) <= 1e-4 * max(1, abs(exact)), "\(a) \(b)")
                    }
                }
            }
        }
    }

    /// History weights are normalised to mean 1 (2 and 6: scale 2/8), events add at that scale, a negative amount
    /// lowers a weight to 0 at most, and amounts of 0, NaN or below 0 on a new item change nothing.
    @Test func confidences() {
        var c = LeastSquaresFold.Confidences(historyItems: [UInt32(5), 9], weights: [Float(2), 6])
        #expect(c.scale == 0.25)
        #expect(c.items == [5, 9] && c.before == [0.5, 1.5] && c.after == c.before && !c.changed)
        c.add(item: 9, amount: 4)
        #expect(c.after == [0.5, 2.5] && c.changed)
        c.add(item: 3, amount: 2)
        #expect(c.items == [5, 9, 3] && c.before == [0.5, 1.5, 0] && c.after == [0.5, 2.5, 0.5])
        c.add(item: 5, amount: -100)
        #expect(c.after == [0, 2.5, 0.5])
        c.add(item: 7, amount: -1)
        c.add(item: 7, amount: 0)
        c.add(item: 7, amount: .nan)
        c.add(item: 7, amount: .infinity)
        #expect(c.items == [5, 9, 3])
        // Without history the scale is 1.
        var empty = LeastSquaresFold.Confidences(historyItems: [UInt32](), weights: [Float]())
        empty.add(item: 1, amount: 3)
        #expect(empty.scale == 1 && empty.after == [3] && empty.before == [0])
    }

    /// By hand, items e1 and e2 (Gram I), lambda 1, alpha 1, a history of e1 (weight 1) and an event worth 2 on e2:
    /// before, A = diag(1 + 1 + 1, 1 + 1) and b = (1 + 1) e1, so x = (2/3, 0); after, A = diag(3, 2 + 2) and
    /// b = (2, 1 + 2), so x = (2/3, 3/4). The user moves by (0, 3/4).
    @Test func foldByHand() {
        var c = LeastSquaresFold.Confidences(historyItems: [UInt32(0)], weights: [Float(1)])
        c.add(item: 1, amount: 2)
        let rows: [Float] = [1, 0, 0, 1]  // the rows of c.items: e1, e2
        let out = LeastSquaresFold.fold(user: [0.5, 0.5], gram: [1, 0, 0, 1], regularization: 1, alpha: 1, confidences: c, rows: rows)
        #expect(out != nil)
        #expect(abs(out![0] - 0.5) < 1e-6 && abs(out![1] - 1.25) < 1e-6, "\(out!)")
    }

    /// On random data the fold is `u + x_after - x_before` with both systems built from their definition
    /// (``ReferenceSolve``): with a few changed weights (solved on the history's factorisation) and with more than
    /// 16 (a second factorisation), a lowered weight among them.
    @Test(arguments: [4, 24])
    func foldMatchesADirectSolve(changes: Int) {
        let k = 8
        let items = 60
        var values = FoldTestValues(state: 11)
        let (y, gram) = values.rows(items: items, k: k, scale: 1)
        let u = (0..<k).map { _ in Float(values.next()) }
        var c = LeastSquaresFold.Confidences(historyItems: [UInt32(3), 7, 11, 20, 31], weights: [Float(4), 1, 0.5, 2, 0.25])
        c.add(item: 7, amount: 3)
        c.add(item: 25, amount: 1.5)
        c.add(item: 2, amount: 0.5)
        c.add(item: 25, amount: 1)
        c.add(item: 3, amount: -3)
        for i in 0..<(changes - 4) { c.add(item: Int32(35 + i), amount: 0.25 * Double(i + 1)) }
        #expect(zip(c.before, c.after).filter { $0 != $1 }.count == changes)
        let rows = c.items.flatMap { Array(y[(Int($0) * k)..<((Int($0) + 1) * k)]) }
        let (alpha, lambda) = (10.0, 0.5)
        let out = LeastSquaresFold.fold(user: u, gram: gram, regularization: lambda, alpha: alpha, confidences: c, rows: rows)!
        let expected = Self.referenceFold(user: u, y: y, items: items, k: k, alpha: alpha, lambda: lambda, confidences: c)
        for d in 0..<k {
            #expect(abs(Double(out[d]) - expected[d]) < 1e-4, "dimension \(d): \(out[d]) vs \(expected[d])")
        }
        #expect(out != u)
    }

    /// Shapes the small test does not reach: factor counts that fill the Cholesky's 4-column panels and that leave a
    /// short last one (37), histories of tens of items, events on history items and new ones (a few: the Woodbury
    /// path; 20: a second factorization), and alpha 0 (the events change only the right-hand side).
    @Test(arguments: [(37, 50, 4, 10.0), (64, 120, 5, 40.0), (64, 30, 20, 10.0), (13, 12, 3, 0.0)])
    func foldMatchesADirectSolveAtServingShapes(shape: (k: Int, history: Int, events: Int, alpha: Double)) {
        let (k, history, events, alpha) = shape
        let items = 400
        var values = FoldTestValues(state: UInt64(k * 1000 + events))
        let (y, gram) = values.rows(items: items, k: k, scale: 0.3)
        let u = (0..<k).map { _ in Float(values.next()) }
        let historyItems = (0..<history).map { UInt32($0 * 3) }
        let weights = (0..<history).map { _ in Float(1 + abs(values.next()) * 4) }
        var c = LeastSquaresFold.Confidences(historyItems: historyItems, weights: weights)
        for e in 0..<events {
            // Alternately an item of the history and one outside it.
            let item = e % 2 == 0 ? Int32(historyItems[(e * 7) % history]) : Int32(3 * history + e)
            c.add(item: item, amount: 0.5 + Double(e % 3))
        }
        let rows = c.items.flatMap { Array(y[(Int($0) * k)..<((Int($0) + 1) * k)]) }
        let lambda = 2.0
        let out = LeastSquaresFold.fold(user: u, gram: gram, regularization: lambda, alpha: alpha, confidences: c, rows: rows)!
        let expected = Self.referenceFold(user: u, y: y, items: items, k: k, alpha: alpha, lambda: lambda, confidences: c)
        var moved = 0.0
        for d in 0..<k {
            moved = max(moved, abs(expected[d] - Double(u[d])))
            let tolerance: Double = 1e-4 * max(1.0, abs(expected[d]))
            #expect(abs(Double(out[d]) - expected[d]) < tolerance, "k \(k) dimension \(d): \(out[d]) vs \(expected[d])")
        }
        #expect(moved > 1e-3, "the events should move the solution")
    }

    /// The fold in two halves (the history's, kept per user, then each request's events) gives the whole fold's bits,
    /// for any events on one history solve: items of the history and new ones, a weight lowered to 0, a history entry
    /// of weight 0, factor counts with a short last Cholesky panel; more than 16 changed weights ask for the whole fold.
    @Test(arguments: [16, 37, 64])
    func foldInTwoHalvesIsTheWholeFold(k: Int) throws {
        let items = 300
        var values = FoldTestValues(state: UInt64(k))
        let (y, gram) = values.rows(items: items, k: k, scale: 0.3)
        let u = (0..<k).map { _ in Float(values.next()) }
        let history = (0..<40).map { UInt32($0 * 5) }
        let weights = (0..<40).map { $0 == 7 ? Float(0) : Float(1 + abs(values.next()) * 3) }
        let base = LeastSquaresFold.Confidences(historyItems: history, weights: weights)
        func rowsOf(_ entries: some Sequence<Int32>) -> [Float] { entries.flatMap { Array(y[(Int($0) * k)..<((Int($0) + 1) * k)]) } }
        let solve = try #require(
            LeastSquaresFold.historySolve(
                gram: gram, regularization: 3, alpha: 10, confidences: base, historyRows: rowsOf(base.items), dimensions: k
            )
        )
        #expect(solve.bytes == (k * (k + 1) / 2 + 2 * k) * 8)
        let requests: [[(Int32, Double)]] = [
            [(201, 2)],
            [(5, 1.5), (201, 0.5), (202, 4), (5, 0.25)],
            [(10, -100), (35, 2), (203, 1)],  // item 10's weight to 0
            (0..<16).map { (Int32(210 + $0), 0.1 * Double($0 + 1)) },
        ]
        for (n, events) in requests.enumerated() {
            var c = base
            for (item, amount) in events { c.add(item: item, amount: amount) }
            let whole = try #require(LeastSquaresFold.fold(user: u, gram: gram, regularization: 3, alpha: 10, confidences: c, rows: rowsOf(c.items)))
            let halves = try #require(
                LeastSquaresFold.fold(user: u, history: solve, alpha: 10, confidences: c, changedRows: rowsOf(c.changedIndices.map { c.items[$0] }))
            )
            #expect(halves == whole, "request \(n)")
            #expect(whole != u, "request \(n)")
        }
        var many = base
        for i in 0..<17 { many.add(item: Int32(220 + i), amount: 1) }
        #expect(LeastSquaresFold.fold(user: u, history: solve, alpha: 10, confidences: many, changedRows: rowsOf(many.changedIndices.map { many.items[$0] })) == nil)
    }

    /// `u + x_after - x_before` with both solutions from their definition (``ReferenceSolve``) over all `items` rows.
    static func referenceFold(
        user u: [Float], y: [Float], items: Int, k: Int, alpha: Double, lambda: Double,
        confidences c: LeastSquaresFold.Confidences
    ) -> [Double] {
        func solution(_ r: [Double]) -> [Double] {
            ReferenceSolve.userSolution(y: y, items: items, k: k, alpha: alpha, lambda: lambda) { i in
                c.items.firstIndex(of: Int32(i)).map { r[$0] } ?? 0
            }
        }
        let (xb, xa) = (solution(c.before), solution(c.after))
        return (0..<k).map { Double(u[$0]) + xa[$0] - xb[$0] }
    }

    /// Nothing changed: `u` itself. A system that is not positive definite (no regularization, no item rows): `u`.
    /// More factors than the fold runs for: nil.
    @Test func foldLeavesTheUserWhenItCannotSolve() {
        let none = LeastSquaresFold.Confidences(historyItems: [UInt32(0)], weights: [Float(1)])
        #expect(LeastSquaresFold.fold(user: [1, 2], gram: [1, 0, 0, 1], regularization: 1, alpha: 1, confidences: none, rows: [1, 0]) == [1, 2])
        var c = LeastSquaresFold.Confidences(historyItems: [UInt32](), weights: [Float]())
        c.add(item: 0, amount: 1)
        #expect(LeastSquaresFold.fold(user: [1, 2], gram: [0, 0, 0, 0], regularization: 0, alpha: 1, confidences: c, rows: [0, 0]) == [1, 2])
        let k = LeastSquaresFold.maxDimensions + 4
        #expect(
            LeastSquaresFold.fold(
                user: [Float](repeating: 1, count: k), gram: [Double](repeating: 0, count: k * k), regularization: 1, alpha: 1,
                confidences: c, rows: [Float](repeating: 0, count: k)
            ) == nil
        )
    }
}

/// Deterministic values in [-1, 1] (a 64-bit LCG) for the folds' random systems.
struct FoldTestValues {
    var state: UInt64

    mutating func next() -> Double {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(Int(state >> 40) % 2001 - 1000) / 1000
    }

    /// `items` rows of `k` values times `scale`, and their Gram.
    mutating func rows(items: Int, k: Int, scale: Double) -> (y: [Float], gram: [Double]) {
        let y = (0..<(items * k)).map { _ in Float(next() * scale) }
        return (y, y.withUnsafeBufferPointer { LeastSquaresFold.gram(rows: $0, dimensions: k) })
    }
}
