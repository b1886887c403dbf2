"""False hits found by the second audit of the semantic tier (audit22b), as a cache meets them.

1. "or" against "and" between the same two alternatives: "Do I need a passport or an ID
   card" was served the answer of "a passport and an ID card", "mix bleach or ammonia with
   water" that of "mix bleach and ammonia".
2. A word problem with the same numbers and another operation ("gives away 5" / "buys 5
   more", "25% off" / "tax is 25%").
3. "every other day" (and "every couple of days", "twice a day") was no span of time.
4. Alternatives that clear the word-similarity cut: plaintiff / defendant, weekdays /
   weekends, silver / bronze, infant / toddler, front / rear...
5. The tense a question asks in: "Was Pluto a planet?" / "Is Pluto a planet?", "What did
   Apple announce" / "What will Apple announce".
6. The same steps in another order ("wash then dry then iron" / "iron then wash then dry").
"""

from __future__ import annotations

from typing import Any

import pytest

from deja.semantic.guards import check_guards, signature
from tests.semantic.scripted import decided

DIFFERENT = [
    # 1. or / and
    ("Do I need a passport or an ID card to fly?", "Do I need a passport and an ID card to fly?"),
    ("Is it safe to mix bleach or ammonia with water?", "Is it safe to mix bleach and ammonia?"),
    ("Should I learn Python or JavaScript?", "Should I learn Python and JavaScript?"),
    ("Which is healthier, rice or pasta?", "Is rice and pasta healthy?"),
    # 2. another operation on the same numbers
    (
        "John has 12 apples and gives away 5. How many are left?",
        "John has 12 apples and buys 5 more. How many does he have?",
    ),
    (
        "If a shirt costs $40 and is 25% off, what is the price?",
        "If a shirt costs $40 and tax is 25%, what is the price?",
    ),
    (
        "Mike is 30 and his son is 6. How many times older is Mike?",
        "Mike is 30 and his son is 6. What is the age difference?",
    ),
    # 3. every other
    ("Should I take vitamin D every morning?", "Should I take vitamin D every other day?"),
    ("Can I work out every day?", "Can I work out every other day?"),
    ("Should I feed my fish twice a day?", "Should I feed my fish every couple of days?"),
    # 4. alternatives
    ("Is the pharmacy open on weekdays?", "Is the pharmacy open on weekends?"),
    (
        "What are the rights of the plaintiff in a civil lawsuit?",
        "What are the rights of the defendant in a civil lawsuit?",
    ),
    ("How much is a silver medal worth?", "How much is a bronze medal worth?"),
    ("Sleep schedule for an infant", "Sleep schedule for an toddler"),
    ("Why is my front brake light on?", "Why is my rear brake light on?"),
    ("My refund is approved. What happens next?", "My refund is pending. What happens next?"),
    ("How do I convert minutes to hours in Excel?", "How do I convert seconds to hours in Excel?"),
    # 5. tense
    ("Is Pluto a planet?", "Was Pluto a planet?"),
    ("What did Apple announce at WWDC?", "What will Apple announce at WWDC?"),
    ("Who is the CEO of Twitter?", "Who was the CEO of Twitter?"),
    # 6. steps reordered
    ("Should I wash then dry then iron?", "Should I iron then wash then dry?"),
    (
        "Steps: preheat oven, mix batter, bake. Is this order right?",
        "Steps: mix batter, bake, preheat oven. Is this order right?",
    ),
    ("git: stage, commit, push - right order?", "git: push, stage, commit - right order?"),
]

SAME = [
    ("Should I learn Python or JavaScript?", "Python or JavaScript: which should I learn?"),
    (
        "John has 12 apples and gives away 5. How many are left?",
        "If John had 12 apples and gave 5 away, how many does he have left?",
    ),
    (
        "If a shirt costs $40 and is 25% off, what is the price?",
        "What is the price of a $40 shirt with 25% off?",
    ),
    ("Should I take vitamin D every day?", "Is it okay to take vitamin D daily?"),
    ("What vaccines does my kitten need?", "Which shots does a kitten need?"),
    ("Is Pluto a planet?", "Is Pluto considered a planet?"),
    ("What will Apple announce at WWDC?", "What is Apple expected to announce at WWDC?"),
    ("Who is the president of France?", "Who is the current president of France?"),
]


@pytest.mark.parametrize(("stored", "asked"), DIFFERENT)
def test_another_question_is_refused(embedder: Any, stored: str, asked: str) -> None:
    assert not decided(embedder, stored, asked).hit
    assert not decided(embedder, asked, stored).hit  # and the other way round


@pytest.mark.parametrize(("stored", "asked"), SAME)
def test_the_same_question_is_served(embedder: Any, stored: str, asked: str) -> None:
    decision = decided(embedder, stored, asked)
    assert decision.hit, decision


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # "and" that still asks to choose
        ("Should I learn Python or JavaScript?", "Python and JavaScript: which should I learn?"),
        # the same join on both sides
        ("Can I take ibuprofen or paracetamol?", "Can I take ibuprofen or paracetamol now?"),
        # one number only: no word problem
        ("How many apples are left if I eat 5?", "How many apples do I have if I buy 5?"),
        # no auxiliary to compare
        ("What was the Silk Road?", "Explain what the Silk Road was"),
        # a present perfect asks of the past as well
        ("Has the iPhone 16 been released?", "Did the iPhone 16 come out?"),
        # a name moved is no step moved
        ("Sort a list in Python, then print it", "In Python, sort a list, then print it"),
    ],
)
def test_what_the_new_rules_leave_alone(a: str, b: str) -> None:
    report = check_guards(signature(a), signature(b))
    assert "polarity" not in report.failed, report


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Do I need a passport or an ID card?", "Do I need a passport and an ID card?"),
        ("Do I need either a visa or an ESTA?", "Do I need both a visa and an ESTA?"),
        ("Tom has 20 dollars and spends 8.", "Tom has 20 dollars and earns 8 more."),
        ("24 chocolates shared among 6 kids", "24 chocolates and 6 kids bring more"),
        ("Should I shower every day?", "Should I shower every other day?"),
        ("Should I water the lawn every couple of days?", "Should I water the lawn daily?"),
        ("Were the Beatles British?", "Are the Beatles British?"),
        ("Where did Einstein live?", "Where does Einstein live?"),
        ("Order for painting: prime, sand, paint?", "Order for painting: sand, prime, paint?"),
    ],
)
def test_the_guards_refuse_another_question(a: str, b: str) -> None:
    assert "polarity" in check_guards(signature(a), signature(b)).failed
    assert "polarity" in check_guards(signature(b), signature(a)).failed
