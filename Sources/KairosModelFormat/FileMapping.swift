#if canImport(Glibc)
import Glibc
#endif

/// The bytes of a whole model file in memory: either a read-only private mapping of the file, or a private
/// anonymous copy of it. Either way they are unmapped (returned to the OS) when the last reference goes away.
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


    /// Reads `path` into private anonymous memory (one `read` pass). What gets verified is then exactly what is served,
    /// even if someone rewrites the file in place later: no SIGBUS, no bytes changing under a verified model.
    static func copy(_ path: String) throws(ModelFormatError) -> FileMapping {
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
        guard let p = anonymousPages(size) else { throw AtomicFile.ioError("cannot allocate \(size) bytes for \(path)") }
        var done = 0
        while done < size {
            let n = read(fd, p + done, min(size - done, 1 << 30))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                munmap(p, size)
                // A file shrinking while we read it is being rewritten in place: not complete yet.
                throw n == 0 ? ModelFormatError(.truncated, "file shrank to \(done) bytes while being read") : AtomicFile.ioError("cannot read \(path)")
            }
            done += n
        }
        mprotect(p, size, PROT_READ)
        return FileMapping(base: UnsafeRawPointer(p), size: size)
    }

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

/// `size` bytes of zeroed, page-aligned private memory, or nil. Asks for transparent huge pages (`MADV_HUGEPAGE`;
/// Debian's default THP mode is "madvise", so without it they are never used): a model's rows and id tables are read
/// at random, and with 4 KiB pages a 100k x 64 float32 matrix alone (25 MB) is twice what the L2 TLB covers, so most
/// row reads in a SCORE also missed the TLB. Fewer, larger pages also make loading fault 512x less often.
///
/// On a VM that reports free memory to its host (virtio-balloon free page reporting, as on the Firecracker VMs these
/// numbers come from: `page_reporting_order=11`), huge pages are taken from exactly the large free blocks the host has
/// reclaimed, and their first touch waits on the host: 256 MB took 390-530 ms after 4 s of idle against 22 ms when
/// reused at once. That, not the loader's own work, is the slow tail of rename -> serving in run-reload-soak.py there.
func anonymousPages(_ size: Int) -> UnsafeMutableRawPointer? {
    let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    guard let p, p != MAP_FAILED else { return nil }
    _ = madvise(p, size, MADV_HUGEPAGE)  // advice only: where THP is off, plain pages
    return p
}

/// A page-aligned buffer holding a decompressed section for the model's lifetime.
///
/// Allocated with `mmap`, not malloc: a long-running server swaps models of the same sizes again and again, and
/// malloc's adaptive mmap threshold would soon serve these from arenas that never shrink, so resident memory would
/// creep up with every swap. `munmap` returns the pages to the OS the moment the last request drops the model.
final class AlignedBuffer: Sendable {
    nonisolated(unsafe) let base: UnsafeMutableRawPointer
    let size: Int
    private let mappedSize: Int

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Allocates `size` zeroed bytes, or throws when the system will not give them (a load error, not a crash).
    init(size: Int, for what: String) throws(ModelFormatError) {
        mappedSize = max(size, 1)
        guard let p = anonymousPages(mappedSize) else {
            throw ModelFormatError(.io, "cannot allocate \(size) bytes for \(what)")
        }
        base = p
        self.size = size
    }

    deinit { munmap(base, mappedSize) }
}

/// What identifies one version of a file on disk: device, inode, size and modification time. A rename publish
/// changes the inode; an in-place rewrite changes size or mtime.
public struct ModelFileIdentity: Hashable, Sendable, CustomStringConvertible {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int
    public var modifiedNanos: Int64

    /// The identity of the regular file at `path` (nil if there is none). The corresponding C call is `stat`.
    public init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int(st.st_size)
        modifiedNanos = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    }

    public var description: String { "inode \(inode), \(size) bytes" }
}
