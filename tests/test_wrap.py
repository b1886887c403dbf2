"""deja.wrap(openai client): the official SDK, cached in place."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai._legacy_response import LegacyAPIResponse
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

import deja
from deja.testing import FakeOpenAIServer, Reply

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


def sdk(server: FakeOpenAIServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


def test_chat_hits_are_sdk_types(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    first = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    second = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert isinstance(first, ChatCompletion) and isinstance(second, ChatCompletion)
    assert second == first
    assert server.count(CHAT) == 1


def test_controls_ride_in_extra_body_and_are_not_sent(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_body={"cache": {"no-cache": True}},
    )
    assert server.count(CHAT) == 2
    assert all("cache" not in r.body for r in server.requests)


def test_sdk_exceptions_pass_unchanged_and_are_not_cached(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    server.fail_next(429, headers={"retry-after": "1"})
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    server.fail_next(401)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert server.count(CHAT) == 3


@pytest.mark.parametrize(
    "extra",
    [{"n": 0}, {"top_p": 1.5}, {"tools": 5}, {"temperature": "warm"}],
)
def test_a_request_deja_refuses_goes_to_the_sdk_for_its_own_exception(
    server: FakeOpenAIServer, extra: dict[str, Any]
) -> None:
    """DESIGN: the wrapped SDK's exceptions are unchanged. A request deja's own checks
    refuse raised deja's InvalidRequestError where the bare SDK raised its own."""
    client = deja.wrap(sdk(server), cache=deja.Cache())
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, **extra)
    assert server.count(CHAT) == 1  # (the SDK's call, as without deja; nothing stored)


@pytest.mark.parametrize("value", [5, [], ["a", 5]])
def test_an_embeddings_input_deja_refuses_goes_to_the_sdk_too(
    server: FakeOpenAIServer, value: Any
) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="text-embedding-3-small", input=value)
    assert server.count("/v1/embeddings") == 1


@pytest.mark.parametrize("encoding", ["bogus", "FLOAT", 5])
def test_an_embeddings_encoding_format_deja_refuses_goes_to_the_sdk_too(
    server: FakeOpenAIServer, encoding: Any
) -> None:
    """An unknown encoding_format was answered with floats (deja asks for floats and
    encodes the answer itself), from the cache too; OpenAI refuses it."""
    client = deja.wrap(sdk(server), cache=deja.Cache())
    client.embeddings.create(model="text-embedding-3-small", input="a")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(
            model="text-embedding-3-small", input="a", encoding_format=encoding
        )
    assert server.count("/v1/embeddings") == 2


def test_streams_are_cached_and_replayed(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    server.queue_reply(Reply(content="alpha beta gamma delta epsilon zeta eta theta"))
    live = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    replay = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert replay.cache.status == "hit"  # type: ignore[attr-defined]
    chunks = list(replay)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    text = lambda cs: "".join(c.choices[0].delta.content or "" for c in cs if c.choices)  # noqa: E731
    assert text(chunks) == text(live) == "alpha beta gamma delta epsilon zeta eta theta"
    assert server.count(CHAT) == 1
    plain = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert plain.choices[0].message.content == text(live)


def test_embeddings_per_item(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    first = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    mixed = client.embeddings.create(model="text-embedding-3-small", input=["b", "c"])
    assert isinstance(mixed, CreateEmbeddingResponse)
    assert mixed.data[0].embedding == first.data[1].embedding
    assert server.requests[-1].body["input"] == ["c"]
    b64 = client.embeddings.create(
        model="text-embedding-3-small", input="a", encoding_format="base64"
    )
    assert isinstance(b64.data[0].embedding, str)
    assert server.count("/v1/embeddings") == 2


async def test_async_client(server: FakeOpenAIServer) -> None:
    client = deja.wrap(
        openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0),
        cache=deja.AsyncCache(),
    )
    first = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    second = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert isinstance(second, ChatCompletion) and second == first
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    chunks: list[Any] = [c async for c in stream]
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == first.choices[0].message.content
    )
    emb = await client.embeddings.create(model="text-embedding-3-small", input="x")
    assert len(emb.data[0].embedding) > 0
    assert server.count(CHAT) == 1


def test_wrong_cache_kind_is_a_clear_error(server: FakeOpenAIServer) -> None:
    with pytest.raises(TypeError, match="AsyncCache"):
        deja.wrap(openai.AsyncOpenAI(base_url=server.base_url, api_key="x"), cache=deja.Cache())
    with pytest.raises(TypeError):
        deja.wrap(object())


def test_the_sdks_not_given_markers_are_no_fields(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    plain = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    omitted = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        temperature=openai.NOT_GIVEN,
        tools=openai.omit,
    )
    assert omitted == plain and server.count(CHAT) == 1


def test_a_copy_with_other_options_keeps_the_cache(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    client.with_options(timeout=5).chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    client.copy(max_retries=1).chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert server.count(CHAT) == 1


def test_an_embedding_call_without_a_model_is_a_typed_error(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    with pytest.raises(deja.InvalidRequestError, match="'model' is required"):
        client.embeddings.create(input="x")  # type: ignore[call-arg]


def test_cache_info_tells_how_each_response_was_served(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    first = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    second = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    skipped = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_body={"cache": {"no-cache": True}},
    )
    infos = [deja.cache_info(r) for r in (first, second, skipped)]
    assert [i.status for i in infos if i is not None] == ["miss", "hit", "bypass"]
    assert infos[0] is not None and infos[1] is not None
    assert infos[1].key == infos[0].key and infos[1].age is not None
    assert infos[0].cost_usd > 0 and infos[1].cost_usd == 0 and infos[1].saved_usd > 0
    # the info sits beside the SDK model: equality and dumps are the SDK's alone
    assert second == first and "cache" not in second.model_dump()
    assert deja.cache_info(second.model_copy()) is None
    assert deja.cache_info({"choices": []}) is None
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert deja.cache_info(stream) is stream.cache  # type: ignore[attr-defined]


def test_cache_info_of_embeddings_is_a_hit_only_when_every_item_was_cached(
    server: FakeOpenAIServer,
) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    model = "text-embedding-3-small"
    statuses = []
    for value in (["a", "b"], ["b", "c"], ["a", "c"]):
        reply = client.embeddings.create(model=model, input=value)
        info = deja.cache_info(reply)
        assert info is not None
        statuses.append(info.status)
    b64 = client.embeddings.create(model=model, input="a", encoding_format="base64")
    assert statuses == ["miss", "miss", "hit"]
    assert getattr(deja.cache_info(b64), "status", None) == "hit"


def test_cache_info_leaves_with_the_response(server: FakeOpenAIServer) -> None:
    import gc

    from deja import result

    client = deja.wrap(sdk(server), cache=deja.Cache())
    gc.collect()  # (earlier tests' responses held by reference cycles: not this one's)
    before = len(result._INFOS)
    for _ in range(20):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    gc.collect()
    assert len(result._INFOS) == before


async def test_cache_info_of_the_async_client(server: FakeOpenAIServer) -> None:
    client = deja.wrap(
        openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0),
        cache=deja.AsyncCache(),
    )
    await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    again = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    emb = await client.embeddings.create(model="text-embedding-3-small", input="x")
    assert getattr(deja.cache_info(again), "status", None) == "hit"
    assert getattr(deja.cache_info(emb), "status", None) == "miss"


def test_cache_info_of_the_clients_own_responses(server: FakeOpenAIServer) -> None:
    client = deja.Client(cache=deja.Cache(), api_base=server.base_url, api_key="sk-test")
    client.completion(model="gpt-4o", messages=MESSAGES)
    reply = client.completion(model="gpt-4o", messages=MESSAGES)
    assert deja.cache_info(reply) is reply.cache and reply.cache.status == "hit"


# Raw-response calls: `with_raw_response` / `with_streaming_response` wrap the replaced
# `create` and ask it (by an `X-Stainless-Raw-Response` header) for the SDK's HTTP response
# object. A stored answer has none, so these calls go to the SDK uncached.

EMBED = "/v1/embeddings"


def async_sdk(server: FakeOpenAIServer, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, **options)


def test_with_raw_response_is_the_sdks_uncached(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    plain = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    raws = [
        client.chat.completions.with_raw_response.create(
            model="gpt-4o",
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_body={"cache": {"ttl": 60}},
        )
        for _ in range(2)
    ]
    for raw in raws:
        assert isinstance(raw, LegacyAPIResponse)
        assert raw.http_response.status_code == 200
        assert raw.headers["content-type"].startswith("application/json")
        assert raw.request_id is not None and raw.request_id.startswith("req_")
        parsed = raw.parse()
        assert isinstance(parsed, ChatCompletion) and parsed.id != plain.id
        assert deja.cache_info(parsed) is None
    assert raws[0].request_id != raws[1].request_id
    assert server.count(CHAT) == 3  # the cached answer was not used, nor was a raw one stored
    assert all("cache" not in r.body for r in server.requests)  # deja's options stay home
    again = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert again == plain and getattr(deja.cache_info(again), "status", None) == "hit"
    assert server.count(CHAT) == 3


def test_with_raw_response_of_a_stream_is_the_sdks_stream(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    server.queue_reply(Reply(content="one two three"))
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    )
    assert isinstance(raw, LegacyAPIResponse)
    assert raw.headers["content-type"].startswith("text/event-stream")
    stream = raw.parse()
    assert isinstance(stream, openai.Stream)
    chunks = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    # sent as the caller asked: deja did not add its usage request
    assert "stream_options" not in server.requests[-1].body
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert server.count(CHAT) == 2


def test_with_streaming_response_is_the_sdks_uncached(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
    ) as response:
        assert isinstance(response, openai.APIResponse)
        assert response.status_code == 200 and response.request_id is not None
        assert isinstance(response.parse(), ChatCompletion)
    server.queue_reply(Reply(content="streamed raw"))
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    ) as response:
        assert isinstance(response, openai.APIResponse)
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    deltas = [ChatCompletionChunk.model_validate_json(e) for e in events[:-1]]
    assert "".join(c.choices[0].delta.content or "" for c in deltas if c.choices) == "streamed raw"
    assert server.count(CHAT) == 3


def test_embeddings_raw_and_streaming_responses_are_the_sdks(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    model = "text-embedding-3-small"
    cached = client.embeddings.create(model=model, input="a")
    raw = client.embeddings.with_raw_response.create(model=model, input="a")
    assert isinstance(raw, LegacyAPIResponse) and raw.request_id is not None
    parsed = raw.parse()
    assert isinstance(parsed, CreateEmbeddingResponse)
    assert parsed.data[0].embedding == cached.data[0].embedding
    with client.embeddings.with_streaming_response.create(model=model, input="a") as response:
        assert isinstance(response, openai.APIResponse)
        assert isinstance(response.parse(), CreateEmbeddingResponse)
    assert server.count(EMBED) == 3
    client.embeddings.create(model=model, input="a")
    assert server.count(EMBED) == 3


async def test_async_raw_and_streaming_responses_are_the_sdks(server: FakeOpenAIServer) -> None:
    client = deja.wrap(async_sdk(server), cache=deja.AsyncCache())
    first = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
    )
    assert isinstance(raw, LegacyAPIResponse) and raw.request_id is not None
    parsed = raw.parse()
    assert isinstance(parsed, ChatCompletion) and parsed.id != first.id
    raw_stream = await client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    )
    stream = raw_stream.parse()
    assert isinstance(stream, openai.AsyncStream)
    chunks = [c async for c in stream]
    assert chunks and all(isinstance(c, ChatCompletionChunk) for c in chunks)
    async with client.chat.completions.with_streaming_response.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
    ) as response:
        assert isinstance(response, openai.AsyncAPIResponse)
        assert response.headers["content-type"].startswith("application/json")
        assert isinstance(await response.parse(), ChatCompletion)
    async with client.chat.completions.with_streaming_response.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    ) as response:
        assert isinstance(response, openai.AsyncAPIResponse)
        lines = [line async for line in response.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
    assert server.count(CHAT) == 5
    model = "text-embedding-3-small"
    raw_emb = await client.embeddings.with_raw_response.create(model=model, input="x")
    assert isinstance(raw_emb.parse(), CreateEmbeddingResponse)
    async with client.embeddings.with_streaming_response.create(model=model, input="x") as r:
        assert isinstance(await r.parse(), CreateEmbeddingResponse)
    assert server.count(EMBED) == 2
    # ordinary calls still cache
    again = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert again == first
    await client.embeddings.create(model=model, input="x")
    await client.embeddings.create(model=model, input="x")
    assert server.count(CHAT) == 5 and server.count(EMBED) == 3


def test_a_raw_response_header_on_the_client_or_the_call_is_honoured(
    server: FakeOpenAIServer,
) -> None:
    client = deja.wrap(
        openai.OpenAI(
            base_url=server.base_url,
            api_key="sk-test",
            max_retries=0,
            default_headers={"X-Stainless-Raw-Response": "true"},
        ),
        cache=deja.Cache(),
    )
    raw = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert isinstance(raw, LegacyAPIResponse)
    # the call removes the client's header (as the SDK merges headers): a cached model again
    for _ in range(2):
        reply = client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_headers={"x-stainless-raw-response": openai.omit},
        )
        assert isinstance(reply, ChatCompletion)
    assert server.count(CHAT) == 2


def test_the_sdks_stream_helper_is_cached(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    server.queue_reply(Reply(content="helper streamed answer"))
    finals = []
    for _ in range(2):
        with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:  # type: ignore[arg-type]
            events = [event.type for event in stream]
            finals.append(stream.get_final_completion())
        assert "content.done" in events
    assert [f.choices[0].message.content for f in finals] == ["helper streamed answer"] * 2
    assert server.count(CHAT) == 1
    # leaving early closes the stream
    with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:  # type: ignore[arg-type]
        next(iter(stream))
    assert server.count(CHAT) == 1


async def test_the_sdks_async_stream_helper_is_cached(server: FakeOpenAIServer) -> None:
    client = deja.wrap(async_sdk(server), cache=deja.AsyncCache())
    finals = []
    for _ in range(2):
        async with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as stream:  # type: ignore[arg-type]
            async for _event in stream:
                pass
            finals.append(await stream.get_final_completion())
    assert finals[0].choices[0].message.content == finals[1].choices[0].message.content
    assert server.count(CHAT) == 1


def test_extra_query_reaches_the_upstream_and_is_keyed(server: FakeOpenAIServer) -> None:
    cache = deja.Cache()
    client = deja.wrap(sdk(server), cache=cache)
    for version in ("1", "2", "1"):
        client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,  # type: ignore[arg-type]
            extra_query={"api-version": version},
        )
    assert server.count(CHAT) == 2
    assert [r.query for r in server.requests] == ["api-version=1", "api-version=2"]
    # the client's default query too, and a call's query overrides it
    other = deja.wrap(
        openai.OpenAI(
            base_url=server.base_url,
            api_key="sk-test",
            max_retries=0,
            default_query={"api-version": "2"},
        ),
        cache=cache,
    )
    other.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    other.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_query={"api-version": "1"},
    )
    assert server.count(CHAT) == 2
    other.embeddings.create(model="text-embedding-3-small", input="a")
    client.embeddings.create(model="text-embedding-3-small", input="a")
    assert server.count(EMBED) == 2


def test_other_call_options_pass_through_unkeyed(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    first = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_headers={"X-Trace-Id": "a"},
        timeout=30,
    )
    assert server.requests[-1].headers["x-trace-id"] == "a"
    second = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_headers={"X-Trace-Id": "b"},
        timeout=openai.NOT_GIVEN,
    )
    assert second == first and server.count(CHAT) == 1


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def test_iterables_the_sdk_accepts_are_read_once_for_key_and_call(
    server: FakeOpenAIServer,
) -> None:
    # The SDK types messages, tools... as Iterable: a generator works unwrapped, so it
    # must work wrapped, and the one pass over it must feed both the key and the call.
    client = deja.wrap(sdk(server), cache=deja.Cache())
    first = client.chat.completions.create(
        model="gpt-4o",
        messages=(m for m in MESSAGES),  # type: ignore[arg-type]
        tools=(t for t in TOOLS),  # type: ignore[arg-type]
        stop=iter(["\n"]),
    )
    sent = server.requests[-1].body
    assert sent["messages"] == MESSAGES
    assert sent["tools"] == TOOLS
    assert sent["stop"] == ["\n"]
    again = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, tools=TOOLS, stop=["\n"]
    )  # type: ignore[arg-type]
    assert deja.cache_info(again).status == "hit"  # the same key as the lists'
    assert again == first
    assert server.count(CHAT) == 1


def test_iterable_message_content_and_tool_calls(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    parts = [{"type": "text", "text": "What is the capital of France?"}]
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": (p for p in parts)},
        {"role": "assistant", "tool_calls": map(dict, calls)},
        {"role": "tool", "tool_call_id": "c1", "content": "Paris"},
    ]
    client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    sent = server.requests[-1].body["messages"]
    assert sent[0]["content"] == parts and sent[1]["tool_calls"] == calls
    listed = [
        {"role": "user", "content": parts},
        {"role": "assistant", "tool_calls": calls},
        messages[2],
    ]
    again = client.chat.completions.create(model="gpt-4o", messages=listed)  # type: ignore[arg-type]
    assert deja.cache_info(again).status == "hit"
    assert server.count(CHAT) == 1


def test_iterable_embedding_input(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())
    client.embeddings.create(model="text-embedding-3-small", input=(s for s in ["a", "b"]))
    assert server.requests[-1].body["input"] == ["a", "b"]
    tokens = client.embeddings.create(model="text-embedding-3-small", input=[iter([1, 2])])
    assert len(tokens.data) == 1
    assert server.requests[-1].body["input"] == [[1, 2]]
    again = client.embeddings.create(model="text-embedding-3-small", input=["b", "a"])
    assert deja.cache_info(again).status == "hit"
    assert server.count("/v1/embeddings") == 2


async def test_a_call_joining_an_identical_one_keeps_its_own_timeout(
    server: FakeOpenAIServer,
) -> None:
    """A call with timeout=1 that joined an identical call on a hung upstream waited for
    that call (20 s in an audit; up to the first call's 600 s), alone it failed after 1 s."""
    import asyncio
    import time

    client = deja.wrap(
        openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0),
        cache=deja.AsyncCache(),
    )
    server.delay_next(3.0)
    first = asyncio.ensure_future(client.chat.completions.create(model="gpt-4o", messages=MESSAGES))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, timeout=0.3)  # type: ignore[arg-type]
    assert time.monotonic() - started < 2
    assert (await first).choices[0].message.content


async def test_a_first_call_s_own_timeout_is_not_raised_to_callers_who_allowed_more(
    server: FakeOpenAIServer,
) -> None:
    import asyncio

    client = deja.wrap(
        openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0),
        cache=deja.AsyncCache(),
    )
    server.delay_next(1.0)
    first = asyncio.ensure_future(
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, timeout=0.3)  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.1)
    patient = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, timeout=30)  # type: ignore[arg-type]
    assert patient.choices[0].message.content
    with pytest.raises(openai.APITimeoutError):
        await first  # its own timeout, as the SDK's error
    unbounded = await client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, timeout=None
    )  # type: ignore[arg-type]
    assert unbounded == patient


async def test_an_embeddings_call_joining_one_in_flight_keeps_its_own_timeout(
    server: FakeOpenAIServer,
) -> None:
    # it waited for the leader's call, as long as that took (chat calls already gave up)
    import asyncio

    server.delay_next(1.5)
    client = deja.wrap(async_sdk(server), cache=deja.AsyncCache())
    leader = asyncio.ensure_future(
        client.embeddings.create(model="text-embedding-3-small", input=["a"], timeout=10)
    )
    await asyncio.sleep(0.2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(openai.APITimeoutError):
        await client.embeddings.create(model="text-embedding-3-small", input=["a"], timeout=0.3)
    assert asyncio.get_running_loop().time() - started < 1.0
    await leader
    assert server.count(EMBED) == 1
