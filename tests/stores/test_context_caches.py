"""Context-cache records: found by digest, made once, forgotten when the provider lost them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deja._async.context_caches import AsyncContextCaches
from deja._sync.context_caches import ContextCaches
from deja.providers.context_cache import ContextCache
from deja.stores.memory import MemoryStore
from deja.testing import FakeClock


class Maker:
    """Makes numbered resources that live ``lifetime`` seconds, counting the calls."""

    def __init__(self, clock: FakeClock, lifetime: float = 3600.0, pause: float = 0.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.pause = pause
        self.calls = 0

    async def acreate(self) -> ContextCache:
        self.calls += 1
        number = self.calls
        if self.pause:
            await asyncio.sleep(self.pause)
        return ContextCache(f"cachedContents/c{number}", self.clock() + self.lifetime, 5000)

    def create(self) -> ContextCache:
        self.calls += 1
        return ContextCache(f"cachedContents/c{self.calls}", self.clock() + self.lifetime, 5000)


class BrokenStore(MemoryStore):
    async def aget(self, key: str) -> bytes | None:
        raise ConnectionError("store down")

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        raise ConnectionError("store down")


async def test_made_once_then_found_by_digest() -> None:
    clock = FakeClock()
    caches = AsyncContextCaches(clock=clock)
    maker = Maker(clock)
    first, created = await caches.aget_or_create("d1", maker.acreate)
    again, created_again = await caches.aget_or_create("d1", maker.acreate)
    other, _ = await caches.aget_or_create("d2", maker.acreate)
    assert created and not created_again and again == first
    assert other.name != first.name and maker.calls == 2


async def test_concurrent_callers_share_one_creation() -> None:
    clock = FakeClock()
    caches = AsyncContextCaches(clock=clock)
    maker = Maker(clock, pause=0.05)
    results = await asyncio.gather(*(caches.aget_or_create("d", maker.acreate) for _ in range(8)))
    assert maker.calls == 1
    assert {entry.name for entry, _ in results} == {"cachedContents/c1"}
    assert sum(created for _, created in results) == 1  # one caller made it


async def test_not_reused_near_its_expiry_and_remade() -> None:
    clock = FakeClock()
    caches = AsyncContextCaches(clock=clock, margin=60)
    maker = Maker(clock, lifetime=300)
    first, _ = await caches.aget_or_create("d", maker.acreate)
    clock.advance(239)  # 61 s left: still reused
    assert (await caches.aget_or_create("d", maker.acreate))[0] == first
    clock.advance(2)  # 59 s left: a request could outlive it
    second, created = await caches.aget_or_create("d", maker.acreate)
    assert created and second.name == "cachedContents/c2"


async def test_forget_only_drops_the_resource_it_names() -> None:
    clock = FakeClock()
    caches = AsyncContextCaches(clock=clock)
    maker = Maker(clock)
    first, _ = await caches.aget_or_create("d", maker.acreate)
    await caches.aforget("d", "cachedContents/someone-elses")
    assert await caches.aget("d") == first  # a peer's newer record is kept
    await caches.aforget("d", first.name)
    assert await caches.aget("d") is None
    second, created = await caches.aget_or_create("d", maker.acreate)
    assert created and second.name == "cachedContents/c2"


async def test_a_broken_store_fails_open() -> None:
    clock = FakeClock()
    caches = AsyncContextCaches(store=BrokenStore(clock=clock), clock=clock)
    maker = Maker(clock)
    entry, created = await caches.aget_or_create("d", maker.acreate)
    assert created and entry.name == "cachedContents/c1"


async def test_a_record_that_is_not_one_is_ignored() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    caches = AsyncContextCaches(store=store, clock=clock)
    await store.aset(caches.key("d"), b"not json", 100)
    assert await caches.aget("d") is None
    assert ContextCache.from_bytes(b'{"name": "x"}') is None


def test_the_sync_twin() -> None:
    clock = FakeClock()
    caches = ContextCaches(clock=clock, key_prefix="app:")
    maker = Maker(clock)
    first, created = caches.get_or_create("d", maker.create)
    assert created and caches.get_or_create("d", maker.create) == (first, False)
    assert caches.key("d") == "app:ctx:v1:d"


async def test_two_processes_sharing_redis_make_one_resource(redis_server: Any) -> None:
    pytest.importorskip("redis")
    from deja.stores.redis import RedisStore

    clock = FakeClock()
    maker = Maker(clock, pause=0.2)
    stores = [RedisStore(url=redis_server.url, op_timeout=2.0) for _ in range(2)]
    prefix = f"ctx-test-{id(maker)}:"
    # two records sharing one server, as two proxy processes would
    caches = [AsyncContextCaches(store=s, key_prefix=prefix, clock=clock) for s in stores]
    try:
        results = await asyncio.gather(*(c.aget_or_create("d", maker.acreate) for c in caches))
        assert maker.calls == 1
        assert results[0][0] == results[1][0]
        assert sorted(created for _, created in results) == [False, True]
    finally:
        for s in stores:
            await s.aclear(prefix)
            await s.aclose()
