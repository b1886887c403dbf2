"""A stream's opener's timeout is not raised to callers that joined it and allowed more time
(README: "a leader's timeout is not raised to callers who allowed more time (one of them
asks again)"): true for plain calls, it was not when the call in flight was a stream. A
caller that joined it before its first chunk asks again; one whose own timeout was no
longer gets the timeout; one that has had chunks too (a stream cannot start over under it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import openai
import pytest

import deja
from deja.testing import FakeOpenAIServer
from tests.helpers import chat_request, stream_chunk

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "A slow question"}]
SLOW = 1.5  # the upstream's delay before its first chunk, past the opener's timeout
SHORT = 0.5  # the opener's timeout


def _answer() -> list[dict[str, Any]]:
    return [stream_chunk(0), stream_chunk(1, finish="stop")]


class AsyncUpstream:
    """Streams opened by the cache: the first fails with ``error`` once ``release`` is
    set (after ``sent`` chunks), the others answer at once."""

    def __init__(self, sent: int = 0) -> None:
        self.release = asyncio.Event()
        self.error = deja.UpstreamTimeoutError("the opener's own timeout")
        self.sent = sent
        self.opened: list[str] = []

    def opener(self, name: str) -> Any:
        async def open_stream() -> AsyncIterator[dict[str, Any]]:
            first = not self.opened
            self.opened.append(name)

            async def chunks() -> AsyncIterator[dict[str, Any]]:
                if first:
                    for i in range(self.sent):
                        yield stream_chunk(i)
                    await self.release.wait()
                    raise self.error
                for chunk in _answer():
                    yield chunk

            return chunks()

        return open_stream


async def _read(stream: Any) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


def _readers(cache: deja.Cache | deja.AsyncCache) -> int:
    """How many callers read the cache's live stream (its opener too)."""
    return max((live._subscribers for live in cache._streams.values()), default=0)


async def _until(done: Callable[[], bool]) -> None:
    """Wait until ``done()`` (nothing signals it: a server thread's count, a stream's readers)."""
    while not done():  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def _until_sync(done: Callable[[], bool]) -> None:
    while not done():
        threading.Event().wait(0.01)


@pytest.mark.parametrize(
    ("opener_waits", "joiner_waits", "asks_again"),
    [
        ({"timeout": SHORT}, {"timeout": 30}, True),
        ({"timeout": SHORT}, {"timeout": None}, True),  # no bound: more than any
        ({"timeout": SHORT}, {"timeout": SHORT}, False),  # no more time: its timeout too
        # the first chunk's wait is what counts (a client's attempts and their pauses)
        ({"timeout": 1, "first_timeout": 2}, {"timeout": 1, "first_timeout": 3}, True),
        ({"timeout": 1, "first_timeout": 2}, {"timeout": 30, "first_timeout": 2}, False),
    ],
)
async def test_a_stream_joiner_that_allowed_more_asks_again(
    opener_waits: dict[str, Any], joiner_waits: dict[str, Any], asks_again: bool
) -> None:
    cache = deja.AsyncCache()
    upstream = AsyncUpstream()
    opener = asyncio.ensure_future(
        cache.stream(chat_request(), upstream.opener("opener"), **opener_waits)
    )
    await _until(lambda: _readers(cache) >= 1)
    joiner = asyncio.ensure_future(
        cache.stream(chat_request(), upstream.opener("joiner"), **joiner_waits)
    )
    await _until(lambda: _readers(cache) >= 2)  # it joined the opener's stream, waiting for a chunk
    upstream.release.set()
    with pytest.raises(deja.UpstreamTimeoutError):
        await opener
    if asks_again:
        stream = await joiner
        assert await _read(stream) == _answer() and stream.info.status == "miss"
        assert upstream.opened == ["opener", "joiner"]
    else:
        with pytest.raises(deja.UpstreamTimeoutError) as raised:
            await joiner
        assert raised.value is upstream.error
        assert upstream.opened == ["opener"]
    stats = cache.stats()  # each caller counted once: none got a shared answer
    assert (stats.hits, stats.misses, stats.coalesced) == (0, 2, 0)


async def test_a_stream_joiner_that_had_chunks_gets_the_openers_timeout() -> None:
    cache = deja.AsyncCache()
    upstream = AsyncUpstream(sent=1)
    opener = await cache.stream(chat_request(), upstream.opener("opener"), timeout=SHORT)
    joiner = await cache.stream(chat_request(), upstream.opener("joiner"), timeout=30)
    assert await joiner.__anext__() == stream_chunk(0)
    upstream.release.set()
    for stream in (opener, joiner):
        with pytest.raises(deja.UpstreamTimeoutError) as raised:
            await _read(stream)
        assert raised.value is upstream.error
    assert upstream.opened == ["opener"]


@pytest.mark.parametrize(("timeout", "asks_again"), [(30, True), (SHORT, False)])
async def test_a_plain_call_on_a_stream_asks_again_after_the_openers_timeout(
    timeout: float, asks_again: bool
) -> None:
    cache = deja.AsyncCache()
    upstream = AsyncUpstream(sent=1)  # even after a chunk: none was passed on to it
    opener = await cache.stream(chat_request(), upstream.opener("opener"), timeout=SHORT)
    called: list[bool] = []

    async def call() -> dict[str, Any]:
        called.append(True)
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}]}

    plain = asyncio.ensure_future(cache.fetch(chat_request(), call, timeout=timeout))
    await _until(lambda: _readers(cache) >= 2)
    upstream.release.set()
    with pytest.raises(deja.UpstreamTimeoutError):
        await _read(opener)
    if asks_again:
        assert (await plain).response is not None and called == [True]
    else:
        with pytest.raises(deja.UpstreamTimeoutError) as raised:
            await plain
        assert raised.value is upstream.error and not called


class SyncUpstream:
    """:class:`AsyncUpstream` for the sync cache."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.error = deja.UpstreamTimeoutError("the opener's own timeout")
        self.opened: list[str] = []
        self.waiting = threading.Event()  # the opener's stream waits for release

    def opener(self, name: str) -> Any:
        def open_stream() -> Iterator[dict[str, Any]]:
            first = not self.opened
            self.opened.append(name)
            if first:
                self.waiting.set()
                self.release.wait(10)
                raise self.error
            return iter(_answer())

        return open_stream


@pytest.mark.parametrize(("timeout", "asks_again"), [(30, True), (SHORT, False)])
def test_a_sync_stream_joiner_that_allowed_more_asks_again(
    timeout: float, asks_again: bool
) -> None:
    cache = deja.Cache()
    upstream = SyncUpstream()
    outcome: dict[str, Any] = {}

    def run(name: str, seconds: float) -> None:
        try:
            stream = cache.stream(chat_request(), upstream.opener(name), timeout=seconds)
            outcome[name] = list(stream)
        except Exception as exc:
            outcome[name] = exc

    opener = threading.Thread(target=run, args=("opener", SHORT))
    opener.start()
    assert upstream.waiting.wait(5)
    joiner = threading.Thread(target=run, args=("joiner", timeout))
    joiner.start()
    _until_sync(lambda: _readers(cache) >= 2)  # it joined the opener's stream, waiting for a chunk
    upstream.release.set()
    opener.join(10)
    joiner.join(10)
    assert outcome["opener"] is upstream.error
    if asks_again:
        assert outcome["joiner"] == _answer() and upstream.opened == ["opener", "joiner"]
    else:
        assert outcome["joiner"] is upstream.error and upstream.opened == ["opener"]
    assert (cache.stats().hits, cache.stats().misses) == (0, 2)


def test_a_sync_plain_call_on_a_stream_asks_again_after_the_openers_timeout() -> None:
    cache = deja.Cache()
    upstream = SyncUpstream()
    outcome: dict[str, Any] = {}

    def stream() -> None:
        try:
            list(cache.stream(chat_request(), upstream.opener("opener"), timeout=SHORT))
        except Exception as exc:
            outcome["opener"] = exc

    def call() -> dict[str, Any]:
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}]}

    opener = threading.Thread(target=stream)
    opener.start()
    assert upstream.waiting.wait(5)

    def release() -> None:
        _until_sync(lambda: _readers(cache) >= 2)  # the plain call reads the stream
        upstream.release.set()

    threading.Thread(target=release, daemon=True).start()
    result = cache.fetch(chat_request(), call, timeout=30)
    opener.join(10)
    assert result.response == call() and outcome["opener"] is upstream.error


# -- over HTTP: an upstream slow to send its first chunk --------------------------------


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


def _started(server: FakeOpenAIServer) -> None:
    """Wait until the opener's request reached the upstream (its stream is live)."""
    _until_sync(lambda: server.count(CHAT) > 0)


def _threads(*targets: Any) -> None:
    first, *others = [threading.Thread(target=t) for t in targets]
    first.start()
    try:
        for thread in others:
            thread.start()
    finally:
        for thread in (first, *others):
            thread.join(30)


@pytest.mark.parametrize("joiner_streams", [True, False])
def test_the_sync_client(server: FakeOpenAIServer, joiner_streams: bool) -> None:
    client = deja.Client(cache=deja.Cache(), api_base=server.base_url, api_key="k", max_retries=0)
    server.delay_next(SLOW)
    outcome: dict[str, Any] = {}

    def opener() -> None:
        try:
            list(client.completion(model="gpt-4o", messages=MESSAGES, stream=True, timeout=SHORT))
        except deja.UpstreamTimeoutError as exc:
            outcome["opener"] = exc

    def joiner() -> None:
        _started(server)
        reply = client.completion(
            model="gpt-4o", messages=MESSAGES, stream=joiner_streams, timeout=30
        )
        outcome["joiner"] = list(reply) if joiner_streams else reply

    _threads(opener, joiner)
    assert isinstance(outcome.get("opener"), deja.UpstreamTimeoutError)
    assert outcome["joiner"] and server.count(CHAT) == 2
    client.close()


@pytest.mark.parametrize("joiner_streams", [True, False])
async def test_the_async_client(server: FakeOpenAIServer, joiner_streams: bool) -> None:
    client = deja.AsyncClient(
        cache=deja.AsyncCache(), api_base=server.base_url, api_key="k", max_retries=0
    )
    server.delay_next(SLOW)

    async def opener() -> None:
        stream = await client.acompletion(
            model="gpt-4o", messages=MESSAGES, stream=True, timeout=SHORT
        )
        await _read(stream)

    first = asyncio.ensure_future(opener())
    await _until(lambda: server.count(CHAT) > 0)
    reply = await client.acompletion(
        model="gpt-4o", messages=MESSAGES, stream=joiner_streams, timeout=30
    )
    assert (await _read(reply)) if joiner_streams else reply.choices[0].message.content
    with pytest.raises(deja.UpstreamTimeoutError):
        await first
    assert server.count(CHAT) == 2
    await client.aclose()


@pytest.mark.parametrize("joiner_streams", [True, False])
def test_wrap(server: FakeOpenAIServer, joiner_streams: bool) -> None:
    sdk = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=30)
    client = deja.wrap(sdk)
    server.delay_next(SLOW)
    outcome: dict[str, Any] = {}

    def opener() -> None:
        try:
            list(
                client.chat.completions.create(
                    model="gpt-4o",
                    messages=MESSAGES,  # type: ignore[arg-type]
                    stream=True,
                    timeout=SHORT,
                )
            )
        except openai.APITimeoutError as exc:  # the SDK's own error, as unwrapped
            outcome["opener"] = exc

    def joiner() -> None:
        _started(server)
        reply = client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=joiner_streams,
        )
        outcome["joiner"] = list(reply) if joiner_streams else reply  # type: ignore[arg-type]

    _threads(opener, joiner)
    assert isinstance(outcome.get("opener"), openai.APITimeoutError)
    assert outcome["joiner"] and server.count(CHAT) == 2


async def _short_stream(client: Any) -> None:
    """A wrapped SDK's streamed call that allows SHORT seconds, read to its end."""
    reply = await client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, timeout=SHORT
    )
    await _read(reply)


@pytest.mark.parametrize("joiner_streams", [True, False])
async def test_wrap_async(server: FakeOpenAIServer, joiner_streams: bool) -> None:
    sdk = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=30)
    client = deja.wrap(sdk, cache=deja.AsyncCache())
    server.delay_next(SLOW)

    first = asyncio.ensure_future(_short_stream(client))
    await _until(lambda: server.count(CHAT) > 0)
    reply = await client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=joiner_streams,
    )
    assert (await _read(reply)) if joiner_streams else reply.choices[0].message.content  # type: ignore[union-attr]
    with pytest.raises(openai.APITimeoutError):
        await first
    assert server.count(CHAT) == 2


async def test_wrap_a_joiner_allowing_no_more_gets_the_sdks_timeout(
    server: FakeOpenAIServer,
) -> None:
    client = deja.wrap(
        openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0),
        cache=deja.AsyncCache(),
    )
    server.delay_next(SLOW)

    first = asyncio.ensure_future(_short_stream(client))
    await _until(lambda: server.count(CHAT) > 0)
    joiner = asyncio.ensure_future(_short_stream(client))  # its own wait would end 0.5 s after this
    for call in (first, joiner):
        with pytest.raises(openai.APITimeoutError):
            await call
    assert server.count(CHAT) == 1  # it did not ask again


def test_wrap_a_timeout_after_the_first_chunk_is_raised_to_every_reader() -> None:
    """Past the first chunk nobody asks again (a reader would get its chunks twice): the
    opener and a reader that joined get the SDK's own error, as the SDK raised it."""
    with FakeOpenAIServer(chunk_delay=1.0) as server:
        client = deja.wrap(openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0))

        def stream(timeout: float) -> Any:
            return client.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,  # type: ignore[arg-type]
                stream=True,
                timeout=timeout,
            )

        opener, joiner = stream(SHORT), stream(30)  # (each has had the first chunk)
        assert deja.cache_info(joiner).status == "hit"
        errors = []
        for reader in (opener, joiner):
            with pytest.raises(openai.APITimeoutError) as raised:
                list(reader)
            errors.append(raised.value)
        assert errors[0] is errors[1] and server.count(CHAT) == 1


async def test_a_joiner_asking_again_keeps_its_own_deadline() -> None:
    """A joiner asking again after its opener's timeout joined the next stream with its
    whole first-chunk wait anew: behind a run of impatient openers a patient caller
    neither got an answer nor its timeout. Here stream A fails at 0.5 s, the patient
    caller (1 s) asks again as B opens, and joins B with what it has left (0.5 s), not
    another 1 s."""
    import contextvars
    import re

    from deja.stores.memory import MemoryStore

    patient_ctx = contextvars.ContextVar("patient", default=False)
    b_live = asyncio.Event()
    reads = 0

    class Store(MemoryStore):
        async def aget(self, key: str) -> bytes | None:
            nonlocal reads
            if patient_ctx.get():
                reads += 1
                if reads == 2:  # its read again after A failed: B opens meanwhile
                    await b_live.wait()
            return await super().aget(key)

    def held(fail_after: float | None) -> Callable[[], Any]:
        async def open_stream() -> AsyncIterator[dict[str, Any]]:
            async def chunks() -> AsyncIterator[dict[str, Any]]:
                if fail_after is None:
                    await asyncio.Event().wait()
                else:
                    await asyncio.sleep(fail_after)
                raise deja.UpstreamTimeoutError("the opener's own timeout")
                yield {}  # (an async generator)

            return chunks()

        return open_stream

    cache = deja.AsyncCache(store=Store())
    a = asyncio.ensure_future(cache.stream(chat_request(), held(0.3), timeout=0.3))
    await _until(lambda: bool(cache._streams))

    started: list[float] = []

    async def patient() -> Any:
        # (2 s: a loaded machine stalled the loop past a 1 s deadline before A failed, and
        # the patient caller was rightly given A's error)
        patient_ctx.set(True)
        started.append(asyncio.get_running_loop().time())
        return await cache.stream(chat_request(), held(None), timeout=2.0)

    waiting = asyncio.ensure_future(patient())
    with pytest.raises(deja.UpstreamTimeoutError):
        await a
    a_failed = asyncio.get_running_loop().time()
    b = asyncio.ensure_future(cache.stream(chat_request(), held(None), timeout=30))
    await _until(lambda: bool(cache._streams))
    b_live.set()
    with pytest.raises(deja.UpstreamTimeoutError, match="identical streamed call") as info:
        await waiting  # joined B, then gave up at its own deadline
    b.cancel()
    await asyncio.gather(b, return_exceptions=True)
    limit = float(re.search(r"within ([0-9.e-]+) s", str(info.value)).group(1))  # type: ignore[union-attr]
    # what was left of its 2 s when A failed, not a whole 2 s again (measured from its
    # own start: under load it starts well after A)
    left = 2.0 - (a_failed - started[0])
    assert limit <= left + 0.05, (limit, left)


async def test_a_joiners_first_timeout_alone_bounds_its_wait() -> None:
    """``first_timeout`` without ``timeout`` left a joiner's first chunk unbounded (it was
    still waiting after 1.5 s): it bounds it, as the docstring says."""

    async def open_stream() -> AsyncIterator[dict[str, Any]]:
        async def chunks() -> AsyncIterator[dict[str, Any]]:
            await asyncio.Event().wait()  # no first chunk, ever
            yield {}

        return chunks()

    cache = deja.AsyncCache()
    opener = asyncio.ensure_future(cache.stream(chat_request(), open_stream))
    await _until(lambda: bool(cache._streams))
    joiner = cache.stream(chat_request(), open_stream, first_timeout=0.2)
    with pytest.raises(deja.UpstreamTimeoutError, match="identical streamed call"):
        await asyncio.wait_for(joiner, 10)  # (a guard: the test fails, not hangs)
    opener.cancel()
    await asyncio.gather(opener, return_exceptions=True)
