public import ArgumentParser
import KairosModelFormat
import KairosTrainer

/// `kairos make-default-model`: rebuilds the shipped `models/default.kmodel` (trained on a synthetic log).
public struct MakeDefaultModel: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "make-default-model",
        abstract: "Rebuild the shipped default model: `kairos train` on the log and attributes `kairos synth` writes.",
        discussion: "Same as `kairos synth --out E.csv --items-out I.csv --users 500 --items 2000` then `kairos train E.csv --items I.csv --kernel portable`; the portable solver makes the file identical on every x86-64 CPU."
    )

    @Option(help: "Output file.")
    var out = "models/default.kmodel"

    public init() {}

    public func run() throws {
        let result = try DefaultModel.train(progress: Progress { line in writeStandardError(line + "\n") })
        try ModelWriter.write(result.requireContents(), to: out)
        print("wrote \(out): model trained on the synthetic log (\(result.report.data.events) events)")
    }
}
