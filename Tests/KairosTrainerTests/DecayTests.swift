import KairosModelFormat
import Testing

@testable import KairosTrainer

@Suite struct DecayTests {
    let day = 86400.0

    /// DOMAIN.md's worked example: lambda 0.1/day, 5 days old: exponential 0.6065, linear 0.5.
    @Test func workedExample() {
        let e = DecaySpec.exponential(lambdaPerDay: 0.1)
        #expect(abs(e.weight(ageSeconds: 5 * day) - 0.60653) < 1e-4)
        let l = DecaySpec.linear(windowDays: 10)  // lambda 0.1/day: zero after 1/lambda = 10 days
        #expect(abs(l.weight(ageSeconds: 5 * day) - 0.5) < 1e-12)
        #expect(l.weight(ageSeconds: 11 * day) == 0)
    }

    /// Half-life means half; sigmoid is 1/2 at its midpoint and steps from ~1 to ~0 around it; none is 1.
    @Test func halfLifeSigmoidAndNone() {
        #expect(abs(DecaySpec.exponential(halfLifeDays: 30).weight(ageSeconds: 30 * day) - 0.5) < 1e-12)
        let s = DecaySpec.sigmoid(midpointDays: 10, steepnessPerDay: 2)
        #expect(abs(s.weight(ageSeconds: 10 * day) - 0.5) < 1e-12)
        #expect(s.weight(ageSeconds: 5 * day) > 0.99)
        #expect(s.weight(ageSeconds: 15 * day) < 0.01)
        #expect(DecaySpec(form: .none).weight(ageSeconds: 1e9) == 1)
        // Events after the reference time count as age 0.
        #expect(DecaySpec.exponential(halfLifeDays: 1).weight(ageSeconds: -day) == 1)
    }
}
