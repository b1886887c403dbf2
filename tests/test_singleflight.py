"""Single-flight: N identical concurrent misses make one upstream call (tasks and threads)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import deja
from deja._async.singleflight import AsyncSingleFlight
from deja._sync.singleflight import SingleFlight
from tests.helpers import chat_request, chat_response

N = 20


async def test_async_concurrent_misses_make_one_call() -> None:
    cache = deja.AsyncCache()
    calls = 0
    release = asyncio.Event()

    async def upstream() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await release.wait()
        return chat_response()

    tasks = [asyncio.create_task(cache.fetch(chat_request(), upstream)) for _ in range(N)]
    await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    statuses = sorted(r.info.status for r in results)
    assert statuses.count("miss") == 1 and statuses.count("hit") == N - 1
    assert all(r.response == chat_response() for r in results)
    assert cache.stats().coalesced == N - 1
    # followers get their own copies: mutating one does not touch the others
    results[0].response["id"] = "changed"  # type: ignore[index]
    assert results[1].response["id"] == "chatcmpl-123"  # type: ignore[index]


async def test_async_leader_error_reaches_every_caller_once() -> None:
    cache = deja.AsyncCache()
    calls = 0
    release = asyncio.Event()

    async def upstream() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await release.wait()
        raise deja.ServerError("upstream 503", status_code=503)

    tasks = [asyncio.create_task(cache.fetch(chat_request(), upstream)) for _ in range(N)]
    await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert calls == 1
    assert len(results) == N and all(isinstance(r, deja.ServerError) for r in results)
    assert (await cache.get(chat_request())).info.status == "miss"  # nothing stored


async def test_cancelled_leader_does_not_cancel_followers() -> None:
    cache = deja.AsyncCache()
    calls = 0
    started = asyncio.Event()

    async def upstream() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(0.05)
        return chat_response()

    leader = asyncio.create_task(cache.fetch(chat_request(), upstream))
    await started.wait()
    followers = [asyncio.create_task(cache.fetch(chat_request(), upstream)) for _ in range(5)]
    await asyncio.sleep(0.01)
    leader.cancel()
    results = await asyncio.gather(*followers)
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert calls == 2  # the cancelled leader's call, then one follower led a new one
    assert [r.response for r in results] == [chat_response()] * 5
    assert sorted(r.info.status for r in results) == ["hit"] * 4 + ["miss"]


async def test_no_cache_requests_do_not_join() -> None:
    cache = deja.AsyncCache()
    calls = 0
    release = asyncio.Event()

    async def upstream() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await release.wait()
        return chat_response()

    normal = [asyncio.create_task(cache.fetch(chat_request(), upstream)) for _ in range(3)]
    fresh = [
        asyncio.create_task(cache.fetch(chat_request(), upstream, control={"no-cache": True}))
        for _ in range(3)
    ]
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(*normal, *fresh)
    assert calls == 1 + 3


async def test_a_hit_never_waits_for_a_call_in_flight() -> None:
    cache = deja.AsyncCache()
    release = asyncio.Event()

    async def slow() -> dict[str, Any]:
        await release.wait()
        return chat_response()

    in_flight = asyncio.create_task(cache.fetch(chat_request(), slow))
    await asyncio.sleep(0.01)
    # another process fills the store meanwhile: a lookup must not wait for the flight
    await cache.put(chat_request(), chat_response("from elsewhere"))
    hit = await asyncio.wait_for(cache.fetch(chat_request(), slow), timeout=1)
    assert hit.info.status == "hit"
    release.set()
    await in_flight


async def test_single_caller_leads_and_cleans_up() -> None:
    flight: AsyncSingleFlight[int] = AsyncSingleFlight()
    assert await flight.run("k", _one) == (1, False)
    assert flight.in_flight() == 0


async def _one() -> int:
    return 1


def test_threads_concurrent_misses_make_one_call() -> None:
    cache = deja.Cache()
    calls = 0
    lock = threading.Lock()
    barrier = threading.Barrier(N)
    results: list[Any] = []

    def upstream() -> dict[str, Any]:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.1)
        return chat_response()

    def worker() -> None:
        barrier.wait()
        results.append(cache.fetch(chat_request(), upstream))

    threads = [threading.Thread(target=worker) for _ in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert len(results) == N
    assert sorted(r.info.status for r in results).count("miss") == 1


def test_threads_leader_error_reaches_every_caller() -> None:
    flight: SingleFlight[int] = SingleFlight()
    calls = 0
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def failing() -> int:
        nonlocal calls
        calls += 1
        time.sleep(0.1)
        raise ValueError("boom")

    def worker() -> None:
        barrier.wait()
        try:
            flight.run("k", failing)
        except ValueError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1 and len(errors) == 8
    assert flight.in_flight() == 0


def test_threads_abandoned_leader_hands_over() -> None:
    flight: SingleFlight[str] = SingleFlight()
    started = threading.Event()
    calls = 0

    class Abort(BaseException):
        pass

    def leader_fn() -> str:
        nonlocal calls
        calls += 1
        started.set()
        time.sleep(0.05)
        raise Abort  # like KeyboardInterrupt: not an outcome to share

    def follower_fn() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    def lead() -> None:
        with pytest.raises(Abort):
            flight.run("k", leader_fn)

    t = threading.Thread(target=lead)
    t.start()
    started.wait()
    assert flight.run("k", follower_fn) == ("ok", False)
    t.join()
    assert calls == 2


# -- each caller's own timeout --------------------------------------------------------------


async def test_async_follower_waits_no_longer_than_its_own_timeout() -> None:
    cache = deja.AsyncCache()
    release = asyncio.Event()

    async def slow() -> dict[str, Any]:
        await release.wait()
        return chat_response()

    leader = asyncio.ensure_future(cache.fetch(chat_request(), slow, timeout=30))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(deja.UpstreamTimeoutError, match="identical call in flight"):
        await cache.fetch(chat_request(), slow, timeout=0.2)
    assert 0.15 < time.monotonic() - started < 1.0
    release.set()
    assert (await leader).info.status == "miss"  # the leader is not disturbed


async def test_async_leader_timeout_reaches_only_callers_who_allowed_no_more() -> None:
    cache = deja.AsyncCache()
    calls = 0

    async def upstream(timeout: float) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if timeout < 1:
            await asyncio.sleep(0.1)
            raise deja.UpstreamTimeoutError(f"no answer within {timeout} s")
        return chat_response()

    def caller(timeout: float) -> Any:
        return cache.fetch(chat_request(), lambda: upstream(timeout), timeout=timeout)

    short = asyncio.ensure_future(caller(0.5))
    await asyncio.sleep(0.01)
    same, longer = asyncio.ensure_future(caller(0.5)), asyncio.ensure_future(caller(30))
    with pytest.raises(deja.UpstreamTimeoutError):
        await short
    with pytest.raises(deja.UpstreamTimeoutError):
        await same  # asked for no more time than the leader had: the same outcome
    assert (await longer).info.status == "miss"  # called again, with its own timeout
    assert calls == 2


def test_threads_follower_waits_no_longer_than_its_own_timeout() -> None:
    cache = deja.Cache()
    release = threading.Event()
    entered = threading.Event()

    def slow() -> dict[str, Any]:
        entered.set()
        release.wait(10)
        return chat_response()

    statuses: list[str] = []
    leader = threading.Thread(
        target=lambda: statuses.append(cache.fetch(chat_request(), slow, timeout=30).info.status)
    )
    leader.start()
    entered.wait(5)
    started = time.monotonic()
    with pytest.raises(deja.UpstreamTimeoutError):
        cache.fetch(chat_request(), slow, timeout=0.2)
    assert 0.15 < time.monotonic() - started < 1.0
    release.set()
    leader.join()
    assert statuses == ["miss"]


def test_threads_leader_timeout_hands_over_to_a_more_patient_follower() -> None:
    flight: SingleFlight[str] = SingleFlight(
        timed_out=lambda e: isinstance(e, deja.UpstreamTimeoutError)
    )
    entered = threading.Event()

    def impatient() -> str:
        entered.set()
        time.sleep(0.1)
        raise deja.UpstreamTimeoutError("no answer within 0.5 s")

    errors: list[BaseException] = []

    def lead() -> None:
        try:
            flight.run("k", impatient, wait=0.5)
        except deja.UpstreamTimeoutError as exc:
            errors.append(exc)

    t = threading.Thread(target=lead)
    t.start()
    entered.wait(5)
    assert flight.run("k", lambda: "answer", wait=30) == ("answer", False)
    t.join()
    assert len(errors) == 1


def test_one_async_cache_in_threads_with_loops_of_their_own() -> None:
    """An event of one loop cannot wake another's: calls coalesce within each loop, and
    none waits on another thread's loop (it hung, or raised 'bound to a different loop')."""
    cache = deja.AsyncCache()
    calls = 0
    lock = threading.Lock()

    async def upstream() -> dict[str, Any]:
        nonlocal calls
        with lock:
            calls += 1
        await asyncio.sleep(0.3)
        return chat_response()

    async def two_tasks() -> list[str]:
        results = await asyncio.gather(*(cache.fetch(chat_request(), upstream) for _ in range(2)))
        return sorted(r.info.status for r in results)

    outcomes: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: outcomes.append(asyncio.run(two_tasks()))) for _ in range(3)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert time.monotonic() - started < 5
    assert len(outcomes) == 3 and calls <= 3  # at most one call per loop
    assert all(outcome in (["hit", "miss"], ["hit", "hit"]) for outcome in outcomes)


def test_a_child_forked_while_a_call_is_in_flight_makes_its_own() -> None:
    """The child inherited the parent's single-flight entry, whose thread it does not have:
    an identical call in the child waited for it for ever (gunicorn --preload, a job
    runner forking workers while a thread still asks)."""
    import time

    import deja
    from tests.helpers import chat_request, chat_response, finishes_in_a_fork_during

    cache = deja.Cache()

    def slow() -> dict[str, Any]:
        time.sleep(0.5)
        return chat_response()

    assert finishes_in_a_fork_during(
        lambda: cache.fetch(chat_request(), slow),
        lambda: cache.fetch(chat_request(), chat_response),
    )
