public import ArgumentParser
import KairosKernels
import KairosModelFormat

/// `kairos make-demo-model`: writes a random synthetic model (not trained) of any size, for benchmarks and tests.
public struct MakeDemoModel: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "make-demo-model",
        abstract: "Write a deterministic SYNTHETIC model of random factors, any size (benchmarks, tests; `kairos train` makes real ones)."
    )

    @Option(help: "Output file.")
    var out = "demo.kmodel"
    @Option(help: "Model name.")
    var name = "default"
    @Option(help: "Model version.")
    var version: UInt64 = 1
    @Option(help: "Number of items.")
    var items = 2000
    @Option(help: "Number of users.")
    var users = 500
    @Option(help: "Embedding dimension (multiple of 4, at most 1024).")
    var dimensions = 32
    @Option(help: "Row encoding of the factor matrices: float32 (default), float16 or int8.")
    var encoding: RowEncoding?
    @Option(help: "Random seed.")
    var seed: UInt64 = 42
    @Option(help: "Number of item categories (category-0 ...).")
    var categories = 8

    public init() {}

    public func validate() throws {
        guard dimensions > 0, dimensions % 4 == 0, dimensions <= 1024 else {
            throw ValidationError("--dimensions must be a multiple of 4 in 4...1024")
        }
        guard items > 0, users >= 0 else { throw ValidationError("--items must be positive, --users not negative") }
        guard categories >= 1, categories <= 1_000_000 else { throw ValidationError("--categories must be in 1...1000000") }
    }

    public func run() throws {
        let contents = SyntheticModel.make(
            name: name,
            version: version,
            items: items,
            users: users,
            dimensions: dimensions,
            categories: categories,
            encoding: encoding ?? .float32,
            seed: seed
        )
        try ModelWriter.write(contents, to: out)
        print("wrote \(out): synthetic model \(name) v\(version), \(items) items, \(users) users, \(dimensions) dims \(encoding ?? .float32)")
    }
}
