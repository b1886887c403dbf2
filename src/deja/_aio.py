"""Asyncio helpers for the async sources, where their sync twins call ``threading`` directly."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = [
    "PatientTimeout",
    "current_loop",
    "kept",
    "later",
    "off_loop",
    "uncancelled",
    "wait_event",
    "within",
]

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


# A timer that runs this much later than it was due found its event loop busy elsewhere
# (a loop that keeps up runs timers within a millisecond; a loaded one, at the start of a
# burst, 10 to 20 ms late turn after turn, or hundreds of ms once).
LOOP_BUSY = 0.005
# The most time past its own a PatientTimeout gives back for a busy loop.
MOST_FORGIVEN = 2.0
# How many late runs of its timer a PatientTimeout forgives: a loop held up once (a burst
# parsed, a blocking call) is forgiven; one steadily late by a few ms each turn is not
# forgiven turn after turn (a server that answers nothing took seconds, not its timeout).
MOST_TIMES_FORGIVEN = 3


class PatientTimeout:
    """``async with PatientTimeout(seconds):`` — :func:`asyncio.timeout`, but the time the
    event loop spent busy elsewhere is not counted against the work it bounds.

    An answer that arrived in time may sit unread while the loop runs other callbacks (a
    burst of requests being parsed, a blocking call): a plain timeout then fires in the
    same turn as the read would have, and fails work that was done. Here, when the timer
    runs more than :data:`LOOP_BUSY` late, the deadline moves by as long as it was late, so
    the reply, if there is one, is read first: at most :data:`MOST_TIMES_FORGIVEN` times,
    and at most ``most_forgiven`` seconds in all. Work that never ends fails after
    ``seconds`` plus at most twice those (each late run, and the time it is given back).
    A loop that keeps up is not late: the work fails after ``seconds``, as with
    :func:`asyncio.timeout`.

    ``progress``: the loop time (:meth:`asyncio.AbstractEventLoop.time`) of the last sign
    that what is waited for moves (a queue served in turn); the deadline is then
    ``seconds`` after it, not after the start. Raises :class:`TimeoutError` on expiry.
    """

    __slots__ = (
        "_forgiven",
        "_handle",
        "_loop",
        "_most",
        "_progress",
        "_seconds",
        "_timeout",
        "_times",
    )

    def __init__(
        self,
        seconds: float,
        *,
        progress: Callable[[], float] | None = None,
        most_forgiven: float = MOST_FORGIVEN,
    ) -> None:
        self._seconds = seconds
        self._progress = progress
        self._most = most_forgiven
        self._forgiven = 0.0
        self._times = 0  # late runs forgiven
        self._handle: asyncio.TimerHandle | None = None
        self._timeout = asyncio.timeout(None)

    async def __aenter__(self) -> PatientTimeout:
        self._loop = asyncio.get_running_loop()
        await self._timeout.__aenter__()
        self._handle = self._loop.call_at(self._loop.time() + self._seconds, self._check)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        await self._timeout.__aexit__(*exc_info)

    def expired(self) -> bool:
        """Whether the deadline passed (the work was cancelled for it)."""
        return self._timeout.expired()

    def _check(self) -> None:
        handle = self._handle
        assert handle is not None
        loop = self._loop
        now = loop.time()
        due = handle.when()
        late = now - due
        if self._progress is not None:
            due = max(due, self._progress() + self._seconds)
        if late > LOOP_BUSY and self._forgiven < self._most and self._times < MOST_TIMES_FORGIVEN:
            given = min(late, self._most - self._forgiven)
            self._forgiven += given
            self._times += 1
            due = max(due, now + given)
        if due > now:
            self._handle = loop.call_at(due, self._check)
        else:
            self._handle = None
            self._timeout.reschedule(now)  # expires now: the work is cancelled
