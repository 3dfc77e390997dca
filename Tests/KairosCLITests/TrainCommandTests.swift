import ArgumentParser
import KairosModelFormat
import KairosTrainer
import Testing

@testable import KairosCLI

@Suite struct TrainCommandTests {
    /// `kairos train` parses its flags into the trainer configuration (decay, hyper-parameters, input options).
    @Test func parsesFlagsIntoConfig() throws {
        let command = try KairosCommand.parseAsRoot([
            "train", "events.jsonl", "--out", "m.kmodel", "--factors", "32", "--regularization", "50", "--alpha", "4",
            "--decay", "linear", "--window", "14", "--strict", "--event-weights", "view=1,buy=10", "--holdout", "0.9",
            "--no-tune", "--now", "2026-01-01T00:00:00Z", "--seed", "9",
        ])
        let train = try #require(command as? Train)
        let c = train.makeConfig()
        #expect(c.input == "events.jsonl" && c.output == "m.kmodel")
        #expect(c.als.factors == 32 && c.als.regularization == 50 && c.als.alpha == 4 && c.als.seed == 9)
        #expect(c.decay == .linear(windowDays: 14))
        #expect(c.ingest.strict && c.ingest.eventWeights == ["view": 1, "buy": 10])
        #expect(c.holdout == 0.9 && !c.tune)
        #expect(c.now == 1_767_225_600)
    }

    /// Defaults: exponential 30-day decay, 64 factors, 15 iterations, holdout 0.8, tuning on, trending tuned.
    @Test func defaults() throws {
        let train = try #require(try KairosCommand.parseAsRoot(["train", "e.csv"]) as? Train)
        let c = train.makeConfig()
        #expect(c.decay == .exponential(halfLifeDays: 30))
        #expect(c.als.factors == 64 && c.als.iterations == 15 && c.holdout == 0.8 && c.tune)
        #expect(c.trendingHalfLifeDays == nil)
    }

    /// Invalid values are rejected at parse time.
    @Test(arguments: [["--decay", "cubic"], ["--event-weights", "view"], ["--now", "soon"], ["--format", "xml"]])
    func rejectsInvalid(extra: [String]) {
        #expect(throws: (any Error).self) { _ = try KairosCommand.parseAsRoot(["train", "e.csv"] + extra) }
    }
}
