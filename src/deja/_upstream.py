"""Upstream helpers both clients share (:class:`deja.AsyncClient` and its generated sync
twin :class:`deja.Client`), kept here once: what a streamed answer that carried no event
was, whether an OpenAI chunk ends a choice, and the once-per-process log of what a
provider adapter could not do for a request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from deja.errors import ProviderError

__all__ = ["NOT_A_STREAM_BYTES", "finishes", "not_a_stream", "warn_once"]

logger = logging.getLogger("deja.client")

# how much of a body that carried no event is kept, to say what it was
NOT_A_STREAM_BYTES = 2048

_warned: set[str] = set()
_warned_lock = threading.Lock()
_WARNED_MAX = 1024


def warn_once(provider: str, warnings: Sequence[str]) -> None:
    """Log what a provider adapter could not do for a request (a breakpoint not placed, a
    parameter with no equivalent) once per process and message, not on every call, whichever
    client (sync or async) met it."""
    for warning in warnings:
        text = f"{provider}: {warning}"
        with _warned_lock:
            if text in _warned or len(_warned) >= _WARNED_MAX:
                continue
            _warned.add(text)
        logger.warning("%s", text)


def finishes(event: Any) -> bool:
    """Whether an OpenAI chunk ends a choice (a finish reason)."""
    choices = event.get("choices") if isinstance(event, dict) else None
    return isinstance(choices, list) and any(
        isinstance(c, dict) and c.get("finish_reason") is not None for c in choices
    )


def not_a_stream(start: bytes, headers: Mapping[str, str], provider: str) -> ProviderError:
    """The error for a streamed answer that carried no event: the upstream's own error if
    it sent one as JSON, else what it sent instead."""
    try:
        body: Any = orjson.loads(start) if start else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message", "")
        return ProviderError(f"upstream stream failed: {message}", body=body, provider=provider)
    kind = headers.get("content-type") or "no content type"
    return ProviderError(
        f"upstream answered a stream request without any event ({kind}, {len(start)} bytes"
        f"{' or more' if len(start) >= NOT_A_STREAM_BYTES else ''})",
        provider=provider,
    )
