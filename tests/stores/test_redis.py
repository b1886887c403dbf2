"""RedisStore beyond the contract: real TTLs, Cluster and Sentinel, faults, pool bounds.

The contract suite (test_contract.py) runs against a standalone server and a 3-master
cluster too; it skips the tests that move a FakeClock, because Redis expires keys by its
own clock. The TTL tests here use short real TTLs instead.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.crc import key_slot

import deja
from deja.config import parse_config
from deja.errors import MissingDependencyError, StoreBusy, StoreError
from deja.request import Request
from deja.stores import Store, StoreStats, TagIndex
from deja.stores.redis import RedisStore
from tests.helpers import chat_response
from tests.stores import redis_servers
from tests.stores.redis_servers import ValkeyCluster, ValkeySentinel, ValkeyServer

# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def store(
    topology: ValkeyServer | ValkeyCluster, make_redis: Callable[..., RedisStore]
) -> RedisStore:
    return make_redis(topology)


def raw_clients(server: ValkeyServer | ValkeyCluster) -> list[redis.Redis]:
    """Plain clients to every master, to check what the store really did."""
    nodes = server.nodes if isinstance(server, ValkeyCluster) else [server]
    return [node.client() for node in nodes]


def pttl(server: ValkeyServer | ValkeyCluster, key: str) -> int:
    """PTTL of ``key`` on whichever master holds it (-2 when none does)."""
    for client in raw_clients(server):
        try:
            if client.exists(key):
                return int(client.pttl(key))
        except redis.exceptions.ResponseError:  # MOVED: another node owns the slot
            continue
        finally:
            client.close()
    return -2


def request_for(n: int) -> Request:
    return Request.chat(model="gpt-4o", messages=[{"role": "user", "content": f"question {n}"}])


# -- shape and construction ----------------------------------------------------------------


def test_is_a_store_with_tags_and_stats() -> None:
    store = RedisStore(url="redis://127.0.0.1:1/0")
    assert isinstance(store, Store)
    assert isinstance(store, TagIndex)
    assert isinstance(store, StoreStats)
    assert store.name == "redis"


def test_constructor_does_no_io() -> None:
    port = redis_servers.free_port()  # nothing listens there
    started = time.monotonic()
    RedisStore(url=f"redis://127.0.0.1:{port}/0")
    RedisStore(startup_nodes=[f"127.0.0.1:{port}"])
    RedisStore(sentinels=[("127.0.0.1", port)], service_name="nope")
    assert time.monotonic() - started < 0.05


def test_a_malformed_url_is_refused_without_its_password() -> None:
    with pytest.raises(ValueError) as refused:
        RedisStore(url="rediss//default:Pr0d-S3cret@cache.internal:6380/0")
    assert "Pr0d-S3cret" not in str(refused.value) and "***@cache.internal" in str(refused.value)
    with pytest.raises(ValueError, match="no valid port") as bad_port:
        RedisStore(url="redis://user:Pr0d-S3cret@cache.internal:63a9/0")
    assert "Pr0d-S3cret" not in str(bad_port.value)


def test_repr_hides_credentials() -> None:
    store = RedisStore(url="redis://user:hunter2@cache.internal:6380/2")
    assert "hunter2" not in repr(store)
    assert "cache.internal:6380" in repr(store)
    assert "hunter2" not in repr(RedisStore(host="h", password="hunter2"))


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"url": "redis://h", "host": "h"}, ValueError),
        ({"sentinels": ["h:26379"]}, ValueError),
        ({"sentinels": ["h:26379"], "service_name": "m", "startup_nodes": ["h:7000"]}, ValueError),
        ({"startup_nodes": ["h:7000"], "db": 1}, ValueError),
        ({"startup_nodes": ["h:7000"], "cluster": False}, ValueError),
        ({"startup_nodes": ["h:notaport"]}, ValueError),
        ({"op_timeout": 0}, ValueError),
        ({"connect_timeout": float("inf")}, ValueError),
        ({"op_timeout": "1"}, TypeError),
        ({"max_connections": 0}, ValueError),
        ({"max_connections": 2.5}, TypeError),
        ({"url": "redis://127.0.0.1:637O/0"}, ValueError),  # a letter O for a zero
    ],
)
def test_contradictory_options_are_rejected(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        RedisStore(**options)


def test_modes() -> None:
    assert RedisStore().mode == "standalone"
    assert RedisStore(url="redis://h:1/0", cluster=True).mode == "cluster"
    assert RedisStore(startup_nodes=[{"host": "h", "port": "7000"}, ("h", 7001)]).mode == "cluster"
    assert RedisStore(sentinels=["h:26379"], service_name="m").mode == "sentinel"


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` now raises ImportError
    with pytest.raises(MissingDependencyError) as caught:
        RedisStore(url="redis://127.0.0.1:6379/0")
    assert "pip install 'deja-llm[redis]'" in str(caught.value)
    assert caught.value.extra == "redis"


# -- TTLs, for real ------------------------------------------------------------------------


def test_set_applies_px(store: RedisStore, topology: ValkeyServer | ValkeyCluster) -> None:
    store.set("ttl", b"v", 60)
    store.set("forever", b"v", None)
    store.set_many({"many-1": b"v", "many-2": b"v"}, 30)
    store.set_many({"many-forever": b"v"}, None)
    assert 59_000 < pttl(topology, "ttl") <= 60_000
    assert pttl(topology, "forever") == -1
    assert 29_000 < pttl(topology, "many-1") <= 30_000
    assert 29_000 < pttl(topology, "many-2") <= 30_000
    assert pttl(topology, "many-forever") == -1
    store.set("ttl", b"w", None)  # an overwrite without TTL removes the old one
    assert pttl(topology, "ttl") == -1
    store.set("forever", b"w", 0.0015)  # PX rounds down, never below 1 ms
    assert pttl(topology, "forever") in (-2, 0, 1)


async def test_async_set_applies_px(
    store: RedisStore, topology: ValkeyServer | ValkeyCluster
) -> None:
    await store.aset("ttl", b"v", 60)
    await store.aset_many({"many": b"v"}, 60)
    await store.aset("forever", b"v", None)
    assert 59_000 < pttl(topology, "ttl") <= 60_000
    assert 59_000 < pttl(topology, "many") <= 60_000
    assert pttl(topology, "forever") == -1


def test_short_ttls_expire_for_real(store: RedisStore) -> None:
    store.set("brief", b"1", 0.15)
    store.set_many({"brief-a": b"2", "brief-b": b"3"}, 0.15)
    store.set("forever", b"4", None)
    store.set("renewed", b"5", 0.15)
    assert store.get_many(["brief", "brief-a", "brief-b"]) == [b"1", b"2", b"3"]
    store.set("renewed", b"6", 5)  # an overwrite resets the TTL
    time.sleep(0.25)
    assert store.get("brief") is None
    assert store.get_many(["brief", "brief-a", "brief-b", "forever"]) == [None, None, None, b"4"]
    assert store.delete("brief-a") is False, "an expired key counts as absent"
    assert store.get("renewed") == b"6"
    store.set("brief", b"again", 1)
    assert store.get("brief") == b"again"


async def test_async_short_ttls_expire_for_real(store: RedisStore) -> None:
    await store.aset("brief", b"1", 0.15)
    await store.aset_many({"brief-many": b"2"}, 0.15)
    await store.aset("forever", b"3", None)
    await asyncio.sleep(0.25)
    assert await store.aget("brief") is None
    assert await store.aget_many(["brief", "brief-many", "forever"]) == [None, None, b"3"]
    with pytest.raises(ValueError):
        await store.aset("bad", b"4", -1)


async def test_locks_extend_only_for_their_holder(
    make_redis: Callable[..., RedisStore], topology: ValkeyServer | ValkeyCluster
) -> None:
    # (roomy timeouts: the first async call discovers the cluster, which a loaded CI runner
    # once took longer than the default op_timeout for)
    store = make_redis(topology, **ROOMY)
    token = store.lock("job:lock", ttl=1)
    assert token is not None and store.lock("job:lock", ttl=1) is None
    assert store.extend("job:lock", token, ttl=60) is True
    assert 59_000 < pttl(topology, "job:lock") <= 60_000
    assert store.extend("job:lock", "not-the-holder", ttl=600) is False
    assert pttl(topology, "job:lock") <= 60_000
    assert await store.aextend("job:lock", token, ttl=120) is True
    assert 119_000 < pttl(topology, "job:lock") <= 120_000
    await store.aunlock("job:lock", token)
    assert store.extend("job:lock", token, ttl=60) is False  # released: nothing to extend
    assert pttl(topology, "job:lock") == -2


def test_tag_record_outlives_its_entries(
    store: RedisStore, topology: ValkeyServer | ValkeyCluster
) -> None:
    store.tag("long", ["a"], 100)
    store.tag("long", ["b"], 10)  # a shorter TTL never shortens the record
    store.tag("brief", ["a"], 0.15)
    store.tag("forever", ["a"], None)
    store.tag("forever", ["b"], 100)  # a record without expiry keeps none
    clients = raw_clients(topology)
    try:

        def record_pttl(tag: str) -> int:
            key = b"\xffdeja-tag:{" + tag.encode() + b"}"
            for client in clients:
                try:
                    if client.exists(key):
                        return int(client.pttl(key))
                except redis.exceptions.ResponseError:
                    continue
            return -2

        assert 99_000 < record_pttl("long") <= 100_000
        assert record_pttl("forever") == -1
        time.sleep(0.25)
        assert store.keys_for("brief") == []
        assert sorted(store.keys_for("long")) == ["a", "b"]
    finally:
        for client in clients:
            client.close()


# -- escaping and errors -------------------------------------------------------------------

GLOB_KEYS = ["a*", "a*b", "a", "ab", "axb", "a?", "a?c", "a[1]", "a1", "a\\x", "a\\", "b*"]


def test_clear_escapes_glob_characters(store: RedisStore) -> None:
    store.set_many({key: key.encode() for key in GLOB_KEYS}, None)
    assert store.clear("a*") == 2
    assert store.get_many(["a*", "a*b", "ab", "axb"]) == [None, None, b"ab", b"axb"]
    assert store.clear("a?") == 2
    assert store.get("ab") == b"ab"
    assert store.clear("a[1]") == 1
    assert store.get("a1") == b"a1"
    assert store.clear("a\\") == 2
    assert store.get_many(["a", "ab", "axb", "a1", "b*"]) == [b"a", b"ab", b"axb", b"a1", b"b*"]


def test_clear_works_in_batches(store: RedisStore) -> None:
    store.set_many({f"bulk:{i}": b"v" for i in range(1_234)}, 60)
    store.set("other", b"v", 60)
    assert store.clear("bulk:") == 1_234
    assert store.get("other") == b"v"


def test_unreachable_server_is_a_store_error_within_the_connect_timeout() -> None:
    store = RedisStore(url=f"redis://127.0.0.1:{redis_servers.free_port()}/0")
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        store.get("k")
    assert time.monotonic() - started < 0.5
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    for call in (
        lambda: store.set("k", b"v", 1),
        lambda: store.get_many(["k"]),
        lambda: store.clear(""),
        lambda: store.tag("t", ["k"], None),
        store.usage,
    ):
        with pytest.raises(StoreError):
            call()
    store.close()


async def test_async_unreachable_server_is_a_store_error() -> None:
    store = RedisStore(url=f"redis://127.0.0.1:{redis_servers.free_port()}/0")
    with pytest.raises(StoreError) as caught:
        await store.aget("k")
    assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    await store.aclose()


def test_unreachable_cluster_is_a_store_error() -> None:
    store = RedisStore(startup_nodes=[("127.0.0.1", redis_servers.free_port())])
    with pytest.raises(StoreError):
        store.get("k")
    store.close()


def test_server_error_replies_are_store_errors(
    redis_server: ValkeyServer, make_redis: Callable[..., RedisStore]
) -> None:
    redis_server.flush()
    raw = redis_server.client()
    raw.lpush("a-list", b"x")
    raw.close()
    store = make_redis(redis_server)
    with pytest.raises(StoreError) as caught:
        store.get("a-list")  # WRONGTYPE
    assert isinstance(caught.value.__cause__, redis.exceptions.ResponseError)


def test_type_errors_are_raised_before_any_io() -> None:
    store = RedisStore(url=f"redis://127.0.0.1:{redis_servers.free_port()}/0")
    with pytest.raises(TypeError):
        store.set("k", "text", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.get(b"k")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.tag("t", "abc", None)
    with pytest.raises(ValueError):
        store.set_many({"k": b"v"}, 0)


# -- cluster -------------------------------------------------------------------------------


def test_cluster_spreads_keys_over_every_master(
    redis_cluster: ValkeyCluster, make_redis: Callable[..., RedisStore]
) -> None:
    redis_cluster.flush()
    store = make_redis(redis_cluster)
    keys = [f"deja:v1:scope:{i:04d}" for i in range(300)]
    store.set_many({key: key.encode() for key in keys}, 60)
    counts = []
    for client in raw_clients(redis_cluster):
        counts.append(int(client.dbsize()))
        client.close()
    assert sum(counts) == 300
    assert all(count > 0 for count in counts), counts

    wanted = [*keys[::-1], "missing", keys[7], "{hash}:a", "{hash}:b"]
    store.set_many({"{hash}:a": b"A", "{hash}:b": b"B"}, 60)  # one slot: one MGET
    got = store.get_many(wanted)
    assert got == [key.encode() for key in keys[::-1]] + [None, keys[7].encode(), b"A", b"B"]

    store.tag("across-slots", keys, 60)
    assert len(store.keys_for("across-slots")) == 300
    assert sorted(store.drop("across-slots")) == sorted(keys)
    assert store.usage().entries == 302
    assert store.clear("deja:v1:") == 300
    assert store.get_many(keys) == [None] * 300
    assert store.clear("") == 2


async def test_cluster_async_batches_across_slots(
    redis_cluster: ValkeyCluster, make_redis: Callable[..., RedisStore]
) -> None:
    redis_cluster.flush()
    store = make_redis(redis_cluster)
    keys = [f"k{i}" for i in range(250)]
    await store.aset_many({key: key.encode() for key in keys}, 60)
    assert await store.aget_many(keys) == [key.encode() for key in keys]
    await store.atag("t", keys, 60)
    assert len(await store.adrop("t")) == 250
    assert await store.aclear("k") == 250
    await store.aclose()


async def test_cluster_async_serves_a_slot_while_it_is_migrated(
    tmp_path: Path, make_redis: Callable[..., RedisStore]
) -> None:
    """Mid-reshard, keys already moved are answered with ASK: the asyncio client must send
    ASKING on the connection that carries the command. It sent them on two pooled
    connections, so under concurrency most commands for the slot failed (57 of 80 lookups,
    "TTL exhausted", closed connections) while the sync client had none."""
    cluster = redis_servers.start_cluster(tmp_path)
    try:
        # (timeouts of a loaded test machine, not the migration, must not fail it)
        store = make_redis(cluster, op_timeout=2.0, connect_timeout=2.0)
        moved, stays = "deja:{ask}moved", "deja:{ask}stays"
        elsewhere = "deja:{elsewhere}"
        slot = key_slot(moved.encode())
        await store.aset_many({moved: b"moved", stays: b"stays", elsewhere: b"elsewhere"}, 600)
        owners = [n for n in cluster.nodes if n.client().cluster("countkeysinslot", slot) == 2]
        source = owners[0]
        target = next(n for n in cluster.nodes if n is not source)
        src, dst = source.client(), target.client()
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.cluster("myid"))
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.cluster("myid"))
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", moved)

        for _ in range(3):
            gets = await asyncio.gather(*(store.aget(moved) for _ in range(16)))
            assert gets == [b"moved"] * 16
            both = [moved, elsewhere, stays]  # (the slot's keys are split: no MGET)
            many = await asyncio.gather(*(store.aget_many(both) for _ in range(16)))
            assert many == [[b"moved", b"elsewhere", b"stays"]] * 16
            assert store.get_many(both) == [b"moved", b"elsewhere", b"stays"]
            assert await asyncio.gather(*(store.aget(stays) for _ in range(16))) == [b"stays"] * 16
        # A key new to the slot is written where the slot is going.
        news = [f"deja:{{ask}}new{i}" for i in range(16)]
        await asyncio.gather(*(store.aset(key, key.encode(), 600) for key in news))
        assert await store.aget_many(news) == [key.encode() for key in news]
        assert dst.cluster("countkeysinslot", slot) == 1 + len(news)
        assert src.cluster("countkeysinslot", slot) == 1  # the key not moved
        await store.aclose()
    finally:
        cluster.kill()


async def test_a_dead_cluster_node_leaves_the_keys_of_the_others_served(
    tmp_path: Path, make_redis: Callable[..., RedisStore]
) -> None:
    """One breaker for the store opened on a dead node's errors and skipped every key
    (94% of lookups bypassed until the failover ended); each node has its own now."""
    cluster = redis_servers.start_cluster(tmp_path)
    try:
        store = make_redis(cluster, op_timeout=2.0)  # (a dead node refuses at once)
        cache = deja.Cache(store=store, ttl=600)
        requests = [request_for(n) for n in range(60)]
        for request in requests:
            cache.put(request, chat_response())
        victim = cluster.nodes[1]
        client = store._ops().client
        lost = {
            cache.key(r)
            for r in requests
            if client.get_node_from_key(cache.key(r)).port == victim.port
        }
        assert 5 < len(lost) < 40
        for node in cluster.nodes:  # a failover's window: the others answer meanwhile
            node.client().config_set("cluster-require-full-coverage", "no")
        victim.kill()
        # the dead node's keys first: five failures in a row opened the store's breaker
        ordered = sorted(requests, key=lambda r: cache.key(r) not in lost)
        for _ in range(3):
            statuses = {cache.key(r): cache.get(r).info.status for r in ordered}
            assert {k for k, status in statuses.items() if status == "hit"} == set(statuses) - lost
            assert {statuses[k] for k in lost} == {"miss"}  # not the whole store skipped
        # the async client too; and a batch read skips the dead node's keys at once
        keys = [cache.key(r) for r in requests]
        for key in sorted(lost)[:4]:  # (the first starts the client: no node known before)
            with pytest.raises(StoreError):
                await store.aget(key)
        with pytest.raises(StoreBusy):
            await store.aget(min(lost))
        assert await store.aget(next(k for k in keys if k not in lost)) is not None
        values = await store.aget_many(keys)
        assert [v is None for v in values] == [key in lost for key in keys]
        # batches alone (no single read to open the node's breaker), and past its rest
        fresh = make_redis(cluster, op_timeout=2.0)
        for _ in range(3):
            values = await fresh.aget_many(keys)
            assert [v is None for v in values] == [key in lost for key in keys]
            await asyncio.sleep(1.1)
    finally:
        cluster.kill()


def test_cache_delete_tag_on_a_cluster(
    redis_cluster: ValkeyCluster, make_redis: Callable[..., RedisStore]
) -> None:
    redis_cluster.flush()
    cache = deja.Cache(store=make_redis(redis_cluster), ttl=60)
    for n in range(60):
        assert cache.put(request_for(n), chat_response(), control={"tags": ["doc:1"]})
    assert cache.get(request_for(5)).info.status == "hit"
    assert cache.delete_tag("doc:1") == 60
    assert cache.get(request_for(5)).info.status == "miss"
    assert cache.clear() == 0


# -- sentinel ------------------------------------------------------------------------------


def test_sentinel_reads_and_writes(redis_sentinel: ValkeySentinel) -> None:
    redis_sentinel.master.flush()
    store = RedisStore(
        sentinels=redis_sentinel.sentinels, service_name=redis_servers.SENTINEL_SERVICE
    )
    assert store.mode == "sentinel"
    store.set("via-sentinel", b"v", 60)
    store.set_many({"a": b"1", "b": b"2"}, None)
    assert store.get_many(["via-sentinel", "a", "b", "c"]) == [b"v", b"1", b"2", None]
    raw = redis_sentinel.master.client()
    assert raw.get("via-sentinel") == b"v", "written to the master the sentinel names"
    raw.close()
    store.tag("t", ["a"], 60)
    assert store.drop("t") == ["a"]
    assert store.clear("") == 3
    store.close()


async def test_sentinel_async(redis_sentinel: ValkeySentinel) -> None:
    redis_sentinel.master.flush()
    store = RedisStore(
        sentinels=redis_sentinel.sentinels, service_name=redis_servers.SENTINEL_SERVICE
    )
    await store.aset("k", b"v", 60)
    assert await store.aget("k") == b"v"
    assert await store.aclear("") == 1
    await store.aclose()


# -- clients, loops and pools --------------------------------------------------------------


def test_injected_clients_are_used_and_not_closed(redis_server: ValkeyServer) -> None:
    redis_server.flush()
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    async_client = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port)
    store = RedisStore(client=client, async_client=async_client)
    store.set("k", b"v", None)

    async def read() -> bytes | None:
        value = await store.aget("k")
        await store.aclose()
        assert await async_client.get("k") == b"v", "an injected client stays open"
        await async_client.aclose()
        return value

    assert asyncio.run(read()) == b"v"
    store.close()
    assert client.get("k") == b"v"
    client.close()


def test_each_event_loop_gets_its_own_async_client(
    redis_server: ValkeyServer, make_redis: Callable[..., RedisStore]
) -> None:
    store = make_redis(redis_server)
    asyncio.run(store.aset("loop", b"1", 60))
    # A second loop: the first loop's connections cannot serve it.
    assert asyncio.run(store.aget("loop")) == b"1"
    assert store.get("loop") == b"1"
    for _ in range(5):
        asyncio.run(store.aget("loop"))
    assert len(store._async_by_loop) == 1, "the clients of closed loops are dropped"


def test_closed_store_reconnects_on_use(
    redis_server: ValkeyServer, make_redis: Callable[..., RedisStore]
) -> None:
    store = make_redis(redis_server)
    store.set("k", b"v", 60)
    store.close()
    assert store.get("k") == b"v"


def _connections(server: ValkeyServer, name: str) -> int:
    client = server.client()
    try:
        return sum(1 for c in client.client_list() if c.get("name") == name)
    finally:
        client.close()


# The pool tests check bounds, not latency: the production timeouts (100 ms per command,
# 250 ms to connect) can expire on a loaded CI machine while 50 connections open at once.
ROOMY = {"op_timeout": 5.0, "connect_timeout": 5.0, "pool_timeout": 30.0}


async def _hammer(store: RedisStore, requests: int, concurrency: int) -> list[str]:
    """``requests`` lookups and writes through ``store``, ``concurrency`` at a time."""
    errors: list[str] = []
    next_request = iter(range(requests))

    async def worker() -> None:
        for n in next_request:
            try:
                if n % 4 == 0:
                    await store.aset(f"pool:{n % 50}", b"v" * 100, 60)
                else:
                    await store.aget(f"pool:{n % 50}")
            except StoreError as exc:
                errors.append(str(exc))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


@pytest.mark.parametrize("max_connections", [8, 50])
async def test_pool_is_bounded(redis_server: ValkeyServer, max_connections: int) -> None:
    name = f"deja-pool-{max_connections}"
    store = RedisStore(
        url=redis_server.url, max_connections=max_connections, client_name=name, **ROOMY
    )
    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        sampler = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port)
        try:
            while not done.is_set():
                clients = await sampler.client_list()
                peak = max(peak, sum(1 for c in clients if c.get("name") == name))
                await asyncio.sleep(0.005)
        finally:
            await sampler.aclose()

    sampling = asyncio.create_task(sample())
    errors = await _hammer(store, requests=1_000, concurrency=64)
    done.set()
    await sampling
    after = _connections(redis_server, name)
    await store.aclose()
    assert errors == []
    assert 0 < after <= max_connections
    assert peak <= max_connections


async def test_cluster_pool_is_bounded_without_errors(
    redis_cluster: ValkeyCluster, make_redis: Callable[..., RedisStore]
) -> None:
    # redis-py's asyncio cluster raises instead of waiting when a node's pool is full;
    # the store's gate makes callers wait instead.
    store = make_redis(redis_cluster, max_connections=4, client_name="deja-cluster-pool", **ROOMY)
    assert await _hammer(store, requests=1_000, concurrency=64) == []
    for node in redis_cluster.nodes:
        # + 1: the cluster client keeps the connection it discovered the topology on.
        assert _connections(node, "deja-cluster-pool") <= 4 + 1
    await store.aclose()


# -- faults: a dead server and a hung one --------------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A server this test alone may kill, stop and restart."""
    with redis_servers.running(redis_servers.start_standalone(tmp_path / "own")) as server:
        yield server


def _lookups(cache: deja.Cache, count: int = 30) -> tuple[float, list[str], int]:
    """``count`` lookups: elapsed seconds, statuses, exceptions raised."""
    statuses: list[str] = []
    errors = 0
    started = time.monotonic()
    for _ in range(count):
        try:
            statuses.append(cache.get(request_for(1)).info.status)
        except Exception:
            errors += 1
    return time.monotonic() - started, statuses, errors


def _until_hit(cache: deja.Cache, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within + 1:
        if cache.get(request_for(1)).info.status == "hit":
            return time.monotonic() - started
        time.sleep(0.02)
    return float("inf")


def test_killed_server_costs_little_and_hits_resume(own_server: ValkeyServer) -> None:
    cache = deja.Cache(store=RedisStore(url=own_server.url), ttl=60)
    assert cache.put(request_for(1), chat_response())
    assert cache.get(request_for(1)).info.status == "hit"

    own_server.kill()
    elapsed, statuses, errors = _lookups(cache)
    print(f"\nSIGKILL: 30 lookups in {elapsed * 1000:.0f} ms: {sorted(set(statuses))}")
    assert errors == 0
    assert set(statuses) <= {"miss", "bypass"}
    assert "bypass" in statuses, "the breaker opened"
    assert elapsed < 3

    own_server.start()  # same port, empty (no persistence): write the entry again
    writer = deja.Cache(store=RedisStore(url=own_server.url), ttl=60)
    assert writer.put(request_for(1), chat_response())
    resumed = _until_hit(cache, within=2)
    print(f"SIGKILL: hits resumed {resumed * 1000:.0f} ms after the restart")
    assert resumed < 2
    writer.close()
    cache.close()


def test_hung_server_costs_little_and_hits_resume(own_server: ValkeyServer) -> None:
    cache = deja.Cache(store=RedisStore(url=own_server.url), ttl=60)
    assert cache.put(request_for(1), chat_response())

    own_server.pause()  # SIGSTOP: connections are accepted, nothing is ever answered
    try:
        elapsed, statuses, errors = _lookups(cache)
    finally:
        own_server.resume()
    print(f"\nSIGSTOP: 30 lookups in {elapsed * 1000:.0f} ms: {sorted(set(statuses))}")
    assert errors == 0
    assert set(statuses) <= {"miss", "bypass"}
    assert elapsed < 3

    resumed = _until_hit(cache, within=2)
    print(f"SIGSTOP: hits resumed {resumed * 1000:.0f} ms after SIGCONT")
    assert resumed < 2
    cache.close()


async def test_async_hung_server_costs_little_and_hits_resume(own_server: ValkeyServer) -> None:
    cache = deja.AsyncCache(store=RedisStore(url=own_server.url), ttl=60)
    assert await cache.put(request_for(1), chat_response())
    assert (await cache.get(request_for(1))).info.status == "hit"

    own_server.pause()
    statuses: list[str] = []
    try:
        started = time.monotonic()
        for _ in range(30):
            statuses.append((await cache.get(request_for(1))).info.status)
        elapsed = time.monotonic() - started
    finally:
        own_server.resume()
    print(f"\nSIGSTOP (async): 30 lookups in {elapsed * 1000:.0f} ms")
    assert set(statuses) <= {"miss", "bypass"}
    assert elapsed < 3

    started = time.monotonic()
    while (await cache.get(request_for(1))).info.status != "hit":
        assert time.monotonic() - started < 2, "hits did not resume"
        await asyncio.sleep(0.02)
    await cache.aclose()


# -- configuration -------------------------------------------------------------------------


def test_config_builds_a_redis_store(redis_server: ValkeyServer, tmp_path: Path) -> None:
    settings = parse_config(
        {"caching": {"type": "redis", "url": redis_server.url, "ttl": 60}}, base_dir=tmp_path
    )
    assert settings.caching is not None
    store = settings.caching.build_store()
    assert isinstance(store, RedisStore)
    assert store.mode == "standalone"
    store.set("from-config", b"v", 60)
    assert store.get("from-config") == b"v"
    store.close()


def test_litellm_cache_params_build_a_redis_store(own_server: ValkeyServer, tmp_path: Path) -> None:
    raw = own_server.client()
    raw.config_set("requirepass", "s3cret")
    raw.close()

    def settings(password: str | None) -> Any:
        params: dict[str, object] = {
            "type": "redis",
            "host": "127.0.0.1",
            "port": str(own_server.port),  # LiteLLM configs often quote it
            "socket_timeout": 0.5,
        }
        if password is not None:
            params["password"] = "os.environ/REDIS_PASSWORD"
        return parse_config(
            {"litellm_settings": {"cache": True, "cache_params": params}},
            base_dir=tmp_path,
            environ={"REDIS_PASSWORD": password or ""},
        )

    config = settings("s3cret")
    caching = config.caching
    assert caching is not None and caching.type == "redis"
    assert caching.options["port"] == own_server.port
    assert caching.options["op_timeout"] == 0.5
    assert "s3cret" not in repr(config)
    store = caching.build_store()
    assert isinstance(store, RedisStore)
    store.set("k", b"v", 60)
    assert store.get("k") == b"v"
    store.close()

    unauthenticated = settings(None).caching.build_store()
    with pytest.raises(StoreError) as caught:
        unauthenticated.get("k")
    assert isinstance(caught.value.__cause__, redis.exceptions.AuthenticationError)
    unauthenticated.close()


def test_config_cluster_and_sentinel_options(tmp_path: Path) -> None:
    cluster = parse_config(
        {
            "caching": {
                "type": "redis",
                "redis_startup_nodes": [{"host": "10.0.0.1", "port": "7000"}, "10.0.0.2:7001"],
            }
        },
        base_dir=tmp_path,
    )
    assert cluster.caching is not None
    store = cluster.caching.build_store()
    assert isinstance(store, RedisStore) and store.mode == "cluster"

    sentinel = parse_config(
        {
            "caching": {
                "type": "redis",
                "sentinel_nodes": [["10.0.0.5", 26379]],
                "service_name": "mymaster",
                "max_connections": 10,
            }
        },
        base_dir=tmp_path,
    )
    assert sentinel.caching is not None
    store = sentinel.caching.build_store()
    assert isinstance(store, RedisStore) and store.mode == "sentinel"


def test_config_rejects_bad_redis_options(tmp_path: Path) -> None:
    from deja.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config({"caching": {"type": "redis", "port": 70000}}, base_dir=tmp_path)
    assert caught.value.path == "caching.port"
    with pytest.raises(ConfigError) as caught:
        parse_config({"caching": {"type": "redis", "max_conections": 3}}, base_dir=tmp_path)
    assert "max_connections" in str(caught.value)
    with pytest.raises(ConfigError):
        parse_config(
            {"caching": {"type": "redis", "sentinel_nodes": ["h:26379"]}}, base_dir=tmp_path
        ).caching.build_store()  # type: ignore[union-attr]


def test_a_sync_burst_that_finds_no_free_connection_is_store_busy(
    redis_server: ValkeyServer,
) -> None:
    """The sync standalone pool's own "No connection available" was a plain StoreError:
    a burst on a healthy server opened the breaker (75% of lookups skipped the store in an
    audit) where the async cache, gated, reported StoreBusy misses."""
    import threading

    import deja
    from deja.errors import StoreBusy
    from tests.helpers import chat_request

    store = RedisStore(url=redis_server.url, max_connections=1, pool_timeout=0.001)
    cache = deja.Cache(store=store)
    errors: list[Exception] = []
    statuses: dict[str, int] = {}
    guard = threading.Lock()

    def work() -> None:
        for _ in range(100):
            try:
                store.get("deja:busy")
            except StoreError as exc:
                errors.append(exc)
            status = cache.get(chat_request("busy")).info.status
            with guard:
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    store.close()
    assert errors and all(isinstance(exc, StoreBusy) for exc in errors)
    assert statuses == {"miss": 1600}  # never skipped ("bypass"): the store is healthy


async def test_a_restarted_server_is_answered_on_fresh_connections(tmp_path: Path) -> None:
    """Every pooled connection was stale after a restart and failed once: a lookup served
    as a miss (a breaker strike), an admin delete raised StoreError although the server
    answered. A closed connection is replaced and the command sent once more."""
    with redis_servers.running(redis_servers.start_standalone(tmp_path)) as server:
        store = RedisStore(url=server.url)
        await asyncio.gather(*(store.aset(f"k{i}", b"v", 60) for i in range(8)))  # 8 pooled
        store.set("k", b"v", 60)
        server.restart()  # (persistence is off: the data is gone, the connections stale)
        assert await asyncio.gather(*(store.aget(f"k{i}") for i in range(8))) == [None] * 8
        assert store.get("k") is None
        await store.aset("k", b"again", 60)
        server.restart()
        assert await store.adelete("k") is False
        assert store.delete("k") is False
        await store.aclose()


async def test_only_commands_that_may_run_twice_are_sent_again_after_a_closed_connection() -> None:
    """The connection may die after the server ran a command, its reply lost: sent again,
    a lock taken by the first run was found taken (the lock orphaned for its TTL), and a
    tag record dropped by the first run was found empty (delete_tag reported 0 and left the
    answers served). Reads and writes of values are sent again, and a drop (made safe to
    run twice, below against a real server); taking a lock raises."""
    from redis.exceptions import ConnectionError as Closed

    from deja._async.redis_ops import AsyncRedisOps

    class RanThenClosed:
        """Runs each command, then loses the first reply of each kind."""

        def __init__(self) -> None:
            self.data: dict[str, object] = {}
            self.failed: set[str] = set()
            self.calls: list[str] = []

        def _lose_first(self, name: str) -> None:
            self.calls.append(name)
            if name not in self.failed:
                self.failed.add(name)
                raise Closed("Connection closed by server.")

        async def get(self, key: str) -> object:
            value = self.data.get(key)
            self._lose_first("get")
            return value

        async def set(self, key: str, value: object, px: object = None, nx: bool = False) -> object:
            if nx and key in self.data:
                return None
            self.data[key] = value
            self._lose_first("set-nx" if nx else "set")
            return True

        async def eval(self, script: str, numkeys: int, *args: object) -> object:
            self._lose_first("eval")
            return [b"deja:k"]

        async def unlink(self, *keys: object) -> int:
            self._lose_first("unlink")
            return 1

    client = RanThenClosed()
    ops = AsyncRedisOps(client)  # type: ignore[arg-type]
    await ops.aset("k", b"v", None)
    assert await ops.aget("k") == b"v"
    with pytest.raises(StoreError):
        await ops.alock("lock", ttl=30)
    assert await ops.adrop("tag") == ["deja:k"]  # made safe to run twice: sent again
    assert client.calls == [
        *("set", "set", "get", "get", "set-nx"),
        *("eval", "eval", "unlink", "unlink"),
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_a_thread_holds_a_connection_slot_can_use_the_store(
    tmp_path: Path,
) -> None:
    """The sync gate's slots held by a parent's threads at the fork were never given back
    in the child: with one connection, every child read raised StoreBusy for ever."""
    import threading

    from tests.helpers import finishes_in_a_fork_during

    with redis_servers.running(redis_servers.start_standalone(tmp_path)) as server:
        store = RedisStore(url=server.url, max_connections=1, **ROOMY)
        store.set("k", b"v", 60)
        server.pause()  # the parent's read holds its slot until the server answers
        threading.Timer(0.4, server.resume).start()
        assert finishes_in_a_fork_during(lambda: store.get("k"), lambda: store.get("k"))
        store.close()


def test_after_a_graceful_sentinel_failover_writes_go_to_the_new_master(tmp_path: Path) -> None:
    """redis-py asks the sentinels for the master (SENTINEL MASTERS) only when it opens a
    connection, and that answer named the old master until the failover was over: pooled
    connections went on writing to the old master, which accepts writes until it is
    demoted and then takes the new one's data. A delete that returned was undone."""
    from tests.stores.redis_servers import SENTINEL_SERVICE, _wait_until

    master = ValkeyServer(tmp_path / "m").start()
    replica = ValkeyServer(
        tmp_path / "r", extra_args=["--replicaof", "127.0.0.1", str(master.port)]
    ).start()
    (tmp_path / "s").mkdir()
    conf = tmp_path / "s" / "sentinel.conf"
    conf.write_text(
        f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master.port} 1\n"
        f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 500\n"
        f"sentinel failover-timeout {SENTINEL_SERVICE} 3000\n"
    )
    sentinel = ValkeyServer(tmp_path / "s", config_file=conf, extra_args=["--sentinel"]).start()
    try:
        admin = sentinel.client()
        _wait_until(
            lambda: len(admin.execute_command("SENTINEL", "REPLICAS", SENTINEL_SERVICE)) == 1,
            "the replica seen",
        )
        store = RedisStore(sentinels=[("127.0.0.1", sentinel.port)], service_name=SENTINEL_SERVICE)
        store.set("kept", b"v1", 600)
        _wait_until(lambda: replica.client().get("kept") == b"v1", "replicated", timeout=30)
        admin.execute_command("SENTINEL", "FAILOVER", SENTINEL_SERVICE)
        _wait_until(
            lambda: (
                admin.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE)[1]
                == str(replica.port).encode()
            ),
            "the promotion",
            timeout=60,  # (7 s quiet; over 20 s once on a loaded machine)
        )
        time.sleep(1.1)  # the store asks the sentinels at most once a second,
        store.get("any")  # when a command comes, in the background
        time.sleep(0.5)
        assert store.delete("kept") is True
        store.set("written", b"w", 600)
        assert replica.client().get("kept") is None  # on the new master: gone
        assert replica.client().get("written") == b"w"
        store.close()
    finally:
        for server in (master, replica, sentinel):
            server.kill()


def test_a_tag_drop_run_twice_reads_the_same_keys(redis_server: ValkeyServer) -> None:
    """The drop script run twice (its reply lost, sent again) found the record gone and
    returned nothing: the tagged answers stayed out of reach of every later delete_tag."""
    from deja._sync.redis_ops import _DROP_SCRIPT, _tag_key

    store = RedisStore(url=redis_server.url)
    store.tag("doc:7", ["deja:a", "deja:b"], 600)
    client = redis_server.client()
    record = _tag_key("doc:7")
    moved = record + b":dropping:test"
    first = client.eval(_DROP_SCRIPT, 2, record, moved, 600_000)
    again = client.eval(_DROP_SCRIPT, 2, record, moved, 600_000)
    assert sorted(first) == sorted(again) == [b"deja:a", b"deja:b"]
    assert not client.exists(record) and 0 < client.pttl(moved) <= 600_000
    store.tag("doc:7", ["deja:c"], 600)  # tagged again between the two runs: joins
    assert sorted(client.eval(_DROP_SCRIPT, 2, record, moved, 600_000)) == [
        b"deja:a",
        b"deja:b",
        b"deja:c",
    ]
    store.tag("doc:8", ["deja:d"], 600)
    assert store.drop("doc:8") == ["deja:d"] and store.drop("doc:8") == []
    assert not [k for k in client.scan_iter(match=b"*dropping*") if b"test" not in k]
    client.delete(moved)
    client.close()
    store.close()
