import KairosModelFormat

#if canImport(Glibc)
    import Glibc
#endif

/// Streams a CSV/TSV/JSON Lines event log into an ``EventLog``, interning ids as it reads.
///
/// The file is read in 8 MiB chunks and parsed in place: no `String` is created per row, so memory grows with the
/// number of events (about 20 bytes each) and distinct ids, not with the file size. Quoted CSV fields follow RFC 4180:
/// `""` escapes, and delimiters and line breaks inside the quotes (a record of at most ``maxRecordBytes``).
public struct EventLogReader {
    typealias Role = IngestOptions.Role

    let options: IngestOptions
    var users = ByteInterner()
    var items = ByteInterner()
    var events = ByteInterner()
    var eventWeightById: [Float?] = []
    var log = EventLog(userIds: [], itemIds: [], users: [], items: [], times: [], strengths: [])
    var report = IngestReport()
    var format: IngestOptions.Format
    var delimiter: UInt8 = UInt8(ascii: ",")
    /// Column index -> role raw value, or -1.
    var roleOfColumn: [Int] = []
    /// JSON key -> role, by lowercased name.
    var roleOfKey: [String: Role] = [:]
    /// The ASCII names of ``roleOfKey`` as lowercase bytes, compared in place without allocating.
    var asciiKeys: [([UInt8], Role)] = []
    var headerSeen = false
    var lineNumber = 0
    var strength: IngestOptions.StrengthSource = .auto
    /// Unescaped copies of quoted fields, one per role.
    var scratch: [[UInt8]] = Array(repeating: [], count: 5)
    /// The role of the key at each position of the last JSON object, by its exact bytes: exports repeat one key
    /// order on every line, so most keys are recognised by one comparison instead of a search of ``asciiKeys``.
    var jsonKeyMemo: [(key: [UInt8], role: Role?)] = []
    /// Set by ``read(path:options:chunkBytes:maxRecordBytes:)``: unquoted CSV rows' and unescaped JSON rows' user and
    /// item fields are kept (pointers into its read buffer) and interned in batches by ``flushStaged()``, before the
    /// buffer changes.
    var staging = false
    /// Fields of good rows not interned yet, in row order (their times and strengths are already in ``log``).
    var stagedUsers: [UnsafeRawBufferPointer] = []
    var stagedItems: [UnsafeRawBufferPointer] = []
    /// Hashes of the staged fields, kept between batches.
    var stagedHashes: [UInt64] = []
    /// Rows interned per batch at most.
    static let stageLimit = 4096

    /// The longest record a quoted field may stretch over several lines to make. A quote still open after this many
    /// bytes (or at the end of the file) is a stray: its line is a bad row and reading goes on at the next line, so
    /// one bad quote costs at most this much re-reading, not the rest of the file.
    static let maxRecordBytes = 1 << 20
    /// This reader's record limit: ``maxRecordBytes`` but in tests.
    var recordLimit = Self.maxRecordBytes

    /// "1 MiB", or a byte count for a limit that is no whole number of MiB (tests).
    static func describe(bytes: Int) -> String { bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : "\(bytes) bytes" }

    /// How a CSV record ended.
    enum RecordEnd {
        /// Parsed (or counted as a bad row).
        case complete
        /// A quoted field is still open at the end of the bytes given: call again with the next line appended.
        case openQuote
        /// A quoted field never closed: the first line was counted as a bad row; go on from the line after it.
        case strayQuote
    }

    /// Reads the whole file at `path`.
    /// - Throws: ``TrainerError`` for I/O failures, a missing column, a bad row under `--strict`, or no events.
    public static func read(path: String, options: IngestOptions = IngestOptions()) throws(TrainerError) -> (
        EventLog, IngestReport
    ) {
        try read(path: path, options: options, chunkBytes: 8 << 20)
    }

    /// ``read(path:options:)`` with reads of `chunkBytes` and records of at most `maxRecordBytes` (small in tests, so
    /// that records cross read boundaries and the limit is reached in a small file).
    static func read(path: String, options: IngestOptions, chunkBytes: Int, maxRecordBytes: Int = Self.maxRecordBytes) throws(TrainerError) -> (
        EventLog, IngestReport
    ) {
        var format = options.format
        if format == .auto {
            let lower = path.lowercased()
            if lower.hasSuffix(".jsonl") || lower.hasSuffix(".ndjson") || lower.hasSuffix(".json") {
                format = .jsonl
            } else if lower.hasSuffix(".tsv") {
                format = .tsv
            }
        }
        var reader = EventLogReader(options: options, format: format)
        reader.recordLimit = maxRecordBytes
        reader.staging = true
        // `-` is standard input, so that a compressed or exported log can be piped in
        // (`zcat log.csv.gz | kairos train -`).
        let fd = path == "-" ? 0 : open(path, O_RDONLY)
        guard fd >= 0 else { throw TrainerError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { if fd != 0 { close(fd) } }
        let chunk = chunkBytes
        var buffer = [UInt8](repeating: 0, count: chunk)
        var carried = 0
        // Inside a line longer than maxRecordBytes: its bytes are dropped up to its end. (They used to be kept, the
        // buffer doubling without bound: a file with no line feeds at all, such as one with classic-Mac CR line
        // endings, was held whole, twice over.)
        var skippingLine = false
        while true {
            if carried == buffer.count { buffer.append(contentsOf: [UInt8](repeating: 0, count: buffer.count)) }
            let got = buffer.withUnsafeMutableBytes { b in Glibc.read(fd, b.baseAddress! + carried, b.count - carried) }
            if got < 0 && errno == EINTR { continue }  // a signal, not an error: read again
            guard got >= 0 else { throw TrainerError(.io, "read \(path): \(String(cString: strerror(errno)))") }
            reader.report.bytes += got
            let end = carried + got
            let atEOF = got == 0
            var consumed = 0
            var failure: TrainerError?
            buffer.withUnsafeBytes { (b: UnsafeRawBufferPointer) in
                // The staged fields point into `b`: interned before it is moved or grown.
                defer { reader.flushStaged() }
                let base = b.baseAddress!
                var start = 0
                // A record is usually one line. A quoted field with line breaks stretches it: the search for its end
                // then jumps to the line of the next quote, since no line before that one can close the field.
                var searchFrom = 0
                var firstLineEnd = -1  // set once the record spans more than one line
                if skippingLine {
                    guard let nl = memchr(base, 0x0A, end) else {
                        start = end
                        consumed = end
                        return
                    }
                    start = UnsafeRawPointer(nl) - base + 1
                    searchFrom = start
                    skippingLine = false
                }
                scan: while start < end {
                    let nl = memchr(base + searchFrom, 0x0A, end - searchFrom)
                    let lineEnd: Int
                    if let nl {
                        lineEnd = UnsafeRawPointer(nl) - base
                    } else if atEOF {
                        lineEnd = end
                    } else if firstLineEnd < 0 && end - start > reader.recordLimit {
                        do throws(TrainerError) {
                            try reader.overlongLine()
                        } catch {
                            failure = error
                            return
                        }
                        skippingLine = true
                        start = end
                        break
                    } else {
                        break  // read more, then parse the record again from its start
                    }
                    // A line longer than the limit is overlong whether or not its end came in the same read (else a
                    // 2 MiB line would parse in one 8 MiB read and be skipped across two).
                    if firstLineEnd < 0 && lineEnd - start > reader.recordLimit {
                        do throws(TrainerError) {
                            try reader.overlongLine()
                        } catch {
                            failure = error
                            return
                        }
                        start = lineEnd + 1
                        searchFrom = start
                        continue scan
                    }
                    var stop = lineEnd
                    if stop > start, b[stop - 1] == 0x0D { stop -= 1 }
                    let record = UnsafeRawBufferPointer(rebasing: b[start..<stop])
                    var lines = 1
                    if firstLineEnd >= 0 {
                        var p = start
                        while let q = memchr(base + p, 0x0A, lineEnd - p) {
                            lines += 1
                            p = UnsafeRawPointer(q) - base + 1
                        }
                    }
                    do throws(TrainerError) {
                        var outcome = try reader.line(record, lines: lines, canExtend: nl != nil)
                        if outcome == .openQuote {
                            if firstLineEnd < 0 { firstLineEnd = lineEnd }
                            let from = lineEnd + 1
                            let limit = min(end, start + reader.recordLimit)
                            if from < limit, let q = memchr(base + from, 0x22, limit - from) {
                                searchFrom = UnsafeRawPointer(q) - base
                                continue scan
                            }
                            if limit == end && !atEOF { break scan }  // the closing quote may be in the next read
                            outcome = try reader.line(record, lines: lines, canExtend: false)
                        }
                        start = (outcome == .strayQuote && firstLineEnd >= 0 ? firstLineEnd : lineEnd) + 1
                    } catch {
                        failure = error
                        return
                    }
                    searchFrom = start
                    firstLineEnd = -1
                }
                consumed = min(start, end)
            }
            if let failure { throw failure }
            if atEOF { break }
            if consumed > 0 {
                buffer.withUnsafeMutableBytes { b in
                    _ = memmove(b.baseAddress!, b.baseAddress! + consumed, end - consumed)
                }
            }
            carried = end - consumed
        }
        return try reader.finish(path: path)
    }

    init(options: IngestOptions, format: IngestOptions.Format) {
        self.options = options
        self.format = format
        if format == .tsv { delimiter = 0x09 }
    }

    mutating func finish(path: String) throws(TrainerError) -> (EventLog, IngestReport) {
        if !headerSeen && format != .jsonl { throw TrainerError(.badHeader, "\(path): no header row") }
        log.userIds = users.strings()
        log.itemIds = items.strings()
        report.duplicates = log.sortAndDeduplicate()
        report.events = log.count
        report.strengthSource = strength
        guard log.count > 0 else {
            // The first bad row says why, even with progress lines off.
            let first = report.firstBadRows.first.map { "; first bad row: \($0)" } ?? ""
            throw TrainerError(.empty, "\(path): no usable events (\(report.rows) rows, \(report.badRows) bad)\(first)")
        }
        return (log, report)
    }

    // MARK: Lines

    /// Parses one record of `lines` lines (more than one only when a quoted CSV field holds line breaks).
    ///
    /// `canExtend`: the file has another line that could close an open quote. Bad rows are reported at the record's
    /// first line; after a complete record the line count stands at its last.
    mutating func line(_ b: UnsafeRawBufferPointer, lines: Int = 1, canExtend: Bool = false) throws(TrainerError)
        -> RecordEnd
    {
        lineNumber += 1
        if b.isEmpty { return .complete }
        if format == .jsonl {
            if !headerSeen { try configureJSON() }
            report.rows += 1
            try jsonRow(b)
            return .complete
        }
        if !headerSeen {
            try header(b)
            return .complete
        }
        report.rows += 1
        let end = try csvRow(b, canExtend: canExtend, lines: lines)
        switch end {
        case .complete: lineNumber += lines - 1
        case .openQuote:
            // Not parsed yet: it is read again, longer, and counted then.
            lineNumber -= 1
            report.rows -= 1
        case .strayQuote: break
        }
        return end
    }

    /// Counts a line longer than ``maxRecordBytes`` as a bad row (its bytes are skipped, not parsed); as the first
    /// line, it is no header, and the file is refused.
    mutating func overlongLine() throws(TrainerError) {
        lineNumber += 1
        guard headerSeen || format == .jsonl else {
            throw TrainerError(.badHeader, "the first line is longer than \(Self.describe(bytes: recordLimit)): not a CSV or TSV file with a header row?")
        }
        report.rows += 1
        try bad("line longer than \(Self.describe(bytes: recordLimit))", kind: "line too long")
    }

    /// Counts a bad row. `kind` groups it in ``IngestReport/badRowKinds`` (the reason itself when nil, for reasons
    /// without row-specific numbers or text).
    mutating func bad(_ reason: String, kind: String? = nil) throws(TrainerError) {
        report.badRows += 1
        let k = kind ?? reason
        if report.badRowKinds[k] != nil || report.badRowKinds.count < IngestReport.reportedKinds {
            report.badRowKinds[k, default: 0] += 1
        } else {
            report.badRowKinds["other", default: 0] += 1
        }
        if options.strict { throw TrainerError(.badRow, "line \(lineNumber): \(reason)") }
        if report.firstBadRows.count < options.reportedBadRows {
            report.firstBadRows.append(.init(line: lineNumber, reason: reason))
        }
    }

    /// Picks each role's column from the header names.
    mutating func header(_ raw: UnsafeRawBufferPointer) throws(TrainerError) {
        var text = String(decoding: raw, as: UTF8.self)
        if text.hasPrefix("\u{FEFF}") { text.removeFirst() }
        if format == .auto { format = text.contains("\t") && !text.contains(",") ? .tsv : .csv }
        delimiter = format == .tsv ? 0x09 : UInt8(ascii: ",")
        let names = text.split(separator: Character(UnicodeScalar(delimiter)), omittingEmptySubsequences: false).map {
            String($0.trimmingSpaces).trimmingCharacters(in: "\"").lowercased()
        }
        let chosen = try chooseColumns(names)
        roleOfColumn = Array(repeating: -1, count: names.count)
        for (role, index) in chosen { roleOfColumn[index] = role.rawValue }
        headerSeen = true
    }

    func explicitName(_ role: Role) -> String? {
        switch role {
        case .user: options.userColumn
        case .item: options.itemColumn
        case .time: options.timeColumn
        case .event: options.eventColumn
        case .value: options.valueColumn
        }
    }

    /// Role -> column index; resolves the strength source.
    mutating func chooseColumns(_ names: [String]) throws(TrainerError) -> [(Role, Int)] {
        var out: [(Role, Int)] = []
        for role in Role.allCases {
            let candidates = explicitName(role).map { [$0.lowercased()] } ?? IngestOptions.defaultNames[role]!
            if let i = candidates.lazy.compactMap({ names.firstIndex(of: $0) }).first {
                out.append((role, i))
            } else if role == .user || role == .item || role == .time || explicitName(role) != nil {
                // The header as read, shortened and with control bytes shown as '?': a binary file's first "line" is
                // no header, and printing it whole wrote kilobytes of garbage to the terminal.
                var shown = String(names.joined(separator: ",").unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F || $0 == "\u{FFFD}" ? "?" : Character($0) })
                if shown.count > 200 { shown = String(shown.prefix(200)) + "..." }
                throw TrainerError(.badHeader, "no column for \(role) (tried \(candidates.joined(separator: ", ")); header: \(shown))")
            }
        }
        let has = Set(out.map { $0.0 })
        strength = options.strength
        if strength == .auto { strength = has.contains(.event) ? .event : has.contains(.value) ? .value : .constant }
        if strength == .event && !has.contains(.event) {
            throw TrainerError(.badHeader, "--strength event needs an event column")
        }
        if strength == .value && !has.contains(.value) {
            throw TrainerError(.badHeader, "--strength value needs a value column")
        }
        return out
    }

    mutating func configureJSON() throws(TrainerError) {
        for role in Role.allCases {
            for name in explicitName(role).map({ [$0.lowercased()] }) ?? IngestOptions.defaultNames[role]! {
                roleOfKey[name] = role
            }
        }
        for (name, role) in roleOfKey.sorted(by: { $0.key < $1.key }) {
            if name.utf8.allSatisfy({ $0 < 0x80 }) { asciiKeys.append((Array(name.utf8), role)) }
        }
        strength = options.strength
        if strength == .auto {
            strength = options.eventColumn != nil ? .event : options.valueColumn != nil ? .value : .auto
        }
        headerSeen = true
    }

    // MARK: CSV

    /// Parses one CSV record of `lines` lines; an unclosed quoted field gives `.openQuote` (no side effects) when
    /// `canExtend`, else a bad row and `.strayQuote`.
    ///
    /// Line breaks are kept only in columns the reader does not use (notes, descriptions, JSON properties). In an id,
    /// time, event or value, or followed by text after a closing quote, they are the sign of a stray quote that
    /// swallowed the rows after it: the record's first line is then a bad row and reading goes on at the next line,
    /// which gets those rows back.
    mutating func csvRow(_ b: UnsafeRawBufferPointer, canExtend: Bool = false, lines: Int = 1) throws(TrainerError)
        -> RecordEnd
    {
        var starts = (0, 0, 0, 0, 0)
        var ends = (-1, -1, -1, -1, -1)
        var quoted: UInt8 = 0
        let n = b.count
        var i = 0
        var column = 0
        let columns = roleOfColumn.count
        while column < columns {
            var fieldStart = i
            var fieldEnd: Int
            if i < n, b[i] == 0x22 {
                // Quoted field: find the closing quote; `""` is an escaped quote.
                var j = i + 1
                var escaped = false
                while true {
                    guard j < n else {
                        if canExtend { return .openQuote }
                        try bad("unterminated quote")
                        return .strayQuote
                    }
                    if b[j] == 0x22 {
                        if j + 1 < n, b[j + 1] == 0x22 {
                            escaped = true
                            j += 2
                            continue
                        }
                        break
                    }
                    j += 1
                }
                fieldStart = i + 1
                fieldEnd = j
                i = j + 1
                let role = roleOfColumn[column]
                if escaped && role >= 0 {
                    var s: [UInt8] = []
                    var k = fieldStart
                    while k < fieldEnd {
                        s.append(b[k])
                        k += b[k] == 0x22 ? 2 : 1
                    }
                    scratch[role] = s
                    quoted |= 1 << UInt8(role)
                }
                if lines > 1 && i < n && b[i] != delimiter {
                    // Text after a closing quote: the "closing" quote opened a field of a later row.
                    try bad("text after a closing quote", kind: "text after a closing quote")
                    return .strayQuote
                }
                while i < n, b[i] != delimiter { i += 1 }
            } else {
                if let p = memchr(b.baseAddress! + i, Int32(delimiter), n - i) {
                    fieldEnd = UnsafeRawPointer(p) - b.baseAddress!
                } else {
                    fieldEnd = n
                }
                i = fieldEnd
            }
            switch roleOfColumn[column] {
            case 0: starts.0 = fieldStart; ends.0 = fieldEnd
            case 1: starts.1 = fieldStart; ends.1 = fieldEnd
            case 2: starts.2 = fieldStart; ends.2 = fieldEnd
            case 3: starts.3 = fieldStart; ends.3 = fieldEnd
            case 4: starts.4 = fieldStart; ends.4 = fieldEnd
            default: break
            }
            column += 1
            if i >= n { break }
            i += 1  // skip the delimiter
        }
        if column < columns && roleOfColumn[column...].contains(where: { $0 >= 0 }) {
            try bad("\(column) fields, expected \(columns)", kind: "wrong number of fields")
            return .complete
        }
        if lines > 1 {
            let spans = [
                (starts.0, ends.0), (starts.1, ends.1), (starts.2, ends.2), (starts.3, ends.3), (starts.4, ends.4),
            ]
            for (role, (s, e)) in spans.enumerated() where e > s && memchr(b.baseAddress! + s, 0x0A, e - s) != nil {
                try bad("line break in the \(Role(rawValue: role)!) field", kind: "line break in a used field")
                return .strayQuote
            }
        }
        func field(_ role: Int, _ s: Int, _ e: Int) -> UnsafeRawBufferPointer? {
            if e < 0 { return nil }
            return UnsafeRawBufferPointer(rebasing: b[s..<e])
        }
        if quoted == 0 {
            try event(
                user: field(0, starts.0, ends.0),
                item: field(1, starts.1, ends.1),
                time: field(2, starts.2, ends.2),
                event: field(3, starts.3, ends.3),
                value: field(4, starts.4, ends.4),
                stage: staging
            )
        } else {
            // Rare path: substitute unescaped copies for the quoted fields that had `""`.
            let ranges = [
                (starts.0, ends.0), (starts.1, ends.1), (starts.2, ends.2), (starts.3, ends.3), (starts.4, ends.4),
            ]
            let copies: [[UInt8]?] = (0..<5).map { r in
                if quoted & (1 << UInt8(r)) != 0 { return scratch[r] }
                guard ranges[r].1 >= 0 else { return nil }
                return Array(UnsafeRawBufferPointer(rebasing: b[ranges[r].0..<ranges[r].1]))
            }
            try withFields(copies)
        }
        return .complete
    }

    /// Calls ``event(user:item:time:event:value:)`` with owned copies of the fields (quoted CSV and JSON rows).
    mutating func withFields(_ fields: [[UInt8]?]) throws(TrainerError) {
        // One buffer holds every field so a single pointer scope covers them all.
        var joined: [UInt8] = []
        var spans: [(Int, Int)?] = []
        for f in fields {
            if let f {
                spans.append((joined.count, joined.count + f.count))
                joined.append(contentsOf: f)
            } else {
                spans.append(nil)
            }
        }
        joined.append(0)
        var failure: TrainerError?
        joined.withUnsafeBytes { j in
            let f = spans.map { s in s.map { UnsafeRawBufferPointer(rebasing: j[$0.0..<$0.1]) } }
            do throws(TrainerError) {
                try event(user: f[0], item: f[1], time: f[2], event: f[3], value: f[4])
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    // MARK: Events

    @inline(__always)
    mutating func event(
        user: UnsafeRawBufferPointer?,
        item: UnsafeRawBufferPointer?,
        time: UnsafeRawBufferPointer?,
        event: UnsafeRawBufferPointer?,
        value: UnsafeRawBufferPointer?,
        stage: Bool = false
    ) throws(TrainerError) {
        guard let user, !user.isEmpty else { return try bad("missing user") }
        guard let item, !item.isEmpty else { return try bad("missing item") }
        // The model file (and the wire protocol) hold ids of at most 1024 bytes: one longer id would otherwise fail
        // the whole run when the file is written, after all the training.
        if user.count > StringTable.maxStringBytes || item.count > StringTable.maxStringBytes {
            let (role, bytes) = user.count > StringTable.maxStringBytes ? ("user", user.count) : ("item", item.count)
            return try bad(
                "\(role) id of \(bytes) bytes (at most \(StringTable.maxStringBytes))",
                kind: "\(role) id over \(StringTable.maxStringBytes) bytes"
            )
        }
        guard let time, !time.isEmpty else { return try bad("missing timestamp") }
        guard let t = Timestamp.parse(time) else {
            return try bad(
                "unparsable timestamp \"\(String(decoding: time.prefix(40), as: UTF8.self))\"",
                kind: "unparsable timestamp"
            )
        }
        if let limit = options.latestTime, t > limit {
            return try bad(
                "timestamp \(t) is in the future (after the latest allowed time \(limit))",
                kind: "timestamp in the future"
            )
        }
        var s: Float = 1
        var source = strength
        if source == .auto { source = event != nil ? .event : value != nil ? .value : .constant }
        switch source {
        case .event:
            guard let event, !event.isEmpty else { return try bad("missing event type") }
            let id = Int(events.intern(event))
            if id == eventWeightById.count {
                let name = String(decoding: event, as: UTF8.self).lowercased()
                eventWeightById.append(options.eventWeights[name])
            }
            guard let w = eventWeightById[id] else {
                return try bad("unknown event type \"\(String(decoding: event.prefix(40), as: UTF8.self))\"")
            }
            s = w
        case .value:
            guard let value, !value.isEmpty else { return try bad("missing value") }
            let text = String(decoding: value.prefix(40), as: UTF8.self)
            guard let v = Self.parseFloat(value), !v.isNaN else {
                return try bad("unparsable value \"\(text)\"", kind: "unparsable value")
            }
            // A number past the float range (1e308) parses as infinite: it is too large, not unreadable.
            guard v >= 0 else { return try bad("negative value \(v.isFinite ? "\(v)" : text)", kind: "negative value") }
            guard v <= IngestOptions.largestStrength else {
                return try bad(
                    "value \(v.isFinite ? "\(v)" : text) is above \(IngestOptions.largestStrength), the largest strength",
                    kind: "value above the largest strength"
                )
            }
            s = v
        case .constant, .auto:
            s = 1
        }
        if stage {
            stagedUsers.append(user)
            stagedItems.append(item)
            if stagedUsers.count >= Self.stageLimit { flushStaged() }
        } else {
            flushStaged()  // ids are given in row order
            log.users.append(users.intern(user))
            log.items.append(items.intern(item))
        }
        log.times.append(t)
        log.strengths.append(s)
    }

    /// Interns the staged fields in row order (the same ids as one at a time). Their hashes come first, so each
    /// lookup's table slot, then its id's hash and offset, then its bytes are prefetched 24, 16 and 8 rows ahead: on a
    /// 200k-user log, the waits on those cache misses were half of ingest (perf), and prefetched they overlap.
    mutating func flushStaged() {
        let n = stagedUsers.count
        guard n > 0 else { return }
        stagedHashes.removeAll(keepingCapacity: true)
        for k in 0..<n { stagedHashes.append(ByteInterner.hash(stagedUsers[k])) }
        for k in 0..<n { stagedHashes.append(ByteInterner.hash(stagedItems[k])) }
        let (far, near, last) = (24, 16, 8)
        stagedHashes.withUnsafeBufferPointer { h in
            for k in 0..<min(far, n) {
                users.prefetchSlot(hash: h[k])
                items.prefetchSlot(hash: h[n + k])
            }
            for k in 0..<n {
                if k + far < n {
                    users.prefetchSlot(hash: h[k + far])
                    items.prefetchSlot(hash: h[n + k + far])
                }
                if k + near < n {
                    users.prefetchEntry(hash: h[k + near])
                    items.prefetchEntry(hash: h[n + k + near])
                }
                if k + last < n {
                    users.prefetchBytes(hash: h[k + last])
                    items.prefetchBytes(hash: h[n + k + last])
                }
                log.users.append(users.intern(stagedUsers[k], hash: h[k]))
                log.items.append(items.intern(stagedItems[k], hash: h[n + k]))
            }
        }
        stagedUsers.removeAll(keepingCapacity: true)
        stagedItems.removeAll(keepingCapacity: true)
    }

    /// Parses a decimal number; integers take a fast path.
    @inline(__always)
    static func parseFloat(_ b: UnsafeRawBufferPointer) -> Float? {
        var v: Int = 0
        var i = 0
        var negative = false
        if b[0] == UInt8(ascii: "-") {
            negative = true
            i = 1
        }
        let n = b.count
        guard i < n else { return nil }
        while i < n {
            let d = b[i] &- 48
            if d > 9 { break }
            v = v &* 10 &+ Int(d)
            i &+= 1
            if i > 15 { break }
        }
        if i == n { return negative ? -Float(v) : Float(v) }
        return Float(String(decoding: b, as: UTF8.self))
    }
}

extension String {
    func trimmingCharacters(in c: Character) -> String {
        var s = Substring(self)
        while s.first == c { s = s.dropFirst() }
        while s.last == c { s = s.dropLast() }
        return String(s)
    }
}
