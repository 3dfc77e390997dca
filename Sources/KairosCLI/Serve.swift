public import ArgumentParser
import KairosModelFormat
import KairosServer
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif
import KairosScoring

/// `kairos serve`: answers the binary protocol for every model in a folder.
public struct Serve: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(abstract: "Serve the models in a folder over the Kairos binary protocol.")

    @Option(help: "Folder of *.kmodel files.")
    var models = "models"
    @Option(help: "Address to listen on (0.0.0.0 to accept remote clients).")
    var host = "127.0.0.1"
    @Option(help: "TCP port.")
    var port = 7878
    @Option(help: "Serve Prometheus metrics on http://HOST:PORT/metrics.")
    var metricsPort: Int?
    @Option(help: "Most simultaneous connections.")
    var maxConnections = 10_000
    @Option(help: "Close connections idle for this many seconds (0: never).")
    var idleTimeout = 300
    @Option(help: "A request frame begun must arrive whole within this many seconds, or the connection gets FRAME_TIMEOUT and is closed (0: no limit).")
    var frameTimeout = 30
    @Option(help: "MiB of requests still arriving that the server holds across all connections; a partial frame past it gets OVERLOADED and its connection is closed.")
    var maxPartialFramesMb = ReceiveBudget.defaultLimit >> 20
    @Option(help: "How models are held: copy (read into memory; safe if files are rewritten in place) or mmap (shared with the page cache; files must be published by rename).")
    var load = "copy"
    @Option(help: "Seconds between full rescans of the models folder (besides inotify and SIGHUP).")
    var rescanInterval = 30
    @Option(help: "Milliseconds of quiet after a folder event before reloading (debounces bursts).")
    var debounceMs = 100
    @Option(help: "Refuse to load a model that would take the loaded models over this many MiB.")
    var memoryBudgetMb: Int?
    @Option(help: "MiB per model kept of known users' least-squares history solves, so that their next request with events skips most of the fold (models trained with the least-squares real-time fold; 0: keep none).")
    var foldCacheMb = ModelSnapshot.defaultFoldCacheBytes >> 20
    @Option(help: "Milliseconds a model swap may spend, before the new model serves, making its least-squares history solves for the users the old model had kept (0: none; requests then make them).")
    var foldCacheWarmMs = 250
    @Option(help: "Full scans (TOPK, SIMILAR) reading more than this many MiB of item rows run on the scan threads instead of the event loop (0: always).")
    var offloadAboveMb = Double(RequestRouter.defaultOffloadAboveBytes >> 20)
    @Option(help: "Event-loop threads (default: one per core).")
    var threads: Int?
    @Option(help: "Threads for offloaded catalogue scans, i.e. how many run at once (default: one per core).")
    var scanThreads: Int?
    @Option(help: "Offloaded scans allowed to wait or run at once; more are refused with OVERLOADED (default: 32 per scan thread).")
    var maxPendingScans: Int?
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    public init() {}

    public func validate() throws {
        // Out-of-range values used to be taken silently: --port 70000 listened on 4464 (70000 mod 65536),
        // --rescan-interval 0 rescanned the folder in a busy loop, --log-level loud logged at info.
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be 0 (any free port) to 65535") }
        if let metricsPort, !(0...65_535).contains(metricsPort) {
            throw ValidationError("--metrics-port must be 0 (any free port) to 65535")
        }
        // Else the server announced itself on the port, then stopped when the metrics endpoint could not bind it.
        if let metricsPort, metricsPort != 0, metricsPort == port {
            throw ValidationError("--metrics-port must differ from --port (both are \(port))")
        }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard rescanInterval >= 1 else { throw ValidationError("--rescan-interval must be at least 1 second") }
        guard debounceMs >= 0 else { throw ValidationError("--debounce-ms must be 0 or more") }
        if let memoryBudgetMb, memoryBudgetMb < 1 { throw ValidationError("--memory-budget-mb must be at least 1") }
        guard (0...1 << 20).contains(foldCacheMb) else { throw ValidationError("--fold-cache-mb must be 0 to 1048576") }
        guard (0...60_000).contains(foldCacheWarmMs) else { throw ValidationError("--fold-cache-warm-ms must be 0 to 60000") }
        guard load == "copy" || load == "mmap" else { throw ValidationError("--load must be copy or mmap") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        guard idleTimeout >= 0 else { throw ValidationError("--idle-timeout must be 0 (never) or a number of seconds") }
        guard frameTimeout >= 0 else { throw ValidationError("--frame-timeout must be 0 (no limit) or a number of seconds") }
        guard maxPartialFramesMb >= 1, maxPartialFramesMb <= 1 << 30 else {
            throw ValidationError("--max-partial-frames-mb must be a number of MiB, at least 1")
        }
        if let scanThreads, scanThreads < 1 { throw ValidationError("--scan-threads must be at least 1") }
        if let maxPendingScans, maxPendingScans < 1 { throw ValidationError("--max-pending-scans must be at least 1") }
        guard offloadAboveMb >= 0, offloadAboveMb.isFinite, offloadAboveMb < 1e6 else {
            throw ValidationError("--offload-above-mb must be a number of MiB, 0 or more")
        }
    }

    public func run() async throws {
        let level = Logger.Level(rawValue: logLevel)!  // validated
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "kairos.serve")
        // Trapped before the server binds and announces itself: a SIGTERM right after the listening line (a quick
        // restart, a test) used to arrive before the service group trapped it, and killed the process undrained
        // (36 of 40 times when sent on that line); a SIGHUP there killed it every time.
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
        var services: [any Service] = []
        var metricsEndpoint: MetricsHTTPServer?
        if let metricsPort {
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            let endpoint = MetricsHTTPServer(host: host, port: metricsPort, registry: registry, logger: logger)
            metricsEndpoint = endpoint
            services.append(endpoint)
        }
        let storage: LoadOptions.Storage = load == "mmap" ? .mapped : .copied  // validated: copy or mmap
        let store = ModelStore()
        let directory = ModelDirectory(
            path: models, store: store, storage: storage, memoryBudget: memoryBudgetMb.map { $0 << 20 },
            foldCacheBytes: foldCacheMb << 20, foldCacheWarmup: .milliseconds(foldCacheWarmMs), logger: logger
        )
        // A folder that cannot be listed otherwise reads as an empty one ("no valid *.kmodel file").
        guard let listing = opendir(models) else {
            throw ServeError("cannot read the models folder \(models): \(String(cString: strerror(errno)))")
        }
        closedir(listing)
        let first = directory.reconcile()
        guard !store.all().isEmpty else {
            let why = first.rejected.isEmpty ? "" : " (\(first.rejected.count) rejected, each logged above with why)"
            throw ServeError("no valid *.kmodel file in \(models)\(why)")
        }
        let watcher = ModelWatcher(
            directory: directory, debounce: .milliseconds(debounceMs), rescanInterval: .seconds(rescanInterval), logger: logger
        )
        var config = ServerConfiguration()
        config.host = host
        config.port = port
        // Each connection is a descriptor: raise the soft limit to fit them, or serve fewer (refusing the rest with
        // OVERLOADED) rather than leave clients unanswered in the backlog once accept() fails.
        // + NIO's singleton threads; + the metrics endpoint's connections, when it runs.
        let reserve = OpenFilesLimit.reserve(eventLoopThreads: (threads ?? System.coreCount) + System.coreCount)
            + (metricsPort == nil ? 0 : MetricsHTTPServer.defaultMaxConnections)
        let files = OpenFilesLimit.fit(connections: maxConnections, reserve: reserve)
        guard files.connections > 0 else {
            throw ServeError("the open files limit (\(files.limit)) leaves no descriptor for a connection; raise it (ulimit -n)")
        }
        if files.connections < maxConnections {
            logger.warning(
                "open files limit \(files.limit) fits \(files.connections) connections, not --max-connections \(maxConnections); serving at most \(files.connections) (raise it: ulimit -n, or LimitNOFILE= in a systemd unit)"
            )
        }
        config.maxConnections = files.connections
        config.offloadAboveBytes = Int(offloadAboveMb * 1_048_576)
        config.idleTimeout = .seconds(Int64(idleTimeout))
        config.frameTimeout = .seconds(Int64(frameTimeout))
        config.maxPartialFrameBytes = maxPartialFramesMb << 20
        config.maxPendingScans = maxPendingScans ?? ServerConfiguration.pendingScansPerThread * (scanThreads ?? System.coreCount)
        let names = store.all().map { "\($0.name) v\($0.version)" }.joined(separator: ", ")
        let host = self.host
        config.onListening = { port in
            // One machine-readable line on stdout (tests and scripts wait for it), then how to query.
            print("kairos: listening on \(host):\(port) serving \(names) (Ctrl-C to stop)")
            print("  try: swift run kairos query --port \(port) info")
            print("       swift run kairos query --port \(port) topk --user user-1 --k 5")
            fflush(nil)  // flushes every stream: stdout is a pipe under scripts
        }
        let group = threads.map { MultiThreadedEventLoopGroup(numberOfThreads: max(1, $0)) } ?? .singleton
        let ownPool = scanThreads.map { NIOThreadPool(numberOfThreads: $0) }
        ownPool?.start()
        let server = KairosServer(configuration: config, store: store, directory: directory, logger: logger, group: group, pool: ownPool ?? .singleton)
        // Bind both ports before anything runs or the listening line is printed, so a taken port is a plain error
        // exit (the service group then only serves). The metrics port first: it used to be bound by its service after
        // the announcement, so "listening" was followed by exit 1 when it was taken.
        do {
            try await metricsEndpoint?.start()
        } catch {
            try? await ownPool?.shutdownGracefully()
            throw ServeError("\(error)")
        }
        do {
            _ = try await server.start()
        } catch {
            metricsEndpoint?.close()
            try? await ownPool?.shutdownGracefully()
            throw ServeError("cannot listen on \(host):\(port): \(error)")
        }
        services.insert(contentsOf: [server, watcher] as [any Service], at: 0)
        let serviceGroup = ServiceGroup(services: services, gracefulShutdownSignals: [], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await signal in signals {
                    if signal == .sighup {
                        logger.info("SIGHUP: rescanning the models folder")
                        watcher.requestRescan()
                    } else {
                        // One that came before the group runs is remembered by it.
                        await serviceGroup.triggerGracefulShutdown()
                    }
                }
            }
            try await serviceGroup.run()
            group.cancelAll()
        }
        try? await ownPool?.shutdownGracefully()
    }
}

/// Why `kairos serve` could not start, as one line.
struct ServeError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
