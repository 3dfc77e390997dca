#!/usr/bin/env bash
# Node.js client benchmark: score(100 candidates) against a RELEASE kairos server, one request at a time and
# pipelined, beside the Python client's benchmark (clients/python/benchmarks/bench_score.py) against the same server,
# in interleaved rounds (the machine's speed drifts: compare within a round).
#
#   clients/node/benchmarks/run-bench.sh [ROUNDS=3] [SECONDS=3]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
rounds="${1:-3}"
seconds="${2:-3}"
workdir="$(mktemp -d)"
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    rm -rf "$workdir"
}
trap cleanup EXIT

cd "$repo"
swift build -c release --product kairos >&2
bin="$(swift build -c release --product kairos --show-bin-path)/kairos"
"$bin" serve --models models --port 0 > "$workdir/serve.out" 2> "$workdir/serve.err" &
server_pid=$!
for _ in $(seq 300); do grep -q "^kairos: listening on " "$workdir/serve.out" 2>/dev/null && break; sleep 0.1; done
port="$(sed -nE 's/^kairos: listening on [^ ]*:([0-9]+) .*/\1/p' "$workdir/serve.out")"
[ -n "$port" ] || { echo "kairos serve did not start:" >&2; cat "$workdir/serve.err" >&2; exit 1; }

echo "# $(uname -srm), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), node $(node --version), $(python3 --version)"
echo "# kairos release build $(git rev-parse --short HEAD), default model, ${seconds} s per case"
for r in $(seq "$rounds"); do
    echo "## round $r"
    node "$here/bench-score.js" --port "$port" --seconds "$seconds" --depth 8,64 | tail -n +3
    python3 "$repo/clients/python/benchmarks/bench_score.py" --port "$port" --seconds "$seconds" --depth 8,64 | sed -n '3,5p'
done
