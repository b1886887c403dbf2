"""Bounded waits of the sync twins, where the async sources cancel what outlasts them.

A thread cannot be cancelled: a sync call that must give up on time (a plain call reading
a stream in flight, a lookup waiting for an embedding call) runs the work in a daemon
thread of its own and stops waiting for it, and the work ends by itself later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeGuard, TypeVar

_T = TypeVar("_T")

__all__ = ["bounded", "bounded_call", "is_seconds", "seconds_left"]


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


# the most seconds a setting may hold: past a float's range an int (10**400) compared fine
# and then failed as an OverflowError wherever it was added to a clock
_MOST_SECONDS = 1e300


def is_seconds(value: object, *, zero: bool = False) -> TypeGuard[float]:
    """Whether ``value`` is a finite number of seconds (an int or a float, not a bool, not
    NaN, not past a float's range), above 0 (or 0 too, with ``zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (value >= 0 if zero else value > 0) and value <= _MOST_SECONDS
