"""A busy event loop on a Redis Cluster or a Sentinel-managed master: the replies that
came in time are read, not failed (tests on real valkey servers; the standalone case is in
test_redis_burst.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from deja.stores.redis import RedisStore
from tests.stores import redis_servers
from tests.stores.redis_servers import ValkeyCluster, ValkeySentinel


async def _locks_and_reads_while_the_loop_is_busy(store: RedisStore) -> None:
    """15 locks taken and 15 reads at once, three times, each time with the loop held up
    (0.4 s) as they start: longer than every timeout of the store (op 0.1 s, connect
    0.25 s). Locks first: a read that fails on a closed connection is sent once more,
    a lock is not (so a failure shows)."""
    await store.aset("burst:key", b"v", 60)
    loop = asyncio.get_running_loop()
    for turn in range(3):  # (the first time, each opens a connection)
        locks = [asyncio.ensure_future(store.alock(f"burst:{turn}:{n}", ttl=60)) for n in range(15)]
        reads = [asyncio.ensure_future(store.aget("burst:key")) for _ in range(15)]
        loop.call_soon(time.sleep, 0.4)  # after the commands start (and queue)
        tokens = await asyncio.gather(*locks)
        assert all(isinstance(token, str) for token in tokens), tokens
        assert await asyncio.gather(*reads) == [b"v"] * 15
    await store.aclose()


async def test_cluster_commands_in_flight_while_the_loop_is_busy_are_answered(
    redis_cluster: ValkeyCluster, make_redis: Callable[..., RedisStore]
) -> None:
    """redis-py's cluster client timed connects and replies with plain timeouts: held up
    by the loop, nodes that answered in time failed as "Timeout connecting to server"
    (and the client dropped the node's free connections and read the topology again),
    turn after turn: 3 to 7 of the 30 commands failed each turn."""
    redis_cluster.flush()
    await _locks_and_reads_while_the_loop_is_busy(make_redis(redis_cluster, max_connections=10))


async def test_sentinel_commands_in_flight_while_the_loop_is_busy_are_answered(
    redis_sentinel: ValkeySentinel,
) -> None:
    """The same on a Sentinel-managed master, where each new connection first asks a
    sentinel where the master is: that question's connect, timed plainly, failed, and
    the command with it ("no master found", 5 locks of 15 the first turn)."""
    redis_sentinel.master.flush()
    store = RedisStore(
        sentinels=redis_sentinel.sentinels,
        service_name=redis_servers.SENTINEL_SERVICE,
        max_connections=10,
    )
    try:
        await _locks_and_reads_while_the_loop_is_busy(store)
    finally:
        store.close()
