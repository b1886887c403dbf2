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


# 2. One of several against the first ("the wife of Henry VIII" / "the first wife"): the
# numbers guard reads no number in "first" alone, as chat says it everywhere ("what should
# I do first"); an ordinal "first" after an article or a possessive is one.
FIRST_ADDED = [
    ("Who was the wife of Henry VIII?", "Who was the first wife of Henry VIII?"),
    ("Who was the emperor of Rome?", "Who was the first emperor of Rome?"),
    ("Who was the woman to win a Nobel Prize?", "Who was the first woman to win a Nobel Prize?"),
    ("What was the album by Taylor Swift?", "What was Taylor Swift's first album?"),
]
FIRST_ALIKE = [
    ("My phone was stolen, what should I do?", "My phone was stolen, what should I do first?"),
    ("When did you start coding?", "When did you first start coding?"),
    ("Who was the first emperor of Rome?", "Who was Rome's first emperor?"),
]


@pytest.mark.parametrize(("a", "b"), FIRST_ADDED[:3])
def test_the_first_against_one_of_several_is_refused(a: str, b: str) -> None:
    assert "numbers" in failed(a, b)
    assert "numbers" in failed(b, a)


@pytest.mark.parametrize(("a", "b"), FIRST_ALIKE)
def test_first_as_no_ordinal_or_on_both_sides_passes(a: str, b: str) -> None:
    assert passes_both_ways(a, b)


def test_a_cache_no_longer_serves_one_of_several_for_the_first(embedder: Any) -> None:
    # cosine 0.947, 0.919: served before
    for a, b in FIRST_ADDED[:2]:
        assert not served_both_ways(embedder, a, b)


# 3. What a "how" question measures, the other words the same ("how long is the train
# from Paris to London" / "how much is the train ..."): "much" is no content word, so the
# substitution guard never weighed the trade. Not "high", "big" or "large", which ask an
# amount as "much" does (a Banking77 pair: "How high is the exchange fee?" / "How much is
# the exchange fee?").
MEASURED_APART = [
    ("How long is the train from Paris to London?", "How much is the train from Paris to London?"),
    ("How far is the hotel from the airport?", "How much is the hotel from the airport?"),
    ("How often should I water a cactus?", "How much should I water a cactus?"),
    ("How old is the Golden Gate Bridge?", "How long is the Golden Gate Bridge?"),
]
MEASURED_ALIKE = [
    ("How high is the exchange fee?", "How much is the exchange fee?"),
    (
        "How much is the train from Paris to London?",
        "How many euros is the train from Paris to London?",
    ),
    ("how long does it take to boil pasta?", "how many minutes to boil pasta?"),
]


@pytest.mark.parametrize(("a", "b"), MEASURED_APART)
def test_another_measure_asked_is_refused(a: str, b: str) -> None:
    assert not passes_both_ways(a, b)


@pytest.mark.parametrize(("a", "b"), MEASURED_ALIKE)
def test_one_measure_asked_otherwise_passes(a: str, b: str) -> None:
    assert "polarity" not in failed(a, b)
    assert "polarity" not in failed(b, a)


def test_a_cache_no_longer_serves_another_measure(embedder: Any) -> None:
    # cosine 0.924: served before
    assert not served_both_ways(embedder, *MEASURED_APART[0])


# 4. Another event in a "when" clause ("how old was Mozart when he died" / "... when he
# started composing"): the clause, traded whole, is weighed as a traded word is (the
# substitution guard); "died" / "passed away" (0.70) is one event, and a clause reworded
# around one of its words ("when paying with card" / "when using the card", Banking77) is
# no other event.
EVENTS_APART = [
    ("How old was Mozart when he died?", "How old was Mozart when he started composing?"),
    (
        "How old was Lincoln when he became president?",
        "How old was Lincoln when he was assassinated?",
    ),
    ("How old was Elvis when he got famous?", "How old was Elvis when he died?"),
    (
        "Is a heart rate of 120 bpm normal when resting?",
        "Is a heart rate of 120 bpm normal when exercising?",
    ),
]
EVENTS_ALIKE = [
    ("How old was Mozart when he died?", "How old was Mozart when he passed away?"),
    (
        "Why was I charged an extra fee when paying with card?",
        "Why was I charged an extra fee when using the card?",
    ),
]


def substitution_detail(embedder: Any, a: str, b: str) -> str | None:
    """The substitution guard's refusal serving ``a`` for ``b`` (its detail), if any."""
    from deja.semantic.decision import guard_report, word_similarity_for

    report, detail = guard_report(signature(a), signature(b), None, word_similarity_for(embedder))
    return detail if report.failed == ("substitution",) else None


@pytest.mark.parametrize(("a", "b"), EVENTS_APART)
def test_another_event_is_refused(embedder: Any, a: str, b: str) -> None:
    assert substitution_detail(embedder, a, b) is not None
    assert substitution_detail(embedder, b, a) is not None
    # (cosine 0.85-0.89; the first three were served before, the last is one word each)
    assert not served_both_ways(embedder, a, b)


@pytest.mark.parametrize(("a", "b"), EVENTS_ALIKE)
def test_one_event_reworded_is_served(embedder: Any, a: str, b: str) -> None:
    assert substitution_detail(embedder, a, b) is None
    assert served_both_ways(embedder, a, b)


# 5. The steps a prompt lays out are read once, into its signature, not on each
# comparison (the reorder check re-read both texts for every candidate it met).
def test_the_steps_a_prompt_lays_out_are_in_its_signature() -> None:
    # (stems, in order; the words that say the order counts aside)
    laid_out = signature("Preheat the oven, mix the batter, then bake: is this order right?")
    assert laid_out.sequence == ("preheat", "oven", "mix", "batter", "bak")
    assert signature("How do I bake a cake?").sequence is None
    # (names aside: a prompt moves them freely)
    named = signature("In Python, sort a list, then reverse it, then print it")
    assert named.sequence == ("list", "revers", "print")
    assert not passes_both_ways(
        "Preheat the oven, mix the batter, then bake: is this order right?",
        "Mix the batter, bake, then preheat the oven: is this order right?",
    )


# 6. A rewording the with / without poles refused: "with no receipt" says "without a
# receipt" (cosine 0.965), in the poles and in the words compared word for word (where
# the "no" denied nothing of the sentence). "With" stays on its side of the poles too, as
# "with" alone is too loose to refuse on ("I'm stranded with no cash" / "a problem with
# my card": one Banking77 intent).
@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "Can I return an item without a receipt?",
            "Is it possible to return an item with no receipt?",
        ),
        ("Can I fly without a passport?", "Can I fly with no passport?"),
    ],
)
def test_with_no_is_without(a: str, b: str) -> None:
    assert passes_both_ways(a, b)


def test_with_against_without_is_still_refused() -> None:
    assert not passes_both_ways(
        "Can I return an item with a receipt?", "Can I return an item without a receipt?"
    )
    # (passed before: the poles read "with" on both sides)
    assert not passes_both_ways(
        "Can I return an item with a receipt?", "Can I return an item with no receipt?"
    )
