"""TieredStore: an invalidation that arrives while an L2 call is in flight is never undone.

The race (audit B, finding 2): process X reads key K from the L2; meanwhile process Y deletes
K and publishes the invalidation; X's listener drops K from an L1 that does not hold it yet;
then X promotes the old value it read and serves the deleted entry for ``l1_ttl``. The same
window exists for writes (X's write-through racing Y's delete or overwrite), between threads
of one process, and across a bus outage. Each test here holds the L2 call open with a
:class:`GatedL2` while the other side acts, so the interleaving is deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from deja.stores.bus import Invalidation, LocalInvalidationBus
from deja.stores.memory import MemoryStore
from deja.stores.tiered import TieredStore

WAIT = 5.0


class GatedL2:
    """Wraps an L2: the first armed call of kind ``on`` pauses *after* the inner store
    answered (the reply is "on the wire") until :attr:`release` is set."""

    def __init__(self, inner: Any, on: str = "get") -> None:
        self.inner = inner
        self.on = on
        self.armed = False
        self.reached = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def arm(self) -> None:
        self.reached.clear()
        self.release.clear()
        self.armed = True

    def _take(self, kind: str) -> bool:
        if self.armed and kind == self.on:
            self.armed = False
            self.reached.set()
            return True
        return False

    def _pause(self, kind: str) -> None:
        if self._take(kind):
            assert self.release.wait(WAIT), "the test never released the L2 call"

    async def _apause(self, kind: str) -> None:
        if self._take(kind):
            assert await asyncio.to_thread(self.release.wait, WAIT)

    def get(self, key: str) -> bytes | None:
        value = self.inner.get(key)
        self._pause("get")
        return value  # type: ignore[no-any-return]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = self.inner.get_many(keys)
        self._pause("get")
        return values  # type: ignore[no-any-return]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.inner.set(key, value, ttl)
        self._pause("set")

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        self.inner.set_many(items, ttl)
        self._pause("set")

    async def aget(self, key: str) -> bytes | None:
        value = await self.inner.aget(key)
        await self._apause("get")
        return value  # type: ignore[no-any-return]

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = await self.inner.aget_many(keys)
        await self._apause("get")
        return values  # type: ignore[no-any-return]

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        await self.inner.aset(key, value, ttl)
        await self._apause("set")


def two_processes(on: str = "get") -> tuple[TieredStore, TieredStore, GatedL2, MemoryStore]:
    """X (whose L2 calls can be held open) and Y over one shared L2 and one bus."""
    shared = MemoryStore()
    gated = GatedL2(shared, on)
    bus = LocalInvalidationBus()
    x = TieredStore(l1=MemoryStore(), l2=gated, bus=bus)
    y = TieredStore(l1=MemoryStore(), l2=shared, bus=bus)
    return x, y, gated, shared


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn(*args)))
    thread.start()
    return thread, out


@contextlib.contextmanager
def held(gated: GatedL2, fn: Any, *args: Any) -> Iterator[list[Any]]:
    """Run ``fn`` in a thread until its L2 call is held; then release it and join."""
    gated.arm()
    thread, out = in_thread(fn, *args)
    try:
        assert gated.reached.wait(WAIT)
        yield out
    finally:
        gated.release.set()
        thread.join(WAIT)
    assert not thread.is_alive()


@pytest.mark.parametrize("op", ["delete", "overwrite", "clear"])
def test_a_remote_change_during_an_l2_read_is_not_undone_by_promotion(op: str) -> None:
    x, y, gated, _ = two_processes()
    y.set("k", b"old", 600)
    with held(gated, x.get, "k") as out:  # X's read returned b"old"; the reply is in flight
        if op == "delete":
            assert y.delete("k")
        elif op == "overwrite":
            y.set("k", b"new", 600)
        else:
            assert y.clear("k") == 1
    assert out == [b"old"]  # that read itself raced the change: either answer is fine
    expected = b"new" if op == "overwrite" else None
    assert x.l1.get("k") is None
    assert x.get("k") == expected and y.get("k") == expected


def test_get_many_does_not_promote_what_was_invalidated_during_the_read() -> None:
    x, y, gated, _ = two_processes()
    y.set_many({"a": b"1", "b": b"2"}, 600)
    with held(gated, x.get_many, ["a", "b"]) as out:
        assert y.delete("a")
    assert out == [[b"1", b"2"]]
    assert x.l1.get("a") is None and x.get("a") is None
    assert x.l1.get("b") == b"2"  # the untouched key is still promoted


async def test_async_get_does_not_promote_what_was_invalidated_during_the_read() -> None:
    x, y, gated, _ = two_processes()
    await y.aset("k", b"old", 600)
    gated.arm()
    read = asyncio.create_task(x.aget("k"))
    assert await asyncio.to_thread(gated.reached.wait, WAIT)
    assert await y.adelete("k")
    gated.release.set()
    assert await read == b"old"
    assert x.l1.get("k") is None and await x.aget("k") is None

    await y.aset_many({"a": b"1", "b": b"2"}, 600)
    gated.arm()
    many = asyncio.create_task(x.aget_many(["a", "b"]))
    assert await asyncio.to_thread(gated.reached.wait, WAIT)
    assert await y.adelete("b")
    gated.release.set()
    assert await many == [b"1", b"2"]
    assert x.l1.get("a") == b"1" and x.l1.get("b") is None
    assert await x.aget_many(["a", "b"]) == [b"1", None]


@pytest.mark.parametrize("op", ["delete", "overwrite"])
def test_a_remote_change_during_a_write_is_not_undone_by_write_through(op: str) -> None:
    x, y, gated, shared = two_processes(on="set")
    with held(gated, x.set, "k", b"mine", 600):  # X's value is in the L2, not yet in L1
        if op == "delete":
            assert y.delete("k")
        else:
            y.set("k", b"theirs", 600)
    expected = b"theirs" if op == "overwrite" else None
    assert shared.get("k") == expected
    assert x.l1.get("k") is None and x.get("k") == expected


async def test_async_write_racing_a_remote_delete() -> None:
    x, y, gated, _ = two_processes(on="set")
    gated.arm()
    write = asyncio.create_task(x.aset("k", b"mine", 600))
    assert await asyncio.to_thread(gated.reached.wait, WAIT)
    assert await y.adelete("k")
    gated.release.set()
    await write
    assert x.l1.get("k") is None and await x.aget("k") is None


def test_set_many_racing_a_remote_delete_keeps_the_other_keys() -> None:
    x, y, gated, _ = two_processes(on="set")
    with held(gated, x.set_many, {"a": b"1", "b": b"2"}, 600):
        assert y.delete("a")
    assert x.l1.get("a") is None and x.get("a") is None
    assert x.l1.get("b") == b"2"


def test_writes_after_an_invalidation_are_still_kept_in_l1() -> None:
    x, y, _, _ = two_processes()
    y.set("k", b"v1", 600)
    assert x.get("k") == b"v1"
    assert y.delete("k")  # delivered before X's next write begins
    x.set("k", b"v2", 600)
    assert x.l1.get("k") == b"v2"  # a later write is no race: write-through as usual
    assert y.get("k") == b"v2" and y.l1.get("k") == b"v2"  # and a later read promotes
    y.set("k", b"v3", 600)  # overwrites are invalidations too
    assert x.l1.get("k") is None and x.get("k") == b"v3" and x.l1.get("k") == b"v3"


def test_threads_of_one_process_read_racing_a_delete() -> None:
    x, y, gated, _ = two_processes()
    y.set("k", b"old", 600)
    with held(gated, x.get, "k"):
        assert x.delete("k")  # this store's own delete: its own bus messages are ignored
    assert x.l1.get("k") is None and x.get("k") is None


def test_threads_of_one_process_write_racing_a_write() -> None:
    x, _, gated, shared = two_processes(on="set")
    with held(gated, x.set, "k", b"first", 600):
        x.set("k", b"second", 600)  # lands in the L2 after the first write
    assert shared.get("k") == b"second"
    assert x.get("k") == b"second"


def test_a_bus_outage_during_a_read_prevents_the_promotion() -> None:
    x, y, gated, shared = two_processes()
    bus = x.state.bus
    assert isinstance(bus, LocalInvalidationBus)
    y.set("k", b"old", 600)
    with held(gated, x.get, "k"):
        bus.set_healthy(False)
        shared.delete("k")  # deleted while the bus was down: that invalidation is lost
        bus.set_healthy(True)
    assert x.l1.get("k") is None and x.get("k") is None


def test_own_origin_events_and_unknown_keys_cost_nothing_and_stay_bounded() -> None:
    x, y, _, _ = two_processes()
    stamps = len(x.state.stamps)
    for i in range(stamps * 3):
        y.set(f"k{i}", b"v", 600)  # every write invalidates k{i} in X
        x.state.on_event(Invalidation(x.state.origin, keys=(f"k{i}",)))
    assert len(x.state.stamps) == stamps  # a fixed table, whatever the number of keys


class FlakyL2(MemoryStore):
    """An L2 whose writes and deletes land, then report a failure (a timed-out reply)."""

    failing = False

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        super().set(key, value, ttl)
        if self.failing:
            raise TimeoutError("the reply was lost")

    def delete(self, key: str) -> bool:
        existed = super().delete(key)
        if self.failing:
            raise TimeoutError("the reply was lost")
        return existed


def test_failed_l2_calls_leave_no_stale_l1_copy() -> None:
    shared = FlakyL2()
    bus = LocalInvalidationBus()
    x = TieredStore(l2=shared, bus=bus)
    y = TieredStore(l2=shared, bus=bus)
    x.set("k", b"v1", 600)
    assert y.get("k") == b"v1" and y.l1.get("k") == b"v1"
    shared.failing = True
    with pytest.raises(TimeoutError):
        x.set("k", b"v2", 600)  # landed in the L2 all the same
    assert x.l1.get("k") is None  # this process's old copy is gone
    with pytest.raises(TimeoutError):
        x.delete("k")  # landed too: every L1 must drop it, as after a delete that succeeded
    shared.failing = False
    assert y.l1.get("k") is None and y.get("k") is None and x.get("k") is None


# -- Redis: real valkey, one bus per "process" ------------------------------------------


def redis_pair(url: str, on: str = "get") -> tuple[TieredStore, TieredStore, GatedL2]:
    from deja.stores.redis import RedisStore
    from deja.stores.redis_bus import RedisInvalidationBus

    gated = GatedL2(RedisStore(url=url), on)
    x = TieredStore(l1=MemoryStore(), l2=gated, bus=RedisInvalidationBus(url=url))
    y = TieredStore(l1=MemoryStore(), l2=RedisStore(url=url), bus=RedisInvalidationBus(url=url))
    for store in (x, y):
        subscribed(store)
    return x, y, gated


def subscribed(store: TieredStore) -> None:
    store.get("warm-up")
    wait_for(lambda: store.state.l1_enabled, "the bus never subscribed")


def delivered_to(store: TieredStore, key: str) -> threading.Event:
    """Set once ``store``'s listener has handled an invalidation of ``key`` (the spy is
    subscribed after the store's own handler, and handlers run in order)."""
    seen = threading.Event()

    def spy(event: Invalidation) -> None:
        if key in event.keys:
            seen.set()

    store.state.bus.subscribe(spy, lambda healthy: None)
    return seen


@pytest.mark.parametrize("on", ["get", "set"])
def test_redis_a_delete_during_an_l2_call_is_not_undone(redis_server: Any, on: str) -> None:
    redis_server.flush()
    x, y, gated = redis_pair(redis_server.url, on)
    try:
        seen = delivered_to(x, "k")
        if on == "get":
            y.set("k", b"old", 600)
            # (the set's own invalidation of k: delivered before the delete's is waited
            # for, or a late one stood for it, under load)
            assert seen.wait(WAIT)
            seen.clear()
            call: tuple[Any, ...] = (x.get, "k")
        else:
            call = (x.set, "k", b"mine", 600)
        with held(gated, *call):
            assert y.delete("k")
            assert seen.wait(WAIT)  # X's listener has dropped k from an L1 without it
        assert y.l2.get("k") is None
        assert x.l1.get("k") is None and x.get("k") is None
    finally:
        x.close()
        y.close()


def test_redis_get_racing_delete_without_injected_delay(redis_server: Any) -> None:
    """The audit's stress repro, shortened: get and delete released together."""
    redis_server.flush()
    x, y, _ = redis_pair(redis_server.url)
    try:
        keys = [f"race:{i}" for i in range(300)]
        for key in keys:
            y.set(key, b"value", 600)
            start = threading.Barrier(2)
            tx = threading.Thread(target=lambda k=key, b=start: (b.wait(), x.get(k)))
            ty = threading.Thread(target=lambda k=key, b=start: (b.wait(), y.delete(k)))
            tx.start()
            ty.start()
            tx.join()
            ty.join()
        deadline = time.monotonic() + WAIT
        stale = keys
        while stale and time.monotonic() < deadline:  # let the last invalidations arrive
            stale = [k for k in keys if x.l1.get(k) is not None]
            time.sleep(0.02)
        assert stale == []
    finally:
        x.close()
        y.close()


# -- close() is not an outage (audit B, finding 4) ---------------------------------------


def test_close_logs_no_outage_but_a_real_outage_does(
    redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from deja.stores.redis import RedisStore
    from deja.stores.redis_bus import RedisInvalidationBus

    url = redis_server.url
    with caplog.at_level(logging.DEBUG, logger="deja.stores.tiered"):
        quiet = TieredStore(l2=RedisStore(url=url), bus=RedisInvalidationBus(url=url))
        subscribed(quiet)
        quiet.close()
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
        assert not quiet.state.l1_enabled  # a closed store's L1 is not used either

        store = TieredStore(
            l2=RedisStore(url=url), bus=RedisInvalidationBus(url=url, reconnect_max=0.2)
        )
        subscribed(store)
        admin = redis_server.client()
        for client in admin.client_list():
            if int(client.get("sub", 0)) > 0:
                admin.client_kill_filter(_id=client["id"])
        wait_for(
            lambda: any("bus down" in r.getMessage() for r in caplog.records),
            "the real outage was not reported",
        )
        wait_for(lambda: store.state.l1_enabled, "the subscription did not come back")
        assert any("bus back" in r.getMessage() for r in caplog.records)
        caplog.clear()
        store.close()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_closing_one_store_of_a_shared_bus_is_an_outage_for_the_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bus closed under a store that is still open leaves it without invalidations:
    its L1 is bypassed (and that is reported)."""

    bus = LocalInvalidationBus()
    shared = MemoryStore()
    a = TieredStore(l2=shared, bus=bus)
    b = TieredStore(l2=shared, bus=bus)
    a.set("k", b"v", 600)
    assert b.get("k") == b"v" and b.l1.get("k") == b"v"
    with caplog.at_level(logging.WARNING, logger="deja.stores.tiered"):
        a.close()
    assert not b.state.l1_enabled and b.l1.get("k") is None
    assert [r.getMessage() for r in caplog.records] == [
        "invalidation bus down: the L1 cache is bypassed until it is back"
    ]
