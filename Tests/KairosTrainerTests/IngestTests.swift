import Glibc
import KairosModelFormat
import Testing

@testable import KairosTrainer

@Suite struct IngestTests {
    /// CSV rows with unix and ISO-8601 timestamps parse to the same instants, and event types map to strengths.
    @Test func csvWithUnixAndISOTimestamps() throws {
        let dir = TempFolder()
        let path = dir.write(
            """
            user,item,timestamp,event
            u1,i1,1767225600,view
            u1,i2,2026-01-01T00:00:00Z,purchase
            u2,i1,2026-01-01T01:00:00+01:00,cart
            u2,i3,2026-01-01 00:00:30,click

            """,
            to: "e.csv"
        )
        let (log, report) = try EventLogReader.read(path: path)
        #expect(report.rows == 4 && report.badRows == 0)
        #expect(log.userIds == ["u1", "u2"])
        #expect(log.itemIds == ["i1", "i2", "i3"])
        #expect(log.times.sorted() == [1_767_225_600, 1_767_225_600, 1_767_225_600, 1_767_225_630])
        #expect(log.strengths.sorted() == [1, 2, 4, 8])
    }

    /// `-` reads standard input (a pipe here, as from `zcat`), giving the same log as the file would.
    @Test func dashReadsStandardInput() throws {
        let text = "user,item,timestamp,event\nu1,i1,1767225600,view\nu2,i2,1767225700,purchase\nu1,i2,1767225800,cart\n"
        let dir = TempFolder()
        let (fromFile, _) = try EventLogReader.read(path: dir.write(text, to: "e.csv"))
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        let written = text.utf8CString.withUnsafeBufferPointer { write(ends[1], $0.baseAddress, text.utf8.count) }
        #expect(written == text.utf8.count)
        close(ends[1])
        let savedStdin = dup(0)
        dup2(ends[0], 0)
        close(ends[0])
        defer {
            dup2(savedStdin, 0)
            close(savedStdin)
        }
        let (fromStdin, report) = try EventLogReader.read(path: "-")
        #expect(report.rows == 3)
        #expect(fromStdin.userIds == fromFile.userIds && fromStdin.itemIds == fromFile.itemIds)
        #expect(fromStdin.times == fromFile.times && fromStdin.strengths == fromFile.strengths)
    }

    /// Bad rows are counted, the first few reported with 1-based line numbers (header = line 1), the rest kept.
    @Test func badRowsAreCountedWithLineNumbers() throws {
        let dir = TempFolder()
        let path = dir.write(
            """
            user,item,timestamp,value
            u1,i1,100,1
            ,i1,100,1
            u1,i2,yesterday,1
            u1,i3,100,-2
            u2,i1,100
            u2,i2,200,3.5

            """,
            to: "e.csv"
        )
        let (log, report) = try EventLogReader.read(path: path)
        #expect(report.rows == 6)
        #expect(report.badRows == 4)
        #expect(log.count == 2)
        #expect(report.firstBadRows.map(\.line) == [3, 4, 5, 6])
        #expect(report.firstBadRows[0].reason.contains("user"))
        #expect(report.firstBadRows[1].reason.contains("timestamp"))
        #expect(report.firstBadRows[2].reason.contains("negative"))
        #expect(log.strengths.sorted() == [1, 3.5])
    }

    /// A row stamped after `latestTime` (a wrong clock) is a bad row with its line; `--strict` makes it fatal; with no
    /// limit it is an ordinary event. A log of nothing but such rows is refused, saying why.
    @Test func rowsFromTheFutureAreBadRows() throws {
        let dir = TempFolder()
        let path = dir.write("user,item,timestamp\nu1,i1,1000\nu2,i1,4102444800\nu1,i2,2000\n", to: "e.csv")
        var options = IngestOptions()
        options.latestTime = 2000
        let (log, report) = try EventLogReader.read(path: path, options: options)
        #expect(report.badRows == 1 && log.count == 2)
        #expect(report.firstBadRows.map(\.line) == [3])
        #expect(try #require(report.firstBadRows.first).reason.contains("future"))
        #expect(log.timeRange == 1000...2000)  // the limit itself is allowed

        options.strict = true
        #expect(throws: TrainerError(.badRow, "line 3: timestamp 4102444800 is in the future (after the latest allowed time 2000)")) {
            _ = try EventLogReader.read(path: path, options: options)
        }
        let (unlimited, _) = try EventLogReader.read(path: path)
        #expect(unlimited.count == 3 && unlimited.timeRange?.upperBound == 4_102_444_800)

        options.strict = false
        options.latestTime = 10
        #expect {
            _ = try EventLogReader.read(path: path, options: options)
        } throws: { error in
            let e = error as? TrainerError
            return e?.code == .empty && e?.context.contains("line 2: timestamp 1000 is in the future") == true
        }
    }

    /// A strength above `largestStrength` (10^9) is a bad row, as sums of such values overflow float32 popularity;
    /// the bound itself is accepted, and event weights above it are refused when parsed.
    @Test func absurdStrengthsAreBadRows() throws {
        let dir = TempFolder()
        let path = dir.write("user,item,timestamp,value\nu1,i1,100,1e9\nu1,i2,100,3e38\nu2,i1,100,2\nu2,i3,100,1e308\n", to: "e.csv")
        let (log, report) = try EventLogReader.read(path: path)
        #expect(report.badRows == 2 && report.firstBadRows.map(\.line) == [3, 5])
        #expect(report.firstBadRows.allSatisfy { $0.reason.contains("largest strength") })
        // Past the float range it is still "too large", shown as written, not "unparsable".
        #expect(report.firstBadRows.last?.reason.hasPrefix("value 1e308 is above") == true)
        #expect(log.strengths.sorted() == [2, 1e9])
        #expect(IngestOptions.parseEventWeights("view=1,buy=1000000000") == ["view": 1, "buy": 1e9])
        #expect(IngestOptions.parseEventWeights("view=1,buy=2e9") == nil)
    }

    /// Ids longer than a model string (1024 bytes) are bad rows, user or item; 1024 bytes is accepted.
    @Test func overlongIdsAreBadRows() throws {
        let dir = TempFolder()
        let ok = String(repeating: "a", count: 1024), long = String(repeating: "b", count: 1025)
        let path = dir.write("user,item,timestamp\nu1,\(ok),100\nu1,\(long),100\n\(long),i1,100\nu2,i1,100\n", to: "e.csv")
        let (log, report) = try EventLogReader.read(path: path)
        #expect(report.badRows == 2 && report.firstBadRows.map(\.line) == [3, 4])
        let reasons = report.firstBadRows.map(\.reason)
        #expect(reasons.count == 2 && reasons.first?.hasPrefix("item id of 1025 bytes") == true)
        #expect(reasons.last?.hasPrefix("user id of 1025 bytes") == true)
        #expect(Set(log.itemIds) == [ok, "i1"] && log.count == 2)
    }

    /// Leaving users out renumbers the remaining users and items densely in their old order and keeps every other
    /// event as it was; items only the left-out users touched go too.
    @Test func removingUsersRenumbersWhatRemains() {
        let log = EventLog(
            userIds: ["a", "bot", "c"],
            itemIds: ["x", "y", "z"],
            users: [0, 0, 1, 1, 2],
            items: [0, 2, 1, 2, 2],
            times: [1, 2, 3, 4, 5],
            strengths: [1, 2, 3, 4, 5]
        )
        let out = log.removingUsers([false, true, false])
        #expect(out.userIds == ["a", "c"] && out.itemIds == ["x", "z"])
        #expect(out.users == [0, 0, 1] && out.items == [0, 1, 1])
        #expect(out.times == [1, 2, 5] && out.strengths == [1, 2, 5])
        #expect(log.eventsPerUser() == [2, 2, 1])
    }

    /// Bad rows are tallied by kind: row-specific numbers and text do not split a kind (two negative values are one
    /// kind), an unknown event type is its own kind, and past 20 kinds the rest count as `other`.
    @Test func badRowsAreTalliedByKind() throws {
        let dir = TempFolder()
        var rows = ["user,item,timestamp,value,event"]
        rows += ["u1,i1,100,-1,view", "u1,i1,100,-2,view", "u1,i1,soon,1,view", "u1,i1,later,1,view", ",i1,100,1,view"]
        rows += (0..<25).map { "u1,i1,100,1,type\($0)" }
        rows += ["u1,i1,100,1,view", "u1,i1,100,1,type0"]
        let path = dir.write(rows.joined(separator: "\n") + "\n", to: "e.csv")
        var options = IngestOptions()
        options.strength = .event
        let (_, report) = try EventLogReader.read(path: path, options: options)
        // Strength from the event column: the negative values are only bad under .value, so read them again below.
        let kinds = report.badRowKinds
        #expect(report.badRows == 29 && kinds.values.reduce(0, +) == 29)
        #expect(kinds["unparsable timestamp"] == 2 && kinds["missing user"] == 1)
        #expect(kinds["unknown event type \"type0\""] == 2)
        // Two kinds come first (timestamp, user), so 18 event types get their own kind and the other 7 go to `other`.
        #expect(kinds.count == IngestReport.reportedKinds + 1 && kinds["other"] == 25 - (IngestReport.reportedKinds - 2))

        options.strength = .value
        let (_, byValue) = try EventLogReader.read(path: path, options: options)
        #expect(byValue.badRowKinds == ["negative value": 2, "unparsable timestamp": 2, "missing user": 1])
    }

    /// `--strict` turns the first bad row into an error naming its line.
    @Test func strictFailsOnFirstBadRow() throws {
        let dir = TempFolder()
        let path = dir.write("user,item,timestamp\nu1,i1,100\nu1,i2,notatime\n", to: "e.csv")
        var options = IngestOptions()
        options.strict = true
        #expect {
            _ = try EventLogReader.read(path: path, options: options)
        } throws: { error in
            guard let e = error as? TrainerError else { return false }
            return e.code == .badRow && e.context.contains("line 3")
        }
    }

    /// Exact repeats (same user, item, second, strength) are dropped; a repeat at another time is kept.
    @Test func duplicatesAreDropped() throws {
        let dir = TempFolder()
        let path = dir.write("user,item,timestamp\nu1,i1,100\nu1,i1,100\nu1,i1,100\nu1,i1,200\n", to: "e.csv")
        let (log, report) = try EventLogReader.read(path: path)
        #expect(report.duplicates == 2)
        #expect(log.count == 2)
    }

    /// JSON Lines with string and numeric values, escapes and unknown keys read like CSV; a nested item is a bad row.
    @Test func jsonLines() throws {
        let dir = TempFolder()
        let path = dir.write(
            """
            {"user": "u\\"1", "item": 7, "timestamp": "2026-01-01T00:00:00Z", "event": "purchase", "extra": true}
            {"user":"u2","item":"7","timestamp":1767225601,"event":"view"}
            {"user":"u3","item":{"id":1},"timestamp":1}

            """,
            to: "e.jsonl"
        )
        var options = IngestOptions()
        options.eventColumn = "event"
        let (log, report) = try EventLogReader.read(path: path, options: options)
        #expect(log.userIds == ["u\"1", "u2"])
        #expect(log.itemIds == ["7"])
        #expect(log.strengths.sorted() == [1, 8])
        #expect(report.badRows == 1 && report.firstBadRows.first?.line == 3)
    }

    /// Nested objects and arrays under keys the reader does not use are skipped, brackets matched and strings (with
    /// brackets and escaped quotes inside) honoured; under a key it reads, or when malformed, they make the row bad.
    @Test func jsonNestedValuesUnderOtherKeysAreSkipped() throws {
        let dir = TempFolder()
        let path = dir.write(
            #"""
            {"user": "a", "meta": {"a": [1, {"b": "}]\"["}], "c": {}}, "item": "i1", "timestamp": 10}
            {"tags": ["x", "y"], "user": "b", "item": "i2", "timestamp": 11, "props": {"deep": [[[[]]]]}}
            {"user": {"id": "c"}, "item": "i1", "timestamp": 12}
            {"user": "d", "item": "i1", "timestamp": 13, "meta": {"a": [1}]}}
            {"user": "e", "item": "i1", "timestamp": 14, "meta": {"a": [1]}
            {"user": "f", "item": "i1", "timestamp": 15, "meta": \#(String(repeating: "[", count: 65) + String(repeating: "]", count: 65))}

            """#,
            to: "e.jsonl"
        )
        let (log, report) = try EventLogReader.read(path: path)
        #expect(log.userIds == ["a", "b"] && log.itemIds == ["i1", "i2"] && log.times == [10, 11])
        #expect(report.firstBadRows.map(\.line) == [3, 4, 5, 6])
        #expect(report.firstBadRows.map(\.reason) == [
            "nested JSON value for \"user\"", "malformed JSON: mismatched bracket", "malformed JSON: unterminated object",
            "JSON nested more than 64 levels",
        ])
    }

    /// JSON keys match whatever their case or escaping, the first non-null value of a repeated key wins, string
    /// escapes decode (`\n`, `\u00e9`), and a null or unterminated value makes the row bad.
    @Test func jsonKeysAndValuesEdgeCases() throws {
        let dir = TempFolder()
        let path = dir.write(
            #"""
            {"USER": "a", "Item": "i1", "timestamp": 10}
            {"us\u0065r": "b", "item": "i\u00e9", "timestamp": 11}
            {"user": null, "user": "c", "user": "x", "item": "i1", "timestamp": 12}
            {\#t"user" : "d\n" ,"item":"i1" , "timestamp":13 }
            {"user": "e", "item": null, "timestamp": 14}
            {"user": "f", "item": "i1", "timestamp": 15, "note": "unterminated}
            {"user": "g", "item": "i1", "timestamp": 16, "note": "bad escape \uZZ"}

            """#,
            to: "e.jsonl"
        )
        let (log, report) = try EventLogReader.read(path: path)
        #expect(log.userIds == ["a", "b", "c", "d\n"])
        #expect(log.itemIds == ["i1", "i\u{e9}"])
        #expect(log.times == [10, 11, 12, 13])
        #expect(report.badRows == 3)
        #expect(report.firstBadRows.map(\.line) == [5, 6, 7])
        // A configured key with non-ASCII letters matches case-insensitively too.
        let other = dir.write(
            #"""
            {"WHO\u00c9": "u1", "item": "i", "timestamp": 1}
            {"whoÉ": "u2", "item": "i", "timestamp": 2}

            """#,
            to: "o.jsonl"
        )
        var options = IngestOptions()
        options.userColumn = "whoé"
        let (o, _) = try EventLogReader.read(path: other, options: options)
        #expect(o.userIds == ["u1", "u2"])
        // Characters outside the BMP arrive as surrogate pairs (Python's json.dumps default) and decode to themselves;
        // they used to become two U+FFFD each, so these three users were one. A lone surrogate is a bad row.
        let astral = dir.write(
            #"""
            {"user": "\ud83d\ude00", "item": "i", "timestamp": 1}
            {"user": "\uD83D\uDE01", "item": "i", "timestamp": 2}
            {"user": "x\ud83c\udf4ey", "item": "i", "timestamp": 3}
            {"user": "\ud83d", "item": "i", "timestamp": 4}
            {"user": "\ude00", "item": "i", "timestamp": 5}
            {"user": "\ud83d\u0041", "item": "i", "timestamp": 6}
            {"user": "\ud83d\ude0", "item": "i", "timestamp": 7}

            """#,
            to: "astral.jsonl"
        )
        let (a, ar) = try EventLogReader.read(path: astral)
        #expect(Set(a.userIds) == ["\u{1F600}", "\u{1F601}", "x\u{1F34E}y"])
        #expect(ar.badRows == 4 && ar.firstBadRows.map(\.line) == [4, 5, 6, 7])
    }

    /// TSV, custom column names and quoted CSV fields with escaped quotes.
    @Test func tsvCustomColumnsAndQuotes() throws {
        let dir = TempFolder()
        let tsv = dir.write("who\twhat\twhen\nu1\ti1\t5\n", to: "e.tsv")
        var options = IngestOptions()
        options.userColumn = "who"
        options.itemColumn = "what"
        options.timeColumn = "when"
        let (log, _) = try EventLogReader.read(path: tsv, options: options)
        #expect(log.userIds == ["u1"] && log.times == [5])
        let csv = dir.write("user,item,timestamp\n\"u,1\",\"say \"\"hi\"\"\",7\n", to: "q.csv")
        let (q, report) = try EventLogReader.read(path: csv)
        #expect(report.badRows == 0)
        #expect(q.userIds == ["u,1"] && q.itemIds == ["say \"hi\""])
    }

    /// RFC 4180: a quoted field may hold line breaks (a note, a description). The record is one row, counted once,
    /// and the line numbers after it stay the file's own.
    @Test func quotedLineBreaksStayInTheirField() throws {
        let dir = TempFolder()
        let path = dir.write(
            "user,item,timestamp,note\n"
                + "u1,i1,100,\"first line\nsecond, with a comma\"\n"  // lines 2-3
                + "u2,i2,200,\"a\r\n\r\n\"\"quoted\"\" c\"\r\n"  // lines 4-6, CRLF
                + "u3,i3,yesterday,x\n"  // line 7: bad timestamp
                + "u4,i4,400,\"\n\"\n",  // lines 8-9
            to: "e.csv"
        )
        let (log, report) = try EventLogReader.read(path: path)
        #expect(report.rows == 4 && report.badRows == 1)
        #expect(report.firstBadRows.map(\.line) == [7])
        #expect(log.userIds == ["u1", "u2", "u4"] && log.itemIds == ["i1", "i2", "i4"])
        #expect(log.times.sorted() == [100, 200, 400])
    }

    /// A quote that never closes is a stray: its line is a bad row and the rows after it are read, not swallowed into
    /// one field. A line break inside an id, a time or an event is the same stray seen from the other side: the quote
    /// that closed it belonged to a later row.
    @Test func strayQuotesCostOneLine() throws {
        let dir = TempFolder()
        let open = dir.write("user,item,timestamp\nu1,\"i1,100\nu2,i2,200\nu3,i3,300\n", to: "open.csv")
        let (a, ra) = try EventLogReader.read(path: open)
        #expect(ra.rows == 3 && ra.badRows == 1)
        #expect(ra.firstBadRows.map(\.line) == [2])
        #expect(ra.firstBadRows.first?.reason.contains("unterminated quote") == true)
        #expect(a.userIds == ["u2", "u3"] && a.times.sorted() == [200, 300])

        let closedLater = dir.write(
            "user,item,timestamp,note\nu1,\"i1,100,x\nu2,i2,200,x\nu3,i3,300,\"late\"\n", to: "late.csv"
        )
        let (b, rb) = try EventLogReader.read(path: closedLater)
        #expect(rb.badRows == 1 && rb.firstBadRows.map(\.line) == [2])
        #expect(rb.firstBadRows.first?.reason.contains("text after a closing quote") == true)
        #expect(b.userIds == ["u2", "u3"] && b.itemIds == ["i2", "i3"])

        let inId = dir.write("user,item,timestamp\nu1,\"i1\nu2,i2\",200\nu3,i3,300\n", to: "id.csv")
        let (c, rc) = try EventLogReader.read(path: inId)
        #expect(rc.badRows == 1 && rc.firstBadRows.map(\.line) == [2])
        #expect(rc.firstBadRows.first?.reason.contains("line break in the item field") == true)
        #expect(c.userIds == ["u2", "u3"] && c.itemIds == ["i2\"", "i3"])

        var strict = IngestOptions()
        strict.strict = true
        #expect(throws: TrainerError.self) { _ = try EventLogReader.read(path: closedLater, options: strict) }
    }

    /// Records that cross the reader's chunk boundaries (8 MiB in use; down to 5 bytes here) parse exactly as from one
    /// read: the same events, bad rows and line numbers.
    @Test func recordsAcrossReadBoundaries() throws {
        let dir = TempFolder()
        var text = "user,item,timestamp,note\r\n"
        var rng = SplitMix64(seed: 11)
        for r in 0..<300 {
            let note: String
            switch rng.next() % 6 {
            case 0: note = "\"multi\nline \"\"note\"\"\r\nend\""
            case 1: note = "\"\(String(repeating: "x", count: Int(rng.next() % 40)))\n\""
            case 2: note = "\"unclosed"  // a stray: closed by the next quoted note, which makes a bad row
            default: note = "plain"
            }
            let time = rng.next() % 10 == 0 ? "never" : "\(1000 + r)"
            text += "u\(rng.next() % 20),i\(rng.next() % 50),\(time),\(note)\(r % 2 == 0 ? "\r\n" : "\n")"
        }
        let path = dir.write(text, to: "e.csv")
        let (whole, wholeReport) = try EventLogReader.read(path: path)
        #expect(wholeReport.badRows > 0 && wholeReport.rows > 250)
        var options = IngestOptions()
        options.reportedBadRows = 1000
        let (reference, referenceReport) = try EventLogReader.read(path: path, options: options)
        for chunk in [5, 16, 61, 4096] {
            let (log, report) = try EventLogReader.read(path: path, options: options, chunkBytes: chunk)
            #expect(EventLogSplitTests.same(log, reference), "chunk \(chunk)")
            #expect(report.rows == referenceReport.rows && report.firstBadRows == referenceReport.firstBadRows)
        }
        #expect(EventLogSplitTests.same(whole, reference))
    }

    /// A file read in batches (fields staged, then interned with prefetching) gives the ids and events that reading
    /// its lines one at a time gives: over several batches, users interleaved, bad rows between, and quoted rows with
    /// `""` (interned at once, after the staged rows before them) mixed in.
    @Test func batchedInterningGivesTheIdsOfOneAtATime() throws {
        let dir = TempFolder()
        var lines = ["user,item,timestamp,event"]
        var rng = SplitMix64(seed: 23)
        for r in 0..<10_000 {
            let user = "user-\(rng.next() % 3_000)", item = "item-\(rng.next() % 900)"
            switch r % 97 {
            case 0: lines.append("\"\(user)\"\"x\",\(item),\(1000 + r),view")  // a quoted id with an escaped quote
            case 1: lines.append("\(user),\(item),never,view")  // a bad row
            default: lines.append("\(user),\(item),\(1000 + r),\(["view", "cart"][r % 2])")
            }
        }
        let path = dir.write(lines.joined(separator: "\n") + "\n", to: "e.csv")
        var oneAtATime = EventLogReader(options: IngestOptions(), format: .csv)
        #expect(!oneAtATime.staging)
        for line in lines {
            var bytes = Array(line.utf8)
            _ = try bytes.withUnsafeMutableBytes { b throws(TrainerError) in try oneAtATime.line(UnsafeRawBufferPointer(b)) }
            bytes.removeAll()  // the line's bytes are gone before the next one is read
        }
        let (reference, referenceReport) = try oneAtATime.finish(path: path)
        #expect(reference.userIds.count > 2_900 && reference.userIds.contains { $0.hasSuffix("\"x") })
        for chunk in [61, 8 << 20] {
            let (log, report) = try EventLogReader.read(path: path, options: IngestOptions(), chunkBytes: chunk)
            #expect(EventLogSplitTests.same(log, reference), "chunk \(chunk)")
            #expect(report.badRows == referenceReport.badRows && report.badRows > 100)
        }
    }

    /// JSON Lines read in batches give exactly the events written, ids numbered in order of first appearance: with
    /// the key order, the keys' case and the number of keys before `user` changing between lines (each key's role is
    /// remembered by its position), escaped ids (interned at once, after the staged rows before them) and bad rows.
    @Test func jsonRowsReadInBatchesGiveTheirEvents() throws {
        let dir = TempFolder()
        var lines: [String] = []
        var rows: [(user: String, item: String, time: Int64, strength: Float)] = []
        var rng = SplitMix64(seed: 29)
        for r in 0..<6_000 {
            var user = "user-\(rng.next() % 2_000)"
            let item = "item-\(rng.next() % 700)", time = Int64(1000 + r), event = ["view", "cart"][r % 2]
            var userJSON = "\"\(user)\""
            if r % 97 == 0 {
                userJSON = "\"\(user)\\u0041\""  // an escaped id: "user-12A"
                user += "A"
            }
            switch r % 7 {
            case 0: lines.append(#"{"Item": "\#(item)", "EVENT": "\#(event)", "User": \#(userJSON), "timestamp": \#(time)}"#)
            case 1: lines.append(#"{"meta": {"k": [1, 2]}, "x": 1, "user": \#(userJSON), "item": "\#(item)", "timestamp": \#(time), "event": "\#(event)"}"#)
            case 2: lines.append(#"{"user": \#(userJSON), "item": "\#(item)", "timestamp": "never", "event": "\#(event)"}"#)  // bad
            case 3: lines.append(#"{"us\u0065r": \#(userJSON), "item": "\#(item)", "timestamp": \#(time), "event": "\#(event)"}"#)
            default: lines.append(#"{"user": \#(userJSON), "item": "\#(item)", "timestamp": \#(time), "event": "\#(event)"}"#)
            }
            if r % 7 != 2 { rows.append((user, item, time, r % 2 == 0 ? 1 : 4)) }
        }
        let path = dir.write(lines.joined(separator: "\n") + "\n", to: "e.jsonl")
        var userRow: [String: UInt32] = [:], itemRow: [String: UInt32] = [:]
        var userIds: [String] = [], itemIds: [String] = []
        for r in rows {
            if userRow[r.user] == nil { userRow[r.user] = UInt32(userIds.count); userIds.append(r.user) }
            if itemRow[r.item] == nil { itemRow[r.item] = UInt32(itemIds.count); itemIds.append(r.item) }
        }
        var expected = EventLog(
            userIds: userIds, itemIds: itemIds, users: rows.map { userRow[$0.user]! }, items: rows.map { itemRow[$0.item]! },
            times: rows.map(\.time), strengths: rows.map(\.strength)
        )
        _ = expected.sortAndDeduplicate()
        #expect(userIds.contains { $0.hasSuffix("A") } && userIds.count > 1_500)
        var options = IngestOptions()
        options.eventWeights = ["view": 1, "cart": 4]
        for chunk in [97, 8 << 20] {
            let (log, report) = try EventLogReader.read(path: path, options: options, chunkBytes: chunk)
            #expect(EventLogSplitTests.same(log, expected), "chunk \(chunk)")
            #expect(report.badRows == lines.count - rows.count)
        }
    }

    /// An item attributes file as catalogue exports write it: a byte-order mark, CRLF endings, and a quoted
    /// description with line breaks, commas and quotes before the category. A stray quote costs its own line: the next
    /// item keeps its attributes instead of lending them to the stray's.
    @Test func itemAttributesFromACatalogueExport() throws {
        let dir = TempFolder()
        let path = dir.write(
            "\u{FEFF}item,description,category,brand,price\r\n"
                + "x1,\"Soft shoe.\r\n\r\nSizes 38-46, \"\"wide\"\" fit\",Shoes|Sport,Acme,59.5\r\n"
                + "x2,\"oops,Bags,Other,10\r\n"
                + "x3,\"Plain\",Hats,Acme,5\r\n"
                + "x4,\"two\nlines\",Shoes,,7\r\n"
                + "x5,fine,\"Bad\r\ncat\",Acme,3\r\n",  // a line break in a category: x5's line and the next are bad
            to: "items.csv"
        )
        let (a, skipped) = try ItemAttributesReader.read(path: path, itemIds: ["x1", "x2", "x3", "x4", "x5"])
        #expect(skipped == 3)
        #expect(a.categoryNames == ["Shoes", "Hats"] && a.brandNames == ["Acme"])
        #expect(a.category == [0, ItemAttributes.none, 1, 0, ItemAttributes.none])
        #expect(a.brand == [0, ItemAttributes.none, 0, ItemAttributes.none, ItemAttributes.none])
        #expect(a.price[0] == 59.5 && a.price[1].isNaN && a.price[2] == 5 && a.price[3] == 7)
    }

    /// An attributes file is streamed: records that cross reads (multi-line quoted descriptions, CRLF endings) parse
    /// the same for any read size, a stray quote and a line longer than the record limit each cost their own line,
    /// and an overlong first line is refused as no header.
    @Test func itemAttributesStreamAcrossReads() throws {
        let dir = TempFolder()
        let count = 15_000
        var text = "item,description,category,brand,price\r\n"
        for k in 0..<count {
            let description = (0...(k % 3)).map { "Line \($0) of \(k), \"\"quoted\"\", and filler text." }.joined(separator: "\r\n")
            text += k == 1_000 ? "x1000,\"oops,c0,b0,1\r\n" : "x\(k),\"\(description)\",c\(k % 7),b\(k % 5),\(k)\r\n"
            if k == 2_000 { text += String(repeating: "a", count: EventLogReader.maxRecordBytes * 3 / 2) + "\r\n" }
            if k % 500 == 0 { text += "nobody\(k),x,c9,b9,1\r\n" }
        }
        #expect(text.utf8.count > 3 * EventLogReader.maxRecordBytes)  // several reads' worth at every size below
        let path = dir.write(text, to: "items.csv")
        let ids = (0..<count).map { "x\($0)" }
        for chunk in [65_536, 100_003, 4 << 20] {
            let (a, skipped) = try ItemAttributesReader.read(path: path, itemIds: ids, categoryColumn: nil, chunkBytes: chunk, maxRecordBytes: EventLogReader.maxRecordBytes)
            #expect(skipped == 2 + count / 500, "chunk \(chunk)")  // the stray, the overlong line, the unknown items
            #expect(a.categoryNames == (0..<7).map { "c\($0)" } && a.brandNames == (0..<5).map { "b\($0)" })
            var wrong: [Int] = []
            for k in 0..<count {
                let right: Bool
                if k == 1_000 {
                    right = a.category[k] == ItemAttributes.none && a.price[k].isNaN
                } else {
                    right = a.category[k] == UInt32(k % 7) && a.brand[k] == UInt32(k % 5) && a.price[k] == Float(k)
                }
                if !right { wrong.append(k) }
            }
            #expect(wrong.isEmpty, "chunk \(chunk): rows \(wrong.prefix(5))")
        }
        let noHeader = dir.write(String(repeating: "h", count: 2 * EventLogReader.maxRecordBytes) + "\nx1,c1\n", to: "nohead.csv")
        #expect {
            _ = try ItemAttributesReader.read(path: noHeader, itemIds: ids, categoryColumn: nil, chunkBytes: 65_536, maxRecordBytes: EventLogReader.maxRecordBytes)
        } throws: { error in
            (error as? TrainerError)?.code == .badHeader && "\(error)".contains("first line is longer than 1 MiB")
        }
    }

    /// A line longer than the record limit, beyond what one read holds, is one bad row: its bytes are skipped, not
    /// kept (a file without line feeds used to be held whole, twice over), and the rows after it parse. As the first
    /// line, it is refused as no header.
    @Test func overlongLinesAreSkippedNotBuffered() throws {
        let dir = TempFolder()
        let long = String(repeating: "a", count: 3 * EventLogReader.maxRecordBytes)  // past what the buffer grows to (2 MiB)
        let path = dir.write("user,item,timestamp\nu1,i1,100\n\(long)\nu2,i2,200\nu3,i3,300\n", to: "long.csv")
        for chunk in [65_536, 100_000] {
            let (log, report) = try EventLogReader.read(path: path, options: IngestOptions(), chunkBytes: chunk)
            #expect(report.rows == 4 && report.badRows == 1, "chunk \(chunk)")
            #expect(report.firstBadRows.map(\.line) == [3])
            #expect(report.firstBadRows.first?.reason == "line longer than 1 MiB")
            #expect(log.userIds == ["u1", "u2", "u3"] && log.times.sorted() == [100, 200, 300])
        }
        let noHeader = dir.write(long + "\nu1,i1,100\n", to: "noheader.csv")
        #expect(throws: TrainerError(.badHeader, "the first line is longer than 1 MiB: not a CSV or TSV file with a header row?")) {
            _ = try EventLogReader.read(path: noHeader, options: IngestOptions(), chunkBytes: 65_536)
        }
    }

    /// A binary file's first "line" is no header: the error shows it shortened, with control bytes as '?'.
    @Test func aBinaryHeaderIsShownShortened() throws {
        let dir = TempFolder()
        // Control bytes and letters, no line feed or comma: 2,000 bytes of one "column".
        var bytes: [UInt8] = []
        for i in 0..<2_000 {
            let control = UInt8((i * 7 + 1) % 32)
            bytes.append(control == 0x0A || i % 3 == 0 ? 0x41 + UInt8(i % 26) : control)
        }
        let garbage = String(decoding: bytes, as: UTF8.self)
        let path = dir.write(garbage + "\nu1,i1,100\n", to: "binary.csv")
        do throws(TrainerError) {
            _ = try EventLogReader.read(path: path)
            Issue.record("read a binary file")
        } catch {
            let message = "\(error)"
            #expect(error.code == .badHeader)
            #expect(message.count < 500, "\(message.count) characters")
            #expect(!message.unicodeScalars.contains { $0.value < 0x20 })
        }
    }

    /// A header without a user column is rejected with the header in the message.
    @Test func missingColumnIsAHeaderError() throws {
        let dir = TempFolder()
        let path = dir.write("item,timestamp\ni1,5\n", to: "e.csv")
        #expect(throws: TrainerError.self) { _ = try EventLogReader.read(path: path) }
    }

    /// Timestamps: date-only, fractional seconds, offsets without a colon, milliseconds; garbage is rejected.
    @Test(arguments: [
        ("2026-01-01", Int64(1_767_225_600)),
        ("2026-01-01T00:00:00.250Z", 1_767_225_600),
        ("2026-01-01T02:00:00+0200", 1_767_225_600),
        ("1767225600000", 1_767_225_600),
        ("1767225600.9", 1_767_225_600),
        ("1970-01-01T00:00:00Z", 0),
        ("2024-02-29T00:00:00Z", 1_709_164_800),  // a leap day
        ("2000-02-29", 951_782_400),  // divisible by 400: a leap year
        ("2026-01-01T00:00:00-23:59", 1_767_311_940),
        ("2025-12-31T24:00:00Z", 1_767_225_600),  // the end of a day is the next one's start
    ])
    func timestampForms(text: String, expected: Int64) {
        var s = text
        #expect(s.withUTF8 { Timestamp.parse(UnsafeRawBufferPointer($0)) } == expected)
    }

    /// Unparsable timestamps give nil.
    @Test(arguments: [
        "", "abc", "2026-13-01", "2026-01-01T25:00", "12x", "2026-01-01Tfoo",
        // Days a month does not have (once read as the next month's), and offsets past 23:59.
        "2024-02-30", "2023-02-29", "1900-02-29", "2026-04-31T10:00:00Z", "2026-01-00", "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00:00+0160", "2026-01-01T24:30:00Z", "2026-01-01T24:00:01Z",
    ])
    func badTimestamps(text: String) {
        var s = text
        #expect(s.withUTF8 { Timestamp.parse(UnsafeRawBufferPointer($0)) } == nil)
    }
}

@Suite struct EventLogSplitTests {
    /// A random log of `users` users, grouped by user as ingest leaves it (sorted by user, then time).
    static func log(users: Int, events: Int, rng: inout SplitMix64) -> EventLog {
        var rows: [(UInt32, UInt32, Int64, Float)] = (0..<events).map { _ in
            (
                UInt32.random(in: 0..<UInt32(users), using: &rng), UInt32.random(in: 0..<20, using: &rng),
                Int64.random(in: 1000...1100, using: &rng), Float(Int.random(in: 1...8, using: &rng))
            )
        }
        rows.sort { ($0.0, $0.2, $0.1, $0.3) < ($1.0, $1.2, $1.1, $1.3) }
        return EventLog(
            userIds: (0..<users).map { "u\($0)" },
            itemIds: (0..<20).map { "i\($0)" },
            users: rows.map(\.0),
            items: rows.map(\.1),
            times: rows.map(\.2),
            strengths: rows.map(\.3)
        )
    }

    static func same(_ a: EventLog, _ b: EventLog) -> Bool {
        a.users == b.users && a.items == b.items && a.times == b.times && a.strengths == b.strengths
            && a.userIds == b.userIds && a.itemIds == b.itemIds
    }

    /// Splitting at a time keeps each side's events in order, and rejoining the two sides gives back the original
    /// log exactly (the trainer drops the whole log while it holds the parts, and rebuilds it for the final fit).
    @Test func splitThenRejoinIsTheOriginal() {
        var rng = SplitMix64(seed: 7)
        for cut: Int64 in [999, 1000, 1037, 1050, 1100, 1101] {
            let original = Self.log(users: 9, events: 300, rng: &rng)
            var (before, after) = original.split(at: cut)
            #expect(before.times.allSatisfy { $0 < cut } && after.times.allSatisfy { $0 >= cut })
            #expect(before.count + after.count == original.count)
            #expect(before.users == original.users.indices.filter { original.times[$0] < cut }.map { original.users[$0] })
            let rejoined = EventLog.rejoining(&before, &after)
            let same = Self.same(rejoined, original)
            #expect(same, "cut \(cut)")
            #expect(before.count == 0 && after.count == 0 && before.itemIds.count == 20)
        }
    }

    /// Ingest's sort gives what a plain sort by (user, time, item, strength) and dropping exact repeats give, for logs
    /// in time order, grouped by user, grouped but unsorted within users, and shuffled; with one bucket of user rows
    /// and with many (2,049 and 5,000 users need the coarse pass), users without events and users across buckets.
    @Test(arguments: [1, 7, 2_049, 5_000])
    func sortAndDeduplicateMatchesAPlainSort(users: Int) {
        var rng = SplitMix64(seed: UInt64(users))
        let n = 6_000
        var rows: [(user: UInt32, item: UInt32, time: Int64, strength: Float)] = (0..<n).map { _ in
            // Only even user rows get events, so some users (and some buckets' slots) are empty.
            (
                UInt32(2 * Int.random(in: 0..<max(1, users / 2), using: &rng)), UInt32.random(in: 0..<30, using: &rng),
                Int64.random(in: 1000...1040, using: &rng), Float(Int.random(in: 1...3, using: &rng))
            )
        }
        rows += (0..<300).map { _ in rows[Int.random(in: 0..<n, using: &rng)] }  // exact repeats
        let sorted = rows.sorted { ($0.user, $0.time, $0.item, $0.strength) < ($1.user, $1.time, $1.item, $1.strength) }
        var reference: [(user: UInt32, item: UInt32, time: Int64, strength: Float)] = []
        for r in sorted where reference.last.map({ $0 != r }) ?? true { reference.append(r) }
        // The reference drops exactly the repeats: one row per distinct event is left.
        #expect(reference.count == Set(rows.map { "\($0.user) \($0.item) \($0.time) \($0.strength)" }).count)

        let orders: [(String, [Int])] = [
            ("shuffled", rows.indices.shuffled(using: &rng)),
            ("time order", rows.indices.sorted { (rows[$0].time, $0) < (rows[$1].time, $1) }),
            ("grouped", sorted.indices.map { $0 }),
            ("grouped, unsorted within users", rows.indices.sorted { (rows[$0].user, -$0) < (rows[$1].user, -$1) }),
        ]
        for (name, order) in orders {
            let source = name == "grouped" ? sorted : rows
            var log = EventLog(
                userIds: (0..<max(users, 1)).map { "u\($0)" },
                itemIds: (0..<30).map { "i\($0)" },
                users: order.map { source[$0].user },
                items: order.map { source[$0].item },
                times: order.map { source[$0].time },
                strengths: order.map { source[$0].strength }
            )
            let dropped = log.sortAndDeduplicate()
            #expect(dropped == rows.count - reference.count, "\(name)")
            #expect(log.count == reference.count, "\(name)")
            let firstDifference = zip(reference.indices, reference).first { e, r in
                e >= log.count || (log.users[e], log.items[e], log.times[e], log.strengths[e]) != r
            }
            #expect(firstDifference == nil, "\(name): first differing event \(String(describing: firstDifference))")
        }
    }

    /// Parts that are not grouped by user (a log that skipped ingest's sort) come back sorted by user and time.
    @Test func ungroupedPartsAreSortedOnRejoin() {
        var rng = SplitMix64(seed: 8)
        let grouped = Self.log(users: 5, events: 80, rng: &rng)
        let order = Array(grouped.users.indices.reversed())
        var shuffled = grouped
        shuffled.users = order.map { grouped.users[$0] }
        shuffled.items = order.map { grouped.items[$0] }
        shuffled.times = order.map { grouped.times[$0] }
        shuffled.strengths = order.map { grouped.strengths[$0] }
        var (before, after) = shuffled.split(at: 1050)
        var expected = grouped
        _ = expected.sortAndDeduplicate()
        let same = Self.same(EventLog.rejoining(&before, &after), expected)
        #expect(same)
    }
}
