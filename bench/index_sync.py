"""What a periodic save of the in-process index costs two workers sharing one directory.

Each round, worker A adds ``--adds`` entries one at a time (600: ten a second for the
default 60 s interval), then:

* ``A.sync``: writes what changed as a delta file (deja's periodic save since the deltas);
* ``B.sync``: worker B takes that delta in;
* then A adds as many again and ``A.save``: a full base (what every periodic save wrote
  before the deltas, and what a compaction still writes), and ``B.sync`` merges that base
  (what each worker did with the others' saves before).

While each step runs, a thread searches that worker's index about once a millisecond: the
longest single search is how long a request's lookup can stall behind the step (searches
wait for the index lock while a save copies what it writes, or a merge inserts entries). Figures are medians over ``--rounds`` rounds; the
delta and the full save are measured in the same rounds, so their ratio holds on a noisy
machine.

Data: the index ``bench/semantic.py`` builds and saves (``.bench/semantic-<n>-i8``, 384-d
clustered synthetic vectors, HNSW); it is copied to a temporary directory first. New
entries come from the same generator with another seed.

    .venv/bin/python bench/index_sync.py [--entries 100000] [--rounds 5] [--adds 600]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semantic import ROOT, build_or_load, clustered, scope_of

from deja.semantic.embedders import LocalEmbedder
from deja.semantic.index import InProcessIndex


class Prober:
    """Searches an index back to back in a thread; reports the longest search of a span
    (and notes every search's start and duration in ``times``)."""

    def __init__(self, index: InProcessIndex, scope: str, queries: np.ndarray) -> None:
        self.index, self.scope, self.queries = index, scope, queries
        self.longest = 0.0
        self.times: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            started = time.perf_counter()
            self.index.search(self.queries[i % len(self.queries)], scope=self.scope, k=4)
            took = time.perf_counter() - started
            self.longest = max(self.longest, took)
            self.times.append((started, took))
            i += 1
            time.sleep(0.001)  # a request every millisecond or so, not a busy loop

    def measure(self, step: Callable[[], object]) -> tuple[float, float]:
        """(seconds ``step`` took, longest search while it ran)."""
        time.sleep(0.01)
        self.longest = 0.0
        started = time.perf_counter()
        step()
        spent = time.perf_counter() - started
        time.sleep(0.005)  # the search that waited finishes
        return spent, self.longest

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--adds", type=int, default=600)
    args = parser.parse_args()
    scope = scope_of(LocalEmbedder().id)
    source = ROOT / ".bench" / f"semantic-{args.entries}-i8"
    build_or_load(source, args.entries, scope, rebuild=False)  # builds it when missing
    rows: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench") as tmp:
        shared = Path(tmp) / "index"
        shutil.copytree(source, shared)
        a = InProcessIndex(dim=384, max_entries=None)
        b = InProcessIndex(dim=384, max_entries=None)
        a.load(shared)
        b.load(shared)
        fresh = clustered(args.rounds * 2 * args.adds + 1, seed=7)
        a.add("warm", fresh[-1], scope=scope)  # the first change copies the memory map
        b.add("warm-b", fresh[-1], scope=scope)
        a.sync(shared)
        b.sync(shared)
        queries = clustered(200, seed=3)
        on_a, on_b = Prober(a, scope, queries), Prober(b, scope, queries)
        n = 0

        def add_some() -> None:
            nonlocal n
            for _ in range(args.adds):
                a.add(f"new-{n}", fresh[n], scope=scope)
                n += 1

        try:
            for round in range(args.rounds):
                add_some()
                rows.setdefault("A.sync (writes a delta)", []).append(
                    on_a.measure(lambda: a.sync(shared))
                )
                rows.setdefault("B.sync (takes the delta in)", []).append(
                    on_b.measure(lambda: b.sync(shared))
                )
                add_some()
                rows.setdefault("A.save (a full base)", []).append(
                    on_a.measure(lambda: a.save(shared))
                )
                rows.setdefault("B.sync (merges that base)", []).append(
                    on_b.measure(lambda: b.sync(shared))
                )
                print(f"round {round + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            on_a.stop()
            on_b.stop()
        assert sorted(a._meta) == sorted(b._meta), "the workers do not hold the same entries"
    print(
        f"index sync, {args.entries} entries + {args.adds} new per round, "
        f"{args.rounds} rounds (medians), {platform.machine()}, Python {platform.python_version()}"
    )
    print(f"{'step':32} {'took':>10} {'longest search':>16}")
    for name, values in rows.items():
        took = statistics.median(v[0] for v in values)
        stall = statistics.median(v[1] for v in values)
        print(f"{name:32} {took * 1000:8.1f} ms {stall * 1000:13.1f} ms")
    delta = statistics.median(v[0] for v in rows["A.sync (writes a delta)"])
    full = statistics.median(v[0] for v in rows["A.save (a full base)"])
    print(f"a delta sync takes {delta / full:.3f}x a full save's time")
    print(
        "reproduce: .venv/bin/python bench/index_sync.py "
        f"--entries {args.entries} --rounds {args.rounds} --adds {args.adds}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
