#!/usr/bin/env bash
# What the least-squares real-time fold costs a request, over the wire: one ml-100k model trained twice, with
# `--realtime-fold least-squares` and `additive` (same seed, so the same factors), each served by its own
# `kairos serve --threads 1`, and the least-squares one again with `--fold-cache-mb 0` (no per-user history solves
# kept; with them, a user's requests after their first hit: all 943 users' solves fit in the default budget). Then, in
# interleaved rounds, one closed-loop connection sends SCORE (100 candidates) with EVENTS real-time events (random
# items, a minute to an hour old) of the model's real users, and without events, to each server in turn. Prints
# median p50 / p99 / rps over the rounds, the least-squares to additive and cached to uncached ratios, and each
# server's cost of events over its own no-event requests.
#
# Usage: Tests/Benchmarks/run-realtime-fold-cost.sh [DATA_DIR=/tmp/kairos-data]
# Environment: RUNS (5), SECONDS_PER_CASE (3), EVENTS (4), DISTINCT (4096: distinct requests per connection, so
# that the model's users, and their data in the CPU's caches, are not just the 64 that `kairos bench` cycles by
# default).
set -euo pipefail
DATA=${1:-/tmp/kairos-data}
RUNS=${RUNS:-5}
SECS=${SECONDS_PER_CASE:-3}
EVENTS=${EVENTS:-4}
DISTINCT=${DISTINCT:-4096}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
(cd "$ROOT" && swift build -c release --product kairos >/dev/null)
KAIROS=$(cd "$ROOT" && swift build -c release --show-bin-path)/kairos
out=$(mktemp -d "${TMPDIR:-/tmp}/kairos-fold-cost.XXXXXX")
methods=(least-squares additive)
for i in 0 1; do
    mkdir -p "$out/models-$i"
    "$KAIROS" train "$DATA/ml-100k/events.csv" --items "$DATA/ml-100k/items.csv" --seed 0 --quiet \
        --realtime-fold "${methods[$i]}" -o "$out/models-$i/default.kmodel" >/dev/null
done
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for i in 0 1; do
    "$KAIROS" serve --models "$out/models-$i" --port $((7900 + i)) --threads 1 --log-level warning >"$out/serve-$i.log" 2>&1 &
    pids+=($!)
done
# The least-squares model again without its per-user cache of history solves (every request pays the whole fold).
"$KAIROS" serve --models "$out/models-0" --port 7902 --threads 1 --fold-cache-mb 0 --log-level warning >"$out/serve-2.log" 2>&1 &
pids+=($!)
for i in 0 1 2; do
    for _ in $(seq 1 100); do grep -q listening "$out/serve-$i.log" 2>/dev/null && break; sleep 0.2; done
done
kb() {
    "$KAIROS" bench --port "$1" --threads 1 --duration "$SECS" --json --op score --candidates 100 --connections 1 \
        --ids-from "$out/models-0/default.kmodel" --distinct "$DISTINCT" "${@:2}"
}
# Each server also without events (its floor: the two processes need not run equally fast), and the order of the
# four cases rotates from round to round, so that no case always runs first or after the same one.
cases=("7900 $EVENTS least-squares" "7902 $EVENTS least-squares-uncached" "7901 $EVENTS additive"
    "7900 0 least-squares-none" "7901 0 additive-none")
for run in $(seq 1 "$RUNS"); do
    for j in 0 1 2 3 4; do
        read -r port n name <<<"${cases[$(((j + run) % 5))]}"
        kb "$port" --events "$n" >"$out/$name-$run.json"
    done
done
python3 - "$out" "$RUNS" "$EVENTS" <<'PY'
import json, statistics, sys
out, runs, events = sys.argv[1], int(sys.argv[2]), sys.argv[3]
med = statistics.median
res = {}
print(f"SCORE of 100 candidates, 1 connection, {events} events, ml-100k model ({runs} rounds, medians)")
print(f"{'case':24}{'p50 us':>9}{'p99 us':>9}{'rps':>9}{'errors':>8}  per-round p50")
for case in ("least-squares", "least-squares-uncached", "additive", "least-squares-none", "additive-none"):
    rows = [json.load(open(f"{out}/{case}-{r}.json")) for r in range(1, runs + 1)]
    p50s = [r["latency_us"]["p50"] for r in rows]
    res[case] = (med(p50s), med(r["latency_us"]["p99"] for r in rows), med(r["throughput_rps"] for r in rows))
    print(f"{case:24}{res[case][0]:9.0f}{res[case][1]:9.0f}{res[case][2]:9.0f}{sum(r['errors'] for r in rows):8d}  "
          + " ".join(f"{x:.0f}" for x in p50s))
ls, add = res["least-squares"], res["additive"]
print(f"least-squares / additive: p50 {ls[0] / add[0]:.2f}x, p99 {ls[1] / add[1]:.2f}x, rps {ls[2] / add[2]:.2f}x")
lsu = res["least-squares-uncached"]
print(f"least-squares cached / uncached: p50 {ls[0] / lsu[0]:.2f}x, p99 {ls[1] / lsu[1]:.2f}x, rps {ls[2] / lsu[2]:.2f}x")
lsn, addn = res["least-squares-none"], res["additive-none"]
print(f"events over none, same server: least-squares p50 {ls[0] / lsn[0]:.2f}x (+{ls[0] - lsn[0]:.0f} us), "
      f"additive p50 {add[0] / addn[0]:.2f}x (+{add[0] - addn[0]:.0f} us); servers without events: {lsn[0] / addn[0]:.2f}x")
print(f"(results in {out})")
PY
