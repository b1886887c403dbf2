"""Minimal ASGI plumbing for the proxy: bodies in, JSON and SSE out, OpenAI-style errors.

Pure ASGI on purpose: a cache hit must cost a dictionary lookup and a ``send``, not a
framework's request parsing and validation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

__all__ = [
    "HTTPError",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "error_body",
    "header",
    "read_body",
    "send_json",
    "send_raw",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")

# OpenAI's error `type` for each status class, so SDKs raise the matching exception
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class HTTPError(Exception):
    """An error answer: status, message, and the OpenAI ``param``/``code`` fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        body: bytes | None = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.body = body
        self.headers = list(headers)

    def payload(self) -> bytes:
        """The answer's JSON: ``body`` when given, else OpenAI's error object."""
        if self.body is not None:
            return self.body
        return error_body(self.status, self.message, param=self.param, code=self.code)


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}`` as OpenAI sends it."""
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header ``name`` (lower-case bytes), decoded as latin-1."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def joined_header(scope: Scope, name: bytes) -> str | None:
    """Every value of request header ``name``, comma-joined as one (RFC 9110 5.3: several
    field lines of a list-valued field mean the same as one), or ``None``."""
    values = [bytes(value).decode("latin-1") for key, value in scope["headers"] if key == name]
    return ", ".join(values) if values else None


async def read_body(
    scope: Scope, receive: Receive, limit: int, timeout: float | None = None
) -> bytes:
    """The whole request body; 413 past ``limit`` bytes (checked before reading too), 408
    when it has not all arrived within ``timeout`` seconds."""
    coding = header(scope, b"content-encoding")
    if coding is not None and coding.strip().lower() not in ("", "identity"):
        raise HTTPError(
            415,
            f"request bodies with content-encoding {coding!r} are not accepted: send the JSON"
            " as it is",
            code="unsupported_media_type",
        )
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body larger than {limit} bytes", code="request_too_large")
    try:
        async with asyncio.timeout(timeout):
            return await _read_all(receive, limit)
    except TimeoutError:
        raise HTTPError(
            408, f"request body not received within {timeout:g} s", code="request_timeout"
        ) from None


async def _read_all(receive: Receive, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(499, "client closed the request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(
                413, f"request body larger than {limit} bytes", code="request_too_large"
            )
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts) if len(parts) != 1 else parts[0]


async def send_raw(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    content_type: bytes = b"application/json",
) -> None:
    """One complete response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, value: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A JSON response from a Python value."""
    await send_raw(send, status, orjson.dumps(value), headers)
