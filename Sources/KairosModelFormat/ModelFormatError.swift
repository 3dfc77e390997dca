/// Why a model file could not be read or written.
public struct ModelFormatError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public enum Code: String, Hashable, Sendable {
        case io
        case truncated
        case badMagic
        case unsupportedVersion
        case badByteOrder
        case badHeader
        case badSectionTable
        case sectionOutOfBounds
        case checksumMismatch
        case badCompression
        case badSection
        case missingSection
        case countMismatch
        case goldenMismatch
        case invalidInput
    }

    /// The kind of failure.
    public var code: Code
    /// Which section it concerns (its kind name), if any.
    public var section: String?
    /// What exactly is wrong, for humans.
    public var message: String

    public init(_ code: Code, section: String? = nil, _ message: String) {
        self.code = code
        self.section = section
        self.message = message
    }

    public var description: String {
        if let section { return "ModelFormatError.\(code.rawValue): section \(section): \(message)" }
        return "ModelFormatError.\(code.rawValue): \(message)"
    }
}
