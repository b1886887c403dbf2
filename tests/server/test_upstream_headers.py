"""An answer the proxy fetched upstream carries the upstream's request id, processing time
and rate limits (OpenAI's SDKs read ``x-request-id`` as ``_request_id``; a batch job paces
itself by ``x-ratelimit-*``); an answer served from the cache carries none of them (no
upstream answered it). They were never passed on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from deja.testing import FakeAnthropicServer, FakeOpenAIServer, Reply
from tests.server.conftest import MASTER, half_priced_claude, proxy_config

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Who answered?"}]}
TOLD = ("x-request-id", "openai-processing-ms", "x-ratelimit-remaining-requests")


def told(response: httpx2.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in TOLD if name in response.headers}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_miss_tells_the_upstreams_request_id_and_rate_limits_a_hit_none(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], stream: bool
) -> None:
    body = {**BODY, "stream": stream}
    async with make_proxy(proxy_config(upstream)) as proxy:
        miss = await proxy.post(CHAT, json=body)
        hit = await proxy.post(CHAT, json=body)
    assert [miss.headers["x-deja-cache"], hit.headers["x-deja-cache"]] == ["miss", "hit"]
    assert set(told(miss)) == set(TOLD)
    assert miss.headers["x-request-id"].startswith("req_")
    assert miss.headers["x-ratelimit-remaining-requests"] == "9999"  # (the fake's count)
    assert told(hit) == {}


async def test_embeddings_tell_them_too(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    body = {"model": "text-embedding-3-small", "input": ["alpha", "beta"]}
    async with make_proxy(proxy_config(upstream)) as proxy:
        miss = await proxy.post("/v1/embeddings", json=body)
        hit = await proxy.post("/v1/embeddings", json=body)
    assert set(told(miss)) == set(TOLD) and told(hit) == {}


async def test_a_failed_over_answer_tells_the_deployment_that_answered(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    with FakeOpenAIServer() as backup:
        config = proxy_config(upstream)
        first = config["model_list"][0]
        first["litellm_params"]["order"] = 1
        config["model_list"].insert(
            1,
            {
                "model_name": "gpt-4o",
                "litellm_params": {**first["litellm_params"], "api_base": backup.base_url},
            },
        )
        config["model_list"][1]["litellm_params"]["order"] = 2
        upstream.fail_next(503)  # the first deployment fails (no retries): the backup answers
        backup.reply_with(lambda body: Reply("from the backup"))
        async with make_proxy(config) as proxy:
            answer = await proxy.post(CHAT, json=BODY)
    assert answer.json()["choices"][0]["message"]["content"] == "from the backup"
    # the backup's first request: its count, not the failed upstream's
    assert answer.headers["x-ratelimit-remaining-requests"] == "9999"
    assert upstream.count(CHAT) == 1 and backup.count(CHAT) == 1


async def test_callers_joining_one_call_are_not_told_its_headers(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    upstream.delay_next(0.5)
    async with make_proxy(proxy_config(upstream)) as proxy:
        answers: list[Any] = await asyncio.gather(*(proxy.post(CHAT, json=BODY) for _ in range(3)))
    assert upstream.count(CHAT) == 1
    # the one that called is told; those that joined it were answered by no upstream call
    assert sorted(len(told(a)) for a in answers) == [0, 0, len(TOLD)]


async def test_an_anthropic_deployment_tells_its_request_id(
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    body = {"model": "claude", "max_tokens": 20, "messages": BODY["messages"]}
    with FakeAnthropicServer(api_key="k") as anthropic:
        async with make_proxy(
            half_priced_claude(anthropic.url, caching={"type": "memory"}), key=MASTER
        ) as proxy:
            miss = await proxy.post(CHAT, json=body)
            hit = await proxy.post(CHAT, json=body)
    assert miss.status_code == 200 and miss.headers["request-id"].startswith("req_")
    assert "request-id" not in hit.headers and hit.headers["x-deja-cache"] == "hit"


@pytest.mark.parametrize("stream", [False, True])
async def test_an_error_answer_tells_the_upstreams_request_id_and_rate_limits(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], stream: bool
) -> None:
    """A failed call's id is what the provider's support asks for, and a 429's rate limits
    say when to come back: they were passed on for successes only."""
    upstream.fail_next(400)  # (no retry, no fallback)
    async with make_proxy(proxy_config(upstream)) as proxy:
        refused = await proxy.post(CHAT, json={**BODY, "stream": stream})
    assert refused.status_code == 400 and refused.json()["error"]["type"]
    assert set(told(refused)) == set(TOLD)
    assert refused.headers["x-request-id"].startswith("req_")


async def test_the_error_answered_after_failed_fallbacks_tells_the_name_asked_for(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """The caller gets the error of the name it asked for, with that call's headers, not
    those of the last fallback that failed too."""
    with FakeOpenAIServer() as mini:
        config = proxy_config(upstream, router_settings={"fallbacks": [{"gpt-4o": ["mini"]}]})
        config["model_list"].append(
            {
                "model_name": "mini",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": mini.base_url,
                    "api_key": "sk-mini",
                },
            }
        )
        async with make_proxy(config) as proxy:
            first = await proxy.post(CHAT, json=BODY)  # the asked name's upstream counts one
            upstream.fail_next(503)
            mini.fail_next(503)
            refused = await proxy.post(CHAT, json={**BODY, "seed": 1})
    assert first.status_code == 200 and refused.status_code == 503
    assert mini.count(CHAT) == 1  # the fallback was tried, and failed
    assert refused.headers["x-ratelimit-remaining-requests"] == "9998"  # (the fallback's: 9999)
