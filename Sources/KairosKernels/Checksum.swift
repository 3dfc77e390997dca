import CKairosKernels

/// Checksums used by the model file format.
public enum Checksum {
    /// xxHash64 (XXH64) of `bytes` with `seed`, as specified by the xxHash project.
    ///
    /// One C implementation (id_index.c) serves the file checksums and the id index's hash alike: as fast as the
    /// Swift one was on large buffers (about 21 GB/s here), and without its call overhead on short ids.
    public static func xxh64(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        ckk_xxh64(bytes.baseAddress, bytes.count, seed)
    }
}
