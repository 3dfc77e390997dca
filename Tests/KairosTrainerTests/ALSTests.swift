import KairosKernels
import KairosModelFormat
import Testing

@testable import KairosTrainer

@Suite struct ALSTests {
    func groupsMatrix() throws -> (EventLog, SparseMatrix) {
        let dir = TempFolder()
        let (log, _) = try EventLogReader.read(path: dir.write(Logs.twoGroups(), to: "g.csv"))
        let m = Interactions.matrix(log, decay: DecaySpec(form: .none), reference: 0, normalizePerUser: true)
        return (log, m)
    }

    func config(_ kernel: ALSKernel = .auto, threads: Int = 2, iterations: Int = 8) -> ALSConfig {
        var c = ALSConfig()
        c.factors = 4
        c.iterations = iterations
        c.regularization = 1
        c.alpha = 10
        c.kernel = kernel
        c.threads = threads
        return c
    }

    /// Planted structure is recovered: every user's best unseen items come from their own group.
    @Test func recoversTwoDisjointGroups() throws {
        let (log, m) = try groupsMatrix()
        // Two factors: room for the two groups, not for memorising each user's exact items.
        var c = config()
        c.factors = 2
        let f = WeightedALS.fit(m, config: c)
        for u in 0..<log.userIds.count {
            let group = log.userIds[u].first!
            let seen = Set(m.indices[m.indptr[u]..<m.indptr[u + 1]])
            let ranked = (0..<log.itemIds.count).filter { !seen.contains(Int32($0)) }
                .sorted { f.score(user: u, item: $0) > f.score(user: u, item: $1) }
            let top = ranked.prefix(4).map { log.itemIds[$0].first! }
            #expect(top.allSatisfy { $0 == (group == "a" ? "x" : "y") }, "user \(log.userIds[u]) got \(top)")
        }
        // The loss goes down.
        #expect(f.losses.count == 8)
        #expect(f.losses.last! < f.losses.first!)
    }

    /// The reported loss is the confidence-weighted squared error over every cell plus the penalty, per unit of
    /// confidence, computed here cell by cell from the returned factors; and it does not depend on the thread count.
    @Test func lossIsTheWeightedErrorOverEveryCell() throws {
        let (log, m) = try groupsMatrix()
        let c = config(iterations: 3)
        let f = WeightedALS.fit(m, config: c)
        var error = 0.0
        var weight = 0.0
        for u in 0..<log.userIds.count {
            var r = [Float](repeating: 0, count: log.itemIds.count)
            for e in m.indptr[u]..<m.indptr[u + 1] { r[Int(m.indices[e])] = m.values[e] }
            for i in 0..<log.itemIds.count {
                let confidence = 1 + Double(c.alpha) * Double(r[i])
                let preference = r[i] > 0 ? 1.0 : 0.0
                let s = Double(f.score(user: u, item: i))
                error += confidence * (preference - s) * (preference - s)
                weight += confidence
            }
        }
        let penalty = Double(c.regularization) * (f.user + f.item).reduce(0.0) { $0 + Double($1) * Double($1) }
        let expected = (error + penalty) / weight
        #expect(f.losses.count == 3)
        #expect(abs(f.losses.last! - expected) <= 1e-4 * expected, "\(f.losses.last!) vs \(expected)")
        #expect(WeightedALS.fit(m, config: config(threads: 1, iterations: 3)).losses == f.losses)
    }

    /// Same seed, same factors, bit for bit, whatever the thread count.
    @Test func deterministicAcrossRunsAndThreads() throws {
        let (_, m) = try groupsMatrix()
        let a = WeightedALS.fit(m, config: config(threads: 2))
        let b = WeightedALS.fit(m, config: config(threads: 2))
        let c = WeightedALS.fit(m, config: config(threads: 1))
        #expect(a.user == b.user && a.item == b.item)
        #expect(a.user == c.user && a.item == c.item)
        var other = config()
        other.seed = 7
        #expect(WeightedALS.fit(m, config: other).user != a.user)
    }

    /// A warm start begins where the given factors are: one sweep from a converged fit keeps its loss, far below one
    /// sweep from the random start. Factors of another shape are ignored (the seeded start, bit for bit).
    @Test func warmStartBeginsFromTheGivenFactors() throws {
        let (_, m) = try groupsMatrix()
        let converged = WeightedALS.fit(m, config: config(iterations: 8))
        let cold = WeightedALS.fit(m, config: config(iterations: 1))
        let warm = WeightedALS.fit(m, config: config(iterations: 1), initial: converged)
        #expect(warm.losses[0] <= converged.losses.last! * 1.001)
        #expect(warm.losses[0] < cold.losses[0] * 0.9)
        var wrongShape = converged
        wrongShape.factors = 2
        let ignored = WeightedALS.fit(m, config: config(iterations: 1), initial: wrongShape)
        #expect(ignored.user == cold.user && ignored.item == cold.item)
    }

    /// The C solver at every level agrees with the Swift reference solver: to float rounding after one sweep, and
    /// closely after several on a well-conditioned problem (fused multiply-adds round differently, and weak
    /// regularization on this symmetric toy problem amplifies that over sweeps, so the strict check is one sweep).
    @Test(arguments: [ALSKernel.portable, .avx2, .avx512])
    func kernelsAgreeWithSwiftReference(kernel: ALSKernel) throws {
        let (_, m) = try groupsMatrix()
        for (iterations, regularization, tolerance) in [(1, Float(1), Float(2e-3)), (4, 10, 2e-3)] {
            var c = config(.swift, iterations: iterations)
            c.factors = 8
            c.regularization = regularization
            let reference = WeightedALS.fit(m, config: c)
            c.kernel = kernel
            let f = WeightedALS.fit(m, config: c)
            let worst = zip(reference.user + reference.item, f.user + f.item).map { abs($0 - $1) }.max()!
            #expect(worst < tolerance, "\(iterations) iterations")
        }
    }

    /// `Y'Y + lambda I` is, bit for bit, the sum a row at a time gives: each half of the rows added in row order
    /// (zero factors skipped), then the halves added, at any thread count, in Swift and in C at every level; row
    /// counts around the C loop's row blocks, widths over one and several chunks, and rows with zero factors.
    @Test func gramMatrixEqualsARowAtATimeSum() {
        var rng = SplitMix64(seed: 21)
        for (rows, chunks) in [(1, 1), (7, 1), (9, 4), (64, 2), (203, 4), (700, 4), (150, 5), (40, 64)] {
            let y = FactorBlock(rows: rows, chunks: chunks)
            let dim = 16 * chunks
            for r in 0..<rows {
                for d in 0..<dim where rng.next() % 5 != 0 { y.set(r, d, Float(Int(rng.next() % 2001) - 1000) / 313) }
            }
            var expected = [Float](repeating: 0, count: dim * dim)
            var half = [[Float]](repeating: [Float](repeating: 0, count: dim * dim), count: 2)
            for p in 0..<2 {
                for r in (rows * p / 2)..<(rows * (p + 1) / 2) {
                    let v = y.row(r)
                    for a in 0..<dim where v[a / 16][a % 16] != 0 {
                        for b in 0..<dim { half[p][a * dim + b] = half[p][a * dim + b] + v[a / 16][a % 16] * v[b / 16][b % 16] }
                    }
                }
            }
            for i in 0..<(dim * dim) { expected[i] = half[0][i] + half[1][i] }
            for a in 0..<dim { expected[a * dim + a] += 2.5 }
            // The Swift loop (nil) and the C loop at every level this CPU runs.
            let levels: [Int32?] = [nil] + ALSKernel.allCases.compactMap(\.effectiveISA)
            for isa in levels {
                for threads in [1, 2] {
                    let g = GramMatrix(chunks: chunks)
                    g.compute(y, regularization: 2.5, threads: threads, isa: isa)
                    let differing = (0..<(dim * dim)).filter { g.floats[$0].bitPattern != expected[$0].bitPattern }.count
                    #expect(differing == 0, "rows \(rows) chunks \(chunks) threads \(threads) isa \(isa.map(String.init) ?? "swift")")
                }
            }
        }
    }

    /// Non-multiple-of-16 widths (padding lanes) work in both solvers.
    @Test(arguments: [4, 20, 36])
    func oddWidths(factors: Int) throws {
        let (_, m) = try groupsMatrix()
        var c = config(.auto, iterations: 1)
        c.factors = factors
        let f = WeightedALS.fit(m, config: c)
        c.kernel = .swift
        let s = WeightedALS.fit(m, config: c)
        #expect(f.user.count == m.rows * factors)
        #expect(zip(f.user, s.user).allSatisfy { abs($0 - $1) < 1e-3 })
    }
}

@Suite struct StoredFactorsTests {
    /// Encoded factors round the way the file does; factors holding a NaN are left for the model writer to refuse
    /// (quantizing a NaN would have produced a finite, wrong value it could not see).
    @Test func storedRoundsFiniteFactorsAndLeavesNonFiniteOnes() {
        let f = ALSFactors(factors: 4, user: [1, -0.5, 0.25, 3], item: [0.1, 0.2, 0.3, 0.4, 1, 2, 3, 4], losses: [])
        let half = f.stored(as: .float16)
        #expect(half.user == f.user.map { Float(Float16($0)) } && half.item == f.item.map { Float(Float16($0)) })
        let quarter = f.stored(as: .int8)
        let scale: Float = 4 / 127
        let expected: [Float] = [1, 2, 3, 4].map { (v: Float) in (v / scale).rounded() * scale }
        #expect(Array(quarter.item[4...]) == expected)
        var broken = f
        broken.item[2] = .nan
        let kept = broken.stored(as: .int8)
        #expect(kept.item[2].isNaN && kept.user == f.user)
    }
}

@Suite struct RegularizationScalingTests {
    func matrix(pairs: Int) -> SparseMatrix {
        SparseMatrix(
            rows: 1,
            cols: pairs,
            indptr: [0, pairs],
            indices: (0..<pairs).map(Int32.init),
            values: [Float](repeating: 1, count: pairs)
        )
    }

    /// Lambda chosen on the validation part (100 pairs) grows with the data the later fits see.
    @Test func tunedRegularizationScalesWithPairs() {
        var session = Session(config: TrainerConfig(input: "-"), categories: nil, progress: .silent)
        #expect(session.regularization(for: matrix(pairs: 125)) == session.config.als.regularization)
        session.regularizationPerPair = 60.0 / 100
        #expect(session.regularization(for: matrix(pairs: 100)) == 60)
        #expect(session.regularization(for: matrix(pairs: 125)) == 75)
    }
}
