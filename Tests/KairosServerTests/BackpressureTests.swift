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
    /// Pipelined TOPK frames whose answers (about 4 KB each: k 300 of the 300-item model) far exceed 64 KB.
    static let requests = 200

    static func topKs(_ n: Int) -> ByteBuffer {
        var b = ByteBuffer()
        for i in 1...n {
            Request.topK(TopKRequest(model: ModelRef(name: "default"), user: "user-\(i % 50)", k: 300)).writeFrame(requestID: UInt32(i), to: &b)
        }
        return b
    }

    /// A connection handler on an embedded channel (writability set by the test), answering inline from a small model.
    static func connection() throws -> (EmbeddedChannel, ServerStats) {
        let path = "/tmp/kairos-backpressure-\(getpid()).kmodel"
        try ModelWriter.write(SyntheticModel.make(items: 300, users: 50, dimensions: 16, seed: 11), to: path)
        defer { unlink(path) }
        let store = ModelStore()
        store.install(ModelSnapshot(model: try MappedModel(path: path), loadedAt: 0))
        let router = RequestRouter(store: store, offloadAboveBytes: .max)
        let handler = ConnectionHandler(router: router, pool: .singleton, scans: ScanAdmission(limit: 4))
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, router.stats)
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

    /// Unwritable mid-batch: the batch stops after the first 64 KB of answers; writable again: the rest is answered,
    /// in order, and the stall is over.
    @Test func aStalledBatchResumesInOrder() throws {
        let (channel, stats) = try Self.connection()
        channel.isWritable = false
        try channel.writeInbound(Self.topKs(Self.requests))
        channel.pipeline.fireChannelReadComplete()
        let first = try Self.written(channel)
        #expect(first.count > 0 && first.count < Self.requests / 4, "\(first.count) answered while stalled")
        #expect(stats.stalledConnections == 1)
        // More bytes from the same read loop are kept, not answered.
        try channel.writeInbound(Self.topKs(1))
        #expect(try Self.written(channel).isEmpty)

        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        let rest = try Self.written(channel)
        let ids = (first + rest).map(\.id)
        #expect(ids == (1...Self.requests).map { UInt32($0) } + [1])
        #expect((first + rest).allSatisfy { $0.code == Opcode.topK.responseCode })
        #expect(stats.stalledConnections == 0)
        _ = try channel.finish()
    }

    /// A drain while stalled answers the frames read but not yet parsed with SHUTTING_DOWN, after the served ones, and
    /// closes the connection only once they are written.
    @Test func aDrainWhileStalledRefusesWhatItHasNotServed() throws {
        let (channel, stats) = try Self.connection()
        channel.isWritable = false
        try channel.writeInbound(Self.topKs(Self.requests))
        channel.pipeline.fireChannelReadComplete()
        let served = try Self.written(channel)
        #expect(stats.stalledConnections == 1)
        channel.pipeline.fireUserInboundEventTriggered(DrainEvent())
        let refused = try Self.written(channel)
        #expect((served + refused).map(\.id) == (1...Self.requests).map { UInt32($0) })
        #expect(served.allSatisfy { $0.code == Opcode.topK.responseCode })
        #expect(!refused.isEmpty && refused.allSatisfy { $0.error == .shuttingDown })
        #expect(!channel.isActive)
        #expect(stats.stalledConnections == 0)
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
        let (read, closed) = socket.read(frames: n, decodingAll: false)
        sent.wait()
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
        sent.wait()
    }

    /// TOPK requests the server has answered so far.
    static func topKAnswered(_ h: ServerHarness) -> UInt64 {
        guard case .stats(_, _, _, let ops) = h.server.router.stats.snapshot(uptimeSeconds: 0) else { return 0 }
        return ops.first { $0.opcode == Opcode.topK.rawValue }?.requests ?? 0
    }

    /// Waits (at most 10 s) until the server counts `n` connections stalled on a client that does not read.
    static func awaitStalled(_ h: ServerHarness, _ n: UInt64) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while h.server.router.stats.stalledConnections != n && ContinuousClock.now < deadline { await Task.yield() }
        return h.server.router.stats.stalledConnections == n
    }
}
