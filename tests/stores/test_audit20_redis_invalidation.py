"""Redis invalidation beside calls in flight and failing nodes.

* ``clear`` (all, or one namespace) deletes entries only: the single-flight locks of calls
  in flight stay, uncounted, on a standalone server, a cluster and a tiered store's Redis
  L2 (a deleted lock let another process's identical miss call upstream a second time);
* ``delete_tag`` on a cluster with a master unreachable raises and keeps the tag's
  records, so its retry deletes that master's tagged entries once it answers (it returned
  a partial count and dropped the records: those entries were served again, for good).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import deja
from deja._embedding_items import batch_lock_name
from deja.errors import StoreError
from deja.request import Request
from deja.stores.base import locking_of
from deja.stores.memory import MemoryStore
from deja.stores.redis import RedisStore
from deja.stores.tiered import TieredStore
from tests.helpers import chat_response
from tests.stores import redis_servers
from tests.stores.redis_servers import ValkeyCluster, ValkeyServer


def question(n: int) -> Request:
    return Request.chat(model="gpt-4o", messages=[{"role": "user", "content": f"question {n}"}])


# -- clear and locks -----------------------------------------------------------------------


async def test_clear_deletes_entries_and_leaves_every_lock(
    topology: ValkeyServer | ValkeyCluster, make_redis: Callable[..., RedisStore]
) -> None:
    store = make_redis(topology)
    cache = deja.Cache(store=store)
    key = cache.key(question(1))
    scope = key.rpartition(":")[0] + ":"
    locks = [
        key + ":lock",  # a miss's lock, as the cache names it
        batch_lock_name(f"{key}|{cache.key(question(2))}") + ":lock",  # a batch of embeddings
    ]
    tokens = [store.lock(name, ttl=30) for name in locks]
    assert None not in tokens
    # an entry whose key reads as a lock (a custom key builder's digest may end so)
    lookalike = scope + "custom-digest:lock"
    store.set(key, b"entry", 60)
    store.set(lookalike, b"entry too", 60)
    store._ops().client.hset(scope + "not-a-string:lock", "field", "value")  # no lock either

    assert store.clear(scope) == 3
    assert store.get_many([key, lookalike]) == [None, None]
    assert [store.lock(name, ttl=30) for name in locks] == [None, None], "the locks are held"
    assert await store.aclear("") == 0  # every prefix, async: still no lock counted
    assert [await store.alock(name, ttl=30) for name in locks] == [None, None]
    # their holders still release (and extend) them
    assert store.extend(locks[0], str(tokens[0]), ttl=30) is True
    for name, token in zip(locks, tokens, strict=True):
        store.unlock(name, str(token))
    assert None not in [store.lock(name, ttl=30) for name in locks]


def test_clear_while_a_call_is_in_flight_keeps_it_the_only_call(
    topology: ValkeyServer | ValkeyCluster, make_redis: Callable[..., RedisStore]
) -> None:
    """Two caches are two processes sharing Redis: B's identical miss waits for A's call
    across a clear (the clear leaves A's lock), and then calls: A's answer, asked for
    before the clear, is not stored after it."""
    a = deja.Cache(store=make_redis(topology), ttl=600)
    b = deja.Cache(store=make_redis(topology), ttl=600)
    calls: list[str] = []
    called, release = threading.Event(), threading.Event()

    def upstream() -> dict[str, Any]:
        calls.append(threading.current_thread().name)
        called.set()
        assert release.wait(10)
        return chat_response()

    results: dict[str, deja.CacheResult] = {}

    def fetch(cache: deja.Cache, name: str) -> None:
        results[name] = cache.fetch(question(7), upstream)

    first = threading.Thread(target=fetch, args=(a, "a"), name="a")
    second = threading.Thread(target=fetch, args=(b, "b"), name="b")
    first.start()
    try:
        assert called.wait(10)
        assert a.clear() == 0, "A's lock is no entry"
        assert a.clear(namespace=None) == 0  # the default namespace's scope
        assert b.clear(tenant=None) == 0
        second.start()
        deadline = time.monotonic() + 0.5  # B had its time to call, had it not waited
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert calls == ["a"], "B called while A's call was in flight"
    finally:
        release.set()
        first.join(10)
        if second.is_alive():
            second.join(10)
    assert calls == ["a", "b"]
    assert (results["a"].info.status, results["b"].info.status) == ("miss", "miss")


def test_clear_of_a_tiered_store_leaves_the_locks_of_its_redis_l2(
    redis_server: ValkeyServer,
) -> None:
    redis_server.flush()
    store = TieredStore(l1=MemoryStore(), l2=RedisStore(url=redis_server.url))
    try:
        locking = locking_of(store)
        assert locking is not None
        token = locking.lock("deja:v1:0123456789abcdef:" + "e" * 64 + ":lock", ttl=30)
        assert token is not None
        store.set("deja:v1:0123456789abcdef:" + "e" * 64, b"entry", 60)
        assert store.clear("deja:") == 1
        assert locking.lock("deja:v1:0123456789abcdef:" + "e" * 64 + ":lock", ttl=30) is None
    finally:
        store.close()


# -- delete_tag with a cluster node down ---------------------------------------------------


async def test_delete_tag_with_a_cluster_node_down_raises_and_its_retry_finishes(
    tmp_path: Path, make_redis: Callable[..., RedisStore]
) -> None:
    cluster = redis_servers.start_cluster(tmp_path)
    try:
        for node in cluster.nodes:  # the others answer while one is away
            node.client().config_set("cluster-require-full-coverage", "no")
        store = make_redis(cluster)
        cache = deja.Cache(store=store, ttl=600)
        acache = deja.AsyncCache(store=store, ttl=600)
        requests = [question(n) for n in range(30)]
        for request in requests:
            assert cache.put(request, chat_response(), control={"tags": ["doc:42"]})
        victim = cluster.nodes[1]
        client = store._ops().client
        away = [r for r in requests if client.get_node_from_key(cache.key(r)).port == victim.port]
        assert 0 < len(away) < len(requests)

        victim.pause()  # a node unreachable: a GC pause, a network blip, a failover's window
        try:
            with pytest.raises(StoreError, match="could not be read"):
                cache.delete_tag("doc:42")
            with pytest.raises(StoreError, match="could not be read"):
                await acache.delete_tag("doc:42")
            # the entries of the nodes that answer went at once
            here = [r for r in requests if r not in away]
            assert {cache.get(r).info.status for r in here} == {"miss"}
        finally:
            victim.resume()

        # The away node's entries outlived the failed deletes. Once they read as hits again
        # the node's breaker lets its keys through (a retry sent while it still rests may
        # delete some of them and raise for the others: that is a retry's part too).
        deadline = time.monotonic() + 10
        while {cache.get(r).info.status for r in away} != {"hit"}:
            assert time.monotonic() < deadline, "the away node's entries never came back"
            await asyncio.sleep(0.2)
        deleted = 0
        while True:  # the retry
            try:
                deleted += cache.delete_tag("doc:42")
                break
            except StoreError as exc:
                assert time.monotonic() < deadline, "delete_tag never succeeded again"
                went = re.search(r"\((\d+) entries deleted\)", str(exc))  # (None: none)
                deleted += int(went.group(1)) if went else 0
                await asyncio.sleep(0.2)
        assert deleted == len(away), "the records named the away node's entries still"
        assert {cache.get(r).info.status for r in away} == {"miss"}
        assert await acache.delete_tag("doc:42") == 0
    finally:
        cluster.kill()
