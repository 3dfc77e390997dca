#!/usr/bin/env bash
# Offline quality of `kairos train` with its DEFAULT configuration on the issue's benchmark data, printed as the
# issue's table (NDCG@10 on the test split) next to the calibration numbers, and the push-timing profiles' test scores.
#
# Usage: Tests/Benchmarks/run-trainer-quality.sh [DATA_DIR=/tmp/kairos-data]
# DATA_DIR is built by `python3 /work/shared/data/fetch_datasets.py --out DATA_DIR` (never commit those files).
set -euo pipefail
DATA=${1:-/tmp/kairos-data}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KAIROS=$ROOT/.build/release/kairos
OUT=${BENCH_DIR:-/tmp/kairos-trainer-quality}
mkdir -p "$OUT"
"$KAIROS" train "$DATA/ml-100k/events.csv" --items "$DATA/ml-100k/items.csv" --quiet --metrics-json "$OUT/ml-100k.json" >/dev/null
"$KAIROS" train "$DATA/instacart-sample/events.csv" --quiet --metrics-json "$OUT/instacart.json" >/dev/null
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = [("ml-100k", "exclude-seen", 0.294), ("instacart", "exclude-seen", 0.073), ("instacart", "allow-repeats", 0.679)]
cols = ["popularity", "trending", "als-no-decay", "als", "buy-again", "model-no-decay", "model"]
print(f"{'data, protocol':28}" + "".join(f"{c:>15}" for c in cols) + f"{'calibration':>13}{'users':>7}")
for name, proto, calib in rows:
    d = json.load(open(f"{out}/{name}.json"))
    t = d["test"][proto]
    cells = "".join(f"{t[c]['ndcg@10']:15.3f}" if c in t else f"{'-':>15}" for c in cols)
    print(f"{name + ', ' + proto:28}{cells}{calib:13.3f}{int(t['model']['users']):7d}")
for name in ["ml-100k", "instacart"]:
    d = json.load(open(f"{out}/{name}.json"))
    p = d["parameters"]
    print(f"{name}: fit {d['fitSeconds']:.2f} s, total {d['timings']['total']:.2f} s, decay {d['decay']}, "
          f"regularization {p['regularization']:g}, alpha {p['alpha']:g}, trending half-life {p['trending_half_life_days']:g} d, "
          f"blend {json.dumps(d['scoring'], sort_keys=True)}")
# Push timing (METRICS.md "Push timing"): how often the day's first visit falls in the profile's 3 best hours.
print(f"{'push timing, test':28}" + "".join(f"{c:>15}" for c in ["raw-profile", "population", "profile"])
      + f"{'gain vs raw':>14}{'users':>7}")
for name in ["ml-100k", "instacart"]:
    d = json.load(open(f"{out}/{name}.json"))
    t = d["timing"]["test"]
    g = d["timingComparisons"]["raw-profile"]
    cells = "".join(f"{t[c]['hit@3']:15.3f}" for c in ["raw-profile", "population", "profile"])
    print(f"{name + ', hit@3':28}{cells}{g['hit@3_gain']:+8.3f} ({g['hit@3_gain_se']:.3f}){int(t['profile']['users']):7d}")
    p = d["parameters"]
    print(f"  profiles: half-life {p['activity_half_life_days']:g} d, bandwidth {p['activity_bandwidth_hours']:g} h, "
          f"daily share {p['activity_daily_share']:g}, prior {p['activity_prior_weight']:g}; log-likelihood "
          f"{t['profile']['log_likelihood']:.3f} vs population {t['population']['log_likelihood']:.3f}")
PY
