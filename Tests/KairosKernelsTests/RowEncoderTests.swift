import KairosKernels
import Testing

@Suite struct RowEncoderTests {
    static func encoded(_ values: [Float], rows: Int, cols: Int, _ e: RowEncoding) -> ([UInt8], [Float]) {
        var bytes = [UInt8](repeating: 0xAB, count: rows * e.alignedStride(cols: cols))
        var scales = [Float](repeating: -1, count: rows)
        values.withUnsafeBufferPointer { v in
            bytes.withUnsafeMutableBytes { b in
                scales.withUnsafeMutableBufferPointer {
                    RowEncoder.encode(v, rows: rows, cols: cols, as: e, into: b, scales: $0)
                }
            }
        }
        return (bytes, scales)
    }

    static func decodeAll(_ bytes: [UInt8], _ scales: [Float], rows: Int, cols: Int, _ e: RowEncoding) -> [Float] {
        bytes.withUnsafeBytes { b in
            scales.withUnsafeBufferPointer { s in
                let m = MatrixView(base: b.baseAddress!, rows: rows, cols: cols, rowStride: e.alignedStride(cols: cols),
                                   encoding: e, scales: e == .int8 ? s.baseAddress! : nil)
                return (0..<rows).flatMap { RowEncoder.decodeRow($0, of: m) }
            }
        }
    }

    /// Round trip: float32 exact, float16 within half precision, int8 within scale/2; padding bytes are zeroed.
    @Test(arguments: RowEncoding.allCases, [4, 20, 68])
    func roundTrip(_ e: RowEncoding, cols: Int) {
        let rows = 7
        let values = randomValues(rows: rows, cols: cols, seed: UInt64(cols))
        let (bytes, scales) = Self.encoded(values, rows: rows, cols: cols, e)
        let decoded = Self.decodeAll(bytes, scales, rows: rows, cols: cols, e)
        for r in 0..<rows {
            for c in 0..<cols {
                let x = values[r * cols + c], y = decoded[r * cols + c]
                switch e {
                case .float32:
                    #expect(x == y)
                case .float16:
                    // Round to nearest with an 11-bit significand: relative error <= 2^-11 (values are normal).
                    #expect(abs(x - y) <= abs(x) * 0x1p-11 + 0x1p-25, "r\(r) c\(c): \(x) -> \(y)")
                case .int8:
                    #expect(abs(x - y) <= scales[r] * 0.5 * (1 + 1e-5), "r\(r) c\(c): \(x) -> \(y)")
                }
            }
            let stride = e.alignedStride(cols: cols)
            #expect(bytes[(r * stride + cols * e.elementSize)..<((r + 1) * stride)].allSatisfy { $0 == 0 })
        }
    }

    /// int8 uses scale = max|x|/127 (so the largest element maps to +-127), and scale 1 for an all-zero row.
    @Test func int8ScaleRules() {
        let cols = 8
        let values: [Float] = [0.5, -2.54, 1, 0, 0, 0, 0, 0.01] + [Float](repeating: 0, count: cols)
        let (bytes, scales) = Self.encoded(values, rows: 2, cols: cols, .int8)
        #expect(scales[0] == Float(2.54) / 127)
        #expect(Int8(bitPattern: bytes[1]) == -127)
        #expect(Int8(bitPattern: bytes[0]) == 25)
        #expect(scales[1] == 1)
        let stride = RowEncoding.int8.alignedStride(cols: cols)
        #expect(bytes[stride..<(stride + cols)].allSatisfy { $0 == 0 })
    }

    /// int8 rounding is exactly Swift's `(x / scale).rounded()` (half away from zero), ties included.
    @Test func int8RoundingMatchesSwiftRounded() {
        let row: [Float] = [127, 2.5, -2.5, 0.5, -0.5, 126.5, -126.5, 1.4999999, -1.4999999, 0.49999997, 3.5, -127]
        var rng = SplitMix64(seed: 77)
        let random = (0..<4000).map { _ in Float.random(in: -3...3, using: &rng) }
        for (values, cols) in [(row, row.count), (random, random.count)] {
            let (bytes, scales) = Self.encoded(values, rows: 1, cols: cols, .int8)
            for c in 0..<cols {
                let expected = Int8(max(-127, min(127, (values[c] / scales[0]).rounded())))
                #expect(Int8(bitPattern: bytes[c]) == expected, "\(values[c])")
            }
        }
    }

    /// float16 encoding is bit-identical to Swift's Float16(_:) (round to nearest even), including halfway
    /// cases, subnormals and overflow to infinity.
    @Test func float16MatchesSwiftConversion() {
        var rng = SplitMix64(seed: 78)
        var values = (0..<1000).map { _ in Float.random(in: -70000...70000, using: &rng) }
        values += (0..<1000).map { _ in Float.random(in: -1e-4...1e-4, using: &rng) }
        // Exactly halfway between two binary16 values (1 + 2^-11, 1 + 3 * 2^-11) and the subnormal range.
        values += [1 + 0x1p-11, 1 + 3 * 0x1p-11, 0x1p-25, 3 * 0x1p-26, 65504, 65520, -65520, 0, -0.0, 1e-10]
        let cols = (values.count + 3) / 4 * 4
        values += [Float](repeating: 0, count: cols - values.count)
        let (bytes, _) = Self.encoded(values, rows: 1, cols: cols, .float16)
        for c in 0..<cols {
            let got = UInt16(bytes[2 * c]) | UInt16(bytes[2 * c + 1]) << 8
            #expect(got == Float16(values[c]).bitPattern, "\(values[c])")
        }
    }
}
