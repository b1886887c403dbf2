"""Streamed misses shared live, and cached streams replayed.

One upstream stream per key at a time: the first caller opens it, callers arriving while it
runs subscribe and receive every chunk from the first, live. Whichever subscriber needs the
next chunk and finds nobody fetching it pulls it from the upstream itself, so no subscriber
depends on another one still reading. When the last subscriber leaves before the end, the
upstream is closed and nothing is stored. When the stream ends cleanly the broadcast hands
the assembled answer to ``on_complete`` (the cache stores it, if admissible).

The source of truth is src/deja/_async/streams.py; the sync twin in src/deja/_sync/ is
generated from it by scripts/unasync.py (threads instead of tasks).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

from deja._aio import current_loop, kept, later, uncancelled  # unasync: from deja._aio import later
from deja._shared_read import SharedRead  # unasync: from deja._waits import bounded_call
from deja.errors import UpstreamTimeoutError
from deja.result import CacheInfo
from deja.streaming import StreamAssembler, StreamFormatError, own_copy

__all__ = ["AsyncBroadcast", "AsyncCachedStream", "aopen_uncached"]

logger = logging.getLogger("deja.cache")

Chunk = dict[str, Any]
OpenStream = Callable[[], Awaitable[AsyncIterator[Chunk]]]
OnComplete = Callable[[StreamAssembler], Awaitable[None]]


class AsyncBroadcast:
    """One upstream stream, fanned out to every subscriber at its own pace."""

    def __init__(self, open_stream: OpenStream, on_complete: OnComplete | None) -> None:
        self._open = open_stream
        self.on_complete = on_complete
        """Called with the assembled stream when it has ended cleanly (to store it)."""
        self._source: AsyncIterator[Chunk] | None = None
        self._chunks: list[Chunk] = []
        self._assembler = StreamAssembler()
        self._storable = True
        self._done = False
        self._abandoned = False  # its last reader left before the end: nothing more comes
        self._error: BaseException | None = None
        self._pulling = False
        self._subscribers = 0
        self._count_lock = threading.Lock()  # readers come and go from other threads
        self._cond = asyncio.Condition()
        # a reader cancelled mid-read leaves the read to the next one, never half-done
        self._read = SharedRead(self._read_source)  # unasync: self._read = self._read_source
        self.joined: list[CacheInfo] = []
        """The cache results of the callers that joined after the first, not counted yet
        (the cache counts them, and credits their saving, when the stream ends)."""
        self.saved: tuple[float, int] | None = None
        """What each caller who shared the answer saved (USD: what a hit on it saves, not
        what it cost, prompt-cache writes and all; tokens), once it is complete."""
        self.answer: dict[str, Any] | None = None
        """The complete answer as the post-cache hooks left it (stored or not), for the
        plain calls that read the stream to its end."""
        self.on_finished: Callable[[], None] | None = None
        """Called once when the broadcast ends (done, failed or abandoned): the cache uses
        it to stop new requests from joining."""
        self.label: object = None
        """What the cache tells an invalidation of it (its tenant and tags)."""
        self.patience: float | None = None
        """How long its opener waits for the first chunk (``None``: no bound). The upstream
        is read within the opener's timeout: a reader that allowed more than this is not
        given the opener's timeout (the cache has it ask again), as long as it can."""

    @property
    def answered(self) -> bool:
        """Whether the stream ran to its end (no error, not abandoned)."""
        return self._done and self._error is None and not self._abandoned

    @property
    def failed_at_first(self) -> bool:
        """Whether the stream failed before its first chunk: every reader (each still
        waiting for that chunk) gets the error."""
        return self._error is not None and not self._chunks

    def timed_out(self, error: BaseException) -> bool:
        """Whether ``error``, raised to a reader, is this stream's own upstream timeout
        (not a reader's own wait running out)."""
        return error is self._error and isinstance(error, UpstreamTimeoutError)

    def subscribe(self) -> bool:
        """Count one more reader (call before its first :meth:`chunk`); ``False`` when the
        stream was abandoned meanwhile (its last reader left: nothing more will come)."""
        with self._count_lock:
            if self._abandoned:
                return False
            self._subscribers += 1
            return True

    def ready(self, index: int) -> bool:
        """Whether :meth:`chunk` answers ``index`` without waiting (it came, or the stream
        ended or failed): a reader's own wait need not bound it."""
        return index < len(self._chunks) or self._done or self._error is not None

    async def chunk(self, index: int) -> Chunk | None:
        """Chunk ``index`` of the stream, waiting or pulling as needed; ``None`` at the end."""
        while True:
            async with self._cond:
                while True:
                    if index < len(self._chunks):
                        return self._chunks[index]
                    if self._error is not None:
                        raise self._error
                    if self._done:
                        return None
                    if not self._pulling:
                        self._pulling = True
                        break
                    await self._cond.wait()
            await self._pull()

    async def _pull(self) -> None:
        chunk: Chunk | None = None
        error: BaseException | None = None
        finished = False
        try:
            chunk = await self._read()
            finished = chunk is None
        except Exception as exc:
            error = exc
        except BaseException:
            # this puller was cancelled or interrupted: hand pulling over (the read it
            # waited for goes on, for the next puller), share nothing
            async with self._cond:
                self._pulling = False
                self._cond.notify_all()
            raise
        if chunk is not None and self._storable:
            try:
                self._assembler.add(chunk)
            except StreamFormatError as exc:
                self._storable = False  # still passed on to the callers, never stored
                logger.warning(
                    "stream chunk not understood, the answer will not be cached: %s", exc
                )
        # What was read is shared even if this puller is cancelled now (a client gone): the
        # others wait for it, and a stream left half-shared hangs them.
        if finished:
            # the end (storing, then telling the readers) in a task of its own
            ending = kept(asyncio.ensure_future(self._end()))  # unasync: self._end()
            await asyncio.shield(ending)  # unasync:
            return
        publish = functools.partial(self._publish, chunk, error)  # unasync:
        await uncancelled(publish)  # unasync: self._publish(chunk, error)
        if error is not None:
            self._finish()

    async def _end(self) -> None:
        if self._storable and self.on_complete is not None:
            try:
                await self.on_complete(self._assembler)
            except Exception:  # storing is best-effort; the callers have their answer
                logger.warning("storing a streamed answer failed", exc_info=True)
        await self._publish(None, None, finished=True)
        self._finish()

    async def _publish(
        self, chunk: Chunk | None, error: BaseException | None, *, finished: bool = False
    ) -> None:
        async with self._cond:
            self._pulling = False
            if chunk is not None:
                self._chunks.append(chunk)
            if error is not None:
                self._error = error
            if finished or error is not None:
                self._done = True
            self._cond.notify_all()

    async def _read_source(self) -> Chunk | None:
        """The upstream's next chunk (opening it first), ``None`` at its end."""
        if self._source is None:
            self._source = await self._open()
        try:
            return await self._source.__anext__()
        except StopAsyncIteration:
            return None

    async def unsubscribe(self) -> None:
        """One reader is gone; the last one leaving early closes the upstream."""
        if self.leave():
            await self.close_source()

    def leave(self) -> bool:
        """The bookkeeping of a reader leaving (no waiting: a finalizer may call it);
        whether it was the last one of an unfinished stream, whose upstream is to be
        closed (:meth:`close_source`)."""
        with self._count_lock:
            self._subscribers -= 1
            if self._subscribers > 0 or self._done:
                return False
            self._done = self._abandoned = True
            self._storable = False
        self._finish()
        return True

    async def close_source(self) -> None:
        """Close the upstream of an abandoned stream."""
        await self._read.cancel()  # unasync:
        source = self._source
        if source is not None:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    def _finish(self) -> None:
        callback, self.on_finished = self.on_finished, None
        if callback is not None:
            callback()


def _for_caller(chunk: Chunk, include_usage: bool) -> Chunk | None:
    """The chunk as this caller asked for it: deja always asks the upstream for usage, and
    forwards the usage chunk (and the ``usage: null`` fields) only to callers who asked."""
    if include_usage:
        return chunk
    if "usage" not in chunk:
        return chunk
    if not chunk.get("choices") and chunk.get("usage") is not None:
        return None
    return {k: v for k, v in chunk.items() if k != "usage"}


class AsyncCachedStream:
    """What a streamed request returns: an iterator of chunk dicts, and ``info``.

    Close it (``aclose()`` or ``async with``) if you stop reading early: the upstream is
    then closed and nothing is stored, unless other identical requests still read it.
    """

    def __init__(
        self,
        info: CacheInfo,
        *,
        broadcast: AsyncBroadcast | None = None,
        replay: Iterable[Mapping[str, Any]] | None = None,
        include_usage: bool = False,
        copy_chunks: bool = True,
        subscribed: bool = False,
        wait: tuple[float | None, float | None] | None = None,
        on_gave_up: Callable[[], None] | None = None,
    ) -> None:
        self.info = info
        self._loop = current_loop() if broadcast is not None else None  # unasync: self._loop = None
        self._copy = copy_chunks and broadcast is not None
        self._broadcast = broadcast
        self._replay = iter(replay) if replay is not None else None
        self._include_usage = include_usage
        self._index = 0
        self._closed = False
        # a caller that joined another's stream waits for its first chunk, then for each
        # next one, no longer than its own call would (the opener's reads are bounded by
        # the opener's timeout); ``on_gave_up`` is told when it stops waiting
        self._wait = wait
        self._on_gave_up = on_gave_up
        if broadcast is not None and not subscribed:  # (the cache subscribes joiners itself)
            broadcast.subscribe()

    @property
    def replayed(self) -> bool:
        """Whether this is a stored answer replayed (every chunk at hand at once), not a
        live stream (chunks as the upstream sends them)."""
        return self._replay is not None

    async def prefetch(self) -> None:
        """Wait for the first chunk, so that an upstream error is raised now, not later."""
        if self._broadcast is not None:
            try:
                await self._chunk(0)
            except BaseException:
                await self.aclose()
                raise

    def __aiter__(self) -> AsyncCachedStream:
        return self

    async def __anext__(self) -> Chunk:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._replay is not None:
                recorded = next(self._replay, None)
                if recorded is None:
                    await self.aclose()
                    raise StopAsyncIteration
                chunk: Chunk | None = dict(recorded)
            else:
                assert self._broadcast is not None  # one of replay and broadcast is set
                try:
                    chunk = await self._chunk(self._index)
                except BaseException:
                    await self.aclose()
                    raise
                if chunk is None:
                    await self.aclose()
                    raise StopAsyncIteration
            self._index += 1
            assert chunk is not None  # the end was handled above
            if self._copy:  # a live chunk every reader gets: each changes its own
                chunk = own_copy(chunk)
            shown = _for_caller(chunk, self._include_usage)
            if shown is not None:
                return shown

    async def _chunk(self, index: int) -> Chunk | None:
        """Chunk ``index`` of the live stream, within this caller's wait if it has one."""
        broadcast = self._broadcast
        assert broadcast is not None
        # (a chunk that came already is read as it is: a timed wait costs ~25 us, and a
        # thread in the sync twin, ~90 us: a joiner's 1,000 buffered chunks took 100 ms)
        limit = None if self._wait is None else self._wait[0] if index == 0 else self._wait[1]
        if limit is None or broadcast.ready(index):
            return await broadcast.chunk(index)
        read = functools.partial(broadcast.chunk, index)
        try:
            got = await asyncio.wait_for(read(), limit)  # unasync: got = bounded_call(read, limit)
        except TimeoutError:
            gave_up, self._on_gave_up = self._on_gave_up, None
            if gave_up is not None:
                gave_up()
            raise UpstreamTimeoutError(
                f"no answer within {limit:g} s: an identical streamed call is in flight"
            ) from None
        return got

    def __del__(self) -> None:
        # dropped without being read to its end or closed (``for chunk in ...: break``):
        # this reader leaves, so the last one gone closes the upstream and frees its
        # connection (kept for ever otherwise: the cache still holds the live stream)
        broadcast = self._broadcast
        if broadcast is None or self._closed:
            return
        self._closed = True
        if broadcast.leave():  # at once (a loop ending cancels tasks before they start)
            later(self._loop, broadcast.close_source)

    async def aclose(self) -> None:
        """Stop reading; the last reader of a live stream closes the upstream."""
        if self._closed:
            return
        self._closed = True
        if self._broadcast is not None:
            await self._broadcast.unsubscribe()

    async def __aenter__(self) -> AsyncCachedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def aopen_uncached(
    open_stream: OpenStream,
    *,
    include_usage: bool,
    cost: Callable[[dict[str, Any]], float] | None = None,
) -> AsyncCachedStream:
    """An upstream stream with no cache in front (status ``bypass``), opened at once so
    that an upstream error before the first chunk is raised here, as with a cache.
    ``cost`` prices the whole answer: ``info.cost_usd`` once the stream has ended."""
    info = CacheInfo("bypass", "")

    async def priced(assembler: StreamAssembler) -> None:
        if cost is not None and assembler.complete:
            info.cost_usd = cost(assembler.response())

    stream = AsyncCachedStream(
        info,
        broadcast=AsyncBroadcast(open_stream, priced),
        include_usage=include_usage,
    )
    await stream.prefetch()
    return stream
