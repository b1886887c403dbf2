"""An entry's tag records and its value, written one after the other, across a restart.

The cache writes an entry's tag records before its value. A server that restarted without
persistence between the two (its data gone, the pooled connections stale) took the value
on a fresh connection and had no record naming it: ``delete_tag`` missed the entry, which
was served until its TTL. The store numbers the connections it opens and notes which
answered each caller: a value answered on one opened after the one that took the first
tag record is tagged again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import deja
from deja.errors import StoreBusy
from deja.request import Request
from deja.stores.redis import RedisStore
from deja.stores.tiered import TieredStore
from tests.helpers import chat_response
from tests.stores import redis_servers
from tests.stores.redis_servers import ValkeyServer


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A server this test alone restarts (persistence off: a restart empties it)."""
    with redis_servers.running(redis_servers.start_standalone(tmp_path / "own")) as server:
        yield server


def question(n: int) -> Request:
    return Request.chat(model="gpt-4o", messages=[{"role": "user", "content": f"question {n}"}])


class RestartsBeforeValues(RedisStore):
    """A RedisStore whose server restarts once, just before the next value write (the
    tag records of that entry, written before, are lost with the rest)."""

    def __init__(self, server: ValkeyServer) -> None:
        super().__init__(url=server.url, op_timeout=2.0, connect_timeout=2.0)
        self.server = server
        self.armed = False

    def _restart_if_armed(self) -> None:
        if self.armed:
            self.armed = False
            self.server.restart()

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._restart_if_armed()
        super().set(key, value, ttl)

    def set_many(self, items: dict[str, bytes], ttl: float | None) -> None:  # type: ignore[override]
        self._restart_if_armed()
        super().set_many(items, ttl)

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        self._restart_if_armed()
        await super().aset(key, value, ttl)

    async def aset_many(self, items: dict[str, bytes], ttl: float | None) -> None:  # type: ignore[override]
        self._restart_if_armed()
        await super().aset_many(items, ttl)


def test_a_value_written_after_a_restart_is_tagged_on_the_new_server(
    own_server: ValkeyServer,
) -> None:
    store = RestartsBeforeValues(own_server)
    cache = deja.Cache(store=store, ttl=60)
    assert cache.put(question(0), chat_response(), control={"tags": ["doc"]})  # warm pool
    store.armed = True
    assert cache.put(question(1), chat_response(), control={"tags": ["doc"]})
    assert not store.armed, "the server restarted between the tag and value writes"
    assert cache.get(question(1)).info.status == "hit"
    assert cache.delete_tag("doc") == 1
    assert cache.get(question(1)).info.status == "miss"
    cache.close()


async def test_an_async_value_written_after_a_restart_is_tagged_on_the_new_server(
    own_server: ValkeyServer,
) -> None:
    store = RestartsBeforeValues(own_server)
    cache = deja.AsyncCache(store=store, ttl=60)
    # several pooled connections, all stale after the restart
    await asyncio.gather(*(cache.put(question(i), chat_response()) for i in range(4)))
    store.armed = True
    assert await cache.put(question(9), chat_response(), control={"tags": ["doc"]})
    assert not store.armed
    assert (await cache.get(question(9))).info.status == "hit"
    assert await cache.delete_tag("doc") == 1
    assert (await cache.get(question(9))).info.status == "miss"
    await cache.aclose()


def test_a_batch_written_after_a_restart_is_tagged_on_the_new_server(
    own_server: ValkeyServer,
) -> None:
    store = RestartsBeforeValues(own_server)
    cache = deja.Cache(store=store, ttl=60)
    assert cache.put(question(0), chat_response(), control={"tags": ["doc"]})
    store.armed = True
    items = [(question(n), chat_response()) for n in (1, 2, 3)]
    assert cache.put_many(items, control={"tags": ["doc"]}) == 3
    assert not store.armed
    assert cache.delete_tag("doc") == 3
    assert [cache.get(request).info.status for request, _ in items] == ["miss"] * 3
    cache.close()


def test_a_tiered_store_over_redis_tags_again_after_a_restart(own_server: ValkeyServer) -> None:
    l2 = RestartsBeforeValues(own_server)
    cache = deja.Cache(store=TieredStore(l2=l2), ttl=60)
    assert cache.put(question(0), chat_response(), control={"tags": ["doc"]})
    l2.armed = True
    assert cache.put(question(1), chat_response(), control={"tags": ["doc"]})
    assert not l2.armed
    assert cache.delete_tag("doc") == 1
    assert cache.get(question(1)).info.status == "miss"
    cache.close()


def _calls(server: ValkeyServer) -> dict[str, int]:
    client = server.client()
    try:
        return {k: int(v["calls"]) for k, v in client.info("commandstats").items()}
    finally:
        client.close()


def _made(before: dict[str, int], after: dict[str, int], command: str) -> int:
    """How many ``command`` calls the server took between the two readings."""
    name = f"cmdstat_{command}"
    return after.get(name, 0) - before.get(name, 0)


def test_writes_on_warm_connections_are_not_tagged_twice(own_server: ValkeyServer) -> None:
    """The tag records are written again only when a connection was opened since: a warm
    pool costs no extra round trip."""
    cache = deja.Cache(store=RedisStore(url=own_server.url, op_timeout=2.0), ttl=60)
    assert cache.put(question(0), chat_response(), control={"tags": ["doc"]})
    before = _calls(own_server)
    assert cache.put(question(1), chat_response(), control={"tags": ["doc"]})
    after = _calls(own_server)
    # two tag records (the namespace's and the tenant's), then the value
    assert after["cmdstat_eval"] - before["cmdstat_eval"] == 2
    assert after["cmdstat_set"] - before["cmdstat_set"] == 1
    cache.close()


def test_the_store_tells_a_reply_on_a_connection_opened_since(own_server: ValkeyServer) -> None:
    store = RedisStore(url=own_server.url, op_timeout=2.0)
    mark = store.mark_connections()
    assert mark is not None
    store.set("k", b"v", 60)  # (on the first connection, opened since the mark)
    store.get("k")
    assert not store.reconnected_since(mark)  # (the same connection answered both)
    mark = store.mark_connections()
    store.get("k")
    own_server.restart()
    assert store.get("k") is None  # (sent again on a fresh connection)
    assert store.reconnected_since(mark)
    assert store.reconnected_since(mark - 1)  # (another mark was taken since: not known)
    store.close()


async def test_the_store_tells_an_async_reply_on_a_connection_opened_since(
    own_server: ValkeyServer,
) -> None:
    store = RedisStore(url=own_server.url, op_timeout=2.0)
    mark = store.mark_connections()
    assert mark is not None
    await store.aset("k", b"v", 60)
    await store.aget("k")
    assert not store.reconnected_since(mark)
    mark = store.mark_connections()
    await store.aget("k")
    own_server.restart()
    assert await store.aget("k") is None
    assert store.reconnected_since(mark)
    await store.aclose()


def test_a_sentinel_store_numbers_the_connections_to_its_master(
    redis_sentinel: redis_servers.ValkeySentinel,
) -> None:
    store = RedisStore(
        sentinels=redis_sentinel.sentinels,
        service_name=redis_servers.SENTINEL_SERVICE,
        op_timeout=2.0,
    )
    mark = store.mark_connections()
    assert mark is not None
    store.set("deja-s27-sentinel", b"v", 60)
    assert store.get("deja-s27-sentinel") == b"v"
    assert not store.reconnected_since(mark)
    store.delete("deja-s27-sentinel")
    store.close()


def test_a_cluster_store_numbers_nothing(redis_cluster: redis_servers.ValkeyCluster) -> None:
    """On a cluster an entry and its records live on different nodes: no order of writes
    keeps a node restarted empty from losing its records (see the module docstring)."""
    store = RedisStore(startup_nodes=redis_cluster.startup_nodes, op_timeout=2.0)
    assert store.mark_connections() is None
    store.set("deja-s27-cluster", b"v", 60)
    store.delete("deja-s27-cluster")
    store.close()


# -- connections opened for other callers, or for the first record, are no restart ------


def test_the_first_tagged_put_of_a_fresh_store_writes_its_tags_once(
    own_server: ValkeyServer,
) -> None:
    """The store's first connection opens for the entry's first tag record: the value
    answered on it (or on one opened meanwhile for the store's own reads) is no sign of a
    restart (each first put of a process wrote its records twice)."""
    cache = deja.Cache(store=RedisStore(url=own_server.url, op_timeout=2.0), ttl=60)
    before = _calls(own_server)
    assert cache.put(question(0), chat_response(), control={"tags": ["doc"]})
    after = _calls(own_server)
    assert _made(before, after, "eval") == 2  # (the namespace's record, the tenant's)
    assert _made(before, after, "set") == 1
    cache.close()


async def test_the_first_async_tagged_put_of_a_fresh_store_writes_its_tags_once(
    own_server: ValkeyServer,
) -> None:
    cache = deja.AsyncCache(store=RedisStore(url=own_server.url, op_timeout=2.0), ttl=60)
    before = _calls(own_server)
    assert await cache.put(question(0), chat_response(), control={"tags": ["doc"]})
    after = _calls(own_server)
    assert _made(before, after, "eval") == 2
    await cache.aclose()


class ConnectionsReceived:
    """The connections a server accepted so far, read on one connection of its own."""

    def __init__(self, server: ValkeyServer) -> None:
        self.client = server.client()

    def __call__(self) -> int:
        return int(self.client.info("stats")["total_connections_received"])


class OthersOpenConnectionsDuringValues(RedisStore):
    """A RedisStore on whose pool another caller, just before each value write, takes every
    idle connection and one more, which the pool opens for it; it gives back all but the
    new one, which it keeps until the value is written (the value goes on a connection
    opened before the entry's tag records were written)."""

    def __init__(self, server: ValkeyServer) -> None:
        super().__init__(url=server.url, op_timeout=2.0)
        self.received = ConnectionsReceived(server)

    def _take(self) -> Any:
        client = self._ops().client
        start = self.received()
        held: list[Any] = []
        while not held or self.received() == start:
            held.append(client.pipeline())
            held[-1].watch(f"other-{len(held)}")  # (a WATCH holds its connection until reset)
        for pipe in held[:-1]:
            pipe.reset()
        return held[-1]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        with ThreadPoolExecutor(1) as other:  # (another caller: a thread of its own)
            held = other.submit(self._take).result()
            super().set(key, value, ttl)
            other.submit(held.reset).result()

    async def _atake(self) -> Any:
        client = self._aops().client
        start = self.received()
        held: list[Any] = []
        while not held or self.received() == start:
            held.append(client.pipeline())
            await held[-1].watch(f"other-{len(held)}")
        for pipe in held[:-1]:
            await pipe.reset()
        return held[-1]

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        held = await asyncio.create_task(self._atake())  # (another caller: a task of its own)
        await super().aset(key, value, ttl)
        await asyncio.create_task(held.reset())


def test_connections_opened_for_others_during_a_tagged_write_are_no_restart(
    own_server: ValkeyServer,
) -> None:
    """The store opened a connection during each tagged write, for another caller: the
    entry's records and value went on connections opened before, and are written once
    (each was written twice; and deleted when the second write failed)."""
    store = OthersOpenConnectionsDuringValues(own_server)
    received = ConnectionsReceived(own_server)
    cache = deja.Cache(store=store, ttl=60)
    assert cache.put(question(0), chat_response(), control={"tags": ["doc"]})
    before, opened = _calls(own_server), received()
    for n in range(1, 4):
        assert cache.put(question(n), chat_response(), control={"tags": ["doc"]})
    assert received() - opened == 3  # (one during each write)
    assert _made(before, _calls(own_server), "eval") == 2 * 3
    assert cache.delete_tag("doc") == 4
    cache.close()


async def test_connections_opened_for_others_during_an_async_tagged_write_are_no_restart(
    own_server: ValkeyServer,
) -> None:
    store = OthersOpenConnectionsDuringValues(own_server)
    received = ConnectionsReceived(own_server)
    cache = deja.AsyncCache(store=store, ttl=60)
    assert await cache.put(question(0), chat_response(), control={"tags": ["doc"]})
    before, opened = _calls(own_server), received()
    for n in range(1, 4):
        assert await cache.put(question(n), chat_response(), control={"tags": ["doc"]})
    assert received() - opened == 3
    assert _made(before, _calls(own_server), "eval") == 2 * 3
    assert await cache.delete_tag("doc") == 4
    await cache.aclose()


class SecondTaggingBusy(RedisStore):
    """A RedisStore whose second tag write of the same keys finds no connection free (as a
    pool under load would say: StoreBusy); the attempts are counted."""

    def __init__(self, server: ValkeyServer, *, max_connections: int = 50) -> None:
        super().__init__(url=server.url, op_timeout=2.0, max_connections=max_connections)
        self.tagged: set[tuple[str, tuple[str, ...]]] = set()
        self.tagged_again = 0

    def _again(self, tag: str, keys: Sequence[str]) -> None:
        record = (tag, tuple(keys))
        if record in self.tagged:
            self.tagged_again += 1
            raise StoreBusy("no redis connection free within 0.25 s")
        self.tagged.add(record)

    def tag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        self._again(tag, keys)
        super().tag(tag, keys, ttl)

    async def atag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        self._again(tag, keys)
        await super().atag(tag, keys, ttl)


async def test_tagged_puts_growing_a_small_pool_keep_every_entry(
    own_server: ValkeyServer,
) -> None:
    """Many tagged puts at once on a pool of 4 connections, which it opens as they come:
    none is deleted for a tag write that failed again (each was written, records first,
    on one server life), and once the pool is warm none is tagged twice."""
    store = SecondTaggingBusy(own_server, max_connections=4)
    cache = deja.AsyncCache(store=store, ttl=60)
    received = ConnectionsReceived(own_server)
    tags = {"tags": ["doc"]}
    rounds: list[tuple[int, int]] = []  # (connections opened, tag writes again) per round
    for first in range(0, 128, 32):
        opened, tagged_again = received(), store.tagged_again
        stored = await asyncio.gather(
            *(
                cache.put(question(n), chat_response(), control=tags)
                for n in range(first, first + 32)
            )
        )
        assert all(stored)
        rounds.append((received() - opened, store.tagged_again - tagged_again))
    assert rounds[0][0] >= 2  # (the pool grew under the first round)
    warm = [again for opened, again in rounds if opened == 0]
    assert warm and warm == [0] * len(warm)
    statuses = [(await cache.get(question(n))).info.status for n in range(128)]
    assert statuses == ["hit"] * 128
    assert await cache.delete_tag("doc") == 128
    await cache.aclose()


def test_tagged_puts_from_threads_growing_a_small_pool_keep_every_entry(
    own_server: ValkeyServer,
) -> None:
    store = SecondTaggingBusy(own_server, max_connections=4)
    cache = deja.Cache(store=store, ttl=60)
    tags = {"tags": ["doc"]}
    with ThreadPoolExecutor(16) as callers:
        stored = list(
            callers.map(lambda n: cache.put(question(n), chat_response(), control=tags), range(32))
        )
    assert all(stored)
    assert [cache.get(question(n)).info.status for n in range(32)] == ["hit"] * 32
    assert cache.delete_tag("doc") == 32
    cache.close()


class RestartsThenBusy(RestartsBeforeValues):
    """As its parent, and the tag write that follows the restart finds no connection free."""

    def __init__(self, server: ValkeyServer) -> None:
        super().__init__(server)
        self.restarted = False

    def _restart_if_armed(self) -> None:
        self.restarted = self.restarted or self.armed
        super()._restart_if_armed()

    def tag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        if self.restarted:
            raise StoreBusy("no redis connection free within 0.25 s")
        super().tag(tag, keys, ttl)

    async def atag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        if self.restarted:
            raise StoreBusy("no redis connection free within 0.25 s")
        await super().atag(tag, keys, ttl)


def test_an_entry_whose_retag_after_a_suspected_restart_fails_is_kept(
    own_server: ValkeyServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The restart is only suspected (a value answered on a connection opened since the
    records were written): when the records cannot be written again, the paid answer is
    kept, with a warning (it was deleted)."""
    store = RestartsThenBusy(own_server)
    cache = deja.Cache(store=store, ttl=60)
    assert cache.put(question(0), chat_response(), control={"tags": ["doc"]})
    store.armed = True
    with caplog.at_level(logging.WARNING, logger="deja"):
        assert cache.put(question(1), chat_response(), control={"tags": ["doc"]})
    assert store.restarted and not store.armed
    assert cache.get(question(1)).info.status == "hit"
    assert "tagged entries kept whose tag records could not be written again" in caplog.text
    cache.close()


async def test_an_async_entry_whose_retag_after_a_suspected_restart_fails_is_kept(
    own_server: ValkeyServer,
) -> None:
    store = RestartsThenBusy(own_server)
    cache = deja.AsyncCache(store=store, ttl=60)
    assert await cache.put(question(0), chat_response(), control={"tags": ["doc"]})
    store.armed = True
    assert await cache.put(question(1), chat_response(), control={"tags": ["doc"]})
    assert store.restarted
    assert (await cache.get(question(1))).info.status == "hit"
    await cache.aclose()


class RestartsBetweenRecords(RedisStore):
    """A RedisStore whose server restarts once, between an entry's first tag record (its
    namespace's, lost with the rest) and its second (its tenant's, written anew)."""

    def __init__(self, server: ValkeyServer) -> None:
        super().__init__(url=server.url, op_timeout=2.0, connect_timeout=2.0)
        self.server = server
        self.armed = False
        self.records = 0

    def tag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        if self.armed:
            self.records += 1
            if self.records == 2:
                self.armed = False
                self.server.restart()
        super().tag(tag, keys, ttl)


def test_a_restart_between_an_entry_s_records_is_no_blind_spot(own_server: ValkeyServer) -> None:
    """The second record and the value went on the same connection, opened after the
    restart: the value was still answered on a connection opened after the first record
    was sent, so the lost first record is written again (a count read after the tag
    write, rather than before its first record, would have missed it)."""
    store = RestartsBetweenRecords(own_server)
    cache = deja.Cache(store=store, ttl=60)
    assert cache.put(question(0), chat_response(), control={"tags": ["doc"]})  # warm pool
    store.armed = True
    assert cache.put(question(1), chat_response(), control={"tags": ["doc"]})
    assert store.records == 2 and not store.armed
    assert cache.delete_tag("doc", namespace=None) == 1  # (the namespace's record)
    assert cache.get(question(1)).info.status == "miss"
    cache.close()
