import Glibc
import KairosKernels
@testable import KairosModelFormat
import Testing

/// A fresh temporary folder, removed with its files at deinit.
final class TempFolder {
    let path: String

    init() {
        var template = Array("/tmp/kairos-test-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit {
        for name in files() { unlink("\(path)/\(name)") }
        rmdir(path)
    }

    /// Names of the files in the folder (hidden ones included).
    func files() -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Writes raw bytes to `name` in the folder (non-atomically: fixtures for corrupt files) and returns its path.
    @discardableResult
    func write(_ bytes: [UInt8], to name: String) -> String {
        let p = "\(path)/\(name)"
        let fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0)
        bytes.withUnsafeBytes { _ = Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        return p
    }
}

/// A small synthetic model for tests.
func smallContents(encoding: RowEncoding = .float32, items: Int = 300, users: Int = 40, dims: Int = 12) -> ModelContents {
    SyntheticModel.make(name: "test-model", version: 7, items: items, users: users, dimensions: dims, encoding: encoding, seed: 9)
}

/// Edits a valid file's bytes and re-seals every checksum, so a test reaches the check *behind* the checksums.
struct FilePatcher {
    var bytes: [UInt8]

    var sectionCount: Int { Int(read(UInt32.self, at: 20)) }

    func read<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    mutating func write<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { v in
            for (i, b) in v.enumerated() { bytes[offset + i] = b }
        }
    }

    /// Byte offset of table entry `i`.
    func entryOffset(_ i: Int) -> Int { 128 + 64 * i }

    /// Index of the table entry of `kind`.
    func index(of kind: SectionKind) -> Int {
        (0..<sectionCount).first { read(UInt32.self, at: entryOffset($0)) == kind.rawValue }!
    }

    /// (offset, stored size) of the section of `kind`.
    func range(of kind: SectionKind) -> (offset: Int, size: Int) {
        let e = entryOffset(index(of: kind))
        return (Int(read(UInt64.self, at: e + 8)), Int(read(UInt64.self, at: e + 16)))
    }

    /// Recomputes every section checksum, the table checksum and the header checksum.
    mutating func reseal() {
        for i in 0..<min(sectionCount, 64) {
            let e = entryOffset(i)
            let off = read(UInt64.self, at: e + 8)
            let size = read(UInt64.self, at: e + 16)
            if off <= UInt64(bytes.count), size <= UInt64(bytes.count) - off {
                let (off, size) = (Int(off), Int(size))
                write(bytes[off..<(off + size)].withUnsafeBytes { Checksum.xxh64($0) }, at: e + 56)
            }
        }
        let tableEnd = 128 + 64 * min(sectionCount, 64)
        write(bytes[128..<min(tableEnd, bytes.count)].withUnsafeBytes { Checksum.xxh64($0) }, at: 56)
        write(bytes[0..<120].withUnsafeBytes { Checksum.xxh64($0) }, at: 120)
    }
}

/// Opens `bytes` as a model file and returns the error it fails with (nil if it loads).
func loadError(_ bytes: [UInt8], in folder: TempFolder, name: String = "m.kmodel") -> ModelFormatError? {
    let path = folder.write(bytes, to: name)
    do {
        _ = try MappedModel(path: path)
        return nil
    } catch {
        return error
    }
}
