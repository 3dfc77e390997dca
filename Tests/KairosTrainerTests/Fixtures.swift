import Glibc

@testable import KairosTrainer

/// A fresh temporary folder, removed with its files at deinit.
final class TempFolder {
    let path: String

    init() {
        var template = Array("/tmp/kairos-trainer-test-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit {
        guard let dir = opendir(path) else { return }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(dir)
        for name in names { unlink("\(path)/\(name)") }
        rmdir(path)
    }

    /// Writes `text` to `name` in the folder and returns its path.
    @discardableResult
    func write(_ text: String, to name: String) -> String {
        let p = "\(path)/\(name)"
        let f = fopen(p, "w")!
        fputs(text, f)
        fclose(f)
        return p
    }

    /// The bytes of `name`.
    func read(_ name: String) -> [UInt8] {
        let f = fopen("\(path)/\(name)", "r")!
        defer { fclose(f) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }
}

/// Hand-built logs with known structure.
enum Logs {
    static let day: Int64 = 86400
    /// 2026-01-05T00:00:00Z, a Monday.
    static let monday: Int64 = 1_767_571_200

    /// A synthetic log of this shape (by default 120 users, 60 items in 6 categories, 60 days) written as `name` in
    /// `dir`; its path.
    static func synthetic(
        in dir: TempFolder,
        name: String = "s.csv",
        users: Int = 120,
        items: Int = 60,
        categories: Int = 6,
        days: Int = 60,
        eventsPerUser: Double = 15
    ) throws -> String {
        var g = SyntheticLog()
        g.users = users
        g.items = items
        g.categories = categories
        g.days = days
        g.eventsPerUser = eventsPerUser
        let path = "\(dir.path)/\(name)"
        try g.writeCSV(to: path)
        return path
    }

    /// CSV of users `u0..` with one visit a day for `days` days from ``monday``, two events each (one active hour):
    /// `habit(u, d)` is the UTC hour of user `u`'s visit on day `d`.
    static func dailyVisits(users: Int, days: Int, habit: (Int, Int) -> Int) -> String {
        var lines = ["user,item,timestamp,event"]
        for u in 0..<users {
            for d in 0..<days {
                let t = monday + Int64(d) * day + Int64(habit(u, d)) * 3600 + 600
                lines.append("u\(u),i\((u * 7 + d) % 200),\(t),purchase")
                lines.append("u\(u),i\((u + 3 * d + 11) % 200),\(t + 60),view")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Two user groups with disjoint tastes: users `a0..` use items `x0..x9`, users `b0..` use `y0..y9`.
    /// Each user touches 6 of their group's 10 items, so the rest of the group's items are the ones to recommend.
    static func twoGroups(usersPerGroup: Int = 30) -> String {
        var lines = ["user,item,timestamp,event"]
        var t = monday
        for g in ["a", "b"] {
            let prefix = g == "a" ? "x" : "y"
            for u in 0..<usersPerGroup {
                for j in 0..<6 {
                    let item = (u + j * 3) % 10
                    lines.append("\(g)\(u),\(prefix)\(item),\(t),purchase")
                    t += 600
                }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
