import Glibc
import KairosKernels
@testable import KairosModelFormat
import KairosTestSupport
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

extension FilePatcher {
    /// Index of the table entry of `kind`.
    func index(of kind: SectionKind) -> Int { index(ofKind: kind.rawValue) }

    /// (offset, stored size) of the section of `kind`.
    func range(of kind: SectionKind) -> (offset: Int, size: Int) { range(ofEntry: index(of: kind)) }
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
