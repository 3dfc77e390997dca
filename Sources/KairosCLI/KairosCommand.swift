public import ArgumentParser

/// The `kairos` command line: one subcommand per job.
public struct KairosCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "kairos",
        abstract: "Time-aware recommendations for push: what, whether and when.",
        subcommands: [Inspect.self, MakeDemoModel.self, Train.self, Synth.self]
    )

    public init() {}
}
