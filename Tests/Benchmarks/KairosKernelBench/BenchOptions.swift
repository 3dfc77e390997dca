import Glibc
import KairosKernels

/// Command-line options of `kairos-kernel-bench`, parsed by hand (this target has no ArgumentParser).
struct BenchOptions {
    var rows = 1_000_000
    var dims = 64
    var k = 10
    var rounds = 15
    var warmup = 1
    var gatherCount = 1000
    var gatherReps = 20
    var xxhBytes = 300_000_000
    var seed: UInt64 = 0x4B41_4952_4F53  // "KAIROS"
    var json = false
    var writeF32: String? = nil
    /// Model file for the model-load benchmark (open + verify everything), instead of the kernel rounds.
    var modelLoad: String? = nil
    /// Time the least-squares real-time fold instead of the kernel rounds.
    var fold = false
    /// Run the kernels at this ISA instead of ``ScoringKernels/best``.
    var isa: KernelISA? = nil

    static let usage = """
        usage: kairos-kernel-bench [options]

        Full-scan top-k, gather and checksum kernels against a C streaming-sum peer, interleaved rounds, release build.

          --rows N            matrix rows (default 1000000)
          --dims N            matrix columns, a multiple of 4 <= 1024 (default 64)
          --k N               top-k size (default 10)
          --rounds N          measured rounds (default 15); 0 = only generate data (with --write-f32)
          --warmup N          unmeasured rounds first (default 1)
          --gather N          candidates per gather call (default 1000)
          --gather-reps N     gather calls per round, each on fresh random rows (default 20)
          --xxh-mb N          xxh64 buffer size in MB of 10^6 bytes (default 300)
          --seed N            PRNG seed (default fixed)
          --isa NAME          portable | avx2 | avx512 (default: ScoringKernels.best)
          --json              machine-readable output on stdout (progress goes to stderr)
          --write-f32 PATH    write the float32 matrix as raw little-endian row-major floats without padding to PATH
                              and the query to PATH.query (for faiss_peer.py)
          --model-load FILE   time loading FILE as a served model (map + verify everything), vs one xxh64 pass
          --fold              time the least-squares real-time fold per request (histories of 10, 100, 1000 items)
                              against the additive fold, and the Gram of --rows rows
          -h, --help          this text
        """

    static func parse(_ arguments: some Sequence<String>) throws(BenchError) -> BenchOptions {
        var options = BenchOptions()
        var iterator = arguments.makeIterator()
        func value(_ flag: String) throws(BenchError) -> String {
            guard let v = iterator.next() else { throw BenchError(description: "\(flag) needs a value") }
            return v
        }
        func int(_ flag: String, min: Int) throws(BenchError) -> Int {
            let text = try value(flag)
            guard let n = Int(text.filter { $0 != "_" }), n >= min else {
                throw BenchError(description: "\(flag) needs an integer >= \(min), got '\(text)'")
            }
            return n
        }
        while let argument = iterator.next() {
            switch argument {
            case "--rows": options.rows = try int(argument, min: 1)
            case "--dims": options.dims = try int(argument, min: 4)
            case "--k": options.k = try int(argument, min: 1)
            case "--rounds": options.rounds = try int(argument, min: 0)
            case "--warmup": options.warmup = try int(argument, min: 0)
            case "--gather": options.gatherCount = try int(argument, min: 1)
            case "--gather-reps": options.gatherReps = try int(argument, min: 1)
            case "--xxh-mb": options.xxhBytes = try int(argument, min: 1) * 1_000_000
            case "--seed": options.seed = UInt64(try int(argument, min: 0))
            case "--json": options.json = true
            case "--write-f32": options.writeF32 = try value(argument)
            case "--model-load": options.modelLoad = try value(argument)
            case "--fold": options.fold = true
            case "--isa":
                let name = try value(argument)
                guard let isa = KernelISA.allCases.first(where: { $0.description == name }) else {
                    throw BenchError(description: "--isa must be one of portable, avx2, avx512; got '\(name)'")
                }
                options.isa = isa
            case "-h", "--help": throw BenchError(description: "")
            default: throw BenchError(description: "unknown argument '\(argument)'")
            }
        }
        guard options.dims % 4 == 0 && options.dims <= MatrixView.maxCols else {
            throw BenchError(description: "--dims must be a multiple of 4 <= \(MatrixView.maxCols)")
        }
        guard options.rows <= Int(Int32.max) else { throw BenchError(description: "--rows too large") }
        guard options.k <= min(ScoringKernels.maxK, options.rows) else {
            throw BenchError(description: "--k must be <= min(\(ScoringKernels.maxK), rows)")
        }
        return options
    }
}

/// A usage or I/O error of the benchmark tool; its description is printed as is.
struct BenchError: Error, CustomStringConvertible {
    var description: String
}

/// Writes one line to standard error (unbuffered, and without touching the C `stderr` global, which Swift 6
/// rejects as shared mutable state).
func logLine(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let n = write(2, bytes.baseAddress! + offset, bytes.count - offset)
            if n <= 0 { return }
            offset += n
        }
    }
}
