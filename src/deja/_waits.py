"""Bounded waits of the sync twins, where the async sources cancel what outlasts them.

A thread cannot be cancelled: a sync call that must give up on time (a plain call reading
a stream in flight, a lookup waiting for an embedding call) runs the work in a daemon
thread of its own and stops waiting for it, and the work ends by itself later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")

__all__ = ["bounded", "bounded_call", "seconds_left"]


def bounded(
    work: Callable[[], None], seconds: float | None, name: str = "deja-bounded-wait"
) -> None:
    """``work()`` waited for at most ``seconds``: in a daemon thread called ``name``, then
    :class:`TimeoutError` if it has not ended (it goes on), else its error raised here;
    with no bound (``None``), run here."""
    if seconds is None:
        work()
        return
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # raised in the caller's thread, if it still waits
            failed.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError
    if failed:
        raise failed[0]


def bounded_call(
    work: Callable[[], _T], seconds: float | None, name: str = "deja-bounded-wait"
) -> _T:
    """:func:`bounded` for work that returns a value: the value, or its error, or
    :class:`TimeoutError` after ``seconds`` (the work goes on, its value dropped)."""
    box: list[_T] = []
    bounded(lambda: box.append(work()), seconds, name)
    return box[0]


def seconds_left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (``time.monotonic``), none below 0; ``None``: no bound."""
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)
