public import NIOCore

/// Reads payload fields; every read is bounds-checked and fails with ``ProtocolError/Code/badRequest``.
public struct PayloadReader {
    /// Longest string accepted.
    public static let maxStringBytes = 1024

    var buffer: ByteBuffer

    public init(_ buffer: ByteBuffer) { self.buffer = buffer }

    mutating func int<T: FixedWidthInteger>(_: T.Type = T.self, _ field: String) throws(ProtocolError) -> T {
        guard let v = buffer.readInteger(endianness: .little, as: T.self) else {
            throw ProtocolError(.badRequest, "payload ends inside \(field)")
        }
        return v
    }

    mutating func u8(_ f: String) throws(ProtocolError) -> UInt8 { try int(UInt8.self, f) }
    mutating func u16(_ f: String) throws(ProtocolError) -> UInt16 { try int(UInt16.self, f) }
    mutating func u32(_ f: String) throws(ProtocolError) -> UInt32 { try int(UInt32.self, f) }
    mutating func u64(_ f: String) throws(ProtocolError) -> UInt64 { try int(UInt64.self, f) }
    mutating func i16(_ f: String) throws(ProtocolError) -> Int16 { try int(Int16.self, f) }
    mutating func i64(_ f: String) throws(ProtocolError) -> Int64 { try int(Int64.self, f) }

    /// A float32 that must be finite (NaN and infinities are rejected: they would poison every score).
    mutating func finiteF32(_ f: String) throws(ProtocolError) -> Float {
        let v = Float(bitPattern: try u32(f))
        guard v.isFinite else { throw ProtocolError(.badRequest, "\(f) is not a finite number") }
        return v
    }

    /// A float32 as sent (responses may carry NaN for "no score").
    mutating func f32(_ f: String) throws(ProtocolError) -> Float { Float(bitPattern: try u32(f)) }

    mutating func finiteF64(_ f: String) throws(ProtocolError) -> Double {
        let v = Double(bitPattern: try u64(f))
        guard v.isFinite else { throw ProtocolError(.badRequest, "\(f) is not a finite number") }
        return v
    }

    /// A u16-length-prefixed UTF-8 string.
    mutating func string(_ f: String) throws(ProtocolError) -> String {
        let n = Int(try u16("\(f) length"))
        guard n <= Self.maxStringBytes else { throw ProtocolError(.limitExceeded, "\(f) is \(n) bytes, limit \(Self.maxStringBytes)") }
        guard let bytes = buffer.readSlice(length: n) else { throw ProtocolError(.badRequest, "payload ends inside \(f)") }
        guard let s = bytes.getString(at: bytes.readerIndex, length: n), s.utf8.count == n,
            String(validating: bytes.readableBytesView, as: UTF8.self) != nil
        else { throw ProtocolError(.badRequest, "\(f) is not valid UTF-8") }
        return s
    }

    /// A count of elements that each take at least `minSize` bytes, bounded by `limit` and by the bytes left, so a
    /// hostile count cannot trigger a large allocation.
    mutating func count(_ raw: Int, _ f: String, minSize: Int, limit: Int) throws(ProtocolError) -> Int {
        guard raw <= limit else { throw ProtocolError(.limitExceeded, "\(raw) \(f), limit \(limit)") }
        guard raw * minSize <= buffer.readableBytes else {
            throw ProtocolError(.badRequest, "\(raw) \(f) cannot fit in the \(buffer.readableBytes) bytes left")
        }
        return raw
    }

    /// A u32-counted list of strings.
    mutating func strings(_ f: String, limit: Int) throws(ProtocolError) -> [String] {
        let n = try count(Int(try u32("\(f) count")), f, minSize: 2, limit: limit)
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
