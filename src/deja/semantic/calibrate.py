"""Calibration and evaluation of the semantic tier on labelled prompt pairs.

A labelled pair is a JSONL line ``{"a": str, "b": str, "same": bool}`` (``same``: one answer
is correct for both). Every function here scores pairs through the same code path as
:meth:`SemanticCache.check`: a fresh index per pair, ``a`` stored, ``b`` checked, with the
cache's threshold, guards and verifier.

* :func:`evaluate_pairs` — precision, recall (true pairs served) and false-hit rate (false
  pairs served) at one threshold; what ``python -m deja.bench.semantic`` prints;
* :func:`calibrate` — the same per threshold, and the lowest threshold whose false-hit rate
  meets a target (what ``deja calibrate PAIRS.jsonl --max-false-hit-rate 0.01`` prints),
  with the embedded model or, with ``--config FILE``, the tier a configuration builds
  (:func:`configured_tier`: another model's similarities are on another scale);
* :func:`fit_verifier` — train the second-stage verifier with nested cross-validation;
  :func:`fit_shipped_verifiers` trains the two shipped parameter files by
  :data:`SHIPPED_RECIPE`: ``verifier.json`` and ``verifier_text.json`` are
  ``fit_shipped_verifiers(load_pairs("shared/semantic/dev.jsonl"), embedder=LocalEmbedder())``
  with the guards of commit 5c30c06 (``python -m deja.bench.semantic --pairs dev.jsonl
  --write-verifiers src/deja/semantic`` writes them; ``--cv`` prints their training-set
  and nested-CV figures). The guards have changed since, and so would a retrain: with
  those of 2026-11-27 10:40 it cuts a little lower (0.983 vs 0.986) and serves 54 more
  of three Banking77 streams' queries with 8 more wrong answers, so it is not shipped
  (BENCHMARKS.md).
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deja.errors import ConfigError
from deja.request import Request
from deja.semantic._deps import np
from deja.semantic.decision import (
    BARE_THRESHOLD,
    DEFAULT_THRESHOLD,
    SLIP_ALLOWANCE,
    PreparedText,
    clears,
    guard_report,
    word_similarity_for,
)
from deja.semantic.embedders import Windowed
from deja.semantic.guards import GuardSettings
from deja.semantic.verifier import FEATURE_NAMES, Verifier, pair_features

if TYPE_CHECKING:
    from deja.semantic.cache import SemanticCache
    from deja.semantic.embedders import Embedder

__all__ = [
    "BandReport",
    "CalibrationReport",
    "EvalReport",
    "LabelledPair",
    "PairOutcome",
    "PrecomputedEmbedder",
    "StreamReport",
    "band_report",
    "calibrate",
    "configured_tier",
    "evaluate_pairs",
    "fit_shipped_verifiers",
    "fit_verifier",
    "load_pairs",
    "load_queries",
    "negatives_needed",
    "neighbour_pairs",
    "pair_similarities",
    "rank_auc",
    "score_pairs",
    "score_stream",
]

EVAL_MODEL = "openai/gpt-4o-mini"
"""The fixed model every evaluated pair is sent to (the scope is the same for both)."""


@dataclass(frozen=True, slots=True)
class LabelledPair:
    """Two prompts and whether one answer serves both."""

    a: str
    b: str
    same: bool
    source: str = ""


def load_pairs(path: str | Path) -> list[LabelledPair]:
    """Read labelled pairs from a JSONL file (``ConfigError``, naming the file and line, on a
    file that cannot be read or a line that is not a labelled pair)."""
    pairs: list[LabelledPair] = []
    try:
        # bytes, decoded line by line, so that a non-UTF-8 line is reported with its number
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                pair = _parse_pair(raw, f"{path}:{number}")
                if pair is not None:
                    pairs.append(pair)
    except OSError as exc:
        raise ConfigError(f"cannot read pairs file {path}: {exc.strerror or exc}") from exc
    return pairs


_PAIR_KEYS = ("a", "b", "same")


def _parse_pair(raw: bytes, where: str) -> LabelledPair | None:
    """One JSONL line as a pair (``None`` for a blank line); ``where`` is ``file:line``."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text ({exc.reason})") from exc
    if not line.strip():
        return None
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc})") from exc
    except RecursionError as exc:  # the decoder recurses once per level of [ or {
        raise ConfigError(f"{where}: JSON nested too deeply to read") from exc
    expected = 'a labelled pair {"a": str, "b": str, "same": true|false}'
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected {expected}, got a JSON {type(item).__name__}")
    missing = [key for key in _PAIR_KEYS if key not in item]
    if missing:
        names = ", ".join(f'"{key}"' for key in missing)
        raise ConfigError(f"{where}: not {expected}: missing {names}")
    a, b, same = item["a"], item["b"], item["same"]
    if not isinstance(a, str) or not isinstance(b, str) or not isinstance(same, bool):
        raise ConfigError(f"{where}: a and b must be strings, same a boolean")
    source = str(item.get("source", ""))
    for key, text in (("a", a), ("b", b), ("source", source)):
        # JSON's \ud800 escapes decode to lone surrogates, which no UTF-8 reader (the
        # embedder's tokenizer, a report written to a file) takes: refused here, with the line
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            lone = text[exc.start : exc.end]
            raise ConfigError(
                f'{where}: "{key}" cannot be encoded as UTF-8 (a lone surrogate, {lone!r})'
            ) from exc
    return LabelledPair(a, b, same, source)


class PrecomputedEmbedder:
    """Wraps an embedder and embeds a known set of texts up front, in sorted batches.

    Same ``id`` and ``dim`` as the wrapped embedder, so scopes are unchanged; a text not
    prepared is embedded on demand. Used to evaluate thousands of pairs quickly.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.inner = embedder
        self._vectors: dict[str, Any] = {}

    @property
    def id(self) -> str:
        """The wrapped embedder's id."""
        return self.inner.id

    @property
    def dim(self) -> int:
        """The wrapped embedder's dimension."""
        return self.inner.dim

    def prepare(self, texts: Iterable[str]) -> None:
        """Embed every text not yet known, in one batched call."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if todo:
            for text, vector in zip(todo, self.inner.embed(todo), strict=True):
                self._vectors[text] = vector

    def embed(self, texts: Sequence[str]) -> Any:
        """Vectors of ``texts`` (from the prepared set when possible)."""
        self.prepare(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])

    async def aembed(self, texts: Sequence[str]) -> Any:
        """Same as :meth:`embed` (prepared vectors need no thread)."""
        return self.embed(texts)

    def fits(self, text: str) -> bool:
        """The wrapped embedder's answer (``True`` when it does not say)."""
        return not isinstance(self.inner, Windowed) or self.inner.fits(text)


@dataclass(frozen=True, slots=True)
class PairOutcome:
    """How the semantic tier saw one pair: ``similarity`` and ``passed_checks`` (guards and
    verifier accepted it); the pair is served at threshold ``t`` iff ``passed_checks`` and
    the similarity clears ``t`` (:func:`~deja.semantic.decision.clears`: for a pair of
    ``same_words``, a little below it does)."""

    pair: LabelledPair
    similarity: float
    passed_checks: bool
    reason: str
    probability: float | None
    same_words: bool = False

    def served(self, threshold: float) -> bool:
        """Whether the pair is a hit at ``threshold``."""
        return self.passed_checks and clears(self.similarity, threshold, same_words=self.same_words)


def _request(text: str) -> Request:
    return Request.chat(model=EVAL_MODEL, messages=[{"role": "user", "content": text}])


def score_pairs(
    pairs: Sequence[LabelledPair],
    *,
    make_cache: Callable[[], SemanticCache],
) -> list[PairOutcome]:
    """Store ``a`` and check ``b`` in a fresh cache per pair; one outcome per pair.

    ``make_cache`` builds each fresh :class:`SemanticCache` (share one embedder between
    them; wrap it in :class:`PrecomputedEmbedder` to embed all texts in batches first).
    """
    outcomes: list[PairOutcome] = []
    for i, pair in enumerate(pairs):
        cache = make_cache()
        cache.store(_request(pair.a), f"pair-{i}")
        lookup = cache.inspect(_request(pair.b), threshold=-1.0, evaluate_all=True)
        if not lookup.candidates:
            outcomes.append(PairOutcome(pair, -1.0, False, "no candidate", None))
            continue
        _, decision = lookup.candidates[0]
        outcomes.append(
            PairOutcome(
                pair,
                decision.similarity,
                bool(decision.passed_checks),
                decision.reason,
                decision.probability,
                decision.same_words,
            )
        )
    return outcomes


@dataclass(frozen=True, slots=True)
class StreamReport:
    """A stream of labelled queries through one cache: how many were served, how many wrong.

    Each query is checked against everything stored before it and stored when missed
    (an identical earlier text counts as an exact-tier hit, not here). A semantic hit is
    ``wrong`` when the entry that served it was stored for a query of another label.
    """

    queries: int
    exact_repeats: int
    served: int
    wrong: int

    @property
    def served_share(self) -> float:
        """Semantic hits per query checked (exact repeats excluded)."""
        return _ratio(self.served, self.queries - self.exact_repeats)

    @property
    def wrong_share(self) -> float:
        """Wrong answers per semantic hit: the false-hit rate a user of the cache sees."""
        return _ratio(self.wrong, self.served)


def load_queries(
    path: str | Path, *, limit: int | None = None, seed: int = 0
) -> list[tuple[str, str]]:
    """Labelled queries from a CSV file with ``text`` and ``category`` columns (Banking77's
    layout), shuffled with ``seed`` and cut to ``limit``; ``ConfigError`` on another layout."""
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"text", "category"} <= set(reader.fieldnames or ()):
            raise ConfigError(f"{path}: expected CSV columns 'text' and 'category'")
        rows = [(r["text"].strip(), r["category"]) for r in reader if r["text"].strip()]
    random.Random(seed).shuffle(rows)
    return rows[:limit] if limit is not None else rows


def score_stream(
    queries: Sequence[tuple[str, str]],
    *,
    cache: SemanticCache,
    report_wrong: float = 0.0,
    seed: int = 0,
) -> StreamReport:
    """Send ``queries`` (text, label) in order through ``cache``: check, store on a miss.

    This is how a cache meets prompts in production: each query against every stored
    one, served by the best candidate that passes, not against one chosen partner. Label
    pairs score one comparison at a time; a stream also counts the chance errors of a
    query that has many near neighbours, some of another label.

    ``report_wrong`` is the share of wrong hits whose user reports them
    (``cache.feedback(key, correct=False)``, drawn with ``seed``): how much the feedback
    loop takes off the wrong answers served later in the stream.
    """
    if not 0.0 <= report_wrong <= 1.0:
        raise ValueError("report_wrong is a share, between 0 and 1")
    draw = random.Random(seed).random
    label_of: dict[str, str] = {}
    seen: set[str] = set()
    served = wrong = repeats = 0
    for i, (text, label) in enumerate(queries):
        if text in seen:
            repeats += 1
            continue
        seen.add(text)
        request = _request(text)
        match = cache.check(request)
        if match is None:
            key = f"query-{i}"
            cache.store(request, key)
            label_of[key] = label
            continue
        served += 1
        if label_of.get(match.key) != label:
            wrong += 1
            if report_wrong and draw() < report_wrong:
                cache.feedback(match.key, correct=False)
    return StreamReport(len(queries), repeats, served, wrong)


def pair_similarities(pairs: Sequence[LabelledPair], *, embedder: Embedder) -> Any:
    """The cosine similarity of each pair (one row of floats), and both sides' vectors."""
    vectors_a = np.asarray(embedder.embed([p.a for p in pairs]))
    vectors_b = np.asarray(embedder.embed([p.b for p in pairs]))
    return (vectors_a * vectors_b).sum(axis=1), vectors_a, vectors_b


def neighbour_pairs(
    queries: Sequence[tuple[str, str]],
    *,
    embedder: Embedder,
    low: float = DEFAULT_THRESHOLD,
    high: float = 1.0,
    top: int = 4,
) -> list[tuple[LabelledPair, float]]:
    """The pairs a cache's decision meets in a stream of labelled queries.

    Each query (a new text, in order) with the ``top`` earlier queries most similar to it,
    those at cosine in [``low``, ``high``); ``same`` when both carry one label. Returned
    with their similarity. Unlike a labelled pair file, whose negatives were chosen by
    someone (at random, by word overlap...), these are the near neighbours a query really
    has, so their mix is the one a decision rule faces in production.
    """
    first_label: dict[str, str] = {}
    for text, label in queries:
        first_label.setdefault(text, label)
    texts, labels = list(first_label), list(first_label.values())
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    found: list[tuple[LabelledPair, float]] = []
    for i in range(1, len(texts)):
        sims = vectors[:i] @ vectors[i]
        for j in np.argsort(-sims, kind="stable")[:top]:
            if low <= sims[j] < high:
                pair = LabelledPair(texts[j], texts[i], labels[j] == labels[i])
                found.append((pair, float(sims[j])))
    return found


def rank_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """The probability that a random positive scores above a random negative (ties count
    half): 0.5 is chance, 1 a perfect ranking; ``nan`` without both classes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return math.nan
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # average rank of each distinct value (1-based), so tied scores share their rank
    average = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average[inverse]
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


BAND_SCORES: tuple[str, ...] = ("similarity", "verifier", "word_jaccard", "trigram_jaccard")
"""What :func:`band_report` ranks the pairs by (AUC of each)."""


@dataclass(frozen=True, slots=True)
class BandReport:
    """Pairs of one population inside the verifier's band that the guards pass: how many,
    the share that is ``same``, and how well each of :data:`BAND_SCORES` ranks them."""

    population: str
    pairs: int
    same_share: float
    auc: dict[str, float]


def band_report(
    population: str,
    pairs: Sequence[tuple[LabelledPair, float]],
    *,
    verifier: Verifier,
    embedder: Embedder,
    low: float,
    high: float,
    guards: GuardSettings | None = None,
) -> BandReport:
    """How well the verifier ranks the pairs (with their similarity) it alone decides:
    cosine in [``low``, ``high``), guards passed. A verifier that ranks them no better than
    the similarity does adds hits no more precisely than a lower threshold would."""
    inside = [(p, s) for p, s in pairs if low <= s < high]
    x, passed = pair_matrix(
        [p for p, _ in inside],
        [s for _, s in inside],
        guards=guards,
        word_similarity=word_similarity_for(embedder, guards),
    )
    kept = [(p, s, row) for (p, s), row, ok in zip(inside, x, passed, strict=True) if ok]
    labels = [p.same for p, _, _ in kept]
    columns = {name: i for i, name in enumerate(FEATURE_NAMES)}
    scores: dict[str, list[float]] = {name: [] for name in BAND_SCORES}
    vector_of: dict[str, Any] = {}
    if verifier.uses_vectors and kept:  # every text in one call (the embedder batches)
        texts = list(dict.fromkeys(t for p, _, _ in kept for t in (p.a, p.b)))
        rows = np.asarray(embedder.embed(texts), dtype=np.float64)
        vector_of = dict(zip(texts, rows, strict=True))
    for pair, sim, row in kept:
        vectors = (vector_of[pair.a], vector_of[pair.b]) if vector_of else None
        scores["verifier"].append(verifier.probability(row.tolist(), vectors))
        scores["similarity"].append(sim)
        scores["word_jaccard"].append(float(row[columns["word_jaccard"]]))
        scores["trigram_jaccard"].append(float(row[columns["trigram_jaccard"]]))
    return BandReport(
        population,
        len(kept),
        _ratio(sum(labels), len(labels)),
        {name: rank_auc(values, labels) for name, values in scores.items()},
    )


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Figures at one threshold (fractions 0..1; ``nan`` when undefined)."""

    pairs: int
    threshold: float
    precision: float
    recall: float
    false_hit_rate: float
    hits: int = 0
    true_hits: int = 0
    positives: int = 0
    negatives: int = 0

    def to_json(self) -> dict[str, Any]:
        """``{"pairs", "threshold", "precision", "recall", "false_hit_rate"}``; a figure the
        pairs leave undefined (nothing served, no positives, no negatives) is ``None``:
        JSON has no NaN."""
        return {
            "pairs": self.pairs,
            "threshold": self.threshold,
            "precision": _defined(self.precision),
            "recall": _defined(self.recall),
            "false_hit_rate": _defined(self.false_hit_rate),
        }


def _defined(value: float) -> float | None:
    return None if math.isnan(value) else value


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def evaluate_pairs(
    outcomes: Sequence[PairOutcome], threshold: float, *, bare: bool = False
) -> EvalReport:
    """Figures of ``outcomes`` at ``threshold``; ``bare`` ignores guards and verifier."""
    positives = sum(o.pair.same for o in outcomes)
    negatives = len(outcomes) - positives
    served = [o for o in outcomes if (o.similarity >= threshold if bare else o.served(threshold))]
    true_hits = sum(o.pair.same for o in served)
    false_hits = len(served) - true_hits
    return EvalReport(
        pairs=len(outcomes),
        threshold=threshold,
        precision=_ratio(true_hits, len(served)),
        recall=_ratio(true_hits, positives),
        false_hit_rate=_ratio(false_hits, negatives),
        hits=len(served),
        true_hits=true_hits,
        positives=positives,
        negatives=negatives,
    )


MIN_POSITIVES = 100
"""Positive pairs below which a report warns that recall is measured too coarsely: with
100, its 95% margin is at most +-10 points (1.96 * sqrt(0.25 / 100))."""


def negatives_needed(max_false_hit_rate: float) -> int | None:
    """The negative pairs it takes for a sample to show a false-hit rate at most
    ``max_false_hit_rate``: ``3 / rate`` (300 for 1%), ``None`` for a rate of 0 (no sample
    shows that).

    The rule of three: with no false hit among ``n`` negative pairs, the false-hit rate is
    below ``3 / n`` at 95% confidence, and that is the best a sample of ``n`` can show.
    With fewer than ``3 / rate``, even a flawless sample is consistent with a rate above
    the target (one false hit among 3 negatives would be 33%). It is a minimum: a
    threshold that serves some of the negatives needs more to be shown within the target.
    """
    if max_false_hit_rate <= 0:
        return None
    return math.ceil(3 / max_false_hit_rate - 1e-9)


def false_hit_bound(false_hits: int, negatives: int, confidence: float = 0.95) -> float:
    """The false-hit rate that ``false_hits`` served among ``negatives`` negative pairs
    show it to be below, at ``confidence`` (the one-sided Clopper-Pearson bound: the rate
    at which so few false hits or fewer would happen only ``1 - confidence`` of the time).
    With none served it is ``1 - 0.05 ** (1 / n)``, about ``3 / n`` (the rule of three);
    each false hit raises it (2 among 3,640: 0.17%, not the 0.055% seen)."""
    if negatives <= 0:
        return 1.0
    if false_hits >= negatives:
        return 1.0
    alpha = 1.0 - confidence
    lo, hi = false_hits / negatives, 1.0
    for _ in range(60):  # bisection: the binomial CDF falls as the rate rises
        mid = (lo + hi) / 2
        if _binomial_cdf(false_hits, negatives, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (n may be tens of thousands)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    base = math.lgamma(n + 1)
    return sum(
        math.exp(base - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
        for i in range(k + 1)
    )


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    """Per-threshold figures and the threshold chosen for the target false-hit rate.

    ``chosen`` is the lowest threshold (most recall) whose false-hit rate on these pairs is
    at most ``max_false_hit_rate``; ``None`` if none is (there were no negatives, or even
    the strictest threshold served too many). ``recommended`` is the lowest threshold the
    pairs *show* to meet the target: its false hits keep the rate's 95% upper bound
    (:func:`false_hit_bound`) within it, which takes at least :func:`negatives_needed`
    negatives, and more for a threshold that serves some. ``supported``: there is one.
    """

    max_false_hit_rate: float
    rows: tuple[EvalReport, ...]
    chosen: EvalReport | None
    bare_rows: tuple[EvalReport, ...] = field(default=())
    embedder: str = ""
    """The id of the embedder scored (a threshold holds for its similarities only)."""
    verifier: str = ""
    """The verifier scored: ``vectors`` (it weighs the embedder's vectors too), ``text``
    (text features only) or ``none``."""

    @property
    def positives(self) -> int:
        """Positive pairs (``"same": true``) scored."""
        return self.rows[0].positives if self.rows else 0

    @property
    def negatives(self) -> int:
        """Negative pairs (``"same": false``) scored."""
        return self.rows[0].negatives if self.rows else 0

    @property
    def negatives_needed(self) -> int | None:
        """Negative pairs it takes to show the target (:func:`negatives_needed`)."""
        return negatives_needed(self.max_false_hit_rate)

    @property
    def recommended(self) -> EvalReport | None:
        """The lowest threshold shown to meet the target (see the class docstring)."""
        target, needed = self.max_false_hit_rate, self.negatives_needed
        if needed is None or self.negatives < needed:  # (the rule of three's minimum)
            return None
        for r in sorted(self.rows, key=lambda r: r.threshold):
            # (only a row within the target on these pairs can be shown within it: the
            # bound is never below the rate seen; the others cost no bound)
            if not r.negatives or not r.false_hit_rate <= target:
                continue
            if false_hit_bound(r.hits - r.true_hits, r.negatives) <= target:
                return r
        return None

    @property
    def supported(self) -> bool:
        """Whether the pairs show some threshold to meet the target (``recommended``)."""
        return self.recommended is not None

    def caveats(self) -> list[str]:
        """What the pairs are too few to show, one sentence each."""
        out: list[str] = []
        positives, negatives = self.positives, self.negatives
        if not positives:
            out.append('recall cannot be measured without positive pairs ("same": true)')
        elif positives < MIN_POSITIVES:
            out.append(
                f'recall rests on only {positives} positive pairs ("same": true), each'
                f" {1 / positives:.1%} of it: at least {MIN_POSITIVES} are needed to"
                " measure it within +-10 points (95% confidence)"
            )
        needed = self.negatives_needed
        if not negatives:
            out.append(
                "the false-hit rate cannot be measured without negative pairs"
                ' ("same": false), so no threshold can be chosen'
            )
        elif needed is None:
            out.append(
                "no number of pairs can show a false-hit rate of 0: with none served among n"
                " negative pairs, it is only shown below 3/n at 95% confidence (the rule of"
                f" three; {min(1.0, 3 / negatives):.1%} for these {negatives})"
            )
        elif negatives < needed:
            out.append(
                f'too few negative pairs ("same": false) to show a false-hit rate <='
                f" {self.max_false_hit_rate:.2%}: {negatives} here, at least {needed} needed"
                " (with no false hit among n negative pairs, the rate is below 3/n at 95%"
                " confidence: the rule of three)"
            )
        return out

    def format(self) -> str:
        """A plain-text table, then what the pairs are too few to show, the chosen
        threshold last."""
        lines = []
        if self.embedder:
            lines.append(f"scored with embedder {self.embedder}, verifier: {self.verifier}")
        lines.append(
            f"{'threshold':>9}  {'precision':>9}  {'recall':>7}  {'false hits':>10}  {'hits':>5}"
        )
        recommended = self.recommended
        for r in self.rows:
            mark = ""
            if r is recommended:
                mark = "  <- chosen"
            elif r is self.chosen:
                mark = "  <- lowest within the target here"
            lines.append(
                f"{r.threshold:>9.3f}  {_pct(r.precision):>9}  {_pct(r.recall):>7}"
                f"  {_pct(r.false_hit_rate):>10}  {r.hits:>5}{mark}"
            )
        lines.extend(self.caveats())
        c = self.chosen
        if not self.negatives:
            pass  # said among the caveats
        elif c is None:
            lines.append(
                f"no threshold keeps the false-hit rate at or below {self.max_false_hit_rate:.2%}"
            )
        elif recommended is not None:
            r = recommended
            bound = false_hit_bound(r.hits - r.true_hits, r.negatives)
            lines.append(
                f"threshold {r.threshold:.3f} meets false-hit rate <= "
                f"{self.max_false_hit_rate:.2%}: precision {_pct(r.precision)},"
                f" recall {_pct(r.recall)}, false-hit rate {_pct(r.false_hit_rate)}"
                f" (below {bound:.2%} at 95% confidence)"
            )
            if r is not c:
                lines.append(
                    f"(threshold {c.threshold:.3f} is within the target on these pairs, but"
                    f" its {c.hits - c.true_hits} false hits among {c.negatives} negatives"
                    " are as likely from a rate up to"
                    f" {false_hit_bound(c.hits - c.true_hits, c.negatives):.2%})"
                )
        elif self.negatives >= (self.negatives_needed or math.inf):
            lines.append(
                f"no recommendation: threshold {c.threshold:.3f} is the lowest within"
                f" {self.max_false_hit_rate:.2%} on these pairs (false-hit rate"
                f" {_pct(c.false_hit_rate)}), but no threshold's false hits show the rate"
                f" below the target at 95% confidence (the lowest: its"
                f" {c.hits - c.true_hits} among {c.negatives} negatives allow up to"
                f" {false_hit_bound(c.hits - c.true_hits, c.negatives):.2%}); label more"
                " negative pairs, or set a higher target"
            )
        else:
            needed = self.negatives_needed
            advice = (
                "set a target above 0"
                if needed is None
                else f"have at least {needed} negative pairs labelled before changing the"
                f" default threshold ({DEFAULT_THRESHOLD:.2f})"
            )
            within = (
                "with no false hit" if needed is None else f"within {self.max_false_hit_rate:.2%}"
            )
            lines.append(
                f"no recommendation: threshold {c.threshold:.3f} is the lowest {within}"
                f" on these pairs (precision {_pct(c.precision)},"
                f" recall {_pct(c.recall)}, false-hit rate {_pct(c.false_hit_rate)}), but"
                f" {self.negatives} negative pairs cannot show that it meets the target: {advice}"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-able data: ``lowest_within_target`` is the lowest threshold
        within the target on these pairs; ``chosen`` the lowest the pairs show within it
        (``recommended``), else ``None``."""
        lowest = self.chosen.to_json() if self.chosen is not None else None
        recommended = self.recommended
        return {
            "embedder": self.embedder,
            "verifier": self.verifier,
            "max_false_hit_rate": self.max_false_hit_rate,
            "chosen": recommended.to_json() if recommended is not None else None,
            "lowest_within_target": lowest,
            "supported": self.supported,
            "negatives": self.negatives,
            "negatives_needed": self.negatives_needed,
            "positives": self.positives,
            "caveats": self.caveats(),
            "rows": [r.to_json() for r in self.rows],
        }


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def default_thresholds() -> list[float]:
    """0.50 to 0.99 by 0.01."""
    return [round(0.5 + i / 100, 2) for i in range(50)]


def calibrate(
    pairs: Sequence[LabelledPair] | str | Path,
    *,
    max_false_hit_rate: float = 0.01,
    semantic: Callable[[], SemanticCache] | None = None,
    embedder: Embedder | None = None,
    thresholds: Sequence[float] | None = None,
) -> CalibrationReport:
    """Score labelled pairs with the full decision and find the threshold for a target.

    ``pairs`` is a list of :class:`LabelledPair` or a JSONL path. ``semantic`` builds the
    :class:`SemanticCache` to calibrate (fresh per pair; default: the shipped settings on
    ``embedder``, default the embedded model; :func:`configured_tier` gives those of a
    configuration). Guards and verifier are those of the cache; only the cosine threshold
    is swept. The report names the embedder and verifier scored.
    """
    if not 0.0 <= max_false_hit_rate <= 1.0:
        raise ValueError("max_false_hit_rate is a fraction between 0 and 1")
    if isinstance(pairs, (str, Path)):
        items = load_pairs(pairs)
        if not items:
            raise ConfigError(f"{pairs}: no labelled pairs in the file")
    else:
        items = list(pairs)
        if not items:
            raise ValueError("no labelled pairs to calibrate on")
    make_cache = semantic if semantic is not None else shipped_cache_factory(embedder, items)
    scored = make_cache()  # (what each pair is scored with: said in the report)
    verifier = scored.verifier
    used = "none" if verifier is None else "vectors" if verifier.uses_vectors else "text"
    outcomes = score_pairs(items, make_cache=make_cache)
    rows = tuple(evaluate_pairs(outcomes, t) for t in (thresholds or default_thresholds()))
    meeting = [
        r
        for r in rows
        if r.negatives
        and not math.isnan(r.false_hit_rate)
        and r.false_hit_rate <= max_false_hit_rate
    ]
    chosen = min(meeting, key=lambda r: r.threshold) if meeting else None
    return CalibrationReport(
        max_false_hit_rate, rows, chosen, embedder=scored.embedder.id, verifier=used
    )


def configured_tier(path: str | Path, pairs: Sequence[LabelledPair]) -> Callable[[], SemanticCache]:
    """Fresh semantic tiers as the configuration file at ``path`` builds them (its
    embedder, with the guards and verifier the tier chooses for it), for :func:`calibrate`;
    ``pairs``' texts are embedded first, in batches. Each has an in-process index,
    whatever index the configuration names: pairs are scored in fresh indexes, without a
    server. Raises :class:`~deja.errors.ConfigError` when it configures no semantic tier.
    """
    from dataclasses import replace

    from deja.config import _SEMANTIC_TYPES, load_config

    # (its start-up warnings are not said again: the remote model's one is why this runs)
    caching = load_config(path, log_warnings=False).caching
    if caching is None or caching.type not in _SEMANTIC_TYPES:
        raise ConfigError(
            f"{path} configures no semantic tier (caching.type: one of"
            f" {', '.join(sorted(_SEMANTIC_TYPES))})"
        )
    tier = replace(caching, type="semantic").build_semantic()
    return shipped_cache_factory(
        tier.embedder, pairs, guards=tier.guards, verifier=tier.verifier, top_k=tier.top_k
    )


def shipped_cache_factory(
    embedder: Embedder | None,
    pairs: Sequence[LabelledPair],
    *,
    index: Any = None,
    **options: Any,
) -> Callable[[], SemanticCache]:
    """A factory of fresh :class:`SemanticCache` objects sharing one embedder.

    All the pairs' texts are embedded first, in batches. ``options`` are passed to
    :class:`SemanticCache` (``threshold``, ``guards``, ``verifier``...). ``index``: one
    server-backed :class:`~deja.semantic.index.VectorIndex` (Redis, Qdrant) to use instead
    of a fresh in-process one, emptied for each cache made.
    """
    from deja.semantic.cache import SemanticCache
    from deja.semantic.embedders import LocalEmbedder
    from deja.semantic.index import InProcessIndex

    shared = PrecomputedEmbedder(embedder if embedder is not None else LocalEmbedder())
    shared.prepare([t for p in pairs for t in (p.a, p.b)])

    def make() -> SemanticCache:
        if index is not None:
            index.clear()
            return SemanticCache(embedder=shared, index=index, **options)
        fresh = InProcessIndex(dim=shared.dim, max_entries=None, hnsw_threshold=None)
        return SemanticCache(embedder=shared, index=fresh, **options)

    return make


# -- training the verifier -------------------------------------------------------------


# Sign each weight may be given (+1: more of it can only make a hit likelier, -1: only
# less likely, 0: free), with ``constrain_signs``. Free, the verifier learns from dev.jsonl
# that high word overlap *with only moderate similarity* means a negative, and that is an
# artifact of how dev's negatives were drawn (half of them for sharing words): between
# cosine 0.70 and 0.85 trigram overlap ranks dev's pairs with an AUC of 0.21 and a
# Banking77 stream's neighbour pairs with 0.62 (``band_report``). Constrained, every overlap
# weight goes to 0 and the verifier sits on the bare threshold's curve in that stream
# (CV recall on dev 29.1% vs 31.0% free, template recall 87.6% vs 93.3%); free, with the
# shipped recipe's tight cut, it sits ~1 point of wrong answers above that curve. The free
# one ships (the recipe gives it that band only where it is very sure); the choice is open.
# A free model extrapolates badly to identical wording, hence ``trust_above``.
WEIGHT_SIGNS: dict[str, int] = {
    "similarity": 1,
    "similarity_squared": 1,
    "word_jaccard": 1,
    "word_containment": 1,
    "trigram_jaccard": 1,
    "unmatched_words": -1,
    "unmatched_imbalance": -1,
    "log_min_length": 0,
    "length_ratio": -1,
    "negation_mismatch": -1,
    "one_sided_polarity": -1,
    "shared_anchors": 1,
}


def _fit_logistic(
    x: Any, y: Any, *, penalty: Any, signs: Any = None
) -> tuple[Any, Any, Any, float]:
    """L2-regularised logistic regression (Newton's method, standardised features, one
    penalty per column), with the weight ``signs`` (+1, -1 or 0 per column, ``None``: all
    free) enforced by an active set: a weight of the wrong sign is fixed at 0 and the rest
    refit."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z_all = np.c_[(x - mean) / scale, np.ones(len(x))]
    wanted = np.r_[np.zeros(x.shape[1]) if signs is None else signs, 0]
    penalties = np.r_[penalty, 0.0]  # the intercept is not penalised
    free = np.ones(z_all.shape[1], dtype=bool)
    while True:
        z = z_all[:, free]
        w = np.zeros(z.shape[1])
        ridge = np.diag(penalties[free] + 1e-9)
        for _ in range(100):
            p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
            grad = z.T @ (p - y) + penalties[free] * w
            hess = (z * (p * (1 - p))[:, None]).T @ z + ridge
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-9:
                break
        full = np.zeros(z_all.shape[1])
        full[free] = w
        wrong = free & (wanted * full < 0)
        if not wrong.any():
            return mean, scale, full[:-1], float(full[-1])
        free &= ~wrong


_MIN_VECTOR_SPREAD = 1e-6
"""Vector features whose standard deviation over the training rows is below this get
weight 0 (see :func:`_fit_model`)."""


@dataclass(frozen=True, slots=True)
class _Model:
    """A fitted verifier as arrays: text part standardised, vector part folded."""

    mean: Any
    scale: Any
    weights: Any
    bias: float
    vector_weights: Any = None  # (2 * dim,) over [u*v, |u-v|], or None


def _vector_features(a: Any, b: Any) -> Any:
    """``[u*v, |u-v|]`` per row of the two matrices of unit vectors (float64)."""
    u = np.asarray(a, dtype=np.float64)
    v = np.asarray(b, dtype=np.float64)
    return np.concatenate([u * v, np.abs(u - v)], axis=1)


def _fit_model(
    x: Any,
    e: Any,
    y: Any,
    *,
    l2: float,
    vector_l2: float,
    components: int,
    constrain_signs: bool = False,
) -> _Model:
    """Fit on text features ``x`` and, unless ``e`` is ``None``, vector features ``e``.

    The vector part is confined to the top ``components`` principal components of the
    standardised vector features of these rows (768 raw weights on a thousand pairs
    overfit), penalised by ``vector_l2``; the projection and both standardisations are then
    folded into one weight per vector feature and the bias, so scoring needs no basis.
    """
    n = x.shape[1]
    signs = np.array([WEIGHT_SIGNS[name] for name in FEATURE_NAMES]) if constrain_signs else None
    if e is None:
        mean, scale, w, b = _fit_logistic(x, y, penalty=np.full(n, l2), signs=signs)
        return _Model(mean, scale, w, b)
    e_mean = e.mean(axis=0)
    e_scale = e.std(axis=0)
    # A feature without spread carries no information, only noise: the embedded model has
    # dead dimensions (values ~1e-30..1e-9 for every text; live ones spread >= 5e-4), and
    # dividing by their spread would fold into weights of millions that amplify rounding.
    dead = e_scale < _MIN_VECTOR_SPREAD
    e_scale[dead] = 1.0
    standard = (e - e_mean) / e_scale
    standard[:, dead] = 0.0
    k = max(1, min(components, *standard.shape))
    basis = np.linalg.svd(standard, full_matrices=False)[2][:k].T  # (2 * dim, k)
    penalty = np.r_[np.full(n, l2), np.full(k, vector_l2)]
    if signs is not None:
        signs = np.r_[signs, np.zeros(k)]
    mean, scale, w, b = _fit_logistic(np.c_[x, standard @ basis], y, penalty=penalty, signs=signs)
    projected = w[n:] / scale[n:]
    vector_weights = basis @ projected / e_scale
    vector_weights[dead] = 0.0
    bias = b - float(mean[n:] @ projected) - float(e_mean @ vector_weights)
    return _Model(mean[:n], scale[:n], w[:n], bias, vector_weights)


def _predict(model: _Model, x: Any, e: Any) -> Any:
    z = ((x - model.mean) / model.scale) @ model.weights + model.bias
    if model.vector_weights is not None:
        z = z + e @ model.vector_weights
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def _lowest_cut(
    scores: Any, labels: Any, eligible: Any, target: float, *, trusted: Any, added: int | None
) -> float:
    """The lowest probability cut whose false-hit rate over all pairs stays <= target.

    With ``added`` set, the budget is instead the false hits of the ``trusted`` pairs
    (served whatever the verifier says) plus ``added``: the verifier may add at most that
    many false hits of its own.
    """
    negatives = int((~labels).sum())
    if added is None:
        allowed = math.floor(target * negatives + 1e-9)
    else:
        allowed = int((trusted & eligible & ~labels).sum()) + added
    order = np.argsort(-scores, kind="stable")
    false_hits = 0
    cut = 1.0
    for i in order:
        if not eligible[i]:
            continue
        if not labels[i]:
            false_hits += 1
            if false_hits > allowed:
                break
        cut = float(scores[i])
    return cut


def pair_matrix(
    pairs: Sequence[LabelledPair],
    similarities: Sequence[float],
    *,
    guards: GuardSettings | None = None,
    word_similarity: Callable[[str, str], float] | None = None,
) -> tuple[Any, Any]:
    """Verifier features of every pair (rows) and whether the guards passed it (the
    substitution guard too, given ``word_similarity``: see :func:`word_similarity_for`)."""
    return _pair_matrix(pairs, similarities, _prepared(pairs), guards, word_similarity)


def _prepared(pairs: Sequence[LabelledPair]) -> list[tuple[PreparedText, PreparedText]]:
    """Each pair's two texts as :class:`PreparedText` ones, each text's one object: a text
    in several pairs has its signature and features worked out once (no cache keeps them
    beyond this, see :class:`PreparedText`)."""
    texts: dict[str, PreparedText] = {}
    return [
        (texts.setdefault(p.a, PreparedText(p.a)), texts.setdefault(p.b, PreparedText(p.b)))
        for p in pairs
    ]


def _pair_matrix(
    pairs: Sequence[LabelledPair],
    similarities: Sequence[float],
    prepared: Sequence[tuple[PreparedText, PreparedText]],
    guards: GuardSettings | None,
    word_similarity: Callable[[str, str], float] | None,
) -> tuple[Any, Any]:
    rows: list[list[float]] = []
    passed: list[bool] = []
    for pair, sim, (a, b) in zip(pairs, similarities, prepared, strict=True):
        report, _ = guard_report(a.signature, b.signature, guards, word_similarity)
        rows.append(
            pair_features(
                float(sim),
                pair.a,
                pair.b,
                sig_a=a.signature,
                sig_b=b.signature,
                report=report,
                features_a=a.features,
                features_b=b.features,
            )
        )
        passed.append(report.ok)
    return np.array(rows, dtype=np.float64), np.array(passed, dtype=bool)


def fit_verifier(
    pairs: Sequence[LabelledPair],
    *,
    embedder: Embedder,
    threshold: float,
    guards: GuardSettings | None = None,
    target_false_hit_rate: float = 0.008,
    added_false_hits: int | None = None,
    trust_above: float = 1.01,
    trust_floor: float = 0.0,
    l2: float = 3.0,
    vectors: bool = True,
    vector_components: int = 32,
    vector_l2: float = 10.0,
    folds: int = 5,
    repeats: int = 3,
    seed: int = 0,
) -> tuple[Verifier, dict[str, Any]]:
    """Train the verifier on labelled pairs; report cross-validated figures.

    The model sees the pairs at or above ``threshold`` that pass the guards (the ones it
    will judge): the text features of :func:`pair_features` (penalty ``l2``) and, with
    ``vectors``, the embedder's ``[u*v, |u-v|]`` confined to their top
    ``vector_components`` principal components (penalty ``vector_l2``). Everything fitted
    from data (standardisation, components, weights, the cut) is fitted on training rows
    only. Cross-validation is nested: for each outer fold the probability cut is chosen on
    out-of-fold scores of the training folds only, then the whole decision (threshold,
    guards, verifier) is scored on the held-out fold; ``repeats`` reshuffles. The shipped
    model is fit on all pairs, its cut chosen on out-of-fold scores; the report gives its
    training-set figures too (``train_recall``, ``train_false_hit_rate``: optimistic, the
    model has seen those pairs). ``trust_floor`` vetoes a trusted pair (similarity at least
    ``trust_above``) the model scores below it; the cut is chosen without the veto, the
    figures are those of the decision with it.
    """
    labels = np.array([p.same for p in pairs], dtype=bool)
    sims, vectors_a, vectors_b = pair_similarities(pairs, embedder=embedder)
    words = word_similarity_for(embedder, guards)
    prepared = _prepared(pairs)
    x, passed = _pair_matrix(pairs, sims.tolist(), prepared, guards, words)
    e = _vector_features(vectors_a, vectors_b) if vectors else None
    eligible = passed & (sims >= threshold)
    trusted = eligible & (sims >= trust_above)
    # a pair of the same words is served whatever the model says (Verifier.accepts says
    # why), down to SLIP_ALLOWANCE below the threshold
    same_words = np.array([a.signature.same_words_as(b.signature) for a, b in prepared])
    slipped = passed & same_words & (sims >= threshold - SLIP_ALLOWANCE)

    def fit(rows: Any) -> _Model:
        return _fit_model(
            x[rows],
            None if e is None else e[rows],
            labels[rows].astype(float),
            l2=l2,
            vector_l2=vector_l2,
            components=vector_components,
        )

    def predict(model: _Model, rows: Any) -> Any:
        return _predict(model, x[rows], None if e is None else e[rows])

    def oof(index: Any, rng_seed: int) -> Any:
        assignment = np.random.default_rng(rng_seed).permutation(len(index)) % folds
        scores = np.zeros(len(index))
        for k in range(folds):
            train = index[assignment != k]
            scores[assignment == k] = predict(fit(train[eligible[train]]), index[assignment == k])
        return scores

    def served(scores: Any, cut: float, index: Any) -> Any:
        kept = trusted[index] & (scores >= trust_floor)
        return (eligible[index] & ((scores >= cut) | kept)) | slipped[index]

    results: list[tuple[float, float]] = []
    everything = np.arange(len(pairs))
    for r in range(repeats):
        outer = np.random.default_rng(seed + r).permutation(len(pairs)) % folds
        hit = np.zeros(len(pairs), dtype=bool)
        for k in range(folds):
            train, test = everything[outer != k], everything[outer == k]
            inner = oof(train, seed + 100 + r)
            cut = _lowest_cut(
                np.where(trusted[train], 1.0, inner),
                labels[train],
                eligible[train],
                target_false_hit_rate,
                trusted=trusted[train],
                added=added_false_hits,
            )
            hit[test] = served(predict(fit(train[eligible[train]]), test), cut, test)
        results.append((float(hit[labels].mean()), float(hit[~labels].mean())))
    all_scores = oof(everything, seed + 1000)
    cut = _lowest_cut(
        np.where(trusted, 1.0, all_scores),
        labels,
        eligible,
        target_false_hit_rate,
        trusted=trusted,
        added=added_false_hits,
    )
    model = fit(everything[eligible])
    train_hit = served(predict(model, everything), cut, everything)
    cv = {
        "pairs": len(pairs),
        "threshold": threshold,
        "folds": folds,
        "repeats": repeats,
        "cv_recall": float(np.mean([r for r, _ in results])),
        "cv_false_hit_rate": float(np.mean([f for _, f in results])),
        "train_recall": float(train_hit[labels].mean()),
        "train_false_hit_rate": float(train_hit[~labels].mean()),
        "target_false_hit_rate": target_false_hit_rate,
        "trust_floor": trust_floor,
        "l2": l2,
    }
    if vectors:
        cv.update(vector_components=vector_components, vector_l2=vector_l2)
    verifier = Verifier(
        features=FEATURE_NAMES,
        mean=tuple(float(v) for v in model.mean),
        scale=tuple(float(v) for v in model.scale),
        weights=tuple(float(v) for v in model.weights),
        bias=model.bias,
        cut=cut,
        trust_above=trust_above,
        trust_floor=trust_floor,
        info=cv,
        vector_weights=()
        if model.vector_weights is None
        else tuple(float(v) for v in model.vector_weights),
        embedder=embedder.id if vectors else None,
    )
    return verifier, cv


SHIPPED_RECIPE: dict[str, Any] = {
    "threshold": DEFAULT_THRESHOLD,
    # what the guards pass at a bare threshold's 1% false-hit point is served as is
    "trust_above": BARE_THRESHOLD,
    # ... unless the model is fairly sure it is wrong: on pairs built unlike dev's (bench/
    # data/*_pairs.jsonl) a quarter of the false hits left are vetoed so, for ~1% of recall
    "trust_floor": 0.7,
    "target_false_hit_rate": 0.01,
    "added_false_hits": 0,
    "l2": 3.0,
    "vector_components": 32,
    "vector_l2": 10.0,
    "folds": 5,
    "repeats": 10,
    "seed": 0,
}
"""How the shipped verifiers are trained on ``shared/semantic/dev.jsonl`` (see
:func:`fit_shipped_verifiers`); ``threshold`` is
:data:`~deja.semantic.decision.DEFAULT_THRESHOLD`."""


def fit_shipped_verifiers(
    pairs: Sequence[LabelledPair], *, embedder: Embedder
) -> tuple[Verifier, Verifier]:
    """The two shipped verifiers, trained by :data:`SHIPPED_RECIPE`: ``verifier.json``
    (text features and ``embedder``'s vectors) and ``verifier_text.json`` (text only, for
    other embedders). Their ``info`` holds the training-set and nested-CV figures."""
    with_vectors, _ = fit_verifier(pairs, embedder=embedder, vectors=True, **SHIPPED_RECIPE)
    text_only, _ = fit_verifier(pairs, embedder=embedder, vectors=False, **SHIPPED_RECIPE)
    return with_vectors, text_only
