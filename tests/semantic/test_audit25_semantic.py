"""False hits found by the fifth audit of the semantic tier (audit25), read by the guards.

1. A number bounded one way and the other ("up to 3000 mg" / "more than 3000 mg",
   "exactly 3 logins" / "more than 3 logins", "fewer than 50" / "50 or more"), and a span
   counted back or ahead ("100 days ago" / "in 100 days").
2. Before or after an event said with other words: "prior to", "ahead of", "leading up
   to", "up until" / "following".
3. Superlatives: "the least dense" / "the densest" (a word the antonym groups do not
   know, graded down and up), and antonyms of measure they did not know ("narrowest" /
   "widest", "mildest" / "harshest", "strictest" / "most lenient", "dark" / "light").
4. Two sides of a term the embedded model reads alike: "full-time" / "part-time",
   "whitelist" / "blacklist", "numerator" / "denominator", "2 decimal places" / "2
   significant figures", "the x-axis" / "the y-axis"; compounds on opposite heads
   ("hardware" / "software", "headlight" / "taillight") are a prefixed substitution.
5. Who a message is for: a professor, lecturer or tutor against a student.
6. Where a verb of moving sends a thing: "bring alcohol into Dubai" / "out of Dubai".
7. "Only" / "also" traded ("does my plan only cover dental" / "also cover dental"), and
   "still" against "no longer" ("is Pluto still a planet" / "no longer a planet").
8. One against all after "who is / are" ("who is a member of the Beatles" / "who are
   the members").

Each refused pair is checked both ways round; each rewording of the same kind must pass.
"""

from __future__ import annotations

from typing import Any

import pytest

from deja.semantic.guards import signature
from tests.semantic.scripted import decided
from tests.semantic.test_guards import passes_both_ways

DIFFERENT = [
    # 1. bounds and spans
    (
        "Is it safe to take up to 3000 mg of Tylenol a day?",
        "Is it safe to take more than 3000 mg of Tylenol a day?",
    ),
    ("Find users with exactly 3 logins", "Find users with more than 3 logins"),
    ("Companies with fewer than 50 employees", "Companies with 50 or more employees"),
    ("Good cars for up to $20,000", "Good cars for over $20,000"),
    ("Find all numbers greater than or equal to 10", "Find all numbers less than or equal to 10"),
    (
        "Can I work over 20 hours a week on a student visa?",
        "Can I work up to 20 hours a week on a student visa?",
    ),
    (
        "What day of the week was it 100 days ago?",
        "What day of the week will it be in 100 days?",
    ),
    ("What was the date 6 weeks ago?", "What is the date 6 weeks from now?"),
    # 2. before or after
    ("What should I eat prior to a workout?", "What should I eat following a workout?"),
    ("What should I do ahead of a hurricane?", "What should I do after a hurricane?"),
    (
        "Can I drink alcohol in the days leading up to surgery?",
        "Can I drink alcohol in the days following surgery?",
    ),
    ("Can I get a refund up until the flight?", "Can I get a refund after the flight?"),
    # 3. superlatives
    ("Which planet is the densest?", "Which planet is the least dense?"),
    ("What is the sweetest white wine?", "What is the least sweet white wine?"),
    ("Which is the windiest city in the US?", "Which is the least windy city in the US?"),
    ("What is the narrowest street in Prague?", "What is the widest street in Prague?"),
    ("Which US city has the mildest winters?", "Which US city has the harshest winters?"),
    (
        "Which country has the strictest gun laws?",
        "Which country has the most lenient gun laws?",
    ),
    ("What is the cleanest city in Europe?", "What is the dirtiest city in Europe?"),
    ("How do I turn on dark mode in Gmail?", "How do I turn on light mode in Gmail?"),
    # 4. two sides of a term
    (
        "How many hours is a full-time job in the UK?",
        "How many hours is a part-time job in the UK?",
    ),
    ("How do I whitelist an email in Gmail?", "How do I blacklist an email in Gmail?"),
    ("How do I add an IP to the allowlist?", "How do I add an IP to the blocklist?"),
    ("What's the numerator in 3/4?", "What's the denominator in 3/4?"),
    ("Round 3.14159 to 2 decimal places", "Round 3.14159 to 2 significant figures"),
    ("How do I label the x-axis in matplotlib?", "How do I label the y-axis in matplotlib?"),
    ("What is the x-intercept of y = 2x + 4?", "What is the y-intercept of y = 2x + 4?"),
    ("Is a stalactite on the ceiling?", "Is a stalagmite on the ceiling?"),
    # 5. who a message is for
    (
        "Write an email to my professor asking for an extension",
        "Write an email to my student asking for an extension",
    ),
    ("Write a thank you card for my tutor", "Write a thank you card for my pupil"),
    # 6. into / out of
    ("Can I bring alcohol into Dubai?", "Can I bring alcohol out of Dubai?"),
    ("How do I move money into my savings?", "How do I move money out of my savings?"),
    (
        "How do I copy files into a docker container?",
        "How do I copy files out of a docker container?",
    ),
    # 7. only / also, still / no longer
    ("Does my plan only cover dental?", "Does my plan also cover dental?"),
    ("Is Pluto still a planet?", "Is Pluto no longer a planet?"),
    ("Is my card still active?", "Is my card not active anymore?"),
    # 8. one against all
    ("Who is a member of the Beatles?", "Who are the members of the Beatles?"),
    ("Who is a founder of Google?", "Who are the founders of Google?"),
]

SAME = [
    # 1. the same bound, said otherwise
    ("Companies with fewer than 50 employees", "Companies with under 50 employees"),
    ("Show customers aged 65 and over", "Show customers over 65"),
    ("Find employees who earn at least $50,000", "Find employees who earn $50,000 or more"),
    (
        "Is it safe to take up to 3000 mg of Tylenol a day?",
        "Is it safe to take a maximum of 3000 mg of Tylenol a day?",
    ),
    ("Laptops that cost no more than $800", "Laptops that cost at most $800"),
    ("Will my card arrive in 3 days?", "Will my card arrive within 3 days?"),
    ("What date will it be in 90 days?", "What is the date 90 days from now?"),
    # 2. the same side of the event
    ("What should I eat prior to a workout?", "What should I eat before a workout?"),
    ("What should I eat following a workout?", "What should I eat after a workout?"),
    (
        "Which vaccines do I need ahead of travel to Peru?",
        "Which vaccines do I need before travel to Peru?",
    ),
    ("My card worked up until now, why is it declined?", "Why is my card declined now?"),
    # 3. the same grade
    ("What is the least spicy pepper?", "Which pepper is the least spicy?"),
    ("What is the least noisy dog breed?", "What is the quietest dog breed?"),
    ("What's the least salty cheese?", "Which cheese has the least salt?"),
    ("Is dark roast coffee stronger?", "Does dark roast coffee have more caffeine?"),
    # 4. the same side of the term
    ("Can a part-time student get financial aid?", "Can part-time students get financial aid?"),
    ("How do I flip the y-axis in matplotlib?", "How to invert the y-axis in matplotlib?"),
    # 5. the same reader
    ("Write an email to my professor", "Write an email to my lecturer"),
    # 6. no way in or out
    ("I'm out of data, how do I add more?", "How do I add more data to my plan?"),
    (
        "How do I move money out of savings into checking?",
        "How do I move money into checking from savings?",
    ),
    # 7. the same scope, the same "still"
    ("Does my insurance only cover accidents?", "Does my insurance cover accidents only?"),
    ("Is Pluto still a planet?", "Is Pluto still considered a planet?"),
    # 8. all of them either way
    ("Who are the members of the Rolling Stones?", "Who is in the Rolling Stones?"),
]

# compounds whose heads are opposite: a one-word trade the decision refuses as prefixed
PREFIXED = [
    ("Is hardware RAID faster?", "Is software RAID faster?"),
    ("Why is my headlight flickering?", "Why is my taillight flickering?"),
    ("Do I need a forehand grip?", "Do I need a backhand grip?"),
]

# as a cache meets them: each was served the other's answer
SERVED_BEFORE = [
    ("Can I bring up to 2 bags on the plane?", "Can I bring more than 2 bags on the plane?"),
    ("Do I need to fast prior to a blood test?", "Do I need to fast after a blood test?"),
    ("What's the hilliest city in England?", "What's the least hilly city in England?"),
    ("Can I take cash into Mexico?", "Can I take cash out of Mexico?"),
    ("Is Windows 7 still supported?", "Is Windows 7 no longer supported?"),
]

STILL_SERVED = [
    (
        "Is it safe to take up to 3000 mg of Tylenol a day?",
        "Is it safe to take a maximum of 3000 mg of Tylenol a day?",
    ),
    (
        "Which vaccines do I need ahead of travel to Peru?",
        "Which vaccines do I need before travel to Peru?",
    ),
    ("Show customers aged 65 and over", "Show customers over 65"),
    ("Is Pluto still a planet?", "Is Pluto still considered a planet?"),
    ("Do I need to fast prior to a blood test?", "Do I need to fast before a blood test?"),
    ("Laptops that cost no more than $800", "Laptops that cost at most $800"),
    ("What is the least spicy pepper?", "Which pepper is the least spicy?"),
]


@pytest.mark.parametrize(("stored", "asked"), DIFFERENT)
def test_another_question_is_refused(stored: str, asked: str) -> None:
    assert not passes_both_ways(stored, asked)


@pytest.mark.parametrize(("a", "b"), SAME)
def test_a_rewording_of_the_same_kind_passes(a: str, b: str) -> None:
    assert passes_both_ways(a, b)


@pytest.mark.parametrize(("stored", "asked"), PREFIXED)
def test_compounds_on_opposite_heads_are_a_prefixed_substitution(
    embedder: Any, stored: str, asked: str
) -> None:
    from deja.semantic.decision import guard_report, word_similarity_for

    words = word_similarity_for(embedder)
    for x, y in ((stored, asked), (asked, stored)):
        report, detail = guard_report(signature(x), signature(y), None, words)
        assert report.failed == ("substitution",) and detail is not None and "prefixed" in detail


@pytest.mark.parametrize(("stored", "asked"), SERVED_BEFORE)
def test_a_cache_no_longer_serves_the_other_answer(embedder: Any, stored: str, asked: str) -> None:
    assert not decided(embedder, stored, asked).hit
    assert not decided(embedder, asked, stored).hit


@pytest.mark.parametrize(("stored", "asked"), STILL_SERVED)
def test_a_cache_still_serves_a_rewording(embedder: Any, stored: str, asked: str) -> None:
    assert decided(embedder, stored, asked).hit
