public import KairosModelFormat
public import KairosProtocol

#if canImport(Glibc)
import Glibc
#endif

/// The weight of an event of a given age under a decay form (DOMAIN.md's forms; age in seconds, >= 0).
public enum DecayWeight {
    /// Weight of an event `age` seconds old.
    public static func weight(age: Double, decay: EventDecay, modelDefault: DecaySpec) -> Double {
        switch decay {
        case .none: return 1
        case .exponential(let h): return exp(-M_LN2 * age / h)
        case .linear(let w): return max(0, 1 - age / w)
        case .sigmoid(let m, let k): return 1 / (1 + exp(-k * (m - age)))
        case .modelDefault: return weight(age: age, spec: modelDefault)
        }
    }

    /// Weight under a model's stored decay specification (missing parameters mean no decay).
    public static func weight(age: Double, spec: DecaySpec) -> Double {
        switch spec.form {
        case .none: return 1
        case .exponential:
            guard let h = spec.halfLifeSeconds, h > 0 else { return 1 }
            return exp(-M_LN2 * age / h)
        case .linear:
            guard let w = spec.windowSeconds, w > 0 else { return 1 }
            return max(0, 1 - age / w)
        case .sigmoid:
            guard let m = spec.midpointSeconds, let k = spec.steepnessPerSecond else { return 1 }
            return 1 / (1 + exp(-k * (m - age)))
        }
    }
}
