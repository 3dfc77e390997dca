#!/usr/bin/env bash
# Trainer speed bar (issue 3): Kairos' ALS fit vs the `implicit` library on a MovieLens-1M-shaped synthetic log
# (6,040 users, 3,706 items, 1,000,209 distinct user-item events, from ml1m_shaped.py), 64 factors, 15 iterations, 2 threads, both in the same run, alternating;
# plus CSV ingest throughput on a 10M-event synthetic log (also with its rows in time order, and JSON Lines on its
# first 2M events). Prints every run,
# medians and the ratio.
#
# Usage: Tests/Benchmarks/run-trainer-bench.sh [runs=5]
# Needs: a release build (`swift build -c release --product kairos`) and a venv with implicit 0.7.3 in
# $IMPLICIT_VENV (default /tmp/implicit-venv). Waits while /tmp/kairos-bench.lock exists.
set -euo pipefail
RUNS=${1:-5}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KAIROS=$ROOT/.build/release/kairos
VENV=${IMPLICIT_VENV:-/tmp/implicit-venv}
WORK=${BENCH_DIR:-/tmp/kairos-trainer-bench}
mkdir -p "$WORK"
while [ -e /tmp/kairos-bench.lock ]; do echo "waiting for /tmp/kairos-bench.lock" >&2; sleep 30; done

ML1M=$WORK/ml1m-shaped-v2.csv
[ -s "$ML1M" ] || "$VENV/bin/python" "$ROOT/Tests/Benchmarks/ml1m_shaped.py" "$ML1M" --seed 7
echo "log: $(($(wc -l < "$ML1M") - 1)) events in $ML1M"
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: > "$WORK/kairos.txt"; : > "$WORK/implicit.txt"
for r in $(seq "$RUNS"); do
    "$KAIROS" train "$ML1M" --holdout 0 --no-tune --loss-every 0 --factors 64 --iterations 15 --threads 2 \
        --quiet --metrics-json "$WORK/m.json" > /dev/null
    k=$(python3 -c "import json;print(json.load(open('$WORK/m.json'))['fitSeconds'])")
    i=$(OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 "$VENV/bin/python" "$ROOT/Tests/Benchmarks/implicit_peer.py" "$ML1M" \
        --runs 1 | sed -n 's/implicit_fit_seconds=\([0-9.]*\).*/\1/p')
    echo "run $r: kairos fit $k s, implicit fit $i s ($(python3 -c "import json;d=json.load(open('$WORK/m.json'));print(d['data']['events'], 'events,', d['data']['pairs'], 'user-item pairs')"))"
    echo "$k" >> "$WORK/kairos.txt"; echo "$i" >> "$WORK/implicit.txt"
done
K=$(median < "$WORK/kairos.txt"); I=$(median < "$WORK/implicit.txt")
echo "median fit: kairos $K s, implicit $I s, kairos/implicit = $(python3 -c "print(round($K/$I, 3))")"

BIG=$WORK/events-10m-v2.csv
[ -s "$BIG" ] || "$KAIROS" synth --out "$BIG" --users 200000 --items 50000 --days 365 --events-per-user 35 --seed 3
echo "ingest log: $(($(wc -l < "$BIG") - 1)) events, $(du -h "$BIG" | cut -f1)"

# ingest LABEL FILE UNIT: 3 runs of `kairos train FILE` that stop after the signals (no fit, no model file), each
# run's ingest rate and peak RSS of the whole run (ingest, matrix, signals), then the median rate.
ingest() {
    local label=$1 file=$2 unit=$3
    : > "$WORK/ingest-$label.txt"
    for r in $(seq 3); do
        /usr/bin/time -f "%M" -o "$WORK/rss.txt" \
            "$KAIROS" train "$file" --holdout 0 --no-tune --iterations 0 --quiet --metrics-json "$WORK/i.json" > /dev/null
        python3 -c "import json;d=json.load(open('$WORK/i.json'));print(d['ingestEventsPerSecond'], d['timings']['ingest'])" \
            | tee -a "$WORK/ingest-$label.txt" | awk -v l="$label" -v r="$r" -v u="$unit" -v m="$(($(cat "$WORK/rss.txt") / 1024))" \
                '{printf "%s ingest run %s: %.2fM %s/s (%.2f s), peak RSS %s MB\n", l, r, $1/1e6, u, $2, m}'
    done
    echo "median $label ingest: $(cut -d' ' -f1 "$WORK/ingest-$label.txt" | median | awk -v u="$unit" '{printf "%.2fM %s/s", $1/1e6, u}')"
}
ingest csv "$BIG" events

# The same rows in time order, as real logs come (each row a different user: the id table and the sort by user miss
# the cache far more than on the user-grouped log above). No bar of its own; tracked so the gap stays known.
TIMED=$WORK/events-10m-v2-by-time.csv
[ -s "$TIMED" ] || { head -1 "$BIG"; tail -n +2 "$BIG" | sort -t, -k3,3n -S 1G; } > "$TIMED"
ingest time-ordered-csv "$TIMED" events

# JSON Lines ingest (no bar in the issue; tracked so the JSON reader stays near the CSV one): the first 2M events of
# the same log as one object per line.
JSONL=$WORK/events-2m-v2.jsonl
[ -s "$JSONL" ] || python3 - "$BIG" "$JSONL" <<'PY'
import csv, itertools, json, sys
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as out:
    for row in itertools.islice(csv.DictReader(src), 2_000_000):
        row["timestamp"] = int(row["timestamp"])
        out.write(json.dumps(row) + "\n")
PY
ingest jsonl "$JSONL" lines
