"""The stored entry: a versioned envelope around a response, and its codec.

On the wire an entry is a 4-byte header, ``b"DJ"`` + format version + flags, followed by
orjson of the envelope, zlib-compressed when the JSON is at least ``compress_min_bytes``
long (flag bit 0). The header lets a future deja read old entries, and lets any deja
recognise bytes that are not an entry at all; those raise :class:`EntryDecodeError`,
which the cache façade treats as a miss and deletes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from deja.errors import EntryDecodeError

__all__ = ["FORMAT_VERSION", "Entry", "decode", "encode"]

FORMAT_VERSION = 1
_MAGIC = b"DJ"
_FLAG_ZLIB = 0x01
_HEADER_PLAIN = _MAGIC + bytes([FORMAT_VERSION, 0])
_HEADER_ZLIB = _MAGIC + bytes([FORMAT_VERSION, _FLAG_ZLIB])


@dataclass(slots=True)
class Entry:
    """One cached response and what deja knows about it.

    ``created``/``expires`` are wall-clock seconds; ``cost_usd`` is what the original
    call cost (what a hit saves); ``chunks`` keeps a streamed answer's chunk boundaries so
    it can be replayed as it came.
    """

    response: dict[str, Any]
    created: float
    expires: float | None
    model: str
    tenant: str | None = None
    namespace: str | None = None
    tags: tuple[str, ...] = ()
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    chunks: list[dict[str, Any]] | None = field(default=None)


def encode(entry: Entry, *, compress_min_bytes: int = 4096) -> bytes:
    """Serialize ``entry``; compress when the JSON is at least ``compress_min_bytes``."""
    doc: dict[str, Any] = {
        "response": entry.response,
        "created": entry.created,
        "expires": entry.expires,
        "model": entry.model,
        "tenant": entry.tenant,
        "namespace": entry.namespace,
        "tags": list(entry.tags),
        "usage": entry.usage,
        "cost_usd": entry.cost_usd,
    }
    if entry.chunks is not None:
        doc["chunks"] = entry.chunks
    body = orjson.dumps(doc)
    if len(body) >= compress_min_bytes:
        return _HEADER_ZLIB + zlib.compress(body, 6)
    return _HEADER_PLAIN + body


def _number(doc: dict[str, Any], name: str, *, optional: bool) -> float | None:
    value = doc.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EntryDecodeError(f"entry field {name!r} is not a number")
    return float(value)


def decode(data: bytes) -> Entry:
    """Parse bytes written by :func:`encode`; anything else raises EntryDecodeError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EntryDecodeError(f"store returned {type(data).__name__}, not bytes")
    data = bytes(data)
    header = data[:4]
    if header == _HEADER_PLAIN:
        body = data[4:]
    elif header == _HEADER_ZLIB:
        try:
            body = zlib.decompress(data[4:])
        except zlib.error as exc:
            raise EntryDecodeError(f"corrupt compressed entry: {exc}") from exc
    elif header[:2] == _MAGIC and len(header) == 4:
        raise EntryDecodeError(f"entry format {header[2]} flags {header[3]} is not readable")
    else:
        raise EntryDecodeError("bytes are not a deja entry")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EntryDecodeError(f"corrupt entry JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise EntryDecodeError("entry is not an object")
    response = doc.get("response")
    model = doc.get("model")
    tags = doc.get("tags", [])
    usage = doc.get("usage")
    chunks = doc.get("chunks")
    if (
        not isinstance(response, dict)
        or not isinstance(model, str)
        or not isinstance(tags, list)
        or not all(isinstance(t, str) for t in tags)
        or not (usage is None or isinstance(usage, dict))
        or not (chunks is None or isinstance(chunks, list))
    ):
        raise EntryDecodeError("entry fields have the wrong types")
    created = _number(doc, "created", optional=False)
    assert created is not None  # _number with optional=False never returns None
    tenant, namespace = doc.get("tenant"), doc.get("namespace")
    return Entry(
        response=response,
        created=created,
        expires=_number(doc, "expires", optional=True),
        model=model,
        tenant=tenant if isinstance(tenant, str) else None,
        namespace=namespace if isinstance(namespace, str) else None,
        tags=tuple(tags),
        usage=usage,
        cost_usd=_number(doc, "cost_usd", optional=True),
        chunks=chunks,
    )
