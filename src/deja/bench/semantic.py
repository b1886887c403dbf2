"""Evaluate the semantic tier's shipped defaults on labelled pairs.

    python -m deja.bench.semantic --pairs PAIRS.jsonl [--json] [--threshold T]
        [--index memory|redis|qdrant] [--redis-url URL] [--qdrant-url URL]

One shared embedder (every text embedded once, in batches), a fresh in-process index per
pair; each pair is one user message to a fixed model: ``a`` is stored, ``b`` is checked
through :meth:`deja.semantic.SemanticCache.inspect` (threshold, guards, verifier). Prints
precision, recall (true pairs served) and false-hit rate (false pairs served), and the
bare-embedding figures (cosine threshold alone, as LiteLLM, GPTCache and RedisVL ship)
measured in the same run. ``--json`` prints one object ``{"pairs", "threshold",
"precision", "recall", "false_hit_rate"}`` (fractions 0..1) for the shipped decision.
``--index redis`` (a Redis with RediSearch at ``--redis-url``) or ``--index qdrant``
(``--qdrant-url``, or qdrant-client's local mode) runs the same decisions on that index,
emptied between pairs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence

from deja.semantic.calibrate import (
    EvalReport,
    evaluate_pairs,
    load_pairs,
    score_pairs,
    shipped_cache_factory,
)
from deja.semantic.decision import DEFAULT_THRESHOLD

__all__ = ["main"]

BARE_THRESHOLDS = (0.80, 0.85, 0.90)


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:6.1%}"


def _line(label: str, r: EvalReport) -> str:
    return (
        f"{label:<34} threshold {r.threshold:.3f}  precision {_pct(r.precision)}"
        f"  recall {_pct(r.recall)}  false-hit rate {_pct(r.false_hit_rate)}"
        f"  ({r.hits} served)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m deja.bench.semantic", description=__doc__)
    parser.add_argument("--pairs", required=True, help="JSONL file of labelled pairs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--threshold", type=float, default=None, help="cosine threshold (default: shipped)"
    )
    parser.add_argument("--index", choices=("memory", "redis", "qdrant"), default="memory")
    parser.add_argument("--redis-url", help="Redis with RediSearch, for --index redis")
    parser.add_argument(
        "--qdrant-url", help="Qdrant server, for --index qdrant (default: local mode)"
    )
    args = parser.parse_args(argv)
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    started = time.perf_counter()
    pairs = load_pairs(args.pairs)
    index = _index(args)
    make_cache = shipped_cache_factory(None, pairs, threshold=threshold, index=index)
    embedded = time.perf_counter()
    outcomes = score_pairs(pairs, make_cache=make_cache)
    report = evaluate_pairs(outcomes, threshold)
    elapsed = time.perf_counter() - started
    if args.json:
        # undefined figures (no positives, nothing served) are null, not NaN: valid JSON
        data = {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in report.to_json().items()
        }
        print(json.dumps(data))
        return 0
    positives, negatives = report.positives, report.negatives
    print(f"{args.pairs}: {len(pairs)} pairs ({positives} same, {negatives} different)")
    print(_line("deja (threshold + guards + verifier)", report))
    print(_line("bare embedding, same threshold", evaluate_pairs(outcomes, threshold, bare=True)))
    for t in BARE_THRESHOLDS:
        print(_line("bare embedding", evaluate_pairs(outcomes, t, bare=True)))
    print(
        f"time: {elapsed:.1f} s ({embedded - started:.1f} s embedding,"
        f" {elapsed - (embedded - started):.1f} s checks)"
    )
    return 0


def _index(args: argparse.Namespace) -> object:
    if args.index == "redis":
        if not args.redis_url:
            raise SystemExit("--index redis needs --redis-url (a Redis with the RediSearch module)")
        from deja.semantic.redis_index import RedisVectorIndex

        return RedisVectorIndex(
            url=args.redis_url, index_name="deja-bench-semantic", key_prefix="deja-bench-vec:"
        )
    if args.index == "qdrant":
        from deja.semantic.qdrant_index import QdrantIndex

        if args.qdrant_url:
            return QdrantIndex(url=args.qdrant_url, collection="deja-bench-semantic")
        return QdrantIndex(path=":memory:", collection="deja-bench-semantic")
    return None


if __name__ == "__main__":
    sys.exit(main())
