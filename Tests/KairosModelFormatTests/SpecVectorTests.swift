import KairosKernels
@testable import KairosModelFormat
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `proto-spec/vectors/model-tiny.kmodel.hex`, decoded.
func specExampleBytes() throws -> [UInt8] {
    var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    let path = parts.joined(separator: "/") + "/proto-spec/vectors/model-tiny.kmodel.hex"
    let fd = open(path, O_RDONLY)
    try #require(fd >= 0, "cannot open \(path)")
    defer { close(fd) }
    var text: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while case let n = chunk.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }), n > 0 { text += chunk[0..<n] }
    let digits = text.filter { $0 != UInt8(ascii: "\n") }
    func nibble(_ c: UInt8) -> UInt8 { c <= UInt8(ascii: "9") ? c - UInt8(ascii: "0") : c - UInt8(ascii: "a") + 10 }
    return stride(from: 0, to: digits.count, by: 2).map { nibble(digits[$0]) << 4 | nibble(digits[$0 + 1]) }
}

@Suite struct SpecVectorTests {
    /// The example in MODEL_FORMAT.md loads and holds exactly the values the document states.
    @Test func specExampleLoadsWithTheDocumentedValues() throws {
        let bytes = try specExampleBytes()
        #expect(bytes.count == 768)
        let folder = TempFolder()
        let m = try MappedModel(path: folder.write(bytes, to: "tiny.kmodel"))
        #expect(m.header.modelName == "tiny" && m.header.modelVersion == 1 && m.header.createdAt == 1_767_225_600)
        #expect(m.sections.map(\.kind) == [.metadata, .itemIds, .itemIdIndex, .itemFactors])
        #expect(m.items.row(of: "a") == 0 && m.items.row(of: "b") == 1 && m.items.row(of: "c") == nil)
        #expect(RowEncoder.decodeRow(0, of: m.itemFactors) == [1, 2, 3, 4])
        #expect(RowEncoder.decodeRow(1, of: m.itemFactors) == [0.5, -1, 0, 2])
        #expect(m.metadata.generator == "spec example" && m.metadata.decay.form == .none)
        #expect(m.users == nil && m.golden.isEmpty)
    }

    /// The writer still produces the documented bytes: a change here is a format change and needs a spec update.
    @Test func writerReproducesTheSpecExample() throws {
        let c = ModelContents(
            name: "tiny",
            version: 1,
            createdAt: 1_767_225_600,
            metadata: ModelMetadata(generator: "spec example", algorithm: "none"),
            itemIds: ["a", "b"],
            itemFactors: FactorMatrix(rows: 2, cols: 4, values: [1, 2, 3, 4, 0.5, -1, 0, 2])
        )
        #expect(try ModelWriter.encode(c, compress: false) == specExampleBytes())
    }
}
