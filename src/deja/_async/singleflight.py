"""Single-flight: concurrent identical misses make one upstream call.

The first caller for a key leads: it runs the call. Callers arriving while it runs follow:
they wait for the leader's outcome and receive the same result, or the same error, once.
If the leader is cancelled (or otherwise abandons the call without a result or error of its
own), the followers are woken and one of them leads a new call, so nobody is left hanging
on a caller that went away.

Each caller may bound its own wait (``wait=``, its call's timeout): a follower stops
waiting when its time is up (:class:`WaitExpired`), and a leader's timeout error is not
passed to followers who allowed more time than the leader did: one of them calls again.

This file is the source of truth; ``deja/_sync/singleflight.py`` is generated from it by
``scripts/unasync.py`` (threads instead of tasks).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from deja._aio import current_loop, wait_event  # unasync:
from deja._waits import seconds_left

__all__ = ["AsyncSingleFlight", "WaitExpired", "allows_longer"]

T = TypeVar("T")


class WaitExpired(Exception):
    """A follower's own ``wait`` ran out before the leader's call ended."""


class _Call(Generic[T]):
    __slots__ = ("abandoned", "done", "error", "key", "label", "patience", "result")

    def __init__(self, key: str, patience: float | None, label: object) -> None:
        self.key = key
        self.label = label
        self.done = asyncio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.patience = patience  # the leader's own wait


def allows_longer(wait: float | None, than: float | None) -> bool:
    """Whether a caller allowing ``wait`` seconds (None: no bound) allowed more than ``than``
    (a leader's: its timeout is then not this caller's; a live stream's opener's too)."""
    return than is not None and (wait is None or wait > than)


class AsyncSingleFlight(Generic[T]):
    """Coalesces concurrent calls by key within this process.

    ``timed_out(error)`` tells a leader's timeout from its other errors (default: none is).
    """

    def __init__(self, timed_out: Callable[[BaseException], bool] | None = None) -> None:
        # by (event loop, key): an event of one loop cannot wake another's (a client used
        # from several threads, each with its own loop, coalesces within each loop)
        self._calls: dict[object, _Call[T]] = {}
        self._timed_out = timed_out
        # guards the check-then-insert on _calls; never held across an await
        self._lock = threading.Lock()

    def in_flight(self) -> int:
        """How many keys have a call running now."""
        return len(self._calls)

    def label_of(self, key: str) -> object:
        """The label of the call a caller of ``key`` would join now (``None``: none)."""
        call = self._calls.get((current_loop(), key))  # unasync: call = self._calls.get(key)
        return None if call is None else call.label

    async def run(
        self,
        key: str,
        fn: Callable[[], Awaitable[T]],
        *,
        wait: float | None = None,
        label: object = None,
    ) -> tuple[T, bool]:
        """Run ``fn`` once for all concurrent callers of ``key``.

        Returns ``(result, shared)``: ``shared`` is true for followers, who got the
        leader's result without calling ``fn``. ``wait``: how long this caller waits for
        another's call, in seconds (None: until it ends); :class:`WaitExpired` after it.
        ``label``: what :meth:`detach` is told of the call, if this caller leads it.
        """
        deadline = None if wait is None else time.monotonic() + wait
        slot: object = (current_loop(), key)  # unasync: slot: object = key
        while True:
            with self._lock:
                call = self._calls.get(slot)
                leader = call is None
                if call is None:
                    call = self._calls[slot] = _Call(key, wait, label)
            if leader:
                return await self._lead(slot, call, fn), False
            left = seconds_left(deadline)
            if not await wait_event(call.done, left):  # unasync: if not call.done.wait(left):
                raise WaitExpired("an identical call in flight had not ended")
            if call.abandoned:
                continue  # the leader went away: one of the followers leads a new call
            if call.error is not None:
                if self._outwaited(call, wait):
                    continue  # the leader gave up sooner than this caller would
                raise call.error
            return call.result, True  # type: ignore[return-value]

    def detach(self, reached: Callable[[str, object], bool]) -> None:
        """Callers of the calls ``reached(key, label)`` selects that come from now on start
        a call of their own: the calls in flight go on for the callers they have (their
        answers were asked for before an invalidation that reaches them)."""
        with self._lock:
            for slot in [s for s, call in self._calls.items() if reached(call.key, call.label)]:
                del self._calls[slot]

    def _outwaited(self, call: _Call[T], wait: float | None) -> bool:
        """Whether ``call`` failed by its leader's timeout, which this caller outlasts."""
        timed_out = self._timed_out
        assert call.error is not None
        if timed_out is None or not timed_out(call.error):
            return False
        return allows_longer(wait, call.patience)

    async def _lead(self, slot: object, call: _Call[T], fn: Callable[[], Awaitable[T]]) -> T:
        try:
            result = await fn()
        except Exception as exc:
            call.error = exc
            raise
        except BaseException:
            # cancelled (or interrupted): not an outcome to share
            call.abandoned = True
            raise
        else:
            call.result = result
            return result
        finally:
            with self._lock:
                if self._calls.get(slot) is call:
                    del self._calls[slot]
            call.done.set()
