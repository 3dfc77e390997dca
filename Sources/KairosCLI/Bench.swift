public import ArgumentParser
import FoundationEssentials
import Histogram
import KairosModelFormat
import KairosProtocol
import NIOCore
import NIOPosix
import Synchronization
import UnixSignals

/// `kairos bench`: a closed-loop load generator (N connections x P requests in flight) for a running server.
public struct Bench: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(abstract: "Load a running kairos server and report throughput and latency.")

    @Option(help: "Server address.") var host = "127.0.0.1"
    @Option(help: "Server port.") var port = 7878
    @Option(help: "Operation: ping, score, topk, similar, push.") var op = "score"
    @Option(help: "Connections.") var connections = 50
    @Option(help: "Requests in flight per connection.") var pipeline = 1
    @Option(help: "Seconds to run.") var duration = 10.0
    @Option(help: ArgumentHelp(
        "Offered load in requests/s over all connections (open loop: requests are due on a fixed schedule and latency counts from when each was due, so a slow server cannot hide its queueing); default: closed loop.",
        valueName: "rps"
    )) var rate: Double?
    @Option(help: "Candidates per SCORE.") var candidates = 100
    @Option(help: "k for TOPK / SIMILAR / PUSH.") var k: UInt16 = 10
    @Option(help: "Model name.") var model = "default"
    @Option(help: "Item ids are ITEM_PREFIX + 0..<ITEMS.") var itemPrefix = "item-"
    @Option(help: "Number of items in the model.") var items = 2000
    @Option(help: "User ids are USER_PREFIX + 0..<USERS.") var userPrefix = "user-"
    @Option(help: "Number of users in the model.") var users = 500
    @Option(help: "Event-loop threads for the load generator.") var threads = 1
    @Flag(help: "TOPK with repeats allowed (the user's history is scored and merged in).") var allowRepeats = false
    @Option(help: "TOPK and SIMILAR within this category (e.g. category-0 in a make-demo-model model).") var category = ""
    @Option(help: "Draw user and item ids from this model file (a real model's ids) instead of PREFIX + number.") var idsFrom: String?
    @Option(help: "Real-time events per SCORE, TOPK and PUSH request (random items, a minute to an hour old, folded into the user's vector).") var events = 0
    @Option(help: "Distinct requests each connection encodes up front and cycles through (users, items, events).") var distinct = 64
    @Flag(help: "Print one JSON object.") var json = false

    public init() {}

    public func validate() throws {
        guard ["ping", "score", "topk", "similar", "push"].contains(op) else { throw ValidationError("--op must be ping, score, topk, similar or push") }
        guard connections > 0, pipeline > 0, duration > 0, items > 0, users > 0, distinct > 0 else { throw ValidationError("counts must be positive") }
        guard distinct <= 1_000_000 else { throw ValidationError("--distinct must be at most 1000000") }
        guard (0...Int(ServerLimits.standard.maxEvents)).contains(events) else { throw ValidationError("--events must be 0 to \(ServerLimits.standard.maxEvents)") }
        guard (1...65_535).contains(port) else { throw ValidationError("--port must be 1 to 65535") }
        if let rate, !(rate > 0 && rate.isFinite) { throw ValidationError("--rate must be a positive number") }
    }

    /// The ids requests draw from: a model file's own (`--ids-from`), or PREFIX + 0..<N.
    struct IdSource {
        var user: (inout SplitMix) -> String
        var item: (inout SplitMix) -> String
    }

    func idSource() throws -> IdSource {
        guard let idsFrom else {
            let (userPrefix, users, itemPrefix, items) = (userPrefix, users, itemPrefix, items)
            return IdSource(
                user: { "\(userPrefix)\($0.next() % UInt64(users))" },
                item: { "\(itemPrefix)\($0.next() % UInt64(items))" }
            )
        }
        let m = try MappedModel(path: idsFrom)
        let itemIds = (0..<m.itemCount).map { m.items.table[$0] }
        let userIds = m.users.map { u in (0..<m.userCount).map { u.table[$0] } } ?? []
        guard !itemIds.isEmpty, !userIds.isEmpty else { throw ValidationError("\(idsFrom) has no users or no items") }
        return IdSource(
            user: { userIds[Int($0.next() % UInt64(userIds.count))] },
            item: { itemIds[Int($0.next() % UInt64(itemIds.count))] }
        )
    }

    /// Distinct request frames to cycle through (random users and candidates, deterministic).
    func frames(seed: UInt64, ids: IdSource) -> [ByteBuffer] {
        var rng = SplitMix(seed)
        let ref = ModelRef(name: model)
        // A fixed `now`, so that every request folds its events with the same ages.
        let now: Int64 = 1_767_225_600
        return (0..<distinct).map { _ in
            let user = ids.user(&rng)
            let context = RealtimeContext(
                events: (0..<events).map { _ in
                    RealtimeEvent(item: ids.item(&rng), strength: Float(1 << (rng.next() % 4)), timestamp: now - 60 - Int64(rng.next() % 3540))
                },
                now: now
            )
            let request: Request = switch op {
            case "ping": .ping
            case "score":
                .score(ScoreRequest(model: ref, user: user, candidates: IdList((0..<candidates).map { _ in ids.item(&rng) }), context: context))
            case "topk":
                .topK(TopKRequest(model: ref, user: user, k: k, options: allowRepeats ? .allowRepeats : [], category: category, context: context))
            case "similar": .similar(SimilarRequest(model: ref, item: ids.item(&rng), k: k, category: category))
            default: .pushDecide(PushDecideRequest(model: ref, user: user, k: k, context: context))
            }
            var b = ByteBuffer()
            request.writeFrame(requestID: 0, to: &b)
            return b
        }
    }

    public func run() async throws {
        let ids = try idSource()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let results = BenchTotals()
        let stopAt = NIODeadline.now() + .nanoseconds(Int64(duration * 1e9))
        var channels: [any Channel] = []
        // Open loop: each connection has a request due every `connections / rate` seconds, phases spread evenly.
        let interval = rate.map { TimeAmount.nanoseconds(max(1, Int64(Double(connections) / $0 * 1e9))) }
        for c in 0..<connections {
            let frames = self.frames(seed: UInt64(c) &* 0x9E37_79B9, ids: ids)
            let depth = pipeline
            let schedule = interval.map { (every: $0, phase: TimeAmount.nanoseconds($0.nanoseconds * Int64(c) / Int64(connections))) }
            let channel = try await ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { ch in
                    ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandler(LoadHandler(frames: frames, depth: depth, schedule: schedule, stopAt: stopAt, results: results))
                    }
                }
                .connect(host: host, port: port)
                .get()
            channels.append(channel)
        }
        // SIGINT/SIGTERM end the run early but still report (scripts stop an open-ended load this way).
        let signals = Task {
            for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { results.stopped.store(true, ordering: .relaxed) }
        }
        defer { signals.cancel() }
        let started = NIODeadline.now()
        for ch in channels { ch.pipeline.fireUserInboundEventTriggered(LoadHandler.Start()) }
        for ch in channels { try? await ch.closeFuture.get() }
        let elapsed = Double((NIODeadline.now() - started).nanoseconds) / 1e9
        try await group.shutdownGracefully()
        let r = results.value.withLock { $0 }
        let rps = Double(r.requests) / elapsed
        let p = { (q: Double) in Double(r.histogram.valueAtPercentile(q)) / 1000 }
        if json {
            let fields: [(String, JSONValue)] = [
                ("op", .string(op)), ("connections", .integer(Int64(connections))), ("pipeline", .integer(Int64(pipeline))),
                ("offered_rps", rate.map { .number($0) } ?? .null),
                ("duration_s", .number(elapsed)), ("requests", .integer(Int64(r.requests))), ("errors", .integer(Int64(r.errors))),
                ("throughput_rps", .number(rps)),
                ("latency_us", .object([("p50", .number(p(50))), ("p90", .number(p(90))), ("p99", .number(p(99))), ("p999", .number(p(99.9))), ("max", .number(Double(r.histogram.max) / 1000))])),
            ]
            let encoder = JSONEncoder()
            print(String(decoding: try encoder.encode(JSONValue.object(fields)), as: UTF8.self))
        } else {
            let load = rate.map { ", open loop at \(format2($0)) req/s offered" } ?? ""
            print("\(op): \(connections) connections x pipeline \(pipeline)\(load), \(String(format2(elapsed))) s")
            print("requests \(r.requests), errors \(r.errors), throughput \(Int(rps)) req/s")
            print("latency us: p50 \(format2(p(50))), p90 \(format2(p(90))), p99 \(format2(p(99))), p99.9 \(format2(p(99.9))), max \(format2(Double(r.histogram.max) / 1000))")
        }
        if r.requests == 0 { throw ExitCode(1) }
    }

    func format2(_ x: Double) -> String { String(Double(Int(x * 100)) / 100) }
}

/// Shared totals the connections add to when they finish.
final class BenchTotals: Sendable {
    let value = Mutex(BenchResults())
    /// Set by SIGINT/SIGTERM: stop sending, report what was measured.
    let stopped = Atomic<Bool>(false)
}

struct BenchResults: Sendable {
    var requests: UInt64 = 0
    var errors: UInt64 = 0
    /// Latency in nanoseconds.
    var histogram = Histogram<UInt64>(lowestDiscernibleValue: 100, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
}

/// SplitMix64, for deterministic request mixes.
struct SplitMix {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Keeps `depth` requests in flight on one connection until `stopAt`; responses come back in order, so the oldest
/// send time answers each one.
final class LoadHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    struct Start: Sendable {}

    let frames: [ByteBuffer]
    let depth: Int
    let stopAt: NIODeadline
    let results: BenchTotals
    var sent: [UInt64] = []
    var sentHead = 0
    var next = 0
    var cumulation: ByteBuffer?
    var local = BenchResults()
    var stopping = false
    /// Open loop: how often a request falls due, and this connection's offset; nil for closed loop.
    let schedule: (every: TimeAmount, phase: TimeAmount)?
    /// Open loop: times (ns) of requests that are due but not sent because `depth` are in flight.
    var backlog: [UInt64] = []
    var backlogHead = 0
    var ticker: Scheduled<Void>?
    var nextDue = NIODeadline.now()

    init(frames: [ByteBuffer], depth: Int, schedule: (every: TimeAmount, phase: TimeAmount)?, stopAt: NIODeadline, results: BenchTotals) {
        self.frames = frames
        self.depth = depth
        self.schedule = schedule
        self.stopAt = stopAt
        self.results = results
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is Start else { return }
        if let schedule {
            nextDue = NIODeadline.now() + schedule.phase
            arm(context: context, every: schedule.every)
            return
        }
        var out = context.channel.allocator.buffer(capacity: depth * (frames.first?.readableBytes ?? 0))
        let now = NIODeadline.now().uptimeNanoseconds
        for _ in 0..<depth { append(into: &out, sentAt: now) }
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }

    /// Appends the next request to `out` with a fresh request id. All requests of a read batch go out in one buffer
    /// and one write: a write (and a copy-on-write of a shared frame) per request made this load generator, not
    /// the server, the bottleneck of pipelined runs.
    func append(into out: inout ByteBuffer, sentAt: UInt64) {
        var frame = frames[next % frames.count]
        let at = out.writerIndex
        out.writeBuffer(&frame)
        out.setInteger(UInt32(truncatingIfNeeded: next), at: at + 4, endianness: .little)
        next += 1
        sent.append(sentAt)
    }

    /// Open loop: a one-shot timer at the next due time (a repeated task's delay runs from the end of the previous
    /// run, so it drifts late and would add that lateness to every latency).
    func arm(context: ChannelHandlerContext, every: TimeAmount) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        ticker = context.eventLoop.scheduleTask(deadline: nextDue) {
            let (handler, context) = bound.value
            let now = NIODeadline.now()
            while handler.nextDue <= now {  // every request due by now (a timer can fire late), each with its due time
                handler.backlog.append(handler.nextDue.uptimeNanoseconds)
                handler.nextDue = handler.nextDue + every
            }
            if now < handler.stopAt && !handler.results.stopped.load(ordering: .relaxed) {
                handler.arm(context: context, every: every)
            }
            handler.pump(context: context)
        }
    }

    /// Open loop: sends due requests while fewer than `depth` are in flight; their latency counts from when they
    /// fell due, not from when they could be sent.
    func pump(context: ChannelHandlerContext) {
        guard !stopping else { return }
        let over = NIODeadline.now() >= stopAt || results.stopped.load(ordering: .relaxed)
        if over { backlogHead = backlog.count }  // what fell due before the end and was never sent shows as lost throughput
        var out: ByteBuffer?
        while backlogHead < backlog.count && sent.count - sentHead < depth {
            if out == nil { out = context.channel.allocator.buffer(capacity: 4096) }
            append(into: &out!, sentAt: backlog[backlogHead])
            backlogHead += 1
        }
        if backlogHead > 4096 {
            backlog.removeFirst(backlogHead)
            backlogHead = 0
        }
        if let out { context.writeAndFlush(wrapOutboundOut(out), promise: nil) }
        if over && sentHead == sent.count { finish(context: context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if cumulation == nil { cumulation = incoming } else { cumulation!.writeBuffer(&incoming) }
        let now = NIODeadline.now()
        let more = schedule == nil && now < stopAt && !results.stopped.load(ordering: .relaxed)
        var input = cumulation!
        cumulation = nil
        var out: ByteBuffer?
        while case .frame(let header, _) = FrameParser.next(from: &input, maxPayload: 64 << 20) {
            let t = sent[sentHead]
            sentHead += 1
            local.requests += 1
            if header.opcode == FrameHeader.errorResponseCode { local.errors += 1 }
            _ = local.histogram.record(max(100, now.uptimeNanoseconds - t))
            if more {
                if out == nil { out = context.channel.allocator.buffer(capacity: 4096) }
                append(into: &out!, sentAt: now.uptimeNanoseconds)
            }
        }
        if sentHead > 4096 {
            sent.removeFirst(sentHead)
            sentHead = 0
        }
        if input.readableBytes > 0 { cumulation = input }
        if let out { context.writeAndFlush(wrapOutboundOut(out), promise: nil) }
        if schedule != nil {
            pump(context: context)
        } else if !more && sentHead == sent.count {
            finish(context: context)
        }
    }

    func finish(context: ChannelHandlerContext) {
        guard !stopping else { return }
        stopping = true
        ticker?.cancel()
        let mine = local
        results.value.withLock { r in
            r.requests += mine.requests
            r.errors += mine.errors
            r.histogram.add(mine.histogram)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension LoadHandler: Sendable {}
