#!/usr/bin/env bash
# A/B of two or more `kairos` builds on a full default `kairos train` run, in interleaved rounds (each round trains
# with every binary in turn), so that a trainer change is judged against its base in the same machine state; and a
# check that every binary wrote the same model file. run-trainer-bench.sh compares Kairos' fit with `implicit`; this
# compares Kairos with itself, every phase included.
#
# Prints each run (wall seconds, max RSS, the phase timings of --metrics-json), then per binary the medians and its
# median total over the first binary's.
# Usage: Tests/Benchmarks/run-trainer-ab.sh BIN_A BIN_B [BIN...]   (e.g. a copy of .build/release/kairos per build)
# Environment: RUNS (3); LOG (default: the 10M-event log of run-trainer-bench.sh, made with BIN_A's `synth` if
# missing); TRAIN_ARGS (extra flags for every run, e.g. "--items items.csv"). Waits while /tmp/kairos-bench.lock
# exists. Needs GNU time (/usr/bin/time) and python3.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [BIN...]"; exit 2; }
RUNS=${RUNS:-3}
bins=("$@")
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "not an executable: $b"; exit 2; }; done
[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time (Debian: apt-get install time)"; exit 2; }
WORK=${BENCH_DIR:-/tmp/kairos-trainer-bench}
LOG=${LOG:-$WORK/events-10m-v2.csv}
mkdir -p "$WORK"
if [ ! -s "$LOG" ]; then
    "${bins[0]}" synth --out "$LOG" --users 200000 --items 50000 --days 365 --events-per-user 35 --seed 3
fi
while [ -e /tmp/kairos-bench.lock ]; do echo "waiting for /tmp/kairos-bench.lock" >&2; sleep 30; done
out=$(mktemp -d "${TMPDIR:-/tmp}/kairos-trainer-ab.XXXXXX")
echo "log: $LOG ($(($(wc -l < "$LOG") - 1)) rows); runs: $RUNS; output: $out"

for run in $(seq 1 "$RUNS"); do
    for i in "${!bins[@]}"; do
        # shellcheck disable=SC2086  # TRAIN_ARGS is a list of flags
        /usr/bin/time -f "%e %M" -o "$out/time-$i-$run.txt" "${bins[$i]}" train "$LOG" ${TRAIN_ARGS:-} --quiet \
            -o "$out/model-$i.kmodel" --metrics-json "$out/metrics-$i-$run.json" >/dev/null
        python3 - "$out" "$i" "$run" "${bins[$i]}" <<'PY'
import json, sys
out, i, run, name = sys.argv[1:]
wall, rss = open(f"{out}/time-{i}-{run}.txt").read().split()[-2:]
t = json.load(open(f"{out}/metrics-{i}-{run}.json"))["timings"]
phases = " ".join(f"{k} {t[k]:.1f}" for k in ["ingest", "validation", "test", "fit", "signals", "write"] if k in t)
print(f"run {run} bin {i} ({name}): wall {float(wall):.1f} s, max RSS {int(rss) / 1024:.0f} MB; {phases}")
PY
    done
done

python3 - "$out" "$RUNS" "${bins[@]}" <<'PY'
import json, statistics, sys
out, runs, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def med(i, f):
    return statistics.median(f(i, r) for r in range(1, runs + 1))
wall = lambda i, r: float(open(f"{out}/time-{i}-{r}.txt").read().split()[-2])
rss = lambda i, r: int(open(f"{out}/time-{i}-{r}.txt").read().split()[-1]) / 1024
phase = lambda k: (lambda i, r: json.load(open(f"{out}/metrics-{i}-{r}.json"))["timings"].get(k, 0.0))
base = med(0, wall)
for i, b in enumerate(bins):
    w = med(i, wall)
    parts = ", ".join(f"{k} {med(i, phase(k)):.1f}" for k in ["validation", "test", "fit"])
    print(f"median bin {i} ({b}): wall {w:.1f} s ({w / base:.3f} of bin 0), max RSS {med(i, rss):.0f} MB, {parts}")
PY
for i in "${!bins[@]}"; do
    if [ "$i" -gt 0 ]; then
        if cmp -s "$out/model-0.kmodel" "$out/model-$i.kmodel"; then
            echo "model of bin $i: identical to bin 0's"
        else
            echo "model of bin $i: DIFFERS from bin 0's"
        fi
    fi
done
