import CKairosKernels

/// Checksums used by the model file format.
public enum Checksum {
    /// xxHash64 (XXH64) of `bytes` with `seed`, as specified by the xxHash project.
    public static func xxh64(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        // The C version keeps the stripe loop tight in every build configuration (files are hundreds of MB).
        guard let base = bytes.baseAddress else {
            var empty: UInt8 = 0
            return ckk_xxh64(&empty, 0, seed)
        }
        return ckk_xxh64(base, bytes.count, seed)
    }
}
