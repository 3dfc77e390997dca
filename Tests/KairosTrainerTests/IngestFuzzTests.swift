import Glibc
import KairosModelFormat
import KairosTestSupport
import Testing

@testable import KairosTrainer

/// Logs and attribute files with random damage (quotes, delimiters, line breaks, CRs, control and non-UTF-8 bytes
/// inserted, bytes deleted) parse the same however the file is split into reads: the same events, the same bad rows
/// at the same lines, or the same error. A reader that cannot split a record cleanly at a read boundary shows here.
@Suite struct IngestFuzzTests {
    static let trials = FuzzSettings.trials(default: 150)

    static func damaged(_ text: String, rng: inout SplitMix64) -> [UInt8] {
        var bytes = Array(text.utf8)
        let inserts: [[UInt8]] = [[0x22], [0x2C], [0x0A], [0x0D], [0x0D, 0x0A], [0x09], [0x00], [0xFF], [0xC3], [0x7B], [0x7D], [0x22, 0x22], [0x5C]]
        for _ in 0...(rng.next() % 6) {
            let at = Int(rng.next() % UInt64(bytes.count + 1))
            if rng.next() % 3 == 0, at < bytes.count {
                bytes.remove(at: at)
            } else {
                bytes.insert(contentsOf: inserts[Int(rng.next() % UInt64(inserts.count))], at: at)
            }
        }
        return bytes
    }

    static func write(_ bytes: [UInt8], to path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0)
        bytes.withUnsafeBytes { _ = Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    /// What a read of `path` came to, comparable across reads.
    static func outcome(_ path: String, chunk: Int, limit: Int) -> String {
        var options = IngestOptions()
        options.reportedBadRows = 1000
        do {
            let (log, report) = try EventLogReader.read(path: path, options: options, chunkBytes: chunk, maxRecordBytes: limit)
            return "\(log.userIds) \(log.itemIds) \(log.users) \(log.items) \(log.times) \(log.strengths) rows \(report.rows) bad \(report.firstBadRows) dup \(report.duplicates)"
        } catch {
            return "error \(error)"
        }
    }

    @Test(arguments: ["csv", "jsonl"])
    func damagedLogsParseTheSameAtEveryReadSize(format: String) {
        var rng = SplitMix64(seed: FuzzSettings.seed(default: 5))
        let path = "/tmp/kairos-ingest-fuzz-\(getpid()).\(format)"
        defer { unlink(path) }
        var errors = 0
        for trial in 0..<Self.trials {
            var text = format == "csv" ? "user,item,timestamp,event,value,note\n" : ""
            for r in 0..<40 {
                let user = "u\(rng.next() % 7)", item = "i\(rng.next() % 11)"
                let time = r % 3 == 0 ? "2026-03-0\(1 + r % 9)T10:00:00Z" : "\(1_700_000_000 + r * 60)"
                let event = ["view", "cart", "purchase", "click"][r % 4]
                if format == "csv" {
                    let note = r % 5 == 0 ? "\"a, \"\"b\"\"\nc\"" : (r % 7 == 0 ? String(repeating: "n", count: 50) : "n\(r)")
                    text += "\(user),\(item),\(time),\(event),\(r % 6),\(note)\(r % 2 == 0 ? "\r\n" : "\n")"
                } else {
                    text += "{\"user\": \"\(user)\", \"item\": \"\(item)\", \"timestamp\": \"\(time)\", \"event\": \"\(event)\", \"note\": \"x\\\"y\"}\n"
                }
            }
            Self.write(Self.damaged(text, rng: &rng), to: path)
            FuzzSettings.trace("\(format) trial \(trial)")
            // A 90-byte record limit: the long notes and some damaged lines pass it.
            let reference = Self.outcome(path, chunk: 8 << 20, limit: 90)
            if reference.hasPrefix("error") { errors += 1 }
            for chunk in [1, 2, 7, 64] {
                let other = Self.outcome(path, chunk: chunk, limit: 90)
                #expect(other == reference, "trial \(trial), chunk \(chunk)")
                if other != reference { return }
            }
        }
        #expect(errors < Self.trials / 2, "most damaged logs still train")
    }

    /// What an attributes read of `path` came to, comparable across reads.
    static func attributes(_ path: String, ids: [String], chunk: Int, limit: Int) -> String {
        do {
            let (a, skipped) = try ItemAttributesReader.read(path: path, itemIds: ids, categoryColumn: nil, chunkBytes: chunk, maxRecordBytes: limit)
            return "\(a.category) \(a.categoryNames) \(a.brand) \(a.brandNames) \(a.price.map(\.bitPattern)) skipped \(skipped)"
        } catch {
            return "error \(error)"
        }
    }

    /// The same for attribute files, streamed with a 48-byte record limit so that long descriptions, stray quotes and
    /// overlong lines meet read boundaries in a small file.
    @Test func damagedAttributeFilesParseTheSameAtEveryReadSize() {
        var rng = SplitMix64(seed: FuzzSettings.seed(default: 5))
        let path = "/tmp/kairos-attributes-fuzz-\(getpid()).csv"
        defer { unlink(path) }
        let ids = (0..<30).map { "x\($0)" }
        var errors = 0
        for trial in 0..<Self.trials {
            var text = "item,description,category,brand,price\r\n"
            for k in 0..<30 {
                let description = k % 4 == 0 ? "\"two\r\nlines, \"\"q\"\"\"" : (k % 7 == 0 ? String(repeating: "d", count: 60) : "d\(k)")
                text += "x\(k),\(description),c\(k % 3),b\(k % 4),\(k).5\(k % 2 == 0 ? "\r\n" : "\n")"
            }
            Self.write(Self.damaged(text, rng: &rng), to: path)
            let reference = Self.attributes(path, ids: ids, chunk: 1 << 20, limit: 48)
            if reference.hasPrefix("error") { errors += 1 }
            for chunk in [1, 5, 33, 100] {
                let other = Self.attributes(path, ids: ids, chunk: chunk, limit: 48)
                #expect(other == reference, "trial \(trial), chunk \(chunk)")
                if other != reference { return }
            }
        }
        #expect(errors < Self.trials / 2, "most damaged files still read")
    }
}
