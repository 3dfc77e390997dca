#if canImport(Glibc)
import Glibc
#endif
import KairosKernels
import Testing

/// The vectorised cosine rescaling equals the scalar formula bit for bit: `dot / (queryNorm * norm)`, NaN where that
/// product is not positive or the result is not finite, on lengths that are and are not multiples of 16.
@Test func cosinesMatchTheScalarFormula() {
    var rng = SplitMix64(seed: 2026)
    let specialDots: [Float] = [.nan, .infinity, -.infinity, 3e38, -3e38, 0]
    let specialNorms: [Float] = [0, -1, 1e-30, .nan, .infinity]
    for count in [0, 1, 15, 16, 17, 100] {
        let dots = (0..<count).map { _ in Bool.random(using: &rng) ? Float.random(in: -5...5, using: &rng) : specialDots.randomElement(using: &rng)! }
        let norms = (0..<count).map { _ in Bool.random(using: &rng) ? Float.random(in: 0.1...3, using: &rng) : specialNorms.randomElement(using: &rng)! }
        let q: Float = 0.7
        var out = dots
        norms.withUnsafeBufferPointer { n in out.withUnsafeMutableBufferPointer { ScoringKernels.cosines($0, norms: n, queryNorm: q) } }
        for j in 0..<count {
            let d = q * norms[j]
            let v = d > 0 ? dots[j] / d : .nan
            let expected: Float = v.isFinite ? v : .nan
            #expect(out[j].bitPattern == expected.bitPattern || (out[j].isNaN && expected.isNaN), "row \(j): dot \(dots[j]) norm \(norms[j])")
        }
    }
}

@Suite struct TopKTests {
    /// Row counts around the scan block size (1024): a single row, less than a block, two blocks plus one.
    static let cases: [(KernelCase, Int)] = KernelCase.all.flatMap { c in [1, 1000, 2049].map { (c, $0) } }

    /// Expected top-k from the kernel's own per-row scores: sort by score (desc) then row (asc), skip excluded.
    static func expected(_ scores: [Float], k: Int, excluded: Set<Int32> = []) -> [ScoredRow] {
        let all = scores.enumerated()
            .filter { !$0.element.isNaN && !excluded.contains(Int32($0.offset)) }
            .map { ScoredRow(row: Int32($0.offset), score: $0.element) }
            .sorted { $0.score != $1.score ? $0.score > $1.score : $0.row < $1.row }
        return Array(all.prefix(k))
    }

    static func gatherAll(_ kernels: ScoringKernels, _ q: UnsafeBufferPointer<Float>, _ m: MatrixView) -> [Float] {
        let rows = (0..<Int32(m.rows)).map { $0 }
        var scores = [Float](repeating: .nan, count: m.rows)
        rows.withUnsafeBufferPointer { r in
            scores.withUnsafeMutableBufferPointer { kernels.gather(q, rows: r, of: m, into: $0) }
        }
        return scores
    }

    /// topK equals a full sort of all scores for k in [0, 1, 10, 1000], with and without exclusions, and its
    /// scores match the double-precision reference ranking position by position.
    @Test(arguments: cases)
    func topKEqualsFullSort(_ kc: KernelCase, rows: Int) {
        let cols = 20
        let m = GuardedMatrix(values: randomValues(rows: rows, cols: cols, seed: UInt64(rows)), rows: rows,
                              cols: cols, encoding: kc.encoding)
        let query = randomValues(rows: 1, cols: cols, seed: 5)
        let kernels = kc.kernels
        let refs = (0..<rows).map { referenceDot(query, row: $0, of: m.view) }
        query.withUnsafeBufferPointer { q in
            let scores = Self.gatherAll(kernels, q, m.view)
            // Exclude the 3 best rows (so exclusion changes the answer) and every 7th row.
            let best3 = Self.expected(scores, k: 3).map(\.row)
            let excluded = Set(best3 + stride(from: Int32(0), to: Int32(rows), by: 7))
            for k in [0, 1, 10, 1000] {
                let got = kernels.topK(q, of: m.view, k: k)
                #expect(got == Self.expected(scores, k: k), "k=\(k)")
                #expect(got.count == min(k, rows))
                // Against the reference: the i-th best score agrees within float tolerance.
                let refSorted = refs.sorted { $0.value > $1.value }
                for (i, item) in got.enumerated() {
                    #expect(agrees(item.score, refSorted[i]), "k=\(k) position \(i)")
                }
                let gotEx = kernels.topK(q, of: m.view, k: k, excluding: ExclusionSet(excluded))
                #expect(gotEx == Self.expected(scores, k: k, excluded: excluded), "k=\(k) with exclusions")
                #expect(gotEx.allSatisfy { !excluded.contains($0.row) })
            }
        }
    }

    /// With per-row offsets the ranking is by dot + offset (offsets of -infinity remove rows), across blocks.
    @Test(arguments: cases)
    func topKWithOffsetsRanksByDotPlusOffset(_ kc: KernelCase, rows: Int) {
        let cols = 12
        let m = GuardedMatrix(values: randomValues(rows: rows, cols: cols, seed: UInt64(rows) + 3), rows: rows,
                              cols: cols, encoding: kc.encoding)
        let query = randomValues(rows: 1, cols: cols, seed: 8)
        let noise = randomValues(rows: 1, cols: rows, seed: 99)
        var offsets = [Float](repeating: 0, count: rows)
        for i in 0..<rows { offsets[i] = i % 5 == 0 ? -Float.infinity : noise[i] }
        let scores: [Float] = query.withUnsafeBufferPointer { q in Self.gatherAll(kc.kernels, q, m.view) }
        var combined = [Float](repeating: 0, count: rows)
        for i in 0..<rows { combined[i] = scores[i] + offsets[i] }
        let excluded: Set<Int32> = [2]
        for k in [1, 10, 1000] {
            var got: [ScoredRow] = []
            query.withUnsafeBufferPointer { q in
                offsets.withUnsafeBufferPointer { off in
                    got = kc.kernels.topK(q, of: m.view, k: k, excluding: ExclusionSet(excluded), adding: off)
                }
            }
            got = got.filter { $0.score.isFinite }
            let want = Self.expected(combined, k: k, excluded: excluded).filter { $0.score.isFinite }
            #expect(got == want, "k=\(k)")
            #expect(got.allSatisfy { $0.row % 5 != 0 && $0.row != 2 })
        }
    }

    /// Equal scores (duplicated rows) come back lower row first, across block boundaries.
    @Test(arguments: KernelCase.all)
    func tiesBreakByLowerRow(_ kc: KernelCase) {
        let rows = 2049, cols = 12
        let distinct = randomValues(rows: 5, cols: cols, seed: 3)
        let values = (0..<rows).flatMap { r in distinct[(r % 5) * cols..<(r % 5 + 1) * cols] }
        let m = GuardedMatrix(values: values, rows: rows, cols: cols, encoding: kc.encoding)
        let query = randomValues(rows: 1, cols: cols, seed: 4)
        query.withUnsafeBufferPointer { q in
            let got = kc.kernels.topK(q, of: m.view, k: 1000)
            #expect(got == Self.expected(Self.gatherAll(kc.kernels, q, m.view), k: 1000))
            // All 1000 results come from the best group plus part of the second: rows ascending within a score.
            for (a, b) in zip(got, got.dropFirst()) where a.score == b.score {
                #expect(a.row < b.row)
            }
        }
    }

    /// k larger than the number of eligible rows returns every eligible row, best first.
    @Test(arguments: KernelCase.all)
    func kLargerThanRowsReturnsAllRows(_ kc: KernelCase) {
        for rows in [1, 37] {
            let m = GuardedMatrix(values: randomValues(rows: rows, cols: 8, seed: 8), rows: rows, cols: 8,
                                  encoding: kc.encoding)
            let query = randomValues(rows: 1, cols: 8, seed: 9)
            query.withUnsafeBufferPointer { q in
                let got = kc.kernels.topK(q, of: m.view, k: 1000)
                #expect(Set(got.map(\.row)) == Set(0..<Int32(rows)))
                #expect(got == Self.expected(Self.gatherAll(kc.kernels, q, m.view), k: 1000))
                let gotEx = kc.kernels.topK(q, of: m.view, k: 50, excluding: ExclusionSet([0]))
                #expect(gotEx.count == rows - 1)
            }
        }
    }

    /// A NaN in the query makes every score NaN: topK returns [] (documented), without crashing.
    @Test(arguments: KernelCase.all)
    func nanQueryReturnsEmpty(_ kc: KernelCase) {
        let rows = 1500, cols = 16
        let m = GuardedMatrix(values: randomValues(rows: rows, cols: cols, seed: 1), rows: rows, cols: cols,
                              encoding: kc.encoding)
        var query = randomValues(rows: 1, cols: cols, seed: 2)
        query[5] = .nan
        query.withUnsafeBufferPointer { q in
            #expect(kc.kernels.topK(q, of: m.view, k: 10).isEmpty)
            #expect(kc.kernels.topK(q, of: m.view, k: 1000).isEmpty)
        }
    }

    /// Rows whose score is NaN (a NaN stored in a float32 row) are skipped; the rest are ranked normally.
    @Test(arguments: ScoringKernels.supportedISAs)
    func nanRowsAreSkipped(_ isa: KernelISA) {
        let rows = 1100, cols = 16
        let nanRows: Set<Int32> = [0, 1, 500, 1024, 1099]
        let m = GuardedMatrix(values: randomValues(rows: rows, cols: cols, seed: 13), rows: rows, cols: cols,
                              encoding: .float32) { base, stride in
            for r in nanRows { base.storeBytes(of: Float.nan, toByteOffset: Int(r) * stride + 8, as: Float.self) }
        }
        let query = randomValues(rows: 1, cols: cols, seed: 14)
        let kernels = ScoringKernels(isa: isa)!
        query.withUnsafeBufferPointer { q in
            let got = kernels.topK(q, of: m.view, k: 1000)
            #expect(got.count == 1000)
            #expect(got.allSatisfy { !$0.score.isNaN && !nanRows.contains($0.row) })
            #expect(got == Self.expected(Self.gatherAll(kernels, q, m.view), k: 1000))
            #expect(kernels.topK(q, of: m.view, k: 1000, excluding: ExclusionSet(0..<1000)).count == 100 - 2)
        }
    }
}

@Suite struct ExclusionSetTests {
    /// Rows in any order, with repeats, become one sorted copy of each; membership holds for exactly those rows.
    @Test func sortsAndDeduplicates() {
        let set = ExclusionSet([7, 1, 7, 3, 1, 1, 9, 3] as [Int32])
        #expect(set.sortedRows == [1, 3, 7, 9])
        #expect((0..<12).filter { set.contains(Int32($0)) } == [1, 3, 7, 9])
        #expect(ExclusionSet([] as [Int32]).sortedRows.isEmpty && ExclusionSet([4, 4, 4] as [Int32]).sortedRows == [4])
    }
}

/// 3000 rows that differ only below int8 resolution: column 0 is 100 and column 1 runs over [1, 1.17), all code 1 at
/// scale 100/127. Against ``queryOfRowsBelowInt8Resolution`` both the dot product and the cosine grow with the row,
/// so the best rows are the last ones, which the codes alone cannot tell apart.
private func rowsBelowInt8Resolution(_ encoding: RowEncoding) -> GuardedMatrix {
    let rows = 3000
    let values = (0..<rows).flatMap { r -> [Float] in [100, 1 + Float(r) * 0.17 / 3000, 0, 0] }
    return GuardedMatrix(values: values, rows: rows, cols: 4, encoding: encoding)
}

/// Quantizes exactly: no slack for a bounded scan to hide behind.
private let queryOfRowsBelowInt8Resolution: [Float] = [127, 127, 0, 0]

@Suite struct BoundedScanTests {
    /// Bounds exist exactly on a CPU with AVX-512 VNNI (for every encoding), and not for rows holding a NaN.
    @Test func boundsExistOnlyWhereTheyCanRun() {
        let values = randomValues(rows: 40, cols: 16, seed: 1)
        for isa in ScoringKernels.supportedISAs {
            let kernels = ScoringKernels(isa: isa)!
            for encoding in RowEncoding.allCases {
                let m = GuardedMatrix(values: values, rows: 40, cols: 16, encoding: encoding)
                let canRun = isa == .avx512 && Self.vnni
                #expect((ScanBounds(matrix: m.view, kernels: kernels) != nil) == canRun, "\(isa)/\(encoding)")
            }
            let poisoned = GuardedMatrix(values: values, rows: 40, cols: 16, encoding: .float32) { base, stride in
                base.storeBytes(of: Float.nan, toByteOffset: 7 * stride + 8, as: Float.self)
            }
            #expect(ScanBounds(matrix: poisoned.view, kernels: kernels) == nil)
        }
    }

    /// Whether /proc/cpuinfo lists AVX-512 VNNI (read independently of the kernels' own CPU check).
    static let vnni: Bool = {
        guard let f = fopen("/proc/cpuinfo", "r") else { return false }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self).contains(" avx512_vnni")
    }()

    /// Where the quantized query sees no difference at all, the bound's slack term carries the ranking: the query
    /// [127, 0.4, 0, 0] quantizes to [127, 0, 0, 0], every row is [100, v, 0, 0] with v growing with the row, so the
    /// best rows sit in the last, bounded blocks and score alike to the integer pass. None may be pruned
    /// (checked: without the slack term the bounded scan loses them).
    @Test func slackCarriesWhatTheQuantizedQueryCannotSee() throws {
        let rows = 3000
        let values = (0..<rows).flatMap { r -> [Float] in [100, Float(r) / 30, 0, 0] }
        let m = GuardedMatrix(values: values, rows: rows, cols: 4, encoding: .int8)
        let kernels = ScoringKernels.best
        guard let bounds = ScanBounds(matrix: m.view, kernels: kernels) else { return }
        let query: [Float] = [127, 0.4, 0, 0]
        query.withUnsafeBufferPointer { q in
            for k in [1, 10, 100] {
                let exact = kernels.topK(q, of: m.view, k: k)
                #expect(exact.count == k && exact.allSatisfy { $0.row >= 2048 })  // all in the bounded third block
                #expect(kernels.topK(q, of: m.view, k: k, excluding: nil, adding: nil, bounds: bounds) == exact, "k \(k)")
            }
        }
    }

    /// Float rows that differ only below int8 resolution quantize to the same codes, which understate the best of
    /// them; the per-row error term keeps those (checked: without it the bounded scan loses them).
    @Test(arguments: [RowEncoding.float32, .float16])
    func rowErrorCarriesWhatTheCodesCannotSee(_ encoding: RowEncoding) throws {
        let m = rowsBelowInt8Resolution(encoding)
        let kernels = ScoringKernels.best
        guard let bounds = ScanBounds(matrix: m.view, kernels: kernels) else { return }
        let query = queryOfRowsBelowInt8Resolution
        query.withUnsafeBufferPointer { q in
            for k in [1, 10, 100] {
                let exact = kernels.topK(q, of: m.view, k: k)
                #expect(exact.count == k && exact.allSatisfy { $0.row >= 2048 })
                #expect(kernels.topK(q, of: m.view, k: k, excluding: nil, adding: nil, bounds: bounds) == exact, "k \(k)")
            }
        }
    }

    /// A bounded scan returns exactly what the exact scan returns (rows, scores, tie order), in every encoding, with
    /// and without offsets (some -infinity) and exclusions, for every k, across scan blocks and partial blocks of 16,
    /// and for queries the quantizer declines (zero, NaN) or quantizes coarsely (one huge component).
    @Test(arguments: [(1, 64), (15, 64), (17, 20), (1000, 64), (2049, 64), (3001, 128), (777, 4)], RowEncoding.allCases)
    func boundedScanEqualsExactScan(shape: (rows: Int, cols: Int), encoding: RowEncoding) throws {
        let (rows, cols) = shape
        let kernels = ScoringKernels.best
        let distinct = randomValues(rows: rows, cols: cols, seed: UInt64(rows * 31 + cols))
        // Every 50th row repeats row 0, so equal scores meet across blocks.
        var values = distinct
        for r in stride(from: 50, to: rows, by: 50) { for c in 0..<cols { values[r * cols + c] = distinct[c] } }
        let m = GuardedMatrix(values: values, rows: rows, cols: cols, encoding: encoding)
        guard let bounds = ScanBounds(matrix: m.view, kernels: kernels) else {
            #expect(!(kernels.isa == .avx512 && Self.vnni), "bounds missing on a CPU that can run them")
            return
        }
        var queries = [randomValues(rows: 1, cols: cols, seed: 7), [Float](repeating: 0, count: cols)]
        var nan = randomValues(rows: 1, cols: cols, seed: 8)
        nan[cols / 2] = .nan
        queries.append(nan)
        var spiky = randomValues(rows: 1, cols: cols, seed: 9)
        spiky[0] = 1_000
        queries.append(spiky)
        let noise = randomValues(rows: 1, cols: rows, seed: 11)
        let offsets = (0..<rows).map { $0 % 9 == 4 ? -Float.infinity : noise[$0] * 3 }
        let excluded = ExclusionSet(stride(from: Int32(1), to: Int32(rows), by: 13))
        for (qi, query) in queries.enumerated() {
            query.withUnsafeBufferPointer { q in
                offsets.withUnsafeBufferPointer { off in
                    for k in [1, 10, 100, 1000] {
                        for (ex, add) in [(nil, nil), (excluded, nil), (nil, off), (excluded, off)] as [(ExclusionSet?, UnsafeBufferPointer<Float>?)] {
                            let exact = kernels.topK(q, of: m.view, k: k, excluding: ex, adding: add)
                            let bounded = kernels.topK(q, of: m.view, k: k, excluding: ex, adding: add, bounds: bounds)
                            #expect(bounded == exact, "query \(qi), k \(k), exclusions \(ex != nil), offsets \(add != nil)")
                        }
                    }
                }
            }
        }
    }
}

@Suite struct CosineScanTests {
    /// Each row's norm as a server computes it: the square root of the row's dot product with itself.
    static func norms(_ m: MatrixView, _ kernels: ScoringKernels) -> [Float] {
        (0..<m.rows).map { r in RowEncoder.decodeRow(r, of: m).withUnsafeBufferPointer { kernels.dot($0, row: r, of: m) }.squareRoot() }
    }

    /// The `k` best cosines from the formula row by row (`kernels`' dot, `cosines`' rules), `dropped` rows left out.
    static func reference(
        _ q: [Float], _ m: MatrixView, _ norms: [Float], queryNorm: Float, k: Int, kernels: ScoringKernels,
        dropped: (Int) -> Bool
    ) -> [ScoredRow] {
        let scores = (0..<m.rows).map { r -> Float in
            if dropped(r) { return .nan }
            let d = queryNorm * norms[r]
            let v = d > 0 ? q.withUnsafeBufferPointer { kernels.dot($0, row: r, of: m) } / d : .nan
            return v.isFinite ? v : .nan
        }
        return TopKTests.expected(scores, k: k)
    }

    /// Without bounds, `topKCosine` is the cosine formula ranked (zero-norm, masked and excluded rows left out), on
    /// every kernel level.
    @Test func cosineScanRanksTheFormula() {
        let rows = 2049, cols = 20
        var values = randomValues(rows: rows, cols: cols, seed: 31)
        for c in 0..<cols { values[5 * cols + c] = 0 }  // a zero row: no cosine
        let query = randomValues(rows: 1, cols: cols, seed: 32)
        for c in KernelCase.all {
            let m = GuardedMatrix(values: values, rows: rows, cols: cols, encoding: c.encoding)
            let norms = Self.norms(m.view, c.kernels)
            let qNorm = zip(query, query).reduce(Float(0)) { $0 + $1.0 * $1.1 }.squareRoot()
            let mask = (0..<rows).map { $0 % 7 == 3 ? -Float.infinity : 0 }
            let excluded = ExclusionSet([8, 9, 2000] as [Int32])
            for k in [1, 10, 1000] {
                let got = query.withUnsafeBufferPointer { q in
                    norms.withUnsafeBufferPointer { n in
                        mask.withUnsafeBufferPointer { mask in
                            c.kernels.topKCosine(q, of: m.view, k: k, norms: n, queryNorm: qNorm, excluding: excluded, mask: mask)
                        }
                    }
                }
                let expected = Self.reference(query, m.view, norms, queryNorm: qNorm, k: k, kernels: c.kernels) {
                    $0 % 7 == 3 || excluded.contains(Int32($0))
                }
                #expect(got.map(\.row) == expected.map(\.row), "\(c) k \(k)")
                #expect(zip(got, expected).allSatisfy { abs($0.score - $1.score) <= 1e-6 }, "\(c) k \(k)")
                #expect(!got.contains { $0.row == 5 || $0.row % 7 == 3 || excluded.contains($0.row) })
            }
        }
    }

    /// Bounds must be of the rows divided by their norms: here the rows with the largest dot products (norm 100,
    /// cosine about 0.9) come first and fill the top k, and the best cosines (norm 0.01, exactly aligned) sit in the
    /// last, bounded blocks with dot products of 0.01. Bounding raw dot products against the cosine threshold would
    /// drop them all.
    @Test(arguments: RowEncoding.allCases)
    func boundsAreOfUnitRows(_ encoding: RowEncoding) throws {
        let rows = 3000, cols = 4
        let values = (0..<rows).flatMap { r -> [Float] in r < 2048 ? [90, 43.6, 0, 0] : [0.01, 0, 0, 0] }
        let m = GuardedMatrix(values: values, rows: rows, cols: cols, encoding: encoding)
        let kernels = ScoringKernels.best
        guard let scan = ScanBounds(matrix: m.view, kernels: kernels) else { return }
        let norms = Self.norms(m.view, kernels)
        let unit = try #require(norms.withUnsafeBufferPointer { UnitRowBounds(scan, norms: $0) })
        let query: [Float] = [1, 0, 0, 0]
        for k in [1, 10, 100] {
            let (exact, bounded) = query.withUnsafeBufferPointer { q in
                norms.withUnsafeBufferPointer { n in
                    (kernels.topKCosine(q, of: m.view, k: k, norms: n, queryNorm: 1),
                     kernels.topKCosine(q, of: m.view, k: k, norms: n, queryNorm: 1, bounds: unit))
                }
            }
            #expect(exact.count == k && exact.allSatisfy { $0.row >= 2048 })
            #expect(bounded == exact, "\(encoding) k \(k)")
        }
    }

    /// Float rows that differ only below int8 resolution share their codes, which understate the best of them; the
    /// divided error term keeps those (checked: with no error term the bounded scan loses them).
    @Test(arguments: [RowEncoding.float32, .float16])
    func rowErrorCarriesWhatTheCodesCannotSee(_ encoding: RowEncoding) throws {
        let m = rowsBelowInt8Resolution(encoding)
        let kernels = ScoringKernels.best
        guard let scan = ScanBounds(matrix: m.view, kernels: kernels) else { return }
        let norms = Self.norms(m.view, kernels)
        let unit = try #require(norms.withUnsafeBufferPointer { UnitRowBounds(scan, norms: $0) })
        let query = queryOfRowsBelowInt8Resolution
        let qNorm = zip(query, query).reduce(Float(0)) { $0 + $1.0 * $1.1 }.squareRoot()
        for k in [1, 10, 100] {
            let (exact, bounded) = query.withUnsafeBufferPointer { q in
                norms.withUnsafeBufferPointer { n in
                    (kernels.topKCosine(q, of: m.view, k: k, norms: n, queryNorm: qNorm),
                     kernels.topKCosine(q, of: m.view, k: k, norms: n, queryNorm: qNorm, bounds: unit))
                }
            }
            #expect(exact.count == k && exact.allSatisfy { $0.row >= 2048 })
            #expect(bounded == exact, "\(encoding) k \(k)")
        }
    }

    /// A bounded cosine scan returns exactly what the exact one returns (rows, scores, tie order) in every encoding:
    /// rows of very different norms (so dot and cosine orders differ), equal rows and scaled copies across blocks
    /// (ties), a zero row, a mask and exclusions, and queries the quantizer declines (zero, NaN) or quantizes coarsely.
    @Test(arguments: [(1, 64), (17, 20), (1000, 64), (2049, 64), (3001, 128), (777, 4)], RowEncoding.allCases)
    func boundedCosineScanEqualsExactScan(shape: (rows: Int, cols: Int), encoding: RowEncoding) throws {
        let (rows, cols) = shape
        let kernels = ScoringKernels.best
        let distinct = randomValues(rows: rows, cols: cols, seed: UInt64(rows * 17 + cols))
        var values = distinct
        for r in stride(from: 50, to: rows, by: 50) {
            // Every 50th row repeats row 0; every 100th, offset by 25, is row 0 times 3 (the same cosine).
            for c in 0..<cols { values[r * cols + c] = distinct[c] }
            if r + 25 < rows { for c in 0..<cols { values[(r + 25) * cols + c] = 3 * distinct[c] } }
        }
        if rows > 10 { for c in 0..<cols { values[10 * cols + c] = 0 } }
        let m = GuardedMatrix(values: values, rows: rows, cols: cols, encoding: encoding)
        guard let scan = ScanBounds(matrix: m.view, kernels: kernels) else {
            #expect(!(kernels.isa == .avx512 && BoundedScanTests.vnni), "bounds missing on a CPU that can run them")
            return
        }
        let norms = Self.norms(m.view, kernels)
        let unit = try #require(norms.withUnsafeBufferPointer { UnitRowBounds(scan, norms: $0) })
        var queries = [randomValues(rows: 1, cols: cols, seed: 7), [Float](repeating: 0, count: cols), distinct.prefix(cols).map { $0 }]
        var nan = randomValues(rows: 1, cols: cols, seed: 8)
        nan[cols / 2] = .nan
        queries.append(nan)
        var spiky = randomValues(rows: 1, cols: cols, seed: 9)
        spiky[0] = 1_000
        queries.append(spiky)
        queries.append(queries[0].map { $0 * 0.01 })  // a norm below 1: the threshold must scale with it
        let mask = (0..<rows).map { $0 % 3 == 1 ? -Float.infinity : 0 }  // a category filter
        let excluded = ExclusionSet(stride(from: Int32(0), to: Int32(rows), by: 11))
        for (qi, query) in queries.enumerated() {
            let qNorm = zip(query, query).reduce(Float(0)) { $0 + $1.0 * $1.1 }.squareRoot()
            for k in [1, 10, 100, 1000] {
                for (ex, masked) in [(nil, false), (excluded, false), (nil, true), (excluded, true)] as [(ExclusionSet?, Bool)] {
                    let (exact, bounded) = query.withUnsafeBufferPointer { q in
                        norms.withUnsafeBufferPointer { n in
                            mask.withUnsafeBufferPointer { mask in
                                (kernels.topKCosine(q, of: m.view, k: k, norms: n, queryNorm: qNorm, excluding: ex, mask: masked ? mask : nil),
                                 kernels.topKCosine(q, of: m.view, k: k, norms: n, queryNorm: qNorm, excluding: ex, mask: masked ? mask : nil, bounds: unit))
                            }
                        }
                    }
                    #expect(bounded == exact, "query \(qi), k \(k), exclusions \(ex != nil), mask \(masked)")
                }
            }
        }
    }

    /// Scoring only a subset of rows, gathered, answers exactly as masking every other row in a scan: rows and
    /// scores, ties across blocks (repeated rows), exclusions, subsets of one row to all rows, every kernel level.
    @Test func gatheredRowsEqualAMaskedScan() {
        let rows = 2600, cols = 20
        var values = randomValues(rows: rows, cols: cols, seed: 41)
        for r in stride(from: 100, to: rows, by: 100) { for c in 0..<cols { values[r * cols + c] = values[c] } }
        let query = values.prefix(cols).map { $0 }  // row 0: its repeats tie at cosine 1
        let qNorm = zip(query, query).reduce(Float(0)) { $0 + $1.0 * $1.1 }.squareRoot()
        var rng = SplitMix64(seed: 42)
        for c in KernelCase.all {
            let m = GuardedMatrix(values: values, rows: rows, cols: cols, encoding: c.encoding)
            let norms = Self.norms(m.view, c.kernels)
            for share in [0.0005, 0.05, 0.3, 1.0] {
                let subset = (0..<Int32(rows)).filter { $0 % 100 == 0 || Double.random(in: 0..<1, using: &rng) < share }
                let members = Set(subset)
                let mask = (0..<rows).map { members.contains(Int32($0)) ? Float(0) : -.infinity }
                let excluded = ExclusionSet([0, 700, 1301] as [Int32])
                for k in [1, 10, 1000] {
                    let (gathered, masked) = query.withUnsafeBufferPointer { q in
                        norms.withUnsafeBufferPointer { n in
                            subset.withUnsafeBufferPointer { subset in
                                mask.withUnsafeBufferPointer { mask in
                                    (c.kernels.topKCosine(q, of: m.view, rows: subset, k: k, norms: n, queryNorm: qNorm, excluding: excluded),
                                     c.kernels.topKCosine(q, of: m.view, k: k, norms: n, queryNorm: qNorm, excluding: excluded, mask: mask))
                                }
                            }
                        }
                    }
                    #expect(gathered == masked, "\(c) share \(share) k \(k)")
                    #expect(!gathered.isEmpty && gathered.allSatisfy { members.contains($0.row) && !excluded.contains($0.row) })
                }
            }
        }
    }

    /// Norms that do not match the bounds' rows give no unit bounds.
    @Test func unitBoundsNeedOneNormPerRow() {
        let m = GuardedMatrix(values: randomValues(rows: 40, cols: 16, seed: 3), rows: 40, cols: 16, encoding: .float32)
        guard let scan = ScanBounds(matrix: m.view, kernels: .best) else { return }
        let short = [Float](repeating: 1, count: 39)
        #expect(short.withUnsafeBufferPointer { UnitRowBounds(scan, norms: $0) } == nil)
        let right = [Float](repeating: 1, count: 40)
        #expect(right.withUnsafeBufferPointer { UnitRowBounds(scan, norms: $0) } != nil)
    }
}
