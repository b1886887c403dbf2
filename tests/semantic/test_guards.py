"""Guards are pure: anchors extracted from text, compared in order."""

from __future__ import annotations

import pytest

from deja.semantic.guards import GuardSettings, check_guards, content_words, signature


def failed(a: str, b: str, settings: GuardSettings | None = None) -> tuple[str, ...]:
    return check_guards(signature(a), signature(b), settings).failed


@pytest.mark.parametrize(
    ("a", "b", "guard"),
    [
        ("convert 5 km to miles", "convert 8 km to miles", "numbers"),
        ("what is five plus two", "what is 5 plus 3", "numbers"),
        ("increase the price by 10%", "increase the price by 10", "numbers"),
        ("what is 3.5 times 2", "what is 3.25 times 2", "numbers"),
        ("what day was March 14, 2030?", "what day was March 15, 2030?", "dates"),
        ("weather in Rome today", "weather in Rome tomorrow", "dates"),
        ("how do I convert km to miles?", "miles to km conversion", "units"),
        ("convert 100 CAD to GBP", "convert 100 CAD to AUD", "units"),
        ("translate 'good morning' into French", "translate 'good night' into French", "quotes"),
        ("what does `os.path.join` do?", "what does `os.path.split` do?", "code"),
        ("how tall is Barack Obama?", "how tall is Tom Cruise?", "entities"),
        ("what is the capital of sweden?", "what is the capital of norway?", "entities"),
        ("cheap flights from Oslo to Berlin", "cheap flights Berlin -> Oslo", "entities"),
        ("how to increase heart rate", "how to decrease heart rate", "polarity"),
        ("foods high in sugar", "foods low in sugar", "polarity"),
        ("should I buy bitcoin now", "should I sell bitcoin now", "polarity"),
    ],
)
def test_guard_rejects_a_near_duplicate(a: str, b: str, guard: str) -> None:
    assert guard in failed(a, b)
    assert guard in failed(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("what is 15 cups in ml?", "how many ml is 15 cups?"),
        ("convert 8 miles to km", "what is 8 miles in km?"),
        ("what is 10 EUR worth in USD?", "convert 10 EUR to USD"),
        ("what day of the week was July 1, 1969?", "which weekday is July 1 1969?"),
        ("what is twenty-five percent of 80", "what is 25% of 80"),
        ("track order #62100", "where is my order 62100?"),
        ("Lionel Messi height", "how tall is Lionel Messi?"),
        ("what's Lithuania's capital?", "capital city of Lithuania"),
        (
            "low-cost flights Oslo -> Berlin next week",
            "a cheap flight from Oslo to Berlin next week",
        ),
        ("Do I get a mastercard and visa?", "Would I get a Visa or Mastercard?"),
        ("Someone stole my phone, what should I do?", "My phone was stolen, what do I do?"),
        ("how do I parse JSON in C++?", "C++ code to parse JSON"),
        ("translate 'I don't understand' into Dutch", "Dutch for 'I don't understand'"),
    ],
)
def test_guards_accept_a_rewording(a: str, b: str) -> None:
    assert failed(a, b) == ()


def test_extraction() -> None:
    sig = signature(
        "Send $1,250.50 to Alice in Paris on 2024-05-01, twenty-one days after `init()`"
    )
    assert sig.numbers == ("1250.5", "21")
    assert sig.units[0] == "USD"
    assert "2024-5-1" in sig.dates
    assert "init()" in sig.code
    assert "paris" in sig.entities and "alice" in sig.entities
    assert sig.anchors >= 5


def test_negation_is_off_by_default_and_can_be_turned_on() -> None:
    a, b = "my card payment failed", "why didn't my card payment work?"
    assert failed(a, b) == ()
    assert failed(a, b, GuardSettings(negation=True)) == ("negation",)


def test_settings_turn_a_guard_off() -> None:
    assert failed("5 km", "8 km", GuardSettings(numbers=False)) == ()
    everything_off = GuardSettings.none()
    assert failed("convert 5 km to miles", "convert 8 miles to km", everything_off) == ()
    assert not any(getattr(everything_off, name) for name in GuardSettings.__dataclass_fields__)


def test_content_words_are_stemmed_without_stop_words() -> None:
    assert content_words("How long should I boil the eggs?") == ["long", "boil", "egg"]
