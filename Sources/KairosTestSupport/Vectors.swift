import Foundation

/// Shared by the protocol and server tests: the byte vectors of proto-spec.
/// The vectors file, parsed.
public struct Vectors {
    /// One vector.
    public struct Vector: @unchecked Sendable, CustomStringConvertible {
        public var name: String
        public var kind: String
        public var requestID: UInt32
        public var message: [String: Any]
        public var bytes: [UInt8]
        public var error: String?
        public var closes: Bool
        public var description: String { name }
    }

    /// Every vector in proto-spec/vectors/protocol-vectors.json.
    public static let all: [Vector] = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Sources/KairosTestSupport/Vectors.swift
        let url = URL(fileURLWithPath: parts.joined(separator: "/") + "/proto-spec/vectors/protocol-vectors.json")
        let root = try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        return (root["vectors"] as! [[String: Any]]).map { v in
            Vector(
                name: v["name"] as! String,
                kind: v["kind"] as! String,
                requestID: UInt32(v["request_id"] as? Int ?? 0),
                message: v["message"] as? [String: Any] ?? [:],
                bytes: hexBytes(v["hex"] as! String),
                error: v["error"] as? String,
                closes: v["closes_connection"] as? Bool ?? false
            )
        }
    }()

    /// The vectors of one kind: request, response or invalid.
    public static func of(_ kind: String) -> [Vector] { all.filter { $0.kind == kind } }
}

/// Bytes of a hex string.
public func hexBytes(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = s.utf8.makeIterator()
    func nib(_ c: UInt8) -> UInt8 { c <= 57 ? c - 48 : c - 87 }
    while let a = it.next(), let b = it.next() { out.append(nib(a) << 4 | nib(b)) }
    return out
}

