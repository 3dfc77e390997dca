/// Progress lines for long runs: `[elapsed] phase: message`, written through an injected sink (stderr in the CLI).
public struct Progress: Sendable {
    let sink: @Sendable (String) -> Void
    let start: ContinuousClock.Instant
    /// Whether every line is discarded (``silent``), so that work done only for the lines can be skipped.
    public let isSilent: Bool

    /// - Parameter sink: receives each finished line (without a newline).
    public init(sink: @escaping @Sendable (String) -> Void) {
        self.init(sink: sink, isSilent: false)
    }

    private init(sink: @escaping @Sendable (String) -> Void, isSilent: Bool) {
        self.sink = sink
        self.isSilent = isSilent
        start = .now
    }

    /// Discards everything.
    public static let silent = Progress(sink: { _ in }, isSilent: true)

    /// Seconds since this reporter was created.
    public var elapsed: Double { Self.seconds(ContinuousClock.now - start) }

    /// Emits one line.
    public func line(_ phase: String, _ message: String) {
        sink("[\(Format.fixed(elapsed, 2).leftPadded(7)) s] \(phase): \(message)")
    }

    /// Seconds in a duration.
    public static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// Runs `body` and returns its result with the seconds it took.
    public static func timed<T>(_ body: () -> T) -> (T, Double) {
        let t0 = ContinuousClock.now
        let v = body()
        return (v, seconds(ContinuousClock.now - t0))
    }

    /// Runs a throwing `body` and returns its result with the seconds it took.
    public static func timedThrowing<T>(_ body: () throws(TrainerError) -> T) throws(TrainerError) -> (T, Double) {
        let t0 = ContinuousClock.now
        let v = try body()
        return (v, seconds(ContinuousClock.now - t0))
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
