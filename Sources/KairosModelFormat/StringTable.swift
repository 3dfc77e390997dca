import CKairosKernels
import KairosKernels

#if canImport(Glibc)
import Glibc
#endif

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
        for i in 1...count {
            let o = UInt32(littleEndian: offsets[i])
            guard o >= previous, o - previous <= UInt32(Self.maxStringBytes) else {
                throw ModelFormatError(.badSection, section: section, "string \(i - 1) has a bad offset or is over 1024 bytes")
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

/// An open-addressing hash index from id to row, used straight from the mapped bytes (no rebuild at load).
///
/// Layout: `u32 slots[capacity]`, capacity a power of two >= 2 * count; a slot holds `row + 1`, or 0 when empty.
/// An id's home slot is `xxh64(utf8 bytes, seed 0) & (capacity - 1)`; collisions probe linearly.
public struct IdIndex: @unchecked Sendable {
    /// The ids the slots point into.
    public let table: StringTable
    @usableFromInline let slots: UnsafePointer<UInt32>
    @usableFromInline let mask: Int

    init(bytes: UnsafeRawBufferPointer, capacity: Int, table: StringTable, section: String) throws(ModelFormatError) {
        guard capacity > 0, capacity & (capacity - 1) == 0, capacity >= 2 * table.count else {
            throw ModelFormatError(.badSection, section: section, "capacity \(capacity) is not a power of two >= 2 x \(table.count) ids")
        }
        guard bytes.count == capacity * 4 else {
            throw ModelFormatError(.countMismatch, section: section, "\(capacity) slots need \(capacity * 4) bytes, section has \(bytes.count)")
        }
        self.table = table
        self.slots = bytes.baseAddress!.assumingMemoryBound(to: UInt32.self)
        self.mask = capacity - 1
    }

    /// The row of the id whose UTF-8 bytes are `id`, or nil when unknown.
    public func row(ofUTF8 id: UnsafeRawBufferPointer) -> Int? {
        var i = Int(truncatingIfNeeded: Checksum.xxh64(id)) & mask
        // Bounded probing: a corrupt (but checksummed) index can cause misses, never a loop or an out-of-bounds read.
        for _ in 0...mask {
            let slot = Int(UInt32(littleEndian: slots[i]))
            if slot == 0 { return nil }
            let row = slot - 1
            if row < table.count {
                let candidate = table.bytes(at: row)
                if candidate.count == id.count, Self.equal(candidate, id) { return row }
            }
            i = (i + 1) & mask
        }
        return nil
    }

    /// Byte equality; short ids (the common case) compare inline instead of calling memcmp.
    @inline(__always)
    static func equal(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeRawBufferPointer) -> Bool {
        let n = b.count
        guard n > 16 else {
            for i in 0..<n where a[i] != b[i] { return false }
            return true
        }
        return memcmp(a.baseAddress!, b.baseAddress!, n) == 0
    }

    /// The row of `id`, or nil when unknown.
    public func row(of id: String) -> Int? {
        var id = id
        return id.withUTF8 { row(ofUTF8: UnsafeRawBufferPointer($0)) }
    }

    /// Looks up `count` ids stored back to back in `packed`, each a little-endian u16 byte count followed by its
    /// UTF-8 bytes (the layout ids arrive in, so a request's ids are looked up without building a String each).
    /// Writes each row, or -1 for an unknown id; ids past a malformed or truncated entry are reported unknown.
    ///
    /// Random lookups in a large catalogue are bound by cache misses (slot, offset, id bytes: three dependent loads
    /// each). Going phase by phase with prefetches lets the misses of all ids overlap.
    public func rows(ofPacked packed: UnsafeRawBufferPointer, count n: Int, into rows: UnsafeMutableBufferPointer<Int32>) {
        precondition(rows.count >= n)
        guard n > 0 else { return }
        withUnsafeTemporaryAllocation(of: UnsafeRawBufferPointer.self, capacity: n) { ids in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: n) { home in
                // Phase 1: split, hash, prefetch the home slot.
                var at = 0
                let base = packed.baseAddress
                for i in 0..<n {
                    var id = UnsafeRawBufferPointer(start: nil, count: 0)
                    home[i] = -1
                    if at + 2 <= packed.count, let base {
                        let len = Int(base.loadUnaligned(fromByteOffset: at, as: UInt16.self).littleEndian)
                        if at + 2 + len <= packed.count {
                            id = UnsafeRawBufferPointer(start: base + at + 2, count: len)
                            home[i] = Int(truncatingIfNeeded: Checksum.xxh64(id)) & mask
                            ckk_prefetch(slots + home[i])
                        }
                        at += 2 + len
                    }
                    ids.initializeElement(at: i, to: id)
                }
                // Rounds of linear probing, all ids at once so their cache misses overlap: a colliding id moves on
                // to its next slot in the next round instead of finishing alone with three dependent misses
                // (measured: the one-at-a-time fallback was 14% of a SCORE's CPU on a 100k-item model).
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: n) { pending in
                    var open = 0
                    for i in 0..<n {
                        rows[i] = -1
                        if home[i] >= 0 {
                            pending[open] = Int32(i)
                            open += 1
                        }
                    }
                    var round = 0
                    while open > 0 && round <= mask {  // bounded: a corrupt index cannot loop forever
                        // Read this round's slots; prefetch the offsets of the rows they name.
                        var kept = 0
                        for p in 0..<open {
                            let i = Int(pending[p])
                            let slot = Int(UInt32(littleEndian: slots[(home[i] + round) & mask]))
                            guard slot > 0 else { continue }  // empty slot: unknown id
                            guard slot - 1 < table.count else {  // corrupt slot: keep probing
                                pending[kept] = Int32(i)
                                kept += 1
                                rows[i] = -2
                                continue
                            }
                            rows[i] = Int32(slot - 1)
                            ckk_prefetch(table.offsets + (slot - 1))
                            pending[kept] = Int32(i)
                            kept += 1
                        }
                        open = kept
                        for p in 0..<open where rows[Int(pending[p])] >= 0 {
                            ckk_prefetch(table.blob + Int(UInt32(littleEndian: table.offsets[Int(rows[Int(pending[p])])])))
                        }
                        // Compare; the ids that met another id stay pending for the next slot.
                        kept = 0
                        for p in 0..<open {
                            let i = Int(pending[p])
                            let r = Int(rows[i])
                            if r >= 0 {
                                let candidate = table.bytes(at: r)
                                if candidate.count == ids[i].count && Self.equal(candidate, ids[i]) { continue }
                            }
                            rows[i] = -1
                            pending[kept] = Int32(i)
                            kept += 1
                        }
                        open = kept
                        round += 1
                    }
                    for p in 0..<open { rows[Int(pending[p])] = -1 }
                }
            }
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
