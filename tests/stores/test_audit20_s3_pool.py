"""Offloaded stores run their async callers' calls in threads of their own (audit 20, #3).

S3Store's ``a``-methods ran in asyncio's default pool (``min(32, cpus + 4)`` threads): with
the endpoint hung, 30 async lookups queued behind each other's timeouts (16 s at the
median, 26 s at worst, for a 4 s timeout), and every other ``to_thread`` user waited
behind them. A hung endpoint here is a listening socket that never answers (the kernel
completes the connections, nothing reads them), so only ``read_timeout`` ends a request.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("moto")

import deja
from deja.errors import StoreBusy, StoreError
from deja.stores.disk import DiskStore
from deja.stores.s3 import S3Store
from tests.helpers import chat_request, chat_response
from tests.stores.s3_server import ACCESS_KEY, REGION, SECRET_KEY, shared_server

# Far more than asyncio's default pool ever has (32 threads at most), so before the fix
# the calls went in four rounds at least, whatever the machine: the bounds below leave a
# loaded machine room (one round took up to 1.9 timeouts there) and still catch that.
CALLERS = 100
TIMEOUT = 1.0


@pytest.fixture
def hung_endpoint() -> Iterator[str]:
    """The URL of an endpoint that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4 * CALLERS)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def hung_store(endpoint: str, *, connections: int) -> S3Store:
    """An S3Store on ``endpoint`` with its boto3 client made already (built on first use,
    it would add its own set-up time to the first calls' waits)."""
    import boto3.session
    import botocore.config

    config = botocore.config.Config(
        connect_timeout=TIMEOUT,
        read_timeout=TIMEOUT,
        max_pool_connections=connections,
        retries={"mode": "standard", "total_max_attempts": 1},
        s3={"addressing_style": "path"},
    )
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    client = session.client("s3", endpoint_url=endpoint, config=config)
    return S3Store(bucket="b", max_pool_connections=connections, client=client)


async def test_async_callers_on_a_hung_endpoint_each_wait_their_own_timeout(
    hung_endpoint: str,
) -> None:
    store = hung_store(hung_endpoint, connections=CALLERS)
    cache = deja.AsyncCache(store=store, ttl=600)

    async def upstream() -> dict[str, Any]:
        return chat_response()

    async def one(n: int) -> tuple[str, float]:
        started = time.monotonic()
        result = await cache.fetch(chat_request(f"question {n}"), upstream)
        return result.info.status, time.monotonic() - started

    outcomes = await asyncio.gather(*(one(n) for n in range(CALLERS)))
    waits = sorted(wait for _, wait in outcomes)
    assert {status for status, _ in outcomes} == {"miss"}
    # One timeout each: no lookup queued for a thread, and the misses' writes, sent after
    # the lookups had timed out, were turned away instead of waiting a timeout more.
    assert waits[-1] < 2.5 * TIMEOUT, waits
    await store.aclose()


async def test_a_hung_endpoint_holds_up_no_other_thread_user(hung_endpoint: str) -> None:
    store = hung_store(hung_endpoint, connections=CALLERS)
    lookups = [asyncio.ensure_future(store.aget(f"k{n}")) for n in range(CALLERS)]
    await asyncio.sleep(0.1)  # every lookup is waiting on the endpoint now
    started = time.monotonic()
    await asyncio.to_thread(lambda: None)
    assert time.monotonic() - started < 0.3 * TIMEOUT
    for failed in await asyncio.gather(*lookups, return_exceptions=True):
        assert isinstance(failed, StoreError)
    await store.aclose()


async def test_calls_queued_behind_a_hung_endpoint_are_turned_away(hung_endpoint: str) -> None:
    store = hung_store(hung_endpoint, connections=2)
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(store.aget(f"k{n}") for n in range(20)), return_exceptions=True
    )
    elapsed = time.monotonic() - started
    timed_out = [o for o in outcomes if isinstance(o, StoreError) and not isinstance(o, StoreBusy)]
    turned_away = [o for o in outcomes if isinstance(o, StoreBusy)]
    # The two calls that had a thread waited their timeout; the 18 queued behind them
    # were turned away when they got one (10 rounds of timeouts before).
    assert (len(timed_out), len(turned_away)) == (2, 18)
    assert elapsed < 3 * TIMEOUT
    await store.aclose()


class FlakyClient:
    """A real boto3 client (on moto) whose reads time out while ``down`` is set."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down = True
        self.reads = 0

    def get_object(self, **params: Any) -> Any:
        import botocore.exceptions

        self.reads += 1
        if self.down:
            raise botocore.exceptions.ReadTimeoutError(endpoint_url="http://flaky")
        return self.inner.get_object(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_one_probe_a_second_later_lets_calls_through_again() -> None:
    server = shared_server()
    flaky = FlakyClient(server.client())
    store = server.store(client=flaky)
    store.set("k", b"v", None)
    with pytest.raises(StoreError) as first:
        await store.aget("k")
    assert not isinstance(first.value, StoreBusy)
    with pytest.raises(StoreBusy):
        await store.aget("k")
    assert flaky.reads == 1, "a call after the endpoint timed out is not sent"
    with pytest.raises(StoreError) as sync_call:
        store.get("k")  # a sync caller, on a thread of its own, is never turned away
    assert not isinstance(sync_call.value, StoreBusy) and flaky.reads == 2
    flaky.down = False
    await asyncio.sleep(1.05)
    assert await store.aget("k") == b"v"  # the probe
    assert [await store.aget("k") for _ in range(3)] == [b"v"] * 3
    store.close()
    flaky.inner.close()


async def test_errors_the_endpoint_answers_turn_no_call_away() -> None:
    server = shared_server()
    store = server.store(bucket="deja-no-such-bucket")
    for _ in range(3):
        with pytest.raises(StoreError) as info:
            await store.aset("k", b"v", None)
        assert not isinstance(info.value, StoreBusy)
    await store.aclose()


async def test_the_disk_store_runs_in_threads_of_its_own(tmp_path: Path) -> None:
    # asyncio's default pool, every thread of it taken (it has 32 at most)
    loop = asyncio.get_running_loop()
    release = threading.Event()
    blockers = [loop.run_in_executor(None, release.wait, 10) for _ in range(32)]
    store = DiskStore(tmp_path / "disk", eviction_policy="least-recently-used")
    try:
        await asyncio.wait_for(store.aset("k", b"v", None), 5)
        assert await asyncio.wait_for(store.aget("k"), 5) == b"v"
    finally:
        release.set()
        await asyncio.gather(*blockers)
        await store.aclose()
