import CLZ4

/// LZ4 block compression via liblz4; file bytes are only ever decompressed with the bounds-checked `LZ4_decompress_safe`.
enum LZ4Codec {
    /// Largest input one LZ4 block can hold (`LZ4_MAX_INPUT_SIZE`).
    static let maxBlockSize = Int(LZ4_MAX_INPUT_SIZE)

    /// Compresses `input`; nil when it does not fit one block or does not shrink.
    static func compress(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
        guard input.count > 0, input.count <= maxBlockSize else { return nil }
        let bound = Int(LZ4_compressBound(Int32(input.count)))
        var out = [UInt8](repeating: 0, count: bound)
        let n = out.withUnsafeMutableBytes { dst in
            LZ4_compress_default(
                input.baseAddress!.assumingMemoryBound(to: CChar.self),
                dst.baseAddress!.assumingMemoryBound(to: CChar.self),
                Int32(input.count),
                Int32(bound)
            )
        }
        guard n > 0, Int(n) < input.count else { return nil }
        out.removeSubrange(Int(n)...)
        return out
    }

    /// Decompresses `input` into `output`, which must be exactly the expected raw size.
    static func decompress(
        _ input: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer,
        section: String
    ) throws(ModelFormatError) {
        guard input.count > 0, input.count <= maxBlockSize, output.count <= maxBlockSize else {
            throw ModelFormatError(.badCompression, section: section, "LZ4 block size out of range")
        }
        let n = LZ4_decompress_safe(
            input.baseAddress!.assumingMemoryBound(to: CChar.self),
            output.baseAddress?.assumingMemoryBound(to: CChar.self),
            Int32(input.count),
            Int32(output.count)
        )
        guard n == Int32(output.count) else {
            throw ModelFormatError(
                .badCompression,
                section: section,
                n < 0 ? "corrupt LZ4 block" : "LZ4 block decompressed to \(n) bytes, expected \(output.count)"
            )
        }
    }
}
