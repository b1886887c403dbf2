"""Prices audit 20: a warm repeat on providers that cache prompts by themselves, the
long-context price of a Gemini context cache's creation, and dated snapshots that kept their
own list price."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import deja
from deja.prices import PriceTable
from deja.testing import FakeOpenAIServer

POLICY = {"role": "system", "content": "Refunds are paid within 14 days of a return. " * 120}
ASK = [POLICY, {"role": "user", "content": "Can I return a gift?"}]


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.default()


@pytest.fixture
def deepseek() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(prompt_cache="deepseek") as server:
        yield server


def _answer(prompt: int, completion: int = 0, cached: int = 0) -> dict[str, object]:
    return {
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
    }


# -- a hit saves what a repeat costs with the provider's automatic cache warm --------------


def test_a_deepseek_hit_saves_no_more_than_asking_again_costs(deepseek: FakeOpenAIServer) -> None:
    c = deja.Client(cache=deja.Cache(), api_base=deepseek.url + "/v1", api_key="k", max_retries=0)
    first = c.completion(model="deepseek/deepseek-flash", messages=ASK)
    hit = c.completion(model="deepseek/deepseek-flash", messages=ASK)
    again = c.completion(
        model="deepseek/deepseek-flash", messages=ASK, cache={"no-cache": True, "no-store": True}
    )
    assert first.usage.prompt_tokens_details.cached_tokens == 0  # DeepSeek reported no write
    assert again.usage.prompt_tokens_details.cached_tokens > 1_000  # but kept the prompt
    assert hit.cache.status == "hit"
    # the first call's full price was credited: 15x what asking again cost
    assert 0 < hit.cache.saved_usd <= again.cache.cost_usd < first.cache.cost_usd / 5


def test_openai_repeats_read_the_prompt_in_128_token_steps_from_1024(table: PriceTable) -> None:
    # gpt-4o: $2.50 in, $1.25 cached, $10 out; 1,408 of 1,500 prompt tokens cacheable
    again = table.repeat_cost("openai/gpt-4o", _answer(1_500, 20))
    assert again == pytest.approx((1_408 * 1.25 + 92 * 2.5 + 20 * 10) / 1e6)
    assert table.repeat_cost("azure/gpt-4o-2024-08-06", _answer(1_500, 20)) == again
    # below the minimum nothing is cached: the answer's own cost (None)
    assert table.repeat_cost("openai/gpt-4o", _answer(1_023, 20)) is None
    assert table.repeat_cost("openai/gpt-4o", _answer(1_024)) == pytest.approx(1_024 * 1.25 / 1e6)
    # an answer that read more than the estimate: a repeat reads as much (its own cost)
    assert table.repeat_cost("gpt-4o", _answer(1_500, 0, cached=1_450)) is None
    # and one that read less: a repeat reads the estimate
    assert table.repeat_cost("gpt-4o", _answer(1_500, 0, cached=1_024)) == pytest.approx(
        (1_408 * 1.25 + 92 * 2.5) / 1e6
    )


def test_no_automatic_cache_is_assumed_where_the_row_says_otherwise(table: PriceTable) -> None:
    prompt = _answer(50_000, 100)
    assert table.repeat_cost("gpt-3.5-turbo", prompt) is None  # no cached-read price
    assert table.repeat_cost("gpt-4o-2024-05-13", prompt) is None  # nor for this snapshot
    assert table.repeat_cost("gpt-6-sol", prompt) is None  # bills and reports its writes
    assert table.repeat_cost("anthropic/claude-sonnet-4-5", prompt) is None  # breakpoints only
    assert table.repeat_cost("bedrock/us.amazon.nova-pro-v1:0", prompt) is None
    assert table.repeat_cost("gemini/gemini-2.0-flash", prompt) is None  # explicit caches only


def test_gemini_2_5_implicit_caching_minimums_and_long_context(table: PriceTable) -> None:
    assert table.repeat_cost("gemini/gemini-2.5-pro", _answer(2_047)) is None
    assert table.repeat_cost("gemini/gemini-2.5-pro", _answer(2_048)) == pytest.approx(
        2_048 * 0.125 / 1e6
    )
    assert table.repeat_cost("gemini/gemini-2.5-flash", _answer(1_024)) == pytest.approx(
        1_024 * 0.03 / 1e6
    )
    # past 200k the whole prompt is read at the long-context cached price
    assert table.repeat_cost("vertex_ai/gemini-2.5-pro", _answer(250_000, 10)) == pytest.approx(
        (250_000 * 0.25 + 10 * 15) / 1e6
    )


def test_deepseek_repeats_read_the_whole_prompt_at_the_off_peak_price(table: PriceTable) -> None:
    # $1.32 in, $0.044 cached, $3.96 out; a hit saves the off-peak (half) price
    again = table.repeat_cost("deepseek/deepseek-v4-pro", _answer(1_000, 1_000))
    assert again == pytest.approx((1_000 * 0.044 + 1_000 * 3.96) / 1e6 * 0.5)


# -- a Gemini context cache's creation past the long-context threshold ---------------------


def test_context_cache_creation_is_priced_by_its_own_size_against_the_long_tier(
    table: PriceTable,
) -> None:
    # as the client prices a creation on its own: no prompt, the cache's tokens
    long = {"prompt_tokens": 0, "context_cache": {"created_tokens": 214_500}}
    assert table.cost("gemini/gemini-2.5-pro", long) == pytest.approx(214_500 * 2.5 / 1e6)
    short = {"prompt_tokens": 0, "context_cache": {"created_tokens": 150_000}}
    assert table.cost("gemini/gemini-2.5-pro", short) == pytest.approx(150_000 * 1.25 / 1e6)
    # inside a response: the prompt at the long tier, the creation at its own
    usage = {
        "prompt_tokens": 214_502,
        "completion_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 214_500},
        "context_cache": {"created_tokens": 214_500},
    }
    expected = (2 * 2.5 + 214_500 * 0.25 + 10 * 15 + 214_500 * 2.5) / 1e6
    assert table.cost("gemini/gemini-2.5-pro", usage) == pytest.approx(expected)


def test_context_cache_cost_help_names_creation_and_storage() -> None:
    text = deja.PrometheusMetrics().render().decode()
    (help_line,) = [
        line
        for line in text.splitlines()
        if line.startswith("# HELP deja_provider_context_cache_usd")
    ]
    assert "creation" in help_line and "storage" in help_line


# -- dated snapshots with their own list price ---------------------------------------------


@pytest.mark.parametrize(
    ("model", "rates"),
    [
        ("gpt-4o-2024-05-13", (5.0, 15.0, None)),
        ("openai/gpt-4o-2024-05-13", (5.0, 15.0, None)),
        ("gpt-4o-2024-08-06", (2.5, 10.0, 1.25)),  # today's gpt-4o
        ("gpt-3.5-turbo-0613", (1.5, 2.0, None)),
        ("gpt-3.5-turbo-0301", (1.5, 2.0, None)),
        ("gpt-3.5-turbo-1106", (1.0, 2.0, None)),
        ("gpt-3.5-turbo-0125", (0.5, 1.5, None)),  # today's gpt-3.5-turbo
        ("gpt-3.5-turbo-16k-0613", (3.0, 4.0, None)),
        ("gpt-4-32k-0613", (60.0, 120.0, None)),
        ("gpt-4-0125-preview", (10.0, 30.0, None)),
        ("gpt-4-1106-preview", (10.0, 30.0, None)),
        ("gpt-4-turbo-preview", (10.0, 30.0, None)),
    ],
)
def test_a_snapshot_is_priced_at_its_own_list_price(
    table: PriceTable, model: str, rates: tuple[float, float, float | None]
) -> None:
    price = table.lookup(model)
    assert price is not None
    assert (price.input, price.output, price.cached_input) == rates


def test_a_gpt_4o_2024_05_13_answer_costs_its_snapshot_price() -> None:
    with FakeOpenAIServer() as server:
        c = deja.Client(cache=deja.Cache(), api_base=server.url + "/v1", api_key="k", max_retries=0)
        reply = c.completion(
            model="gpt-4o-2024-05-13", messages=[{"role": "user", "content": "hi"}]
        )
    usage = reply.usage
    expected = (usage.prompt_tokens * 5.0 + usage.completion_tokens * 15.0) / 1e6
    assert reply.cache.cost_usd == pytest.approx(expected)
