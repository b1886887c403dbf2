"""Asyncio helpers for the async sources, where their sync twins call ``threading`` directly."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["current_loop", "kept", "later", "off_loop", "uncancelled", "wait_event", "within"]

T = TypeVar("T")


async def uncancelled(make: Callable[[], Awaitable[T]]) -> T:
    """Await ``make()`` to its end even if this task is cancelled meanwhile, then raise the
    cancellation. ``make()`` must be cancellable only before it does anything (a lock's
    acquisition): a cancelled attempt is made again."""
    cancelled = False
    while True:
        try:
            result = await make()
            break
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


_LATER: set[asyncio.Future[Any]] = set()  # tasks started here, kept until done


def kept(task: asyncio.Future[T]) -> asyncio.Future[T]:
    """``task``, held until it is done (the loop keeps only weak references to tasks: one
    whose starter went away could be collected before it ends)."""
    _LATER.add(task)
    task.add_done_callback(_LATER.discard)
    return task


def later(loop: asyncio.AbstractEventLoop | None, leave: Callable[[], Any]) -> None:
    """Run ``leave`` soon, away from the caller (a finalizer, which must not block nor
    take locks): on ``loop`` as a task when it is a coroutine function of that loop, in a
    daemon thread without one (the sync twins)."""
    if sys.is_finalizing():
        return  # the interpreter is exiting: a thread started now would never start
    if loop is None:
        with contextlib.suppress(RuntimeError):
            threading.Thread(target=leave, name="deja-stream-leave", daemon=True).start()
        return
    if loop.is_closed():
        return  # the loop is gone, and its transports with it

    def start() -> None:
        task = loop.create_task(leave())
        _LATER.add(task)
        task.add_done_callback(_LATER.discard)

    with contextlib.suppress(RuntimeError):  # closed meanwhile
        loop.call_soon_threadsafe(start)


def current_loop() -> asyncio.AbstractEventLoop:
    """The running event loop (state bound to one loop is kept per loop)."""
    return asyncio.get_running_loop()


async def wait_event(event: asyncio.Event, seconds: float | None) -> bool:
    """Wait for ``event`` at most ``seconds`` (None: no bound); whether it was set, as
    :meth:`threading.Event.wait` answers."""
    if seconds is None:
        await event.wait()
        return True
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


# batches at least this long are decoded or encoded in a thread (off_loop)
OFFLOAD_BATCH = 32


async def off_loop(work: Callable[[], T], size: int, *, threshold: int = OFFLOAD_BATCH) -> T:
    """``work()`` over ``size`` items (or bytes): in a thread when there are enough of them
    to hold the event loop up (2,048 embeddings: ~0.8 s of encoding), else right here."""
    return await asyncio.to_thread(work) if size >= threshold else work()


async def within(
    work: Awaitable[T],
    seconds: float | None,
    otherwise: T,
    late: Callable[[], object] | None = None,
) -> T:
    """``work``'s result, or ``otherwise`` when it takes longer than ``seconds`` (it is
    cancelled then, and ``late()`` called; ``None``: no bound)."""
    if seconds is None:
        return await work
    try:
        return await asyncio.wait_for(work, seconds)
    except TimeoutError:
        if late is not None:
            late()
        return otherwise
