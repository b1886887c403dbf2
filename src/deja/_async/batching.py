"""Texts asked for at once share calls: concurrent embeddings of different prompts, batched.

A text to embed waits in a queue. A caller that finds fewer than ``parallel`` calls running
takes its own text and the oldest others waiting (``size`` in all) into one call; the rest
wait, for their text's call to end or for a running call to end so that one of them takes
the next batch. Nothing waits for a batch to fill: with no call running a text is asked for
at once (alone, when nobody else is waiting), so batching adds no latency to light traffic,
and under load one call carries what arrived while the others ran.

An identical text asked for twice joins the first (in the queue or in its call): one call
for it, as single-flight gives. A call's error reaches every text in it. A caller cancelled
while it runs a call leaves the call running (in a task of its own) for the others in it; a
call interrupted all the same (its loop closing) is asked for again by its waiters. A waiter
cancelled while its text is still queued takes it out, if nobody else waits for it.

A caller may bound its wait (``run(text, wait=...)``), queued time included: past it, it
leaves with :class:`WaitExpired` (its text taken out of the queue if nobody else waits for
it; a call it runs goes on for the others in it). Without that bound a text queued behind
calls to a hung embedder waited for them, then for its own call (twice the timeout).

This file is the source of truth; ``deja/_sync/batching.py`` is generated from it by
``scripts/unasync.py`` (threads instead of tasks).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from deja._aio import current_loop, kept, wait_event  # unasync: from deja._waits import bounded
from deja._outcomes import Failed
from deja._waits import seconds_left

__all__ = ["AsyncBatchFlight", "WaitExpired"]

T = TypeVar("T")


class WaitExpired(TimeoutError):
    """A caller's own ``wait`` ran out before its text's call ended (the call, if one took
    the text, goes on for the others in it)."""


class _Call(Generic[T]):
    __slots__ = ("abandoned", "done", "error", "results")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.results: dict[str, T | Failed] = {}
        self.error: BaseException | None = None
        self.abandoned = False


class _Ticket(Generic[T]):
    """A queued text: how many callers wait for it, and the call that took it."""

    __slots__ = ("call", "waiters")

    def __init__(self) -> None:
        self.waiters = 0
        self.call: _Call[T] | None = None


class _Queue(Generic[T]):
    """One event loop's texts: queued (oldest first), and in calls."""

    __slots__ = ("calls", "queued", "running", "turn")

    def __init__(self) -> None:
        self.queued: dict[str, _Ticket[T]] = {}
        self.calls: dict[str, _Call[T]] = {}
        self.running = 0
        self.turn = asyncio.Event()  # set, and replaced, when a call starts or ends

    def next_turn(self) -> None:
        turn, self.turn = self.turn, asyncio.Event()
        turn.set()


class AsyncBatchFlight(Generic[T]):
    """Runs ``call(texts)`` (one result per text, in order; a :class:`Failed` for a text
    that failed alone) for the texts asked at once.

    ``size``: texts per call at most; ``parallel``: calls running at once at most (``None``:
    no bound, each text its own call, identical ones shared).
    """

    def __init__(
        self,
        call: Callable[[list[str]], Awaitable[Sequence[T | Failed]]],
        *,
        size: int,
        parallel: int | None,
    ) -> None:
        if size < 1 or (parallel is not None and parallel < 1):
            raise ValueError("size and parallel must be >= 1")
        self._call = call
        self._size = size
        self._parallel = parallel
        # by event loop: an event of one loop cannot wake another's
        self._queues: dict[object, _Queue[T]] = {}
        self._lock = threading.Lock()  # never held across an await

    def in_flight(self) -> int:
        """How many texts are queued or in a call now."""
        with self._lock:
            return sum(len(q.queued) + len(q.calls) for q in self._queues.values())

    async def run(self, text: str, *, wait: float | None = None) -> T:
        """``text``'s result, from a call this caller runs or one it waits for.

        ``wait``: seconds this caller waits at most, from now (queued, then in a call),
        then :class:`WaitExpired`; ``None``: until its call ends.
        """
        slot: object = current_loop()  # unasync: slot: object = None
        deadline = None if wait is None else time.monotonic() + wait
        ticket: _Ticket[T] | None = None  # this caller's place in the queue
        while True:
            texts: list[str] = []
            with self._lock:
                call = ticket.call if ticket is not None else None
                if call is None:  # (a text taken by a call that ended needs no queue)
                    queue = self._queues.get(slot) or self._queues.setdefault(slot, _Queue())
                    if ticket is None:
                        call = queue.calls.get(text)
                if call is None:
                    if ticket is None:
                        ticket = queue.queued.get(text)
                        if ticket is None:
                            ticket = queue.queued[text] = _Ticket()
                        ticket.waiters += 1
                    if self._parallel is None or queue.running < self._parallel:
                        call = _Call()
                        texts = self._take(queue, text, call)
                    else:
                        turn = queue.turn
            if texts:
                assert call is not None
                return await self._lead(slot, queue, call, texts, text, deadline=deadline)
            left = seconds_left(deadline)
            try:
                if call is None:
                    if not await wait_event(turn, left):  # unasync: if not turn.wait(left):
                        raise TimeoutError
                    continue
                if not await wait_event(call.done, left):  # unasync: if not call.done.wait(left):
                    raise TimeoutError
            except BaseException as exc:
                if call is None:
                    assert ticket is not None
                    self._give_up(slot, queue, text, ticket)
                if isinstance(exc, TimeoutError):
                    raise WaitExpired(f"no result within {wait} s") from None
                raise
            if call.abandoned:
                ticket = None
                continue  # its caller went away: one of its waiters asks again
            return _outcome(call, text)

    def _take(self, queue: _Queue[T], text: str, call: _Call[T]) -> list[str]:
        """``text`` and the oldest other queued texts (``size`` in all) into ``call``.
        Call with the lock held."""
        texts = [text, *(t for t in queue.queued if t != text)][: self._size]
        for taken in texts:
            queue.queued.pop(taken).call = call
            queue.calls[taken] = call
        queue.running += 1
        queue.next_turn()  # the waiters of the texts taken wait for this call now
        return texts

    def _give_up(self, slot: object, queue: _Queue[T], text: str, ticket: _Ticket[T]) -> None:
        """A waiter of a queued ``text`` left: the last one takes it out of the queue."""
        with self._lock:
            ticket.waiters -= 1
            if ticket.waiters == 0 and queue.queued.get(text) is ticket:
                del queue.queued[text]
                self._forget_if_idle(slot, queue)

    async def _lead(
        self,
        slot: object,
        queue: _Queue[T],
        call: _Call[T],
        texts: list[str],
        text: str,
        *,
        deadline: float | None,
    ) -> T:
        # the call runs to its end for the other texts in it even if this caller leaves
        # (cancelled, or past its deadline: the sync twin runs it in a thread of its own)
        work = functools.partial(self._complete, slot, queue, call, texts)
        running = kept(asyncio.ensure_future(work()))  # unasync:
        if deadline is None:
            await asyncio.shield(running)  # unasync: work()
            return _outcome(call, text)
        left = seconds_left(deadline)
        shielded = asyncio.shield(running)  # unasync:
        try:
            await asyncio.wait_for(shielded, left)  # unasync: bounded(work, left, _CALL)
        except TimeoutError:
            raise WaitExpired(f"no result within {left:.3g} s of its call") from None
        return _outcome(call, text)

    async def _complete(
        self, slot: object, queue: _Queue[T], call: _Call[T], texts: list[str]
    ) -> None:
        """Run ``call`` for ``texts`` and give every waiter its outcome."""
        try:
            results = await self._call(texts)
            if len(results) != len(texts):
                raise ValueError(f"{len(results)} results for {len(texts)} texts")
        except Exception as exc:
            call.error = exc
        except BaseException:
            call.abandoned = True  # interrupted: not an outcome to share
            raise
        else:
            call.results = dict(zip(texts, results, strict=True))
        finally:
            with self._lock:
                for taken in texts:
                    if queue.calls.get(taken) is call:
                        del queue.calls[taken]
                queue.running -= 1
                call.done.set()
                queue.next_turn()  # a queued text may start its call now
                self._forget_if_idle(slot, queue)

    def _forget_if_idle(self, slot: object, queue: _Queue[T]) -> None:
        """Drop an idle queue (its loop may be gone). Call with the lock held."""
        if not (queue.queued or queue.calls or queue.running) and self._queues.get(slot) is queue:
            del self._queues[slot]


_CALL = "deja-embedding-call"  # the sync twin's thread of a call a caller stopped waiting for


def _outcome(call: _Call[T], text: str) -> T:
    """``text``'s result from a call that ended, or its error raised."""
    if call.error is not None:
        raise call.error
    result = call.results[text]
    if isinstance(result, Failed):
        raise result.error
    return result
