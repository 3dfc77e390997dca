public import ArgumentParser
import FoundationEssentials
import KairosModelFormat

#if canImport(Glibc)
import Glibc
#endif

/// `kairos inspect FILE`: prints a model file's header, sections and metadata; exits non-zero if it is not valid.
public struct Inspect: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Verify a model file and print its header, sections and metadata."
    )

    @Argument(help: "The model file (.kmodel).")
    var file: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    public init() {}

    public func run() throws {
        let report = ModelInspection.inspect(path: file)
        if json {
            print(try InspectJSON.render(report))
        } else {
            print(InspectText.render(report))
        }
        if !report.isValid {
            for p in report.problems { FileHandleStderr.write("kairos inspect: \(file): \(p)\n") }
            throw ExitCode(1)
        }
    }
}

/// Writes to standard error without Foundation's FileHandle.
enum FileHandleStderr {
    static func write(_ s: String) {
        var s = s
        s.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

/// Text rendering of an inspection.
enum InspectText {
    static func render(_ r: ModelInspection) -> String {
        var out = "file        \(r.path) (\(r.fileSize) bytes)\n"
        if let h = r.header {
            out += "model       \(h.modelName) version \(h.modelVersion)\n"
            out += "format      \(h.majorVersion).\(h.minorVersion), little-endian, created \(isoDate(h.createdAt))\n"
            out += "sections    \(h.sectionCount)\n"
        }
        if !r.sections.isEmpty {
            out += "\n" + pad("kind", 16) + pad("encoding", 9) + pad("codec", 6) + lpad("offset", 11) + lpad("stored", 12)
                + lpad("raw", 12) + lpad("rows", 10) + lpad("cols", 6) + "  checksum\n"
            for s in r.sections {
                let e = s.entry
                out += pad(e.kindName, 16) + pad(e.encoding?.description ?? "\(e.encodingRaw)", 9)
                    + pad(e.codec?.description ?? "\(e.codecRaw)", 6) + lpad("\(e.offset)", 11) + lpad("\(e.storedSize)", 12)
                    + lpad("\(e.rawSize)", 12) + lpad("\(e.rows)", 10) + lpad("\(e.cols)", 6)
                    + "  " + (s.checksumOK ? "ok" : "MISMATCH") + "\n"
            }
        }
        if let c = r.counts {
            out += "\nitems \(c.items), users \(c.users), dimensions \(c.dimensions), golden triples \(c.golden) (verified)\n"
        }
        if let m = r.metadata, let text = try? String(decoding: prettyJSON(m), as: UTF8.self) {
            out += "\nmetadata\n\(text)\n"
        }
        out += r.isValid ? "\nstatus      valid\n" : "\nstatus      INVALID\n" + r.problems.map { "  \($0)\n" }.joined()
        return out
    }

    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
    static func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }

    /// `t` as an ISO-8601 UTC time; outside 1970...9999 (a hostile or damaged header: Int64.min once printed as
    /// -4712-01-01) the number itself.
    static func isoDate(_ t: Int64) -> String {
        guard (0...253_402_300_799).contains(t) else { return "\(t) (not a unix time from 1970 to 9999)" }
        return Date(timeIntervalSince1970: TimeInterval(t)).formatted(.iso8601)
    }
}

func prettyJSON(_ value: some Encodable) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    return try encoder.encode(value)
}

/// JSON rendering of an inspection (the same facts as the text form).
struct InspectJSON: Encodable {
    struct Header: Encodable {
        var modelName: String
        var modelVersion: UInt64
        var formatVersion: String
        var byteOrder = "little-endian"
        var createdAt: Int64
        var sectionCount: Int
    }
    struct Section: Encodable {
        var kind: String
        var encoding: String
        var codec: String
        var offset: Int
        var storedSize: Int
        var rawSize: Int
        var rows: Int
        var cols: Int
        var rowStride: Int
        var param: Int64
        var checksum: String
        var checksumOK: Bool
    }
    struct Counts: Encodable {
        var items: Int
        var users: Int
        var dimensions: Int
        var golden: Int
    }

    var path: String
    var fileSize: Int
    var valid: Bool
    var header: Header?
    var sections: [Section]
    var counts: Counts?
    var metadata: ModelMetadata?
    var problems: [String]

    static func render(_ r: ModelInspection) throws -> String {
        let value = InspectJSON(
            path: r.path,
            fileSize: r.fileSize,
            valid: r.isValid,
            header: r.header.map {
                Header(
                    modelName: $0.modelName,
                    modelVersion: $0.modelVersion,
                    formatVersion: "\($0.majorVersion).\($0.minorVersion)",
                    createdAt: $0.createdAt,
                    sectionCount: $0.sectionCount
                )
            },
            sections: r.sections.map { s in
                let e = s.entry
                let sum = String(e.checksum, radix: 16)
                return Section(
                    kind: e.kindName,
                    encoding: e.encoding?.description ?? "\(e.encodingRaw)",
                    codec: e.codec?.description ?? "\(e.codecRaw)",
                    offset: e.offset,
                    storedSize: e.storedSize,
                    rawSize: e.rawSize,
                    rows: e.rows,
                    cols: e.cols,
                    rowStride: e.rowStride,
                    param: e.param,
                    checksum: String(repeating: "0", count: 16 - sum.count) + sum,
                    checksumOK: s.checksumOK
                )
            },
            counts: r.counts.map { Counts(items: $0.items, users: $0.users, dimensions: $0.dimensions, golden: $0.golden) },
            metadata: r.metadata,
            problems: r.problems.map(\.description)
        )
        return String(decoding: try prettyJSON(value), as: UTF8.self)
    }
}
