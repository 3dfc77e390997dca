import CKairosBenchPeer
import Glibc
import KairosKernels
import KairosModelFormat

/// `--model-load FILE`: time opening FILE as a served model (map, verify header/table/every section checksum,
/// decompress, validate counts, re-score golden triples), page cache warm, interleaved with its peer: one xxh64 pass
/// over the same bytes of an already-mapped copy (the floor any verifying loader pays). Bar: under 100 ms for 300 MB.
func runModelLoadBenchmark(path: String, options: BenchOptions) -> Never {
    // Warm the page cache (and fail early on a bad file).
    let first: MappedModel
    do {
        first = try MappedModel(path: path, options: LoadOptions(prefault: true, verifyGolden: true))
    } catch {
        logLine("kairos-kernel-bench: --model-load \(path): \(error)")
        exit(2)
    }
    let fileSize = first.header.fileSize
    let summary = "\(first.header.modelName) v\(first.header.modelVersion): \(first.itemCount) items, "
        + "\(first.userCount) users, \(first.dimensions) dims \(first.itemFactors.encoding), \(fileSize) bytes"

    // The peer reads the bytes through its own long-lived mapping, so it pays no mmap or page-fault cost.
    let fd = open(path, O_RDONLY)
    let peerBase = mmap(nil, fileSize, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0)!
    close(fd)
    let peerBytes = UnsafeRawBufferPointer(start: UnsafeRawPointer(peerBase), count: fileSize)

    var loadPopulate = Samples(name: "load+verify", unit: "ms", bytes: fileSize)
    var loadLazy = Samples(name: "load (no prefault)", unit: "ms", bytes: fileSize)
    var loadCopied = Samples(name: "load (copied)", unit: "ms", bytes: fileSize)
    var peer = Samples(name: "xxh64 of file", unit: "ms", bytes: fileSize)
    for round in 0..<(options.warmup + options.rounds) {
        var t = ckairos_bench_now_ns()
        var model = try? MappedModel(path: path, options: LoadOptions(prefault: true, verifyGolden: true))
        let populated = ckairos_bench_now_ns() - t
        blackHole(model?.itemCount)
        model = nil  // unmapped outside the timed region: a server releases the old model after the swap

        t = ckairos_bench_now_ns()
        model = try? MappedModel(path: path, options: LoadOptions(prefault: false, verifyGolden: true))
        let lazy = ckairos_bench_now_ns() - t
        blackHole(model?.itemCount)
        model = nil

        // What `kairos serve --load copy` (the default) does: read the file into private memory, then verify.
        t = ckairos_bench_now_ns()
        model = try? MappedModel(path: path, options: LoadOptions(storage: .copied, prefault: true, verifyGolden: true))
        let copied = ckairos_bench_now_ns() - t
        blackHole(model?.itemCount)
        model = nil

        t = ckairos_bench_now_ns()
        let sum = Checksum.xxh64(peerBytes)
        let hashed = ckairos_bench_now_ns() - t
        blackHole(sum)
        if round >= options.warmup {
            loadPopulate.append(populated)
            loadLazy.append(lazy)
            loadCopied.append(copied)
            peer.append(hashed)
        }
    }
    munmap(peerBase, fileSize)
    let cases = [loadPopulate, loadLazy, loadCopied, peer]
    if options.json {
        let fields: [(String, String)] = [
            ("file", JSON.string(path)),
            ("model", JSON.string(summary)),
            ("file_bytes", String(fileSize)),
            ("rounds", String(options.rounds)),
            ("load_prefault", loadPopulate.json(indent: "  ")),
            ("load_lazy", loadLazy.json(indent: "  ")),
            ("load_copied", loadCopied.json(indent: "  ")),
            ("xxh64_file", peer.json(indent: "  ")),
            ("load_over_xxh64", JSON.number(loadPopulate.median / peer.median)),
        ]
        print(JSON.object(fields))
    } else {
        print("model load: \(path)\n\(summary)\n")
        for c in cases {
            print(
                Format.pad(c.name, 20, right: false) + Format.pad(c.unit, 5)
                    + Format.pad(Format.fixed(c.min, decimals: 2), 10) + Format.pad(Format.fixed(c.median, decimals: 2), 10)
                    + Format.pad(Format.fixed(c.p90, decimals: 2), 10) + Format.pad(Format.fixed(c.gigabytesPerSecond, decimals: 1), 8)
            )
        }
        let verdict = loadPopulate.median < 100 ? "PASS" : "FAIL"
        print("\nload+verify median \(Format.fixed(loadPopulate.median, decimals: 1)) ms (bar < 100 ms: \(verdict)), "
            + "\(Format.fixed(loadPopulate.median / peer.median, decimals: 2))x one xxh64 pass")
    }
    exit(0)
}
