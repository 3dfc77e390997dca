#!/usr/bin/env bash
# Server benchmark of Kairos against Redis, end to end, in interleaved rounds on this machine:
#   PING (unpipelined and -P 16) vs Redis PING_MBULK; SCORE of 100 candidates on a 100k x 64 model vs Redis GET of
#   a 400-byte value (unpipelined and pipeline 16); TOPK k=10 over 100k items while 50 SCORE connections run.
# The TOPK bar ("2k req/s with p99 under 5 ms") is measured open loop: kairos bench --rate 2000 offers exactly 2,000
# req/s and counts latency from when each request fell due. It runs against a second server in its default
# configuration (one event loop per core) with int8 rows (TOPK_ENCODING), the encoding meant for full scans; a
# closed-loop TOPK on the --threads 1 server is printed beside it for reference.
# Both load generators are single-threaded (redis-benchmark; kairos bench --threads 1), and both servers get one
# core's worth of event loop (redis-server is single-threaded; kairos serve --threads ${KAIROS_THREADS:-1}), so
# client and server share the 2 cores the same way. Needs Debian's redis-server (apt-get install -y redis-server).
#
# Usage: Tests/Benchmarks/run-server-bench.sh     Environment: RUNS (3), SECONDS_PER_CASE (4), KAIROS_THREADS (1),
#   ENCODING (float32 | float16 | int8 rows of the 100k model), KAIROS_BENCH_OUT (result folder).
# Run it alone (touch /tmp/kairos-bench.lock while it runs): anything else busy on the 2 cores skews both sides.
set -euo pipefail
RUNS=${RUNS:-3}
SECS=${SECONDS_PER_CASE:-4}
THREADS=${KAIROS_THREADS:-1}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install -y redis-server)"; exit 2; }

swift build -c release --product kairos
kairos="$(swift build -c release --show-bin-path)/kairos"
out=${KAIROS_BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/kairos-server-bench.XXXXXX")}
mkdir -p "$out/models"
"$kairos" make-demo-model --out "$out/models/default.kmodel" --items 100000 --users 10000 --dimensions 64 \
    --encoding "${ENCODING:-float32}" >/dev/null
mkdir -p "$out/models-topk"
"$kairos" make-demo-model --out "$out/models-topk/default.kmodel" --items 100000 --users 10000 --dimensions 64 \
    --encoding "${TOPK_ENCODING:-int8}" >/dev/null

redis_port=6391
kairos_port=7891
redis-server --port $redis_port --save "" --appendonly no --daemonize no >"$out/redis.log" 2>&1 &
redis_pid=$!
"$kairos" serve --models "$out/models" --port $kairos_port --threads "$THREADS" --log-level warning >"$out/kairos.log" 2>&1 &
kairos_pid=$!
topk_port=7892
"$kairos" serve --models "$out/models-topk" --port $topk_port --log-level warning >"$out/kairos-topk.log" 2>&1 &
topk_pid=$!
cleanup() { kill "$redis_pid" "$kairos_pid" "$topk_pid" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do
    grep -q "listening" "$out/kairos.log" 2>/dev/null && grep -q "listening" "$out/kairos-topk.log" 2>/dev/null && redis-cli -p $redis_port ping >/dev/null 2>&1 && break
    sleep 0.2
done
redis-benchmark -p $redis_port -t set -d 400 -n 1000 -q >/dev/null  # the key GET reads

model=(--items 100000 --users 10000)
rb() {  # redis-benchmark, CSV: "test","rps","avg","min","p50","p95","p99","max"
    redis-benchmark -p $redis_port -c 50 --csv "$@" 2>/dev/null | tail -n 1
}
kb() { "$kairos" bench --port $kairos_port --threads 1 --duration "$SECS" --json "${model[@]}" "$@"; }
kt() { "$kairos" bench --port $topk_port --threads 1 --duration "$SECS" --json "${model[@]}" "$@"; }

for run in $(seq 1 "$RUNS"); do
    echo "== run $run/$RUNS"
    rb -t ping_mbulk -n $((100000 * SECS)) >"$out/redis-ping-$run.csv"
    kb --op ping --connections 50 >"$out/kairos-ping-$run.json"
    rb -t ping_mbulk -P 16 -n $((900000 * SECS)) >"$out/redis-ping16-$run.csv"
    kb --op ping --connections 50 --pipeline 16 >"$out/kairos-ping16-$run.json"
    rb -t get -d 400 -n $((70000 * SECS)) >"$out/redis-get-$run.csv"
    kb --op score --candidates 100 --connections 50 >"$out/kairos-score-$run.json"
    rb -t get -d 400 -P 16 -n $((900000 * SECS)) >"$out/redis-get16-$run.csv"
    kb --op score --candidates 100 --connections 50 --pipeline 16 >"$out/kairos-score16-$run.json"
    kb --op score --candidates 100 --connections 50 >"$out/kairos-score-bg-$run.json" &
    bg=$!
    kb --op topk --k 10 --connections 8 >"$out/kairos-topk-$run.json"
    wait $bg
    kt --op score --candidates 100 --connections 50 >"$out/kairos-topk-score-bg-$run.json" &
    bg=$!
    kt --op topk --k 10 --connections 8 --rate 2000 >"$out/kairos-topk-rate-$run.json"
    wait $bg
done

python3 - "$out" "$RUNS" <<'PY'
import csv, json, os, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
med = statistics.median
def redis(name):
    rows = [next(csv.reader(open(os.path.join(out, f"redis-{name}-{i}.csv")))) for i in range(1, runs + 1)]
    return [float(r[1]) for r in rows], [float(r[6]) * 1000 for r in rows]  # rps, p99 us
def kairos(name):
    rows = [json.load(open(os.path.join(out, f"kairos-{name}-{i}.json"))) for i in range(1, runs + 1)]
    return [r["throughput_rps"] for r in rows], [r["latency_us"]["p99"] for r in rows], sum(r["errors"] for r in rows)
print(f"{'case':44}{'kairos rps':>12}{'peer rps':>12}{'ratio':>8}{'k p99 us':>10}{'peer p99':>10}  per-run ratios")
results = {}
def line(label, k, r, bar=None, p99_bar=None):
    krps, kp99, errors = kairos(k)
    rrps, rp99 = redis(r)
    ratios = [a / b for a, b in zip(krps, rrps)]
    ratio = med(ratios)
    verdict = ""
    if bar is not None:
        ok = ratio >= bar and (p99_bar is None or med(kp99) < p99_bar) and errors == 0
        verdict = ("PASS" if ok else "FAIL") + f" (bar >= {bar}x" + (f", p99 < {p99_bar} us" if p99_bar else "") + ")"
    results[label] = {"kairos_rps": krps, "peer_rps": rrps, "ratio": ratio, "kairos_p99_us": kp99, "errors": errors}
    print(f"{label:44}{med(krps):>12.0f}{med(rrps):>12.0f}{ratio:>8.2f}{med(kp99):>10.0f}{med(rp99):>10.0f}  "
          + " ".join(f"{x:.2f}" for x in ratios) + f"  {verdict}  errors {errors}")
line("PING, 50 conns, unpipelined vs PING_MBULK", "ping", "ping", 0.95)
line("PING, 50 conns, pipeline 16 vs PING_MBULK", "ping16", "ping16", 1.0)
line("SCORE 100 of 100k x 64 vs GET 400 B", "score", "get", 0.85, 1000)
line("SCORE 100, pipeline 16 vs GET 400 B -P 16", "score16", "get16", 0.5)
trps, tp99, terr = kairos("topk")
srps, sp99, serr = kairos("score-bg")
print(f"{'TOPK closed loop 8 conns, + 50 SCORE conns':44}{med(trps):>12.0f}{'':>12}{'':>8}{med(tp99):>10.0f}{'':>10}  "
      f"(reference: --threads 1, {os.environ.get('ENCODING', 'float32')}); SCORE alongside {med(srps):.0f} req/s p99 {med(sp99):.0f} us; errors {terr + serr}")
results["topk_closed_loop_with_score"] = {"topk_rps": trps, "topk_p99_us": tp99, "score_rps": srps, "score_p99_us": sp99}
trps, tp99, terr = kairos("topk-rate")
srps, sp99, serr = kairos("topk-score-bg")
ok = med(trps) >= 1990 and med(tp99) < 5000 and terr == 0  # 2,000 offered; a few due at the very end go unsent
enc = os.environ.get("TOPK_ENCODING", "int8")
print(f"{'TOPK at 2,000 req/s offered, + 50 SCORE conns':44}{med(trps):>12.0f}{'':>12}{'':>8}{med(tp99):>10.0f}{'':>10}  "
      f"{'PASS' if ok else 'FAIL'} (bar >= 2000 req/s, p99 < 5000 us; default threads, {enc}); per-run p99 "
      + " ".join(f"{x:.0f}" for x in tp99) + f"; SCORE alongside {med(srps):.0f} req/s p99 {med(sp99):.0f} us; errors {terr + serr}")
results["topk_at_2000_with_score"] = {"topk_rps": trps, "topk_p99_us": tp99, "score_rps": srps, "score_p99_us": sp99, "encoding": enc}
json.dump(results, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(f"(JSON in {out}/summary.json)")
PY
