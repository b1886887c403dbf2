"""Rows and lookups checked 2026-11-29 (session 27): OpenAI's cache-write price on every
GPT-5.6+ row, the bare ``gpt-5.6`` alias, xAI, Groq and Mistral, and the usage each of those
providers reports."""

from __future__ import annotations

import json
import re
from importlib.resources import files

import pytest

import deja
from deja.prices import PriceTable
from deja.providers.usage import normalize_usage
from deja.testing import FakeOpenAIServer

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


# -- xAI, Groq, Mistral ---------------------------------------------------------------------
# grok-4.7: $2 in, $6 out (docs.x.ai/developers/grok-4-7), $0.50 cached, every rate doubled
# past 200K (the row's source). Groq's openai/gpt-oss-120b: $0.15 / $0.60 (Groq's models page,
# as the row's source checked it), cached reads at half the input price
# (console.groq.com/docs/prompt-caching). Mistral Medium 3.5 ($1.50 / $7.50) is what
# mistral-medium-latest names since Medium 3 and 3.1 were retired; cached prompt tokens at
# 10% of input (docs.mistral.ai, prompt caching).


@pytest.mark.parametrize(
    ("model", "row"),
    [
        ("xai/grok-4.7", "grok-4.7"),
        ("grok-4.7", "grok-4.7"),  # an OpenAI-compatible api_base: resolved as openai/grok-4.7
        ("openai/grok-4.7", "grok-4.7"),
        ("groq/openai/gpt-oss-120b", "groq/openai/gpt-oss-120b"),
        ("mistral/mistral-medium-latest", "mistral-medium-latest"),
        ("mistral/mistral-medium-3-5", "mistral-medium-3-5"),
    ],
)
def test_the_names_deja_resolves_find_the_rows(table: PriceTable, model: str, row: str) -> None:
    assert table.lookup(model) is table.prices[row]


# Groq's price is Groq's: the same open-weight model elsewhere (Together, Cerebras, a vLLM
# server) has a price of its own, so it finds no row rather than Groq's
@pytest.mark.parametrize(
    "model", ["together_ai/openai/gpt-oss-120b", "cerebras/gpt-oss-120b", "gpt-oss-120b"]
)
def test_a_hosted_row_is_found_only_through_its_provider(table: PriceTable, model: str) -> None:
    assert table.lookup(model) is None


@pytest.mark.parametrize(
    ("model", "usage", "expected"),
    [
        (
            "xai/grok-4.7",
            {
                "prompt_tokens": 100_000,
                "completion_tokens": 1_000,
                "prompt_tokens_details": {"cached_tokens": 60_000},
            },
            (40_000 * 2 + 60_000 * 0.5 + 1_000 * 6) / M,
        ),
        (
            "xai/grok-4.7",
            {
                "prompt_tokens": 250_000,
                "completion_tokens": 1_000,
                "prompt_tokens_details": {"cached_tokens": 200_000},
            },
            (50_000 * 4 + 200_000 * 1 + 1_000 * 12) / M,
        ),
        (
            "groq/openai/gpt-oss-120b",
            {
                "prompt_tokens": 100_000,
                "completion_tokens": 1_000,
                "prompt_tokens_details": {"cached_tokens": 60_000},
            },
            (40_000 * 0.15 + 60_000 * 0.075 + 1_000 * 0.6) / M,
        ),
        (
            "mistral/mistral-medium-latest",
            {
                "prompt_tokens": 100_000,
                "completion_tokens": 1_000,
                "prompt_tokens_details": {"cached_tokens": 60_000},
            },
            (40_000 * 1.5 + 60_000 * 0.15 + 1_000 * 7.5) / M,
        ),
    ],
)
def test_cost_of_the_new_providers_rows(
    table: PriceTable, model: str, usage: dict[str, object], expected: float
) -> None:
    assert table.cost(model, usage) == pytest.approx(expected)


def test_a_groq_hit_saves_a_repeat_that_reads_the_prompt_from_groqs_cache(
    table: PriceTable,
) -> None:
    # Groq caches every prompt by itself, with no stated minimum: a 500-token prompt is
    # assumed read at $0.075 by a repeat (OpenAI's 1,024-token floor is not Groq's)
    response = {
        "model": "openai/gpt-oss-120b",
        "usage": {"prompt_tokens": 500, "completion_tokens": 100},
    }
    again = (500 * 0.075 + 100 * 0.6) / M
    assert table.repeat_cost("groq/openai/gpt-oss-120b", response) == pytest.approx(again)


def test_a_mistral_hit_saves_a_repeat_that_reads_the_prompt_from_mistrals_cache(
    table: PriceTable,
) -> None:
    # Mistral caches shared prefixes by itself (reads at 10% of input, no stated minimum):
    # a hit saved the whole list price of the prompt, more than a repeat would cost less
    response = {
        "model": "mistral-medium-3-5",
        "usage": {"prompt_tokens": 500, "completion_tokens": 100},
    }
    again = (500 * 0.15 + 100 * 7.5) / M
    assert table.repeat_cost("mistral/mistral-medium-3-5", response) == pytest.approx(again)


def test_the_packaged_hosted_rows_have_a_source_and_date() -> None:
    text = (files("deja") / "data" / "prices.json").read_text(encoding="utf-8")
    hosted = json.loads(text)["hosted_models"]
    assert set(hosted) == {"groq"}
    for provider, rows in hosted.items():
        for name, row in rows.items():
            assert row["source"].startswith("https://"), (provider, name)
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["date"]), (provider, name)
            assert name == name.lower(), (provider, name)


# Each provider's documented usage: OpenAI's wire format, reads in
# prompt_tokens_details.cached_tokens (xAI's Chat Completions adds text/audio/image counts
# beside them; Groq and Mistral document the same field).
@pytest.mark.parametrize("provider", ["xai", "groq", "mistral"])
def test_the_new_providers_cached_tokens_are_read(provider: str) -> None:
    documented = {
        "prompt_tokens": 125,
        "completion_tokens": 48,
        "total_tokens": 173,
        "prompt_tokens_details": {
            "text_tokens": 125,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens": 98,
        },
    }
    usage = normalize_usage(documented, provider=provider)
    assert usage is not None
    assert usage["prompt_tokens_details"]["cached_tokens"] == 98
    assert usage["cache_read_input_tokens"] == 98
    assert usage["prompt_tokens_details"]["text_tokens"] == 125  # (kept)


@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("xai/grok-4.7", "grok-4.7"),
        ("groq/openai/gpt-oss-120b", "groq/openai/gpt-oss-120b"),
        ("mistral/mistral-medium-latest", "mistral-medium-latest"),
    ],
)
def test_a_call_through_the_provider_prefix_is_priced(model: str, priced_as: str) -> None:
    with FakeOpenAIServer(models=[model.split("/", 1)[1]]) as server:
        client = deja.Client(
            cache=deja.Cache(), api_base=server.base_url, api_key="sk-test", max_retries=0
        )
        first = client.completion(model=model, messages=[{"role": "user", "content": "hi"}])
        again = client.completion(model=model, messages=[{"role": "user", "content": "hi"}])
        client.close()
    usage = first.model_dump()["usage"]
    expected = PriceTable.default().cost(priced_as, usage)
    assert expected is not None and expected > 0
    assert first.cache.status == "miss"
    assert first.cache.cost_usd == pytest.approx(expected)
    assert again.cache.status == "hit" and again.cache.saved_usd > 0
