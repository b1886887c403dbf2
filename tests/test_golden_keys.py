"""Upgrading keeps the keys: the requests of tests/data/golden_keys.json key as deja 0.10.0
to 0.13.0 keyed them (a changed key is a cache thrown away, so a change is announced in
UPGRADING.md and the file updated with it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from deja.keys import make_key
from deja.request import Request

GOLDEN = json.loads(
    (Path(__file__).parent / "data" / "golden_keys.json").read_text(encoding="utf-8")
)["cases"]


@pytest.fixture(autouse=True)
def _no_endpoint_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # (the golden keys were made with none: OPENAI_BASE_URL and the like are keyed)
    for name in list(os.environ):
        if name.endswith(("_API_BASE", "_BASE_URL")) or name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("case", GOLDEN, ids=[case["name"] for case in GOLDEN])
def test_a_request_keeps_the_key_earlier_versions_gave_it(case: dict[str, Any]) -> None:
    request = Request.from_body(
        case["body"], kind=case["kind"], api_base=case["api_base"], tenant=case["tenant"]
    )
    key = make_key(request, key_prefix=case["key_prefix"], namespace=case["namespace"])
    assert key == case["key"]


def test_the_golden_cases_cover_each_kind_and_scope() -> None:
    assert {case["kind"] for case in GOLDEN} == {"chat", "embedding", "completion"}
    assert len({case["key"] for case in GOLDEN}) > 60  # (distinct requests, not one repeated)
    assert any(case["tenant"] and case["namespace"] for case in GOLDEN)


def test_a_hand_built_request_without_api_base_keys_as_the_golden_one() -> None:
    """0.14.0: ``Request(api_base=None)`` takes the provider's endpoint (0.13.0 and earlier
    keyed it ``null``, apart from ``Request.chat``'s, with no environment variable too: their
    entries are not hit after the upgrade, as UPGRADING.md says)."""
    plain = next(case for case in GOLDEN if case["name"] == "plain")
    hand = Request(
        provider="openai",
        model="gpt-4o",
        api_base=None,
        messages=tuple(plain["body"]["messages"]),
    )
    assert make_key(hand) == plain["key"]
