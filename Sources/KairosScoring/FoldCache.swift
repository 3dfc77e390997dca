public import KairosKernels
import Synchronization

/// Known users' ``LeastSquaresFold/HistorySolve``s under one snapshot, kept for their next request with events: the
/// history's half is most of a fold's cost (a 64 x 64 factorisation and the history's rank-one sums) and the same for
/// every request of a user until the model changes, while a request's events need only the small half. Bounded by
/// bytes; two generations stand in for least-recently-used (a hit moves an entry to the newer one, and when that is
/// full the older is dropped). Shared by the event loops behind one lock, held for a dictionary lookup or insert.
public final class FoldCache: Sendable {
    private struct Generations {
        var current: [Int: LeastSquaresFold.HistorySolve] = [:]
        var previous: [Int: LeastSquaresFold.HistorySolve] = [:]
    }

    /// Told of each lookup (the server counts them in its metrics).
    public struct Observer: Sendable {
        /// A request found its user's solve.
        public var hit: @Sendable () -> Void
        /// A request made its user's solve.
        public var miss: @Sendable () -> Void

        /// An observer calling `hit` and `miss`.
        public init(hit: @escaping @Sendable () -> Void, miss: @escaping @Sendable () -> Void) {
            self.hit = hit
            self.miss = miss
        }
    }

    private let generations = Mutex(Generations())
    private let hitCount = Atomic<Int>(0)
    private let missCount = Atomic<Int>(0)
    private let observer: Observer?
    /// Entries per generation.
    let capacity: Int
    /// The most bytes the kept solves hold.
    public let budgetBytes: Int

    /// A cache of at most `budgetBytes` of solves of `dimensions` factors each (at least two), telling `observer` of
    /// every lookup.
    public init(budgetBytes: Int, dimensions k: Int, observer: Observer? = nil) {
        self.observer = observer
        let entry = LeastSquaresFold.stateCount(dimensions: k) * MemoryLayout<Double>.stride
        capacity = max(1, budgetBytes / entry / 2)
        self.budgetBytes = 2 * capacity * entry
    }

    /// Requests that found their user's solve, and those that made it.
    public var counts: (hits: Int, misses: Int) { (hitCount.load(ordering: .relaxed), missCount.load(ordering: .relaxed)) }

    /// User row `user`'s solve: the kept one, or `make()`'s, kept (nil ones are not: made again next time). `make`
    /// runs outside the lock; two threads missing the same user at once both make it.
    public func solve(user: Int, make: () -> LeastSquaresFold.HistorySolve?) -> LeastSquaresFold.HistorySolve? {
        var dropped: [Int: LeastSquaresFold.HistorySolve] = [:]
        defer { _ = dropped }  // released after the lock, not inside it
        let hit = generations.withLock { g -> LeastSquaresFold.HistorySolve? in
            if let s = g.current[user] { return s }
            guard let s = g.previous.removeValue(forKey: user) else { return nil }
            dropped = Self.insert(s, user: user, into: &g, capacity: capacity)
            return s
        }
        if let hit {
            hitCount.add(1, ordering: .relaxed)
            observer?.hit()
            return hit
        }
        missCount.add(1, ordering: .relaxed)
        observer?.miss()
        guard let made = make() else { return nil }
        generations.withLock { g in dropped = Self.insert(made, user: user, into: &g, capacity: capacity) }
        return made
    }

    /// The users with a kept solve, the newer generation's first: whom a successor snapshot's cache is warmed for
    /// (``ModelSnapshot/warmFoldCache(from:until:)``).
    public func users() -> [Int] {
        generations.withLock { g in Array(g.current.keys) + Array(g.previous.keys) }
    }

    /// Keeps `solve` for `user` without counting a lookup, unless one is kept: in the newer generation while it has
    /// room, then in the older (a warm-up given users newest first keeps their order, and never evicts); false once
    /// both are full.
    public func warm(user: Int, solve: LeastSquaresFold.HistorySolve) -> Bool {
        generations.withLock { g in
            guard g.previous[user] == nil && g.current[user] == nil else { return true }
            if g.current.count < capacity {
                g.current[user] = solve
            } else if g.previous.count < capacity {
                g.previous[user] = solve
            } else {
                return false
            }
            return true
        }
    }

    /// Puts `s` in the newer generation, first turning a full one into the older; returns the generation dropped.
    private static func insert(
        _ s: LeastSquaresFold.HistorySolve, user: Int, into g: inout Generations, capacity: Int
    ) -> [Int: LeastSquaresFold.HistorySolve] {
        var dropped: [Int: LeastSquaresFold.HistorySolve] = [:]
        if g.current.count >= capacity {
            dropped = g.previous
            g.previous = g.current
            g.current = [:]
        }
        g.current[user] = s
        return dropped
    }
}
