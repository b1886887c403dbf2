"""deja.Client with `anthropic/` models, against the local Anthropic server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import deja
from deja.testing import FakeAnthropicServer

MODEL = "anthropic/claude-sonnet-4-5"
SYSTEM = "You are a meticulous assistant. " * 400  # ~3,000 tokens: above every model's minimum


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key="sk-ant-test") as s:
        yield s


def client(server: FakeAnthropicServer, **kw: Any) -> deja.Client:
    return deja.Client(
        cache=deja.Cache(), api_base=server.url, api_key="sk-ant-test", max_retries=0, **kw
    )


def messages(question: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def test_chat_through_the_adapter_is_cached(server: FakeAnthropicServer) -> None:
    c = client(server)
    first = c.completion(model=MODEL, messages=messages("Hi"), max_tokens=100)
    second = c.completion(model=MODEL, messages=messages("Hi"), max_tokens=100)
    assert first.cache.status == "miss" and second.cache.status == "hit"
    assert first.object == "chat.completion" and first.choices[0].message.content
    assert second.model_dump() == first.model_dump()
    assert server.count("/v1/messages") == 1
    sent = server.requests[-1]
    assert sent.headers["x-api-key"] == "sk-ant-test" and "anthropic-version" in sent.headers
    system = sent.body["system"]
    assert (system if isinstance(system, str) else system[0]["text"]) == SYSTEM
    assert first.cache.cost_usd > 0


def test_injection_points_place_breakpoints_and_usage_reports_the_provider_cache(
    server: FakeAnthropicServer,
) -> None:
    c = client(server, cache_control_injection_points=[{"location": "message", "role": "system"}])
    first = c.completion(model=MODEL, messages=messages("one"), max_tokens=50)
    second = c.completion(model=MODEL, messages=messages("two"), max_tokens=50)
    assert server.requests[-1].body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first.usage.cache_creation_input_tokens > 0
    assert second.usage.prompt_tokens_details.cached_tokens > 0  # the provider's own cache
    assert second.usage.prompt_tokens >= second.usage.prompt_tokens_details.cached_tokens


def test_streams_translate_and_replay(server: FakeAnthropicServer) -> None:
    c = client(server)
    live = [
        chunk.model_dump()
        for chunk in c.completion(
            model=MODEL, messages=messages("stream"), max_tokens=60, stream=True
        )
    ]
    replay = [
        chunk.model_dump()
        for chunk in c.completion(
            model=MODEL, messages=messages("stream"), max_tokens=60, stream=True
        )
    ]
    assert replay == live
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in live if ch["choices"])
    plain = c.completion(model=MODEL, messages=messages("stream"), max_tokens=60)
    assert plain.cache.status == "hit" and plain.choices[0].message.content == text
    assert server.count("/v1/messages") == 1
    assert "stream_options" not in server.requests[-1].body


def test_anthropic_errors_are_typed(server: FakeAnthropicServer) -> None:
    bad = deja.Client(cache=deja.Cache(), api_base=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(deja.AuthenticationError):
        bad.completion(model=MODEL, messages=messages("x"), max_tokens=10)


def test_what_the_adapter_cannot_do_is_logged_once(
    server: FakeAnthropicServer, caplog: pytest.LogCaptureFixture
) -> None:
    from deja._async import client as async_client
    from deja._sync import client as sync_client

    for module in (async_client, sync_client):
        module._WARNED.clear()
    c = client(server)
    short = [{"role": "user", "content": "Hi"}]
    with caplog.at_level("WARNING", logger="deja"):
        for seed in (3, 4):  # two requests, one warning
            c.completion(model=MODEL, messages=short, max_tokens=10, seed=seed)
    said = [r.getMessage() for r in caplog.records if "seed" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("anthropic:")
