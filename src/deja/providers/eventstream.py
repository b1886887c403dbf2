"""The AWS event-stream binary framing (``application/vnd.amazon.eventstream``), sans I/O.

Bedrock's ``ConverseStream`` answers with a sequence of binary messages rather than
server-sent events. Each message is framed as::

    ┌──────────────┬───────────────┬─────────────┬─────────┬─────────┬─────────────┐
    │ total length │ headers length│ prelude CRC │ headers │ payload │ message CRC │
    │   uint32 BE  │   uint32 BE   │  uint32 BE  │         │         │  uint32 BE  │
    └──────────────┴───────────────┴─────────────┴─────────┴─────────┴─────────────┘

The *total length* counts everything, both CRCs included; the *prelude CRC* is the CRC32
of the first 8 bytes, the *message CRC* the CRC32 of every byte before it. A header is a
1-byte name length, the UTF-8 name, a 1-byte value type and the value: ``0``/``1`` true/
false (no bytes), ``2`` int8, ``3`` int16, ``4`` int32, ``5`` int64, ``6`` byte array and
``7`` UTF-8 string (each after a uint16 length), ``8`` timestamp (int64 milliseconds since
the epoch), ``9`` UUID (16 bytes); integers are big-endian and signed. Headers are limited
to 128 KiB and payloads to 24 MiB (botocore's limits).

Bedrock's messages carry ``:message-type``: ``event`` (with ``:event-type``, e.g.
``contentBlockDelta``, and ``:content-type: application/json``), ``exception`` (with
``:exception-type``, e.g. ``throttlingException``, and a JSON ``{"message": ...}``
payload) or ``error`` (with ``:error-code`` and ``:error-message`` headers).

:class:`EventStreamDecoder` takes bytes as the network delivers them and returns whole
:class:`EventStreamMessage` objects, checking both CRCs and every length; a corrupt frame
raises :class:`~deja.errors.ProviderError` (the stream cannot be resynchronized after
that, so the decoder refuses further input). :meth:`EventStreamDecoder.close` raises the
same error when the stream ended inside a frame. :func:`to_event` turns a message into
the ``{event_type: payload}`` dict the Bedrock adapter's stream translator reads, and
raises the typed error for an ``exception`` or ``error`` message. :func:`encode_message`
frames a message (for the simulated server and tests). zlib's CRC32 is the one the format
uses; nothing here needs botocore.
"""

from __future__ import annotations

import datetime
import struct
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import orjson

from deja.errors import (
    ProviderError,
    provider_error_for_status,
)

__all__ = [
    "EXCEPTION_STATUS",
    "EventStreamDecoder",
    "EventStreamMessage",
    "HeaderValue",
    "encode_message",
    "exception_error",
    "to_event",
    "to_events",
]

HeaderValue: TypeAlias = bool | int | bytes | str | datetime.datetime | uuid.UUID
"""A decoded header value: booleans, integers (any width), byte arrays, strings,
timestamps (timezone-aware UTC datetimes) and UUIDs."""

_PRELUDE: Final = 12  # total length, headers length, prelude CRC
_CRC: Final = 4
_MINIMUM: Final = _PRELUDE + _CRC  # a message with no headers and no payload
_MAX_HEADERS: Final = 128 * 1024
_MAX_PAYLOAD: Final = 24 * 1024 * 1024
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_INT_TYPES: Final = {2: ">b", 3: ">h", 4: ">i", 5: ">q"}
_INT32: Final = (-(2**31), 2**31 - 1)
_INT64: Final = (-(2**63), 2**63 - 1)

EXCEPTION_STATUS: Final = {
    "validationException": 400,
    "accessDeniedException": 403,
    "resourceNotFoundException": 404,
    "modelTimeoutException": 408,
    "modelStreamErrorException": 424,
    "modelErrorException": 424,
    "throttlingException": 429,
    "modelNotReadyException": 429,
    "internalServerException": 500,
    "serviceUnavailableException": 503,
}
"""The HTTP status Bedrock's service model gives each exception (``:exception-type``)."""


@dataclass(frozen=True, slots=True)
class EventStreamMessage:
    """One decoded message: its ``headers`` (names as sent) and raw ``payload``."""

    headers: dict[str, HeaderValue] = field(default_factory=dict)
    payload: bytes = b""

    @property
    def message_type(self) -> str | None:
        """``:message-type`` (``event``, ``exception`` or ``error``), if it is a string."""
        value = self.headers.get(":message-type")
        return value if isinstance(value, str) else None


def _corrupt(message: str, provider: str) -> ProviderError:
    return ProviderError(f"corrupt event stream: {message}", provider=provider)


class EventStreamDecoder:
    """Incremental decoder: :meth:`feed` bytes however the network cut them.

    Returns the messages completed so far. A bad prelude CRC, message CRC, length or
    header raises :class:`~deja.errors.ProviderError` and poisons the decoder (framing is
    lost, so every later call raises too). :attr:`finished` tells whether the bytes fed
    so far end on a message boundary; :meth:`close` says the stream is over and raises if
    it ended inside a message. ``provider`` names the upstream in the errors.
    """

    def __init__(self, *, provider: str = "bedrock") -> None:
        self.provider = provider
        self._buffer = bytearray()
        self._failed: str | None = None
        self._closed = False

    @property
    def finished(self) -> bool:
        """True when no partial message is buffered (and the stream is not corrupt)."""
        return not self._buffer and self._failed is None

    def feed(self, data: bytes) -> list[EventStreamMessage]:
        """Decode the next bytes of the stream; return the messages they complete."""
        if self._failed is not None:
            raise _corrupt(self._failed, self.provider)
        if self._closed:
            raise ValueError("the decoder is closed")
        self._buffer += data
        messages: list[EventStreamMessage] = []
        while len(self._buffer) >= _PRELUDE:
            total, headers_length = struct.unpack_from(">II", self._buffer)
            self._check_prelude(total, headers_length)
            if len(self._buffer) < total:
                break
            frame = bytes(self._buffer[:total])
            del self._buffer[:total]
            messages.append(self._message(frame, headers_length))
        return messages

    def close(self) -> None:
        """End of stream: raises :class:`~deja.errors.ProviderError` if it stopped mid-message."""
        self._closed = True
        if self._failed is not None:
            raise _corrupt(self._failed, self.provider)
        if self._buffer:
            pending = len(self._buffer)
            self._buffer.clear()
            raise ProviderError(
                f"event stream ended inside a message ({pending} bytes of it received)",
                provider=self.provider,
            )

    def _fail(self, message: str) -> ProviderError:
        self._failed = message
        self._buffer.clear()
        return _corrupt(message, self.provider)

    def _check_prelude(self, total: int, headers_length: int) -> None:
        # Checked as soon as 12 bytes are in, so garbage never makes us wait for 4 GiB.
        (expected,) = struct.unpack_from(">I", self._buffer, 8)
        if zlib.crc32(self._buffer[:8]) != expected:
            raise self._fail("prelude CRC mismatch")
        if total < _MINIMUM or headers_length > total - _MINIMUM:
            raise self._fail(f"impossible lengths (total {total}, headers {headers_length})")
        if headers_length > _MAX_HEADERS:
            raise self._fail(f"headers of {headers_length} bytes exceed {_MAX_HEADERS}")
        if total - _MINIMUM - headers_length > _MAX_PAYLOAD:
            raise self._fail(f"payload exceeds {_MAX_PAYLOAD} bytes")

    def _message(self, frame: bytes, headers_length: int) -> EventStreamMessage:
        (expected,) = struct.unpack_from(">I", frame, len(frame) - _CRC)
        if zlib.crc32(frame[:-_CRC]) != expected:
            raise self._fail("message CRC mismatch")
        try:
            headers = _decode_headers(frame[_PRELUDE : _PRELUDE + headers_length])
        except (ValueError, struct.error, UnicodeDecodeError) as exc:
            raise self._fail(f"bad header block: {exc}") from exc
        return EventStreamMessage(headers, frame[_PRELUDE + headers_length : -_CRC])


def _decode_headers(data: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    position = 0
    end = len(data)
    while position < end:
        size = data[position]
        position += 1
        if size == 0 or position + size + 1 > end:
            raise ValueError("a header name overruns the header block")
        name = data[position : position + size].decode("utf-8")
        position += size
        kind = data[position]
        position += 1
        value: HeaderValue
        if kind in (0, 1):
            value = kind == 0
        elif kind in _INT_TYPES:
            layout = _INT_TYPES[kind]
            (value,) = struct.unpack_from(layout, data, position)
            position += struct.calcsize(layout)
        elif kind in (6, 7):
            (length,) = struct.unpack_from(">H", data, position)
            position += 2
            if position + length > end:
                raise ValueError(f"header {name!r} overruns the header block")
            raw = data[position : position + length]
            position += length
            value = raw.decode("utf-8") if kind == 7 else bytes(raw)
        elif kind == 8:
            (millis,) = struct.unpack_from(">q", data, position)
            position += 8
            value = _EPOCH + datetime.timedelta(milliseconds=millis)
        elif kind == 9:
            if position + 16 > end:
                raise ValueError(f"header {name!r} overruns the header block")
            value = uuid.UUID(bytes=bytes(data[position : position + 16]))
            position += 16
        else:
            raise ValueError(f"header {name!r} has unknown type {kind}")
        headers[name] = value
    return headers


def _encode_header(name: str, value: HeaderValue) -> bytes:
    raw_name = name.encode("utf-8")
    if not 0 < len(raw_name) < 256:
        raise ValueError(f"header name {name!r} must be 1 to 255 bytes")
    head = bytes([len(raw_name)]) + raw_name
    if isinstance(value, bool):  # before int: bool is an int
        return head + bytes([0 if value else 1])
    if isinstance(value, int):
        if _INT32[0] <= value <= _INT32[1]:
            return head + b"\x04" + struct.pack(">i", value)
        if _INT64[0] <= value <= _INT64[1]:
            return head + b"\x05" + struct.pack(">q", value)
        raise ValueError(f"header {name!r}: {value} does not fit in 64 bits")
    if isinstance(value, (bytes, str)):
        raw = value.encode("utf-8") if isinstance(value, str) else value
        if len(raw) > 0xFFFF:
            raise ValueError(f"header {name!r} is longer than 65,535 bytes")
        kind = b"\x07" if isinstance(value, str) else b"\x06"
        return head + kind + struct.pack(">H", len(raw)) + raw
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise ValueError(f"header {name!r}: a timestamp must be timezone-aware")
        millis = (value - _EPOCH) // datetime.timedelta(milliseconds=1)
        return head + b"\x08" + struct.pack(">q", millis)
    if isinstance(value, uuid.UUID):
        return head + b"\x09" + value.bytes
    raise TypeError(f"header {name!r}: unsupported value type {type(value).__name__}")


def encode_message(headers: Mapping[str, HeaderValue], payload: bytes = b"") -> bytes:
    """One framed message: ``headers`` (in order) and ``payload``, with both CRCs.

    Integers are written as int32 when they fit, else int64; strings as type 7, bytes as
    type 6, timezone-aware datetimes as timestamps, :class:`uuid.UUID` as UUIDs.
    """
    block = b"".join(_encode_header(name, value) for name, value in headers.items())
    if len(block) > _MAX_HEADERS or len(payload) > _MAX_PAYLOAD:
        raise ValueError("headers or payload exceed the event-stream limits")
    total = _MINIMUM + len(block) + len(payload)
    prelude = struct.pack(">II", total, len(block))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + block + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def exception_error(
    kind: str, message: object, *, body: object = None, provider: str = "bedrock"
) -> ProviderError:
    """The typed error for a Bedrock exception named ``kind`` (``throttlingException`` or
    ``ThrottlingException``): the class :func:`~deja.errors.provider_error_for_status`
    gives its documented status (429 → :class:`~deja.errors.RateLimitError`, 400 →
    :class:`~deja.errors.BadRequestError`, 5xx → :class:`~deja.errors.ServerError`),
    except that the model failing mid-answer (424, ``modelStreamErrorException`` /
    ``modelErrorException``, which Bedrock says to retry) is a
    :class:`~deja.errors.ServerError` and ``modelTimeoutException`` (408) an
    :class:`~deja.errors.UpstreamTimeoutError`. An unknown kind is a plain
    :class:`~deja.errors.ProviderError` without status."""
    name = _lower_first(kind)
    status = EXCEPTION_STATUS.get(name)
    text = f"Bedrock stream failed: {kind}: {message}"
    if status is None:
        return ProviderError(text, body=body, provider=provider)
    cls = provider_error_for_status(status)
    return cls(text, status_code=status, body=body, provider=provider)


def _payload(message: EventStreamMessage, provider: str) -> Any:
    if not message.payload:
        return {}
    try:
        return orjson.loads(message.payload)
    except orjson.JSONDecodeError as exc:
        # The error names sizes and positions only: a payload may hold prompt text.
        raise ProviderError(
            f"event-stream payload of {len(message.payload)} bytes is not JSON: {exc}",
            provider=provider,
        ) from exc


def to_event(message: EventStreamMessage, *, provider: str = "bedrock") -> dict[str, Any]:
    """``{event_type: payload}`` for an ``event`` message (the JSON payload parsed, ``{}``
    when empty); raises the typed :class:`~deja.errors.ProviderError` for an
    ``exception`` message (see :func:`exception_error`) or an ``error`` message.

    A message without ``:message-type`` is read as an event, as the AWS SDKs do.
    """
    kind = message.message_type or "event"
    headers = message.headers
    if kind == "event":
        name = headers.get(":event-type")
        if not isinstance(name, str) or not name:
            raise ProviderError("an event-stream event has no :event-type", provider=provider)
        return {name: _payload(message, provider)}
    if kind == "exception":
        name = headers.get(":exception-type")
        body = _payload(message, provider)
        text = body.get("message") if isinstance(body, dict) else None
        raise exception_error(str(name), text or body, body=body, provider=provider)
    if kind == "error":
        code = headers.get(":error-code")
        text = headers.get(":error-message")
        raise exception_error(
            str(code), text, body={"code": code, "message": text}, provider=provider
        )
    raise ProviderError(f"unknown event-stream message type {kind!r}", provider=provider)


def to_events(
    messages: Iterable[EventStreamMessage], *, provider: str = "bedrock"
) -> list[dict[str, Any]]:
    """:func:`to_event` over ``messages``, in order (raising at the first exception)."""
    return [to_event(message, provider=provider) for message in messages]
