"""The proxy answers a body shape no API takes with OpenAI's 400 (its ``param`` naming the
field) before any upstream call, and stores nothing for it: an upstream lenient enough
to answer ``"tools": 5`` (many OpenAI-compatible servers, and the simulated one were)
had its answer cached and served again; a provider deja translates to failed inside the
translation (Gemini's ``tools: 5`` was a 500)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from deja.testing import FakeAnthropicServer, FakeOpenAIServer
from tests.server.conftest import MASTER, half_priced_claude, proxy_config

USER = {"role": "user", "content": "What is the capital of France?"}
GOOD = {"model": "gpt-4o", "messages": [USER], "max_tokens": 20}

REFUSED = [
    ({"tools": 5}, "tools"),
    ({"tools": [5]}, "tools[0]"),
    ({"tools": [{"type": "function"}]}, "tools[0].function"),
    ({"tool_choice": 5}, "tool_choice"),
    ({"response_format": 5}, "response_format"),
    ({"response_format": {}}, "response_format.type"),
    ({"logit_bias": "x"}, "logit_bias"),
    ({"logit_bias": {"1": "x"}}, "logit_bias"),
    ({"n": 0}, "n"),
    ({"top_p": 7}, "top_p"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
    ({"messages": [USER, {"role": "assistant"}, USER]}, "messages[1].content"),
]
# refused where deja knows the API's floor (Anthropic here), left to any other
# OpenAI-compatible server (LM Studio's max_tokens -1 is "no limit")
BOUNDED = [
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ({"temperature": -1}, "temperature"),
    ({"top_logprobs": -2, "logprobs": True}, "top_logprobs"),
    # (llama.cpp and Ollama take a tool message that names its tool instead)
    ({"messages": [USER, {"role": "tool", "content": "42"}]}, "messages[1].tool_call_id"),
]


def assert_refused(answer: httpx2.Response, param: str) -> None:
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"].startswith(re.split(r"[\[.]", param, maxsplit=1)[0])  # named first


@pytest.mark.parametrize(("extra", "param"), REFUSED)
async def test_a_shape_no_api_takes_is_a_400_before_any_call_and_stores_nothing(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    extra: dict[str, Any],
    param: str,
) -> None:
    async with make_proxy(proxy_config(upstream), key=MASTER) as proxy:
        stats = (await proxy.get("/cache/stats")).json()
        for _ in range(2):  # (the second was a hit of the first's answer)
            assert_refused(await proxy.post("/v1/chat/completions", json={**GOOD, **extra}), param)
        assert upstream.requests == []
        assert (await proxy.get("/cache/stats")).json() == stats
        valid = await proxy.post("/v1/chat/completions", json=GOOD)
        assert valid.status_code == 200
        assert valid.headers["x-deja-cache"] == "miss"


@pytest.mark.parametrize(("extra", "param"), [*REFUSED, *BOUNDED])
async def test_a_translated_provider_gets_a_clear_400_not_the_shape(
    make_proxy: Callable[..., httpx2.AsyncClient], extra: dict[str, Any], param: str
) -> None:
    with FakeAnthropicServer(api_key="k") as anthropic:
        settings = half_priced_claude(anthropic.url, caching={"type": "memory", "ttl": 600})
        async with make_proxy(settings, key=MASTER) as proxy:
            stats = (await proxy.get("/cache/stats")).json()
            for _ in range(2):
                answer = await proxy.post(
                    "/v1/chat/completions", json={**GOOD, "model": "claude", **extra}
                )
                assert_refused(answer, param)
            assert (await proxy.get("/cache/stats")).json() == stats
        assert anthropic.requests == []


@pytest.mark.parametrize(("extra", "param"), BOUNDED)
async def test_an_openai_compatible_server_judges_those_bounds_itself(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    extra: dict[str, Any],
    param: str,
) -> None:
    # sent on (another server may take them); the simulated OpenAI refuses them as OpenAI
    # does, and a refusal is never stored: each call asks again
    async with make_proxy(proxy_config(upstream), key=MASTER) as proxy:
        for _ in range(2):
            answer = await proxy.post("/v1/chat/completions", json={**GOOD, **extra})
            assert answer.status_code == 400, answer.text
            assert f"'{param}'" in answer.json()["error"]["message"]  # (OpenAI's words)
    assert len(upstream.requests) == 2


async def test_an_embeddings_dimensions_below_one_is_a_400_before_any_call(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    async with make_proxy(proxy_config(upstream), key=MASTER) as proxy:
        body = {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 0}
        assert_refused(await proxy.post("/v1/embeddings", json=body), "dimensions")
    assert upstream.requests == []
