public import KairosProtocol
public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
import Metrics
import Synchronization

/// How `kairos serve` listens and what it allows.
public struct ServerConfiguration: Sendable {
    /// Address to bind; 127.0.0.1 unless the operator chooses otherwise.
    public var host = "127.0.0.1"
    /// TCP port (0 = any free port).
    public var port = 7878
    /// Most simultaneous connections; more are refused with OVERLOADED.
    public var maxConnections = 10_000
    /// Connections silent for this long are closed.
    public var idleTimeout: TimeAmount = .seconds(300)
    /// Request limits.
    public var limits = ServerLimits.standard
    /// Scans reading more item-row bytes than this run off the event loop (see ``RequestRouter/offloadAboveBytes``).
    public var offloadAboveBytes = RequestRouter.defaultOffloadAboveBytes
    /// Offloaded scans allowed to wait or run at once, server-wide; past it a scan is refused with OVERLOADED
    /// (connection kept) rather than queued. Default: ``pendingScansPerThread`` per core (the default scan pool has
    /// one thread per core).
    public var maxPendingScans = Self.pendingScansPerThread * System.coreCount
    /// Default pending scans per scan thread.
    public static let pendingScansPerThread = 32
    /// How long a graceful shutdown waits for connections to drain.
    public var drainTimeout: TimeAmount = .seconds(10)
    /// A frame begun must arrive whole within this long (while the server reads from its connection), or the
    /// connection gets FRAME_TIMEOUT and is closed; 0 means no limit.
    public var frameTimeout: TimeAmount = .seconds(30)
    /// Bytes the server holds of requests not yet whole, across all connections; a connection whose partial frame
    /// would take it past this gets OVERLOADED and is closed. See ``ReceiveBudget``.
    public var maxPartialFrameBytes = ReceiveBudget.defaultLimit
    /// Called once the socket is bound, with the actual port (useful with port 0).
    public var onListening: (@Sendable (Int) -> Void)?

    public init() {}
}

/// The TCP server: one event loop per core, models from a folder, a ServiceLifecycle service.
public final class KairosServer: Service, Sendable {
    public let configuration: ServerConfiguration
    public let router: RequestRouter
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    let pool: NIOThreadPool
    /// Counts offloaded scans against ``ServerConfiguration/maxPendingScans``.
    let scans: ScanAdmission
    /// Counts request bytes held by connections against ``ServerConfiguration/maxPartialFrameBytes``.
    let receiveBudget: ReceiveBudget
    private let state = Mutex<(channel: (any Channel)?, children: [ObjectIdentifier: any Channel], draining: Bool)>((nil, [:], false))
    private let openCount = Atomic<Int>(0)

    /// Creates a server for `configuration` over `store` (already loaded).
    public init(
        configuration: ServerConfiguration,
        store: ModelStore,
        directory: ModelDirectory? = nil,
        logger: Logger,
        group: MultiThreadedEventLoopGroup = .singleton,
        pool: NIOThreadPool = .singleton
    ) {
        self.configuration = configuration
        self.router = RequestRouter(store: store, limits: configuration.limits, offloadAboveBytes: configuration.offloadAboveBytes, directory: directory)
        self.logger = logger
        self.group = group
        self.pool = pool
        self.scans = ScanAdmission(limit: configuration.maxPendingScans)
        self.receiveBudget = ReceiveBudget(limit: configuration.maxPartialFrameBytes)
    }

    /// Binds and starts accepting; returns the bound port. Calling it again (``run()`` does) returns the bound port.
    public func start() async throws -> Int {
        if let bound = state.withLock({ $0.channel }) { return bound.localAddress?.port ?? configuration.port }
        let router = self.router
        let pool = self.pool
        let scans = self.scans
        let receiveBudget = self.receiveBudget
        let config = configuration
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelOption(.allowRemoteHalfClosure, value: true)  // a client may send a batch, then SHUT_WR
            .childChannelInitializer { [self] child in
                child.eventLoop.makeCompletedFuture {
                    let open = self.openCount.add(1, ordering: .relaxed).newValue
                    let draining = self.register(child)
                    child.closeFuture.whenComplete { _ in
                        self.openCount.subtract(1, ordering: .relaxed)
                        self.unregister(child)
                    }
                    if open > config.maxConnections || draining {
                        try child.pipeline.syncOperations.addHandler(RefusingHandler(draining ? .shuttingDown : .overloaded))
                        return
                    }
                    try child.pipeline.syncOperations.addHandler(
                        ConnectionHandler(
                            router: router,
                            pool: pool,
                            scans: scans,
                            receiveBudget: receiveBudget,
                            idleTimeout: config.idleTimeout,
                            frameTimeout: config.frameTimeout
                        )
                    )
                }
            }
            .bind(host: config.host, port: config.port)
            .get()
        state.withLock { $0.channel = channel }
        let port = channel.localAddress?.port ?? config.port
        logger.info("listening", metadata: ["server.host": "\(config.host)", "server.port": "\(port)"])
        config.onListening?(port)
        return port
    }

    private func register(_ child: any Channel) -> Bool {
        state.withLock { s in
            s.children[ObjectIdentifier(child)] = child
            return s.draining
        }
    }

    private func unregister(_ child: any Channel) {
        _ = state.withLock { $0.children.removeValue(forKey: ObjectIdentifier(child)) }
    }

    /// Stops accepting, lets every connection answer what it has already read, then closes them.
    public func shutdown() async {
        let (listener, children) = state.withLock { s in
            s.draining = true
            return (s.channel, Array(s.children.values))
        }
        try? await listener?.close()
        for child in children { child.pipeline.fireUserInboundEventTriggered(DrainEvent()) }
        // A connection closes itself once its answers are written; one whose client stops reading would never get
        // there, so each is closed at the deadline whatever it is doing.
        let deadline = NIODeadline.now() + configuration.drainTimeout
        let forcedCloses = children.map { child in child.eventLoop.scheduleTask(deadline: deadline) { child.close(promise: nil) } }
        for child in children { _ = try? await child.closeFuture.get() }
        for close in forcedCloses { close.cancel() }
        for child in state.withLock({ Array($0.children.values) }) { try? await child.close() }
        logger.info("stopped")
    }

    /// ServiceLifecycle entry point: serve until a graceful shutdown (SIGTERM/SIGINT), then drain.
    public func run() async throws {
        _ = try await start()
        let channel = state.withLock { $0.channel }
        // Either way the listener closes and the drain below follows. Cancellation is how the service group ends the
        // others when one service fails (a metrics port already taken); a future's get() does not end on it by itself.
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await channel?.closeFuture.get()
            } onGracefulShutdown: {
                channel?.close(promise: nil)
            }
        } onCancel: {
            channel?.close(promise: nil)
        }
        await shutdown()
    }
}

/// Offloaded scans waiting or running, server-wide, against a limit. Without one, more scans than the pool can do
/// (pipelined or from many connections) queue without bound, and so does every scan's latency: 8 connections x
/// pipeline 64 of TOPK on a 100k-item model, scans offloaded, waited 112-114 ms at the median; with the default
/// limit (64 on 2 cores) the same load got the same 4.2-4.5k scans/s through and every other request an immediate
/// OVERLOADED, which a client can retry elsewhere.
final class ScanAdmission: Sendable {
    let limit: Int
    private let pending = Atomic<Int>(0)
    private let refusedCount = Atomic<Int>(0)
    private let refusedCounter = Counter(label: "kairos_scans_refused_total")

    init(limit: Int) { self.limit = max(1, limit) }

    /// Takes a place for one scan, or returns false (and counts a refusal) when `limit` are pending.
    func tryEnter() -> Bool {
        if pending.add(1, ordering: .relaxed).newValue <= limit { return true }
        pending.subtract(1, ordering: .relaxed)
        refusedCount.add(1, ordering: .relaxed)
        refusedCounter.increment()
        return false
    }

    /// Gives back the place of a scan that finished (or never ran).
    func leave() { pending.subtract(1, ordering: .relaxed) }

    /// Scans refused so far.
    var refused: Int { refusedCount.load(ordering: .relaxed) }
    /// Scans waiting or running now.
    var current: Int { pending.load(ordering: .relaxed) }
}

/// Request bytes held by the connections, server-wide, against a limit. A frame arrives in pieces and is held until
/// whole, up to `maxPayload` (1 MiB) per connection; without a limit, clients that send most of a large frame and
/// then wait (or trickle the rest) pin that much each: 300 such connections took the server from 23 to 346 MiB of RSS,
/// and 10,000 would take 10 GiB. Past the limit, the connection whose partial frame would grow the total is refused.
/// Frames already whole that wait for a stall or a turn count too (they are bounded by a read loop each) but are never
/// refused for it: only a frame still arriving is, and only one of which more than ``alwaysHeld`` bytes have arrived,
/// so the ordinary remnant of a pipelined batch (the start of its next small frame) is never refused because large
/// frames elsewhere fill the budget.
public final class ReceiveBudget: Sendable {
    /// The default limit: 256 MiB, 256 maximum-size frames arriving at once.
    public static let defaultLimit = 256 << 20
    /// A connection holding at most this many bytes (one socket read's worth) is never refused for the limit.
    public static let alwaysHeld = 65_536
    let limit: Int
    /// A lock rather than an atomic so that the gauge is recorded in the order of the changes (it changes once per read
    /// loop that leaves a frame arriving, not per request).
    private let held = Mutex<Int>(0)
    private let heldGauge = Gauge(label: "kairos_partial_frame_bytes")
    private let refusedCount = Atomic<Int>(0)
    private let timedOutCount = Atomic<Int>(0)
    private let refusedCounter = Counter(label: "kairos_partial_frames_refused_total")
    private let timedOutCounter = Counter(label: "kairos_frame_timeouts_total")

    init(limit: Int) { self.limit = max(0, limit) }

    /// Adds `delta` bytes (negative: gives them back) and returns the new total.
    func add(_ delta: Int) -> Int {
        held.withLock { total in
            total += delta
            heldGauge.record(total)
            return total
        }
    }

    /// Counts a partial frame refused for the limit.
    func countRefusal() {
        refusedCount.add(1, ordering: .relaxed)
        refusedCounter.increment()
    }

    /// Counts a partial frame that did not arrive whole in time.
    func countTimeout() {
        timedOutCount.add(1, ordering: .relaxed)
        timedOutCounter.increment()
    }

    /// Bytes held now.
    public var current: Int { held.withLock { $0 } }
    /// Partial frames refused for the limit so far.
    public var refused: Int { refusedCount.load(ordering: .relaxed) }
    /// Partial frames timed out so far.
    public var timedOut: Int { timedOutCount.load(ordering: .relaxed) }
}

/// Answers the first bytes of a refused connection with one error, then closes.
final class RefusingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let code: ProtocolError.Code

    init(_ code: ProtocolError.Code) { self.code = code }

    func channelActive(context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: 64)
        let message = code == .overloaded ? "connection limit reached" : "the server is shutting down"
        Response.error(ProtocolError(code, message)).writeFrame(requestID: 0, to: &out)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in channel.close(promise: nil) }
    }
}

@available(*, unavailable)
extension RefusingHandler: Sendable {}
