import Foundation
import KairosProtocol
import KairosTestSupport
import NIOCore
import Testing

/// Builds the Swift value a vector's JSON describes (this mapping is the test's own reading of PROTOCOL.md).
enum VectorValues {
    static func float(_ v: Any?) -> Float {
        if let s = v as? String, s == "NaN" { return .nan }
        return Float((v as! NSNumber).doubleValue)
    }
    static func int<T: FixedWidthInteger>(_ v: Any?) -> T { T((v as! NSNumber).int64Value) }
    static func model(_ v: Any?) -> ModelRef {
        let m = v as! [String: Any]
        return ModelRef(name: m["name"] as! String, version: int(m["version"]))
    }
    static func stamp(_ v: Any?) -> ModelStamp {
        let m = v as! [String: Any]
        return ModelStamp(name: m["name"] as! String, version: int(m["version"]))
    }
    static func context(_ v: Any?) -> RealtimeContext {
        let c = v as! [String: Any]
        let events = (c["events"] as! [[String: Any]]).map {
            RealtimeEvent(item: $0["item"] as! String, strength: float($0["strength"]), timestamp: int($0["timestamp"]))
        }
        let d = c["decay"] as! [String: Any]
        let a = (d["a"] as? NSNumber)?.doubleValue ?? 0
        let b = (d["b"] as? NSNumber)?.doubleValue ?? 0
        let decay: EventDecay = switch d["form"] as! String {
        case "none": .none
        case "exponential": .exponential(halfLifeSeconds: a)
        case "linear": .linear(windowSeconds: a)
        case "sigmoid": .sigmoid(midpointSeconds: a, steepnessPerSecond: b)
        default: .modelDefault
        }
        return RealtimeContext(events: events, decay: decay, now: int(c["now"]))
    }
    static func limits(_ v: Any?) -> ServerLimits {
        let l = v as! [String: Any]
        return ServerLimits(maxPayload: int(l["maxPayload"]), maxCandidates: int(l["maxCandidates"]), maxK: int(l["maxK"]), maxEvents: int(l["maxEvents"]))
    }
    static func items(_ v: Any?) -> [ScoredItem] {
        (v as! [[String: Any]]).map { ScoredItem(item: $0["item"] as! String, score: float($0["score"])) }
    }
    static func modelInfos(_ v: Any?) -> [ModelInfo] {
        (v as! [[String: Any]]).map {
            ModelInfo(
                name: $0["name"] as! String,
                version: int($0["version"]),
                dimensions: int($0["dimensions"]),
                items: int($0["items"]),
                users: int($0["users"]),
                encoding: $0["encoding"] as! String,
                loadedAt: int($0["loadedAt"]),
                checksum: UInt64($0["checksum"] as! String, radix: 16)!
            )
        }
    }
    static let opcodes: [String: Opcode] = Dictionary(uniqueKeysWithValues: Opcode.allCases.map { ($0.description, $0) })

    static func request(_ m: [String: Any]) -> Request {
        switch m["op"] as! String {
        case "PING": return .ping
        case "RELOAD": return .reload
        case "PIN": return .pin(name: m["name"] as! String, version: int(m["version"]))
        case "ROLLBACK": return .rollback(name: m["name"] as! String)
        case "INFO": return .info
        case "STATS": return .stats
        case "HELLO": return .hello(versions: (m["versions"] as! [NSNumber]).map { $0.uint8Value })
        case "SCORE":
            return .score(ScoreRequest(model: model(m["model"]), user: m["user"] as! String, candidates: IdList(m["candidates"] as! [String]), context: context(m["context"])))
        case "TOPK":
            return .topK(
                TopKRequest(
                    model: model(m["model"]),
                    user: m["user"] as! String,
                    k: int(m["k"]),
                    options: TopKRequest.Options(rawValue: int(m["options"])),
                    category: m["category"] as! String,
                    trendingWeight: float(m["trendingWeight"]),
                    buyAgainWeight: float(m["buyAgainWeight"]),
                    exclude: m["exclude"] as! [String],
                    context: context(m["context"])
                )
            )
        case "SIMILAR":
            return .similar(SimilarRequest(model: model(m["model"]), item: m["item"] as! String, k: int(m["k"]), category: m["category"] as! String))
        case "PUSH_DECIDE":
            return .pushDecide(
                PushDecideRequest(
                    model: model(m["model"]),
                    user: m["user"] as! String,
                    recentPushes: (m["recentPushes"] as! [NSNumber]).map { $0.int64Value },
                    maxPerDay: int(m["maxPerDay"]),
                    maxPerWeek: int(m["maxPerWeek"]),
                    minGapSeconds: int(m["minGapSeconds"]),
                    quietStartHour: int(m["quietStartHour"]),
                    quietEndHour: int(m["quietEndHour"]),
                    utcOffsetMinutes: int(m["utcOffsetMinutes"]),
                    threshold: float(m["threshold"]),
                    k: int(m["k"]),
                    context: context(m["context"])
                )
            )
        default: fatalError("unknown op in vector")
        }
    }

    static func response(_ m: [String: Any]) -> Response {
        switch m["op"] as! String {
        case "PING": return .pong
        case "HELLO":
            return .hello(chosen: int(m["chosen"]), versions: (m["versions"] as! [NSNumber]).map { $0.uint8Value }, limits: limits(m["limits"]), server: m["server"] as! String)
        case "RELOAD", "PIN", "ROLLBACK":
            return .serving(opcode: opcodes[m["op"] as! String]!, models: modelInfos(m["models"]), rejected: m["rejected"] as! [String])
        case "INFO":
            return .info(limits: limits(m["limits"]), models: modelInfos(m["models"]))
        case "STATS":
            let ops = (m["ops"] as! [[String: Any]]).map {
                OpStats(
                    opcode: opcodes[$0["op"] as! String]!.rawValue,
                    requests: int($0["requests"]),
                    errors: int($0["errors"]),
                    p50Micros: float($0["p50"]),
                    p99Micros: float($0["p99"]),
                    p999Micros: float($0["p999"])
                )
            }
            return .stats(uptimeSeconds: int(m["uptimeSeconds"]), openConnections: int(m["openConnections"]), totalConnections: int(m["totalConnections"]), ops: ops)
        case "SCORE":
            return .score(
                ScoreResponse(
                    model: stamp(m["model"]),
                    flags: AnswerFlags(rawValue: int(m["flags"])),
                    scores: (m["scores"] as! [Any]).map(float),
                    itemFlags: (m["itemFlags"] as! [NSNumber]).map { $0.uint8Value }
                )
            )
        case "TOPK":
            return .topK(ItemListResponse(model: stamp(m["model"]), flags: AnswerFlags(rawValue: int(m["flags"])), items: items(m["items"])))
        case "SIMILAR":
            return .similar(ItemListResponse(model: stamp(m["model"]), flags: AnswerFlags(rawValue: int(m["flags"])), items: items(m["items"])))
        case "PUSH_DECIDE":
            return .pushDecide(
                PushDecideResponse(
                    model: stamp(m["model"]),
                    flags: AnswerFlags(rawValue: int(m["flags"])),
                    decision: PushDecision(rawValue: int(m["decision"]))!,
                    reason: PushReason(rawValue: int(m["reason"]))!,
                    sendAt: int(m["sendAt"]),
                    items: items(m["items"])
                )
            )
        case "ERROR":
            let code = ProtocolError.Code.allCases.first { $0.name == m["code"] as! String }!
            return .error(ProtocolError(code, m["message"] as! String))
        default: fatalError("unknown op in vector")
        }
    }
}

/// Compares responses treating NaN scores as equal (NaN != NaN in IEEE arithmetic).
func sameResponse(_ a: Response, _ b: Response) -> Bool {
    if case .score(let x) = a, case .score(let y) = b {
        return x.model == y.model && x.flags == y.flags && x.itemFlags == y.itemFlags
            && x.scores.map(\.bitPattern) == y.scores.map(\.bitPattern)
    }
    return a == b
}

@Suite struct VectorTests {
    /// Every request vector: the Swift encoder writes exactly its bytes, and the decoder reads back the same value.
    @Test(arguments: Vectors.of("request"))
    func requestVectorsRoundTrip(_ v: Vectors.Vector) throws {
        let value = VectorValues.request(v.message)
        var out = ByteBuffer()
        value.writeFrame(requestID: v.requestID, to: &out)
        #expect(Array(out.readableBytesView) == v.bytes)

        var input = ByteBuffer(bytes: v.bytes)
        guard case .frame(let header, let payload) = FrameParser.next(from: &input, maxPayload: 1 << 20) else {
            Issue.record("no frame")
            return
        }
        #expect(header.requestID == v.requestID && input.readableBytes == 0)
        #expect(try Request.decode(opcode: header.opcode, payload: payload, limits: .standard) == value)
    }

    /// Every response vector: encoded byte-exactly and decoded back (NaN scores included).
    @Test(arguments: Vectors.of("response"))
    func responseVectorsRoundTrip(_ v: Vectors.Vector) throws {
        let value = VectorValues.response(v.message)
        var out = ByteBuffer()
        value.writeFrame(requestID: v.requestID, to: &out)
        #expect(Array(out.readableBytesView) == v.bytes)

        var input = ByteBuffer(bytes: v.bytes)
        guard case .frame(let header, let payload) = FrameParser.next(from: &input, maxPayload: 1 << 20) else {
            Issue.record("no frame")
            return
        }
        #expect(sameResponse(try Response.decode(code: header.opcode, payload: payload), value))
    }

    /// Every invalid vector that the codec alone can judge fails with its documented error code.
    @Test(arguments: Vectors.of("invalid").filter { !["UNKNOWN_MODEL", "UNKNOWN_ITEM"].contains($0.error) })
    func invalidVectorsFailWithTheirCode(_ v: Vectors.Vector) {
        var input = ByteBuffer(bytes: v.bytes)
        let code: ProtocolError.Code?
        switch FrameParser.next(from: &input, maxPayload: Int(ServerLimits.standard.maxPayload)) {
        case .unframeable(let e, _):
            code = e.code
            #expect(v.closes, "framing error for a vector that keeps the connection")
        case .frame(let header, let payload):
            do {
                _ = try Request.decode(opcode: header.opcode, payload: payload, limits: .standard)
                code = nil
            } catch {
                code = error.code
            }
            #expect(!v.closes)
        case .needMoreData:
            code = nil
        }
        #expect(code?.name == v.error)
    }
}
