/// Every failure the trainer reports: a code plus a human-readable context (path, line, column).
public struct TrainerError: Error, Hashable, CustomStringConvertible {
    /// What went wrong.
    public enum Code: String, Sendable, Hashable {
        /// The file could not be opened or read.
        case io
        /// The header lacks a required column, or the format cannot be recognised.
        case badHeader
        /// A row could not be parsed and `--strict` is on.
        case badRow
        /// The input holds no usable event.
        case empty
        /// A configuration value is out of range.
        case invalidConfiguration
        /// `--quality-gate` refused the model (its test evaluation was clearly worse than a check allows).
        case qualityGate
    }

    /// What went wrong.
    public var code: Code
    /// Where and why.
    public var context: String

    /// An error with its code and context.
    public init(_ code: Code, _ context: String) {
        self.code = code
        self.context = context
    }

    public var description: String { "TrainerError.\(code.rawValue): \(context)" }
}
