/// Appends little-endian fixed-width values to a byte array.
struct ByteWriter {
    var bytes: [UInt8]

    init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    mutating func append(_ raw: [UInt8]) { bytes += raw }

    mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    mutating func append(_ value: Float) { append(value.bitPattern) }

    /// Pads with zeros to a multiple of `alignment`.
    mutating func align(to alignment: Int) {
        let rem = bytes.count % alignment
        if rem != 0 { bytes += [UInt8](repeating: 0, count: alignment - rem) }
    }
}

/// Reads little-endian fixed-width values from a buffer the caller has already bounds-checked.
struct ByteReader {
    let buffer: UnsafeRawBufferPointer
    var offset = 0

    init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    mutating func skip(_ n: Int) { offset += n }

    mutating func read<T: FixedWidthInteger>() -> T {
        let v = T(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return v
    }
}

extension Int {
    /// `self` rounded up to a multiple of 64.
    var alignedTo64: Int { (self + 63) & ~63 }
}
