"""TieredStore: read-through, write-through, cross-store invalidation, bus outages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import deja
from deja.stores.bus import LocalInvalidationBus
from deja.stores.disk import DiskStore
from deja.stores.memory import MemoryStore
from deja.stores.tiered import TieredStore
from deja.testing import FakeClock
from tests.helpers import chat_request, chat_response


def pair(
    tmp_path: Path, clock: FakeClock
) -> tuple[TieredStore, TieredStore, DiskStore, LocalInvalidationBus]:
    """Two 'processes' (tiered stores) over one shared L2 and one bus."""
    l2 = DiskStore(tmp_path / "l2", clock=clock)
    bus = LocalInvalidationBus()
    a = TieredStore(l1=MemoryStore(clock=clock), l2=l2, bus=bus, l1_ttl=60)
    b = TieredStore(l1=MemoryStore(clock=clock), l2=l2, bus=bus, l1_ttl=60)
    return a, b, l2, bus


def test_read_through_and_write_through(tmp_path: Path, clock: FakeClock) -> None:
    a, b, l2, _ = pair(tmp_path, clock)
    a.set("k", b"v1", 600)
    assert a.l1.get("k") == b"v1" and l2.get("k") == b"v1"  # write-through
    assert b.l1.get("k") is None
    assert b.get("k") == b"v1"  # read-through
    assert b.l1.get("k") == b"v1"  # promoted


def test_deletes_overwrites_and_clears_reach_other_l1s(tmp_path: Path, clock: FakeClock) -> None:
    a, b, _, _ = pair(tmp_path, clock)
    a.set("k", b"v1", 600)
    assert b.get("k") == b"v1"
    a.set("k", b"v2", 600)
    assert b.l1.get("k") is None and b.get("k") == b"v2"
    a.delete("k")
    assert b.get("k") is None
    a.set("p:1", b"x", None)
    a.set("p:2", b"y", None)
    assert b.get("p:1") == b"x" and b.get("p:2") == b"y"
    assert a.clear("p:") == 2
    assert b.l1.get("p:1") is None and b.get("p:2") is None


def test_l1_copy_never_outlives_its_ttl(tmp_path: Path, clock: FakeClock) -> None:
    a, _, _, _ = pair(tmp_path, clock)
    a.set("short", b"v", 5)
    clock.advance(6)
    assert a.l1.get("short") is None
    assert a.get("short") is None
    a.set("long", b"v", 3600)
    clock.advance(61)  # past l1_ttl: the L1 copy is gone, the L2 one is not
    assert a.l1.get("long") is None and a.get("long") == b"v"


def test_bus_down_empties_and_bypasses_l1(tmp_path: Path, clock: FakeClock) -> None:
    a, b, l2, bus = pair(tmp_path, clock)
    a.set("k", b"v1", 600)
    assert b.get("k") == b"v1"
    bus.set_healthy(False)
    assert len(b.l1) == 0 and len(a.l1) == 0
    l2.set("k", b"changed elsewhere", 600)  # an invalidation that could not be delivered
    assert b.get("k") == b"changed elsewhere"
    assert b.l1.get("k") is None  # not kept while the bus is down
    bus.set_healthy(True)
    assert b.get("k") == b"changed elsewhere" and b.l1.get("k") == b"changed elsewhere"


async def test_async_twins(tmp_path: Path, clock: FakeClock) -> None:
    a, b, _, _ = pair(tmp_path, clock)
    await a.aset("k", b"v", 600)
    assert await b.aget("k") == b"v"
    assert await b.aget_many(["k", "missing"]) == [b"v", None]
    assert await a.adelete("k") is True
    assert await b.aget("k") is None


def test_cache_over_tiered_store_with_tags(tmp_path: Path, clock: FakeClock) -> None:
    a, b, _, _ = pair(tmp_path, clock)
    cache_a = deja.Cache(store=a, clock=clock)
    cache_b = deja.Cache(store=b, clock=clock)
    cache_a.put(chat_request(), chat_response(), control={"tags": ["doc"]})
    assert cache_b.get(chat_request()).info.status == "hit"
    assert cache_a.delete_tag("doc") == 1
    assert cache_b.get(chat_request()).info.status == "miss"


def test_tags_need_an_l2_with_a_tag_index(clock: FakeClock) -> None:
    from deja.errors import UnsupportedOperation
    from tests.test_cache import NoTagStore

    store = TieredStore(l2=NoTagStore())
    with pytest.raises(UnsupportedOperation):
        store.tag("t", ["k"], None)


def test_config_tiered_and_litellm_dual_cache(tmp_path: Path) -> None:
    from deja.config import parse_config

    settings = parse_config(
        {
            "caching": {
                "type": "dual_cache",
                "l1": {"type": "in-memory", "capacity": 100},
                "l2": {"type": "disk", "directory": "l2"},
            }
        },
        base_dir=tmp_path,
    )
    store = settings.caching.build_store()  # type: ignore[union-attr]
    assert isinstance(store, TieredStore) and isinstance(store.l2, DiskStore)
    assert isinstance(store.state.bus, LocalInvalidationBus)
    store.set("k", b"v", 60)
    assert store.get("k") == b"v"
    store.close()


def test_config_tiered_over_redis_uses_the_redis_bus(tmp_path: Path, redis_server: object) -> None:
    from deja.config import parse_config
    from deja.stores.redis import RedisStore
    from deja.stores.redis_bus import RedisInvalidationBus

    url = redis_server.url  # type: ignore[attr-defined]
    settings = parse_config(
        {"caching": {"type": "tiered", "l1_ttl": 30, "l2": {"type": "redis", "url": url}}},
        base_dir=tmp_path,
    )
    store = settings.caching.build_store()  # type: ignore[union-attr]
    assert isinstance(store, TieredStore) and isinstance(store.l2, RedisStore)
    assert isinstance(store.state.bus, RedisInvalidationBus) and store.state.l1_ttl == 30
    store.set("k", b"v", 60)
    assert store.get("k") == b"v"
    store.close()


def test_only_an_outage_is_reported_not_the_first_connection(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    bus = LocalInvalidationBus()
    bus.set_healthy(False)  # connecting, as a Redis bus is when the store is made
    store = TieredStore(l1=MemoryStore(clock=clock), l2=DiskStore(tmp_path), bus=bus)
    with caplog.at_level("WARNING"):
        store.set("k", b"v", 60)
        bus.set_healthy(True)
        assert not caplog.records  # the first connection is no outage ending
        bus.set_healthy(False)
        bus.set_healthy(True)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and "down" in said[0] and "back" in said[1]


def test_usage_is_the_shared_tiers(tmp_path: Path, clock: FakeClock) -> None:
    """What the store holds is what every process shares (the L2), not one process's L1."""
    a, b, l2, _ = pair(tmp_path, clock)
    for i in range(3):
        a.set(f"k{i}", b"v", 600)
    b.set("other", b"v", 600)
    assert a.usage().entries == b.usage().entries == l2.usage().entries == 4
    assert a.l1.usage().entries == 3
    assert not getattr(a, "per_process", False)  # one figure for every worker


def test_config_tiered_over_a_cluster_invalidates_through_its_first_node(
    tmp_path: Path, redis_cluster: Any
) -> None:
    """A dual_cache over a Redis Cluster had no bus (a local one, silently): a delete on
    one host left every other host serving its L1 copy for l1_ttl. Pub/sub reaches every
    node of a cluster: the first startup node carries the invalidations."""
    import time

    from deja.config import parse_config, tiered_bus_url, tiered_bus_urls
    from deja.stores.redis_bus import RedisInvalidationBus

    nodes = [f"{host}:{port}" for host, port in redis_cluster.startup_nodes]
    settings = parse_config(
        {"caching": {"type": "dual_cache", "l2": {"type": "redis", "startup_nodes": nodes}}},
        base_dir=tmp_path,
    )
    assert settings.caching is not None and settings.warnings == ()
    assert tiered_bus_url(settings.caching.options) == f"redis://{nodes[0]}/0"
    # every startup node, in order: the bus moves on when one fails over
    assert tiered_bus_urls(settings.caching.options) == [f"redis://{n}/0" for n in nodes]
    a, b = settings.caching.build_store(), settings.caching.build_store()
    assert isinstance(a, TieredStore) and isinstance(b, TieredStore)
    try:
        assert isinstance(a.state.bus, RedisInvalidationBus) and len(a.state.bus.urls) == 3
        a.set("k", b"v1", 600)
        deadline = time.monotonic() + 5
        while not (a.state.l1_enabled and b.state.l1_enabled) and time.monotonic() < deadline:
            a.get("k"), b.get("k")  # both subscribe, then keep an L1 copy
            time.sleep(0.02)
        assert b.get("k") == b"v1" and b.l1.get("k") == b"v1"
        a.delete("k")
        while b.l1.get("k") is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert b.get("k") is None
    finally:
        a.close()
        b.close()


def test_a_tiered_cache_whose_invalidations_stay_in_process_is_said_so(tmp_path: Path) -> None:
    from deja.config import parse_config

    for l2 in (
        {"type": "disk", "directory": "l2"},
        {"type": "redis", "sentinel_nodes": ["s:26379"], "service_name": "mymaster"},
    ):
        settings = parse_config({"caching": {"type": "tiered", "l2": l2}}, base_dir=tmp_path)
        (warning,) = settings.warnings
        assert "reach this process only" in warning and "caching.invalidation_url" in warning
    shared = parse_config(
        {"caching": {"type": "tiered", "l2": {"type": "disk", "directory": "l2"},
                     "invalidation_url": "redis://bus:6379/0"}},
        base_dir=tmp_path,
    )  # fmt: skip
    assert shared.warnings == ()


def test_the_bus_url_keeps_the_l2_s_credentials_tls_and_ipv6_address() -> None:
    from redis.connection import parse_url

    from deja.config import StoreSpec, tiered_bus_url

    options = {
        "startup_nodes": [("fd00::1", 7000), ("fd00::2", 7000)],
        "username": "bob",
        "password": "p/w@x:1",
        "ssl": True,
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_check_hostname": False,
    }
    url = tiered_bus_url({"l2": StoreSpec("redis", options)})
    assert url is not None
    parsed = parse_url(url)
    assert (parsed["host"], parsed["port"]) == ("fd00::1", 7000)
    assert (parsed["username"], parsed["password"]) == ("bob", "p/w@x:1")
    assert parsed["ssl_ca_certs"] == "/etc/ca.pem" and parsed["ssl_check_hostname"] is False
    assert parsed["connection_class"].__name__ == "SSLConnection"
    only_user = tiered_bus_url({"l2": StoreSpec("redis", {"host": "h", "username": "u"})})
    assert only_user == "redis://u@h:6379/0"


def test_a_bus_that_never_subscribes_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    """A bus that cannot connect leaves the L1 unused: that used to be a debug line."""
    import socket
    import time

    from deja.stores.redis_bus import RedisInvalidationBus

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bus = RedisInvalidationBus(url=f"redis://127.0.0.1:{port}/0", reconnect_max=0.05)
    with caplog.at_level("WARNING", logger="deja"):
        bus.subscribe(lambda event: None, lambda healthy: None)
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # several attempts more: still one warning
        bus.close()
    said = [r.getMessage() for r in caplog.records if "cannot subscribe" in r.getMessage()]
    assert len(said) == 1 and "L1 is not used" in said[0]
