public import ArgumentParser

/// The `kairos` command line: one subcommand per job.
public struct KairosCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "kairos",
        abstract: "Time-aware recommendations for push: what, whether and when.",
        subcommands: [Serve.self, Query.self, Bench.self, Train.self, Publish.self, Inspect.self, Synth.self, MakeDefaultModel.self, MakeDemoModel.self]
    )

    public init() {}
}
