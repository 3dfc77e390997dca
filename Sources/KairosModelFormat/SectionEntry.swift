public import KairosKernels

/// What a section holds. Readers skip (but still checksum) kinds they do not know, so minor versions can add kinds.
public enum SectionKind: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case metadata = 1
    case itemIds = 2
    case userIds = 3
    case itemIdIndex = 4
    case userIdIndex = 5
    case itemFactors = 6
    case userFactors = 7
    case itemBiases = 8
    case itemPopularity = 9
    case itemAttributes = 10
    case categoryNames = 11
    case brandNames = 12
    case userHistory = 13
    case userActivity = 14
    case golden = 15
    /// Since 1.1: when each item was first seen (freshness).
    case itemFirstSeen = 16

    public var description: String {
        switch self {
        case .metadata: "metadata"
        case .itemIds: "item_ids"
        case .userIds: "user_ids"
        case .itemIdIndex: "item_id_index"
        case .userIdIndex: "user_id_index"
        case .itemFactors: "item_factors"
        case .userFactors: "user_factors"
        case .itemBiases: "item_biases"
        case .itemPopularity: "item_popularity"
        case .itemAttributes: "item_attributes"
        case .categoryNames: "category_names"
        case .brandNames: "brand_names"
        case .userHistory: "user_history"
        case .userActivity: "user_activity"
        case .golden: "golden"
        case .itemFirstSeen: "item_first_seen"
        }
    }
}

/// How a section's elements are encoded (only meaningful for some kinds).
public enum SectionEncoding: UInt16, Sendable, CustomStringConvertible {
    /// Layout defined by the section kind.
    case bytes = 0
    case float32 = 1
    case float16 = 2
    /// int8 rows followed by one float32 scale per row.
    case int8 = 3
    /// Unsigned 8-bit values, 255 = the row's maximum.
    case unorm8 = 4

    /// The matching kernel row encoding, for matrix sections.
    public var rowEncoding: RowEncoding? { RowEncoding(rawValue: rawValue) }

    public var description: String {
        switch self {
        case .bytes: "bytes"
        case .float32: "float32"
        case .float16: "float16"
        case .int8: "int8"
        case .unorm8: "unorm8"
        }
    }
}

/// How a section's bytes are stored.
public enum SectionCodec: UInt16, Sendable, CustomStringConvertible {
    /// Stored as is; usable in place from the mapping.
    case none = 0
    /// One LZ4 block (liblz4 `LZ4_compress_default` format); decompressed once at load.
    case lz4 = 1

    public var description: String {
        switch self {
        case .none: "none"
        case .lz4: "lz4"
        }
    }
}

/// One 64-byte entry of the section table.
///
/// ```
/// off size field
///   0    4 kind (u32)          4  2 encoding (u16)     6  2 codec (u16)
///   8    8 offset (u64, multiple of 64)
///  16    8 stored size (u64)  24  8 raw size after decompression (u64)
///  32    8 rows (u64)         40  4 cols (u32)        44  4 row stride in bytes (u32)
///  48    8 param (i64, kind-specific, e.g. a reference time)
///  56    8 xxh64 of the stored bytes
/// ```
public struct SectionEntry: Sendable, Hashable {
    /// Size of one table entry.
    public static let size = 64

    /// Raw kind value (may be unknown to this reader).
    public var kindRaw: UInt32
    /// Raw encoding value.
    public var encodingRaw: UInt16
    /// Raw codec value.
    public var codecRaw: UInt16
    /// Byte offset of the stored bytes in the file.
    public var offset: Int
    /// Number of stored bytes.
    public var storedSize: Int
    /// Number of bytes after decompression (== storedSize for codec none).
    public var rawSize: Int
    /// Row count (kind-specific meaning).
    public var rows: Int
    /// Column count (kind-specific meaning).
    public var cols: Int
    /// Bytes per row for matrix sections, else 0.
    public var rowStride: Int
    /// Kind-specific parameter.
    public var param: Int64
    /// xxh64 of the stored bytes.
    public var checksum: UInt64

    /// The section kind, if this reader knows it.
    public var kind: SectionKind? { SectionKind(rawValue: kindRaw) }
    /// The encoding, if known.
    public var encoding: SectionEncoding? { SectionEncoding(rawValue: encodingRaw) }
    /// The codec, if known.
    public var codec: SectionCodec? { SectionCodec(rawValue: codecRaw) }
    /// Human-readable kind name.
    public var kindName: String { kind?.description ?? "unknown(\(kindRaw))" }

    func encode(into w: inout ByteWriter) {
        w.append(kindRaw)
        w.append(encodingRaw)
        w.append(codecRaw)
        w.append(UInt64(offset))
        w.append(UInt64(storedSize))
        w.append(UInt64(rawSize))
        w.append(UInt64(rows))
        w.append(UInt32(cols))
        w.append(UInt32(rowStride))
        w.append(UInt64(bitPattern: param))
        w.append(checksum)
    }

    /// Decodes one entry and checks it against the file size; every size is checked before it becomes an `Int`.
    static func decode(_ bytes: UnsafeRawBufferPointer, fileSize: Int, index: Int) throws(ModelFormatError) -> SectionEntry {
        var r = ByteReader(bytes)
        let kind: UInt32 = r.read()
        let encoding: UInt16 = r.read()
        let codec: UInt16 = r.read()
        let offset: UInt64 = r.read()
        let stored: UInt64 = r.read()
        let raw: UInt64 = r.read()
        let rows: UInt64 = r.read()
        let cols: UInt32 = r.read()
        let stride: UInt32 = r.read()
        let param = Int64(bitPattern: r.read())
        let checksum: UInt64 = r.read()
        let name = SectionKind(rawValue: kind)?.description ?? "unknown(\(kind)) at table index \(index)"
        let size = UInt64(fileSize)
        guard offset % 64 == 0 else {
            throw ModelFormatError(.badSectionTable, section: name, "offset \(offset) is not 64-byte aligned")
        }
        guard offset <= size, stored <= size - offset else {
            throw ModelFormatError(
                .sectionOutOfBounds,
                section: name,
                "bytes \(offset)..<\(offset &+ stored) run past the end of the \(fileSize)-byte file"
            )
        }
        guard SectionCodec(rawValue: codec) != nil else {
            throw ModelFormatError(.badSectionTable, section: name, "unknown codec \(codec)")
        }
        // LZ4 cannot expand data by more than ~255x, so this bounds what a hostile entry can make us allocate.
        let maxRaw = codec == SectionCodec.lz4.rawValue ? min(stored &* 255 &+ 64, UInt64(LZ4Codec.maxBlockSize)) : stored
        guard codec == SectionCodec.lz4.rawValue ? raw <= maxRaw : raw == stored else {
            throw ModelFormatError(.badSectionTable, section: name, "raw size \(raw) impossible for stored size \(stored)")
        }
        guard rows <= UInt64(Int32.max) else {
            throw ModelFormatError(.countMismatch, section: name, "row count \(rows) exceeds the 2^31-1 limit")
        }
        return SectionEntry(
            kindRaw: kind,
            encodingRaw: encoding,
            codecRaw: codec,
            offset: Int(offset),
            storedSize: Int(stored),
            rawSize: Int(raw),
            rows: Int(rows),
            cols: Int(cols),
            rowStride: Int(stride),
            param: param,
            checksum: checksum
        )
    }
}
