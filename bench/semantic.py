"""Semantic tier speed: index search and a full semantic check at 100k entries.

Targets (issue 5), on the project's 2-core machine:
    index search alone at 100k entries p50 <= 1 ms, HNSW recall@1 vs exact >= 0.98;
    a semantic check (embedded model + in-process index at 100k entries) p50 <= 10 ms.

Data: 384-d synthetic clustered vectors. Generator: numpy default_rng(seed), 1,000 centres
drawn from N(0, I) and normalised; each vector = its centre (chosen uniformly) +
N(0, (0.6^2 / 384) I), normalised, so two vectors of one cluster have cosine ~0.74 and of
two clusters ~0. Queries are fresh draws from the same distribution, not in the index.

The index is built once (one scope, HNSW above 20k entries, the graph's vectors stored as
``--quantization``), saved under ``.bench/semantic-<n>-<quantization>/`` and reloaded (memory-mapped) on later runs; ``--rebuild`` forces
a new build. Recall@1 compares the HNSW answer with an exact scan of the same vectors.

The check benchmark loads the same index into a SemanticCache whose scope is that of a
one-message chat request, adds the stored side of 300 labelled paraphrase pairs
(shared/semantic/dev.jsonl) as real entries, and times ``SemanticCache.check`` on the
other side of each pair (distinct texts, so every check embeds its text).

    .venv/bin/python bench/semantic.py [--entries 100000] [--queries 1000] [--rebuild]
        [--quantization i8|bf16|f32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from deja.request import Request
from deja.semantic.cache import SemanticCache
from deja.semantic.embedders import LocalEmbedder
from deja.semantic.index import QUANTIZATIONS, InProcessIndex

ROOT = Path(__file__).resolve().parent.parent
DIM = 384
CENTRES = 1000
NOISE = 0.6
MODEL = "openai/gpt-4o-mini"


def clustered(n: int, *, seed: int) -> np.ndarray:
    """``n`` unit vectors from the clustered generator described in the module docstring."""
    rng = np.random.default_rng(0)  # the centres are the same for data and queries
    centres = rng.standard_normal((CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, CENTRES, n)
    noise = rng.standard_normal((n, DIM)).astype(np.float32) * (NOISE / np.sqrt(DIM))
    out = centres[picks] + noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def scope_of(embedder_id: str) -> str:
    cache = SemanticCache(embedder=_IdOnly(embedder_id), verifier=None)
    query = cache.query(_request("x"))
    assert query is not None
    return query.scope


class _IdOnly:
    """An embedder stand-in that only names itself (to compute a scope without a model)."""

    dim = DIM

    def __init__(self, id: str) -> None:
        self.id = id

    def embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    async def aembed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


def _request(text: str) -> Request:
    return Request.chat(model=MODEL, messages=[{"role": "user", "content": text}])


def build_or_load(
    path: Path,
    n: int,
    scope: str,
    rebuild: bool,
    expansion: int | None = None,
    quantization: str = "i8",
) -> tuple[InProcessIndex, float]:
    def fresh() -> InProcessIndex:
        return InProcessIndex(
            dim=DIM, max_entries=None, expansion_search=expansion, quantization=quantization
        )

    index = fresh()
    if (path / "index.json").exists() and not rebuild:
        started = time.perf_counter()
        index.load(path)
        # the scope names the embedder: one saved for another embedder is rebuilt
        if scope in index._scopes:
            return index, time.perf_counter() - started
        print(f"{path} holds another embedder's scope: rebuilding")
        index = fresh()
    vectors = clustered(n, seed=1)
    started = time.perf_counter()
    index.add_many([f"syn-{i}" for i in range(n)], vectors, scope=scope)
    built = time.perf_counter() - started
    print(f"built {n} entries (HNSW) in {built:.1f} s")
    index.save(path)
    started = time.perf_counter()
    index = fresh()
    index.load(path)
    return index, time.perf_counter() - started


def bench_search(index: InProcessIndex, scope: str, queries: np.ndarray) -> dict[str, float]:
    for q in queries[:50]:  # warm the memory map and caches
        index.search(q, scope=scope, k=4)
    times = []
    hnsw_top = []
    hnsw_best = []
    for q in queries:
        started = time.perf_counter()
        found = index.search(q, scope=scope, k=4)
        times.append(time.perf_counter() - started)
        hnsw_top.append(found[0].id if found else None)
        hnsw_best.append(found[0].similarity if found else -1.0)
    # exact answers over the very same stored vectors (memory-mapped matrix)
    s = index._scopes[scope]  # the benchmark may look inside
    matrix = np.asarray(s.matrix[: len(s.ids)])
    exact_top: list[str] = []
    exact_best: list[float] = []
    block = max(1, 20_000_000 // len(matrix))  # queries per matrix product (~80 MB)
    for start in range(0, len(queries), block):
        sims = queries[start : start + block] @ matrix.T
        exact_top += [s.ids[int(i)] for i in np.argmax(sims, axis=1)]
        exact_best += np.max(sims, axis=1).tolist()
    exact_times = []
    for q in queries[:200]:
        started = time.perf_counter()
        int(np.argmax(matrix @ q))
        exact_times.append(time.perf_counter() - started)
    recall = sum(h == e for h, e in zip(hnsw_top, exact_top, strict=True)) / len(queries)
    times.sort()
    return {
        "expansion_search": s.hnsw.expansion_search if s.hnsw is not None else 0,
        "search_p50_ms": statistics.median(times) * 1000,
        "search_p95_ms": times[int(len(times) * 0.95)] * 1000,
        "exact_scan_p50_ms": statistics.median(exact_times) * 1000,
        "recall_at_1": recall,
        # near-duplicate points tie: a different id as similar as the exact one is a hit
        "top1_as_similar": sum(
            abs(h - e) < 1e-5 for h, e in zip(hnsw_best, exact_best, strict=True)
        )
        / len(queries),
    }


def bench_check(
    index: InProcessIndex, scope: str, pairs_path: Path, count: int
) -> dict[str, float]:
    embedder = LocalEmbedder()
    embedder.load()
    cache = SemanticCache(embedder=embedder, index=index)
    pairs = [json.loads(line) for line in pairs_path.read_text().splitlines() if line.strip()]
    paraphrases = [p for p in pairs if p["same"] and p["source"].endswith("paraphrase")][:count]
    for i, p in enumerate(paraphrases):
        cache.store(_request(p["a"]), f"real-{i}")
    assert cache.query(_request("x")).scope == scope  # type: ignore[union-attr]
    for p in paraphrases[:10]:  # warm up the model (first runs allocate)
        embedder.embed([p["b"] + " warm-up"])
    hit_times, miss_times = [], []
    for p in paraphrases:
        request = _request(p["b"])
        started = time.perf_counter()
        match = cache.check(request)
        elapsed = time.perf_counter() - started
        (hit_times if match is not None else miss_times).append(elapsed)
    every = sorted(hit_times + miss_times)
    # the same checks again: their vectors are remembered, so this is everything but the
    # embedding (scope hash, HNSW search, guards, verifier)
    rest_times = []
    for p in paraphrases:
        request = _request(p["b"])
        started = time.perf_counter()
        cache.check(request)
        rest_times.append(time.perf_counter() - started)
    embed_times = []
    for p in paraphrases[:100]:
        started = time.perf_counter()
        embedder.embed([p["b"] + "?"])
        embed_times.append(time.perf_counter() - started)
    return {
        "check_p50_ms": statistics.median(every) * 1000,
        "check_p95_ms": every[int(len(every) * 0.95)] * 1000,
        "hit_p50_ms": statistics.median(hit_times) * 1000 if hit_times else float("nan"),
        "miss_p50_ms": statistics.median(miss_times) * 1000 if miss_times else float("nan"),
        "hits": len(hit_times),
        "checks": len(every),
        "embed_only_p50_ms": statistics.median(embed_times) * 1000,
        "without_embedding_p50_ms": statistics.median(rest_times) * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--checks", type=int, default=300)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument(
        "--expansion-search",
        type=int,
        default=None,
        help="HNSW search expansion (ef); default: grows with the index (auto_expansion)",
    )
    parser.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default="i8",
        help="how the HNSW graph stores vectors (InProcessIndex's default: i8)",
    )
    parser.add_argument(
        "--pairs", type=Path, default=ROOT.parent / "shared" / "semantic" / "dev.jsonl"
    )
    args = parser.parse_args()
    embedder_id = LocalEmbedder().id
    scope = scope_of(embedder_id)
    path = ROOT / ".bench" / f"semantic-{args.entries}-{args.quantization}"
    index, load_s = build_or_load(
        path, args.entries, scope, args.rebuild, args.expansion_search, args.quantization
    )
    print(f"loaded {len(index)} entries from {path} in {load_s * 1000:.0f} ms (memory-mapped)")
    print(f"scope searched by HNSW: {index.is_hnsw(scope)}")
    search = bench_search(index, scope, clustered(args.queries, seed=2))
    print(
        f"index search, {args.entries} entries, {args.queries} queries: p50"
        f" {search['search_p50_ms']:.3f} ms, p95 {search['search_p95_ms']:.3f} ms;"
        f" recall@1 vs exact {search['recall_at_1']:.3f}"
        f" (top-1 as similar as exact: {search['top1_as_similar']:.3f};"
        f" expansion_search {search['expansion_search']}; graph {args.quantization})"
        f" (exact scan p50 {search['exact_scan_p50_ms']:.2f} ms)"
    )
    if args.pairs.exists():
        check = bench_check(index, scope, args.pairs, args.checks)
        print(
            f"semantic check, embedded model + {len(index)} entries: p50"
            f" {check['check_p50_ms']:.2f} ms, p95 {check['check_p95_ms']:.2f} ms"
            f" ({check['hits']}/{check['checks']} hits: hit p50 {check['hit_p50_ms']:.2f} ms,"
            f" miss p50 {check['miss_p50_ms']:.2f} ms; embedding alone p50"
            f" {check['embed_only_p50_ms']:.2f} ms; the check without its embedding p50"
            f" {check['without_embedding_p50_ms']:.2f} ms)"
        )
    else:
        print(f"no labelled pairs at {args.pairs}: semantic check benchmark skipped")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    )
    print("command: .venv/bin/python bench/semantic.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
