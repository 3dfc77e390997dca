public import ArgumentParser
import FoundationEssentials
import KairosClient
import KairosProtocol
import NIOCore

/// Options every `kairos query` operation shares.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Server address, or replicas to fail over between: HOST[:PORT],... ([IPv6]:PORT; PORT defaults to --port).")
    var host = "127.0.0.1"
    @Option(help: "Server port (of the hosts given without one).")
    var port = 7878
    @Option(help: "Model name.")
    var model = "default"
    @Option(help: "Pin a model version (0 = whatever serves now).")
    var modelVersion: UInt64 = 0
    @Option(help: "Timeout in milliseconds.")
    var timeoutMs = 5000
    @Flag(help: "Print JSON.")
    var json = false

    var modelRef: ModelRef { ModelRef(name: model, version: modelVersion) }

    func validate() throws {
        guard (1...65_535).contains(port) else { throw ValidationError("--port must be 1 to 65535") }
        guard timeoutMs >= 1 else { throw ValidationError("--timeout-ms must be at least 1") }
        _ = try endpoints()
    }

    /// The endpoints `--host` names, in order.
    func endpoints() throws -> [Endpoint] {
        try host.split(separator: ",", omittingEmptySubsequences: false).map { spec -> Endpoint in
            let text = String(spec.filter { $0 != " " })
            var name = Substring(text)
            var portText: Substring?
            if name.hasPrefix("[") {  // [IPv6] or [IPv6]:PORT
                guard let close = name.firstIndex(of: "]") else { throw ValidationError("--host: unclosed '[' in \(text)") }
                let rest = name[name.index(after: close)...]
                if !rest.isEmpty {
                    guard rest.hasPrefix(":") else { throw ValidationError("--host: expected ':PORT' after ']' in \(text)") }
                    portText = rest.dropFirst()
                }
                name = name[name.index(after: name.startIndex)..<close]
            } else if name.filter({ $0 == ":" }).count == 1, let colon = name.firstIndex(of: ":") {
                portText = name[name.index(after: colon)...]
                name = name[..<colon]
            }  // more than one ':' unbracketed: a bare IPv6 address
            guard !name.isEmpty else { throw ValidationError("--host: empty host in \"\(host)\"") }
            var p = port
            if let portText {
                guard let value = Int(portText), (1...65_535).contains(value) else {
                    throw ValidationError("--host: port must be 1 to 65535 in \(text)")
                }
                p = value
            }
            return Endpoint(host: String(name), port: p)
        }
    }

    /// Connects, sends `request`, prints the response; exits 1 on an error response.
    func run(_ request: Request) async throws {
        let client = try await KairosClient.connect(endpoints: try endpoints(), timeout: .milliseconds(Int64(timeoutMs)))
        defer { Task { await client.close() } }
        let response = try await client.send(request)
        print(json ? try ResponseRendering.json(response) : ResponseRendering.text(response))
        if case .error = response { throw ExitCode(1) }
    }
}

/// Real-time context options (score, topk, push).
struct ContextOptions: ParsableArguments {
    @Option(name: .customLong("event"), help: "A recent event ITEM:STRENGTH:UNIX_SECONDS (repeatable).")
    var events: [String] = []
    @Option(help: "Reference time, unix seconds (default: the server's clock).")
    var now: Int64 = 0
    @Option(help: "Decay of the events: model, none, exponential:HALF_LIFE_S, linear:WINDOW_S, sigmoid:MIDPOINT_S:STEEPNESS.")
    var decay = "model"

    func context() throws -> RealtimeContext {
        let parsed = try events.map { text -> RealtimeEvent in
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 3, let s = Float(parts[1]), s.isFinite, let t = Int64(parts[2]) else {
                throw ValidationError("--event must be ITEM:STRENGTH:UNIX_SECONDS, got \(text)")
            }
            return RealtimeEvent(item: String(parts[0]), strength: s, timestamp: t)
        }
        let d = decay.split(separator: ":").map(String.init)
        let value: EventDecay
        switch (d.first ?? "", d.count) {
        case ("model", 1): value = .modelDefault
        case ("none", 1): value = .none
        case ("exponential", 2) where Double(d[1]) != nil: value = .exponential(halfLifeSeconds: Double(d[1])!)
        case ("linear", 2) where Double(d[1]) != nil: value = .linear(windowSeconds: Double(d[1])!)
        case ("sigmoid", 3) where Double(d[1]) != nil && Double(d[2]) != nil:
            value = .sigmoid(midpointSeconds: Double(d[1])!, steepnessPerSecond: Double(d[2])!)
        default: throw ValidationError("bad --decay \(decay)")
        }
        return RealtimeContext(events: parsed, decay: value, now: now)
    }
}

/// `kairos query`: one request to a running server.
public struct Query: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Send one request to a running kairos server and print the answer.",
        subcommands: [Ping.self, Info.self, Stats.self, Score.self, TopK.self, Similar.self, Push.self, Reload.self, Pin.self, Rollback.self]
    )

    @OptionGroup var connection: ConnectionOptions

    public init() {}

    struct Ping: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "PING the server.")
        @ParentCommand var query: Query
        var connection: ConnectionOptions { query.connection }
        func run() async throws { try await connection.run(.ping) }
    }

    struct Info: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Loaded models and server limits.")
        @ParentCommand var query: Query
        var connection: ConnectionOptions { query.connection }
        func run() async throws { try await connection.run(.info) }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Request counters and latency percentiles.")
        @ParentCommand var query: Query
        var connection: ConnectionOptions { query.connection }
        func run() async throws { try await connection.run(.stats) }
    }

    struct Reload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Admin: rescan the models folder now.")
        @ParentCommand var query: Query
        var connection: ConnectionOptions { query.connection }
        func run() async throws { try await connection.run(.reload) }
    }

    struct Pin: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Admin: serve this version of the model (--model); 0 unpins.")
        @ParentCommand var query: Query
        var connection: ConnectionOptions { query.connection }
        @Argument(help: "Version to serve (0 = unpin).") var version: UInt64
        func run() async throws { try await connection.run(.pin(name: connection.model, version: version)) }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Admin: serve the previous valid version of the model (--model).")
        @ParentCommand var query: Query
        var connection: ConnectionOptions { query.connection }
        func run() async throws { try await connection.run(.rollback(name: connection.model)) }
    }

    struct Score: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Score candidate items for a user.")
        @ParentCommand var query: Query
        var connection: ConnectionOptions { query.connection }
        @OptionGroup var context: ContextOptions
        @Option(help: "User id.") var user: String
        @Argument(help: "Candidate item ids.") var items: [String]
        func run() async throws {
            try await connection.run(.score(ScoreRequest(model: connection.modelRef, user: user, candidates: IdList(items), context: try context.context())))
        }
    }

    struct TopK: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "topk", abstract: "A user's best items.")
        @ParentCommand var query: Query
        var connection: ConnectionOptions { query.connection }
        @OptionGroup var context: ContextOptions
        @Option(help: "User id.") var user: String
        @Option(help: "How many items.") var k: UInt16 = 10
        @Flag(help: "Keep items the user already has (repeat purchases).") var allowRepeats = false
        @Option(help: "Only items of this category.") var category = ""
        @Option(help: "Never return this item (repeatable).") var exclude: [String] = []
        @Option(help: "Weight of trending popularity (overrides the model's).") var trendingWeight: Float?
        @Option(help: "Weight of buy-again (overrides the model's).") var buyAgainWeight: Float?
        func run() async throws {
            var options: TopKRequest.Options = allowRepeats ? [.allowRepeats] : []
            if trendingWeight != nil || buyAgainWeight != nil { options.insert(.customWeights) }
            let r = TopKRequest(
                model: connection.modelRef, user: user, k: k, options: options, category: category,
                trendingWeight: trendingWeight ?? 0, buyAgainWeight: buyAgainWeight ?? 0, exclude: exclude,
                context: try context.context()
            )
            try await connection.run(.topK(r))
        }
    }

    struct Similar: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Items most similar to an item.")
        @ParentCommand var query: Query
        var connection: ConnectionOptions { query.connection }
        @Argument(help: "Item id.") var item: String
        @Option(help: "How many items.") var k: UInt16 = 10
        @Option(help: "Only items of this category.") var category = ""
        func run() async throws {
            try await connection.run(.similar(SimilarRequest(model: connection.modelRef, item: item, k: k, category: category)))
        }
    }

    struct Push: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Should we push to this user now, what, and when?")
        @ParentCommand var query: Query
        var connection: ConnectionOptions { query.connection }
        @OptionGroup var context: ContextOptions
        @Option(help: "User id.") var user: String
        @Option(name: .customLong("pushed-at"), help: "Unix seconds of a push already sent (repeatable).") var pushes: [Int64] = []
        @Option(help: "Most pushes per 24 hours (0 = no cap).") var maxPerDay: UInt8 = 2
        @Option(help: "Most pushes per 7 days (0 = no cap).") var maxPerWeek: UInt8 = 7
        @Option(help: "Minimum seconds between pushes.") var minGap: UInt32 = 4 * 3600
        @Option(help: "Quiet hours START-END in local time, e.g. 22-8 (equal = none).") var quiet = "22-8"
        @Option(help: "The user's UTC offset in minutes.") var utcOffset: Int16 = 0
        @Option(help: "Minimum best score worth a push.") var threshold: Float = 0
        @Option(help: "Items to propose.") var k: UInt16 = 3
        func run() async throws {
            let q = quiet.split(separator: "-").compactMap { UInt8($0) }
            guard q.count == 2, q[0] < 24, q[1] < 24 else { throw ValidationError("--quiet must be START-END hours, e.g. 22-8") }
            let r = PushDecideRequest(
                model: connection.modelRef, user: user, recentPushes: pushes, maxPerDay: maxPerDay, maxPerWeek: maxPerWeek,
                minGapSeconds: minGap, quietStartHour: q[0], quietEndHour: q[1], utcOffsetMinutes: utcOffset,
                threshold: threshold, k: k, context: try context.context()
            )
            try await connection.run(.pushDecide(r))
        }
    }
}
