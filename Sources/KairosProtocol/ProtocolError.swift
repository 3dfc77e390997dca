/// An error a request can fail with; `code` is what travels on the wire.
public struct ProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Wire error codes (u16). The table in proto-spec/PROTOCOL.md lists the same codes.
    public enum Code: UInt16, Sendable, CaseIterable {
        /// Bad magic byte: the stream is not this protocol. The connection is closed.
        case malformedFrame = 1
        /// Payload length above the server's maximum. The connection is closed.
        case frameTooLarge = 2
        /// Protocol version the server does not speak. The connection is closed.
        case unsupportedVersion = 3
        /// Opcode the server does not know.
        case unknownOpcode = 4
        /// Payload does not decode: truncated, trailing bytes, bad counts, invalid UTF-8, NaN or infinite numbers.
        case badRequest = 5
        /// A documented limit was exceeded (candidates, k, events, string length).
        case limitExceeded = 6
        /// No model of that name is loaded.
        case unknownModel = 7
        /// The user is not in the model (only where a user is required).
        case unknownUser = 8
        /// The item is not in the model (SIMILAR's query item).
        case unknownItem = 9
        /// The server is at its connection or queue limit; retry later or elsewhere.
        case overloaded = 10
        /// The server is shutting down; retry elsewhere.
        case shuttingDown = 11
        /// A bug: the server could not complete the request.
        case internalError = 12
        /// A frame the client began did not arrive whole within the server's frame timeout. The connection is closed.
        case frameTimeout = 13

        /// The name used in logs and documentation.
        public var name: String {
            switch self {
            case .malformedFrame: "MALFORMED_FRAME"
            case .frameTooLarge: "FRAME_TOO_LARGE"
            case .unsupportedVersion: "UNSUPPORTED_VERSION"
            case .unknownOpcode: "UNKNOWN_OPCODE"
            case .badRequest: "BAD_REQUEST"
            case .limitExceeded: "LIMIT_EXCEEDED"
            case .unknownModel: "UNKNOWN_MODEL"
            case .unknownUser: "UNKNOWN_USER"
            case .unknownItem: "UNKNOWN_ITEM"
            case .overloaded: "OVERLOADED"
            case .shuttingDown: "SHUTTING_DOWN"
            case .internalError: "INTERNAL_ERROR"
            case .frameTimeout: "FRAME_TIMEOUT"
            }
        }

        /// Whether the server closes the connection after sending this error (framing is lost).
        public var closesConnection: Bool {
            self == .malformedFrame || self == .frameTooLarge || self == .unsupportedVersion || self == .frameTimeout
        }
    }

    /// The wire code.
    public var code: Code
    /// Human-readable detail.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "ProtocolError.\(code.name): \(message)" }
}
