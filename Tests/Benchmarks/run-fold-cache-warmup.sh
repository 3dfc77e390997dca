#!/usr/bin/env bash
# What a model swap costs the requests right after it, with and without warming the new snapshot's fold cache: one
# ml-100k model (least-squares real-time fold) trained as versions 1..RUNS+1 (same seed, so the same factors), served
# by two `kairos serve --threads 1`, one with the default warm-up and one with `--fold-cache-warm-ms 0`. Each round
# fills both servers' caches (SCOREs with events over all 943 users), publishes the next version to both, waits
# until both serve it, then measures each server's first WINDOW seconds of SCOREs (100 candidates, EVENTS events,
# DISTINCT distinct requests) after the swap; the order of the two servers alternates from round to round. Prints
# median p50 / p90 / p99 / rps over the rounds, their ratios, and each server's swap time from its log (`load_ms`:
# verify, derive, warm).
#
# Usage: Tests/Benchmarks/run-fold-cache-warmup.sh [DATA_DIR=/tmp/kairos-data]
# Environment: RUNS (5), WINDOW (0.4 s), EVENTS (4), DISTINCT (4096).
set -euo pipefail
DATA=${1:-/tmp/kairos-data}
RUNS=${RUNS:-5}
WINDOW=${WINDOW:-0.4}
EVENTS=${EVENTS:-4}
DISTINCT=${DISTINCT:-4096}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
(cd "$ROOT" && swift build -c release --product kairos >/dev/null)
KAIROS=$(cd "$ROOT" && swift build -c release --show-bin-path)/kairos
out=$(mktemp -d "${TMPDIR:-/tmp}/kairos-warmup.XXXXXX")
for v in $(seq 1 $((RUNS + 1))); do
    "$KAIROS" train "$DATA/ml-100k/events.csv" --items "$DATA/ml-100k/items.csv" --seed 0 --quiet \
        --model-version "$v" -o "$out/default-v$v.kmodel" >/dev/null
done
mkdir -p "$out/models-0" "$out/models-1"
cp "$out/default-v1.kmodel" "$out/models-0/"
cp "$out/default-v1.kmodel" "$out/models-1/"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
"$KAIROS" serve --models "$out/models-0" --port 7910 --threads 1 >"$out/serve-0.log" 2>&1 &
pids+=($!)
"$KAIROS" serve --models "$out/models-1" --port 7911 --threads 1 --fold-cache-warm-ms 0 >"$out/serve-1.log" 2>&1 &
pids+=($!)
for i in 0 1; do
    for _ in $(seq 1 100); do grep -q listening "$out/serve-$i.log" 2>/dev/null && break; sleep 0.2; done
done
kb() {
    "$KAIROS" bench --port "$1" --threads 1 --duration "$2" --json --op score --candidates 100 --connections 1 \
        --ids-from "$out/default-v1.kmodel" --distinct "$DISTINCT" --events "$EVENTS"
}
serving() { "$KAIROS" query --port "$1" info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["models"][0]["version"])'; }
names=(warmed cold)
for run in $(seq 1 "$RUNS"); do
    v=$((run + 1))
    for i in 0 1; do kb $((7910 + i)) 2 >/dev/null; done  # every user's solve kept under the serving version
    for i in 0 1; do "$KAIROS" publish "$out/default-v$v.kmodel" "$out/models-$i" >/dev/null; done
    for i in 0 1; do
        for _ in $(seq 1 200); do [ "$(serving $((7910 + i)))" = "$v" ] && break; sleep 0.05; done
        [ "$(serving $((7910 + i)))" = "$v" ] || { echo "server $i did not serve v$v" >&2; exit 1; }
    done
    for j in 0 1; do
        i=$(((j + run) % 2))
        kb $((7910 + i)) "$WINDOW" >"$out/${names[$i]}-$run.json"
    done
done
python3 - "$out" "$RUNS" "$EVENTS" "$WINDOW" <<'PY'
import json, re, statistics, sys
out, runs, events, window = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
med = statistics.median
print(f"SCORE of 100 candidates with {events} events, 1 connection, the first {window} s after each swap, ml-100k "
      f"model ({runs} swaps, medians)")
print(f"{'server':8}{'p50 us':>9}{'p90 us':>9}{'p99 us':>9}{'rps':>9}{'swap ms':>9}  warmed users per swap")
res = {}
for i, name in enumerate(("warmed", "cold")):
    rows = [json.load(open(f"{out}/{name}-{r}.json")) for r in range(1, runs + 1)]
    log = open(f"{out}/serve-{i}.log").read()
    # Swaps after the first load (which has no predecessor).
    loads = [int(x) for x in re.findall(r"model\.load_ms=(\d+)", log)][1:]
    warmed = re.findall(r"model\.fold_cache_warmed_users=(\d+)", log)[1:]
    res[name] = [med(r["latency_us"][q] for r in rows) for q in ("p50", "p90", "p99")] + [med(r["throughput_rps"] for r in rows)]
    print(f"{name:8}{res[name][0]:9.0f}{res[name][1]:9.0f}{res[name][2]:9.0f}{res[name][3]:9.0f}{med(loads):9.0f}  "
          + " ".join(warmed) + f"   errors {sum(r['errors'] for r in rows)}")
w, c = res["warmed"], res["cold"]
print(f"warmed / cold: p50 {w[0] / c[0]:.2f}x, p90 {w[1] / c[1]:.2f}x, p99 {w[2] / c[2]:.2f}x, rps {w[3] / c[3]:.2f}x")
print(f"(results in {out})")
PY
