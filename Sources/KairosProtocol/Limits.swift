import NIOCore

/// Server limits, announced by HELLO and INFO; requests beyond them fail with LIMIT_EXCEEDED.
public struct ServerLimits: Sendable, Hashable {
    /// Largest request payload in bytes.
    public var maxPayload: UInt32
    /// Most candidates in one SCORE.
    public var maxCandidates: UInt32
    /// Largest k in TOPK, SIMILAR and PUSH_DECIDE.
    public var maxK: UInt16
    /// Most real-time events in one request.
    public var maxEvents: UInt16

    /// The defaults: 1 MiB payloads, 10,000 candidates, k up to 1000, 256 events.
    public static let standard = ServerLimits(maxPayload: 1 << 20, maxCandidates: 10_000, maxK: 1000, maxEvents: 256)

    public init(maxPayload: UInt32, maxCandidates: UInt32, maxK: UInt16, maxEvents: UInt16) {
        self.maxPayload = maxPayload
        self.maxCandidates = maxCandidates
        self.maxK = maxK
        self.maxEvents = maxEvents
    }

    func write(to b: inout ByteBuffer) {
        b.put(maxPayload)
        b.put(maxCandidates)
        b.put(maxK)
        b.put(maxEvents)
    }

    static func read(_ r: inout PayloadReader) throws(ProtocolError) -> ServerLimits {
        ServerLimits(maxPayload: try r.u32("max payload"), maxCandidates: try r.u32("max candidates"), maxK: try r.u16("max k"), maxEvents: try r.u16("max events"))
    }
}

