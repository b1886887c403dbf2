"""The invalidations a cache made while answers were being fetched.

An answer fetched for a request that began before ``delete``, ``delete_tag`` or ``clear``
reached its entry was made from what the invalidation declared stale (the document a tag
names, say): stored after it, it would be served for its whole TTL as if nothing had been
invalidated. Each fetch notes the :meth:`Invalidations.now` it began at, and its answer is
not kept when an invalidation since then reaches it (:meth:`Invalidations.since`).

An invalidation is noted before its entries are deleted, and a fetch asks after it wrote its
entry (deleting the entry again if one reaches it): whichever comes first, the entry does
not outlive the invalidation. Another process's invalidations are seen by the marks they
leave in a store shared by processes (the cache's ``_marked_after``), stamped with their
time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["MARKS", "Asked", "Invalidations"]

MARKS = "!invalidated:"
"""What the names of the invalidations' marks in a shared store hold after the cache's
key prefix and version (``deja:v1!invalidated:...``): no entry's key, and out of every
prefix ``clear`` deletes (stores do not count them as entries)."""


@dataclass(frozen=True, slots=True)
class Asked:
    """When an answer was asked for: :meth:`Invalidations.now` then (this process's
    invalidations), and the cache's clock (the other processes', by their marks)."""

    count: int
    at: float


@dataclass(frozen=True, slots=True)
class _Reach:
    """What one invalidation reached: a key, a key prefix (a scope, or every entry), or
    a tag of one tenant (in one namespace, or in all of them: ``every_namespace``)."""

    key: str | None = None
    prefix: str | None = None
    tag: str | None = None
    tenant: str | None = None
    namespace: str | None = None
    every_namespace: bool = False

    def reaches(
        self, key: str, tenant: str | None, namespace: str | None, tags: tuple[str, ...]
    ) -> bool:
        if self.key is not None:
            return key == self.key
        if self.prefix is not None:
            return key.startswith(self.prefix)
        return (
            self.tag in tags
            and tenant == self.tenant
            and (self.every_namespace or namespace == self.namespace)
        )


class Invalidations:
    """The last ``remembered`` invalidations of one cache, numbered (thread-safe). A fetch
    that began before the oldest one remembered is taken as reached: its answer is not
    kept (a miss more, never a stale answer)."""

    def __init__(self, remembered: int = 4096) -> None:
        self._count = 0
        self._drops_begun = 0
        self._drops_ended = 0
        self._recent: deque[tuple[int, _Reach]] = deque(maxlen=remembered)
        self._lock = threading.Lock()

    def now(self) -> int:
        """The number of invalidations so far: a fetch's starting point for :meth:`since`."""
        return self._count

    def key(self, key: str) -> None:
        """Note that ``key``'s entry is being deleted."""
        self._note(_Reach(key=key))

    def prefix(self, prefix: str) -> None:
        """Note that the entries whose keys start with ``prefix`` are being deleted."""
        self._note(_Reach(prefix=prefix))

    def tag(self, tag: str, tenant: str | None, namespace: str | None, *, every: bool) -> None:
        """Note that ``tenant``'s entries tagged ``tag`` are being deleted, in ``namespace``
        or, when ``every``, in every namespace."""
        self._note(_Reach(tag=tag, tenant=tenant, namespace=namespace, every_namespace=every))

    @contextmanager
    def dropping(self) -> Iterator[None]:
        """Around the drop of tag records (``delete_tag``'s): an entry tagged before the
        drop read its record but written after it is left with no record naming it (see
        :meth:`dropped_since`)."""
        with self._lock:
            self._drops_begun += 1
        try:
            yield
        finally:
            with self._lock:
                self._drops_ended += 1

    def drops_ended(self) -> int:
        """The number of drops ended so far: a tagged write's starting point for
        :meth:`dropped_since`."""
        return self._drops_ended

    def dropped_since(self, ended: int) -> bool:
        """Whether a drop ran at some moment since :meth:`drops_ended` returned ``ended``
        (one had begun and not ended then, or began since): the records written since then
        may have been dropped, and are written again."""
        return self._drops_begun > ended

    def _note(self, reach: _Reach) -> None:
        with self._lock:
            self._count += 1
            self._recent.append((self._count, reach))

    def since(
        self,
        start: int,
        key: str,
        tenant: str | None,
        namespace: str | None,
        tags: tuple[str, ...],
    ) -> bool:
        """Whether an invalidation made after :meth:`now` returned ``start`` reaches the
        entry ``key`` (of ``tenant``, in ``namespace``, tagged ``tags``)."""
        if self._count == start:  # (the common case: nothing since, no lock)
            return False
        with self._lock:  # (the newest first, as far as those made since go)
            if not self._recent or self._recent[0][0] > start + 1:
                return True  # some of those made since are forgotten already
            for n, reach in reversed(self._recent):
                if n <= start:
                    return False
                if reach.reaches(key, tenant, namespace, tags):
                    return True
        return False
