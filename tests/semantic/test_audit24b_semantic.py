"""False hits found by the fourth audit of the semantic tier (audit24, second part), read by
the guards.

1. Who or what as the subject against as the object ("Who killed Julius Caesar?" / "Who
   did Julius Caesar kill?"): the same content words, the other party asked for.
2. Two things traded around a direction word where one is written with digits ("roll over
   an IRA into a 401(k)" / "a 401(k) into an IRA"): the direction read no end that was not
   letters only. (Photos "from Google Photos to iCloud" / "from iCloud to Google Photos"
   and "a Roth IRA better than a 401(k)" / the other way round were refused already: kept.)
3. A negation that heads a hyphenated word ("a not-at-fault accident" / "an at-fault
   accident": a substitution the decision refuses as prefixed, as it did "non-") or said
   as "not counting" / "not including" ("including the dressing" / "not counting the
   dressing"); "with" / "without the dressing" was refused already (kept).
4. A part against the whole ("a slice of pepperoni pizza" / "a whole pepperoni pizza"), one
   against a range of them ("a single interface" / "a range of interfaces"), all against
   one ("block all notifications" / "block notifications from one app": the preposition
   "on" was read as "one", a part, on both sides).

Each refused pair is checked both ways round; each rewording of the same kind must pass.
"""

from __future__ import annotations

from typing import Any

import pytest

from deja.semantic.guards import signature
from tests.semantic.test_guards import passes_both_ways

DIFFERENT = [
    # 1. who or what as the subject against as the object
    ("Who killed Julius Caesar?", "Who did Julius Caesar kill?"),
    (
        "Who succeeded Queen Victoria on the British throne?",
        "Who did Queen Victoria succeed on the British throne?",
    ),
    ("What eats slugs in the garden?", "What do slugs eat in the garden?"),
    ("In a food chain, what eats the rabbit?", "In a food chain, what does the rabbit eat?"),
    ("What bites a mosquito?", "What does a mosquito bite?"),
    ("Which animals hunt wolves?", "Which animals do wolves hunt?"),
    ("Who did Muhammad Ali defeat in 1974?", "Who defeated Muhammad Ali in 1974?"),
    # 2. two things traded around a direction word, one written with digits
    ("How do I roll over an IRA into a 401(k)?", "How do I roll over a 401(k) into an IRA?"),
    ("How do I move money from my 401k to an IRA?", "How do I move money from an IRA to my 401k?"),
    (
        "How do I transfer photos from Google Photos to iCloud?",
        "How do I transfer photos from iCloud to Google Photos?",
    ),
    ("Is a Roth IRA better than a 401(k)?", "Is a 401(k) better than a Roth IRA?"),
    # 3. a negation in a hyphenated word, or "not counting"
    (
        "how many calories in a caesar salad including the dressing",
        "how many calories in a caesar salad not counting the dressing",
    ),
    (
        "how many calories in a caesar salad with the dressing",
        "how many calories in a caesar salad not counting the dressing",
    ),
    (
        "how many calories in a caesar salad with the dressing",
        "how many calories in a caesar salad without the dressing",
    ),
    (
        "What is my take-home pay including bonuses?",
        "What is my take-home pay not including bonuses?",
    ),
    # 4. a part against the whole, one against a range, all against one
    (
        "How many calories are in a slice of pepperoni pizza?",
        "How many calories are in a whole pepperoni pizza?",
    ),
    ("How much does a piece of wedding cake cost?", "How much does a whole wedding cake cost?"),
    (
        "How do I shut down a single interface on a Cisco switch?",
        "How do I shut down a range of interfaces on a Cisco switch?",
    ),
    (
        "how do i block all notifications on my mac",
        "How do I block notifications from one app on my Mac?",
    ),
    ("How do I delete all photos on my iPhone?", "How do I delete one photo on my iPhone?"),
]

# a negation that heads a hyphenated word: the one word traded is a substitution the
# decision refuses however alike the words are ("prefixed"; "non-" was refused already)
PREFIXED = [
    (
        "Will my premium go up if I file a claim for a not-at-fault accident?",
        "Will my premium go up if I file a claim for an at-fault accident?",
    ),
    ("Is a no-fault divorce faster in California?", "Is a fault divorce faster in California?"),
    ("Is a non-alcoholic beer bad for my liver?", "Is an alcoholic beer bad for my liver?"),
]

SAME = [
    # 1. the same party asked for, said otherwise
    ("What do cats eat?", "What does a cat eat?"),
    ("What does a cat eat?", "what do cats eat"),
    ("Who wrote Hamlet?", "Who is the author of Hamlet?"),
    ("Who invented the telephone?", "Who was the inventor of the telephone?"),
    ("Who painted the Mona Lisa?", "Which artist painted the Mona Lisa?"),
    ("Who killed Julius Caesar?", "who killed julius caesar"),
    ("What do slugs eat in the garden?", "What does a slug eat in the garden?"),
    ("Who did Julius Caesar kill?", "Whom did Julius Caesar kill?"),
    # 2. the same direction, said otherwise
    ("How do I roll over an IRA into a 401(k)?", "How do I roll an IRA over into a 401(k)?"),
    ("How do I roll over a 401(k) into an IRA?", "How can I roll my 401(k) over into an IRA?"),
    ("How do I move money from my 401k to an IRA?", "How do I move money to an IRA from my 401k?"),
    # 3. the same negation, said otherwise
    (
        "Will my premium go up if I file a claim for a not-at-fault accident?",
        "Will my premium go up if I file a claim for a not at fault accident?",
    ),
    (
        "how many calories in a caesar salad not counting the dressing",
        "how many calories in a caesar salad not including the dressing",
    ),
    (
        "how many calories in a caesar salad not counting the dressing",
        "how many calories in a caesar salad excluding the dressing",
    ),
    (
        "how many calories in a caesar salad not counting the dressing",
        "how many calories in a caesar salad without the dressing",
    ),
    (
        "how many calories in a caesar salad including the dressing",
        "how many calories in a caesar salad with the dressing",
    ),
    # 4. the same amount, said otherwise
    (
        "How many calories are in a slice of pepperoni pizza?",
        "How many calories are in one slice of pepperoni pizza?",
    ),
    (
        "How many calories are in a whole pepperoni pizza?",
        "How many calories are in an entire pepperoni pizza?",
    ),
    (
        "How do I shut down a range of interfaces on a Cisco switch?",
        "How do I shut down multiple interfaces on a Cisco switch?",
    ),
    (
        "how do i block all notifications on my mac",
        "How do I turn off all notifications on my Mac?",
    ),
    (
        "How do I turn off all notifications on my iPhone?",
        "How do I turn off notifications on my iPhone?",
    ),
]


@pytest.mark.parametrize(("stored", "asked"), DIFFERENT)
def test_another_question_is_refused(stored: str, asked: str) -> None:
    assert not passes_both_ways(stored, asked)


@pytest.mark.parametrize(("stored", "asked"), PREFIXED)
def test_a_denying_prefix_is_a_substitution(embedder: Any, stored: str, asked: str) -> None:
    from deja.semantic.decision import guard_report, word_similarity_for

    words = word_similarity_for(embedder)
    for x, y in ((stored, asked), (asked, stored)):
        report, detail = guard_report(signature(x), signature(y), None, words)
        assert report.failed == ("substitution",) and detail is not None and "prefixed" in detail


@pytest.mark.parametrize(("a", "b"), SAME)
def test_a_rewording_of_the_same_kind_passes(a: str, b: str) -> None:
    assert passes_both_ways(a, b)
