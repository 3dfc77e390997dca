import ArgumentParser
@testable import KairosCLI
import KairosKernels
import KairosModelFormat
import KairosProtocol
import KairosTrainer
import Testing

@Suite struct ServeQueryParsingTests {
    /// `kairos serve` defaults to loopback, port 7878 and the models folder; every option parses.
    @Test func serveDefaultsAndOptions() throws {
        let plain = try #require(try KairosCommand.parseAsRoot(["serve"]) as? Serve)
        #expect(plain.host == "127.0.0.1" && plain.port == 7878 && plain.models == "models" && plain.metricsPort == nil)
        let full = try #require(
            try KairosCommand.parseAsRoot(["serve", "--models", "/m", "--host", "0.0.0.0", "--port", "9000", "--metrics-port", "9100"]) as? Serve
        )
        #expect(full.host == "0.0.0.0" && full.port == 9000 && full.models == "/m" && full.metricsPort == 9100)
    }

    /// Out-of-range serve options are refused with a message naming the option, not taken silently (`--port 70000`
    /// listened on 4464, `--rescan-interval 0` rescanned in a busy loop, an unknown log level logged at info).
    @Test func serveRefusesOutOfRangeOptions() throws {
        let refused: [([String], String)] = [
            (["--port", "70000"], "--port"), (["--metrics-port", "65536"], "--metrics-port"),
            (["--max-connections", "0"], "--max-connections"), (["--threads", "0"], "--threads"),
            (["--rescan-interval", "0"], "--rescan-interval"), (["--debounce-ms=-5"], "--debounce-ms"),
            (["--memory-budget-mb", "0"], "--memory-budget-mb"), (["--load", "disk"], "--load"),
            (["--log-level", "loud"], "--log-level"), (["--frame-timeout=-1"], "--frame-timeout"),
            (["--max-partial-frames-mb", "0"], "--max-partial-frames-mb"),
            (["--port", "9000", "--metrics-port", "9000"], "--metrics-port"),
        ]
        for (arguments, option) in refused {
            #expect(KairosCommand.message(for: Self.parseError(["serve"] + arguments)).contains(option), "\(arguments)")
        }
        for arguments in [["--port", "0"], ["--port", "0", "--metrics-port", "0"], ["--port", "65535"], ["--log-level", "debug"], ["--load", "mmap"], ["--rescan-interval", "1"]] {
            #expect(throws: Never.self, "\(arguments)") { _ = try KairosCommand.parseAsRoot(["serve"] + arguments) }
        }
        // The clients too: a port past 65535 used to wrap around (70000 dialled 4464).
        for arguments in [["query", "--port", "70000", "ping"], ["query", "--port", "0", "ping"], ["bench", "--port", "65536"]] {
            #expect(KairosCommand.message(for: Self.parseError(arguments)).contains("--port"), "\(arguments)")
        }
    }

    static func parseError(_ arguments: [String]) -> any Error {
        do {
            _ = try KairosCommand.parseAsRoot(arguments)
            return ValidationError("parsed")
        } catch {
            return error
        }
    }

    /// Connection options go before the operation, as in `kairos query --port P topk ...`.
    @Test func queryTakesConnectionOptionsBeforeTheOperation() throws {
        let command = try KairosCommand.parseAsRoot(["query", "--port", "9000", "--json", "topk", "--user", "u1", "--k", "3", "--allow-repeats"])
        let topk = try #require(command as? Query.TopK)
        #expect(topk.user == "u1" && topk.k == 3 && topk.allowRepeats)
    }

    /// `--host` names one server or replicas to fail over between, each with its own port or `--port`'s; bracketed
    /// and bare IPv6 addresses parse; an empty host or a bad port is refused, naming the option.
    @Test func queryHostsAreEndpoints() throws {
        func endpoints(_ args: [String]) throws -> [String] {
            let command = try #require(try KairosCommand.parseAsRoot(["query"] + args + ["ping"]) as? Query.Ping)
            return try command.query.connection.endpoints().map(\.description)
        }
        #expect(try endpoints([]) == ["127.0.0.1:7878"])
        #expect(try endpoints(["--host", "a,b:9001, c", "--port", "9000"]) == ["a:9000", "b:9001", "c:9000"])
        #expect(try endpoints(["--host", "[::1]:9001,::1,[fe80::1]"]) == ["::1:9001", "::1:7878", "fe80::1:7878"])
        for bad in ["a,,b", "a:0", "a:x", "[::1", "[::1]9000", ":9000"] {
            #expect(throws: (any Error).self, "\(bad)") { _ = try KairosCommand.parseAsRoot(["query", "--host", bad, "ping"]) }
        }
    }

    /// Real-time events and decay given on the command line become the request's context; bad ones are refused.
    @Test func eventOptionsBuildTheContext() throws {
        let command = try KairosCommand.parseAsRoot(
            ["query", "score", "--user", "u", "--event", "item-7:2:1767225000", "--decay", "exponential:3600", "--now", "1767225600", "a", "b"]
        )
        let score = try #require(command as? Query.Score)
        #expect(score.items == ["a", "b"])
        let ctx = try score.context.context()
        #expect(ctx == RealtimeContext(events: [RealtimeEvent(item: "item-7", strength: 2, timestamp: 1_767_225_000)], decay: .exponential(halfLifeSeconds: 3600), now: 1_767_225_600))
        let bad = try #require(try KairosCommand.parseAsRoot(["query", "score", "--user", "u", "--event", "item-7:nan:x", "a"]) as? Query.Score)
        #expect(throws: ValidationError.self) { _ = try bad.context.context() }
    }

    /// `kairos train --encoding` reaches the trainer's configuration (float32 unless asked); unknown ones are refused.
    @Test func trainEncodingOption() throws {
        let plain = try #require(try KairosCommand.parseAsRoot(["train", "e.csv"]) as? Train)
        #expect(plain.makeConfig().encoding == .float32)
        let half = try #require(try KairosCommand.parseAsRoot(["train", "e.csv", "--encoding", "float16"]) as? Train)
        #expect(half.makeConfig().encoding == .float16)
        #expect(throws: (any Error).self) { _ = try KairosCommand.parseAsRoot(["train", "e.csv", "--encoding", "float64"]) }
    }

    /// `kairos bench` validates its operation and counts.
    @Test func benchValidatesItsOptions() throws {
        let bench = try #require(try KairosCommand.parseAsRoot(["bench", "--op", "topk", "--connections", "8", "--pipeline", "4", "--duration", "2", "--json"]) as? Bench)
        #expect(bench.op == "topk" && bench.connections == 8 && bench.pipeline == 4 && bench.json)
        #expect(throws: (any Error).self) { _ = try KairosCommand.parseAsRoot(["bench", "--op", "nope"]) }
        #expect(throws: (any Error).self) { _ = try KairosCommand.parseAsRoot(["bench", "--connections", "0"]) }
        let open = try #require(try KairosCommand.parseAsRoot(["bench", "--rate", "2000"]) as? Bench)
        #expect(open.rate == 2000)
        for rate in ["0", "-5", "nan", "inf"] {  // "=" so that "-5" is a value, not an option
            #expect(throws: (any Error).self, "--rate \(rate)") { _ = try KairosCommand.parseAsRoot(["bench", "--rate=\(rate)"]) }
        }
    }

    /// `--ids-from` draws users and items from a model file's own ids (the shipped default model's here); without
    /// it ids are PREFIX + number; a file that is not a model is an error, not an empty id list.
    @Test func benchDrawsIdsFromAModel() throws {
        let path = "\(repositoryRoot)/models/default.kmodel"
        let bench = try #require(try KairosCommand.parseAsRoot(["bench", "--ids-from", path]) as? Bench)
        let ids = try bench.idSource()
        let model = try MappedModel(path: path)
        var rng = SplitMix(1)
        var users = Set<String>()
        for _ in 0..<200 {
            let user = ids.user(&rng)
            let item = ids.item(&rng)
            #expect(model.users?.row(of: user) != nil && model.items.row(of: item) != nil, "\(user) \(item)")
            users.insert(user)
        }
        #expect(users.count > 100)  // drawn across the model's 500 users, not one
        let plain = try #require(try KairosCommand.parseAsRoot(["bench", "--user-prefix", "u", "--users", "3"]) as? Bench)
        let u = try plain.idSource().user(&rng)
        #expect(["u0", "u1", "u2"].contains(u))
        let notModel = try #require(try KairosCommand.parseAsRoot(["bench", "--ids-from", "\(repositoryRoot)/README.md"]) as? Bench)
        #expect(throws: (any Error).self) { _ = try notModel.idSource() }
    }

    /// `kairos serve` refuses a negative idle timeout (0 means never) or no scan thread, `kairos train` an unknown solver.
    @Test func serveAndTrainValidateTheirOptions() throws {
        #expect(throws: (any Error).self) { _ = try KairosCommand.parseAsRoot(["serve", "--idle-timeout=-1"]) }
        let never = try #require(try KairosCommand.parseAsRoot(["serve", "--idle-timeout", "0"]) as? Serve)
        #expect(never.idleTimeout == 0)
        #expect(throws: (any Error).self) { _ = try KairosCommand.parseAsRoot(["serve", "--scan-threads", "0"]) }
        let scans = try #require(try KairosCommand.parseAsRoot(["serve", "--scan-threads", "1"]) as? Serve)
        #expect(scans.scanThreads == 1)
        #expect(throws: (any Error).self) { _ = try KairosCommand.parseAsRoot(["train", "e.csv", "--kernel", "gpu"]) }
        let portable = try #require(try KairosCommand.parseAsRoot(["train", "e.csv", "--kernel", "portable"]) as? Train)
        #expect(portable.kernel == "portable")
    }
}
