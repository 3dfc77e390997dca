import KairosKernels
@testable import KairosModelFormat
import KairosTestSupport
import Testing

/// The `item_first_seen` section (format 1.1) and the freshness definition the trainer and the server share.
@Suite struct FirstSeenTests {
    /// Hand-computed values: 5 days old with a 5-day half-life is 0.5, 10 days 0.25; first seen at or after the
    /// reference is 1; never seen or no half-life is 0.
    @Test func freshnessValues() {
        let day: Int64 = 86_400
        let ref: Int64 = 1_700_000_000
        #expect(abs(ItemFirstSeen.freshness(firstSeen: ref - 5 * day, reference: ref, halfLifeDays: 5) - 0.5) < 1e-6)
        #expect(abs(ItemFirstSeen.freshness(firstSeen: ref - 10 * day, reference: ref, halfLifeDays: 5) - 0.25) < 1e-6)
        #expect(abs(ItemFirstSeen.freshness(firstSeen: ref - 3 * day, reference: ref, halfLifeDays: 30) - 0.933033) < 1e-5)
        #expect(ItemFirstSeen.freshness(firstSeen: ref + day, reference: ref, halfLifeDays: 5) == 1)
        #expect(ItemFirstSeen.freshness(firstSeen: ItemFirstSeen.never, reference: ref, halfLifeDays: 5) == 0)
        #expect(ItemFirstSeen.freshness(firstSeen: nil, reference: ref, halfLifeDays: 5) == 0)
        #expect(ItemFirstSeen.freshness(firstSeen: ref, reference: ref, halfLifeDays: 0) == 0)
        #expect(ItemFirstSeen.freshness(firstSeen: ref, reference: ref, halfLifeDays: .nan) == 0)
    }

    /// Written times (one item never seen) and the reference time come back; the file says 1.1 with the section
    /// and 1.0 without it, so files without it stay byte-identical to what 1.0 writers made.
    @Test func roundTripAndMinorVersion() throws {
        let folder = TempFolder()
        var c = smallContents()
        var times = (0..<300).map { Int64(1_600_000_000 + $0 * 1_000) }
        times[17] = ItemFirstSeen.never
        c.firstSeen = ItemFirstSeen(times: times, referenceTime: 1_700_000_123)
        let path = "\(folder.path)/fresh.kmodel"
        try ModelWriter.write(c, to: path)
        let m = try MappedModel(path: path)
        let view = try #require(m.firstSeen)
        #expect(m.header.minorVersion == 1)
        #expect(view.referenceTime == 1_700_000_123)
        #expect(view.time(17) == nil)
        #expect((0..<300).filter { $0 != 17 }.allSatisfy { view.time($0) == times[$0] })
        let f = view.freshness(halfLifeDays: 30)
        #expect(f[17] == 0 && f[299] > f[0] && f[0] > 0)

        c.firstSeen = nil
        let old = "\(folder.path)/old.kmodel"
        try ModelWriter.write(c, to: old)
        let m0 = try MappedModel(path: old)
        #expect(m0.header.minorVersion == 0 && m0.firstSeen == nil)
    }

    /// A first-seen section whose size does not match the item count is refused with a clear error.
    @Test func wrongSizeIsRejected() throws {
        let folder = TempFolder()
        var c = smallContents()
        c.firstSeen = ItemFirstSeen(times: [Int64](repeating: 0, count: 300), referenceTime: 0)
        var p = FilePatcher(bytes: try ModelWriter.encode(c))
        let e = p.entryOffset(p.index(of: .itemFirstSeen))
        p.write(UInt64(299), at: e + 32)  // rows
        p.reseal()
        let error = loadError(p.bytes, in: folder)
        #expect(error?.code == .countMismatch && error?.section == "item_first_seen", "\(String(describing: error))")
        // And the writer refuses a wrong count before writing anything.
        c.firstSeen = ItemFirstSeen(times: [1, 2], referenceTime: 0)
        #expect(throws: ModelFormatError.self) { try ModelWriter.encode(c) }
    }
}
