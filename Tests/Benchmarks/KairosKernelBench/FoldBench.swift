import CKairosBenchPeer
import Glibc
import KairosKernels

/// `--fold`: the cost of the least-squares real-time fold (``LeastSquaresFold``) per request, as `kairos serve` pays it
/// (confidences from a history, four events, the rows gathered, the two solves), for histories of 10, 100 and 1,000
/// items, interleaved with its peer: the additive fold of the same four events (their rows summed into the user
/// vector, renormalised), and the events' half alone on a kept history solve (a user in the server's fold cache;
/// checked to give the whole fold's bits). Also the Gram of `--rows` rows, which a server computes once per model load.
func runFoldBenchmark(options: BenchOptions) -> Never {
    let k = options.dims
    let items = 10_000
    var rng = SplitMix64(seed: options.seed)
    var y = [Float](repeating: 0, count: items * k)
    y.withUnsafeMutableBufferPointer { rng.fillGaussian($0, sigma: 0.1) }
    let gram = y.withUnsafeBufferPointer { LeastSquaresFold.gram(rows: $0, dimensions: k) }
    var u = [Float](repeating: 0, count: k)
    u.withUnsafeMutableBufferPointer { rng.fillGaussian($0, sigma: 0.5) }
    let calls = 200
    var cases: [Samples] = []
    var sink: Float = 0
    for historySize in [10, 100, 1000] {
        // Distinct history items, heaviest first, and four events: two on history items, two on new ones.
        var seen = Set<Int>()
        var history: [UInt32] = []
        while history.count < historySize {
            let i = rng.next(below: items)
            if seen.insert(i).inserted { history.append(UInt32(i)) }
        }
        let weights = (0..<historySize).map { Float(historySize - $0) }
        var fresh: [Int32] = []
        while fresh.count < 2 {
            let i = rng.next(below: items)
            if !seen.contains(i) { fresh.append(Int32(i)) }
        }
        let events: [(Int32, Double)] = [(Int32(history[0]), 2), (fresh[0], 1), (Int32(history[historySize / 2]), 4), (fresh[1], 8)]
        // The events' half on a kept history solve (what `kairos serve` pays for a user in its fold cache), checked
        // to give the whole fold's bits.
        var kept = LeastSquaresFold.Confidences(historyItems: history, weights: weights)
        for (item, amount) in events { kept.add(item: item, amount: amount) }
        func rowsOf(_ entries: [Int32]) -> [Float] { entries.flatMap { y[(Int($0) * k)..<((Int($0) + 1) * k)] } }
        let solve = LeastSquaresFold.historySolve(
            gram: gram, regularization: 50, alpha: 10, confidences: kept, historyRows: rowsOf(Array(kept.items.prefix(historySize))),
            dimensions: k
        )!
        let changedRows = rowsOf(kept.changedIndices.map { kept.items[$0] })
        let whole = LeastSquaresFold.fold(user: u, gram: gram, regularization: 50, alpha: 10, confidences: kept, rows: rowsOf(kept.items))
        guard LeastSquaresFold.fold(user: u, history: solve, alpha: 10, confidences: kept, changedRows: changedRows) == whole else {
            print("the fold in two halves differs from the whole fold (\(historySize) history items)")
            exit(1)
        }
        var eventsHalf = Samples(name: "least-squares events half, \(historySize)", unit: "us", bytes: 0)
        var leastSquares = Samples(name: "least-squares, \(historySize) items", unit: "us", bytes: 0)
        var additive = Samples(name: "additive, \(historySize) items", unit: "us", bytes: 0)
        for round in 0..<(options.warmup + options.rounds) {
            var t = ckairos_bench_now_ns()
            for _ in 0..<calls {
                var c = LeastSquaresFold.Confidences(historyItems: history, weights: weights)
                for (item, amount) in events { c.add(item: item, amount: amount) }
                var rows: [Float] = []
                rows.reserveCapacity(c.items.count * k)
                for i in c.items { rows.append(contentsOf: y[(Int(i) * k)..<((Int(i) + 1) * k)]) }
                let out = LeastSquaresFold.fold(user: u, gram: gram, regularization: 50, alpha: 10, confidences: c, rows: rows)!
                sink += out[0]
            }
            let ls = ckairos_bench_now_ns() - t
            t = ckairos_bench_now_ns()
            for _ in 0..<calls {
                var sum = u.map(Double.init)
                for (item, amount) in events {
                    let row = y[(Int(item) * k)..<((Int(item) + 1) * k)]
                    for (d, v) in row.enumerated() { sum[d] += amount * Double(v) }
                }
                let n = sum.reduce(0) { $0 + $1 * $1 }.squareRoot()
                sink += Float(sum[0] / n)
            }
            let add = ckairos_bench_now_ns() - t
            t = ckairos_bench_now_ns()
            for _ in 0..<calls {
                var c = LeastSquaresFold.Confidences(historyItems: history, weights: weights)
                for (item, amount) in events { c.add(item: item, amount: amount) }
                let rows = rowsOf(c.changedIndices.map { c.items[$0] })
                sink += LeastSquaresFold.fold(user: u, history: solve, alpha: 10, confidences: c, changedRows: rows)![0]
            }
            let half = ckairos_bench_now_ns() - t
            if round >= options.warmup {
                leastSquares.append(ls / UInt64(calls))
                additive.append(add / UInt64(calls))
                eventsHalf.append(half / UInt64(calls))
            }
        }
        cases += [leastSquares, eventsHalf, additive]
    }
    // The Gram of a catalogue, once per model load.
    var matrix = [Float](repeating: 0, count: options.rows * k)
    matrix.withUnsafeMutableBufferPointer { rng.fillGaussian($0, sigma: 0.1) }
    var gramLoad = Samples(name: "gram of \(options.rows) rows", unit: "ms", bytes: options.rows * k * 4)
    for round in 0..<(options.warmup + min(options.rounds, 5)) {
        let t = ckairos_bench_now_ns()
        let g = matrix.withUnsafeBufferPointer { LeastSquaresFold.gram(rows: $0, dimensions: k) }
        let ns = ckairos_bench_now_ns() - t
        sink += Float(g[0])
        if round >= options.warmup { gramLoad.append(ns) }
    }
    cases.append(gramLoad)
    blackHole(sink)
    print("real-time fold, \(k) factors, medians of \(options.rounds) rounds of \(calls) calls\n")
    print(Format.pad("case", 34, right: false) + Format.pad("unit", 5) + Format.pad("min", 10) + Format.pad("median", 10) + Format.pad("p90", 10))
    for c in cases {
        print(
            Format.pad(c.name, 34, right: false) + Format.pad(c.unit, 5) + Format.pad(Format.fixed(c.min, decimals: 2), 10)
                + Format.pad(Format.fixed(c.median, decimals: 2), 10) + Format.pad(Format.fixed(c.p90, decimals: 2), 10)
        )
    }
    exit(0)
}
