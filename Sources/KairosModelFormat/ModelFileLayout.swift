import KairosKernels

#if canImport(Glibc)
import Glibc
#endif

/// Parsing of the header and section table, shared by the loader and `kairos inspect`.
public enum ModelFileLayout {
    /// Parses and checks the header and section table of `file` (the whole file's bytes).
    /// Checks the table checksum, every entry against the file size, and that no two sections overlap.
    public static func parse(_ file: UnsafeRawBufferPointer) throws(ModelFormatError) -> (FileHeader, [SectionEntry]) {
        let header = try FileHeader.decode(file, actualFileSize: file.count)
        let tableStart = header.sectionTableOffset
        let tableEnd = tableStart + header.sectionCount * SectionEntry.size
        let table = UnsafeRawBufferPointer(rebasing: file[tableStart..<tableEnd])
        let sum = Checksum.xxh64(table)
        guard sum == header.sectionTableChecksum else {
            throw ModelFormatError(.checksumMismatch, section: "section table", "stored xxh64 \(hex64(header.sectionTableChecksum)), computed \(hex64(sum))")
        }
        var entries: [SectionEntry] = []
        for i in 0..<header.sectionCount {
            let bytes = UnsafeRawBufferPointer(rebasing: table[(i * SectionEntry.size)..<((i + 1) * SectionEntry.size)])
            entries.append(try SectionEntry.decode(bytes, fileSize: file.count, index: i))
        }
        var previousEnd = tableEnd
        for e in entries.sorted(by: { $0.offset < $1.offset }) {
            guard e.offset >= previousEnd else {
                throw ModelFormatError(.badSectionTable, section: e.kindName, "overlaps the header, table or another section")
            }
            previousEnd = e.offset + e.storedSize
        }
        return (header, entries)
    }

    /// Reads and checks only the header of the file at `path` (128 bytes): enough to learn a model's name and version
    /// before deciding whether to load it.
    public static func readHeader(path: String) throws(ModelFormatError) -> FileHeader {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AtomicFile.ioError("cannot open \(path)") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw AtomicFile.ioError("cannot stat \(path)") }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FileHeader.size, alignment: 8)
        defer { buffer.deallocate() }
        let n = pread(fd, buffer.baseAddress, FileHeader.size, 0)
        return try FileHeader.decode(UnsafeRawBufferPointer(rebasing: buffer[0..<max(0, n)]), actualFileSize: Int(st.st_size))
    }

    /// Whether the stored bytes of `entry` match its checksum.
    public static func checksumMatches(_ entry: SectionEntry, in file: UnsafeRawBufferPointer) -> Bool {
        Checksum.xxh64(UnsafeRawBufferPointer(rebasing: file[entry.offset..<(entry.offset + entry.storedSize)])) == entry.checksum
    }

    /// Throws for the first section whose stored bytes do not match its checksum.
    static func verifyChecksums(_ entries: [SectionEntry], in file: UnsafeRawBufferPointer) throws(ModelFormatError) {
        for e in entries where !checksumMatches(e, in: file) {
            throw ModelFormatError(.checksumMismatch, section: e.kindName, "stored bytes do not match xxh64 \(hex64(e.checksum))")
        }
    }
}

/// What `kairos inspect` reports: as much of the file as can be read, and every problem found.
public struct ModelInspection: Sendable {
    /// One section and whether its checksum matched.
    public struct Section: Sendable {
        /// The table entry.
        public var entry: SectionEntry
        /// Whether the stored bytes match the checksum.
        public var checksumOK: Bool
    }

    /// Path inspected.
    public var path: String
    /// Size of the file in bytes (0 if it could not be opened).
    public var fileSize: Int
    /// The header, when it could be read.
    public var header: FileHeader?
    /// The sections, when the table could be read.
    public var sections: [Section]
    /// Training metadata, when the whole file verified.
    public var metadata: ModelMetadata?
    /// Item, user and dimension counts, when the whole file verified.
    public var counts: (items: Int, users: Int, dimensions: Int, golden: Int)?
    /// Every problem found; empty means the file is valid.
    public var problems: [ModelFormatError]

    /// Whether the file passed every check.
    public var isValid: Bool { problems.isEmpty }

    /// Reads `path` and reports on it without throwing.
    public static func inspect(path: String) -> ModelInspection {
        var report = ModelInspection(path: path, fileSize: 0, header: nil, sections: [], metadata: nil, counts: nil, problems: [])
        let mapping: FileMapping
        do {
            mapping = try FileMapping.map(path, populate: false)
        } catch {
            var st = stat()
            if stat(path, &st) == 0 { report.fileSize = Int(st.st_size) }
            report.problems.append(error)
            return report
        }
        report.fileSize = mapping.size
        do {
            let (header, entries) = try ModelFileLayout.parse(mapping.bytes)
            report.header = header
            report.sections = entries.map { Section(entry: $0, checksumOK: ModelFileLayout.checksumMatches($0, in: mapping.bytes)) }
        } catch {
            report.problems.append(error)
            return report
        }
        for s in report.sections where !s.checksumOK {
            report.problems.append(ModelFormatError(.checksumMismatch, section: s.entry.kindName, "stored bytes do not match xxh64 \(hex64(s.entry.checksum))"))
        }
        guard report.problems.isEmpty else { return report }
        do {
            let model = try MappedModel(mapping: mapping, path: path, options: LoadOptions(prefault: false, verifyGolden: true))
            report.metadata = model.metadata
            report.counts = (model.itemCount, model.userCount, model.dimensions, model.golden.count)
        } catch {
            report.problems.append(error)
        }
        return report
    }
}
