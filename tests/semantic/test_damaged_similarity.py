"""A similarity no two unit vectors have is a damaged vector's, never a hit."""

from __future__ import annotations

import math

import pytest

from deja.semantic.decision import decide


@pytest.mark.parametrize("similarity", [6.6e36, 1.01, math.inf, math.nan])
def test_a_similarity_past_one_is_refused_as_damaged(similarity: float) -> None:
    """One flipped exponent bit in a saved vectors file scored 6.6e36 against unrelated
    prompts: it cleared every threshold, and the guards and verifier (which weigh the
    texts) let such pairs through, so another question's answer was served."""
    asked = "How do I close my savings account?"
    stored = "How do I close my savings account?"  # (even the same text)
    decision = decide(similarity, asked, stored, threshold=0.7, evaluate_all=True)
    assert not decision.hit and decision.reason == "damaged"


def test_the_same_text_at_float_rounding_is_still_a_hit() -> None:
    text = "How do I close my savings account?"
    assert decide(1.0000001, text, text, threshold=0.7).hit
