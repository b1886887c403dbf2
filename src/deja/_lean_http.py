"""A lean HTTP/1.1 client over asyncio: the async transport of deja's upstream calls.

Why deja has its own: on the proxy's miss path the upstream call is the largest part of what
deja adds. Measured on the project VM (2026-11-26, uvloop, keep-alive POSTs of a chat body to
the simulated upstream on loopback, load average ~4), wall time and CPU per request: this
client 0.44 ms / 94 us, aiohttp 0.67 ms / 213 us, httpx2.AsyncClient 2.1 ms / 1.0 ms, and a
bare asyncio exchange (no parsing, pool or timeouts) 0.23 ms / 28 us. This module is that
bare exchange made complete for what deja sends, and no more:

- HTTP/1.1 over TCP, or TLS for ``https`` URLs (an :class:`ssl.SSLContext`; by default
  httpx2's, so the async client trusts exactly what the sync one does);
- response bodies framed by ``content-length``, ``chunked`` (extensions and trailers are
  ignored) or the end of the connection; ``1xx`` interim answers skipped; no body on
  ``HEAD``, 204 and 304;
- ``gzip`` and ``deflate`` answers decoded (``accept-encoding: gzip, deflate`` is sent unless
  the caller sets the header); other codings are passed through as they are;
- a keep-alive pool per event loop: at most ``max_connections`` requests in flight to each
  upstream (more wait their turn, first come first served, up to their timeout; a slow
  upstream holds no caller of another one), idle connections reused newest
  first and closed after ``keepalive_expiry`` seconds; a host's IPv6 and IPv4 addresses
  raced when connecting (RFC 8305, "happy eyeballs");
- a pooled connection found closed before the request went out (the server closed it while
  it was idle) is replaced by a fresh connection, once. A request that went out is never
  sent again (a POST may have been acted upon): the error is raised and the caller's retry
  policy decides;
- ``timeout`` seconds, per request, for each of: waiting for a free slot, connecting (TLS
  handshake included), writing while the server does not read, and *each* wait for response
  bytes (a read timeout like httpx2's, not a total);
- failures raised as the httpx2 exceptions the client already handles (``PoolTimeout``,
  ``ConnectTimeout``, ``ConnectError``, ``WriteTimeout``, ``WriteError``, ``ReadTimeout``,
  ``ReadError``, ``RemoteProtocolError``, ``LocalProtocolError``, ``UnsupportedProtocol``).

Left out on purpose: HTTP proxies (:func:`deja._transport.async_http_client` uses httpx2
when the environment configures one), HTTP/2, redirects (never followed, as with httpx2's
default), cookies, streamed request bodies, ``Expect: 100-continue``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import select
import socket
import ssl
import threading
import weakref
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import quote, unquote, urlsplit

import httpx2

from deja._version import __version__

if TYPE_CHECKING:
    from deja._transport import AsyncHTTP, AsyncHTTPResponse

__all__ = ["Headers", "LeanHTTPClient", "LeanRequest", "LeanResponse"]

_USER_AGENT: Final = f"deja-llm/{__version__}"
# Status line and headers together; h11 allows 16 KiB, aiohttp 8 KiB per line.
_MAX_HEAD: Final = 64 * 1024
_MAX_CHUNK_LINE: Final = 4096
# A streamed body buffered beyond this pauses reading until the reader takes it.
_STREAM_HIGH: Final = 1024 * 1024
_TARGET_MEMO: Final = 512
_NAMES_MEMO: Final = 1024
_HAPPY_EYEBALLS_DELAY: Final = 0.25  # RFC 8305's recommended "Connection Attempt Delay"
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEAD_END: Final = re.compile(rb"\r?\n\r?\n")
# One response header line: a token, a colon, the value (no CR inside; blanks stripped after).
_FIELD: Final = re.compile(r"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([^\r\n]*)\r?$", re.MULTILINE)
_LINE_END: Final = re.compile(rb"\r?\n")
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Headers this client writes itself: the body's framing is never the caller's to set.
_FRAMING: Final = frozenset({"content-length", "transfer-encoding"})
_PATH_SAFE: Final = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE: Final = _PATH_SAFE + "?"

# Parser states of a connection.
_IDLE: Final = 0
_HEAD: Final = 1
_LENGTH: Final = 2
_CHUNK_SIZE: Final = 3
_CHUNK_DATA: Final = 4
_CHUNK_END: Final = 5
_TRAILERS: Final = 6
_UNTIL_CLOSE: Final = 7


class Headers(Mapping[str, str]):
    """Response headers: case-insensitive lookup, repeated fields joined with ``", "``."""

    __slots__ = ("_fields", "_items")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        fields: dict[str, str] = {}
        for name, value in items:  # names arrive lower-cased
            previous = fields.get(name)
            fields[name] = value if previous is None else f"{previous}, {value}"
        self._fields = fields
        self._items = items

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:  # no KeyError raised and caught
        """The (joined) value of ``name``, or ``default``."""
        return self._fields.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def get_list(self, name: str) -> list[str]:
        """Every value of ``name``, in order, unjoined (``set-cookie``, say)."""
        lower = name.lower()
        return [value for key, value in self._items if key == lower]

    def multi_items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` as received (names lower-cased)."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class _Target:
    """A parsed URL: where to connect and what to put in the request line."""

    __slots__ = ("authorization", "host", "host_header", "origin", "port", "request_target", "tls")

    def __init__(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise httpx2.LocalProtocolError(f"invalid URL {url!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise httpx2.UnsupportedProtocol(
                f"the URL {url!r} has an unsupported protocol: use 'http://' or 'https://'"
            )
        host = parts.hostname
        if not host:
            raise httpx2.LocalProtocolError(f"invalid URL {url!r}: no host")
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise httpx2.LocalProtocolError(f"invalid URL {url!r}: {exc}") from None
        self.tls = scheme == "https"
        self.host = host
        self.port = port if port is not None else (443 if self.tls else 80)
        netloc = parts.netloc.rpartition("@")[2]
        self.host_header = netloc if netloc.isascii() else self._host_and_port(port)
        path = quote(parts.path, safe=_PATH_SAFE) or "/"
        if parts.query:
            path = f"{path}?{quote(parts.query, safe=_QUERY_SAFE)}"
        self.request_target = path
        self.origin = (self.tls, host, self.port)
        self.authorization: str | None = None
        if parts.username is not None:
            user = unquote(parts.username)
            password = unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self.authorization = f"Basic {token}"

    def _host_and_port(self, port: int | None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if port is None else f"{host}:{port}"


class LeanRequest:
    """A request built by :meth:`LeanHTTPClient.build_request`: the bytes to send, ready."""

    __slots__ = ("close", "content", "head", "headers", "method", "target", "timeout", "url")

    def __init__(
        self,
        method: str,
        url: str,
        target: _Target,
        *,
        content: bytes,
        headers: Mapping[str, str],
        timeout: float,
        valid_names: set[str] | None = None,
    ) -> None:
        if method not in _METHODS and not _TOKEN.fullmatch(method):
            raise httpx2.LocalProtocolError(f"invalid HTTP method {method!r}")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.method = method
        self.url = url
        self.target = target
        self.content = content
        self.headers = headers
        self.timeout = float(timeout)
        self.close = False
        lines = [f"{method} {target.request_target} HTTP/1.1"]
        host = target.host_header
        seen: set[str] = set()
        for name, value in headers.items():
            lower = name.lower()
            if lower in _FRAMING:
                continue
            if valid_names is None or name not in valid_names:
                if not _TOKEN.fullmatch(name):
                    raise httpx2.LocalProtocolError(f"invalid header name {name!r}")
                if valid_names is not None and len(valid_names) < _NAMES_MEMO:
                    valid_names.add(name)
            if "\r" in value or "\n" in value or "\0" in value:
                raise httpx2.LocalProtocolError(f"invalid value for header {name!r}")
            if lower == "host":
                host = value
                continue
            if lower == "connection" and "close" in value.lower():
                self.close = True
            seen.add(lower)
            lines.append(f"{name}: {value}")
        lines.insert(1, f"host: {host}")
        if "accept" not in seen:
            lines.append("accept: */*")
        if "accept-encoding" not in seen:
            lines.append("accept-encoding: gzip, deflate")
        if "user-agent" not in seen:
            lines.append(f"user-agent: {_USER_AGENT}")
        if target.authorization is not None and "authorization" not in seen:
            lines.append(f"authorization: {target.authorization}")
        if content or method in _BODY_METHODS:
            lines.append(f"content-length: {len(content)}")
        text = "\r\n".join(lines) + "\r\n\r\n"
        try:
            self.head = text.encode("latin-1")
        except UnicodeEncodeError:  # a non-Latin-1 header value: sent as UTF-8, as aiohttp does
            self.head = text.encode("utf-8")


class _StreamBody:
    """The body of a streamed response, between the connection that fills it and its reader."""

    __slots__ = ("chunks", "conn", "done", "error", "paused", "size", "waiter")

    def __init__(self, conn: _Connection) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.done = False
        self.error: BaseException | None = None
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.conn: _Connection | None = conn  # until the body is complete

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes:
        """What has arrived (waiting for something if nothing has); ``b""`` at the end."""
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if self.done:
                return b""
            conn = self.conn
            assert conn is not None  # an unfinished body has its connection
            self.waiter = conn.loop.create_future()
            conn.begin_wait()
            try:
                await self.waiter
            finally:
                self.waiter = None
                # a finished body has left its connection, which may already serve another
                # request: its timer is that request's now
                if self.conn is conn:
                    conn.end_wait()
        data = self.chunks.popleft() if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        if self.paused:
            self.paused = False
            conn = self.conn
            if conn is not None and conn.transport is not None:
                conn.transport.resume_reading()
        return data


class _Connection(asyncio.Protocol):
    """One keep-alive connection and its HTTP/1.1 response parser."""

    def __init__(self, pool: _Pool, origin: tuple[bool, str, int]) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.fd = -1
        self.counted = True  # in the pool's count of open connections
        self.lost = False
        self.reusable = True
        self.idle_since = 0.0
        self.exchange = 0  # numbers the requests sent on this connection
        self.state = _IDLE
        self.buf = bytearray()
        self.scanned = 0
        self.no_body = False
        self.streaming = False
        self.result: asyncio.Future[Any] | None = None
        self.body: _StreamBody | None = None
        self.parts: list[bytes] = []
        self.remaining = 0
        self.got_response = False
        self.head: tuple[str, int, str, list[tuple[str, str]]] | None = None
        self.timeout = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.last_read = 0.0
        self.waiting = 0
        self.write_paused = False
        self.drained: asyncio.Future[None] | None = None

    # -- asyncio callbacks -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods
        self.transport = cast("asyncio.Transport", transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.fd = sock.fileno()

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        state = self.state
        if state == _LENGTH and not self.buf:  # the common case: body bytes, nothing pending
            size = len(data)
            if size <= self.remaining:
                self.remaining -= size
                self._deliver(data)
                if not self.remaining:
                    self._finish()
                return
        if state == _IDLE:  # nothing was asked: the connection cannot be trusted any more
            self.reusable = False
            self._drop()
            return
        buf = self.buf
        view: bytes | bytearray = data
        if buf:  # the rest of a head or a chunk line is pending: parse both together
            buf += data
            view = buf
        try:
            pos = self._parse(view)
        except httpx2.TransportError as exc:
            self._fail(exc)
            return
        if view is buf:
            del buf[:pos]
        elif pos < len(data):
            buf += data[pos:]
        self.scanned = max(0, self.scanned - pos)

    def eof_received(self) -> bool | None:
        self.lost = True
        return None  # let the transport close; connection_lost ends what is pending

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reusable = False
        self._cancel_timer()
        self._leave_pool()
        drained = self.drained
        if drained is not None and not drained.done():
            drained.set_result(None)
        state = self.state
        if state == _IDLE:
            return
        if state == _UNTIL_CLOSE and exc is None:
            self._finish()
            return
        if exc is not None:
            error: httpx2.TransportError = httpx2.ReadError(str(exc) or type(exc).__name__)
        elif not self.got_response:
            error = httpx2.RemoteProtocolError("the server closed the connection without answering")
        else:
            error = httpx2.RemoteProtocolError(
                "the server closed the connection before the end of the response"
            )
        self._fail(error)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drained = self.drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    # -- the exchange ----------------------------------------------------------------------

    def stale(self) -> bool:
        """Whether this idle connection is closed or closing (checked before reusing it).

        The server's FIN may be in the socket while the event loop has not yet seen it: a
        readable idle socket means exactly that (or bytes nobody asked for), so poll it.
        """
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            return True
        return self.fd >= 0 and _readable(self.fd)

    def start(self, request: LeanRequest, stream: bool) -> asyncio.Future[Any] | None:
        """Send ``request``; the future of its answer, or ``None`` if nothing could be sent."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return None
        self.exchange += 1
        self.buf.clear()
        self.state = _HEAD
        self.scanned = 0
        self.no_body = request.method == "HEAD"
        self.streaming = stream
        self.got_response = False
        self.head = None
        self.parts = []
        self.body = None
        self.timeout = request.timeout
        self.reusable = not request.close
        result: asyncio.Future[Any] = self.loop.create_future()
        self.result = result
        try:
            if request.content:
                transport.write(request.head + request.content)
            else:
                transport.write(request.head)
            # closing now: the socket refused the very first send (it had been reset)
            refused = transport.is_closing()
        except (RuntimeError, OSError):  # the transport closed under us
            refused = True
        if refused:  # nothing went out
            self.state = _IDLE
            self.result = None
            return None
        if not self.write_paused:
            self.begin_wait()
        return result

    async def drain(self, result: asyncio.Future[Any], timeout: float) -> None:
        """Wait until the request is written (or the server answered early)."""
        while self.write_paused and not self.lost and not result.done():
            drained: asyncio.Future[None] = self.loop.create_future()
            self.drained = drained
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.wait((drained, result), return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                raise httpx2.WriteTimeout(
                    f"the server did not read the request within {timeout} s"
                ) from None
            finally:
                self.drained = None
        if self.lost and not result.done():
            raise httpx2.WriteError("the connection closed while the request was being sent")
        if not result.done():
            self.begin_wait()  # the request is out: from now on the wait for the answer is timed

    def begin_wait(self) -> None:
        """Someone now waits for response bytes: time the wait."""
        self.waiting += 1
        self.last_read = self.loop.time()
        if self.timer is None:
            self.timer = self.loop.call_later(self.timeout, self._check_timeout)

    def end_wait(self) -> None:
        self.waiting -= 1
        if self.waiting <= 0:
            self.waiting = 0
            self._cancel_timer()

    def abandon(self, exchange: int) -> None:
        """The sender went away (error, cancellation) during ``exchange``: drop the connection."""
        if self.exchange == exchange and self.state != _IDLE:
            self.result = None
            self.body = None
            self.state = _IDLE
            self.reusable = False
            self._drop()

    def discard(self) -> None:
        """Close now, counted out of the pool at once."""
        self.reusable = False
        self._drop()

    # -- parsing ---------------------------------------------------------------------------

    def _parse(self, buf: bytes | bytearray) -> int:
        """Parse what ``buf`` holds; how many of its bytes were consumed."""
        pos = 0
        while True:
            state = self.state
            if state == _HEAD:
                match = _HEAD_END.search(buf, max(pos, self.scanned - 3))
                if match is None:
                    if len(buf) - pos > _MAX_HEAD:
                        raise httpx2.RemoteProtocolError("the response head is too large")
                    self.scanned = len(buf)
                    break
                self.got_response = True
                if match.start() - pos > _MAX_HEAD:
                    raise httpx2.RemoteProtocolError("the response head is too large")
                head = bytes(buf[pos : match.start()])
                pos = match.end()
                self.scanned = pos
                self._start_body(head)
            elif state in (_LENGTH, _CHUNK_DATA):
                available = len(buf) - pos
                if not available:
                    break
                take = min(available, self.remaining)
                self._deliver(bytes(buf[pos : pos + take]))
                pos += take
                self.remaining -= take
                if not self.remaining:
                    if state == _LENGTH:
                        self._finish()
                    else:
                        self.state = _CHUNK_END
            elif state == _CHUNK_SIZE:
                newline = buf.find(b"\n", pos)
                if newline < 0:
                    if len(buf) - pos > _MAX_CHUNK_LINE:
                        raise httpx2.RemoteProtocolError("a chunk size line is too long")
                    break
                line = bytes(buf[pos:newline]).split(b";", 1)[0].strip()
                pos = newline + 1
                try:
                    size = int(line, 16)
                except ValueError:
                    raise httpx2.RemoteProtocolError(f"invalid chunk size {line[:40]!r}") from None
                if size < 0 or not line.isalnum():
                    raise httpx2.RemoteProtocolError(f"invalid chunk size {line[:40]!r}")
                if size:
                    self.remaining = size
                    self.state = _CHUNK_DATA
                else:
                    self.state = _TRAILERS
            elif state == _CHUNK_END:
                if len(buf) - pos < 2:
                    if len(buf) - pos == 1 and buf[pos] == 0x0A:  # a bare LF, tolerated
                        pos += 1
                        self.state = _CHUNK_SIZE
                        continue
                    break
                if buf[pos] == 0x0D and buf[pos + 1] == 0x0A:
                    pos += 2
                elif buf[pos] == 0x0A:
                    pos += 1
                else:
                    raise httpx2.RemoteProtocolError("a chunk is longer than its declared size")
                self.state = _CHUNK_SIZE
            elif state == _TRAILERS:
                line_end = _LINE_END.search(buf, pos)
                if line_end is None:
                    if len(buf) - pos > _MAX_HEAD:
                        raise httpx2.RemoteProtocolError("the response trailers are too large")
                    break
                empty = line_end.start() == pos
                pos = line_end.end()
                if empty:
                    self._finish()
            elif state == _UNTIL_CLOSE:
                if pos < len(buf):
                    self._deliver(bytes(buf[pos:]))
                    pos = len(buf)
                break
            else:  # _IDLE: bytes beyond the end of the response
                if pos < len(buf):
                    self.reusable = False
                    self._drop()
                break
        return pos

    def _start_body(self, raw: bytes) -> None:
        status_line, _, fields = raw.decode("latin-1").partition("\n")
        status_line = status_line.rstrip("\r")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise httpx2.RemoteProtocolError(f"not an HTTP/1.1 response: {status_line[:100]!r}")
        status = int(code)
        headers: list[tuple[str, str]] = []
        length: str | None = None
        coding: str | None = None
        connection = ""
        found = _FIELD.findall(fields) if fields else []
        if fields and len(found) != fields.count("\n") + 1:  # a line that is not a header
            bad = next(line for line in fields.split("\n") if not _FIELD.fullmatch(line))
            raise httpx2.RemoteProtocolError(f"malformed response header {bad[:100]!r}")
        for raw_name, raw_value in found:
            name = raw_name.lower()
            value = raw_value.strip(" \t")
            headers.append((name, value))
            if name == "content-length":
                length = value if length is None else f"{length},{value}"
            elif name == "transfer-encoding":
                coding = value if coding is None else f"{coding},{value}"
            elif name == "connection":
                connection = f"{connection},{value.lower()}"
        if status < 200:
            if status == 101:
                raise httpx2.RemoteProtocolError("the server switched protocols unasked")
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self.head = (version, status, reason, headers)
        tokens = {token.strip() for token in connection.split(",")} if connection else ()
        if "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens):
            self.reusable = False
        if self.no_body or status in (204, 304):
            self.state = _LENGTH
            self.remaining = 0
        elif coding is not None:
            if length is not None:  # both framings: a smuggling attempt or a broken server
                self.reusable = False
            if coding.lower().rsplit(",", 1)[-1].strip() == "chunked":
                self.state = _CHUNK_SIZE
            else:
                self.state = _UNTIL_CLOSE
                self.reusable = False
        elif length is not None:
            values = {value.strip() for value in length.split(",")}
            value = values.pop()
            if values or not value.isdigit():
                raise httpx2.RemoteProtocolError(f"invalid content-length {length[:40]!r}")
            self.state = _LENGTH
            self.remaining = int(value)
        else:
            self.state = _UNTIL_CLOSE
            self.reusable = False
        if self.streaming:
            body = self.body = _StreamBody(self)
            result = self.result
            if result is not None and not result.done():
                result.set_result((self.head, body))
            self.end_wait()  # the head is in; the reader times its own waits
        if self.state == _LENGTH and not self.remaining:
            self._finish()

    def _deliver(self, data: bytes) -> None:
        if not self.streaming:
            self.parts.append(data)
            return
        body = self.body
        if body is None:  # the reader went away
            return
        body.chunks.append(data)
        body.size += len(data)
        if body.size > _STREAM_HIGH and not body.paused and self.transport is not None:
            body.paused = True
            self.transport.pause_reading()
        body.wake()

    def _finish(self) -> None:
        self.state = _IDLE
        self._cancel_timer()
        self.waiting = 0
        result = self.result
        self.result = None
        answered = True
        if self.streaming:
            body = self.body
            self.body = None
            if body is not None:
                body.done = True
                body.conn = None
                if body.paused:
                    body.paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
                body.wake()
            else:
                answered = False
        elif result is not None and not result.done():
            head = self.head
            assert head is not None
            parts = self.parts
            self.parts = []
            body_bytes = parts[0] if len(parts) == 1 else b"".join(parts)
            result.set_result((head, body_bytes))
        else:
            answered = False  # the sender went away: nobody will read this connection's state
        # (bytes past the end of this response, if any, drop the connection in _parse)
        if answered and self.reusable and not self.lost:
            self.pool.put_idle(self)
        elif not self.lost:
            self.reusable = False
            self._drop()

    def _fail(self, exc: httpx2.TransportError) -> None:
        self.reusable = False
        self._cancel_timer()
        self.waiting = 0
        result = self.result
        self.result = None
        if result is not None and not result.done():
            result.set_exception(exc)
        body = self.body
        self.body = None
        if body is not None:
            body.error = exc
            body.conn = None
            body.wake()
        self.state = _IDLE
        self._drop()

    def _check_timeout(self) -> None:
        self.timer = None
        if not self.waiting:
            return
        quiet = self.loop.time() - self.last_read
        if quiet < self.timeout:
            self.timer = self.loop.call_later(self.timeout - quiet, self._check_timeout)
            return
        self._fail(httpx2.ReadTimeout(f"no response bytes for {self.timeout} s"))

    def _cancel_timer(self) -> None:
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None

    def _leave_pool(self) -> None:
        """Out of the pool's count of open connections (once) and out of its idle list."""
        if self.counted:
            self.counted = False
            self.pool.open -= 1
        self.pool.forget(self)

    def _drop(self) -> None:
        self._leave_pool()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            # RuntimeError: its event loop is closed; the socket goes with the transport
            with contextlib.suppress(RuntimeError):
                transport.abort()


_POLL: Final = getattr(select, "poll", None)  # None on Windows


def _readable(fd: int) -> bool:
    if _POLL is None:
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable)
    poller = _POLL()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _Slots:
    """The request slots of one origin on one event loop: ``limit`` requests in flight to
    it at once, the others waiting in line. Per origin, so that a slow upstream holding
    all of its slots keeps no caller of another one waiting (a proxy's tenants call
    several)."""

    __slots__ = ("free", "limit", "loop", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        self.free = limit  # never > 0 while someone waits
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def wait_slot(self, timeout: float) -> None:
        slot: asyncio.Future[None] = self.loop.create_future()
        self.waiters.append(slot)
        try:
            async with asyncio.timeout(timeout):
                await slot
        except BaseException as exc:
            if slot.done() and not slot.cancelled():
                self.release_slot()  # handed a slot just as we gave up: pass it on
            else:
                slot.cancel()
                with contextlib.suppress(ValueError):
                    self.waiters.remove(slot)
            if isinstance(exc, TimeoutError):
                raise httpx2.PoolTimeout(
                    f"no free connection within {timeout} s ({self.limit} requests in flight"
                    " to this upstream)"
                ) from None
            raise

    def release_slot(self) -> None:
        waiters = self.waiters
        while waiters:
            slot = waiters.popleft()
            if not slot.done():
                slot.set_result(None)  # straight to the next in line
                return
        self.free += 1


class _Pool:
    """The connections and request slots of one event loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, limit: int, keepalive_expiry: float
    ) -> None:
        self.loop = loop
        self.limit = limit
        self.keepalive_expiry = keepalive_expiry
        self.slots: dict[tuple[bool, str, int], _Slots] = {}  # per origin
        self.idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self.open = 0
        self.closed = False

    def slots_of(self, origin: tuple[bool, str, int]) -> _Slots:
        slots = self.slots.get(origin)
        if slots is None:
            slots = self.slots[origin] = _Slots(self.loop, self.limit)
        return slots

    def take_idle(self, origin: tuple[bool, str, int]) -> _Connection | None:
        conns = self.idle.get(origin)
        if not conns:
            return None
        conn = conns.pop()  # the newest: the least likely to have been closed
        if self.loop.time() - conn.idle_since < self.keepalive_expiry:
            return conn
        # expired, and every older one too
        conns.append(conn)
        for old in list(conns):
            old.discard()
        return None

    def put_idle(self, conn: _Connection) -> None:
        if self.closed:
            conn.discard()
            return
        conn.idle_since = self.loop.time()
        self.idle.setdefault(conn.origin, []).append(conn)

    def forget(self, conn: _Connection) -> None:
        conns = self.idle.get(conn.origin)
        if conns and conn in conns:
            conns.remove(conn)

    async def connect(
        self, target: _Target, timeout: float, context: ssl.SSLContext | None
    ) -> _Connection:
        if self.open >= self.limit:
            self._evict()
        conn = _Connection(self, target.origin)
        self.open += 1
        try:
            async with asyncio.timeout(timeout):
                await _create_connection(self.loop, conn, target, context, timeout)
        except BaseException as exc:
            conn.discard()  # uncounted; its transport, if it got one, aborted
            if isinstance(exc, TimeoutError):
                raise httpx2.ConnectTimeout(
                    f"no connection to {target.host}:{target.port} within {timeout} s"
                ) from None
            if isinstance(exc, OSError):  # ssl.SSLError and socket.gaierror included
                raise httpx2.ConnectError(
                    f"cannot connect to {target.host}:{target.port}: {exc or type(exc).__name__}"
                ) from exc
            raise
        return conn

    def _evict(self) -> None:
        """Close the oldest idle connection (of another origin: ours were all busy)."""
        oldest: _Connection | None = None
        for conns in self.idle.values():
            if conns and (oldest is None or conns[0].idle_since < oldest.idle_since):
                oldest = conns[0]
        if oldest is not None:
            oldest.discard()

    def close(self) -> None:
        self.closed = True
        for conns in list(self.idle.values()):
            for conn in list(conns):
                conn.discard()
        self.idle.clear()


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[tuple[Any, ...]]:
    """The addresses of ``host`` (``getaddrinfo``, in the loop's resolver thread)."""
    return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)


async def _create_connection(
    loop: asyncio.AbstractEventLoop,
    conn: _Connection,
    target: _Target,
    context: ssl.SSLContext | None,
    timeout: float,
) -> None:
    """Connect ``conn``, racing the host's addresses (IPv6 and IPv4) as RFC 8305 describes.

    The race is aiohappyeyeballs' (aiohttp's dependency, installed with the proxy), as in
    aiohttp; without it the standard event loops race the addresses themselves and uvloop
    tries them in turn.
    """
    tls: dict[str, Any] = {}
    if target.tls:
        tls = {"ssl": context, "server_hostname": target.host, "ssl_handshake_timeout": timeout}
    try:
        import aiohappyeyeballs
    except ImportError:
        if isinstance(loop, asyncio.BaseEventLoop):
            tls["happy_eyeballs_delay"] = _HAPPY_EYEBALLS_DELAY
        await loop.create_connection(lambda: conn, target.host, target.port, **tls)
        return
    infos = await _resolve(loop, target.host, target.port)
    sock = await aiohappyeyeballs.start_connection(
        infos, happy_eyeballs_delay=_HAPPY_EYEBALLS_DELAY, interleave=1, loop=loop
    )
    try:
        await loop.create_connection(lambda: conn, sock=sock, **tls)
    except BaseException:
        sock.close()
        raise


class LeanResponse:
    """An answer: status, headers, and the body (read, or streamed by :meth:`aiter_bytes`)."""

    __slots__ = (
        "_body",
        "_content",
        "_decoder",
        "_done",
        "_exchange",
        "_slots",
        "headers",
        "http_version",
        "reason_phrase",
        "status_code",
    )

    def __init__(
        self,
        head: tuple[str, int, str, list[tuple[str, str]]],
        *,
        content: bytes | None,
        body: _StreamBody | None = None,
        slots: _Slots | None = None,
        exchange: int = 0,
    ) -> None:
        version, status, reason, items = head
        self.http_version = version
        self.status_code = status
        self.reason_phrase = reason
        self.headers = Headers(items)
        self._body = body
        self._slots = slots  # holds a request slot until the stream ends
        self._exchange = exchange
        self._done = content is not None
        coding = self.headers.get("content-encoding")
        self._decoder = _Decoder.for_coding(coding) if coding else None
        if content is not None and self._decoder is not None:
            content = self._decoder.decode(content) + self._decoder.flush()
            self._decoder = None
        self._content = content

    @property
    def content(self) -> bytes:
        """The body (decoded); a streamed one must be read first (:meth:`aread`)."""
        if self._content is None:
            raise RuntimeError("the body of a streamed response has not been read")
        return self._content

    @property
    def text(self) -> str:
        """The body as text, in the charset the server named (UTF-8 otherwise)."""
        charset = "utf-8"
        for param in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip("\"' ")
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    async def aread(self) -> bytes:
        """Read the rest of a streamed body; the body."""
        if self._content is None:
            self._content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self._content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives (decoded). Stopping early: close the response."""
        if self._content is not None:
            if self._content:
                yield self._content
            return
        body = self._body
        if body is None or self._done:
            raise RuntimeError("the body of this response was already read or closed")
        try:
            while True:
                data = await body.read()
                if not data:
                    break
                if self._decoder is not None:
                    data = self._decoder.decode(data)
                    if not data:
                        continue
                yield data
            if self._decoder is not None:
                tail = self._decoder.flush()
                if tail:
                    yield tail
        finally:
            self._end(complete=body.done and not body.chunks)

    async def aclose(self) -> None:
        """Done with this response: an unread rest of a stream closes its connection."""
        body = self._body
        self._end(complete=body is None or (body.done and not body.chunks))

    def _end(self, *, complete: bool) -> None:
        if self._done:
            return
        self._done = True
        body = self._body
        if not complete and body is not None:
            conn = body.conn
            body.conn = None
            if conn is not None:
                conn.abandon(self._exchange)
            body.chunks.clear()
            if body.error is None and not body.done:  # a reader in another task stops too
                body.error = httpx2.ReadError("the response was closed")
                body.wake()
        slots = self._slots
        self._slots = None
        if slots is not None:
            slots.release_slot()

    def __repr__(self) -> str:
        return f"<LeanResponse [{self.status_code}]>"


class _Decoder:
    """gzip or deflate, decoded as it arrives."""

    __slots__ = ("_coding", "_started", "_zlib")

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._started = False
        wbits = zlib.MAX_WBITS | 16 if coding == "gzip" else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(wbits)

    @staticmethod
    def for_coding(header: str) -> _Decoder | None:
        """The decoder of a ``content-encoding``; ``None``: the body passes as it is."""
        codings = [c.strip().lower() for c in header.split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) != 1:  # none, or stacked codings
            return None
        coding = "gzip" if codings[0] in ("gzip", "x-gzip") else codings[0]
        return _Decoder(coding) if coding in ("gzip", "deflate") else None

    def decode(self, data: bytes) -> bytes:
        try:
            decoded = self._zlib.decompress(data)
        except zlib.error as exc:
            if self._coding == "deflate" and not self._started:
                # deflate is meant to be zlib-wrapped, but servers also send it raw: retry
                # raw on a first-bytes error, as httpx2 and browsers do
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                return self.decode(data)
            raise httpx2.RemoteProtocolError(
                f"cannot decode the {self._coding} body: {exc}"
            ) from None
        if data:
            self._started = True
        return decoded

    def flush(self) -> bytes:
        try:
            return self._zlib.flush()
        except zlib.error as exc:
            raise httpx2.RemoteProtocolError(
                f"cannot decode the {self._coding} body: {exc}"
            ) from None


class LeanHTTPClient:
    """deja's async HTTP client for upstream calls (the ``AsyncHTTP`` subset of httpx2's).

    ``max_connections``: requests in flight at once to one upstream (scheme, host and port)
    per event loop, the others waiting for a slot (and open connections, all upstreams
    together: idle ones of others are closed past it);
    ``keepalive_expiry``: seconds an idle connection is kept for reuse (15, aiohttp's
    default: a server that closes idle connections sooner is noticed before reuse, since an
    idle connection is checked before each request); ``ssl_context`` for ``https`` (default:
    httpx2's, built on first use). No I/O until the first request.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1 or keepalive_expiry < 0:
            raise ValueError("max_connections must be >= 1 and keepalive_expiry >= 0")
        self._limit = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = (
            weakref.WeakKeyDictionary()
        )
        self._last: _Pool | None = None
        self._pools_lock = threading.Lock()
        self._targets: dict[str, _Target] = {}  # parsed URLs (the client calls a few)
        self._valid_names: set[str] = set()  # request header names already checked

    def build_request(
        self, method: str, url: str, *, content: bytes, headers: Mapping[str, str], timeout: float
    ) -> LeanRequest:
        """A request for :meth:`send` (the URL and headers are checked here)."""
        target = self._targets.get(url)
        if target is None:
            target = _Target(url)
            if len(self._targets) >= _TARGET_MEMO:
                self._targets.clear()
            self._targets[url] = target
        return LeanRequest(
            method,
            url,
            target,
            content=content,
            headers=headers,
            timeout=timeout,
            valid_names=self._valid_names,
        )

    async def send(self, request: LeanRequest, *, stream: bool = False) -> LeanResponse:
        """Send ``request``; the whole body is read unless ``stream`` (then close the response)."""
        loop = asyncio.get_running_loop()
        pool = self._last
        if pool is None or pool.loop is not loop or pool.closed:
            pool = self._pool(loop)
        slots = pool.slots_of(request.target.origin)
        if slots.free > 0:
            slots.free -= 1
        else:
            await slots.wait_slot(request.timeout)
        conn: _Connection | None = None
        exchange = 0
        try:
            target = request.target
            conn = pool.take_idle(target.origin)
            fresh = conn is None
            if conn is not None and conn.stale():
                conn.discard()  # closed by the server while idle: nothing was sent on it
                conn = None
            if conn is None:
                conn = await pool.connect(target, request.timeout, await self._context(target))
                fresh = True
            result = conn.start(request, stream)
            if result is None and not fresh:  # reused, and found closed: nothing went out
                conn.discard()
                conn = await pool.connect(target, request.timeout, await self._context(target))
                result = conn.start(request, stream)
            if result is None:
                raise httpx2.WriteError("the connection closed before the request could be sent")
            exchange = conn.exchange
            if conn.write_paused:
                await conn.drain(result, request.timeout)
            # (head, body): the head travels with the answer, since once a body is complete
            # the connection may serve another request (resetting conn.head) before we resume
            head, body = await result
        except BaseException:
            if conn is not None:
                conn.abandon(exchange or conn.exchange)
            slots.release_slot()
            raise
        if stream:
            return LeanResponse(head, content=None, body=body, slots=slots, exchange=exchange)
        slots.release_slot()
        return LeanResponse(head, content=body)

    async def aclose(self) -> None:
        """Close the idle connections (those in use close when their response ends)."""
        current = asyncio.get_running_loop()
        for loop, pool in list(self._pools.items()):
            if loop is current or loop.is_closed():
                pool.close()
            else:  # another thread's loop: its connections are closed on that loop
                loop.call_soon_threadsafe(pool.close)
        self._pools.clear()
        self._last = None
        await asyncio.sleep(0)  # let the transports report themselves closed

    def _pool(self, loop: asyncio.AbstractEventLoop) -> _Pool:
        pool = self._pools.get(loop)
        if pool is None or pool.closed:
            # a loop seen first: the pools of loops that have ended (one per asyncio.run)
            # go, their connections with them (a pool holds its loop, so it would never be
            # collected, nor its sockets closed)
            with self._pools_lock:  # threads, each with its loop, come here at once
                for ended in [other for other in list(self._pools) if other.is_closed()]:
                    old = self._pools.pop(ended, None)
                    if old is not None:
                        old.close()
                pool = self._pools[loop] = _Pool(loop, self._limit, self._keepalive_expiry)
        self._last = pool
        return pool

    async def _context(self, target: _Target) -> ssl.SSLContext | None:
        if not target.tls:
            return None
        if self._ssl_context is None:
            # loading the trust store reads files: not on the event loop
            context = await asyncio.to_thread(httpx2.create_ssl_context)
            if self._ssl_context is None:
                self._ssl_context = context
        return self._ssl_context


if TYPE_CHECKING:

    def _implements(
        client: LeanHTTPClient, response: LeanResponse
    ) -> tuple[AsyncHTTP, AsyncHTTPResponse]:
        """For mypy: the client and its responses implement deja's transport protocols."""
        return client, response
