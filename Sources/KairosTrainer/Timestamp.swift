/// Parses event times from raw bytes: unix seconds (integer or decimal) or ISO-8601.
package enum Timestamp {
    /// Unix seconds of `bytes`, or nil when it is neither unix time nor ISO-8601.
    ///
    /// Plain numbers are unix seconds; numbers of 10^11 and more are taken as milliseconds (a common log
    /// convention; 10^11 seconds is the year 5138). ISO-8601: `YYYY-MM-DD`, optionally followed by `T` or a space,
    /// `HH:MM[:SS[.fraction]]` and `Z` or `+HH:MM`/`+HHMM`/`-HH:MM`; without a zone the time is UTC.
    @inline(__always)
    package static func parse(_ b: UnsafeRawBufferPointer) -> Int64? {
        let n = b.count
        guard n > 0 else { return nil }
        if n >= 10, b[4] == UInt8(ascii: "-") { return parseISO(b) }
        var i = 0
        var negative = false
        if b[0] == UInt8(ascii: "-") {
            negative = true
            i = 1
        }
        var v: Int64 = 0
        var digits = 0
        while i < n {
            let d = b[i] &- 48
            if d > 9 { break }
            if digits > 17 { return nil }
            v = v &* 10 &+ Int64(d)
            digits &+= 1
            i &+= 1
        }
        guard digits > 0 else { return nil }
        if i < n {
            // A fractional part is allowed and truncated; anything else is not a number.
            guard b[i] == UInt8(ascii: ".") else { return nil }
            i &+= 1
            while i < n {
                guard b[i] &- 48 <= 9 else { return nil }
                i &+= 1
            }
        }
        if v >= 100_000_000_000 { v /= 1000 }
        return negative ? -v : v
    }

    /// Parses `count` ASCII digits at `at`.
    @inline(__always)
    private static func digits(_ b: UnsafeRawBufferPointer, _ at: Int, _ count: Int) -> Int? {
        guard at + count <= b.count else { return nil }
        var v = 0
        for i in at..<(at + count) {
            let d = b[i] &- 48
            guard d <= 9 else { return nil }
            v = v * 10 + Int(d)
        }
        return v
    }

    static func parseISO(_ b: UnsafeRawBufferPointer) -> Int64? {
        guard let y = digits(b, 0, 4), b[4] == UInt8(ascii: "-"), let mo = digits(b, 5, 2),
            b[7] == UInt8(ascii: "-"), let d = digits(b, 8, 2), (1...12).contains(mo), d >= 1, d <= daysInMonth(y, mo)
        else { return nil }  // 2024-02-30 is damage, not March 1st
        var secs = daysFromCivil(y, mo, d) * 86400
        var i = 10
        let n = b.count
        if i < n, b[i] == UInt8(ascii: "T") || b[i] == UInt8(ascii: " ") || b[i] == UInt8(ascii: "t") {
            guard let hh = digits(b, i + 1, 2), i + 3 < n, b[i + 3] == UInt8(ascii: ":"), let mm = digits(b, i + 4, 2),
                hh < 24 && mm <= 59 || hh == 24 && mm == 0  // 24:00 is the end of the day, as ISO-8601 allows
            else { return nil }
            secs += Int64(hh * 3600 + mm * 60)
            i += 6
            if i < n, b[i] == UInt8(ascii: ":") {
                guard let ss = digits(b, i + 1, 2), ss <= 60, hh < 24 || ss == 0 else { return nil }
                secs += Int64(ss)
                i += 3
                if i < n, b[i] == UInt8(ascii: ".") || b[i] == UInt8(ascii: ",") {
                    i += 1
                    while i < n, b[i] &- 48 <= 9 { i += 1 }
                }
            }
        }
        if i < n {
            let c = b[i]
            if c == UInt8(ascii: "Z") || c == UInt8(ascii: "z") {
                i += 1
            } else if c == UInt8(ascii: "+") || c == UInt8(ascii: "-") {
                guard let oh = digits(b, i + 1, 2) else { return nil }
                var j = i + 3
                if j < n, b[j] == UInt8(ascii: ":") { j += 1 }
                guard let om = digits(b, j, 2), oh <= 23, om <= 59 else { return nil }
                let offset = Int64(oh * 3600 + om * 60)
                secs += c == UInt8(ascii: "+") ? -offset : offset
                i = j + 2
            } else {
                return nil
            }
        }
        return i == n ? secs : nil
    }

    /// Days in `month` (1-12) of `year`, Gregorian leap years.
    static func daysInMonth(_ year: Int, _ month: Int) -> Int {
        if month == 2 { return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28 }
        return month == 4 || month == 6 || month == 9 || month == 11 ? 30 : 31
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    package static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return Int64(era * 146097 + doe - 719468)
    }
}
