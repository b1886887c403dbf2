"""The live stream broadcast: abandonment closes the upstream; threads share one stream."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import deja
from deja._async.streams import AsyncBroadcast, AsyncCachedStream
from deja.result import CacheInfo
from tests.helpers import chat_request, stream_chunk


class Source:
    """An async upstream stream that records whether it was closed."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False
        self.pulled = 0

    def __aiter__(self) -> Source:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self.pulled > self.n:
            raise StopAsyncIteration
        i = self.pulled
        self.pulled += 1
        return stream_chunk(i, finish="stop" if i == self.n else None)

    async def aclose(self) -> None:
        self.closed = True


async def test_last_reader_leaving_closes_the_upstream() -> None:
    source = Source(10)

    async def open_stream() -> AsyncIterator[dict[str, Any]]:
        return source

    stored: list[Any] = []

    async def on_complete(assembler: Any) -> None:
        stored.append(assembler)

    broadcast = AsyncBroadcast(open_stream, on_complete)
    a = AsyncCachedStream(CacheInfo("miss", "k"), broadcast=broadcast)
    b = AsyncCachedStream(CacheInfo("hit", "k"), broadcast=broadcast)
    await a.__anext__()
    await b.__anext__()
    await a.aclose()
    assert not source.closed  # b still reads
    await b.__anext__()
    await b.aclose()
    assert source.closed and source.pulled < 10
    assert stored == []  # abandoned: never stored


def test_threads_share_one_upstream_stream() -> None:
    cache = deja.Cache()
    opened = 0
    lock = threading.Lock()

    def open_stream() -> Iterator[dict[str, Any]]:
        nonlocal opened
        with lock:
            opened += 1

        def chunks() -> Iterator[dict[str, Any]]:
            for i in range(21):
                time.sleep(0.005)
                yield stream_chunk(i, finish="stop" if i == 20 else None)

        return chunks()

    barrier = threading.Barrier(6)
    results: list[tuple[str, list[dict[str, Any]]]] = []

    def reader() -> None:
        barrier.wait()
        stream = cache.stream(chat_request(), open_stream)
        results.append((stream.info.status, list(stream)))

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened == 1
    assert sorted(s for s, _ in results) == ["hit"] * 5 + ["miss"]
    assert all(chunks == results[0][1] for _, chunks in results)
    replay = cache.stream(chat_request(), open_stream)
    assert replay.info.status == "hit" and list(replay) == results[0][1]
    assert opened == 1


async def test_a_reader_cancelled_mid_read_leaves_the_stream_whole_for_the_others() -> None:
    async def upstream() -> AsyncIterator[dict[str, Any]]:
        for i in range(6):
            await asyncio.sleep(0.02)  # a read the cancelled reader is waiting in
            yield stream_chunk(i, finish="stop" if i == 5 else None)

    async def open_stream() -> AsyncIterator[dict[str, Any]]:
        return upstream()

    stored: list[Any] = []

    async def on_complete(assembler: Any) -> None:
        stored.append(assembler)

    broadcast = AsyncBroadcast(open_stream, on_complete)
    lead = AsyncCachedStream(CacheInfo("miss", "k"), broadcast=broadcast)
    joiner = AsyncCachedStream(CacheInfo("hit", "k"), broadcast=broadcast)

    async def read(stream: AsyncCachedStream) -> list[dict[str, Any]]:
        return [chunk async for chunk in stream]

    task = asyncio.create_task(read(lead))
    await asyncio.sleep(0.05)  # the lead is waiting in its third read
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    chunks = await read(joiner)  # before: 2 chunks, then a clean-looking end
    assert len(chunks) == 6 and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert len(stored) == 1  # and the whole answer was stored


async def test_the_last_reader_cancelled_mid_read_closes_the_upstream() -> None:
    closed = asyncio.Event()

    async def upstream() -> AsyncIterator[dict[str, Any]]:
        try:
            for i in range(100):
                await asyncio.sleep(0.02)
                yield stream_chunk(i)
        finally:
            closed.set()

    async def open_stream() -> AsyncIterator[dict[str, Any]]:
        return upstream()

    only = AsyncCachedStream(CacheInfo("miss", "k"), broadcast=AsyncBroadcast(open_stream, None))
    task = asyncio.create_task(only.__anext__())
    await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.wait_for(closed.wait(), 1)


async def test_a_plain_call_shares_an_identical_stream_in_flight() -> None:
    cache = deja.AsyncCache()
    opened = 0
    calls = 0
    gate = asyncio.Event()

    async def open_stream() -> AsyncIterator[dict[str, Any]]:
        nonlocal opened
        opened += 1

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            for i in range(11):
                if i == 3:
                    await gate.wait()  # the plain call arrives mid-stream
                yield stream_chunk(i, finish="stop" if i == 10 else None)

        return chunks()

    async def call() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise AssertionError("the plain call went upstream")

    stream = await cache.stream(chat_request(), open_stream)
    first = [await stream.__anext__() for _ in range(2)]
    plain = asyncio.ensure_future(cache.fetch(chat_request(), call))
    await asyncio.sleep(0.01)
    gate.set()
    rest = [chunk async for chunk in stream]
    result = await plain
    assert opened == 1 and calls == 0
    assert result.info.status == "hit"
    assert result.response is not None
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in first + rest)
    assert result.response["choices"][0]["message"]["content"] == streamed
    assert result.response["object"] == "chat.completion"


async def test_a_plain_call_on_a_live_stream_keeps_its_own_timeout() -> None:
    """A plain call with timeout=0.2 joining a stream that stalls waited for the whole
    stream (17 s in an audit); it stops at its own time, and the stream goes on."""
    cache = deja.AsyncCache()
    gate = asyncio.Event()
    stream = await cache.stream(chat_request(), _held_at_2(gate))
    first = [await stream.__anext__() for _ in range(2)]

    async def call() -> dict[str, Any]:
        raise AssertionError("the plain call went upstream")

    started = time.monotonic()
    with pytest.raises(deja.UpstreamTimeoutError):
        await cache.fetch(chat_request(), call, timeout=0.2)
    assert time.monotonic() - started < 1.0
    gate.set()
    rest = [chunk async for chunk in stream]
    assert len(first + rest) == 4 and stream.info.status == "miss"
    assert (await cache.get(chat_request())).info.status == "hit"  # stored all the same


def _held_at_2(gate: asyncio.Event) -> Any:
    """An upstream stream of four chunks that waits for ``gate`` before the third."""

    async def open_stream() -> AsyncIterator[dict[str, Any]]:
        async def chunks() -> AsyncIterator[dict[str, Any]]:
            for i in range(4):
                if i == 2:
                    await gate.wait()
                yield stream_chunk(i, finish="stop" if i == 3 else None)

        return chunks()

    return open_stream


async def test_a_plain_call_on_a_live_stream_gets_the_hooks_answer_even_unstored() -> None:
    """A post-cache hook that redacts the answer and says not to store it: a plain call
    that read the stream to its end gets the redacted answer, not the chunks as they came
    (it used to get the raw one whenever nothing was stored)."""
    from deja.controls import CacheControl

    cache = deja.AsyncCache()
    gate = asyncio.Event()

    async def hook(response: dict[str, Any]) -> CacheControl:
        message = response["choices"][0]["message"]
        message["content"] = message["content"].replace("w2", "[redacted]")
        return CacheControl(no_store=True)

    async def call() -> dict[str, Any]:
        raise AssertionError("the plain call went upstream")

    stream = await cache.stream(chat_request(), _held_at_2(gate), on_response=hook)
    first = [await stream.__anext__() for _ in range(2)]
    plain = asyncio.ensure_future(cache.fetch(chat_request(), call))
    await asyncio.sleep(0.01)
    gate.set()
    rest = await _drain(stream)
    result = await plain
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in first + rest)
    assert streamed == "w1 w2 "  # the first caller's stream went out live
    assert result.info.status == "hit" and result.response is not None
    assert result.response["choices"][0]["message"]["content"] == "w1 [redacted] "
    assert (await cache.get(chat_request())).response is None  # and nothing was stored


async def test_a_plain_call_on_a_live_stream_asks_for_itself_when_the_hook_failed() -> None:
    """The hook that would redact the answer failed: a plain call alone would have failed
    too (or been answered only after the hook), never got the raw answer as a hit."""
    cache = deja.AsyncCache()
    gate = asyncio.Event()
    calls = 0

    async def hook(response: dict[str, Any]) -> None:
        raise RuntimeError("redaction service down")

    async def call() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise RuntimeError("upstream asked again")

    stream = await cache.stream(chat_request(), _held_at_2(gate), on_response=hook)
    [await stream.__anext__() for _ in range(2)]
    plain = asyncio.ensure_future(cache.fetch(chat_request(), call, on_response=hook))
    await asyncio.sleep(0.01)
    gate.set()
    await _drain(stream)
    with pytest.raises(RuntimeError, match="asked again"):
        await plain
    assert calls == 1


async def test_a_plain_call_asks_for_itself_when_the_stream_cannot_be_assembled() -> None:
    cache = deja.AsyncCache()

    def odd(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **stream_chunk(1),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    async def open_stream() -> AsyncIterator[dict[str, Any]]:
        async def chunks() -> AsyncIterator[dict[str, Any]]:
            yield odd({"role": "assistant", "content": "Par", "reasoning": "thinking"})
            await asyncio.sleep(0.05)
            yield odd({"content": "is", "reasoning": {"summary": "x"}})  # changes type
            yield odd({}, "stop")

        return chunks()

    async def call() -> dict[str, Any]:
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Paris"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }

    stream = await cache.stream(chat_request(), open_stream)
    reading = asyncio.ensure_future(_drain(stream))
    await asyncio.sleep(0.01)
    result = await cache.fetch(chat_request(), call)
    assert result.info.status == "miss"
    assert result.response is not None
    assert result.response["choices"][0]["message"]["content"] == "Paris"
    assert len(await reading) == 3  # the stream's own reader gets every chunk


async def _drain(stream: AsyncCachedStream) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


async def test_a_caller_who_joined_a_stream_is_credited_what_it_saved() -> None:
    cache = deja.AsyncCache()
    release = asyncio.Event()

    async def upstream() -> AsyncIterator[dict[str, Any]]:
        async def chunks() -> AsyncIterator[dict[str, Any]]:
            for i in range(3):
                yield stream_chunk(i)
                await release.wait()
            last = stream_chunk(3, finish="stop")
            last["usage"] = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
            yield last

        return chunks()

    first = await cache.stream(chat_request(), upstream)
    second = await cache.stream(chat_request(), upstream)  # joins the first, live
    assert second.info.status == "hit" and second.info.saved_usd == 0.0  # not known yet
    release.set()
    for reader in (first, second):
        async for _ in reader:
            pass
    assert first.info.cost_usd is not None and first.info.cost_usd > 0
    assert second.info.saved_usd == first.info.cost_usd
    stats = cache.stats()
    assert stats.saved_usd == first.info.cost_usd and stats.saved_tokens == 1500


async def test_callers_of_one_live_stream_each_change_their_own_chunks() -> None:
    cache = deja.AsyncCache()
    release = asyncio.Event()

    async def upstream() -> AsyncIterator[dict[str, Any]]:
        async def chunks() -> AsyncIterator[dict[str, Any]]:
            for i in range(3):
                yield stream_chunk(i)
                await release.wait()
            yield stream_chunk(3, finish="stop")

        return chunks()

    first = await cache.stream(chat_request(), upstream)
    second = await cache.stream(chat_request(), upstream)
    release.set()
    texts = []
    async for chunk in first:
        chunk["choices"][0]["delta"]["content"] = "changed by the first caller"
    async for chunk in second:
        texts.append(chunk["choices"][0]["delta"].get("content") or "")
    assert "changed by the first caller" not in texts and "".join(texts) == "w1 w2 "


async def test_a_caller_joining_while_the_answer_is_stored_is_credited_once() -> None:
    cache = deja.AsyncCache()
    storing = asyncio.Event()
    stored = asyncio.Event()

    async def hook(response: dict[str, Any]) -> None:
        storing.set()
        await stored.wait()  # the answer is complete, and not stored yet

    async def upstream() -> AsyncIterator[dict[str, Any]]:
        async def chunks() -> AsyncIterator[dict[str, Any]]:
            for i in range(2):
                yield stream_chunk(i)
            last = stream_chunk(2, finish="stop")
            last["usage"] = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
            yield last

        return chunks()

    first = await cache.stream(chat_request(), upstream, on_response=hook)
    reading = asyncio.ensure_future(_read_out(first))
    await storing.wait()
    late = await cache.stream(chat_request(), upstream)
    assert late.info.status == "hit" and late.info.saved_usd == first.info.cost_usd
    stored.set()
    await reading
    await _read_out(late)
    assert cache.stats().saved_usd == pytest.approx(first.info.cost_usd)


def _held_stream(release: asyncio.Event, *, fails: bool) -> Any:
    """An upstream stream that sends one chunk, waits for ``release``, then ends (or,
    ``fails``, breaks off)."""

    async def upstream() -> AsyncIterator[dict[str, Any]]:
        async def chunks() -> AsyncIterator[dict[str, Any]]:
            yield stream_chunk(0)
            await release.wait()
            if fails:
                raise deja.UpstreamConnectionError("the upstream broke off")
            yield stream_chunk(1, finish="stop")

        return chunks()

    return upstream


async def test_callers_who_joined_a_stream_that_failed_are_misses_not_hits() -> None:
    cache = deja.AsyncCache()
    release = asyncio.Event()
    upstream = _held_stream(release, fails=True)
    streams = [await cache.stream(chat_request(), upstream) for _ in range(3)]
    assert [s.info.status for s in streams] == ["miss", "hit", "hit"]  # as their headers say
    release.set()
    for stream in streams:
        with pytest.raises(deja.UpstreamConnectionError):
            await _read_out(stream)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.saved_usd) == (0, 3, 0.0)
    assert [s.info.status for s in streams] == ["miss"] * 3  # nobody got an answer


async def test_callers_who_joined_a_stream_count_as_hits_when_it_ends() -> None:
    cache = deja.AsyncCache()
    release = asyncio.Event()
    upstream = _held_stream(release, fails=False)
    streams = [await cache.stream(chat_request(), upstream) for _ in range(3)]
    assert (cache.stats().hits, cache.stats().misses) == (0, 1)  # the joiners: not yet
    release.set()
    for stream in streams:
        await _read_out(stream)
    assert (cache.stats().hits, cache.stats().misses) == (2, 1)


async def _read_out(stream: Any) -> None:
    async for _ in stream:
        pass


async def test_a_reader_cancelled_as_its_chunk_arrives_loses_it_for_nobody() -> None:
    """The read ended in the loop turn its waiter was cancelled (a client gone): the chunk
    goes to the next reader, not lost (the stream looked complete, and was stored gapped)."""
    gate = asyncio.Event()
    words = ["one ", "two ", "three ", "four"]

    async def source() -> AsyncIterator[dict[str, Any]]:
        for i, word in enumerate(words):
            await gate.wait()
            gate.clear()
            chunk = stream_chunk(i + 1)
            chunk["choices"][0]["delta"] = {"content": word}
            if i == len(words) - 1:
                chunk["choices"][0]["finish_reason"] = "stop"
            yield chunk

    async def open_stream() -> AsyncIterator[dict[str, Any]]:
        return source()

    stored: dict[str, str] = {}

    async def on_complete(assembler: Any) -> None:
        stored["text"] = assembler.response()["choices"][0]["message"]["content"]

    broadcast = AsyncBroadcast(open_stream, on_complete)
    broadcast.subscribe()  # reader A: cancelled
    broadcast.subscribe()  # reader B: reads on
    pulling = asyncio.ensure_future(broadcast.chunk(0))
    await asyncio.sleep(0.01)
    gate.set()
    pulling.cancel()  # in the same loop turn as the chunk's arrival
    with contextlib.suppress(asyncio.CancelledError):
        await pulling
    await broadcast.unsubscribe()

    async def feed() -> None:
        for _ in range(10):
            await asyncio.sleep(0.01)
            gate.set()

    feeding = asyncio.ensure_future(feed())
    got: list[str] = []
    index = 0
    while (chunk := await broadcast.chunk(index)) is not None:
        got.append(chunk["choices"][0]["delta"].get("content") or "")
        index += 1
    await feeding
    assert "".join(got) == "one two three four" == stored["text"]


async def test_a_reader_cancelled_while_the_end_is_stored_hangs_nobody() -> None:
    """The reader that pulled the end is cancelled (its client gone) while the answer is
    written to a slow store: the other readers still get their end, and it is stored."""
    from deja.stores.memory import MemoryStore

    class SlowWrites(MemoryStore):
        async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
            await asyncio.sleep(0.3)
            await super().aset(key, value, ttl)

    cache = deja.AsyncCache(store=SlowWrites())

    async def upstream() -> AsyncIterator[dict[str, Any]]:
        async def chunks() -> AsyncIterator[dict[str, Any]]:
            for i in range(6):
                await asyncio.sleep(0.01)
                yield stream_chunk(i, finish="stop" if i == 5 else None)

        return chunks()

    async def text(stream: Any) -> str:
        return "".join(
            [c["choices"][0]["delta"].get("content") or "" async for c in stream if c["choices"]]
        )

    first = await cache.stream(chat_request(), upstream)
    second = await cache.stream(chat_request(), upstream)
    reading_first = asyncio.ensure_future(text(first))
    reading_second = asyncio.ensure_future(text(second))
    await asyncio.sleep(0.2)  # the first reader has pulled the end and is storing it
    reading_first.cancel()
    assert await asyncio.wait_for(reading_second, 3) == "w1 w2 w3 w4 "
    assert (await cache.get(chat_request())).entry is not None
    late = await asyncio.wait_for(cache.stream(chat_request(), upstream), 3)
    assert await asyncio.wait_for(text(late), 3) == "w1 w2 w3 w4 "


class _SlowReads(deja.MemoryStore):
    """A memory store whose next read, once ``hold`` is set, returns what it read only when
    ``gate`` opens: a lookup that saw a miss just before another caller stored the answer."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.gate = asyncio.Event()

    async def aget(self, key: str) -> bytes | None:
        data = await super().aget(key)
        if self.hold:
            self.hold = False
            await self.gate.wait()
        return data


async def test_a_stream_that_missed_just_before_another_stored_replays_it_unpaid() -> None:
    store = _SlowReads()
    cache = deja.AsyncCache(store=store)
    opened = 0

    async def upstream() -> AsyncIterator[dict[str, Any]]:
        nonlocal opened
        opened += 1
        return Source(3)

    first = await cache.stream(chat_request(), upstream)
    store.hold = True
    late = asyncio.ensure_future(cache.stream(chat_request(), upstream))
    await asyncio.sleep(0.01)  # its lookup has read the store: nothing there yet
    await _read_out(first)  # the first stream ends: stored, and no longer live
    store.gate.set()
    second = await late
    chunks = [chunk async for chunk in second]
    assert opened == 1
    assert second.info.status == "hit" and second.info.saved_usd == first.info.cost_usd
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "w1 w2 "
    assert (cache.stats().hits, cache.stats().misses) == (1, 1)
