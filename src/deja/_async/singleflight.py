"""Single-flight: concurrent identical misses make one upstream call.

The first caller for a key leads: it runs the call. Callers arriving while it runs follow:
they wait for the leader's outcome and receive the same result, or the same error, once.
If the leader is cancelled (or otherwise abandons the call without a result or error of its
own), the followers are woken and one of them leads a new call, so nobody is left hanging
on a caller that went away.

This file is the source of truth; ``deja/_sync/singleflight.py`` is generated from it by
``scripts/unasync.py`` (threads instead of tasks).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["AsyncSingleFlight"]

T = TypeVar("T")


class _Call(Generic[T]):
    __slots__ = ("abandoned", "done", "error", "result")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None
        self.abandoned = False


class AsyncSingleFlight(Generic[T]):
    """Coalesces concurrent calls by key within this process."""

    def __init__(self) -> None:
        self._calls: dict[str, _Call[T]] = {}
        # guards the check-then-insert on _calls; never held across an await
        self._lock = threading.Lock()

    def in_flight(self) -> int:
        """How many keys have a call running now."""
        return len(self._calls)

    async def run(self, key: str, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Run ``fn`` once for all concurrent callers of ``key``.

        Returns ``(result, shared)``: ``shared`` is true for followers, who got the
        leader's result without calling ``fn``.
        """
        while True:
            with self._lock:
                call = self._calls.get(key)
                leader = call is None
                if call is None:
                    call = self._calls[key] = _Call()
            if leader:
                return await self._lead(key, call, fn), False
            await call.done.wait()
            if call.abandoned:
                continue  # the leader went away: one of the followers leads a new call
            if call.error is not None:
                raise call.error
            return call.result, True  # type: ignore[return-value]

    async def _lead(self, key: str, call: _Call[T], fn: Callable[[], Awaitable[T]]) -> T:
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
                if self._calls.get(key) is call:
                    del self._calls[key]
            call.done.set()
