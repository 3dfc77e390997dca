#!/usr/bin/env python3
"""Peer for the trainer benchmark: fits `implicit` ALS (CPU, conjugate gradient) on a user,item,... CSV.

Prints one line `implicit_fit_seconds=<s> nnz=<n>` per run. Only model.fit is timed, as `fitSeconds` in
`kairos train --metrics-json` times only the factorization. Run from a throwaway venv (never a project dependency):
    python3 -m venv /tmp/implicit-venv && /tmp/implicit-venv/bin/pip install implicit==0.7.3
"""
import argparse
import csv
import time

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

ap = argparse.ArgumentParser()
ap.add_argument("csv")
ap.add_argument("--factors", type=int, default=64)
ap.add_argument("--iterations", type=int, default=15)
ap.add_argument("--regularization", type=float, default=20.0)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--runs", type=int, default=1)
a = ap.parse_args()

users, items, rows, cols = {}, {}, [], []
with open(a.csv, newline="") as f:
    r = csv.reader(f)
    next(r)
    for row in r:
        rows.append(users.setdefault(row[0], len(users)))
        cols.append(items.setdefault(row[1], len(items)))
m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), len(items)))
m.sum_duplicates()
m.data = 1.0 + np.log1p(m.data).astype(np.float32)  # any positive confidences: the work is the same
for _ in range(a.runs):
    model = AlternatingLeastSquares(factors=a.factors, iterations=a.iterations, regularization=a.regularization,
                                    num_threads=a.threads, random_state=42, calculate_training_loss=False)
    t = time.perf_counter()
    model.fit(m, show_progress=False)
    print(f"implicit_fit_seconds={time.perf_counter() - t:.4f} nnz={m.nnz}", flush=True)
