"""What reaching dev.jsonl's 40% recall would take, and what that does in a cache (issue 5).

Research, not shipped, not run by CI: it needs the ``research`` extra (scikit-learn and
LightGBM: ``.venv/bin/pip install -e '.[research]'``).

1. Nested cross-validation on ``shared/semantic/dev.jsonl``: recall at a false-hit rate of
   at most 1% for the bare cosine and for a gradient-boosted model (LightGBM, strongly
   regularised) on the shipped verifier's 12 pair features
   (:data:`deja.semantic.verifier.FEATURE_NAMES`), with and without the five word-overlap
   features. Outer 5 folds (stratified by source and label) x ``--repeats``; in each, the
   probability cut is chosen on inner 5-fold out-of-fold scores of the training folds only
   (the lowest cut whose false hits stay <= 1% of the training negatives); recall and
   false-hit rate count every held-out pair, a pair the guards reject never served.
2. That model trained on all of dev (its cut chosen out of fold) as the verifier of an
   otherwise shipped :class:`~deja.semantic.SemanticCache` (threshold 0.70, and 0.50 where
   it was trained), sent the Banking77 stream of ``python -m deja.bench.semantic --stream``
   (dev's texts left out), next to the shipped defaults and guards + bare thresholds, all in
   the same run: share of queries served, share of those served another intent's answer.

    .venv/bin/python bench/dev_ceiling.py [--repeats 5] [--seeds 0,1,2] [--queries 3000]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from deja.semantic.cache import SemanticCache
from deja.semantic.calibrate import (
    PrecomputedEmbedder,
    _lowest_cut,
    load_pairs,
    load_queries,
    pair_matrix,
    pair_similarities,
    score_stream,
)
from deja.semantic.embedders import LocalEmbedder
from deja.semantic.index import InProcessIndex
from deja.semantic.verifier import FEATURE_NAMES

try:
    from lightgbm import LGBMClassifier
    from sklearn.model_selection import StratifiedKFold
except ImportError:  # pragma: no cover - a research script
    sys.exit("this benchmark needs the research extra: .venv/bin/pip install -e '.[research]'")

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
DEV = SHARED / "semantic" / "dev.jsonl"
QUERIES = SHARED / "data" / "banking77" / "train.csv"
TARGET = 0.01
OVERLAP = (
    "word_jaccard",
    "word_containment",
    "trigram_jaccard",
    "unmatched_words",
    "unmatched_imbalance",
)


def model() -> Any:
    """The strongly regularised LightGBM (one thread, fixed seed)."""
    return LGBMClassifier(
        n_estimators=200,
        learning_rate=0.03,
        num_leaves=7,
        min_child_samples=25,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        reg_lambda=5.0,
        n_jobs=1,
        verbose=-1,
        random_state=0,
    )


def lowest_cut(scores: Any, labels: Any, eligible: Any) -> float:
    """The shipped recipe's cut rule: the lowest score whose false hits stay <= TARGET of
    all negatives (:func:`deja.semantic.calibrate._lowest_cut`, nothing trusted)."""
    nothing = np.zeros(len(labels), dtype=bool)
    return _lowest_cut(scores, labels, eligible, TARGET, trusted=nothing, added=None)


def folds(strata: Any, seed: int, index: Any) -> list[tuple[Any, Any]]:
    split = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    return [(index[a], index[b]) for a, b in split.split(index, strata[index])]


def fitted(x: Any, y: Any, rows: Any) -> Any:
    return model().fit(x[rows], y[rows])


def scores_of(m: Any, x: Any, rows: Any) -> Any:
    return m.predict_proba(x[rows])[:, 1]


def out_of_fold(x: Any, y: Any, eligible: Any, strata: Any, rows: Any, seed: int) -> Any:
    """Out-of-fold scores of ``rows`` (a model per fold, trained on its eligible rows)."""
    scores = np.zeros(len(y))
    for train, test in folds(strata, seed, rows):
        scores[test] = scores_of(fitted(x, y, train[eligible[train]]), x, test)
    return scores


def nested_cv(
    x: Any, y: Any, eligible: Any, strata: Any, repeats: int, *, learned: bool
) -> tuple[float, float, float]:
    """Mean recall, mean and worst false-hit rate over ``repeats`` reshuffles."""
    recalls, rates = [], []
    everything = np.arange(len(y))
    for r in range(repeats):
        served = np.zeros(len(y), dtype=bool)
        for train, test in folds(strata, r, everything):
            if learned:
                inner = out_of_fold(x, y, eligible, strata, train, 100 + r)
                cut = lowest_cut(inner[train], y[train], eligible[train])
                test_scores = scores_of(fitted(x, y, train[eligible[train]]), x, test)
            else:  # the cosine is the score
                cut = lowest_cut(x[train, 0], y[train], eligible[train])
                test_scores = x[test, 0]
            served[test] = eligible[test] & (test_scores >= cut)
        recalls.append(served[y].mean())
        rates.append(served[~y].mean())
    return float(np.mean(recalls)), float(np.mean(rates)), float(np.max(rates))


class TreeVerifier:
    """The LightGBM in the place of the shipped verifier (text features only)."""

    uses_vectors = False
    embedder = None
    trust_above = 1.01

    def __init__(self, fitted_model: Any, cut: float) -> None:
        self.model, self.cut = fitted_model, cut

    def accepts(
        self, similarity: float, features: list[float], vectors: Any = None
    ) -> tuple[bool, float]:
        p = float(self.model.predict_proba(np.asarray([features]))[0, 1])
        return p >= self.cut, p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--queries", type=int, default=3000)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    pairs = load_pairs(DEV)
    shared = PrecomputedEmbedder(LocalEmbedder())
    sims, _, _ = pair_similarities(pairs, embedder=shared)
    x, passed = pair_matrix(pairs, sims.tolist())
    y = np.array([p.same for p in pairs], dtype=bool)
    strata = np.array([f"{p.source}/{p.same}" for p in pairs])
    keep = [i for i, name in enumerate(FEATURE_NAMES) if name not in OVERLAP]
    everything = np.ones(len(y), dtype=bool)
    print(f"{DEV.name}: {len(pairs)} pairs; nested 5-fold CV x {args.repeats}, FHR <= 1%")
    rows = (
        ("bare cosine", x, everything, False),
        ("LightGBM, 12 pair features", x, passed, True),
        ("LightGBM, without the 5 word-overlap ones", x[:, keep], passed, True),
    )
    for label, features, eligible, learned in rows:
        recall, rate, worst = nested_cv(
            features, y, eligible, strata, args.repeats, learned=learned
        )
        print(
            f"  {label:<44} recall {recall:6.1%}  false-hit rate {rate:5.2%}"
            f" (worst repeat {worst:5.2%})"
        )

    oof = out_of_fold(x, y, passed, strata, np.arange(len(y)), 1000)
    cut = lowest_cut(oof, y, passed)
    verifier = TreeVerifier(fitted(x, y, np.nonzero(passed)[0]), cut)
    served = passed & (oof >= cut)
    print(
        f"trained on all of dev: cut {cut:.4f}, out of fold recall {served[y].mean():.1%}"
        f" at false-hit rate {served[~y].mean():.2%}"
    )

    seen = {text for p in pairs for text in (p.a, p.b)}
    setups: list[tuple[str, dict[str, Any]]] = [
        ("deja defaults (shipped)", {}),
        ("LightGBM verifier, from cosine 0.70", {"verifier": verifier, "threshold": 0.70}),
        ("LightGBM verifier, from cosine 0.50", {"verifier": verifier, "threshold": 0.50}),
    ]
    for t in (0.80, 0.82, 0.84, 0.86):
        setups.append((f"guards + bare threshold {t:.2f}", {"verifier": None, "threshold": t}))
    print(f"stream: {QUERIES.name}, {args.queries} queries, dev's texts left out; served / wrong")
    for seed in (int(s) for s in args.seeds.split(",")):
        queries = [q for q in load_queries(QUERIES, seed=seed) if q[0] not in seen]
        queries = queries[: args.queries]
        shared.prepare(text for text, _ in queries)
        for label, options in setups:
            index = InProcessIndex(dim=shared.dim, max_entries=None, hnsw_threshold=None)
            cache = SemanticCache(embedder=shared, index=index, **options)
            report = score_stream(queries, cache=cache)
            print(
                f"  seed {seed}  {label:<38} served {report.served_share:6.1%}"
                f"  wrong {report.wrong_share:5.1%} ({report.wrong})"
            )
    print(f"time: {time.perf_counter() - started:.0f} s")
    print(f"machine: {platform.machine()}, Python {platform.python_version()}")
    print(f"command: .venv/bin/python bench/dev_ceiling.py {' '.join(sys.argv[1:])}".rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
