#!/usr/bin/env bash
# Instructions per request (valgrind callgrind, user space only: syscalls are not counted) for Kairos PING and
# SCORE of 100 candidates beside Redis PING and GET of a 400-byte value, so each layer's cost is visible.
#
# Each server runs under callgrind twice with different request counts; (Ir2 - Ir1) / (N2 - N1) cancels start-up
# and shutdown. Counts are repeatable whatever else the machine does (timing is not measured here).
# Two things make a Swift 6.3 binary run under valgrind 3.19: stripping its debug info (mixed DWARF 4/5 units stop
# valgrind's reader) and valgrind-sigsuspend-shim.c (see there). Runs on the AVX2 kernels: valgrind's CPU has no
# AVX-512.
#
# Usage: Tests/Benchmarks/run-instruction-counts.sh     Environment: ITEMS (100000: model size), CONNS (1),
#   SECONDS_SHORT (4), SECONDS_LONG (12), OUT (result folder). Needs valgrind, redis-server, redis-benchmark, cc.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
ITEMS=${ITEMS:-100000}
CONNS=${CONNS:-1}
SHORT=${SECONDS_SHORT:-4}
LONG=${SECONDS_LONG:-12}
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/kairos-instructions.XXXXXX")}
mkdir -p "$out/models"
for tool in valgrind callgrind_annotate redis-server redis-benchmark cc objcopy; do
    command -v $tool >/dev/null || { echo "needs $tool"; exit 2; }
done

swift build -c release --product kairos
kairos="$(swift build -c release --show-bin-path)/kairos"
objcopy --strip-debug "$kairos" "$out/kairos"
cc -O2 -shared -fPIC -o "$out/shim.so" "$here/valgrind-sigsuspend-shim.c"
"$kairos" make-demo-model --out "$out/models/default.kmodel" --items "$ITEMS" --users 10000 --dimensions 64 >/dev/null

total_ir() { awk '/^(summary|totals):/ {print $2}' "$1" | tail -n 1; }

kairos_run() {  # OP SECONDS TAG [bench args] -> "requests ir"
    local op=$1 secs=$2 tag=$3 port=7997
    shift 3
    LD_PRELOAD="$out/shim.so" valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$out/k-$tag.out" \
        "$out/kairos" serve --models "$out/models" --port $port --threads 1 --rescan-interval 100000 \
        --log-level warning >"$out/k-$tag.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.5; done
    "$kairos" bench --port $port --threads 1 --op "$op" --connections "$CONNS" --duration "$secs" --json "$@" \
        >"$out/k-$tag.json"
    kill -INT $pid
    wait $pid || true
    echo "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['requests'])" "$out/k-$tag.json") $(total_ir "$out/k-$tag.out")"
}

redis_run() {  # TEST N TAG -> "requests ir"
    local test=$1 n=$2 tag=$3 port=7996
    valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$out/r-$tag.out" \
        redis-server --port $port --save "" --appendonly no --daemonize no >"$out/r-$tag.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 600); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.5; done
    # Without -r, redis-benchmark's GET reads the literal key "key:__rand_int__".
    redis-cli -p $port set key:__rand_int__ "$(head -c 400 /dev/zero | tr '\0' x)" >/dev/null
    redis-benchmark -p $port -t "$test" -n "$n" -c "$CONNS" -d 400 -q >"$out/r-$tag.txt" 2>&1
    kill -INT $pid
    wait $pid || true
    echo "$n $(total_ir "$out/r-$tag.out")"
}

per_request() {  # "n1 ir1" "n2 ir2"
    python3 -c "import sys; n1,i1=map(int,sys.argv[1].split()); n2,i2=map(int,sys.argv[2].split()); print(f'{n1:>8} {n2:>8} {(i2-i1)/(n2-n1):>12,.0f}')" "$1" "$2"
}

model=(--items "$ITEMS" --users 10000)
printf '%-28s %8s %8s %12s\n' "op ($CONNS connection(s))" N1 N2 "Ir/request"
printf '%-28s %s\n' "kairos PING" "$(per_request "$(kairos_run ping "$SHORT" ping1 "${model[@]}")" "$(kairos_run ping "$LONG" ping2 "${model[@]}")")"
printf '%-28s %s\n' "kairos SCORE 100 candidates" "$(per_request "$(kairos_run score "$SHORT" score1 --candidates 100 "${model[@]}")" "$(kairos_run score "$LONG" score2 --candidates 100 "${model[@]}")")"
printf '%-28s %s\n' "redis PING_MBULK" "$(per_request "$(redis_run ping_mbulk 20000 ping1)" "$(redis_run ping_mbulk 60000 ping2)")"
printf '%-28s %s\n' "redis GET 400 B" "$(per_request "$(redis_run get 20000 get1)" "$(redis_run get 60000 get2)")"
echo "callgrind files in $out (callgrind_annotate --inclusive=yes FILE for the per-function split)"
