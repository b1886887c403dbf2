"""A streamed Gemini call whose context cache Gemini lost (deleted, or expired early): deja
makes the cache again once and resends the stream, or sends the whole prompt when the
cache cannot be made again."""

from __future__ import annotations

from typing import Any

import pytest

import deja
from deja.testing import FakeClock, FakeGeminiServer, GeminiReply
from tests.providers.gemini.shared import HANDBOOK, KEY, MODEL, SYSTEM_POINT

ANSWER = "Twenty-five days, and five may be carried over."
CREATE = "/v1beta/cachedContents"
STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"


def ask(question: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": HANDBOOK}, {"role": "user", "content": question}]
    return {
        "model": MODEL,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def text_of(chunks: list[Any]) -> str:
    return "".join(x.choices[0].delta.content or "" for x in chunks if x.choices)


def streams(server: FakeGeminiServer) -> list[Any]:
    return [r for r in server.requests if r.path == STREAM]


def lose(server: FakeGeminiServer, clock: FakeClock, how: str, name: str) -> None:
    """Make Gemini lose the cache behind deja's back (deja still holds it as live)."""
    if how == "deleted":
        deja.Client(api_base=server.url, api_key=KEY).delete_context_cache(model=MODEL, name=name)
    else:
        clock.advance(3601)  # past the marker's hour on the server's clock only
    assert server.cached_contents == []


def client(server: FakeGeminiServer, metrics: deja.PrometheusMetrics) -> deja.Client:
    return deja.Client(
        api_base=server.url,
        api_key=KEY,
        max_retries=0,
        cache=deja.Cache(),
        metrics=metrics,
        cache_control_injection_points=SYSTEM_POINT,
    )


@pytest.mark.parametrize("how", ["deleted", "expired"])
def test_a_stream_remakes_a_lost_cache_once(
    server: FakeGeminiServer, clock: FakeClock, how: str
) -> None:
    metrics = deja.PrometheusMetrics()
    c = client(server, metrics)
    list(c.completion(**ask("one")))
    (first,) = server.cached_contents
    lose(server, clock, how, first["name"])
    server.queue_reply(GeminiReply(ANSWER))
    live = list(c.completion(**ask("two")))
    assert text_of(live) == ANSWER
    (second,) = server.cached_contents
    assert second["name"] != first["name"]
    assert server.count(CREATE) == 2  # the first, and one remake
    _, refused, resent = streams(server)  # the first call's, the lost one, the resent one
    assert refused.body["cachedContent"] == first["name"]
    assert resent.body["cachedContent"] == second["name"]
    assert "systemInstruction" not in resent.body and "tools" not in resent.body
    usage = live[-1].usage
    assert usage.prompt_tokens_details.cached_tokens == second["usageMetadata"]["totalTokenCount"]
    assert usage.context_cache  # this stream made the new cache, and pays for it
    assert 'event="recreated",provider="gemini"} 1.0' in metrics.render().decode()
    sent = len(server.requests)
    replay = list(c.completion(**ask("two")))  # the remade stream was stored whole
    assert [x.model_dump() for x in replay] == [x.model_dump() for x in live]
    assert len(server.requests) == sent


def test_a_stream_sends_the_whole_prompt_when_the_remake_is_refused(
    server: FakeGeminiServer, clock: FakeClock
) -> None:
    metrics = deja.PrometheusMetrics()
    c = client(server, metrics)
    list(c.completion(**ask("one")))
    (first,) = server.cached_contents
    lose(server, clock, "deleted", first["name"])
    server.minimum_tokens = 10**6  # Gemini now refuses to make it again (400)
    server.queue_reply(GeminiReply(ANSWER))
    live = list(c.completion(**ask("two")))
    assert text_of(live) == ANSWER
    assert server.count(CREATE) == 2 and server.cached_contents == []
    _, refused, whole = streams(server)
    assert refused.body["cachedContent"] == first["name"]
    assert "cachedContent" not in whole.body
    assert whole.body["systemInstruction"] == {"parts": [{"text": HANDBOOK}]}
    assert not live[-1].usage.prompt_tokens_details.cached_tokens
    assert "context_cache" not in live[-1].usage.model_dump()
    text = metrics.render().decode()
    assert 'event="recreated",provider="gemini"} 1.0' in text
    assert 'event="failed",provider="gemini"} 1.0' in text


async def test_an_async_stream_remakes_a_lost_cache_once(
    server: FakeGeminiServer, clock: FakeClock
) -> None:
    async with deja.AsyncClient(
        api_base=server.url,
        api_key=KEY,
        max_retries=0,
        cache=deja.AsyncCache(),
        cache_control_injection_points=SYSTEM_POINT,
    ) as c:
        [x async for x in await c.acompletion(**ask("one"))]
        (first,) = server.cached_contents
        lose(server, clock, "expired", first["name"])
        server.queue_reply(GeminiReply(ANSWER))
        live = [x async for x in await c.acompletion(**ask("two"))]
    assert text_of(live) == ANSWER
    (second,) = server.cached_contents
    assert server.count(CREATE) == 2 and second["name"] != first["name"]
    _, refused, resent = streams(server)  # the first call's, the lost one, the resent one
    assert refused.body["cachedContent"] == first["name"]
    assert resent.body["cachedContent"] == second["name"]
    assert "systemInstruction" not in resent.body
