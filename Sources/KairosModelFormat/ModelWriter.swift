import KairosKernels
internal import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// Serializes ``ModelContents`` into the model file format and publishes it atomically.
public enum ModelWriter {
    /// One section before layout: its table entry (offset and checksum filled in later) and stored bytes.
    struct PendingSection {
        var entry: SectionEntry
        var bytes: [UInt8]
    }

    /// Kinds worth compressing: ids, text and sparse structures. Dense float rows stay raw so they can be used in place.
    static let compressedKinds: Set<SectionKind> = [
        .metadata, .itemIds, .userIds, .categoryNames, .brandNames, .itemAttributes, .userHistory, .userActivity,
    ]

    /// The complete file bytes for `contents`.
    /// - Parameter compress: LZ4-compress the sections that benefit (turn off to inspect raw layouts).
    public static func encode(_ contents: ModelContents, compress: Bool = true) throws(ModelFormatError) -> [UInt8] {
        var sections = try buildSections(contents)
        if compress {
            for i in sections.indices where compressedKinds.contains(sections[i].entry.kind!) {
                if let packed = sections[i].bytes.withUnsafeBytes({ LZ4Codec.compress($0) }) {
                    sections[i].entry.codecRaw = SectionCodec.lz4.rawValue
                    sections[i].bytes = packed
                }
            }
        }
        return layOut(sections, contents: contents)
    }

    /// Encodes `contents` and writes it to `path` atomically (temp file in the same folder, fsync, rename, fsync folder).
    public static func write(_ contents: ModelContents, to path: String, compress: Bool = true) throws(ModelFormatError) {
        let bytes = try encode(contents, compress: compress)
        try AtomicFile.write(bytes, to: path)
    }

    /// Copies the file at `source` to `path` atomically (temp file in the destination folder, fsync, rename, fsync
    /// the folder), so a watching server never sees a partial file.
    public static func publish(copyOf source: String, to path: String) throws(ModelFormatError) {
        let mapping = try FileMapping.copy(source)
        try AtomicFile.write(Array(mapping.bytes), to: path)
    }

    static func layOut(_ sections: [PendingSection], contents: ModelContents) -> [UInt8] {
        let tableOffset = FileHeader.size
        var offset = (tableOffset + sections.count * SectionEntry.size).alignedTo64
        var entries: [SectionEntry] = []
        for s in sections {
            var e = s.entry
            e.offset = offset
            e.storedSize = s.bytes.count
            if e.codec == SectionCodec.none { e.rawSize = s.bytes.count }
            e.checksum = s.bytes.withUnsafeBytes { Checksum.xxh64($0) }
            entries.append(e)
            offset = (offset + s.bytes.count).alignedTo64
        }
        let fileSize = offset
        var table = ByteWriter(capacity: entries.count * SectionEntry.size)
        for e in entries { e.encode(into: &table) }
        let header = FileHeader(
            majorVersion: FileHeader.currentMajorVersion,
            minorVersion: contents.firstSeen != nil ? FileHeader.currentMinorVersion : 0,  // 1.1 added only kind 16
            sectionCount: entries.count,
            sectionTableOffset: tableOffset,
            fileSize: fileSize,
            createdAt: contents.createdAt,
            modelVersion: contents.version,
            sectionTableChecksum: table.bytes.withUnsafeBytes { Checksum.xxh64($0) },
            modelName: contents.name
        )
        var out = [UInt8](repeating: 0, count: fileSize)
        out.replaceSubrange(0..<FileHeader.size, with: header.encoded())
        out.replaceSubrange(tableOffset..<(tableOffset + table.bytes.count), with: table.bytes)
        for (e, s) in zip(entries, sections) {
            out.replaceSubrange(e.offset..<(e.offset + s.bytes.count), with: s.bytes)
        }
        return out
    }

    static func entry(
        _ kind: SectionKind,
        encoding: SectionEncoding = .bytes,
        rawSize: Int,
        rows: Int = 0,
        cols: Int = 0,
        stride: Int = 0,
        param: Int64 = 0
    ) -> SectionEntry {
        SectionEntry(
            kindRaw: kind.rawValue,
            encodingRaw: encoding.rawValue,
            codecRaw: SectionCodec.none.rawValue,
            offset: 0,
            storedSize: rawSize,
            rawSize: rawSize,
            rows: rows,
            cols: cols,
            rowStride: stride,
            param: param,
            checksum: 0
        )
    }

    static func buildSections(_ c: ModelContents) throws(ModelFormatError) -> [PendingSection] {
        guard FileHeader.isValidModelName(c.name) else {
            throw ModelFormatError(.invalidInput, "model name \"\(c.name)\" is not 1-48 bytes of [A-Za-z0-9._-]")
        }
        let items = c.itemIds.count
        let users = c.userIds.count
        var out: [PendingSection] = []
        func add(_ e: SectionEntry, _ bytes: [UInt8]) { out.append(PendingSection(entry: e, bytes: bytes)) }
        func check(_ ok: Bool, _ message: @autoclosure () -> String) throws(ModelFormatError) {
            if !ok { throw ModelFormatError(.invalidInput, message()) }
        }

        if let problem = c.metadata.servingProblem(dimensions: c.itemFactors.cols) { throw ModelFormatError(.invalidInput, "metadata: \(problem)") }
        let json: [UInt8]
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            json = Array(try encoder.encode(c.metadata))
        } catch {
            throw ModelFormatError(.invalidInput, "metadata does not encode as JSON: \(error)")
        }
        add(entry(.metadata, rawSize: json.count), json)

        let itemTable = try StringTable.encode(c.itemIds)
        add(entry(.itemIds, rawSize: itemTable.count, rows: items), itemTable)
        let itemIndex = try IdIndex.encode(c.itemIds)
        add(entry(.itemIdIndex, rawSize: itemIndex.bytes.count, rows: itemIndex.capacity), itemIndex.bytes)

        try check(c.itemFactors.rows == items, "item factors have \(c.itemFactors.rows) rows for \(items) item ids")
        let itemMatrix = try encodeMatrix(c.itemFactors, kind: .itemFactors)
        add(itemMatrix.entry, itemMatrix.bytes)

        var userMatrixBytes: [UInt8]?
        if let uf = c.userFactors {
            try check(uf.rows == users, "user factors have \(uf.rows) rows for \(users) user ids")
            try check(uf.cols == c.itemFactors.cols, "user and item factors differ in dimension")
            let userTable = try StringTable.encode(c.userIds)
            add(entry(.userIds, rawSize: userTable.count, rows: users), userTable)
            let userIndex = try IdIndex.encode(c.userIds)
            add(entry(.userIdIndex, rawSize: userIndex.bytes.count, rows: userIndex.capacity), userIndex.bytes)
            let m = try encodeMatrix(uf, kind: .userFactors)
            add(m.entry, m.bytes)
            userMatrixBytes = m.bytes
        } else {
            try check(users == 0, "user ids given without user factors")
        }

        if let b = c.itemBiases {
            try check(b.count == items && b.allSatisfy({ abs($0) <= MappedModel.maxFactorMagnitude }), "item biases must be \(items) values within ±2^40")
            var w = ByteWriter(capacity: items * 4)
            for v in b { w.append(v) }
            add(entry(.itemBiases, encoding: .float32, rawSize: w.bytes.count, rows: items, cols: 1), w.bytes)
        }
        if let p = c.popularity {
            try check(p.allTime.count == items && p.decayed.count == items, "popularity needs \(items) values per kind")
            try check(
                p.allTime.allSatisfy { $0.isFinite && $0 >= 0 } && p.decayed.allSatisfy { $0.isFinite && $0 >= 0 },
                "popularity must be finite and non-negative"
            )
            var w = ByteWriter(capacity: items * 8)
            for i in 0..<items {
                w.append(p.allTime[i])
                w.append(p.decayed[i])
            }
            add(
                entry(.itemPopularity, encoding: .float32, rawSize: w.bytes.count, rows: items, cols: 2, param: p.referenceTime),
                w.bytes
            )
        }
        if let f = c.firstSeen {
            try check(f.times.count == items, "first-seen times need \(items) values")
            var w = ByteWriter(capacity: items * 8)
            for t in f.times { w.append(t) }
            add(entry(.itemFirstSeen, rawSize: w.bytes.count, rows: items, cols: 1, param: f.referenceTime), w.bytes)
        }
        if let a = c.attributes {
            try check(
                a.category.count == items && a.brand.count == items && a.price.count == items,
                "attributes need \(items) values per column"
            )
            try check(
                a.category.allSatisfy { $0 == ItemAttributes.none || Int($0) < a.categoryNames.count }
                    && a.brand.allSatisfy { $0 == ItemAttributes.none || Int($0) < a.brandNames.count },
                "a category or brand id has no name"
            )
            var w = ByteWriter(capacity: items * 12)
            for i in 0..<items {
                w.append(a.category[i])
                w.append(a.brand[i])
                w.append(a.price[i])
            }
            add(entry(.itemAttributes, rawSize: w.bytes.count, rows: items, cols: 3), w.bytes)
            let cn = try StringTable.encode(a.categoryNames)
            add(entry(.categoryNames, rawSize: cn.count, rows: a.categoryNames.count), cn)
            let bn = try StringTable.encode(a.brandNames)
            add(entry(.brandNames, rawSize: bn.count, rows: a.brandNames.count), bn)
        }
        if let h = c.history {
            try check(h.indptr.count == users + 1 && h.indptr.first == 0, "history needs \(users + 1) offsets starting at 0")
            try check(zip(h.indptr, h.indptr.dropFirst()).allSatisfy { $0 <= $1 }, "history offsets must not decrease")
            let nnz = Int(h.indptr.last!)
            try check(h.items.count == nnz && h.weights.count == nnz, "history offsets end at \(nnz), arrays differ")
            try check(h.items.allSatisfy { Int($0) < items }, "history names an item row out of range")
            try check(
                h.weights.allSatisfy { $0.isFinite && $0 >= 0 }, "history weights must be finite and non-negative"
            )
            var w = ByteWriter(capacity: (users + 1) * 8 + nnz * 8)
            for v in h.indptr { w.append(v) }
            for v in h.items { w.append(v) }
            for v in h.weights { w.append(v) }
            add(entry(.userHistory, rawSize: w.bytes.count, rows: users, param: h.referenceTime), w.bytes)
        }
        if let a = c.activity {
            let n = ActivityProfiles.buckets
            try check(a.values.count == (users + 1) * n, "activity needs (users + 1) x 168 values")
            add(
                entry(.userActivity, encoding: .unorm8, rawSize: a.values.count, rows: users + 1, cols: n, stride: n),
                a.values
            )
        }
        if c.goldenCount > 0, let uf = c.userFactors, let userBytes = userMatrixBytes, users > 0, items > 0 {
            let g = golden(c, users: uf, userBytes: userBytes, itemBytes: itemMatrix.bytes)
            var w = ByteWriter(capacity: g.count * 16)
            for t in g {
                w.append(t.user)
                w.append(t.item)
                w.append(t.score)
                w.append(t.tolerance)
            }
            add(entry(.golden, rawSize: w.bytes.count, rows: g.count, cols: 4), w.bytes)
        }
        return out
    }

    /// Encodes a factor matrix: rows at a 64-byte stride, then (int8 only) per-row float32 scales at the next
    /// 64-byte boundary.
    static func encodeMatrix(_ m: FactorMatrix, kind: SectionKind) throws(ModelFormatError) -> (entry: SectionEntry, bytes: [UInt8]) {
        guard m.cols > 0, m.cols % 4 == 0, m.cols <= MatrixView.maxCols else {
            throw ModelFormatError(.invalidInput, "\(kind): dimension \(m.cols) is not a multiple of 4 in 4...1024")
        }
        guard m.values.count == m.rows * m.cols else {
            throw ModelFormatError(.invalidInput, "\(kind): \(m.values.count) values for \(m.rows) x \(m.cols)")
        }
        guard m.values.allSatisfy({ abs($0) <= MappedModel.maxFactorMagnitude }) else {
            throw ModelFormatError(.invalidInput, "\(kind): a value is NaN, infinite or beyond ±2^40 (readers refuse it)")
        }
        // 65520 and above round to infinity in float16, which readers refuse: say so here, not at load.
        guard m.encoding != .float16 || m.values.allSatisfy({ abs($0) < 65520 }) else {
            throw ModelFormatError(.invalidInput, "\(kind): a value is beyond the float16 range (65504); use float32")
        }
        let stride = m.encoding.alignedStride(cols: m.cols)
        let rowBytes = m.rows * stride
        let total = m.encoding == .int8 ? rowBytes.alignedTo64 + m.rows * 4 : rowBytes
        var bytes = [UInt8](repeating: 0, count: total)
        var scales = [Float](repeating: 0, count: m.encoding == .int8 ? m.rows : 0)
        m.values.withUnsafeBufferPointer { v in
            bytes.withUnsafeMutableBytes { b in
                scales.withUnsafeMutableBufferPointer { s in
                    RowEncoder.encode(v, rows: m.rows, cols: m.cols, as: m.encoding, into: UnsafeMutableRawBufferPointer(rebasing: b[0..<rowBytes]), scales: s)
                }
            }
        }
        if m.encoding == .int8 {
            var w = ByteWriter(capacity: m.rows * 4)
            for s in scales { w.append(s) }
            bytes.replaceSubrange(rowBytes.alignedTo64..<total, with: w.bytes)
        }
        let e = entry(
            kind,
            encoding: SectionEncoding(rawValue: m.encoding.rawValue)!,
            rawSize: total,
            rows: m.rows,
            cols: m.cols,
            stride: stride
        )
        return (e, bytes)
    }

    /// Derives golden triples: the trainer's float32 score for a deterministic spread of (user, item) pairs, with a
    /// tolerance covering what the stored encoding loses.
    static func golden(_ c: ModelContents, users uf: FactorMatrix, userBytes: [UInt8], itemBytes: [UInt8]) -> [GoldenTriple] {
        let itemF = c.itemFactors
        let dims = itemF.cols
        let count = min(c.goldenCount, 1024)
        return userBytes.withUnsafeBytes { ub in
            itemBytes.withUnsafeBytes { ib in
                let userView = matrixView(ub, rows: uf.rows, cols: dims, encoding: uf.encoding)
                let itemView = matrixView(ib, rows: itemF.rows, cols: dims, encoding: itemF.encoding)
                return (0..<count).map { g in
                    let u = (g &* 7919) % uf.rows
                    let i = (g &* 104_729 &+ 13) % itemF.rows
                    let storedU = RowEncoder.decodeRow(u, of: userView)
                    let storedI = RowEncoder.decodeRow(i, of: itemView)
                    var exact = 0.0
                    var stored = 0.0
                    var magnitude = 0.0
                    for d in 0..<dims {
                        exact += Double(uf.values[u * dims + d]) * Double(itemF.values[i * dims + d])
                        stored += Double(storedU[d]) * Double(storedI[d])
                        magnitude += abs(Double(storedU[d]) * Double(storedI[d]))
                    }
                    let bias = Double(c.itemBiases?[i] ?? 0)
                    let tolerance = abs(exact - stored) + 1e-4 * magnitude + 1e-6
                    return GoldenTriple(user: UInt32(u), item: UInt32(i), score: Float(exact + bias), tolerance: Float(tolerance))
                }
            }
        }
    }

    /// A view over encoded matrix bytes as laid out by ``encodeMatrix(_:kind:)``.
    static func matrixView(_ bytes: UnsafeRawBufferPointer, rows: Int, cols: Int, encoding: RowEncoding) -> MatrixView {
        let stride = encoding.alignedStride(cols: cols)
        let scales = encoding == .int8
            ? (bytes.baseAddress! + (rows * stride).alignedTo64).assumingMemoryBound(to: Float.self) : nil
        return MatrixView(base: bytes.baseAddress!, rows: rows, cols: cols, rowStride: stride, encoding: encoding, scales: scales)
    }
}
