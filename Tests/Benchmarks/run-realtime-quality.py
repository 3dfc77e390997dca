#!/usr/bin/env python3
"""What folding a user's just-now events into TOPK is worth, offline: a session protocol on a temporal split.

Each log is split at the 0.8 quantile of its timestamps; `kairos train` (default configuration) learns a model from
the past part, and `kairos serve` serves it. For every user known to the model with more than N events after the
split, the first N of those events are the request's real-time context, `now` is the Nth event's time, and the truth
is the items the user had within WINDOW seconds after it, neither in the context nor seen in the past part (the
exclude-seen protocol of METRICS.md, on the next items of a session). TOPK (k 10, exclude-seen) is asked without
events (its answer less the context's items) and with the events at strength x M for each multiplier M, which
scales the events against the user's vector in the fold-in `normalise(u + r x sum strength x w(age) x v_item)`
(PROTOCOL.md; `r` is the model's learned real-time weight, printed per log, so M = 1 is what the model serves).
Printed: NDCG@10 per case, and each case's paired gain over "no events" with its standard error. (METRICS.md,
"Real-time events", is the trainer's own version of this protocol, on its validation and test splits.)

Logs: ml-100k and instacart-sample from DATA_DIR (`python3 ../shared/data/fetch_datasets.py --out DATA_DIR`; never
committed), and a `kairos synth` log (2000 users, 3000 items, 20 categories, 90 days), whose users keep to a few
categories at a time: 68% of the next day's events fall in the categories of the context's.

Usage: python3 Tests/Benchmarks/run-realtime-quality.py [--data /tmp/kairos-data] [--kairos BIN] [--multipliers ...]
Standard library only. Without --kairos it builds and uses the release binary.
"""
import argparse, collections, csv, json, math, os, re, statistics, subprocess, sys, tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
from kairos_client import Client, Event  # noqa: E402

STRENGTHS = {"view": 1, "click": 2, "cart": 4, "purchase": 8}  # kairos train's defaults


def strength(row):
    if row.get("value"):
        return float(row["value"])
    return float(STRENGTHS.get(row.get("event"), 1))


def split(path, out_dir, name):
    """Writes NAME-past.csv and NAME-future.csv (cut at the 0.8 quantile of timestamps); returns their paths."""
    rows = list(csv.DictReader(open(path)))
    times = sorted(int(r["timestamp"]) for r in rows)
    cut = times[int(0.8 * len(times))]
    paths = []
    for part, keep in (("past", lambda t: t < cut), ("future", lambda t: t >= cut)):
        p = os.path.join(out_dir, f"{name}-{part}.csv")
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(r for r in rows if keep(int(r["timestamp"])))
        paths.append(p)
    return paths


def ndcg(ranking, truth, k=10):
    dcg = sum(1 / math.log2(i + 2) for i, x in enumerate(ranking[:k]) if x in truth)
    return dcg / sum(1 / math.log2(i + 2) for i in range(min(k, len(truth))))


def evaluate(client, model, past, future, n_context, window, multipliers):
    seen = collections.defaultdict(set)
    for r in csv.DictReader(open(past)):
        seen[r["user"]].add(r["item"])
    known_items = set().union(*seen.values())
    later = collections.defaultdict(list)
    for i, r in enumerate(csv.DictReader(open(future))):
        later[r["user"]].append((int(r["timestamp"]), i, r["item"], strength(r)))
    results = collections.defaultdict(list)
    for user, events in later.items():
        if user not in seen or len(events) <= n_context:
            continue
        events.sort()
        context, now = events[:n_context], events[n_context - 1][0]
        context_items = {e[2] for e in context}
        truth = {e[2] for e in events[n_context:] if e[0] <= now + window and e[2] not in context_items
                 and e[2] not in seen[user] and e[2] in known_items}
        if not truth:
            continue
        plain = client.topk(model, user, 10 + len(context_items), now=now)
        results["no events"].append(ndcg([x.item for x in plain.items if x.item not in context_items], truth))
        for m in multipliers:
            folded = client.topk(model, user, 10, now=now, events=[Event(e[2], e[3] * m, e[0]) for e in context])
            results[f"events x{m:g}"].append(ndcg([x.item for x in folded.items], truth))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/tmp/kairos-data")
    ap.add_argument("--kairos", default=None)
    ap.add_argument("--multipliers", default="0.01,0.1,1,10")
    args = ap.parse_args()
    multipliers = [float(x) for x in args.multipliers.split(",")]
    kairos = args.kairos
    if kairos is None:
        subprocess.run(["swift", "build", "-c", "release", "--product", "kairos"], cwd=REPO, check=True)
        kairos = os.path.join(REPO, ".build", "release", "kairos")
    work = tempfile.mkdtemp(prefix="kairos-realtime.")
    models = os.path.join(work, "models")
    os.makedirs(models)
    synth = os.path.join(work, "synth.csv")
    synth_items = os.path.join(work, "synth-items.csv")
    subprocess.run([kairos, "synth", "--out", synth, "--items-out", synth_items, "--users", "2000", "--items", "3000",
                    "--seed", "3"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # (name, log, items file, context events, truth window): ml-100k ratings come in sittings; an Instacart order
    # shares one timestamp, so its window 0 is the rest of the basket.
    cases = [("synth", synth, synth_items, 3, 86400),
             ("ml-100k", os.path.join(args.data, "ml-100k", "events.csv"), os.path.join(args.data, "ml-100k", "items.csv"), 5, 86400),
             ("instacart", os.path.join(args.data, "instacart-sample", "events.csv"), None, 3, 0)]
    cases = [c for c in cases if os.path.exists(c[1])]
    splits = {}
    for name, log, items, _, _ in cases:
        past, future = split(log, work, name)
        splits[name] = (past, future)
        cmd = [kairos, "train", past, "--name", name, "-o", os.path.join(models, f"{name}.kmodel"), "--quiet"]
        subprocess.run(cmd + (["--items", items] if items else []), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    server = subprocess.Popen([kairos, "serve", "--models", models, "--port", "0", "--log-level", "error"],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"listening on [^ ]*:(\d+)", server.stdout.readline()).group(1))
        client = Client("127.0.0.1", port, timeout=30)
        print(f"{'log (context, window)':30}{'case':>16}{'users':>7}{'ndcg@10':>10}{'gain':>10}{'se':>8}")
        for name, _, _, n_context, window in cases:
            info = json.loads(subprocess.run([kairos, "inspect", os.path.join(models, f"{name}.kmodel"), "--json"],
                                             check=True, capture_output=True, text=True).stdout)
            print(f"{name}: model real-time weight r = {info['metadata']['parameters'].get('realtime_weight', 1):g}")
            r = evaluate(client, name, *splits[name], n_context, window, multipliers)
            base = r["no events"]
            for case, values in r.items():
                gains = [a - b for a, b in zip(values, base)]
                se = statistics.stdev(gains) / math.sqrt(len(gains)) if len(gains) > 1 else 0.0
                print(f"{f'{name} ({n_context}, {window} s)':30}{case:>16}{len(values):7d}{statistics.mean(values):10.4f}"
                      f"{statistics.mean(gains):+10.4f}{se:8.4f}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
