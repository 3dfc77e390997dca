extension EventLogReader {
    /// Parses one flat JSON object (`{"user": "u1", "item": 7, "timestamp": "2024-01-01T10:00:00Z", ...}`).
    ///
    /// Values may be strings (escapes are decoded) or bare numbers/literals (taken as their text); nested objects
    /// and arrays make the row bad. Unknown keys are ignored.
    mutating func jsonRow(_ b: UnsafeRawBufferPointer) throws(TrainerError) {
        var fields: [[UInt8]?] = [nil, nil, nil, nil, nil]
        let n = b.count
        var i = 0
        func skipSpace() { while i < n, b[i] == 0x20 || b[i] == 0x09 { i += 1 } }
        /// Reads a JSON string starting at the opening quote; nil when malformed.
        func string() -> [UInt8]? {
            guard i < n, b[i] == 0x22 else { return nil }
            i += 1
            var out: [UInt8] = []
            while i < n {
                let c = b[i]
                if c == 0x22 {
                    i += 1
                    return out
                }
                if c == 0x5C {
                    guard i + 1 < n else { return nil }
                    let e = b[i + 1]
                    i += 2
                    switch e {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "u"):
                        guard i + 4 <= n, let code = UInt32(String(decoding: b[i..<(i + 4)], as: UTF8.self), radix: 16)
                        else { return nil }
                        i += 4
                        out.append(
                            contentsOf: Array(String(UnicodeScalar(code).map { Character($0) } ?? "\u{FFFD}").utf8)
                        )
                    default: out.append(e)
                    }
                    continue
                }
                out.append(c)
                i += 1
            }
            return nil
        }
        skipSpace()
        guard i < n, b[i] == UInt8(ascii: "{") else { return try bad("not a JSON object") }
        i += 1
        skipSpace()
        if i < n, b[i] == UInt8(ascii: "}") { return try bad("empty JSON object") }
        while true {
            skipSpace()
            guard let keyBytes = string() else { return try bad("malformed JSON key") }
            skipSpace()
            guard i < n, b[i] == UInt8(ascii: ":") else { return try bad("malformed JSON: expected ':'") }
            i += 1
            skipSpace()
            guard i < n else { return try bad("malformed JSON: missing value") }
            var value: [UInt8]?
            if b[i] == 0x22 {
                guard let s = string() else { return try bad("malformed JSON string") }
                value = s
            } else if b[i] == UInt8(ascii: "{") || b[i] == UInt8(ascii: "[") {
                return try bad("nested JSON value")
            } else {
                let s = i
                while i < n, b[i] != UInt8(ascii: ","), b[i] != UInt8(ascii: "}"), b[i] != 0x20 { i += 1 }
                let text = Array(b[s..<i])
                value = text == Array("null".utf8) ? nil : text
            }
            let key = String(decoding: keyBytes, as: UTF8.self).lowercased()
            if let role = roleOfKey[key], fields[role.rawValue] == nil { fields[role.rawValue] = value }
            skipSpace()
            guard i < n else { return try bad("malformed JSON: unterminated object") }
            if b[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard b[i] == UInt8(ascii: "}") else { return try bad("malformed JSON: expected ',' or '}'") }
            break
        }
        try withFields(fields)
    }
}
