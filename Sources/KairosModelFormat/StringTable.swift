import CKairosKernels
public import KairosKernels

/// External string ids (or category names) read in place from a section.
///
/// Layout: `u32 offsets[count + 1]` (offsets[0] = 0, non-decreasing, offsets[count] = blob length), then the
/// UTF-8 blob; string `i` is `blob[offsets[i] ..< offsets[i+1]]`.
public struct StringTable: @unchecked Sendable {
    /// Longest id accepted, in bytes.
    public static let maxStringBytes = 1024

    /// Number of strings.
    public let count: Int
    @usableFromInline let offsets: UnsafePointer<UInt32>
    @usableFromInline let blob: UnsafePointer<UInt8>

    /// Validates the layout of `bytes` (which must outlive the table) for `count` strings.
    init(bytes: UnsafeRawBufferPointer, count: Int, section: String) throws(ModelFormatError) {
        let headerBytes = (count + 1) * 4
        guard bytes.count >= headerBytes else {
            throw ModelFormatError(.countMismatch, section: section, "\(count) strings need \(headerBytes) offset bytes, section has \(bytes.count)")
        }
        let offsets = bytes.baseAddress!.assumingMemoryBound(to: UInt32.self)
        let blobLength = bytes.count - headerBytes
        var previous: UInt32 = 0
        guard offsets[0] == 0 else { throw ModelFormatError(.badSection, section: section, "first offset is not 0") }
        // An empty table (a model whose attributes name no brand) is one offset, 0, and no blob.
        for i in 0..<count {
            let o = UInt32(littleEndian: offsets[i + 1])
            guard o >= previous, o - previous <= UInt32(Self.maxStringBytes) else {
                throw ModelFormatError(.badSection, section: section, "string \(i) has a bad offset or is over 1024 bytes")
            }
            previous = o
        }
        guard Int(previous) == blobLength else {
            throw ModelFormatError(.countMismatch, section: section, "offsets end at \(previous), blob is \(blobLength) bytes")
        }
        self.count = count
        self.offsets = offsets
        self.blob = (bytes.baseAddress! + headerBytes).assumingMemoryBound(to: UInt8.self)
    }

    /// The UTF-8 bytes of string `i` (valid while the model is alive).
    @inlinable
    public func bytes(at i: Int) -> UnsafeBufferPointer<UInt8> {
        precondition(i >= 0 && i < count)
        let start = Int(UInt32(littleEndian: offsets[i]))
        let end = Int(UInt32(littleEndian: offsets[i + 1]))
        return UnsafeBufferPointer(start: blob + start, count: end - start)
    }

    /// String `i`, decoded (invalid UTF-8 is repaired, never trusted).
    public subscript(i: Int) -> String {
        String(decoding: bytes(at: i), as: UTF8.self)
    }

    /// Serializes `strings` into the table layout.
    static func encode(_ strings: [String]) throws(ModelFormatError) -> [UInt8] {
        var w = ByteWriter(capacity: (strings.count + 1) * 4 + strings.count * 12)
        var blob: [UInt8] = []
        w.append(UInt32(0))
        for s in strings {
            let u = Array(s.utf8)
            guard u.count <= maxStringBytes else {
                throw ModelFormatError(.invalidInput, "id longer than \(maxStringBytes) bytes: \(s.prefix(40))...")
            }
            blob += u
            guard blob.count <= Int(UInt32.max) else { throw ModelFormatError(.invalidInput, "string table over 4 GiB") }
            w.append(UInt32(blob.count))
        }
        w.append(blob)
        return w.bytes
    }
}

/// The id -> row lookup of a model: validates the file's hash index section, and looks ids up in a table built in
/// memory from the ids at load.
///
/// File layout: `u32 slots[capacity]`, capacity a power of two >= 2 * count; a slot holds `row + 1`, or 0 when
/// empty. An id's home slot is `xxh64(utf8 bytes, seed 0) & (capacity - 1)`; collisions probe linearly.
/// The server does not read those slots on its hot path: each holds only a row, so checking an id took three
/// dependent cache misses (slot, offset, bytes). The in-memory table (`ckk_id_index_build` in id_index.c) holds
/// the id's bytes (up to 27) in its 32-byte entry, so a lookup waits on one. It costs 48-96 bytes per id and one
/// pass over the ids at load (+8.5 ms for 360k ids: `kairos-kernel-bench --model-load`, 16 -> 24.5 ms). It places
/// ids by its own, cheaper hash (wyhash's, `ckk_id_hash`): a 100-candidate SCORE costs ~5k fewer instructions.
public struct IdIndex: @unchecked Sendable {
    /// The ids the slots point into.
    public let table: StringTable
    /// Owns the entries `index` points into (zeroed, page-aligned).
    private let entries: AlignedBuffer
    /// The entries and the table, as the C lookup reads them (the hot path of every SCORE lives in C: see id_index.c).
    let index: ckk_id_index

    init(bytes: UnsafeRawBufferPointer, capacity: Int, table: StringTable, section: String) throws(ModelFormatError) {
        guard capacity > 0, capacity & (capacity - 1) == 0, capacity >= 2 * table.count else {
            throw ModelFormatError(.badSection, section: section, "capacity \(capacity) is not a power of two >= 2 x \(table.count) ids")
        }
        guard bytes.count == capacity * 4 else {
            throw ModelFormatError(.countMismatch, section: section, "\(capacity) slots need \(capacity * 4) bytes, section has \(bytes.count)")
        }
        try self.init(table: table, section: section)
    }

    /// Builds the lookup for `table`'s ids (when an id occurs twice, the lower row wins).
    init(table: StringTable, section: String = "ids") throws(ModelFormatError) {
        self.table = table
        let capacity = Int(ckk_id_index_capacity(UInt64(table.count)))
        entries = try AlignedBuffer(size: capacity * Int(CKK_ID_ENTRY_BYTES), for: "the lookup of \(section)")
        // StringTable's init validated the offsets the C side relies on.
        index = ckk_id_index(
            entries: UnsafePointer(entries.base.assumingMemoryBound(to: UInt8.self)), mask: UInt64(capacity - 1),
            offsets: table.offsets, blob: table.blob, count: UInt64(table.count))
        withUnsafePointer(to: index) { _ = ckk_id_index_build($0) }
    }

    /// Entries in the in-memory table.
    var entryCount: Int { Int(index.mask) + 1 }
    /// The hash that places an id in the in-memory table (its home entry is `hash & (entryCount - 1)`); not the
    /// file's XXH64, which only the slot section uses.
    static func entryHash(_ id: UnsafeRawBufferPointer) -> UInt64 { ckk_id_hash(id.baseAddress, id.count) }
    /// Bytes of the in-memory table.
    public var lookupBytes: Int { entryCount * Int(CKK_ID_ENTRY_BYTES) }

    /// The row of the id whose UTF-8 bytes are `id`, or nil when unknown.
    public func row(ofUTF8 id: UnsafeRawBufferPointer) -> Int? {
        withUnsafePointer(to: index) { ix in
            let row = ckk_id_row(ix, id.baseAddress?.assumingMemoryBound(to: UInt8.self), id.count)
            return row < 0 ? nil : Int(row)
        }
    }

    /// The row of `id`, or nil when unknown.
    public func row(of id: String) -> Int? {
        var id = id
        return id.withUTF8 { row(ofUTF8: UnsafeRawBufferPointer($0)) }
    }

    /// Looks up `count` ids stored back to back in `packed`, each a little-endian u16 byte count followed by its
    /// UTF-8 bytes (the layout ids arrive in, so a request's ids are looked up without building a String each).
    /// Writes each row, or -1 for an unknown id; ids past a malformed or truncated entry are reported unknown.
    /// With `prefetching`, each found row of that matrix is prefetched as soon as its id resolves, so reading the
    /// rows next overlaps their cache misses with the rest of the lookup.
    public func rows(
        ofPacked packed: UnsafeRawBufferPointer, count n: Int, into rows: UnsafeMutableBufferPointer<Int32>,
        prefetching matrix: MatrixView? = nil
    ) {
        precondition(rows.count >= n)
        guard n > 0 else { return }
        withUnsafePointer(to: index) { ix in
            ckk_id_rows_packed(
                ix, packed.baseAddress?.assumingMemoryBound(to: UInt8.self), packed.count, n, rows.baseAddress,
                matrix?.base, matrix?.rowStride ?? 0, (matrix?.cols ?? 0) * (matrix?.encoding.elementSize ?? 0))
        }
    }

    /// Builds the slot array for `strings` (which must be unique).
    static func encode(_ strings: [String]) throws(ModelFormatError) -> (bytes: [UInt8], capacity: Int) {
        var capacity = 2
        while capacity < 2 * strings.count { capacity <<= 1 }
        var slots = [UInt32](repeating: 0, count: capacity)
        let mask = capacity - 1
        for (row, s) in strings.enumerated() {
            var s = s
            var i = s.withUTF8 { Int(truncatingIfNeeded: Checksum.xxh64(UnsafeRawBufferPointer($0))) } & mask
            while slots[i] != 0 {
                if strings[Int(slots[i]) - 1] == s { throw ModelFormatError(.invalidInput, "duplicate id \"\(s)\"") }
                i = (i + 1) & mask
            }
            slots[i] = UInt32(row + 1)
        }
        var w = ByteWriter(capacity: capacity * 4)
        for s in slots { w.append(s) }
        return (w.bytes, capacity)
    }
}
