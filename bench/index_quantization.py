"""How the HNSW graph stores its vectors: f32, bf16 or i8, on vectors of real prompts.

``InProcessIndex`` searches a large scope with a usearch HNSW graph and re-ranks the
graph's candidates by their exact similarity from the full-precision rows, so the graph's
own precision only decides which candidates it proposes. This benchmark measures what each
storage costs and finds, on 100k vectors distributed like the embedded model's vectors of
real prompts (synthetic clustered vectors, as in bench/semantic.py, are not):

* data: the embedded model's vectors of the Banking77 queries (shared/data/banking77,
  ~10k distinct texts); 1,000 of them, drawn at random, are the queries and never stored;
  the others are stored together with noisy copies of themselves (each vector plus
  N(0, 0.45^2/384 I), normalised: cosine ~0.91 to its original) up to ``--entries``;
* per setting, in one run: build time, search p50 over ``--rounds`` passes of the queries
  (median of the passes' p50s; the settings alternate pass by pass), and recall@1: the
  share of queries whose exact nearest stored vector is the first result.

    .venv/bin/python bench/index_quantization.py [--entries 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from deja.semantic.embedders import LocalEmbedder  # before usearch (see semantic/conftest)
from deja.semantic.index import InProcessIndex

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "banking77" / "train.csv"
SETTINGS = (("f32", 64), ("bf16", 64), ("i8", 64), ("i8", 96))
SCOPE = "s"


def prompt_vectors() -> np.ndarray:
    """The embedded model's vectors of the distinct Banking77 texts (cached under .bench/)."""
    cache = ROOT / ".bench" / "banking77-vectors.npy"
    if cache.exists():
        return np.load(cache)
    with DATA.open(newline="") as f:
        texts = list(dict.fromkeys(row[0] for row in list(csv.reader(f))[1:]))
    embedder = LocalEmbedder()
    vectors = np.vstack([embedder.embed([text]) for text in texts]).astype(np.float32)
    cache.parent.mkdir(exist_ok=True)
    np.save(cache, vectors)
    return vectors


def dataset(entries: int) -> tuple[np.ndarray, np.ndarray]:
    real = prompt_vectors()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(real))
    queries, base = real[order[:1000]], real[order[1000:]]
    parts = [base]
    while sum(len(p) for p in parts) < entries:
        noise = rng.standard_normal(base.shape).astype(np.float32) * (0.45 / np.sqrt(384))
        copy = base + noise
        parts.append(copy / np.linalg.norm(copy, axis=1, keepdims=True))
    return np.vstack(parts)[:entries], queries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    stored, queries = dataset(args.entries)
    exact: list[int] = []
    for start in range(0, len(queries), 100):
        exact += np.argmax(queries[start : start + 100] @ stored.T, axis=1).tolist()
    ids = [f"e{i}" for i in range(len(stored))]
    indexes: dict[tuple[str, int], InProcessIndex] = {}
    for quantization, expansion in SETTINGS:
        index = InProcessIndex(
            dim=stored.shape[1],
            max_entries=None,
            hnsw_threshold=1000,
            quantization=quantization,
            expansion_search=expansion,
        )
        started = time.perf_counter()
        index.add_many(ids, stored, scope=SCOPE)
        built = time.perf_counter() - started
        found = [index.search(q, scope=SCOPE, k=4)[0].id for q in queries]
        recall = sum(f == ids[e] for f, e in zip(found, exact, strict=True)) / len(queries)
        indexes[(quantization, expansion)] = index
        print(
            f"{quantization} graph built in {built:.1f} s; recall@1 (ef {expansion}) {recall:.3f}"
        )
    p50s: dict[tuple[str, int], list[float]] = {setting: [] for setting in SETTINGS}
    for _ in range(args.rounds):
        for setting, index in indexes.items():
            times = []
            for q in queries:
                started = time.perf_counter()
                index.search(q, scope=SCOPE, k=4)
                times.append(time.perf_counter() - started)
            p50s[setting].append(statistics.median(times) * 1000)
    baseline = statistics.median(p50s[SETTINGS[0]])
    for (quantization, expansion), values in p50s.items():
        median = statistics.median(values)
        print(
            f"{quantization:>4} ef {expansion:>3}: search p50 {median:.3f} ms"
            f" ({median / baseline:.2f} x f32 ef 64; passes: "
            + ", ".join(f"{v:.3f}" for v in values)
            + ")"
        )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()},"
        f" {len(stored)} entries, {len(queries)} queries"
    )
    print("command: .venv/bin/python bench/index_quantization.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
