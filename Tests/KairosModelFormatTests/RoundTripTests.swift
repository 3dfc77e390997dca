import CKairosKernels
import FoundationEssentials
import KairosKernels
@testable import KairosModelFormat
import Testing

@Suite struct RoundTripTests {
    /// Everything written comes back from the mapped file, for every row encoding and with and without LZ4.
    @Test(arguments: RowEncoding.allCases, [true, false])
    func writeThenLoadGivesBackTheContents(encoding: RowEncoding, compress: Bool) throws {
        let folder = TempFolder()
        let c = smallContents(encoding: encoding)
        let path = "\(folder.path)/m.kmodel"
        try ModelWriter.write(c, to: path, compress: compress)
        let m = try MappedModel(path: path)

        #expect(m.header.modelName == "test-model")
        #expect(m.header.modelVersion == 7)
        #expect(m.header.createdAt == c.createdAt)
        #expect(m.metadata == c.metadata)
        #expect(m.itemCount == 300 && m.userCount == 40 && m.dimensions == 12)
        #expect(m.itemFactors.encoding == encoding)
        #expect(m.sections.contains { $0.codec == .lz4 } == compress)
        for (i, id) in c.itemIds.enumerated() {
            #expect(m.items.row(of: id) == i)
            #expect(m.items.table[i] == id)
        }
        for (u, id) in c.userIds.enumerated() { #expect(m.users?.row(of: id) == u) }
        #expect(m.items.row(of: "no-such-item") == nil)
        #expect(m.items.row(of: "") == nil)
        // 300 items -> 512 entries, 40 users -> 64 (the smallest powers of two above 1.5x), counted as resident.
        #expect(m.items.lookupBytes == 512 * 32 && m.users?.lookupBytes == 64 * 32)
        let fileBytes = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        #expect(m.residentBytes >= fileBytes + (512 + 64) * 32)
        if !compress { #expect(m.residentBytes == fileBytes + (512 + 64) * 32) }

        // Factors: exact for float32; within the encoding's error otherwise.
        let bound: Float = switch encoding {
        case .float32: 0
        case .float16: 1e-3
        case .int8: 0.01
        }
        for r in [0, 1, 150, 299] {
            let row = RowEncoder.decodeRow(r, of: m.itemFactors)
            for d in 0..<12 {
                #expect(abs(row[d] - c.itemFactors.values[r * 12 + d]) <= bound)
            }
        }
        #expect(Array(m.itemBiases!) == c.itemBiases!)
        let pop = try #require(m.popularity)
        #expect(pop.referenceTime == c.popularity!.referenceTime)
        for i in [0, 17, 299] {
            #expect(pop.allTime(i) == c.popularity!.allTime[i])
            #expect(pop.decayed(i) == c.popularity!.decayed[i])
        }
        let attrs = try #require(m.attributes)
        for i in 0..<300 {
            #expect(attrs.category(i) == c.attributes!.category[i])
            let brand = c.attributes!.brand[i]
            #expect(attrs.brand(i) == (brand == ItemAttributes.none ? nil : brand))
            let price = c.attributes!.price[i]
            #expect(attrs.price(i) == (price.isNaN ? nil : price))
        }
        #expect(m.categoryNames?[3] == "category-3")
        let h = try #require(m.history)
        let hc = c.history!
        for u in 0..<40 {
            let (items, weights) = h.entries(ofUser: u)
            let range = Int(hc.indptr[u])..<Int(hc.indptr[u + 1])
            #expect(Array(items) == Array(hc.items[range]))
            #expect(Array(weights) == Array(hc.weights[range]))
        }
        let a = try #require(m.activity)
        #expect(Array(a.profile(ofUser: 5)) == Array(c.activity!.values[(5 * 168)..<(6 * 168)]))
        #expect(Array(a.population) == Array(c.activity!.values[(40 * 168)...]))
        #expect(m.golden.count == 16)
    }

    /// Attributes that name no brand (an items file with only a category column, like MovieLens') or no category
    /// write empty name tables, and the file loads: an empty table once crashed the loader (`1...0`).
    @Test func attributesWithEmptyNameTablesLoad() throws {
        let folder = TempFolder()
        for (noCategories, noBrands) in [(false, true), (true, false), (true, true)] {
            var c = smallContents(encoding: .float32)
            var a = c.attributes!
            if noBrands {
                a.brand = a.brand.map { _ in ItemAttributes.none }
                a.brandNames = []
            }
            if noCategories {
                a.category = a.category.map { _ in ItemAttributes.none }
                a.categoryNames = []
            }
            c.attributes = a
            let path = "\(folder.path)/m.kmodel"
            try ModelWriter.write(c, to: path)
            let m = try MappedModel(path: path)
            #expect(m.brandNames?.count == a.brandNames.count && m.categoryNames?.count == a.categoryNames.count)
            let attrs = try #require(m.attributes)
            #expect(attrs.brand(7) == (noBrands ? nil : a.brand[7]))
            #expect(attrs.category(7) == (noCategories ? nil : a.category[7]))
        }
    }

    /// The file's dense rows are 64-byte aligned in the mapping, so kernels can use them in place.
    @Test func matricesAreAlignedAndUncompressed() throws {
        let folder = TempFolder()
        let path = "\(folder.path)/m.kmodel"
        try ModelWriter.write(smallContents(encoding: .int8), to: path)
        let m = try MappedModel(path: path)
        for kind in [SectionKind.itemFactors, .userFactors] {
            let e = try #require(m.sections.first { $0.kind == kind })
            #expect(e.offset % 64 == 0 && e.rowStride % 64 == 0 && e.codec == SectionCodec.none)
        }
        #expect(UInt(bitPattern: m.itemFactors.base) % 64 == 0)
        #expect(UInt(bitPattern: m.itemFactors.scales!) % 64 == 0)
    }

    /// The same contents always produce the same bytes (reproducible builds of a model).
    @Test func encodingIsDeterministic() throws {
        let a = try ModelWriter.encode(smallContents())
        let b = try ModelWriter.encode(smallContents())
        #expect(a == b)
    }

    /// Publishing leaves only the final file in the folder, and replaces an existing file whole.
    @Test func atomicWriteLeavesNoTempFilesAndReplaces() throws {
        let folder = TempFolder()
        let path = "\(folder.path)/m.kmodel"
        try ModelWriter.write(smallContents(), to: path)
        var c = smallContents()
        c.version = 8
        try ModelWriter.write(c, to: path)
        #expect(folder.files() == ["m.kmodel"])
        #expect(try MappedModel(path: path).header.modelVersion == 8)
    }

    /// An old mapping keeps working after its file name is replaced (rename never touches the old inode).
    @Test func oldMappingSurvivesReplacement() throws {
        let folder = TempFolder()
        let path = "\(folder.path)/m.kmodel"
        try ModelWriter.write(smallContents(), to: path)
        let old = try MappedModel(path: path)
        var c = smallContents()
        c.version = 9
        try ModelWriter.write(c, to: path)
        #expect(old.items.row(of: "item-5") == 5)
        #expect(old.header.modelVersion == 7)
        try old.verifyGolden()
    }

    /// Writing into a folder that does not exist fails with an I/O error, not a crash.
    @Test func writeToMissingFolderFails() {
        #expect(throws: ModelFormatError.self) {
            try ModelWriter.write(smallContents(), to: "/nonexistent-kairos-folder/m.kmodel")
        }
    }

    /// The writer refuses contents that would make an invalid or misleading file.
    @Test func writerRejectsInvalidContents() {
        var nan = smallContents()
        nan.itemFactors.values[3] = .nan
        var dims = smallContents()
        dims.itemFactors = FactorMatrix(rows: 300, cols: 6, values: [Float](repeating: 0, count: 1800))
        var name = smallContents()
        name.name = "../etc/passwd"
        var dup = smallContents()
        dup.itemIds[1] = dup.itemIds[0]
        var rows = smallContents()
        rows.itemIds.removeLast()
        var popularity = smallContents()
        popularity.popularity!.decayed[5] = .infinity
        var negative = smallContents()
        negative.popularity!.allTime[0] = -1
        var history = smallContents()
        history.history!.weights[2] = .nan
        var half = smallContents(encoding: .float16)
        half.userFactors!.values[7] = 70_000  // rounds to infinity in float16
        let cases = [
            ("nan", nan), ("dims", dims), ("name", name), ("duplicate", dup), ("rows", rows), ("popularity", popularity),
            ("negative popularity", negative), ("history weight", history), ("beyond float16", half),
        ]
        for (label, c) in cases {
            do {
                _ = try ModelWriter.encode(c)
                Issue.record("\(label): accepted")
            } catch {
                #expect(error.code == .invalidInput, "\(label)")
            }
        }
    }

    /// Many ids with colliding home slots all resolve (linear probing), and lookups of absent ids terminate.
    @Test func idIndexResolvesEveryIdAmongMany() throws {
        let ids = (0..<20_000).map { "sku:\($0 &* 7_919)" }
        let table = try StringTable.encode(ids)
        let (slots, capacity) = try IdIndex.encode(ids)
        try table.withUnsafeBytes { t in
            try slots.withUnsafeBytes { s in
                let st = try StringTable(bytes: t, count: ids.count, section: "ids")
                let index = try IdIndex(bytes: s, capacity: capacity, table: st, section: "index")
                for (i, id) in ids.enumerated() { #expect(index.row(of: id) == i) }
                for n in 0..<1000 { #expect(index.row(of: "absent-\(n)") == nil) }
                // The batched lookup agrees with the single one, present and absent ids mixed.
                let mixed = (0..<3000).map { $0 % 3 == 0 ? "absent-\($0)" : ids[($0 &* 13) % ids.count] }
                var rows = [Int32](repeating: 7, count: mixed.count)
                packedIds(mixed).withUnsafeBytes { p in
                    rows.withUnsafeMutableBufferPointer { index.rows(ofPacked: p, count: mixed.count, into: $0) }
                }
                #expect(rows == mixed.map { Int32(index.row(of: $0) ?? -1) })
            }
        }
    }

    /// Every byte of an id takes part in the comparison, at every length from 1 to 40 (ids up to 27 bytes compare as
    /// their entry's key words, longer ones against the string table): a lookup of `wanted` whose probe meets a
    /// sibling differing in one byte must not take it.
    @Test func idComparisonCoversEveryByteOfEveryLength() throws {
        for length in 1...40 {
            for position in 0..<length {
                // A filler whose id and sibling share their home entry in a 2-entry table, so the probe meets it.
                func home(_ s: String) -> UInt64 { Array(s.utf8).withUnsafeBytes { IdIndex.entryHash($0) } & 1 }
                let pairs = ["x", "a", "b", "c"].flatMap { fill in ["y", "z", "w", "v"].map { (fill, $0) } }
                let (wanted, sibling) = try #require(pairs.lazy.map { fill, other -> (String, String) in
                    var chars = Array(String(repeating: fill, count: length))
                    chars[position] = Character(other)
                    return (String(repeating: fill, count: length), String(chars))
                }.first { home($0.0) == home($0.1) })
                let encoded = try StringTable.encode([sibling])
                try encoded.withUnsafeBytes { t in
                    let index = try IdIndex(table: try StringTable(bytes: t, count: 1, section: "ids"))
                    #expect(index.entryCount == 2)
                    #expect(index.row(of: wanted) == nil, "length \(length), byte \(position)")
                    #expect(index.row(of: sibling) == 0, "length \(length), byte \(position)")
                    var rows: [Int32] = [7, 7]
                    packedIds([wanted, sibling]).withUnsafeBytes { p in rows.withUnsafeMutableBufferPointer { index.rows(ofPacked: p, count: 2, into: $0) } }
                    #expect(rows == [-1, 0], "length \(length), byte \(position)")
                }
            }
        }
    }

    /// Ids longer than an entry holds (27 bytes) are confirmed against the string table; ids that share a long
    /// prefix, and an id that occurs twice (the lower row wins), all resolve.
    @Test func longAndDuplicateIdsResolve() throws {
        let prefix = String(repeating: "p", count: 40)
        let ids = (0..<3000).map { $0 % 2 == 0 ? "\(prefix)-\($0)" : "\($0)-\(prefix)" } + ["\(prefix)-2", "dup", "dup"]
        let encoded = try StringTable.encode(ids)
        try encoded.withUnsafeBytes { t in
            let index = try IdIndex(table: try StringTable(bytes: t, count: ids.count, section: "ids"))
            for i in 0..<3000 { #expect(index.row(of: ids[i]) == i) }
            #expect(index.row(of: "\(prefix)-2") == 2)
            #expect(index.row(of: "dup") == 3001)
            #expect(index.row(of: "\(prefix)-3") == nil)
            #expect(index.row(of: prefix) == nil)
            let asked = ["\(prefix)-10", "\(prefix)-11", "11-\(prefix)", "dup", "\(prefix)-2"]
            var rows = [Int32](repeating: 7, count: asked.count)
            packedIds(asked).withUnsafeBytes { p in rows.withUnsafeMutableBufferPointer { index.rows(ofPacked: p, count: asked.count, into: $0) } }
            #expect(rows == [10, -1, 11, 3001, 2])
        }
    }

    /// Packed lookups (ids as they arrive on the wire) agree with single lookups; a truncated or malformed tail
    /// makes the ids from there on unknown, never a read past the buffer.
    @Test func packedLookupsAndMalformedTails() throws {
        let ids = (0..<500).map { "item-\($0)" } + ["", "é-long-id-with-more-than-sixteen-bytes"]
        let table = try StringTable.encode(ids)
        let (slots, capacity) = try IdIndex.encode(ids)
        try table.withUnsafeBytes { t in
            try slots.withUnsafeBytes { s in
                let index = try IdIndex(bytes: s, capacity: capacity, table: try StringTable(bytes: t, count: ids.count, section: "ids"), section: "index")
                let asked = ["item-3", "nope", "", "é-long-id-with-more-than-sixteen-bytes", "item-499", "item-3"]
                let packed = packedIds(asked)
                var rows = [Int32](repeating: 7, count: asked.count)
                packed.withUnsafeBytes { p in rows.withUnsafeMutableBufferPointer { index.rows(ofPacked: p, count: asked.count, into: $0) } }
                #expect(rows == [3, -1, 500, 501, 499, 3])
                // Cut inside the 5th entry: the first four still resolve, the rest are unknown.
                let cut = Array(packed[0..<(packed.count - 10)])
                rows = [Int32](repeating: 7, count: asked.count)
                cut.withUnsafeBytes { p in rows.withUnsafeMutableBufferPointer { index.rows(ofPacked: p, count: asked.count, into: $0) } }
                #expect(rows == [3, -1, 500, 501, -1, -1])
                // A length far past the end.
                let hostile: [UInt8] = [0xFF, 0xFF, 1, 2, 3]
                rows = [7, 7]
                hostile.withUnsafeBytes { p in rows.withUnsafeMutableBufferPointer { index.rows(ofPacked: p, count: 2, into: $0) } }
                #expect(rows == [-1, -1])
            }
        }
    }

    /// The in-memory table's hash spreads ids shaped like real catalogues (prefix + counter, bare numbers, UUIDs,
    /// long shared prefixes) like random placement would: linear probing at the table's load factor averages ~1.3
    /// probes per id. A hash that ignored some bytes would pile such ids onto few home entries.
    @Test func entryHashSpreadsCatalogueShapedIds() {
        let n = 50_000
        let shapes: [(String, (Int) -> String)] = [
            ("prefix", { "item-\($0)" }),
            ("number", { "\($0)" }),
            ("uuid", { i in
                let h = String(UInt64(i) &* 0x9E37_79B9_7F4A_7C15, radix: 16)
                let p = String(repeating: "0", count: 16 - h.count) + h
                let tail = String(i, radix: 16)
                return "\(p.prefix(8))-\(p.dropFirst(8).prefix(4))-4\(p.dropFirst(12).prefix(3))-8000-\(String(repeating: "0", count: 12 - tail.count))\(tail)"
            }),
            ("long prefix", { "catalogue/2026/electronics/sku-\($0)" }),
        ]
        for (shape, id) in shapes {
            let capacity = Int(ckk_id_index_capacity(UInt64(n)))
            var used = [Bool](repeating: false, count: capacity)
            var probes = 0
            var longest = 0
            for i in 0..<n {
                var slot = Int(Array(id(i).utf8).withUnsafeBytes { IdIndex.entryHash($0) } & UInt64(capacity - 1))
                var p = 1
                while used[slot] {
                    slot = (slot + 1) & (capacity - 1)
                    p += 1
                }
                used[slot] = true
                probes += p
                longest = max(longest, p)
            }
            let mean = Double(probes) / Double(n)
            #expect(mean < 1.5, "\(shape): \(mean) probes per id")
            #expect(longest < 40, "\(shape): longest probe \(longest)")
        }
    }

    /// Ids of every length up to 200 bytes (the hash reads 16-byte and 48-byte blocks past 16 and 48) are all found,
    /// and an id one byte longer or shorter than each is not.
    @Test func idsOfEveryLengthAreFound() throws {
        func id(_ n: Int) -> String {
            let bytes: [UInt8] = (0..<n).map { i in UInt8(97 + (i * 7 + n) % 26) }
            return String(decoding: bytes, as: UTF8.self)
        }
        let ids = (1...200).map(id)
        let encoded = try StringTable.encode(ids)
        try encoded.withUnsafeBytes { t in
            let index = try IdIndex(table: try StringTable(bytes: t, count: ids.count, section: "ids"))
            for (row, id) in ids.enumerated() {
                #expect(index.row(of: id) == row, "length \(id.count)")
                #expect(index.row(of: id + "!") == nil && index.row(of: String(id.dropLast()) + "!") == nil)
            }
            var rows = [Int32](repeating: 7, count: ids.count)
            packedIds(ids).withUnsafeBytes { p in rows.withUnsafeMutableBufferPointer { index.rows(ofPacked: p, count: ids.count, into: $0) } }
            #expect(rows == (0..<Int32(ids.count)).map { $0 })
        }
    }

    /// Two long ids whose keys are equal (same hash tag) and whose probe meets: the lookup confirms against the
    /// string table, so neither is taken for the other. The pair is found by a birthday search over 32-bit tags.
    @Test func longIdsWithEqualKeysAreToldApart() throws {
        let stem = String(repeating: "L", count: 30)
        var seen: [UInt64: Int] = [:]
        var pair: (String, String)?
        for n in 0..<600_000 where pair == nil {
            let h = Array("\(stem)\(n)".utf8).withUnsafeBytes { IdIndex.entryHash($0) }
            let key = (h >> 32) << 1 | (h & 1)  // the tag and the home entry in a 2-entry table
            if let m = seen.updateValue(n, forKey: key) { pair = ("\(stem)\(m)", "\(stem)\(n)") }
        }
        let (a, b) = try #require(pair)
        let encoded = try StringTable.encode([a])
        try encoded.withUnsafeBytes { t in
            let index = try IdIndex(table: try StringTable(bytes: t, count: 1, section: "ids"))
            #expect(index.row(of: a) == 0)
            #expect(index.row(of: b) == nil)
            var rows: [Int32] = [7, 7]
            packedIds([b, a]).withUnsafeBytes { p in rows.withUnsafeMutableBufferPointer { index.rows(ofPacked: p, count: 2, into: $0) } }
            #expect(rows == [-1, 0])
        }
    }

    /// The file's slot section is validated for shape only, never read for lookups: slots naming rows past the
    /// table, or a table with no empty slot at all, change no answer.
    @Test func fileSlotContentsDoNotAffectLookups() throws {
        let ids = ["a", "b", "c"]
        let table = try StringTable.encode(ids)
        let capacity = 8
        let packed: [UInt8] = [1, 0, UInt8(ascii: "b"), 1, 0, UInt8(ascii: "z")]
        for slots in [[UInt32](repeating: 99, count: capacity), [UInt32](repeating: 1, count: capacity)] {
            let bytes = slots.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
            try table.withUnsafeBytes { t in
                try bytes.withUnsafeBytes { s in
                    let index = try IdIndex(bytes: s, capacity: capacity, table: try StringTable(bytes: t, count: ids.count, section: "ids"), section: "index")
                    var rows: [Int32] = [7, 7]
                    packed.withUnsafeBytes { p in rows.withUnsafeMutableBufferPointer { index.rows(ofPacked: p, count: 2, into: $0) } }
                    #expect(rows == [1, -1])
                    #expect(index.row(of: "c") == 2)
                }
            }
        }
    }

    /// The metadata JSON keeps its documented field names (readers in other languages depend on them).
    @Test func metadataJSONUsesDocumentedKeys() throws {
        let json = try JSONEncoder().encode(smallContents().metadata)
        let text = String(decoding: json, as: UTF8.self)
        for key in ["generator", "algorithm", "parameters", "decay", "form", "halfLifeSeconds", "dataSpan", "evaluation"] {
            #expect(text.contains("\"\(key)\""), "\(key)")
        }
    }
}

/// Ids in the packed layout `IdIndex.rows(ofPacked:count:into:)` reads: a little-endian u16 byte count, then the bytes.
func packedIds(_ ids: [String]) -> [UInt8] {
    ids.flatMap { [UInt8($0.utf8.count & 255), UInt8($0.utf8.count >> 8)] + Array($0.utf8) }
}
