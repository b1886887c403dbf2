"""One provider context cache (Gemini's ``cachedContents``), as deja returns and stores it.

Kept apart from the manager (``deja._async.context_caches`` and its generated sync twin) so
that both twins share one type.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

__all__ = ["ContextCache"]


@dataclass(frozen=True, slots=True)
class ContextCache:
    """One provider context cache: its resource ``name`` (``cachedContents/…``), when it
    expires (``expire_time``, epoch seconds), how many ``tokens`` it holds, and the
    ``model`` it was made for. Pass :attr:`id` as a request's ``context_cache_id``."""

    name: str
    expire_time: float
    tokens: int
    model: str = ""

    @property
    def id(self) -> str:
        """The name to pass as ``context_cache_id`` (LiteLLM's ``cached_context.id``)."""
        return self.name

    def to_bytes(self) -> bytes:
        """The record as stored (JSON)."""
        return orjson.dumps(
            {
                "name": self.name,
                "expire_time": self.expire_time,
                "tokens": self.tokens,
                "model": self.model,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> ContextCache | None:
        """The entry stored as ``raw``, or ``None`` when it is not one (never raises)."""
        try:
            data = orjson.loads(raw)
            return cls(
                name=str(data["name"]),
                expire_time=float(data["expire_time"]),
                tokens=int(data["tokens"]),
                model=str(data.get("model", "")),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
