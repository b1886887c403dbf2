"""Say once, then count: when to log something that may happen on every call.

One rule for the lines of a failure or an oddity that recurs (an upstream down, a hook that
raises, a publish that fails, models without a price): the first occurrence of a key is
said at once; the next ones within ``window`` seconds of the last line are only counted,
and the first one past it is said with that count. A key quiet for a whole window starts
over (its next line is "fresh").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Recurring"]


@dataclass(slots=True)
class _Streak:
    """One recurring key: when a line last said it, the occurrences since, and the last
    one (a key quiet for a whole window starts over)."""

    said: float
    last: float
    unsaid: int = 0


class Recurring:
    """Which occurrences of a recurring thing to say (:meth:`occurred`), by key, for at
    most ``max_keys`` keys at once (the oldest forgotten first: keys callers make up stay
    bounded). Thread-safe; ``clock`` (a plain attribute) is ``time.monotonic`` unless a
    test drives another."""

    def __init__(
        self,
        *,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._streaks: dict[object, _Streak] = {}
        self._lock = threading.Lock()

    def occurred(self, key: object) -> tuple[bool, int, float] | None:
        """Note one occurrence of ``key``. ``None``: say nothing now; else ``(fresh,
        unsaid, seconds)``: say it, with the ``unsaid`` occurrences of the last
        ``seconds`` before it; ``fresh``: it starts (again, after a quiet window)."""
        now = self.clock()
        with self._lock:
            streak = self._streaks.get(key)
            if streak is None or now - streak.last >= self.window:
                if streak is None and len(self._streaks) >= self.max_keys:
                    del self._streaks[next(iter(self._streaks))]  # the oldest
                unsaid, since = (streak.unsaid, streak.said) if streak is not None else (0, now)
                self._streaks[key] = _Streak(now, now)
                return True, unsaid, now - since
            streak.last = now
            if now - streak.said < self.window:
                streak.unsaid += 1
                return None
            unsaid, since = streak.unsaid, streak.said
            streak.said, streak.unsaid = now, 0
            return False, unsaid, now - since

    def unsaid(self, key: object) -> int:
        """How many occurrences of ``key`` were counted and not said yet."""
        with self._lock:
            streak = self._streaks.get(key)
            return 0 if streak is None else streak.unsaid
