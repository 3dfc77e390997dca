public import Logging
public import NIOCore
import NIOHTTP1
import NIOPosix
public import Prometheus
public import ServiceLifecycle
import Synchronization

/// A minimal HTTP endpoint serving `GET /metrics` in the Prometheus text format (off the request hot path).
///
/// Its connections share the process's open-files limit with the protocol port, so they are bounded: at most
/// `maxConnections` at once (more get 503 and are closed) and each is closed after `idleTimeout` without a request.
/// Before, connections that sent nothing were kept forever: enough of them would have left `kairos serve` unable to
/// accept its clients.
public final class MetricsHTTPServer: Service, Sendable {
    let host: String
    let port: Int
    let registry: PrometheusCollectorRegistry
    let logger: Logger
    let maxConnections: Int
    let idleTimeout: TimeAmount
    let onListening: (@Sendable (Int) -> Void)?
    private let openCount = Atomic<Int>(0)
    private let listener = Mutex<(any Channel)?>(nil)
    /// The default connection limit (descriptors `kairos serve` keeps for the endpoint).
    public static let defaultMaxConnections = 64

    /// - Parameters:
    ///   - maxConnections: scrapers connected at once (a Prometheus server holds one).
    ///   - idleTimeout: how long a connection may go without sending a request (longer than scrape intervals, so a
    ///     scraper's kept-alive connection is normally reused).
    ///   - onListening: called once bound, with the actual port (useful with port 0).
    public init(
        host: String,
        port: Int,
        registry: PrometheusCollectorRegistry,
        logger: Logger,
        maxConnections: Int = MetricsHTTPServer.defaultMaxConnections,
        idleTimeout: TimeAmount = .seconds(300),
        onListening: (@Sendable (Int) -> Void)? = nil
    ) {
        self.host = host
        self.port = port
        self.registry = registry
        self.logger = logger
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
        self.onListening = onListening
    }

    /// Binds the port and returns it, so that a taken port fails `kairos serve` before it announces itself; `run()`
    /// then serves that socket (binding first if this was not called).
    @discardableResult
    public func start() async throws -> Int {
        if let channel = listener.withLock({ $0 }) { return channel.localAddress?.port ?? port }
        let registry = self.registry
        let maxConnections = self.maxConnections
        let idleTimeout = self.idleTimeout
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { [self] ch in
                    let open = openCount.add(1, ordering: .relaxed).newValue
                    ch.closeFuture.whenComplete { _ in self.openCount.subtract(1, ordering: .relaxed) }
                    if open > maxConnections {
                        return ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(MetricsRefusal()) }
                    }
                    return ch.eventLoop.makeCompletedFuture {
                        try ch.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                        try ch.pipeline.syncOperations.configureHTTPServerPipeline()
                        try ch.pipeline.syncOperations.addHandler(MetricsHandler(registry: registry))
                    }
                }
                .bind(host: host, port: port)
                .get()
        } catch {
            throw MetricsEndpointError(description: "cannot serve metrics on \(host):\(port): \(error)")
        }
        listener.withLock { $0 = channel }
        let bound = channel.localAddress?.port ?? port
        logger.info("metrics endpoint", metadata: ["metrics.url": "http://\(host):\(bound)/metrics"])
        onListening?(bound)
        return bound
    }

    /// Closes a socket bound by `start()` when the server will not run after all (its protocol port was taken).
    public func close() {
        listener.withLock { $0 }?.close(promise: nil)
    }

    public func run() async throws {
        try await start()
        guard let channel = listener.withLock({ $0 }) else { return }
        // Cancelled when another service fails: a future's get() does not end on cancellation by itself.
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await channel.closeFuture.get()
            } onGracefulShutdown: {
                channel.close(promise: nil)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let registry: PrometheusCollectorRegistry
    private var path = ""

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            path = head.uri
        case .body:
            break
        case .end:
            let ok = path == "/metrics"
            let body = ok ? registry.emitToBuffer() : Array("not found; try /metrics\n".utf8)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: ok ? "text/plain; version=0.0.4" : "text/plain")
            headers.add(name: "Content-Length", value: "\(body.count)")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: ok ? .ok : .notFound, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)  // no request for the idle timeout
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// Answers a connection over the limit with 503, then closes it.
final class MetricsRefusal: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {
        let text = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text))).whenComplete { _ in channel.close(promise: nil) }
    }
}

@available(*, unavailable)
extension MetricsRefusal: Sendable {}

@available(*, unavailable)
extension MetricsHandler: Sendable {}

/// The metrics endpoint could not start (its port is taken), as one line.
struct MetricsEndpointError: Error, CustomStringConvertible {
    let description: String
}
