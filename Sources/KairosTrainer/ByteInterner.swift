import CKairosTrainerKernels

#if canImport(Glibc)
    import Glibc
#endif

/// Interns byte strings (ids read from a log) into dense `UInt32` ids without creating a `String` per row.
///
/// Open addressing over an arena of the distinct byte strings: 10M rows cost 10M hash probes and no allocation
/// beyond the distinct ids, which is what keeps ingest memory bounded by the number of users and items.
package struct ByteInterner: Sendable {
    /// Concatenated bytes of all distinct strings, in id order.
    private var arena: [UInt8] = []
    /// `count + 1` offsets into ``arena``.
    private var offsets: [Int] = [0]
    /// Hash of each id, kept so growing the table needs no re-hashing of bytes.
    private var hashes: [UInt64] = []
    /// Slots hold `id + 1`, 0 for empty; capacity is a power of two at most half full.
    private var slots: [UInt32] = Array(repeating: 0, count: 1024)

    /// An empty interner.
    package init() {}

    /// Number of distinct strings.
    package var count: Int { hashes.count }

    /// The id of `bytes`, adding it if new.
    @inline(__always)
    package mutating func intern(_ bytes: UnsafeRawBufferPointer) -> UInt32 { intern(bytes, hash: Self.hash(bytes)) }

    /// ``intern(_:)`` of `bytes` whose ``hash(_:)`` is `h`.
    @inline(__always)
    package mutating func intern(_ bytes: UnsafeRawBufferPointer, hash h: UInt64) -> UInt32 {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s == 0 { break }
            let id = Int(s - 1)
            if hashes[id] == h && equal(id, bytes) { return UInt32(id) }
            i = (i &+ 1) & mask
        }
        let id = UInt32(hashes.count)
        hashes.append(h)
        arena.append(contentsOf: bytes)
        offsets.append(arena.count)
        slots[i] = id + 1
        if hashes.count * 2 > slots.count { grow() }
        return id
    }

    /// Prefetches the home slot of a string of hash `h`: the first of the cache misses its lookup would wait on, in
    /// a table larger than the caches.
    @inline(__always)
    package func prefetchSlot(hash h: UInt64) {
        slots.withUnsafeBufferPointer { ckt_prefetch($0.baseAddress! + (Int(truncatingIfNeeded: h) & ($0.count - 1))) }
    }

    /// Reads the home slot of a string of hash `h` (prefetched earlier) and prefetches what comparing with its id
    /// reads next: the id's hash and offsets.
    @inline(__always)
    package func prefetchEntry(hash h: UInt64) {
        let s = slots.withUnsafeBufferPointer { $0[Int(truncatingIfNeeded: h) & ($0.count - 1)] }
        guard s != 0 else { return }
        let id = Int(s - 1)
        hashes.withUnsafeBufferPointer { ckt_prefetch($0.baseAddress! + id) }
        offsets.withUnsafeBufferPointer { ckt_prefetch($0.baseAddress! + id) }
    }

    /// Reads the home slot and its id's offset (both prefetched earlier) and prefetches the id's bytes, the last
    /// read of a lookup that finds its string in its home slot.
    @inline(__always)
    package func prefetchBytes(hash h: UInt64) {
        let s = slots.withUnsafeBufferPointer { $0[Int(truncatingIfNeeded: h) & ($0.count - 1)] }
        guard s != 0 else { return }
        let start = offsets.withUnsafeBufferPointer { $0[Int(s - 1)] }
        arena.withUnsafeBufferPointer { ckt_prefetch($0.baseAddress! + start) }
    }

    /// The id of `bytes` if it was interned.
    package func lookup(_ bytes: UnsafeRawBufferPointer) -> UInt32? {
        let h = Self.hash(bytes)
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s == 0 { return nil }
            let id = Int(s - 1)
            if hashes[id] == h && equal(id, bytes) { return UInt32(id) }
            i = (i &+ 1) & mask
        }
    }

    /// The id of `string` if it was interned.
    package func lookup(_ string: String) -> UInt32? {
        var s = string
        return s.withUTF8 { lookup(UnsafeRawBufferPointer($0)) }
    }

    /// The id of `string`, adding it if new.
    package mutating func intern(_ string: String) -> UInt32 {
        var s = string
        return s.withUTF8 { intern(UnsafeRawBufferPointer($0)) }
    }

    /// All strings in id order.
    package func strings() -> [String] {
        arena.withUnsafeBufferPointer { a in
            (0..<count).map {
                String(decoding: UnsafeBufferPointer(rebasing: a[offsets[$0]..<offsets[$0 + 1]]), as: UTF8.self)
            }
        }
    }

    @inline(__always)
    private func equal(_ id: Int, _ bytes: UnsafeRawBufferPointer) -> Bool {
        let start = offsets[id]
        let n = offsets[id + 1] - start
        guard n == bytes.count else { return false }
        if n == 0 { return true }
        return arena.withUnsafeBytes { a in memcmp(a.baseAddress! + start, bytes.baseAddress!, n) == 0 }
    }

    private mutating func grow() {
        var next = [UInt32](repeating: 0, count: slots.count * 2)
        let mask = next.count - 1
        for (id, h) in hashes.enumerated() {
            var i = Int(truncatingIfNeeded: h) & mask
            while next[i] != 0 { i = (i &+ 1) & mask }
            next[i] = UInt32(id + 1)
        }
        slots = next
    }

    /// A fast 64-bit hash of short byte strings (8 bytes at a time, multiply-xorshift mixing).
    @inline(__always)
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(bytes.count)
        var i = 0
        let n = bytes.count
        while i + 8 <= n {
            let w = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            h = (h ^ w) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 29
            i &+= 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < n {
            tail |= UInt64(bytes[i]) << shift
            shift &+= 8
            i &+= 1
        }
        h = (h ^ tail) &* 0x94D0_49BB_1331_11EB
        h ^= h >> 31
        h = h &* 0xBF58_476D_1CE4_E5B9
        return h ^ (h >> 32)
    }
}
