"""The semantic decision takes time linear in the length of the prompts, whatever they hold.

The guards read the whole text of both prompts (a number at the end of a long prompt must
still be compared), and ``re`` holds the GIL while it matches: one prompt that makes a
pattern backtrack over the whole text at every position stalls every caller of the proxy
worker (audit19 security finding 1: a 24 KB run of digits took 15.9 s). Each shape below
once took time quadratic in its length. The decision is timed at 2,500 and 10,000
characters; four times the text must take about four times the time (under 8x; 16x is
quadratic: a twice-as-long text's 3x bound, against 2x linear and 4x quadratic, failed
linear shapes in full runs, one measurement at 3.1-3.2x), a
ratio rather than a wall-clock bound, so a slow machine does not fail it, and in this
thread's CPU time (``time.thread_time``), so other processes' load does not either (under
load, wall-clock ratios reached 3.3 for a shape whose CPU time doubles).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import numpy as np
import pytest

from deja.semantic.decision import DEFAULT_THRESHOLD, decide
from deja.semantic.guards import GuardSettings
from deja.semantic.verifier import Verifier


def _repeat(unit: str) -> Callable[[int], str]:
    return lambda n: (unit * (n // len(unit) + 1))[:n]


SHAPES: dict[str, Callable[[int], str]] = {
    # the audit's shapes: one long "word" without spaces ("instead of" read from each
    # position to the run's end)
    "digits": _repeat("9"),
    "dots": _repeat("."),
    "punctuation": _repeat("!?"),
    "quotes": _repeat('"'),
    "backticks": _repeat("`"),
    "snake": _repeat("a_"),
    "hyphens": _repeat("a-"),
    "path": lambda n: "~/" + _repeat("a/")(n - 2),
    "url": lambda n: "http://" + _repeat("a.")(n - 7),
    # an acronym with dots that a letter ends ("U.S.A.b"), read from each of its letters
    "dotted_acronym": lambda n: _repeat("A.")(n - 1) + "b",
    # one word said over and over: two such prompts were compared word by word at every
    # rotation of one against the other (the same words moved aside)
    "money": _repeat("$1"),
    "counted": _repeat("1,"),
    "hashes": _repeat("#1"),
    "inches": _repeat('1"'),
    # a run of one capitalised word is one long name, compared at each of its words'
    # places; a run of two names the same (review2's finding)
    "capitalised": _repeat("Abc "),
    "names": _repeat("John Smith "),
    # one thing against all of them, read article by article
    "articles": _repeat("a good name the good names "),
}

_VERIFIER = Verifier.default()
_VECTOR = np.ones(_VERIFIER.dim or 384) / np.sqrt(_VERIFIER.dim or 384)


def _decide_time(body: str, salt: int) -> float:
    """Seconds to decide one pair of ``body`` with another last word, as the cache does
    (guards, the substitution check and the verifier all run: ``evaluate_all``)."""
    # a leading word of its own keeps each measurement off the per-text caches
    stored, asked = f"w{salt} {body} x", f"w{salt} {body} y"
    start = time.thread_time()
    decide(
        0.99,
        asked,
        stored,
        threshold=DEFAULT_THRESHOLD,
        guards=GuardSettings(negation=True),
        verifier=_VERIFIER,
        query_vector=_VECTOR,
        candidate_vector=_VECTOR,
        evaluate_all=True,
        word_similarity=lambda x, y: 0.0,
    )
    took = time.thread_time() - start
    # the other way round too: the query's text as the stored one (one long line and a
    # one-word difference take different paths through the comparison)
    start = time.thread_time()
    decide(
        0.99,
        f"w{salt} {body}",
        f"w{salt} {body} x",
        threshold=DEFAULT_THRESHOLD,
        verifier=_VERIFIER,
        query_vector=_VECTOR,
        candidate_vector=_VECTOR,
        evaluate_all=True,
        word_similarity=lambda x, y: 0.0,
    )
    return took + time.thread_time() - start


_salts = iter(range(1_000_000))


@pytest.mark.parametrize("shape", list(SHAPES))
def test_decision_time_grows_linearly(shape: str) -> None:
    make = SHAPES[shape]
    _decide_time(make(1_000), next(_salts))  # word lists and caches loaded once
    # the fastest of three runs of each size, the garbage collector off: a full collection
    # of the whole test session's heap in one run made a linear shape's ratio 3.7 (the
    # bound, 8x for 4x the text, leaves a linear shape twice its ratio; quadratic is 16x)
    gc.collect()
    gc.disable()
    try:
        short = min(_decide_time(make(2_500), next(_salts)) for _ in range(3))
        long = min(_decide_time(make(10_000), next(_salts)) for _ in range(3))
    finally:
        gc.enable()
    assert long < 8 * max(short, 0.005), f"{shape}: 2.5k {short:.3f}s, 10k {long:.3f}s"
