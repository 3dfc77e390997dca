#!/usr/bin/env bash
# The two real-time folds side by side on the trainer's own session protocol (METRICS.md, "Real-time events"):
# for each log and seed, `kairos train` runs once with `--realtime-fold least-squares` and once with `additive`, and
# the table shows the weight each chose on validation and, on test, the paired NDCG@10 gain of folding the sessions'
# 3 events in (at the chosen weight and at weight 1) over no events, with its standard error; then the fit and whole-run times (medians on the mean rows).
#
# Usage: Tests/Benchmarks/run-realtime-fold.sh [DATA_DIR=/tmp/kairos-data] [SEEDS=3]
# DATA_DIR is built by `python3 /work/shared/data/fetch_datasets.py --out DATA_DIR` (never commit those files); the
# synth log is `kairos synth` (2000 users, 3000 items, seed 3, with item attributes), as in run-realtime-quality.py.
set -euo pipefail
DATA=${1:-/tmp/kairos-data}
SEEDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
(cd "$ROOT" && swift build -c release --product kairos >/dev/null)
KAIROS=$(cd "$ROOT" && swift build -c release --show-bin-path)/kairos
OUT=${BENCH_DIR:-/tmp/kairos-realtime-fold}
mkdir -p "$OUT"
"$KAIROS" synth --out "$OUT/synth.csv" --items-out "$OUT/synth-items.csv" --users 2000 --items 3000 --seed 3 2>/dev/null
for s in $(seq 0 $((SEEDS - 1))); do
    for method in least-squares additive; do
        "$KAIROS" train "$OUT/synth.csv" --items "$OUT/synth-items.csv" --seed "$s" --realtime-fold "$method" --quiet \
            --metrics-json "$OUT/synth-$method-$s.json" >/dev/null
        "$KAIROS" train "$DATA/ml-100k/events.csv" --items "$DATA/ml-100k/items.csv" --seed "$s" \
            --realtime-fold "$method" --quiet --metrics-json "$OUT/ml-100k-$method-$s.json" >/dev/null
        "$KAIROS" train "$DATA/instacart-sample/events.csv" --seed "$s" --realtime-fold "$method" --quiet \
            --metrics-json "$OUT/instacart-$method-$s.json" >/dev/null
    done
done
python3 - "$OUT" "$SEEDS" <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], int(sys.argv[2])
print(f"{'log':10}{'fold':15}{'seed':>5}{'users':>7}{'chosen':>8}{'gain':>9}{'se':>8}{'gain@1':>9}{'se':>8}{'fit s':>8}{'total s':>9}")
for name in ("synth", "ml-100k", "instacart"):
    for method in ("least-squares", "additive"):
        gains, fits, totals = [], [], []
        for s in range(seeds):
            r = json.load(open(f"{out}/{name}-{method}-{s}.json"))
            t = r["realtime"]["test"]
            gains.append(t["events_gain"])
            fits.append(r["fitSeconds"])
            totals.append(r["timings"]["total"])
            print(f"{name:10}{method:15}{s:5d}{int(t['users']):7d}{t['weight']:8.2f}{t['events_gain']:+9.4f}"
                  f"{t['events_gain_se']:8.4f}{t['events-weight-1_gain']:+9.4f}{t['events-weight-1_gain_se']:8.4f}"
                  f"{r['fitSeconds']:8.2f}{r['timings']['total']:9.2f}")
        print(f"{name:10}{method:15}{'mean':>5}{'':7}{'':8}{statistics.mean(gains):+9.4f}{'':8}{'':9}{'':8}"
              f"{statistics.median(fits):8.2f}{statistics.median(totals):9.2f}")
PY
