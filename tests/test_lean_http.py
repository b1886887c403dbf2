"""The lean HTTP/1.1 client (deja._lean_http) against real HTTP servers on loopback.

Most tests use :class:`RawServer`: a threaded TCP server whose answers are scripted bytes, so
each framing, fault and race can be produced exactly; others use uvicorn (a production HTTP
server) and deja's simulated OpenAI server. Server threads run outside the client's event
loop, so a test can close a connection while the loop is not looking.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import hashlib
import ipaddress
import socket
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

import deja
from deja._lean_http import Headers, LeanHTTPClient, LeanResponse
from deja._transport import async_http_client
from deja.testing import FakeOpenAIServer
from tests.helpers import free_port
from tests.server.test_upstream_transport import PROXY_VARIABLES

JSON = {"content-type": "application/json"}


# -- a scripted HTTP server ------------------------------------------------------------------


@dataclass
class Recorded:
    connection: int
    method: str
    target: str
    headers: dict[str, str]
    raw_head: bytes
    body: bytes


class Conn:
    """One accepted connection, driven by a test's script in the connection's thread."""

    def __init__(self, server: RawServer, sock: socket.socket, number: int) -> None:
        self.server = server
        self.sock = sock
        self.number = number
        self.reader = sock.makefile("rb")
        self.client_gone = threading.Event()  # set by `answering` when the client hangs up

    def read_request(self) -> Recorded | None:
        """The next request on this connection; ``None`` when the client closed it."""
        try:
            line = self.reader.readline()
        except OSError:
            return None
        if not line:
            return None
        raw = [line]
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            line = self.reader.readline()
            raw.append(line)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = self.reader.read(length) if length else b""
        request = Recorded(self.number, method, target, headers, b"".join(raw), body)
        with self.server.received:
            self.server.requests.append(request)
            self.server.received.notify_all()
        return request

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_in_pieces(self, data: bytes, size: int) -> None:
        for i in range(0, len(data), size):
            self.sock.sendall(data[i : i + size])
            time.sleep(0.0005)  # separate TCP segments, so the client parses piecemeal

    def at_eof(self, timeout: float = 10.0) -> bool:
        """Whether the client closed this connection (within ``timeout``)."""
        self.sock.settimeout(timeout)
        try:
            return self.reader.read(1) == b""
        except (TimeoutError, OSError):
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


Script = Callable[[Conn], None]


class RawServer:
    """A real HTTP/1.1 server on a free loopback port answering with scripted bytes."""

    def __init__(self, script: Script, *, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.requests: list[Recorded] = []
        self.conns: list[Conn] = []
        self.lock = threading.Lock()
        self.received = threading.Condition()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def wait_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` requests have arrived (a thread's wait: use asyncio.to_thread)."""
        with self.received:
            return self.received.wait_for(lambda: len(self.requests) >= count, timeout)

    @property
    def connections(self) -> int:
        return len(self.conns)

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                sock.close()
                return
        with self.lock:
            conn = Conn(self, sock, len(self.conns) + 1)
            self.conns.append(conn)
        try:
            self.script(conn)
        except OSError:
            pass  # the client went away: routine in these tests
        finally:
            conn.close()

    def close(self) -> None:
        self._closing.set()
        self.listener.close()
        for conn in list(self.conns):
            conn.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(script: Script, **kw: Any) -> RawServer:
        server = RawServer(script, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def response(
    body: bytes = b"",
    *,
    status: str = "200 OK",
    headers: dict[str, str] | None = None,
    version: str = "HTTP/1.1",
    length: bool = True,
) -> bytes:
    lines = [f"{version} {status}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if length:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*parts: bytes, trailer: bytes = b"") -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return out + b"0\r\n" + trailer + b"\r\n"


def answering(respond: Callable[[Conn, Recorded], None]) -> Script:
    """A script that answers every request on a connection with ``respond``."""

    def script(conn: Conn) -> None:
        while (request := conn.read_request()) is not None:
            respond(conn, request)
        conn.client_gone.set()

    return script


def echo(conn: Conn, request: Recorded) -> None:
    body = orjson.dumps(
        {
            "method": request.method,
            "target": request.target,
            "connection": request.connection,
            "sha256": hashlib.sha256(request.body).hexdigest(),
            "length": len(request.body),
        }
    )
    conn.send(response(body, headers=JSON))


async def post(
    client: LeanHTTPClient,
    url: str,
    content: bytes = b"{}",
    *,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
    stream: bool = False,
    method: str = "POST",
) -> LeanResponse:
    request = client.build_request(
        method, url, content=content, headers=headers or JSON, timeout=timeout
    )
    return await client.send(request, stream=stream)


@pytest.fixture
async def client() -> Any:
    http = LeanHTTPClient(max_connections=10)
    yield http
    await http.aclose()


# -- requests as sent ------------------------------------------------------------------------


async def test_request_head_and_body(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    server = serve(answering(echo))
    body = b'{"model":"gpt-4o"}'
    answer = await post(
        client,
        f"{server.url}/v1/chat/completions?api-version=2024-10-21",
        body,
        headers={
            "Content-Type": "application/json",
            "Authorization": "Bearer sk-x",
            "Content-Length": "999",  # framing is the client's own: ignored
            "Transfer-Encoding": "chunked",
        },
    )
    assert answer.status_code == 200
    assert answer.http_version == "HTTP/1.1" and answer.reason_phrase == "OK"
    (request,) = server.requests
    assert request.method == "POST"
    assert request.target == "/v1/chat/completions?api-version=2024-10-21"
    assert request.body == body
    assert request.headers["host"] == f"127.0.0.1:{server.port}"
    assert request.headers["content-length"] == str(len(body))
    assert "transfer-encoding" not in request.headers
    assert request.headers["authorization"] == "Bearer sk-x"
    assert request.headers["accept-encoding"] == "gzip, deflate"
    assert request.headers["user-agent"] == f"deja-llm/{deja.__version__}"
    assert request.raw_head.count(b"Content-Type: application/json\r\n") == 1


async def test_url_forms(serve: Callable[..., RawServer], client: LeanHTTPClient) -> None:
    server = serve(answering(echo))
    base = f"http://user%40corp:p%3Ass@127.0.0.1:{server.port}"
    await post(client, f"{base}/a path/ü?q=a b")
    await post(client, f"http://127.0.0.1:{server.port}")
    await post(
        client, f"{server.url}/x", headers={"Host": "api.example"}, method="GET", content=b""
    )
    first, bare, virtual = server.requests
    assert first.target == "/a%20path/%C3%BC?q=a%20b"
    assert first.headers["authorization"] == "Basic dXNlckBjb3JwOnA6c3M="  # user@corp:p:ss
    assert first.headers["host"] == f"127.0.0.1:{server.port}"  # userinfo is not the host
    assert bare.target == "/"
    assert virtual.headers["host"] == "api.example"
    assert virtual.method == "GET" and "content-length" not in virtual.headers


async def test_invalid_requests_raise_httpx2_errors(client: LeanHTTPClient) -> None:
    with pytest.raises(httpx2.UnsupportedProtocol):
        client.build_request("POST", "ftp://x/y", content=b"", headers={}, timeout=1)
    with pytest.raises(httpx2.LocalProtocolError):
        client.build_request("POST", "http://:80/y", content=b"", headers={}, timeout=1)
    with pytest.raises(httpx2.LocalProtocolError):
        client.build_request("POST", "http://h:99999/", content=b"", headers={}, timeout=1)
    with pytest.raises(httpx2.LocalProtocolError):
        client.build_request(
            "POST", "http://h/", content=b"", headers={"x": "a\r\nevil: 1"}, timeout=1
        )
    with pytest.raises(httpx2.LocalProtocolError):
        client.build_request("POST", "http://h/", content=b"", headers={"a b": "1"}, timeout=1)
    with pytest.raises(httpx2.LocalProtocolError):
        client.build_request("PO ST", "http://h/", content=b"", headers={}, timeout=1)


# -- framings ------------------------------------------------------------------------------


@pytest.mark.parametrize("piece", [1, 3, 7, 64, 10_000])
async def test_chunked_body_arriving_in_any_pieces(
    serve: Callable[..., RawServer], client: LeanHTTPClient, piece: int
) -> None:
    payload = [b'{"id":', b'"x", "text": "' + b"a" * 300, b'"}']
    wire = response(headers={"transfer-encoding": "chunked", **JSON}, length=False) + chunked(
        *payload, trailer=b"x-checksum: 1\r\nx-other: 2\r\n"
    )
    # a chunk extension, upper-case hex and bare-LF line ends, all accepted
    wire = wire.replace(b"\r\n6\r\n", b"\r\n6;ext=1\r\n").replace(b"13a\r\n", b"13A\r\n")
    wire = wire.replace(b'2\r\n"}\r\n', b'2\n"}\n')
    assert b"6;ext=1" in wire and b"13A" in wire and b'2\n"}\n' in wire

    def respond(conn: Conn, request: Recorded) -> None:
        conn.send_in_pieces(wire, piece)

    server = serve(answering(respond))
    for _ in range(2):  # the second on the same connection: the first ended cleanly
        answer = await post(client, server.url)
        assert answer.content == b"".join(payload)
        assert orjson.loads(answer.content)["id"] == "x"
    assert server.connections == 1


@pytest.mark.parametrize("piece", [1, 5, 10_000])
async def test_content_length_body_in_pieces(
    serve: Callable[..., RawServer], client: LeanHTTPClient, piece: int
) -> None:
    body = orjson.dumps({"answer": "b" * 500})
    server = serve(answering(lambda c, r: c.send_in_pieces(response(body, headers=JSON), piece)))
    for _ in range(2):
        assert (await post(client, server.url)).content == body
    assert server.connections == 1


async def test_body_until_close_and_connection_close(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    def until_close(conn: Conn) -> None:
        if conn.read_request() is not None:
            conn.send(response(b"no length, ends with the connection", length=False))

    def closing(conn: Conn) -> None:
        if conn.read_request() is not None:
            conn.send(response(b"bye", headers={"Connection": "close"}))
            conn.at_eof()  # the client closes it (does not wait for the server)

    for script, body in ((until_close, b"no length, ends with the connection"), (closing, b"bye")):
        server = serve(script)
        assert (await post(client, server.url)).content == body
        assert (await post(client, server.url)).content == body
        assert server.connections == 2  # never reused


async def test_http10_and_interim_answers(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    old = serve(answering(lambda c, r: c.send(response(b"old", version="HTTP/1.0"))))
    assert (await post(client, old.url)).content == b"old"
    assert (await post(client, old.url)).content == b"old"
    assert old.connections == 2  # HTTP/1.0 without keep-alive: one request per connection

    early = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
    interim = serve(answering(lambda c, r: c.send(early + response(b"final", headers=JSON))))
    answer = await post(client, interim.url)
    assert answer.status_code == 200 and answer.content == b"final"
    assert "link" not in answer.headers


async def test_answers_without_a_body(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    def respond(conn: Conn, request: Recorded) -> None:
        if request.method == "HEAD":
            conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
        elif request.target == "/204":
            conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")
        else:
            conn.send(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n")

    server = serve(answering(respond))
    head = await post(client, server.url, method="HEAD", content=b"")
    assert head.content == b"" and head.headers["content-length"] == "1234"
    assert (await post(client, f"{server.url}/204")).status_code == 204
    assert (await post(client, f"{server.url}/304")).content == b""
    assert server.connections == 1


async def test_headers_are_case_insensitive_and_repeatable(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    raw = (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nSet-Cookie: a=1\r\n"
        b"set-cookie: b=2\r\nX-Empty:\r\ncontent-type: text/plain; charset=latin-1\r\n"
        b"Content-Length: 2\r\n\r\n\xe9t"
    )
    server = serve(answering(lambda c, r: c.send(raw)))
    answer = await post(client, server.url)
    assert answer.status_code == 429 and answer.reason_phrase == "Too Many Requests"
    headers = answer.headers
    assert isinstance(headers, Headers)
    assert headers["retry-after"] == headers["RETRY-AFTER"] == headers.get("Retry-After") == "3"
    assert headers["set-cookie"] == "a=1, b=2"
    assert headers.get_list("Set-Cookie") == ["a=1", "b=2"]
    assert headers["x-empty"] == ""
    assert "Content-Length" in headers and "nope" not in headers
    assert len(headers) == 5 and dict(headers)["content-length"] == "2"
    assert answer.text == "ét"  # the charset the server named


# -- decoding --------------------------------------------------------------------------------


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
    ],
)
async def test_compressed_answers_are_decoded(
    serve: Callable[..., RawServer],
    client: LeanHTTPClient,
    coding: str,
    encode: Callable[[bytes], bytes],
) -> None:
    body = orjson.dumps({"text": "compressible " * 2000})
    packed = encode(body)

    def respond(conn: Conn, request: Recorded) -> None:
        if request.target == "/stream":
            parts = [packed[i : i + 97] for i in range(0, len(packed), 97)]
            head = {"content-encoding": coding, "transfer-encoding": "chunked"}
            conn.send_in_pieces(response(headers=head, length=False) + chunked(*parts), 4096)
        else:
            conn.send(response(packed, headers={"Content-Encoding": coding}))

    server = serve(answering(respond))
    assert (await post(client, server.url)).content == body
    streamed = await post(client, f"{server.url}/stream", stream=True)
    assert b"".join([chunk async for chunk in streamed.aiter_bytes()]) == body
    await streamed.aclose()


async def test_unknown_coding_passes_through_and_corrupt_gzip_fails(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    def respond(conn: Conn, request: Recorded) -> None:
        coding = "br" if request.target == "/br" else "gzip"
        conn.send(response(b"\x1f\x8b not really gzip", headers={"content-encoding": coding}))

    server = serve(answering(respond))
    assert (await post(client, f"{server.url}/br")).content == b"\x1f\x8b not really gzip"
    with pytest.raises(httpx2.RemoteProtocolError, match="gzip"):
        await post(client, f"{server.url}/gz")


async def test_identity_when_the_caller_asks(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    server = serve(answering(echo))
    await post(client, server.url, headers={"accept-encoding": "identity"})
    assert server.requests[0].headers["accept-encoding"] == "identity"


# -- broken answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.1 response"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP/1.1 response"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed response header"),
        (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "malformed response header"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd", "length"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "content-length"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched"),
        (b"HTTP/1.1 200 OK\r\nx: " + b"a" * 70_000 + b"\r\n\r\n", "too large"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", "before the end"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab", "before the end"),
        (b"", "without answering"),
    ],
)
async def test_malformed_or_cut_answers_raise_protocol_errors(
    serve: Callable[..., RawServer], client: LeanHTTPClient, wire: bytes, match: str
) -> None:
    def script(conn: Conn) -> None:
        if conn.read_request() is not None:
            conn.send(wire)
        # then close: the client must not wait for more

    server = serve(script)
    with pytest.raises(httpx2.RemoteProtocolError, match=match):
        await post(client, server.url)
    assert len(server.requests) == 1  # a request that went out is never sent again


async def test_both_framings_prefer_chunked_and_drop_the_connection(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    wire = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n" + chunked(
        b"chunked wins"
    )
    server = serve(answering(lambda c, r: c.send(wire)))
    assert (await post(client, server.url)).content == b"chunked wins"
    assert (await post(client, server.url)).content == b"chunked wins"
    assert server.connections == 2


async def test_bytes_past_the_answer_or_unasked_drop_the_connection(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    def respond(conn: Conn, request: Recorded) -> None:
        if request.target == "/extra":
            conn.send(response(b"ok") + b"HTTP/1.1 200 OK\r\n")  # garbage after the answer
        else:
            conn.send(response(b"ok"))
            time.sleep(0.05)
            conn.send(b"surprise")  # while the connection is idle

    server = serve(answering(respond))
    assert (await post(client, f"{server.url}/extra")).content == b"ok"
    assert (await post(client, f"{server.url}/idle")).content == b"ok"
    await asyncio.sleep(0.3)  # the unasked bytes arrive while idle
    assert (await post(client, f"{server.url}/idle")).content == b"ok"
    assert [r.connection for r in server.requests] == [1, 2, 3]


# -- keep-alive and the pool -----------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    server = serve(answering(echo))
    for i in range(5):
        assert orjson.loads((await post(client, server.url, b"x" * i)).content)["length"] == i
    assert server.connections == 1


async def test_server_closing_an_idle_connection(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    close_now, closed = threading.Event(), threading.Event()

    def script(conn: Conn) -> None:
        request = conn.read_request()
        assert request is not None
        echo(conn, request)
        if conn.number == 1:
            close_now.wait(10)
            conn.close()
            closed.set()
            return
        while (request := conn.read_request()) is not None:
            echo(conn, request)

    server = serve(script)
    await post(client, server.url)
    # The server closes while the client's event loop is not running (this thread blocks):
    # the loop has not seen the FIN when the next request picks the pooled connection.
    close_now.set()
    assert closed.wait(10)
    time.sleep(0.05)  # noqa: ASYNC251 (the loop must not run: the FIN reaches the socket unseen)
    answer = await post(client, server.url, b"second")
    assert orjson.loads(answer.content)["connection"] == 2
    # and once more after the loop has seen a close
    await asyncio.sleep(0)
    assert orjson.loads((await post(client, server.url)).content)["connection"] == 2
    assert [r.connection for r in server.requests] == [1, 2, 2]


async def test_a_sent_request_is_not_sent_again(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    def script(conn: Conn) -> None:
        request = conn.read_request()
        if request is not None and conn.number == 1:
            echo(conn, request)
            conn.read_request()  # the second request arrives, and is not answered

    server = serve(script)
    await post(client, server.url)
    with pytest.raises(httpx2.RemoteProtocolError, match="without answering"):
        await post(client, server.url)
    assert [r.connection for r in server.requests] == [1, 1]


async def test_uvicorn_closing_idle_keep_alive_connections() -> None:
    uvicorn = pytest.importorskip("uvicorn")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        if scope["path"] == "/stream":  # no content-length: uvicorn sends it chunked
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for i in range(3):
                await send(
                    {"type": "http.response.body", "body": b"part%d " % i, "more_body": True}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        body = orjson.dumps({"client_port": scope["client"][1]})
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="error", timeout_keep_alive=1, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    http = LeanHTTPClient(keepalive_expiry=60)  # longer than uvicorn's: it closes first
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        first = orjson.loads((await post(http, url)).content)["client_port"]
        assert orjson.loads((await post(http, url)).content)["client_port"] == first
        streamed = (await post(http, f"{url}/stream")).content
        assert streamed == b"part0 part1 part2 "
        await asyncio.sleep(1.6)  # uvicorn closes the idle connection after 1 s
        assert orjson.loads((await post(http, url)).content)["client_port"] != first
    finally:
        await http.aclose()
        server.should_exit = True
        thread.join(10)


async def test_keepalive_expiry_zero_never_reuses(serve: Callable[..., RawServer]) -> None:
    server = serve(answering(echo))
    http = LeanHTTPClient(keepalive_expiry=0)
    try:
        for _ in range(3):
            await post(http, server.url)
    finally:
        await http.aclose()
    assert server.connections == 3


async def test_pool_limit_waits_in_turn_and_times_out(serve: Callable[..., RawServer]) -> None:
    release = threading.Event()

    def respond(conn: Conn, request: Recorded) -> None:
        release.wait(10)
        echo(conn, request)

    server = serve(answering(respond))
    http = LeanHTTPClient(max_connections=2)
    try:
        busy = [asyncio.create_task(post(http, server.url)) for _ in range(2)]
        assert await asyncio.to_thread(server.wait_requests, 2)
        with pytest.raises(httpx2.PoolTimeout):
            await post(http, server.url, timeout=0.2)
        waiting = [asyncio.create_task(post(http, server.url)) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert len(server.requests) == 2  # the three wait for a slot
        release.set()
        answers = await asyncio.gather(*busy, *waiting)
    finally:
        await http.aclose()
    assert all(a.status_code == 200 for a in answers)
    assert server.connections == 2  # the waiters reused the two connections


async def test_a_slow_upstream_holding_its_slots_keeps_no_caller_of_another_waiting(
    serve: Callable[..., RawServer],
) -> None:
    # one pool of slots for every upstream: a tenant's 100 slow calls to one made another's
    # call to a healthy one wait out its timeout, reported as that upstream's timeout
    release = threading.Event()

    def respond(conn: Conn, request: Recorded) -> None:
        release.wait(10)
        echo(conn, request)

    slow, fast = serve(answering(respond)), serve(answering(echo))
    http = LeanHTTPClient(max_connections=2)
    try:
        busy = [asyncio.create_task(post(http, slow.url)) for _ in range(2)]
        assert await asyncio.to_thread(slow.wait_requests, 2)
        answer = await post(http, fast.url, timeout=1.0)
        assert answer.status_code == 200
        with pytest.raises(httpx2.PoolTimeout, match="to this upstream"):
            await post(http, slow.url, timeout=0.2)
        release.set()
        assert all(a.status_code == 200 for a in await asyncio.gather(*busy))
    finally:
        release.set()
        await http.aclose()


async def test_connections_beyond_the_limit_are_evicted_across_origins(
    serve: Callable[..., RawServer],
) -> None:
    a, b = serve(answering(echo)), serve(answering(echo))
    http = LeanHTTPClient(max_connections=1)
    try:
        await post(http, a.url)
        await post(http, b.url)  # a's idle connection is closed to stay within the limit
        assert a.conns[0].client_gone.wait(5)
        await post(http, a.url)
    finally:
        await http.aclose()
    assert a.connections == 2 and b.connections == 1


async def test_cancelled_request_frees_its_slot_and_connection(
    serve: Callable[..., RawServer],
) -> None:
    def respond(conn: Conn, request: Recorded) -> None:
        if request.target != "/hang":
            echo(conn, request)
        # /hang: never answered

    server = serve(answering(respond))
    http = LeanHTTPClient(max_connections=1)
    try:
        task = asyncio.create_task(post(http, f"{server.url}/hang"))
        assert await asyncio.to_thread(server.wait_requests, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        answer = await post(http, server.url, timeout=5)  # the only slot is free again
    finally:
        await http.aclose()
    assert orjson.loads(answer.content)["connection"] == 2  # the hung one was dropped


async def test_aclose_closes_idle_connections(serve: Callable[..., RawServer]) -> None:
    server = serve(answering(echo))
    http = LeanHTTPClient()
    await post(http, server.url)
    await http.aclose()
    assert server.conns[0].client_gone.wait(5)
    await post(http, server.url)  # usable again afterwards, on a new connection
    await http.aclose()
    assert server.connections == 2


def test_one_client_across_event_loops(serve: Callable[..., RawServer]) -> None:
    server = serve(answering(echo))
    http = LeanHTTPClient()
    for _ in range(2):  # a pool belongs to its loop; asyncio.run twice works
        answer = asyncio.run(post(http, server.url))
        assert answer.status_code == 200
    asyncio.run(http.aclose())


# -- timeouts and connection errors ----------------------------------------------------------


async def test_read_timeout_is_per_wait_not_total(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    def respond(conn: Conn, request: Recorded) -> None:
        if request.target == "/silent":
            time.sleep(3)
            return
        conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n")
        gap = 1.5 if request.target == "/slower" else 0.15
        for i in range(8):  # 8 bytes, 0.15 s apart: longer in total than the timeout
            time.sleep(gap)
            conn.send(b"%d" % i)

    server = serve(answering(respond))
    slow = await post(client, f"{server.url}/slow", timeout=1.0)
    assert slow.content == b"01234567"
    with pytest.raises(httpx2.ReadTimeout):
        await post(client, f"{server.url}/silent", timeout=0.3)
    # (its head comes at once: 0.5 s of patience for it on a loaded machine; its bytes 1.5 s
    # apart)
    streamed = await post(client, f"{server.url}/slower", timeout=0.5, stream=True)
    with pytest.raises(httpx2.ReadTimeout):  # a stream times each of its reads
        async for _ in streamed.aiter_bytes():
            pass


async def test_write_timeout_when_the_server_does_not_read(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    stop = threading.Event()
    server = serve(lambda conn: stop.wait(20))  # accepts, never reads
    try:
        with pytest.raises(httpx2.WriteTimeout):
            await post(client, server.url, b"x" * (64 * 1024 * 1024), timeout=0.5)
    finally:
        stop.set()


async def test_connect_errors(client: LeanHTTPClient) -> None:
    with pytest.raises(httpx2.ConnectError):
        await post(client, f"http://127.0.0.1:{free_port()}/")
    with unanswered_port() as dead, pytest.raises(httpx2.ConnectTimeout):
        await post(client, f"http://127.0.0.1:{dead}/", timeout=0.5)


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port whose SYNs go unanswered (its listener's accept queue is full)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_addresses_are_raced(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch, loop_name: str
) -> None:
    """A host whose first address never answers is reached on its second (happy eyeballs)."""
    import deja._lean_http as lean

    pytest.importorskip("aiohappyeyeballs")
    factory = asyncio.new_event_loop
    if loop_name == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    server = serve(answering(echo))
    with unanswered_port() as dead:
        addresses = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", dead)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", server.port)),
        ]

        async def resolve(loop: Any, host: str, port: int) -> list[tuple[Any, ...]]:
            return addresses

        monkeypatch.setattr(lean, "_resolve", resolve)

        async def main() -> int:
            http = LeanHTTPClient()
            try:
                answer = await post(http, f"http://two-addresses.test:{server.port}/", timeout=5)
                return int(orjson.loads(answer.content)["length"])
            finally:
                await http.aclose()

        with asyncio.Runner(loop_factory=factory) as runner:
            assert runner.run(main()) == 2
    assert server.requests[0].headers["host"] == f"two-addresses.test:{server.port}"


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_connecting_without_aiohappyeyeballs(
    serve: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch, loop_name: str
) -> None:
    factory = asyncio.new_event_loop
    if loop_name == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    monkeypatch.setitem(sys.modules, "aiohappyeyeballs", None)  # import fails
    server = serve(answering(echo))

    async def main() -> None:
        http = LeanHTTPClient()
        try:
            assert (await post(http, server.url)).status_code == 200
            with pytest.raises(httpx2.ConnectError):
                await post(http, f"http://127.0.0.1:{free_port()}/")
            with unanswered_port() as dead, pytest.raises(httpx2.ConnectTimeout):
                await post(http, f"http://127.0.0.1:{dead}/", timeout=0.3)
        finally:
            await http.aclose()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


# -- bodies and streams ----------------------------------------------------------------------


async def test_big_bodies_both_ways(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    big = bytes(range(256)) * (8 * 4096)  # 8 MiB

    def respond(conn: Conn, request: Recorded) -> None:
        if request.target == "/echo":
            echo(conn, request)
        elif request.target == "/chunked":
            parts = [big[i : i + 65536] for i in range(0, len(big), 65536)]
            conn.send(
                response(headers={"transfer-encoding": "chunked"}, length=False) + chunked(*parts)
            )
        else:
            conn.send(response(big))

    server = serve(answering(respond))
    sent = orjson.loads((await post(client, f"{server.url}/echo", big)).content)
    assert sent == {
        "method": "POST",
        "target": "/echo",
        "connection": 1,
        "sha256": hashlib.sha256(big).hexdigest(),
        "length": len(big),
    }
    assert (await post(client, f"{server.url}/length")).content == big
    assert (await post(client, f"{server.url}/chunked")).content == big
    # a slow reader: the connection pauses while the reader lags, and nothing is lost
    streamed = await post(client, f"{server.url}/chunked", stream=True)
    await asyncio.sleep(0.3)
    received = bytearray()
    async for data in streamed.aiter_bytes():
        received += data
        await asyncio.sleep(0)
    assert bytes(received) == big
    assert server.connections == 1


async def test_streaming_delivers_as_it_arrives(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    go_on = threading.Event()

    def respond(conn: Conn, request: Recorded) -> None:
        conn.send(response(headers={"transfer-encoding": "chunked"}, length=False))
        conn.send(b"6\r\nfirst \r\n")
        go_on.wait(10)  # the rest only once the client has the first part
        conn.send(b"6\r\nsecond\r\n0\r\n\r\n")

    server = serve(answering(respond))
    streamed = await post(client, server.url, stream=True)
    with pytest.raises(RuntimeError):
        _ = streamed.content  # not read yet
    parts = []
    async for data in streamed.aiter_bytes():
        parts.append(data)
        go_on.set()
    await streamed.aclose()
    assert parts == [b"first ", b"second"]
    go_on.clear()
    again = await post(client, server.url, stream=True)
    go_on.set()
    assert await again.aread() == b"first second" == again.content
    assert server.connections == 1  # a stream read to its end gives the connection back


async def test_closing_a_stream_early_drops_its_connection(
    serve: Callable[..., RawServer],
) -> None:
    def respond(conn: Conn, request: Recorded) -> None:
        if request.target == "/endless":
            conn.send(response(headers={"transfer-encoding": "chunked"}, length=False))
            conn.send(b"5\r\nhello\r\n")
            conn.at_eof()  # until the client hangs up
        else:
            echo(conn, request)

    server = serve(answering(respond))
    http = LeanHTTPClient(max_connections=1)
    try:
        streamed = await post(http, f"{server.url}/endless", stream=True)
        async for data in streamed.aiter_bytes():
            assert data == b"hello"
            break
        await streamed.aclose()
        answer = await post(http, server.url, timeout=5)  # its slot is free
    finally:
        await http.aclose()
    assert orjson.loads(answer.content)["connection"] == 2


async def test_closing_a_stream_while_another_task_reads_it(
    serve: Callable[..., RawServer], client: LeanHTTPClient
) -> None:
    def respond(conn: Conn, request: Recorded) -> None:
        conn.send(response(headers={"transfer-encoding": "chunked"}, length=False))
        conn.at_eof()  # no body until the client hangs up

    server = serve(answering(respond))
    streamed = await post(client, server.url, stream=True)

    async def read_all() -> bytes:
        return b"".join([data async for data in streamed.aiter_bytes()])

    reader = asyncio.create_task(read_all())
    await asyncio.sleep(0.05)  # the reader now waits for bytes
    await streamed.aclose()
    with pytest.raises(httpx2.ReadError, match="closed"):
        await reader
    assert server.conns[0].client_gone.wait(5)  # its connection was closed


async def test_sse_from_the_simulated_openai_server(client: LeanHTTPClient) -> None:
    with FakeOpenAIServer() as upstream:
        body = orjson.dumps(
            {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        )
        streamed = await post(client, f"{upstream.base_url}/chat/completions", body, stream=True)
        assert streamed.headers["content-type"].startswith("text/event-stream")
        text = b"".join([chunk async for chunk in streamed.aiter_bytes()]).decode()
        await streamed.aclose()
        assert text.rstrip().endswith("data: [DONE]")
        plain = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
        answer = await post(client, f"{upstream.base_url}/chat/completions", plain)
        assert orjson.loads(answer.content)["object"] == "chat.completion"
        assert {r.connection for r in upstream.requests} == {1}


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deja test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https(serve: Callable[..., RawServer], certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    server = serve(answering(echo), tls=server_context)
    trusting = LeanHTTPClient(ssl_context=ssl.create_default_context(cafile=str(cert)))
    default = LeanHTTPClient()  # httpx2's trust store: this certificate is unknown
    try:
        for _ in range(2):
            answer = await post(trusting, f"{server.url}/secure", b"over tls")
            assert orjson.loads(answer.content)["length"] == 8
        for name in ("localhost", "127.0.0.1"):
            await post(trusting, f"https://{name}:{server.port}/")
        with pytest.raises(httpx2.ConnectError):
            await post(default, f"{server.url}/")
    finally:
        await trusting.aclose()
        await default.aclose()
    assert [r.connection for r in server.requests[:2]] == [1, 1]


# -- under uvloop (the proxy's event loop) -----------------------------------------------------


def test_under_uvloop(serve: Callable[..., RawServer]) -> None:
    uvloop = pytest.importorskip("uvloop")
    close_now, closed = threading.Event(), threading.Event()

    def respond(conn: Conn, request: Recorded) -> None:
        if request.target == "/stream":
            conn.send(response(headers={"transfer-encoding": "chunked"}, length=False))
            conn.send_in_pieces(chunked(b"one ", b"two"), 3)
            return
        if request.target == "/hang":
            return  # never answered
        echo(conn, request)
        if request.target == "/then-close":
            close_now.wait(10)
            conn.close()
            closed.set()

    server = serve(answering(respond))

    async def main() -> list[Any]:
        http = LeanHTTPClient()
        try:
            first = orjson.loads((await post(http, f"{server.url}/then-close")).content)
            close_now.set()
            assert closed.wait(10)
            time.sleep(0.05)  # noqa: ASYNC251 (as above: the loop must not see the FIN)
            second = orjson.loads((await post(http, server.url)).content)
            streamed = await post(http, f"{server.url}/stream", stream=True)
            text = await streamed.aread()
            with pytest.raises(httpx2.ReadTimeout):
                await post(http, f"{server.url}/hang", timeout=0.2)
            return [first["connection"], second["connection"], text]
        finally:
            await http.aclose()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) == [1, 2, b"one two"]


# -- as deja's transport -----------------------------------------------------------------------


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_proxy_environment")
def test_the_default_transport_and_the_proxy_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(async_http_client(max_connections=5, timeout=10), LeanHTTPClient)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    fallback = async_http_client(max_connections=5, timeout=10)
    assert isinstance(fallback, httpx2.AsyncClient)  # it speaks to proxies; this one does not
    asyncio.run(fallback.aclose())


@pytest.mark.usefixtures("no_proxy_environment")
async def test_async_client_errors_through_the_lean_transport() -> None:
    with FakeOpenAIServer() as upstream:
        client = deja.AsyncClient(api_base=upstream.base_url, api_key="sk", max_retries=0)
        messages = [{"role": "user", "content": "hello"}]
        try:
            answer = await client.acompletion(model="gpt-4o", messages=messages)
            assert answer.choices[0].message.content
            assert isinstance(client._http, LeanHTTPClient)
            upstream.delay_next(1.0)
            with pytest.raises(deja.UpstreamTimeoutError):
                await client.acompletion(model="gpt-4o", messages=messages, timeout=0.2)
            upstream.drop_next()
            with pytest.raises(deja.UpstreamConnectionError):
                await client.acompletion(
                    model="gpt-4o", messages=[{"role": "user", "content": "b"}]
                )
            upstream.fail_next(503)
            with pytest.raises(deja.ServerError):
                await client.acompletion(
                    model="gpt-4o", messages=[{"role": "user", "content": "c"}]
                )
            again = await client.acompletion(
                model="gpt-4o", messages=[{"role": "user", "content": "d"}]
            )
            assert again.choices[0].message.content
        finally:
            await client.aclose()


def test_a_client_used_by_one_asyncio_run_after_another_keeps_no_dead_loops() -> None:
    """Each asyncio.run has its own loop and pool; the pools of ended loops (and their
    sockets) are let go, not kept for ever."""
    http = LeanHTTPClient()
    plain = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    with FakeOpenAIServer() as upstream:
        for _ in range(20):
            answer = asyncio.run(post(http, f"{upstream.base_url}/chat/completions", plain))
            assert answer.status_code == 200
        assert len(http._pools) <= 1
        assert len({r.connection for r in upstream.requests}) == 20  # a connection per loop
