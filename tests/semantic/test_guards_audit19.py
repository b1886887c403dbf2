"""Guard gaps found by the audit of the semantic tier's guards (audit19), as pairs decided
the way a cache decides them: the shipped threshold, guards, substitution check and
verifier (:func:`deja.semantic.decision.decide`) over the embedded model's vectors.

Each false pair asks another question and must be refused; each true pair asks the same
one and must be served.
"""

from __future__ import annotations

from typing import Any

import pytest

from deja.semantic.guards import check_guards, signature
from deja.semantic.guards.words import prefixed
from tests.semantic.scripted import decided

DIFFERENT = [
    # 1. a scale word after digits is part of the number
    (
        "Is a 2 million dollar house expensive in Texas?",
        "Is a 2 billion dollar house expensive in Texas?",
    ),
    ("Is 3 thousand dollars enough for a used car?", "Is 3 million dollars enough for a used car?"),
    ("Is 50 thousand a good salary in Berlin?", "Is 50 million a good salary in Berlin?"),
    # 4. letter case names the unit: bits against bytes, milli against mega
    ("Is 8 Gb of RAM enough for Photoshop?", "Is 8 GB of RAM enough for Photoshop?"),
    (
        "My download speed is 100 Mbps, is that good?",
        "My download speed is 100 MBps, is that good?",
    ),
    ("A 5 MW wind turbine powers how many homes?", "A 5 mW wind turbine powers how many homes?"),
    ("Is a 2 mW laser pointer dangerous?", "Is a 2 MW laser pointer dangerous?"),
    # 3. a comparison or superlative turned round in other words
    ("Is tea healthier than coffee?", "Is tea less healthy than coffee?"),
    ("Is flying safer than driving?", "Is flying more dangerous than driving?"),
    ("Is React easier to learn than Angular?", "Is React more complicated to learn than Angular?"),
    (
        "Is public school better than private school?",
        "Is public school inferior to private school?",
    ),
    ("Safest neighborhoods in Chicago", "Most dangerous neighborhoods in Chicago"),
    ("Most common side effects of metformin", "Rarest side effects of metformin"),
    ("Most affordable neighborhoods in Seattle", "Most expensive neighborhoods in Seattle"),
    ("Healthiest breakfast cereals", "Least healthy breakfast cereals"),
    ("Is a Roth IRA better than a 401k?", "Is a Roth IRA less good than a 401k?"),
    ("Is nuclear power safer than coal?", "Is nuclear power more hazardous than coal?"),
    ("Most popular baby names of 2023", "Rarest baby names of 2023"),
    # 2. opposite prefixes on one stem, and antonyms the model sets close
    ("How do I block inbound traffic on port 22?", "How do I block outbound traffic on port 22?"),
    ("Is it bad to be underweight?", "Is it bad to be overweight?"),
    ("Can I borrow money from my 401k?", "Can I lend money from my 401k?"),
    ("Who was Lincoln's predecessor?", "Who was Lincoln's successor?"),
    ("Why is my upstream git branch ahead?", "Why is my downstream git branch ahead?"),
    ("How do I treat an overactive bladder?", "How do I treat an underactive bladder?"),
    (
        "Should I inhale through my nose while lifting?",
        "Should I exhale through my nose while lifting?",
    ),
    (
        "Where is the arrivals hall at Heathrow Terminal 5?",
        "Where is the departures hall at Heathrow Terminal 5?",
    ),
    # 7. the form of the answer
    ("Explain quantum computing in one sentence", "Explain quantum computing in one paragraph"),
    ("Summarize the meeting in one sentence", "Summarize the meeting in one paragraph"),
    ("Explain inflation in a paragraph", "Explain inflation in an essay"),
    (
        "Give me a recipe for lasagna as a numbered list",
        "Give me a recipe for lasagna as a paragraph",
    ),
    # 6. times of the clock in words
    ("Meeting at noon tomorrow", "Meeting at midnight tomorrow"),
    (
        "Check-out is at noon, can I leave my bags?",
        "Check-out is at midnight, can I leave my bags?",
    ),
    ("Set an alarm for quarter past 6", "Set an alarm for quarter to 6"),
    ("The bus leaves at twenty past eight", "The bus leaves at twenty to eight"),
    # 8. a bare "=" named beside another operator
    (
        "Explain the difference between == and is in Python",
        "Explain the difference between = and == in Python",
    ),
    # 9. a nautical mile is no mile
    ("How far is 10 miles in km?", "How far is 10 nautical miles in km?"),
]

SAME = [
    ("Is 50 thousand a good salary in Berlin?", "Is 50k a good salary in Berlin?"),
    (
        "Is a 2 million dollar house expensive in Texas?",
        "Is a 2,000,000 dollar house expensive in Texas?",
    ),
    ("Is flying more dangerous than driving?", "Is flying riskier than driving?"),
    ("Boil pasta for 10 min", "Boil pasta for 10 minutes"),
    ("Is a latency of 200ms bad for gaming?", "Is a latency of 200 ms bad for gaming?"),
    ("Can I use a 12V adapter?", "Can I use a 12 V adapter?"),
    ("Is 120km/h the speed limit?", "Is 120 km/h the speed limit?"),
    ("Is 100Mbps fast enough for streaming?", "Is 100 Mbps fast enough for streaming?"),
    ("Is 8gb of RAM enough for Photoshop?", "Is 8 GB of RAM enough for Photoshop?"),
    ("Lunch is at noon", "Lunch is at 12pm"),
]


@pytest.mark.parametrize(("stored", "asked"), DIFFERENT)
def test_another_question_is_refused(embedder: Any, stored: str, asked: str) -> None:
    decision = decided(embedder, stored, asked)
    assert not decision.hit, decision
    assert not decided(embedder, asked, stored).hit  # and the other way round


@pytest.mark.parametrize(("stored", "asked"), SAME)
def test_the_same_question_is_served(embedder: Any, stored: str, asked: str) -> None:
    decision = decided(embedder, stored, asked)
    assert decision.hit, decision


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("a 2 million dollar house", ("2000000",)),
        ("$1.5 million", ("1500000",)),
        ("0.25 billion", ("250000000",)),
        ("50 thousand", ("50000",)),
        ("3 hundred and 2 dozen", ("300", "24")),
        ("quarter past 6", ("6", "15")),
        ("quarter to 6", ("5", "45")),
        ("twenty to eight", ("7", "40")),
        ("at noon", ("12", "0")),
        ("at midnight", ("0", "0")),
        ("five to ten people", ("5", "10")),  # a range, not a time
    ],
)
def test_numbers_read_with_their_scale_or_as_a_time(text: str, numbers: tuple[str, ...]) -> None:
    assert signature(text).numbers == numbers


@pytest.mark.parametrize(
    ("a", "b"),
    [("8 Gb", "8 GB"), ("100 Mbps", "100 MBps"), ("5 mW", "5 MW"), ("1 Mg", "1 mg")],
)
def test_units_that_differ_in_letter_case_differ(a: str, b: str) -> None:
    assert signature(a).units != signature(b).units


def test_opposite_prefixes_on_one_stem_are_no_synonyms() -> None:
    for x, y in [("inbound", "outbound"), ("overactive", "underactive"), ("inhale", "exhale")]:
        assert prefixed(x, y) and prefixed(y, x)
    assert not prefixed("update", "upgrade") and not prefixed("overview", "preview")


def test_a_time_in_words_passes_the_guards_against_the_clock() -> None:
    # (the verifier, not the guards, judges these: "half past six" / "6:30" it refuses)
    for said, shown in [("half past six", "6:30"), ("quarter to 6", "5:45"), ("noon", "12pm")]:
        stored, asked = (
            signature(f"Set an alarm for {said}"),
            signature(f"Set an alarm for {shown}"),
        )
        assert check_guards(stored, asked).ok
