import DequeModule
import KairosProtocol
import NIOCore
import NIOPosix

/// Asks a connection to finish what it has read, then close (graceful shutdown).
struct DrainEvent: Sendable {}

/// One connection: parses every complete frame straight out of the read buffer, answers each in arrival order into
/// one output buffer, and writes + flushes once per read batch (not once per response).
///
/// Scans of large catalogues run on a thread pool; responses after one wait in a queue so order is kept.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A response waiting behind an offloaded one (nil while still being computed).
    private struct Slot {
        /// Sequence number of the offloaded request this slot waits for (0 for responses queued ready).
        var sequence: UInt64
        var bytes: ByteBuffer?
    }

    private let router: RequestRouter
    private let pool: NIOThreadPool
    private let scans: ScanAdmission
    /// Queued responses above which the connection stops reading (backpressure on deep pipelines of scans).
    private let maxQueued: Int
    private var cumulation: ByteBuffer?
    private var output = ByteBuffer()
    private var queued = Deque<Slot>()
    private var closeWhenDone = false
    /// Draining for shutdown: requests still arriving are answered with SHUTTING_DOWN instead of being served.
    private var draining = false
    private var readsPaused = false
    private var open = false
    private var nextSequence: UInt64 = 1
    /// Connections with nothing read for this long (and nothing in progress) are closed; 0 means never.
    private let idleTimeout: TimeAmount
    /// Monotonic nanoseconds of the last read batch (the clock read the batch takes anyway for its latency).
    private var lastRead: UInt64 = 0
    private var idleCheck: Scheduled<Void>?

    init(router: RequestRouter, pool: NIOThreadPool, scans: ScanAdmission, idleTimeout: TimeAmount = .seconds(300), maxQueued: Int = 256) {
        self.router = router
        self.pool = pool
        self.scans = scans
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
        open = false
        idleCheck?.cancel()
        idleCheck = nil
        context.fireChannelInactive()
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
        if draining {
            refuseWhileDraining(data: unwrapInboundIn(data), context: context)
            return
        }
        guard !closeWhenDone else { return }  // framing is lost: ignore the rest
        var incoming = unwrapInboundIn(data)
        if cumulation == nil {
            cumulation = incoming
        } else {
            cumulation!.writeBuffer(&incoming)
        }
        processFrames(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flush(context: context)
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DrainEvent {
            draining = true
            closeWhenDone = true
            flush(context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Answers every complete frame that arrives during a drain with SHUTTING_DOWN, so clients can retry elsewhere.
    private func refuseWhileDraining(data: ByteBuffer, context: ChannelHandlerContext) {
        var incoming = data
        if cumulation == nil { cumulation = incoming } else { cumulation!.writeBuffer(&incoming) }
        var out = ByteBuffer()
        swap(&out, &output)
        while case .frame(let header, _) = FrameParser.next(from: &cumulation!, maxPayload: Int(router.limits.maxPayload)) {
            emit(.error(ProtocolError(.shuttingDown, "the server is shutting down")), header: header, started: ServerStats.nanoseconds(), into: &out)
        }
        swap(&out, &output)
        flush(context: context)
    }

    private func processFrames(context: ChannelHandlerContext) {
        let maxPayload = Int(router.limits.maxPayload)
        // Work on locals for the whole batch: class properties passed inout pay a dynamic exclusivity check on every
        // access, which showed up in profiles at a few per cent per request.
        var input = cumulation!
        cumulation = nil
        var out = ByteBuffer()
        swap(&out, &output)
        // Latency is measured from the start of the read batch: it includes queueing behind earlier frames.
        let batchStarted = ServerStats.nanoseconds()
        lastRead = batchStarted
        parsing: while !closeWhenDone {
            switch FrameParser.next(from: &input, maxPayload: maxPayload) {
            case .needMoreData:
                break parsing
            case .frame(let header, let payload):
                switch router.plan(opcode: header.opcode, payload: payload) {
                case .done(let response):
                    emit(response, header: header, started: batchStarted, into: &out)
                case .offload(let work):
                    if scans.tryEnter() {
                        offload(work, header: header, started: batchStarted, context: context)
                    } else {
                        let error = ProtocolError(.overloaded, "\(scans.limit) scans are already waiting or running; retry later")
                        emit(.error(error), header: header, started: batchStarted, into: &out)
                    }
                }
            case .unframeable(let error, let requestID):
                emit(.error(error), header: FrameHeader(opcode: 0, requestID: requestID, length: 0), started: batchStarted, into: &out)
                closeWhenDone = true
            }
        }
        swap(&out, &output)
        if input.readableBytes > 0 {
            if input.readerIndex > 65_536 { input.discardReadBytes() }
            cumulation = input
        }
        if queued.count > maxQueued && !readsPaused {
            readsPaused = true
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        }
    }

    /// Appends a response in order: straight to `out`, or behind a pending offloaded one.
    private func emit(_ response: Response, header: FrameHeader, started: UInt64, into out: inout ByteBuffer) {
        var failed = false
        if case .error = response { failed = true }
        router.stats.record(opcode: header.opcode, nanos: ServerStats.nanoseconds() &- started, failed: failed)
        if queued.isEmpty {
            response.writeFrame(requestID: header.requestID, to: &out)
        } else {
            var bytes = ByteBuffer()
            response.writeFrame(requestID: header.requestID, to: &bytes)
            queued.append(Slot(sequence: 0, bytes: bytes))
        }
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
        flush(context: context)
        if readsPaused && queued.count <= maxQueued / 2 {
            readsPaused = false
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            context.read()
        }
    }

    private func flush(context: ChannelHandlerContext) {
        if output.readableBytes > 0 {
            let out = output
            output = context.channel.allocator.buffer(capacity: 4096)
            if closeWhenDone && queued.isEmpty {
                let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in channel.close(promise: nil) }
                return
            }
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        } else if closeWhenDone && queued.isEmpty {
            context.close(promise: nil)
        }
    }
}

@available(*, unavailable)
extension ConnectionHandler: Sendable {}
