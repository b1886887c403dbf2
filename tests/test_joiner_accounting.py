"""What callers who join a call in flight are credited and counted.

Every joiner (a plain call sharing a plain call, a stream sharing a stream, a plain call
reading a stream to its end) is a hit crediting what a later hit on the stored answer is
credited: a warm repeat, not the prompt-cache write premium the first call paid. A joiner
whose shared call failed, or whose own time ran out, is a miss, counted once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import deja
from deja.request import Request
from tests.helpers import chat_request

# 2,900 of the 3,000 prompt tokens written to Anthropic's prompt cache: the first call pays
# the write premium (1.25x input), a repeat reads them (0.1x input)
USAGE = {
    "prompt_tokens": 3000,
    "completion_tokens": 50,
    "total_tokens": 3050,
    "cache_creation_input_tokens": 2900,
}


def _request() -> Request:
    return Request.chat(
        model="anthropic/claude-sonnet-4-5",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )


def _answer() -> dict[str, Any]:
    return {
        "id": "msg-1",
        "object": "chat.completion",
        "created": 1,
        "model": "claude-sonnet-4-5",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris"},
                "finish_reason": "stop",
            }
        ],
        "usage": dict(USAGE),
    }


def _chunk(i: int, *, finish: str | None = None, model: str = "gpt-4o") -> dict[str, Any]:
    delta = {"role": "assistant", "content": ""} if i == 0 else {"content": f"w{i} "}
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "delta": {} if finish else delta,
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
    }


def _held_stream(gate: asyncio.Event, *, fails: bool = False, usage: bool = False) -> Any:
    """An upstream stream of four chunks that waits for ``gate`` before the third (and
    then, ``fails``, breaks off); ``usage``: the last chunk carries :data:`USAGE`."""

    async def open_stream() -> AsyncIterator[dict[str, Any]]:
        async def chunks() -> AsyncIterator[dict[str, Any]]:
            for i in range(4):
                if i == 2:
                    await gate.wait()
                    if fails:
                        raise deja.UpstreamConnectionError("the upstream broke off")
                chunk = _chunk(i, finish="stop" if i == 3 else None, model="claude-sonnet-4-5")
                if i == 3 and usage:
                    chunk["usage"] = dict(USAGE)
                yield chunk

        return chunks()

    return open_stream


async def _read_out(stream: Any) -> None:
    async for _ in stream:
        pass


async def _hit_saving(cache: deja.AsyncCache) -> float:
    """What a hit on the stored answer is credited (it saves a warm repeat)."""
    later = await cache.get(_request())
    assert later.info.status == "hit"
    return later.info.saved_usd


def _warm_repeat(cache: deja.AsyncCache) -> tuple[float, float]:
    """(what the answer cost the first time, what a repeat costs, caches warm)."""
    first = cache.prices.response_cost(_request().upstream, _answer())
    again = cache.prices.repeat_cost(_request().upstream, _answer())
    assert again is not None and 0 < again < first / 5  # the write premium is most of it
    return first, again


async def test_plain_callers_sharing_a_call_are_credited_what_a_hit_saves() -> None:
    cache = deja.AsyncCache()
    first, again = _warm_repeat(cache)
    release = asyncio.Event()

    async def call() -> dict[str, Any]:
        await release.wait()
        return _answer()

    calls = [asyncio.ensure_future(cache.fetch(_request(), call)) for _ in range(4)]
    await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(*calls)
    leader = [r for r in results if r.info.status == "miss"]
    followers = [r for r in results if r.info.status == "hit"]
    assert len(leader) == 1 and len(followers) == 3
    assert leader[0].info.cost_usd == pytest.approx(first)
    assert [f.info.saved_usd for f in followers] == [pytest.approx(again)] * 3
    assert await _hit_saving(cache) == pytest.approx(again)
    assert cache.stats().saved_usd == pytest.approx(4 * again)  # 3 followers, the later hit


async def test_streams_sharing_a_stream_are_credited_what_a_hit_saves() -> None:
    cache = deja.AsyncCache()
    first, again = _warm_repeat(cache)
    gate = asyncio.Event()
    upstream = _held_stream(gate, usage=True)
    streams = [await cache.stream(_request(), upstream) for _ in range(3)]
    assert [s.info.status for s in streams] == ["miss", "hit", "hit"]
    gate.set()
    for stream in streams:
        await _read_out(stream)
    assert streams[0].info.cost_usd == pytest.approx(first)
    assert [s.info.saved_usd for s in streams[1:]] == [pytest.approx(again)] * 2
    assert await _hit_saving(cache) == pytest.approx(again)
    assert cache.stats().saved_usd == pytest.approx(3 * again)  # 2 joiners, the later hit


async def test_a_stream_joiner_while_the_answer_is_stored_is_credited_a_hits_saving() -> None:
    cache = deja.AsyncCache()
    _, again = _warm_repeat(cache)
    storing = asyncio.Event()
    stored = asyncio.Event()

    async def hook(response: dict[str, Any]) -> None:
        storing.set()
        await stored.wait()  # the answer is complete, and not stored yet

    opened = asyncio.Event()
    opened.set()
    first = await cache.stream(_request(), _held_stream(opened, usage=True), on_response=hook)
    reading = asyncio.ensure_future(_read_out(first))
    await storing.wait()
    late = await cache.stream(_request(), _held_stream(opened, usage=True))
    assert late.info.status == "hit" and late.info.saved_usd == pytest.approx(again)
    stored.set()
    await reading
    await _read_out(late)
    assert await _hit_saving(cache) == pytest.approx(again)
    assert cache.stats().saved_usd == pytest.approx(2 * again)


async def test_a_plain_call_reading_a_stream_is_credited_what_a_hit_saves() -> None:
    cache = deja.AsyncCache()
    first, again = _warm_repeat(cache)
    gate = asyncio.Event()

    async def call() -> dict[str, Any]:
        raise AssertionError("the plain call went upstream")

    stream = await cache.stream(_request(), _held_stream(gate, usage=True))
    [await stream.__anext__() for _ in range(2)]
    plain = asyncio.ensure_future(cache.fetch(_request(), call))
    await asyncio.sleep(0.01)
    gate.set()
    await _read_out(stream)
    result = await plain
    assert stream.info.cost_usd == pytest.approx(first)
    assert result.info.status == "hit" and result.info.saved_usd == pytest.approx(again)
    assert await _hit_saving(cache) == pytest.approx(again)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.coalesced) == (2, 1, 1)
    assert stats.saved_usd == pytest.approx(2 * again)


async def test_a_plain_call_reading_a_stream_that_breaks_is_one_miss() -> None:
    cache = deja.AsyncCache()
    gate = asyncio.Event()

    async def call() -> dict[str, Any]:
        raise AssertionError("the plain call went upstream")

    stream = await cache.stream(chat_request(), _held_stream(gate, fails=True))
    [await stream.__anext__() for _ in range(2)]
    plain = asyncio.ensure_future(cache.fetch(chat_request(), call))
    await asyncio.sleep(0.01)
    gate.set()
    with pytest.raises(deja.UpstreamConnectionError):
        await _read_out(stream)
    with pytest.raises(deja.UpstreamConnectionError):
        await plain
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.bypasses, stats.coalesced) == (0, 2, 0, 0)
    assert stats.saved_usd == 0.0


async def test_a_plain_call_that_stops_waiting_for_a_stream_is_one_miss() -> None:
    cache = deja.AsyncCache()
    gate = asyncio.Event()

    async def call() -> dict[str, Any]:
        raise AssertionError("the plain call went upstream")

    stream = await cache.stream(chat_request(), _held_stream(gate))
    [await stream.__anext__() for _ in range(2)]
    with pytest.raises(deja.UpstreamTimeoutError):
        await cache.fetch(chat_request(), call, timeout=0.05)
    assert (cache.stats().hits, cache.stats().misses) == (0, 2)
    gate.set()
    await _read_out(stream)  # the stream ends, and is stored: the plain call stays a miss
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.coalesced) == (0, 2, 0)


async def test_a_plain_call_that_asks_for_itself_after_a_stream_is_counted_once() -> None:
    """The stream's hook failed, so the plain call that read it asks the upstream itself:
    one miss, not also a coalesced call."""
    cache = deja.AsyncCache()
    gate = asyncio.Event()

    async def hook(response: dict[str, Any]) -> None:
        raise RuntimeError("redaction service down")

    async def call() -> dict[str, Any]:
        return _answer()

    stream = await cache.stream(chat_request(), _held_stream(gate), on_response=hook)
    [await stream.__anext__() for _ in range(2)]
    plain = asyncio.ensure_future(cache.fetch(chat_request(), call))
    await asyncio.sleep(0.01)
    gate.set()
    await _read_out(stream)
    assert (await plain).info.status == "miss"
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.coalesced) == (0, 2, 0)


async def test_streams_joining_a_stream_that_breaks_are_not_counted_coalesced() -> None:
    """A plain call joining a call that failed was not counted as coalesced; a stream
    joining a stream that broke was, at once (three joiners of a failed call: 3 vs 0)."""
    cache = deja.AsyncCache()
    gate = asyncio.Event()
    streams = [await cache.stream(chat_request(), _held_stream(gate, fails=True)) for _ in range(3)]
    assert cache.stats().coalesced == 0  # not yet: the answer is not whole
    gate.set()
    for stream in streams:
        with pytest.raises(deja.UpstreamConnectionError):
            await _read_out(stream)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.coalesced) == (0, 3, 0)
    # a stream shared to its end counts its joiners
    done = asyncio.Event()
    shared = [await cache.stream(chat_request("b"), _held_stream(done)) for _ in range(3)]
    done.set()
    for stream in shared:
        await _read_out(stream)
    assert cache.stats().coalesced == 2


async def test_a_stream_joining_a_stalled_stream_keeps_its_own_timeout() -> None:
    """A stream that joined another waited as long as the opener's reads allowed (its
    timeout, 600 s by default), whatever its own call's timeout: now each chunk within its
    own, then a miss, the stream going on for the opener."""
    cache = deja.AsyncCache()
    gate = asyncio.Event()
    opener = await cache.stream(_request(), _held_stream(gate))
    joiner = await cache.stream(_request(), _held_stream(gate), timeout=0.2)
    assert joiner.info.status == "hit"
    await joiner.__anext__()
    await joiner.__anext__()  # the two chunks before the stall
    started = asyncio.get_running_loop().time()
    with pytest.raises(deja.UpstreamTimeoutError, match="identical streamed call"):
        await joiner.__anext__()
    assert asyncio.get_running_loop().time() - started < 2.0
    assert joiner.info.status == "miss"
    gate.set()
    await _read_out(opener)  # the opener's stream is whole, and stored
    assert (await cache.get(_request())).info.status == "hit"
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.coalesced) == (1, 2, 0)


def test_a_sync_stream_joining_a_stalled_stream_keeps_its_own_timeout() -> None:
    import threading
    import time

    cache = deja.Cache()
    gate = threading.Event()

    def open_stream() -> Any:
        def chunks() -> Any:
            for i in range(4):
                if i == 2:
                    gate.wait(10)
                yield _chunk(i, finish="stop" if i == 3 else None)

        return chunks()

    opener = cache.stream(_request(), open_stream)
    joiner = cache.stream(_request(), open_stream, timeout=0.2)
    next(joiner), next(joiner)
    started = time.monotonic()
    with pytest.raises(deja.UpstreamTimeoutError):
        next(joiner)
    assert time.monotonic() - started < 2.0
    gate.set()
    assert len(list(opener)) == 4
