public import KairosModelFormat

#if canImport(Glibc)
    import Glibc
#endif

extension DecaySpec {
    /// The weight of an event `ageSeconds` old (negative ages, events after the reference time, count as 0).
    ///
    /// exponential: `exp(-ln 2 * t / halfLife)`; linear: `max(0, 1 - t / window)`;
    /// sigmoid: `1 / (1 + exp(-steepness * (midpoint - t)))`; none: 1.
    public func weight(ageSeconds: Double) -> Double {
        let t = max(0, ageSeconds)
        switch form {
        case .none:
            return 1
        case .exponential:
            guard let h = halfLifeSeconds, h > 0 else { return 1 }
            return exp(-M_LN2 * t / h)
        case .linear:
            guard let w = windowSeconds, w > 0 else { return 1 }
            return max(0, 1 - t / w)
        case .sigmoid:
            guard let m = midpointSeconds, let k = steepnessPerSecond else { return 1 }
            return 1 / (1 + exp(-k * (m - t)))
        }
    }

    /// An exponential decay with the given half-life in days.
    public static func exponential(halfLifeDays: Double) -> DecaySpec {
        DecaySpec(form: .exponential, halfLifeSeconds: halfLifeDays * 86400)
    }

    /// Exponential decay from a rate `lambda` per day (`w = exp(-lambda * t)`, half-life `ln 2 / lambda`).
    public static func exponential(lambdaPerDay: Double) -> DecaySpec {
        DecaySpec(form: .exponential, halfLifeSeconds: M_LN2 / lambdaPerDay * 86400)
    }

    /// Linear decay reaching zero after `windowDays`.
    public static func linear(windowDays: Double) -> DecaySpec {
        DecaySpec(form: .linear, windowSeconds: windowDays * 86400)
    }

    /// Logistic step: about 1 for events younger than `midpointDays`, about 0 for older; `steepnessPerDay` sets sharpness.
    public static func sigmoid(midpointDays: Double, steepnessPerDay: Double) -> DecaySpec {
        DecaySpec(form: .sigmoid, midpointSeconds: midpointDays * 86400, steepnessPerSecond: steepnessPerDay / 86400)
    }

    /// A short human description, e.g. `exponential(half-life 30 d)`.
    public var summary: String {
        func d(_ s: Double?) -> String { s.map { "\(Format.number($0 / 86400)) d" } ?? "?" }
        switch form {
        case .none: return "none"
        case .exponential: return "exponential(half-life \(d(halfLifeSeconds)))"
        case .linear: return "linear(window \(d(windowSeconds)))"
        case .sigmoid:
            return
                "sigmoid(midpoint \(d(midpointSeconds)), steepness \(Format.number((steepnessPerSecond ?? 0) * 86400))/d)"
        }
    }
}
