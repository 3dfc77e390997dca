/// The weighted-ALS user solution from its definition, for checking ``LeastSquaresFold``: full matrices in double
/// precision, solved by Gaussian elimination with partial pivoting (no Cholesky, no float partial sums).
public enum ReferenceSolve {
    /// `x` solving `(sum_i (1 + alpha r_i) y_i y_i' + lambda I) x = sum_{r_i > 0} (1 + alpha r_i) y_i` over all
    /// `items` rows of `k` floats in `y`; `r(i)` is item i's confidence weight (0 = not observed).
    public static func userSolution(y: [Float], items: Int, k: Int, alpha: Double, lambda: Double, r: (Int) -> Double) -> [Double] {
        var a = [[Double]](repeating: [Double](repeating: 0, count: k + 1), count: k)
        for i in 0..<items {
            let ri = r(i)
            for p in 0..<k {
                for q in 0..<k { a[p][q] += (1 + alpha * ri) * Double(y[i * k + p]) * Double(y[i * k + q]) }
                if ri > 0 { a[p][k] += (1 + alpha * ri) * Double(y[i * k + p]) }
            }
        }
        for p in 0..<k { a[p][p] += lambda }
        for col in 0..<k {
            let pivot = (col..<k).max { abs(a[$0][col]) < abs(a[$1][col]) }!
            a.swapAt(col, pivot)
            for row in 0..<k where row != col {
                let f = a[row][col] / a[col][col]
                for q in col...k { a[row][q] -= f * a[col][q] }
            }
        }
        return (0..<k).map { a[$0][k] / a[$0][$0] }
    }
}
