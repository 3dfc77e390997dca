#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KairosKernels
import Testing

/// Deterministic generator (SplitMix64) so a failing case reproduces exactly.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Random row-major values in [-1, 1], each row scaled by its own magnitude (so int8 scales differ per row).
func randomValues(rows: Int, cols: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    var out = [Float](repeating: 0, count: rows * cols)
    for r in 0..<rows {
        let magnitude = Float.random(in: 0.1...4, using: &rng)
        for c in 0..<cols { out[r * cols + c] = Float.random(in: -1...1, using: &rng) * magnitude }
    }
    return out
}

/// An encoded matrix whose last row ends exactly at a page boundary followed by a PROT_NONE page, so any read past
/// `cols` elements of the last row faults (SIGSEGV) instead of passing silently.
final class GuardedMatrix: @unchecked Sendable {
    let view: MatrixView
    private let mapping: UnsafeMutableRawPointer
    private let mappingSize: Int
    private let scales: UnsafeMutableBufferPointer<Float>

    /// Encodes `values` (`rows x cols`) with `encoding`; `customize` may patch the encoded bytes before they are
    /// made read-only (e.g. to plant NaN, which the encoder does not accept).
    init(
        values: [Float],
        rows: Int,
        cols: Int,
        encoding: RowEncoding,
        customize: ((UnsafeMutableRawPointer, Int) -> Void)? = nil
    ) {
        precondition(rows > 0)
        let stride = encoding.alignedStride(cols: cols)
        let scales = UnsafeMutableBufferPointer<Float>.allocate(capacity: rows)
        scales.initialize(repeating: 1)
        let staging = UnsafeMutableRawBufferPointer.allocate(byteCount: rows * stride, alignment: 64)
        defer { staging.deallocate() }
        values.withUnsafeBufferPointer {
            RowEncoder.encode($0, rows: rows, cols: cols, as: encoding, into: staging, scales: scales)
        }
        // Bytes from the first row to the end of the last row's elements (the last row has no padding).
        let span = (rows - 1) * stride + cols * encoding.elementSize
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let dataPages = (span + page - 1) / page * page
        mappingSize = dataPages + page
        guard let m = mmap(nil, mappingSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            m != MAP_FAILED
        else { fatalError("mmap failed") }
        mapping = m
        precondition(mprotect(m + dataPages, page, PROT_NONE) == 0)
        let base = m + (dataPages - span)
        base.copyMemory(from: staging.baseAddress!, byteCount: span)
        customize?(base, stride)
        precondition(mprotect(m, dataPages, PROT_READ) == 0)
        self.scales = scales
        view = MatrixView(
            base: UnsafeRawPointer(base), rows: rows, cols: cols, rowStride: stride, encoding: encoding,
            scales: encoding == .int8 ? UnsafePointer(scales.baseAddress!) : nil
        )
    }

    deinit {
        munmap(mapping, mappingSize)
        scales.deallocate()
    }
}

/// Double-precision dot product over the dequantized row, and the float summation error scale sum |q_i * x_i|.
func referenceDot(_ query: [Float], row: Int, of matrix: MatrixView) -> (value: Double, magnitude: Double) {
    let x = RowEncoder.decodeRow(row, of: matrix)
    var sum = 0.0
    var magnitude = 0.0
    for c in 0..<matrix.cols {
        let term = Double(query[c]) * Double(x[c])
        sum += term
        magnitude += abs(term)
    }
    return (sum, magnitude)
}

/// Whether a float kernel result agrees with the reference within 1e-5 of the summation magnitude.
func agrees(_ got: Float, _ ref: (value: Double, magnitude: Double)) -> Bool {
    abs(Double(got) - ref.value) <= 1e-5 * ref.magnitude + 1e-30
}

/// One (ISA, encoding) pair, named readably in test output.
struct KernelCase: Sendable, CustomTestStringConvertible {
    let isa: KernelISA
    let encoding: RowEncoding
    var kernels: ScoringKernels { ScoringKernels(isa: isa)! }
    var testDescription: String { "\(isa)/\(encoding)" }

    /// Every supported ISA (portable included) times every encoding.
    static let all: [KernelCase] = ScoringKernels.supportedISAs.flatMap { isa in
        RowEncoding.allCases.map { KernelCase(isa: isa, encoding: $0) }
    }
}
