/// How the elements of one dense matrix row are stored.
public enum RowEncoding: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    /// IEEE 754 binary32, little-endian.
    case float32 = 1
    /// IEEE 754 binary16, little-endian; widened to float32 for arithmetic.
    case float16 = 2
    /// Signed 8-bit integers with one float32 scale per row: `value = Float(q) * scale`.
    case int8 = 3

    /// Bytes per element in a row.
    public var elementSize: Int {
        switch self {
        case .float32: 4
        case .float16: 2
        case .int8: 1
        }
    }

    /// Row stride in bytes for `cols` elements: rounded up to a multiple of 64 so every row is cache-line aligned.
    public func alignedStride(cols: Int) -> Int {
        (cols * elementSize + 63) & ~63
    }

    /// The encoding's name as used in logs and CLI output.
    public var description: String {
        switch self {
        case .float32: "float32"
        case .float16: "float16"
        case .int8: "int8"
        }
    }
}

/// A read-only view of a dense row-major matrix in memory (typically a read-only mmap of a model file).
///
/// The view does not own its memory: whoever creates it keeps the bytes alive for as long as the view is used.
/// Preconditions check only programmer errors; untrusted sizes are validated by the model loader before a view exists.
public struct MatrixView: @unchecked Sendable {
    /// Maximum number of columns the kernels support.
    public static let maxCols = 1024

    /// First byte of row 0.
    public let base: UnsafeRawPointer
    /// Number of rows.
    public let rows: Int
    /// Elements per row; a multiple of 4, at most ``maxCols``.
    public let cols: Int
    /// Bytes from one row to the next; at least `cols * encoding.elementSize`.
    public let rowStride: Int
    /// Element encoding.
    public let encoding: RowEncoding
    /// One scale per row for ``RowEncoding/int8``; nil otherwise.
    public let scales: UnsafePointer<Float>?

    /// Creates a view; traps on inconsistent geometry (a programmer error, not a data error).
    public init(
        base: UnsafeRawPointer,
        rows: Int,
        cols: Int,
        rowStride: Int,
        encoding: RowEncoding,
        scales: UnsafePointer<Float>? = nil
    ) {
        precondition(rows >= 0 && rows <= Int(Int32.max), "row count out of range")
        precondition(cols > 0 && cols % 4 == 0 && cols <= Self.maxCols, "cols must be a positive multiple of 4 <= 1024")
        precondition(rowStride >= cols * encoding.elementSize, "row stride shorter than a row")
        precondition((encoding == .int8) == (scales != nil), "int8 rows need scales, other encodings none")
        self.base = base
        self.rows = rows
        self.cols = cols
        self.rowStride = rowStride
        self.encoding = encoding
        self.scales = scales
    }

    /// Pointer to the first byte of `row`.
    @inlinable
    public func rowPointer(_ row: Int) -> UnsafeRawPointer {
        base + row &* rowStride
    }
}
