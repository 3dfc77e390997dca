import NIOCore

/// A list of ids kept as it travels on the wire: back-to-back u16-length-prefixed UTF-8 strings.
///
/// SCORE carries up to thousands of candidate ids; decoding keeps them as one slice of the request's bytes
/// (validated once) so the model's index can look them up without a String per id.
public struct IdList: Sendable, Hashable, Sequence, ExpressibleByArrayLiteral {
    /// Number of ids.
    public let count: Int
    /// The encoded ids, without the leading u32 count.
    let packed: ByteBuffer

    /// Encodes `ids` (each must be under 64 KiB of UTF-8).
    public init(_ ids: some Sequence<String>) {
        var b = ByteBuffer()
        var n = 0
        for id in ids {
            b.putString(id)
            n += 1
        }
        count = n
        packed = b
    }

    /// An id list from a literal.
    public init(arrayLiteral elements: String...) { self.init(elements) }

    init(count: Int, packed: ByteBuffer) {
        self.count = count
        self.packed = packed
    }

    /// Calls `body` with the packed bytes (see ``IdIndex/rows(ofPacked:count:into:)`` in the model format).
    public func withPackedBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try packed.withUnsafeReadableBytes(body)
    }

    /// The ids as Strings, in order.
    public var strings: [String] { Array(self) }

    public var underestimatedCount: Int { count }

    public func makeIterator() -> Iterator { Iterator(buffer: packed) }

    /// Walks the packed ids, decoding each to a String.
    public struct Iterator: IteratorProtocol {
        var buffer: ByteBuffer

        public mutating func next() -> String? {
            guard let n = buffer.readInteger(endianness: .little, as: UInt16.self) else { return nil }
            return buffer.readString(length: Int(n))
        }
    }
}

extension PayloadReader {
    /// A u32-counted list of strings, kept packed (see ``IdList``). Every length is checked against the payload and
    /// ``PayloadReader/maxStringBytes``, and every id must be valid UTF-8, exactly as ``strings(_:limit:)`` checks.
    mutating func idList(_ f: StaticString, limit: Int) throws(ProtocolError) -> IdList {
        let n = try count(Int(try u32(f)), f, minSize: 2, limit: limit)
        // Lengths and bounds first (a walk over the length fields only), then UTF-8: when no byte of the whole list
        // has its high bit set (ASCII ids under 128 bytes, the common case) one word-at-a-time pass proves every id
        // valid; otherwise each id is checked on its own. Per id this costs ~10 instructions instead of ~50.
        let scanned: Result<Int, ProtocolError> = buffer.withUnsafeReadableBytes { raw in
            var at = 0
            for _ in 0..<n {
                guard at &+ 2 <= raw.count else {
                    return .failure(ProtocolError(.badRequest, "payload ends inside the length of \(f)"))
                }
                let len = Int(raw.loadUnaligned(fromByteOffset: at, as: UInt16.self).littleEndian)
                guard len <= Self.maxStringBytes else {
                    return .failure(ProtocolError(.limitExceeded, "\(f) is \(len) bytes, limit \(Self.maxStringBytes)"))
                }
                guard at &+ 2 &+ len <= raw.count else { return .failure(ProtocolError(.badRequest, "payload ends inside \(f)")) }
                at = at &+ 2 &+ len
            }
            if !Self.isASCII(raw, from: 0, count: at) {
                var p = 0
                for _ in 0..<n {
                    let len = Int(raw.loadUnaligned(fromByteOffset: p, as: UInt16.self).littleEndian)
                    if !Self.isASCII(raw, from: p + 2, count: len) {
                        let bytes = UnsafeRawBufferPointer(rebasing: raw[(p + 2)..<(p + 2 + len)])
                        if String(validating: bytes.assumingMemoryBound(to: UInt8.self), as: UTF8.self) == nil {
                            return .failure(ProtocolError(.badRequest, "\(f) is not valid UTF-8"))
                        }
                    }
                    p += 2 + len
                }
            }
            return .success(at)
        }
        let size = try scanned.get()
        return IdList(count: n, packed: buffer.readSlice(length: size)!)
    }
}

extension PayloadReader {
    /// Whether raw[start ..< start + count] is all ASCII, eight bytes at a time.
    @inline(__always)
    static func isASCII(_ raw: UnsafeRawBufferPointer, from start: Int, count: Int) -> Bool {
        var high: UInt64 = 0
        var i = start
        let end = start + count
        while i + 8 <= end {
            high |= raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < end {
            high |= UInt64(raw[i])
            i += 1
        }
        return high & 0x8080_8080_8080_8080 == 0
    }
}

extension ByteBuffer {
    /// Writes a u32-counted id list.
    mutating func putIdList(_ list: IdList) {
        put(UInt32(list.count))
        var packed = list.packed
        writeBuffer(&packed)
    }
}
