"""False hits found by the third audit of the semantic tier (audit23), as a cache meets them.

1. Required against allowed where "need" takes a thing, not "to": "Do I need a visa to
   visit Japan" was served the answer of "Can I get a visa to visit Japan"; and whether a
   thing is required against how to get it ("Is a permit required to build a fence" /
   "How do I get a permit to build a fence").
2. One of a thing against a bundle of them ("a ticket" / "family tickets", "a tooth
   implant" / "full mouth implants"), and a question about a word itself ("the plural of
   mouse" / "the plural of mice").
3. The one who acts and the one acted on trading places ("can my employer see my
   browsing history" / "can I see my employer's browsing history", "what questions
   should I ask the interviewer" / "what questions will the interviewer ask me"), and
   "who viewed my profile" / "whose profile I viewed".
4. Roles the alternatives did not know: a property manager for the landlord, a puppy or
   a kitten against an adult dog or cat.
5. Two steps told the other way round with one join ("heat the pan before adding oil" /
   "add oil to the pan before heating it", "cook then defrost" / "defrost then cook").
6. Which of two colours named is asked about ("... probability of drawing red" / "...
   drawing blue"), and two calls nested the other way round ("f(g(x))" / "g(f(x))").
"""

from __future__ import annotations

from typing import Any

import pytest

from deja.semantic.guards import check_guards, signature
from tests.semantic.scripted import decided

DIFFERENT = [
    # 1. required against allowed, or against how to get it
    ("Do I need a visa to visit Japan?", "Can I get a visa to visit Japan?"),
    ("Do I need a license to fish in Oregon?", "Can I get a license to fish in Oregon?"),
    ("Do I need a passport to go to Puerto Rico?", "Can I use my passport to go to Puerto Rico?"),
    ("Do I need a car seat for a 7 year old?", "Can I use a car seat for a 7 year old?"),
    ("Do I need a lawyer to make a will?", "Can I hire a lawyer to make a will?"),
    ("Do I need a vaccine to travel to Kenya?", "Where can I get a vaccine to travel to Kenya?"),
    ("Is a permit required to build a fence?", "How do I get a permit to build a fence?"),
    # 2. one against a bundle; a word asked about
    ("How much is a ticket to Disneyland?", "How much are family tickets to Disneyland?"),
    ("How much is a ticket to the Louvre?", "How much are group tickets to the Louvre?"),
    ("How much does a tooth implant cost?", "How much do full mouth implants cost?"),
    ("What is the plural of mouse?", "What is the plural of mice?"),
    # 3. roles traded
    ("Can my employer see my browsing history?", "Can I see my employer's browsing history?"),
    ("Can my landlord enter my apartment?", "Can I enter my landlord's apartment?"),
    ("What questions should I ask the interviewer?", "What questions will the interviewer ask me?"),
    ("How do I see who viewed my profile?", "How do I see whose profile I viewed?"),
    # 4. roles and ages
    (
        "What questions should a landlord ask a tenant?",
        "What questions should a tenant ask a property manager?",
    ),
    ("What vaccines does a puppy need?", "What vaccines does an adult dog need?"),
    ("What vaccines does a kitten need?", "What vaccines does an adult cat need?"),
    # 5. steps the other way round
    (
        "Should you heat the pan before adding oil?",
        "Should you add oil to the pan before heating it?",
    ),
    (
        "Do I turn on the PC before plugging in the monitor?",
        "Do I plug in the monitor before turning on the PC?",
    ),
    ("Should I cook then defrost?", "Should I defrost then cook, or cook from frozen?"),
    # 6. which colour; calls nested the other way
    (
        "There are 12 red and 8 blue marbles. What is the probability of drawing red?",
        "There are 12 red and 8 blue marbles. What is the probability of drawing blue?",
    ),
    ("Explain f(g(x))", "Explain g(f(x))"),
]


@pytest.mark.parametrize(("stored", "asked"), DIFFERENT)
def test_another_question_is_refused(embedder: Any, stored: str, asked: str) -> None:
    assert not decided(embedder, stored, asked).hit
    assert not decided(embedder, asked, stored).hit  # and the other way round


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # going without it asks whether it is needed
        ("Do I need a visa to visit Japan?", "Can I visit Japan without a visa?"),
        # both ask whether it is required
        ("Is a permit required to build a fence?", "Do I need a permit to build a fence?"),
        # another verb after each subject: one question
        ("Can I get a refund from the seller?", "Can the seller give me a refund?"),
        # the same subject
        ("Can I see my browsing history?", "Can I view my browsing history?"),
        # a bare plural is the generic singular; no bundle named
        ("How much is a ticket to Disneyland?", "How much are Disneyland tickets?"),
        # the same word asked about
        ("What is the plural of mouse?", "What's the plural form of mouse?"),
        # the same steps in the same order, "then" as "before"
        ("Is it shampoo then conditioner?", "Do I use shampoo before conditioner?"),
        # the young animal named on both sides (the animal against its young is refused:
        # test_audit27_semantic)
        ("what should my puppy eat", "what should puppies eat"),
        # one call
        ("Explain f(x)", "Explain the function f(x)"),
        # calls side by side, not nested, named the other way round (a review)
        (
            "What is the difference between map() and filter()?",
            "What is the difference between filter() and map()?",
        ),
        ("Compare `useState` and `useEffect`", "Compare `useEffect` and `useState`"),
        # the word asked about, after "the verb" (a review: "the" read as the word)
        ("What is the past tense of run?", "What is the past tense of the verb run?"),
    ],
)
def test_what_the_new_rules_leave_alone(a: str, b: str) -> None:
    assert check_guards(signature(a), signature(b)).failed == ()
    assert check_guards(signature(b), signature(a)).failed == ()
