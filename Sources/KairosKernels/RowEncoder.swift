import CKairosKernels

/// Encodes float32 rows into the stored row encodings (and back, for reference and tests).
public enum RowEncoder {
    /// Encodes `rows x cols` contiguous row-major float32 `values` into `rowBytes` using `encoding`, one row every
    /// `encoding.alignedStride(cols:)` bytes with zeroed padding. For ``RowEncoding/int8`` each row is quantized
    /// symmetrically (`scale = max|x| / 127`, `q = round(x / scale)`) and its scale written to `scales`.
    ///
    /// - Precondition: `rowBytes.count >= rows * stride`, `scales.count >= rows` for int8; values are finite.
    public static func encode(
        _ values: UnsafeBufferPointer<Float>,
        rows: Int,
        cols: Int,
        as encoding: RowEncoding,
        into rowBytes: UnsafeMutableRawBufferPointer,
        scales: UnsafeMutableBufferPointer<Float>
    ) {
        let stride = encoding.alignedStride(cols: cols)
        precondition(rows >= 0 && cols >= 0)
        precondition(values.count >= rows * cols && rowBytes.count >= rows * stride)
        precondition(encoding != .int8 || scales.count >= rows)
        guard rows > 0, cols > 0 else { return }
        let src0 = values.baseAddress!
        let dst0 = rowBytes.baseAddress!
        let hasF16C = ScoringKernels.supportedISAs.contains(.avx2)
        // One memset for the padding of every row, then typed stores per row.
        dst0.initializeMemory(as: UInt8.self, repeating: 0, count: rows * stride)
        for r in 0..<rows {
            let src = src0 + r * cols
            let dst = dst0 + r * stride
            switch encoding {
            case .float32:
                dst.copyMemory(from: src, byteCount: cols * 4)
            case .float16:
                let out = dst.assumingMemoryBound(to: UInt16.self)
                if hasF16C {
                    // Same rounding (to nearest, ties to even) as Float16(_:), without a libcall per element.
                    ckk_f32_to_f16_f16c(src, out, cols)
                } else {
                    for c in 0..<cols { out[c] = Float16(src[c]).bitPattern.littleEndian }
                }
            case .int8:
                var maxAbs: Float = 0
                for c in 0..<cols { maxAbs = max(maxAbs, abs(src[c])) }
                let scale = maxAbs > 0 ? maxAbs / 127 : 1
                scales[r] = scale
                // C: Swift's `rounded()` is a libm call and its checked conversions block vectorization here.
                ckk_quantize_i8(src, dst.assumingMemoryBound(to: Int8.self), cols, scale)
            }
        }
    }

    /// Appends one row of `matrix`, decoded to float32 as ``decodeRow(_:of:)`` does, to `out`.
    public static func decodeRow(_ row: Int, of matrix: MatrixView, appendingTo out: inout [Float]) {
        precondition(row >= 0 && row < matrix.rows)
        if matrix.encoding == .float32 {
            let p = matrix.rowPointer(row)
            let start = out.count
            out.append(contentsOf: repeatElement(0, count: matrix.cols))
            out.withUnsafeMutableBytes { dst in
                (dst.baseAddress! + start * 4).copyMemory(from: p, byteCount: matrix.cols * 4)
            }
        } else {
            out.append(contentsOf: decodeRow(row, of: matrix))
        }
    }

    /// Decodes one row of `matrix` to float32 (the dequantized reference used by tests and the golden check).
    public static func decodeRow(_ row: Int, of matrix: MatrixView) -> [Float] {
        precondition(row >= 0 && row < matrix.rows)
        let p = matrix.rowPointer(row)
        if matrix.encoding == .float32 {  // a copy (the element-wise path costs ~20 instructions per value)
            return [Float](unsafeUninitializedCapacity: matrix.cols) { out, n in
                UnsafeMutableRawBufferPointer(out).copyMemory(from: UnsafeRawBufferPointer(start: p, count: matrix.cols * 4))
                n = matrix.cols
            }
        }
        return (0..<matrix.cols).map { c in
            switch matrix.encoding {
            case .float32: p.loadUnaligned(fromByteOffset: c * 4, as: Float.self)
            case .float16: Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: c * 2, as: UInt16.self)))
            case .int8: Float(p.load(fromByteOffset: c, as: Int8.self)) * matrix.scales![row]
            }
        }
    }
}
