public import ArgumentParser
import KairosTrainer

/// `kairos synth`: writes a deterministic synthetic e-commerce event log (CSV) for tests, benchmarks and demos.
public struct Synth: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract:
            "Write a deterministic SYNTHETIC event log: drifting interests, daily/weekly rhythms, repeats, new items."
    )

    @Option(help: "Output CSV (user,item,timestamp,event).")
    var out: String
    @Option(help: "Random seed.")
    var seed: UInt64 = 1
    @Option(help: "Users.")
    var users = 2000
    @Option(help: "Items.")
    var items = 1000
    @Option(help: "Days covered (ending 2026-01-01T00:00:00Z).")
    var days = 90
    @Option(help: "Categories.")
    var categories = 20
    @Option(help: "Mean events per user.")
    var eventsPerUser = 50.0
    @Option(help: "Also write the item attributes CSV (item,category,brand,price) here, for `kairos train --items`.")
    var itemsOut: String?

    public init() {}

    public func validate() throws {
        guard users > 0, items > 0, days > 0, categories > 0, eventsPerUser > 0 else {
            throw ValidationError("--users, --items, --days, --categories and --events-per-user must be positive")
        }
    }

    public func run() throws {
        var g = SyntheticLog()
        g.seed = seed
        g.users = users
        g.items = items
        g.days = days
        g.categories = categories
        g.eventsPerUser = eventsPerUser
        let n = try g.writeCSV(to: out)
        print("wrote \(out): \(n) synthetic events, \(users) users, \(items) items, \(days) days")
        if let itemsOut {
            try g.writeItemsCSV(to: itemsOut)
            print("wrote \(itemsOut): attributes of \(items) items in \(categories) categories")
        }
    }
}
