public import NIOCore

/// Which model a request is for: a name and optionally a pinned version (0 = the version serving now).
public struct ModelRef: Sendable, Hashable {
    /// Model name.
    public var name: String
    /// Pinned version, or 0 for the current one.
    public var version: UInt64

    public init(name: String, version: UInt64 = 0) {
        self.name = name
        self.version = version
    }

    func write(to b: inout ByteBuffer) {
        b.putString(name)
        b.put(version)
    }

    static func read(_ r: inout PayloadReader) throws(ProtocolError) -> ModelRef {
        ModelRef(name: try r.string("model name"), version: try r.u64("model version"))
    }
}

/// Decay override for real-time events; `.modelDefault` uses the decay stored in the model.
public enum EventDecay: Sendable, Hashable {
    case modelDefault
    case none
    case exponential(halfLifeSeconds: Double)
    case linear(windowSeconds: Double)
    case sigmoid(midpointSeconds: Double, steepnessPerSecond: Double)

    func write(to b: inout ByteBuffer) {
        let (form, a, c): (UInt8, Double, Double) = switch self {
        case .modelDefault: (0, 0, 0)
        case .none: (1, 0, 0)
        case .exponential(let h): (2, h, 0)
        case .linear(let w): (3, w, 0)
        case .sigmoid(let m, let k): (4, m, k)
        }
        b.put(form)
        b.put(a)
        b.put(c)
    }

    static func read(_ r: inout PayloadReader) throws(ProtocolError) -> EventDecay {
        let form = try r.u8("decay form")
        let a = try r.finiteF64("decay parameter a")
        let c = try r.finiteF64("decay parameter b")
        switch form {
        case 0: return .modelDefault
        case 1: return .none
        case 2 where a > 0: return .exponential(halfLifeSeconds: a)
        case 3 where a > 0: return .linear(windowSeconds: a)
        case 4 where c > 0: return .sigmoid(midpointSeconds: a, steepnessPerSecond: c)
        case 2, 3, 4: throw ProtocolError(.badRequest, "decay parameters must be positive")
        default: throw ProtocolError(.badRequest, "unknown decay form \(form)")
        }
    }
}

/// One thing the user just did, folded into their vector at request time.
public struct RealtimeEvent: Sendable, Hashable {
    /// Item id.
    public var item: String
    /// Strength (e.g. view 1, click 2, cart 4, purchase 8); must be finite.
    public var strength: Float
    /// When it happened, unix seconds.
    public var timestamp: Int64

    public init(item: String, strength: Float, timestamp: Int64) {
        self.item = item
        self.strength = strength
        self.timestamp = timestamp
    }
}

/// The real-time part of SCORE, TOPK and PUSH_DECIDE: recent events, their decay, and the request's "now".
public struct RealtimeContext: Sendable, Hashable {
    /// Recent events.
    public var events: [RealtimeEvent]
    /// Decay applied to them.
    public var decay: EventDecay
    /// Reference time, unix seconds; 0 = the server's clock.
    public var now: Int64

    public init(events: [RealtimeEvent] = [], decay: EventDecay = .modelDefault, now: Int64 = 0) {
        self.events = events
        self.decay = decay
        self.now = now
    }

    func write(to b: inout ByteBuffer) {
        b.put(UInt16(events.count))
        for e in events {
            b.putString(e.item)
            b.put(e.strength)
            b.put(e.timestamp)
        }
        decay.write(to: &b)
        b.put(now)
    }

    static func read(_ r: inout PayloadReader, limits: ServerLimits) throws(ProtocolError) -> RealtimeContext {
        let n = try r.count(Int(try r.u16("event count")), "events", minSize: 14, limit: Int(limits.maxEvents))
        var events: [RealtimeEvent] = []
        events.reserveCapacity(n)
        for _ in 0..<n {
            events.append(RealtimeEvent(item: try r.string("event item"), strength: try r.finiteF32("event strength"), timestamp: try r.time("event timestamp")))
        }
        return RealtimeContext(events: events, decay: try EventDecay.read(&r), now: try r.time("now"))
    }
}

/// SCORE: one score per candidate item for a user.
public struct ScoreRequest: Sendable, Hashable {
    public var model: ModelRef
    public var user: String
    public var candidates: IdList
    public var context: RealtimeContext

    public init(model: ModelRef, user: String, candidates: IdList, context: RealtimeContext = RealtimeContext()) {
        self.model = model
        self.user = user
        self.candidates = candidates
        self.context = context
    }
}

/// TOPK: the user's best k items.
public struct TopKRequest: Sendable, Hashable {
    /// Option bits.
    public struct Options: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// Keep items from the user's history (repeat purchases); by default they are excluded.
        public static let allowRepeats = Options(rawValue: 1)
        /// Use the request's blend weights instead of the model's.
        public static let customWeights = Options(rawValue: 2)
    }

    public var model: ModelRef
    public var user: String
    public var k: UInt16
    public var options: Options
    /// Only items of this category ("" = any).
    public var category: String
    /// Weight of trending popularity in the blend (with ``Options/customWeights``).
    public var trendingWeight: Float
    /// Weight of buy-again in the blend (with ``Options/customWeights``).
    public var buyAgainWeight: Float
    /// Items never to return.
    public var exclude: [String]
    public var context: RealtimeContext

    public init(
        model: ModelRef,
        user: String,
        k: UInt16,
        options: Options = [],
        category: String = "",
        trendingWeight: Float = 0,
        buyAgainWeight: Float = 0,
        exclude: [String] = [],
        context: RealtimeContext = RealtimeContext()
    ) {
        self.model = model
        self.user = user
        self.k = k
        self.options = options
        self.category = category
        self.trendingWeight = trendingWeight
        self.buyAgainWeight = buyAgainWeight
        self.exclude = exclude
        self.context = context
    }
}

/// SIMILAR: items nearest to one item by embedding similarity.
public struct SimilarRequest: Sendable, Hashable {
    public var model: ModelRef
    public var item: String
    public var k: UInt16
    /// Only items of this category ("" = any).
    public var category: String

    public init(model: ModelRef, item: String, k: UInt16, category: String = "") {
        self.model = model
        self.item = item
        self.k = k
        self.category = category
    }
}

/// PUSH_DECIDE: whether to push to a user now, what, and if not now, when.
public struct PushDecideRequest: Sendable, Hashable {
    public var model: ModelRef
    public var user: String
    /// Unix seconds of the pushes already sent to this user (the caller keeps this state).
    public var recentPushes: [Int64]
    /// Most pushes in any 24 hours (0 = no cap).
    public var maxPerDay: UInt8
    /// Most pushes in any 7 days (0 = no cap).
    public var maxPerWeek: UInt8
    /// Minimum seconds between two pushes.
    public var minGapSeconds: UInt32
    /// Quiet hours in the user's local time, [start, end) hours 0-23; start == end means none.
    public var quietStartHour: UInt8
    public var quietEndHour: UInt8
    /// The user's offset from UTC in minutes.
    public var utcOffsetMinutes: Int16
    /// Minimum score of the best item for a push to be worth sending.
    public var threshold: Float
    /// Items to propose.
    public var k: UInt16
    public var context: RealtimeContext

    public init(
        model: ModelRef,
        user: String,
        recentPushes: [Int64] = [],
        maxPerDay: UInt8 = 2,
        maxPerWeek: UInt8 = 7,
        minGapSeconds: UInt32 = 4 * 3600,
        quietStartHour: UInt8 = 22,
        quietEndHour: UInt8 = 8,
        utcOffsetMinutes: Int16 = 0,
        threshold: Float = 0,
        k: UInt16 = 3,
        context: RealtimeContext = RealtimeContext()
    ) {
        self.model = model
        self.user = user
        self.recentPushes = recentPushes
        self.maxPerDay = maxPerDay
        self.maxPerWeek = maxPerWeek
        self.minGapSeconds = minGapSeconds
        self.quietStartHour = quietStartHour
        self.quietEndHour = quietEndHour
        self.utcOffsetMinutes = utcOffsetMinutes
        self.threshold = threshold
        self.k = k
        self.context = context
    }
}

/// A decoded request.
public enum Request: Sendable, Hashable {
    case ping
    /// Protocol versions the client speaks.
    case hello(versions: [UInt8])
    case info
    case stats
    case score(ScoreRequest)
    case topK(TopKRequest)
    case similar(SimilarRequest)
    case pushDecide(PushDecideRequest)
    /// Rescan the models folder now.
    case reload
    /// Serve this version of a model (0 = unpin: the highest valid version serves again).
    case pin(name: String, version: UInt64)
    /// Serve the highest valid version below the one serving now.
    case rollback(name: String)

    /// The request's opcode.
    public var opcode: Opcode {
        switch self {
        case .ping: .ping
        case .hello: .hello
        case .info: .info
        case .stats: .stats
        case .score: .score
        case .topK: .topK
        case .similar: .similar
        case .pushDecide: .pushDecide
        case .reload: .reload
        case .pin: .pin
        case .rollback: .rollback
        }
    }

    /// Writes the payload (no header).
    public func writePayload(to b: inout ByteBuffer) {
        switch self {
        case .ping, .info, .stats, .reload:
            break
        case .pin(let name, let version):
            b.putString(name)
            b.put(version)
        case .rollback(let name):
            b.putString(name)
        case .hello(let versions):
            b.put(UInt8(versions.count))
            for v in versions { b.put(v) }
        case .score(let s):
            s.model.write(to: &b)
            b.putString(s.user)
            b.putIdList(s.candidates)
            s.context.write(to: &b)
        case .topK(let t):
            t.model.write(to: &b)
            b.putString(t.user)
            b.put(t.k)
            b.put(t.options.rawValue)
            b.putString(t.category)
            b.put(t.trendingWeight)
            b.put(t.buyAgainWeight)
            b.putStrings(t.exclude)
            t.context.write(to: &b)
        case .similar(let s):
            s.model.write(to: &b)
            b.putString(s.item)
            b.put(s.k)
            b.putString(s.category)
        case .pushDecide(let p):
            p.model.write(to: &b)
            b.putString(p.user)
            b.put(UInt16(p.recentPushes.count))
            for t in p.recentPushes { b.put(t) }
            b.put(p.maxPerDay)
            b.put(p.maxPerWeek)
            b.put(p.minGapSeconds)
            b.put(p.quietStartHour)
            b.put(p.quietEndHour)
            b.put(p.utcOffsetMinutes)
            b.put(p.threshold)
            b.put(p.k)
            p.context.write(to: &b)
        }
    }

    /// Writes a whole frame: header plus payload.
    public func writeFrame(requestID: UInt32, to b: inout ByteBuffer) {
        let start = b.writerIndex
        FrameHeader(opcode: opcode.rawValue, requestID: requestID, length: 0).write(to: &b)
        writePayload(to: &b)
        b.setInteger(UInt32(b.writerIndex - start - FrameHeader.size), at: start + 8, endianness: .little)
    }

    /// Decodes a request payload for `opcode`, enforcing `limits`.
    public static func decode(opcode raw: UInt8, payload: ByteBuffer, limits: ServerLimits) throws(ProtocolError) -> Request {
        guard let opcode = Opcode(rawValue: raw), opcode != .error else {
            throw ProtocolError(.unknownOpcode, "unknown opcode 0x\(hex2(raw))")
        }
        var r = PayloadReader(payload)
        let request: Request
        switch opcode {
        case .ping: request = .ping
        case .reload: request = .reload
        case .pin: request = .pin(name: try r.string("model name"), version: try r.u64("model version"))
        case .rollback: request = .rollback(name: try r.string("model name"))
        case .info: request = .info
        case .stats: request = .stats
        case .hello:
            let n = try r.count(Int(try r.u8("version count")), "versions", minSize: 1, limit: 255)
            var versions: [UInt8] = []
            for _ in 0..<n { versions.append(try r.u8("version")) }
            request = .hello(versions: versions)
        case .score:
            let model = try ModelRef.read(&r)
            let user = try r.string("user")
            let candidates = try r.idList("candidates", limit: Int(limits.maxCandidates))
            request = .score(ScoreRequest(model: model, user: user, candidates: candidates, context: try RealtimeContext.read(&r, limits: limits)))
        case .topK:
            let model = try ModelRef.read(&r)
            let user = try r.string("user")
            let k = try r.u16("k")
            guard k <= limits.maxK else { throw ProtocolError(.limitExceeded, "k \(k), limit \(limits.maxK)") }
            let options = TopKRequest.Options(rawValue: try r.u8("options"))
            let category = try r.string("category")
            let trending = try r.finiteF32("trending weight")
            let buyAgain = try r.finiteF32("buy-again weight")
            let exclude = try r.strings("excluded items", limit: Int(limits.maxCandidates))
            request = .topK(
                TopKRequest(
                    model: model,
                    user: user,
                    k: k,
                    options: options,
                    category: category,
                    trendingWeight: trending,
                    buyAgainWeight: buyAgain,
                    exclude: exclude,
                    context: try RealtimeContext.read(&r, limits: limits)
                )
            )
        case .similar:
            let model = try ModelRef.read(&r)
            let item = try r.string("item")
            let k = try r.u16("k")
            guard k <= limits.maxK else { throw ProtocolError(.limitExceeded, "k \(k), limit \(limits.maxK)") }
            request = .similar(SimilarRequest(model: model, item: item, k: k, category: try r.string("category")))
        case .pushDecide:
            let model = try ModelRef.read(&r)
            let user = try r.string("user")
            let n = try r.count(Int(try r.u16("push count")), "recent pushes", minSize: 8, limit: 1000)
            var pushes: [Int64] = []
            for _ in 0..<n { pushes.append(try r.time("push time")) }
            let perDay = try r.u8("max per day")
            let perWeek = try r.u8("max per week")
            let gap = try r.u32("min gap")
            let quietStart = try r.u8("quiet start")
            let quietEnd = try r.u8("quiet end")
            guard quietStart < 24, quietEnd < 24 else { throw ProtocolError(.badRequest, "quiet hours must be 0-23") }
            let offset = try r.i16("utc offset")
            guard abs(Int(offset)) <= 14 * 60 else { throw ProtocolError(.badRequest, "UTC offset beyond +-14 hours") }
            let threshold = try r.finiteF32("threshold")
            let k = try r.u16("k")
            guard k <= limits.maxK else { throw ProtocolError(.limitExceeded, "k \(k), limit \(limits.maxK)") }
            request = .pushDecide(
                PushDecideRequest(
                    model: model,
                    user: user,
                    recentPushes: pushes,
                    maxPerDay: perDay,
                    maxPerWeek: perWeek,
                    minGapSeconds: gap,
                    quietStartHour: quietStart,
                    quietEndHour: quietEnd,
                    utcOffsetMinutes: offset,
                    threshold: threshold,
                    k: k,
                    context: try RealtimeContext.read(&r, limits: limits)
                )
            )
        case .error:
            throw ProtocolError(.unknownOpcode, "unknown opcode 0x\(hex2(raw))")
        }
        try r.finish(opcode.description)
        return request
    }
}
