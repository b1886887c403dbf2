"""deja.Client / AsyncClient against the local OpenAI-compatible server (real HTTP)."""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

import deja
from deja.testing import FakeOpenAIServer, Reply

CHAT = "/v1/chat/completions"
EMB = "/v1/embeddings"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


def make_client(server: FakeOpenAIServer, **kw: Any) -> deja.Client:
    kw.setdefault("cache", deja.Cache())
    kw.setdefault("max_retries", 0)
    return deja.Client(api_base=server.base_url, api_key="sk-test", backoff=0.01, **kw)


def make_async_client(server: FakeOpenAIServer, **kw: Any) -> deja.AsyncClient:
    kw.setdefault("cache", deja.AsyncCache())
    kw.setdefault("max_retries", 0)
    return deja.AsyncClient(api_base=server.base_url, api_key="sk-test", backoff=0.01, **kw)


def test_miss_then_hit(server: FakeOpenAIServer) -> None:
    client = make_client(server)
    first = client.completion(model="gpt-4o", messages=MESSAGES, temperature=0)
    second = client.completion(model="gpt-4o", messages=MESSAGES, temperature=0)
    assert server.count(CHAT) == 1
    assert first.cache.status == "miss" and second.cache.status == "hit"
    assert second.model_dump() == first.model_dump()  # same id, content, usage
    assert second.choices[0].message.content == first["choices"][0]["message"]["content"]
    assert second.choices[0].message.tool_calls is None  # absent fields read as None
    assert first.cache.cost_usd > 0 and second.cache.cost_usd == 0
    assert second.cache.saved_usd == pytest.approx(first.cache.cost_usd)
    assert second.cache.key == first.cache.key
    sent = server.requests[-1]
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body == {"model": "gpt-4o", "messages": MESSAGES, "temperature": 0}


async def test_async_miss_then_hit(server: FakeOpenAIServer) -> None:
    async with make_async_client(server) as client:
        first = await client.acompletion(model="gpt-4o", messages=MESSAGES)
        second = await client.acompletion(model="gpt-4o", messages=MESSAGES)
    assert (first.cache.status, second.cache.status) == ("miss", "hit")
    assert server.count(CHAT) == 1


def test_controls_are_never_sent_upstream(server: FakeOpenAIServer) -> None:
    client = make_client(server)
    client.completion(model="gpt-4o", messages=MESSAGES, cache={"ttl": 60, "tags": ["t"]})
    fresh = client.completion(
        model="gpt-4o",
        messages=MESSAGES,
        extra_body={"cache": {"no-cache": True}, "top_k": 3},
        extra_headers={"x-trace": "abc"},
    )
    assert fresh.cache.status == "bypass" and server.count(CHAT) == 2
    for recorded in server.requests:
        assert "cache" not in recorded.body
    assert server.requests[-1].body["top_k"] == 3
    assert server.requests[-1].headers["x-trace"] == "abc"
    with pytest.raises(deja.ControlError):
        client.completion(model="gpt-4o", messages=MESSAGES, cache={"bogus": 1})
    assert server.count(CHAT) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, deja.BadRequestError),
        (401, deja.AuthenticationError),
        (403, deja.PermissionDeniedError),
        (404, deja.NotFoundError),
        (409, deja.ConflictError),
        (422, deja.BadRequestError),
        (429, deja.RateLimitError),
        (500, deja.ServerError),
        (503, deja.ServerError),
    ],
)
def test_upstream_errors_are_typed_and_never_cached(
    server: FakeOpenAIServer, status: int, error: type[deja.ProviderError]
) -> None:
    client = make_client(server)
    server.fail_next(status, headers={"retry-after": "7"} if status == 429 else None)
    with pytest.raises(error) as raised:
        client.completion(model="gpt-4o", messages=MESSAGES)
    assert raised.value.status_code == status
    if status == 429:
        assert isinstance(raised.value, deja.RateLimitError) and raised.value.retry_after == 7
    ok = client.completion(model="gpt-4o", messages=MESSAGES)
    assert ok.cache.status == "miss"
    assert server.count(CHAT) == 2


def test_retries_honour_retry_after(server: FakeOpenAIServer) -> None:
    import time

    client = make_client(server, max_retries=2)
    server.fail_next(429, times=2, headers={"retry-after": "0.2"})
    started = time.monotonic()
    result = client.completion(model="gpt-4o", messages=MESSAGES)
    assert result.cache.status == "miss"
    assert server.count(CHAT) == 3
    assert time.monotonic() - started >= 0.4
    server.fail_next(503, times=3)
    with pytest.raises(deja.ServerError):
        client.completion(model="gpt-4o", messages=[{"role": "user", "content": "other"}])


def test_timeout_and_connection_errors(server: FakeOpenAIServer) -> None:
    client = make_client(server)
    server.delay_next(1.0)
    with pytest.raises(deja.UpstreamTimeoutError):
        client.completion(model="gpt-4o", messages=MESSAGES, timeout=0.2)
    server.drop_next()
    with pytest.raises(deja.UpstreamConnectionError):
        client.completion(model="gpt-4o", messages=MESSAGES)
    retrying = make_client(server, max_retries=1)
    server.drop_next()
    assert retrying.completion(model="gpt-4o", messages=MESSAGES).cache.status == "miss"


def test_a_stream_that_stalls_past_the_timeout_is_a_timeout() -> None:
    with FakeOpenAIServer(chunk_delay=1.0) as slow:
        client = make_client(slow)
        # (the first chunk holds the role only: the stall before any of the answer comes
        # out of the call itself, after its retries, rather than mid-iteration)
        with pytest.raises(deja.UpstreamTimeoutError, match=r"sent nothing within 0\.3 s"):
            list(client.completion(model="gpt-4o", messages=MESSAGES, stream=True, timeout=0.3))


async def test_identical_calls_in_flight_keep_their_own_timeouts(
    server: FakeOpenAIServer,
) -> None:
    client = make_async_client(server)
    server.delay_next(1.0)

    async def ask(timeout: float, after: float) -> str:
        await asyncio.sleep(after)
        try:
            reply = await client.acompletion(model="gpt-4o", messages=MESSAGES, timeout=timeout)
        except deja.UpstreamTimeoutError:
            return "timeout"
        return str(reply.cache.status)

    # the follower's own 0.2 s ends its wait; the leader's 30 s lets its call finish
    assert await asyncio.gather(ask(30, 0), ask(0.2, 0.1)) == ["miss", "timeout"]
    server.delay_next(1.0)
    other = [{"role": "user", "content": "another question"}]
    leader = asyncio.ensure_future(client.acompletion(model="gpt-4o", messages=other, timeout=0.3))
    await asyncio.sleep(0.1)
    follower = await client.acompletion(model="gpt-4o", messages=other, timeout=30)
    with pytest.raises(deja.UpstreamTimeoutError):
        await leader  # its own timeout; the follower, allowed longer, asked again
    assert follower.cache.status == "miss"
    assert server.count("/v1/chat/completions") == 3
    await client.aclose()


async def test_a_follower_waits_through_the_leaders_retry_pause(
    server: FakeOpenAIServer,
) -> None:
    client = make_async_client(server, max_retries=1)
    server.fail_next(503, headers={"retry-after": "1"})
    question = [{"role": "user", "content": "retried"}]

    async def ask(after: float) -> str:
        await asyncio.sleep(after)
        reply = await client.acompletion(model="gpt-4o", messages=question, timeout=0.4)
        return str(reply.cache.status)

    # no attempt of either call takes 0.4 s; the leader's pause between them is 1 s
    assert await asyncio.gather(ask(0), ask(0.05)) == ["miss", "hit"]
    await client.aclose()


def test_extra_query_is_sent_and_keyed(server: FakeOpenAIServer) -> None:
    client = make_client(server)
    for version in ("2025-01-01", "2025-01-01", "2025-04-01"):
        client.completion(model="gpt-4o", messages=MESSAGES, extra_query={"api-version": version})
    assert [r.query for r in server.requests] == [
        "api-version=2025-01-01",
        "api-version=2025-04-01",
    ]
    with pytest.raises(deja.InvalidRequestError, match="extra_query"):
        client.completion(
            model="anthropic/claude-sonnet-4-5", messages=MESSAGES, extra_query={"beta": "true"}
        )


def test_embeddings_are_cached_per_item(server: FakeOpenAIServer) -> None:
    client = make_client(server)
    first = client.embedding(model="text-embedding-3-small", input=["a", "b", "c"])
    assert first.cache.status == "miss"
    mixed = client.embedding(model="text-embedding-3-small", input=["a", "d", "b", "e", "c"])
    assert server.count(EMB) == 2
    assert server.requests[-1].body["input"] == ["d", "e"]  # only the new items go upstream
    assert server.requests[-1].body["encoding_format"] == "float"
    vectors = [d.embedding for d in mixed.data]
    assert vectors[0] == first.data[0].embedding and vectors[4] == first.data[2].embedding
    assert [d.index for d in mixed.data] == [0, 1, 2, 3, 4]
    again = client.embedding(model="text-embedding-3-small", input="d")
    assert again.cache.status == "hit" and server.count(EMB) == 2
    b64 = client.embedding(model="text-embedding-3-small", input=["a"], encoding_format="base64")
    raw = base64.b64decode(b64.data[0].embedding)
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert decoded == pytest.approx(first.data[0].embedding, rel=1e-6)
    assert server.count(EMB) == 2
    other_dims = client.embedding(model="text-embedding-3-small", input="a", dimensions=4)
    assert other_dims.cache.status == "miss"  # dimensions change the vector: another key


def _chunks(stream: Any) -> list[dict[str, Any]]:
    return [chunk.model_dump() for chunk in stream]


def test_stream_miss_then_replayed_hit(server: FakeOpenAIServer) -> None:
    client = make_client(server)
    server.queue_reply(Reply(content="one two three four five six seven eight nine ten " * 3))
    miss = client.completion(model="gpt-4o", messages=MESSAGES, stream=True)
    assert miss.cache.status == "miss"
    live = _chunks(miss)
    assert len(live) > 20
    assert all("usage" not in c for c in live)  # the caller did not ask for usage
    assert server.requests[-1].body["stream_options"] == {"include_usage": True}
    hit = client.completion(model="gpt-4o", messages=MESSAGES, stream=True)
    assert hit.cache.status == "hit"
    assert _chunks(hit) == live  # same chunk boundaries, ids and content
    assert server.count(CHAT) == 1
    with_usage = _chunks(
        client.completion(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["total_tokens"] > 0
    # a plain request is served from the streamed entry
    plain = client.completion(model="gpt-4o", messages=MESSAGES)
    assert plain.cache.status == "hit"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in live if c["choices"])
    assert plain.choices[0].message.content == text
    assert server.count(CHAT) == 1


def test_stream_served_from_a_non_stream_entry(server: FakeOpenAIServer) -> None:
    client = make_client(server)
    server.queue_reply(
        Reply(
            content=None,
            tool_calls=[
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"x": 1}'},
                }
            ],
        )
    )
    plain = client.completion(model="gpt-4o", messages=MESSAGES)
    replay = _chunks(client.completion(model="gpt-4o", messages=MESSAGES, stream=True))
    calls = [c["choices"][0]["delta"].get("tool_calls") for c in replay if c["choices"]]
    first = next(c for c in calls if c)
    assert first[0]["id"] == "call_1" and first[0]["function"]["name"] == "f"
    args = "".join(c[0]["function"].get("arguments", "") for c in calls if c)
    assert args == plain.choices[0].message.tool_calls[0].function.arguments
    assert replay[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert server.count(CHAT) == 1


def test_unfinished_or_abandoned_streams_are_not_stored(server: FakeOpenAIServer) -> None:
    client = make_client(server)
    server.queue_reply(Reply(content="a b c d e f g h i j k l", abort_after_chunks=3))
    stream = client.completion(model="gpt-4o", messages=MESSAGES, stream=True)
    with pytest.raises(deja.UpstreamConnectionError):
        _chunks(stream)
    server.queue_reply(Reply(content="a b c d e f g h i j k l m n o p"))
    stream = client.completion(model="gpt-4o", messages=MESSAGES, stream=True)
    next(iter(stream))
    next(iter(stream))
    stream.close()  # the caller walks away
    again = client.completion(model="gpt-4o", messages=MESSAGES, stream=True)
    assert again.cache.status == "miss"
    _chunks(again)
    assert server.count(CHAT) == 3
    assert client.completion(model="gpt-4o", messages=MESSAGES).cache.status == "hit"


async def test_concurrent_streams_share_the_leaders_chunks(server: FakeOpenAIServer) -> None:
    server.chunk_delay = 0.01
    server.queue_reply(Reply(content=" ".join(f"w{i}" for i in range(30))))
    client = make_async_client(server)

    async def read() -> tuple[str, list[dict[str, Any]]]:
        stream = await client.acompletion(model="gpt-4o", messages=MESSAGES, stream=True)
        return stream.cache.status, [chunk.model_dump() async for chunk in stream]

    results = await asyncio.gather(*(read() for _ in range(5)))
    assert server.count(CHAT) == 1
    assert sorted(status for status, _ in results) == ["hit"] * 4 + ["miss"]
    assert all(chunks == results[0][1] for _, chunks in results)
    assert client.cache is not None and client.cache.stats().coalesced == 4


async def test_async_stream_hit(server: FakeOpenAIServer) -> None:
    client = make_async_client(server)
    miss = await client.acompletion(model="gpt-4o", messages=MESSAGES, stream=True)
    live = [c.model_dump() async for c in miss]
    hit = await client.acompletion(model="gpt-4o", messages=MESSAGES, stream=True)
    assert hit.cache.status == "hit"
    assert [c.model_dump() async for c in hit] == live


def test_stream_errors_before_the_first_chunk_raise_at_call(server: FakeOpenAIServer) -> None:
    client = make_client(server)
    server.fail_next(401)
    with pytest.raises(deja.AuthenticationError):
        client.completion(model="gpt-4o", messages=MESSAGES, stream=True)


def test_without_a_cache_every_call_goes_upstream(server: FakeOpenAIServer) -> None:
    client = make_client(server, cache=None)
    assert client.completion(model="gpt-4o", messages=MESSAGES).cache.status == "bypass"
    client.completion(model="gpt-4o", messages=MESSAGES)
    assert server.count(CHAT) == 2


def test_without_a_cache_each_answer_still_says_what_it_cost(server: FakeOpenAIServer) -> None:
    client = make_client(server, cache=None)
    prices = deja.PriceTable.default()
    plain = client.completion(model="gpt-4o", messages=MESSAGES)
    assert plain.cache.cost_usd == pytest.approx(prices.cost("gpt-4o", plain.model_dump()["usage"]))
    assert plain.cache.cost_usd > 0
    stream = client.completion(model="gpt-4o", messages=MESSAGES, stream=True)
    assert stream.cache.cost_usd == 0.0  # known at the end
    list(stream)
    assert stream.cache.status == "bypass" and stream.cache.cost_usd > 0
    vectors = client.embedding(model="text-embedding-3-small", input=["a", "b"])
    assert vectors.cache.status == "bypass" and vectors.cache.cost_usd > 0


def test_module_level_functions_use_the_replaceable_default(server: FakeOpenAIServer) -> None:
    from deja import api

    saved = (api.DEFAULTS.client, api.DEFAULTS.async_client)
    try:
        deja.set_default_client(
            deja.Client(api_base=server.base_url, api_key="k", max_retries=0),
            async_client=deja.AsyncClient(api_base=server.base_url, api_key="k", max_retries=0),
        )
        assert deja.completion(model="gpt-4o", messages=MESSAGES).cache.status == "bypass"
        deja.enable_cache(ttl=60)
        deja.completion(model="gpt-4o", messages=MESSAGES)
        assert deja.completion(model="gpt-4o", messages=MESSAGES).cache.status == "hit"
        # the async default shares the store
        hit = asyncio.run(deja.acompletion(model="gpt-4o", messages=MESSAGES))
        assert hit.cache.status == "hit"
        assert deja.embedding(model="text-embedding-3-small", input="x").cache.status == "miss"
        assert (
            asyncio.run(deja.aembedding(model="text-embedding-3-small", input="x")).cache.status
            == "hit"
        )
        deja.disable_cache()
        assert deja.completion(model="gpt-4o", messages=MESSAGES).cache.status == "bypass"
    finally:
        api.DEFAULTS.replace(*saved)


def test_provider_prefix_and_missing_endpoint() -> None:
    client = deja.Client(max_retries=0)
    with pytest.raises(deja.InvalidRequestError, match="api_base"):
        client.completion(model="vllm/my-model", messages=MESSAGES)


async def test_async_client_over_httpx2_too(server: FakeOpenAIServer) -> None:
    import httpx2

    # deja's own HTTP/1.1 client is the default; a caller's own httpx2 client must work the same
    async with httpx2.AsyncClient() as http:
        client = make_async_client(server, http_client=http)
        first = await client.acompletion(model="gpt-4o", messages=MESSAGES)
        stream = await client.acompletion(model="gpt-4o", messages=MESSAGES, stream=True)
        chunks = [c async for c in stream]
        server.fail_next(503)
        with pytest.raises(deja.ServerError):
            await client.acompletion(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        server.delay_next(1.0)
        with pytest.raises(deja.UpstreamTimeoutError):
            await client.acompletion(
                model="gpt-4o", messages=[{"role": "user", "content": "y"}], timeout=0.2
            )
    assert first.cache.status == "miss" and stream.cache.status == "hit" and chunks


async def test_default_transport_errors_are_typed(server: FakeOpenAIServer) -> None:
    client = make_async_client(server)
    server.delay_next(1.0)
    with pytest.raises(deja.UpstreamTimeoutError):
        await client.acompletion(model="gpt-4o", messages=MESSAGES, timeout=0.2)
    server.drop_next()
    with pytest.raises(deja.UpstreamConnectionError):
        await client.acompletion(model="gpt-4o", messages=MESSAGES)
    dead = deja.AsyncClient(api_base="http://127.0.0.1:9/v1", api_key="k", max_retries=0)
    with pytest.raises(deja.UpstreamConnectionError):
        await dead.acompletion(model="gpt-4o", messages=MESSAGES)
    await client.aclose()
    await dead.aclose()


def test_prompt_cache_key_and_retention_pass_through_unkeyed(server: FakeOpenAIServer) -> None:
    client = make_client(server)
    first = client.completion(
        model="gpt-4o", messages=MESSAGES, prompt_cache_key="user-42", prompt_cache_retention="24h"
    )
    assert server.requests[-1].body["prompt_cache_key"] == "user-42"
    assert server.requests[-1].body["prompt_cache_retention"] == "24h"
    again = client.completion(model="gpt-4o", messages=MESSAGES, prompt_cache_key="user-7")
    assert again.cache.status == "hit" and again.cache.key == first.cache.key


def test_azure_openai_deployment_urls_and_api_key_header() -> None:
    with FakeOpenAIServer(api_key="azure-key") as server:
        client = deja.Client(
            cache=deja.Cache(), api_base=server.url, api_key="azure-key", max_retries=0
        )
        first = client.completion(
            model="azure/my-gpt4o", messages=MESSAGES, api_version="2024-10-21"
        )
        second = client.completion(
            model="azure/my-gpt4o", messages=MESSAGES, api_version="2024-10-21"
        )
        sent = server.requests[-1]
        assert sent.path.startswith("/openai/deployments/my-gpt4o/chat/completions")
        assert "api-version=2024-10-21" in sent.path + "?" + str(sent.query)
        assert sent.headers["api-key"] == "azure-key" and "authorization" not in sent.headers
        assert "api_version" not in sent.body
        assert (first.cache.status, second.cache.status) == ("miss", "hit")
        emb = client.embedding(model="azure/my-embeddings", input="x", api_version="2024-10-21")
        assert emb.cache.status == "miss"
        assert server.requests[-1].path.startswith("/openai/deployments/my-embeddings/embeddings")


def test_markers_are_not_sent_to_providers_that_cache_by_themselves(
    server: FakeOpenAIServer,
) -> None:
    marked = [
        {"role": "system", "content": "Be brief.", "cache_control": {"type": "ephemeral"}},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}],
        },
    ]
    tool = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object"}},
        "cache_control": {"type": "ephemeral"},
    }
    c = deja.Client(api_base=server.base_url, api_key="sk-test")
    # the seed guide's DeepSeek call: DeepSeek caches by itself and knows no cache_control
    c.completion(model="deepseek/deepseek-chat", messages=marked, tools=[tool], cache_control=True)
    sent = server.requests[-1].body
    assert "cache_control" not in sent and "cache_control" not in server.requests[-1].raw.decode()
    assert sent["messages"][1]["content"] == [{"type": "text", "text": "Hi"}]
    assert sent["tools"] == [{k: v for k, v in tool.items() if k != "cache_control"}]
    # and the guide's "cached": True flag on OpenAI messages and parts, which OpenAI refuses
    flagged = [
        {"role": "system", "content": "Be brief.", "cached": True},
        {"role": "user", "content": [{"type": "text", "text": "Hi", "cached": True}]},
    ]
    c.completion(model="openai/gpt-4o", messages=flagged)
    assert server.requests[-1].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ]
    # an OpenAI-compatible gateway that routes to Claude (OpenRouter) gets them as given
    c.completion(model="openrouter/anthropic/claude-sonnet-4.5", messages=marked)
    assert server.requests[-1].body["messages"] == marked
    assert marked[0]["cache_control"] == {"type": "ephemeral"}  # the caller's copy untouched


def test_injection_points_a_gateway_cannot_take_are_not_placed_silently(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("deja._upstream._warned", set())  # said once per process
    points = [{"location": "message", "role": "system"}]
    c = deja.Client(
        api_base=server.base_url, api_key="sk-test", cache_control_injection_points=points
    )
    messages = [{"role": "system", "content": "Manual. " * 50}, {"role": "user", "content": "Hi"}]
    c.completion(model="openai/gpt-4o", messages=messages)  # caches by itself: nothing to say
    assert "injection_points" not in caplog.text
    c.completion(model="openrouter/anthropic/claude-sonnet-4.5", messages=messages)
    assert server.requests[-1].body["messages"] == messages
    assert "openrouter: cache_control_injection_points are placed for" in caplog.text


def test_an_answers_message_object_goes_back_into_the_conversation(
    server: FakeOpenAIServer,
) -> None:
    # the tool-calling loop: the assistant's message object is appended as it came
    call = {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    server.queue_reply(Reply(None, tool_calls=[call]))
    client = make_client(server)
    asked = {"role": "user", "content": "Weather in Paris?"}
    first = client.completion(model="gpt-4o", messages=[asked])
    tool_answer = {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    second = client.completion(
        model="gpt-4o", messages=[asked, first.choices[0].message, tool_answer]
    )
    assert second.choices[0].message.content
    sent = server.requests[-1].body["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["tool_calls"][0]["id"] == "call_1"
    assert sent[2] == tool_answer


def test_provider_api_base_from_the_environment(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_BASE", server.base_url)
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-ds")
    reply = deja.Client().completion(
        model="deepseek/deepseek-chat", messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content
    assert server.requests[-1].headers["authorization"] == "Bearer sk-ds"


def test_upstream_calls_are_timed_per_provider(server: FakeOpenAIServer) -> None:
    metrics = deja.PrometheusMetrics()
    c = deja.Client(
        api_base=server.base_url, api_key="sk-test", cache=deja.Cache(), metrics=metrics
    )
    for _ in range(2):  # the second is a cache hit: no upstream call
        c.completion(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    text = metrics.render().decode()
    assert 'deja_upstream_seconds_count{provider="openai"} 1.0' in text


def test_a_streamed_call_is_timed_to_its_end_and_a_timed_out_one_too() -> None:
    """Streams were timed to their headers only, and calls that timed out not at all: the
    slow calls were missing from the latency panels."""
    from prometheus_client.parser import text_string_to_metric_families

    def upstream_seconds(metrics: deja.PrometheusMetrics) -> tuple[float, float]:
        samples = {
            s.name: s.value
            for family in text_string_to_metric_families(metrics.render().decode())
            for s in family.samples
            if s.name.startswith("deja_upstream_seconds_")
        }
        return samples["deja_upstream_seconds_count"], samples["deja_upstream_seconds_sum"]

    with FakeOpenAIServer(chunk_delay=0.1) as slow:
        metrics = deja.PrometheusMetrics()
        client = deja.Client(
            api_base=slow.base_url, api_key="sk-test", metrics=metrics, max_retries=0
        )
        slow.queue_reply(Reply("one two three four five six", chunks=6))
        chunks = client.completion(
            model="gpt-4o", messages=[{"role": "user", "content": "count"}], stream=True
        )
        assert len(list(chunks)) >= 6
        count, total = upstream_seconds(metrics)
        assert count == 1 and total >= 0.5
        slow.delay_next(2.0)
        with pytest.raises(deja.UpstreamTimeoutError):
            client.completion(
                model="gpt-4o", messages=[{"role": "user", "content": "slow"}], timeout=0.5
            )
        count, later = upstream_seconds(metrics)
        assert count == 2 and later - total >= 0.45


def test_closing_a_sync_client_lets_calls_in_flight_finish() -> None:
    import threading

    with FakeOpenAIServer(latency=0.5) as slow:
        client = make_client(slow, cache=None)
        results: list[str] = []

        def ask(i: int) -> None:
            try:
                question = [{"role": "user", "content": f"question {i}"}]
                reply = client.completion(model="gpt-4o", messages=question)
                results.append(str(reply.cache.status))
            except deja.DejaError as exc:
                results.append(type(exc).__name__)

        callers = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for caller in callers:
            caller.start()
        while slow.count("/v1/chat/completions") < 3:
            time.sleep(0.01)
        client.close()  # as the async client's aclose(): those in flight finish
        for caller in callers:
            caller.join()
        assert results == ["bypass"] * 3
        stream = client.completion(model="gpt-4o", messages=MESSAGES, stream=True)
        assert list(stream)  # usable again after close, as documented
        client.close()


def test_closing_a_sync_client_during_a_retry_pause_lets_the_call_finish() -> None:
    import threading

    with FakeOpenAIServer() as server:
        client = make_client(server, cache=None, max_retries=1)
        server.fail_next(503, headers={"retry-after": "0.5"})
        outcome: list[str] = []
        caller = threading.Thread(
            target=lambda: outcome.append(
                str(client.completion(model="gpt-4o", messages=MESSAGES).cache.status)
            )
        )
        caller.start()
        while server.count(CHAT) == 0:
            time.sleep(0.01)
        client.close()  # while the call waits to retry
        caller.join()
        assert outcome == ["bypass"] and server.count(CHAT) == 2
        client.close()


def test_a_client_used_before_a_fork_gives_each_child_its_own_answers() -> None:
    import os

    with FakeOpenAIServer() as server:
        client = make_client(server, cache=None)
        client.completion(model="gpt-4o", messages=MESSAGES)  # the parent's pooled socket
        children = []
        for n in range(4):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: ask its own questions on the inherited client
                try:
                    answers = [
                        client.completion(
                            model="gpt-4o",
                            messages=[{"role": "user", "content": f"child {n} question {i}"}],
                        )
                        .choices[0]
                        .message.content
                        for i in range(3)
                    ]
                    ok = all(f"child {n} question {i}" in a for i, a in enumerate(answers))
                    os.write(write, b"1" if ok else b"0")
                finally:
                    os._exit(0)
            os.close(write)
            children.append((pid, read))
        results = []
        for pid, read in children:
            results.append(os.read(read, 1))
            os.close(read)
            os.waitpid(pid, 0)
        assert results == [b"1"] * 4
        client.close()


def test_streams_left_early_without_close_free_their_connections(
    server: FakeOpenAIServer,
) -> None:
    client = make_client(server, max_connections=1)
    for i in range(3):  # the common pattern: break out, never close
        question = [{"role": "user", "content": f"a long answer {i}"}]
        for _chunk in client.completion(model="gpt-4o", messages=question, stream=True):
            break
    started = time.monotonic()
    reply = client.completion(model="gpt-4o", messages=MESSAGES, timeout=5)
    assert reply.cache.status == "miss" and time.monotonic() - started < 3
    client.close()


def test_a_script_leaving_a_stream_early_still_exits() -> None:
    """The stream's finalizer runs at interpreter exit: it must not wait for a thread."""
    import subprocess
    import sys

    with FakeOpenAIServer() as server:
        script = (
            "import deja\n"
            f"client = deja.Client(cache=deja.Cache(), api_base={server.base_url!r}, api_key='k')\n"
            "stream = client.completion(model='gpt-4o', messages=[{'role': 'user', "
            "'content': 'a long one'}], stream=True)\n"
            "for chunk in stream:\n"
            "    break\n"
            "print('done')\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr


def test_streams_left_early_in_one_asyncio_run_after_another_keep_nothing() -> None:
    with FakeOpenAIServer() as server:
        cache = deja.AsyncCache()
        client = deja.AsyncClient(cache=cache, api_base=server.base_url, api_key="k")

        async def ask(i: int) -> None:
            question = [{"role": "user", "content": f"a long answer {i % 3}"}]
            stream = await client.acompletion(model="gpt-4o", messages=question, stream=True)
            async for _chunk in stream:
                break

        for i in range(30):
            asyncio.run(ask(i))
        assert len(cache._streams) == 0  # no stream (nor its loop) kept


def test_a_clients_key_for_another_provider_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    client = deja.Client(api_key="sk-ant-the-only-key", max_retries=0)
    with pytest.raises(deja.InvalidRequestError, match="set ANTHROPIC_API_KEY"):
        client.completion(model="anthropic/claude-sonnet-4-5", messages=MESSAGES)
    client.close()


def test_the_endpoint_memo_stays_bounded_however_many_models_are_named() -> None:
    """A proxy's wildcard route lets callers name ever new models: the client remembers a
    bounded number of resolutions."""
    from deja._async.client import _ENDPOINT_MEMO

    client = deja.AsyncClient(api_key="k", api_base="http://127.0.0.1:9/v1")
    for i in range(_ENDPOINT_MEMO + 10):
        client._endpoint(f"openai/model-{i}", None)
    assert 0 < len(client._endpoints) <= _ENDPOINT_MEMO
    assert client._endpoint("openai/model-1", None) == client._endpoint("openai/model-1", None)


def test_a_call_s_own_timeout_is_checked_before_anything_is_asked(
    server: FakeOpenAIServer,
) -> None:
    """timeout="5" was a bare TypeError from deep inside; -1 and NaN the HTTP library's
    ValueError on a miss and silently accepted on a hit."""
    client = make_client(server, cache=deja.Cache())
    client.completion(model="gpt-4o", messages=MESSAGES)
    for bad, error in (("5", TypeError), (True, TypeError), (-1, ValueError), (0, ValueError)):
        with pytest.raises(error, match="timeout must be"):
            client.completion(model="gpt-4o", messages=MESSAGES, timeout=bad)
    with pytest.raises(ValueError, match="timeout must be"):
        client.completion(model="gpt-4o", messages=MESSAGES, timeout=float("nan"))
    assert server.count("/v1/chat/completions") == 1


def test_api_keys_lose_surrounding_whitespace_and_a_line_break_inside_is_refused(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key read from a secret file keeps its newline: every call failed with an
    UpstreamConnectionError ("cannot reach ...: Illegal header value"), blaming the upstream
    for the client's own key. The proxy's config already stripped its keys."""
    client = deja.Client(api_base=server.base_url, api_key="  sk-file\n", max_retries=0)
    client.completion(model="gpt-4o", messages=MESSAGES)
    assert server.requests[-1].headers["authorization"] == "Bearer sk-file"
    with pytest.raises(ValueError, match="api_key has a control character inside"):
        deja.Client(api_key="sk-a\nsk-b")
    with pytest.raises(deja.InvalidRequestError, match="control character") as info:
        client.completion(model="gpt-4o", messages=MESSAGES, api_key="sk-a\r\nx: y")
    assert "sk-a" not in str(info.value)
    # a provider's key read from its variable, as a deployment's secret file mounts it
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-ds\n")
    keyless = deja.Client(max_retries=0)
    keyless.completion(model="deepseek/deepseek-chat", messages=MESSAGES, api_base=server.base_url)
    assert server.requests[-1].headers["authorization"] == "Bearer sk-ds"


def test_an_api_key_with_a_character_no_header_carries_is_refused_alike_sync_and_async(
    server: FakeOpenAIServer,
) -> None:
    """A zero-width space pasted with a key: the sync client raised UnicodeEncodeError (no
    deja error), the async one sent it garbled for a 401 (a review)."""
    for make in (deja.Client, deja.AsyncClient):
        with pytest.raises(ValueError, match="not ASCII"):
            make(api_base=server.base_url, api_key="sk-x\u200b")
    client = make_client(server)
    with pytest.raises(deja.InvalidRequestError, match="not ASCII"):
        client.completion(model="gpt-4o", messages=MESSAGES, api_key="sk-\u201cx\u201d")
    assert server.count(CHAT) == 0


def test_an_upstream_error_carries_its_request_id_and_rate_limits(
    server: FakeOpenAIServer,
) -> None:
    client = make_client(server)
    server.fail_next(429)
    with pytest.raises(deja.RateLimitError) as info:
        client.completion(model="gpt-4o", messages=MESSAGES)
    error = info.value
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert error.upstream_headers["x-request-id"] == error.request_id
    assert error.upstream_headers["x-ratelimit-remaining-requests"] == "9999"
    assert deja.ProviderError("no answer").request_id is None  # (none given: none told)
