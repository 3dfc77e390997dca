import KairosModelFormat
import KairosProtocol
import KairosTestSupport
import NIOCore
import Testing

@Suite struct FrameParserTests {
    /// A frame split at every possible byte boundary is only produced once it is complete, and then exactly once.
    @Test func framesArriveWhateverTheSplit() throws {
        var whole = ByteBuffer()
        Request.score(ScoreRequest(model: ModelRef(name: "m"), user: "u", candidates: ["a", "b"])).writeFrame(requestID: 42, to: &whole)
        Request.ping.writeFrame(requestID: 43, to: &whole)
        let bytes = Array(whole.readableBytesView)
        for cut in 0...bytes.count {
            var buffer = ByteBuffer(bytes: bytes[0..<cut])
            var ids: [UInt32] = []
            while case .frame(let h, _) = FrameParser.next(from: &buffer, maxPayload: 1024) { ids.append(h.requestID) }
            var rest = buffer
            rest.writeBytes(bytes[cut...])
            while case .frame(let h, _) = FrameParser.next(from: &rest, maxPayload: 1024) { ids.append(h.requestID) }
            #expect(ids == [42, 43], "cut at \(cut)")
            #expect(rest.readableBytes == 0)
        }
    }

    /// "GET " is refused from its first byte, long before 12 header bytes could arrive.
    @Test func httpIsRefusedAtTheFirstByte() {
        var buffer = ByteBuffer(string: "G")
        guard case .unframeable(let e, _) = FrameParser.next(from: &buffer, maxPayload: 1024) else {
            Issue.record("not refused")
            return
        }
        #expect(e.code == .malformedFrame)
    }

    /// An oversize length is refused from the header alone, with the request id still echoed.
    @Test func oversizeLengthIsRefusedFromTheHeader() {
        var buffer = ByteBuffer()
        FrameHeader(opcode: 0x10, requestID: 77, length: 1 << 30).write(to: &buffer)
        guard case .unframeable(let e, let id) = FrameParser.next(from: &buffer, maxPayload: 1 << 20) else {
            Issue.record("not refused")
            return
        }
        #expect(e.code == .frameTooLarge && id == 77)
    }

    /// Hostile counts inside a payload are refused without allocating for them.
    @Test func hostileCountsAreRefused() {
        // model ref "m" v0, user "u", then a candidate count of 2^32-1 with nothing behind it
        var b = ByteBuffer(bytes: [1, 0, UInt8(ascii: "m"), 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, UInt8(ascii: "u")])
        b.writeInteger(UInt32.max, endianness: .little)
        #expect(throws: ProtocolError.self) { try Request.decode(opcode: Opcode.score.rawValue, payload: b, limits: .standard) }
    }

    /// SCORE's candidates stay packed: they round-trip (ASCII and not), and every string rule still applies.
    @Test func candidateListsRoundTripAndKeepTheStringRules() throws {
        let ids: IdList = ["item-1", "café", "", "item-2"]
        #expect(ids.count == 4 && ids.strings == ["item-1", "café", "", "item-2"])
        let request = Request.score(ScoreRequest(model: ModelRef(name: "m"), user: "u", candidates: ids))
        var frame = ByteBuffer()
        request.writeFrame(requestID: 1, to: &frame)
        guard case .frame(let header, let payload) = FrameParser.next(from: &frame, maxPayload: 1 << 20) else {
            Issue.record("no frame")
            return
        }
        let decoded = try Request.decode(opcode: header.opcode, payload: payload, limits: .standard)
        #expect(decoded == request)

        func scoreBody(_ candidates: [[UInt8]]) -> ByteBuffer {
            var b = ByteBuffer(bytes: [1, 0, UInt8(ascii: "m"), 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, UInt8(ascii: "u")])
            b.writeInteger(UInt32(candidates.count), endianness: .little)
            for c in candidates {
                b.writeInteger(UInt16(c.count), endianness: .little)
                b.writeBytes(c)
            }
            b.writeBytes([UInt8](repeating: 0, count: 2 + 17 + 8))  // no events, model decay (form + 2 f64), now 0
            return b
        }
        func code(_ b: ByteBuffer) -> ProtocolError.Code? {
            do {
                _ = try Request.decode(opcode: Opcode.score.rawValue, payload: b, limits: .standard)
                return nil
            } catch { return error.code }
        }
        #expect(code(scoreBody([Array("a".utf8), Array("é".utf8)])) == nil)
        #expect(code(scoreBody([Array("a".utf8), [0xC3, 0x28]])) == .badRequest)  // invalid UTF-8
        // A length of 128+ bytes sets a high bit outside any id: the list is then checked id by id.
        #expect(code(scoreBody([[UInt8](repeating: 65, count: 200), Array("b".utf8)])) == nil)
        #expect(code(scoreBody([[UInt8](repeating: 65, count: 200), [0xC3, 0x28]])) == .badRequest)
        #expect(code(scoreBody([Array("é".utf8), Array("abc".utf8), [0xFF]])) == .badRequest)
        #expect(code(scoreBody([[UInt8](repeating: 65, count: 1025)])) == .limitExceeded)
        var truncated = scoreBody([Array("abc".utf8)])
        truncated.moveWriterIndex(to: 14 + 4 + 2 + 1)  // cut inside the first id
        #expect(code(truncated) == .badRequest)
    }

    /// Every truncation and thousands of random byte flips of valid request payloads decode to a request or throw
    /// a ProtocolError: never a crash, and a decoded SCORE's candidate list always walks to exactly its count.
    @Test func mutatedPayloadsNeverCrashTheDecoder() {
        let m = ModelRef(name: "m")
        let requests: [Request] = [
            .score(ScoreRequest(model: m, user: "user-1", candidates: ["item-1", "café", "", "item-22"],
                                context: RealtimeContext(events: [RealtimeEvent(item: "item-3", strength: 2, timestamp: 5)], now: 9))),
            .topK(TopKRequest(model: m, user: "u", k: 5)),
            .similar(SimilarRequest(model: m, item: "item-1", k: 3)),
            .pushDecide(PushDecideRequest(model: m, user: "u", k: 2)),
        ]
        var rng = SplitMix64(seed: 0x5EED)
        func next() -> UInt64 { rng.next() }
        var decoded = 0
        for request in requests {
            var frame = ByteBuffer()
            request.writeFrame(requestID: 1, to: &frame)
            guard case .frame(let header, let payload) = FrameParser.next(from: &frame, maxPayload: 1 << 20) else {
                Issue.record("no frame")
                return
            }
            let bytes = Array(payload.readableBytesView)
            var variants = (0..<bytes.count).map { Array(bytes[0..<$0]) }
            for _ in 0..<2000 {
                var b = bytes
                for _ in 0..<(1 + Int(next() % 3)) { b[Int(next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: next()) }
                variants.append(b)
            }
            for v in variants {
                do {
                    let r = try Request.decode(opcode: header.opcode, payload: ByteBuffer(bytes: v), limits: .standard)
                    decoded += 1
                    if case .score(let s) = r { #expect(s.candidates.strings.count == s.candidates.count) }
                } catch {
                    #expect(error.code != .internalError)
                }
            }
        }
        #expect(decoded > 0)  // some flips land in bytes that only change values
    }

    /// The client side: every truncation, and random byte changes and insertions, of each response vector's payload
    /// decode to a response or throw a ProtocolError (a hostile or broken server cannot crash a client). 200,000
    /// changes in the Python client's decoder raised only its own errors too.
    @Test func mutatedResponsesNeverCrashTheClientDecoder() {
        var rng = SplitMix64(seed: 0xC11E)
        var decoded = 0
        var refused = 0
        for v in Vectors.of("response") {
            var input = ByteBuffer(bytes: v.bytes)
            guard case .frame(let header, let payload) = FrameParser.next(from: &input, maxPayload: 1 << 20) else {
                Issue.record("\(v.name): no frame")
                return
            }
            let bytes = Array(payload.readableBytesView)
            var variants = (0..<bytes.count).map { Array(bytes[0..<$0]) }
            for _ in 0..<300 {
                var b = bytes
                for _ in 0..<(1 + Int(rng.next() % 3)) {
                    let at = Int(rng.next() % UInt64(b.count + 1))
                    let value = [0, 0xFF, 0x80, 0x7F, UInt8(truncatingIfNeeded: rng.next())][Int(rng.next() % 5)]
                    if at < b.count && rng.next() % 2 == 0 { b[at] = value } else { b.insert(value, at: at) }
                }
                variants.append(b)
            }
            for b in variants {
                do {
                    _ = try Response.decode(code: header.opcode, payload: ByteBuffer(bytes: b))
                    decoded += 1
                } catch {
                    refused += 1
                }
            }
        }
        #expect(decoded > 0 && refused > 0)  // both outcomes are reached
    }
}

