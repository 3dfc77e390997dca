import CKairosKernels

/// The real-time fold-in as a least-squares update: what a user's just-now events change in their weighted-ALS
/// (Hu-Koren-Volinsky) solution, added to their trained vector.
///
/// With the item factors `Y` fixed, a user's row solves `A x = b`, `A = Y'Y + lambda I + sum_i alpha r_i y_i y_i'`,
/// `b = sum_i (1 + alpha r_i) y_i` over the items with `r_i > 0`. The fold solves it twice, with the confidences
/// `r` before the events and after them, and returns `u + (x_after - x_before)`: the events move the trained vector
/// by exactly what they change in the solution. (Serving `x_after` itself would throw away the part of the trained
/// vector that the capped, differently decayed stored history does not explain.) `kairos train` and `kairos serve`
/// both call it, so the trainer's validation of the real-time weight scores what the server serves.
public enum LeastSquaresFold {
    /// Largest factor count the fold runs for: its `k^3 / 6` Cholesky factorisation and `n k^2 / 2` confidence term
    /// cost 16-170 µs at 64 factors (10 to 1,000 history items) and would cost milliseconds per request above this.
    public static let maxDimensions = 128

    /// `Y'Y` of `matrix`'s rows (dequantized), row-major `k x k`.
    public static func gram(of matrix: MatrixView) -> [Double] {
        let k = matrix.cols
        var acc = GramAccumulator(dimensions: k)
        for r in 0..<matrix.rows {
            RowEncoder.decodeRow(r, of: matrix, appendingTo: &acc.pending)
            acc.flushIfFull()
        }
        return acc.finish()
    }

    /// `Y'Y` of `rows` (row-major, `k` floats per row): bit for bit ``gram(of:)`` of the same rows as float32.
    public static func gram(rows: UnsafeBufferPointer<Float>, dimensions k: Int) -> [Double] {
        precondition(k > 0 && k <= MatrixView.maxCols && rows.count % k == 0, "rows must hold whole rows of k floats")
        var acc = GramAccumulator(dimensions: k)
        for r in 0..<(rows.count / k) {
            acc.pending.append(contentsOf: rows[(r * k)..<((r + 1) * k)])
            acc.flushIfFull()
        }
        return acc.finish()
    }

    /// `u + x_after - x_before` (module doc) for the weights in `confidences`; `rows` holds the `k` floats of each of
    /// its items, in its order, and `gram` is ``gram(of:)`` of all item rows. Returns `u` unchanged when the events
    /// changed no weight or a system is not positive definite (`regularization` 0 with a degenerate catalogue), and
    /// nil when k is above ``maxDimensions``.
    public static func fold(
        user u: [Float],
        gram: [Double],
        regularization: Double,
        alpha: Double,
        confidences: Confidences,
        rows: [Float]
    ) -> [Float]? {
        let before = confidences.before
        let after = confidences.after
        let k = u.count
        precondition(gram.count == k * k && rows.count == before.count * k && before.count == after.count)
        guard k <= maxDimensions else { return nil }
        guard before != after else { return u }
        var out = u
        let status = out.withUnsafeMutableBufferPointer { o in
            ckk_least_squares_fold(gram, Int32(k), regularization, alpha, rows, before, after, before.count, u, o.baseAddress!)
        }
        precondition(status >= 0, "out of memory for the real-time fold's \(before.count) rows")
        return status == 1 ? out : u
    }

    /// The history's half of the fold for one user: the factorisation of their system before any event, which every
    /// request of theirs shares under one model (``fold(user:history:alpha:confidences:changedRows:)``).
    public final class HistorySolve: Sendable {
        /// `L` (lower triangle, packed), `1 / diag(L)` and `L^-1 b` (C `ckk_fold_history`).
        let state: [Double]
        /// Factors.
        public let dimensions: Int
        /// Bytes held.
        public var bytes: Int { state.count * MemoryLayout<Double>.stride }

        init(state: [Double], dimensions: Int) {
            self.state = state
            self.dimensions = dimensions
        }
    }

    /// Doubles a ``HistorySolve`` of `k` factors holds: `L`'s lower triangle, `1 / diag(L)` and `L^-1 b`.
    public static func stateCount(dimensions k: Int) -> Int { k * (k + 1) / 2 + 2 * k }

    /// The history's half for `confidences`' history entries (its first ``Confidences/historyCount``, whose `k` floats
    /// each `historyRows` holds in order); nil when the system is not positive definite or k is above
    /// ``maxDimensions``.
    public static func historySolve(
        gram: [Double],
        regularization: Double,
        alpha: Double,
        confidences: Confidences,
        historyRows: [Float],
        dimensions k: Int
    ) -> HistorySolve? {
        let n = confidences.historyCount
        precondition(gram.count == k * k && historyRows.count == n * k)
        guard k <= maxDimensions else { return nil }
        var state = [Double](repeating: 0, count: stateCount(dimensions: k))
        let status = confidences.before.withUnsafeBufferPointer { before in
            ckk_fold_history(gram, Int32(k), regularization, alpha, historyRows, before.baseAddress, n, &state)
        }
        precondition(status >= 0, "out of memory for the real-time fold's \(n) history rows")
        return status == 1 ? HistorySolve(state: state, dimensions: k) : nil
    }

    /// The fold from the history's half: the same bits as ``fold(user:gram:regularization:alpha:confidences:rows:)``
    /// for the same model, user and events. `changedRows` holds the `k` floats of each entry of
    /// ``Confidences/changedIndices``, in order. Nil when the events change more weights than this half takes (16)
    /// or its small system is singular: run the whole fold instead.
    public static func fold(
        user u: [Float],
        history: HistorySolve,
        alpha: Double,
        confidences: Confidences,
        changedRows: [Float]
    ) -> [Float]? {
        let k = u.count
        let changed = confidences.changedIndices
        precondition(history.dimensions == k && changedRows.count == changed.count * k)
        guard !changed.isEmpty else { return u }
        let before = changed.map { confidences.before[$0] }
        let after = changed.map { confidences.after[$0] }
        var out = u
        let status = out.withUnsafeMutableBufferPointer { o in
            ckk_fold_events(history.state, Int32(k), alpha, changedRows, before, after, changed.count, u, o.baseAddress!)
        }
        return status == 1 ? out : nil
    }

    /// The confidence weights of one fold: the user's stored history, normalised to mean 1 as training normalises a
    /// user's row, and what the events add to it at the same scale.
    public struct Confidences: Sendable, Equatable {
        /// Item row of each entry: the history's items in stored order, then event items not in it, in event order.
        public private(set) var items: [Int32] = []
        /// Weight `r` of each entry without the events.
        public private(set) var before: [Double] = []
        /// Weight `r` of each entry with the events (never below 0).
        public private(set) var after: [Double] = []
        /// History weights are multiplied by this: their count over their sum (1 without history).
        public let scale: Double
        /// Entries that are the history's (the first ones).
        public let historyCount: Int

        /// Entries for a history of `items` with stored (decayed, unnormalised) `weights`.
        public init(historyItems: some Collection<UInt32>, weights: some Collection<Float>) {
            precondition(historyItems.count == weights.count)
            // Through contiguous buffers: across the module boundary the generic collections are not specialised,
            // and element by element they cost as much as a 10-item fold.
            let w = weights.withContiguousStorageIfAvailable { Self.normalised($0) } ?? Self.normalised(Array(weights))
            scale = w.scale
            historyCount = weights.count
            before = w.values
            after = before
            items = historyItems.withContiguousStorageIfAvailable { $0.map { Int32(bitPattern: $0) } }
                ?? historyItems.map { Int32(bitPattern: $0) }
        }

        /// `weights` times their count over their sum (1 when that sum is 0 or not finite), and that scale.
        private static func normalised(_ weights: UnsafeBufferPointer<Float>) -> (values: [Double], scale: Double) {
            var sum = 0.0
            for v in weights { sum += Double(v) }
            let scale = sum > 0 && sum.isFinite ? Double(weights.count) / sum : 1
            return (weights.map { Double($0) * scale }, scale)
        }

        private static func normalised(_ weights: [Float]) -> (values: [Double], scale: Double) {
            weights.withUnsafeBufferPointer { normalised($0) }
        }

        /// Adds an event on item `row` worth `amount` (real-time weight x strength x decay) in stored-weight units;
        /// a negative amount lowers the item's weight, to 0 at most. Zero and non-finite amounts change nothing.
        public mutating func add(item row: Int32, amount: Double) {
            let r = amount * scale
            guard r != 0, r.isFinite else { return }
            if let n = items.firstIndex(of: row) {
                after[n] = max(0, after[n] + r)
            } else if r > 0 {
                items.append(row)
                before.append(0)
                after.append(r)
            }
        }

        /// Whether the events changed any weight.
        public var changed: Bool { before != after }

        /// The entries whose weight the events changed, in order.
        public var changedIndices: [Int] { before.indices.filter { before[$0] != after[$0] } }
    }

}

/// Sums `y y'` over rows in C (`ckk_gram_accumulate`), 4,096 rows per call, so that a catalogue is never copied
/// whole; every caller passes the same blocks, so equal rows give equal bits.
private struct GramAccumulator {
    /// Rows per call: a multiple of the C function's 256-row blocks.
    static let block = 4096
    let k: Int
    var total: [Double]
    /// Decoded rows not yet summed: callers append a row, then call ``flushIfFull()``.
    var pending: [Float] = []

    init(dimensions k: Int) {
        self.k = k
        total = [Double](repeating: 0, count: k * k)
    }

    mutating func flushIfFull() {
        if pending.count >= Self.block * k { flush() }
    }

    private mutating func flush() {
        let rows = pending.count / k
        total.withUnsafeMutableBufferPointer { t in ckk_gram_accumulate(pending, rows, Int32(k), t.baseAddress!) }
        pending.removeAll(keepingCapacity: true)
    }

    mutating func finish() -> [Double] {
        if !pending.isEmpty { flush() }
        for a in 0..<k {
            for b in (a + 1)..<max(a + 1, k) { total[a * k + b] = total[b * k + a] }
        }
        return total
    }
}
