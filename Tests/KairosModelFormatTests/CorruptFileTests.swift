import KairosKernels
@testable import KairosModelFormat
import KairosTestSupport
import Testing

@Suite struct CorruptFileTests {
    static let valid: [UInt8] = try! ModelWriter.encode(smallContents())

    /// A file cut short anywhere is rejected as truncated (the header records the full size).
    @Test(arguments: [0, 1, 64, 127, 128, 500, 5_000, -1])
    func truncatedFilesAreRejected(length: Int) {
        let folder = TempFolder()
        let cut = Array(Self.valid.prefix(length >= 0 ? length : Self.valid.count - 1))
        let error = loadError(cut, in: folder)
        #expect(error?.code == .truncated, "\(String(describing: error))")
    }

    /// A file that is not a model file at all fails on its magic.
    @Test func wrongMagicIsRejected() {
        let folder = TempFolder()
        var bytes = Self.valid
        bytes.replaceSubrange(0..<8, with: Array("GET / HT".utf8))
        #expect(loadError(bytes, in: folder)?.code == .badMagic)
    }

    /// A future major version is refused with a message naming both versions, even with valid checksums.
    @Test func wrongVersionIsRejected() {
        let folder = TempFolder()
        var p = FilePatcher(bytes: Self.valid)
        p.write(UInt16(2), at: 8)
        p.write(UInt16(0), at: 10)
        p.reseal()
        let error = loadError(p.bytes, in: folder)
        #expect(error?.code == .unsupportedVersion)
        #expect(error?.message.contains("2.0") == true)
    }

    /// A big-endian writer (byte-order mark reversed) is refused rather than misread.
    @Test func wrongByteOrderIsRejected() {
        let folder = TempFolder()
        var p = FilePatcher(bytes: Self.valid)
        p.write(UInt32(0x0D0C_0B0A), at: 12)
        p.reseal()
        #expect(loadError(p.bytes, in: folder)?.code == .badByteOrder)
    }

    /// Any changed header byte is caught by the header checksum.
    @Test func headerCorruptionIsRejected() {
        let folder = TempFolder()
        var bytes = Self.valid
        bytes[70] ^= 0x01  // inside the model name
        let error = loadError(bytes, in: folder)
        #expect(error?.code == .checksumMismatch && error?.section == "header")
    }

    /// A changed section-table byte is caught by the table checksum.
    @Test func sectionTableCorruptionIsRejected() {
        let folder = TempFolder()
        var bytes = Self.valid
        bytes[128 + 64 + 33] ^= 0x40  // rows of the second entry
        let error = loadError(bytes, in: folder)
        #expect(error?.code == .checksumMismatch && error?.section == "section table")
    }

    /// One flipped bit in any section is caught by that section's checksum, and the error names the section.
    @Test(arguments: SectionKind.allCases)
    func sectionCorruptionNamesTheSection(kind: SectionKind) {
        let folder = TempFolder()
        let p = FilePatcher(bytes: Self.valid)
        let (offset, size) = p.range(of: kind)
        var bytes = Self.valid
        bytes[offset + size / 2] ^= 0x10
        let error = loadError(bytes, in: folder)
        #expect(error?.code == .checksumMismatch)
        #expect(error?.section == kind.description)
        #expect(error?.description.contains(kind.description) == true)
    }

    /// `kairos inspect`'s report lists every section and marks exactly the corrupt one.
    @Test func inspectionMarksTheCorruptSection() throws {
        let folder = TempFolder()
        let p = FilePatcher(bytes: Self.valid)
        let (offset, _) = p.range(of: .userFactors)
        var bytes = Self.valid
        bytes[offset] ^= 0xFF
        let report = ModelInspection.inspect(path: folder.write(bytes, to: "bad.kmodel"))
        #expect(!report.isValid)
        #expect(report.sections.count == p.sectionCount)
        #expect(report.sections.filter { !$0.checksumOK }.map(\.entry.kind) == [.userFactors])
        #expect(report.problems.first?.section == "user_factors")
        let good = ModelInspection.inspect(path: folder.write(Self.valid, to: "good.kmodel"))
        #expect(good.isValid && good.counts?.items == 300 && good.metadata != nil)
    }

    /// A hostile header asking for a huge section table is refused before anything is allocated.
    @Test func hostileSectionCountIsRejected() {
        let folder = TempFolder()
        var p = FilePatcher(bytes: Self.valid)
        p.write(UInt32(0xFFFF_FFFF), at: 20)
        p.reseal()
        #expect(loadError(p.bytes, in: folder)?.code == .badHeader)
    }

    /// Sealed entries whose offsets or sizes point outside the file are refused as out of bounds.
    @Test(arguments: [(8, UInt64(1) << 62), (16, UInt64.max - 100), (16, UInt64(1) << 40)])
    func outOfBoundsSectionIsRejected(field: Int, value: UInt64) {
        let folder = TempFolder()
        var p = FilePatcher(bytes: Self.valid)
        let e = p.entryOffset(p.index(of: .itemFactors))
        p.write(value & ~63, at: e + field)
        p.reseal()
        let error = loadError(p.bytes, in: folder)
        #expect(error?.code == .sectionOutOfBounds && error?.section == "item_factors", "\(String(describing: error))")
    }

    /// Hostile row counts with valid checksums fail on the count check, with no huge allocation and no crash.
    @Test(arguments: [SectionKind.itemIds, .itemFactors, .userHistory, .golden, .itemIdIndex])
    func hostileRowCountsAreRejected(kind: SectionKind) {
        let folder = TempFolder()
        for rows in [UInt64(1) << 33, UInt64(Int32.max), 3] {
            var p = FilePatcher(bytes: Self.valid)
            p.write(rows, at: p.entryOffset(p.index(of: kind)) + 32)
            p.reseal()
            let error = loadError(p.bytes, in: folder)
            #expect(error != nil, "\(kind) rows \(rows) loaded")
            #expect([.countMismatch, .badSection].contains(error?.code), "\(kind) rows \(rows): \(String(describing: error))")
        }
    }

    /// Sealed sections whose numbers are not finite (popularity, history weights: both are added into scores) are
    /// refused by name, as a checksum-valid file from a faulty writer would otherwise poison every ranking.
    @Test func nonFiniteScoreInputsAreRejected() throws {
        let folder = TempFolder()
        var p = FilePatcher(bytes: Self.valid)
        p.write(Float.infinity.bitPattern, at: p.range(of: .itemPopularity).offset + 8 * 7 + 4)  // item 7, decayed
        p.reseal()
        let popularity = loadError(p.bytes, in: folder)
        #expect(popularity?.code == .badSection && popularity?.section == "item_popularity", "\(String(describing: popularity))")

        // History is LZ4-compressed by default; an uncompressed file lets the weight be patched in place.
        let plain = try ModelWriter.encode(smallContents(), compress: false)
        var h = FilePatcher(bytes: plain)
        let range = h.range(of: .userHistory)
        let users = Int(h.read(UInt64.self, at: h.entryOffset(h.index(of: .userHistory)) + 32))
        let entries = Int(h.read(UInt64.self, at: range.offset + users * 8))
        #expect(entries > 0 && range.size == (users + 1) * 8 + entries * 8)
        h.write(Float.nan.bitPattern, at: range.offset + (users + 1) * 8 + entries * 4)  // the first weight
        h.reseal()
        #expect(loadError(plain, in: folder, name: "ok.kmodel") == nil)
        let history = loadError(h.bytes, in: folder, name: "h.kmodel")
        #expect(history?.code == .badSection && history?.section == "user_history", "\(String(describing: history))")
    }

    /// Factor values and item biases are in every score: a NaN or infinity in a float32 or float16 row, or in a bias,
    /// is refused by section and row (a NaN user row made that user's every answer NaN).
    @Test func nonFiniteFactorsAndBiasesAreRejected() throws {
        let folder = TempFolder()
        for encoding in [RowEncoding.float32, .float16] {
            let bytes = try ModelWriter.encode(smallContents(encoding: encoding), compress: false)
            for (kind, row, name) in [(SectionKind.itemFactors, 5, "item_factors"), (.userFactors, 3, "user_factors")] {
                // Finite but past ±2^40 (float32 only: float16 has no such values) overflows a dot product to infinity.
                let values: [Float] = [.nan, .infinity, -.infinity] + (encoding == .float32 ? [3e38, -0x1p41] : [])
                for value in values {
                    var p = FilePatcher(bytes: bytes)
                    let entry = p.entryOffset(p.index(of: kind))
                    let stride = Int(p.read(UInt32.self, at: entry + 44))
                    let at = p.range(of: kind).offset + row * stride + 2 * (encoding == .float32 ? 4 : 2)
                    if encoding == .float32 { p.write(value.bitPattern, at: at) } else { p.write(Float16(value).bitPattern, at: at) }
                    p.reseal()
                    let error = loadError(p.bytes, in: folder)
                    #expect(error?.code == .badSection && error?.section == name && "\(error!)".contains("row \(row)"), "\(encoding) \(name) \(value): \(String(describing: error))")
                }
            }
            #expect(loadError(bytes, in: folder) == nil)
        }
        for value: Float in [.nan, 1e20] {
            var p = FilePatcher(bytes: Self.valid)
            p.write(value.bitPattern, at: p.range(of: .itemBiases).offset + 4 * 9)
            p.reseal()
            let bias = loadError(p.bytes, in: folder)
            #expect(bias?.code == .badSection && bias?.section == "item_biases" && "\(bias!)".contains("item 9"), "\(value): \(String(describing: bias))")
        }
        // The bound itself loads, and the writer refuses what the reader would.
        var edge = smallContents()
        edge.itemFactors.values[0] = MappedModel.maxFactorMagnitude
        edge.itemBiases![0] = -MappedModel.maxFactorMagnitude
        #expect(loadError(try ModelWriter.encode(edge, compress: false), in: folder) == nil)
        edge.itemFactors.values[0] = MappedModel.maxFactorMagnitude.nextUp
        #expect(throws: ModelFormatError.self) { _ = try ModelWriter.encode(edge) }
    }

    /// A `scoring` weight past ±1e6 is refused by the writer and, in a file, by the loader (1e39 is infinite as a
    /// float32: every blended score would be infinite or NaN, and TOPK would answer nothing).
    @Test func blendWeightsAreBounded() throws {
        let folder = TempFolder()
        var contents = smallContents()
        contents.metadata.scoring = ["exclude-seen": ["dot": 1, "trending": 2.5]]
        let bytes = try ModelWriter.encode(contents, compress: false)
        #expect(loadError(bytes, in: folder) == nil)
        var p = FilePatcher(bytes: bytes)
        let at = try #require(p.bytes.firstRange(of: Array(#""trending":2.5"#.utf8)))
        p.bytes.replaceSubrange((at.upperBound - 3)..<at.upperBound, with: Array("9e9".utf8))
        p.reseal()
        let error = loadError(p.bytes, in: folder)
        #expect(error?.code == .badSection && error?.section == "metadata" && "\(error!)".contains("exclude-seen.trending"), "\(String(describing: error))")
        for weight in [1e39, -2e6, .infinity] {
            contents.metadata.scoring = ["allow-repeats": ["freshness": weight]]
            #expect(throws: ModelFormatError.self) { _ = try ModelWriter.encode(contents) }
        }
        contents.metadata.scoring = ["allow-repeats": ["freshness": -1e6]]
        #expect(loadError(try ModelWriter.encode(contents), in: folder) == nil)
        // The real-time weight: 0 to 1e6.
        for weight in [-0.1, 2e6, .infinity] {
            contents.metadata.parameters["realtime_weight"] = weight
            #expect(throws: ModelFormatError.self) { _ = try ModelWriter.encode(contents) }
        }
        contents.metadata.parameters["realtime_weight"] = 0
        #expect(loadError(try ModelWriter.encode(contents), in: folder) == nil)
    }

    /// `parameters.realtime_fold`: 0 or 1, and 1 (least squares) only with an alpha, a positive regularization and at
    /// most 128 factors; refused by the writer and, in a file, by the loader.
    @Test func realtimeFoldIsChecked() throws {
        let folder = TempFolder()
        var contents = smallContents()
        contents.metadata.parameters.merge(["realtime_fold": 1, "alpha": 10, "regularization": 5]) { $1 }
        let bytes = try ModelWriter.encode(contents, compress: false)
        #expect(loadError(bytes, in: folder) == nil)
        var p = FilePatcher(bytes: bytes)
        let at = try #require(p.bytes.firstRange(of: Array(#""realtime_fold":1"#.utf8)))
        p.bytes[at.upperBound - 1] = UInt8(ascii: "2")
        p.reseal()
        let error = loadError(p.bytes, in: folder)
        #expect(error?.code == .badSection && error?.section == "metadata" && "\(error!)".contains("realtime_fold is 2"), "\(String(describing: error))")
        for (key, value) in [("realtime_fold", 0.5), ("regularization", 0), ("regularization", -1), ("alpha", -1), ("alpha", 2e6)] {
            var bad = contents
            bad.metadata.parameters[key] = value
            #expect(throws: ModelFormatError.self, "\(key) \(value)") { _ = try ModelWriter.encode(bad) }
        }
        var noAlpha = contents
        noAlpha.metadata.parameters["alpha"] = nil
        #expect(throws: ModelFormatError.self) { _ = try ModelWriter.encode(noAlpha) }
        var wide = smallContents(dims: LeastSquaresFold.maxDimensions + 4)
        wide.metadata.parameters = contents.metadata.parameters
        #expect(throws: ModelFormatError.self) { _ = try ModelWriter.encode(wide) }
        wide.metadata.parameters["realtime_fold"] = 0
        #expect(loadError(try ModelWriter.encode(wide), in: folder) == nil)
    }

    /// An int8 row scale past 2^34 (x 127 past the float bound) is refused; int8 files at the bound load.
    @Test func int8ScalesAreBounded() throws {
        let folder = TempFolder()
        var contents = smallContents(encoding: .int8)
        contents.itemFactors.values[0] = MappedModel.maxFactorMagnitude  // the largest scale a writer makes
        let bytes = try ModelWriter.encode(contents, compress: false)
        #expect(loadError(bytes, in: folder) == nil)
        for scale: Float in [0x1p35, .nan, -1] {
            var p = FilePatcher(bytes: bytes)
            let entry = p.entryOffset(p.index(of: .itemFactors))
            let stride = Int(p.read(UInt32.self, at: entry + 44))
            let rows = contents.itemFactors.rows
            p.write(scale.bitPattern, at: p.range(of: .itemFactors).offset + (rows * stride + 63) / 64 * 64 + 4 * 2)
            p.reseal()
            let error = loadError(p.bytes, in: folder)
            #expect(error?.code == .badSection && error?.section == "item_factors" && "\(error!)".contains("row 2 has scale"), "\(scale): \(String(describing: error))")
        }
    }

    /// A compressed section claiming an impossible raw size is refused before its buffer is allocated.
    @Test func hostileRawSizeIsRejected() {
        let folder = TempFolder()
        var p = FilePatcher(bytes: Self.valid)
        p.write(UInt64(1) << 40, at: p.entryOffset(p.index(of: .userHistory)) + 24)
        p.reseal()
        let error = loadError(p.bytes, in: folder)
        #expect(error?.code == .badSectionTable && error?.section == "user_history")
    }

    /// A damaged LZ4 block that still matches its (re-sealed) checksum is caught by the bounds-checked decoder.
    @Test func corruptCompressedBlockIsRejected() {
        let folder = TempFolder()
        var p = FilePatcher(bytes: Self.valid)
        let (offset, size) = p.range(of: .itemIds)
        for i in stride(from: offset, to: offset + size, by: 7) { p.bytes[i] = 0xFF }
        p.reseal()
        let error = loadError(p.bytes, in: folder)
        #expect(error?.code == .badCompression && error?.section == "item_ids", "\(String(describing: error))")
    }

    /// Sections overlapping each other are refused (a crafted table cannot alias two views onto one range).
    @Test func overlappingSectionsAreRejected() {
        let folder = TempFolder()
        var p = FilePatcher(bytes: Self.valid)
        let first = p.range(of: .itemFactors)
        p.write(UInt64(first.offset), at: p.entryOffset(p.index(of: .itemBiases)) + 8)
        p.reseal()
        #expect(loadError(p.bytes, in: folder)?.code == .badSectionTable)
    }

    /// A golden triple the served kernels disagree with (here: a trained score changed and re-sealed) rejects the file.
    @Test func goldenMismatchIsRejected() {
        let folder = TempFolder()
        var p = FilePatcher(bytes: Self.valid)
        let (offset, _) = p.range(of: .golden)
        let score = Float(bitPattern: p.read(UInt32.self, at: offset + 8))
        p.write((score + 0.5).bitPattern, at: offset + 8)
        p.reseal()
        let error = loadError(p.bytes, in: folder)
        #expect(error?.code == .goldenMismatch)
    }

    /// A required section that is missing (its kind renamed to one this reader does not know) is reported by name.
    @Test func missingRequiredSectionIsReported() {
        let folder = TempFolder()
        var p = FilePatcher(bytes: Self.valid)
        p.write(UInt32(999), at: p.entryOffset(p.index(of: .itemFactors)))
        p.reseal()
        let error = loadError(p.bytes, in: folder)
        #expect(error?.code == .missingSection && error?.section == "item_factors")
    }

    /// Random garbage of many sizes never crashes the loader; it always yields an error.
    @Test func randomGarbageIsRejected() {
        let folder = TempFolder()
        var rng = SplitMix64(seed: 3)
        for n in [0, 10, 128, 129, 1000, 70_000] {
            var bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            #expect(loadError(bytes, in: folder) != nil)
            if n >= 8 { bytes.replaceSubrange(0..<8, with: FileHeader.magic) }
            #expect(loadError(bytes, in: folder) != nil)
        }
    }
}
