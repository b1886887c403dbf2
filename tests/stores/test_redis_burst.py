"""A burst of requests on a RedisStore: what the event loop of a busy process does to its
Redis commands (tests on a real valkey server)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from deja.config import parse_config
from deja.errors import StoreBusy, StoreError
from deja.server.app import ProxyApp
from deja.stores.redis import RedisStore
from deja.testing import FakeOpenAIServer
from tests.server.conftest import MASTER, proxy_config
from tests.stores import redis_servers
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


async def test_commands_in_flight_while_the_loop_is_busy_are_answered(
    redis_server: ValkeyServer, make_redis: Callable[..., RedisStore]
) -> None:
    """The loop held up longer than every timeout while commands (and the connections
    they open) wait for their replies: the replies came in time, and are read, not failed
    as "Timeout connecting to server" / "Timeout reading" / StoreBusy."""
    store = make_redis(redis_server, max_connections=10)
    await store.aset("burst:key", b"v", 60)
    loop = asyncio.get_running_loop()
    for _ in range(3):  # (the first time, most open a connection)
        reads = [asyncio.ensure_future(store.aget("burst:key")) for _ in range(30)]
        loop.call_soon(time.sleep, 0.4)  # after the commands are sent (and queued)
        assert await asyncio.gather(*reads) == [b"v"] * 30
    await store.aclose()


async def test_a_queue_served_in_turn_is_waited_in(
    redis_server: ValkeyServer, make_redis: Callable[..., RedisStore]
) -> None:
    """A burst on a healthy server: the waiters for a free connection were turned away
    (StoreBusy: a lookup missed, a lock not taken) once ``pool_timeout`` had passed, though
    commands were answered all along; they now wait while the server answers."""
    # 3,000 commands on one connection take ~0.5 s in all idle, 2.3 s on a loaded machine,
    # each a fraction of a millisecond (a stalled server answered none for 0.2 s, loaded):
    # timed here first, and pool_timeout half of that, the queue's wait in all is past
    # pool_timeout, each answer far within it, and the bound in all (8 x pool_timeout, at
    # least 5 s) well past the queue's wait, however loaded the machine. (A third was too
    # little: the loop starting the 3,000 callers reads no reply meanwhile, about a third
    # of the whole, and that counts as the server answering nothing.)
    probe = make_redis(redis_server, max_connections=1, pool_timeout=30)
    await probe.aset("burst:key", b"v", 60)
    started = time.perf_counter()
    await asyncio.gather(*(probe.aget("burst:key") for _ in range(3000)))
    took = time.perf_counter() - started
    store = make_redis(redis_server, max_connections=1, pool_timeout=max(took / 2, 0.05))
    values = await asyncio.gather(*(store.aget("burst:key") for _ in range(3000)))
    assert values == [b"v"] * 3000
    await store.aclose()


async def test_a_server_that_answers_nothing_still_turns_waiters_away(tmp_path: Path) -> None:
    with redis_servers.running(redis_servers.start_standalone(tmp_path)) as server:
        store = RedisStore(url=server.url, max_connections=2, pool_timeout=0.05)
        await store.aset("burst:key", b"v", 60)
        server.pause()  # SIGSTOP: connections are accepted, nothing is ever answered
        try:
            async with asyncio.timeout(30):  # (a bound for a broken test, not a figure)
                outcomes = await asyncio.gather(
                    *(store.aget("burst:key") for _ in range(20)), return_exceptions=True
                )
        finally:
            server.resume()
        assert all(isinstance(outcome, StoreError) for outcome in outcomes)
        assert any(isinstance(outcome, StoreBusy) for outcome in outcomes)
        assert await store.aget("burst:key") == b"v"
        await store.aclose()


async def test_a_burst_on_two_workers_pays_each_answer_once_while_their_loop_is_busy(
    redis_server: ValkeyServer, tmp_path: Path
) -> None:
    """Two proxy workers on one Redis, a burst of identical requests (each prompt asked
    on both), and the event loop held up again and again meanwhile, as a loaded machine
    keeps it while a burst is parsed: the Redis commands in flight took the loop's delay
    for the server's (connect, read and pool timeouts) and failed; five failures in a row
    opened the cache's breaker, and every request of the next second skipped the store,
    its lookup and its cross-process lock: the prompts were paid once per worker. ``deja
    serve --workers 2`` with 800 requests at once (500 prompts) paid 135 twice."""
    redis_server.flush()
    with FakeOpenAIServer(latency=0.2) as upstream:
        config = proxy_config(
            upstream, caching={"type": "redis", "url": redis_server.url, "ttl": 600}
        )
        workers = [ProxyApp(parse_config(config, base_dir=tmp_path)) for _ in range(2)]
        clients = [
            httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app),
                base_url="http://proxy",
                headers={"authorization": f"Bearer {MASTER}"},
                timeout=60,
            )
            for app in workers
        ]
        prompts = [f"burst question {n}" for n in range(30)]

        async def ask(client: httpx2.AsyncClient, prompt: str) -> int:
            answer = await client.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}]},
            )
            return answer.status_code

        loop = asyncio.get_running_loop()
        later: list[asyncio.TimerHandle] = []

        def hold_up_the_loop() -> None:
            time.sleep(0.3)  # busy elsewhere: longer than every Redis timeout,
            later.append(loop.call_later(0.1, hold_up_the_loop))  # then runs requests

        later.append(loop.call_later(0.1, hold_up_the_loop))
        try:
            codes = await asyncio.gather(
                *(ask(client, prompt) for prompt in prompts for client in clients * 2)
            )
        finally:
            later[-1].cancel()
            for client in clients:
                await client.aclose()
            for app in workers:
                await app.aclose()
        assert codes == [200] * 4 * len(prompts)
        assert upstream.count("/v1/chat/completions") == len(prompts)


async def test_a_queue_behind_a_slow_server_is_bounded_in_all() -> None:
    """A server that answers each command, but slowly: waiting while it answered, a
    command queued behind 200 others waited 9 s (no bound in all); past 8 x pool_timeout
    (at least 5 s) it is turned away, a miss."""
    from deja.stores.redis import _AsyncGate

    gate = _AsyncGate(2, 0.2)  # (an answer every ~45 ms: within it, each time)

    async def command() -> str:
        try:
            async with gate:
                await asyncio.sleep(0.09)  # answered, slowly
        except StoreBusy:
            return "busy"
        return "answered"

    outcomes = await asyncio.gather(*(command() for _ in range(200)))
    assert "answered" in outcomes and "busy" in outcomes
