"""An entry's tag records and its value, written one after the other, across a restart.

The cache writes an entry's tag records before its value. A server that restarted without
persistence between the two (its data gone, the pooled connections stale) took the value
on a fresh connection and had no record naming it: ``delete_tag`` missed the entry, which
was served until its TTL. The store counts the connections it opens; a value written on
one opened since the tag records were is tagged again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import deja
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


def test_the_store_counts_the_connections_it_opens(own_server: ValkeyServer) -> None:
    store = RedisStore(url=own_server.url, op_timeout=2.0)
    assert store.connections_opened() == 0
    store.set("k", b"v", 60)
    first = store.connections_opened()
    assert first != 0
    store.get("k")
    assert store.connections_opened() == first  # (a pooled connection)
    own_server.restart()
    assert store.get("k") is None  # (sent again on a fresh connection)
    assert store.connections_opened() != first
    store.close()


async def test_the_store_counts_its_async_connections(own_server: ValkeyServer) -> None:
    store = RedisStore(url=own_server.url, op_timeout=2.0)
    await store.aset("k", b"v", 60)
    first = store.connections_opened()
    assert first != 0
    await store.aget("k")
    assert store.connections_opened() == first
    own_server.restart()
    assert await store.aget("k") is None
    assert store.connections_opened() != first
    await store.aclose()


def test_a_sentinel_store_counts_the_connections_to_its_master(
    redis_sentinel: redis_servers.ValkeySentinel,
) -> None:
    store = RedisStore(
        sentinels=redis_sentinel.sentinels,
        service_name=redis_servers.SENTINEL_SERVICE,
        op_timeout=2.0,
    )
    store.set("deja-s27-sentinel", b"v", 60)
    first = store.connections_opened()
    assert first != 0
    assert store.get("deja-s27-sentinel") == b"v"
    assert store.connections_opened() == first
    store.delete("deja-s27-sentinel")
    store.close()


def test_a_cluster_store_counts_nothing(redis_cluster: redis_servers.ValkeyCluster) -> None:
    """On a cluster an entry and its records live on different nodes: no order of writes
    keeps a node restarted empty from losing its records (see the module docstring)."""
    store = RedisStore(startup_nodes=redis_cluster.startup_nodes, op_timeout=2.0)
    store.set("deja-s27-cluster", b"v", 60)
    assert store.connections_opened() == 0
    store.delete("deja-s27-cluster")
    store.close()
