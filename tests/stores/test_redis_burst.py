"""A burst of requests on a RedisStore: what the event loop of a busy process does to its
Redis commands (tests on a real valkey server)."""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Callable

import pytest

from deja.stores.redis import RedisStore
from tests.stores.redis_servers import ValkeyServer


async def test_new_connections_do_not_each_read_the_package_metadata(
    redis_server: ValkeyServer,
    make_redis: Callable[..., RedisStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """redis-py 7+ read its own version from the installed packages' metadata (a scan of
    sys.path) for each connection, on the event loop: for every connection a burst opens
    at once, a blocking pause of milliseconds on an idle machine, far more on a loaded one,
    which the commands in flight took for Redis's slowness (their timeouts fired)."""
    store = make_redis(redis_server)
    await store.aset("burst:key", b"v", 60)  # the client exists, with one connection
    reads: list[str] = []
    real = importlib.metadata.version

    def version(name: str) -> str:
        reads.append(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    values = await asyncio.gather(*(store.aget("burst:key") for _ in range(20)))
    assert values == [b"v"] * 20  # (20 at once: the pool opened new connections)
    assert reads == []
    await store.aclose()
