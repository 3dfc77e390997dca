import KairosKernels
import Testing

@Suite struct ScoringKernelsTests {
    static let colsList = [4, 8, 12, 16, 20, 60, 64, 68, 100, 128, 1020, 1024]

    /// Every (ISA, encoding, cols) combination, so each tail length runs at each level.
    static let dotCases: [(KernelCase, Int)] = KernelCase.all.flatMap { c in colsList.map { (c, $0) } }

    /// The runtime check always offers the portable level, lists levels in order, and `best` is the highest.
    @Test func supportedISAsAreConsistent() {
        let isas = ScoringKernels.supportedISAs
        #expect(isas.first == .portable)
        #expect(isas == isas.sorted())
        #expect(ScoringKernels.best.isa == isas.last)
        for isa in KernelISA.allCases {
            #expect((ScoringKernels(isa: isa) != nil) == isas.contains(isa))
        }
    }

    /// dot and gather match the double-precision reference over the dequantized rows, including the last row,
    /// which ends at a PROT_NONE page (an over-read would crash the test process).
    @Test(arguments: dotCases)
    func dotAndGatherMatchReference(_ kc: KernelCase, cols: Int) {
        let rows = 9
        let m = GuardedMatrix(
            values: randomValues(rows: rows, cols: cols, seed: UInt64(cols) &* 31 &+ UInt64(kc.encoding.rawValue)),
            rows: rows, cols: cols, encoding: kc.encoding
        )
        let query = randomValues(rows: 1, cols: cols, seed: 0xC0FFEE &+ UInt64(cols))
        let kernels = kc.kernels
        let refs = (0..<rows).map { referenceDot(query, row: $0, of: m.view) }
        query.withUnsafeBufferPointer { q in
            for r in 0..<rows {
                let got = kernels.dot(q, row: r, of: m.view)
                #expect(agrees(got, refs[r]), "row \(r): \(got) vs \(refs[r].value)")
            }
            // Repeats, the last row, and an order that is not sequential.
            let order: [Int32] = [Int32(rows - 1), 0, 3, Int32(rows - 1), 7, 1, 1, 8, 2, 5, 4, 6]
            var scores = [Float](repeating: .nan, count: order.count)
            order.withUnsafeBufferPointer { o in
                scores.withUnsafeMutableBufferPointer { kernels.gather(q, rows: o, of: m.view, into: $0) }
            }
            for (i, r) in order.enumerated() {
                #expect(agrees(scores[i], refs[Int(r)]), "gather[\(i)] row \(r): \(scores[i]) vs \(refs[Int(r)].value)")
            }
        }
    }

    /// gather over many random rows (more than the prefetch distance) equals dot row by row, bit for bit.
    @Test(arguments: KernelCase.all)
    func gatherEqualsDot(_ kc: KernelCase) {
        let rows = 500, cols = 68
        let m = GuardedMatrix(values: randomValues(rows: rows, cols: cols, seed: 7), rows: rows, cols: cols,
                              encoding: kc.encoding)
        var rng = SplitMix64(seed: 11)
        let picks = (0..<300).map { _ in Int32.random(in: 0..<Int32(rows), using: &rng) } + [Int32(rows - 1)]
        let query = randomValues(rows: 1, cols: cols, seed: 12)
        var scores = [Float](repeating: .nan, count: picks.count)
        query.withUnsafeBufferPointer { q in
            picks.withUnsafeBufferPointer { p in
                scores.withUnsafeMutableBufferPointer { kc.kernels.gather(q, rows: p, of: m.view, into: $0) }
            }
            for (i, r) in picks.enumerated() {
                #expect(scores[i] == kc.kernels.dot(q, row: Int(r), of: m.view))
            }
        }
    }

    /// The top-k scan scores every row exactly as dot does, bit for bit, at every width (64 has its own path with
    /// the query in registers) and for row counts that leave a tail after the four-row steps.
    @Test(arguments: dotCases)
    func scanScoresEqualDotBitForBit(_ kc: KernelCase, cols: Int) {
        for rows in [37, 64] {
            let m = GuardedMatrix(values: randomValues(rows: rows, cols: cols, seed: UInt64(cols * rows)), rows: rows,
                                  cols: cols, encoding: kc.encoding)
            let query = randomValues(rows: 1, cols: cols, seed: 7 &+ UInt64(cols))
            query.withUnsafeBufferPointer { q in
                let all = kc.kernels.topK(q, of: m.view, k: rows)
                #expect(all.count == rows)
                for hit in all {
                    let dot = kc.kernels.dot(q, row: Int(hit.row), of: m.view)
                    #expect(hit.score.bitPattern == dot.bitPattern, "\(kc) cols \(cols) row \(hit.row)")
                }
            }
        }
    }

    /// `scores` writes every row's dot product, bit for bit as dot gives it, and nothing past the last row.
    @Test(arguments: dotCases)
    func scoresEqualDotBitForBit(_ kc: KernelCase, cols: Int) {
        for rows in [1, 37, 64] {
            let m = GuardedMatrix(values: randomValues(rows: rows, cols: cols, seed: UInt64(cols + rows)), rows: rows,
                                  cols: cols, encoding: kc.encoding)
            let query = randomValues(rows: 1, cols: cols, seed: 5 &+ UInt64(cols))
            var out = [Float](repeating: .nan, count: rows + 1)
            query.withUnsafeBufferPointer { q in
                out.withUnsafeMutableBufferPointer { kc.kernels.scores(q, of: m.view, into: $0) }
                for r in 0..<rows {
                    let dot = kc.kernels.dot(q, row: r, of: m.view)
                    #expect(out[r].bitPattern == dot.bitPattern, "\(kc) cols \(cols) row \(r)")
                }
            }
            #expect(out[rows].isNaN)
        }
    }

    /// Several queries scanned together get, each, exactly the scores a scan of that query alone gives, for row
    /// counts below one block, across blocks and with a tail after the four-row steps; nothing past the last row
    /// is written.
    @Test(arguments: KernelCase.all.flatMap { c in [4, 20, 64, 1024].map { (c, $0) } })
    func multiQueryScoresEqualSingleQueryScores(_ kc: KernelCase, cols: Int) {
        for (rows, queries) in [(1, 1), (37, 3), (301, 8), (1027, 5)] {
            let m = GuardedMatrix(values: randomValues(rows: rows, cols: cols, seed: UInt64(3 * cols + rows)),
                                  rows: rows, cols: cols, encoding: kc.encoding)
            let qPointers = (0..<queries).map { j in
                let q = UnsafeMutableBufferPointer<Float>.allocate(capacity: cols)
                _ = q.initialize(from: randomValues(rows: 1, cols: cols, seed: 11 &+ UInt64(cols * 31 + j)))
                return UnsafeBufferPointer(q)
            }
            defer { qPointers.forEach { $0.deallocate() } }
            let outs = (0..<queries).map { _ in UnsafeMutableBufferPointer<Float>.allocate(capacity: rows + 1) }
            defer { outs.forEach { $0.deallocate() } }
            outs.forEach { $0.initialize(repeating: .nan) }
            kc.kernels.scores(qPointers, of: m.view, into: outs)
            for j in 0..<queries {
                var alone = [Float](repeating: .nan, count: rows + 1)
                alone.withUnsafeMutableBufferPointer { kc.kernels.scores(qPointers[j], of: m.view, into: $0) }
                #expect(outs[j].map(\.bitPattern) == alone.map(\.bitPattern), "\(kc) cols \(cols) rows \(rows) query \(j)")
                #expect(outs[j][rows].isNaN)
            }
        }
    }

    /// All levels produce the same scores within float tolerance (they run concurrently in this process).
    @Test(arguments: RowEncoding.allCases)
    func levelsAgree(_ encoding: RowEncoding) {
        let rows = 64, cols = 1020
        let m = GuardedMatrix(values: randomValues(rows: rows, cols: cols, seed: 99), rows: rows, cols: cols,
                              encoding: encoding)
        let query = randomValues(rows: 1, cols: cols, seed: 100)
        query.withUnsafeBufferPointer { q in
            for r in 0..<rows {
                let ref = referenceDot(query, row: r, of: m.view)
                for isa in ScoringKernels.supportedISAs {
                    let got = ScoringKernels(isa: isa)!.dot(q, row: r, of: m.view)
                    #expect(agrees(got, ref), "\(isa) row \(r)")
                }
            }
        }
    }
}
