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

    /// Writes the log and attributes into a scratch folder under /tmp (removed afterwards) and trains on them.
    /// - Throws: ``TrainerError`` when the scratch files cannot be written or training fails.
    public static func train(progress: Progress = .silent) throws(TrainerError) -> Trainer.Result {
        var template = Array("/tmp/kairos-default-XXXXXX".utf8CString)
        guard let dir = mkdtemp(&template) else { throw TrainerError(.io, "cannot create a scratch folder in /tmp") }
        let scratch = String(cString: dir)
        let events = "\(scratch)/events.csv"
        let items = "\(scratch)/items.csv"
        defer {
            unlink(events)
            unlink(items)
            rmdir(scratch)
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
