"""Anthropic prices as data: reads at 0.1x input, 5m writes at 1.25x, 1h writes at 2x."""

from __future__ import annotations

import json
import re
from importlib.resources import files

import pytest

from deja.prices import PRICE_FIELDS, Price, PriceTable

ANTHROPIC_MODELS = {
    "claude-opus-4-6",
    "claude-opus-4-5",
    "claude-opus-4-1",
    "claude-opus-4",
    "claude-sonnet-4-5",
    "claude-sonnet-4",
    "claude-3-7-sonnet",
    "claude-3-5-sonnet",
    "claude-haiku-4-5",
    "claude-3-5-haiku",
}


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.default()


def test_anthropic_rows_have_every_price_a_source_and_a_date() -> None:
    document = json.loads((files("deja") / "data" / "prices.json").read_text(encoding="utf-8"))
    rows = document["provider_models"]["anthropic"]
    assert rows.keys() >= ANTHROPIC_MODELS
    for name, row in rows.items():
        assert set(row) - {"long_context"} == {
            "input",
            "output",
            "cached_input",
            "cache_write",
            "cache_write_1h",
            "source",
            "date",
        }, name
        long = row.get("long_context")
        if long is not None:
            # Sonnet 4 / 4.5 above 200K: 2x input, 1.5x output; Haiku 5.5 above 100K: 5x both;
            # the same cache multipliers
            times = (5, 5) if name == "claude-haiku-5-5" else (2, 1.5)
            assert long["above"] == (100_000 if name == "claude-haiku-5-5" else 200_000)
            assert long["input"] == pytest.approx(times[0] * row["input"])
            assert long["output"] == pytest.approx(times[1] * row["output"])
            assert long["cached_input"] == pytest.approx(0.1 * long["input"])
            assert long["cache_write"] == 1.25 * long["input"], name
            assert long["cache_write_1h"] == 2 * long["input"], name
        assert row["source"].startswith("https://"), name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["date"]), name
        assert name not in document["models"], name


@pytest.mark.parametrize("name", sorted(ANTHROPIC_MODELS))
def test_cache_multipliers(table: PriceTable, name: str) -> None:
    price = table.prices[name]
    assert price.cached_input == pytest.approx(price.input * 0.1)
    assert price.cache_write == pytest.approx(price.input * 1.25)
    assert price.cache_write_1h == pytest.approx(price.input * 2)


@pytest.mark.parametrize(
    ("model", "row", "input_price", "output_price"),
    [
        ("anthropic/claude-sonnet-4-5-20250929", "claude-sonnet-4-5", 3.0, 15.0),
        ("claude-sonnet-4-20250514", "claude-sonnet-4", 3.0, 15.0),
        ("claude-opus-4-1-20250805", "claude-opus-4-1", 15.0, 75.0),
        ("claude-opus-4-5-20251101", "claude-opus-4-5", 5.0, 25.0),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5", 1.0, 5.0),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku", 0.8, 4.0),
        ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet", 3.0, 15.0),
        ("anthropic/claude-3-5-sonnet-20240620", "claude-3-5-sonnet", 3.0, 15.0),
    ],
)
def test_dated_snapshots_find_their_row(
    table: PriceTable, model: str, row: str, input_price: float, output_price: float
) -> None:
    price = table.lookup(model)
    assert price is table.prices[row]
    assert (price.input, price.output) == (input_price, output_price)


def test_cost_counts_reads_and_both_kinds_of_writes(table: PriceTable) -> None:
    usage = {
        "prompt_tokens": 10_000,
        "completion_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 4000},
        "cache_creation_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    }
    # 3000 uncached * 3 + 4000 reads * 0.30 + 1000 5m writes * 3.75 + 2000 1h writes * 6
    # + 500 output * 15, per 1M tokens
    expected = (3000 * 3 + 4000 * 0.3 + 1000 * 3.75 + 2000 * 6 + 500 * 15) / 1_000_000
    assert table.cost("anthropic/claude-sonnet-4-5", usage) == pytest.approx(expected)


def test_writes_without_a_split_are_five_minute_writes(table: PriceTable) -> None:
    usage = {"prompt_tokens": 2000, "cache_creation_input_tokens": 2000}
    assert table.cost("claude-haiku-4-5", usage) == pytest.approx(2000 * 1.25 / 1_000_000)


def test_one_hour_writes_without_a_one_hour_price_cost_the_write_price() -> None:
    table = PriceTable(
        {"m": Price(input=1.0, output=1.0, cached_input=0.1, cache_write=1.25, source="s", date="")}
    )
    usage = {
        "prompt_tokens": 100,
        "cache_creation_input_tokens": 100,
        "cache_creation": {"ephemeral_1h_input_tokens": 100},
    }
    assert table.cost("m", usage) == pytest.approx(100 * 1.25 / 1_000_000)


def test_overrides_set_the_one_hour_price_in_either_naming(table: PriceTable) -> None:
    assert "cache_write_1h" in PRICE_FIELDS
    assert "cache_creation_input_token_cost_above_1hr" in PRICE_FIELDS
    ours = table.with_overrides({"claude-sonnet-4-5": {"cache_write_1h": 7.0}})
    assert ours.lookup("claude-sonnet-4-5").cache_write_1h == 7.0  # type: ignore[union-attr]
    litellm = table.with_overrides(
        {"claude-sonnet-4-5": {"cache_creation_input_token_cost_above_1hr": 0.000007}}
    )
    assert litellm.lookup("claude-sonnet-4-5").cache_write_1h == pytest.approx(7.0)  # type: ignore[union-attr]
    cleared = table.with_overrides({"claude-sonnet-4-5": {"cache_write_1h": None}})
    assert cleared.lookup("claude-sonnet-4-5").cache_write_1h is None  # type: ignore[union-attr]


def test_provider_cache_savings(table: PriceTable) -> None:
    read = {
        "prompt_tokens": 1000,
        "completion_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 800},
    }
    # 800 tokens read at $0.30 instead of $3: 800 * 2.70 saved
    assert table.provider_cache_savings("claude-sonnet-4-5", read) == pytest.approx(800 * 2.7 / 1e6)
    write = {"prompt_tokens": 1000, "cache_creation_input_tokens": 800}
    assert table.provider_cache_savings("claude-sonnet-4-5", write) == pytest.approx(
        -800 * 0.75 / 1e6
    )
    assert table.provider_cache_savings("mystery", read) is None
