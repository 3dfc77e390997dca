import Dispatch
import Glibc
import KairosModelFormat
import KairosProtocol
@testable import KairosServer
import KairosScoring
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

/// A client that sends requests faster than it reads the answers (or stops reading) must not make the server buffer
/// every answer: the connection stalls (stops reading and parsing) while its channel is above the write high-water
/// mark, and loses nothing when it resumes or drains.
@Suite struct BackpressureTests {
    /// Pipelined TOPK frames whose answers (about 4 KB each: k 300 of the 300-item model) are several times what the
    /// connection writes before it looks at writability.
    static let requests = 400

    static func topKs(_ n: Int) -> ByteBuffer {
        var b = ByteBuffer()
        for i in 1...n {
            Request.topK(TopKRequest(model: ModelRef(name: "default"), user: "user-\(i % 50)", k: 300)).writeFrame(requestID: UInt32(i), to: &b)
        }
        return b
    }

    /// Turns its channel unwritable once more than `limit` bytes were written through it, as a socket whose client
    /// stopped reading does at its high-water mark.
    final class WriteLimit: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var limit: Int
        var written = 0

        init(limit: Int) { self.limit = limit }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            written += unwrapOutboundIn(data).readableBytes
            if written > limit, let channel = context.channel as? EmbeddedChannel { channel.isWritable = false }
            context.write(data, promise: promise)
        }
    }

    /// A connection handler on an embedded channel (on `loop` when given), answering inline from a small model, behind
    /// a ``WriteLimit`` of 64 KiB; `turnNanos` 0 yields after every answer. Its idle timeout never fires (it is set
    /// from the real clock, and the embedded loop's starts at 0); its frame timeout does, on the loop's clock.
    static func connection(
        loop: EmbeddedEventLoop? = nil,
        turnNanos: UInt64 = ConnectionHandler.defaultTurnNanos,
        receiveBudget: ReceiveBudget = ReceiveBudget(limit: ReceiveBudget.defaultLimit),
        frameTimeout: TimeAmount = .seconds(30)
    ) throws -> (channel: EmbeddedChannel, stats: ServerStats, limit: WriteLimit) {
        let path = "/tmp/kairos-backpressure-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).kmodel"
        try ModelWriter.write(SyntheticModel.make(items: 300, users: 50, dimensions: 16, seed: 11), to: path)
        defer { unlink(path) }
        let store = ModelStore()
        store.install(ModelSnapshot(model: try MappedModel(path: path), loadedAt: 0))
        let router = RequestRouter(store: store, offloadAboveBytes: .max)
        let handler = ConnectionHandler(
            router: router,
            pool: .singleton,
            scans: ScanAdmission(limit: 4),
            receiveBudget: receiveBudget,
            frameTimeout: frameTimeout,
            turnNanos: turnNanos
        )
        let limit = WriteLimit(limit: 65_536)
        let channel = EmbeddedChannel(loop: loop ?? EmbeddedEventLoop())
        try channel.pipeline.syncOperations.addHandlers([limit, handler])
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, router.stats, limit)
    }

    /// Hands `frames` to the connection as one read, then runs its event loop (every turn the frames take, and no idle
    /// timeout).
    static func read(_ frames: ByteBuffer, into channel: EmbeddedChannel) throws {
        try channel.writeInbound(frames)
        channel.pipeline.fireChannelReadComplete()
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
    }

    /// Every frame written to the channel so far: (request id, response code, error code if an error).
    static func written(_ channel: EmbeddedChannel) throws -> [(id: UInt32, code: UInt8, error: ProtocolError.Code?)] {
        var all = ByteBuffer()
        while var b = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&b) }
        var out: [(UInt32, UInt8, ProtocolError.Code?)] = []
        var input: ByteBuffer? = all
        while case .frame(let h, let payload) = FrameParser.next(from: &input!, maxPayload: 1 << 24) {
            var error: ProtocolError.Code?
            if h.opcode == FrameHeader.errorResponseCode, case .error(let e) = try Response.decode(code: h.opcode, payload: payload) {
                error = e.code
            }
            out.append((h.requestID, h.opcode, error))
        }
        #expect(input!.readableBytes == 0, "a partial frame was written")
        return out
    }

    /// The channel turns unwritable partway: the connection stops within a write of it and keeps the rest,
    /// including bytes read later; writable again, the rest is answered, in order, and the stall is over.
    @Test func aStalledBatchResumesInOrder() throws {
        let (channel, stats, limit) = try Self.connection()
        try Self.read(Self.topKs(Self.requests), into: channel)
        let first = try Self.written(channel)
        let bound = ConnectionHandler.writeEvery / 4000 + 1  // one write past the limit
        #expect(first.count > 0 && first.count <= bound, "\(first.count) answered before the stall")
        #expect(stats.stalledConnections == 1)
        try Self.read(Self.topKs(1), into: channel)
        #expect(try Self.written(channel).isEmpty)

        limit.limit = .max
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        let rest = try Self.written(channel)
        #expect((first + rest).map(\.id) == (1...Self.requests).map { UInt32($0) } + [1])
        #expect((first + rest).allSatisfy { $0.code == Opcode.topK.responseCode })
        #expect(stats.stalledConnections == 0)
        _ = try channel.finish()
    }

    /// A drain while stalled answers the frames read but not yet begun with SHUTTING_DOWN, after the served ones, and
    /// closes the connection only once they are written.
    @Test func aDrainWhileStalledRefusesWhatItHasNotServed() throws {
        let (channel, stats, _) = try Self.connection()
        try Self.read(Self.topKs(Self.requests), into: channel)
        let served = try Self.written(channel)
        #expect(stats.stalledConnections == 1)
        channel.pipeline.fireUserInboundEventTriggered(DrainEvent())
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        let refused = try Self.written(channel)
        #expect((served + refused).map(\.id) == (1...Self.requests).map { UInt32($0) })
        #expect(!served.isEmpty && served.allSatisfy { $0.code == Opcode.topK.responseCode })
        #expect(!refused.isEmpty && refused.allSatisfy { $0.error == .shuttingDown })
        #expect(!channel.isActive)
        #expect(stats.stalledConnections == 0)
    }

    /// Counts the reads the connection asks its channel for.
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var reads = 0

        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    /// A drain that closes a connection still sending (reads withheld by a stall) shuts the server's side and reads
    /// again, to drop what the client still sends until it closes: without that read the client's sends block and the
    /// connection stays open for the whole linger time (2 s, measured as the server's exit delay).
    @Test func aDrainClosingAStalledSenderReadsAgain() throws {
        let (channel, stats, _) = try Self.connection()
        let counter = ReadCounter()
        try channel.pipeline.syncOperations.addHandler(counter, position: .first)
        try Self.read(Self.topKs(Self.requests), into: channel)
        channel.read()  // as NIO asks after a read loop: withheld, the client is not reading
        #expect(stats.stalledConnections == 1)
        let withheld = counter.reads
        channel.pipeline.fireUserInboundEventTriggered(DrainEvent())
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(counter.reads == withheld + 1, "no read after the drain began closing")
        let answers = try Self.written(channel)
        #expect(answers.map(\.id) == (1...Self.requests).map { UInt32($0) })
    }

    /// A connection with many requests answers one turn of them, then lets another connection on its event loop be
    /// answered before going on; a drain then still answers all of them (waiting for a turn is not a stall).
    @Test func aLongBatchYieldsToOtherConnections() throws {
        let loop = EmbeddedEventLoop()
        let bulk = try Self.connection(loop: loop, turnNanos: 0)
        let other = try Self.connection(loop: loop, turnNanos: 0)
        bulk.limit.limit = .max
        try bulk.channel.writeInbound(Self.topKs(20))
        bulk.channel.pipeline.fireChannelReadComplete()
        #expect(try Self.written(bulk.channel).map(\.id) == [1])  // one answer per turn
        var ping = ByteBuffer()
        Request.ping.writeFrame(requestID: 7, to: &ping)
        try other.channel.writeInbound(ping)
        other.channel.pipeline.fireChannelReadComplete()
        #expect(try Self.written(other.channel).map(\.id) == [7])
        #expect(try Self.written(bulk.channel).isEmpty)  // the bulk connection's second turn has not come yet
        bulk.channel.pipeline.fireUserInboundEventTriggered(DrainEvent())
        loop.advanceTime(by: .seconds(1))
        let rest = try Self.written(bulk.channel)
        #expect(rest.map(\.id) == Array(2...20))
        #expect(rest.allSatisfy { $0.code == Opcode.topK.responseCode })
        #expect(!bulk.channel.isActive)
        _ = try other.channel.finish()
    }

    /// A client that sends a batch and then shuts down its sending side gets every answer, then the close; on an
    /// embedded channel, with a yield after every answer so the end of input arrives while most are still to come.
    @Test func endOfInputAnswersEverythingThenCloses() throws {
        let (channel, _, limit) = try Self.connection(turnNanos: 0)
        limit.limit = .max
        try channel.writeInbound(Self.topKs(20))
        channel.pipeline.fireChannelReadComplete()
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        let answers = try Self.written(channel)
        #expect(answers.map(\.id) == Array(1...20))
        #expect(answers.allSatisfy { $0.code == Opcode.topK.responseCode })
        #expect(!channel.isActive)
    }

    /// The same over a real socket: 200 pipelined TOPKs, then SHUT_WR; all 200 answers arrive, then end-of-file.
    @Test func aHalfClosedConnectionGetsEveryAnswer() async throws {
        let h = try await ServerHarness.start()
        let socket = try RawSocket(port: h.port)
        var frames = Self.topKs(200)
        socket.send(frames.readBytes(length: frames.readableBytes)!)
        socket.shutdownWrite()
        let (read, _) = await onOwnThread { socket.read(frames: 200, decodingAll: false) }
        #expect(read.map(\.0.requestID) == Array(1...200))
        #expect(await onOwnThread { socket.readsEOF() })
        await h.stop()
    }

    /// Over a real socket: a client that pipelines TOPKs and reads nothing stalls its connection with only what the
    /// kernel buffers hold answered; when it reads, it gets every answer, in order.
    @Test func aClientThatDoesNotReadStallsItsConnection() async throws {
        let h = try await ServerHarness.start()
        // About 8 MB of answers: twice the most (4 MB) the server's socket send buffer grows to here (704 answers
        // filled it when measured).
        let n = 2_000
        let socket = try RawSocket(port: h.port, receiveBuffer: 4096)
        var frames = Self.topKs(n)
        let sent = socket.sendInBackground(frames.readBytes(length: frames.readableBytes)!)
        #expect(await Self.awaitStalled(h, 1), "the connection never stalled")
        let answered = Self.topKAnswered(h)
        #expect(answered > 0 && answered < UInt64(n) * 3 / 4, "answered \(answered) of \(n) while stalled")
        let (read, closed) = await onOwnThread { socket.read(frames: n, decodingAll: false) }
        await onOwnThread { sent.wait() }
        #expect(!closed)
        #expect(read.map(\.0.requestID) == (1...n).map { UInt32($0) })
        #expect(read.allSatisfy { $0.0.opcode == Opcode.topK.responseCode })
        #expect(await Self.awaitStalled(h, 0), "still stalled after the client read everything")
        await h.stop()
    }

    /// A shutdown does not wait past its drain timeout for a client that never reads.
    @Test(.timeLimit(.minutes(1))) func shutdownClosesAClientThatNeverReads() async throws {
        let h = try await ServerHarness.start { $0.drainTimeout = .milliseconds(200) }
        let socket = try RawSocket(port: h.port, receiveBuffer: 4096)
        var frames = Self.topKs(2_000)
        let sent = socket.sendInBackground(frames.readBytes(length: frames.readableBytes)!)
        #expect(await Self.awaitStalled(h, 1), "the connection never stalled")
        await h.stop()
        #expect(h.server.router.stats.stalledConnections == 0)
        await onOwnThread { sent.wait() }
    }

    /// TOPK requests the server has answered so far.
    static func topKAnswered(_ h: ServerHarness) -> UInt64 {
        guard case .stats(_, _, _, let ops) = h.server.router.stats.snapshot(uptimeSeconds: 0) else { return 0 }
        return ops.first { $0.opcode == Opcode.topK.rawValue }?.requests ?? 0
    }

    /// Waits (at most 10 s) until the server counts `n` connections stalled on a client that does not read.
    static func awaitStalled(_ h: ServerHarness, _ n: UInt64) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        // Polls every millisecond rather than spinning: the cooperative pool has one thread per core.
        while h.server.router.stats.stalledConnections != n && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(1))
        }
        return h.server.router.stats.stalledConnections == n
    }
}
