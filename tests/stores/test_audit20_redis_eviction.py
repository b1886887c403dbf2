"""RedisStore reads the server's eviction policy and warns when tag records may go (audit 20, #2).

With ``maxmemory`` and ``allkeys-lru``, tag records (written once, never read) were evicted
before the hot entries they named: ``delete_tag`` deleted nothing and all 20 tagged answers
stayed served. A record carries its longest entry's TTL, so the ``volatile-*`` policies
evict records too (``volatile-ttl`` among them: a record expires about when its last entry
does). Each test starts a valkey-server of its own with the policy it needs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("redis")

from deja.stores.redis import RedisStore
from tests.stores import redis_servers
from tests.stores.redis_servers import ValkeyCluster, ValkeyServer

LOGGER = "deja.stores.redis"


def start(tmp_path: Path, *args: str, config: str | None = None) -> ValkeyServer:
    config_file = None
    if config is not None:
        config_file = tmp_path / "valkey.conf"
        config_file.write_text(config)
    return ValkeyServer(tmp_path / "data", extra_args=args, config_file=config_file).start()


@pytest.fixture
def evicting(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ValkeyServer]:
    """A server with 8 MB of ``maxmemory`` and the policy the test is parametrized with."""
    policy: str = request.param
    with redis_servers.running(
        start(tmp_path, "--maxmemory", "8mb", "--maxmemory-policy", policy)
    ) as server:
        yield server


def policy_read(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Wait for the store's (background) read of the policy; the warnings it logged."""
    deadline = time.monotonic() + 5
    while not any("eviction policy read" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the eviction policy was never read"
        time.sleep(0.01)
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == LOGGER]


@pytest.mark.parametrize(
    "evicting",
    ["allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-random", "volatile-ttl"],
    indirect=True,
)
def test_a_policy_that_may_evict_tag_records_is_warned_of_once(
    evicting: ValkeyServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    store = RedisStore(url=evicting.url)
    store.set("k", b"v", 60)
    (warning,) = policy_read(caplog)
    message = warning.getMessage()
    assert "tag records" in message and "noeviction" in message
    assert "without one is never freed" in message  # the advice's limit: entries with no TTL
    store.close()
    for _ in range(3):  # a new client, the same store: read once
        assert store.get("k") == b"v"
        store.close()
    time.sleep(0.1)
    assert policy_read(caplog) == [warning]


@pytest.mark.parametrize("evicting", ["allkeys-lru"], indirect=True)
async def test_the_async_client_reads_the_policy_too(
    evicting: ValkeyServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    store = RedisStore(url=evicting.url)
    assert await store.aget("k") is None
    deadline = time.monotonic() + 5
    while not any("eviction policy read" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the eviction policy was never read"
        await asyncio.sleep(0.01)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "allkeys-lru" in warnings[0].getMessage()
    await store.aclose()


@pytest.mark.parametrize("evicting", ["noeviction"], indirect=True)
def test_a_policy_that_keeps_tag_records_is_not_warned_of(
    evicting: ValkeyServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    store = RedisStore(url=evicting.url)
    store.set("k", b"v", 60)
    assert policy_read(caplog) == []
    store.close()


def test_no_maxmemory_is_not_warned_of_even_under_allkeys_lru(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with redis_servers.running(start(tmp_path, "--maxmemory-policy", "allkeys-lru")) as server:
        store = RedisStore(url=server.url)
        store.set("k", b"v", 60)
        assert policy_read(caplog) == []
        store.close()


def test_a_server_refusing_info_is_let_go_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Managed services refuse admin commands; here INFO itself is renamed away.
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    config = 'maxmemory 8mb\nmaxmemory-policy allkeys-lru\nrename-command INFO ""\n'
    with redis_servers.running(start(tmp_path, config=config)) as server:
        store = RedisStore(url=server.url)
        store.set("k", b"v", 60)
        deadline = time.monotonic() + 5
        while not any(
            "reading the eviction policy failed" in r.getMessage() for r in caplog.records
        ):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert store.get("k") == b"v"
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
        store.close()


async def test_a_cluster_reads_every_master(
    redis_cluster: ValkeyCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    for sync in (True, False):
        caplog.clear()
        store = RedisStore(startup_nodes=redis_cluster.startup_nodes)
        if sync:
            store.get("k")
        else:
            await store.aget("k")
        deadline = time.monotonic() + 5
        while not any("eviction policy read" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the eviction policy was never read"
            await asyncio.sleep(0.01)
        (read,) = [r for r in caplog.records if "eviction policy read" in r.getMessage()]
        assert read.getMessage().count("bytes)") == len(redis_cluster.nodes)
        await store.aclose()


def test_delete_tag_frees_a_store_full_under_noeviction(tmp_path: Path) -> None:
    """The drop script was refused as out of memory (OOM command not allowed) when the
    tag's deleted entries freed less than the store was over: every delete_tag raised, its
    entries deleted, until memory freed by itself."""
    import deja
    from tests.helpers import chat_request, chat_response

    server = start(tmp_path, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    with redis_servers.running(server):
        store = RedisStore(url=server.url)
        cache = deja.Cache(store=store, ttl=600, compress_min_bytes=10**9)
        for n in range(3):  # small tagged answers first
            cache.put(chat_request(f"tagged {n}"), chat_response("ok"), control={"tags": ["doc"]})
        for n in range(1000):  # then large untagged ones until the store refuses one
            cache.put(chat_request(f"big {n}"), chat_response("x" * 50_000))
            if cache.get(chat_request(f"big {n}")).entry is None:
                break
        else:
            pytest.fail("the store never filled up")
        assert cache.delete_tag("doc") == 3
        assert cache.get(chat_request("tagged 0")).entry is None
        cache.close()
