#!/usr/bin/env python3
"""faiss peer of kairos-kernel-bench: one-query exact inner-product top-k with faiss.IndexFlatIP on one thread.

Reads the matrix written by `kairos-kernel-bench --write-f32 PATH` (raw little-endian row-major float32, no
padding) and the query from PATH.query (its length gives the dimension), then times `index.search(q, k)` for a
single query over several rounds and prints one JSON object on stdout. Needs numpy and faiss-cpu (see
run-kernel-bench.sh, which installs them in a throwaway venv).

For nq=1 faiss does not use BLAS (the BLAS path starts at distance_compute_blas_threshold = 20 queries); it scans
with its own SIMD inner products and a heap, which is the same shape of work as the Kairos full scan.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import faiss
import numpy as np


def percentile(sorted_values, p):
    """Nearest-rank percentile, as kairos-kernel-bench computes it."""
    rank = max(1, -(-int(p * 100) * len(sorted_values) // 100))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def simd_level():
    """The SIMD level faiss dispatched to, when this faiss version tells."""
    try:
        return faiss.SIMDConfig.get_level_name()
    except Exception:  # older faiss: per-ISA modules chosen by faiss.loader
        return getattr(faiss, "loaded", None) or "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="raw float32 matrix written by --write-f32 (query at DATA.query)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    query = np.fromfile(args.data + ".query", dtype="<f4")
    dims = query.size
    matrix = np.fromfile(args.data, dtype="<f4")
    if dims == 0 or matrix.size % dims != 0:
        sys.exit(f"faiss_peer: {args.data} holds {matrix.size} floats, not a multiple of the query length {dims}")
    matrix = matrix.reshape(-1, dims)
    rows = matrix.shape[0]
    query = np.ascontiguousarray(query.reshape(1, dims))

    faiss.omp_set_num_threads(args.threads)
    index = faiss.IndexFlatIP(dims)
    index.add(matrix)
    del matrix  # faiss holds its own copy

    for _ in range(args.warmup):
        index.search(query, args.k)

    samples_ms = []
    for _ in range(args.rounds):
        start = time.perf_counter_ns()
        scores, ids = index.search(query, args.k)
        samples_ms.append((time.perf_counter_ns() - start) / 1e6)

    ordered = sorted(samples_ms)
    median = statistics.median(ordered)
    result = {
        "tool": "faiss_peer",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "faiss_version": faiss.__version__,
        "faiss_compile_options": faiss.get_compile_options().strip(),
        "faiss_simd_level": simd_level(),
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "omp_threads": faiss.omp_get_max_threads(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "rows": rows,
        "dims": dims,
        "k": args.k,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "search_ms": {
            "min": ordered[0],
            "median": median,
            "p90": percentile(ordered, 0.9),
            "gb_per_s": rows * dims * 4 / (median * 1e6),
            "samples": samples_ms,
        },
        "topk_rows": [int(i) for i in ids[0]],
        "topk_scores": [float(s) for s in scores[0]],
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
