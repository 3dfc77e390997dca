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
        let text: String
        do {
            text = try String(decoding: readFile(path), as: UTF8.self)
        } catch {
            throw error
        }
        var lines = text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        guard !lines.isEmpty else { throw TrainerError(.badHeader, "\(path): empty attributes file") }
        let headerLine = String(lines.removeFirst())
        let delimiter: Character = headerLine.contains("\t") && !headerLine.contains(",") ? "\t" : ","
        let header = splitCSVLine(headerLine, delimiter: delimiter).map { $0.lowercased() }
        func column(_ names: [String]) -> Int? { names.lazy.compactMap { header.firstIndex(of: $0) }.first }
        guard let itemCol = column(["item", "item_id", "itemid", "product_id", "product"]) else {
            throw TrainerError(.badHeader, "\(path): no item column in \(header)")
        }
        let catCol = column(
            categoryColumn.map { [$0.lowercased()] } ?? ["category", "genres", "genre", "department", "aisle"]
        )
        let brandCol = column(["brand"])
        let priceCol = column(["price"])
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
            let f = splitCSVLine(String(line), delimiter: delimiter)
            guard itemCol < f.count, let row = rowOf[f[itemCol]] else {
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

    /// Splits one CSV line, honouring double quotes and `""` escapes.
    package static func splitCSVLine(_ line: String, delimiter: Character) -> [String] {
        var out: [String] = []
        var field = ""
        var inQuotes = false
        var chars = line.makeIterator()
        var pending: Character? = nil
        while let c = pending ?? chars.next() {
            pending = nil
            if inQuotes {
                if c == "\"" {
                    if let n = chars.next() {
                        if n == "\"" {
                            field.append("\"")
                        } else {
                            inQuotes = false
                            pending = n
                        }
                    } else {
                        inQuotes = false
                    }
                } else {
                    field.append(c)
                }
            } else if c == "\"" && field.isEmpty {
                inQuotes = true
            } else if c == delimiter {
                out.append(field)
                field = ""
            } else {
                field.append(c)
            }
        }
        out.append(field)
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
