import ArgumentParser
import FoundationEssentials
@testable import KairosCLI
import KairosModelFormat
import KairosTrainer
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The repository root, found from this file's path.
let repositoryRoot: String = {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/")
}()

@Suite struct InspectCommandTests {
    /// `kairos inspect FILE --json` parses into the inspect command with its file and flag.
    @Test func parsesInspectWithJSONFlag() throws {
        let command = try KairosCommand.parseAsRoot(["inspect", "models/default.kmodel", "--json"])
        let inspect = try #require(command as? Inspect)
        #expect(inspect.file == "models/default.kmodel")
        #expect(inspect.json)
    }

    /// The shipped default model verifies, is a trained one, and covers the whole synthetic catalogue.
    @Test func shippedDefaultModelIsValidAndTrained() throws {
        let report = ModelInspection.inspect(path: "\(repositoryRoot)/models/default.kmodel")
        #expect(report.isValid, "\(report.problems)")
        #expect(report.header?.modelName == "default")
        #expect(report.metadata?.algorithm == "wals-cg")
        #expect(report.counts?.items == DefaultModel.log.items && report.counts?.users == DefaultModel.log.users)
        #expect((report.counts?.golden ?? 0) > 0)
    }

    /// The committed default model is exactly what `kairos make-default-model` trains today (no drift).
    @Test func shippedDefaultModelMatchesItsRecipe() throws {
        let shipped = try readFile("\(repositoryRoot)/models/default.kmodel")
        let retrained = try ModelWriter.encode(DefaultModel.train().requireContents())
        #expect(shipped == retrained, "models/default.kmodel is stale: rebuild it with `swift run kairos make-default-model`")
    }

    /// The JSON report carries the header, every section with its checksum status, and the metadata.
    @Test func jsonReportDescribesTheFile() throws {
        let text = try InspectJSON.render(ModelInspection.inspect(path: "\(repositoryRoot)/models/default.kmodel"))
        struct Probe: Decodable {
            struct Header: Decodable { var modelName: String; var formatVersion: String }
            struct Section: Decodable { var kind: String; var codec: String; var checksumOK: Bool }
            var valid: Bool
            var header: Header
            var sections: [Section]
            var metadata: ModelMetadata
        }
        let probe = try JSONDecoder().decode(Probe.self, from: Data(text.utf8))
        #expect(probe.valid)
        // 1.1: the trainer writes item first-seen times (freshness).
        #expect(probe.header.modelName == "default" && probe.header.formatVersion == "1.1")
        #expect(probe.sections.contains { $0.kind == "item_first_seen" })
        #expect(!probe.sections.isEmpty && probe.sections.allSatisfy(\.checksumOK))
        #expect(probe.sections.contains { $0.kind == "item_factors" && $0.codec == "none" })
        #expect(probe.sections.contains { $0.kind == "item_attributes" })
        #expect(probe.metadata.algorithm == "wals-cg")
    }

    /// A creation time outside 1970...9999 prints as its number, not as a made-up date (Int64.min printed
    /// -4712-01-01); those inside print as dates, both ends included.
    @Test(arguments: [
        (Int64.min, "-9223372036854775808 (not a unix time from 1970 to 9999)"), (-1, "-1 (not a unix time from 1970 to 9999)"),
        (0, "1970-01-01T00:00:00Z"), (253_402_300_799, "9999-12-31T23:59:59Z"),
        (253_402_300_800, "253402300800 (not a unix time from 1970 to 9999)"),
    ])
    func creationTimesPrintAsDatesOnlyWhenTheyAreOne(time: Int64, text: String) {
        #expect(InspectText.isoDate(time) == text)
    }

    /// Inspecting a corrupt file exits non-zero and the text names the damaged section.
    @Test func corruptFileExitsNonZeroNamingTheSection() throws {
        var bytes = try readFile("\(repositoryRoot)/models/default.kmodel")
        let entry = 128 + 64 * 3  // item_factors is the fourth section in files this writer produces
        let offset = bytes[(entry + 8)..<(entry + 16)].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        bytes[offset + 10] ^= 0x55
        let path = "/tmp/kairos-cli-test-\(getpid()).kmodel"
        defer { unlink(path) }
        try writeFile(path, bytes)
        let report = ModelInspection.inspect(path: path)
        #expect(InspectText.render(report).contains("MISMATCH"))
        #expect(report.problems.map(\.description).joined().contains("item_factors"))
        let command = try #require(try KairosCommand.parseAsRoot(["inspect", path]) as? Inspect)
        #expect(throws: ExitCode(1)) { try command.run() }
    }
}

func readFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw CocoaError(.fileNoSuchFile) }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return out
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
    defer { close(fd) }
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
}
