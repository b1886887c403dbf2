"""A circuit breaker for store calls, so a dead back-end costs nothing per request.

After ``threshold`` consecutive failures the breaker opens: calls are skipped (the cache
reports ``bypass``) until ``reset_after`` seconds have passed, then one probe is let
through; its success closes the breaker, its failure opens it again. A probe whose
outcome never comes (its caller cancelled, a client gone) is given up after another
``reset_after``, and the next call probes. Timers use ``time.monotonic`` (durations, not
dates).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Consecutive-failure circuit breaker with a single half-open probe."""

    def __init__(
        self,
        *,
        threshold: int = 5,
        reset_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        if reset_after <= 0:
            raise ValueError("reset_after must be positive")
        self.threshold = threshold
        self.reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._probe_at = 0.0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """True while calls are being skipped (half-open counts as open)."""
        return self._opened_at is not None

    def allow(self) -> bool:
        """Whether a call may go to the store now. Cheap when closed."""
        if self._opened_at is None:
            return True
        return self._allow_while_open()

    def _allow_while_open(self) -> bool:
        with self._lock:
            opened_at = self._opened_at  # re-read under the lock: another thread may have closed it
            if opened_at is None:
                return True
            now = self._clock()
            if now - opened_at < self.reset_after:
                return False
            if self._probing and now - self._probe_at < self.reset_after:
                return False  # one probe at a time, until it reports or is given up
            self._probing = True
            self._probe_at = now
            return True

    @property
    def resting(self) -> bool:
        """True while open and not yet due for a probe."""
        opened_at = self._opened_at
        return opened_at is not None and self._clock() - opened_at < self.reset_after

    def release(self) -> None:
        """Give back a probe whose call had nothing to report (it asked nothing of the
        back-end): the next call probes."""
        if self._opened_at is not None:
            with self._lock:
                self._probing = False

    def success(self) -> bool:
        """Record a success; returns True if this closed an open breaker."""
        if self._failures == 0 and self._opened_at is None:
            return False
        with self._lock:
            was_open = self._opened_at is not None
            self._failures = 0
            self._opened_at = None
            self._probing = False
            return was_open

    def failure(self) -> bool:
        """Record a failure; returns True if this opened the breaker."""
        with self._lock:
            self._failures += 1
            if self._opened_at is not None:
                # a failed probe: stay open for another window
                self._opened_at = self._clock()
                self._probing = False
                return False
            if self._failures >= self.threshold:
                self._opened_at = self._clock()
                return True
            return False
