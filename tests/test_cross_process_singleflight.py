"""Single-flight across 'processes': separate Cache objects sharing a store with a lock."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import deja
from tests.helpers import LockingMemoryStore, chat_request, chat_response


def test_separate_caches_make_one_upstream_call() -> None:
    store = LockingMemoryStore()
    caches = [deja.Cache(store=store) for _ in range(4)]  # four "processes"
    calls = 0
    lock = threading.Lock()
    barrier = threading.Barrier(16)
    statuses: list[str] = []

    def upstream() -> dict[str, Any]:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.3)
        return chat_response()

    def worker(cache: deja.Cache) -> None:
        barrier.wait()
        statuses.append(cache.fetch(chat_request(), upstream).info.status)

    threads = [threading.Thread(target=worker, args=(c,)) for c in caches for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert statuses.count("miss") == 1 and statuses.count("hit") == 15


def test_a_dead_holder_frees_the_lock_after_its_ttl() -> None:
    store = LockingMemoryStore()
    cache = deja.Cache(store=store, lock_ttl=0.3, lock_wait=5)
    key = cache.key(chat_request())
    assert store.lock(key + ":lock", ttl=0.3) is not None  # a holder that died mid-call
    started = time.monotonic()
    result = cache.fetch(chat_request(), chat_response)
    assert result.info.status == "miss"
    assert 0.25 <= time.monotonic() - started < 1.5


def test_the_wait_is_bounded() -> None:
    store = LockingMemoryStore()
    cache = deja.Cache(store=store, lock_ttl=30, lock_wait=0.2)
    key = cache.key(chat_request())
    store.lock(key + ":lock", ttl=30)  # held, and never released
    started = time.monotonic()
    assert cache.fetch(chat_request(), chat_response).info.status == "miss"
    assert time.monotonic() - started < 1.0


def test_upstream_errors_release_the_lock() -> None:
    store = LockingMemoryStore()
    cache = deja.Cache(store=store)

    def failing() -> dict[str, Any]:
        raise deja.ServerError("503")

    with pytest.raises(deja.ServerError):
        cache.fetch(chat_request(), failing)
    assert store._locks == {}


async def test_a_leader_cancelled_after_taking_the_lock_releases_it() -> None:
    import asyncio

    class SlowReads(LockingMemoryStore):
        slow = False

        async def aget(self, key: str) -> bytes | None:
            if self.slow:
                await asyncio.sleep(5)  # the re-read after the lock is taken
            return await super().aget(key)

    store = SlowReads()
    cache = deja.AsyncCache(store=store)
    key = cache.key(chat_request())

    async def upstream() -> dict[str, Any]:
        return chat_response()

    original = store.alock

    async def lock_then_slow(name: str, *, ttl: float) -> str | None:
        token = await original(name, ttl=ttl)
        store.slow = True
        return token

    store.alock = lock_then_slow  # type: ignore[method-assign]
    leading = asyncio.ensure_future(cache.fetch(chat_request(), upstream))
    await asyncio.sleep(0.1)
    assert store._locks  # held while it reads the store again
    leading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leading
    assert key + ":lock" not in store._locks  # the others need not wait out its TTL


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_call_longer_than_the_lock_ttl_keeps_its_lock(flavour: str) -> None:
    store = LockingMemoryStore()
    calls = 0
    lock = threading.Lock()
    barrier = threading.Barrier(2)
    statuses: list[str] = []

    def upstream() -> dict[str, Any]:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(1.0)  # more than three lock lifetimes
        return chat_response()

    async def aupstream() -> dict[str, Any]:
        import asyncio

        return await asyncio.to_thread(upstream)

    def worker() -> None:
        barrier.wait()
        if flavour == "sync":
            cache = deja.Cache(store=store, lock_ttl=0.3, lock_wait=5)
            statuses.append(cache.fetch(chat_request(), upstream).info.status)
        else:
            import asyncio

            acache = deja.AsyncCache(store=store, lock_ttl=0.3, lock_wait=5)
            statuses.append(asyncio.run(acache.fetch(chat_request(), aupstream)).info.status)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert sorted(statuses) == ["hit", "miss"]
    assert store._locks == {}  # released at the end, not left to expire


def test_a_waiter_gives_up_at_its_own_timeout() -> None:
    store = LockingMemoryStore()
    cache = deja.Cache(store=store, lock_ttl=30, lock_wait=30)
    key = cache.key(chat_request())
    store.lock(key + ":lock", ttl=30)  # another process is calling
    started = time.monotonic()
    with pytest.raises(deja.UpstreamTimeoutError, match="another process"):
        cache.fetch(chat_request(), chat_response, timeout=0.3)
    assert time.monotonic() - started < 2.0


def test_a_store_locking_without_extending_still_gets_single_flight() -> None:
    """The Locking protocol as it was (lock/unlock): extending is an optional extra."""
    from deja.stores import LockExtending, Locking

    class OldLocking(deja.MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.inner = LockingMemoryStore()

        def lock(self, name: str, *, ttl: float) -> str | None:
            return self.inner.lock(name, ttl=ttl)

        def unlock(self, name: str, token: str) -> None:
            self.inner.unlock(name, token)

        async def alock(self, name: str, *, ttl: float) -> str | None:
            return self.inner.lock(name, ttl=ttl)

        async def aunlock(self, name: str, token: str) -> None:
            self.inner.unlock(name, token)

    store = OldLocking()
    assert isinstance(store, Locking) and not isinstance(store, LockExtending)
    cache = deja.Cache(store=store, lock_ttl=5)
    assert cache.fetch(chat_request(), chat_response).info.status == "miss"
    assert store.inner.lock_calls == 1 and store.inner._locks == {}


def test_identical_embedding_batches_of_separate_caches_make_one_upstream_call() -> None:
    """Workers of one proxy re-embedding one corpus at once: one batch call between them;
    the others wait for its lock and serve the stored items (hits, saving their cost)."""
    from deja._sync.embeddings import cached_embeddings

    store = LockingMemoryStore()
    caches = [deja.Cache(store=store) for _ in range(3)]  # three "processes"
    calls = 0
    lock = threading.Lock()
    barrier = threading.Barrier(3)
    items = ["alpha", "beta", "gamma"]
    results: list[Any] = []

    def fetch_missing(batch: list[Any]) -> dict[str, Any]:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.4)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0]}
            for i, t in enumerate(batch)
        ]
        return {
            "object": "list",
            "data": data,
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }

    def worker(cache: deja.Cache) -> None:
        barrier.wait()
        results.append(
            cached_embeddings(
                cache=cache,
                model="text-embedding-3-small",
                items=items,
                params={},
                api_base=None,
                control=None,
                fetch_missing=fetch_missing,
            )
        )

    threads = [threading.Thread(target=worker, args=(c,)) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert sorted(r.info.status for r in results) == ["hit", "hit", "miss"]
    assert all(r.vectors == [[5.0, 1.0], [4.0, 1.0], [5.0, 1.0]] for r in results)
    for r in results:
        if r.info.status == "hit":
            assert r.cached == 3 and r.info.saved_usd > 0
    assert store._locks == {}


def test_a_lock_whose_release_failed_is_released_when_the_store_answers_again() -> None:
    """A store that failed while a miss held its lock (the answer's write and the release
    both failed): the lock stayed, and every process asking that question once the store
    was back waited out its TTL (~25 s in an audit) for a holder long gone. The next miss
    of the holder's process that reaches the store releases it."""

    class Flaky(LockingMemoryStore):
        down = False

        def set(self, key: str, value: bytes, ttl: float | None) -> None:
            if self.down:
                raise ConnectionError("store down")
            super().set(key, value, ttl)

        def unlock(self, name: str, token: str) -> None:
            if self.down:
                raise ConnectionError("store down")
            super().unlock(name, token)

    store = Flaky()
    holder = deja.Cache(store=store, lock_ttl=30, lock_wait=10, breaker_threshold=100)
    other = deja.Cache(store=store, lock_ttl=30, lock_wait=10, breaker_threshold=100)
    store.down = True
    assert holder.fetch(chat_request("first"), chat_response).info.status == "miss"
    store.down = False
    assert holder.fetch(chat_request("second"), chat_response).info.status == "miss"
    started = time.monotonic()
    assert other.fetch(chat_request("first"), chat_response).info.status == "miss"
    assert time.monotonic() - started < 2  # not the lock's 30 s (nor lock_wait's 10)
