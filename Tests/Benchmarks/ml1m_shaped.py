#!/usr/bin/env python3
"""Writes a synthetic MovieLens-1M-shaped log: 6,040 users, 3,706 items, 1,000,209 distinct (user, item) events,
heavy-tailed user activity (at least 20 each) and Zipf-like item popularity, ratings 1-5, timestamps over 3 years.
Same shape and sparsity as ML-1M (the work an ALS fit does depends on the number of distinct pairs), no real data.

Usage: python3 ml1m_shaped.py OUT.csv [--seed 7]   (needs numpy)
"""
import argparse

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--seed", type=int, default=7)
ap.add_argument("--users", type=int, default=6040)
ap.add_argument("--items", type=int, default=3706)
ap.add_argument("--events", type=int, default=1_000_209)
a = ap.parse_args()
rng = np.random.default_rng(a.seed)
# Per-user counts: a floor of 20 plus a Pareto tail, scaled to the total; capped at the catalogue size.
tail = rng.pareto(1.3, a.users)
counts = 20 + np.floor(tail / tail.sum() * (a.events - 20 * a.users)).astype(np.int64)
counts = np.minimum(counts, a.items)
while counts.sum() < a.events:
    counts[rng.integers(0, a.users)] += 1
    counts = np.minimum(counts, a.items)
item_p = 1.0 / np.arange(1, a.items + 1) ** 0.9
item_p /= item_p.sum()
perm = rng.permutation(a.items)
start, span = 956_703_932, 3 * 365 * 86400
with open(a.out, "w") as f:
    f.write("user,item,timestamp,value\n")
    for u in range(a.users):
        picks = rng.choice(a.items, size=int(counts[u]), replace=False, p=item_p)
        times = np.sort(start + rng.integers(0, span, size=len(picks)))
        ratings = rng.integers(1, 6, size=len(picks))
        f.write("".join(f"{u},{perm[i]},{t},{r}\n" for i, t, r in zip(picks, times, ratings)))
