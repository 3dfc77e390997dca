import Foundation
import KairosClient
import KairosModelFormat
import KairosProtocol
import KairosScoring
@testable import KairosServer
import KairosTestSupport
import NIOCore
import NIOPosix
import Testing

@Suite struct ServerTests {
    /// Every operation answers end to end through the client, stamped with the model that computed it.
    @Test func everyOperationAnswers() async throws {
        let h = try await ServerHarness.start()
        let c = try await h.client()
        try await c.ping()
        let info = try await c.info()
        #expect(info.models.map(\.name) == ["default"] && info.models[0].items == 300 && info.models[0].dimensions == 16)
        let m = ModelRef(name: "default")
        let stamp = ModelStamp(name: "default", version: 1)
        let score = try await c.score(ScoreRequest(model: m, user: "user-1", candidates: ["item-1", "zzz"]))
        #expect(score.model == stamp && score.itemFlags == [0, 1] && score.scores[0].isFinite && score.scores[1].isNaN)
        let top = try await c.topK(TopKRequest(model: m, user: "user-1", k: 7))
        #expect(top.model == stamp && top.items.count == 7)
        #expect(zip(top.items, top.items.dropFirst()).allSatisfy { $0.score >= $1.score })
        let similar = try await c.similar(SimilarRequest(model: m, item: "item-3", k: 4))
        #expect(similar.items.count == 4 && !similar.items.map(\.item).contains("item-3"))
        let push = try await c.pushDecide(PushDecideRequest(model: m, user: "user-1", context: RealtimeContext(now: 1_767_225_600)))
        #expect(push.model == stamp && push.decision == .notNow && push.reason == .quietHours)
        guard case .hello(let chosen, _, let limits, _) = try await c.call(.hello(versions: [1, 7])) else {
            Issue.record("no HELLO")
            return
        }
        #expect(chosen == 1 && limits == .standard)
        guard case .stats(_, let open, _, let ops) = try await c.call(.stats) else {
            Issue.record("no STATS")
            return
        }
        #expect(open >= 1 && ops.first { $0.opcode == Opcode.score.rawValue }?.requests == 1)
        await c.close()
        await h.stop()
    }

    /// Each invalid vector gets its documented error; framing errors close only that connection, other errors keep
    /// it usable; and the server keeps serving everyone else.
    @Test(arguments: Vectors.of("invalid"))
    func invalidInputGetsItsDocumentedError(_ v: Vectors.Vector) async throws {
        let h = try await ServerHarness.start()
        let bystander = try await h.client()
        let socket = try RawSocket(port: h.port)
        socket.send(v.bytes)
        let (frames, _) = socket.read(frames: 1)
        guard case .error(let e)? = frames.first?.1 else {
            Issue.record("\(v.name): no error response")
            await h.stop()
            return
        }
        #expect(e.code.name == v.error, "\(v.name)")
        if v.closes {
            #expect(socket.readsEOF(), "\(v.name): connection left open after a framing error")
        } else {
            socket.send(frameBytes(.ping, id: 99))
            let after = socket.read(frames: 1)
            #expect(after.frames.first?.0.requestID == 99, "\(v.name): connection unusable after a request error")
        }
        try await bystander.ping()
        await bystander.close()
        await h.stop()
    }

    /// A frame that stops halfway is not answered until it completes, and a bad request in a pipeline fails only itself.
    @Test func pipelinesKeepOrderAndIsolateFailures() async throws {
        let h = try await ServerHarness.start()
        let socket = try RawSocket(port: h.port)
        var bytes: [UInt8] = []
        let m = ModelRef(name: "default")
        for i in 0..<60 {
            let request: Request = switch i % 4 {
            case 0: .ping
            case 1: .score(ScoreRequest(model: m, user: "user-\(i)", candidates: ["item-\(i)"]))
            case 2: .topK(TopKRequest(model: ModelRef(name: i % 8 == 2 ? "missing" : "default"), user: "user-2", k: 3))
            default: .similar(SimilarRequest(model: m, item: "item-\(i)", k: 2))
            }
            bytes += frameBytes(request, id: UInt32(1000 + i))
        }
        let half = bytes.count / 2 + 3
        socket.send(Array(bytes[..<half]))
        socket.send(Array(bytes[half...]))
        let (frames, closed) = socket.read(frames: 60)
        #expect(!closed && frames.count == 60)
        #expect(frames.map(\.0.requestID) == (0..<60).map { UInt32(1000 + $0) })
        for (i, f) in frames.enumerated() {
            if i % 8 == 2 {
                guard case .error(let e)? = f.1 else { Issue.record("\(i) should fail"); continue }
                #expect(e.code == .unknownModel)
            } else if case .error? = f.1 {
                Issue.record("request \(i) failed")
            }
        }
        await h.stop()
    }

    /// Scans moved off the event loop still answer in request order, interleaved with inline requests.
    @Test func offloadedScansKeepResponseOrder() async throws {
        let h = try await ServerHarness.start { $0.offloadAboveBytes = 0 }
        let socket = try RawSocket(port: h.port)
        var bytes: [UInt8] = []
        for i in 0..<40 {
            let request: Request = i % 2 == 0 ? .topK(TopKRequest(model: ModelRef(name: "default"), user: "user-\(i)", k: 5)) : .ping
            bytes += frameBytes(request, id: UInt32(i + 1))
        }
        socket.send(bytes)
        let (frames, _) = socket.read(frames: 40)
        #expect(frames.map(\.0.requestID) == (1...40).map { UInt32($0) })
        #expect(frames.enumerated().allSatisfy { i, f in
            if case .topK = f.1 { return i % 2 == 0 }
            if case .pong = f.1 { return i % 2 == 1 }
            return false
        })
        await h.stop()
    }

    /// Offloaded scans past `maxPendingScans` are refused with OVERLOADED at once, in order with the rest, on a
    /// connection that stays usable; places come back as scans finish.
    @Test func scansPastThePendingLimitAreRefused() async throws {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        // Hold the only scan thread, so admitted scans stay pending until the test lets go.
        let gate = DispatchSemaphore(value: 0)
        pool.submit { _ in gate.wait() }
        let h = try await ServerHarness.start(pool: pool) {
            $0.offloadAboveBytes = 0
            $0.maxPendingScans = 2
        }
        let socket = try RawSocket(port: h.port)
        let topK = { (i: Int) in frameBytes(.topK(TopKRequest(model: ModelRef(name: "default"), user: "user-\(i)", k: 5)), id: UInt32(i)) }
        socket.send((1...4).flatMap(topK) + frameBytes(.ping, id: 5))
        // Requests 3 and 4 are refused as soon as they are read; their answers wait behind 1 and 2.
        let deadline = ContinuousClock.now + .seconds(5)
        while h.server.scans.refused < 2 && ContinuousClock.now < deadline { await Task.yield() }
        #expect(h.server.scans.refused == 2 && h.server.scans.current == 2)
        gate.signal()
        let (frames, closed) = socket.read(frames: 5)
        #expect(!closed)
        #expect(frames.map { $0.0.requestID } == [1, 2, 3, 4, 5])
        let kinds = frames.map { f -> String in
            switch f.1 {
            case .topK: "topk"
            case .pong: "pong"
            case .error(let e): e.code == .overloaded && e.message.contains("2 scans") ? "overloaded" : "error \(e)"
            default: "other"
            }
        }
        #expect(kinds == ["topk", "topk", "overloaded", "overloaded", "pong"])
        // Both places are free again: the next scan is served.
        socket.send(topK(6))
        let next = socket.read(frames: 1)
        #expect(next.frames.count == 1 && { if case .topK = next.frames[0].1 { true } else { false } }())
        #expect(h.server.scans.current == 0)
        await h.stop()
        try await pool.shutdownGracefully()
    }

    /// Connections beyond the limit are refused with OVERLOADED; the ones inside it keep working.
    @Test func connectionLimitRefusesWithOverloaded() async throws {
        let h = try await ServerHarness.start { $0.maxConnections = 2 }
        let a = try await h.client()
        let b = try await h.client()
        try await a.ping()
        let extra = try RawSocket(port: h.port)
        let (frames, _) = extra.read(frames: 1)
        guard case .error(let e)? = frames.first?.1 else {
            Issue.record("no refusal")
            await h.stop()
            return
        }
        #expect(e.code == .overloaded)
        #expect(extra.readsEOF())
        try await b.ping()
        await a.close()
        await b.close()
        await h.stop()
    }

    /// A graceful shutdown answers the requests a connection already sent, then closes it and refuses new ones.
    @Test func shutdownDrainsInFlightRequests() async throws {
        let h = try await ServerHarness.start { $0.offloadAboveBytes = 0 }
        let socket = try RawSocket(port: h.port)
        var bytes: [UInt8] = []
        for i in 0..<20 { bytes += frameBytes(.topK(TopKRequest(model: ModelRef(name: "default"), user: "user-\(i)", k: 50)), id: UInt32(i + 1)) }
        socket.send(bytes)
        // Wait until the server has started answering, so the requests are in flight when the shutdown begins.
        let first = socket.read(frames: 1)
        #expect(first.frames.count == 1)
        await h.stop()
        let rest = socket.read(frames: 19)
        #expect(rest.frames.count == 19, "in-flight requests lost in shutdown")
        #expect(rest.frames.allSatisfy { if case .topK = $0.1 { true } else { false } })
    }

    /// Real-time events in a request change the answer (and an unknown user with events gets personal results).
    @Test func realtimeEventsChangeTheAnswerOverTheWire() async throws {
        let h = try await ServerHarness.start()
        let c = try await h.client()
        let m = ModelRef(name: "default")
        let now: Int64 = 1_767_225_600
        let plain = try await c.topK(TopKRequest(model: m, user: "ghost", k: 5, context: RealtimeContext(now: now)))
        #expect(plain.flags == .fallback)
        let events = (0..<3).map { RealtimeEvent(item: "item-\(40 + $0)", strength: 4, timestamp: now - 60) }
        let personal = try await c.topK(TopKRequest(model: m, user: "ghost", k: 5, context: RealtimeContext(events: events, now: now)))
        #expect(personal.flags == .coldStartFromEvents)
        #expect(personal.items.map(\.item) != plain.items.map(\.item))
        await c.close()
        await h.stop()
    }
}

/// A TOPK or SIMILAR within a small category reads only that category's rows, so once the category index is built it
/// is answered on the event loop like a SCORE, while catalogue scans (and the same requests before the index exists)
/// go to the scan threads; a category no item has is answered at once.
@Test func smallCategoriesAreNotOffloaded() throws {
    let path = "/tmp/kairos-router-category-\(getpid()).kmodel"
    try ModelWriter.write(
        SyntheticModel.make(name: "c", version: 1, items: 20_000, users: 10, dimensions: 16, categories: 200, seed: 4), to: path
    )
    defer { unlink(path) }
    let snapshot = ModelSnapshot(model: try MappedModel(path: path), loadedAt: 0)
    let store = ModelStore()
    store.install(snapshot)
    // A full scan reads 20,000 rows (at least 16 bytes each); a category about 100 rows of 64 bytes.
    let router = RequestRouter(store: store, offloadAboveBytes: 100_000)
    let m = ModelRef(name: "c")
    func offloaded(_ r: Request) -> Bool {
        var b = ByteBuffer()
        r.writePayload(to: &b)
        if case .offload = router.plan(opcode: r.opcode.rawValue, payload: b) { return true }
        return false
    }
    let topK = Request.topK(TopKRequest(model: m, user: "user-1", k: 10, category: "category-7"))
    let similar = Request.similar(SimilarRequest(model: m, item: "item-5", k: 10, category: "category-7"))
    #expect(offloaded(topK) && offloaded(similar))  // the index is not built yet: counted as scans
    snapshot.buildDerivedTables()
    #expect(!offloaded(topK) && !offloaded(similar))
    #expect(offloaded(.topK(TopKRequest(model: m, user: "user-1", k: 10))))
    #expect(offloaded(.similar(SimilarRequest(model: m, item: "item-5", k: 10))))
    #expect(offloaded(.pushDecide(PushDecideRequest(model: m, user: "user-1"))))
    #expect(!offloaded(.topK(TopKRequest(model: m, user: "user-1", k: 10, category: "no-such"))))
}

/// The open-files limit is raised to fit the connections asked for, up to the hard limit; past it, fewer connections
/// are served.
@Test func openFilesLimitFitsTheConnections() throws {
    var r = rlimit()
    let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    try #require(getrlimit(resource, &r) == 0)
    let soft = r.rlim_cur
    if soft != rlim_t.max && soft > 64 {
        // One descriptor below where it was (nothing in use is lost), then asked for exactly that many: raised back.
        var lowered = r
        lowered.rlim_cur = soft - 1
        try #require(setrlimit(resource, &lowered) == 0)
        let fit = OpenFilesLimit.fit(connections: Int(soft) - 32, reserve: 32)
        #expect(fit.limit == Int(soft) && fit.connections == Int(soft) - 32)
        var now = rlimit()
        _ = getrlimit(resource, &now)
        #expect(now.rlim_cur == soft)
    }
    if r.rlim_max != rlim_t.max && r.rlim_max < 1 << 30 {
        // More than the hard limit allows: the soft limit goes up to the hard one, and the connections that fit are
        // what is left of it after the reserve.
        let fit = OpenFilesLimit.fit(connections: Int(r.rlim_max) + 1000, reserve: 100)
        #expect(fit.limit == Int(r.rlim_max) && fit.connections == Int(r.rlim_max) - 100)
    }
    let small = OpenFilesLimit.fit(connections: 10, reserve: 10)
    #expect(small.connections == 10 && small.limit >= 20)
}
