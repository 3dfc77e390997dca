public import KairosModelFormat

#if canImport(Glibc)
    import Glibc
#endif

/// Reads an item attributes CSV/TSV (`item,category[,brand][,price]...`, header required) aligned to item rows.
public enum ItemAttributesReader {
    /// Attributes for `itemIds` (rows without a line in the file get no category/brand and a NaN price).
    ///
    /// The category column is the first of `category`, `genres`, `genre`, `department`, `aisle` (or
    /// `categoryColumn`); a multi-valued field (`a|b|c`) takes its first value.
    /// - Returns: the attributes and how many file rows named an unknown item or were malformed.
    public static func read(
        path: String,
        itemIds: [String],
        categoryColumn: String? = nil
    ) throws(TrainerError) -> (ItemAttributes, skipped: Int) {
        try read(path: path, itemIds: itemIds, categoryColumn: categoryColumn, chunkBytes: 4 << 20, maxRecordBytes: EventLogReader.maxRecordBytes)
    }

    /// ``read(path:itemIds:categoryColumn:)`` with reads of `chunkBytes` and records of at most `maxRecordBytes` (both
    /// small in tests, so that records cross reads and the limit is reached in a small file).
    ///
    /// The file is streamed: what is held at once is one read plus at most one record (a catalogue export of
    /// several GB with long descriptions costs the attribute arrays, not the file's size several times over).
    static func read(
        path: String,
        itemIds: [String],
        categoryColumn: String?,
        chunkBytes: Int,
        maxRecordBytes: Int
    ) throws(TrainerError) -> (ItemAttributes, skipped: Int) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw TrainerError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var pending: [UInt8] = []
        var atEOF = false
        func readMore() throws(TrainerError) {
            let before = pending.count
            pending.append(contentsOf: repeatElement(0, count: chunkBytes))
            var got = -1
            while got < 0 {
                got = pending.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + before, chunkBytes) }
                if got < 0 && errno != EINTR { throw TrainerError(.io, "read \(path): \(String(cString: strerror(errno)))") }
            }
            pending.removeLast(chunkBytes - got)
            atEOF = got == 0
        }

        // The header: after a byte-order mark and blank lines, the first line, shorter than a record's limit. Each
        // decision waits for the bytes it needs, so that it is the same however the file is split into reads.
        var headerEnd: Int?
        var markChecked = false
        while true {
            if !markChecked && (pending.count >= 3 || atEOF) {
                if pending.starts(with: [0xEF, 0xBB, 0xBF]) { pending.removeFirst(3) }  // a byte-order mark
                markChecked = true
            }
            if markChecked {
                pending.removeFirst(pending.firstIndex { $0 != 0x0A && $0 != 0x0D } ?? pending.count)  // blank lines
                let end = pending.firstIndex(of: 0x0A)
                if (end ?? pending.count) >= maxRecordBytes {
                    throw TrainerError(.badHeader, "\(path): the first line is longer than \(EventLogReader.describe(bytes: maxRecordBytes)): not a CSV or TSV file with a header row?")
                }
                if end != nil || atEOF {
                    headerEnd = end
                    break
                }
            }
            try readMore()
        }
        let lineEnd = headerEnd ?? pending.count
        var firstLine = pending[..<lineEnd]
        if firstLine.last == 0x0D { firstLine = firstLine.dropLast() }
        guard !firstLine.isEmpty else { throw TrainerError(.badHeader, "\(path): empty attributes file") }
        let comma = UInt8(ascii: ",")
        let delimiter: UInt8 = firstLine.contains(0x09) && !firstLine.contains(comma) ? 0x09 : comma
        let header = (records(firstLine, delimiter: delimiter, lineBreaksIn: { _ in false }).first.flatMap { $0 } ?? [])
            .map { $0.lowercased() }
        func column(_ names: [String]) -> Int? { names.lazy.compactMap { header.firstIndex(of: $0) }.first }
        guard let itemCol = column(["item", "item_id", "itemid", "product_id", "product"]) else {
            throw TrainerError(.badHeader, "\(path): no item column in \(header.map { String($0.prefix(200)) })")
        }
        let catCol = column(
            categoryColumn.map { [$0.lowercased()] } ?? ["category", "genres", "genre", "department", "aisle"]
        )
        let brandCol = column(["brand"])
        let priceCol = column(["price"])
        let used = Set([itemCol, catCol, brandCol, priceCol].compactMap { $0 })
        pending.removeFirst(min(lineEnd + 1, pending.count))

        var rowOf: [String: Int] = [:]
        for (i, id) in itemIds.enumerated() { rowOf[id] = i }
        var category = [UInt32](repeating: ItemAttributes.none, count: itemIds.count)
        var brand = [UInt32](repeating: ItemAttributes.none, count: itemIds.count)
        var price = [Float](repeating: .nan, count: itemIds.count)
        var categoryNames: [String] = []
        var categoryIndex: [String: UInt32] = [:]
        var brandNames: [String] = []
        var brandIndex: [String: UInt32] = [:]
        var skipped = 0
        func row(_ line: [String]?) {
            guard let f = line, itemCol < f.count, let row = rowOf[f[itemCol]] else {
                skipped += 1
                return
            }
            // Names are stored as model strings (at most 1024 bytes); a longer one is left out like an empty one.
            if let c = catCol, c < f.count, let name = f[c].split(separator: "|").first.map(String.init), !name.isEmpty,
                name.utf8.count <= StringTable.maxStringBytes
            {
                let id =
                    categoryIndex[name]
                    ?? {
                        let id = UInt32(categoryNames.count)
                        categoryNames.append(name)
                        categoryIndex[name] = id
                        return id
                    }()
                category[row] = id
            }
            if let c = brandCol, c < f.count, !f[c].isEmpty, f[c].utf8.count <= StringTable.maxStringBytes {
                let name = f[c]
                let id =
                    brandIndex[name]
                    ?? {
                        let id = UInt32(brandNames.count)
                        brandNames.append(name)
                        brandIndex[name] = id
                        return id
                    }()
                brand[row] = id
            }
            if let c = priceCol, c < f.count, let p = Float(f[c]), p.isFinite { price[row] = p }
        }
        var skipping = false
        while true {
            if atEOF && pending.isEmpty { break }
            if !atEOF { try readMore() }
            let consumed = forEachRecord(
                pending[...],
                final: atEOF,
                delimiter: delimiter,
                lineBreaksIn: { !used.contains($0) },
                maxRecordBytes: maxRecordBytes,
                keepsText: { used.contains($0) },  // a description is parsed past, never made a String
                skippingLine: &skipping,
                row
            )
            pending.removeFirst(consumed)
            if atEOF { break }
        }
        let attrs = ItemAttributes(
            category: category,
            brand: brand,
            price: price,
            categoryNames: categoryNames,
            brandNames: brandNames
        )
        return (attrs, skipped)
    }

    /// Splits CSV bytes into records of fields, skipping empty lines (all of `text`, as the last of a file).
    package static func records(
        _ text: ArraySlice<UInt8>,
        delimiter: UInt8,
        lineBreaksIn: (Int) -> Bool
    ) -> [[String]?] {
        var out: [[String]?] = []
        var skipping = false
        _ = forEachRecord(
            text, final: true, delimiter: delimiter, lineBreaksIn: lineBreaksIn,
            maxRecordBytes: EventLogReader.maxRecordBytes, skippingLine: &skipping
        ) {
            out.append($0)
        }
        return out
    }

    /// Hands `body` the records of `text` as fields, skipping empty lines (RFC 4180: a quoted field may hold the
    /// delimiter, `""` for a quote, and line breaks, as product descriptions in catalogue exports do).
    ///
    /// A record is at most `maxRecordBytes` long (``EventLogReader/maxRecordBytes`` but in tests). A quote still open after that many bytes or at the
    /// end of the file is a stray. So is a record of several lines with a line break in a column where `lineBreaksIn`
    /// says none belongs (an id, a category), or with text after a closing quote: its "closing" quote opened a later
    /// row's field. The first line is then a malformed record (nil) and reading goes on at the next line, so one bad
    /// quote cannot swallow the rows after it. A line longer than the limit is one malformed record too.
    ///
    /// Fields of columns that `keepsText` declines are handed over empty.
    ///
    /// Unless `final` (the end of the file), a record is begun only with more than the limit's bytes after it, so
    /// that it ends the same however the file is split into reads.
    /// - Parameter skippingLine: in and out: the bytes up to the next line feed belong to an overlong line.
    /// - Returns: how many bytes of `text` were used up (all of them when `final`).
    static func forEachRecord(
        _ text: ArraySlice<UInt8>,
        final: Bool,
        delimiter: UInt8,
        lineBreaksIn: (Int) -> Bool,
        maxRecordBytes maxRecord: Int,
        keepsText: (Int) -> Bool = { _ in true },
        skippingLine: inout Bool,
        _ body: ([String]?) -> Void
    ) -> Int {
        let quote = UInt8(ascii: "\""), lf: UInt8 = 0x0A, cr: UInt8 = 0x0D
        var pos = text.startIndex
        let n = text.endIndex
        if skippingLine {
            guard let nl = text.firstIndex(of: lf) else { return text.count }
            pos = nl + 1
            skippingLine = false
        }
        var field: [UInt8] = []
        while pos < n && (final || n - pos > maxRecord) {
            var fields: [String] = []
            field.removeAll(keepingCapacity: true)
            var i = pos
            var malformed = false
            var multiLine = false  // a quoted field so far held a line break
            var fieldStart = true
            let limit = min(n, pos + maxRecord)
            record: while i < n {
                if i >= limit {
                    malformed = true  // a line longer than a record may be
                    break record
                }
                let c = text[i]
                if fieldStart && c == quote {
                    var j = i + 1
                    while true {
                        guard j < limit else {
                            malformed = true
                            break record
                        }
                        if text[j] == quote {
                            if j + 1 < n && text[j + 1] == quote {
                                field.append(quote)
                                j += 2
                                continue
                            }
                            break
                        }
                        if text[j] == lf { multiLine = true }
                        field.append(text[j])
                        j += 1
                    }
                    i = j + 1
                    fieldStart = false
                    // Text after a closing quote on a record of several lines: that quote opened a later row's field.
                    if multiLine, i < n, text[i] != delimiter, text[i] != lf, text[i] != cr {
                        malformed = true
                        break record
                    }
                    continue
                }
                fieldStart = false
                if c == delimiter {
                    if multiLine && field.contains(lf) && !lineBreaksIn(fields.count) {
                        malformed = true
                        break record
                    }
                    fields.append(keepsText(fields.count) ? String(decoding: field, as: UTF8.self) : "")
                    field.removeAll(keepingCapacity: true)
                    fieldStart = true
                } else if c == lf {
                    break
                } else if !(c == cr && i + 1 < n && text[i + 1] == lf) {
                    field.append(c)
                }
                i += 1
            }
            if malformed || (multiLine && field.contains(lf) && !lineBreaksIn(fields.count)) {
                body(nil)
                guard let nl = text[pos..<n].firstIndex(of: lf) else {
                    // The bad line goes on past these bytes: skip the rest of it in the next ones.
                    skippingLine = !final
                    return text.count
                }
                pos = nl + 1
                continue
            }
            pos = i + 1
            if fields.isEmpty && field.isEmpty { continue }  // an empty line
            fields.append(keepsText(fields.count) ? String(decoding: field, as: UTF8.self) : "")
            body(fields)
        }
        return min(pos, n) - text.startIndex
    }
}
