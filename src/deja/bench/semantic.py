"""Evaluate the semantic tier's shipped defaults on labelled pairs.

    python -m deja.bench.semantic --pairs PAIRS.jsonl [--json] [--threshold T]
        [--index memory|redis|qdrant] [--redis-url URL] [--qdrant-url URL]
        [--cv] [--write-verifiers DIR]
    python -m deja.bench.semantic --stream QUERIES.csv [--queries N] [--seed S]
        [--exclude PAIRS.jsonl] [--band PAIRS.jsonl] [--feedback SHARE ...]

One shared embedder (every text embedded once, in batches), a fresh in-process index per
pair; each pair is one user message to a fixed model: ``a`` is stored, ``b`` is checked
through :meth:`deja.semantic.SemanticCache.inspect` (threshold, guards, verifier). Prints
precision, recall (true pairs served) and false-hit rate (false pairs served), and the
bare-embedding figures (cosine threshold alone, as LiteLLM, GPTCache and RedisVL ship)
measured in the same run, including the best bare threshold for a 1% false-hit rate.
``--json`` prints one object ``{"pairs", "threshold", "precision", "recall",
"false_hit_rate"}`` (fractions 0..1) for the shipped decision. ``--index redis`` (a Redis
with RediSearch at ``--redis-url``) or ``--index qdrant`` (``--qdrant-url``, or
qdrant-client's local mode) runs the same decisions on that index, emptied between pairs.

The shipped verifier is trained on ``dev.jsonl``, so its figures there are training-set
figures. ``--cv`` retrains both shipped verifiers on the given pairs by
:data:`~deja.semantic.calibrate.SHIPPED_RECIPE` and prints their nested cross-validated
figures (the honest ones) next to their training-set figures; ``--write-verifiers DIR``
writes them as ``verifier.json`` / ``verifier_text.json`` (the shipped files are
``--pairs dev.jsonl --write-verifiers src/deja/semantic``).

``--stream`` scores the way a cache meets prompts in production: ``N`` labelled queries
(a CSV with ``text`` and ``category`` columns, e.g. Banking77's ``train.csv``; shuffled
with ``--seed``) go through one cache in order, each checked against every query stored
before it and stored when missed. It prints the share of queries served by meaning and the
share of those answers stored for another label (wrong answers), for the shipped defaults
and, in the same run, for the guards with a bare cosine threshold and for a bare threshold
alone. Pair figures alone can mislead here: a query with many near neighbours gets many
chances to be served a wrong one. ``--exclude PAIRS.jsonl`` leaves out every query whose
text appears in those pairs (the shipped verifier was trained on ``dev.jsonl``, whose
Banking77 texts come from the same file).

``--band PAIRS.jsonl`` adds, for the pairs the verifier alone decides (cosine between the
threshold and the verifier's ``trust_above``, guards passed), how well the verifier, the
similarity and word overlap rank them (AUC), once among the labelled pairs of that file and
once among the stream's own neighbour pairs (each query with its 4 most similar earlier
queries). A verifier that ranks the stream's pairs no better than the similarity does adds
hits no more precisely than a lower threshold would.

``--feedback SHARE`` (repeatable) adds a run of the shipped defaults in which that share of
the wrong hits is reported by its user (``feedback(key, correct=False)``, drawn with
``--seed``), as a support bot's thumbs-down would: each report is a strike on the entry
that answered, so the wrong answers it would have served later are not served.

A file that cannot be read, a line that is not a labelled pair (read as ``deja calibrate``
reads them), or a file with no pairs or queries is a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deja.errors import ConfigError, DejaError
from deja.semantic.calibrate import (
    BAND_SCORES,
    SHIPPED_RECIPE,
    EvalReport,
    LabelledPair,
    PairOutcome,
    PrecomputedEmbedder,
    StreamReport,
    band_report,
    evaluate_pairs,
    fit_shipped_verifiers,
    load_pairs,
    load_queries,
    negatives_needed,
    neighbour_pairs,
    pair_similarities,
    score_pairs,
    score_stream,
    shipped_cache_factory,
)
from deja.semantic.decision import DEFAULT_THRESHOLD

__all__ = ["main"]

BARE_THRESHOLDS = (0.70, 0.80, 0.85, 0.90)
BARE_TARGET = 0.01


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
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", help="JSONL file of labelled pairs")
    source.add_argument(
        "--stream", metavar="CSV", help="labelled queries (text,category) sent as a stream"
    )
    parser.add_argument("--queries", type=int, default=3000, help="queries of --stream")
    parser.add_argument("--seed", type=int, default=0, help="shuffle of --stream")
    parser.add_argument(
        "--exclude", metavar="PAIRS", help="leave out --stream queries found in these pairs"
    )
    parser.add_argument(
        "--band",
        metavar="PAIRS",
        help="with --stream: how well the verifier ranks its band, in PAIRS and the stream",
    )
    parser.add_argument(
        "--feedback",
        metavar="SHARE",
        type=float,
        action="append",
        default=[],
        help="with --stream: also run deja with this share of wrong hits reported (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--threshold", type=float, default=None, help="cosine threshold (default: shipped)"
    )
    parser.add_argument("--index", choices=("memory", "redis", "qdrant"), default="memory")
    parser.add_argument("--redis-url", help="Redis with RediSearch, for --index redis")
    parser.add_argument(
        "--qdrant-url", help="Qdrant server, for --index qdrant (default: local mode)"
    )
    parser.add_argument(
        "--cv",
        action="store_true",
        help="retrain the shipped verifiers on these pairs: nested-CV and training figures",
    )
    parser.add_argument(
        "--write-verifiers",
        metavar="DIR",
        help="retrain the shipped verifiers on these pairs and write their JSON files to DIR",
    )
    args = parser.parse_args(argv)
    if args.queries < 1:
        parser.error(f"--queries: expected a count >= 1, got {args.queries}")
    for share in args.feedback:
        if not 0.0 <= share <= 1.0:
            parser.error(f"--feedback: expected a share between 0 and 1, got {share}")
    try:
        if args.write_verifiers and not Path(args.write_verifiers).is_dir():
            raise ConfigError(f"--write-verifiers: {args.write_verifiers} is not a directory")
        return _run(args)
    except DejaError as exc:  # as `deja calibrate` reports it: one line, status 2
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if args.stream:
        return _stream(args, threshold)
    started = time.perf_counter()
    pairs = _pairs(args.pairs)
    index = _index(args)
    from deja.semantic.embedders import LocalEmbedder

    shared = PrecomputedEmbedder(LocalEmbedder())
    make_cache = shipped_cache_factory(shared, pairs, threshold=threshold, index=index)
    embedded = time.perf_counter()
    outcomes = score_pairs(pairs, make_cache=make_cache)
    report = evaluate_pairs(outcomes, threshold)
    elapsed = time.perf_counter() - started
    if args.json:  # (undefined figures are null: valid JSON)
        print(json.dumps(report.to_json()))
        return 0
    positives, negatives = report.positives, report.negatives
    print(f"{args.pairs}: {len(pairs)} pairs ({positives} same, {negatives} different)")
    print(_line("deja (threshold + guards + verifier)", report))
    print(_line("bare embedding, same threshold", evaluate_pairs(outcomes, threshold, bare=True)))
    for t in BARE_THRESHOLDS:
        print(_line("bare embedding", evaluate_pairs(outcomes, t, bare=True)))
    best = _best_bare(outcomes, BARE_TARGET)
    if best is not None:
        print(_line(f"bare embedding, best at FHR <= {BARE_TARGET:.0%}", best))
        needed = negatives_needed(BARE_TARGET)
        if needed is not None and negatives < needed:
            print(
                f"  (only {negatives} negative {'pair' if negatives == 1 else 'pairs'} here:"
                f" it takes at least {needed} to show a false-hit rate <= {BARE_TARGET:.0%},"
                " see `deja calibrate`)"
            )
    print(
        f"time: {elapsed:.1f} s ({embedded - started:.1f} s embedding,"
        f" {elapsed - (embedded - started):.1f} s checks)"
    )
    if args.cv or args.write_verifiers:
        _retrain(pairs, shared, write_to=args.write_verifiers)
    return 0


def _stream(args: argparse.Namespace, threshold: float) -> int:
    from deja.semantic.cache import SemanticCache
    from deja.semantic.embedders import LocalEmbedder
    from deja.semantic.guards import GuardSettings
    from deja.semantic.index import InProcessIndex

    started = time.perf_counter()
    queries = _queries(args.stream, seed=args.seed)
    if args.exclude:
        seen = {text for pair in load_pairs(args.exclude) for text in (pair.a, pair.b)}
        queries = [q for q in queries if q[0] not in seen]
        if not queries:
            raise ConfigError(f"{args.stream}: every query is in {args.exclude}")
    queries = queries[: args.queries]
    band = _pairs(args.band) if args.band else None  # read before the runs, not after
    shared = PrecomputedEmbedder(LocalEmbedder())
    shared.prepare(text for text, _ in queries)
    no_guards = GuardSettings.none()
    setups: list[tuple[str, dict[str, Any]]] = [
        ("deja (threshold + guards + verifier)", {"threshold": threshold}),
    ]
    for t in BARE_THRESHOLDS[1:]:
        setups.append((f"guards + bare threshold {t:.2f}", {"threshold": t, "verifier": None}))
    for t in BARE_THRESHOLDS[1:]:
        bare = {"threshold": t, "verifier": None, "guards": no_guards}
        setups.append((f"bare threshold {t:.2f}", bare))
    excluded = f", those in {args.exclude} left out" if args.exclude else ""
    print(
        f"{args.stream}: {len(queries)} queries (seed {args.seed}{excluded}),"
        f" {len({label for _, label in queries})} labels, one scope"
    )
    runs: list[tuple[str, dict[str, Any], float]] = [(label, o, 0.0) for label, o in setups]
    for share in args.feedback:
        label = f"deja, {share:.0%} of wrong hits reported"
        runs.insert(1, (label, {"threshold": threshold}, share))
    for label, options, share in runs:
        index = InProcessIndex(dim=shared.dim, max_entries=None, hnsw_threshold=None)
        cache = SemanticCache(embedder=shared, index=index, **options)
        report = score_stream(queries, cache=cache, report_wrong=share, seed=args.seed)
        print(_stream_line(label, report))
    if band is not None:
        _band(args.band, band, queries, shared, threshold)
    print(f"time: {time.perf_counter() - started:.1f} s")
    return 0


def _pairs(path: str) -> list[LabelledPair]:
    """The labelled pairs of ``path``, read and checked as ``deja calibrate`` does:
    :class:`ConfigError` for a file that cannot be read, a bad line, or no pairs."""
    pairs = load_pairs(path)
    if not pairs:
        raise ConfigError(f"{path}: no labelled pairs in the file")
    return pairs


def _queries(path: str, *, seed: int) -> list[tuple[str, str]]:
    """The labelled queries of the CSV file ``path`` (:func:`load_queries`), with the
    errors of a file that cannot be read as a :class:`ConfigError`, as for pairs."""
    try:
        queries = load_queries(path, seed=seed)
    except OSError as exc:
        raise ConfigError(f"cannot read queries file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except csv.Error as exc:
        raise ConfigError(f"{path}: not a CSV file ({exc})") from exc
    if not queries:
        raise ConfigError(f"{path}: no labelled queries in the file")
    return queries


def _band(
    path: str,
    pairs: Sequence[LabelledPair],
    queries: Sequence[tuple[str, str]],
    shared: Any,
    low: float,
) -> None:
    from deja.semantic.verifier import Verifier

    verifier = Verifier.default_for(shared.id)
    high = min(verifier.trust_above, 1.0)
    shared.prepare(t for p in pairs for t in (p.a, p.b))
    sims, _, _ = pair_similarities(pairs, embedder=shared)
    labelled = [(p, float(s)) for p, s in zip(pairs, sims, strict=True)]
    options = {"verifier": verifier, "embedder": shared, "low": low, "high": high}
    rows = [
        band_report(f"{Path(path).name} (labelled pairs)", labelled, **options),
        band_report(
            "the stream's neighbour pairs",
            neighbour_pairs(queries, embedder=shared, low=low, high=high),
            **options,
        ),
    ]
    print(
        f"the verifier's band (cosine {low:.2f} to {high:.2f}, guards passed): AUC of each"
        " score (0.5 chance, 1 perfect ranking)"
    )
    print(f"{'pairs':<34} {'n':>6} {'same':>7}" + "".join(f" {s:>16}" for s in BAND_SCORES))
    for r in rows:
        aucs = "".join(f" {r.auc[s]:16.3f}" for s in BAND_SCORES)
        print(f"{r.population:<34} {r.pairs:>6} {_pct(r.same_share)}{aucs}")


def _stream_line(label: str, r: StreamReport) -> str:
    return (
        f"{label:<38} served {_pct(r.served_share)} of queries ({r.served})"
        f"  wrong answers {_pct(r.wrong_share)} of those served ({r.wrong})"
    )


def _best_bare(outcomes: Sequence[PairOutcome], target: float) -> EvalReport | None:
    """The bare-embedding threshold with the most recall at a false-hit rate <= target:
    the lowest similarity that can be a threshold before the false hits exceed it."""
    negatives = sum(not o.pair.same for o in outcomes)
    if not negatives:
        return None
    allowed = math.floor(target * negatives + 1e-9)
    ranked = sorted((o.similarity for o in outcomes), reverse=True)
    wrong = sorted((o.similarity for o in outcomes if not o.pair.same), reverse=True)
    # serving at threshold t serves every pair with similarity >= t: the best t is just
    # above the (allowed + 1)-th most similar negative
    limit = wrong[allowed] if allowed < len(wrong) else -math.inf
    candidates = [sim for sim in ranked if sim > limit]
    if not candidates:
        return None
    return evaluate_pairs(outcomes, candidates[-1], bare=True)


def _retrain(pairs: Sequence[Any], embedder: Any, *, write_to: str | None) -> None:
    started = time.perf_counter()
    verifiers = fit_shipped_verifiers(pairs, embedder=embedder)
    recipe = SHIPPED_RECIPE
    print(
        f"retrained the shipped verifiers (threshold {recipe['threshold']:.2f}, trusted from"
        f" {recipe['trust_above']:.2f}, nested {recipe['folds']}-fold CV x {recipe['repeats']},"
        f" cut chosen on the training folds: {_budget(recipe)}),"
        f" {time.perf_counter() - started:.1f} s:"
    )
    for name, verifier in zip(("verifier.json", "verifier_text.json"), verifiers, strict=True):
        info = verifier.info or {}
        print(
            f"  {name:<19} nested CV: recall {_pct(info['cv_recall'])} false-hit rate"
            f" {_pct(info['cv_false_hit_rate'])};  training set: recall"
            f" {_pct(info['train_recall'])} false-hit rate {_pct(info['train_false_hit_rate'])}"
        )
        if write_to:
            target = Path(write_to) / name
            target.write_text(json.dumps(verifier.to_dict(), indent=1) + "\n")
            print(f"  wrote {target}")


def _budget(recipe: dict[str, Any]) -> str:
    if recipe.get("added_false_hits") is not None:
        return f"the verifier adds <= {recipe['added_false_hits']} false hits"
    return f"FHR <= {recipe['target_false_hit_rate']:.1%}"


def _index(args: argparse.Namespace) -> object:
    if args.index == "redis":
        if not args.redis_url:
            raise ConfigError(
                "--index redis needs --redis-url (a Redis with the RediSearch module)"
            )
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
