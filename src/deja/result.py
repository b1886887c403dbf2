"""What a cache lookup returns: the response (if any) and how it was served."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from deja.entry import StoredEntry

__all__ = ["CacheInfo", "CacheResult", "CacheStats", "CacheStatus", "attach_info", "cache_info"]

CacheStatus = Literal["hit", "semantic_hit", "miss", "bypass"]


# Not frozen: a frozen dataclass costs ~3x more to build, and one is built on every hit.
@dataclass(slots=True)
class CacheInfo:
    """How one response was served (``response.cache`` in the client).

    ``status``: ``hit`` or ``semantic_hit`` (served from the cache, or shared from an
    identical call in flight), ``miss`` (looked up, absent or store error) or ``bypass``
    (lookup skipped: ``no-cache``, or the store's circuit breaker is open). ``age`` is the
    entry's age in seconds on a hit; ``cost_usd`` what this response cost (0 on a hit);
    ``saved_usd`` what the hit saved.
    """

    status: CacheStatus
    key: str
    similarity: float | None = None
    age: float | None = None
    cost_usd: float = 0.0
    saved_usd: float = 0.0

    @property
    def hit(self) -> bool:
        """True when the response came from the cache (exact or semantic)."""
        return self.status in ("hit", "semantic_hit")


class CacheResult:
    """A response (``None`` on a plain lookup that missed) and its :class:`CacheInfo`.

    On a hit the response is parsed from the stored bytes when first read, and each result
    parses its own copy, so callers may mutate what they get. ``response_bytes`` gives the
    stored JSON as it is (what the proxy sends), without parsing.
    """

    __slots__ = ("_response", "entry", "gone", "info", "stale")

    def __init__(
        self,
        response: dict[str, Any] | None,
        info: CacheInfo,
        entry: StoredEntry | None = None,
        *,
        gone: bool = False,
        stale: bool = False,
    ) -> None:
        self._response = response
        self.info = info
        self.entry = entry
        self.gone = gone
        """On a miss: the store said the entry is not there (absent, expired or
        unreadable), not merely that it could not be read now or is older than asked."""
        self.stale = stale
        """On a miss: the entry is there, older than its TTL or the request's max age."""

    @property
    def response(self) -> dict[str, Any] | None:
        """The response object (parsed on first access on a hit)."""
        if self._response is None and self.entry is not None:
            self._response = self.entry.parse_response()
        return self._response

    @property
    def response_bytes(self) -> bytes | None:
        """The response as JSON bytes: the stored bytes on a hit, serialized otherwise."""
        if self.entry is not None:
            return self.entry.response_bytes
        return None if self._response is None else orjson.dumps(self._response)

    def __repr__(self) -> str:
        return f"CacheResult(info={self.info!r})"


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since the cache was created (this process only)."""

    hits: int
    semantic_hits: int
    misses: int
    bypasses: int
    coalesced: int
    store_errors: int
    saved_tokens: int
    saved_usd: float

    @property
    def hit_ratio(self) -> float:
        """(hits + semantic hits) / lookups, 0.0 before the first lookup."""
        served = self.hits + self.semantic_hits
        total = served + self.misses
        return served / total if total else 0.0


# How each live object deja.wrap returned was served, by id: SDK response models are
# pydantic models (unhashable, and an attribute would join their equality and dumps), so
# the info sits beside them and leaves with them.
_INFOS: dict[int, CacheInfo] = {}
_INFOS_LOCK = threading.Lock()


def _forget(ident: int) -> None:
    with _INFOS_LOCK:
        _INFOS.pop(ident, None)


def attach_info(obj: Any, info: CacheInfo) -> Any:
    """Remember how ``obj`` was served, for :func:`cache_info`, as long as ``obj`` lives;
    ``obj`` is returned."""
    ident = id(obj)
    with _INFOS_LOCK:
        _INFOS[ident] = info
    weakref.finalize(obj, _forget, ident)
    return obj


def cache_info(response: Any) -> CacheInfo | None:
    """How deja served ``response``: its :class:`CacheInfo` (``status`` hit, semantic_hit,
    miss or bypass; ``key``, ``similarity``, ``age``, ``cost_usd``, ``saved_usd``).

    Takes what :func:`deja.wrap`'s ``chat.completions.create`` and ``embeddings.create``
    returned (an SDK model, or a stream, which also has it as ``.cache``), and the client's
    own responses and results (their ``.cache`` / ``.info``). ``None`` for an object deja
    did not answer (a copy of a response, for one: ``model_copy`` makes a new object).
    An embeddings response is a ``hit`` only when every input came from the cache.
    """
    for name in ("cache", "info"):
        info = getattr(response, name, None)
        if isinstance(info, CacheInfo):
            return info
    with _INFOS_LOCK:
        return _INFOS.get(id(response))
