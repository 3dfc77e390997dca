import KairosModelFormat

#if canImport(Glibc)
    import Glibc
#endif

/// The recipe of the shipped `models/default.kmodel`: a model trained by `kairos train` on the log and item
/// attributes that ``SyntheticLog`` writes (500 users, 2,000 items, 20 categories, 90 days).
///
/// The ALS solver is pinned to its portable C level so that the file is byte-for-byte the same on every x86-64 CPU
/// (the AVX2/AVX-512 levels round differently); a test rebuilds it and compares.
public enum DefaultModel {
    /// The synthetic log behind the model.
    public static var log: SyntheticLog {
        var g = SyntheticLog()
        g.users = 500
        g.items = 2000
        g.categories = 20
        g.days = 90
        g.eventsPerUser = 50
        g.seed = 1
        return g
    }

    /// Writes the log and attributes into `scratch` (a folder that exists) and trains on them.
    /// - Throws: ``TrainerError`` when the scratch files cannot be written or training fails.
    public static func train(scratch: String, progress: Progress = .silent) throws(TrainerError) -> Trainer.Result {
        let events = "\(scratch)/default-events.csv"
        let items = "\(scratch)/default-items.csv"
        defer {
            unlink(events)
            unlink(items)
        }
        try log.writeCSV(to: events)
        try log.writeItemsCSV(to: items)
        var config = TrainerConfig(input: events)
        config.itemsPath = items
        config.name = "default"
        config.version = 1
        config.als.kernel = .portable
        return try Trainer.run(config, progress: progress)
    }
}
