/// Timings of one benchmark case, in nanoseconds, in the order they were taken.
struct Samples {
    let name: String
    /// Unit the report uses: "ms" or "us".
    let unit: String
    /// Bytes one measured call reads, for a GB/s column; 0 when not meaningful.
    let bytes: Int
    private(set) var nanoseconds: [Double] = []

    init(name: String, unit: String, bytes: Int) {
        self.name = name
        self.unit = unit
        self.bytes = bytes
    }

    mutating func append(_ ns: UInt64) { nanoseconds.append(Double(ns)) }

    private var scale: Double { unit == "us" ? 1e3 : 1e6 }
    private var sorted: [Double] { nanoseconds.sorted() }

    /// Nearest-rank percentile `p` (0...1) in ``unit``.
    func percentile(_ p: Double) -> Double {
        let s = sorted
        guard !s.isEmpty else { return .nan }
        let rank = Swift.max(1, Int((p * Double(s.count)).rounded(.up)))
        return s[Swift.min(rank, s.count) - 1] / scale
    }

    var min: Double { (sorted.first ?? .nan) / scale }
    var p90: Double { percentile(0.9) }
    var median: Double {
        let s = sorted
        guard !s.isEmpty else { return .nan }
        let mid = s.count / 2
        return (s.count % 2 == 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2) / scale
    }
    /// Throughput at the median, in GB/s (10^9 bytes per second).
    var gigabytesPerSecond: Double {
        guard bytes > 0 else { return .nan }
        return Double(bytes) / (median * scale)
    }

    func json(indent: String = "") -> String {
        var fields: [(String, String)] = [
            ("unit", JSON.string(unit)),
            ("bytes", String(bytes)),
            ("count", String(nanoseconds.count)),
            ("min", JSON.number(min)),
            ("median", JSON.number(median)),
            ("p90", JSON.number(p90)),
        ]
        if bytes > 0 { fields.append(("gb_per_s", JSON.number(gigabytesPerSecond))) }
        fields.append(("samples", "[" + nanoseconds.map { JSON.number($0 / scale) }.joined(separator: ", ") + "]"))
        return JSON.object(fields, indent: indent)
    }
}

/// Just enough JSON writing for the report (no Foundation in this target).
enum JSON {
    static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    out += "\\u00" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// A finite number with at most 6 decimals, or null.
    static func number(_ x: Double) -> String {
        guard x.isFinite else { return "null" }
        return Format.fixed(x, decimals: 6, trimZeros: true)
    }

    static func object(_ fields: [(String, String)], indent: String = "") -> String {
        guard !fields.isEmpty else { return "{}" }
        let inner = indent + "  "
        return "{\n" + fields.map { inner + string($0.0) + ": " + $0.1 }.joined(separator: ",\n") + "\n" + indent + "}"
    }
}

enum Format {
    /// `x` with exactly `decimals` digits after the point (or trailing zeros trimmed).
    static func fixed(_ x: Double, decimals: Int, trimZeros: Bool = false) -> String {
        guard x.isFinite else { return x.isNaN ? "nan" : (x > 0 ? "inf" : "-inf") }
        var p: Double = 1
        for _ in 0..<decimals { p *= 10 }
        let scaled = (abs(x) * p).rounded()
        guard scaled < 9e18 else { return String(x) }
        let n = UInt64(scaled)
        let pInt = UInt64(p)
        var fraction = decimals > 0 ? String(n % pInt) : ""
        while fraction.count < decimals { fraction = "0" + fraction }
        if trimZeros { while fraction.hasSuffix("0") { fraction.removeLast() } }
        let sign = x < 0 && n != 0 ? "-" : ""
        return sign + String(n / pInt) + (fraction.isEmpty ? "" : "." + fraction)
    }

    static func pad(_ s: String, _ width: Int, right: Bool = true) -> String {
        let fill = String(repeating: " ", count: Swift.max(0, width - s.count))
        return right ? fill + s : s + fill
    }
}
