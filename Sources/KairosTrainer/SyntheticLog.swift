import KairosModelFormat

#if canImport(Glibc)
    import Glibc
#endif

/// A deterministic generator of e-commerce-like event logs: users whose interests drift across categories,
/// daily and weekly rhythms, repeat purchases, and items that appear over time. Used by tests, benchmarks and to
/// build the shipped default model. Ids are `user-N` and `item-N`, categories `category-N` (item `i` is in
/// `i % categories`), the same shapes as `kairos make-demo-model`, so tools and examples work on either.
public struct SyntheticLog: Sendable {
    /// Users.
    public var users = 2000
    /// Items.
    public var items = 1000
    /// Categories (item `i` belongs to category `i % categories`).
    public var categories = 20
    /// Days covered, ending at ``end``.
    public var days = 90
    /// Mean events per user (per-user counts are heavy-tailed with a floor of 5).
    public var eventsPerUser = 50.0
    /// Seed.
    public var seed: UInt64 = 1
    /// Newest possible event time (unix seconds): 2026-01-01T00:00:00Z by default, so output is reproducible.
    public var end: Int64 = 1_767_225_600

    public init() {}

    /// Writes `user,item,timestamp,event` CSV to `path`; returns the number of events written.
    /// - Throws: ``TrainerError`` when the file cannot be written.
    @discardableResult
    public func writeCSV(to path: String) throws(TrainerError) -> Int {
        guard let f = fopen(path, "w") else { throw TrainerError(.io, "cannot create \(path)") }
        defer { fclose(f) }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 20)
        buffer.append(contentsOf: Array("user,item,timestamp,event\n".utf8))
        var count = 0
        let names = ["view", "click", "cart", "purchase"].map { Array($0.utf8) }
        let userPrefix = Array("user-".utf8)
        let itemPrefix = Array("item-".utf8)
        func flush() {
            _ = buffer.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
            buffer.removeAll(keepingCapacity: true)
        }
        generate { u, i, t, e in
            buffer.append(contentsOf: userPrefix)
            appendDecimal(&buffer, Int64(u))
            buffer.append(UInt8(ascii: ","))
            buffer.append(contentsOf: itemPrefix)
            appendDecimal(&buffer, Int64(i))
            buffer.append(UInt8(ascii: ","))
            appendDecimal(&buffer, t)
            buffer.append(UInt8(ascii: ","))
            buffer.append(contentsOf: names[e])
            buffer.append(0x0A)
            count += 1
            if buffer.count > (1 << 20) - 256 { flush() }
        }
        flush()
        return count
    }

    /// Writes the item attributes CSV (`item,category,brand,price`) for every item of the log.
    /// - Throws: ``TrainerError`` when the file cannot be written.
    public func writeItemsCSV(to path: String) throws(TrainerError) {
        guard let f = fopen(path, "w") else { throw TrainerError(.io, "cannot create \(path)") }
        defer { fclose(f) }
        var text = "item,category,brand,price\n"
        var rng = SplitMix64(seed: seed ^ 0x17E5)
        for i in 0..<items {
            let price = 1 + Double(rng.next() % 9_900) / 100
            text += "item-\(i),category-\(i % max(1, categories)),brand-\(i % 7),\(price)\n"
        }
        let bytes = Array(text.utf8)
        guard fwrite(bytes, 1, bytes.count, f) == bytes.count else { throw TrainerError(.io, "cannot write \(path)") }
    }

    /// Calls `emit(user, item, time, eventType)` for every event, users in order, then one view of each item nobody
    /// touched (so every catalogue item is in a model trained on the log); event types 0 view, 1 click, 2 cart,
    /// 3 purchase.
    public func generate(_ emit: (Int, Int, Int64, Int) -> Void) {
        var rng = SplitMix64(seed: seed)
        let start = end - Int64(days) * 86400
        let perCategory = max(1, items / max(1, categories))
        // Items arrive over time: the first half exist from the start, the rest appear uniformly later.
        let release: [Int64] = (0..<items).map { i in
            i < items / 2 ? start : start + Int64(rng.uniform() * Double(days) * 86400 * 0.9)
        }
        var recent: [Int] = []
        var touched = [Bool](repeating: false, count: items)
        for u in 0..<users {
            // Heavy-tailed activity: a Pareto-like draw with mean about eventsPerUser.
            let n = max(5, Int(eventsPerUser * 0.5 / max(0.02, pow(rng.uniform(), 0.7))))
            let n2 = min(n, Int(eventsPerUser * 20))
            var favourite = [Int(rng.next() % UInt64(categories)), Int(rng.next() % UInt64(categories))]
            let drifted = Int(rng.next() % UInt64(categories))
            let peakHour = Int(18 + rng.normal() * 3 + 24) % 24
            let weekendLover = rng.uniform() < 0.3
            recent.removeAll(keepingCapacity: true)
            // The user's active period: a window somewhere in the span.
            let active0 = start + Int64(rng.uniform() * Double(days) * 0.5 * 86400)
            let activeSpan = Double(end - active0)
            for j in 0..<n2 {
                let frac = (Double(j) + rng.uniform()) / Double(n2)
                var day = active0 + Int64(frac * activeSpan) / 86400 * 86400
                if weekendLover && rng.uniform() < 0.5 {
                    let weekday = Int(((day / 86400) + 3) % 7)
                    if weekday < 5 { day += Int64(5 - weekday) * 86400 }
                }
                let hour = Int64((peakHour + Int(rng.normal() * 2) + 24) % 24)
                var t = day + hour * 3600 + Int64(rng.next() % 3600)
                t = min(t, end - 1)
                // Interests drift: in the second half of their activity the user moves to a new category.
                if frac > 0.5 { favourite[1] = drifted }
                var item: Int
                if !recent.isEmpty && rng.uniform() < 0.25 {
                    item = recent[Int(rng.next() % UInt64(recent.count))]  // repeat purchase / revisit
                } else {
                    var tries = 0
                    repeat {
                        let c =
                            rng.uniform() < 0.85 ? favourite[Int(rng.next() % 2)] : Int(rng.next() % UInt64(categories))
                        // Zipf-like rank within the category.
                        let rank = min(perCategory - 1, Int(Double(perCategory) * pow(rng.uniform(), 2.5)))
                        item = min(items - 1, rank * categories + c)
                        tries += 1
                    } while release[item] > t && tries < 8
                    if release[item] > t { t = max(t, release[item]) }
                }
                if recent.count < 30 { recent.append(item) } else { recent[Int(rng.next() % 30)] = item }
                let r = rng.uniform()
                let type = r < 0.7 ? 0 : r < 0.85 ? 1 : r < 0.95 ? 2 : 3
                touched[item] = true
                emit(u, item, min(t, end - 1), type)
            }
        }
        for i in 0..<items where !touched[i] {
            let t = release[i] + Int64(rng.uniform() * Double(end - release[i]))
            emit(Int(rng.next() % UInt64(max(1, users))), i, min(t, end - 1), 0)
        }
    }
}

/// Appends the decimal digits of `v`.
func appendDecimal(_ out: inout [UInt8], _ v: Int64) {
    if v < 0 {
        out.append(UInt8(ascii: "-"))
        appendDecimal(&out, -v)
        return
    }
    var digits:
        (
            UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
            UInt8, UInt8, UInt8, UInt8, UInt8
        ) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var n = 0
    var x = v
    withUnsafeMutableBytes(of: &digits) { d in
        repeat {
            d[n] = UInt8(48 + x % 10)
            x /= 10
            n += 1
        } while x > 0
        for k in stride(from: n - 1, through: 0, by: -1) { out.append(d[k]) }
    }
}
