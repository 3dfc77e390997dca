#if canImport(Glibc)
import Glibc
#endif

/// A read-only private mapping of a whole file, unmapped when the last reference goes away.
final class FileMapping: Sendable {
    /// First byte of the mapping.
    nonisolated(unsafe) let base: UnsafeRawPointer
    /// Mapped length (the file size at open time).
    let size: Int

    /// The mapped bytes.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    private init(base: UnsafeRawPointer, size: Int) {
        self.base = base
        self.size = size
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }

    /// Maps `path` read-only. The corresponding C calls are `open`, `fstat` and `mmap`.
    /// - Parameter populate: prefault every page now (`MAP_POPULATE`) so first requests do not pay for page faults.
    static func map(_ path: String, populate: Bool) throws(ModelFormatError) -> FileMapping {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AtomicFile.ioError("cannot open \(path)") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw AtomicFile.ioError("cannot stat \(path)") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ModelFormatError(.io, "\(path) is not a regular file") }
        let size = Int(st.st_size)
        guard size >= FileHeader.size else {
            throw ModelFormatError(.truncated, "file is \(size) bytes, shorter than the 128-byte header")
        }
        let flags = MAP_PRIVATE | (populate ? MAP_POPULATE : 0)
        let p = mmap(nil, size, PROT_READ, flags, fd, 0)
        guard let p, p != MAP_FAILED else { throw AtomicFile.ioError("cannot mmap \(path)") }
        return FileMapping(base: UnsafeRawPointer(p), size: size)
    }
}

/// A 64-byte aligned heap buffer holding a decompressed section for the model's lifetime.
final class AlignedBuffer: Sendable {
    nonisolated(unsafe) let base: UnsafeMutableRawPointer
    let size: Int

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Allocates `size` bytes; the size was already bounded by the section table checks.
    init(size: Int) {
        var p: UnsafeMutableRawPointer?
        precondition(posix_memalign(&p, 64, max(size, 64)) == 0, "out of memory allocating \(size) bytes")
        base = p!
        self.size = size
    }

    deinit { free(base) }
}
