"""An invalidation made while an answer is being fetched is not undone by that answer.

An operator updates a document, invalidates its tag, and the next request must get a new
answer: before, a call in flight at that moment stored the old one afterwards, served for
its whole TTL (and callers arriving after the invalidation joined that call).
"""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import deja
from deja._async.streams import AsyncCachedStream
from deja._invalidations import MARKS
from deja.errors import StoreError
from deja.request import Request
from deja.stores.disk import DiskStore
from deja.stores.memory import MemoryStore
from tests.helpers import INVALIDATIONS, chat_request, chat_response, stream_chunk

DOC = {"tags": ["doc:42"]}


class Upstream:
    """An upstream whose first call waits until released; it answers "v1", "v2"..."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        answer = chat_response(f"v{self.calls}")
        if self.calls == 1:
            self.started.set()
            await self.release.wait()
        return answer


def text(result: deja.CacheResult) -> str | None:
    response = result.response
    return None if response is None else response["choices"][0]["message"]["content"]


@pytest.mark.parametrize("invalidate", list(INVALIDATIONS.values()), ids=list(INVALIDATIONS))
async def test_an_answer_asked_for_before_an_invalidation_is_not_stored_after_it(
    invalidate: Callable[[deja.AsyncCache], Awaitable[Any]],
) -> None:
    cache = deja.AsyncCache(ttl=600)
    upstream = Upstream()
    first = asyncio.ensure_future(cache.fetch(chat_request(), upstream, control=DOC))
    await upstream.started.wait()
    await invalidate(cache)
    upstream.release.set()
    assert text(await first) == "v1"  # (its caller asked before: it gets its answer)

    again = await cache.fetch(chat_request(), upstream, control=DOC)
    assert (again.info.status, text(again)) == ("miss", "v2")
    assert upstream.calls == 2
    assert text(await cache.get(chat_request(), control=DOC)) == "v2"


async def test_an_invalidation_that_does_not_reach_the_entry_leaves_it_stored() -> None:
    cache = deja.AsyncCache(ttl=600)
    upstream = Upstream()
    other = chat_request("another question")
    first = asyncio.ensure_future(cache.fetch(chat_request(), upstream, control=DOC))
    await upstream.started.wait()
    await cache.delete_tag("doc:7")
    await cache.delete_tag("doc:42", tenant="someone-else")
    await cache.delete_tag("doc:42", namespace="elsewhere")
    await cache.delete(cache.key(other))
    await cache.clear(namespace="elsewhere")
    upstream.release.set()
    await first
    assert (await cache.get(chat_request(), control=DOC)).info.status == "hit"


async def test_callers_after_the_invalidation_do_not_join_the_call_made_before() -> None:
    cache = deja.AsyncCache(ttl=600)
    upstream = Upstream()
    first = asyncio.ensure_future(cache.fetch(chat_request(), upstream, control=DOC))
    await upstream.started.wait()
    joined = asyncio.ensure_future(cache.fetch(chat_request(), upstream, control=DOC))
    await asyncio.sleep(0.05)  # (it joins the call in flight)
    await cache.delete_tag("doc:42")
    later = await cache.fetch(chat_request(), upstream, control=DOC)
    assert (later.info.status, text(later)) == ("miss", "v2")  # a call of its own
    upstream.release.set()
    assert text(await first) == text(await joined) == "v1"  # they asked before
    assert text(await cache.get(chat_request(), control=DOC)) == "v2"


async def test_a_forced_refresh_is_not_overwritten_by_an_older_call_ending_later() -> None:
    cache = deja.AsyncCache(ttl=600)
    upstream = Upstream()
    older = asyncio.ensure_future(cache.fetch(chat_request(), upstream))
    await upstream.started.wait()
    fresh = await cache.fetch(chat_request(), upstream, control={"no-cache": True})
    assert text(fresh) == "v2"
    upstream.release.set()
    assert text(await older) == "v1"
    assert text(await cache.get(chat_request())) == "v2"


class InvalidatedWhileWritten(MemoryStore):
    """A store on which an invalidation comes while an entry is being written: after the
    fetch looked for invalidations, before its write landed (deleting nothing yet)."""

    def __init__(self) -> None:
        super().__init__()
        self.during_write: Callable[[], None] | None = None

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        during, self.during_write = self.during_write, None
        if during is not None:
            during()
        super().set(key, value, ttl)


def test_an_invalidation_made_while_the_entry_is_written_deletes_it_after() -> None:
    store = InvalidatedWhileWritten()
    cache = deja.Cache(store=store, ttl=600)
    deleted: list[int] = []
    # the invalidation finds the entry's key in the tag's record, but no entry under it
    # yet: it deletes nothing, so the fetch must take its own entry back
    store.during_write = lambda: deleted.append(cache.delete_tag("doc:42"))
    result = cache.fetch(chat_request(), lambda: chat_response("v1"), control=DOC)
    assert result.info.status == "miss" and deleted == [0]
    assert cache.get(chat_request(), control=DOC).info.status == "miss"
    assert store.usage().entries == 0


class HeldDrop:
    """A ``delete_tag`` held after its note, before it reads its tag records, until an
    entry's write begins: the write then waits until the drop has ended (the entry was
    tagged before the drop read the records, its value lands after)."""

    def __init__(self) -> None:
        self.reading = threading.Event()  # the delete_tag is noted, about to read
        self.go_on = threading.Event()
        self.dropper: threading.Thread | None = None

    def start(self, delete_tag: Callable[[], int]) -> list[int]:
        """Run ``delete_tag`` in a thread, held before its reads; returns its results."""
        deleted: list[int] = []
        self.dropper = threading.Thread(target=lambda: deleted.append(delete_tag()))
        self.dropper.start()
        assert self.reading.wait(10)
        return deleted

    def before_reads(self) -> None:
        if not self.reading.is_set():
            self.reading.set()
            assert self.go_on.wait(10)

    def before_write(self) -> None:
        if self.dropper is threading.current_thread():
            return  # (the delete_tag's own marks)
        dropper, self.dropper = self.dropper, None
        if dropper is not None:
            self.go_on.set()
            dropper.join(10)


class DroppedBeforeTheValue:
    """A store (mixed into one) whose tag drops and writes :class:`HeldDrop` orders."""

    held: HeldDrop

    def keys_for(self, tag: str) -> list[str]:
        self.held.before_reads()
        return super().keys_for(tag)  # type: ignore[misc,no-any-return]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.held.before_write()
        super().set(key, value, ttl)  # type: ignore[misc]

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        self.held.before_write()
        super().set_many(items, ttl)  # type: ignore[misc]


class MemoryDroppedBeforeTheValue(DroppedBeforeTheValue, MemoryStore):
    pass


class DiskDroppedBeforeTheValue(DroppedBeforeTheValue, DiskStore):
    pass


STORE_ONE_OR_MANY: dict[str, Callable[[deja.Cache], object]] = {
    # asked after the invalidation began: a fresh answer, stored
    "fetch": lambda cache: cache.fetch(chat_request(), lambda: chat_response("v2"), control=DOC),
    "put_many": lambda cache: cache.put_many([(chat_request(), chat_response("v2"))], control=DOC),
    "put": lambda cache: cache.put(chat_request(), chat_response("v2"), control=DOC),
}


@pytest.mark.parametrize(
    "store_answer", list(STORE_ONE_OR_MANY.values()), ids=list(STORE_ONE_OR_MANY)
)
def test_an_entry_written_across_a_tag_drop_stays_reachable_by_the_next_delete_tag(
    store_answer: Callable[[deja.Cache], object],
) -> None:
    """The drop named the entry's key (tagged) but found no value; the value landed after:
    with no record left naming it, every later delete_tag missed it (a DiskStore with
    threads lost 8 of 8 such entries in a review's run)."""
    store = MemoryDroppedBeforeTheValue()
    store.held = HeldDrop()
    cache = deja.Cache(store=store, ttl=600)
    deleted = store.held.start(lambda: cache.delete_tag("doc:42"))
    store_answer(cache)
    assert deleted == [0]
    assert cache.get(chat_request(), control=DOC).info.status == "hit"
    assert cache.delete_tag("doc:42") == 1
    assert cache.get(chat_request(), control=DOC).info.status == "miss"


class RetagRefused(MemoryDroppedBeforeTheValue):
    """As its parent, and its tag writes fail once the entry's value is written."""

    written = False

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        super().set(key, value, ttl)
        self.written = True

    def tag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        if self.written:
            raise StoreError("the tag index failed")
        super().tag(tag, keys, ttl)


def test_an_entry_whose_second_tagging_fails_is_not_kept_unreachable() -> None:
    """The drop forgot the entry's records and tagging it again failed: it is deleted
    rather than kept where no delete_tag reaches it (a review's mutation removing the
    delete passed every test)."""
    store = RetagRefused()
    store.held = HeldDrop()
    cache = deja.Cache(store=store, ttl=600)
    store.held.start(lambda: cache.delete_tag("doc:42"))
    answer = cache.fetch(chat_request(), lambda: chat_response("v2"), control=DOC)
    assert text(answer) == "v2"  # (its caller gets it)
    assert cache.get(chat_request(), control=DOC).info.status == "miss"


@pytest.mark.parametrize(
    "store_answer", list(STORE_ONE_OR_MANY.values()), ids=list(STORE_ONE_OR_MANY)
)
def test_another_process_entry_written_across_a_tag_drop_is_not_left_unreachable(
    tmp_path: Path, store_answer: Callable[[deja.Cache], object]
) -> None:
    """As above, the ``delete_tag`` in another process sharing a disk store, its drop well
    after its first mark (a large tag): the entry was asked for after that mark (past its
    slack), so nothing told its writer of the drop, and it stayed with no record naming
    it (a review: put and put_many, the proxy's embeddings, were not covered at first).
    The delete_tag marks again just before its drop: a fetch's writer takes its entry
    back, a put's tags it again."""
    now = [1000.0]
    held = HeldDrop()
    stores = [DiskDroppedBeforeTheValue(tmp_path), DiskDroppedBeforeTheValue(tmp_path)]
    for store in stores:
        store.held = held
    invalidating, writing = (deja.Cache(store=s, ttl=600, clock=lambda: now[0]) for s in stores)
    deleted = held.start(lambda: invalidating.delete_tag("doc:42"))
    now[0] += 2  # its first mark's slack is long past
    store_answer(writing)
    assert deleted == [0]
    invalidating.delete_tag("doc:42")  # reaches every entry tagged doc:42...
    assert writing.get(chat_request(), control=DOC).info.status == "miss"  # ...or none is left


class MarksRefused(DiskStore):
    """A shared store that refuses the invalidations' marks with ``refusal``: a disk out of
    space, as a Redis full under ``noeviction`` refuses every write but deletes."""

    refusal: Exception = OSError(errno.ENOSPC, "No space left on device")

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        if any(MARKS in key for key in items):
            raise StoreError(f"set_many failed on disk: {self.refusal!r}") from self.refusal
        super().set_many(items, ttl)


@pytest.mark.parametrize("invalidate", list(INVALIDATIONS.values()), ids=list(INVALIDATIONS))
async def test_an_invalidation_whose_marks_a_full_store_refuses_still_deletes(
    tmp_path: Path, invalidate: Callable[[deja.AsyncCache], Awaitable[Any]]
) -> None:
    """A store full under noeviction refused the marks written before the deletes: every
    delete, delete_tag and clear raised, and the operator could not free the store. Any
    other failure of the marks is raised, the entry left for the retry (a review: a delete
    that said it was done while another process stored the answer it was to stop)."""
    store = MarksRefused(tmp_path)
    cache = deja.AsyncCache(store=store, ttl=600)
    await cache.put(chat_request(), chat_response("v1"), control=DOC)
    store.refusal = TimeoutError("timed out writing")
    with pytest.raises(StoreError, match="timed out writing"):
        await invalidate(cache)
    assert (await cache.get(chat_request(), control=DOC)).info.status == "hit"
    store.refusal = OSError(errno.ENOSPC, "No space left on device")
    await invalidate(cache)
    assert (await cache.get(chat_request(), control=DOC)).info.status == "miss"


def said(text: str, *, finish: str | None = None) -> dict[str, Any]:
    """A chunk of a streamed answer saying ``text`` (or its last, with ``finish``)."""
    chunk = stream_chunk(1, finish=finish)
    if finish is None:
        chunk["choices"][0]["delta"] = {"role": "assistant", "content": text}
    return chunk


async def read_to_end(stream: AsyncCachedStream) -> str:
    """What a streamed answer said, read to its end."""
    chunks = [chunk async for chunk in stream]
    return "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)


async def test_a_stream_asked_for_before_an_invalidation_is_not_stored_after_it() -> None:
    cache = deja.AsyncCache(ttl=600)
    opened: list[str] = []
    release = asyncio.Event()

    async def open_stream() -> AsyncIterator[dict[str, Any]]:
        version = opened.append(f"v{len(opened) + 1}") or opened[-1]

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            yield said(version)
            if version == "v1":
                await release.wait()
            yield said("", finish="stop")

        return chunks()

    stream = await cache.stream(chat_request(), open_stream, control=DOC)
    await cache.delete_tag("doc:42")
    # a caller after the invalidation opens a stream of its own, not the old one's
    later = await cache.stream(chat_request(), open_stream, control=DOC)
    assert later.info.status == "miss" and opened == ["v1", "v2"]
    assert await read_to_end(later) == "v2"
    release.set()
    assert await read_to_end(stream) == "v1"
    assert text(await cache.get(chat_request(), control=DOC)) == "v2"


async def test_a_request_that_neither_reads_nor_stores_invalidates_nothing() -> None:
    """A bypass (no-cache and no-store: default_off's requests that do not opt in, the
    proxy's uncached kinds) replaces no answer: the call in flight is still joined and
    stored (it was thrown away, and 4,096 bypasses threw every call's away)."""
    cache = deja.AsyncCache(ttl=600)
    upstream = Upstream()
    first = asyncio.ensure_future(cache.fetch(chat_request(), upstream))
    await upstream.started.wait()
    for _ in range(5000):
        await cache.fetch(chat_request("other"), lambda: _now(chat_response()), control=BYPASS)
    await cache.fetch(chat_request(), upstream, control=BYPASS)
    joined = asyncio.ensure_future(cache.fetch(chat_request(), upstream))
    await asyncio.sleep(0.05)
    upstream.release.set()
    assert text(await first) == "v1"
    assert ((await joined).info.status, text(await joined)) == ("hit", "v1")
    assert text(await cache.get(chat_request())) == "v1"


BYPASS = {"no-cache": True, "no-store": True}


async def _now(answer: dict[str, Any]) -> dict[str, Any]:
    return answer


async def test_a_tag_invalidation_leaves_other_tenants_calls_joinable() -> None:
    cache = deja.AsyncCache(ttl=600)
    upstream = Upstream()
    b = Request.chat(model="gpt-4o", messages=[{"role": "user", "content": "Q"}], tenant="b")
    first = asyncio.ensure_future(cache.fetch(b, upstream, control=DOC))
    await upstream.started.wait()
    await cache.delete_tag("doc:42", tenant="a")  # another tenant's
    await cache.delete_tag("doc:7", tenant="b")  # another tag
    joined = asyncio.ensure_future(cache.fetch(b, upstream, control=DOC))
    await asyncio.sleep(0.05)
    upstream.release.set()
    assert text(await first) == "v1"
    assert ((await joined).info.status, upstream.calls) == ("hit", 1)
    assert text(await cache.get(b, control=DOC)) == "v1"


async def test_a_caller_after_a_refresh_does_not_join_the_older_call() -> None:
    """README: a no-cache refresh does to the older calls for its key what an invalidation
    does: a caller arriving while both are in flight makes a call of its own."""
    cache = deja.AsyncCache(ttl=600)
    release = asyncio.Event()
    calls: list[int] = []

    async def upstream() -> dict[str, Any]:
        calls.append(1)
        number = len(calls)
        if number <= 2:  # the older call and the refresh are held
            await release.wait()
        return chat_response(f"v{number}")

    older = asyncio.ensure_future(cache.fetch(chat_request(), upstream))
    await asyncio.sleep(0.05)
    refresh = asyncio.ensure_future(
        cache.fetch(chat_request(), upstream, control={"no-cache": True})
    )
    await asyncio.sleep(0.05)
    assert len(calls) == 2
    # joining the older call would wait for its release, which comes after this call
    later = await asyncio.wait_for(cache.fetch(chat_request(), upstream), 5)
    assert (later.info.status, text(later)) == ("miss", "v3")
    release.set()
    assert (text(await older), text(await refresh)) == ("v1", "v2")
