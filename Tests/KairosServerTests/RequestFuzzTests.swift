import Glibc
import KairosModelFormat
import KairosProtocol
import KairosScoring
import KairosServer
import KairosTestSupport
import NIOCore
import Testing

/// Every request a client can send is answered: valid requests with bytes changed (bit flips, 0, 0xFF, and 64-bit
/// edge values such as Int64.min/max in time, count and weight fields) go through the router — decode, model lookup,
/// scoring — and come back as a response or an error frame, never a trap. Decoding alone (the protocol tests) cannot
/// show that what a decoder accepts is safe to compute with: times near Int64.max decoded fine and then overflowed a
/// subtraction in the scorer, stopping the server.
@Test func mutatedRequestsAreAnsweredNotTrapped() throws {
    let path = "/tmp/kairos-request-fuzz-\(getpid()).kmodel"
    var contents = SyntheticModel.make(name: "m", version: 1, items: 200, users: 20, dimensions: 8, categories: 4, seed: 3)
    contents.metadata.scoring = [
        "exclude-seen": ["dot": 1, "trending": 0.5, "category": 2, "freshness": 0.3],
        "allow-repeats": ["dot": 1, "buy-again": 1.5, "category": 1],
    ]
    try ModelWriter.write(contents, to: path)
    defer { unlink(path) }
    let snapshot = ModelSnapshot(model: try MappedModel(path: path), loadedAt: 0)
    snapshot.buildDerivedTables()
    let store = ModelStore()
    store.install(snapshot)
    let router = RequestRouter(store: store, offloadAboveBytes: 1 << 30, clock: { 1_767_225_600 })

    let m = ModelRef(name: "m")
    let t: Int64 = 1_767_225_000
    let context = RealtimeContext(
        events: [RealtimeEvent(item: "item-3", strength: 4, timestamp: t - 600), RealtimeEvent(item: "item-9", strength: 1, timestamp: t)],
        decay: .exponential(halfLifeSeconds: 3600), now: t + 60
    )
    let requests: [Request] = [
        .score(ScoreRequest(model: m, user: "user-2", candidates: ["item-1", "item-7", "nope"], context: context)),
        .topK(TopKRequest(model: m, user: "user-4", k: 5, options: [.allowRepeats, .customWeights], category: "category-1",
                          trendingWeight: 0.5, buyAgainWeight: 0.2, exclude: ["item-2"], context: context)),
        .topK(TopKRequest(model: m, user: "new-user", k: 7, context: context)),
        .similar(SimilarRequest(model: m, item: "item-5", k: 4, category: "category-2")),
        .pushDecide(PushDecideRequest(model: m, user: "user-1", recentPushes: [t - 7200, t - 90_000], utcOffsetMinutes: 120,
                                      threshold: 0.1, k: 3, context: context)),
    ]
    var rng = SplitMix64(seed: FuzzSettings.seed(default: 9))
    let trials = FuzzSettings.trials(default: 3000)
    let edges: [UInt64] = [0, 1, UInt64(bitPattern: Int64.max), UInt64(bitPattern: Int64.min), UInt64.max,
                           UInt64(bitPattern: -1_000_000_000_000), 253_402_300_799, 253_402_300_800, 0x7F80_0000, 0xFF80_0000]
    var answered = 0
    var refused = 0
    for trial in 0..<trials {
        let request = requests[trial % requests.count]
        var b = ByteBuffer()
        request.writePayload(to: &b)
        var bytes = Array(b.readableBytesView)
        for _ in 0...(rng.next() % 2) {
            let at = Int(rng.next() % UInt64(bytes.count))
            switch rng.next() % 4 {
            case 0: bytes[at] ^= UInt8(1 << (rng.next() % 8))
            case 1: bytes[at] = [0, 0xFF][Int(rng.next() % 2)]
            default:
                // A 64-bit (or, at the end, a 32-bit) edge value at any byte offset: time, count and weight fields.
                let value = edges[Int(rng.next() % UInt64(edges.count))]
                withUnsafeBytes(of: value.littleEndian) { v in
                    for i in 0..<min(8, bytes.count - at) { bytes[at + i] = v[i] }
                }
            }
        }
        let response: Response
        switch router.plan(opcode: request.opcode.rawValue, payload: ByteBuffer(bytes: bytes)) {
        case .done(let r): response = r
        case .offload(let work): response = work()
        }
        if case .error(let e) = response {
            refused += 1
            #expect(e.code != .internalError, "trial \(trial): \(e)")
        } else {
            answered += 1
        }
    }
    // Both outcomes are reached: the scorer runs on accepted requests, the decoder refuses the rest.
    #expect(answered > trials / 10 && refused > trials / 10, "answered \(answered), refused \(refused)")
}
