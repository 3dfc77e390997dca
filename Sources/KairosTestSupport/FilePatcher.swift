import KairosKernels

/// Edits a valid file's bytes and re-seals every checksum, so a test reaches the check *behind* the checksums.
public struct FilePatcher {
    public var bytes: [UInt8]

    /// A patcher of `bytes`, a whole model file.
    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// The header's section count.
    public var sectionCount: Int { Int(read(UInt32.self, at: 20)) }

    /// The little-endian integer at `offset`.
    public func read<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    /// Writes `value` little-endian at `offset` (checksums are left stale until ``reseal()``).
    public mutating func write<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { v in
            for (i, b) in v.enumerated() { bytes[offset + i] = b }
        }
    }

    /// Byte offset of table entry `i`.
    public func entryOffset(_ i: Int) -> Int { 128 + 64 * i }

    /// Index of the table entry of section kind `kind` (the format's numeric kind).
    public func index(ofKind kind: UInt32) -> Int {
        (0..<sectionCount).first { read(UInt32.self, at: entryOffset($0)) == kind }!
    }

    /// (offset, stored size) of table entry `i`'s section.
    public func range(ofEntry i: Int) -> (offset: Int, size: Int) {
        let e = entryOffset(i)
        return (Int(clamping: read(UInt64.self, at: e + 8)), Int(clamping: read(UInt64.self, at: e + 16)))
    }

    /// Recomputes every section checksum, the table checksum and the header checksum.
    public mutating func reseal() {
        for i in 0..<min(sectionCount, 64) {
            let e = entryOffset(i)
            let off = read(UInt64.self, at: e + 8)
            let size = read(UInt64.self, at: e + 16)
            if off <= UInt64(bytes.count), size <= UInt64(bytes.count) - off {
                let (off, size) = (Int(off), Int(size))
                write(bytes[off..<(off + size)].withUnsafeBytes { Checksum.xxh64($0) }, at: e + 56)
            }
        }
        let tableEnd = 128 + 64 * min(sectionCount, 64)
        write(bytes[128..<min(tableEnd, bytes.count)].withUnsafeBytes { Checksum.xxh64($0) }, at: 56)
        write(bytes[0..<120].withUnsafeBytes { Checksum.xxh64($0) }, at: 120)
    }
}

