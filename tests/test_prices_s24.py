"""Rows added 2026-11-28 (session 24): one hand-computed cost per row, with its cached,
cache-write and long-context parts where the row prices them, and the names users send."""

from __future__ import annotations

import pytest

from deja.prices import PriceTable

M = 1e6


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.default()


SHORT = {
    "prompt_tokens": 100_000,
    "completion_tokens": 1_000,
    "prompt_tokens_details": {"cached_tokens": 50_000},
    "cache_creation_input_tokens": 20_000,
}
# above 272K (OpenAI's long-context line): the whole request at the long rates
LONG = {
    "prompt_tokens": 300_000,
    "completion_tokens": 1_000,
    "prompt_tokens_details": {"cached_tokens": 100_000},
    "cache_creation_input_tokens": 150_000,
}
PLAIN = {"prompt_tokens": 100_000, "completion_tokens": 1_000}


@pytest.mark.parametrize(
    ("model", "usage", "expected"),
    [
        # $1.25 in, $0.125 cached, $10 out; no write price (writes at input), no long tier
        (
            "openai/gpt-5.1-2025-11-13",
            SHORT,
            (30_000 * 1.25 + 50_000 * 0.125 + 20_000 * 1.25 + 1_000 * 10) / M,
        ),
        # $10 / $1 / $50, writes $12.50; above 272K $20 / $2 / $75, writes $25
        (
            "gpt-6-astra",
            SHORT,
            (30_000 * 10 + 50_000 * 1 + 20_000 * 12.5 + 1_000 * 50) / M,
        ),
        (
            "openai/gpt-6-astra-2026-09-03",
            LONG,
            (50_000 * 20 + 100_000 * 2 + 150_000 * 25 + 1_000 * 75) / M,
        ),
        # $8 / $0.40 / $40, 30-minute writes $10 (1.25x input, as every GPT-5.6+ model: priced
        # 2026-11-29, tests/test_prices_s27.py); above 272K $16 / $0.80 / $60, writes $20
        (
            "gpt-6.2-astra",
            SHORT,
            (30_000 * 8 + 50_000 * 0.4 + 20_000 * 10 + 1_000 * 40) / M,
        ),
        (
            "openai/gpt-6.2-astra",
            LONG,
            (50_000 * 16 + 100_000 * 0.8 + 150_000 * 20 + 1_000 * 60) / M,
        ),
        # $1 / $0.05 / $5, 30-minute writes $1.25; above 272K $2 / $0.10 / $7.50, writes $2.50
        (
            "gpt-6.1-terra",
            SHORT,
            (30_000 * 1 + 50_000 * 0.05 + 20_000 * 1.25 + 1_000 * 5) / M,
        ),
        (
            "openai/gpt-6.1-terra",
            LONG,
            (50_000 * 2 + 100_000 * 0.1 + 150_000 * 2.5 + 1_000 * 7.5) / M,
        ),
        # $1.50 in, $9 out; no cached price found (cached tokens at input), no long tier
        (
            "gemini/gemini-3.5-flash",
            {"prompt_tokens": 300_000, "completion_tokens": 1_000},
            (300_000 * 1.5 + 1_000 * 9) / M,
        ),
        ("vertex_ai/gemini-3.5-flash", PLAIN, (100_000 * 1.5 + 1_000 * 9) / M),
    ],
)
def test_cost_of_the_rows_added(
    table: PriceTable, model: str, usage: dict[str, object], expected: float
) -> None:
    assert table.cost(model, usage) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("model", "row"),
    [
        ("gpt-5.1", "gpt-5.1"),
        ("openai/gpt-5.1-2025-11-13", "gpt-5.1"),
        ("gpt-6-astra", "gpt-6-astra"),
        ("gpt-6.2-astra", "gpt-6.2-astra"),
        ("gpt-6.1-terra", "gpt-6.1-terra"),
        ("gemini-3.5-flash", "gemini-3.5-flash"),
        ("gemini/gemini-3.5-flash-preview-05-20", "gemini-3.5-flash"),
    ],
)
def test_the_names_users_send_find_the_rows(table: PriceTable, model: str, row: str) -> None:
    assert table.lookup(model) is table.prices[row]


# different models at other prices: they must not borrow these rows
@pytest.mark.parametrize("model", ["gpt-5.5-pro", "gemini-3.5-flash-lite"])
def test_other_models_do_not_borrow_these_rows(table: PriceTable, model: str) -> None:
    assert table.lookup(model) is None


def test_every_added_row_is_dated_today_with_a_source(table: PriceTable) -> None:
    for name in (
        "gpt-5.1",
        "gpt-6-astra",
        "gpt-6.1-terra",
        "gemini-3.5-flash",
    ):
        price = table.prices[name]
        assert price.source.startswith("https://"), name
        assert price.date == "2026-11-28", name
