/// Small number formatting for progress lines and reports (no Foundation `String(format:)` needed).
package enum Format {
    /// `x` with at most `digits` decimals, trailing zeros removed (`0.5`, `12`, `0.0667`).
    package static func number(_ x: Double, digits: Int = 4) -> String {
        guard x.isFinite else { return "\(x)" }
        if x != 0, abs(x) < 0.001 || abs(x) >= 1e12 { return "\(Float(x))" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (x * scale).rounded() / scale
        var s = "\(r)"
        if s.hasSuffix(".0") { s.removeLast(2) }
        return s
    }

    /// `x` with exactly `decimals` decimals (`1.50`).
    package static func fixed(_ x: Double, _ decimals: Int) -> String {
        guard x.isFinite else { return "\(x)" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let negative = x < 0
        let v = (abs(x) * scale).rounded()
        let whole = Int(v / scale)
        var out = negative && v != 0 ? "-\(whole)" : "\(whole)"
        if decimals > 0 {
            let frac = Int(v - Double(whole) * scale)
            var f = "\(frac)"
            while f.count < decimals { f = "0" + f }
            out += "." + f
        }
        return out
    }

    /// Seconds as `1.23 s`, or `2m05s` from two minutes on.
    package static func seconds(_ s: Double) -> String {
        if s < 120 { return "\(fixed(s, s < 10 ? 2 : 1)) s" }
        let m = Int(s) / 60
        let r = Int(s) % 60
        return "\(m)m\(r < 10 ? "0" : "")\(r)s"
    }

    /// Bytes as `12.3 MB`.
    package static func bytes(_ n: Int) -> String {
        if n < 10_000 { return "\(n) B" }
        if n < 10_000_000 { return "\(fixed(Double(n) / 1e3, 1)) kB" }
        return "\(fixed(Double(n) / 1e6, 1)) MB"
    }
}
