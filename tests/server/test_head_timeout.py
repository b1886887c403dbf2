"""Slowloris: a request's line and headers must arrive within
``general_settings.request_header_timeout``, from the connection or from the request's first
byte; a client that sends nothing, or a head a byte at a time, held its connection (and a
file descriptor of the worker) for ever. Driven over raw sockets against a real `deja serve`."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from deja.config import DEFAULT_REQUEST_HEADER_TIMEOUT, GeneralSettings, parse_config
from deja.errors import ConfigError
from deja.testing import FakeOpenAIServer, Reply
from tests.server.conftest import proxy_config
from tests.server.test_e2e import serve, write_config

HEALTH = b"GET /health HTTP/1.1\r\nhost: proxy\r\n\r\n"


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A `deja serve` giving heads 0.5 s (and uvicorn's 5 s between requests), on an
    upstream whose streams take about 3 s (an event every 0.25 s)."""
    tmp_path = tmp_path_factory.mktemp("head-timeout")
    with FakeOpenAIServer(chunk_delay=0.25) as upstream:
        upstream.reply_with(lambda body: Reply(" ".join(f"w{i}" for i in range(12))))
        config = write_config(tmp_path, upstream, "general_settings: {request_header_timeout: 0.5}")
        with serve(config, "--log-level", "warning") as (base, _process):
            host, port = base.removeprefix("http://").split(":")
            yield host, int(port)


def _received(sock: socket.socket, seconds: float = 30) -> bytes:
    """What ``sock`` receives until the server closes it (TimeoutError if it keeps it open
    longer than ``seconds``: generous, an outcome is asserted, not a duration)."""
    sock.settimeout(seconds)
    received = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(1 << 16):
            received += chunk
    return bytes(received)


def _one_response(sock: socket.socket) -> bytes:
    """One response of a known length from ``sock``, the connection left open."""
    sock.settimeout(30)
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(1 << 16)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(1 << 16)
    assert len(body) == length, received  # (nothing pipelined was sent)
    return head + b"\r\n\r\n" + body


def _assert_timed_out(answer: bytes) -> None:
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:300]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert orjson.loads(body) == {
        "error": {
            "message": "request line and headers not received within 0.5 s",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_timeout",
        }
    }


def test_a_connection_that_sends_nothing_is_closed(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as sock:
        _assert_timed_out(_received(sock))


def test_a_head_sent_a_byte_at_a_time_is_refused_before_it_ends(
    address: tuple[str, int],
) -> None:
    """The head would take about 20 s to arrive (and be answered 200 then): it is refused
    with a 408 and the connection closed, the head unfinished."""
    head = b"GET /health HTTP/1.1\r\nhost: proxy\r\nx-pad: " + b"a" * 400 + b"\r\n\r\n"
    sent = [0]
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # (the server closed the connection)
            for i in range(len(head)):
                if stop.wait(0.05):
                    return
                sock.sendall(head[i : i + 1])
                sent[0] = i + 1

    with socket.create_connection(address) as sock:
        sender = threading.Thread(target=trickle, args=(sock,), daemon=True)
        sender.start()
        try:
            answer = _received(sock)
        finally:
            stop.set()
            sender.join(10)
    _assert_timed_out(answer)
    assert 0 < sent[0] < len(head)


def test_a_keep_alive_connection_times_the_next_head_from_its_first_byte(
    address: tuple[str, int],
) -> None:
    """Between requests the connection is uvicorn's keep-alive's (5 s): a wait longer than
    the head timeout is not one. Once the next request's first bytes arrive, its head has
    0.5 s."""
    with socket.create_connection(address) as sock:
        sock.sendall(HEALTH)
        assert _one_response(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        time.sleep(1.5)  # idle, past the head timeout (and well within the keep-alive's)
        sock.sendall(HEALTH)
        assert _one_response(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        sock.sendall(HEALTH[:10])  # the next request begins, and stalls
        _assert_timed_out(_received(sock))


def test_empty_lines_between_requests_do_not_hold_the_connection(
    address: tuple[str, int],
) -> None:
    """The parser skips an empty line before a request line (RFC 9112 2.2), and uvicorn stops
    its keep-alive timer at any byte: a CRLF after a response held the connection for ever."""
    with socket.create_connection(address) as sock:
        sock.sendall(HEALTH)
        assert _one_response(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        sock.sendall(b"\r\n")
        _assert_timed_out(_received(sock))


def test_a_pipelined_head_that_stalls_does_not_cut_the_answer_under_way(
    address: tuple[str, int],
) -> None:
    """The next request's head stalls while a stream is answered on the connection: the
    stream is not cut (nor a 408 written into it); the connection is closed at its end."""
    body = orjson.dumps(
        {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    with socket.create_connection(address) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: proxy\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        sock.settimeout(30)
        first = sock.recv(1 << 16)
        assert first.startswith(b"HTTP/1.1 200 OK\r\n"), first
        sock.sendall(HEALTH[:10])  # a pipelined request begins, and stalls
        answer = first + _received(sock)
    assert b"HTTP/1.1 408" not in answer  # (a bare "408" can be in an id or a timestamp)
    assert answer.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), answer[-300:]


def test_request_header_timeout_setting(upstream: FakeOpenAIServer, tmp_path: Path) -> None:
    """30 s by default; as request_body_timeout, a positive number of seconds or an error."""

    def general(**settings: Any) -> GeneralSettings:
        config = proxy_config(upstream)
        config["general_settings"].update(settings)
        return parse_config(config, base_dir=tmp_path).general

    assert general().request_header_timeout == DEFAULT_REQUEST_HEADER_TIMEOUT == 30
    assert general(request_header_timeout=2.5).request_header_timeout == 2.5
    for bad in (0, -1, "soon", float("inf"), True):
        with pytest.raises(ConfigError) as info:
            general(request_header_timeout=bad)
        assert info.value.path == "general_settings.request_header_timeout", bad
        with pytest.raises(ConfigError):
            general(request_body_timeout=bad)  # (the same rules)
