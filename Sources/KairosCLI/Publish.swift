public import ArgumentParser
import KairosModelFormat

/// `kairos publish SRC DIR`: verifies a model file and publishes it into a served folder the safe way.
public struct Publish: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Verify a model file and publish it into a models folder atomically (temp file, fsync, rename, fsync folder)."
    )

    @Argument(help: "The model file to publish.")
    var source: String
    @Argument(help: "The models folder a kairos server watches.")
    var directory: String
    @Option(help: "File name in the folder (default: NAME-vVERSION.kmodel from the file's header).")
    var name: String?

    public init() {}

    public func run() throws {
        // Verify first: a server would reject a bad file anyway, but the operator should hear it here.
        let model = try MappedModel(path: source, options: LoadOptions(storage: .copied))
        let fileName = name ?? "\(model.header.modelName)-v\(model.header.modelVersion).kmodel"
        guard !fileName.contains("/"), fileName.hasSuffix(".kmodel"), !fileName.hasPrefix(".") else {
            throw ValidationError("--name must be a plain NAME.kmodel file name")
        }
        try ModelWriter.publish(copyOf: source, to: "\(directory)/\(fileName)")
        print("published \(model.header.modelName) v\(model.header.modelVersion) as \(directory)/\(fileName)")
    }
}
