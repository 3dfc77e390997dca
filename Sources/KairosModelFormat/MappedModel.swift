public import KairosKernels
internal import CKairosKernels
internal import FoundationEssentials

/// How to open a model file.
public struct LoadOptions: Sendable {
    /// Where the model's bytes live while it serves.
    public enum Storage: String, Sendable, CaseIterable {
        /// A read-only mmap of the file: shared with the page cache, nothing copied. Requires files that are never
        /// rewritten in place (publish by rename): truncating a mapped file kills its readers with SIGBUS.
        case mapped
        /// A private in-memory copy read at load: immune to in-place rewrites, costs one copy of the file.
        case copied
    }

    /// Where the bytes live.
    public var storage: Storage
    /// Prefault every page at open (`MAP_POPULATE`) so the first requests do not stall on page faults.
    public var prefault: Bool
    /// Re-score the golden triples with the serving kernels and reject the file on any mismatch.
    public var verifyGolden: Bool

    public init(storage: Storage = .mapped, prefault: Bool = true, verifyGolden: Bool = true) {
        self.storage = storage
        self.prefault = prefault
        self.verifyGolden = verifyGolden
    }
}

/// A verified model file, mapped read-only; dense sections are used in place, compressed ones were decompressed once.
///
/// Nothing in the file is trusted before it is checked: magic, version, header and table checksums, every offset and
/// length against the file size, every section checksum, every count against its section size, and the golden triples.
/// Only then does any view into the mapping exist. The mapping is released when the last reference goes away.
public final class MappedModel: Sendable {
    /// Path the model was loaded from.
    public let path: String
    /// The file header.
    public let header: FileHeader
    /// The section table, in file order.
    public let sections: [SectionEntry]
    /// Training metadata.
    public let metadata: ModelMetadata
    /// Item id -> row.
    public let items: IdIndex
    /// User id -> row (nil when the model has no user sections).
    public let users: IdIndex?
    /// Item factors.
    public let itemFactors: MatrixView
    /// User factors.
    public let userFactors: MatrixView?
    /// Item biases, one per item.
    nonisolated(unsafe) public let itemBiases: UnsafeBufferPointer<Float>?
    /// Item popularity.
    public let popularity: PopularityView?
    /// Item attributes.
    public let attributes: AttributesView?
    /// When each item was first seen (format 1.1; nil in older files).
    public let firstSeen: FirstSeenView?
    /// Category names (id = index).
    public let categoryNames: StringTable?
    /// Brand names (id = index).
    public let brandNames: StringTable?
    /// Per-user history.
    public let history: HistoryView?
    /// Per-user activity profiles.
    public let activity: ActivityView?
    /// Golden triples (already verified when ``LoadOptions/verifyGolden`` was set).
    public let golden: [GoldenTriple]
    private let mapping: FileMapping
    private let buffers: [AlignedBuffer]

    /// Bytes the model holds in memory (the file, decompressed sections, and the id lookup tables built at load).
    public var residentBytes: Int {
        mapping.size + buffers.reduce(0) { $0 + $1.size } + items.lookupBytes + (users?.lookupBytes ?? 0)
    }

    /// Number of items.
    public var itemCount: Int { items.table.count }
    /// Number of users.
    public var userCount: Int { users?.table.count ?? 0 }
    /// Embedding dimension.
    public var dimensions: Int { itemFactors.cols }

    /// Maps and fully verifies the model file at `path`.
    public convenience init(path: String, options: LoadOptions = LoadOptions()) throws(ModelFormatError) {
        let mapping = switch options.storage {
        case .mapped: try FileMapping.map(path, populate: options.prefault)
        case .copied: try FileMapping.copy(path)
        }
        try self.init(mapping: mapping, path: path, options: options)
    }

    init(mapping: FileMapping, path: String, options: LoadOptions) throws(ModelFormatError) {
        let (header, entries) = try ModelFileLayout.parse(mapping.bytes)
        try ModelFileLayout.verifyChecksums(entries, in: mapping.bytes)
        var sections = ModelSections(mapping: mapping)
        for e in entries { try sections.add(e) }

        let metaEntry = try sections.require(.metadata)
        do {
            metadata = try JSONDecoder().decode(ModelMetadata.self, from: Data(sections.raw(metaEntry)))
        } catch {
            throw ModelFormatError(.badSection, section: "metadata", "not valid metadata JSON: \(error)")
        }
        let itemIdEntry = try sections.require(.itemIds)
        let itemTable = try StringTable(bytes: sections.raw(itemIdEntry), count: itemIdEntry.rows, section: "item_ids")
        let itemIndexEntry = try sections.require(.itemIdIndex)
        items = try IdIndex(bytes: sections.raw(itemIndexEntry), capacity: itemIndexEntry.rows, table: itemTable, section: "item_id_index")
        let itemCount = itemTable.count
        itemFactors = try sections.matrix(.itemFactors, rows: itemCount)
        if let problem = metadata.servingProblem(dimensions: itemFactors.cols) {
            throw ModelFormatError(.badSection, section: "metadata", problem)
        }

        if let userIdEntry = sections.entry(.userIds) {
            let userTable = try StringTable(bytes: sections.raw(userIdEntry), count: userIdEntry.rows, section: "user_ids")
            let userIndexEntry = try sections.require(.userIdIndex)
            users = try IdIndex(bytes: sections.raw(userIndexEntry), capacity: userIndexEntry.rows, table: userTable, section: "user_id_index")
            let uf = try sections.matrix(.userFactors, rows: userTable.count)
            guard uf.cols == itemFactors.cols else {
                throw ModelFormatError(.countMismatch, section: "user_factors", "\(uf.cols) columns, item factors have \(itemFactors.cols)")
            }
            userFactors = uf
        } else {
            for kind in [SectionKind.userIdIndex, .userFactors, .userHistory, .userActivity, .golden] where sections.entry(kind) != nil {
                throw ModelFormatError(.missingSection, section: "user_ids", "required by the \(kind) section")
            }
            users = nil
            userFactors = nil
        }
        let userCount = users?.table.count ?? 0

        if let e = sections.entry(.itemBiases) {
            let raw = try sections.fixedRecords(e, count: itemCount, recordSize: 4, cols: 1, encoding: .float32)
            let biases = UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: Float.self), count: itemCount)
            // Added to every score of its item, like popularity.
            if let i = biases.firstIndex(where: { !(abs($0) <= MappedModel.maxFactorMagnitude) }) {
                throw ModelFormatError(.badSection, section: "item_biases", "item \(i) has bias \(biases[i])")
            }
            itemBiases = biases
        } else {
            itemBiases = nil
        }
        if let e = sections.entry(.itemPopularity) {
            let raw = try sections.fixedRecords(e, count: itemCount, recordSize: 8, cols: 2, encoding: .float32)
            let pairs = raw.baseAddress!.assumingMemoryBound(to: Float.self)
            // Scores add popularity in: one NaN or infinity would poison every ranking it enters.
            if let i = Self.firstNonFiniteOrNegative(UnsafeBufferPointer(start: pairs, count: 2 * itemCount)) {
                throw ModelFormatError(
                    .badSection, section: "item_popularity", "item row \(i / 2) has popularity \(pairs[i])"
                )
            }
            popularity = PopularityView(count: itemCount, referenceTime: e.param, pairs: pairs)
        } else {
            popularity = nil
        }
        if let e = sections.entry(.itemFirstSeen) {
            let raw = try sections.fixedRecords(e, count: itemCount, recordSize: 8, cols: 1, encoding: .bytes)
            firstSeen = FirstSeenView(count: itemCount, referenceTime: e.param, times: raw.baseAddress!)
        } else {
            firstSeen = nil
        }
        if let e = sections.entry(.itemAttributes) {
            let raw = try sections.fixedRecords(e, count: itemCount, recordSize: 12, cols: 3, encoding: .bytes)
            let cn = try sections.require(.categoryNames)
            let bn = try sections.require(.brandNames)
            let cats = try StringTable(bytes: sections.raw(cn), count: cn.rows, section: "category_names")
            let brands = try StringTable(bytes: sections.raw(bn), count: bn.rows, section: "brand_names")
            let view = AttributesView(count: itemCount, records: raw.baseAddress!)
            for i in 0..<itemCount {
                if let c = view.category(i), Int(c) >= cats.count {
                    throw ModelFormatError(.badSection, section: "item_attributes", "item \(i) has category \(c) of \(cats.count)")
                }
                if let b = view.brand(i), Int(b) >= brands.count {
                    throw ModelFormatError(.badSection, section: "item_attributes", "item \(i) has brand \(b) of \(brands.count)")
                }
            }
            attributes = view
            categoryNames = cats
            brandNames = brands
        } else {
            attributes = nil
            categoryNames = nil
            brandNames = nil
        }
        history = try sections.entry(.userHistory).map { e throws(ModelFormatError) in
            try Self.historyView(e, raw: sections.raw(e), users: userCount, items: itemCount)
        }
        if let e = sections.entry(.userActivity) {
            let n = ActivityProfiles.buckets
            let raw = try sections.fixedRecords(e, count: userCount + 1, recordSize: n, cols: n, encoding: .unorm8)
            activity = ActivityView(users: userCount, values: raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
        } else {
            activity = nil
        }
        if let e = sections.entry(.golden) {
            let raw = try sections.fixedRecords(e, count: e.rows, recordSize: 16, cols: 4, encoding: .bytes)
            var r = ByteReader(raw)
            golden = (0..<e.rows).map { _ in
                GoldenTriple(user: r.read(), item: r.read(), score: Float(bitPattern: r.read()), tolerance: Float(bitPattern: r.read()))
            }
        } else {
            golden = []
        }

        self.path = path
        self.header = header
        self.sections = entries
        self.mapping = mapping
        self.buffers = sections.buffers
        if options.verifyGolden { try verifyGolden() }
    }

    /// Re-scores every golden triple with the serving kernels; throws on the first one outside its tolerance.
    public func verifyGolden(kernels: ScoringKernels = .best) throws(ModelFormatError) {
        guard !golden.isEmpty else { return }
        guard let userFactors else { throw ModelFormatError(.missingSection, section: "golden", "no user factors to re-score") }
        for (n, g) in golden.enumerated() {
            guard Int(g.user) < userFactors.rows, Int(g.item) < itemFactors.rows else {
                throw ModelFormatError(.badSection, section: "golden", "triple \(n) names a row out of range")
            }
            let query = RowEncoder.decodeRow(Int(g.user), of: userFactors)
            var score = query.withUnsafeBufferPointer { kernels.dot($0, row: Int(g.item), of: itemFactors) }
            score += itemBiases?[Int(g.item)] ?? 0
            guard abs(score - g.score) <= g.tolerance else {
                throw ModelFormatError(
                    .goldenMismatch,
                    section: "golden",
                    "triple \(n) (user row \(g.user), item row \(g.item)): served score \(score), trained \(g.score), tolerance \(g.tolerance)"
                )
            }
        }
    }

    /// The index of the first value that is NaN, infinite or negative, if any. The scan is branch-free so that it
    /// vectorizes (a 1M-item popularity section took 3 ms of a 70 ms load with a per-value early exit).
    static func firstNonFiniteOrNegative(_ values: UnsafeBufferPointer<Float>) -> Int? {
        var bad = 0
        for v in values { bad &+= (v >= 0 && v <= .greatestFiniteMagnitude) ? 0 : 1 }  // NaN fails both compares
        guard bad > 0 else { return nil }
        return values.firstIndex { !($0 >= 0 && $0 <= .greatestFiniteMagnitude) }
    }

    /// The largest magnitude a float32 factor value or an item bias may have. A dot product of rows within it
    /// stays finite at any dimension (1024 x 2^80 < 2^128); a trained model's values are near 1.
    public static let maxFactorMagnitude: Float = 0x1p40

    /// The first row of a float32 or float16 matrix holding a NaN, an infinity or a value beyond
    /// `maxFactorMagnitude`, if any (a vectorized C pass: a 1M x 64 float32 matrix is 256 MB read once more at load).
    static func firstOutOfRangeRow(_ m: MatrixView) -> Int? {
        guard m.encoding == .float32 || m.encoding == .float16 else { return nil }
        let row = ckk_first_row_beyond(m.base, m.rowStride, m.rows, Int32(m.cols), Int32(m.encoding.rawValue), maxFactorMagnitude)
        return row < 0 ? nil : Int(row)
    }

    static func historyView(_ e: SectionEntry, raw: UnsafeRawBufferPointer, users: Int, items: Int) throws(ModelFormatError) -> HistoryView {
        let name = "user_history"
        guard e.rows == users else { throw ModelFormatError(.countMismatch, section: name, "\(e.rows) rows for \(users) users") }
        let headerBytes = (users + 1) * 8
        guard raw.count >= headerBytes else { throw ModelFormatError(.countMismatch, section: name, "too short for \(users + 1) offsets") }
        let indptr = raw.baseAddress!.assumingMemoryBound(to: UInt64.self)
        guard indptr[0] == 0 else { throw ModelFormatError(.badSection, section: name, "first offset is not 0") }
        for u in 0..<users where indptr[u + 1] < indptr[u] {
            throw ModelFormatError(.badSection, section: name, "offsets decrease at user \(u)")
        }
        let nnz = indptr[users]
        guard nnz <= UInt64(raw.count), UInt64(headerBytes) + nnz * 8 == UInt64(raw.count) else {
            throw ModelFormatError(.countMismatch, section: name, "\(nnz) entries do not match the \(raw.count)-byte section")
        }
        let itemPtr = (raw.baseAddress! + headerBytes).assumingMemoryBound(to: UInt32.self)
        let weights = (raw.baseAddress! + headerBytes + Int(nnz) * 4).assumingMemoryBound(to: Float.self)
        for i in 0..<Int(nnz) {
            guard Int(itemPtr[i]) < items else {
                throw ModelFormatError(
                    .badSection, section: name, "entry \(i) names item row \(itemPtr[i]) of \(items)"
                )
            }
            // Buy-again adds the weight to scores: a NaN or infinity would poison the user's rankings.
            guard weights[i].isFinite && weights[i] >= 0 else {
                throw ModelFormatError(.badSection, section: name, "entry \(i) has weight \(weights[i])")
            }
        }
        return HistoryView(
            users: users,
            entryCount: Int(nnz),
            referenceTime: e.param,
            indptr: indptr,
            items: itemPtr,
            weights: weights
        )
    }
}

/// The verified sections of one file, with their usable (raw) bytes.
struct ModelSections {
    let mapping: FileMapping
    var byKind: [SectionKind: (SectionEntry, UnsafeRawBufferPointer)] = [:]
    var buffers: [AlignedBuffer] = []

    init(mapping: FileMapping) { self.mapping = mapping }

    /// Records a checksummed section, decompressing it if needed. Unknown kinds are skipped.
    mutating func add(_ e: SectionEntry) throws(ModelFormatError) {
        guard let kind = e.kind else { return }
        guard byKind[kind] == nil else { throw ModelFormatError(.badSectionTable, section: e.kindName, "appears twice") }
        let stored = UnsafeRawBufferPointer(rebasing: mapping.bytes[e.offset..<(e.offset + e.storedSize)])
        switch e.codec! {
        case .none:
            byKind[kind] = (e, stored)
        case .lz4:
            let buffer = try AlignedBuffer(size: e.rawSize, for: "section \(e.kindName)")
            try LZ4Codec.decompress(stored, into: UnsafeMutableRawBufferPointer(start: buffer.base, count: e.rawSize), section: e.kindName)
            buffers.append(buffer)
            byKind[kind] = (e, buffer.bytes)
        }
    }

    func entry(_ kind: SectionKind) -> SectionEntry? { byKind[kind]?.0 }

    func require(_ kind: SectionKind) throws(ModelFormatError) -> SectionEntry {
        guard let e = byKind[kind]?.0 else { throw ModelFormatError(.missingSection, section: kind.description, "required section is missing") }
        return e
    }

    func raw(_ e: SectionEntry) -> UnsafeRawBufferPointer { byKind[e.kind!]!.1 }

    /// Raw bytes of a section of `count` fixed-size records, after checking its geometry.
    func fixedRecords(
        _ e: SectionEntry,
        count: Int,
        recordSize: Int,
        cols: Int,
        encoding: SectionEncoding
    ) throws(ModelFormatError) -> UnsafeRawBufferPointer {
        guard e.encodingRaw == encoding.rawValue, e.cols == cols else {
            throw ModelFormatError(.badSection, section: e.kindName, "encoding \(e.encodingRaw) / \(e.cols) cols, expected \(encoding) / \(cols)")
        }
        guard e.rows == count, e.rawSize == count * recordSize else {
            throw ModelFormatError(.countMismatch, section: e.kindName, "\(e.rows) rows in \(e.rawSize) bytes, expected \(count) x \(recordSize) bytes")
        }
        return raw(e)
    }

    /// A kernel view of a factor matrix section with exactly `rows` rows.
    func matrix(_ kind: SectionKind, rows: Int) throws(ModelFormatError) -> MatrixView {
        let e = try require(kind)
        let name = kind.description
        guard let encoding = e.encoding?.rowEncoding else {
            throw ModelFormatError(.badSection, section: name, "encoding \(e.encodingRaw) is not float32, float16 or int8")
        }
        guard e.cols > 0, e.cols % 4 == 0, e.cols <= MatrixView.maxCols else {
            throw ModelFormatError(.badSection, section: name, "dimension \(e.cols) is not a multiple of 4 in 4...1024")
        }
        guard e.rowStride == encoding.alignedStride(cols: e.cols) else {
            throw ModelFormatError(.badSection, section: name, "row stride \(e.rowStride), expected \(encoding.alignedStride(cols: e.cols))")
        }
        guard e.rows == rows else { throw ModelFormatError(.countMismatch, section: name, "\(e.rows) rows for \(rows) ids") }
        let rowBytes = rows * e.rowStride
        let expected = encoding == .int8 ? rowBytes.alignedTo64 + rows * 4 : rowBytes
        guard e.rawSize == expected else {
            throw ModelFormatError(.countMismatch, section: name, "\(e.rawSize) bytes, \(rows) x \(e.cols) \(encoding) needs \(expected)")
        }
        let base = raw(e).baseAddress ?? mapping.base
        let scales = encoding == .int8 ? (base + rowBytes.alignedTo64).assumingMemoryBound(to: Float.self) : nil
        if let scales {
            // 2^34 x 127 < 2^41: the same dot-product headroom as the float bound, with room for the writer's rounding.
            for r in 0..<rows where !(scales[r] >= 0 && scales[r] <= 0x1p34) {
                throw ModelFormatError(.badSection, section: name, "row \(r) has scale \(scales[r]), not 0 to 2^34")
            }
        }
        let view = MatrixView(base: base, rows: rows, cols: e.cols, rowStride: e.rowStride, encoding: encoding, scales: scales)
        // Every score is a dot product with these rows: a NaN or infinity (or a value that overflows a dot product to
        // one) makes an item unrankable, or a user's whole answer NaN (int8 codes are bounded; their scales above).
        if let r = MappedModel.firstOutOfRangeRow(view) {
            throw ModelFormatError(.badSection, section: name, "row \(r) holds a value that is NaN, infinite or beyond ±2^40")
        }
        return view
    }
}
