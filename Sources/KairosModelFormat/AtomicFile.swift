#if canImport(Glibc)
import Glibc
#endif

/// Crash-safe publishing: readers see either the old file or the complete new one, never a partial one.
package enum AtomicFile {
    /// Writes `bytes` to a temp file beside `path`, fsyncs it, renames it over `path`, then fsyncs the folder.
    static func write(_ bytes: [UInt8], to path: String) throws(ModelFormatError) {
        let (dir, base) = split(path)
        let tmp = "\(dir)/.\(base).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ioError("cannot create \(tmp)") }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        let written = bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                done += n
            }
            return true
        }
        guard written else {
            let error = ioError("cannot write \(tmp)")
            close(fd)
            throw error
        }
        guard fsync(fd) == 0 else {
            let error = ioError("cannot fsync \(tmp)")
            close(fd)
            throw error
        }
        close(fd)
        guard rename(tmp, path) == 0 else { throw ioError("cannot rename \(tmp) to \(path)") }
        ok = true
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw ioError("cannot open folder \(dir) to fsync it") }
        defer { close(dfd) }
        guard fsync(dfd) == 0 else { throw ioError("cannot fsync folder \(dir)") }
    }

    /// (folder, last component) of a path; the folder is "." for a bare name.
    package static func split(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let dir = String(path[..<slash])
        return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
    }

    static func ioError(_ what: String) -> ModelFormatError {
        ModelFormatError(.io, "\(what): \(String(cString: strerror(errno)))")
    }
}
