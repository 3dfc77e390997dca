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
        let bytes = try readFile(path)
        var body = bytes[...]
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }  // a byte-order mark
        while body.first == 0x0A || body.first == 0x0D { body = body.dropFirst() }
        let headerEnd = body.firstIndex(of: 0x0A) ?? body.endIndex
        var firstLine = body[..<headerEnd]
        if firstLine.last == 0x0D { firstLine = firstLine.dropLast() }
        guard !firstLine.isEmpty else { throw TrainerError(.badHeader, "\(path): empty attributes file") }
        let comma = UInt8(ascii: ",")
        let delimiter: UInt8 = firstLine.contains(0x09) && !firstLine.contains(comma) ? 0x09 : comma
        let headerFields = records(firstLine, delimiter: delimiter, lineBreaksIn: { _ in false }).first.flatMap { $0 }
        let header = (headerFields ?? []).map { $0.lowercased() }
        func column(_ names: [String]) -> Int? { names.lazy.compactMap { header.firstIndex(of: $0) }.first }
        guard let itemCol = column(["item", "item_id", "itemid", "product_id", "product"]) else {
            throw TrainerError(.badHeader, "\(path): no item column in \(header)")
        }
        let catCol = column(
            categoryColumn.map { [$0.lowercased()] } ?? ["category", "genres", "genre", "department", "aisle"]
        )
        let brandCol = column(["brand"])
        let priceCol = column(["price"])
        let used = Set([itemCol, catCol, brandCol, priceCol].compactMap { $0 })
        let rest = body[min(headerEnd + 1, body.endIndex)...]
        let lines = records(rest, delimiter: delimiter, lineBreaksIn: { !used.contains($0) })
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
        for line in lines {
            guard let f = line, itemCol < f.count, let row = rowOf[f[itemCol]] else {
                skipped += 1
                continue
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
        let attrs = ItemAttributes(
            category: category,
            brand: brand,
            price: price,
            categoryNames: categoryNames,
            brandNames: brandNames
        )
        return (attrs, skipped)
    }

    /// Splits CSV bytes into records of fields, skipping empty lines (RFC 4180: a quoted field may hold the
    /// delimiter, `""` for a quote, and line breaks, as product descriptions in catalogue exports do).
    ///
    /// A quote still open after ``EventLogReader/maxRecordBytes`` or at the end of the file is a stray. So is a record
    /// of several lines with a line break in a column where `lineBreaksIn` says none belongs (an id, a category), or
    /// with text after a closing quote: its "closing" quote opened a later row's field. The first line is then a
    /// malformed record (nil) and reading goes on at the next line, so one bad quote cannot swallow the rows after it.
    package static func records(
        _ text: ArraySlice<UInt8>,
        delimiter: UInt8,
        lineBreaksIn: (Int) -> Bool
    ) -> [[String]?] {
        let quote = UInt8(ascii: "\""), lf: UInt8 = 0x0A, cr: UInt8 = 0x0D
        var out: [[String]?] = []
        var pos = text.startIndex
        let n = text.endIndex
        while pos < n {
            var fields: [String] = []
            var field: [UInt8] = []
            var i = pos
            var malformed = false
            var multiLine = false  // a quoted field so far held a line break
            var fieldStart = true
            record: while i < n {
                let c = text[i]
                if fieldStart && c == quote {
                    let limit = min(n, pos + EventLogReader.maxRecordBytes)
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
                    fields.append(String(decoding: field, as: UTF8.self))
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
                out.append(nil)
                pos = (text[pos..<n].firstIndex(of: lf) ?? n - 1) + 1
                continue
            }
            pos = i + 1
            if fields.isEmpty && field.isEmpty { continue }  // an empty line
            fields.append(String(decoding: field, as: UTF8.self))
            out.append(fields)
        }
        return out
    }

    static func readFile(_ path: String) throws(TrainerError) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw TrainerError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 { throw TrainerError(.io, "read \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }
}
