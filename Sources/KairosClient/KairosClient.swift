public import KairosProtocol
public import NIOCore
public import NIOPosix
import Synchronization

/// Why a client call failed (besides a server-sent ``ProtocolError``).
public enum ClientError: Error, Sendable, Equatable {
    /// No response within the timeout.
    case timeout
    /// The connection closed before the response arrived.
    case connectionClosed
    /// The server sent a response of a different kind than the request asked for.
    case unexpectedResponse(String)
    /// ``KairosClient/connect(endpoints:timeout:connectTimeout:backoff:maxBackoff:group:)`` was given no endpoint.
    case noEndpoints
}

/// A server's address.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    /// Host name or IP address.
    public var host: String
    /// TCP port.
    public var port: Int

    /// The server at `host:port`.
    public init(host: String, port: Int = 7878) {
        self.host = host
        self.port = port
    }

    /// `host:port`.
    public var description: String { "\(host):\(port)" }
}

/// An async client for a Kairos server or several replicas of one; many calls may be in flight at once (pipelined,
/// matched by request id). Safe to share between tasks.
///
/// Catalogue scans (TOPK, SIMILAR, PUSH_DECIDE) and admin calls (RELOAD, PIN, ROLLBACK) go over a second connection,
/// opened on first use: the server answers a connection in order, so a scan (milliseconds on a large catalogue) would
/// hold up every SCORE behind it. A connection that breaks is replaced on the next call, and a call it broke is sent
/// once more on a fresh connection: the server keeps no per-request state, so every operation is idempotent except
/// ROLLBACK (a second one would go back one more version), which is never resent. The timeout bounds a whole call:
/// connecting, sending, answering.
///
/// With several endpoints (replicas serving the same models), a connection goes to the first healthy one in list
/// order. An endpoint that refuses a connection, or whose new connection breaks before any answer, is avoided for a
/// back-off (doubling from `backoff` to `maxBackoff`) while another is healthy, and the call moves on to the next;
/// when all are down they are tried anyway, the soonest back first. A server that refuses the connection (OVERLOADED
/// at its connection limit, SHUTTING_DOWN while draining: an error frame with request id 0) or answers a call
/// SHUTTING_DOWN has not begun it, so the call goes to the next endpoint; with none left, that error is its answer.
/// As in the Python and Node clients.
public final class KairosClient: Sendable {
    private let endpoints: EndpointHealth
    private let calls: Lane
    private let scans: Lane
    private let nextID = Atomic<UInt32>(1)
    /// Default per-call timeout.
    public let timeout: TimeAmount

    private init(endpoints: EndpointHealth, timeout: TimeAmount, connectTimeout: TimeAmount, group: any EventLoopGroup) {
        self.endpoints = endpoints
        self.timeout = timeout
        calls = Lane(endpoints: endpoints, connectTimeout: connectTimeout, group: group)
        scans = Lane(endpoints: endpoints, connectTimeout: connectTimeout, group: group)
    }

    /// Connects to `host:port` (throws when that fails within `timeout`).
    public static func connect(
        host: String = "127.0.0.1",
        port: Int = 7878,
        timeout: TimeAmount = .seconds(5),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> KairosClient {
        try await connect(endpoints: [Endpoint(host: host, port: port)], timeout: timeout, group: group)
    }

    /// Connects to the first of `endpoints` that accepts within `timeout`, and fails over between them afterwards.
    ///
    /// `connectTimeout` bounds each connection attempt (default: `timeout`); set it lower so that an endpoint that
    /// drops connection attempts silently leaves time to try the next one within a call's timeout.
    public static func connect(
        endpoints: [Endpoint],
        timeout: TimeAmount = .seconds(5),
        connectTimeout: TimeAmount? = nil,
        backoff: TimeAmount = .milliseconds(500),
        maxBackoff: TimeAmount = .seconds(30),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> KairosClient {
        guard !endpoints.isEmpty else { throw ClientError.noEndpoints }
        let health = EndpointHealth(endpoints, backoff: backoff, maxBackoff: max(backoff, maxBackoff))
        let client = KairosClient(
            endpoints: health, timeout: timeout, connectTimeout: connectTimeout ?? timeout, group: group
        )
        _ = try await client.calls.connection(by: .now() + timeout)
        return client
    }

    /// Each endpoint and whether it is healthy (not in a back-off after a failure).
    public var endpointStates: [(endpoint: Endpoint, healthy: Bool)] { endpoints.states() }

    /// Sends `request` and waits for its response (errors from the server are returned as `.error`, not thrown).
    public func send(_ request: Request, timeout: TimeAmount? = nil) async throws -> Response {
        let deadline = NIODeadline.now() + (timeout ?? self.timeout)
        let lane = request.isScanOrAdmin ? scans : calls
        var resent = false
        var refusedBy = Set<Int>()  // endpoints that refused this call unprocessed (overloaded or draining)
        /// Leaves `connection`'s endpoint after it refused the call; whether another endpoint is left to take it.
        func handOff(_ connection: Connection) -> Bool {
            lane.drop(connection)
            endpoints.markDown(connection.endpoint)
            refusedBy.insert(connection.endpoint)
            return endpoints.choose(excluding: refusedBy) != nil
        }
        while true {
            let connection = try await lane.connection(by: deadline, avoiding: refusedBy)
            do {
                let response = try await connection.send(request, id: nextID.add(1, ordering: .relaxed).oldValue, by: deadline)
                if case .error(let e) = response, e.code == .shuttingDown {
                    // Draining: the request was not begun, so another endpoint may take it (even a ROLLBACK).
                    if handOff(connection) { continue }
                    return response
                }
                if !connection.answered.exchange(true, ordering: .relaxed) { endpoints.markUp(connection.endpoint) }
                return response
            } catch let refusal as ConnectionRefusal {
                // The server refused the connection (PROTOCOL.md "Unsolicited errors"): nothing on it was processed.
                if !handOff(connection) { return .error(refusal.error) }
            } catch ClientError.connectionClosed where !resent && !lane.isClosed {
                lane.drop(connection)
                // A connection that broke before any answer says its endpoint is unwell: resend elsewhere if possible.
                if !connection.answered.load(ordering: .relaxed) { endpoints.markDown(connection.endpoint) }
                guard request.isResendable else { throw ClientError.connectionClosed }
                resent = true
            }
        }
    }

    /// Sends `request` and returns its response, throwing the server's ``ProtocolError`` for error responses.
    public func call(_ request: Request, timeout: TimeAmount? = nil) async throws -> Response {
        let response = try await send(request, timeout: timeout)
        if case .error(let e) = response { throw e }
        return response
    }

    /// Closes the connections; pending and later calls fail with ``ClientError/connectionClosed``.
    public func close() async {
        await calls.close()
        await scans.close()
    }

    // MARK: Typed calls

    /// PING.
    public func ping() async throws {
        guard case .pong = try await call(.ping) else { throw ClientError.unexpectedResponse("PING") }
    }

    /// INFO: limits and loaded models.
    public func info() async throws -> (limits: ServerLimits, models: [ModelInfo]) {
        guard case .info(let limits, let models) = try await call(.info) else { throw ClientError.unexpectedResponse("INFO") }
        return (limits, models)
    }

    /// SCORE.
    public func score(_ r: ScoreRequest) async throws -> ScoreResponse {
        guard case .score(let s) = try await call(.score(r)) else { throw ClientError.unexpectedResponse("SCORE") }
        return s
    }

    /// TOPK.
    public func topK(_ r: TopKRequest) async throws -> ItemListResponse {
        guard case .topK(let l) = try await call(.topK(r)) else { throw ClientError.unexpectedResponse("TOPK") }
        return l
    }

    /// SIMILAR.
    public func similar(_ r: SimilarRequest) async throws -> ItemListResponse {
        guard case .similar(let l) = try await call(.similar(r)) else { throw ClientError.unexpectedResponse("SIMILAR") }
        return l
    }

    /// PUSH_DECIDE.
    public func pushDecide(_ r: PushDecideRequest) async throws -> PushDecideResponse {
        guard case .pushDecide(let p) = try await call(.pushDecide(r)) else { throw ClientError.unexpectedResponse("PUSH_DECIDE") }
        return p
    }
}

extension Request {
    /// Whether the call goes over the client's second connection: a catalogue scan or an admin call.
    var isScanOrAdmin: Bool {
        switch self {
        case .topK, .similar, .pushDecide, .reload, .pin, .rollback: true
        default: false
        }
    }

    /// Whether a call its connection broke may be sent again: all but ROLLBACK.
    var isResendable: Bool {
        if case .rollback = self { return false }
        return true
    }
}

/// A client's endpoints and their health, shared by its lanes.
final class EndpointHealth: Sendable {
    let endpoints: [Endpoint]
    let backoff: TimeAmount
    let maxBackoff: TimeAmount
    private let health: Mutex<[(downUntil: NIODeadline, failures: Int)]>

    init(_ endpoints: [Endpoint], backoff: TimeAmount, maxBackoff: TimeAmount) {
        self.endpoints = endpoints
        self.backoff = backoff
        self.maxBackoff = maxBackoff
        health = Mutex(Array(repeating: (.uptimeNanoseconds(0), 0), count: endpoints.count))
    }

    /// The endpoint to try next: the first healthy one not in `tried`, in list order, else the untried one whose
    /// back-off ends soonest, else nil.
    func choose(excluding tried: Set<Int>, now: NIODeadline = .now()) -> Int? {
        health.withLock { h in
            var soonest: Int?
            for i in h.indices where !tried.contains(i) {
                if h[i].downUntil <= now { return i }
                if soonest.map({ h[i].downUntil < h[$0].downUntil }) ?? true { soonest = i }
            }
            return soonest
        }
    }

    /// Starts (or doubles) endpoint `i`'s back-off.
    func markDown(_ i: Int, now: NIODeadline = .now()) {
        health.withLock { h in
            h[i].failures += 1
            let factor = Int64(1) << Int64(min(h[i].failures - 1, 20))
            let wait = backoff.nanoseconds > maxBackoff.nanoseconds / factor ? maxBackoff : .nanoseconds(backoff.nanoseconds * factor)
            h[i].downUntil = now + wait
        }
    }

    /// Ends endpoint `i`'s back-off: it answered.
    func markUp(_ i: Int) {
        health.withLock { h in h[i] = (.uptimeNanoseconds(0), 0) }
    }

    func states(now: NIODeadline = .now()) -> [(endpoint: Endpoint, healthy: Bool)] {
        let h = health.withLock { $0 }
        return zip(endpoints, h).map { ($0, $1.downUntil <= now) }
    }
}

/// One of a client's connections to the server, replaced when it breaks; none is opened after ``close()``.
final class Lane: Sendable {
    let endpoints: EndpointHealth
    let connectTimeout: TimeAmount
    let group: any EventLoopGroup
    private let state = Mutex<(current: Connection?, closed: Bool)>((nil, false))

    init(endpoints: EndpointHealth, connectTimeout: TimeAmount, group: any EventLoopGroup) {
        self.endpoints = endpoints
        self.connectTimeout = connectTimeout
        self.group = group
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// The open connection, or a new one (connected by `deadline`) to the healthiest endpoint that accepts, other
    /// than those in `avoiding`.
    func connection(by deadline: NIODeadline, avoiding: Set<Int> = []) async throws -> Connection {
        let (open, closed) = state.withLock { s in (s.current.flatMap { $0.channel.isActive ? $0 : nil }, s.closed) }
        if closed { throw ClientError.connectionClosed }
        if let open, !avoiding.contains(open.endpoint) { return open }
        var tried = avoiding
        var lastError: any Error = ClientError.connectionClosed
        var connected: Connection?
        while connected == nil, let i = endpoints.choose(excluding: tried) {
            let remaining = deadline - .now()
            guard remaining > .zero else { throw ClientError.timeout }
            let endpoint = endpoints.endpoints[i]
            do {
                connected = try await Connection.open(
                    endpoint: i, host: endpoint.host, port: endpoint.port, timeout: min(remaining, connectTimeout), group: group
                )
            } catch ChannelError.connectTimeout {
                lastError = ClientError.timeout
            } catch {
                lastError = error
            }
            if connected == nil {
                endpoints.markDown(i)
                tried.insert(i)
            }
        }
        guard let fresh = connected else { throw lastError }
        // Another call may have connected meanwhile, or close() run: one connection is kept, the other closed.
        let kept = state.withLock { s -> Connection? in
            if s.closed { return nil }
            if let current = s.current, current.channel.isActive { return current }
            s.current = fresh
            return fresh
        }
        if kept !== fresh { fresh.channel.close(promise: nil) }
        guard let kept else { throw ClientError.connectionClosed }
        return kept
    }

    /// Forgets `connection` (broken) and closes it, so that the next call opens another.
    func drop(_ connection: Connection) {
        state.withLock { s in if s.current === connection { s.current = nil } }
        connection.channel.close(promise: nil)
    }

    /// Closes the connection and refuses to open another.
    func close() async {
        let current = state.withLock { s -> Connection? in
            s.closed = true
            defer { s.current = nil }
            return s.current
        }
        try? await current?.channel.close()
    }
}

/// One TCP connection and the handler that matches its responses to calls.
final class Connection: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<ClientHandler>
    /// Index of its endpoint in the client's list.
    let endpoint: Int
    /// Whether any call has been answered over it.
    let answered = Atomic<Bool>(false)

    private init(channel: any Channel, handler: NIOLoopBound<ClientHandler>, endpoint: Int) {
        self.channel = channel
        self.handler = handler
        self.endpoint = endpoint
    }

    static func open(
        endpoint: Int, host: String, port: Int, timeout: TimeAmount, group: any EventLoopGroup
    ) async throws -> Connection {
        // The handler is kept from the initializer, not looked up in the pipeline afterwards: a server that refuses
        // the connection at once (an error frame, then close) can close the channel first, and the lookup then
        // failed with ChannelPipelineError.notFound instead of giving the refusal.
        let loop = group.next()
        let created = NIOLoopBoundBox.makeEmptyBox(valueType: ClientHandler.self, eventLoop: loop)
        let channel = try await ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(timeout)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    let handler = ClientHandler()
                    try ch.pipeline.syncOperations.addHandler(handler)
                    created.value = handler
                }
            }
            .connect(host: host, port: port)
            .get()
        let handler = try await loop.submit { NIOLoopBound(created.value!, eventLoop: loop) }.get()
        return Connection(channel: channel, handler: handler, endpoint: endpoint)
    }

    /// Sends `request` as `id` and waits for its response until `deadline`.
    func send(_ request: Request, id: UInt32, by deadline: NIODeadline) async throws -> Response {
        var buffer = channel.allocator.buffer(capacity: 64)
        request.writeFrame(requestID: id, to: &buffer)
        let frame = buffer
        let promise = channel.eventLoop.makePromise(of: Response.self)
        let (handler, channel) = (self.handler, self.channel)
        channel.eventLoop.execute {
            // A channel that closed before this ran never calls channelInactive again: fail the call here.
            if let refusal = handler.value.refusal { return promise.fail(ConnectionRefusal(error: refusal)) }
            guard channel.isActive else { return promise.fail(ClientError.connectionClosed) }
            handler.value.register(id: id, promise: promise, deadline: deadline, on: channel.eventLoop)
            channel.writeAndFlush(frame).whenFailure { _ in handler.value.fail(id: id, ClientError.connectionClosed) }
        }
        return try await promise.futureResult.get()
    }
}

/// A server's refusal of a whole connection (an error frame with request id 0: OVERLOADED at its connection limit,
/// SHUTTING_DOWN while draining), given to every call waiting on it; none of them was processed.
struct ConnectionRefusal: Error {
    let error: ProtocolError
}

/// Matches response frames to waiting calls by request id.
final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var cumulation: ByteBuffer?
    private var waiting: [UInt32: (promise: EventLoopPromise<Response>, timer: Scheduled<Void>)] = [:]
    /// Ids in the order they were sent.
    private var order: [UInt32] = []
    /// The server's refusal of this connection, once received (it may come before any call is sent).
    private(set) var refusal: ProtocolError?

    func register(id: UInt32, promise: EventLoopPromise<Response>, deadline: NIODeadline, on loop: any EventLoop) {
        let bound = NIOLoopBound(self, eventLoop: loop)
        let timer = loop.scheduleTask(deadline: deadline) { bound.value.fail(id: id, ClientError.timeout) }
        waiting[id] = (promise, timer)
        order.append(id)
    }

    func fail(id: UInt32, _ error: any Error) {
        guard let w = waiting.removeValue(forKey: id) else { return }
        w.timer.cancel()
        order.removeAll { $0 == id }
        w.promise.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if cumulation == nil { cumulation = incoming } else { cumulation!.writeBuffer(&incoming) }
        while true {
            switch FrameParser.next(from: &cumulation!, maxPayload: 64 << 20) {
            case .needMoreData:
                if cumulation!.readableBytes == 0 { cumulation = nil }
                return
            case .frame(let header, let payload):
                if header.requestID == 0, case .error(let e)? = try? Response.decode(code: header.opcode, payload: payload),
                    e.code == .overloaded || e.code == .shuttingDown
                {
                    refusal = e
                    for id in Array(waiting.keys) { fail(id: id, ConnectionRefusal(error: e)) }
                    context.close(promise: nil)
                    return
                }
                // A framing error the server could not attribute carries id 0: it answers the oldest call.
                let id = header.requestID != 0 ? header.requestID : (order.first ?? 0)
                guard let w = waiting.removeValue(forKey: id) else { continue }
                w.timer.cancel()
                order.removeAll { $0 == id }
                do {
                    w.promise.succeed(try Response.decode(code: header.opcode, payload: payload))
                } catch {
                    w.promise.fail(error)
                }
            case .unframeable(let error, _):
                for id in waiting.keys { fail(id: id, error) }
                context.close(promise: nil)
                return
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        for id in Array(waiting.keys) { fail(id: id, ClientError.connectionClosed) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension ClientHandler: Sendable {}
