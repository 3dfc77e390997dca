#!/usr/bin/env bash
# Seed spread of `kairos train`'s DEFAULT configuration on the issue's benchmark data: the test NDCG@10 of `model`
# per seed, then mean, median and minimum next to the calibration. On ml-100k's 102 validation users a different
# ALS seed can change what validation chooses, so one seed's figure says little on its own.
#
# Usage: Tests/Benchmarks/run-trainer-seeds.sh [DATA_DIR=/tmp/kairos-data] [SEEDS_ML=8] [SEEDS_INSTACART=4]
# DATA_DIR is built by `python3 /work/shared/data/fetch_datasets.py --out DATA_DIR` (never commit those files).
set -euo pipefail
DATA=${1:-/tmp/kairos-data}
SEEDS_ML=${2:-8}
SEEDS_IC=${3:-4}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KAIROS=$ROOT/.build/release/kairos
OUT=${BENCH_DIR:-/tmp/kairos-trainer-seeds}
mkdir -p "$OUT"
for s in $(seq 0 $((SEEDS_ML - 1))); do
    "$KAIROS" train "$DATA/ml-100k/events.csv" --items "$DATA/ml-100k/items.csv" --seed "$s" --quiet \
        --metrics-json "$OUT/ml-100k-$s.json" >/dev/null
done
for s in $(seq 0 $((SEEDS_IC - 1))); do
    "$KAIROS" train "$DATA/instacart-sample/events.csv" --seed "$s" --quiet --metrics-json "$OUT/instacart-$s.json" >/dev/null
done
python3 - "$OUT" "$SEEDS_ML" "$SEEDS_IC" <<'PY'
import json, statistics, sys
out, n_ml, n_ic = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [("ml-100k", n_ml, "exclude-seen", 0.294), ("instacart", n_ic, "exclude-seen", 0.073),
        ("instacart", n_ic, "allow-repeats", 0.679)]
# se: the test set's own standard error of NDCG@10 over its users (mean over seeds); gap/se: how far the seed mean
# is below the calibration in those units (negative: above it).
print(f"{'data, protocol':26}{'seeds':>6}{'mean':>8}{'median':>8}{'min':>8}{'max':>8}{'se':>8}{'calibration':>13}"
      f"{'gap/se':>8}  per seed")
for name, n, proto, calib in rows:
    runs = [json.load(open(f"{out}/{name}-{s}.json")) for s in range(n)]
    v = [r["test"][proto]["model"]["ndcg@10"] for r in runs]
    se = statistics.mean(r["test"][proto]["model"]["ndcg@10_se"] for r in runs)
    print(f"{name + ', ' + proto:26}{n:6d}{statistics.mean(v):8.4f}{statistics.median(v):8.4f}{min(v):8.4f}{max(v):8.4f}"
          f"{se:8.4f}{calib:13.3f}{(calib - statistics.mean(v)) / se:8.2f}  " + " ".join(f"{x:.3f}" for x in v))
for name, n in [("ml-100k", n_ml), ("instacart", n_ic)]:
    runs = [json.load(open(f"{out}/{name}-{s}.json")) for s in range(n)]
    print(f"{name}: freshness half-life per seed {[r['parameters'].get('freshness_half_life_days') for r in runs]}, "
          f"decay per seed {[r['decay'].replace('exponential', 'exp') for r in runs]}")
PY
