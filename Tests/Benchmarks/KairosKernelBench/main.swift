// kairos-kernel-bench: the scoring kernels against the memory-bandwidth limit, in interleaved rounds.
//
// Each round runs, one after the other on this thread: the C streaming sum over the float32 matrix bytes (the
// peer), top-k over the float32, float16 and int8 encodings of the same matrix, `--gather-reps` gather calls of
// `--gather` fresh random rows each, and one xxh64 pass over a `--xxh-mb` buffer. Medians over rounds are compared
// as ratios, so machine-wide slowdowns hit peer and kernel alike. Build with -c release; see run-kernel-bench.sh.

import CKairosBenchPeer
import Glibc
import KairosKernels

@inline(never)
func blackHole<T>(_ value: T) {
    withUnsafePointer(to: value) { ckairos_bench_escape($0) }
}

func cString(_ fill: (UnsafeMutablePointer<CChar>, Int) -> Void) -> String {
    let capacity = 256
    let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
    defer { buffer.deallocate() }
    buffer.initialize(repeating: 0, count: capacity)
    fill(buffer, capacity)
    return String(cString: buffer)
}

/// The `k` best rows by a plain double-precision dot product: the independent reference the kernels are checked
/// against (outside any measurement).
func referenceTopK(_ query: UnsafeBufferPointer<Float>, values: UnsafeBufferPointer<Float>, rows: Int, k: Int)
    -> [ScoredRow]
{
    let cols = query.count
    var best: [(score: Double, row: Int)] = []
    best.reserveCapacity(k + 1)
    for r in 0..<rows {
        let rowValues = values.baseAddress! + r * cols
        var s = 0.0
        for c in 0..<cols { s += Double(query[c]) * Double(rowValues[c]) }
        if best.count == k, let last = best.last, !(s > last.score) { continue }
        var i = best.count
        while i > 0 && best[i - 1].score < s { i -= 1 }
        best.insert((s, r), at: i)
        if best.count > k { best.removeLast() }
    }
    return best.map { ScoredRow(row: Int32($0.row), score: Float($0.score)) }
}

func recall(_ found: [ScoredRow], _ expected: [ScoredRow]) -> Double {
    guard !expected.isEmpty else { return 1 }
    let want = Set(expected.map(\.row))
    return Double(found.filter { want.contains($0.row) }.count) / Double(expected.count)
}

// MARK: Options

let options: BenchOptions
do {
    options = try BenchOptions.parse(CommandLine.arguments.dropFirst())
} catch {
    if error.description.isEmpty {
        print(BenchOptions.usage)
        exit(0)
    }
    logLine("kairos-kernel-bench: \(error.description)\n\n\(BenchOptions.usage)")
    exit(2)
}

if let path = options.modelLoad {
    runModelLoadBenchmark(path: path, options: options)
}
if options.fold {
    runFoldBenchmark(options: options)
}

let kernels: ScoringKernels
if let isa = options.isa {
    guard let chosen = ScoringKernels(isa: isa) else {
        logLine(
            "kairos-kernel-bench: this CPU does not support --isa \(isa); supported: \(ScoringKernels.supportedISAs)"
        )
        exit(2)
    }
    kernels = chosen
} else {
    kernels = ScoringKernels.best
}

let rows = options.rows
let dims = options.dims
let k = options.k
let date = cString { ckairos_bench_utc_date($0, $1) }
let cpuModel = cString { ckairos_bench_cpu_model($0, $1) }
let peerISA = String(cString: ckairos_bench_stream_sum_isa())

logLine(
    "kairos-kernel-bench \(date) cpu '\(cpuModel)' kernels \(kernels.isa) (supported \(ScoringKernels.supportedISAs)) "
        + "peer \(peerISA); \(rows) x \(dims), k \(k)"
)

// MARK: Data (deterministic)

var rng = SplitMix64(seed: options.seed)
let valuesBuffer = AlignedBuffer(byteCount: rows * dims * 4)
rng.fillGaussian(valuesBuffer.floats(rows * dims), sigma: 1.0 / 8)
let values = UnsafeBufferPointer(valuesBuffer.floats(rows * dims))
let queryBuffer = AlignedBuffer(byteCount: dims * 4)
var queryRNG = SplitMix64(seed: options.seed ^ 0x5155_4552_5900)
queryRNG.fillGaussian(queryBuffer.floats(dims), sigma: 1)
let query = UnsafeBufferPointer(queryBuffer.floats(dims))

if let path = options.writeF32 {
    do {
        try RawFloatFile.write(values, to: path)
        try RawFloatFile.write(query, to: path + ".query")
    } catch {
        logLine("kairos-kernel-bench: \(error.description)")
        exit(1)
    }
    logLine("wrote \(rows) x \(dims) float32 to \(path) and the query to \(path).query")
}
if options.rounds == 0 {
    exit(0)
}

let f32 = EncodedMatrix(values, rows: rows, cols: dims, as: .float32)
let f16 = EncodedMatrix(values, rows: rows, cols: dims, as: .float16)
let i8 = EncodedMatrix(values, rows: rows, cols: dims, as: .int8)
let matrices = [f32, f16, i8]
logLine(
    "encoded: "
        + matrices.map { "\($0.encoding) \(Format.fixed(Double($0.encodeNanoseconds) / 1e6, decimals: 1)) ms" }
        .joined(separator: ", ")
)

let totalRounds = options.warmup + options.rounds
let gatherPoolCount = totalRounds * options.gatherReps * options.gatherCount
let gatherPoolBuffer = AlignedBuffer(byteCount: gatherPoolCount * 4)
let gatherPool = gatherPoolBuffer.base.bindMemory(to: Int32.self, capacity: gatherPoolCount)
for i in 0..<gatherPoolCount { gatherPool[i] = Int32(rng.next(below: rows)) }
let gatherScoresBuffer = AlignedBuffer(byteCount: options.gatherCount * 4)
let gatherScores = gatherScoresBuffer.floats(options.gatherCount)

let xxhBuffer = AlignedBuffer(byteCount: options.xxhBytes)
for i in 0..<(options.xxhBytes / 8) { xxhBuffer.base.storeBytes(of: rng.next(), toByteOffset: i * 8, as: UInt64.self) }
let xxhBytes = UnsafeRawBufferPointer(xxhBuffer.raw)

let reference = referenceTopK(query, values: values, rows: rows, k: k)

// MARK: Interleaved rounds

let f32Base = UnsafePointer(f32.rowBytes.base.assumingMemoryBound(to: Float.self))
let f32FloatCount = f32.view.rows * f32.view.rowStride / 4
var stream = Samples(name: "stream_sum_f32", unit: "ms", bytes: f32FloatCount * 4)
var scans = matrices.map { Samples(name: "topk_\($0.encoding.short)", unit: "ms", bytes: $0.scanBytes) }
var gather = Samples(name: "gather_f32", unit: "us", bytes: options.gatherCount * f32.view.rowStride)
var xxh = Samples(name: "xxh64", unit: "ms", bytes: options.xxhBytes)
var lastTopK: [[ScoredRow]] = Array(repeating: [], count: matrices.count)
var lastGatherRows = UnsafeBufferPointer<Int32>(start: gatherPool, count: options.gatherCount)
var xxhValue: UInt64 = 0

func milliseconds(_ ns: UInt64) -> String { Format.fixed(Double(ns) / 1e6, decimals: 2) + " ms" }

for round in 0..<totalRounds {
    let measured = round >= options.warmup
    var progress = "round \(round + 1)/\(totalRounds)\(measured ? "" : " (warmup)"):"

    var start = ckairos_bench_now_ns()
    let sum = ckairos_bench_stream_sum_f32(f32Base, f32FloatCount)
    var elapsed = ckairos_bench_now_ns() - start
    blackHole(sum)
    if measured { stream.append(elapsed) }
    progress += " stream \(milliseconds(elapsed))"

    for (m, matrix) in matrices.enumerated() {
        start = ckairos_bench_now_ns()
        let top = kernels.topK(query, of: matrix.view, k: k)
        elapsed = ckairos_bench_now_ns() - start
        blackHole(top)
        lastTopK[m] = top
        if measured { scans[m].append(elapsed) }
        progress += ", \(scans[m].name) \(milliseconds(elapsed))"
    }

    var gatherTotal: UInt64 = 0
    for rep in 0..<options.gatherReps {
        let rowsStart = gatherPool + (round * options.gatherReps + rep) * options.gatherCount
        let candidates = UnsafeBufferPointer(start: rowsStart, count: options.gatherCount)
        start = ckairos_bench_now_ns()
        kernels.gather(query, rows: candidates, of: f32.view, into: gatherScores)
        elapsed = ckairos_bench_now_ns() - start
        ckairos_bench_escape(gatherScores.baseAddress)
        lastGatherRows = candidates
        if measured { gather.append(elapsed) }
        gatherTotal += elapsed
    }
    progress +=
        ", gather \(Format.fixed(Double(gatherTotal) / Double(options.gatherReps) / 1e3, decimals: 1)) us (mean)"

    start = ckairos_bench_now_ns()
    xxhValue = Checksum.xxh64(xxhBytes)
    elapsed = ckairos_bench_now_ns() - start
    blackHole(xxhValue)
    if measured { xxh.append(elapsed) }

    progress += ", xxh64 \(milliseconds(elapsed))"
    logLine(progress)
}

// MARK: Checks (outside the measurements)

var problems: [String] = []
let recalls = lastTopK.map { recall($0, reference) }
if recalls[0] < 1 { problems.append("topk_f32 recall \(recalls[0]) against the double-precision reference") }
for (m, top) in lastTopK.enumerated() {
    if top.count != k { problems.append("\(scans[m].name) returned \(top.count) rows, expected \(k)") }
    for (i, row) in top.enumerated() {
        let s = kernels.dot(query, row: Int(row.row), of: matrices[m].view)
        if abs(s - row.score) > 1e-3 * (abs(s) + 1) {
            problems.append("\(scans[m].name)[\(i)] score \(row.score) but dot gives \(s)")
            break
        }
        if i > 0 && top[i - 1].score < row.score {
            problems.append("\(scans[m].name) not sorted best first at \(i)")
            break
        }
    }
}
for i in 0..<min(16, options.gatherCount) {
    let s = kernels.dot(query, row: Int(lastGatherRows[i]), of: f32.view)
    if abs(s - gatherScores[i]) > 1e-3 * (abs(s) + 1) {
        problems.append("gather[\(i)] score \(gatherScores[i]) but dot gives \(s)")
        break
    }
}
for p in problems { logLine("CHECK FAILED: \(p)") }

// MARK: Report

let ratioF32Stream = scans[0].median / stream.median
let ratioInt8F32 = scans[2].median / scans[0].median
let ratioF16F32 = scans[1].median / scans[0].median
let cases = [stream] + scans + [gather, xxh]

/// Median over rounds of `a[i] / b[i]`: both were measured back to back in round i, so a slow phase of the
/// machine hits both (informative next to the ratio of medians, which the bars use).
func pairedRatio(_ a: Samples, _ b: Samples) -> Double {
    var ratios = Samples(name: "ratio", unit: "ms", bytes: 0)
    for (x, y) in zip(a.nanoseconds, b.nanoseconds) { ratios.append(UInt64((x / y * 1e6).rounded())) }
    return ratios.median
}

if options.json {
    let fields: [(String, String)] = [
        ("tool", JSON.string("kairos-kernel-bench")),
        ("date", JSON.string(date)),
        ("cpu", JSON.string(cpuModel)),
        ("kernels_isa", JSON.string(kernels.isa.description)),
        (
            "supported_isas",
            "[" + ScoringKernels.supportedISAs.map { JSON.string($0.description) }.joined(separator: ", ") + "]"
        ),
        ("peer_isa", JSON.string(peerISA)),
        ("rows", String(rows)),
        ("dims", String(dims)),
        ("k", String(k)),
        ("rounds", String(options.rounds)),
        ("warmup", String(options.warmup)),
        ("gather_count", String(options.gatherCount)),
        ("gather_reps", String(options.gatherReps)),
        ("xxh64_bytes", String(options.xxhBytes)),
        ("seed", String(options.seed)),
        (
            "encode_ms",
            JSON.object(
                matrices.map { ($0.encoding.short, JSON.number(Double($0.encodeNanoseconds) / 1e6)) },
                indent: "  "
            )
        ),
        ("cases", JSON.object(cases.map { ($0.name, $0.json(indent: "    ")) }, indent: "  ")),
        (
            "ratios",
            JSON.object(
                [
                    ("f32_over_stream", JSON.number(ratioF32Stream)),
                    ("int8_over_f32", JSON.number(ratioInt8F32)),
                    ("f16_over_f32", JSON.number(ratioF16F32)),
                ],
                indent: "  "
            )
        ),
        (
            "paired_ratios",
            JSON.object(
                [
                    ("f32_over_stream", JSON.number(pairedRatio(scans[0], stream))),
                    ("int8_over_f32", JSON.number(pairedRatio(scans[2], scans[0]))),
                    ("f16_over_f32", JSON.number(pairedRatio(scans[1], scans[0]))),
                ],
                indent: "  "
            )
        ),
        (
            "recall_vs_reference",
            JSON.object(zip(matrices, recalls).map { ($0.encoding.short, JSON.number($1)) }, indent: "  ")
        ),
        ("topk_f32_rows", "[" + lastTopK[0].map { String($0.row) }.joined(separator: ", ") + "]"),
        ("topk_f32_scores", "[" + lastTopK[0].map { JSON.number(Double($0.score)) }.joined(separator: ", ") + "]"),
        ("reference_rows", "[" + reference.map { String($0.row) }.joined(separator: ", ") + "]"),
        ("xxh64_value", JSON.string(String(xxhValue, radix: 16))),
        ("checks_ok", problems.isEmpty ? "true" : "false"),
        ("problems", "[" + problems.map(JSON.string).joined(separator: ", ") + "]"),
        // Filled by `--model-load FILE` once the model loader exists (see ModelLoadHook.swift).
        ("model_load", "null"),
    ]
    print(JSON.object(fields))
} else {
    print("kairos-kernel-bench  \(date)")
    print("cpu: \(cpuModel)   kernels: \(kernels.isa) (supported \(ScoringKernels.supportedISAs))   peer: \(peerISA)")
    print(
        "matrix \(rows) x \(dims), k=\(k), \(options.rounds) rounds (+\(options.warmup) warmup), "
            + "gather \(options.gatherCount) rows x \(options.gatherReps) per round, "
            + "xxh64 over \(options.xxhBytes) bytes"
    )
    print("")
    print(
        Format.pad("case", 16, right: false) + Format.pad("unit", 5) + Format.pad("min", 11)
            + Format.pad("median", 11) + Format.pad("p90", 11) + Format.pad("GB/s", 9)
    )
    for c in cases {
        print(
            Format.pad(c.name, 16, right: false) + Format.pad(c.unit, 5)
                + Format.pad(Format.fixed(c.min, decimals: 3), 11)
                + Format.pad(Format.fixed(c.median, decimals: 3), 11)
                + Format.pad(Format.fixed(c.p90, decimals: 3), 11)
                + Format.pad(Format.fixed(c.gigabytesPerSecond, decimals: 1), 9)
        )
    }
    func verdict(_ ok: Bool) -> String { ok ? "PASS" : "FAIL" }
    func line(_ label: String, _ value: String, _ bar: String) {
        print(Format.pad(label, 24, right: false) + Format.pad(value, 12) + "   " + bar)
    }
    print("")
    line(
        "f32 scan / stream sum",
        Format.fixed(ratioF32Stream, decimals: 3),
        "bar <= 1.15   " + verdict(ratioF32Stream <= 1.15)
    )
    line(
        "int8 scan / f32 scan",
        Format.fixed(ratioInt8F32, decimals: 3),
        "bar <= 0.40   " + verdict(ratioInt8F32 <= 0.4)
    )
    line("f16 scan / f32 scan", Format.fixed(ratioF16F32, decimals: 3), "(reported, no bar)")
    line(
        "gather \(options.gatherCount) rows",
        Format.fixed(gather.median, decimals: 1) + " us",
        "bar <= 40 us  " + verdict(gather.median <= 40)
    )
    line(
        "xxh64 \(options.xxhBytes / 1_000_000) MB",
        Format.fixed(xxh.median, decimals: 1) + " ms",
        Format.fixed(xxh.gigabytesPerSecond, decimals: 1) + " GB/s; model load not measured (--model-load hook)"
    )
    let recallText = zip(matrices, recalls).map { "\($0.encoding.short) \(Format.fixed($1, decimals: 2))" }
    print("recall@\(k) vs reference: " + recallText.joined(separator: ", "))
    print("checks: " + (problems.isEmpty ? "ok" : problems.joined(separator: "; ")))
}
exit(problems.isEmpty ? 0 : 1)
