"""TieredStore over Redis with the Redis invalidation bus, across real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

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
