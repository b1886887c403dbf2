"""LiteLLM's fallbacks across model names: a request whose model name's deployments all
failed is answered by its fallback names, each with its own deployments and its own cache
key; the refusals of a too-long request and of a content policy have fallbacks of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deja.config import FallbackSettings
from deja.errors import BadRequestError, ServerError
from deja.server.fallbacks import fallback_names, refusal_kind
from deja.testing import FakeAnthropicServer, FakeOpenAIServer, Reply
from tests.server.conftest import MASTER, TEAM_A, TEAM_B, proxy_config

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Capital of Peru?"}]
BODY = {"model": "gpt-4o", "messages": MESSAGES}
TEAM_C = "sk-team-c"


@pytest.fixture
def mini() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def third() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def _deployment(name: str, model: str, server: FakeOpenAIServer) -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {"model": model, "api_base": server.base_url, "api_key": "sk-up"},
    }


def fallback_config(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    **router: Any,
) -> dict[str, Any]:
    """:func:`proxy_config` of ``upstream`` (gpt-4o, text-embedding-3-small) with
    gpt-4o-mini on ``mini`` and o3 on ``third`` (and an embeddings model on each),
    ``router`` its router_settings."""
    config = proxy_config(upstream, router_settings=router)
    config["model_list"] += [
        _deployment("gpt-4o-mini", "openai/gpt-4o-mini", mini),
        _deployment("o3", "openai/o3", third),
        _deployment("embed-mini", "openai/text-embedding-3-large", mini),
    ]
    config["general_settings"]["virtual_keys"].append(
        {"key": TEAM_C, "tenant": "team-c", "models": ["gpt-4o", "o3"]}
    )
    return config


def chats(server: FakeOpenAIServer) -> int:
    return server.count(CHAT)


@dataclass
class Upstreams:
    """The three upstreams of :func:`fallback_config` and the proxy maker."""

    upstream: FakeOpenAIServer
    mini: FakeOpenAIServer
    third: FakeOpenAIServer
    make_proxy: Callable[..., httpx2.AsyncClient]

    def config(self, **router: Any) -> dict[str, Any]:
        return fallback_config(self.upstream, self.mini, self.third, **router)


@pytest.fixture
def upstreams(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> Upstreams:
    return Upstreams(upstream, mini, third, make_proxy)


async def fallbacks_counted(proxy: httpx2.AsyncClient) -> dict[tuple[str, ...], float]:
    """``deja_fallbacks_total`` of the proxy's /metrics: (model, fallback, kind, outcome)
    to its count."""
    scraped = (await proxy.get("/metrics")).text
    return {
        tuple(s.labels[k] for k in ("model", "fallback", "kind", "outcome")): s.value
        for family in text_string_to_metric_families(scraped)
        for s in family.samples
        if s.name == "deja_fallbacks_total"
    }


_SAID = "trying the model name's fallbacks"


# -- the rules, without a server ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 128000 tokens.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
            "context_window",
        ),
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 201 tokens > 200 maximum",
                },
            },
            "context_window",
        ),
        (400, {"message": "Input is too long for requested model."}, "context_window"),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "status": "INVALID_ARGUMENT",
                    "message": "The input token"
                    " count (1200000) exceeds the maximum number of tokens allowed (1048576).",
                }
            },
            "context_window",
        ),
        (
            400,
            {
                "error": {
                    "message": "The response was filtered",
                    "type": None,
                    "param": "prompt",
                    "code": "content_filter",
                    "innererror": {"code": "ResponsibleAIPolicyViolation"},
                }
            },
            "content_policy",
        ),
        (
            400,
            {
                "error": {
                    "message": "Your request was rejected by our safety system.",
                    "type": "invalid_request_error",
                    "code": "content_policy_violation",
                }
            },
            "content_policy",
        ),
        # refusals an audit found unread: Anthropic with a large max_tokens, llama.cpp,
        # OpenAI's reasoning models, OpenAI's safety system
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "input length and `max_tokens` exceed context limit: 188240"
                    " + 21333 > 200000, decrease input length or `max_tokens` and try again",
                },
            },
            "context_window",
        ),
        (
            400,
            {"error": {"message": "the request exceeds the available context size, try"}},
            "context_window",
        ),
        (
            400,
            {
                "error": {
                    "message": "Invalid prompt: your prompt was flagged as potentially"
                    " violating our usage policy.",
                    "code": "invalid_prompt",
                }
            },
            "content_policy",
        ),
        (
            400,
            {"error": {"message": "Your request was rejected as a result of our safety system."}},
            "content_policy",
        ),
        (400, {"error": {"message": "Invalid 'messages'.", "code": "invalid_type"}}, None),
        # a refusal's words in a failure that is no refusal of the request's content
        (500, {"error": {"message": "maximum context length", "code": None}}, None),
        (401, {"error": {"message": "bad key", "code": "content_filter"}}, None),
    ],
)
def test_an_upstream_refusal_is_told_by_its_code_or_words(
    status: int, body: dict[str, Any], kind: str | None
) -> None:
    error = (BadRequestError if status == 400 else ServerError)("x", status_code=status, body=body)
    assert refusal_kind(error) == kind


def test_a_name_without_fallbacks_of_its_own_takes_its_wildcards_then_the_default() -> None:
    settings = FallbackSettings(
        general={"a": ("b",), "openai/*": ("c",), "*": ("d",)},
        context_window={"a": ("big",)},
        default=("e",),
    )
    assert fallback_names(settings, "a", "general") == ("b",)
    assert fallback_names(settings, "openai/x", "general", family="openai/*") == ("c",)
    assert fallback_names(settings, "z", "general") == ("d",)
    assert fallback_names(FallbackSettings(default=("e",)), "z", "general") == ("e",)
    assert fallback_names(settings, "a", "context_window") == ("big",)
    # default_fallbacks are general ones only (LiteLLM's "*" entry of fallbacks)
    assert fallback_names(settings, "z", "context_window") == ()
    assert fallback_names(settings, "z", "content_policy") == ()


# -- through the proxy --------------------------------------------------------------------


async def test_a_name_whose_deployments_all_fail_is_answered_by_its_fallback(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream.fail_next(503, times=2)  # its one deployment, and one retry
    config = fallback_config(upstream, mini, third, fallbacks=[{"gpt-4o": ["gpt-4o-mini"]}])
    config["model_list"][0]["litellm_params"]["max_retries"] = 1
    async with make_proxy(config) as proxy:
        with caplog.at_level(logging.WARNING, logger="deja.server"):
            answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-deja-fallback"] == "gpt-4o-mini"
    assert answer.json()["model"] == "gpt-4o-mini"  # the upstream's, which answered
    assert (chats(upstream), chats(mini)) == (2, 1)
    assert mini.requests[-1].body["model"] == "gpt-4o-mini"
    assert "model 'gpt-4o' failed (503, every deployment): falling back to 'gpt-4o-mini'" in (
        caplog.text
    )


async def test_a_fallback_answer_is_kept_under_the_fallback_name_not_the_one_asked(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    config = fallback_config(upstream, mini, third, fallbacks=[{"gpt-4o": ["gpt-4o-mini"]}])
    async with make_proxy(config) as proxy:
        upstream.fail_next(503)
        fell = await proxy.post(CHAT, json=BODY)
        # the fallback name asked for itself: its entry, stored by the fallback
        direct = await proxy.post(CHAT, json={**BODY, "model": "gpt-4o-mini"})
        upstream.fail_next(503)
        again = await proxy.post(CHAT, json=BODY)  # a fallback served from its entry
        # the name asked is asked again once it answers: nothing was stored under its key
        asked = await proxy.post(CHAT, json=BODY)
        stored = await proxy.post(CHAT, json=BODY)
    assert fell.headers["x-deja-cache"] == "miss"
    assert direct.headers["x-deja-cache"] == "hit"
    assert direct.headers["x-deja-cache-key"] == fell.headers["x-deja-cache-key"]
    assert direct.content == fell.content
    assert "x-deja-fallback" not in direct.headers
    assert again.headers["x-deja-cache"] == "hit"
    assert again.headers["x-deja-fallback"] == "gpt-4o-mini"
    assert again.content == fell.content
    assert chats(mini) == 1
    assert asked.headers["x-deja-cache"] == "miss"
    assert "x-deja-fallback" not in asked.headers
    assert asked.json()["model"] == "gpt-4o"
    assert asked.headers["x-deja-cache-key"] != fell.headers["x-deja-cache-key"]
    assert stored.headers["x-deja-cache"] == "hit"
    assert stored.content == asked.content
    assert chats(upstream) == 3


async def test_fallbacks_are_tried_in_order_each_once_their_own_after_them(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    """LiteLLM's order: a failing fallback's own fallbacks before the next of the list; a
    cycle back to a name tried already (gpt-4o) is not followed."""
    upstream.fail_next(500)
    mini.fail_next(429)
    config = fallback_config(
        upstream,
        mini,
        third,
        fallbacks=[{"gpt-4o": ["gpt-4o-mini", "gpt-4o"]}, {"gpt-4o-mini": ["gpt-4o", "o3"]}],
    )
    async with make_proxy(config) as proxy:
        answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-deja-fallback"] == "o3"
    assert answer.json()["model"] == "o3"
    assert (chats(upstream), chats(mini), chats(third)) == (1, 1, 1)


async def test_max_fallbacks_bounds_the_names_tried_and_the_first_error_is_answered(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    upstream.fail_next(429)
    mini.fail_next(500)
    config = fallback_config(
        upstream, mini, third, fallbacks=[{"gpt-4o": ["gpt-4o-mini", "o3"]}], max_fallbacks=1
    )
    async with make_proxy(config) as proxy:
        answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 429  # gpt-4o's own failure, not its fallback's 500
    assert (chats(upstream), chats(mini), chats(third)) == (1, 1, 0)


async def test_default_fallbacks_serve_a_name_without_its_own(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    config = fallback_config(
        upstream,
        mini,
        third,
        fallbacks=[{"gpt-4o-mini": ["gpt-4o"]}],
        default_fallbacks=["o3"],
    )
    async with make_proxy(config) as proxy:
        upstream.fail_next(502)
        answer = await proxy.post(CHAT, json=BODY)
        mini.fail_next(502)
        upstream.fail_next(502)
        own = await proxy.post(CHAT, json={**BODY, "model": "gpt-4o-mini", "seed": 1})
    assert answer.headers["x-deja-fallback"] == "o3"
    # gpt-4o-mini's own list, then gpt-4o's (failing: the default, o3, its fallback)
    assert own.headers["x-deja-fallback"] == "o3"
    assert (chats(upstream), chats(mini), chats(third)) == (2, 1, 2)


@pytest.mark.parametrize(("status", "answered"), [(400, 400), (401, 502), (403, 502), (404, 404)])
async def test_a_plain_refusal_does_not_fall_back(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    status: int,
    answered: int,
) -> None:
    upstream.fail_next(status)
    config = fallback_config(
        upstream, mini, third, fallbacks=[{"gpt-4o": ["gpt-4o-mini"]}], default_fallbacks=["o3"]
    )
    async with make_proxy(config) as proxy:
        answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == answered
    assert "x-deja-fallback" not in answer.headers
    assert (chats(mini), chats(third)) == (0, 0)


_TOO_LONG = {
    "error": {
        "message": "This model's maximum context length is 128000 tokens. However, your"
        " messages resulted in 130000 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
_FILTERED = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's"
        " content management policy.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
    }
}


@pytest.mark.parametrize(
    ("body", "kind"), [(_TOO_LONG, "context_window"), (_FILTERED, "content_policy")]
)
async def test_a_refusal_of_the_request_takes_its_own_fallbacks(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    body: dict[str, Any],
    kind: str,
) -> None:
    upstream.fail_next(400, body=body)
    config = fallback_config(
        upstream,
        mini,
        third,
        fallbacks=[{"gpt-4o": ["gpt-4o-mini"]}],
        **{f"{kind}_fallbacks": [{"gpt-4o": ["o3"]}]},
    )
    async with make_proxy(config) as proxy:
        answer = await proxy.post(CHAT, json=BODY)
        # the other kind of refusal has no fallbacks: its 400 is the answer
        other = _FILTERED if body is _TOO_LONG else _TOO_LONG
        upstream.fail_next(400, body=other)
        refused = await proxy.post(CHAT, json={**BODY, "seed": 1})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-deja-fallback"] == "o3"
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == other["error"]["code"]
    assert (chats(mini), chats(third)) == (0, 1)


async def test_anthropics_prompt_too_long_falls_back_to_a_longer_context(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    with FakeAnthropicServer() as claude:
        claude.fail_next(
            400,
            body={
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 210000 tokens > 200000 maximum",
                },
            },
        )
        config = proxy_config(
            upstream, router_settings={"context_window_fallbacks": [{"claude": ["gpt-4o"]}]}
        )
        config["model_list"].append(
            {
                "model_name": "claude",
                "litellm_params": {
                    "model": "anthropic/claude-sonnet-4-5",
                    "api_base": claude.url,
                    "api_key": "k",
                },
            }
        )
        async with make_proxy(config) as proxy:
            answer = await proxy.post(CHAT, json={**BODY, "model": "claude"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-deja-fallback"] == "gpt-4o"
    assert answer.json()["model"] == "gpt-4o"
    assert chats(upstream) == 1


async def test_a_virtual_key_never_falls_back_to_a_model_it_may_not_use(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    config = fallback_config(upstream, mini, third, fallbacks=[{"gpt-4o": ["gpt-4o-mini", "o3"]}])
    async with make_proxy(config, key=TEAM_C) as proxy:  # gpt-4o and o3 only
        upstream.fail_next(503)
        answer = await proxy.post(CHAT, json=BODY)
    async with make_proxy(config, key="sk-team-b") as proxy:  # gpt-4o only
        upstream.fail_next(503)
        refused = await proxy.post(CHAT, json=BODY)
    assert answer.headers["x-deja-fallback"] == "o3"
    assert refused.status_code == 503
    assert (chats(mini), chats(third)) == (0, 1)


async def test_a_stream_falls_back_before_its_first_chunk_never_after(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    config = fallback_config(upstream, mini, third, fallbacks=[{"gpt-4o": ["gpt-4o-mini"]}])
    streamed = {**BODY, "stream": True}
    async with make_proxy(config) as proxy:
        upstream.fail_next(503)
        fell = await proxy.post(CHAT, json=streamed)
        # chunks went out, then the upstream broke: the caller's stream ends in error
        upstream.queue_reply(Reply("One two three four.", chunks=4, abort_after_chunks=2))
        broken = await proxy.post(CHAT, json={**streamed, "seed": 1})
    assert fell.status_code == 200
    assert fell.headers["x-deja-fallback"] == "gpt-4o-mini"
    assert '"model":"gpt-4o-mini"' in fell.text.replace(" ", "")
    assert fell.text.rstrip().endswith("data: [DONE]")
    assert "x-deja-fallback" not in broken.headers
    assert '"error"' in broken.text
    assert "[DONE]" not in broken.text
    assert chats(mini) == 1


async def test_text_completions_fall_back_as_chat_does(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream.fail_next(503)
    config = fallback_config(upstream, mini, third, fallbacks=[{"gpt-4o": ["gpt-4o-mini"]}])
    async with make_proxy(config) as proxy:
        with caplog.at_level(logging.WARNING, logger="deja.server"):
            answer = await proxy.post("/v1/completions", json={"model": "gpt-4o", "prompt": "Hi"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-deja-fallback"] == "gpt-4o-mini"
    assert mini.count("/v1/completions") == 1
    # the deployment's own line says what came next: not "answered 503 to the caller"
    assert "(503: upstream answered 503" in caplog.text
    assert "; trying the model name's fallbacks" in caplog.text
    assert "answered 503 to the caller" not in caplog.text


async def test_an_embeddings_batch_falls_back_whole(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    """One input cached under the name asked, one not: the fallback's vectors are all its
    own (two models' vectors in one answer would compare as nonsense)."""
    config = fallback_config(
        upstream, mini, third, fallbacks=[{"text-embedding-3-small": ["embed-mini"]}]
    )
    embed = {"model": "text-embedding-3-small", "input": ["one"]}
    async with make_proxy(config) as proxy:
        await proxy.post("/v1/embeddings", json=embed)
        upstream.fail_next(503)
        answer = await proxy.post("/v1/embeddings", json={**embed, "input": ["one", "two"]})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-deja-fallback"] == "embed-mini"
    assert answer.headers["x-deja-cached-items"] == "0/2"
    assert answer.json()["model"] == "text-embedding-3-large"
    assert mini.requests[-1].body["input"] == ["one", "two"]


async def test_without_fallbacks_a_failure_is_answered_as_before(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    upstream.fail_next(503)
    async with make_proxy(fallback_config(upstream, mini, third), key=MASTER) as proxy:
        answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 503
    assert (chats(mini), chats(third)) == (0, 0)


async def test_without_a_cache_a_fallback_answers_all_the_same(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    config = fallback_config(upstream, mini, third, fallbacks=[{"gpt-4o": ["gpt-4o-mini"]}])
    del config["caching"]
    async with make_proxy(config) as proxy:
        upstream.fail_next(503, times=2)
        answers = [await proxy.post(CHAT, json=BODY) for _ in range(2)]
    assert [a.headers["x-deja-fallback"] for a in answers] == ["gpt-4o-mini"] * 2
    assert [a.headers["x-deja-cache"] for a in answers] == ["bypass"] * 2
    assert chats(mini) == 2


async def test_a_fallback_that_cannot_take_the_request_is_passed_over(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    """A fallback whose deployments refuse the request before any call (an s3:// file its
    deployments do not allow) answered its own 400 in place of the next fallback's answer
    and of the asked model's error."""
    upstream.fail_next(503)
    config = fallback_config(upstream, mini, third, fallbacks=[{"gpt-4o": ["gpt-4o-mini", "o3"]}])
    for deployment in config["model_list"]:
        if deployment["model_name"] in ("gpt-4o", "o3"):
            deployment["litellm_params"]["allow_storage_urls"] = True
    image = {"type": "image_url", "image_url": {"url": "s3://bucket/chart.png"}}
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": [image]}]}
    async with make_proxy(config) as proxy:
        answer = await proxy.post(CHAT, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-deja-fallback"] == "o3"
    assert (chats(upstream), chats(mini), chats(third)) == (1, 0, 1)


async def test_a_fallback_a_wildcard_refuses_for_this_request_is_passed_over(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    """A fallback name a catch-all wildcard serves at start but refuses at request time
    (another provider's name for a route keyed to OpenAI) answered the caller a 400 about a
    model it never asked for, and the next fallback was never tried (a review)."""
    config = proxy_config(
        upstream,
        router_settings={"fallbacks": [{"gpt-4o": ["anthropic/claude-3-5-sonnet", "gpt-4o-mini"]}]},
    )
    config["model_list"].append(
        {
            "model_name": "*",
            "litellm_params": {"model": "*", "api_base": mini.base_url, "api_key": "sk-up"},
        }
    )
    upstream.fail_next(503)
    async with make_proxy(config) as proxy:
        answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-deja-fallback"] == "gpt-4o-mini"
    assert chats(mini) == 1 and mini.requests[-1].body["model"] == "gpt-4o-mini"


async def test_a_requests_own_fallbacks_are_honoured_and_never_sent_upstream(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    """LiteLLM's per-request ``fallbacks`` went upstream as a parameter (a real OpenAI
    answers it with a 400) and into the key, and were not tried (an audit)."""
    config = fallback_config(upstream, mini, third)  # no configured fallbacks
    upstream.fail_next(503)
    asking = {**BODY, "fallbacks": ["gpt-4o-mini"]}
    async with make_proxy(config) as proxy:
        answer = await proxy.post(CHAT, json=asking)
        unknown = await proxy.post(CHAT, json={**BODY, "fallbacks": ["gpt-5-turbo"]})
        malformed = await proxy.post(CHAT, json={**BODY, "fallbacks": "gpt-4o-mini"})
        upstream.fail_next(503)
        streamed = await proxy.post(CHAT, json={**asking, "stream": True})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-deja-fallback"] == "gpt-4o-mini"
    assert "fallbacks" not in upstream.requests[0].body
    assert all("fallbacks" not in sent.body for sent in mini.requests)
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "fallbacks"
    assert malformed.status_code == 400
    assert streamed.status_code == 200 and streamed.headers["x-deja-fallback"] == "gpt-4o-mini"


async def test_the_pre_call_hooks_see_the_name_asked_and_the_post_cache_hooks_the_fallback(
    upstream: FakeOpenAIServer,
    mini: FakeOpenAIServer,
    third: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
) -> None:
    """As README says: the pre-call hooks run once, on the name asked for; a post-cache
    hook is given the fallback's request (a review's mutations handing it the body asked
    for, in chat and in embeddings, passed every test)."""
    seen = tmp_path / "seen.txt"
    (tmp_path / "watch.py").write_text(
        "async def pre(request):\n"
        f"    open({str(seen)!r}, 'a').write('pre ' + request['model'] + '\\n')\n"
        "    return request\n"
        "async def post(response, request):\n"
        f"    open({str(seen)!r}, 'a').write('post ' + request['model'] + '\\n')\n"
    )
    config = fallback_config(
        upstream,
        mini,
        third,
        fallbacks=[{"gpt-4o": ["gpt-4o-mini"]}, {"text-embedding-3-small": ["embed-mini"]}],
    )
    config["hooks"] = [{"path": "watch.py", "async_pre_llm_hook": "pre"}]
    config["hooks"].append({"path": "watch.py", "async_post_cache_hook": "post"})
    async with make_proxy(config) as proxy:
        upstream.fail_next(503)
        chat = await proxy.post(CHAT, json=BODY)
        upstream.fail_next(503)
        embedded = await proxy.post(
            "/v1/embeddings", json={"model": "text-embedding-3-small", "input": ["one"]}
        )
    assert chat.headers["x-deja-fallback"] == "gpt-4o-mini"
    assert embedded.headers["x-deja-fallback"] == "embed-mini"
    assert seen.read_text().splitlines() == [
        "pre gpt-4o",
        "post gpt-4o-mini",
        "pre text-embedding-3-small",
        "post embed-mini",
    ]


# -- what is counted and logged -----------------------------------------------------------


async def test_each_fallback_tried_is_counted_by_its_kind_and_outcome(
    upstreams: Upstreams,
) -> None:
    """One sample per fallback tried: one that failed too, one that could not take the
    request, one that answered; a name a wildcard serves is counted as the wildcard's."""
    config = upstreams.config(
        fallbacks=[{"gpt-4o": ["gpt-4o-mini", "o3"]}],
        context_window_fallbacks=[{"gpt-4o": ["gpt-4o-mini", "o3"]}],
    )
    config["model_list"].append(_deployment("openai/*", "openai/*", upstreams.third))
    for deployment in config["model_list"]:
        if deployment["model_name"] in ("gpt-4o", "o3"):
            deployment["litellm_params"]["allow_storage_urls"] = True
    image = {"type": "image_url", "image_url": {"url": "s3://bucket/chart.png"}}
    async with upstreams.make_proxy(config) as proxy:
        upstreams.upstream.fail_next(400, body=_TOO_LONG)
        upstreams.mini.fail_next(500)
        too_long = await proxy.post(CHAT, json=BODY)
        upstreams.upstream.fail_next(503)
        refused = await proxy.post(
            CHAT, json={"model": "gpt-4o", "messages": [{"role": "user", "content": [image]}]}
        )
        upstreams.upstream.fail_next(503)
        own = await proxy.post(CHAT, json={**BODY, "seed": 1, "fallbacks": ["openai/gpt-4.1-nano"]})
        counted = await fallbacks_counted(proxy)
    assert [a.headers["x-deja-fallback"] for a in (too_long, refused, own)] == [
        "o3",
        "o3",
        "openai/gpt-4.1-nano",
    ]
    assert counted == {
        ("gpt-4o", "gpt-4o-mini", "context_window", "failed"): 1.0,
        ("gpt-4o", "o3", "context_window", "answered"): 1.0,
        ("gpt-4o", "gpt-4o-mini", "general", "refused"): 1.0,
        ("gpt-4o", "o3", "general", "answered"): 1.0,
        ("gpt-4o", "openai/*", "general", "answered"): 1.0,
    }


@pytest.mark.parametrize(
    ("router", "asked", "key"),
    [
        ({"fallbacks": [{"gpt-4o": ["gpt-4o-mini"]}]}, {"fallbacks": []}, TEAM_A),
        ({"fallbacks": [{"gpt-4o": ["gpt-4o-mini"]}]}, {}, TEAM_B),  # (gpt-4o only)
        ({"max_fallbacks": 0}, {"fallbacks": ["gpt-4o-mini"]}, TEAM_A),
    ],
    ids=["its-own-list-empty", "its-key-may-not", "max-fallbacks-0"],
)
async def test_the_failing_deployment_says_it_answered_when_no_fallback_will_be_tried(
    upstreams: Upstreams,
    caplog: pytest.LogCaptureFixture,
    router: dict[str, Any],
    asked: dict[str, Any],
    key: str,
) -> None:
    """The line read the name's configured list alone: "trying the model name's
    fallbacks" when the request's own list, its key or max_fallbacks left none."""
    upstreams.upstream.fail_next(503)
    async with upstreams.make_proxy(upstreams.config(**router), key=key) as proxy:
        with caplog.at_level(logging.WARNING, logger="deja.server"):
            answer = await proxy.post(CHAT, json={**BODY, **asked})
    assert answer.status_code == 503
    assert chats(upstreams.mini) == 0
    assert "; answered 503 to the caller" in caplog.text
    assert _SAID not in caplog.text


async def test_the_failing_deployment_says_a_requests_own_fallbacks_are_tried(
    upstreams: Upstreams, caplog: pytest.LogCaptureFixture
) -> None:
    upstreams.upstream.fail_next(503)
    async with upstreams.make_proxy(upstreams.config()) as proxy:  # none configured
        with caplog.at_level(logging.WARNING, logger="deja.server"):
            answer = await proxy.post(CHAT, json={**BODY, "fallbacks": ["gpt-4o-mini"]})
    assert answer.headers["x-deja-fallback"] == "gpt-4o-mini"
    assert f"; {_SAID}" in caplog.text
    assert "answered 503 to the caller" not in caplog.text


@pytest.mark.parametrize(
    ("names", "said", "status"),
    [
        (["gpt-4o-mini", "o3"], "; trying the next fallback", 200),
        (["gpt-4o-mini"], "; answered the 503 of 'gpt-4o' to the caller", 503),
    ],
)
async def test_a_failing_fallbacks_deployment_says_what_comes_next(
    upstreams: Upstreams,
    caplog: pytest.LogCaptureFixture,
    names: list[str],
    said: str,
    status: int,
) -> None:
    """A fallback's error is never the caller's: the next fallback answers, or the error
    of the name asked for (its line said "answered 500 to the caller")."""
    upstreams.upstream.fail_next(503)
    upstreams.mini.fail_next(500)
    config = upstreams.config(fallbacks=[{"gpt-4o": names}])
    async with upstreams.make_proxy(config) as proxy:
        with caplog.at_level(logging.WARNING, logger="deja.server"):
            answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == status
    (line,) = [
        r.getMessage() for r in caplog.records if "of 'gpt-4o-mini' failed" in r.getMessage()
    ]
    assert line.endswith(said), line
