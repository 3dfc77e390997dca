import FoundationEssentials
import KairosProtocol

/// A JSON value, for printing responses without one Encodable type per message.
enum JSONValue: Encodable {
    case string(String)
    case number(Double)
    case integer(Int64)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: any Encoder) throws {
        switch self {
        case .string(let s):
            var c = encoder.singleValueContainer()
            try c.encode(s)
        case .number(let d):
            var c = encoder.singleValueContainer()
            if d.isFinite { try c.encode(d) } else { try c.encodeNil() }  // NaN scores print as null
        case .integer(let i):
            var c = encoder.singleValueContainer()
            try c.encode(i)
        case .bool(let b):
            var c = encoder.singleValueContainer()
            try c.encode(b)
        case .null:
            var c = encoder.singleValueContainer()
            try c.encodeNil()
        case .array(let a):
            var c = encoder.unkeyedContainer()
            for v in a { try c.encode(v) }
        case .object(let fields):
            var c = encoder.container(keyedBy: Key.self)
            for (k, v) in fields { try c.encode(v, forKey: Key(k)) }
        }
    }
}

/// Text and JSON forms of a response, for `kairos query`.
enum ResponseRendering {
    static func json(_ r: Response) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted]
        return String(decoding: try encoder.encode(value(r)), as: UTF8.self)
    }

    static func stamp(_ m: ModelStamp) -> [(String, JSONValue)] {
        [("model", .string(m.name)), ("model_version", .integer(Int64(m.version)))]
    }

    static func flags(_ f: AnswerFlags) -> [(String, JSONValue)] {
        [("fallback", .bool(f.contains(.fallback))), ("cold_start_from_events", .bool(f.contains(.coldStartFromEvents)))]
    }

    static func items(_ list: [ScoredItem]) -> JSONValue {
        .array(list.map { .object([("item", .string($0.item)), ("score", .number(Double($0.score)))]) })
    }

    static func limits(_ l: ServerLimits) -> JSONValue {
        .object([
            ("max_payload", .integer(Int64(l.maxPayload))), ("max_candidates", .integer(Int64(l.maxCandidates))),
            ("max_k", .integer(Int64(l.maxK))), ("max_events", .integer(Int64(l.maxEvents))),
        ])
    }

    static func value(_ r: Response) -> JSONValue {
        switch r {
        case .pong:
            return .object([("op", .string("PING")), ("ok", .bool(true))])
        case .hello(let chosen, let versions, let l, let server):
            return .object([
                ("op", .string("HELLO")), ("chosen_version", .integer(Int64(chosen))),
                ("versions", .array(versions.map { .integer(Int64($0)) })), ("limits", limits(l)), ("server", .string(server)),
            ])
        case .info(let l, let models):
            return .object([("op", .string("INFO")), ("limits", limits(l)), ("models", modelList(models))])
        case .serving(let op, let models, let rejected):
            return .object([("op", .string(op.description)), ("models", modelList(models)), ("rejected", .array(rejected.map { .string($0) }))])
        case .stats(let uptime, let open, let total, let ops):
            return .object([
                ("op", .string("STATS")), ("uptime_seconds", .integer(Int64(uptime))), ("open_connections", .integer(Int64(open))),
                ("total_connections", .integer(Int64(total))),
                (
                    "ops",
                    .array(ops.map { o in
                        .object([
                            ("op", .string(Opcode(rawValue: o.opcode)?.description ?? "UNKNOWN")), ("requests", .integer(Int64(o.requests))),
                            ("errors", .integer(Int64(o.errors))), ("p50_us", .number(Double(o.p50Micros))),
                            ("p99_us", .number(Double(o.p99Micros))), ("p999_us", .number(Double(o.p999Micros))),
                        ])
                    })
                ),
            ])
        case .score(let s):
            return .object(
                [("op", .string("SCORE"))] + stamp(s.model) + flags(s.flags) + [
                    ("scores", .array(s.scores.map { .number(Double($0)) })),
                    ("unknown_items", .array(s.itemFlags.map { .bool($0 & ScoreResponse.unknownItem != 0) })),
                ]
            )
        case .topK(let l):
            return .object([("op", .string("TOPK"))] + stamp(l.model) + flags(l.flags) + [("items", items(l.items))])
        case .similar(let l):
            return .object([("op", .string("SIMILAR"))] + stamp(l.model) + [("items", items(l.items))])
        case .pushDecide(let p):
            let decision = switch p.decision {
            case .pushNow: "push_now"
            case .notNow: "not_now"
            case .never: "never"
            }
            return .object(
                [("op", .string("PUSH_DECIDE"))] + stamp(p.model) + flags(p.flags) + [
                    ("decision", .string(decision)), ("reason", .string(reasonName(p.reason))), ("send_at", .integer(p.sendAt)),
                    ("items", items(p.items)),
                ]
            )
        case .error(let e):
            return .object([("error", .string(e.code.name)), ("code", .integer(Int64(e.code.rawValue))), ("message", .string(e.message))])
        }
    }

    static func modelList(_ models: [ModelInfo]) -> JSONValue {
        .array(models.map { m in
            .object([
                ("name", .string(m.name)), ("version", .integer(Int64(m.version))), ("dimensions", .integer(Int64(m.dimensions))),
                ("items", .integer(Int64(m.items))), ("users", .integer(Int64(m.users))), ("encoding", .string(m.encoding)),
                ("loaded_at", .integer(m.loadedAt)), ("checksum", .string(String(m.checksum, radix: 16))),
            ])
        })
    }

    static func reasonName(_ r: PushReason) -> String {
        switch r {
        case .ok: "OK"
        case .dailyCap: "DAILY_CAP"
        case .weeklyCap: "WEEKLY_CAP"
        case .minimumGap: "MINIMUM_GAP"
        case .quietHours: "QUIET_HOURS"
        case .belowThreshold: "BELOW_THRESHOLD"
        case .betterTimeLater: "BETTER_TIME_LATER"
        case .noCandidates: "NO_CANDIDATES"
        }
    }

    static func text(_ r: Response) -> String {
        func list(_ items: [ScoredItem]) -> String {
            items.enumerated().map { "  \($0.offset + 1). \($0.element.item)  \($0.element.score)" }.joined(separator: "\n")
        }
        func head(_ m: ModelStamp, _ f: AnswerFlags) -> String {
            "model \(m.name) v\(m.version)" + (f.contains(.fallback) ? " (fallback: unknown user, trending items)" : "")
                + (f.contains(.coldStartFromEvents) ? " (unknown user, personalised from events)" : "")
        }
        switch r {
        case .pong: return "PONG"
        case .hello(let chosen, _, _, let server): return "\(server), protocol version \(chosen)"
        case .info(let l, let models):
            return "limits: payload \(l.maxPayload) B, candidates \(l.maxCandidates), k \(l.maxK), events \(l.maxEvents)\n"
                + models.map { "\($0.name) v\($0.version): \($0.items) items, \($0.users) users, \($0.dimensions) dims \($0.encoding)" }
                .joined(separator: "\n")
        case .serving(let op, let models, let rejected):
            return "\(op): serving " + models.map { "\($0.name) v\($0.version)" }.joined(separator: ", ")
                + rejected.map { "\n  rejected \($0)" }.joined()
        case .stats(let uptime, let open, let total, let ops):
            return "uptime \(uptime) s, connections \(open) open / \(total) total\n"
                + ops.map { o in
                    "\(Opcode(rawValue: o.opcode)?.description ?? "UNKNOWN"): \(o.requests) requests, \(o.errors) errors, "
                        + "p50 \(o.p50Micros) us, p99 \(o.p99Micros) us, p99.9 \(o.p999Micros) us"
                }.joined(separator: "\n")
        case .score(let s):
            return head(s.model, s.flags) + "\n"
                + s.scores.enumerated().map { "  \($0.offset): " + (s.itemFlags[$0.offset] != 0 ? "unknown item" : "\($0.element)") }
                .joined(separator: "\n")
        case .topK(let l), .similar(let l):
            return head(l.model, l.flags) + "\n" + list(l.items)
        case .pushDecide(let p):
            return head(p.model, p.flags) + "\ndecision \(p.decision) (\(reasonName(p.reason))), send at \(p.sendAt)\n" + list(p.items)
        case .error(let e):
            return "error \(e.code.name) (\(e.code.rawValue)): \(e.message)"
        }
    }
}
