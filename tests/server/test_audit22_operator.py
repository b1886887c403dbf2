"""A proxy without a caching block told every paid call's cost as 0 (audit 22, operator):
``x-deja-cost-usd: 0.00000000`` while ``/metrics`` priced the same calls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from deja.config import parse_config
from deja.prices import packaged_prices
from deja.testing import FakeAnthropicServer, FakeOpenAIServer, Reply
from tests.server.conftest import MASTER, half_priced_claude

CHAT = "/v1/chat/completions"
MANUAL = "Policy 9: expenses above 100 EUR need a receipt and a manager's approval. " * 150


def _uncached(upstream: FakeOpenAIServer, **model_info: float) -> dict[str, Any]:
    """A proxy with no caching block, of one model priced by its model_info only."""
    return {
        "model_list": [
            {
                "model_name": "house-model",
                "litellm_params": {
                    "model": "openai/house-model-1",  # in no price table
                    "api_base": upstream.base_url,
                    "api_key": "sk-up",
                },
                "model_info": model_info,
            }
        ],
        "general_settings": {"master_key": MASTER},
    }


async def test_an_answer_without_a_cache_is_priced_by_the_configured_prices(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    upstream.queue_reply(Reply("Lima.", prompt_tokens=1000, completion_tokens=200))
    config = _uncached(upstream, input_cost_per_token=2e-6, output_cost_per_token=8e-6)
    async with make_proxy(config, key=MASTER) as proxy:
        answer = await proxy.post(
            CHAT, json={"model": "house-model", "messages": [{"role": "user", "content": "Peru?"}]}
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-deja-cache"] == "bypass"
    assert float(answer.headers["x-deja-cost-usd"]) == pytest.approx(1000 * 2e-6 + 200 * 8e-6)


async def test_a_stream_without_a_cache_still_says_no_cost(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """Its headers leave before its usage arrives, as a stream fetched on a miss: no cost
    is said rather than 0."""
    config = _uncached(upstream, input_cost_per_token=2e-6, output_cost_per_token=8e-6)
    async with make_proxy(config, key=MASTER) as proxy:
        answer = await proxy.post(
            CHAT,
            json={
                "model": "house-model",
                "messages": [{"role": "user", "content": "Peru?"}],
                "stream": True,
            },
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-deja-cache"] == "bypass"
    assert "x-deja-cost-usd" not in answer.headers


async def test_anthropic_cache_writes_and_reads_without_a_cache_are_priced(
    make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    """The guide's Anthropic setup (prompt caching, no deja cache): the header said 0 while
    /metrics priced the calls; each is priced as /metrics prices it, model_info's rates."""
    with FakeAnthropicServer(api_key="k") as anthropic:
        config = half_priced_claude(anthropic.url)
        async with make_proxy(config, key=MASTER) as proxy:
            answers = [
                await proxy.post(
                    CHAT,
                    json={
                        "model": "claude",
                        "max_tokens": 20,
                        "messages": [
                            {"role": "system", "content": MANUAL},
                            {"role": "user", "content": question},
                        ],
                    },
                )
                for question in ("one", "two")
            ]
    prices = parse_config(config, base_dir=tmp_path).price_table()
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-deja-cache"] == "bypass"
        cost = float(answer.headers["x-deja-cost-usd"])
        configured = prices.response_cost("anthropic/claude-sonnet-4-5", answer.json())
        listed = packaged_prices().response_cost("anthropic/claude-sonnet-4-5", answer.json())
        assert cost > 0
        assert cost == pytest.approx(configured, abs=1e-8)
        assert cost != pytest.approx(listed, abs=1e-8)  # model_info's rates, not the list's
    written = answers[0].json()["usage"]["cache_creation_input_tokens"]
    assert written > 1024 and answers[1].json()["usage"]["cache_read_input_tokens"] == written


async def test_a_failover_without_a_cache_is_priced_as_the_model_that_answered(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    with FakeOpenAIServer() as second:
        upstream.fail_next(500, times=5)
        second.queue_reply(Reply("Lima.", prompt_tokens=1000, completion_tokens=200))
        config = _uncached(upstream, input_cost_per_token=1e-6, output_cost_per_token=1e-6)
        first = config["model_list"][0]
        first["litellm_params"]["order"] = 1
        config["model_list"].append(
            {
                "model_name": "house-model",
                "litellm_params": {
                    "model": "openai/house-model-2",
                    "api_base": second.base_url,
                    "api_key": "sk-up",
                    "order": 2,
                },
                "model_info": {"input_cost_per_token": 3e-6, "output_cost_per_token": 5e-6},
            }
        )
        async with make_proxy(config, key=MASTER) as proxy:
            answer = await proxy.post(
                CHAT,
                json={"model": "house-model", "messages": [{"role": "user", "content": "Peru?"}]},
            )
    assert answer.status_code == 200, answer.text
    assert second.count("/v1/chat/completions") == 1
    assert float(answer.headers["x-deja-cost-usd"]) == pytest.approx(1000 * 3e-6 + 200 * 5e-6)


async def test_embeddings_without_a_cache_are_priced_by_the_configured_prices(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """They were priced by the packaged table: $0 for a model only model_info prices."""
    config = _uncached(upstream, input_cost_per_token=1e-6, output_cost_per_token=4e-6)
    async with make_proxy(config, key=MASTER) as proxy:
        answer = await proxy.post(
            "/v1/embeddings", json={"model": "house-model", "input": ["one text", "another"]}
        )
    assert answer.status_code == 200, answer.text
    tokens = answer.json()["usage"]["prompt_tokens"]
    assert tokens > 0
    assert float(answer.headers["x-deja-cost-usd"]) == pytest.approx(tokens * 1e-6)
