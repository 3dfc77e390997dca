import KairosKernels

/// The fixed 128-byte header at offset 0 of every model file.
///
/// ```
/// off size field
///   0    8 magic "KAIROSMF"
///   8    2 format major version (u16)      10  2 format minor version (u16)
///  12    4 byte-order mark 0x0A0B0C0D (u32, little-endian on disk: 0D 0C 0B 0A)
///  16    4 header size = 128 (u32)         20  4 section count (u32, <= 64)
///  24    8 section table offset (u64)      32  8 file size in bytes (u64)
///  40    8 created at, unix seconds (i64)  48  8 model version (u64)
///  56    8 xxh64 of the section table bytes
///  64   48 model name, UTF-8, NUL-padded
/// 112    8 reserved, zero
/// 120    8 xxh64 of header bytes 0..<120
/// ```
public struct FileHeader: Sendable, Hashable {
    /// File magic, the first 8 bytes.
    public static let magic: [UInt8] = Array("KAIROSMF".utf8)
    /// Major version this code reads and writes; files with another major version are rejected.
    public static let currentMajorVersion: UInt16 = 1
    /// Newest minor version this code writes (1.1 added `item_first_seen`); a file gets the lowest minor version
    /// that describes its sections. Readers accept any minor version of their major (unknown sections skipped).
    public static let currentMinorVersion: UInt16 = 1
    /// Byte-order mark value.
    public static let byteOrderMark: UInt32 = 0x0A0B_0C0D
    /// Size of the header in bytes.
    public static let size = 128
    /// Upper bound on the section count, so a hostile header cannot ask for a huge table.
    public static let maxSections = 64
    /// Longest model name in bytes.
    public static let maxNameBytes = 48

    /// Format major version.
    public var majorVersion: UInt16
    /// Format minor version.
    public var minorVersion: UInt16
    /// Number of entries in the section table.
    public var sectionCount: Int
    /// Byte offset of the section table.
    public var sectionTableOffset: Int
    /// Total file size the writer produced.
    public var fileSize: Int
    /// When the file was written, unix seconds.
    public var createdAt: Int64
    /// Model version (monotonic per model name).
    public var modelVersion: UInt64
    /// xxh64 of the section table bytes.
    public var sectionTableChecksum: UInt64
    /// Model name: 1-48 bytes of `[A-Za-z0-9._-]`.
    public var modelName: String
    /// The header's own xxh64 as read from the file (identifies the exact file; 0 before writing).
    public var checksum: UInt64 = 0

    /// Whether `name` is a valid model name (also safe as a file name).
    public static func isValidModelName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= maxNameBytes, bytes.first != UInt8(ascii: ".") else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
        }
    }

    /// Serializes the header, computing its checksum.
    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: Self.size)
        w.append(Self.magic)
        w.append(majorVersion)
        w.append(minorVersion)
        w.append(Self.byteOrderMark)
        w.append(UInt32(Self.size))
        w.append(UInt32(sectionCount))
        w.append(UInt64(sectionTableOffset))
        w.append(UInt64(fileSize))
        w.append(UInt64(bitPattern: createdAt))
        w.append(modelVersion)
        w.append(sectionTableChecksum)
        var name = Array(modelName.utf8)
        name += [UInt8](repeating: 0, count: Self.maxNameBytes - name.count)
        w.append(name)
        w.append(UInt64(0))
        let sum = w.bytes.withUnsafeBytes { Checksum.xxh64($0) }
        w.append(sum)
        return w.bytes
    }

    /// Parses and checks a header from the first bytes of a file of `actualFileSize` bytes.
    static func decode(_ bytes: UnsafeRawBufferPointer, actualFileSize: Int) throws(ModelFormatError) -> FileHeader {
        guard bytes.count >= Self.size else {
            throw ModelFormatError(.truncated, "file is \(bytes.count) bytes, shorter than the 128-byte header")
        }
        guard Array(bytes[0..<8]) == Self.magic else {
            throw ModelFormatError(.badMagic, "not a Kairos model file (magic \(hex(bytes[0..<8])), expected \"KAIROSMF\")")
        }
        var r = ByteReader(bytes)
        r.skip(8)
        let major: UInt16 = r.read()
        let minor: UInt16 = r.read()
        let bom: UInt32 = r.read()
        guard bom == Self.byteOrderMark else {
            throw ModelFormatError(.badByteOrder, "byte-order mark 0x\(String(bom, radix: 16)); only little-endian files exist")
        }
        guard major == Self.currentMajorVersion else {
            throw ModelFormatError(
                .unsupportedVersion,
                "format version \(major).\(minor); this build reads major version \(Self.currentMajorVersion)"
            )
        }
        let stored = bytes.loadUnaligned(fromByteOffset: 120, as: UInt64.self).littleEndian
        let computed = Checksum.xxh64(UnsafeRawBufferPointer(rebasing: bytes[0..<120]))
        guard stored == computed else {
            throw ModelFormatError(.checksumMismatch, section: "header", "stored xxh64 \(hex64(stored)), computed \(hex64(computed))")
        }
        let headerSize: UInt32 = r.read()
        let count: UInt32 = r.read()
        let tableOffset: UInt64 = r.read()
        let fileSize: UInt64 = r.read()
        let createdAt = Int64(bitPattern: r.read())
        let modelVersion: UInt64 = r.read()
        let tableChecksum: UInt64 = r.read()
        let nameBytes = Array(bytes[64..<112].prefix { $0 != 0 })
        guard headerSize == Self.size else { throw ModelFormatError(.badHeader, "header size \(headerSize), expected 128") }
        guard count >= 1, count <= Self.maxSections else {
            throw ModelFormatError(.badHeader, "section count \(count) outside 1...\(Self.maxSections)")
        }
        guard fileSize == UInt64(actualFileSize) else {
            let what = fileSize > UInt64(actualFileSize) ? ModelFormatError.Code.truncated : .badHeader
            throw ModelFormatError(what, "header says the file is \(fileSize) bytes, it is \(actualFileSize)")
        }
        guard tableOffset == UInt64(Self.size), tableOffset + UInt64(count) * 64 <= fileSize else {
            throw ModelFormatError(.badHeader, "section table at \(tableOffset) with \(count) entries does not fit the file")
        }
        guard let name = String(validating: nameBytes, as: UTF8.self), isValidModelName(name) else {
            throw ModelFormatError(.badHeader, "model name is not 1-48 bytes of [A-Za-z0-9._-]")
        }
        return FileHeader(
            majorVersion: major,
            minorVersion: minor,
            sectionCount: Int(count),
            sectionTableOffset: Int(tableOffset),
            fileSize: Int(fileSize),
            createdAt: createdAt,
            modelVersion: modelVersion,
            sectionTableChecksum: tableChecksum,
            modelName: name,
            checksum: stored
        )
    }
}

func hex(_ bytes: some Sequence<UInt8>) -> String {
    bytes.map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
}

func hex64(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}
