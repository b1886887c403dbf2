# ruff: noqa: RUF001 - the prompts of this audit are written in other scripts on purpose
"""False hits found by the audit of the semantic tier (audit22), as a cache meets them.

1. A prompt mostly in another script than Latin showed the guards no word (their tokenizer
   reads Latin letters), two such prompts "said the same words" and were served from
   0.45: 386 of 420 ordered pairs of distinct Russian, Chinese, Japanese, Korean, Arabic,
   Greek and Hindi questions were served each other's answer. Such a prompt is left to the
   exact tier now (``SemanticLookup.reason == "script"``), whatever the embedder, and the
   words of another script in a mostly Latin prompt must be the same on both sides.
2. An instruction before a pasted text ("Summarize this email:\\n<email>") was not seen as
   a request about a shared context.
3. A minus sign was dropped from numbers ("-5" read as "5").
4. The same words with their symbols in another order ("age > 30" / "age < 30") or their
   lines indented otherwise were "the same words".
5. A short word in capitals against the same letters in lower case ("IT" / "it") was "the
   same words".
6. Alternatives the guards did not know: double / triple, read / write, the answer alone /
   in detail.
"""

from __future__ import annotations

from typing import Any

import pytest

import deja
from deja.request import Request
from deja.semantic import SemanticCache
from deja.semantic.guards import check_guards, signature
from deja.semantic.guards.spelling import same_words
from deja.semantic.guards.tokenizer import foreign_words, mostly_latin
from tests.helpers import chat_response
from tests.semantic.scripted import decided

# distinct questions, each with an answer of its own, per script
OTHER_SCRIPTS = {
    "ru": [
        "Что такое квантовая физика?",
        "Сколько стоит билет в Москву?",
        "Какая столица Франции?",
    ],
    "zh": ["北京的天气怎么样？", "上海的天气怎么样？", "如何打开蓝牙？"],
    "ja": ["東京の天気はどうですか？", "大阪の天気はどうですか？", "りんごを三つください"],
    "ko": ["서울 날씨 어때요?", "부산 날씨 어때요?", "김치 만드는 법 알려줘"],
    "ar": ["ما هي عاصمة مصر؟", "ما هي عاصمة المغرب؟", "كيف أتعلم البرمجة؟"],
    "el": ["Ποια είναι η πρωτεύουσα της Ελλάδας;", "Πώς μαγειρεύω μουσακά;"],
    "hi": ["भारत की राजधानी क्या है?", "नेपाल की राजधानी क्या है?"],
    "th": ["กรุงเทพอากาศเป็นอย่างไร", "เชียงใหม่อากาศเป็นอย่างไร"],
    "he": ["מה הבירה של ישראל?", "מה הבירה של ירדן?"],
}

LATIN_WITH_ACCENTS = [
    "Comment ça va, François? Où est la bibliothèque?",
    "Wie komme ich zur Straße mit der größten Brücke?",
    "¿Cuántos años tiene el niño en España?",
    "Jak dojechać z Łodzi do Gdańska?",
    "İstanbul'da ılık hava var mı, çok güzel mi?",
    "Hvor ligger Ærøskøbing på øen?",
    "Tiếng Việt có khó học không?",
]


def ask(text: str) -> Request:
    return Request.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])


def answer() -> dict[str, Any]:
    return chat_response("An answer.")


# -- 1. other scripts ------------------------------------------------------------------


@pytest.mark.parametrize("text", [t for texts in OTHER_SCRIPTS.values() for t in texts])
def test_a_text_mostly_in_another_script_is_not_latin(text: str) -> None:
    assert not mostly_latin(text)


@pytest.mark.parametrize("text", LATIN_WITH_ACCENTS)
def test_latin_languages_with_accents_and_their_own_letters_are_latin(text: str) -> None:
    assert mostly_latin(text)


def test_mixed_text_goes_by_its_words_a_character_of_chinese_a_word() -> None:
    # one English name in a Chinese question: six Chinese words against one
    assert not mostly_latin("iPhone 15 的电池怎么样？")
    assert not mostly_latin("如何在iPhone上打开蓝牙？")
    assert not mostly_latin("Как установить Python на Windows?")
    # a Chinese word in an English request: the request is English
    assert mostly_latin("Translate 你好 into English")
    assert mostly_latin("What does μ mean in statistics?")
    assert mostly_latin("🍕🍕 2 + 2 = ?")  # no letters at all


def test_no_prompt_in_another_script_is_served_another_ones_answer(embedder: Any) -> None:
    semantic = SemanticCache(embedder=embedder)
    texts = [t for texts in OTHER_SCRIPTS.values() for t in texts]
    assert not any(semantic.store(ask(t), f"key-{i}") for i, t in enumerate(texts))
    for text in texts:
        lookup = semantic.inspect(ask(text + " "))  # not the stored text byte for byte
        assert lookup.match is None
        assert not lookup.applicable and lookup.reason == "script"
        assert semantic.query(ask(text)) is None
    assert len(semantic) == 0


def test_a_cache_answers_a_russian_question_from_the_exact_tier_only(embedder: Any) -> None:
    cache = deja.Cache(semantic=SemanticCache(embedder=embedder))
    first = cache.fetch(ask("Какая столица Франции?"), answer)
    assert first.info.status == "miss"
    other = cache.fetch(ask("Какая столица Германии?"), answer)
    assert other.info.status == "miss"
    explained = cache.explain_semantic(ask("Какая столица Германии?"))
    assert (explained["applicable"], explained["reason"]) == (False, "script")
    assert cache.explain_semantic(ask("What is the capital of France?"))["reason"] is None
    again = cache.fetch(ask("Какая столица Франции?"), answer)
    assert again.info.status == "hit"


class _OneVector:
    """An embedder that reads every text as the same vector: a multilingual model, as far as
    the guards go (it may tell the two texts apart or not; they cannot)."""

    id, dim = "multilingual:test:4", 4

    def embed(self, texts: Any) -> Any:
        import numpy as np

        return np.tile(np.array([0.5, 0.5, 0.5, 0.5], dtype=np.float32), (len(texts), 1))

    async def aembed(self, texts: Any) -> Any:
        return self.embed(texts)


def test_another_script_is_left_to_the_exact_tier_whatever_the_embedder() -> None:
    semantic = SemanticCache(embedder=_OneVector())
    assert not semantic.store(ask("Какая столица Франции?"), "paris")
    lookup = semantic.inspect(ask("Какая столица Германии?"))
    assert lookup.match is None and lookup.reason == "script"
    # a Latin text still applies
    assert semantic.store(ask("Quelle est la capitale de la France ?"), "paris")
    assert semantic.inspect(ask("Quelle est la capitale de la France?")).applicable


def test_why_the_tier_does_not_apply_is_told(embedder: Any) -> None:
    semantic = SemanticCache(embedder=embedder)
    assert semantic.inspect(ask("   ")).reason == "no_text"
    assert semantic.inspect(ask("word " * 2000)).reason == "too_long"
    assert semantic.inspect(ask("北京的天气怎么样？")).reason == "script"
    lookup = semantic.inspect(ask("How can I track my card?"))
    assert lookup.applicable and lookup.reason is None


def test_two_prompts_of_no_words_do_not_say_the_same_words() -> None:
    assert not same_words((), (), "", "")
    assert not signature("北京的天气怎么样？").same_words_as(signature("上海的天气怎么样？"))
    assert not signature("🍕").same_words_as(signature("🍕"))
    assert same_words(("track", "card"), ("track", "card"), "", "")


def test_words_of_another_script_in_a_latin_prompt_must_be_the_same() -> None:
    assert foreign_words("Translate «Привет, мир» into English") == ("привет", "мир")
    assert foreign_words("Comment ça va?") == ()
    a, b = signature("Translate 你好 into English"), signature("Translate 再见 into English")
    assert "script" in check_guards(a, b).failed
    assert not a.same_words_as(b)
    same = signature("How do I say 你好 in English?")
    assert check_guards(same, signature("how do i say 你好 in english")).failed == ()


# -- 2.-6. the guards --------------------------------------------------------------------

EMAIL = (
    "Hi team, following our meeting last Thursday with the client, we agreed on the"
    " following points: the launch will move to the second week of the month, the"
    " marketing budget stays the same, the design team will deliver the new mockups by"
    " Friday, and the support team will prepare the FAQ."
)
CODE = (
    "def average(values):\n    total = 0\n    for v in values:\n        total += v\n"
    "    if len(values) == 0:\n        return 0\n    return total / len(values)"
)

DIFFERENT = [
    # 2. another request before one pasted text
    (f"Summarize this email:\n{EMAIL}", f"Write a reply to this email:\n{EMAIL}"),
    (f"Fix the grammar in this email:\n{EMAIL}", f"Make this email more formal:\n{EMAIL}"),
    (f"Fix the grammar: {EMAIL}", f"Make this more formal: {EMAIL}"),
    (f"Explain this code:\n{CODE}", f"Optimize this code:\n{CODE}"),
    (f"Add type hints to this code:\n{CODE}", f"Add docstrings to this code:\n{CODE}"),
    # 3. a minus sign
    ("What is -5 squared?", "What is 5 squared?"),
    ("Is -40 degrees colder than -30 degrees?", "Is 40 degrees colder than 30 degrees?"),
    ("What is the absolute value of -7?", "What is the absolute value of 7?"),
    (
        "My balance is -500 dollars, what should I do?",
        "My balance is 500 dollars, what should I do?",
    ),
    ("Why is my temperature -2 degrees off?", "Why is my temperature 2 degrees off?"),
    # 4. the same words, the symbols in another order or the lines indented otherwise
    (
        "what does SELECT * FROM users WHERE age > 30 return",
        "what does SELECT * FROM users WHERE age < 30 return",
    ),
    ("Is x > 5 and y < 3 valid?", "Is x < 5 and y > 3 valid?"),
    ("What does git reset HEAD~1 do?", "What does git reset HEAD^1 do?"),
    ("What does ∀x ∃y mean in logic?", "What does ∃x ∀y mean in logic?"),
    ("What is 10 / 2 / 5?", "What is 10 / (2 / 5)?"),
    ("Is this valid Python?\nif x:\npass", "Is this valid Python?\nif x:\n    pass"),
    (
        "What is the output of:\nfor i in range(3):\n    print(i)\nprint('done')",
        "What is the output of:\nfor i in range(3):\n    print(i)\n    print('done')",
    ),
    # 5. a short word in capitals and in lower case
    ("What does IT mean in a company?", "What does it mean in a company?"),
    ("Is WHO a reliable source?", "Is who a reliable source?"),
    ("What is MS?", "What is ms?"),
    # 6. alternatives
    ("What is a triple bypass surgery?", "What is a double bypass surgery?"),
    ("Write a Python script to read a CSV file", "Write a Python script to write a CSV file"),
    (
        "Give me the answer only, no explanation: what is the boiling point of water?",
        "Explain in detail: what is the boiling point of water?",
    ),
]

SAME = [
    (f"Summarize this email:\n{EMAIL}", f"Summarise this email:\n{EMAIL}"),
    ("How can I track my card?", "how do i track my card"),
    ("Is this valid Python?\nif x:\n  pass", "Is this valid Python?\nif x:\n    pass"),
    (
        "How do I convert a string to an int in Python?",
        "how do i convert a string to an int in python",
    ),
    ("Comment ça va?", "comment ca va"),
    (
        "Will a heat pump keep my house warm at minus twenty degrees Celsius?",
        "Will a heat pump keep my house warm at -20°C?",
    ),
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


def test_a_request_before_a_pasted_text_is_a_question_about_it() -> None:
    a = signature(f"Summarize this email:\n{EMAIL}")
    b = signature(f"Write a reply to this email:\n{EMAIL}")
    assert check_guards(a, b).failed == ("context",)


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("What is -5 squared?", ("-5",)),
        ("Is \u221240 degrees cold?", ("-40",)),  # the minus sign itself
        ("x = -3", ("-3",)),
        ("x=-3 and (-2, 4)", ("-3", "-2", "4")),
        ("a loss of -2 million", ("-2000000",)),
        ("is -0 the same as 0", ("0", "0")),
        # said in words, unless it takes one number from another
        ("warm at minus twenty degrees", ("-20",)),
        ("negative 5 squared", ("-5",)),
        ("what is 10 minus 5", ("10", "5")),
        ("what is 10 - 5", ("10", "5")),
        # a hyphen after a letter or a digit is no sign
        ("take 5-10 mg", ("5", "10")),
        ("call 555-1234", ("555", "1234")),
    ],
)
def test_a_minus_sign_before_a_number_is_part_of_it(text: str, numbers: tuple[str, ...]) -> None:
    assert signature(text).all_numbers == numbers


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Is x > 5 and y < 3 valid?", "Is x < 5 and y > 3 valid?"),
        ("What does git reset HEAD~1 do?", "What does git reset HEAD^1 do?"),
        ("Is this valid Python?\nif x:\npass", "Is this valid Python?\nif x:\n    pass"),
        ("What does 🍕 mean?", "What does 🍔 mean?"),
    ],
)
def test_the_same_words_with_other_symbols_or_indents_are_refused(a: str, b: str) -> None:
    assert "symbols" in check_guards(signature(a), signature(b)).failed
    assert "symbols" in check_guards(signature(b), signature(a)).failed


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("what is 2*3", "what is 2 times 3"),  # an operator read as its word
        ("what does os.path.join() do?", "what does `os.path.join` do"),
        ("open (https://example.com/a), please", "open https://example.com/a"),
        ("say \u201ehello\u201c in French", "say \u201chello\u201d in French"),
        ("def f():\n  return 1", "def f():\n    return 1"),  # 2 spaces a level or 4
        ("  What is x?\n", "What is x?"),  # the text's own leading whitespace
    ],
)
def test_symbols_the_guards_read_otherwise_are_no_other_order(a: str, b: str) -> None:
    assert "symbols" not in check_guards(signature(a), signature(b)).failed


def test_a_short_word_in_capitals_is_not_the_same_word_in_lower_case() -> None:
    for a, b in [
        ("What does IT mean?", "What does it mean"),
        ("Is WHO reliable?", "Is who reliable"),
    ]:
        assert not signature(a).same_words_as(signature(b))
        assert not signature(b).same_words_as(signature(a))
    # written in capitals on both sides, it is the same word
    assert signature("What does IT mean?").same_words_as(signature("what does IT mean"))
    # and a prompt all in capitals, or all in lower case, says nothing by its letter case
    assert signature("WHAT IS MS?").same_words_as(signature("What is ms"))
    assert signature("What is MS?").same_words_as(signature("what is ms"))
    assert signature("Make an HTTP GET request").same_words_as(
        signature("make an http get request")
    )
