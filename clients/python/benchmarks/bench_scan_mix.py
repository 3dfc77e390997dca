#!/usr/bin/env python3
"""SCORE latency from an AsyncClient that is also running catalogue scans: two tasks looping topk(k=10) and one
looping score(100 candidates) share one client for --seconds; prints the score count and its p50/p99. With scans on
the score's connection, each score waits behind a scan's answer (the server answers a connection in order).

    python3 bench_scan_mix.py --port KAIROS_PORT [--seconds 4] [--client PATH_TO_clients/python]

Against a large catalogue, e.g. `kairos make-demo-model --items 500000 --dimensions 64 --out DIR/big.kmodel` and
`kairos serve --models DIR` (release build).
"""

import argparse
import asyncio
import os
import sys
import time

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--seconds", type=float, default=4.0)
ap.add_argument("--client", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
args = ap.parse_args()
sys.path.insert(0, args.client)
from kairos_client import AsyncClient  # noqa: E402

ITEMS = ["item-%d" % (i * 37) for i in range(100)]


async def main():
    async with AsyncClient("127.0.0.1", args.port, timeout=20) as client:
        stop = False
        scans = 0

        async def scan_loop():
            nonlocal scans
            while not stop:
                await client.topk("default", "user-%d" % (scans % 1000), 10)
                scans += 1

        tasks = [asyncio.ensure_future(scan_loop()) for _ in range(2)]
        lat = []
        end = time.perf_counter() + args.seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter_ns()
            await client.score("default", "user-%d" % (len(lat) % 1000), ITEMS)
            lat.append((time.perf_counter_ns() - t0) / 1000)
        stop = True
        await asyncio.gather(*tasks)
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    print("score: %d in %g s, p50 %.0f us, p99 %.0f us; topk: %d" % (len(lat), args.seconds, p(0.5), p(0.99), scans))


asyncio.run(main())
