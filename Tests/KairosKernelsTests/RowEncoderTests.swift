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
}
