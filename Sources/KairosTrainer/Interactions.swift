package import KairosModelFormat

/// A sparse matrix in compressed-row form (rows are users or items, columns the other side).
package struct SparseMatrix: Sendable {
    /// Number of rows.
    package var rows: Int
    /// Number of columns.
    package var cols: Int
    /// `rows + 1` offsets into ``indices`` and ``values``.
    package var indptr: [Int]
    /// Column of each entry, ascending within a row.
    package var indices: [Int32]
    /// Value of each entry.
    package var values: [Float]

    /// Number of stored entries.
    package var nonZeros: Int { indices.count }

    /// The transpose, columns becoming rows (entries stay sorted).
    package func transposed() -> SparseMatrix {
        var count = [Int](repeating: 0, count: cols + 1)
        for j in indices { count[Int(j) + 1] += 1 }
        for c in 0..<cols { count[c + 1] += count[c] }
        var fill = count
        var ti = [Int32](repeating: 0, count: nonZeros)
        var tv = [Float](repeating: 0, count: nonZeros)
        for r in 0..<rows {
            for e in indptr[r]..<indptr[r + 1] {
                let c = Int(indices[e])
                ti[fill[c]] = Int32(r)
                tv[fill[c]] = values[e]
                fill[c] += 1
            }
        }
        return SparseMatrix(rows: cols, cols: rows, indptr: count, indices: ti, values: tv)
    }
}

/// Builds the user x item matrix `r`: each user's strength-weighted, time-decayed sum of events per item.
package enum Interactions {
    /// `r[u][i] = sum over u's events on i of strength * decay(reference - time)`, optionally scaled so each
    /// user's non-zero values average 1.
    ///
    /// Per-user normalisation is what keeps `alpha` and the regularization meaningful whatever the decay: a long
    /// decay leaves confidences near their raw size, a short one shrinks old users' values towards 0, and without
    /// rescaling the same `alpha` means a different model under every decay setting.
    package static func matrix(
        _ log: EventLog,
        decay: DecaySpec,
        reference: Int64,
        normalizePerUser: Bool
    ) -> SparseMatrix {
        let nUsers = log.userIds.count
        let nItems = log.itemIds.count
        var acc = [Float](repeating: 0, count: nItems)
        var touched: [Int32] = []
        var indptr = [Int](repeating: 0, count: nUsers + 1)
        var indices: [Int32] = []
        var values: [Float] = []
        indices.reserveCapacity(log.count)
        values.reserveCapacity(log.count)
        // Events are grouped by user after ingest (sortAndDeduplicate), but do not rely on it: find each user's runs.
        var byUser = [[Int]](repeating: [], count: 0)
        let grouped = zip(log.users, log.users.dropFirst()).allSatisfy { $0 <= $1 }
        if !grouped {
            byUser = Array(repeating: [], count: nUsers)
            for e in 0..<log.count { byUser[Int(log.users[e])].append(e) }
        }
        let cache = DecayCache(decay: decay, reference: reference)
        var e = 0
        for u in 0..<nUsers {
            touched.removeAll(keepingCapacity: true)
            func add(_ e: Int) {
                let i = Int(log.items[e])
                let w = Float(cache.weight(log.times[e])) * log.strengths[e]
                if acc[i] == 0 && w > 0 { touched.append(Int32(i)) }
                acc[i] += w
            }
            if grouped {
                while e < log.count, Int(log.users[e]) == u {
                    add(e)
                    e += 1
                }
            } else {
                for e in byUser[u] { add(e) }
            }
            touched.sort()
            var sum: Float = 0
            for i in touched { sum += acc[Int(i)] }
            let scale: Float = normalizePerUser && sum > 0 ? Float(touched.count) / sum : 1
            for i in touched {
                let v = acc[Int(i)] * scale
                if v > 0 && v.isFinite {
                    indices.append(i)
                    values.append(v)
                }
                acc[Int(i)] = 0
            }
            indptr[u + 1] = indices.count
        }
        return SparseMatrix(rows: nUsers, cols: nItems, indptr: indptr, indices: indices, values: values)
    }
}

/// A decay bound to its reference time: the weight of an event from its unix time.
package struct DecayCache: Sendable {
    let decay: DecaySpec
    let reference: Int64

    /// Binds `decay` to `reference` (unix seconds).
    package init(decay: DecaySpec, reference: Int64) {
        self.decay = decay
        self.reference = reference
    }

    @inline(__always)
    package func weight(_ time: Int64) -> Double {
        decay.form == .none ? 1 : decay.weight(ageSeconds: Double(reference - time))
    }
}
