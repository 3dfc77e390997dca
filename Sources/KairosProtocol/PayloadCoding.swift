public import NIOCore

/// Reads payload fields; every read is bounds-checked and fails with ``ProtocolError/Code/badRequest``.
public struct PayloadReader {
    /// Longest string accepted.
    public static let maxStringBytes = 1024

    var buffer: ByteBuffer

    public init(_ buffer: ByteBuffer) { self.buffer = buffer }

    mutating func int<T: FixedWidthInteger>(_: T.Type = T.self, _ field: StaticString) throws(ProtocolError) -> T {
        guard let v = buffer.readInteger(endianness: .little, as: T.self) else {
            throw ProtocolError(.badRequest, "payload ends inside \(field)")
        }
        return v
    }

    mutating func u8(_ f: StaticString) throws(ProtocolError) -> UInt8 { try int(UInt8.self, f) }
    mutating func u16(_ f: StaticString) throws(ProtocolError) -> UInt16 { try int(UInt16.self, f) }
    mutating func u32(_ f: StaticString) throws(ProtocolError) -> UInt32 { try int(UInt32.self, f) }
    mutating func u64(_ f: StaticString) throws(ProtocolError) -> UInt64 { try int(UInt64.self, f) }
    mutating func i16(_ f: StaticString) throws(ProtocolError) -> Int16 { try int(Int16.self, f) }
    mutating func i64(_ f: StaticString) throws(ProtocolError) -> Int64 { try int(Int64.self, f) }

    /// The latest time a request may carry: 9999-12-31T23:59:59Z, the last second ISO-8601 can write.
    public static let latestTime: Int64 = 253_402_300_799

    /// An `i64` unix time in seconds, from 0 to ``latestTime`` (beyond them, differences between request times
    /// overflowed and trapped: one request could stop the server).
    mutating func time(_ f: StaticString) throws(ProtocolError) -> Int64 {
        let v = try i64(f)
        guard v >= 0 && v <= Self.latestTime else {
            throw ProtocolError(.badRequest, "\(f) \(v) is not a unix time from 1970 to 9999")
        }
        return v
    }

    /// A float32 that must be finite (NaN and infinities are rejected: they would poison every score).
    mutating func finiteF32(_ f: StaticString) throws(ProtocolError) -> Float {
        let v = Float(bitPattern: try u32(f))
        guard v.isFinite else { throw ProtocolError(.badRequest, "\(f) is not a finite number") }
        return v
    }

    /// A float32 as sent (responses may carry NaN for "no score").
    mutating func f32(_ f: StaticString) throws(ProtocolError) -> Float { Float(bitPattern: try u32(f)) }

    mutating func finiteF64(_ f: StaticString) throws(ProtocolError) -> Double {
        let v = Double(bitPattern: try u64(f))
        guard v.isFinite else { throw ProtocolError(.badRequest, "\(f) is not a finite number") }
        return v
    }

    /// A u16-length-prefixed UTF-8 string. ASCII (the common case for ids) takes a fast path with no validation
    /// pass and, for ids up to 15 bytes, no allocation.
    mutating func string(_ f: StaticString) throws(ProtocolError) -> String {
        guard let n16 = buffer.readInteger(endianness: .little, as: UInt16.self) else {
            throw ProtocolError(.badRequest, "payload ends inside the length of \(f)")
        }
        let n = Int(n16)
        guard n <= Self.maxStringBytes else { throw ProtocolError(.limitExceeded, "\(f) is \(n) bytes, limit \(Self.maxStringBytes)") }
        guard buffer.readableBytes >= n else { throw ProtocolError(.badRequest, "payload ends inside \(f)") }
        let decoded: String? = buffer.withUnsafeReadableBytes { raw in
            let bytes = UnsafeBufferPointer(start: raw.baseAddress?.assumingMemoryBound(to: UInt8.self), count: n)
            var high: UInt8 = 0
            for b in bytes { high |= b }
            return high < 0x80 ? String(decoding: bytes, as: UTF8.self) : String(validating: bytes, as: UTF8.self)
        }
        buffer.moveReaderIndex(forwardBy: n)
        guard let decoded else { throw ProtocolError(.badRequest, "\(f) is not valid UTF-8") }
        return decoded
    }

    /// A count of elements that each take at least `minSize` bytes, bounded by `limit` and by the bytes left, so a
    /// hostile count cannot trigger a large allocation.
    mutating func count(_ raw: Int, _ f: StaticString, minSize: Int, limit: Int) throws(ProtocolError) -> Int {
        guard raw <= limit else { throw ProtocolError(.limitExceeded, "\(raw) \(f), limit \(limit)") }
        guard raw * minSize <= buffer.readableBytes else {
            throw ProtocolError(.badRequest, "\(raw) \(f) cannot fit in the \(buffer.readableBytes) bytes left")
        }
        return raw
    }

    /// A u32-counted list of strings.
    mutating func strings(_ f: StaticString, limit: Int) throws(ProtocolError) -> [String] {
        let n = try count(Int(try u32(f)), f, minSize: 2, limit: limit)
        var out: [String] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try string(f)) }
        return out
    }

    /// Fails if bytes are left over (a client and server disagreeing on a layout must not pass silently).
    func finish(_ what: String) throws(ProtocolError) {
        guard buffer.readableBytes == 0 else {
            throw ProtocolError(.badRequest, "\(buffer.readableBytes) unexpected bytes after the \(what) payload")
        }
    }
}

extension ByteBuffer {
    @inlinable mutating func put(_ v: some FixedWidthInteger) { writeInteger(v, endianness: .little) }
    @inlinable mutating func put(_ v: Float) { writeInteger(v.bitPattern, endianness: .little) }
    @inlinable mutating func put(_ v: Double) { writeInteger(v.bitPattern, endianness: .little) }

    /// Writes a u16-length-prefixed UTF-8 string (callers keep strings under 64 KiB).
    @inlinable mutating func putString(_ s: String) {
        let lengthIndex = writerIndex
        writeInteger(UInt16(0), endianness: .little)
        let n = writeString(s)
        setInteger(UInt16(truncatingIfNeeded: n), at: lengthIndex, endianness: .little)
    }

    mutating func putStrings(_ list: [String]) {
        put(UInt32(list.count))
        for s in list { putString(s) }
    }
}
