public import NIOCore

/// Which model (and version) an answer was computed with.
public struct ModelStamp: Sendable, Hashable {
    public var name: String
    public var version: UInt64

    public init(name: String, version: UInt64) {
        self.name = name
        self.version = version
    }

    func write(to b: inout ByteBuffer) {
        b.putString(name)
        b.put(version)
    }

    static func read(_ r: inout PayloadReader) throws(ProtocolError) -> ModelStamp {
        ModelStamp(name: try r.string("model name"), version: try r.u64("model version"))
    }
}

/// Flags on scoring answers.
public struct AnswerFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// The user is unknown and no events were given: the answer is the trending fallback, not personal.
    public static let fallback = AnswerFlags(rawValue: 1)
    /// The user is unknown but real-time events made the answer personal anyway.
    public static let coldStartFromEvents = AnswerFlags(rawValue: 2)
}

/// One item with its score.
public struct ScoredItem: Sendable, Hashable {
    public var item: String
    public var score: Float

    public init(item: String, score: Float) {
        self.item = item
        self.score = score
    }
}

/// SCORE's answer: one score per candidate, in request order; unknown items get NaN and flag bit 0.
public struct ScoreResponse: Sendable, Hashable {
    public var model: ModelStamp
    public var flags: AnswerFlags
    public var scores: [Float]
    /// Per candidate: bit 0 = unknown item.
    public var itemFlags: [UInt8]

    public init(model: ModelStamp, flags: AnswerFlags, scores: [Float], itemFlags: [UInt8]) {
        self.model = model
        self.flags = flags
        self.scores = scores
        self.itemFlags = itemFlags
    }

    /// Bit in ``itemFlags`` marking an item the model does not know.
    public static let unknownItem: UInt8 = 1
}

/// A ranked list (TOPK, SIMILAR).
public struct ItemListResponse: Sendable, Hashable {
    public var model: ModelStamp
    public var flags: AnswerFlags
    public var items: [ScoredItem]

    public init(model: ModelStamp, flags: AnswerFlags, items: [ScoredItem]) {
        self.model = model
        self.flags = flags
        self.items = items
    }
}

/// PUSH_DECIDE's verdict.
public enum PushDecision: UInt8, Sendable, Hashable {
    case pushNow = 0
    case notNow = 1
    case never = 2
}

/// Why PUSH_DECIDE decided what it did.
public enum PushReason: UInt16, Sendable, Hashable, CaseIterable {
    case ok = 0
    case dailyCap = 1
    case weeklyCap = 2
    case minimumGap = 3
    case quietHours = 4
    case belowThreshold = 5
    case betterTimeLater = 6
    case noCandidates = 7
}

/// PUSH_DECIDE's answer.
public struct PushDecideResponse: Sendable, Hashable {
    public var model: ModelStamp
    public var flags: AnswerFlags
    public var decision: PushDecision
    public var reason: PushReason
    /// When to send: `now` for pushNow, the suggested time for notNow, 0 for never.
    public var sendAt: Int64
    public var items: [ScoredItem]

    public init(model: ModelStamp, flags: AnswerFlags, decision: PushDecision, reason: PushReason, sendAt: Int64, items: [ScoredItem]) {
        self.model = model
        self.flags = flags
        self.decision = decision
        self.reason = reason
        self.sendAt = sendAt
        self.items = items
    }
}

/// One loaded model, as INFO describes it.
public struct ModelInfo: Sendable, Hashable {
    public var name: String
    public var version: UInt64
    public var dimensions: UInt32
    public var items: UInt32
    public var users: UInt32
    public var encoding: String
    /// Unix seconds the model started serving.
    public var loadedAt: Int64
    /// The file's header checksum (identifies the exact file).
    public var checksum: UInt64

    public init(name: String, version: UInt64, dimensions: UInt32, items: UInt32, users: UInt32, encoding: String, loadedAt: Int64, checksum: UInt64) {
        self.name = name
        self.version = version
        self.dimensions = dimensions
        self.items = items
        self.users = users
        self.encoding = encoding
        self.loadedAt = loadedAt
        self.checksum = checksum
    }
}

/// Per-operation counters in STATS.
public struct OpStats: Sendable, Hashable {
    public var opcode: UInt8
    public var requests: UInt64
    public var errors: UInt64
    public var p50Micros: Float
    public var p99Micros: Float
    public var p999Micros: Float

    public init(opcode: UInt8, requests: UInt64, errors: UInt64, p50Micros: Float, p99Micros: Float, p999Micros: Float) {
        self.opcode = opcode
        self.requests = requests
        self.errors = errors
        self.p50Micros = p50Micros
        self.p99Micros = p99Micros
        self.p999Micros = p999Micros
    }
}

/// A decoded response.
public enum Response: Sendable, Hashable {
    case pong
    /// Chosen version (0 = none in common), the server's versions, its limits and its name.
    case hello(chosen: UInt8, versions: [UInt8], limits: ServerLimits, server: String)
    case info(limits: ServerLimits, models: [ModelInfo])
    case stats(uptimeSeconds: UInt64, openConnections: UInt64, totalConnections: UInt64, ops: [OpStats])
    case score(ScoreResponse)
    case topK(ItemListResponse)
    case similar(ItemListResponse)
    case pushDecide(PushDecideResponse)
    /// The answer to RELOAD, PIN and ROLLBACK (by `opcode`): the models serving after it, and files rejected by it.
    case serving(opcode: Opcode, models: [ModelInfo], rejected: [String])
    case error(ProtocolError)

    /// The opcode byte this response travels with.
    public var responseCode: UInt8 {
        switch self {
        case .pong: Opcode.ping.responseCode
        case .hello: Opcode.hello.responseCode
        case .info: Opcode.info.responseCode
        case .stats: Opcode.stats.responseCode
        case .score: Opcode.score.responseCode
        case .topK: Opcode.topK.responseCode
        case .similar: Opcode.similar.responseCode
        case .pushDecide: Opcode.pushDecide.responseCode
        case .serving(let op, _, _): op.responseCode
        case .error: FrameHeader.errorResponseCode
        }
    }

    /// Writes the payload (no header).
    public func writePayload(to b: inout ByteBuffer) {
        switch self {
        case .pong:
            break
        case .hello(let chosen, let versions, let limits, let server):
            b.put(chosen)
            b.put(UInt8(versions.count))
            for v in versions { b.put(v) }
            limits.write(to: &b)
            b.putString(server)
        case .info(let limits, let models):
            limits.write(to: &b)
            Self.writeModels(models, to: &b)
        case .serving(_, let models, let rejected):
            Self.writeModels(models, to: &b)
            b.put(UInt16(rejected.count))
            for r in rejected { b.putString(String(r.utf8.prefix(1000)) ?? "") }
        case .stats(let uptime, let open, let total, let ops):
            b.put(uptime)
            b.put(open)
            b.put(total)
            b.put(UInt16(ops.count))
            for o in ops {
                b.put(o.opcode)
                b.put(o.requests)
                b.put(o.errors)
                b.put(o.p50Micros)
                b.put(o.p99Micros)
                b.put(o.p999Micros)
            }
        case .score(let s):
            s.model.write(to: &b)
            b.put(s.flags.rawValue)
            b.put(UInt32(s.scores.count))
            #if _endian(little)
            s.scores.withUnsafeBytes { _ = b.writeBytes($0) }  // the wire is little-endian too: one copy
            #else
            for v in s.scores { b.put(v) }
            #endif
            b.writeBytes(s.itemFlags)
        case .topK(let l), .similar(let l):
            Self.writeList(l.model, l.flags, l.items, to: &b)
        case .pushDecide(let p):
            p.model.write(to: &b)
            b.put(p.flags.rawValue)
            b.put(p.decision.rawValue)
            b.put(p.reason.rawValue)
            b.put(p.sendAt)
            b.put(UInt16(p.items.count))
            for i in p.items {
                b.putString(i.item)
                b.put(i.score)
            }
        case .error(let e):
            b.put(e.code.rawValue)
            b.putString(String(e.message.utf8.prefix(1000)) ?? "")
        }
    }

    static func writeModels(_ models: [ModelInfo], to b: inout ByteBuffer) {
        b.put(UInt16(models.count))
        for m in models {
            b.putString(m.name)
            b.put(m.version)
            b.put(m.dimensions)
            b.put(m.items)
            b.put(m.users)
            b.putString(m.encoding)
            b.put(m.loadedAt)
            b.put(m.checksum)
        }
    }

    static func readModels(_ r: inout PayloadReader) throws(ProtocolError) -> [ModelInfo] {
        let n = try r.count(Int(try r.u16("model count")), "models", minSize: 40, limit: Int(UInt16.max))
        var models: [ModelInfo] = []
        for _ in 0..<n {
            models.append(
                ModelInfo(
                    name: try r.string("name"),
                    version: try r.u64("version"),
                    dimensions: try r.u32("dimensions"),
                    items: try r.u32("items"),
                    users: try r.u32("users"),
                    encoding: try r.string("encoding"),
                    loadedAt: try r.i64("loaded at"),
                    checksum: try r.u64("checksum")
                )
            )
        }
        return models
    }

    static func writeList(_ model: ModelStamp, _ flags: AnswerFlags, _ items: [ScoredItem], to b: inout ByteBuffer) {
        model.write(to: &b)
        b.put(flags.rawValue)
        b.put(UInt16(items.count))
        for i in items {
            b.putString(i.item)
            b.put(i.score)
        }
    }

    /// Writes a whole frame: header plus payload.
    public func writeFrame(requestID: UInt32, to b: inout ByteBuffer) {
        let start = b.writerIndex
        if case .pong = self {  // the commonest response has no payload: nothing to patch
            FrameHeader(opcode: responseCode, requestID: requestID, length: 0).write(to: &b)
            return
        }
        FrameHeader(opcode: responseCode, requestID: requestID, length: 0).write(to: &b)
        writePayload(to: &b)
        b.setInteger(UInt32(b.writerIndex - start - FrameHeader.size), at: start + 8, endianness: .little)
    }

    /// Decodes a response payload that arrived with `code` (client side).
    public static func decode(code: UInt8, payload: ByteBuffer) throws(ProtocolError) -> Response {
        var r = PayloadReader(payload)
        let response: Response
        func list(_ r: inout PayloadReader) throws(ProtocolError) -> ItemListResponse {
            let model = try ModelStamp.read(&r)
            let flags = AnswerFlags(rawValue: try r.u8("flags"))
            let n = try r.count(Int(try r.u16("item count")), "items", minSize: 6, limit: Int(UInt16.max))
            var items: [ScoredItem] = []
            for _ in 0..<n { items.append(ScoredItem(item: try r.string("item"), score: try r.f32("score"))) }
            return ItemListResponse(model: model, flags: flags, items: items)
        }
        switch code {
        case Opcode.ping.responseCode:
            response = .pong
        case Opcode.hello.responseCode:
            let chosen = try r.u8("chosen version")
            let n = Int(try r.u8("version count"))
            var versions: [UInt8] = []
            for _ in 0..<n { versions.append(try r.u8("version")) }
            response = .hello(chosen: chosen, versions: versions, limits: try ServerLimits.read(&r), server: try r.string("server"))
        case Opcode.info.responseCode:
            let limits = try ServerLimits.read(&r)
            response = .info(limits: limits, models: try readModels(&r))
        case Opcode.reload.responseCode, Opcode.pin.responseCode, Opcode.rollback.responseCode:
            let models = try readModels(&r)
            let n = try r.count(Int(try r.u16("rejected count")), "rejected", minSize: 2, limit: Int(UInt16.max))
            var rejected: [String] = []
            for _ in 0..<n { rejected.append(try r.string("rejected")) }
            response = .serving(opcode: Opcode(rawValue: code & 0x7F)!, models: models, rejected: rejected)
        case Opcode.stats.responseCode:
            let uptime = try r.u64("uptime")
            let open = try r.u64("open connections")
            let total = try r.u64("total connections")
            let n = try r.count(Int(try r.u16("op count")), "ops", minSize: 29, limit: 255)
            var ops: [OpStats] = []
            for _ in 0..<n {
                ops.append(
                    OpStats(
                        opcode: try r.u8("opcode"),
                        requests: try r.u64("requests"),
                        errors: try r.u64("errors"),
                        p50Micros: try r.f32("p50"),
                        p99Micros: try r.f32("p99"),
                        p999Micros: try r.f32("p999")
                    )
                )
            }
            response = .stats(uptimeSeconds: uptime, openConnections: open, totalConnections: total, ops: ops)
        case Opcode.score.responseCode:
            let model = try ModelStamp.read(&r)
            let flags = AnswerFlags(rawValue: try r.u8("flags"))
            let n = try r.count(Int(try r.u32("score count")), "scores", minSize: 5, limit: Int(UInt32.max))
            var scores: [Float] = []
            scores.reserveCapacity(n)
            for _ in 0..<n { scores.append(try r.f32("score")) }
            var flagsBytes: [UInt8] = []
            flagsBytes.reserveCapacity(n)
            for _ in 0..<n { flagsBytes.append(try r.u8("item flags")) }
            response = .score(ScoreResponse(model: model, flags: flags, scores: scores, itemFlags: flagsBytes))
        case Opcode.topK.responseCode:
            response = .topK(try list(&r))
        case Opcode.similar.responseCode:
            response = .similar(try list(&r))
        case Opcode.pushDecide.responseCode:
            let model = try ModelStamp.read(&r)
            let flags = AnswerFlags(rawValue: try r.u8("flags"))
            guard let decision = PushDecision(rawValue: try r.u8("decision")) else { throw ProtocolError(.badRequest, "unknown push decision") }
            let reason = PushReason(rawValue: try r.u16("reason")) ?? .ok
            let sendAt = try r.i64("send at")
            let n = try r.count(Int(try r.u16("item count")), "items", minSize: 6, limit: Int(UInt16.max))
            var items: [ScoredItem] = []
            for _ in 0..<n { items.append(ScoredItem(item: try r.string("item"), score: try r.f32("score"))) }
            response = .pushDecide(PushDecideResponse(model: model, flags: flags, decision: decision, reason: reason, sendAt: sendAt, items: items))
        case FrameHeader.errorResponseCode:
            let raw = try r.u16("error code")
            let message = try r.string("error message")
            response = .error(ProtocolError(ProtocolError.Code(rawValue: raw) ?? .internalError, message))
        default:
            throw ProtocolError(.unknownOpcode, "unknown response opcode 0x\(hex2(code))")
        }
        try r.finish("response")
        return response
    }
}
