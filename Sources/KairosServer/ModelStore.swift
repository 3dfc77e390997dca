public import KairosScoring
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The models being served, by name. Readers copy a snapshot reference out under the lock and score outside it;
/// installing a model swaps one reference, so readers never wait on a load.
public final class ModelStore: Sendable {
    private let models = Mutex<[String: ModelSnapshot]>([:])

    public init() {}

    /// The snapshot serving `name` now.
    public func snapshot(_ name: String) -> ModelSnapshot? {
        models.withLock { $0[name] }
    }

    /// Every served snapshot, by name.
    public func all() -> [ModelSnapshot] {
        models.withLock { Array($0.values) }.sorted { $0.name < $1.name }
    }

    /// Serves `snapshot` under its name, replacing what served before (in-flight requests keep the old one).
    public func install(_ snapshot: ModelSnapshot) {
        let replaced = models.withLock { $0.updateValue(snapshot, forKey: snapshot.name) }
        // Released after the lock: dropping the last reference unmaps the old model (milliseconds for 100 MB), and
        // every request takes this lock to find its snapshot.
        withExtendedLifetime(replaced) {}
    }

    /// Names of the model files in `directory`: `*.kmodel`, not hidden (temp files of a publish start with a dot).
    static func modelFiles(in directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            if name.hasSuffix(".kmodel") && !name.hasPrefix(".") { names.append(name) }
        }
        return names.sorted()
    }
}
