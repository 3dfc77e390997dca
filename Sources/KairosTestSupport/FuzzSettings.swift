#if canImport(Glibc)
    import Glibc
#endif

/// How long and from where the fuzz tests run: `KAIROS_FUZZ_TRIALS` and `KAIROS_FUZZ_SEED` override a test's
/// defaults (for longer runs by hand), and `KAIROS_FUZZ_TRACE` makes ``trace(_:)`` write each trial to stderr.
public enum FuzzSettings {
    /// `KAIROS_FUZZ_TRIALS`, or `defaultTrials` when it is unset or not a number.
    public static func trials(default defaultTrials: Int) -> Int { integer("KAIROS_FUZZ_TRIALS").map(Int.init) ?? defaultTrials }

    /// `KAIROS_FUZZ_SEED`, or `defaultSeed` when it is unset or not a number.
    public static func seed(default defaultSeed: UInt64) -> UInt64 { integer("KAIROS_FUZZ_SEED") ?? defaultSeed }

    /// Whether `KAIROS_FUZZ_TRACE` is set.
    public static var tracing: Bool { getenv("KAIROS_FUZZ_TRACE") != nil }

    /// Writes `line` to stderr unbuffered when tracing, so the last line before a crash names the trial that crashed.
    public static func trace(_ line: @autoclosure () -> String) {
        guard tracing else { return }
        var text = line() + "\n"
        text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }

    static func integer(_ name: String) -> UInt64? { getenv(name).flatMap { UInt64(String(cString: $0)) } }
}
