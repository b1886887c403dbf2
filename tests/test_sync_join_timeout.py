"""The sync cache: a plain call that reads an identical stream in flight keeps its own
``timeout``, as the async cache does, and leaves the stream when it gives up.

The plain call reads the stream in a thread of its own, which may be the one pulling the
upstream when the call gives up: it leaves at its next chunk, so the stream goes on for
its other readers, and the last reader leaving still closes the upstream unstored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import deja
from deja.testing import FakeOpenAIServer, Reply
from tests.helpers import chat_request, stream_chunk

# a call that wrongly waited for the whole held stream returns when this releases it
RELEASED_AFTER = 3.0


class Held:
    """An upstream stream of four chunks that waits for ``gate`` before the third (or
    breaks off there, ``fails``), and records how often it was opened and whether closed."""

    def __init__(self, *, fails: bool = False) -> None:
        self.gate = threading.Event()
        self.fails = fails
        self.opened = 0
        self.closed = threading.Event()
        # released in any case, so that a call which ignores its timeout returns (late)
        self._timer = threading.Timer(RELEASED_AFTER, self.gate.set)
        self._timer.daemon = True
        self._timer.start()

    def __call__(self) -> Iterator[dict[str, Any]]:
        self.opened += 1
        return self._chunks()

    def _chunks(self) -> Iterator[dict[str, Any]]:
        try:
            for i in range(4):
                if i == 2:
                    self.gate.wait()
                    if self.fails:
                        raise deja.UpstreamConnectionError("the upstream broke off")
                yield stream_chunk(i, finish="stop" if i == 3 else None)
        finally:
            self.closed.set()


def _upstream_call() -> dict[str, Any]:
    raise AssertionError("the plain call went upstream")


def test_a_plain_call_reading_a_stream_gives_up_at_its_timeout() -> None:
    cache = deja.Cache()
    held = Held()
    stream = cache.stream(chat_request(), held)
    first = [next(stream) for _ in range(2)]  # the plain call's reader pulls the third
    started = time.monotonic()
    with pytest.raises(deja.UpstreamTimeoutError, match="streamed call is in flight"):
        cache.fetch(chat_request(), _upstream_call, timeout=0.2)
    assert time.monotonic() - started < 1.0
    held.gate.set()
    rest = list(stream)  # the stream goes on for its own reader
    assert len(first + rest) == 4 and held.opened == 1
    assert cache.get(chat_request()).info.status == "hit"  # and is stored
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.coalesced) == (1, 2, 0)  # the plain call: a miss


def test_a_plain_call_gives_up_while_another_thread_pulls_the_stream() -> None:
    cache = deja.Cache()
    held = Held()
    stream = cache.stream(chat_request(), held)
    first = [next(stream) for _ in range(2)]
    rest: list[dict[str, Any]] = []
    leader = threading.Thread(target=lambda: rest.extend(stream))  # it pulls the third
    leader.start()
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(deja.UpstreamTimeoutError):
        cache.fetch(chat_request(), _upstream_call, timeout=0.2)
    assert time.monotonic() - started < 1.0
    held.gate.set()
    leader.join(5)
    assert len(first + rest) == 4 and held.opened == 1
    assert cache.get(chat_request()).info.status == "hit"


def test_the_last_reader_leaving_after_a_plain_call_gave_up_closes_the_upstream() -> None:
    cache = deja.Cache()
    held = Held()
    stream = cache.stream(chat_request(), held)
    [next(stream) for _ in range(2)]
    with pytest.raises(deja.UpstreamTimeoutError):
        cache.fetch(chat_request(), _upstream_call, timeout=0.2)
    stream.close()  # the stream's own reader leaves too: nobody reads it now
    held.gate.set()  # the plain call's reader, pulling, gets its chunk and leaves
    assert held.closed.wait(2), "the upstream was left open"
    assert cache.get(chat_request()).info.status == "miss"  # abandoned: nothing stored
    again = cache.stream(chat_request(), Held())  # not joined to the abandoned stream
    assert again.info.status == "miss"
    again.close()


def test_a_plain_call_with_a_timeout_gets_the_streams_answer_or_its_error() -> None:
    cache = deja.Cache()
    held = Held()
    stream = cache.stream(chat_request(), held)
    first = [next(stream) for _ in range(2)]
    threading.Timer(0.1, held.gate.set).start()
    result = cache.fetch(chat_request(), _upstream_call, timeout=5)
    rest = list(stream)
    assert result.info.status == "hit" and result.response is not None
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in first + rest)
    assert result.response["choices"][0]["message"]["content"] == text

    broken = Held(fails=True)
    stream = cache.stream(chat_request("Another question"), broken)
    [next(stream) for _ in range(2)]
    threading.Timer(0.1, broken.gate.set).start()
    with pytest.raises(deja.UpstreamConnectionError):
        cache.fetch(chat_request("Another question"), _upstream_call, timeout=5)
    with pytest.raises(deja.UpstreamConnectionError):
        list(stream)
    stats = cache.stats()
    # first question: the stream a miss, the plain call a hit; second: both misses
    assert (stats.hits, stats.misses, stats.coalesced) == (1, 3, 1)


def test_the_sync_client_joining_a_stream_keeps_its_timeout() -> None:
    """The audit's case over HTTP: thread A streams a slow answer, thread B asks the same
    prompt unstreamed with ``timeout=1`` and waited for all of A's stream (7 s)."""
    with FakeOpenAIServer(chunk_delay=0.2) as upstream:
        upstream.reply_with(lambda body: Reply(" ".join(f"w{i}" for i in range(8))))
        client = deja.Client(
            cache=deja.Cache(), api_key="k", api_base=upstream.base_url, max_retries=0
        )
        messages = [{"role": "user", "content": "a slow streamed answer"}]
        streamed: list[Any] = []

        def read() -> None:
            streamed.extend(client.completion(model="gpt-4o", messages=messages, stream=True))

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(deja.UpstreamTimeoutError):
            client.completion(model="gpt-4o", messages=messages, timeout=0.4)
        assert time.monotonic() - started < 1.0  # the stream ends ~1.5 s later
        reader.join(10)
        assert streamed and upstream.count("/v1/chat/completions") == 1
        client.close()
