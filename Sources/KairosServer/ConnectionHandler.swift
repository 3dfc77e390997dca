import DequeModule
import KairosProtocol
import NIOCore
import NIOPosix

/// Asks a connection to finish what it has read, then close (graceful shutdown).
struct DrainEvent: Sendable {}

/// One connection: parses every complete frame straight out of the read buffer, answers each in arrival order into
/// one output buffer, and writes + flushes once per read loop (and every ``writeEvery`` bytes), not once per response.
///
/// Scans of large catalogues run on a thread pool; responses after one wait in a queue so order is kept.
///
/// Backpressure: a client that sends requests faster than it reads their answers (or stops reading) would otherwise
/// make the server buffer every answer (measured: 80 MB/s of TOPK answers for one such client). While the channel is
/// above its write high-water mark, or too many answers wait behind scans, the connection neither reads nor parses:
/// it withholds the channel's reads (as NIO's `BackPressureHandler` does) and leaves the unparsed frames in its
/// buffer until the client catches up, so what one connection holds is bounded by a few socket buffers.
///
/// Fairness: a read loop that has answered for its turn (``defaultTurnNanos``) stops there, and the rest of what it
/// read is answered in later turns, each after the event loop has polled the other connections, with this connection's
/// reads withheld meanwhile. Before, one connection pipelining 1,024 SCOREs held its event loop for 7 ms per read loop
/// (16 reads of 64 KB), and a PING on another connection waited that long, every time.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Output bytes of one batch after which they are written out and the channel's writability is checked (64 KiB
    /// cost a deep-pipelining client 7% of its throughput in write calls).
    static let writeEvery = 262_144
    /// Nanoseconds of answering after which a batch yields the event loop to the other connections.
    static let defaultTurnNanos: UInt64 = 500_000
    private let turnNanos: UInt64
    /// How long a yielded batch waits at least. NIO runs the tasks that fall due during a tick in that same tick,
    /// before it polls I/O again (so an `execute`d continuation would never let the other connections in); a task not
    /// yet due when the tick looks for more ends the tick, and the loop polls I/O (at once if it is due by then).
    static let yieldPause: TimeAmount = .microseconds(5)
    /// A continuation task is queued.
    private var continuationScheduled = false

    /// A response waiting behind an offloaded one (nil while still being computed).
    private struct Slot {
        /// Sequence number of the offloaded request this slot waits for (0 for responses queued ready).
        var sequence: UInt64
        var bytes: ByteBuffer?
    }

    private let router: RequestRouter
    private let pool: NIOThreadPool
    private let scans: ScanAdmission
    /// Request bytes held, server-wide; a partial frame that would take them past its limit is refused.
    private let receiveBudget: ReceiveBudget
    /// Bytes of `cumulation` counted in `receiveBudget`.
    private var charged = 0
    /// A frame begun must arrive whole within this long while the connection reads (0: no limit).
    private let frameTimeout: TimeAmount
    /// When the frame not yet whole at the front of `cumulation` began to arrive, by the event loop's clock.
    private var partialSince: NIODeadline?
    /// The timer that looks at `partialSince` (at most one, armed only while a frame is arriving).
    private var frameCheck: Scheduled<Void>?
    /// Queued responses above which the connection stops reading (backpressure on deep pipelines of scans).
    private let maxQueued: Int
    private var cumulation: ByteBuffer?
    private var output = ByteBuffer()
    private var queued = Deque<Slot>()
    /// Close once every answer is written (framing lost, draining, or the client's end of input).
    private var closeWhenDone = false
    /// A frame could not be delimited: nothing after it is parsed.
    private var framingLost = false
    /// Draining for shutdown: requests still arriving are answered with SHUTTING_DOWN instead of being served.
    private var draining = false
    /// The client is not reading its answers: the channel is above its high-water mark. Reads are withheld, and
    /// frames already read wait unparsed in `cumulation`.
    private var stalledOnWrites = false
    /// More than `maxQueued` answers wait behind offloaded scans: the same, until half of them are written.
    private var stalledOnQueue = false
    /// A batch used up its turn: the frames left in `cumulation` are answered by a task queued on the event loop.
    private var yielded = false
    /// When the frames left by a yield were read (their latency counts from then).
    private var yieldedBatchStarted: UInt64 = 0
    /// When the current turn ends (0: no turn begun). A turn spans one read loop (up to `maxMessagesPerRead` reads),
    /// or one continuation or resumption.
    private var turnEnds: UInt64 = 0
    /// The channel asked to read while stalled or yielded; the read is issued on resuming.
    private var readWithheld = false
    private var open = false
    /// Framing was lost and the answers are out: the server's side is shut, and what the client still sends is read
    /// and dropped until it closes or ``lingerTime`` passes.
    private var lingering = false
    /// How long a connection that lost framing goes on reading (and dropping) after its last answer.
    static let lingerTime: TimeAmount = .seconds(2)
    private var nextSequence: UInt64 = 1
    /// Connections with nothing read for this long (and nothing in progress) are closed; 0 means never.
    private let idleTimeout: TimeAmount
    /// Monotonic nanoseconds of the last read (the clock read its answers take anyway for their latency).
    private var lastRead: UInt64 = 0
    private var idleCheck: Scheduled<Void>?

    init(
        router: RequestRouter,
        pool: NIOThreadPool,
        scans: ScanAdmission,
        receiveBudget: ReceiveBudget = ReceiveBudget(limit: ReceiveBudget.defaultLimit),
        idleTimeout: TimeAmount = .seconds(300),
        frameTimeout: TimeAmount = .seconds(30),
        maxQueued: Int = 256,
        turnNanos: UInt64 = ConnectionHandler.defaultTurnNanos
    ) {
        self.turnNanos = turnNanos
        self.router = router
        self.pool = pool
        self.scans = scans
        self.receiveBudget = receiveBudget
        self.frameTimeout = frameTimeout
        self.idleTimeout = idleTimeout
        self.maxQueued = maxQueued
    }

    func channelActive(context: ChannelHandlerContext) {
        open = true
        router.stats.connection(opened: true)
        output = context.channel.allocator.buffer(capacity: 4096)
        lastRead = ServerStats.nanoseconds()
        if idleTimeout.nanoseconds > 0 { armIdleCheck(context: context, at: NIODeadline.uptimeNanoseconds(lastRead) + idleTimeout) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if open { router.stats.connection(opened: false) }
        if stalledOnWrites { router.stats.stall(started: false) }
        stalledOnWrites = false
        open = false
        idleCheck?.cancel()
        idleCheck = nil
        frameCheck?.cancel()
        frameCheck = nil
        dropHeldBytes()
        context.fireChannelInactive()
    }

    /// Drops what `cumulation` holds and gives its bytes back to the receive budget.
    private func dropHeldBytes() {
        if charged != 0 { _ = receiveBudget.add(-charged) }
        charged = 0
        cumulation = nil
        partialSince = nil
    }

    /// One timer per connection, re-armed from the last read when it fires; no per-request work (an
    /// IdleStateHandler in the pipeline cost ~700 instructions per PING on its read and write paths, by callgrind).
    private func armIdleCheck(context: ChannelHandlerContext, at deadline: NIODeadline) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        idleCheck = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = bound.value
            guard handler.open else { return }
            let due = NIODeadline.uptimeNanoseconds(handler.lastRead) + handler.idleTimeout
            if due <= .now() && handler.queued.isEmpty {
                context.close(promise: nil)
            } else {
                // Read since (or a scan still running): look again a full timeout after the last read.
                handler.armIdleCheck(context: context, at: max(due, .now() + .milliseconds(10)))
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !framingLost && !lingering else { return }  // after a frame that could not be delimited, or once closing
        if draining {
            refuseWhileDraining(data: unwrapInboundIn(data), context: context)
            return
        }
        var incoming = unwrapInboundIn(data)
        lastRead = ServerStats.nanoseconds()
        if cumulation == nil {
            cumulation = incoming
        } else {
            cumulation!.writeBuffer(&incoming)
        }
        // Stalled or yielded in this read loop: keep the bytes (at most the loop's remaining reads) for later.
        if !stalledOnWrites && !stalledOnQueue && !yielded {
            if turnEnds == 0 { turnEnds = lastRead &+ turnNanos }  // the read loop's turn starts at its first read
            processFrames(context: context, started: lastRead)
        }
        settleReceive(context: context)
    }

    /// Issues the channel's reads only while the client keeps up with its answers and no frames wait for a turn.
    func read(context: ChannelHandlerContext) {
        if lingering {
            context.read()  // reading (and dropping) is the point: a stall must not stop it
            return
        }
        if !context.channel.isWritable { beginWriteStall() }
        if stalledOnWrites || stalledOnQueue || yielded {
            readWithheld = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { resume(context: context) }
        context.fireChannelWritabilityChanged()
    }

    /// Marks the connection stalled on its client (once per stall).
    private func beginWriteStall() {
        guard !stalledOnWrites else { return }
        stalledOnWrites = true
        router.stats.stall(started: true)
    }

    /// Ends the stalls whose cause has gone, answers the frames left unparsed, then reads again.
    /// - Parameter backlogRead: when the frames left were read, if their wait counts as latency (a yield's, not a
    ///   stall's: a client that does not read is not the server being slow).
    private func resume(context: ChannelHandlerContext, backlogRead: UInt64? = nil) {
        defer { scheduleContinuation(context: context) }
        if stalledOnWrites && context.channel.isWritable {
            stalledOnWrites = false
            router.stats.stall(started: false)
        }
        if stalledOnQueue && queued.count <= maxQueued / 2 { stalledOnQueue = false }
        guard !stalledOnWrites && !stalledOnQueue && !yielded else { return }
        if cumulation != nil && !framingLost {
            turnEnds = 0
            processFrames(context: context, started: backlogRead ?? ServerStats.nanoseconds())
            settleReceive(context: context)
            writeOutput(context: context)
            guard !stalledOnWrites && !stalledOnQueue && !yielded else { return }
        }
        if closeWhenDone {
            writeOutput(context: context)  // closes: everything read is answered
            return
        }
        if readWithheld {
            readWithheld = false
            context.read()
        }
    }

    /// Ends the turn: the frames left in `cumulation` wait for ``scheduleContinuation(context:)``'s task.
    private func yieldTurn(batchStarted: UInt64) {
        yielded = true
        yieldedBatchStarted = batchStarted
    }

    /// Queues the rest of a yielded batch. Called last, once the turn's answers are written: the task must not be due
    /// yet when the event loop next looks for tasks, or it would run in the same tick (see ``yieldPause``).
    private func scheduleContinuation(context: ChannelHandlerContext) {
        guard yielded && !continuationScheduled else { return }
        continuationScheduled = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: Self.yieldPause) {
            let (handler, context) = bound.value
            handler.continuationScheduled = false
            guard handler.open && handler.yielded else { return }
            handler.yielded = false
            handler.resume(context: context, backlogRead: handler.yieldedBatchStarted)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        turnEnds = 0
        writeOutput(context: context)
        scheduleContinuation(context: context)
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DrainEvent {
            draining = true
            // Frames read but left unparsed while the client was not reading its answers are refused, not dropped.
            // Frames waiting only for their turn are answered (the yielded task goes on).
            if (stalledOnWrites || stalledOnQueue) && cumulation != nil && !framingLost {
                refuseWhileDraining(data: nil, context: context)
            }
            closeWhenDone = true
            writeOutput(context: context)
        } else if let event = event as? ChannelEvent, event == .inputClosed {
            // The client shut down its sending side (sent a batch, then SHUT_WR): it still reads. Answer everything
            // it sent, then close. (Without half-closure NIO closed at once, dropping the answers not yet written.)
            if lingering {
                context.close(promise: nil)
                return
            }
            closeWhenDone = true
            writeOutput(context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Answers every complete frame that arrives during a drain with SHUTTING_DOWN, so clients can retry elsewhere.
    private func refuseWhileDraining(data: ByteBuffer?, context: ChannelHandlerContext) {
        if var incoming = data {
            if cumulation == nil { cumulation = incoming } else { cumulation!.writeBuffer(&incoming) }
        }
        guard cumulation != nil else { return }
        var out = ByteBuffer()
        swap(&out, &output)
        while case .frame(let header, _) = FrameParser.next(from: &cumulation!, maxPayload: Int(router.limits.maxPayload)) {
            emit(.error(ProtocolError(.shuttingDown, "the server is shutting down")), header: header, started: ServerStats.nanoseconds(), into: &out)
        }
        swap(&out, &output)
        if cumulation!.readableBytes == 0 { cumulation = nil }
        settleReceive(context: context)
        writeOutput(context: context)
    }

    /// Counts the bytes `cumulation` holds against the server's receive budget, and looks after a frame at its front
    /// that is still arriving: starts its clock, or refuses it (OVERLOADED, then close) if holding it takes the
    /// budget past its limit. Cheap when nothing is held, as after most reads.
    private func settleReceive(context: ChannelHandlerContext) {
        let held = cumulation?.readableBytes ?? 0
        if held == 0 && charged == 0 { return }  // nothing held, before or now (so no frame is arriving either)
        let delta = held &- charged
        charged = held
        let total = delta == 0 ? 0 : receiveBudget.add(delta)
        guard held > 0 else {
            partialSince = nil
            return
        }
        // Whole frames left behind a stall or a turn are bounded by one read loop, and a stalled connection is not
        // reading: only a frame its client is still sending is held on the client's account.
        guard !stalledOnWrites && !stalledOnQueue && !yielded && !framingLost else { return }
        if delta > 0 && total > receiveBudget.limit && held > ReceiveBudget.alwaysHeld {
            receiveBudget.countRefusal()
            let limit = receiveBudget.limit
            refusePartialFrame(
                ProtocolError(.overloaded, "the server holds its limit of \(limit) bytes of requests still arriving; retry later"),
                context: context
            )
            return
        }
        if partialSince == nil {
            partialSince = context.eventLoop.now
            armFrameCheck(context: context)
        }
    }

    /// Arms the frame timer for the frame now arriving, unless one is armed (it re-arms itself while frames arrive).
    private func armFrameCheck(context: ChannelHandlerContext) {
        guard frameTimeout.nanoseconds > 0, frameCheck == nil, let since = partialSince else { return }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        frameCheck = context.eventLoop.scheduleTask(deadline: since + frameTimeout) {
            let (handler, context) = bound.value
            handler.frameCheck = nil
            guard handler.open && !handler.framingLost, handler.partialSince != nil else { return }
            if handler.stalledOnWrites || handler.stalledOnQueue || handler.yielded {
                // The server is not reading from it: its client cannot finish the frame. The clock starts again.
                handler.partialSince = context.eventLoop.now
            } else if context.eventLoop.now >= handler.partialSince! + handler.frameTimeout {
                handler.receiveBudget.countTimeout()
                let seconds = handler.frameTimeout.nanoseconds / 1_000_000_000
                handler.refusePartialFrame(
                    ProtocolError(.frameTimeout, "a frame begun \(seconds) s ago has not arrived whole"),
                    context: context
                )
                return
            }
            handler.armFrameCheck(context: context)
        }
    }

    /// Answers the frame still arriving at the front of `cumulation` with `error` (after every answer before it),
    /// drops what was held, and closes the connection: the rest of the frame can no longer be told from what follows.
    private func refusePartialFrame(_ error: ProtocolError, context: ChannelHandlerContext) {
        var header = FrameHeader(opcode: 0, requestID: 0, length: 0)
        if let held = cumulation, held.readableBytes >= FrameHeader.size {
            header.opcode = held.getInteger(at: held.readerIndex + 2, as: UInt8.self)!
            header.requestID = held.getInteger(at: held.readerIndex + 4, endianness: .little, as: UInt32.self)!
        }
        dropHeldBytes()
        framingLost = true
        closeWhenDone = true
        var out = ByteBuffer()
        swap(&out, &output)
        emit(.error(error), header: header, started: ServerStats.nanoseconds(), into: &out)
        swap(&out, &output)
        writeOutput(context: context)
    }

    /// Answers the complete frames in `cumulation`, until they run out, the batch's turn is up, or a stall.
    /// - Parameter started: when the frames were read (the latency of each answer counts from then).
    private func processFrames(context: ChannelHandlerContext, started batchStarted: UInt64) {
        if !context.channel.isWritable {
            // The answers written so far have not gone out yet (a continuation after a turn, or the rest of a read loop).
            beginWriteStall()
            return
        }
        let maxPayload = Int(router.limits.maxPayload)
        // Work on locals for the whole batch: class properties passed inout pay a dynamic exclusivity check on every
        // access, which showed up in profiles at a few per cent per request.
        var input = cumulation!
        cumulation = nil
        var out = ByteBuffer()
        swap(&out, &output)
        // Latency is measured from when the batch was read: it includes queueing behind earlier frames.
        // The turn counts from now; `now` is the clock read by the last answer (offloads read none).
        if turnEnds == 0 { turnEnds = ServerStats.nanoseconds() &+ turnNanos }
        let turnEnds = turnEnds
        var now: UInt64 = 0
        var parsedAny = false
        parsing: while !framingLost {
            switch FrameParser.next(from: &input, maxPayload: maxPayload) {
            case .needMoreData:
                break parsing
            case .frame(let header, let payload):
                parsedAny = true
                switch router.plan(opcode: header.opcode, payload: payload) {
                case .done(let response):
                    now = emit(response, header: header, started: batchStarted, into: &out)
                case .offload(let work):
                    if scans.tryEnter() {
                        offload(work, header: header, started: batchStarted, context: context)
                    } else {
                        let error = ProtocolError(.overloaded, "\(scans.limit) scans are already waiting or running; retry later")
                        now = emit(.error(error), header: header, started: batchStarted, into: &out)
                    }
                }
            case .unframeable(let error, let requestID):
                emit(.error(error), header: FrameHeader(opcode: 0, requestID: requestID, length: 0), started: batchStarted, into: &out)
                framingLost = true
                closeWhenDone = true
            }
            if queued.count > maxQueued {
                stalledOnQueue = true
                break parsing
            }
            if out.readableBytes >= Self.writeEvery {
                context.writeAndFlush(wrapOutboundOut(out), promise: nil)
                out = context.channel.allocator.buffer(capacity: 4096)
                if !context.channel.isWritable {
                    beginWriteStall()
                    break parsing
                }
            }
            if now > turnEnds {
                if input.readableBytes > 0 { yieldTurn(batchStarted: batchStarted) }
                break parsing
            }
        }
        swap(&out, &output)
        if input.readableBytes > 0 {
            // Any frame still arriving is a new one. (With nothing left, settleReceive clears it: only a connection
            // holding bytes has a frame arriving, so the common batch writes no property here.)
            if parsedAny { partialSince = nil }
            if input.readerIndex > 65_536 { input.discardReadBytes() }
            cumulation = input
        }
    }

    /// Appends a response in order: straight to `out`, or behind a pending offloaded one.
    /// - Returns: the clock reading its latency was taken at.
    @discardableResult
    private func emit(_ response: Response, header: FrameHeader, started: UInt64, into out: inout ByteBuffer) -> UInt64 {
        var failed = false
        if case .error = response { failed = true }
        let now = ServerStats.nanoseconds()
        router.stats.record(opcode: header.opcode, nanos: now &- started, failed: failed)
        if queued.isEmpty {
            response.writeFrame(requestID: header.requestID, to: &out)
        } else {
            var bytes = ByteBuffer()
            response.writeFrame(requestID: header.requestID, to: &bytes)
            queued.append(Slot(sequence: 0, bytes: bytes))
        }
        return now
    }

    private func offload(_ work: @escaping @Sendable () -> Response, header: FrameHeader, started: UInt64, context: ChannelHandlerContext) {
        let sequence = nextSequence
        nextSequence += 1
        queued.append(Slot(sequence: sequence, bytes: nil))
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let scans = self.scans
        pool.runIfActive(eventLoop: context.eventLoop) { work() }.whenComplete { result in
            scans.leave()
            let (handler, context) = bound.value
            let response: Response
            switch result {
            case .success(let r): response = r
            case .failure: response = .error(ProtocolError(.shuttingDown, "the server is shutting down"))
            }
            handler.complete(response, header: header, started: started, sequence: sequence, context: context)
        }
    }

    /// Fills an offloaded request's slot and writes every response that is now ready, in order.
    private func complete(_ response: Response, header: FrameHeader, started: UInt64, sequence: UInt64, context: ChannelHandlerContext) {
        var failed = false
        if case .error = response { failed = true }
        router.stats.record(opcode: header.opcode, nanos: ServerStats.nanoseconds() - started, failed: failed)
        var bytes = ByteBuffer()
        response.writeFrame(requestID: header.requestID, to: &bytes)
        guard let i = queued.firstIndex(where: { $0.sequence == sequence }) else { return }  // connection reset
        queued[i].bytes = bytes
        while let first = queued.first, var ready = first.bytes {
            output.writeBuffer(&ready)
            queued.removeFirst()
        }
        writeOutput(context: context)
        if stalledOnQueue && queued.count <= maxQueued / 2 { resume(context: context) }
    }

    /// Writes and flushes what `output` holds. A connection that is to close, with nothing left behind a scan, closes
    /// once everything written so far has gone out: closing at once would drop the writes still pending (the answers a
    /// slow reader has not taken yet).
    private func writeOutput(context: ChannelHandlerContext) {
        // Frames may wait in `cumulation` to be answered while yielded or stalled (unless framing was lost: never).
        // Evaluated only when closing: each flag read is an exclusivity check, on every write.
        let closing =
            closeWhenDone && queued.isEmpty
            && (framingLost || !(yielded || ((stalledOnWrites || stalledOnQueue) && (cumulation?.readableBytes ?? 0) > 0)))
        guard output.readableBytes > 0 || closing else { return }
        let out = output
        output = context.channel.allocator.buffer(capacity: 4096)
        // The client may still be sending: the rest of a frame refused mid-way, bytes after a bad one, or requests
        // pipelined while the server drains (a connection read from in the last linger time). Closing with its bytes
        // unread would send a reset, which can destroy answers before the client reads them (measured: a refused
        // 700 KB frame's client got ECONNRESET instead of OVERLOADED; 6 of 10 drains of a pipelining client ended in a
        // reset). So shut the server's side only, and read and drop the rest until the client closes (then close) or
        // the linger time is up. An idle connection, the usual case in a drain, closes at once.
        if closing && (framingLost || (draining && ServerStats.nanoseconds() &- lastRead < UInt64(Self.lingerTime.nanoseconds))) {
            guard !lingering else { return }
            lingering = true
            if readWithheld {  // reads stopped for a stall or a turn: dropping what comes needs them again
                readWithheld = false
                context.read()
            }
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in
                channel.close(mode: .output, promise: nil)
                channel.eventLoop.scheduleTask(in: Self.lingerTime) { channel.close(promise: nil) }
            }
        } else if closing {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        }
    }
}

@available(*, unavailable)
extension ConnectionHandler: Sendable {}
