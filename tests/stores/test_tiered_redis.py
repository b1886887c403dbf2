"""TieredStore over Redis with the Redis invalidation bus, across real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from deja.stores.bus import Invalidation
from deja.stores.memory import MemoryStore
from deja.stores.redis import RedisStore
from deja.stores.redis_bus import RedisInvalidationBus
from deja.stores.tiered import TieredStore

READER = textwrap.dedent(
    """
    import sys, time
    from deja.stores.memory import MemoryStore
    from deja.stores.redis import RedisStore
    from deja.stores.redis_bus import RedisInvalidationBus
    from deja.stores.tiered import TieredStore

    url = sys.argv[1]
    store = TieredStore(l1=MemoryStore(), l2=RedisStore(url=url), bus=RedisInvalidationBus(url=url))
    deadline = time.monotonic() + 10
    while store.get("shared") != b"v1" or store.l1.get("shared") is None:  # subscribed and promoted
        if time.monotonic() > deadline:
            sys.exit("never promoted")
        time.sleep(0.01)
    print("ready", flush=True)
    while store.l1.get("shared") is not None:
        time.sleep(0.002)
    print(f"evicted {time.time():.6f}", flush=True)
    """
)


def wait_healthy(store: TieredStore) -> None:
    store.get("warm-up")
    deadline = time.monotonic() + 5
    while not store.state.bus.healthy:
        assert time.monotonic() < deadline, "the bus never subscribed"
        time.sleep(0.01)


@pytest.mark.parametrize("op", ["delete", "clear", "overwrite"])
def test_another_process_l1_is_evicted_within_100ms(redis_server: Any, op: str) -> None:
    url = redis_server.url
    writer = TieredStore(
        l1=MemoryStore(), l2=RedisStore(url=url), bus=RedisInvalidationBus(url=url)
    )
    wait_healthy(writer)
    writer.set("shared", b"v1", 600)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        sent = time.time()
        if op == "delete":
            writer.delete("shared")
        elif op == "clear":
            writer.clear("sha")
        else:
            writer.set("shared", b"v2", 600)
        line = reader.stdout.readline().split()
        assert line[0] == "evicted"
        assert (float(line[1]) - sent) * 1000 < 100
    finally:
        reader.kill()
        reader.wait()
        writer.close()


def test_subscription_down_bypasses_l1_until_back(redis_server: Any) -> None:
    url = redis_server.url
    store = TieredStore(
        l1=MemoryStore(),
        l2=RedisStore(url=url),
        bus=RedisInvalidationBus(url=url, reconnect_max=0.2),
    )
    try:
        wait_healthy(store)
        store.set("k", b"v", 600)
        assert store.l1.get("k") == b"v"
        # kill this client's subscription connection from the server side
        admin = redis_server.client()
        for client in admin.client_list():
            if client.get("cmd") in ("subscribe", "ssubscribe") or int(client.get("sub", 0)) > 0:
                admin.client_kill_filter(_id=client["id"])
        deadline = time.monotonic() + 2
        while store.state.l1_enabled:
            assert time.monotonic() < deadline, "the outage was not noticed"
            time.sleep(0.01)
        assert len(store.l1) == 0
        assert store.get("k") == b"v" and store.l1.get("k") is None  # read from L2, not kept
        deadline = time.monotonic() + 3
        while not store.state.l1_enabled:
            assert time.monotonic() < deadline, "the subscription did not come back"
            time.sleep(0.01)
        assert store.get("k") == b"v" and store.l1.get("k") == b"v"
    finally:
        store.close()


def test_a_silently_dropped_subscription_is_found_by_pings(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscription dropped without a word (a NAT forgetting an idle connection; here a
    frozen server) left the bus "healthy" for ever: other processes' deletes never came
    and this L1 served deleted answers. Unanswered pings mark the bus down."""
    import deja.stores.redis_bus as redis_bus
    from tests.stores import redis_servers

    monkeypatch.setattr(redis_bus, "_PING_EVERY", 0.2)
    monkeypatch.setattr(redis_bus, "_SILENCE", 0.6)
    with redis_servers.running(redis_servers.start_standalone(tmp_path)) as server:
        store = TieredStore(
            l1=MemoryStore(),
            l2=RedisStore(url=server.url),
            bus=RedisInvalidationBus(url=server.url, reconnect_max=0.2),
        )
        try:
            wait_healthy(store)
            time.sleep(1.0)  # idle, pinged and answered: still up
            assert store.state.bus.healthy
            server.pause()
            deadline = time.monotonic() + 5
            # (the bus says it is down, then tells the store: wait for both)
            while store.state.bus.healthy or store.state.l1_enabled:
                assert time.monotonic() < deadline, "the silence was not noticed"
                time.sleep(0.05)
            server.resume()
            wait_healthy(store)
        finally:
            server.resume()
            store.close()


def test_the_bus_moves_on_to_the_next_node_and_warns_once_per_interval(
    redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A tiered cache over a cluster kept its bus on the first startup node: when that
    node failed over, the L1 stayed off for good and every write warned."""
    import logging

    from tests.stores.redis_servers import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    bus = RedisInvalidationBus(url=[dead, redis_server.url], reconnect_max=0.2)
    store = TieredStore(l1=MemoryStore(), l2=RedisStore(url=redis_server.url), bus=bus)
    try:
        wait_healthy(store)  # subscribed on the second URL
        with caplog.at_level(logging.WARNING, logger="deja.stores.tiered"):
            for i in range(20):
                store.delete(f"k{i}")  # published on the second URL, no warning
        assert not [r for r in caplog.records if "publish failed" in r.getMessage()]
        alone = RedisInvalidationBus(url=dead)
        with caplog.at_level(logging.WARNING, logger="deja.stores.tiered"):
            for i in range(20):
                alone.publish(Invalidation("me", (f"k{i}",), None))
        assert len([r for r in caplog.records if "publish failed" in r.getMessage()]) == 1
        alone.close()
    finally:
        store.close()


def test_a_node_that_takes_the_connection_and_never_answers_is_passed_over(
    redis_server: Any,
) -> None:
    """The listener's connection had no read timeout: a node that accepted the connection
    and never answered (here a socket nobody reads) held it for good, before any ping."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts; nobody answers
    hung = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    bus = RedisInvalidationBus(url=[hung, redis_server.url], reconnect_max=0.2)
    store = TieredStore(l1=MemoryStore(), l2=RedisStore(url=redis_server.url), bus=bus)
    try:
        wait_healthy(store)  # on the second node, within wait_healthy's 5 s
    finally:
        store.close()
        silent.close()


def test_an_async_publish_on_a_connection_the_server_closed_while_idle_is_sent_again(
    tmp_path: Any,
) -> None:
    """A Redis that closes idle clients (`timeout`): the async publisher's pooled connection
    was gone at the next delete, and the invalidation lost (other hosts' L1s served the
    deleted answer for l1_ttl) while Redis was healthy."""
    import asyncio

    from tests.stores.redis_servers import ValkeyServer

    server = ValkeyServer(tmp_path, extra_args=["--timeout", "1"]).start()
    heard: list[Invalidation] = []
    listener = RedisInvalidationBus(url=server.url)
    publisher = RedisInvalidationBus(url=server.url)
    try:
        listener.subscribe(heard.append, lambda healthy: None)
        deadline = time.monotonic() + 5
        while not listener.healthy:
            assert time.monotonic() < deadline, "the listener never subscribed"
            time.sleep(0.01)

        async def publish_twice() -> None:
            await publisher.apublish(Invalidation(origin="a", keys=("k1",)))
            await asyncio.sleep(2.5)  # idle past the server's timeout: it closes the client
            await publisher.apublish(Invalidation(origin="a", keys=("k2",)))
            await asyncio.sleep(0.3)

        asyncio.run(publish_twice())
        assert [event.keys for event in heard] == [("k1",), ("k2",)]
    finally:
        listener.close()
        publisher.close()
        server.kill()
