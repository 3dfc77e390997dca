public import ArgumentParser
public import KairosKernels

/// The `kairos` command line: one subcommand per job.
public struct KairosCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "kairos",
        abstract: "Time-aware recommendations for push: what, whether and when.",
        subcommands: [Serve.self, Query.self, Bench.self, Train.self, Publish.self, Inspect.self, Synth.self, MakeDefaultModel.self, MakeDemoModel.self]
    )

    public init() {}
}

/// `--encoding float32|float16|int8` (`kairos train`, `kairos make-demo-model`): parsed by name, not by raw value.
/// The options are optional, their default named in their help: ArgumentParser would print a default of this
/// raw-valued enum as its raw value ("1").
extension RowEncoding: ExpressibleByArgument {
    public init?(argument: String) {
        guard let e = Self.allCases.first(where: { $0.description == argument }) else { return nil }
        self = e
    }

    public static var allValueStrings: [String] { allCases.map(\.description) }
}
