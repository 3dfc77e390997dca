import Histogram
public import KairosProtocol
import Metrics
import NIOCore
import Synchronization

/// Request counters and latency histograms per operation, for STATS and (through swift-metrics) Prometheus.
public final class ServerStats: Sendable {
    struct OpState {
        var requests: UInt64 = 0
        var errors: UInt64 = 0
        var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .two)
    }

    struct State {
        /// Indexed by opcode (0 = unknown opcodes): a plain array, no hashing on the request path.
        var ops = [OpState?](repeating: nil, count: 256)
        var openConnections: UInt64 = 0
        var totalConnections: UInt64 = 0
        var stalledConnections: UInt64 = 0
    }

    private let state = Mutex(State())
    /// Monotonic nanoseconds at start.
    let startedAt: UInt64 = ServerStats.nanoseconds()
    private let requestCounters: [Counter?]
    private let errorCounters: [Counter?]
    private let timers: [Metrics.Timer?]
    private let connectionsGauge = Gauge(label: "kairos_open_connections")
    private let stalledGauge = Gauge(label: "kairos_stalled_connections")
    private let stallCounter = Counter(label: "kairos_connection_stalls_total")

    public init() {
        var r = [Counter?](repeating: nil, count: 256)
        var e = [Counter?](repeating: nil, count: 256)
        var t = [Metrics.Timer?](repeating: nil, count: 256)
        for op in Opcode.allCases where op != .error {
            r[Int(op.rawValue)] = Counter(label: "kairos_requests_total", dimensions: [("op", op.description)])
            e[Int(op.rawValue)] = Counter(label: "kairos_request_errors_total", dimensions: [("op", op.description)])
            t[Int(op.rawValue)] = Metrics.Timer(label: "kairos_request_duration_seconds", dimensions: [("op", op.description)])
        }
        r[0] = Counter(label: "kairos_requests_total", dimensions: [("op", "UNKNOWN")])
        e[0] = Counter(label: "kairos_request_errors_total", dimensions: [("op", "UNKNOWN")])
        requestCounters = r
        errorCounters = e
        timers = t
    }

    /// Monotonic nanoseconds.
    static func nanoseconds() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    /// Records one request of `opcode` that took `nanos` and failed or not.
    public func record(opcode: UInt8, nanos: UInt64, failed: Bool) {
        let key = Opcode(rawValue: opcode) == nil ? 0 : Int(opcode)
        state.withLock { s in
            if s.ops[key] == nil { s.ops[key] = OpState() }
            s.ops[key]!.requests += 1
            if failed { s.ops[key]!.errors += 1 }
            _ = s.ops[key]!.latency.record(max(1, nanos / 1000))
        }
        requestCounters[key]?.increment()
        if failed { errorCounters[key]?.increment() }
        timers[key]?.recordNanoseconds(Int64(nanos))
    }

    /// Counts a connection opening (+1) or closing (-1).
    public func connection(opened: Bool) {
        let open = state.withLock { s -> UInt64 in
            if opened {
                s.openConnections += 1
                s.totalConnections += 1
            } else {
                s.openConnections -= 1
            }
            return s.openConnections
        }
        connectionsGauge.record(Int(open))
    }

    /// Counts a connection starting (true) or ending (false) a stall: its client is not reading its answers.
    public func stall(started: Bool) {
        let n = state.withLock { s -> UInt64 in
            if started { s.stalledConnections += 1 } else { s.stalledConnections -= 1 }
            return s.stalledConnections
        }
        stalledGauge.record(Int(n))
        if started { stallCounter.increment() }
    }

    /// Connections whose reads are withheld because their client is not reading its answers.
    public var stalledConnections: UInt64 { state.withLock { $0.stalledConnections } }

    /// The STATS response.
    public func snapshot(uptimeSeconds: UInt64) -> Response {
        state.withLock { s in
            let ops = s.ops.indices.compactMap { key -> OpStats? in
                guard let o = s.ops[key] else { return nil }
                return OpStats(
                    opcode: UInt8(key),
                    requests: o.requests,
                    errors: o.errors,
                    p50Micros: Float(o.latency.valueAtPercentile(50)),
                    p99Micros: Float(o.latency.valueAtPercentile(99)),
                    p999Micros: Float(o.latency.valueAtPercentile(99.9))
                )
            }
            return .stats(uptimeSeconds: uptimeSeconds, openConnections: s.openConnections, totalConnections: s.totalConnections, ops: ops)
        }
    }
}
