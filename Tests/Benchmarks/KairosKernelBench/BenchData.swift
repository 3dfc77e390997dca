import CKairosBenchPeer
import Glibc
import KairosKernels

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seeded PRNG, so every run and every peer sees the same data.
struct SplitMix64 {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in (0, 1], never 0 (safe for `log`).
    mutating func nextUnit() -> Double {
        Double((next() >> 11) + 1) * 0x1p-53
    }

    /// Uniform in `0..<bound` (multiply-high; the tiny bias is irrelevant here).
    mutating func next(below bound: Int) -> Int {
        Int((UInt64(UInt32(truncatingIfNeeded: next() >> 32)) &* UInt64(bound)) >> 32)
    }

    /// Fills `out` with N(0, sigma^2) values (Box-Muller).
    mutating func fillGaussian(_ out: UnsafeMutableBufferPointer<Float>, sigma: Double) {
        var i = 0
        while i < out.count {
            let radius = (-2 * log(nextUnit())).squareRoot() * sigma
            let angle = 2 * Double.pi * nextUnit()
            out[i] = Float(radius * cos(angle))
            if i + 1 < out.count { out[i + 1] = Float(radius * sin(angle)) }
            i += 2
        }
    }
}

/// Heap memory aligned to 64 bytes (posix_memalign), freed on deinit; the bench keeps each buffer alive for the
/// whole run, so the raw pointers handed to the kernels never dangle.
final class AlignedBuffer {
    let base: UnsafeMutableRawPointer
    let count: Int

    init(byteCount: Int, alignment: Int = 64) {
        var p: UnsafeMutableRawPointer? = nil
        let rc = posix_memalign(&p, alignment, max(byteCount, alignment))
        guard rc == 0, let p else { fatalError("posix_memalign(\(byteCount)) failed: \(rc)") }
        // Touch every page now, so first-use page faults never land inside a measurement.
        memset(p, 0, max(byteCount, alignment))
        base = p
        count = byteCount
    }

    deinit { free(base) }

    var raw: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }

    func floats(_ n: Int) -> UnsafeMutableBufferPointer<Float> {
        precondition(n * 4 <= count)
        return UnsafeMutableBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: n)
    }
}

/// One encoding of the benchmark matrix: the row bytes, int8 scales, and the view the kernels read.
struct EncodedMatrix {
    let encoding: RowEncoding
    let rowBytes: AlignedBuffer
    let scales: AlignedBuffer?
    let view: MatrixView
    /// Wall time of `RowEncoder.encode`, informative only.
    let encodeNanoseconds: UInt64

    init(_ values: UnsafeBufferPointer<Float>, rows: Int, cols: Int, as encoding: RowEncoding) {
        let stride = encoding.alignedStride(cols: cols)
        let bytes = AlignedBuffer(byteCount: rows * stride)
        let scaleBuffer = encoding == .int8 ? AlignedBuffer(byteCount: rows * 4) : nil
        let scalePointer = scaleBuffer?.floats(rows) ?? UnsafeMutableBufferPointer(start: nil, count: 0)
        let start = ckairos_bench_now_ns()
        RowEncoder.encode(values, rows: rows, cols: cols, as: encoding, into: bytes.raw, scales: scalePointer)
        encodeNanoseconds = ckairos_bench_now_ns() - start
        self.encoding = encoding
        rowBytes = bytes
        scales = scaleBuffer
        view = MatrixView(
            base: UnsafeRawPointer(bytes.base),
            rows: rows,
            cols: cols,
            rowStride: stride,
            encoding: encoding,
            scales: scaleBuffer.map { UnsafePointer($0.floats(rows).baseAddress!) }
        )
    }

    /// Bytes a full scan reads (rows, plus scales for int8).
    var scanBytes: Int { view.rows * view.rowStride + (scales?.count ?? 0) }
}

enum RawFloatFile {
    /// Writes `values` as raw little-endian float32 to `path` (the layout `numpy.fromfile(path, "<f4")` reads).
    static func write(_ values: UnsafeBufferPointer<Float>, to path: String) throws(BenchError) {
        #if _endian(big)
            #error("raw float files are little-endian; add byte swapping for big-endian hosts")
        #endif
        guard let file = fopen(path, "wb") else {
            throw BenchError(description: "cannot open \(path) for writing: errno \(errno)")
        }
        defer { fclose(file) }
        var offset = 0
        let chunk = 1 << 20
        while offset < values.count {
            let n = min(chunk, values.count - offset)
            guard fwrite(values.baseAddress! + offset, 4, n, file) == n else {
                throw BenchError(description: "short write to \(path): errno \(errno)")
            }
            offset += n
        }
        guard fflush(file) == 0 else { throw BenchError(description: "flush of \(path) failed") }
    }
}

extension RowEncoding {
    /// Short name used in case names and JSON keys: f32, f16, int8.
    var short: String {
        switch self {
        case .float32: "f32"
        case .float16: "f16"
        case .int8: "int8"
        }
    }
}
