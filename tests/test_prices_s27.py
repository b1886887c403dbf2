"""Rows and lookups checked 2026-11-29 (session 27): OpenAI's cache-write price on every
GPT-5.6+ row, the bare ``gpt-5.6`` alias, xAI, Groq and Mistral, and the usage each of those
providers reports."""

from __future__ import annotations

import json
import re
from importlib.resources import files

import pytest

from deja.prices import PriceTable

M = 1e6

# OpenAI: "For GPT-5.6 models and later model families, cache writes cost 1.25x the uncached
# input token rate" (developers.openai.com/api/docs/guides/prompt-caching), at either length.
_GPT_5_6_AND_LATER = re.compile(r"^gpt-(?:5\.6|[6-9]|[1-9]\d)(?:\.\d+)?(?:-|$)")


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.default()


def _rows() -> dict[str, dict[str, object]]:
    text = (files("deja") / "data" / "prices.json").read_text(encoding="utf-8")
    rows: dict[str, dict[str, object]] = json.loads(text)["models"]
    return rows


def test_every_gpt_5_6_and_later_row_bills_writes_at_1_25x_input() -> None:
    checked = [name for name in _rows() if _GPT_5_6_AND_LATER.match(name)]
    assert "gpt-6.2-astra" in checked
    for name in checked:
        row = _rows()[name]
        assert row["cache_write"] == pytest.approx(1.25 * row["input"]), name  # type: ignore[operator]
        long = row.get("long_context")
        if isinstance(long, dict):
            assert long.get("cache_write") == pytest.approx(1.25 * long["input"]), name


def test_gpt_6_2_astra_bills_its_cache_writes(table: PriceTable) -> None:
    usage = {
        "prompt_tokens": 100_000,
        "completion_tokens": 1_000,
        "prompt_tokens_details": {"cached_tokens": 50_000, "cache_write_tokens": 20_000},
    }
    # 30k plain at $8, 50k read at $0.40, 20k written at $10 (1.25 x $8), 1k out at $40
    expected = (30_000 * 8 + 50_000 * 0.4 + 20_000 * 10 + 1_000 * 40) / M
    assert table.cost("openai/gpt-6.2-astra", usage) == pytest.approx(expected)
    assert expected == pytest.approx(0.5)
    # the provider's cache cost more than plain input on the write: a premium of $0.05
    saved, premium = table.provider_cache_effect("openai/gpt-6.2-astra", usage)
    assert premium == pytest.approx(20_000 * (10 - 8) / M)
    assert saved == pytest.approx(50_000 * (8 - 0.4) / M)


def test_a_gpt_6_2_astra_hit_saves_the_reported_write_as_a_read(table: PriceTable) -> None:
    # The model reports its writes (cache_write_tokens): a repeat reads what was written,
    # not a prefix assumed kept as for the OpenAI models that bill no writes.
    response = {
        "model": "gpt-6.2-astra",
        "usage": {
            "prompt_tokens": 10_000,
            "completion_tokens": 100,
            "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 4_000},
        },
    }
    again = (6_000 * 8 + 4_000 * 0.4 + 100 * 40) / M
    assert table.repeat_cost("gpt-6.2-astra", response) == pytest.approx(again)


# -- the gpt-5.6 alias ----------------------------------------------------------------------
# The table prices an alias as a row of its own with its target's rates (gpt-4-turbo-preview
# beside gpt-4-0125-preview, deepseek-flash beside deepseek-v4-flash): lookups never guess a
# family from a bare name. OpenAI documents "gpt-5.6" as an alias of GPT-5.6 Sol
# (developers.openai.com/api/docs/models/gpt-5.6-sol), so it has Sol's row.


@pytest.mark.parametrize("model", ["gpt-5.6", "openai/gpt-5.6", "azure/GPT-5.6"])
def test_the_gpt_5_6_alias_has_gpt_5_6_sol_rates(table: PriceTable, model: str) -> None:
    alias, sol = table.lookup(model), table.prices["gpt-5.6-sol"]
    assert alias is not None
    assert (alias.input, alias.output, alias.cached_input, alias.cache_write) == (
        4.0,
        20.0,
        0.4,
        5.0,
    )
    assert alias.long_context == sol.long_context


@pytest.mark.parametrize(
    ("model", "usage", "expected"),
    [
        # $4 in, $0.40 read, $5 written (1.25x), $20 out
        (
            "openai/gpt-5.6",
            {
                "prompt_tokens": 100_000,
                "completion_tokens": 1_000,
                "prompt_tokens_details": {"cached_tokens": 50_000, "cache_write_tokens": 20_000},
            },
            (30_000 * 4 + 50_000 * 0.4 + 20_000 * 5 + 1_000 * 20) / M,
        ),
        # above 272K the whole request at $8 / $0.80 / $10 / $30
        (
            "gpt-5.6-sol",
            {
                "prompt_tokens": 300_000,
                "completion_tokens": 1_000,
                "prompt_tokens_details": {"cached_tokens": 100_000, "cache_write_tokens": 150_000},
            },
            (50_000 * 8 + 100_000 * 0.8 + 150_000 * 10 + 1_000 * 30) / M,
        ),
    ],
)
def test_cost_of_gpt_5_6_sol_and_its_alias(
    table: PriceTable, model: str, usage: dict[str, object], expected: float
) -> None:
    assert table.cost(model, usage) == pytest.approx(expected)


# other GPT-5.6 tiers at other prices: a bare alias is no prefix rule
@pytest.mark.parametrize("model", ["gpt-5.6-terra", "gpt-5.6-pro", "gpt-5.6-sol-fast"])
def test_other_gpt_5_6_models_do_not_borrow_the_alias(table: PriceTable, model: str) -> None:
    assert table.lookup(model) is None
