"""The server plumbing that deja's simulated providers share (see :mod:`deja.testing`).

Each fake provider (``_fake_openai``, ``_fake_anthropic``, ``_fake_bedrock``, ``_fake_gemini``)
is a :class:`FakeServer` subclass with a :class:`FakeHandler` subclass. The base classes own
what does not depend on the provider:

* the lifecycle: a stdlib :class:`~http.server.ThreadingHTTPServer` bound on :meth:`start`
  (``port=0``: a free port) and served from a daemon thread, :meth:`~FakeServer.stop`, the
  context manager, ``url``, and the *stopping* event that wakes handlers sleeping through a
  latency;
* the recording (:class:`RecordedRequest`, numbered connections) and the scripted reply and
  failure queues;
* the request plumbing: reading a body (``content-length`` or chunked), recording it, handing
  it to the provider's ``_route``, and answering JSON, streams (chunked, ``chunk_delay``
  apart) and the provider's refusals, with no log line per request.

What a provider answers (routes, wire format, errors, authentication, caching simulation)
stays in its module, behind the few hooks :class:`FakeHandler` names. The one piece of caching
simulation two providers share, the prompt cache Anthropic and Bedrock keep (prefixes up to
breakpoints, read back within a lookback, with 5m/1h lifetimes), is :class:`PromptCache`: the
provider finds the breakpoints in its wire format and names the usage fields.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import socketserver
import sys
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

import orjson

__all__ = [
    "FakeHandler",
    "FakeServer",
    "LoopbackHTTPServer",
    "PrefixBlock",
    "PromptCache",
    "PromptCacheUse",
    "RecordedRequest",
    "ReplyFunction",
    "ScriptedFailure",
    "chunked",
    "shut_down",
    "status_phrase",
]

ReplyT = TypeVar("ReplyT")
FailureT = TypeVar("FailureT")
OwnerT = TypeVar("OwnerT", bound="FakeServer[Any, Any]")

#: Decides a request's reply from its JSON body; ``None`` means the default answer.
ReplyFunction = Callable[[dict[str, Any]], ReplyT | None]

#: One block of a prompt, in prefix order: (hash of the prefix ending with it, its tokens, the
#: lifetime of the breakpoint right after it, or ``None`` when there is none).
PrefixBlock = tuple[str, int, str | None]


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request exactly as the simulated server received it.

    ``headers`` has lower-cased names (repeated headers joined with ``", "``); ``body`` is the
    parsed JSON, or ``None`` when the body was empty or not JSON; ``raw`` is the body's bytes.
    ``connection`` numbers the TCP connection the request came on (1, 2, …), so a test can see
    keep-alive reuse.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    query: str = ""
    connection: int = 0


@dataclass(frozen=True)
class ScriptedFailure:
    """A failure queued by ``fail_next``: the provider's error body for ``status`` unless
    ``body`` is given, with ``headers`` added."""

    status: int
    body: dict[str, Any] | None
    headers: dict[str, str]


@dataclass
class _CacheEntry:
    expires: float  # on the cache's clock
    seconds: float  # the lifetime a read renews


@dataclass(frozen=True)
class PromptCacheUse:
    """What one prompt did against a :class:`PromptCache`, in tokens."""

    total: int  # the whole prompt
    read: int  # the prefix read from the cache
    written: dict[str, int]  # written to the cache, per lifetime ("5m", "1h")

    @property
    def created(self) -> int:
        """Tokens written to the cache, whatever their lifetime."""
        return sum(self.written.values())

    @property
    def uncached(self) -> int:
        """Tokens neither read from nor written to the cache."""
        return self.total - self.read - self.created


class PromptCache:
    """A provider's simulated prompt cache: the prefixes it remembers, each for its lifetime.

    The provider turns a request into :data:`PrefixBlock` rows (how it finds breakpoints in
    its wire format) and decides the minimum cacheable prefix; the cache does the rest, as
    Anthropic and Bedrock both do: a hit is looked for up to ``lookback`` blocks before each
    breakpoint, last breakpoint first; a read refreshes the entry's lifetime; each later
    breakpoint whose prefix reaches the minimum is written for ``ttl_seconds[ttl]`` on
    ``clock`` (seconds, monotonic).

    Not locked: its server calls it under the server's lock, which ``reset`` also holds.
    """

    def __init__(
        self, *, clock: Callable[[], float], ttl_seconds: Mapping[str, float], lookback: int
    ) -> None:
        self._clock = clock
        self._ttl_seconds = ttl_seconds
        self._lookback = lookback
        self._entries: dict[str, _CacheEntry] = {}

    def clear(self) -> None:
        """Forget every cached prefix (as if all lifetimes had run out)."""
        self._entries.clear()

    def use(self, blocks: Sequence[PrefixBlock], minimum: int) -> PromptCacheUse:
        """Read ``blocks``' longest live prefix and write the breakpoints after it (from
        ``minimum`` tokens on); what was read and written."""
        cumulative = list(itertools.accumulate(tokens for _, tokens, _ in blocks))
        breakpoints = [(k, ttl) for k, (_, _, ttl) in enumerate(blocks) if ttl is not None]
        now = self._clock()
        read_at = -1
        for k, _ in reversed(breakpoints):
            for j in range(k, max(-1, k - self._lookback), -1):
                entry = self._entries.get(blocks[j][0])
                if entry is not None and entry.expires > now:
                    entry.expires = now + entry.seconds  # a read refreshes the lifetime
                    read_at = j
                    break
            if read_at >= 0:
                break
        read = cumulative[read_at] if read_at >= 0 else 0
        written = dict.fromkeys(self._ttl_seconds, 0)
        end = read
        for k, ttl in breakpoints:
            if k <= read_at or cumulative[k] < minimum:
                continue
            written[ttl] += cumulative[k] - end
            end = cumulative[k]
            seconds = self._ttl_seconds[ttl]
            self._entries[blocks[k][0]] = _CacheEntry(now + seconds, seconds)
        return PromptCacheUse(cumulative[-1] if cumulative else 0, read, written)


class FakeServer(ABC, Generic[ReplyT, FailureT]):
    """A simulated provider on a loopback port: lifecycle, recording and scripted queues.

    Subclasses set :attr:`_provider` and :attr:`_log`, return their handler class from
    :meth:`_handler`, and add their routes' state. ``ReplyT`` is the provider's scripted
    reply, ``FailureT`` what its ``fail_next`` queues.
    """

    _provider: ClassVar[str]  # "OpenAI", …: names the server in its log lines
    _log: ClassVar[logging.Logger]  # the provider module's logger
    _backlog: ClassVar[int] = 64  # connections the listening socket queues

    def __init__(self, *, host: str, port: int, latency: float, chunk_delay: float) -> None:
        self.latency = latency
        self.chunk_delay = chunk_delay
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._queued: deque[ReplyT] = deque()
        self._reply_fn: ReplyFunction[ReplyT] | None = None
        self._failures: deque[FailureT] = deque()
        self._connections = itertools.count(1)
        self._httpd: LoopbackHTTPServer[Any] | None = None
        self._thread: threading.Thread | None = None
        # Set on stop() so handlers sleeping through latency or a delay wake up at once.
        self._stopping = threading.Event()
        # Counts the resets: a request held through one belongs to what came before it
        self._generation = 0

    @abstractmethod
    def _handler(self) -> type[FakeHandler[Any]]:
        """The handler class that serves this provider's routes."""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind the socket and serve from a daemon thread; a no-op when already running."""
        with self._lock:
            if self._httpd is not None:
                return self
            httpd = LoopbackHTTPServer((self._host, self._port), self, self._handler())
            self._stopping.clear()
            thread = threading.Thread(
                target=httpd.serve_forever,
                # A short poll keeps stop() quick: shutdown() waits for the next poll.
                kwargs={"poll_interval": 0.02},
                name=f"{type(self).__name__}:{httpd.server_port}",
                daemon=True,
            )
            self._httpd, self._thread = httpd, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and the socket, and join the thread.

        Idempotent. A stopped server may be started again (on a new port when ``port=0``).
        """
        with self._lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None or thread is None:
            return
        httpd.shutdown()
        # Connections first, then wake sleeping handlers: a woken handler then writes to a
        # closed socket instead of answering a client that should see the server go away.
        httpd.close_connections()
        self._stopping.set()
        httpd.server_close()
        thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        httpd = self._httpd
        if httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running: call start() first")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{httpd.server_port}"

    def __repr__(self) -> str:
        where = self.url if self._httpd is not None else "stopped"
        return f"<{type(self).__name__} (simulated) {where}>"

    # -- recording and scripting --------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first (``path`` as sent, still
        percent-encoded, without the query)."""
        with self._lock:
            return list(self._requests)

    def _count(self, path: str | None, key: Callable[[str], str]) -> int:
        """How many requests were received: all, or those whose path has ``path``'s ``key``."""
        with self._lock:
            if path is None:
                return len(self._requests)
            wanted = key(path)
            return sum(1 for r in self._requests if key(r.path) == wanted)

    def queue_reply(self, reply: ReplyT, *, times: int = 1) -> None:
        """Answer the next ``times`` requests that take a reply (the provider's answering
        routes: completions, messages, converse, generateContent) with ``reply``, after the
        replies queued earlier."""
        with self._lock:
            self._queued.extend([reply] * times)

    def reply_with(self, fn: ReplyFunction[ReplyT] | None) -> None:
        """Decide each reply with ``fn(body)``; ``None`` from it means the default answer.

        Queued replies come first. ``fn=None`` removes the function.
        """
        with self._lock:
            self._reply_fn = fn

    def _queue_failure(self, failure: FailureT, times: int) -> None:
        with self._lock:
            self._failures.extend([failure] * times)

    def _forget(self) -> None:
        """Drop the recorded requests and the scripted replies and failures (caller holds the
        lock; a subclass's ``reset`` also drops its own state)."""
        self._requests.clear()
        self._queued.clear()
        self._reply_fn = None
        self._failures.clear()
        self._generation += 1

    # -- used by the handler --------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_connection(self) -> int:
        with self._lock:
            return next(self._connections)

    def _take_failure(self) -> FailureT | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _take_reply(self, body: dict[str, Any]) -> ReplyT | None:
        with self._lock:
            if self._queued:
                return self._queued.popleft()
            fn = self._reply_fn
        # Called outside the lock: a reply function may itself inspect the server.
        return fn(body) if fn is not None else None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


class LoopbackHTTPServer(ThreadingHTTPServer, Generic[OwnerT]):
    """The HTTP server behind a :class:`FakeServer`: tracks its connections so ``stop`` can
    end kept-alive ones at once."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], owner: OwnerT, handler: type[FakeHandler[OwnerT]]
    ) -> None:
        self.owner = owner
        self.request_queue_size = owner._backlog
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup that can stall on a
        # machine without network; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def track(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(conn)

    def close_connections(self) -> None:
        """Shut down kept-alive connections, so their handler threads end now, not at exit."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            shut_down(conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that times out, drops a stream or goes away mid-response is routine here.
        if isinstance(sys.exc_info()[1], OSError):
            return
        owner = self.owner
        owner._log.exception(
            "simulated %s server: error serving %s", owner._provider, client_address
        )


class FakeHandler(BaseHTTPRequestHandler, ABC, Generic[OwnerT]):
    """Reads, records and dispatches one request after another on a connection.

    A provider's handler implements :meth:`_route` (answer a recorded request),
    :meth:`_answer_refusal` (its own refusal exceptions), :meth:`_send_unreadable` and
    :meth:`_send_internal_error`, and may add :meth:`_provider_headers` to every response.
    HTTP methods other than GET and POST need their ``do_*`` method.
    """

    protocol_version = "HTTP/1.1"
    server: LoopbackHTTPServer[OwnerT]
    json_type: ClassVar[str] = "application/json"  # the content-type of JSON answers
    #: Whether the body of the request being handled was sent but is not JSON.
    bad_json: bool = False

    def setup(self) -> None:
        super().setup()
        # Without TCP_NODELAY, Nagle's algorithm holds small writes (SSE events) until the
        # client's delayed ACK: up to 40 ms per event on loopback.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)
        self.connection_number = self.server.owner._next_connection()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        # One stderr line per request would dominate benchmark time and clutter test output.
        return

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    # -- provider hooks -------------------------------------------------------------------------

    @abstractmethod
    def _route(self, request: RecordedRequest) -> None:
        """Answer ``request`` (already recorded); a refusal may be raised instead."""

    def _answer_refusal(self, exc: Exception) -> bool:
        """Answer ``exc`` when it is one of the provider's refusals; ``False`` when it is not."""
        return False

    @abstractmethod
    def _send_unreadable(self) -> None:
        """Answer a request whose body could not be read (the connection then closes)."""

    @abstractmethod
    def _send_internal_error(self) -> None:
        """Answer a request whose handling failed unexpectedly (it was logged)."""

    def _provider_headers(self) -> Iterable[tuple[str, str]]:
        """Headers every response starts with (a request id, …)."""
        return ()

    def _parses_json(self, headers: Mapping[str, str]) -> bool:
        """Whether a request with these (lower-cased) headers has its body parsed as JSON."""
        return True

    # -- request ------------------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        """The request body, or ``None`` when its framing is broken (the connection closes)."""
        try:
            if "chunked" in str(self.headers.get("transfer-encoding", "")).lower():
                parts: list[bytes] = []
                while True:
                    size = int(self.rfile.readline(65537).split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        owner = self.server.owner
        raw = self._read_body()
        if raw is None:
            self.close_connection = True
            self._send_unreadable()
            return
        path, _, query = self.path.partition("?")
        headers: dict[str, str] = {}
        for original, value in self.headers.items():
            name = original.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        body: Any = None
        self.bad_json = False
        if raw and self._parses_json(headers):
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                self.bad_json = True
        request = RecordedRequest(
            self.command, path, headers, body, raw, query, self.connection_number
        )
        owner._record(request)
        try:
            self._route(request)
        except OSError:
            raise  # the client went away (or a response was cut off): never answer twice
        except Exception as exc:
            if not self._answer_refusal(exc):
                owner._log.exception(
                    "simulated %s server: error handling %s %s",
                    owner._provider,
                    self.command,
                    path,
                )
                self._send_internal_error()

    # -- response -----------------------------------------------------------------------------

    def _head(self, status: int, fields: Iterable[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} {status_phrase(status)}"]
        lines.extend(f"{name}: {value}" for name, value in self._provider_headers())
        lines.append("server: deja-simulated")
        lines.extend(f"{name}: {value}" for name, value in fields)
        if self.close_connection:
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send_json(
        self,
        status: int,
        payload: Any,
        headers: Mapping[str, str] | None = None,
        *,
        truncate: bool = False,
    ) -> None:
        """Answer ``payload`` as JSON; ``truncate``: only half the body, then hang up."""
        body = orjson.dumps(payload)
        fields = [("content-type", self.json_type), ("content-length", str(len(body)))]
        fields.extend((headers or {}).items())
        if truncate:
            # An unfinished response: the promised length never arrives.
            self.close_connection = True
            self.wfile.write(self._head(status, fields) + body[: len(body) // 2])
            self._hang_up()
            return
        # One write for head and body: two small writes can meet the client's delayed ACK.
        self.wfile.write(self._head(status, fields) + body)

    def _send_frames(
        self, fields: list[tuple[str, str]], frames: Sequence[bytes], *, finished: bool = True
    ) -> None:
        """Answer 200 with ``frames`` in chunked encoding (``fields`` say what they are).

        An unfinished stream has no last chunk, and the connection is cut after it.
        """
        head = self._head(200, [*fields, ("transfer-encoding", "chunked")])
        self._write_frames(head, chunked(frames, last=finished))
        if not finished:
            self._hang_up()

    def _write_frames(self, head: bytes, frames: Sequence[bytes]) -> None:
        """Write ``head``, then ``frames`` the server's ``chunk_delay`` apart (one write
        when there is no delay)."""
        owner = self.server.owner
        if owner.chunk_delay <= 0:
            self.wfile.write(head + b"".join(frames))
            return
        self.wfile.write(head)
        for i, frame in enumerate(frames):
            if i:
                owner._sleep(owner.chunk_delay)
            self.wfile.write(frame)

    def _hang_up(self) -> None:
        self.close_connection = True
        shut_down(self.connection)


def chunked(frames: Iterable[bytes], *, last: bool = True) -> list[bytes]:
    """``frames`` in HTTP/1.1 chunked encoding, with the closing empty chunk when ``last``."""
    out = [b"%x\r\n%s\r\n" % (len(frame), frame) for frame in frames]
    if last:
        out.append(b"0\r\n\r\n")
    return out


def shut_down(conn: socket.socket) -> None:
    """Shut a socket down both ways (so a blocked reader on it wakes up)."""
    with contextlib.suppress(OSError):  # already closed by the peer
        conn.shutdown(socket.SHUT_RDWR)


def status_phrase(status: int) -> str:
    """HTTP's reason phrase for ``status`` (``"Unknown"`` for a code it does not name)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
