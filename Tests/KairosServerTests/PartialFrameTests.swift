import KairosProtocol
@testable import KairosServer
import NIOCore
import NIOEmbedded
import Testing

/// A client that sends part of a frame and then waits (or trickles the rest) must not hold server memory for long or
/// in bulk: a frame begun must arrive whole within the frame timeout, and the bytes held of frames still arriving are
/// limited server-wide. On embedded channels, whose clock the tests move.
@Suite struct PartialFrameTests {
    typealias Connection = BackpressureTests

    /// The first `bytes` bytes of a frame with a `length`-byte payload (a PING's opcode: whole, it is a BAD_REQUEST,
    /// which is still an answer with its id).
    static func partialFrame(id: UInt32, length: Int, bytes: Int) -> ByteBuffer {
        var b = ByteBuffer()
        FrameHeader(opcode: Opcode.ping.rawValue, requestID: id, length: UInt32(length)).write(to: &b)
        b.writeRepeatingByte(0, count: length)
        return b.getSlice(at: 0, length: bytes)!
    }

    /// The rest of that frame after its first `bytes` bytes.
    static func rest(length: Int, after bytes: Int) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeRepeatingByte(0, count: FrameHeader.size + length - bytes)
        return b
    }

    static func ping(_ id: UInt32) -> ByteBuffer {
        var b = ByteBuffer()
        Request.ping.writeFrame(requestID: id, to: &b)
        return b
    }

    /// One read of `bytes`, as the socket would deliver it (no time passes).
    static func deliver(_ bytes: ByteBuffer, to channel: EmbeddedChannel) throws {
        try channel.writeInbound(bytes)
        channel.pipeline.fireChannelReadComplete()
    }

    /// A frame whose bytes stop coming gets FRAME_TIMEOUT (with its id, after the answers before it) once the timeout
    /// has passed since its first bytes, however it trickles meanwhile; then the connection closes.
    @Test func aFrameThatStopsArrivingTimesOut() throws {
        let (channel, _, _) = try Connection.connection(frameTimeout: .seconds(30))
        let loop = channel.embeddedEventLoop
        var first = Self.ping(1)
        var partial = Self.partialFrame(id: 2, length: 100, bytes: 20)
        first.writeBuffer(&partial)
        try Self.deliver(first, to: channel)
        #expect(try Connection.written(channel).map(\.id) == [1])
        loop.advanceTime(by: .seconds(20))
        var trickle = ByteBuffer()
        trickle.writeRepeatingByte(0, count: 1)
        try Self.deliver(trickle, to: channel)  // a byte more does not start the clock again
        loop.advanceTime(by: .seconds(9))
        #expect(try Connection.written(channel).isEmpty)
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(1))
        let refused = try Connection.written(channel)
        #expect(refused.map(\.id) == [2])
        #expect(refused.first?.error == .frameTimeout)
        #expect(!channel.isActive)
    }

    /// Frames that keep arriving whole are never timed out, though the connection always has one still arriving and
    /// has had for longer than the timeout.
    @Test func framesThatKeepArrivingAreNotTimedOut() throws {
        let (channel, _, _) = try Connection.connection(frameTimeout: .seconds(30))
        let loop = channel.embeddedEventLoop
        try Self.deliver(Self.partialFrame(id: 1, length: 100, bytes: 50), to: channel)
        for id in UInt32(2)...5 {
            loop.advanceTime(by: .seconds(20))
            var bytes = Self.rest(length: 100, after: 50)
            var next = Self.partialFrame(id: id, length: 100, bytes: 50)
            bytes.writeBuffer(&next)
            try Self.deliver(bytes, to: channel)
            let answered = try Connection.written(channel)
            #expect(answered.map(\.id) == [id - 1])
            #expect(answered.first?.error == .badRequest)  // a PING with a payload: read whole, as one frame
        }
        loop.advanceTime(by: .seconds(29))
        #expect(channel.isActive)
        try Self.deliver(Self.rest(length: 100, after: 50), to: channel)
        #expect(try Connection.written(channel).map(\.id) == [5])
        loop.advanceTime(by: .seconds(300))  // nothing arriving: no frame timeout (and this idle timeout never fires)
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    /// While the server does not read from a connection (its client is not reading its answers), the client cannot
    /// finish its frame: that time does not count.
    @Test func aStalledConnectionsFrameIsNotTimedOut() throws {
        // A turn longer than the test, so that all three answers are written at once however slow this build is.
        let (channel, stats, limit) = try Connection.connection(turnNanos: 60_000_000_000, frameTimeout: .seconds(30))
        let loop = channel.embeddedEventLoop
        limit.limit = 100  // the first answers turn the channel unwritable
        var bytes = Connection.topKs(3)
        var partial = Self.partialFrame(id: 9, length: 100, bytes: 30)
        bytes.writeBuffer(&partial)
        try Self.deliver(bytes, to: channel)
        channel.read()  // as NIO asks for more after a read loop: withheld, the channel is unwritable
        #expect(stats.stalledConnections == 1)
        #expect(try Connection.written(channel).map(\.id) == [1, 2, 3])
        loop.advanceTime(by: .seconds(100))
        #expect(channel.isActive)
        #expect(try Connection.written(channel).isEmpty)
        limit.limit = .max
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        try Self.deliver(Self.rest(length: 100, after: 30), to: channel)
        let answered = try Connection.written(channel)
        #expect(answered.map(\.id) == [9])
        #expect(answered.first?.error == .badRequest)
        #expect(stats.stalledConnections == 0)
        _ = try channel.finish()
    }

    /// Past the server-wide limit, the connection whose large partial frame would grow the total is refused with
    /// OVERLOADED (its frame's id, after the answers before it) and closed; a connection holding no more than a read's
    /// worth is not, and the other large frame, held all along, is answered when whole; the bytes are given back.
    @Test func partialFramesPastTheLimitAreRefused() throws {
        let budget = ReceiveBudget(limit: 200_000)
        let loop = EmbeddedEventLoop()
        let first = try Connection.connection(loop: loop, receiveBudget: budget)
        let second = try Connection.connection(loop: loop, receiveBudget: budget)
        let small = try Connection.connection(loop: loop, receiveBudget: budget)
        try Self.deliver(Self.partialFrame(id: 1, length: 150_000, bytes: 120_000), to: first.channel)
        #expect(budget.current == 120_000)
        var bytes = Self.ping(5)
        var partial = Self.partialFrame(id: 6, length: 150_000, bytes: 70_000)
        bytes.writeBuffer(&partial)
        try Self.deliver(bytes, to: second.channel)
        #expect(budget.current == 190_000)  // under the limit: held (the PING's 12 bytes are not)
        #expect(try Connection.written(second.channel).map(\.id) == [5])
        try Self.deliver(Self.partialFrame(id: 8, length: 40_000, bytes: 30_000), to: small.channel)
        #expect(budget.current == 220_000)  // past the limit, but a read's worth or less is always held
        #expect(small.channel.isActive && budget.refused == 0)

        var more = ByteBuffer()
        more.writeRepeatingByte(0, count: 20_000)
        try Self.deliver(more, to: second.channel)  // a large frame growing past the limit
        let refused = try Connection.written(second.channel)
        #expect(refused.map(\.id) == [6])
        #expect(refused.first?.error == .overloaded)
        #expect(!second.channel.isActive)
        #expect(budget.current == 150_000)
        #expect(budget.refused == 1)

        for (channel, id, length, sent) in [(first.channel, UInt32(1), 150_000, 120_000), (small.channel, 8, 40_000, 30_000)] {
            try Self.deliver(Self.rest(length: length, after: sent), to: channel)
            let answered = try Connection.written(channel)
            #expect(answered.map(\.id) == [id])
            #expect(answered.first?.error == .badRequest)  // a PING with a payload: read whole, as one frame
        }
        #expect(budget.current == 0)
        try Self.deliver(Self.ping(2), to: first.channel)
        #expect(try Connection.written(first.channel).map { $0.code } == [Opcode.ping.responseCode])
        _ = try first.channel.finish()
        _ = try small.channel.finish()
    }

    /// A closed connection gives back what it held.
    @Test func aClosedConnectionGivesBackItsBytes() throws {
        let budget = ReceiveBudget(limit: 10_000)
        let (channel, _, _) = try Connection.connection(receiveBudget: budget)
        try Self.deliver(Self.partialFrame(id: 1, length: 6_000, bytes: 3_000), to: channel)
        #expect(budget.current == 3_000)
        _ = try channel.finish()
        #expect(budget.current == 0)
    }
}
