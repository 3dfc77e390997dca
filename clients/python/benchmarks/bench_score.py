#!/usr/bin/env python3
"""Requests/s and latency of `score` with 100 candidates from one Python process, beside redis-py GET in the same run.

    python3 bench_score.py --port KAIROS_PORT [--redis-port REDIS_PORT] [--seconds 5] [--depth 8,64]

Cases (each runs --seconds after a short warm-up, one process, one thread):
  kairos sync         Client.score in a loop (one request at a time)
  kairos async        AsyncClient.score from --depth concurrent tasks (8 and 64), pipelined on one connection
  redis-py sync       Redis.get of a 512-byte value in a loop
  redis-py async      redis.asyncio get from --depth concurrent tasks (its pool: one connection per task)
plus the client-side cost of decoding a 1,000-score SCORE answer.

Latency is measured per request in the client (call to result, including the time a pipelined request waits
behind the others). Not a test: run it by hand (see run-bench.sh) against a release server build.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import kairos_client as kc  # noqa: E402
from kairos_client import protocol as P  # noqa: E402

CANDIDATES = ["item-%d" % (i * 19 % 2000) for i in range(100)]


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def summary(name, latencies_ns, elapsed_s):
    lat = sorted(latencies_ns)
    return {
        "case": name,
        "requests": len(lat),
        "req_per_s": len(lat) / elapsed_s,
        "p50_us": percentile(lat, 50) / 1000.0,
        "p99_us": percentile(lat, 99) / 1000.0,
        "p999_us": percentile(lat, 99.9) / 1000.0,
    }


def run_sync(name, call, seconds, warmup=0.5):
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        call()
    lat = []
    append = lat.append
    clock = time.perf_counter_ns
    start = clock()
    stop = start + int(seconds * 1e9)
    t = start
    while t < stop:
        call()
        t2 = clock()
        append(t2 - t)
        t = t2
    return summary(name, lat, (t - start) / 1e9)


async def run_async(name, make_call, seconds, depth, warmup=0.5):
    lat = []
    clock = time.perf_counter_ns
    state = {"record": False, "stop": False}

    async def worker():
        call = make_call()
        while not state["stop"]:
            t = clock()
            await call()
            if state["record"]:
                lat.append(clock() - t)

    tasks = [asyncio.ensure_future(worker()) for _ in range(depth)]
    await asyncio.sleep(warmup)
    state["record"] = True
    start = clock()
    await asyncio.sleep(seconds)
    state["stop"] = True
    elapsed = (clock() - start) / 1e9
    await asyncio.gather(*tasks)
    return summary(name, lat, elapsed)


def decode_cost(n=1000, reps=20000):
    payload = (struct.pack("<H", 7) + b"default" + struct.pack("<Q", 1) + struct.pack("<BI", 0, n)
               + struct.pack("<%df" % n, *[i * 0.001 for i in range(n)]) + bytes(n))
    items = ["item-%d" % i for i in range(n)]
    out = {}
    for fmt in ("array", "numpy", "list"):
        if fmt == "numpy":
            try:
                import numpy  # noqa: F401
            except ImportError:
                continue
        P.decode_scores(payload, items, fmt)
        t = time.perf_counter()
        for _ in range(reps):
            P.decode_scores(payload, items, fmt)
        out["decode_1000_scores_%s_us" % fmt] = (time.perf_counter() - t) / reps * 1e6
    t = time.perf_counter()
    for _ in range(reps // 10):
        P.encode_score("default", "user-1", items)
    out["encode_1000_candidates_us"] = (time.perf_counter() - t) / (reps // 10) * 1e6
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True, help="kairos serve port")
    ap.add_argument("--redis-port", type=int, help="local redis-server port (redis-py must be importable)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--depth", default="8,64", help="concurrent requests in the async cases (comma-separated list)")
    ap.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = ap.parse_args()
    depths = [int(d) for d in str(args.depth).split(",") if d]

    results = []
    with kc.Client(args.host, args.port, timeout=5) as client:
        info = client.info().model("default")
        assert len(client.score("default", "user-1", CANDIDATES)) == 100
        results.append(run_sync("kairos sync score(100)", lambda: client.score("default", "user-1", CANDIDATES),
                                args.seconds))

    async def kairos_async(depth):
        async with kc.AsyncClient(args.host, args.port, timeout=5) as ac:
            return await run_async("kairos async score(100) x%d pipelined" % depth,
                                   lambda: (lambda: ac.score("default", "user-1", CANDIDATES)), args.seconds, depth)

    for depth in depths:
        results.append(asyncio.run(kairos_async(depth)))

    if args.redis_port:
        import redis
        import redis.asyncio

        value = os.urandom(512)
        r = redis.Redis(host=args.host, port=args.redis_port)
        r.set("kairos-bench", value)
        assert r.get("kairos-bench") == value
        results.append(run_sync("redis-py sync GET(512 B)", lambda: r.get("kairos-bench"), args.seconds))
        r.close()

        async def redis_async(depth):
            ar = redis.asyncio.Redis(host=args.host, port=args.redis_port)
            try:
                return await run_async("redis-py async GET(512 B) x%d" % depth,
                                       lambda: (lambda: ar.get("kairos-bench")), args.seconds, depth)
            finally:
                await ar.aclose()

        for depth in depths:
            results.append(asyncio.run(redis_async(depth)))

    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "model": "%s v%d (%d items, %d dims, %s)" % (info.name, info.version, info.items, info.dimensions,
                                                    info.encoding),
        "seconds_per_case": args.seconds,
    }
    if args.redis_port:
        meta["redis_py"] = redis.__version__
    costs = decode_cost()
    if args.json:
        print(json.dumps({"meta": meta, "results": results, "client_costs": costs}, indent=1))
        return
    print("# " + ", ".join("%s=%s" % kv for kv in meta.items()))
    print("%-42s %10s %10s %10s %10s" % ("case", "req/s", "p50 us", "p99 us", "p99.9 us"))
    for r in results:
        print("%-42s %10.0f %10.1f %10.1f %10.1f" % (r["case"], r["req_per_s"], r["p50_us"], r["p99_us"],
                                                     r["p999_us"]))
    print("# client-side: " + ", ".join("%s=%.2f" % kv for kv in costs.items()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
