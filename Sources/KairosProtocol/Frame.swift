public import NIOCore

/// Operation codes. A success response carries the request's opcode with the high bit set; errors use ``error``.
public enum Opcode: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case ping = 0x01
    case hello = 0x02
    case info = 0x03
    case stats = 0x04
    case score = 0x10
    case topK = 0x11
    case similar = 0x12
    case pushDecide = 0x13
    case reload = 0x20
    case pin = 0x21
    case rollback = 0x22
    case error = 0x7F

    /// The opcode of a successful response to this request opcode.
    public var responseCode: UInt8 { self == .error ? 0xFF : rawValue | 0x80 }

    public var description: String {
        switch self {
        case .ping: "PING"
        case .hello: "HELLO"
        case .info: "INFO"
        case .stats: "STATS"
        case .score: "SCORE"
        case .topK: "TOPK"
        case .similar: "SIMILAR"
        case .pushDecide: "PUSH_DECIDE"
        case .reload: "RELOAD"
        case .pin: "PIN"
        case .rollback: "ROLLBACK"
        case .error: "ERROR"
        }
    }
}

/// The fixed 12-byte header in front of every frame, both directions.
///
/// ```
/// off size field
///   0    1 magic 0xCA (neither ASCII nor a TLS record type, so "GET " or a TLS hello is rejected at byte 0)
///   1    1 protocol version (1)
///   2    1 opcode (request: see Opcode; response: request opcode | 0x80, or 0xFF for an error)
///   3    1 flags (0; reserved)
///   4    4 request id (u32 little-endian), echoed in the response
///   8    4 payload length in bytes (u32 little-endian), checked against the maximum before anything is allocated
/// ```
public struct FrameHeader: Sendable, Hashable {
    /// First byte of every frame.
    public static let magic: UInt8 = 0xCA
    /// Protocol version this code speaks.
    public static let version: UInt8 = 1
    /// Header size in bytes.
    public static let size = 12
    /// Opcode of every error response.
    public static let errorResponseCode: UInt8 = 0xFF

    /// Opcode byte as sent.
    public var opcode: UInt8
    /// Flags byte (0).
    public var flags: UInt8
    /// Request id chosen by the client, echoed by the server.
    public var requestID: UInt32
    /// Payload length.
    public var length: UInt32

    public init(opcode: UInt8, flags: UInt8 = 0, requestID: UInt32, length: UInt32) {
        self.opcode = opcode
        self.flags = flags
        self.requestID = requestID
        self.length = length
    }

    /// Writes the header.
    public func write(to buffer: inout ByteBuffer) {
        // One capacity check for the 12 bytes (six writeInteger calls cost ~1,500 instructions per PING).
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.size) { p in
            p.storeBytes(of: Self.magic, toByteOffset: 0, as: UInt8.self)
            p.storeBytes(of: Self.version, toByteOffset: 1, as: UInt8.self)
            p.storeBytes(of: opcode, toByteOffset: 2, as: UInt8.self)
            p.storeBytes(of: flags, toByteOffset: 3, as: UInt8.self)
            p.storeBytes(of: requestID.littleEndian, toByteOffset: 4, as: UInt32.self)
            p.storeBytes(of: length.littleEndian, toByteOffset: 8, as: UInt32.self)
            return Self.size
        }
    }
}

/// The outcome of looking for one frame at the front of a read buffer.
public enum FrameParseResult: Sendable {
    /// A complete frame; the payload is a slice of the input (no copy).
    case frame(FrameHeader, ByteBuffer)
    /// Not enough bytes yet.
    case needMoreData
    /// The stream cannot be framed any further (bad magic, version or oversize length): answer once, then close.
    case unframeable(ProtocolError, requestID: UInt32)
}

/// Pure frame splitting: bytes in, frames out. Knows nothing of sockets.
public enum FrameParser {
    /// Takes one complete frame off the front of `buffer` if there is one.
    /// - Parameter maxPayload: largest payload accepted; a larger length is rejected from the header alone.
    public static func next(from buffer: inout ByteBuffer, maxPayload: Int) -> FrameParseResult {
        let start = buffer.readerIndex
        guard buffer.readableBytes >= 1 else { return .needMoreData }
        // Check the magic from the first byte, so a stray HTTP or TLS client is refused without waiting for 12 bytes.
        let magic = buffer.getInteger(at: start, as: UInt8.self)!
        guard magic == FrameHeader.magic else {
            return .unframeable(ProtocolError(.malformedFrame, "bad magic byte 0x\(hex2(magic)) (expected 0xca): not a Kairos client?"), requestID: 0)
        }
        guard buffer.readableBytes >= 2 else { return .needMoreData }
        let version = buffer.getInteger(at: start + 1, as: UInt8.self)!
        guard version == FrameHeader.version else {
            return .unframeable(ProtocolError(.unsupportedVersion, "protocol version \(version); this server speaks 1"), requestID: 0)
        }
        guard buffer.readableBytes >= FrameHeader.size else { return .needMoreData }
        // The 12 header bytes are known to be readable: one access instead of four getInteger calls.
        let (opcode, flags, id, length) = buffer.withUnsafeReadableBytes { p in
            (
                p.load(fromByteOffset: 2, as: UInt8.self),
                p.load(fromByteOffset: 3, as: UInt8.self),
                UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            )
        }
        guard Int(length) <= maxPayload else {
            return .unframeable(ProtocolError(.frameTooLarge, "payload of \(length) bytes exceeds the \(maxPayload)-byte limit"), requestID: id)
        }
        guard buffer.readableBytes >= FrameHeader.size + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: FrameHeader.size)
        let payload = buffer.readSlice(length: Int(length))!
        return .frame(FrameHeader(opcode: opcode, flags: flags, requestID: id, length: length), payload)
    }
}

func hex2(_ b: UInt8) -> String { (b < 16 ? "0" : "") + String(b, radix: 16) }
