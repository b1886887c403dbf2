"""TieredStore in a child forked after its parent used it (gunicorn ``--preload`` with a
warm-up call, a ``multiprocessing`` fork pool).

The child inherited the parent's L1 and a bus and tier state that said "subscribed,
healthy", but not the bus's listener thread: no invalidation reached it, and its L1 served
entries other processes had deleted for up to ``l1_ttl``. A child now bypasses its L1 until
it has subscribed itself, then hears the other processes as any process does.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from deja.stores.bus import LocalInvalidationBus
from deja.stores.memory import MemoryStore
from deja.stores.redis import RedisStore
from deja.stores.redis_bus import RedisInvalidationBus
from deja.stores.tiered import TieredStore

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def redis_tiered(url: str) -> TieredStore:
    return TieredStore(l1=MemoryStore(), l2=RedisStore(url=url), bus=RedisInvalidationBus(url=url))


def wait_until(done: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


class Child:
    """A forked child running ``body(child)``, talking to the parent over two pipes: it
    ``say``s JSON lines and ``wait``s for the parent's ``go``. It exits with 0 once
    ``body`` returned, 1 if it raised; 2 if it did not finish within 20 s (a deadlock)."""

    def __init__(self, body: Callable[[Child], None]) -> None:
        down_r, self._down_w = os.pipe()  # parent -> child
        self._up_r, up_w = os.pipe()  # child -> parent
        self._buffer = b""
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self._down_w)
            os.close(self._up_r)
            self._down_r, self._up_w = down_r, up_w
            finished = threading.Event()
            failed: list[BaseException] = []

            def run() -> None:
                try:
                    body(self)
                except BaseException as exc:
                    failed.append(exc)
                    self.say({"error": repr(exc)})
                finished.set()

            threading.Thread(target=run, daemon=True).start()
            os._exit((0 if not failed else 1) if finished.wait(20) else 2)
        os.close(down_r)
        os.close(up_w)

    # in the child
    def say(self, message: dict[str, Any]) -> None:
        os.write(self._up_w, json.dumps(message).encode() + b"\n")

    def wait(self) -> None:
        assert os.read(self._down_r, 1) == b"g"

    # in the parent
    def go(self) -> None:
        os.write(self._down_w, b"g")

    def hear(self, within: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self._up_r], [], [], left)[0], "child silent"
            chunk = os.read(self._up_r, 4096)
            assert chunk, "the child ended without a word"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        assert "error" not in message, message["error"]
        return message

    def end(self) -> int:
        """The child's exit code (killed after 30 s)."""
        deadline = time.monotonic() + 30
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, 9)
                _, status = os.waitpid(self.pid, 0)
                break
            time.sleep(0.01)
        os.close(self._down_w)
        os.close(self._up_r)
        return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("side", ["sync", "async"])
def test_a_forked_child_never_serves_what_another_process_deleted(
    redis_server: Any, side: str
) -> None:
    """The audit's case: warmed up in the parent, deleted by another process after the
    fork; the child read the deleted entry from its inherited L1 (``hit``, for 300 s)."""
    redis_server.flush()
    store = redis_tiered(redis_server.url)
    other = redis_tiered(redis_server.url)  # "another process" (its own L1 and bus)
    try:
        wait_until(lambda: store.get("k") is None and store.state.l1_enabled, "never subscribed")
        store.set("k", b"old", 600)
        store.set("kept", b"v", 600)
        assert store.l1.get("k") == b"old"  # warmed up: the parent's L1 holds it

        def child(me: Child) -> None:
            state = store.state
            bus = state.bus
            me.say({"flags": [bus.healthy, state.subscribed, state.l1_enabled]})
            me.wait()  # the entry is deleted elsewhere now
            value = store.get("k") if side == "sync" else asyncio.run(store.aget("k"))
            me.say({"value": None if value is None else value.decode()})
            # subscribed by that first use, with a listener of its own
            wait_until(lambda: state.bus.healthy and state.l1_enabled, "child never subscribed")
            assert store.l1.get("kept") is None  # the inherited copy was emptied
            assert store.get("kept") == b"v" and store.l1.get("kept") == b"v"  # promoted
            me.say({"ready": True})
            wait_until(lambda: store.l1.get("kept") is None, "the child never heard a delete")
            me.say({"evicted": True})

        forked = Child(child)
        try:
            at_fork = forked.hear()
            assert other.delete("k")
            forked.go()
            assert forked.hear() == {"value": None}  # not the parent's "old"
            assert at_fork == {"flags": [False, False, False]}  # not healthy until subscribed
            assert forked.hear() == {"ready": True}
            assert other.delete("kept")
            assert forked.hear() == {"evicted": True}
        finally:
            assert forked.end() == 0
        # the parent's own subscription is untouched by the child's
        assert store.state.bus.healthy and store.state.l1_enabled
    finally:
        store.close()
        other.close()


def test_a_child_forked_while_the_parent_held_the_tier_locks_can_use_the_store(
    redis_server: Any,
) -> None:
    """A parent's thread inside a subscription or an invalidation at the fork (the bus's
    and the state's locks held) left the child's first use waiting for ever."""
    redis_server.flush()
    store = redis_tiered(redis_server.url)
    try:
        store.set("k", b"v", 600)
        state = store.state
        bus = state.bus
        assert isinstance(bus, RedisInvalidationBus)

        def child(me: Child) -> None:
            me.say({"value": (store.get("k") or b"").decode()})
            wait_until(lambda: state.l1_enabled, "child never subscribed")
            store.get("k")  # promoted now
            me.say({"l1": (store.l1.get("k") or b"").decode()})

        with state.lock, state.guard, bus._lock:
            forked = Child(child)
        try:
            assert forked.hear() == {"value": "v"}
            assert forked.hear() == {"l1": "v"}
        finally:
            assert forked.end() == 0
    finally:
        store.close()


def test_a_store_on_the_in_process_bus_keeps_its_subscription_in_a_child() -> None:
    """A LocalInvalidationBus's subscribers are in the child's copy already: subscribing
    again would deliver every event twice."""
    bus = LocalInvalidationBus()
    store = TieredStore(l1=MemoryStore(), l2=MemoryStore(), bus=bus)
    store.set("k", b"v", 600)
    assert store.state.l1_enabled and len(bus._handlers) == 1

    def child(me: Child) -> None:
        store.set("k2", b"v2", 600)
        me.say(
            {
                "l1_enabled": store.state.l1_enabled,
                "handlers": len(bus._handlers),
                "l1": (store.l1.get("k2") or b"").decode(),
            }
        )

    forked = Child(child)
    try:
        assert forked.hear() == {"l1_enabled": True, "handlers": 1, "l1": "v2"}
    finally:
        assert forked.end() == 0
    store.close()


def test_a_memory_store_whose_lock_a_parent_thread_held_at_the_fork_works_in_the_child() -> None:
    """A parent's thread inside a MemoryStore call at the fork: the child's first use
    waited for a lock whose holder is not in the child (exit code 2: the child hung)."""
    store = MemoryStore()
    store.set("k", b"v", 600)

    def child(me: Child) -> None:
        store.set("k2", b"v2", 600)
        me.say({"k": (store.get("k") or b"").decode(), "k2": (store.get("k2") or b"").decode()})

    with store._lock:
        forked = Child(child)
    try:
        assert forked.hear() == {"k": "v", "k2": "v2"}
    finally:
        assert forked.end() == 0
