import Glibc
import KairosKernels
import KairosModelFormat
import KairosProtocol
import KairosTestSupport
import Testing

@testable import KairosScoring

/// Model files corrupted *behind* their checksums (bytes changed, then every checksum recomputed, as a buggy or
/// hostile writer would): the loader must refuse each one or hand back a model that every request can be served from.
/// Checksums only catch damage in transit; what a file says must be checked on its own.
@Suite struct CorruptModelTests {
    /// A small model with every optional section and a stored blend that uses every term (category affinity, buy-again,
    /// freshness); uncompressed, a changed byte changes a value rather than an LZ4 block.
    static func pristine(encoding: RowEncoding, compress: Bool) throws -> [UInt8] {
        var c = SyntheticModel.make(name: "m", version: 1, items: 48, users: 10, dimensions: 8, categories: 4, encoding: encoding, seed: 11)
        c.metadata.scoring = [
            "exclude-seen": ["dot": 1, "trending": 0.5, "category": 2, "freshness": 0.3],
            "allow-repeats": ["dot": 1, "buy-again": 1.5, "category": 1],
        ]
        return try ModelWriter.encode(c, compress: compress)
    }

    /// Serves every kind of request from `s` and checks the answers are well formed.
    static func serveEverything(_ s: ModelSnapshot) -> [String] {
        var problems: [String] = []
        let m = s.model
        let ref = ModelRef(name: "m")
        let t: Int64 = 1_767_225_600
        let items = (0..<min(m.itemCount, 6)).map { m.items.table[$0] } + ["item-unknown"]
        let users = (0..<min(m.userCount, 4)).map { m.users!.table[$0] } + ["user-unknown"]
        let context = RealtimeContext(events: [RealtimeEvent(item: items[0], strength: 4, timestamp: t - 60)], now: t)
        for user in users {
            for ctx in [RealtimeContext(), context] {
                let score = Scorer.score(ScoreRequest(model: ref, user: user, candidates: IdList(items), context: ctx), on: s, now: t)
                if score.scores.count != items.count { problems.append("SCORE \(user): \(score.scores.count) scores") }
                for options: TopKRequest.Options in [[], .allowRepeats, [.customWeights], [.allowRepeats, .customWeights]] {
                    for category in ["", "category-1"] {
                        let r = TopKRequest(
                            model: ref, user: user, k: 5, options: options, category: category, trendingWeight: 0.4,
                            buyAgainWeight: 0.2, exclude: [items[1]], context: ctx
                        )
                        let top = Scorer.topK(r, on: s, now: t)
                        if top.items.count > 5 { problems.append("TOPK \(user): \(top.items.count) items") }
                        if top.items.contains(where: { $0.score.isNaN }) { problems.append("TOPK \(user): NaN") }
                    }
                }
                let push = PushPolicy.decide(PushDecideRequest(model: ref, user: user, context: ctx), on: s, now: t)
                if push.items.count > 3 { problems.append("PUSH \(user): \(push.items.count) items") }
            }
        }
        for item in items {
            for category in ["", "category-2"] {
                if let r = Scorer.similar(SimilarRequest(model: ref, item: item, k: 4, category: category), on: s),
                    r.items.count > 4 || r.items.contains(where: { $0.score.isNaN })
                {
                    problems.append("SIMILAR \(item): \(r.items)")
                }
            }
        }
        return problems
    }

    /// Random changes (bit flips, 0, 0xFF, random bytes, 32-bit edge values such as one past the last item) to section
    /// payloads and table entries, resealed. `KAIROS_FUZZ_TRIALS` and `KAIROS_FUZZ_SEED` run it longer (200,000 trials
    /// over seeds 1-5 passed); `KAIROS_FUZZ_TRACE` writes each trial's number to stderr, to find one that crashes.
    @Test(arguments: [(RowEncoding.float32, false), (.int8, false), (.float32, true)])
    func valuesChangedBehindTheChecksumsAreRefusedOrServed(encoding: RowEncoding, compressed: Bool) throws {
        let path = "/tmp/kairos-corrupt-model-\(getpid())-\(encoding)-\(compressed).kmodel"
        defer { unlink(path) }
        let original = try Self.pristine(encoding: encoding, compress: compressed)
        let trials = FuzzSettings.trials(default: 500)
        var rng = SplitMix64(seed: FuzzSettings.seed(default: 7))
        var loaded = 0
        var refused = 0
        for trial in 0..<trials {
            var p = FilePatcher(bytes: original)
            let sections = p.sectionCount
            // Mostly section payloads; some table entries (encodings, sizes, counts, shapes, parameters).
            for _ in 0...(rng.next() % 3) {
                let i = Int(rng.next() % UInt64(sections))
                var at: Int
                if rng.next() % 4 == 0 {
                    at = p.entryOffset(i) + 4 + Int(rng.next() % 52)
                } else {
                    let (offset, size) = p.range(ofEntry: i)
                    // (An earlier change in this trial may have moved the section out of the file.)
                    guard size > 0, offset < p.bytes.count, size <= p.bytes.count - offset else { continue }
                    at = offset + Int(rng.next() % UInt64(size))
                }
                switch rng.next() % 5 {
                case 0: p.bytes[at] ^= UInt8(1 << (rng.next() % 8))
                case 1: p.bytes[at] = 0xFF
                case 2: p.bytes[at] = 0
                case 3: p.bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                default:
                    // A 32-bit value at a boundary (an index one past the end, a count one short, -1), where
                    // off-by-one checks fail and random bytes rarely land.
                    at -= at % 4
                    guard at + 4 <= p.bytes.count else { continue }
                    let edges: [UInt32] = [47, 48, 49, 3, 4, 5, 9, 10, 11, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x8000_0000]
                    p.write(edges[Int(rng.next() % UInt64(edges.count))], at: at)
                }
            }
            p.reseal()
            FuzzSettings.trace("\(encoding) trial \(trial)")
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            #expect(p.bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == p.bytes.count)
            close(fd)
            let model: MappedModel
            do {
                model = try MappedModel(path: path)
            } catch {
                refused += 1
                continue
            }
            loaded += 1
            let snapshot = ModelSnapshot(model: model, loadedAt: 0)
            if trial % 2 == 1 { snapshot.buildDerivedTables() }  // the server's scan bounds, as after a swap
            let problems = Self.serveEverything(snapshot)
            #expect(problems.isEmpty, "trial \(trial): \(problems.prefix(3))")
        }
        FuzzSettings.trace("loaded \(loaded), refused \(refused)")
        // Both outcomes happen, so the harness reaches the scorer and the checks.
        #expect(loaded > trials / 10 && refused > trials / 10, "loaded \(loaded), refused \(refused)")
    }
}
