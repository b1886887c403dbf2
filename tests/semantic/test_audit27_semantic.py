"""False hits found by the seventh audit of the semantic tier (audit27).

Each refused pair is checked both ways round; each rewording of the same kind must pass;
pairs a cache met are decided as the cache decides them (threshold, guards, substitution
check, verifier).
"""

from __future__ import annotations

from typing import Any

import pytest

from deja.semantic.guards import signature
from tests.semantic.scripted import decided
from tests.semantic.test_guards import failed, passes_both_ways


def served_both_ways(embedder: Any, a: str, b: str) -> bool:
    """Whether a cache serves each prompt's answer for the other (asserts both agree)."""
    forward, backward = decided(embedder, a, b).hit, decided(embedder, b, a).hit
    assert forward is backward
    return forward


# 1. Alternatives said in two words, which the guards read as one hyphenated pole word
# ("medium rare" is "medium-rare", no "rare"), and alternatives the groups did not know:
# a step of the law, the young of an animal against the animal, a function of one number.
TWO_WORD_ALTERNATIVES = [
    (
        "What is the internal temperature for medium rare steak?",
        "What is the internal temperature for well done steak?",
    ),
    ("What temperature is a rare steak?", "What temperature is a medium rare steak?"),
    (
        "What is the boiling point of water at high altitude?",
        "What is the boiling point of water at sea level?",
    ),
    ("How much is a round trip ticket to Paris?", "How much is a one way ticket to Paris?"),
    (
        "How long can cooked rice stay in the fridge?",
        "How long can cooked rice stay out at room temperature?",
    ),
    ("Is a part time job taxed differently?", "Is a full time job taxed differently?"),
]
OTHER_ALTERNATIVES = [
    ("What are my rights if I am arrested?", "What are my rights if I am detained?"),
    ("What happens after you are indicted?", "What happens after you are convicted?"),
    ("Can I travel if I am on probation?", "Can I travel if I am on parole?"),
    ("How often should I feed my cat?", "How often should I feed my kitten?"),
    ("What vaccines does my dog need?", "What vaccines does my puppy need?"),
    ("what should my puppy eat", "what should my dog eat"),
    ("What is the square root of 144?", "What is the square of 144?"),
    ("What is the cube root of 27?", "What is the cube of 27?"),
    ("What is the square root of 81?", "What is the cube root of 81?"),
    (
        "How many permutations of 5 items taken 3?",
        "How many combinations of 5 items taken 3?",
    ),
]
ALTERNATIVES_ALIKE = [
    ("What is the square of 12?", "What is 12 squared?"),
    ("What is the square root of 144?", "Calculate the square root of 144"),
    (
        "What is the internal temperature for medium rare steak?",
        "What internal temperature is a medium-rare steak?",
    ),
    ("How long should I cook a steak medium rare?", "How long do I cook a steak to medium rare?"),
    ("How much is a round trip ticket to Paris?", "What does a round-trip ticket to Paris cost?"),
    ("What are my rights if I am arrested?", "What rights do I have if I get arrested?"),
    ("How often should I feed my kitten?", "How many times a day should I feed my kitten?"),
]


@pytest.mark.parametrize(("a", "b"), TWO_WORD_ALTERNATIVES + OTHER_ALTERNATIVES)
def test_another_alternative_is_refused(a: str, b: str) -> None:
    assert "polarity" in failed(a, b)
    assert "polarity" in failed(b, a)


@pytest.mark.parametrize(("a", "b"), ALTERNATIVES_ALIKE)
def test_the_same_alternative_reworded_passes(a: str, b: str) -> None:
    assert passes_both_ways(a, b)


def test_a_phrase_is_read_only_where_its_words_stand_together() -> None:
    # "medium" and "rare" apart: no "medium-rare", and "rare" keeps its own groups
    together, apart = signature("a medium rare steak"), signature("a medium steak, rare")
    assert together.pole_groups != apart.pole_groups
    assert "polarity" in failed("a medium rare steak", "a rare steak")
    assert "polarity" not in failed("a medium steak, rare", "a rare steak")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        TWO_WORD_ALTERNATIVES[0],
        TWO_WORD_ALTERNATIVES[2],
        OTHER_ALTERNATIVES[0],
        OTHER_ALTERNATIVES[4],
        OTHER_ALTERNATIVES[6],
    ],
)
def test_a_cache_no_longer_serves_another_alternative(embedder: Any, a: str, b: str) -> None:
    # cosine 0.892, 0.879, 0.871, 0.937 and 0.879: served before
    assert not served_both_ways(embedder, a, b)
