"""deja.wrap(openai client): the official SDK, cached in place."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
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
