import Glibc
import KairosModelFormat
import Testing

@testable import KairosTrainer

@Suite struct QualityGateTests {
    /// A report with one protocol whose model has NDCG@5 `model` and the given paired comparisons.
    func report(model: Double = 0.3, se: Double = 0.02, gains: [String: (gain: Double, se: Double)]) -> TrainReport {
        var r = TrainReport()
        var methods: [String: [String: Double]] = ["model": ["ndcg@5": model, "ndcg@5_se": se, "users": 50]]
        var comparisons: [String: [String: Double]] = [:]
        for (name, g) in gains {
            methods[name] = ["ndcg@5": model - g.gain, "users": 50]
            comparisons[name] = ["ndcg@5_gain": g.gain, "ndcg@5_gain_se": g.se]
        }
        r.test["exclude-seen"] = methods
        r.comparisons["exclude-seen"] = comparisons
        return r
    }

    func outcome(_ name: String, in checks: [QualityGate.Check]) throws -> Bool {
        try #require(checks.first { $0.name == "exclude-seen: model vs \(name)" }).passed
    }

    /// A baseline fails the gate only when the model trails it by more than two paired standard errors; a zero
    /// standard error with a loss means every user lost, and a NaN never passes.
    @Test func baselinesFailOnlyBeyondTwoStandardErrors() throws {
        let checks = QualityGate.checks(
            report: report(gains: [
                "popularity": (-0.25, 0.125),  // exactly 2 se below: within noise
                "trending": (-0.26, 0.125),  // beyond 2 se
                "buy-again": (0.1, 0.5),
            ]),
            k: 5,
            previous: nil
        )
        #expect(try outcome("popularity", in: checks))
        #expect(try !outcome("trending", in: checks))
        #expect(try outcome("buy-again", in: checks))
        #expect(!QualityGate.Outcome(checks).passed)

        let zero = QualityGate.checks(report: report(gains: ["popularity": (-0.01, 0), "trending": (0, 0)]), k: 5, previous: nil)
        #expect(try !outcome("popularity", in: zero))
        #expect(try outcome("trending", in: zero))

        let nan = QualityGate.checks(report: report(gains: ["popularity": (.nan, 0.1)]), k: 5, previous: nil)
        #expect(try !outcome("popularity", in: nan))

        let fine = QualityGate.checks(report: report(gains: ["popularity": (0.05, 0.01)]), k: 5, previous: nil)
        #expect(QualityGate.Outcome(fine).passed)
        #expect(fine.count == 2)  // the model's own metrics and one baseline
    }

    /// A model metric that is not finite fails, and so does a run with no test users: there is nothing to vouch for.
    /// Activity profiles clearly worse than the population's at placing the day's first visit fail the gate; within
    /// noise they pass, and a run without a timing evaluation has no timing check.
    @Test func pushTimingFailsOnlyBeyondTwoStandardErrors() throws {
        func timing(_ gain: Double, _ se: Double) throws -> Bool {
            var r = report(gains: ["popularity": (0.1, 0.01)])
            r.timingComparisons["population"] = ["hit@3_gain": gain, "hit@3_gain_se": se]
            let checks = QualityGate.checks(report: r, k: 5, previous: nil)
            return try #require(checks.first { $0.name == "push timing: profile vs population" }).passed
        }
        #expect(try timing(-0.04, 0.02))
        #expect(try !timing(-0.041, 0.02))
        #expect(try timing(0.07, 0.01))
        let none = QualityGate.checks(report: report(gains: ["popularity": (0.1, 0.01)]), k: 5, previous: nil)
        #expect(!none.contains { $0.name.hasPrefix("push timing") })
    }

    /// Against the served model's stored timing, the new profiles' hit@3 may not be clearly lower; unpaired, so the
    /// two standard errors add in quadrature (0.03 and 0.04 give 0.05). A file without timing is not compared.
    @Test func pushTimingAgainstThePreviousModelIsUnpaired() throws {
        var r = report(gains: ["popularity": (0.1, 0.01)])
        r.timing["test"] = ["profile": ["hit@3": 0.30, "hit@3_se": 0.03]]
        r.timingComparisons["population"] = ["hit@3_gain": 0.05, "hit@3_gain_se": 0.01]
        func passes(against oldHit: Double) throws -> Bool {
            let previous = QualityGate.Previous(
                source: "old.kmodel", evaluation: [:], timing: ["profile": ["hit@3": oldHit, "hit@3_se": 0.04]])
            let checks = QualityGate.checks(report: r, k: 5, previous: previous)
            return try #require(checks.first { $0.name == "push timing: profile vs old.kmodel" }).passed
        }
        #expect(try passes(against: 0.39))  // 0.09 below, within 2 x 0.05
        #expect(try !passes(against: 0.41))  // 0.11 below
        #expect(try passes(against: 0.2))
        let bare = QualityGate.checks(report: r, k: 5, previous: QualityGate.Previous(source: "old.kmodel", evaluation: [:]))
        #expect(!bare.contains { $0.name == "push timing: profile vs old.kmodel" })
    }

    @Test func nonFiniteMetricsAndMissingTestFail() {
        let nan = QualityGate.checks(report: report(model: .nan, gains: [:]), k: 5, previous: nil)
        #expect(!QualityGate.Outcome(nan).passed)
        let empty = QualityGate.checks(report: TrainReport(), k: 5, previous: nil)
        #expect(empty.count == 1 && !empty[0].passed)
    }

    /// Against a previous model the test windows differ, so the comparison is unpaired: the standard error of the
    /// difference is the two standard errors in quadrature (0.03 and 0.04 give 0.05, so the limit is 0.10).
    @Test func previousModelComparisonIsUnpaired() throws {
        func passes(new: Double, old: Double) throws -> Bool {
            let previous = QualityGate.Previous(
                source: "old.kmodel",
                evaluation: ["exclude-seen": ["model": ["ndcg@5": old, "ndcg@5_se": 0.04]]]
            )
            let checks = QualityGate.checks(report: report(model: new, se: 0.03, gains: [:]), k: 5, previous: previous)
            return try outcome("old.kmodel", in: checks)
        }
        #expect(try passes(new: 0.20, old: 0.29))
        #expect(try !passes(new: 0.20, old: 0.31))
        #expect(try passes(new: 0.40, old: 0.31))
        // A previous model without a test evaluation (or at another K) is noted, not held against the new one.
        let bare = QualityGate.Previous(source: "old.kmodel", evaluation: [:])
        let checks = QualityGate.checks(report: report(gains: [:]), k: 5, previous: bare)
        #expect(try outcome("old.kmodel", in: checks))
    }

    /// A log where what users do next is the catalogue's hit items, which the dot product alone cannot see (the
    /// regular users never touched them in training): popularity is far better, so the gated trainer writes no file.
    @Test func trainerWritesNoFileWhenTheModelIsClearlyWorse() throws {
        let dir = TempFolder()
        var lines = ["user,item,timestamp,event"]
        var rng = SplitMix64(seed: 7)
        var t = Logs.monday
        for u in 0..<60 {
            for _ in 0..<8 {
                lines.append("u\(u),tail\(Int.random(in: 0..<40, using: &rng)),\(t),purchase")
                t += 600
            }
        }
        for f in 0..<30 {
            for h in 0..<10 where (f + h) % 3 != 0 {
                lines.append("fan\(f),hot\(h),\(t),purchase")
                t += 600
            }
        }
        let test = t + 7 * Logs.day  // one timestamp for the whole test block, so the cut falls exactly before it
        for u in 0..<60 {
            for h in 0..<3 { lines.append("u\(u),hot\((u + h) % 10),\(test),purchase") }
        }
        let input = dir.write(lines.joined(separator: "\n") + "\n", to: "hits.csv")
        let out = "\(dir.path)/m.kmodel"
        var c = TrainerConfig(input: input)
        c.output = out
        c.als.factors = 8
        c.als.iterations = 4
        c.k = 5
        c.tune = false  // the dot product alone: validation could otherwise learn nothing of the hits either
        c.holdout = 0.85
        c.qualityGate = true
        let result = try Trainer.run(c)
        let gate = try #require(result.report.qualityGate)
        #expect(!gate.passed)
        #expect(gate.checks.contains { $0.name == "exclude-seen: model vs popularity" && !$0.passed }, "\(gate.checks)")
        let written = result.contents != nil  // (not compared in the expectation, which would print the whole model)
        #expect(!written)
        #expect(access(out, F_OK) != 0)
        #expect(throws: TrainerError.self) { _ = try result.requireContents() }

        // The same log without the gate writes the model: the gate is what refused it.
        c.qualityGate = false
        #expect(try Trainer.run(c).contents != nil && access(out, F_OK) == 0)
    }

    /// A model that beats its baselines passes and is written; judged against its own earlier file (the same data,
    /// so the same metrics) it passes too, and a previous model that cannot be read stops the run before training.
    @Test func passingModelIsWrittenAndPreviousFileIsRead() throws {
        let dir = TempFolder()
        var c = TrainerConfig(input: try Logs.synthetic(in: dir))
        c.output = "\(dir.path)/a.kmodel"
        c.als.factors = 8
        c.als.iterations = 4
        c.k = 5
        c.qualityGate = true
        let first = try Trainer.run(c)
        #expect(first.report.qualityGate?.passed == true)
        #expect(first.contents != nil && access(c.output!, F_OK) == 0)

        c.qualityGateAgainst = "\(dir.path)/a.kmodel"
        c.output = "\(dir.path)/b.kmodel"
        let second = try Trainer.run(c)
        let gate = try #require(second.report.qualityGate)
        #expect(gate.passed)
        #expect(gate.checks.contains { $0.name.hasSuffix("a.kmodel") && $0.detail.contains("not worse") })

        c.qualityGateAgainst = dir.write("not a model", to: "junk.kmodel")
        #expect {
            _ = try Trainer.run(c)
        } throws: { error in
            (error as? TrainerError)?.code == .io
        }
    }
}
