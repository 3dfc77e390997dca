#!/usr/bin/env bash
# Kernel benchmark of Kairos against its peers, end to end:
#   1. release build of kairos-kernel-bench;
#   2. a throwaway venv with faiss-cpu + numpy in ${TMPDIR:-/tmp}/kairos-bench-venv (reused when present);
#   3. the 1M x 64 float32 matrix and query written once (deterministic, same bytes for everybody);
#   4. RUNS times, alternating: kairos-kernel-bench --json (C stream sum + kairos kernels, interleaved rounds),
#      then kairos-kernel-bench --model-load on a ~300 MB synthetic model, then faiss_peer.py (IndexFlatIP, one thread);
#   5. a table of medians of run medians, per-run ratios, and PASS/FAIL against the bars of the kernel issue.
#
# Usage: Tests/Benchmarks/run-kernel-bench.sh
# Environment: ROWS (1000000), DIMS (64), K (10), ROUNDS (15), RUNS (3), GATHER_REPS (20), XXH_MB (300),
#   KAIROS_BENCH_OUT (result folder; default a new folder under ${TMPDIR:-/tmp}), KEEP_DATA=1 (keep the matrix
#   file), STRICT=1 (exit 1 when a bar fails).
# Run it alone: both kairos and faiss are single-threaded on purpose, and a second busy thread skews them.
set -euo pipefail

ROWS=${ROWS:-1000000}
DIMS=${DIMS:-64}
K=${K:-10}
ROUNDS=${ROUNDS:-15}
RUNS=${RUNS:-3}
GATHER_REPS=${GATHER_REPS:-20}
XXH_MB=${XXH_MB:-300}
TMP_ROOT=${TMPDIR:-/tmp}
VENV="$TMP_ROOT/kairos-bench-venv"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

echo "== build (release)"
swift build -c release --product kairos-kernel-bench
swift build -c release --product kairos
bin="$(swift build -c release --show-bin-path)"
bench="$bin/kairos-kernel-bench"

echo "== faiss venv: $VENV"
if ! "$VENV/bin/python" -c 'import faiss, numpy' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet faiss-cpu numpy
fi
"$VENV/bin/python" -c 'import faiss, numpy; print("faiss", faiss.__version__, "numpy", numpy.__version__)'

out=${KAIROS_BENCH_OUT:-$(mktemp -d "$TMP_ROOT/kairos-bench.XXXXXX")}
mkdir -p "$out"
data="$out/matrix-${ROWS}x${DIMS}.f32"
model="$out/load-test.kmodel"
cleanup() {
    if [[ "${KEEP_DATA:-0}" != 1 ]]; then rm -f "$data" "$data.query" "$model"; fi
}
trap cleanup EXIT

echo "== data: $data"
"$bench" --rows "$ROWS" --dims "$DIMS" --rounds 0 --write-f32 "$data"
echo "== model for the load bar: $model (synthetic, ~300 MB: 1M items + ${LOAD_USERS:-50000} users x 64 float32)"
"$bin/kairos" make-demo-model --out "$model" --name load-test --items 1000000 --users "${LOAD_USERS:-50000}" --dimensions 64

common=(--rows "$ROWS" --dims "$DIMS" --k "$K" --rounds "$ROUNDS" --gather-reps "$GATHER_REPS" --xxh-mb "$XXH_MB")
for run in $(seq 1 "$RUNS"); do
    echo "== run $run/$RUNS: kairos-kernel-bench (log: $out/kairos-$run.log)"
    status=0
    "$bench" "${common[@]}" --json >"$out/kairos-$run.json" 2>"$out/kairos-$run.log" || status=$?
    tail -n 1 "$out/kairos-$run.log"
    if [[ $status -ne 0 ]]; then
        echo "kairos-kernel-bench exited with $status (kernel check failures are listed in the log and the JSON)"
        [[ -s "$out/kairos-$run.json" ]] || exit "$status"
    fi
    echo "== run $run/$RUNS: model load (kairos-kernel-bench --model-load)"
    "$bench" --model-load "$model" --rounds "$ROUNDS" --json >"$out/load-$run.json"
    echo "== run $run/$RUNS: faiss_peer.py"
    OMP_NUM_THREADS=1 "$VENV/bin/python" "$here/faiss_peer.py" --data "$data" --k "$K" --rounds "$ROUNDS" \
        --threads 1 >"$out/faiss-$run.json"
    python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))["search_ms"]
print("faiss median %.3f ms, min %.3f ms" % (s["median"], s["min"]))' "$out/faiss-$run.json"
done

echo
echo "== summary (JSON and logs in $out)"
python3 - "$out" "$RUNS" <<'PY'
import json
import os
import statistics
import sys

out, runs = sys.argv[1], int(sys.argv[2])
kairos = [json.load(open(os.path.join(out, f"kairos-{i}.json"))) for i in range(1, runs + 1)]
faiss = [json.load(open(os.path.join(out, f"faiss-{i}.json"))) for i in range(1, runs + 1)]
loads = [json.load(open(os.path.join(out, f"load-{i}.json"))) for i in range(1, runs + 1)]
median = statistics.median
first, peer = kairos[0], faiss[0]


def medians(case):
    return [run["cases"][case]["median"] for run in kairos]


def fmt(values, digits):
    return " ".join(f"{v:.{digits}f}" for v in values)


rows_bytes = first["rows"] * first["dims"] * 4
print(f"date {first['date']}   cpu {first['cpu']}")
print(f"kairos kernels isa {first['kernels_isa']} (supported {', '.join(first['supported_isas'])})   "
      f"C peer {first['peer_isa']}   faiss {peer['faiss_version']} simd {peer['faiss_simd_level']} "
      f"({peer['faiss_compile_options']}), omp threads {peer['omp_threads']}, OPENBLAS_CORETYPE={peer['openblas_coretype']}")
print(f"{first['rows']} x {first['dims']}, k={first['k']}, {runs} runs x {first['rounds']} rounds "
      f"(+{first['warmup']} warmup), gather {first['gather_count']} rows x {first['gather_reps']} per round, "
      f"xxh64 over {first['xxh64_bytes'] / 1e6:.0f} MB")
print()
print(f"{'case':34}{'unit':>5}{'median':>11}{'GB/s':>8}   run medians")
table = [
    ("C stream sum f32 (bandwidth)", "stream_sum_f32", "ms", 3),
    ("kairos top-k f32", "topk_f32", "ms", 3),
    ("kairos top-k f16", "topk_f16", "ms", 3),
    ("kairos top-k int8", "topk_int8", "ms", 3),
    (f"kairos gather {first['gather_count']} of {first['rows']}", "gather_f32", "us", 1),
    (f"xxh64 {first['xxh64_bytes'] / 1e6:.0f} MB (Checksum.xxh64)", "xxh64", "ms", 2),
]
mm = {}
for label, case, unit, digits in table:
    values = medians(case)
    mm[case] = median(values)
    scale = 1e3 if unit == "ms" else 1e6
    gbs = kairos[0]["cases"][case]["bytes"] / (mm[case] / scale) / 1e9
    print(f"{label:34}{unit:>5}{mm[case]:>11.{digits}f}{gbs:>8.1f}   {fmt(values, digits)}")
faiss_values = [f["search_ms"]["median"] for f in faiss]
mm["faiss"] = median(faiss_values)
print(f"{'faiss IndexFlatIP search, 1 thread':34}{'ms':>5}{mm['faiss']:>11.3f}{rows_bytes / (mm['faiss'] / 1e3) / 1e9:>8.1f}   "
      f"{fmt(faiss_values, 3)}")

# Ratios: per run against the peer measured in the same run (kairos rounds interleave with the C stream sum;
# faiss runs right after its kairos run), then the median over runs.
per_run = {
    "f32/stream": [r["cases"]["topk_f32"]["median"] / r["cases"]["stream_sum_f32"]["median"] for r in kairos],
    "f32/faiss": [r["cases"]["topk_f32"]["median"] / f["search_ms"]["median"] for r, f in zip(kairos, faiss)],
    "int8/f32": [r["cases"]["topk_int8"]["median"] / r["cases"]["topk_f32"]["median"] for r in kairos],
    "f16/f32": [r["cases"]["topk_f16"]["median"] / r["cases"]["topk_f32"]["median"] for r in kairos],
}
ratio = {name: median(values) for name, values in per_run.items()}


def verdict(ok):
    return "PASS" if ok else "FAIL"


failed = []
print()
print(f"{'bar':40}{'value':>12}  {'limit':12}result   per run")
bars = [
    ("f32 scan / C stream sum", "f32/stream", f"{ratio['f32/stream']:.3f}x", "<= 1.15x", ratio["f32/stream"] <= 1.15),
    ("f32 scan / faiss IndexFlatIP", "f32/faiss", f"{ratio['f32/faiss']:.3f}x", "< 1.00x", ratio["f32/faiss"] < 1.0),
    ("int8 scan / f32 scan", "int8/f32", f"{ratio['int8/f32']:.3f}x", "<= 0.40x", ratio["int8/f32"] <= 0.40),
    ("f16 scan / f32 scan", "f16/f32", f"{ratio['f16/f32']:.3f}x", "(no bar)", None),
    (f"gather {first['gather_count']} random rows", None, f"{mm['gather_f32']:.1f} us", "<= 40 us", mm["gather_f32"] <= 40),
]
for label, key, value, limit, ok in bars:
    runs_text = fmt(per_run[key], 3) if key else fmt(medians("gather_f32"), 1)
    result = "info" if ok is None else verdict(ok)
    if ok is False:
        failed.append(label)
    print(f"{label:40}{value:>12}  {limit:12}{result:9}{runs_text}")
xxh_ms = mm["xxh64"]
load_values = [l["load_prefault"]["median"] for l in loads]
load_ms = median(load_values)
load_ok = load_ms < 100
if not load_ok:
    failed.append("model load")
print(f"{'model load ' + str(round(loads[0]['file_bytes'] / 1e6)) + ' MB + verify everything':40}{load_ms:>9.1f} ms  "
      f"{'< 100 ms':12}{verdict(load_ok):9}{fmt(load_values, 1)}")
print(f"{'  load / one xxh64 pass of the file':40}{median([l['load_over_xxh64'] for l in loads]):>11.2f}x  "
      f"{'(info)':12}{'info':9}{xxh_ms:.1f} ms for xxh64 of {first['xxh64_bytes'] / 1e6:.0f} MB alone")

# Sanity: the kernels found the same rows as the double-precision reference and as faiss.
print()
problems = [p for r in kairos for p in r["problems"]]
agree = [len(set(r["topk_f32_rows"]) & set(f["topk_rows"])) for r, f in zip(kairos, faiss)]
recall = {enc: median([r["recall_vs_reference"][enc] for r in kairos]) for enc in ("f32", "f16", "int8")}
print(f"top-{first['k']} f32 rows shared with faiss: {fmt(agree, 0)} of {first['k']} per run;  "
      f"recall vs double-precision reference: f32 {recall['f32']:.2f}, f16 {recall['f16']:.2f}, int8 {recall['int8']:.2f}")
print("kernel checks: " + ("ok" if not problems else "; ".join(sorted(set(problems)))))
if failed:
    print("bars failed: " + ", ".join(failed))
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump({"medians_of_medians": mm, "model_load_ms": load_values, "ratios": ratio, "per_run_ratios": per_run, "failed": failed,
               "faiss_agreement": agree, "recall": recall, "problems": problems}, f, indent=2)
sys.exit(2 if problems else (1 if failed and os.environ.get("STRICT") == "1" else 0))
PY
