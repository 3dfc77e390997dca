import Glibc

/// Memory a model load may still take: the kernel's `MemAvailable`, and the room left under the process's cgroup
/// memory limit (v2 `memory.max`, or v1 `memory.limit_in_bytes`) when there is one, whichever is smaller. In a
/// container `/proc/meminfo` shows the host's memory, so the cgroup is what the OOM killer goes by there.
public enum AvailableMemory {
    /// Bytes available now, or nil when nothing could be read (then no check is made).
    public static func bytes() -> Int? {
        let meminfo = read("/proc/meminfo").flatMap(memAvailable(meminfo:))
        let cgroup = read("/proc/self/cgroup").flatMap { cgroupRoom(cgroupFile: $0, read: read) }
        switch (meminfo, cgroup) {
        case let (m?, c?): return min(m, c)
        case let (m, c): return m ?? c
        }
    }

    /// `MemAvailable` of a `/proc/meminfo` text, in bytes.
    static func memAvailable(meminfo: String) -> Int? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let kb = Int(fields[1]) else { return nil }
            return kb * 1024
        }
        return nil
    }

    /// Limit minus usage of the memory cgroup named in a `/proc/self/cgroup` text, reading its files with `read`;
    /// nil without a limit (v2 `max`, or v1's "unlimited" near Int64.max) or when the files are not there.
    static func cgroupRoom(cgroupFile: String, read: (String) -> String?) -> Int? {
        for line in cgroupFile.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let path = String(parts[2])
            let candidates: [(limit: String, usage: String)]
            if parts[0] == "0" && parts[1].isEmpty {
                candidates = [("/sys/fs/cgroup\(path)/memory.max", "/sys/fs/cgroup\(path)/memory.current")]
            } else if parts[1].split(separator: ",").contains("memory") {
                let base = "/sys/fs/cgroup/memory\(path)"
                candidates = [("\(base)/memory.limit_in_bytes", "\(base)/memory.usage_in_bytes")]
            } else {
                continue
            }
            for c in candidates {
                guard let limitText = read(c.limit)?.trimmingNewline, let usageText = read(c.usage)?.trimmingNewline,
                    let usage = Int(usageText)
                else { continue }
                // v2 says "max"; v1 says a page-rounded Int64.max.
                guard let limit = Int(limitText), limit < (1 << 60) else { return nil }
                return max(0, limit - usage)
            }
        }
        return nil
    }

    /// A small text file's contents (the kernel's files report size 0, so read until the end).
    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20 {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension String {
    fileprivate var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
