import Glibc

/// HOOK for `--model-load FILE`, the fourth bar of the kernel issue: loading a 300 MB model with the page cache warm
/// and verifying all of its checksums must take under 100 ms.
///
/// The model loader (`KairosModelFormat`) does not exist yet, so this only says so and exits with status 3. When it
/// lands, this function should: read FILE once (to warm the page cache), then for `options.warmup + options.rounds`
/// rounds time "open/map FILE + verify every checksum + close" as one sample, interleaved with a
/// `Checksum.xxh64` pass over the same number of bytes (the peer), and report min/median/p90 in ms, the ratio
/// load / xxh64, and PASS/FAIL against 100 ms (the `model_load` key of the JSON report, null until then).
func runModelLoadBenchmark(path: String, options: BenchOptions) -> Never {
    logLine("kairos-kernel-bench: --model-load \(path): not implemented yet (no model loader); see ModelLoadHook.swift")
    exit(3)
}
