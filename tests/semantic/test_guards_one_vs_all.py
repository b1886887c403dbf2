"""One of a thing against all or some of them (audit19, finding 5), decided the way a cache
decides: the shipped threshold, guards, substitution check and verifier
(:func:`deja.semantic.decision.decide`) over the embedded model's vectors.

"Name a country in Africa" asks for one country, "name the countries in Africa" for all of
them: a noun counted one by "a", "an" or "one" against the same noun in the plural after
"the", "all", "some"... is another question. Rewordings that count the thing the same way
on both sides, and a bare plural read as the generic singular, are still served.
"""

from __future__ import annotations

from typing import Any

import pytest

from deja.semantic.guards import check_guards, signature
from tests.semantic.scripted import decided

ONE_AGAINST_ALL = [
    ("Name a country in Africa", "Name the countries in Africa"),
    ("Name a country in Africa", "List the countries in Africa"),
    ("Name a planet in our solar system", "Name the planets in our solar system"),
    ("What is a prime number under 20?", "What are the prime numbers under 20?"),
    ("Which is a Nordic country?", "Which are the Nordic countries?"),
    ("What is a good name for a cat?", "What are some good names for a cat?"),
    ("What is one benefit of meditation?", "What are the benefits of meditation?"),
    # "one of the Xs" is one X (review); "each X" is all of them
    ("Name one of the countries in Africa", "Name the countries in Africa"),
    ("Name a country in Africa", "Name each country in Africa"),
]

REWORDED = [
    ("What is a good name for a cat?", "Suggest a good name for my cat"),
    ("List the steps to install nginx on Ubuntu", "What are the steps to install nginx on Ubuntu?"),
    ("Benefits of meditation", "What are the benefits of meditation?"),
    ("What are some good names for a cat?", "Suggest some good names for my cat"),
    # "is there an X" asks whether there is one, not for one of them
    ("Is there an exchange rate?", "What are the current exchange rates?"),
    # "one of the Xs" is one X
    ("I want one of the virtual cards!", "Is there a way to get a virtual card?"),
    # how to do something with one or with all of them: one procedure (review: refused)
    ("How do I set up a webhook?", "How do I set up the webhooks?"),
    ("How do I cancel an order?", "How do I cancel the orders?"),
    ("How long does a refund take?", "How long do the refunds take?"),
    ("How do I delete an account?", "How do I delete the accounts?"),
    (
        "What is the return policy for an item bought on sale?",
        "What is the return policy for the items bought on sale?",
    ),
    ("How do I apply a coupon at checkout?", "How do I apply the coupons at checkout?"),
    ("How do I export an invoice as PDF?", "How do I export the invoices as PDF?"),
]


@pytest.mark.parametrize(("stored", "asked"), ONE_AGAINST_ALL)
def test_one_against_all_of_them_is_refused(embedder: Any, stored: str, asked: str) -> None:
    decision = decided(embedder, stored, asked)
    assert not decision.hit, decision
    assert not decided(embedder, asked, stored).hit  # and the other way round


@pytest.mark.parametrize(("stored", "asked"), ONE_AGAINST_ALL)
def test_one_against_all_fails_the_polarity_guard(stored: str, asked: str) -> None:
    assert "polarity" in check_guards(signature(stored), signature(asked)).failed


@pytest.mark.parametrize(("stored", "asked"), REWORDED)
def test_the_same_count_said_another_way_passes_the_guards(stored: str, asked: str) -> None:
    assert check_guards(signature(stored), signature(asked)).ok
    assert check_guards(signature(asked), signature(stored)).ok


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("What is a good name for a cat?", "Suggest a good name for my cat"),
        (
            "List the steps to install nginx on Ubuntu",
            "What are the steps to install nginx on Ubuntu?",
        ),
        ("Benefits of meditation", "What are the benefits of meditation?"),
    ],
)
def test_the_same_count_said_another_way_is_served(embedder: Any, stored: str, asked: str) -> None:
    decision = decided(embedder, stored, asked)
    assert decision.hit, decision
