import Glibc
import KairosKernels
import KairosModelFormat
import Synchronization
import Testing

@testable import KairosTrainer

@Suite struct TrainerTests {
    func smallConfig(_ input: String, out: String?) -> TrainerConfig {
        var c = TrainerConfig(input: input)
        c.output = out
        c.als.factors = 8
        c.als.iterations = 4
        c.k = 5
        return c
    }

    func synthetic(_ dir: TempFolder) throws -> String { try Logs.synthetic(in: dir) }

    /// One row from a wrong clock (year 2100) would be the newest event, the decay reference, and decay every real
    /// event to nothing. The default configuration drops it as a bad row: the model file is byte for byte the one
    /// trained without that row.
    @Test func rowFromAWrongClockDoesNotBecomeTheDecayReference() throws {
        let dir = TempFolder()
        let clean = try synthetic(dir)
        let text = String(decoding: dir.read("s.csv"), as: UTF8.self)
        let tainted = dir.write(text + "user-1,item-1,4102444800,purchase\n", to: "tainted.csv")
        let a = try Trainer.run(smallConfig(clean, out: "\(dir.path)/a.kmodel"))
        let b = try Trainer.run(smallConfig(tainted, out: "\(dir.path)/b.kmodel"))
        #expect(a.report.data.badRows == 0 && b.report.data.badRows == 1)
        #expect(b.report.data.lastEventTime == a.report.data.lastEventTime)
        #expect(dir.read("a.kmodel") == dir.read("b.kmodel"))
    }

    /// The synthetic log touches every catalogue item, and its attributes file puts item i in category i % n; a model
    /// trained on both has every item with the category the file gave it.
    @Test func syntheticLogAndAttributesCoverTheCatalogue() throws {
        let dir = TempFolder()
        var g = SyntheticLog()
        g.users = 40
        g.items = 300
        g.categories = 7
        g.eventsPerUser = 10
        try g.writeCSV(to: "\(dir.path)/e.csv")
        try g.writeItemsCSV(to: "\(dir.path)/i.csv")
        var c = smallConfig("\(dir.path)/e.csv", out: "\(dir.path)/m.kmodel")
        c.itemsPath = "\(dir.path)/i.csv"
        c.tune = false
        _ = try Trainer.run(c)
        let model = try MappedModel(path: "\(dir.path)/m.kmodel")
        #expect(model.itemCount == 300)
        let attributes = try #require(model.attributes)
        let names = try #require(model.categoryNames)
        for row in [0, 1, 150, 299] {
            let id = model.items.table[row]
            let n = Int(id.dropFirst("item-".count))!
            let category = try #require(attributes.category(row))
            #expect(names[Int(category)] == "category-\(n % 7)", "\(id)")
        }
    }

    /// A fixed seed gives the same model file bytes twice, and the file loads with its golden triples verified.
    @Test func deterministicModelFileThatLoads() throws {
        let dir = TempFolder()
        let input = try synthetic(dir)
        let a = try Trainer.run(smallConfig(input, out: "\(dir.path)/a.kmodel"))
        // With progress lines (the evaluation fits then compute their losses too), the same bytes.
        let lines = Mutex<[String]>([])
        _ = try Trainer.run(
            smallConfig(input, out: "\(dir.path)/b.kmodel"), progress: Progress { line in lines.withLock { $0.append(line) } }
        )
        let bytesA = dir.read("a.kmodel")
        #expect(!bytesA.isEmpty)
        #expect(bytesA == dir.read("b.kmodel"))
        // Silent, the final fit still reports its losses; the evaluation fits' lines show theirs when shown.
        #expect(a.report.losses.count == 4 && a.report.losses.allSatisfy(\.isFinite))
        #expect(lines.withLock { $0 }.contains { $0.contains("test fit: iteration 4/4 loss ") && !$0.contains("loss -") })
        let model = try MappedModel(path: "\(dir.path)/a.kmodel")
        #expect(model.userCount == a.report.data.users && model.itemCount == a.report.data.items)
        #expect(model.dimensions == 8)
        #expect(!model.golden.isEmpty)
        #expect(model.history != nil && model.activity != nil && model.popularity != nil)
        #expect(model.metadata.algorithm == "wals-cg")
        #expect(Set(model.metadata.scoring?.keys ?? [:].keys) == ["exclude-seen", "allow-repeats"])
        #expect(model.metadata.evaluation["allow-repeats"]?["buy-again"]?["ndcg@5"] != nil)
        #expect(model.metadata.evaluation["exclude-seen"]?["model"]?["recall@5"] != nil)
        #expect(model.metadata.evaluation["exclude-seen"]?["model"]?["ndcg@5_se"] != nil)
        #if os(Linux)
            // A real process high-water mark: at least the model file's bytes, which were built in memory.
            #expect((a.report.peakResidentBytes ?? 0) > bytesA.count)
        #endif
    }

    /// The report compares the model with every other method on the same test users: the paired gain is the
    /// difference of the two NDCGs, with a standard error that is zero only against the model itself.
    @Test func testComparisonsArePairedGains() throws {
        let dir = TempFolder()
        let result = try Trainer.run(smallConfig(try synthetic(dir), out: nil))
        for p in ["exclude-seen", "allow-repeats"] {
            let methods = try #require(result.report.test[p])
            let gains = try #require(result.report.comparisons[p])
            #expect(Set(gains.keys) == Set(methods.keys).subtracting(["model"]), "\(p)")
            let model = try #require(methods["model"]?["ndcg@5"])
            for (name, g) in gains {
                let other = try #require(methods[name]?["ndcg@5"])
                let gain = try #require(g["ndcg@5_gain"])
                #expect(abs(gain - (model - other)) < 1e-12, "\(p) \(name)")
                let se = try #require(g["ndcg@5_gain_se"])
                #expect(se >= 0 && se.isFinite)
            }
            // The popularity ranking is not the model's: their per-user NDCGs differ somewhere.
            #expect(gains["popularity"]!["ndcg@5_gain_se"]! > 0, "\(p)")
        }
    }

    /// `encoding` decides how the file stores the factors; the file loads with its golden triples verified, and the
    /// stored rows are the trained factors rounded the way that encoding rounds (what evaluation also scored).
    @Test func encodingStoresTheFactorsAsAsked() throws {
        let dir = TempFolder()
        let input = try synthetic(dir)
        var c = smallConfig(input, out: "\(dir.path)/f32.kmodel")
        c.tune = false
        _ = try Trainer.run(c)
        let f32 = try MappedModel(path: "\(dir.path)/f32.kmodel")
        #expect(f32.itemFactors.encoding == .float32)
        for encoding in [RowEncoding.float16, .int8] {
            c.output = "\(dir.path)/\(encoding).kmodel"
            c.encoding = encoding
            _ = try Trainer.run(c)
            let model = try MappedModel(path: c.output!)
            #expect(model.itemFactors.encoding == encoding && model.userFactors?.encoding == encoding)
            #expect(!model.golden.isEmpty)
            for row in [0, 17, model.itemCount - 1] {
                let full = RowEncoder.decodeRow(row, of: f32.itemFactors)
                let stored = RowEncoder.decodeRow(row, of: model.itemFactors)
                let largest = full.map(abs).max()!
                for (x, y) in zip(full, stored) {
                    switch encoding {
                    case .float16: #expect(y == Float(Float16(x)), "row \(row)")
                    default: #expect(abs(x - y) <= largest / 127 / 2 * 1.0001, "row \(row)")
                    }
                }
            }
        }
    }

    /// The report holds every method for both protocols, split sizes, and the fit time; the JSON carries them.
    @Test func reportCoversMethodsAndProtocols() throws {
        let dir = TempFolder()
        let r = try Trainer.run(smallConfig(try synthetic(dir), out: nil)).report
        let methods = ["model", "als", "als-no-decay", "model-no-decay", "popularity", "trending"]
        for p in ["exclude-seen", "allow-repeats"] {
            for m in methods { #expect(r.test[p]?[m]?["ndcg@5"] != nil, "\(p) \(m)") }
        }
        #expect(r.test["allow-repeats"]?["buy-again"] != nil)
        #expect(r.split.trainEvents + r.split.testEvents == r.data.events)
        #expect(r.split.validationStartTime! < r.split.testStartTime!)
        #expect(r.fitSeconds > 0)
        let json = r.json()
        #expect(json.contains("\"fitSeconds\"") && json.contains("\"ndcg@5\"") && json.contains("\"map@5\""))
    }

    /// New arrivals: two items arrive every day and sell slowly on their first days, most in the two weeks after,
    /// then little, so at any cut the newest items have few events yet and most of their sales to come. Validation
    /// picks a freshness half-life, the blend weighs it, and the test future is ranked better than by the same
    /// training without the term.
    @Test func freshnessIsLearnedWhereNewArrivalsSell() throws {
        let dir = TempFolder()
        var lines = ["user,item,timestamp"]
        var state: UInt64 = 42
        func next() -> Double {  // LCG, deterministic
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(state >> 11) / Double(1 << 53)
        }
        let day: Int64 = 86_400
        for d in 0..<120 {
            for item in 0..<min(240, 2 * (d + 1)) {
                let age = d - item / 2
                let rate = age == 0 ? 0.3 : age <= 3 ? 1.0 : age <= 14 ? 3.0 : 0.2
                for _ in 0..<Int(rate + next()) {
                    let user = Int(next() * 150)
                    lines.append("u\(user),i\(item),\(1_700_000_000 + Int64(d) * day + Int64(next() * 86_000))")
                }
            }
        }
        let path = dir.write(lines.joined(separator: "\n") + "\n", to: "arrivals.csv")
        let r = try Trainer.run(smallConfig(path, out: nil)).report
        var off = smallConfig(path, out: nil)
        off.freshnessHalfLifeDays = 0
        let r0 = try Trainer.run(off).report
        let h = try #require(r.parameters["freshness_half_life_days"])
        #expect(h > 0)
        #expect((r.scoring["exclude-seen"]?["freshness"] ?? 0) > 0)
        #expect(r0.parameters["freshness_half_life_days"] == 0 && r0.scoring["exclude-seen"]?["freshness"] == 0)
        let ndcg = try #require(r.test["exclude-seen"]?["model"]?["ndcg@5"])
        let ndcg0 = try #require(r0.test["exclude-seen"]?["model"]?["ndcg@5"])
        #expect(ndcg > ndcg0 + 0.02, "with freshness \(ndcg), without \(ndcg0)")
    }

    /// `strict` makes a log with one bad row fail; without it the row is counted and training goes on.
    @Test func strictPropagates() throws {
        let dir = TempFolder()
        let path = dir.write(Logs.twoGroups() + "a1,x1,never,view\n", to: "g.csv")
        var c = smallConfig(path, out: nil)
        c.holdout = 0
        c.tune = false
        #expect(try Trainer.run(c).report.data.badRows == 1)
        c.ingest.strict = true
        #expect(throws: TrainerError.self) { _ = try Trainer.run(c) }
    }

    /// Item attributes attach categories to the right rows; unknown items in the file are skipped.
    @Test func itemAttributes() throws {
        let dir = TempFolder()
        let path = dir.write(
            "item,title,genres,price\nx1,\"A, b\",Drama|Comedy,3.5\nzz,no,Noir,1\ny2,c,,\n",
            to: "items.csv"
        )
        let (a, skipped) = try ItemAttributesReader.read(path: path, itemIds: ["y2", "x1", "x9"])
        #expect(skipped == 1)
        #expect(a.categoryNames == ["Drama"])
        #expect(a.category == [ItemAttributes.none, 0, ItemAttributes.none])
        #expect(a.price[1] == 3.5 && a.price[0].isNaN)
    }

    /// A `--now` so late that every event's decayed weight underflows to zero would give all-zero factors: the run
    /// fails with a configuration error instead of writing that model. A merely late one still trains.
    @Test func referenceThatDecaysEverythingAwayIsRefused() throws {
        let dir = TempFolder()
        var c = smallConfig(try synthetic(dir), out: "\(dir.path)/m.kmodel")
        c.tune = false
        c.now = 4_102_444_800  // 2100, 74 years after the log: 2^-900 and beyond
        #expect {
            _ = try Trainer.run(c)
        } throws: { error in
            (error as? TrainerError)?.code == .invalidConfiguration && "\(error)".contains("check --now")
        }
        #expect(access(c.output!, F_OK) != 0)
        c.now = Logs.monday + 400 * Logs.day
        #expect(try Trainer.run(c).report.data.pairs > 0)
    }

    /// A crawler-like user (over 100x the median events) is reported; with `maxUserEvents` it is left out with the
    /// items only it touched, and the model is byte for byte the one trained on the log without its rows.
    @Test func heavyUsersAreReportedAndCanBeLeftOut() throws {
        let dir = TempFolder()
        let humansPath = try Logs.synthetic(in: dir, name: "humans.csv", users: 80, categories: 20, eventsPerUser: 8)
        let humans = String(decoding: dir.read("humans.csv"), as: UTF8.self)
        // The crawler's rows come last, so every other id is interned in the same order in both files.
        let start = SyntheticLog().end - 20 * Logs.day  // inside the log's period
        let crawl = (0..<3000).map { "crawler,crawled-\($0 % 500),\(start + Int64($0)),view" }
        let withBot = dir.write(humans + crawl.joined(separator: "\n") + "\n", to: "bot.csv")

        let kept = try Trainer.run(smallConfig(withBot, out: nil))
        #expect(kept.report.data.heavyUsers == 1 && kept.report.data.droppedUsers == 0)
        #expect(try kept.requireContents().userIds.contains("crawler"))

        var c = smallConfig(withBot, out: "\(dir.path)/dropped.kmodel")
        c.maxUserEvents = 1000
        let dropped = try Trainer.run(c)
        #expect(dropped.report.data.droppedUsers == 1 && dropped.report.data.droppedEvents == 3000)
        #expect(dropped.report.data.users == 80 && dropped.report.data.events == kept.report.data.events - 3000)
        _ = try Trainer.run(smallConfig(humansPath, out: "\(dir.path)/humans.kmodel"))
        #expect(dir.read("dropped.kmodel") == dir.read("humans.kmodel"))

        c.maxUserEvents = 1
        #expect {
            _ = try Trainer.run(c)
        } throws: { error in
            (error as? TrainerError)?.code == .invalidConfiguration
        }
    }

    /// An output the run could not write (or an --items file it could not read) fails before ingest, naming the
    /// option, not at the write after training.
    @Test func unwritableOutputFailsBeforeTraining() throws {
        let dir = TempFolder()
        let input = try synthetic(dir)
        for (out, words) in [("\(dir.path)/missing/m.kmodel", "does not exist"), (dir.path, "not a regular file")] {
            #expect {
                _ = try Trainer.run(smallConfig(input, out: out))
            } throws: { error in
                let e = error as? TrainerError
                return e?.code == .io && e?.context.hasPrefix("--out \(out): ") == true && e?.context.contains(words) == true
            }
        }
        var missingItems = smallConfig(input, out: nil)
        missingItems.itemsPath = "\(dir.path)/no-items.csv"
        #expect {
            _ = try Trainer.run(missingItems)
        } throws: { error in
            (error as? TrainerError)?.context.hasPrefix("--items \(dir.path)/no-items.csv: cannot read") == true
        }
        #expect(throws: Never.self) { try Trainer.checkWritable("\(dir.path)/new.kmodel", what: "--out") }
        #expect(throws: Never.self) { try Trainer.checkWritable("relative.kmodel", what: "--out") }
    }

    /// Category and brand names are model strings (at most 1024 bytes): a longer one is left out, so the model is
    /// still written (it once failed the whole run at the write).
    @Test func overlongAttributeNamesAreLeftOut() throws {
        let dir = TempFolder()
        let long = String(repeating: "c", count: 1025), longest = String(repeating: "k", count: 1024)
        let path = dir.write("item,category,brand\nx1,\(long),\(long)\nx2,\(longest),\(longest)\n", to: "items.csv")
        let (a, _) = try ItemAttributesReader.read(path: path, itemIds: ["x1", "x2"])
        #expect(a.category == [ItemAttributes.none, 0] && a.brand == [ItemAttributes.none, 0])
        #expect(a.categoryNames == [longest] && a.brandNames == [longest])

        let events = dir.write("user,item,timestamp\nu1,x1,100\nu1,x2,200\nu2,x2,300\n", to: "e.csv")
        var c = smallConfig(events, out: "\(dir.path)/m.kmodel")
        c.itemsPath = path
        c.holdout = 0
        _ = try Trainer.run(c)
        #expect(try MappedModel(path: "\(dir.path)/m.kmodel").categoryNames?.count == 1)
    }

    /// A model trained with an items file that has categories but no brand column (MovieLens' shape) loads, with the
    /// categories in place: its empty brand table once crashed the loader, so `kairos serve` died on such a model.
    @Test func modelWithCategoriesButNoBrandsLoads() throws {
        let dir = TempFolder()
        let events = dir.write(Logs.twoGroups(), to: "g.csv")
        let (log, _) = try EventLogReader.read(path: events)
        let genres = ["Drama|Comedy", "Action", "Comedy"]
        let lines = log.itemIds.enumerated().map { "\($1),Title \($0),1998,\(genres[$0 % 3])" }
        let items = dir.write((["item,title,year,genres"] + lines).joined(separator: "\n") + "\n", to: "items.csv")
        var c = smallConfig(events, out: "\(dir.path)/m.kmodel")
        c.itemsPath = items
        _ = try Trainer.run(c)
        let model = try MappedModel(path: "\(dir.path)/m.kmodel")
        #expect(model.brandNames?.count == 0)
        let names = try #require(model.categoryNames)
        let attributes = try #require(model.attributes)
        for row in 0..<min(6, model.itemCount) {
            let n = log.itemIds.firstIndex(of: model.items.table[row])!
            #expect(names[Int(try #require(attributes.category(row)))] == genres[n % 3].split(separator: "|")[0])
            #expect(attributes.brand(row) == nil)
        }
    }

    /// `now` sets the decay reference of the final model (trending, history) and the default creation time.
    @Test func nowSetsTheReferenceTime() throws {
        let dir = TempFolder()
        let path = dir.write(Logs.twoGroups(), to: "g.csv")
        var c = smallConfig(path, out: nil)
        c.holdout = 0
        c.tune = false
        c.trendingHalfLifeDays = 30
        let base = try Trainer.run(c).requireContents()
        c.now = Logs.monday + 60 * Logs.day
        let later = try Trainer.run(c).requireContents()
        #expect(later.popularity?.referenceTime == c.now)
        #expect(later.createdAt == c.now)
        #expect(later.history?.referenceTime == c.now)
        // Two months later (30-day half-life) every decayed weight is about a quarter of what it was.
        let ratio = later.popularity!.decayed[0] / base.popularity!.decayed[0]
        #expect(ratio > 0.2 && ratio < 0.3)
        #expect(later.popularity!.allTime == base.popularity!.allTime)
    }
}

@Suite struct DegenerateSplitTests {
    /// A log whose events all share one timestamp has nothing before the holdout cut: training still writes a model
    /// with the default blend, and the progress output says why nothing was evaluated.
    @Test func allEventsAtOneTimeSaySoAndKeepTheDefaultBlend() throws {
        let dir = TempFolder()
        var lines = ["user,item,timestamp"]
        for u in 0..<20 { for i in 0..<5 { lines.append("u\(u),i\((u + i) % 30),1700000000") } }
        var config = TrainerConfig(input: dir.write(lines.joined(separator: "\n") + "\n", to: "same.csv"))
        config.als.factors = 4
        config.als.iterations = 2
        let said = Mutex<[String]>([])
        let result = try Trainer.run(config, progress: Progress { line in said.withLock { $0.append(line) } })
        #expect(result.report.split.trainEvents == 0)
        #expect(result.report.test.isEmpty)
        #expect(result.report.scoring["exclude-seen"] == BlendWeights().dictionary)
        #expect(said.withLock { $0.contains { $0.contains("split: no event is older than the holdout cut") } })
    }
}
