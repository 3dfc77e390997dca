import KairosModelFormat
import KairosProtocol
@testable import KairosScoring
import Testing

@Suite struct PushPolicyTests {
    let ref = ModelRef(name: "m")
    // 2026-01-01T00:00:00Z is a Thursday.
    let thursdayMidnight: Int64 = 1_767_225_600

    /// Hour-of-week buckets start on Monday 00:00 UTC.
    @Test func bucketsStartOnMonday() {
        #expect(PushPolicy.bucket(thursdayMidnight) == 72)
        #expect(PushPolicy.bucket(thursdayMidnight - 3 * 86_400 + 10 * 3600) == 10)
        #expect(PushPolicy.bucket(thursdayMidnight + 4 * 86_400 - 1) == 167)
    }

    func decide(_ r: PushDecideRequest) -> PushDecideResponse { PushPolicy.decide(r, on: testSnapshot, now: 0) }

    func request(at t: Int64, pushes: [Int64] = [], perDay: UInt8 = 2, gap: UInt32 = 0, quiet: (UInt8, UInt8) = (0, 0), offset: Int16 = 0, threshold: Float = -1000) -> PushDecideRequest {
        PushDecideRequest(
            model: ref, user: "user-5", recentPushes: pushes, maxPerDay: perDay, maxPerWeek: 0, minGapSeconds: gap,
            quietStartHour: quiet.0, quietEndHour: quiet.1, utcOffsetMinutes: offset, threshold: threshold, k: 3,
            context: RealtimeContext(now: t)
        )
    }

    /// The daily cap holds the push until the older push leaves the 24-hour window.
    @Test func dailyCapDefersUntilTheWindowFrees() {
        let t = thursdayMidnight + 18 * 3600
        let r = decide(request(at: t, pushes: [t - 20 * 3600, t - 3600], perDay: 2))
        #expect(r.decision == .notNow && r.reason == .dailyCap && r.sendAt == t + 4 * 3600)
        #expect(r.items.count == 3)
    }

    /// The minimum gap defers to last push + gap.
    @Test func minimumGapDefers() {
        let t = thursdayMidnight + 18 * 3600
        let r = decide(request(at: t, pushes: [t - 600], perDay: 0, gap: 3600))
        #expect(r.decision == .notNow && r.reason == .minimumGap && r.sendAt == t + 3000)
    }

    /// Quiet hours in the user's local time defer to their end (here 08:00 local = 13:00 UTC at UTC-5).
    @Test func quietHoursUseLocalTime() {
        let t = thursdayMidnight + 4 * 3600  // 04:00 UTC = 23:00 local the day before
        let r = decide(request(at: t, quiet: (22, 8), offset: -300))
        #expect(r.decision == .notNow && r.reason == .quietHours && r.sendAt == thursdayMidnight + 13 * 3600)
    }

    /// A weak best item is never pushed.
    @Test func belowThresholdIsNever() {
        let r = decide(request(at: thursdayMidnight, threshold: 1e6))
        #expect(r.decision == .never && r.reason == .belowThreshold && r.sendAt == 0)
    }

    /// Timing follows the user's activity profile: push at a busy hour, defer from a dead one to the best hour.
    @Test func timingFollowsTheActivityProfile() throws {
        let m = testSnapshot.model
        let profile = m.activity!.profile(ofUser: m.users!.row(of: "user-5")!)
        let peak = try #require((0..<168).max { profile[$0] < profile[$1] })
        let trough = try #require((0..<168).min { profile[$0] < profile[$1] })
        // Monday 00:00 UTC of the week containing 2026-01-01.
        let monday = thursdayMidnight - 3 * 86_400
        let atPeak = decide(request(at: monday + Int64(peak) * 3600))
        #expect(atPeak.decision == .pushNow && atPeak.reason == .ok)
        let atTrough = decide(request(at: monday + Int64(trough) * 3600))
        #expect(atTrough.decision == .notNow && atTrough.reason == .betterTimeLater)
        #expect(atTrough.sendAt > monday + Int64(trough) * 3600)
        #expect(Int(profile[PushPolicy.bucket(atTrough.sendAt)]) * 2 > Int(profile[trough]))
    }
}
