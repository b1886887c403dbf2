"""Processes sharing a store (proxy workers on one Redis): a call whose answer is not to be
stored holds no cross-process lock (identical calls elsewhere do not wait for an answer
that never comes), and an invalidation made in one process reaches the calls in flight in
the others (they read its marks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import deja
from deja.stores.memory import MemoryStore
from deja.stores.redis import RedisStore
from deja.stores.tiered import TieredStore
from deja.testing import FakeClock, FakeOpenAIServer
from tests.helpers import INVALIDATIONS, chat_request, chat_response, stream_chunk


def test_a_no_store_call_makes_no_other_process_wait(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    # two caches on one Redis: two processes' (the lock is the store's, not the cache's)
    refreshing = deja.Cache(store=make_redis(redis_server), ttl=600, lock_wait=60)
    other = deja.Cache(store=make_redis(redis_server), ttl=600, lock_wait=60)
    called, release = threading.Event(), threading.Event()

    def held_up() -> dict[str, Any]:
        called.set()
        release.wait(30)
        return chat_response("not stored")

    first = threading.Thread(
        target=refreshing.fetch,
        args=(chat_request(), held_up),
        kwargs={"control": {"no-store": True}},
    )
    first.start()
    try:
        assert called.wait(10)
        # before: it waited on the no-store call's lock, then gave up when its own call's
        # time was up (UpstreamTimeoutError), though its upstream answers at once
        result = other.fetch(chat_request(), lambda: chat_response("stored"), timeout=2)
        assert result.info.status == "miss" and not release.is_set()
    finally:
        release.set()
        first.join()
    assert other.get(chat_request()).response == chat_response("stored")


@pytest.mark.parametrize("invalidate", list(INVALIDATIONS.values()), ids=list(INVALIDATIONS))
def test_an_invalidation_in_another_process_is_not_undone_by_a_call_in_flight_here(
    redis_server: Any, make_redis: Callable[..., RedisStore], invalidate: Callable[..., Any]
) -> None:
    """A proxy's admin call reaches one worker: the others' calls in flight, asked for
    before it, must not store their answers after it (they read its marks)."""
    here, elsewhere = two_workers(redis_server, make_redis)
    results: list[deja.CacheResult] = []
    first, _, release = held_call(here, control=DOC_TAG, results=results)
    invalidate(elsewhere)
    release.set()
    first.join(30)
    assert results[0].response == chat_response("asked for before")
    assert elsewhere.get(chat_request()).info.status == "miss"
    assert here.get(chat_request()).info.status == "miss"


def test_an_invalidation_elsewhere_that_does_not_reach_the_entry_leaves_it_stored(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    here, elsewhere = two_workers(redis_server, make_redis)
    first, _, release = held_call(here, control={"tags": ["a"]})
    elsewhere.delete_tag("b")
    elsewhere.delete_tag("a", tenant="someone-else")
    elsewhere.delete(elsewhere.key(chat_request("another question")))
    elsewhere.clear(namespace="elsewhere")
    release.set()
    first.join(30)
    assert elsewhere.get(chat_request(), control={"tags": ["a"]}).info.status == "hit"


def test_a_no_store_embedding_batch_makes_no_other_process_wait(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    redis_server.flush()
    with FakeOpenAIServer() as upstream:
        clients = [
            deja.Client(
                cache=deja.Cache(store=make_redis(redis_server), ttl=600, lock_wait=60),
                api_base=upstream.base_url,
                api_key="k",
                max_retries=0,
            )
            for _ in range(2)
        ]
        corpus = [f"document {i}" for i in range(5)]
        upstream.delay_next(3)  # the no-store batch's call is held up
        first = threading.Thread(
            target=clients[0].embedding,
            kwargs={
                "model": "text-embedding-3-small",
                "input": corpus,
                "cache": {"no-store": True},
            },
        )
        first.start()
        deadline = time.monotonic() + 10
        while upstream.count("/v1/embeddings") == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # before: it waited on the no-store batch's lock until its own time was up
        other = clients[1].embedding(model="text-embedding-3-small", input=corpus, timeout=1)
        assert other.cache.status == "miss" and first.is_alive()
        first.join(30)


def two_workers(
    redis_server: Any, make_redis: Callable[..., RedisStore], **options: Any
) -> tuple[deja.Cache, deja.Cache]:
    """Two caches on one (flushed) Redis: two proxy workers' (the marks are the store's)."""
    redis_server.flush()
    made = (deja.Cache(store=make_redis(redis_server), ttl=600, **options) for _ in range(2))
    return next(made), next(made)


def held_call(
    cache: deja.Cache,
    control: dict[str, Any] | None = None,
    answer: dict[str, Any] | None = None,
    results: list[deja.CacheResult] | None = None,
) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """A fetch in a thread whose upstream call waits to be released, then gives
    ``answer`` (its result added to ``results``): (thread, called, release)."""
    called, release = threading.Event(), threading.Event()
    kept = results if results is not None else []

    def held_up() -> dict[str, Any]:
        called.set()
        release.wait(30)
        return answer or chat_response("asked for before")

    thread = threading.Thread(
        target=lambda: kept.append(cache.fetch(chat_request(), held_up, control=control))
    )
    thread.start()
    assert called.wait(10)
    return thread, called, release


def test_a_two_tier_store_reads_marks_in_its_shared_tier_not_its_l1(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    """A mark copied into a process's L1 (by an earlier read) hid a newer one: the stale
    answer went to the L2, where every process served it."""
    redis_server.flush()
    clock = FakeClock()
    here, elsewhere = (
        deja.Cache(
            store=TieredStore(l1=MemoryStore(), l2=make_redis(redis_server)), ttl=600, clock=clock
        )
        for _ in range(2)
    )
    elsewhere.clear()  # a first mark, read by the next miss here
    assert here.fetch(chat_request("warm-up"), chat_response).info.status == "miss"
    clock.advance(5)  # (that mark is long past: only a newer one reaches the next call)
    thread, _, release = held_call(here)
    elsewhere.clear()
    release.set()
    thread.join(30)
    assert here.store.l2.get(here.key(chat_request())) is None  # type: ignore[attr-defined]
    assert elsewhere.get(chat_request()).info.status == "miss"


def test_a_mark_older_than_the_call_leaves_its_answer_stored(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    """Marks are stamped: one made before a call began (past the clocks' slack) does not
    reach it; one made within the slack does."""
    redis_server.flush()
    clock = FakeClock()
    here = deja.Cache(store=make_redis(redis_server), ttl=600, clock=clock)
    elsewhere = deja.Cache(store=make_redis(redis_server), ttl=600, clock=clock)
    elsewhere.clear()
    clock.advance(0.3)  # within the slack of the processes' clocks: reached
    assert here.fetch(chat_request("soon"), chat_response).info.status == "miss"
    assert here.get(chat_request("soon")).info.status == "miss"
    clock.advance(5)
    assert here.fetch(chat_request("later"), chat_response).info.status == "miss"
    assert here.get(chat_request("later")).info.status == "hit"


def test_a_process_s_own_marks_are_left_to_its_own_record(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    """A cache that flushed stores the answers asked for after its flush at once (its own
    marks are not read as another process's)."""
    redis_server.flush()
    cache = deja.Cache(store=make_redis(redis_server), ttl=600)
    cache.clear()
    cache.delete_tag("doc:42")
    assert cache.fetch(chat_request(), chat_response, control={"tags": ["doc:42"]})
    assert cache.get(chat_request()).info.status == "hit"


def test_a_refresh_in_another_process_is_not_overwritten_by_an_older_call(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    here, elsewhere = two_workers(redis_server, make_redis)
    thread, _, release = held_call(here)
    refreshed = elsewhere.fetch(
        chat_request(), lambda: chat_response("refreshed"), control={"no-cache": True}
    )
    assert refreshed.response == chat_response("refreshed")
    release.set()
    thread.join(30)
    # the older answer was not kept (the refreshed one it overwrote is gone too: a miss,
    # never the older answer)
    assert elsewhere.get(chat_request()).response in (None, chat_response("refreshed"))


def test_waiters_behind_an_answer_that_is_not_stored_call_side_by_side(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    """An answer the admission policy refuses (a content filter stopped it) is never
    stored: the processes waiting on its lock called one after the other behind it (4
    workers, a 1 s call: the last answered after 4.2 s)."""
    redis_server.flush()
    holder, *waiters = (
        deja.Cache(store=make_redis(redis_server), ttl=600, lock_wait=60) for _ in range(3)
    )
    refused = chat_response("partial", finish_reason="content_filter")
    thread, _, release = held_call(holder, answer=refused)
    together = threading.Barrier(2, timeout=10)  # both waiters' calls at once, or broken

    def call_beside_the_other() -> dict[str, Any]:
        together.wait()
        return refused

    statuses: list[str] = []
    callers = [
        threading.Thread(
            target=lambda cache=cache: statuses.append(
                cache.fetch(chat_request(), call_beside_the_other).info.status
            )
        )
        for cache in waiters
    ]
    for caller in callers:
        caller.start()
    time.sleep(0.3)  # (both wait on the holder's lock)
    release.set()
    thread.join(30)
    for caller in callers:
        caller.join(30)
    assert statuses == ["miss", "miss"]
    assert not together.broken


def test_a_caller_after_an_invalidation_elsewhere_joins_no_call_made_before_it(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    """Worker A's admin invalidation: a caller reaching worker B after it got the answer of
    B's call in flight, asked for before (an end-to-end audit: 0-16 per 30 s run)."""
    here, elsewhere = two_workers(redis_server, make_redis)
    thread, _, release = held_call(here, control={"tags": ["doc:42"]})
    elsewhere.delete_tag("doc:42")
    # (the older call still holds the key's lock: the caller waits for it to end, then
    # calls, as the older answer is not stored)
    threading.Timer(0.5, release.set).start()
    later = here.fetch(chat_request(), lambda: chat_response("fresh"), control=DOC_TAG)
    assert later.response == chat_response("fresh") and later.info.status == "miss"
    thread.join(30)


def test_a_stream_after_an_invalidation_elsewhere_joins_no_stream_opened_before_it(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    here, elsewhere = two_workers(redis_server, make_redis)
    release = threading.Event()

    def opened(text: str, held: bool) -> Callable[[], Iterator[dict[str, Any]]]:
        def open_stream() -> Iterator[dict[str, Any]]:
            def chunks() -> Iterator[dict[str, Any]]:
                yield said(text)
                if held:
                    release.wait(30)
                yield said("", finish="stop")

            return chunks()

        return open_stream

    older = here.stream(chat_request(), opened("before", True), control=DOC_TAG)
    elsewhere.delete_tag("doc:42")
    later = here.stream(chat_request(), opened("after", False), control=DOC_TAG)
    assert later.info.status == "miss"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in later) == "after"
    release.set()
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in older) == "before"


DOC_TAG = {"tags": ["doc:42"]}


def said(text: str, *, finish: str | None = None) -> dict[str, Any]:
    """A chunk of a streamed answer saying ``text`` (or its last, with ``finish``)."""
    chunk = stream_chunk(1, finish=finish)
    if finish is None:
        chunk["choices"][0]["delta"] = {"role": "assistant", "content": text}
    return chunk


def test_a_caller_detached_by_an_invalidation_does_not_wait_for_the_older_calls_lock(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    """After a delete_tag, a caller does not join the older call in flight (its answer will
    not be stored), but it waited for that call's cross-process lock, then called: the
    older call's remaining latency added to its own (up to lock_wait, 600 s by default)."""
    here, _ = two_workers(redis_server, make_redis)
    results: list[deja.CacheResult] = []
    first, _, release = held_call(here, control=DOC_TAG, results=results)
    try:
        here.delete_tag("doc:42")
        # its own call answers at once; the older one is still held
        fresh = here.fetch(chat_request(), lambda: chat_response("fresh"), timeout=5)
        assert fresh.response == chat_response("fresh") and not release.is_set()
    finally:
        release.set()
        first.join(30)
    assert results[0].response == chat_response("asked for before")
    assert here.get(chat_request()).response == chat_response("fresh")


def test_processes_waiting_on_a_call_that_failed_call_side_by_side(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    """A call that failed left no word: the processes waiting on its lock took it one after
    the other, each calling the failing upstream after the last one's timeout (a hung
    primary cost the Nth proxy worker N timeouts before it fell back; an audit)."""
    redis_server.flush()
    first, *waiting = (
        deja.Cache(store=make_redis(redis_server), ttl=600, lock_wait=60) for _ in range(3)
    )
    called, release = threading.Event(), threading.Event()
    both = threading.Barrier(2, timeout=10)  # the two waiters' calls, side by side

    def failing() -> dict[str, Any]:
        called.set()
        release.wait(30)
        raise deja.ServerError("upstream down", status_code=503)

    def together() -> dict[str, Any]:
        both.wait()
        return chat_response("answered")

    failed: list[BaseException] = []
    answers: list[deja.CacheResult] = []

    def run_first() -> None:
        try:
            first.fetch(chat_request(), failing)
        except deja.ServerError as exc:
            failed.append(exc)

    threads = [threading.Thread(target=run_first)]
    threads[0].start()
    assert called.wait(10)
    threads += [
        threading.Thread(target=lambda c=c: answers.append(c.fetch(chat_request(), together)))
        for c in waiting
    ]
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.3)  # (both waiting on the lock)
    release.set()
    for thread in threads:
        thread.join(30)
    assert len(failed) == 1 and len(answers) == 2
    assert all(a.response == chat_response("answered") for a in answers)
