"""False hits found by the fourth audit of the semantic tier (audit24), read by the guards.

1. Becoming against being pregnant ("if I might get pregnant" / "if I may be pregnant"):
   contraception against a test.
2. When something will happen against whether it has ("When will the iPhone 16 be
   released?" / "Has the iPhone 16 been released?").
3. Two steps told the other way round with "then" and no other mark ("Add the eggs, then
   the flour" / "Add the flour, then the eggs"; refused already, kept here).
4. A phrasal verb's particle traded ("carry out" / "carry over"): the embedded model reads
   the two particles as near words, and only its word similarity refused the pair.
5. Subscripts written otherwise ("arr[i][j]" / "arr[i, j]").
6. The punctuation of a text asked about ("Is this sentence correct: Let's eat grandma" /
   "... Let's eat, grandma"), and of the word a "what does X mean" asks about ("TODO!" /
   "TODO:").
7. A language against the everyday word of its letters ("Translate this to Polish" /
   "Translate this to polish"; the embedded model reads no letter case).

("feed my cat" / "feed my kitten", "my puppy" / "my dog": refused since
test_audit27_semantic, the young of an animal against the animal.)

Each refused pair is checked both ways round; each rewording of the same kind must pass.
"""

from __future__ import annotations

import pytest

from tests.semantic.test_guards import passes_both_ways

DIFFERENT = [
    # 1. becoming against being
    ("What should I do if I might get pregnant?", "What should I do if I may be pregnant?"),
    ("Can I get pregnant on my period?", "Can I be pregnant on my period?"),
    ("What are the signs that I will get pregnant?", "What are the signs that I am pregnant?"),
    # 2. when against whether
    ("When will the iPhone 16 be released?", "Has the iPhone 16 been released?"),
    ("When will the iPhone 16 be released?", "Has the iPhone 16 been released yet?"),
    ("When did the Switch 2 come out?", "Did the Switch 2 come out?"),
    ("When can I withdraw from my 401k?", "Can I withdraw from my 401k?"),
    ("When should I take vitamin D?", "Should I take vitamin D?"),
    # 3. steps the other way round with "then"
    ("Add the eggs, then the flour", "Add the flour, then the eggs"),
    ("Wash then dry the dishes", "Dry then wash the dishes"),
    ("Should I stain then seal the deck?", "Should I seal then stain the deck?"),
    ("Do I brush then floss?", "Do I floss then brush?"),
    # 4. a particle traded
    ("What does carry out mean?", "What does carry over mean?"),
    ("What does give in mean?", "What does give up mean?"),
    ("How do I sign up?", "How do I sign in?"),
    ("What does it mean to look up to someone?", "What does it mean to look down on someone?"),
    # 5. subscripts
    ("How do I access arr[i][j] in numpy?", "How do I access arr[i, j] in numpy?"),
    ("What does df[0][1] return?", "What does df[0, 1] return?"),
    # 6. the punctuation of the text asked about
    (
        "Is this sentence correct: Let's eat grandma",
        "Is this sentence correct: Let's eat, grandma",
    ),
    (
        "Check the punctuation: I love cooking my family and my pets",
        "Check the punctuation: I love cooking, my family, and my pets",
    ),
    (
        "Is this grammatically correct: its a nice day",
        "Is this grammatically correct: it's a nice day",
    ),
    ("What does TODO! mean in this code", "What does TODO: mean in this code"),
    ("What does todo! mean in Rust?", "What does todo mean in Rust?"),
    # 7. a language against an everyday word
    ("Translate this to Polish", "Translate this to polish"),
    ("What is Polish?", "What is polish?"),
    ("Can you say it in Polish, please?", "Can you say it in polish, please?"),
]

SAME = [
    # 1. the same state said otherwise
    ("What should I do if I might be pregnant?", "What should I do if I may be pregnant?"),
    ("Can I get pregnant on my period?", "Is it possible to get pregnant on my period?"),
    ("What should I do if I get sick abroad?", "What should I do if I am sick abroad?"),
    # 2. when, said otherwise; whether, said otherwise
    ("When will the iPhone 16 be released?", "When is the iPhone 16 going to be released?"),
    ("Has the iPhone 16 been released?", "Has the iPhone 16 been released yet?"),
    ("When will my card arrive?", "When is my card arriving?"),
    ("Why hasn't my card arrived?", "When will my card arrive?"),
    ("When I use my card, it says declined", "Can I use my card abroad?"),
    # 3. the same steps in the same order
    ("Add the eggs, then the flour", "Add the eggs and then the flour"),
    ("Add the eggs, then the flour", "First add the eggs, then the flour"),
    ("Wash then dry the dishes", "Wash the dishes and then dry them"),
    ("Should I stain then seal the deck?", "Should I stain the deck before sealing it?"),
    ("Add the eggs, then the flour", "Add the flour after the eggs"),
    # 4. the same particle, or two that say one thing
    ("What does carry out mean?", "What does carry out mean"),
    ("How do I carry out the task?", "How do I perform the task?"),
    ("How do I log in to my account?", "How do I log on to my account?"),
    ("How do I go over my notes before an exam?", "How do I go through my notes before an exam?"),
    ("Best hotels in Paris", "Best hotels around Paris"),
    # 5. one subscript, spaced otherwise
    ("How do I access arr[i, j] in numpy?", "How do I access arr[i,j] in numpy?"),
    ("How do I access arr[i][j] in numpy?", "how do i access arr[i][j] in numpy"),
    ("What does a[::-1] do?", "what does a[::-1] do"),
    # 6. the same punctuation, an end of the sentence, or no text asked about
    (
        "Is this sentence correct: Let's eat, grandma",
        "Is this sentence correct: Let's eat, grandma.",
    ),
    (
        "Is this sentence correct: Let's eat grandma",
        "Is this sentence correct:  Let's eat grandma?",
    ),
    ("Help: my card, it does not work", "Help: my card it does not work"),
    (
        "Is this sentence correct: Let's eat, grandma",
        "Is this sentence grammatically correct: let's eat, grandma",
    ),
    ("Which is correct: affect or effect?", "Which is correct: effect or affect?"),
    ("What does TODO mean in this code?", "What does TODO mean in this code"),
    ("What does TODO: mean in this code", "What does TODO mean in this code"),
    ("What does 'TODO' mean in this code", "What does TODO mean in this code"),
    ("What does e.g. mean?", "What does eg mean?"),
    # 7. the same word, or letter case that says nothing
    ("How do I polish my shoes?", "How do I polish my shoes"),
    ("Polish my shoes, how?", "polish my shoes, how?"),
    (
        "How do I polish silver? Polish it with what?",
        "How do I polish silver? polish it with what?",
    ),
    ("translate this to polish", "Translate this to Polish"),
    ("Translate this to Polish", "Translate this to Polish please"),
    ("Is French toast healthy?", "Is french toast healthy?"),
    ("How To Polish Shoes", "How to polish shoes"),
]


@pytest.mark.parametrize(("stored", "asked"), DIFFERENT)
def test_another_question_is_refused(stored: str, asked: str) -> None:
    assert not passes_both_ways(stored, asked)


@pytest.mark.parametrize(("a", "b"), SAME)
def test_a_rewording_of_the_same_kind_passes(a: str, b: str) -> None:
    assert passes_both_ways(a, b)
