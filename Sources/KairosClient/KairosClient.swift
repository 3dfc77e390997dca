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
}

/// An async client for one Kairos server; many calls may be in flight at once (pipelined, matched by request id).
/// Safe to share between tasks.
///
/// Catalogue scans (TOPK, SIMILAR, PUSH_DECIDE) and admin calls (RELOAD, PIN, ROLLBACK) go over a second connection,
/// opened on first use: the server answers a connection in order, so a scan (milliseconds on a large catalogue) would
/// hold up every SCORE behind it. A connection that breaks is replaced on the next call, and a call it broke is sent
/// once more on a fresh connection: the server keeps no per-request state, so every operation is idempotent except
/// ROLLBACK (a second one would go back one more version), which is never resent. The timeout bounds a whole call:
/// connecting, sending, answering.
public final class KairosClient: Sendable {
    private let calls: Lane
    private let scans: Lane
    private let nextID = Atomic<UInt32>(1)
    /// Default per-call timeout.
    public let timeout: TimeAmount

    private init(host: String, port: Int, timeout: TimeAmount, group: any EventLoopGroup) {
        self.timeout = timeout
        calls = Lane(host: host, port: port, group: group)
        scans = Lane(host: host, port: port, group: group)
    }

    /// Connects to `host:port` (throws when that fails within `timeout`).
    public static func connect(
        host: String = "127.0.0.1",
        port: Int = 7878,
        timeout: TimeAmount = .seconds(5),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> KairosClient {
        let client = KairosClient(host: host, port: port, timeout: timeout, group: group)
        _ = try await client.calls.connection(by: .now() + timeout)
        return client
    }

    /// Sends `request` and waits for its response (errors from the server are returned as `.error`, not thrown).
    public func send(_ request: Request, timeout: TimeAmount? = nil) async throws -> Response {
        let deadline = NIODeadline.now() + (timeout ?? self.timeout)
        let lane = request.isScanOrAdmin ? scans : calls
        var resent = false
        while true {
            let connection = try await lane.connection(by: deadline)
            do {
                return try await connection.send(request, id: nextID.add(1, ordering: .relaxed).oldValue, by: deadline)
            } catch ClientError.connectionClosed where !resent && !lane.isClosed {
                lane.drop(connection)
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

/// One of a client's connections to the server, replaced when it breaks; none is opened after ``close()``.
final class Lane: Sendable {
    let host: String
    let port: Int
    let group: any EventLoopGroup
    private let state = Mutex<(current: Connection?, closed: Bool)>((nil, false))

    init(host: String, port: Int, group: any EventLoopGroup) {
        self.host = host
        self.port = port
        self.group = group
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// The open connection, or a new one (connected by `deadline`).
    func connection(by deadline: NIODeadline) async throws -> Connection {
        let (open, closed) = state.withLock { s in (s.current.flatMap { $0.channel.isActive ? $0 : nil }, s.closed) }
        if closed { throw ClientError.connectionClosed }
        if let open { return open }
        let remaining = deadline - .now()
        guard remaining > .zero else { throw ClientError.timeout }
        let fresh: Connection
        do {
            fresh = try await Connection.open(host: host, port: port, timeout: remaining, group: group)
        } catch ChannelError.connectTimeout {
            throw ClientError.timeout
        }
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

    private init(channel: any Channel, handler: NIOLoopBound<ClientHandler>) {
        self.channel = channel
        self.handler = handler
    }

    static func open(host: String, port: Int, timeout: TimeAmount, group: any EventLoopGroup) async throws -> Connection {
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(timeout)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(ClientHandler()) }
            }
            .connect(host: host, port: port)
            .get()
        let handler = try await channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ClientHandler.self), eventLoop: channel.eventLoop)
        }.get()
        return Connection(channel: channel, handler: handler)
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
            guard channel.isActive else { return promise.fail(ClientError.connectionClosed) }
            handler.value.register(id: id, promise: promise, deadline: deadline, on: channel.eventLoop)
            channel.writeAndFlush(frame).whenFailure { _ in handler.value.fail(id: id, ClientError.connectionClosed) }
        }
        return try await promise.futureResult.get()
    }
}

/// Matches response frames to waiting calls by request id.
final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var cumulation: ByteBuffer?
    private var waiting: [UInt32: (promise: EventLoopPromise<Response>, timer: Scheduled<Void>)] = [:]
    /// Ids in the order they were sent.
    private var order: [UInt32] = []

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
