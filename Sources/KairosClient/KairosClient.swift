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

/// An async client for one Kairos server connection; many calls may be in flight at once (pipelined, matched by
/// request id). Safe to share between tasks. The server answers a connection in order, so a catalogue scan (TOPK,
/// SIMILAR, PUSH_DECIDE) delays the calls behind it: an app that mixes them keeps scans on a second client.
public final class KairosClient: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<ClientHandler>
    private let nextID = Atomic<UInt32>(1)
    /// Default per-call timeout.
    public let timeout: TimeAmount

    private init(channel: any Channel, handler: NIOLoopBound<ClientHandler>, timeout: TimeAmount) {
        self.channel = channel
        self.handler = handler
        self.timeout = timeout
    }

    /// Connects to `host:port`.
    public static func connect(
        host: String = "127.0.0.1",
        port: Int = 7878,
        timeout: TimeAmount = .seconds(5),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> KairosClient {
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
        return KairosClient(channel: channel, handler: handler, timeout: timeout)
    }

    /// Sends `request` and waits for its response (errors from the server are returned as `.error`, not thrown).
    public func send(_ request: Request, timeout: TimeAmount? = nil) async throws -> Response {
        let id = nextID.add(1, ordering: .relaxed).oldValue
        var buffer = channel.allocator.buffer(capacity: 64)
        request.writeFrame(requestID: id, to: &buffer)
        let frame = buffer
        let promise = channel.eventLoop.makePromise(of: Response.self)
        let handler = self.handler
        let limit = timeout ?? self.timeout
        let channel = self.channel
        channel.eventLoop.execute {
            handler.value.register(id: id, promise: promise, timeout: limit, on: channel.eventLoop)
            channel.writeAndFlush(frame).whenFailure { _ in handler.value.fail(id: id, ClientError.connectionClosed) }
        }
        return try await promise.futureResult.get()
    }

    /// Sends `request` and returns its response, throwing the server's ``ProtocolError`` for error responses.
    public func call(_ request: Request, timeout: TimeAmount? = nil) async throws -> Response {
        let response = try await send(request, timeout: timeout)
        if case .error(let e) = response { throw e }
        return response
    }

    /// Closes the connection; pending calls fail with ``ClientError/connectionClosed``.
    public func close() async {
        try? await channel.close()
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

/// Matches response frames to waiting calls by request id.
final class ClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var cumulation: ByteBuffer?
    private var waiting: [UInt32: (promise: EventLoopPromise<Response>, timer: Scheduled<Void>)] = [:]
    /// Ids in the order they were sent.
    private var order: [UInt32] = []

    func register(id: UInt32, promise: EventLoopPromise<Response>, timeout: TimeAmount, on loop: any EventLoop) {
        let bound = NIOLoopBound(self, eventLoop: loop)
        let timer = loop.scheduleTask(in: timeout) { bound.value.fail(id: id, ClientError.timeout) }
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
