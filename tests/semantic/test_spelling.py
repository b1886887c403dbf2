"""Typing slips: the same words, one of them mistyped, are the same question."""

from __future__ import annotations

from typing import Any

import pytest

import deja
from deja.semantic import SemanticCache
from deja.semantic.decision import decide
from deja.semantic.guards import signature
from deja.semantic.guards.spelling import abbreviated, misspelt, same_words, symbols_of, variant
from deja.semantic.verifier import Verifier
from tests.helpers import chat_request, chat_response


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ("hand", "hnad"),  # two neighbours swapped
        ("aquarium", "aquarim"),  # a letter dropped
        ("customer", "custommer"),  # a letter added
        ("monitor", "moniter"),  # a letter changed
        ("sweden", "sweeden"),
    ],
)
def test_one_edit_from_a_word_that_is_not_one_is_a_slip(x: str, y: str) -> None:
    assert misspelt(x, y) and misspelt(y, x)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ("form", "from"),  # both words
        ("bake", "make"),
        ("debit", "debt"),
        ("deactivate", "reactivate"),
        ("http", "https"),  # one the start of the other
        ("hypoglycemia", "hyperglycemia"),  # two edits
        ("cat", "cta"),  # too short to tell
        ("hand", "hand"),
    ],
)
def test_two_words_or_two_edits_are_no_slip(x: str, y: str) -> None:
    assert not misspelt(x, y) and not misspelt(y, x)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "how to do the heimlich maneuver on an adult",
            "how to do the hiemlich manuver on an adult",
        ),
        (
            "Explain the difference between deductive and inductive reasoning.",
            "What's the difference between deductive and inductive reasoning?",
        ),
        (
            "For a deep cut on the hand, what first aid should I give?",
            "What first aid should I give for a deep cut on the hand?",
        ),
        ("Tell me the capital of Peru", "capital of peru please"),
        ("What is progressive overload?", "wat is progressive overload"),  # chat spellings
        ("can you reset your router", "can u reset ur router"),
        # French puts a space before "?", Spanish opens a question with "¿"
        ("Où est ma commande ?", "Où est ma commande?"),
        ("¿Puedo pagar con PayPal?", "Puedo pagar con PayPal?"),
    ],
)
def test_the_same_words_framed_or_typed_otherwise(a: str, b: str) -> None:
    assert signature(a).same_words_as(signature(b))
    assert signature(b).same_words_as(signature(a))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("What does $? mean in bash?", "What does $! mean in bash?"),  # symbols
        ("default port for http", "default port for https"),
        ("How do I get my card?", "How will I get my card?"),  # tense
        ("how do I reset it", "how do you reset it"),  # pronouns count
        ("Can my manager see my review?", "Can I see my manager's review?"),
        ("flights to Paris", "flights from Paris"),
        ("how to bake bread", "how to make bread"),
        ("list the planets of the solar system", "describe the planets of the solar system"),
    ],
)
def test_other_words_symbols_or_pronouns_are_not_the_same_words(a: str, b: str) -> None:
    assert not signature(a).same_words_as(signature(b))


def test_symbols_ignore_sentence_punctuation_only() -> None:
    assert symbols_of("What is it? Tell me, now!") == ""
    assert symbols_of("what does $? do") == "$?"
    assert same_words(("x",), ("x",), "", "") is True
    assert same_words(("x",), ("x",), "$", "") is False


def test_words_trading_places_are_not_the_same_words_but_a_moved_part_is() -> None:
    assert not same_words(("savefig", "before", "show"), ("show", "before", "savefig"), "", "")
    assert not same_words(("milk", "chocolate"), ("chocolate", "milk"), "", "")
    moved = ("on", "linux", "how", "to", "fix", "dns")
    assert same_words(("how", "to", "fix", "dns", "on", "linux"), moved, "", "")
    slipped = ("on", "linx", "how", "to", "fix", "dns")
    assert same_words(("how", "to", "fix", "dns", "on", "linux"), slipped, "", "")


def test_a_slip_passes_the_verifier_that_refuses_its_low_similarity(embedder: Any) -> None:
    verifier = Verifier.default_for(embedder.id)
    a = "why is my aquarium water cloudy"
    b = "why is my aquarim water cloudy"
    u, v = embedder.embed([a, b])
    similarity = float(u @ v)
    assert 0.7 <= similarity < verifier.trust_above  # the typos cost the model a lot
    kwargs: dict[str, Any] = {"threshold": 0.7, "verifier": verifier}
    served = decide(similarity, b, a, query_vector=v, candidate_vector=u, **kwargs)
    assert served.hit and served.reason == "hit"
    assert served.probability is not None and served.probability < verifier.cut  # not its call
    # another word there, not a slip: the verifier judges, and refuses
    other = decide(
        similarity, "why is my pond water cloudy", a, query_vector=v, candidate_vector=u, **kwargs
    )
    assert not other.hit and other.reason == "verifier"


def test_a_mistyped_word_is_no_substitution_and_a_cache_serves_it(embedder: Any) -> None:
    cache = deja.Cache(semantic=SemanticCache(embedder=embedder))
    cache.fetch(chat_request("how do I sew a blind hem by hand"), lambda: chat_response("..."))
    asked = chat_request("how do i sew a blind hem by hnad")
    assert cache.get(asked).info.status == "semantic_hit"
    assert cache.get(chat_request("how do I sew a blind hem by machine")).info.status == "miss"


def test_the_same_words_clear_a_threshold_a_little_below_it(embedder: Any) -> None:
    from deja.semantic.calibrate import LabelledPair, PairOutcome
    from deja.semantic.decision import DEFAULT_THRESHOLD, SLIP_ALLOWANCE, clears

    a = "how to contact customer support on deliveroo"
    b = "how to contact custommer suport on deliveroo"
    u, v = embedder.embed([a, b])
    similarity = float(u @ v)
    assert DEFAULT_THRESHOLD - SLIP_ALLOWANCE <= similarity < DEFAULT_THRESHOLD
    verifier = Verifier.default_for(embedder.id)
    kwargs: dict[str, Any] = {"verifier": verifier, "query_vector": v, "candidate_vector": u}
    served = decide(similarity, b, a, threshold=DEFAULT_THRESHOLD, **kwargs)
    assert served.hit and served.same_words
    # a stricter threshold moves the allowance with it
    assert decide(similarity, b, a, threshold=0.95, **kwargs).reason == "threshold"
    # other words at that similarity are below the threshold
    other = decide(similarity, "how to contact a courier on deliveroo", a, threshold=0.7, **kwargs)
    assert not other.hit and other.reason == "threshold" and not other.same_words
    assert clears(0.5, 0.7, same_words=True) and not clears(0.5, 0.7)
    assert not clears(0.44, 0.7, same_words=True)
    # calibration sweeps thresholds the same way
    outcome = PairOutcome(LabelledPair(a, b, True), similarity, True, "hit", None, True)
    assert outcome.served(DEFAULT_THRESHOLD) and not outcome.served(0.95)


def test_a_cache_serves_a_prompt_typed_with_slips(embedder: Any) -> None:
    cache = deja.Cache(semantic=SemanticCache(embedder=embedder))
    stored = chat_request("how to contact customer support on deliveroo")
    cache.fetch(stored, lambda: chat_response("In the app: Account > Help."))
    hit = cache.get(chat_request("how to contact custommer suport on deliveroo"))
    assert hit.info.status == "semantic_hit" and hit.info.similarity is not None
    assert hit.info.similarity < 0.7


def test_a_semantic_cache_reads_the_word_list_in_the_background(
    embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from deja.semantic.guards import spelling

    monkeypatch.setattr(spelling, "_known_words", [])
    SemanticCache(embedder=embedder)
    deadline = time.monotonic() + 30
    while not spelling._known_words and time.monotonic() < deadline:
        time.sleep(0.01)
    assert spelling._known_words and "hand" in spelling._known_words[0]
    assert "hnad" not in spelling._known_words[0]


def test_a_missing_word_list_is_a_typed_error_naming_the_install(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    from deja.errors import MissingDependencyError
    from deja.semantic.guards import spelling

    monkeypatch.setattr(spelling, "_known_words", [])
    monkeypatch.setitem(sys.modules, "spellchecker", None)  # import fails
    with pytest.raises(MissingDependencyError, match="deja-llm\\[semantic\\]"):
        misspelt("hand", "hnad")
    spelling._read_quietly()  # the background read logs instead of raising
    assert "pip install 'deja-llm[semantic]'" in caplog.text


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "When does fall registration open?",
            "Hello, I hope you're well. When does fall registration open? Many thanks.",
        ),
        (
            "explain the difference between who and whom",
            "Hey, would you be so kind as to explain the difference between who and whom?"
            " Thanks a lot!",
        ),
        ("what is natural wine", "Can you explain what natural wine is?"),
    ],
)
def test_pleasantries_around_a_request_are_not_what_it_says(a: str, b: str) -> None:
    assert signature(a).same_words_as(signature(b))


def test_pleasantries_inside_a_request_count() -> None:
    assert not signature("how do I write a thank you note").same_words_as(
        signature("how do I write a note")
    )
    assert not signature("hi").same_words_as(signature("hello"))  # nothing but greetings


def test_two_unknown_words_are_a_slip_only_from_the_same_first_letter() -> None:
    assert not misspelt("lapply", "sapply")  # two functions of R
    assert misspelt("varroa", "varoa")


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ("colour", "color"),
        ("centre", "center"),
        ("travelled", "traveled"),
        ("catalogue", "catalog"),
        ("practise", "practice"),
        ("organise", "organize"),
        ("paediatric", "pediatric"),
    ],
)
def test_british_and_american_spellings_are_one_word(x: str, y: str) -> None:
    assert variant(x, y) and variant(y, x)


@pytest.mark.parametrize(
    ("x", "y", "same"),
    [
        ("acct", "account", True),
        ("appt", "appointment", True),
        ("divin", "diving", True),
        ("uni", "united", False),  # a word of its own
        ("bat", "boat", False),  # both words
        ("cnt", "account", False),  # another first letter
        ("form", "from", False),
    ],
)
def test_a_shortened_word_is_the_word(x: str, y: str, same: bool) -> None:
    assert abbreviated(x, y) is same and abbreviated(y, x) is same


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            "What does VLOS mean for drone pilots?",
            "What does visual line of sight mean for drone pilots?",
            True,
        ),
        ("Can I pay my energy bill by DD?", "Can I pay my energy bill by direct debit?", True),
        (
            "What is an IAM role?",
            "What is an Identity and Access Management role?",
            True,
        ),
        ("is ABS worth it", "is an anti-lock braking system worth it", True),
        ("Can I pay my energy bill by DD?", "Can I pay my energy bill by debit card?", False),
        ("what is a PR", "what is a pull", False),  # one word spells no acronym
        ("whats the best way to practise scales", "What's the best way to practice scales?", True),
    ],
)
def test_acronyms_spelt_out_and_spellings_are_the_same_words(a: str, b: str, same: bool) -> None:
    assert signature(a).same_words_as(signature(b)) is same
    assert signature(b).same_words_as(signature(a)) is same


def test_a_callers_stricter_threshold_is_not_lowered_for_the_same_words(embedder: Any) -> None:
    cache = deja.Cache(semantic=SemanticCache(embedder=embedder))
    cache.fetch(chat_request("How can I track my card?"), lambda: chat_response("In the app."))
    asked = chat_request("how can I track my card please")
    served = cache.get(asked)
    assert served.info.status == "semantic_hit" and served.info.similarity is not None
    strict = cache.get(asked, control={"similarity_threshold": 0.99})
    assert served.info.similarity < 0.99 and strict.info.status == "miss"
    # the tier's own threshold keeps its allowance
    just = cache.get(asked, control={"similarity_threshold": served.info.similarity})
    assert just.info.status == "semantic_hit"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (
            "What are the side effects of SSRIs?",
            "What are the side effects of selective serotonin reuptake inhibitors?",
            True,
        ),
        ("what happened on VE day", "What happened on Victory in Europe Day?", True),
        (
            "when is teh best time to plant tomatos",
            "When is the best time to plant tomatoes?",
            True,
        ),
        ("Hi there, who won the 2010 World Cup?", "Who won the 2010 World Cup?", True),
        (
            "What's the difference between == and === in JavaScript?",
            "In JavaScript, what's the difference between == and ===?",
            True,
        ),
        ("why does rice rise", "why does rise rise", False),  # no spelling of one word
    ],
)
def test_plural_acronyms_short_word_slips_greetings_and_operators(
    a: str, b: str, same: bool
) -> None:
    assert signature(a).same_words_as(signature(b)) is same


def test_two_names_of_one_thing_are_the_same_word() -> None:
    a, b = "How do I set up a k8s CronJob?", "How do I set up a Kubernetes CronJob?"
    assert signature(a).same_words_as(signature(b))
