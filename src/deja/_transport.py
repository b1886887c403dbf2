"""The async HTTP transport of :class:`deja.AsyncClient` (and so of the proxy's upstream calls).

The client speaks to the small subset of ``httpx2.AsyncClient`` defined by
:class:`AsyncHTTP`. By default deja uses its own :class:`~deja._lean_http.LeanHTTPClient`, a
keep-alive HTTP/1.1 client over asyncio (no extra dependency): per keep-alive POST it
spends less than half the CPU of aiohttp and a tenth of ``httpx2.AsyncClient``'s (figures in
its module), and the upstream call is the largest part of the proxy's overhead on a miss.
Its errors are raised as the ``httpx2`` exceptions the client already handles, so the retry
and error-translation code has one shape.

When the environment configures an HTTP proxy (``HTTP_PROXY``, ``HTTPS_PROXY``,
``ALL_PROXY``; ``NO_PROXY`` honoured), which the lean client does not speak,
``httpx2.AsyncClient`` is used instead: the same proxy rules as the sync client.
:class:`AiohttpClient` remains available to pass as ``http_client=`` explicitly.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Mapping
from typing import Any, Protocol

import httpx2

from deja._lean_http import LeanHTTPClient

__all__ = [
    "AiohttpClient",
    "AsyncHTTP",
    "AsyncHTTPResponse",
    "ChunkStream",
    "HTTPAnswer",
    "SyncChunkStream",
    "SyncHTTP",
    "SyncHTTPResponse",
    "async_http_client",
    "check_http_client",
    "sync_http_client",
]


class HTTPAnswer(Protocol):
    """What the client reads from a response whose body is read (sync or async)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...


class AsyncHTTPResponse(HTTPAnswer, Protocol):
    """What the client reads from a response."""

    async def aread(self) -> bytes: ...
    async def aclose(self) -> None: ...
    def aiter_bytes(self) -> AsyncIterator[bytes]: ...


class AsyncHTTP(Protocol):
    """What the client needs from an async HTTP client (a subset of httpx2.AsyncClient's)."""

    def build_request(
        self, method: str, url: str, *, content: bytes, headers: Mapping[str, str], timeout: float
    ) -> Any: ...
    async def send(self, request: Any, *, stream: bool = False) -> Any: ...  # AsyncHTTPResponse
    async def aclose(self) -> None: ...


ChunkStream = AsyncGenerator[dict[str, Any], None]
"""An upstream stream of decoded SSE events, closable (``aclose``) to end the response."""
SyncChunkStream = Generator[dict[str, Any], None, None]
"""The sync twin of :data:`ChunkStream` (``close``)."""

SyncHTTP = httpx2.Client
"""The sync client's transport (the generated sync twin of AsyncClient uses httpx2)."""
SyncHTTPResponse = httpx2.Response


# What no HTTP header value can carry: control characters (a tab is whitespace, allowed).
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_text(value: str) -> str:
    """``value`` as an HTTP header carries it (an API key, an organization): without
    surrounding whitespace, which HTTP ignores (the newline of a key read from a secret
    file). A control character inside is a :class:`ValueError`: the transport refuses to
    send it, and every call failed as if the upstream could not be reached. So is a
    character that is not ASCII."""
    text = value.strip()
    if _HEADER_CONTROL.search(text):
        raise ValueError(
            "has a control character inside (a line break?), which no HTTP header can carry"
        )
    if (
        not text.isascii()
    ):  # (the sync transport raised UnicodeEncodeError, the async sent it garbled)
        raise ValueError(
            "has a character that is not ASCII inside (a zero-width space or a curly quote"
            " pasted with it?), which an HTTP header does not carry as written"
        )
    return text


def check_http_client(client: object, *, asynchronous: bool) -> None:
    """Refuse an ``http_client=`` that cannot serve the client it is given to: one without
    ``build_request`` and ``send``, or a sync one given to the async client (its ``send``
    is awaited) and the reverse (its ``send`` returns a coroutine). Each failed only at the
    first call, with an AttributeError or TypeError from inside the client."""
    kind = "an httpx2.AsyncClient" if asynchronous else "an httpx2.Client"
    send = getattr(client, "send", None)
    if not callable(getattr(client, "build_request", None)) or not callable(send):
        raise TypeError(f"http_client must be {kind} (or one like it), not {type(client).__name__}")
    if inspect.iscoroutinefunction(send) != asynchronous:
        which = "async" if asynchronous else "sync"
        raise TypeError(
            f"http_client must be {kind} (the {which} client's), not {type(client).__name__}"
        )


def sync_http_client(*, max_connections: int, timeout: float) -> httpx2.Client:
    """A pooled httpx2 client for the sync :class:`deja.Client`."""
    return _DrainingClient(limits=_limits(max_connections), timeout=timeout)


class _DrainingClient(httpx2.Client):
    """An httpx2 client whose :meth:`close` lets the requests in flight (other threads')
    finish: its connections close when the last one ends, as deja's async client does.
    httpx2's own close breaks them ("Bad file descriptor")."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._flight_lock = threading.Lock()
        self._in_flight = 0
        self._closing = False

    def send(self, request: httpx2.Request, **options: Any) -> httpx2.Response:
        with self._flight_lock:
            self._in_flight += 1
        try:
            response = super().send(request, **options)
        except BaseException:
            self._finished()
            raise
        if not options.get("stream"):
            self._finished()
            return response
        close = response.close
        ended = False

        def closing() -> None:  # a streamed response is in flight until it is closed
            nonlocal ended
            try:
                close()
            finally:
                if not ended:
                    ended = True
                    self._finished()

        response.close = closing  # type: ignore[method-assign]
        return response

    def close(self) -> None:
        with self._flight_lock:
            self._closing = True
            idle = self._in_flight == 0
        if idle:
            super().close()

    def _finished(self) -> None:
        with self._flight_lock:
            self._in_flight -= 1
            last = self._closing and self._in_flight == 0
        if last:
            super().close()


def _limits(max_connections: int) -> httpx2.Limits:
    """``max_connections`` in flight, and as many kept alive."""
    return httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)


def async_http_client(*, max_connections: int, timeout: float) -> AsyncHTTP:
    """The lean HTTP/1.1 client; httpx2.AsyncClient when the environment sets a proxy."""
    if _proxy_configured():
        client: AsyncHTTP = httpx2.AsyncClient(limits=_limits(max_connections), timeout=timeout)
        return client
    return LeanHTTPClient(max_connections=max_connections)


def _proxy_configured() -> bool:
    """Whether requests should go through a proxy (the variables httpx2 reads, any case)."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


class _Request:
    __slots__ = ("content", "headers", "method", "timeout", "url")

    def __init__(
        self, method: str, url: str, content: bytes, headers: Mapping[str, str], timeout: float
    ) -> None:
        self.method = method
        self.url = url
        self.content = content
        self.headers = headers
        self.timeout = timeout


class _Response:
    """An aiohttp response with the httpx2 attributes the client reads."""

    __slots__ = ("_body", "_response")

    def __init__(self, response: Any, body: bytes | None) -> None:
        self._response = response
        self._body = body

    @property
    def status_code(self) -> int:
        status: int = self._response.status
        return status

    @property
    def headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = self._response.headers  # case-insensitive, like httpx2's
        return headers

    @property
    def content(self) -> bytes:
        if self._body is None:
            raise RuntimeError("the body of a streamed response has not been read")
        return self._body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    async def aread(self) -> bytes:
        if self._body is None:
            try:
                self._body = await self._response.read()
            except Exception as exc:
                raise _translate(exc) from exc
        return self._body

    async def aclose(self) -> None:
        self._response.release()

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.content.iter_any():
                yield data
        except Exception as exc:
            raise _translate(exc) from exc


def _translate(exc: BaseException) -> httpx2.TransportError:
    import aiohttp

    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return httpx2.ReadTimeout(str(exc) or "timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx2.ConnectError(str(exc))
    return httpx2.ReadError(str(exc) or type(exc).__name__)


class AiohttpClient:
    """httpx2.AsyncClient's subset that deja uses, over one aiohttp session per event loop.

    Not the default any more (see the module docstring); pass one as ``http_client=`` to
    use aiohttp (``pip install 'deja-llm[server]'``).
    """

    def __init__(self, *, max_connections: int, timeout: float) -> None:
        self._max_connections = max_connections
        self._timeout = timeout
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # a session belongs to the loop it was made on; a client used from another loop
            # (asyncio.run twice, say) gets a fresh one
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
            self._loop = loop
        return self._session

    def build_request(
        self, method: str, url: str, *, content: bytes, headers: Mapping[str, str], timeout: float
    ) -> _Request:
        """A request to :meth:`send`."""
        return _Request(method, url, content, headers, timeout)

    async def send(self, request: _Request, *, stream: bool = False) -> _Response:
        """Send ``request``; read the whole body unless ``stream``."""
        import aiohttp

        session = self._current()
        timeout = aiohttp.ClientTimeout(
            total=None, connect=request.timeout, sock_read=request.timeout
        )
        try:
            response = await session.request(
                request.method,
                request.url,
                data=request.content,
                headers=dict(request.headers),
                timeout=timeout,
            )
            if stream:
                return _Response(response, None)
            body = await response.read()
            response.release()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc) from exc
        return _Response(response, body)

    async def aclose(self) -> None:
        """Close the session."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
