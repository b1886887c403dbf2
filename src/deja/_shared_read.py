"""One read of an async source that outlives the caller waiting for it.

A live stream shared by several callers is read by whichever of them needs the next chunk.
If that caller is cancelled while it waits (a client gone, an ``asyncio.wait_for``
timeout), cancelling the read itself would break the upstream generator for everyone, and
the others would see its end as a clean one: a cut answer, unannounced. :class:`SharedRead`
runs each read in a task of its own and awaits it shielded, so a cancelled caller leaves
the read running and the next caller awaits the same one. (Async only: threads are not
cancelled, so the sync twin reads directly.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

__all__ = ["SharedRead"]

T = TypeVar("T")


class SharedRead(Generic[T]):
    """``await shared()`` runs ``read()`` once per result, whoever waits for it."""

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._task: asyncio.Future[T] | None = None

    async def __call__(self) -> T:
        if self._task is None:
            self._task = asyncio.ensure_future(self._read())
            self._task.add_done_callback(_retrieve)
        task = self._task
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            # this waiter was cancelled: the read stays for the next caller, pending or
            # done (a read that ended in the same loop turn holds a chunk nobody has taken
            # yet); only a read that was itself cancelled is forgotten
            if task.cancelled() and self._task is task:
                self._task = None
            raise
        except BaseException:
            if self._task is task:  # the read's own error, taken by this waiter
                self._task = None
            raise
        if self._task is task:
            self._task = None
        return result

    async def cancel(self) -> None:
        """Stop a read nobody waits for any more, and wait until it has stopped."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _retrieve(task: asyncio.Future[Any]) -> None:
    # a read whose waiters all left still ends in an error or a cancellation: mark it seen
    if not task.cancelled():
        task.exception()
