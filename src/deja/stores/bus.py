"""Invalidation buses: how one process tells the others to drop entries from their L1.

A :class:`~deja.stores.tiered.TieredStore` keeps a per-process in-memory L1 in front of a
shared L2. When any process deletes, overwrites or clears entries, it publishes an
:class:`Invalidation`; every other process evicts those keys (or that prefix) from its L1.
A bus that cannot deliver (subscription down) says so through ``healthy``: the tiered store
then clears its L1 and reads the L2 directly until the bus is back, so a process never
serves an entry that another process removed.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Invalidation", "InvalidationBus", "LocalInvalidationBus"]


@dataclass(frozen=True, slots=True)
class Invalidation:
    """Drop ``keys`` and every key starting with ``prefix`` (if set) from L1 caches.

    ``origin`` identifies the publishing store, which ignores its own messages.
    """

    origin: str
    keys: tuple[str, ...] = ()
    prefix: str | None = None


Handler = Callable[[Invalidation], None]
HealthHandler = Callable[[bool], None]


@runtime_checkable
class InvalidationBus(Protocol):
    """Publishes invalidations and delivers the other processes' ones."""

    @property
    def healthy(self) -> bool:
        """Whether messages are being delivered to this process now."""

    def publish(self, event: Invalidation) -> None:
        """Send ``event`` to every subscriber (best-effort: never raises)."""

    async def apublish(self, event: Invalidation) -> None:
        """Async twin of :meth:`publish`."""

    def subscribe(self, handler: Handler, on_health: HealthHandler) -> None:
        """Deliver every event to ``handler``; report subscription up/down to ``on_health``."""

    def close(self) -> None:
        """Stop delivering and release connections.

        A bus shared by several stores reports the stop to ``on_health`` as down: a store
        closing it on purpose says so first (it logs no outage), the others stop using
        their L1s."""


def new_origin() -> str:
    """A unique id for one publishing store."""
    return uuid.uuid4().hex


class LocalInvalidationBus:
    """A bus within one process (several tiered stores sharing an L2), and for tests."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self._lock = threading.Lock()
        self._healthy = True
        self._health_handlers: list[HealthHandler] = []

    @property
    def healthy(self) -> bool:
        """Always delivering, unless a test says otherwise with :meth:`set_healthy`."""
        return self._healthy

    def publish(self, event: Invalidation) -> None:
        """Deliver ``event`` to every subscriber at once."""
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler(event)

    async def apublish(self, event: Invalidation) -> None:
        """Async twin of :meth:`publish`."""
        self.publish(event)

    def subscribe(self, handler: Handler, on_health: HealthHandler) -> None:
        """Add a subscriber."""
        with self._lock:
            self._handlers.append(handler)
            self._health_handlers.append(on_health)

    def set_healthy(self, healthy: bool) -> None:
        """Simulate the subscription going down or coming back (tests)."""
        self._healthy = healthy
        for on_health in list(self._health_handlers):
            on_health(healthy)

    def close(self) -> None:
        """Stop delivering: tell every subscriber (a store still open on this bus must stop
        using its L1, as no invalidation reaches it any more), then forget them."""
        with self._lock:
            self._handlers.clear()
            health_handlers = list(self._health_handlers)
            self._health_handlers.clear()
        if self._healthy:
            self._healthy = False
            for on_health in health_handlers:
                on_health(False)
