"""The semantic "is this a hit?" decision: a pure function of the pair and the settings.

A candidate (the stored prompt nearest to the query within the scope) is served when

1. its cosine similarity is at least the threshold (raised for an entry that was reported
   wrong, see ``SemanticCache.feedback``);
2. every enabled guard agrees (:func:`deja.semantic.guards.check_guards`);
3. the verifier accepts the pair (:class:`deja.semantic.verifier.Verifier`), if one is set;
   the shipped one weighs the two prompt vectors too, so the caller passes them (the query's
   is at hand, the candidate's comes back from ``VectorIndex.search(with_vectors=True)``).

The order is cheapest first; the reason of a rejection is kept for metrics and calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deja.semantic.guards import GuardSettings, check_guards, signature
from deja.semantic.verifier import Verifier, pair_features

__all__ = ["BARE_THRESHOLD", "DEFAULT_THRESHOLD", "Decision", "decide"]

DEFAULT_THRESHOLD = 0.70
"""The shipped cosine threshold: the first filter (guards and the verifier do the rest).

The verifier was trained with candidates from 0.60 up, where it reaches 41% recall at 0.7%
false hits on the labelled dev pairs (nested CV); but in a cache, where a query meets its
nearest stored neighbours rather than a random partner, 0.60 served about 2.4 times as many
answers of another intent on the demo's Banking77 workload (22 of 80 semantic hits against
6-9 of 37-51 at 0.70). At 0.70 it keeps 36.7% recall at 0.36% false hits on dev. Without a
verifier it is far too low: see :data:`BARE_THRESHOLD`."""

BARE_THRESHOLD = 0.85
"""The default threshold without a verifier: a bare cosine of the embedded model needs about
0.85 for a 1% false-hit rate on the labelled dev pairs (0.846 measured)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one candidate.

    ``reason`` is ``"hit"``, ``"threshold"``, ``"guards:<names>"`` or ``"verifier"``.
    ``passed_checks`` says whether guards and verifier accepted the pair, whatever the
    threshold: calibration sweeps thresholds over it without deciding again.
    """

    hit: bool
    similarity: float
    reason: str
    probability: float | None = None
    passed_checks: bool | None = None


def decide(
    similarity: float,
    query: str,
    candidate: str,
    *,
    threshold: float,
    guards: GuardSettings | None = None,
    verifier: Verifier | None = None,
    query_vector: Any = None,
    candidate_vector: Any = None,
    evaluate_all: bool = False,
) -> Decision:
    """Decide whether ``candidate``'s answer may serve ``query``.

    ``query_vector`` / ``candidate_vector``: the prompts' unit vectors, needed when the
    verifier weighs them (:attr:`Verifier.uses_vectors`; ``ValueError`` if missing then).
    ``evaluate_all`` runs guards and verifier even below the threshold (for calibration).
    """
    below = similarity < threshold
    if below and not evaluate_all:
        return Decision(False, similarity, "threshold")
    sig_q = signature(query)
    sig_c = signature(candidate)
    report = check_guards(sig_c, sig_q, guards)
    if not report.ok:
        reason = "guards:" + ",".join(report.failed)
        return Decision(False, similarity, "threshold" if below else reason, None, False)
    probability = None
    if verifier is not None:
        features = pair_features(
            similarity, candidate, query, sig_a=sig_c, sig_b=sig_q, report=report
        )
        vectors = (candidate_vector, query_vector) if verifier.uses_vectors else None
        accepted, probability = verifier.accepts(similarity, features, vectors)
        if not accepted:
            return Decision(
                False, similarity, "threshold" if below else "verifier", probability, False
            )
    if below:
        return Decision(False, similarity, "threshold", probability, True)
    return Decision(True, similarity, "hit", probability, True)
