#!/usr/bin/env bash
# A/B of two or more `kairos` binaries on the server benchmark's SCORE and TOPK cases, in interleaved rounds (one
# server per binary, all started up front; each round measures every binary in turn), so that a change is judged
# against its base in the same machine state. run-server-bench.sh compares Kairos with Redis; this compares Kairos
# with itself.
#
# Cases per round:
#   score P1, score P16   SCORE of 100 candidates, 50 connections, unpipelined / pipeline 16, on a 100k x 64 model
#                         (ENCODING, float32) served with --threads 1: req/s and p99.
#   topk                  TOPK k=10 offered at 2,000 req/s (8 connections) while 50 closed-loop SCORE connections
#                         run, on a 100k x 64 int8 model served with default threads: p99 (a noisy number here:
#                         compare medians over many rounds).
#   fair                  PING offered at 500 req/s on one connection (open loop) while one other connection
#                         pipelines 1,024 SCOREs, on the score model and server (--threads 1, so both share
#                         one event loop): the PING's rps (500 if it keeps up), p50 and p99; how long one deep
#                         pipeline can make the others wait. Only when listed in CASES.
#   similar, similarcat   SIMILAR k=10, one closed-loop connection, on a 1M x 64 float32 model (SIMILAR_ITEMS), without
#                         and with a category filter (one of its 8 categories): p50 and p99. Only when listed in CASES.
# Usage: Tests/Benchmarks/run-server-ab.sh BIN_A BIN_B [BIN...]   (e.g. a copy of .build/release/kairos per build)
# Environment: RUNS (5), SECONDS_PER_CASE (3), CASES ("score1 score16 topk"; also "fair similar similarcat"), ENCODING
# (float32), SIMILAR_ITEMS (1000000).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [BIN...]"; exit 2; }
RUNS=${RUNS:-5}
SECS=${SECONDS_PER_CASE:-3}
CASES=${CASES:-score1 score16 topk}
bins=("$@")
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "not an executable: $b"; exit 2; }; done
out=$(mktemp -d "${TMPDIR:-/tmp}/kairos-server-ab.XXXXXX")
load=${bins[0]}  # one load generator for every case, so only the server differs
mkdir -p "$out/models" "$out/models-topk"
"$load" make-demo-model --out "$out/models/default.kmodel" --items 100000 --users 10000 --dimensions 64 \
    --encoding "${ENCODING:-float32}" >/dev/null
"$load" make-demo-model --out "$out/models-topk/default.kmodel" --items 100000 --users 10000 --dimensions 64 \
    --encoding int8 >/dev/null
similar_items=${SIMILAR_ITEMS:-1000000}
case " $CASES " in *" similar"*)
    mkdir -p "$out/models-similar"
    "$load" make-demo-model --out "$out/models-similar/default.kmodel" --items "$similar_items" --users 10000 \
        --dimensions 64 >/dev/null ;;
esac

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for i in "${!bins[@]}"; do
    "${bins[$i]}" serve --models "$out/models" --port $((7900 + i)) --threads 1 --log-level warning >"$out/score-$i.log" 2>&1 &
    pids+=($!)
    "${bins[$i]}" serve --models "$out/models-topk" --port $((7950 + i)) --log-level warning >"$out/topk-$i.log" 2>&1 &
    pids+=($!)
    if [ -d "$out/models-similar" ]; then
        "${bins[$i]}" serve --models "$out/models-similar" --port $((7850 + i)) --log-level warning >"$out/similar-$i.log" 2>&1 &
        pids+=($!)
    fi
done
for i in "${!bins[@]}"; do
    for _ in $(seq 1 100); do
        grep -q listening "$out/score-$i.log" 2>/dev/null && grep -q listening "$out/topk-$i.log" 2>/dev/null \
            && { [ ! -d "$out/models-similar" ] || grep -q listening "$out/similar-$i.log" 2>/dev/null; } && break
        sleep 0.2
    done
done
# The servers build their scan bounds a second after a model starts serving, in the background: let that finish.
[ -d "$out/models-similar" ] && sleep 5

kb() { "$load" bench --port "$1" --threads 1 --duration "$SECS" --json --items 100000 --users 10000 "${@:2}"; }
for run in $(seq 1 "$RUNS"); do
    echo "== run $run/$RUNS"
    for c in $CASES; do
        for i in "${!bins[@]}"; do
            case $c in
            score1) kb $((7900 + i)) --op score --candidates 100 --connections 50 >"$out/$c-$i-$run.json" ;;
            score16) kb $((7900 + i)) --op score --candidates 100 --connections 50 --pipeline 16 >"$out/$c-$i-$run.json" ;;
            topk)
                kb $((7950 + i)) --op score --candidates 100 --connections 50 >"$out/topk-bg-$i-$run.json" &
                bg=$!
                kb $((7950 + i)) --op topk --k 10 --connections 8 --rate 2000 >"$out/$c-$i-$run.json"
                wait $bg
                ;;
            fair)
                kb $((7900 + i)) --op score --candidates 100 --connections 1 --pipeline 1024 --duration $((SECS + 1)) \
                    >"$out/fair-bulk-$i-$run.json" &
                bg=$!
                sleep 0.5
                kb $((7900 + i)) --op ping --connections 1 --rate 500 >"$out/$c-$i-$run.json"
                wait $bg
                ;;
            similar) "$load" bench --port $((7850 + i)) --duration "$SECS" --json --items "$similar_items" --users 10000 \
                --op similar --k 10 --connections 1 >"$out/$c-$i-$run.json" ;;
            similarcat) "$load" bench --port $((7850 + i)) --duration "$SECS" --json --items "$similar_items" --users 10000 \
                --op similar --k 10 --connections 1 --category "category-$((run % 8))" >"$out/$c-$i-$run.json" ;;
            *) echo "unknown case $c"; exit 2 ;;
            esac
        done
    done
done

python3 - "$out" "$RUNS" "$CASES" "${bins[@]}" <<'PY'
import json, os, statistics, sys
out, runs, cases, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:]
med = statistics.median
print(f"{'case':12}{'binary':44}{'median rps':>12}{'median p99 us':>15}  per-run p99 us (similar, fair: and median p50)")
for c in cases:
    base = None
    for i, b in enumerate(bins):
        rows = [json.load(open(os.path.join(out, f"{c}-{i}-{r}.json"))) for r in range(1, runs + 1)]
        rps = med([r["throughput_rps"] for r in rows])
        p99s = [r["latency_us"]["p99"] for r in rows]
        errors = sum(r["errors"] for r in rows)
        base = base or rps
        print(f"{c:12}{b[-44:]:44}{rps:>12.0f}{med(p99s):>15.0f}  " + " ".join(f"{x:.0f}" for x in p99s)
              + (f"  ({rps / base:.3f}x of the first)" if c != "topk" else "") + (f"  errors {errors}" if errors else "")
              + (f"  p50 {med([r['latency_us']['p50'] for r in rows]):.0f} us" if c.startswith("similar") or c == "fair" else "")
              + (f"  (pipelining SCORE connection: {med([json.load(open(os.path.join(out, f'fair-bulk-{i}-{r}.json')))['throughput_rps'] for r in range(1, runs + 1)]):.0f} rps)" if c == "fair" else ""))
print(f"(results in {out})")
PY
