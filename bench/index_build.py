"""What building a scope's HNSW graph costs the searches running meanwhile.

A scope of the in-process index is searched exactly until it holds more than
``hnsw_threshold`` entries (20,000 by default); the add that crosses it builds the graph.
This benchmark fills one scope to ``--threshold - --before`` entries in one pass (no graph
yet), then adds entries one at a time across the threshold, as a stream of stores would,
while a thread searches the same index about once a millisecond (as requests would). It
prints, median of ``--rounds`` fresh indexes:

* the add that crossed the threshold: how long it took (the storing request pays it);
* how long from that add until the scope is searched through its graph;
* the longest single search during the adds (how long a request's lookup can stall);
* the median search before the crossing (exact), while the graph is built, and after;
* how many of the scope's entries a search for their own vector finds afterwards.

Data: 384-d clustered synthetic vectors (``bench/semantic.py``'s generator); queries are
fresh draws from it.

    .venv/bin/python bench/index_build.py [--threshold 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_sync import Prober
from semantic import clustered

from deja.semantic.index import InProcessIndex

SCOPE = "bench"


def one_round(threshold: int, before: int, after: int, seed: int) -> dict[str, float]:
    vectors = clustered(threshold + after, seed=seed)
    index = InProcessIndex(dim=384, max_entries=None, hnsw_threshold=threshold)
    start = threshold - before
    index.add_many([f"e{i}" for i in range(start)], vectors[:start], scope=SCOPE)
    prober = Prober(index, SCOPE, clustered(200, seed=seed + 1000))
    crossing = crossed_at = ready_at = 0.0
    try:
        time.sleep(0.05)
        for i in range(start, threshold + after):
            began = time.perf_counter()
            index.add(f"e{i}", vectors[i], scope=SCOPE)
            took = time.perf_counter() - began
            if i == threshold:  # the add that makes the scope hold threshold + 1
                crossing, crossed_at = took, began
            if not ready_at and index.is_hnsw(SCOPE):
                ready_at = time.perf_counter()
            time.sleep(0.0005)
        while not index.is_hnsw(SCOPE):  # a build still running elsewhere
            time.sleep(0.001)
        ready_at = ready_at or time.perf_counter()
        time.sleep(0.3)
    finally:
        prober.stop()
    before_times = [t for s, t in prober.times if s < crossed_at]
    during = [t for s, t in prober.times if crossed_at + crossing < s < ready_at]
    after_times = [t for s, t in prober.times if s > ready_at]
    sample = range(0, threshold + after, 7)
    found = sum(index.search(vectors[i], scope=SCOPE, k=1)[0].id == f"e{i}" for i in sample)
    return {
        "crossing_add_ms": crossing * 1000,
        "graph_ready_after_s": ready_at - crossed_at,
        "longest_search_ms": max(t for _, t in prober.times) * 1000,
        "search_before_ms": statistics.median(before_times) * 1000,
        "search_building_ms": statistics.median(during) * 1000 if during else float("nan"),
        "search_after_ms": statistics.median(after_times) * 1000,
        "found_share": found / len(sample),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=int, default=20_000)
    parser.add_argument("--before", type=int, default=100)
    parser.add_argument("--after", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = []
    for r in range(args.rounds):
        rounds.append(one_round(args.threshold, args.before, args.after, seed=r))
        print(f"round {r + 1}/{args.rounds}: {rounds[-1]}", file=sys.stderr)
    print(
        f"index build at the threshold, {args.threshold} entries, {args.rounds} rounds "
        f"(medians), {platform.machine()}, Python {platform.python_version()}"
    )
    for name in rounds[0]:
        value = statistics.median(r[name] for r in rounds)
        print(f"{name:24} {value:10.4f}")
    print(
        "reproduce: .venv/bin/python bench/index_build.py "
        f"--threshold {args.threshold} --rounds {args.rounds}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
