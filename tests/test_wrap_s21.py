"""deja.wrap: the client's endpoint read at each call, and the SDK's timeout error built
without ``httpx`` (openai 3 uses httpx2; httpx is no dependency of deja's nor the SDK's)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import openai
import pytest

import deja
from deja.testing import FakeOpenAIServer
from tests.helpers import without_packages

CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
MESSAGES = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture
def servers() -> Iterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    # two upstreams that answer the same request differently (their vectors' sizes too)
    with FakeOpenAIServer(embedding_dim=8) as a, FakeOpenAIServer(embedding_dim=16) as b:
        yield a, b


def test_setting_base_url_after_wrapping_keys_calls_by_the_new_endpoint(
    servers: tuple[FakeOpenAIServer, FakeOpenAIServer],
) -> None:
    """The endpoint was read once, when wrapping: the new one was never called, and the
    old one's answers and vectors were served (and stored) as its."""
    a, b = servers
    client = deja.wrap(openai.OpenAI(base_url=a.base_url, api_key="k", max_retries=0))
    first = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    vector = client.embeddings.create(model="text-embedding-3-small", input="hello")
    client.base_url = b.base_url  # type: ignore[assignment]  # the SDK's public setter

    other = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert deja.cache_info(other).status == "miss"
    assert b.count(CHAT) == 1
    streamed = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert deja.cache_info(streamed).status == "hit"  # b's answer, stored just now
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == (
        other.choices[0].message.content
    )
    theirs = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert deja.cache_info(theirs).status == "miss"
    assert len(theirs.data[0].embedding) == 16 and len(vector.data[0].embedding) == 8
    assert b.count(EMBED) == 1

    client.base_url = a.base_url  # type: ignore[assignment]  # back: a's entries again
    again = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert deja.cache_info(again).status == "hit" and again == first
    assert a.count(CHAT) == 1 and b.count(CHAT) == 1
    # the wrapper reads the property's storage (its getter imports a module at every
    # read): an SDK whose getter says otherwise fails here
    assert client._base_url is client.base_url  # type: ignore[attr-defined]


async def test_the_async_client_reads_its_base_url_at_each_call(
    servers: tuple[FakeOpenAIServer, FakeOpenAIServer],
) -> None:
    a, b = servers
    client = deja.wrap(
        openai.AsyncOpenAI(base_url=a.base_url, api_key="k", max_retries=0),
        cache=deja.AsyncCache(),
    )
    await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    client.base_url = b.base_url  # type: ignore[assignment]
    other = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert deja.cache_info(other).status == "miss"
    vectors = await client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert len(vectors.data[0].embedding) == 16
    assert (a.count(CHAT), b.count(CHAT), b.count(EMBED)) == (1, 1, 1)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


async def test_a_joiners_timeout_is_the_sdks_error_without_httpx(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was built with ``import httpx``: ModuleNotFoundError on a clean install."""
    without_packages(monkeypatch, "httpx")
    client = deja.wrap(
        openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0),
        cache=deja.AsyncCache(),
    )
    server.delay_next(1.0, times=2)
    first = asyncio.ensure_future(client.chat.completions.create(model="gpt-4o", messages=MESSAGES))  # type: ignore[arg-type]
    vectors = asyncio.ensure_future(
        client.embeddings.create(model="text-embedding-3-small", input=["a"])
    )
    await asyncio.sleep(0.2)
    with pytest.raises(openai.APITimeoutError) as chat_error:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, timeout=0.2)  # type: ignore[arg-type]
    assert str(chat_error.value.request.url) == f"{server.base_url}/chat/completions"
    with pytest.raises(openai.APITimeoutError) as embed_error:
        await client.embeddings.create(model="text-embedding-3-small", input=["a"], timeout=0.2)
    assert str(embed_error.value.request.url) == f"{server.base_url}/embeddings"
    assert (await first).choices[0].message.content and (await vectors).data
    assert server.count() == 2


def test_a_sync_joiners_timeout_is_the_sdks_error_without_httpx(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_packages(monkeypatch, "httpx")
    client = deja.wrap(openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0))
    server.delay_next(1.0)
    leader = threading.Thread(
        target=client.chat.completions.create, kwargs={"model": "gpt-4o", "messages": MESSAGES}
    )
    leader.start()
    try:
        while server.count(CHAT) == 0:  # the leader's call is in flight
            threading.Event().wait(0.01)
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, timeout=0.2)  # type: ignore[arg-type]
    finally:
        leader.join()
    assert server.count(CHAT) == 1


async def test_a_stream_joiners_own_timeout_is_the_sdks_error(server: FakeOpenAIServer) -> None:
    """A stream joining an identical one, with a shorter timeout than its opener's, gave
    deja's UpstreamTimeoutError, not the SDK's APITimeoutError (as a plain call gets)."""
    client = deja.wrap(
        openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0),
        cache=deja.AsyncCache(),
    )
    server.delay_next(1.0)
    opener = asyncio.ensure_future(
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.2)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            timeout=0.2,
        )
    chunks = [chunk async for chunk in await opener]
    assert chunks and server.count(CHAT) == 1
