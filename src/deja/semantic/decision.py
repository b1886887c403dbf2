"""The semantic "is this a hit?" decision: a pure function of the pair and the settings.

A candidate (the stored prompt nearest to the query within the scope) is served when

1. its cosine similarity is at least the threshold (raised for an entry that was reported
   wrong, see ``SemanticCache.feedback``);
2. every enabled guard agrees (:func:`deja.semantic.guards.check_guards`), and where the
   two prompts differ in one content word only, the two words mean nearly the same
   (:data:`SUBSTITUTION_SIMILARITY`);
3. the verifier accepts the pair (:class:`deja.semantic.verifier.Verifier`), if one is set;
   the shipped one weighs the two prompt vectors too, so the caller passes them (the query's
   is at hand, the candidate's comes back from ``VectorIndex.search(with_vectors=True)``).

The order is cheapest first; the reason of a rejection is kept for metrics and calibration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deja.semantic.guards import GuardReport, GuardSettings, Signature, check_guards, signature
from deja.semantic.guards.spelling import one_word
from deja.semantic.guards.words import prefixed
from deja.semantic.verifier import TextFeatures, Verifier, pair_features, text_features

if TYPE_CHECKING:
    from deja.semantic.embedders import Embedder, WordSimilarity

__all__ = [
    "BARE_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "SLIP_ALLOWANCE",
    "SUBSTITUTION_SIMILARITY",
    "Decision",
    "PreparedText",
    "clears",
    "decide",
    "guard_report",
    "prepare",
    "word_similarity_for",
]

DEFAULT_THRESHOLD = 0.70
"""The shipped cosine threshold: the first filter (guards and the verifier do the rest).

The shipped verifier trusts a candidate at cosine >= 0.85 that the guards pass (the
region a bare threshold already serves at a 1% false-hit rate) unless it scores it below
0.7 (``trust_floor``: near-duplicates of other kinds than dev's, BENCHMARKS.md), and,
between 0.70 and 0.85, serves only what it accepted with no false hit of its own on the
labelled dev pairs (out of fold). Looser settings score better pair by pair and worse in
a cache: trained from 0.60 with a 0.8% false-hit budget, the verifier reaches 41% dev
recall by nested CV, but a stream of 3,000 Banking77 queries through one cache (``python
-m deja.bench.semantic --stream``) then gets a wrong-intent answer for 17-25% of its
semantic hits, against ~5% as shipped and 4-5% for guards with a bare 0.85
(BENCHMARKS.md). Without a verifier it is far
too low: see :data:`BARE_THRESHOLD`."""

BARE_THRESHOLD = 0.85
"""The default threshold without a verifier: a bare cosine of the embedded model needs about
0.85 for a 1% false-hit rate on the labelled dev pairs (0.846 measured)."""


SLIP_ALLOWANCE = 0.25
"""How far below the threshold two prompts that say the same words are served (typing
slips, framing words or one part moved aside: :meth:`Signature.same_words_as
<deja.semantic.guards.Signature.same_words_as>`). A mistyped word falls apart into word
pieces and costs the embedded model a lot: "why is my aquarium water cloudy" / "why is my
aquarim water cloudy" 0.755, "how to contact customer support on deliveroo" / "how to
contact custommer suport on deliveroo" 0.661, "what is a cantilever in architecture" /
"what is a cantilver in architechture" 0.456. At the default threshold such a pair is
served from 0.45."""

SUBSTITUTION_SIMILARITY = 0.6
"""How alike (cosine of the embedded model's vectors of each word alone) the one word two
prompts trade must be for the pair to pass (``GuardReport.substituted``): "largest" /
"biggest" 0.94, "funds" / "money" 0.69, "fee" / "charge" 0.67 pass; "change" / "update"
0.597, "recursion" / "iteration" 0.57, "install" / "configure" 0.48, "drive" / "flight"
0.40 are refused. Measured where every other guard passes: of the probe set's pairs,
near-duplicates 109 of 115 refused, rewordings 1 of 4 (a misspelt synonym); of Banking77's
pairs at cosine >= 0.70, two intents 166 of 171, one intent 396 of 489 (many of them
synonyms whose words the model sets apart: "think" / "believe", "cancelled" /
"reverted"); 475 of all its 685,976 same-intent pairs. Served figures: BENCHMARKS.md."""


class PreparedText:
    """A prompt's ``text`` and what deciding on it needs: its guard :attr:`signature` and
    its verifier :attr:`features`, each worked out on first use, then kept.

    :func:`decide` takes one in place of a text. A query meets up to ``top_k`` candidates,
    and a stored prompt is a candidate of every later check near it: the semantic tier
    keeps these per text and tenant scope, never in a cache every tenant shares (a prompt
    whose signature was already worked out is decided ~0.4 ms sooner, which would tell a
    tenant that someone else had just sent that prompt exactly). Safe to share between
    threads (two of them may work a value out at once: the same value).
    """

    __slots__ = ("_features", "_signature", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._signature: Signature | None = None
        self._features: TextFeatures | None = None

    @property
    def signature(self) -> Signature:
        """The guards' anchors of the text (:func:`~deja.semantic.guards.signature`)."""
        sig = self._signature
        if sig is None:
            sig = self._signature = signature(self.text)
        return sig

    @property
    def features(self) -> TextFeatures:
        """The verifier's features of the text (:func:`~deja.semantic.verifier.text_features`)."""
        features = self._features
        if features is None:
            features = self._features = text_features(self.text)
        return features

    @property
    def worked_out(self) -> bool:
        """Whether anything of it was worked out yet (one never decided on: nothing)."""
        return self._signature is not None or self._features is not None

    def __repr__(self) -> str:
        return f"PreparedText({self.text!r})"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one candidate.

    ``reason`` is ``"hit"``, ``"threshold"``, ``"guards:<names>"``, ``"verifier"`` or
    ``"damaged"`` (a similarity no two unit vectors have: a stored vector is damaged).
    ``passed_checks`` says whether guards and verifier accepted the pair, whatever the
    threshold: calibration sweeps thresholds over it (with :func:`clears` and
    ``same_words``, the two prompts say the same words) without deciding again. ``detail``
    says more where a reason alone would not (the substitution guard: the two words and
    how alike they are, ``"install / configure: 0.48"``).
    """

    hit: bool
    similarity: float
    reason: str
    probability: float | None = None
    passed_checks: bool | None = None
    detail: str | None = None
    same_words: bool = False


# the most two unit vectors' cosine can be, with float32 rounding (int8 rows are scored
# after rescaling: their rounding stays well inside it)
_MOST_SIMILAR = 1.001


def word_similarity_for(
    embedder: Embedder, guards: GuardSettings | None = None
) -> WordSimilarity | None:
    """What a cache over ``embedder`` with ``guards`` checks a one-word substitution with
    (``None``: it does not): :meth:`WordSimilarity.of
    <deja.semantic.embedders.WordSimilarity.of>` when the substitution guard is on."""
    from deja.semantic.embedders import WordSimilarity

    if not (guards or GuardSettings()).substitution:
        return None
    return WordSimilarity.of(embedder)


def guard_report(
    stored: Signature,
    asked: Signature,
    guards: GuardSettings | None = None,
    word_similarity: Callable[[str, str], float] | None = None,
) -> tuple[GuardReport, str | None]:
    """The guards' report on serving ``stored``'s answer for ``asked``, the substitution
    guard included when ``word_similarity`` is given (what :func:`decide` refuses on);
    with the two words traded and how alike they are when that guard refused."""
    report = check_guards(stored, asked, guards)
    if report.substituted is None or word_similarity is None:
        return report, None
    stored_word, asked_word = report.substituted
    if one_word(stored_word, asked_word):
        # mistyped ("hand" / "hnad"), named otherwise ("golang" / "go"), shortened or
        # spelt the other side's way ("colour" / "color"): the same word as same_words has it
        return report, None
    refused = GuardReport(failed=("substitution",), shared_anchors=0)
    if prefixed(stored_word, asked_word):  # "off-peak" / "peak", "unsafe" / "safe"
        return refused, f"{stored_word} / {asked_word}: prefixed"
    alike = word_similarity(stored_word, asked_word)
    if alike >= SUBSTITUTION_SIMILARITY:
        return report, None
    return refused, f"{stored_word} / {asked_word}: {alike:.2f}"


def decide(
    similarity: float,
    query: str | PreparedText,
    candidate: str | PreparedText,
    *,
    threshold: float,
    guards: GuardSettings | None = None,
    verifier: Verifier | None = None,
    query_vector: Any = None,
    candidate_vector: Any = None,
    evaluate_all: bool = False,
    word_similarity: Callable[[str, str], float] | None = None,
    floor: float | None = None,
) -> Decision:
    """Decide whether ``candidate``'s answer may serve ``query``.

    ``query`` and ``candidate`` are the two prompts' texts, or :class:`PreparedText` ones
    (what deciding needs of a text, worked out once for every decision that meets it).
    ``query_vector`` / ``candidate_vector``: the prompts' unit vectors, needed when the
    verifier weighs them (:attr:`Verifier.uses_vectors`; ``ValueError`` if missing then).
    ``word_similarity``: how alike two words are
    (:class:`~deja.semantic.embedders.WordSimilarity`); without it a one-word substitution
    is not checked.
    ``evaluate_all`` runs guards and verifier even below the threshold (for calibration).
    ``floor``: a similarity below it is refused, same words or not (a caller's own
    stricter threshold, which the same words' allowance does not lower).
    """
    if not similarity <= _MOST_SIMILAR:
        # two unit vectors' cosine is at most 1: past it (or NaN), a stored vector is
        # damaged (a flipped bit in a saved file scored 6.6e36 and cleared any threshold)
        return Decision(False, similarity, "damaged")
    if similarity < threshold - SLIP_ALLOWANCE and not evaluate_all:
        return Decision(False, similarity, "threshold")
    asked = query if isinstance(query, PreparedText) else PreparedText(query)
    stored = candidate if isinstance(candidate, PreparedText) else PreparedText(candidate)
    sig_q = asked.signature
    sig_c = stored.signature
    same = sig_q.same_words_as(sig_c)
    below = not clears(similarity, threshold, same_words=same) or (
        floor is not None and similarity < floor
    )
    if below and not evaluate_all:
        return Decision(False, similarity, "threshold", same_words=same)
    report, detail = guard_report(sig_c, sig_q, guards, word_similarity)
    if not report.ok:
        reason = "threshold" if below else "guards:" + ",".join(report.failed)
        return Decision(False, similarity, reason, None, False, detail, same)
    probability = None
    if verifier is not None:
        features = pair_features(
            similarity,
            stored.text,
            asked.text,
            sig_a=sig_c,
            sig_b=sig_q,
            report=report,
            features_a=stored.features,
            features_b=asked.features,
        )
        vectors = (candidate_vector, query_vector) if verifier.uses_vectors else None
        accepted, probability = verifier.accepts(similarity, features, vectors, same_words=same)
        if not accepted:
            reason = "threshold" if below else "verifier"
            return Decision(False, similarity, reason, probability, False, same_words=same)
    if below:
        return Decision(False, similarity, "threshold", probability, True, same_words=same)
    return Decision(True, similarity, "hit", probability, True, same_words=same)


def clears(similarity: float, threshold: float, *, same_words: bool = False) -> bool:
    """Whether ``similarity`` is high enough at ``threshold``: at least the threshold, or,
    for two prompts of the same words (:meth:`Signature.same_words_as
    <deja.semantic.guards.Signature.same_words_as>`), at least :data:`SLIP_ALLOWANCE` below
    it."""
    if same_words:
        return similarity >= threshold - SLIP_ALLOWANCE
    return similarity >= threshold


def prepare(text: str | PreparedText) -> PreparedText:
    """Work out now what deciding on ``text`` needs later: its guard signature and its
    verifier text features, in a :class:`PreparedText` to keep and pass to :func:`decide`.

    A stored prompt is a candidate of every later check near it; preparing it when it is
    stored (a miss, about to wait for the model anyway) spares that cost (~0.3 ms for a
    one-line prompt) on the first check that meets it.
    """
    prepared = text if isinstance(text, PreparedText) else PreparedText(text)
    _ = prepared.signature, prepared.features
    return prepared
