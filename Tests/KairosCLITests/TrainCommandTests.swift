import ArgumentParser
import FoundationEssentials
import KairosModelFormat
import KairosTrainer
import Testing

#if canImport(Glibc)
    import Glibc
#endif

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
        #expect(c.maxUserEvents == nil)
        let capped = try #require(try KairosCommand.parseAsRoot(["train", "e.csv", "--max-user-events", "500"]) as? Train)
        #expect(capped.makeConfig().maxUserEvents == 500)
    }

    /// Defaults: exponential 30-day decay, 64 factors, 15 iterations, holdout 0.8, tuning on, trending tuned.
    @Test func defaults() throws {
        let train = try #require(try KairosCommand.parseAsRoot(["train", "e.csv"]) as? Train)
        let c = train.makeConfig()
        #expect(c.decay == .exponential(halfLifeDays: 30))
        #expect(c.als.factors == 64 && c.als.iterations == 15 && c.holdout == 0.8 && c.tune)
        #expect(c.trendingHalfLifeDays == nil)
    }

    /// `--quality-gate-against FILE` turns the gate on; the gate without a test split is refused before training.
    @Test func qualityGateFlags() throws {
        let train = try #require(try KairosCommand.parseAsRoot(["train", "e.csv", "--quality-gate-against", "old.kmodel"]) as? Train)
        let c = train.makeConfig()
        #expect(c.qualityGate && c.qualityGateAgainst == "old.kmodel")
        let plain = try #require(try KairosCommand.parseAsRoot(["train", "e.csv"]) as? Train)
        #expect(!plain.makeConfig().qualityGate)
        var noTest = c
        noTest.holdout = 0
        #expect(throws: TrainerError(.invalidConfiguration, "the quality gate checks the test split: it needs --holdout above 0")) {
            try noTest.validate()
        }
    }

    /// `--eval-users 0` is refused before training (it used to tune on empty validation sets).
    @Test func evalUsersMustBePositive() throws {
        let train = try #require(try KairosCommand.parseAsRoot(["train", "e.csv", "--eval-users", "0"]) as? Train)
        #expect(throws: TrainerError(.invalidConfiguration, "eval users must be >= 1")) { try train.makeConfig().validate() }
    }

    /// The summary has a push-timing line when the report has a timing evaluation, and none without.
    @Test func summaryReportsPushTiming() throws {
        let train = try #require(try KairosCommand.parseAsRoot(["train", "e.csv"]) as? Train)
        var r = TrainReport()
        #expect(!train.summary(r).contains("push timing"))
        r.timing["test"] = [
            "profile": ["hit@3": 0.33, "hit@3_se": 0.011],
            "population": ["hit@3": 0.26],
            "raw-profile": ["hit@3": 0.23],
        ]
        r.timingComparisons["population"] = ["hit@3_gain": 0.07, "hit@3_gain_se": 0.014]
        let line = try #require(train.summary(r).split(separator: "\n").first { $0.contains("push timing") })
        #expect(
            line == "test push timing hit@3: profile 0.33 (se 0.011), population 0.26, raw-profile 0.23; "
                + "gain over population 0.07 (paired se 0.014)"
        )
    }

    /// A refused model ends `kairos train` with exit status 3 (not 1, a failure to run), writes no model file, and
    /// still writes the metrics JSON with the gate's checks. Here every event has one timestamp, so there is no test
    /// split for the model to be vouched for on.
    @Test func refusedModelExitsWithStatusThree() throws {
        var template = Array("/tmp/kairos-cli-test-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        let input = "\(dir)/e.csv", out = "\(dir)/m.kmodel", metrics = "\(dir)/m.json"
        defer { for p in [input, out, metrics] { unlink(p) }; rmdir(dir) }
        let rows = (0..<40).map { "u\($0 % 8),i\($0 % 5),1767571200,purchase" }
        try Data((["user,item,timestamp,event"] + rows).joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: input))
        let train = try #require(
            try KairosCommand.parseAsRoot([
                "train", input, "-o", out, "--quality-gate", "--metrics-json", metrics, "--quiet", "--factors", "4",
            ]) as? Train
        )
        #expect(throws: ExitCode(Train.refusedStatus)) { try train.run() }
        #expect(Train.refusedStatus == 3)
        #expect(access(out, F_OK) != 0)
        let report = try JSONDecoder().decode(TrainReport.self, from: Data(contentsOf: URL(fileURLWithPath: metrics)))
        let gate = try #require(report.qualityGate)
        #expect(!gate.passed && gate.checks.map(\.name) == ["test evaluation"])
    }

    /// `--latest-event-time` takes a time or `none`; by default rows may be stamped up to a day after the present.
    @Test func latestEventTime() throws {
        func config(_ extra: [String]) throws -> TrainerConfig {
            try #require(try KairosCommand.parseAsRoot(["train", "e.csv"] + extra) as? Train).makeConfig()
        }
        #expect(try config(["--latest-event-time", "2026-01-01T00:00:00Z"]).ingest.latestTime == 1_767_225_600)
        #expect(try config(["--latest-event-time", "none"]).ingest.latestTime == nil)
        let before = Int64(time(nil))
        let limit = try #require(try config([]).ingest.latestTime)
        #expect(limit >= before + TrainerConfig.futureTolerance && limit <= Int64(time(nil)) + TrainerConfig.futureTolerance)
        #expect(TrainerConfig.futureTolerance == 86400)
    }

    /// Invalid values are rejected at parse time.
    @Test(arguments: [
        ["--decay", "cubic"], ["--event-weights", "view"], ["--now", "soon"], ["--format", "xml"],
        ["--latest-event-time", "later"],
    ])
    func rejectsInvalid(extra: [String]) {
        #expect(throws: (any Error).self) { _ = try KairosCommand.parseAsRoot(["train", "e.csv"] + extra) }
    }
}
