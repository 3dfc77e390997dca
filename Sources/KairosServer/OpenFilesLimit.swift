#if canImport(Glibc)
import Glibc
#endif

/// The process's open-files limit against the connections the server is asked to hold.
///
/// Every connection is a file descriptor. Under the usual soft limit of 1024 (systemd's default for services), a
/// server configured for 10,000 connections stops accepting at about a thousand, and the clients past that wait
/// unanswered in the listen backlog (measured with `ulimit -n 128`: 108 connections served, 92 silent) instead of
/// getting the OVERLOADED refusal the connection limit gives. As Redis does, the soft limit is raised toward the hard
/// one, and if even that is too low, the connection limit is lowered to what fits.
public enum OpenFilesLimit {
    /// Descriptors the server needs besides its connections: each event-loop thread's epoll, eventfd and timerfd,
    /// and 32 for the standard streams, listeners, the model watcher, model files being loaded and connections being
    /// refused (measured: 19 in use with no connection and 4 event-loop threads).
    public static func reserve(eventLoopThreads threads: Int) -> Int { 32 + 3 * max(1, threads) }

    /// Raises the soft limit so that `connections` plus `reserve` descriptors fit, if the hard limit allows.
    /// - Returns: the soft limit in force afterwards, and how many connections fit under it (at most `connections`).
    public static func fit(connections: Int, reserve: Int) -> (limit: Int, connections: Int) {
        var r = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &r) == 0 else { return (Int.max, connections) }
        let wanted = rlim_t(clamping: connections + reserve)
        if r.rlim_cur != unlimited && r.rlim_cur < wanted {
            var raised = r
            raised.rlim_cur = r.rlim_max == unlimited ? wanted : min(wanted, r.rlim_max)
            if setrlimit(RLIMIT_NOFILE_VALUE, &raised) == 0 { r = raised }
        }
        let limit = r.rlim_cur == unlimited ? Int.max : Int(clamping: r.rlim_cur)
        return (limit, max(0, min(connections, limit - reserve)))
    }

    /// RLIM_INFINITY (all ones; Glibc's macro does not import).
    private static let unlimited = rlim_t.max
    private static var RLIMIT_NOFILE_VALUE: __rlimit_resource_t { __rlimit_resource_t(RLIMIT_NOFILE.rawValue) }
}
