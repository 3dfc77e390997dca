#!/usr/bin/env python3
"""Hot-reload soak benchmark: N swaps of a ~100 MB model under `kairos bench` load.

Reports: requests and errors during the swaps; p99 latency during the swaps against a steady-state run of the same
load just before (ratio, bar <= 2x); resident memory of the server after the first swap and at the end (bar: within
10%); time from rename() to the server answering with the new version, p50/p99 (bar: under 100 ms), measured by
polling INFO on a dedicated connection every ~1 ms after each rename (so to about 1 ms).

Usage: python3 Tests/Benchmarks/run-reload-soak.py [--swaps 1000] [--items 350000] [--connections 16]
Standard library only. Builds the release binary first. Run it alone (touch /tmp/kairos-bench.lock meanwhile).
By default each version reuses the published file (header bumped, renamed back in: the server still reads, verifies
and swaps the whole file); --rewrite writes every byte of every version, --control writes them without swapping.
Files are written to the page cache without fsync: what is measured starts at rename().
"""
import argparse, json, os, socket, statistics, struct, subprocess, sys, tempfile, time

P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63,
                      0x27D4EB2F165667C5)
M = (1 << 64) - 1


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M


def xxh64(data, seed=0):
    """Reference XXH64 (only used on 120-byte headers here)."""
    n, i = len(data), 0
    def rnd(acc, lane):
        return (rotl((acc + lane * P2) & M, 31) * P1) & M
    if n >= 32:
        v = [(seed + P1 + P2) & M, (seed + P2) & M, seed, (seed - P1) & M]
        while i + 32 <= n:
            for j in range(4):
                v[j] = rnd(v[j], struct.unpack_from("<Q", data, i + 8 * j)[0])
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M
        for x in v:
            h = (((h ^ rnd(0, x)) * P1) + P4) & M
    else:
        h = (seed + P5) & M
    h = (h + n) & M
    while i + 8 <= n:
        h = ((rotl(h ^ rnd(0, struct.unpack_from("<Q", data, i)[0]), 27) * P1) + P4) & M
        i += 8
    if i + 4 <= n:
        h = ((rotl(h ^ ((struct.unpack_from("<I", data, i)[0] * P1) & M), 23) * P2) + P3) & M
        i += 4
    while i < n:
        h = (rotl(h ^ ((data[i] * P5) & M), 11) * P1) & M
        i += 1
    h ^= h >> 33; h = (h * P2) & M; h ^= h >> 29; h = (h * P3) & M; h ^= h >> 32
    return h


assert xxh64(b"abc") == 0x44BC2CF5AD770999


def with_version(base, version):
    """The model bytes with the header's model version replaced and the header checksum re-sealed."""
    b = bytearray(base[:128])
    struct.pack_into("<Q", b, 48, version)
    struct.pack_into("<Q", b, 120, xxh64(bytes(b[:120])))
    return bytes(b)


def info_version(sock, rid):
    """Sends INFO and returns the version of the first model."""
    sock.sendall(struct.pack("<BBBBII", 0xCA, 1, 0x03, 0, rid, 0))
    head = recv_exact(sock, 12)
    length = struct.unpack_from("<I", head, 8)[0]
    payload = recv_exact(sock, length)
    off = 12 + 2  # limits, model count
    name_len = struct.unpack_from("<H", payload, off)[0]
    return struct.unpack_from("<Q", payload, off + 2 + name_len)[0]


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise RuntimeError("server closed the connection")
        out += chunk
    return out


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def settled_rss(pid):
    """RSS once the loader has unmapped the previous model (it does so just after a swap): the lowest of 1 s of
    samples. Used for both the first and the last sample, so they compare the same phase."""
    low = rss_kib(pid)
    for _ in range(20):
        time.sleep(0.05)
        low = min(low, rss_kib(pid))
    return low


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * len(s) + 0.5)) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--swaps", type=int, default=1000)
    ap.add_argument("--items", type=int, default=350000)
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--steady-seconds", type=float, default=10)
    ap.add_argument("--load", default="copy", choices=["copy", "mmap"], help="kairos serve --load")
    ap.add_argument("--rewrite", action="store_true",
                    help="write all 100 MB of each version (default: move the served file aside, bump the version in "
                         "its 128-byte header, rename it back in; the server still reads, verifies and swaps all of it)")
    ap.add_argument("--control", action="store_true",
                    help="write each version but never rename it in (no swaps): the harness's own cost on the same cores")
    ap.add_argument("--interval-ms", type=float, default=0,
                    help="start a swap at most every this many ms (0: back to back, the loader never rests)")
    ap.add_argument("--kairos", default=None, help="a kairos binary to measure instead of building this checkout's")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    kairos = args.kairos
    if kairos is None:
        subprocess.run(["swift", "build", "-c", "release", "--product", "kairos"], cwd=root, check=True)
        bindir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=root, check=True,
                                capture_output=True, text=True).stdout.strip()
        kairos = os.path.join(bindir, "kairos")
    out = args.out or tempfile.mkdtemp(prefix="kairos-soak.")
    models = os.path.join(out, "models")
    os.makedirs(models, exist_ok=True)
    base_path = os.path.join(out, "base.kmodel")
    subprocess.run([kairos, "make-demo-model", "--out", base_path, "--items", str(args.items), "--users",
                    str(args.users), "--dimensions", "64"], check=True, stdout=subprocess.DEVNULL)
    base = open(base_path, "rb").read()
    size_mb = len(base) / 1e6
    target = os.path.join(models, "soak.kmodel")
    tmp = os.path.join(models, ".soak.kmodel.tmp")
    with open(target, "wb") as f:
        f.write(with_version(base, 1) + base[128:])
    server = subprocess.Popen([kairos, "serve", "--models", models, "--port", "0", "--threads", "1", "--log-level",
                               "warning", "--rescan-interval", "3600", "--debounce-ms", "5", "--load", args.load],
                              stdout=subprocess.PIPE, stderr=open(os.path.join(out, "server.log"), "w"), text=True)
    try:
        line = server.stdout.readline()
        port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        bench = [kairos, "bench", "--port", str(port), "--op", "score", "--candidates", "100", "--items",
                 str(args.items), "--users", str(args.users), "--connections", str(args.connections), "--json"]
        steady = json.loads(subprocess.run(bench + ["--duration", str(args.steady_seconds)], check=True,
                                           capture_output=True, text=True).stdout)
        probe = socket.create_connection(("127.0.0.1", port))
        probe.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Load for the whole swap phase: a generous duration, stopped when the swaps are done.
        load = subprocess.Popen(bench + ["--duration", "3600"], stdout=subprocess.PIPE, text=True)
        time.sleep(1)  # let the load reach steady state before the first swap (not synchronization)
        latencies, rss_first = [], None
        last_start = 0.0
        for i in range(args.swaps):
            version = i + 2
            pause = last_start + args.interval_ms / 1000 - time.perf_counter()
            if pause > 0:
                time.sleep(pause)  # pacing the publisher, not synchronization
            last_start = time.perf_counter()
            if i == 1:
                rss_first = settled_rss(server.pid)  # one model loaded, loader idle: same phase as the final sample
            if args.rewrite or args.control:
                with open(tmp, "wb") as f:
                    f.write(with_version(base, version))
                    f.write(memoryview(base)[128:])
            else:
                # The server holds its own copy (--load copy), so the published file can be reused: only the header
                # changes, and the publisher's cost stays off the two cores the measurement runs on.
                os.rename(target, tmp)
                fd = os.open(tmp, os.O_WRONLY)
                os.pwrite(fd, with_version(base, version), 0)
                os.close(fd)
            t0 = time.perf_counter()
            if args.control:
                info_version(probe, version)  # one round trip, like the polling below, but nothing to wait for
            else:
                os.rename(tmp, target)
                # Polled every ~1 ms, not in a busy loop: a busy poller is a third CPU-bound process on the two
                # cores, ping-ponging INFO with the event loop, and it took CPU from the very load it was timing.
                while info_version(probe, version) != version:
                    time.sleep(0.001)
            latencies.append((time.perf_counter() - t0) * 1000)
            if (i + 1) % 100 == 0:
                print(f"{i + 1} swaps, last {latencies[-1]:.1f} ms, rss {rss_kib(server.pid) / 1024:.0f} MiB", flush=True)
        rss_end = settled_rss(server.pid)
        load.send_signal(2)
        during = json.loads(load.communicate()[0])
    finally:
        server.send_signal(15)
        server.wait(timeout=30)
    ratio = during["latency_us"]["p99"] / steady["latency_us"]["p99"]
    result = {
        "model_mb": size_mb, "swaps": args.swaps, "rename_to_serving_ms": {"p50": pct(latencies, 50),
                                                                           "p99": pct(latencies, 99), "max": max(latencies),
                                                                           "each": [round(x, 1) for x in latencies]},
        "steady": steady, "during_swaps": during, "p99_ratio": ratio,
        "rss_mib_after_first_swap": rss_first / 1024, "rss_mib_end": rss_end / 1024,
    }
    json.dump(result, open(os.path.join(out, "soak.json"), "w"), indent=1)
    print(f"model {size_mb:.0f} MB (--load {args.load}), {args.swaps} swaps "
          f"({'back to back' if args.interval_ms == 0 else f'one per {args.interval_ms:.0f} ms at most'}) "
          f"under {args.connections}-connection SCORE load")
    print(f"requests during swaps {during['requests']}, errors {during['errors']}  (bar: 0 errors)")
    print(f"p99 steady {steady['latency_us']['p99']:.0f} us, during swaps {during['latency_us']['p99']:.0f} us, "
          f"ratio {ratio:.2f}  (bar <= 2.0)")
    print(f"rss after first swap {rss_first / 1024:.0f} MiB, at end {rss_end / 1024:.0f} MiB, "
          f"change {100 * (rss_end - rss_first) / rss_first:+.1f}%  (bar within 10%)")
    print(f"rename -> serving: p50 {pct(latencies, 50):.1f} ms, p99 {pct(latencies, 99):.1f} ms, "
          f"max {max(latencies):.1f} ms  (bar < 100 ms)")
    print(f"(JSON in {out}/soak.json)")


if __name__ == "__main__":
    sys.exit(main())
