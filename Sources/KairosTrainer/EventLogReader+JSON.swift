#if canImport(Glibc)
    import Glibc
#endif

extension EventLogReader {
    /// Parses one flat JSON object (`{"user": "u1", "item": 7, "timestamp": "2024-01-01T10:00:00Z", ...}`).
    ///
    /// Values may be strings (escapes are decoded) or bare numbers/literals (taken as their text). A nested object or
    /// array is skipped under a key Kairos does not read (event exports carry nested properties) and makes the row bad
    /// under one it does. Unknown keys are ignored; of a repeated key the first non-null value counts.
    ///
    /// Fields are byte ranges into the line, as in CSV: only keys and values with escapes are copied (measured on a
    /// 2M-line log, copying every key and value into arrays and lowercasing keys as Strings read 0.75M lines/s).
    mutating func jsonRow(_ b: UnsafeRawBufferPointer) throws(TrainerError) {
        var starts = (0, 0, 0, 0, 0)
        var ends = (-1, -1, -1, -1, -1)
        var escapedRoles: UInt8 = 0
        let n = b.count
        var i = 0
        func skipSpace() { while i < n, b[i] == 0x20 || b[i] == 0x09 { i += 1 } }
        /// The string starting at the opening quote: its content range, and whether it has escapes; nil if malformed.
        func string() -> (start: Int, end: Int, escaped: Bool)? {
            guard i < n, b[i] == 0x22 else { return nil }
            i += 1
            let start = i
            var escaped = false
            while i < n {
                let c = b[i]
                if c == 0x22 {
                    i += 1
                    return (start, i - 1, escaped)
                }
                if c == 0x5C {
                    // Checked here, not only when decoded, so a bad escape in any key or value makes the row bad.
                    guard i + 1 < n else { return nil }
                    escaped = true
                    if b[i + 1] == UInt8(ascii: "u") {
                        guard i + 6 <= n, (2..<6).allSatisfy({ Self.isHexDigit(b[i + $0]) }) else { return nil }
                        i += 6
                    } else {
                        i += 2
                    }
                    continue
                }
                i += 1
            }
            return nil
        }
        skipSpace()
        guard i < n, b[i] == UInt8(ascii: "{") else { return try bad("not a JSON object") }
        i += 1
        skipSpace()
        if i < n, b[i] == UInt8(ascii: "}") { return try bad("empty JSON object") }
        var ordinal = 0
        while true {
            skipSpace()
            guard let key = string() else { return try bad("malformed JSON key") }
            skipSpace()
            guard i < n, b[i] == UInt8(ascii: ":") else { return try bad("malformed JSON: expected ':'") }
            i += 1
            skipSpace()
            guard i < n else { return try bad("malformed JSON: missing value") }
            // The value's range (nil for null) and whether it needs unescaping.
            var value: (start: Int, end: Int, escaped: Bool)?
            if b[i] == 0x22 {
                guard let s = string() else { return try bad("malformed JSON string") }
                value = s
            } else if b[i] == UInt8(ascii: "{") || b[i] == UInt8(ascii: "[") {
                if role(ofKey: b, key) != nil {
                    let name = String(decoding: b[key.start..<key.end].prefix(40), as: UTF8.self)
                    return try bad("nested JSON value for \"\(name)\"")
                }
                // Skipped with its brackets matched: a stack of up to 64 levels, one bit each (1 = array).
                var stack: UInt64 = 0
                var depth = 0
                repeat {
                    let c = b[i]
                    if c == 0x22 {
                        guard string() != nil else { return try bad("malformed JSON string") }
                        continue
                    }
                    if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                        guard depth < 64 else { return try bad("JSON nested more than 64 levels") }
                        stack = stack << 1 | (c == UInt8(ascii: "[") ? 1 : 0)
                        depth += 1
                    } else if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                        guard (stack & 1 == 1) == (c == UInt8(ascii: "]")) else {
                            return try bad("malformed JSON: mismatched bracket")
                        }
                        stack >>= 1
                        depth -= 1
                    }
                    i += 1
                } while depth > 0 && i < n
                guard depth == 0 else { return try bad("malformed JSON: unterminated object") }
                value = nil
            } else {
                let s = i
                while i < n, b[i] != UInt8(ascii: ","), b[i] != UInt8(ascii: "}"), b[i] != 0x20 { i += 1 }
                let isNull = i - s == 4 && b[s] == UInt8(ascii: "n") && b[s + 1] == UInt8(ascii: "u")
                    && b[s + 2] == UInt8(ascii: "l") && b[s + 3] == UInt8(ascii: "l")
                value = isNull ? nil : (s, i, false)
            }
            let keyRole = memoizedRole(ofKey: b, key, at: ordinal)
            ordinal += 1
            if let value, let role = keyRole {
                let r = role.rawValue
                let unset: Bool
                switch r {
                case 0: unset = ends.0 < 0
                case 1: unset = ends.1 < 0
                case 2: unset = ends.2 < 0
                case 3: unset = ends.3 < 0
                default: unset = ends.4 < 0
                }
                if unset {
                    if value.escaped {
                        guard let decoded = Self.unescape(UnsafeRawBufferPointer(rebasing: b[value.start..<value.end]))
                        else { return try bad("malformed JSON string") }
                        scratch[r] = decoded
                        escapedRoles |= 1 << UInt8(r)
                    }
                    switch r {
                    case 0: (starts.0, ends.0) = (value.start, value.end)
                    case 1: (starts.1, ends.1) = (value.start, value.end)
                    case 2: (starts.2, ends.2) = (value.start, value.end)
                    case 3: (starts.3, ends.3) = (value.start, value.end)
                    default: (starts.4, ends.4) = (value.start, value.end)
                    }
                }
            }
            skipSpace()
            guard i < n else { return try bad("malformed JSON: unterminated object") }
            if b[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard b[i] == UInt8(ascii: "}") else { return try bad("malformed JSON: expected ',' or '}'") }
            break
        }
        if escapedRoles == 0 {
            func field(_ s: Int, _ e: Int) -> UnsafeRawBufferPointer? {
                e < 0 ? nil : UnsafeRawBufferPointer(rebasing: b[s..<e])
            }
            try event(
                user: field(starts.0, ends.0),
                item: field(starts.1, ends.1),
                time: field(starts.2, ends.2),
                event: field(starts.3, ends.3),
                value: field(starts.4, ends.4),
                stage: staging
            )
        } else {
            let ranges = [
                (starts.0, ends.0), (starts.1, ends.1), (starts.2, ends.2), (starts.3, ends.3), (starts.4, ends.4),
            ]
            // Rare path: the unescaped copies stand in for the fields that had escapes.
            try withFields((0..<5).map { r in
                if escapedRoles & (1 << UInt8(r)) != 0 { return scratch[r] }
                return ranges[r].1 < 0 ? nil : Array(UnsafeRawBufferPointer(rebasing: b[ranges[r].0..<ranges[r].1]))
            })
        }
    }

    /// ``role(ofKey:_:)`` through ``jsonKeyMemo``: the key at `ordinal` is first compared with the one there last time.
    mutating func memoizedRole(
        ofKey b: UnsafeRawBufferPointer,
        _ key: (start: Int, end: Int, escaped: Bool),
        at ordinal: Int
    ) -> Role? {
        guard !key.escaped else { return role(ofKey: b, key) }
        let bytes = UnsafeRawBufferPointer(rebasing: b[key.start..<key.end])
        if ordinal < jsonKeyMemo.count {
            let same = jsonKeyMemo[ordinal].key.withUnsafeBytes { last in
                last.count == bytes.count && (bytes.isEmpty || memcmp(last.baseAddress!, bytes.baseAddress!, bytes.count) == 0)
            }
            if same { return jsonKeyMemo[ordinal].role }
        }
        let found = role(ofKey: b, key)
        if ordinal < jsonKeyMemo.count {
            jsonKeyMemo[ordinal] = (Array(bytes), found)
        } else if ordinal == jsonKeyMemo.count && ordinal < 64 {
            jsonKeyMemo.append((Array(bytes), found))  // at most 64 positions: a line with thousands of keys is rare
        }
        return found
    }

    /// The role a JSON key names (case-insensitive), if any. ASCII keys without escapes are compared in place.
    func role(ofKey b: UnsafeRawBufferPointer, _ key: (start: Int, end: Int, escaped: Bool)) -> Role? {
        let bytes = UnsafeRawBufferPointer(rebasing: b[key.start..<key.end])
        if !key.escaped && !bytes.contains(where: { $0 >= 0x80 }) {
            outer: for (name, role) in asciiKeys where name.count == bytes.count {
                for (x, y) in zip(name, bytes) where x != (y &- 0x41 < 26 ? y | 0x20 : y) { continue outer }
                return role
            }
            return nil  // an ASCII key can only equal an ASCII name
        }
        let decoded = key.escaped ? Self.unescape(bytes) : Array(bytes)
        return decoded.flatMap { roleOfKey[String(decoding: $0, as: UTF8.self).lowercased()] }
    }

    /// The value of the 4 hex digits at `b[i...]`, or nil.
    static func hex4(_ b: UnsafeRawBufferPointer, at i: Int) -> UInt32? {
        guard i + 4 <= b.count else { return nil }
        var v: UInt32 = 0
        for k in i..<(i + 4) {
            let c = b[k]
            guard isHexDigit(c) else { return nil }
            v = v << 4 | UInt32(c &- 0x30 < 10 ? c &- 0x30 : (c | 0x20) &- 0x61 + 10)
        }
        return v
    }

    static func isHexDigit(_ c: UInt8) -> Bool {
        (c &- 0x30) < 10 || (c | 0x20) &- 0x61 < 6
    }

    /// The bytes of a JSON string's content with its escapes decoded; nil when an escape is malformed.
    static func unescape(_ b: UnsafeRawBufferPointer) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        var i = 0
        let n = b.count
        while i < n {
            let c = b[i]
            guard c == 0x5C else {
                out.append(c)
                i += 1
                continue
            }
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
                guard var code = hex4(b, at: i) else { return nil }
                i += 4
                // A character outside the BMP is a surrogate pair, "\ud83d\ude00" (Python's json.dumps writes them so
                // by default). They were decoded one by one into two U+FFFD, so every such id read the same.
                if (0xD800...0xDBFF).contains(code) {
                    guard i + 6 <= n, b[i] == 0x5C, b[i + 1] == UInt8(ascii: "u"), let low = hex4(b, at: i + 2),
                        (0xDC00...0xDFFF).contains(low)
                    else { return nil }  // a lone high surrogate is no character
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                }
                guard let scalar = UnicodeScalar(code) else { return nil }  // a lone low surrogate
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default: out.append(e)
            }
        }
        return out
    }
}
