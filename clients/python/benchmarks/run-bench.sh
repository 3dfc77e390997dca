#!/usr/bin/env bash
# Python client benchmark: score(100 candidates) from one Python process against a RELEASE kairos server (sync, and
# async pipelined), beside redis-py GET against a local redis-server in the same run.
#
#   clients/python/benchmarks/run-bench.sh [--seconds 5] [--depth 8,64]
#
# Needs: the Swift toolchain, redis-server (Debian: apt-get install redis-server), and network access to PyPI once
# for redis-py, which goes into a throwaway venv under /tmp (never a project dependency).
# CPU etiquette on shared machines: waits while /tmp/kairos-bench.lock exists, and holds it while building/measuring.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
lock=/tmp/kairos-bench.lock
venv="${KAIROS_BENCH_VENV:-/tmp/kairos-pyclient-bench-venv}"

while [ -e "$lock" ]; do echo "waiting for $lock ..." >&2; sleep 30; done
echo "kairos python client benchmark, pid $$, $(date -u +%FT%TZ)" > "$lock"
server_pid=""; redis_pid=""; workdir="$(mktemp -d)"
cleanup() {
    [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    [ -n "$redis_pid" ] && kill -TERM "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
    rm -rf "$workdir"
    rm -f "$lock"
}
trap cleanup EXIT

cd "$repo"
swift build -c release --product kairos >&2
bin="$(swift build -c release --product kairos --show-bin-path)/kairos"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv --system-site-packages "$venv"  # sees numpy if the system has it
    "$venv/bin/pip" install -q redis
fi
command -v redis-server >/dev/null || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 1; }

"$bin" serve --models models --port 0 > "$workdir/serve.out" 2> "$workdir/serve.err" &
server_pid=$!
for _ in $(seq 300); do grep -q "^kairos: listening on " "$workdir/serve.out" 2>/dev/null && break; sleep 0.1; done
port="$(sed -nE 's/^kairos: listening on [^ ]*:([0-9]+) .*/\1/p' "$workdir/serve.out")"
[ -n "$port" ] || { echo "kairos serve did not start:" >&2; cat "$workdir/serve.err" >&2; exit 1; }

redis_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    > "$workdir/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do "$venv/bin/python" -c "import redis,sys; redis.Redis(port=$redis_port).ping()" 2>/dev/null && break; sleep 0.1; done

echo "# $(uname -srm), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# kairos release build $(git -C "$repo" rev-parse --short HEAD), redis-server $(redis-server --version | sed -E 's/.*v=([^ ]+).*/\1/')"
"$venv/bin/python" "$here/bench_score.py" --port "$port" --redis-port "$redis_port" "$@"
