"""HTTP/1.0 clients (nginx's ``proxy_http_version`` by default) and streams: uvicorn sent
them ``transfer-encoding: chunked``, which RFC 9112 forbids (the client reads the chunk sizes
as body). A response of no length is now sent to them unframed, each event as it comes, and
ended by closing the connection (RFC 9112 6.3). Raw sockets against a real `deja serve`.

These tests also guard deja's reliance on uvicorn's internals (``RequestResponseCycle``'s
``chunked_encoding`` and ``expected_content_length``: see ``CloseDelimitedCycle`` in
:mod:`deja.server.run`): a uvicorn that changes them fails here."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import orjson
import pytest

from deja.testing import FakeOpenAIServer, Reply
from tests.server.test_e2e import serve, write_config

CHAT = "/v1/chat/completions"
WORDS = " ".join(f"w{i}" for i in range(12))
UVICORN_CHANGED = "uvicorn's RequestResponseCycle changed: see CloseDelimitedCycle in run.py"


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A `deja serve` (memory cache) on an upstream that streams an event every 0.25 s
    (a stream of about 4 s)."""
    tmp_path = tmp_path_factory.mktemp("http10")
    with FakeOpenAIServer(chunk_delay=0.25) as upstream:
        upstream.reply_with(lambda body: Reply(WORDS))
        config = write_config(tmp_path, upstream, "caching: {type: memory}")
        with serve(config, "--log-level", "warning") as (base, _process):
            host, port = base.removeprefix("http://").split(":")
            yield host, int(port)


def _send(address: tuple[str, int], version: bytes, body: dict[str, object]) -> socket.socket:
    data = orjson.dumps(body)
    sock = socket.create_connection(address)
    sock.settimeout(30)  # (generous: outcomes are asserted, not durations)
    sock.sendall(
        b"POST %s HTTP/%s\r\nhost: proxy\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
        % (CHAT.encode(), version, len(data), data)
    )
    return sock


def _head(sock: socket.socket) -> tuple[dict[bytes, bytes], bytes]:
    """The response's status line and fields (lower-case names), and what came after."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(1 << 16)
        assert chunk, received
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = {b":status": status}
    for line in lines:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return fields, rest


def _rest(sock: socket.socket) -> bytes:
    """What ``sock`` receives until the server closes it."""
    received = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(1 << 16):
            received += chunk
    return bytes(received)


def _content(events: bytes) -> str:
    """The answer an SSE body spells, checked to be nothing but ``data:`` events ending with
    ``[DONE]`` (a chunk size would be a line of its own)."""
    assert b"\r\n" not in events and events.startswith(b"data: "), (UVICORN_CHANGED, events)
    assert events.endswith(b"\n\ndata: [DONE]\n\n"), (UVICORN_CHANGED, events[-200:])
    parts = events.split(b"\n\n")[:-2]
    assert all(part.startswith(b"data: {") for part in parts), (UVICORN_CHANGED, events)
    chunks = [orjson.loads(part.removeprefix(b"data: ")) for part in parts]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def _chat(prompt: str, *, stream: bool) -> dict[str, object]:
    return {"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": prompt}]}


def test_an_http10_stream_is_sent_unframed_as_it_comes_and_ends_with_the_connection(
    address: tuple[str, int],
) -> None:
    with _send(address, b"1.0", _chat("live", stream=True)) as sock:
        fields, first = _head(sock)
        assert fields[b":status"] == b"HTTP/1.1 200 OK"
        assert b"transfer-encoding" not in fields, (UVICORN_CHANGED, fields)
        assert b"content-length" not in fields
        assert fields[b"connection"] == b"close"
        assert fields[b"x-deja-cache"] == b"miss"
        # the first event arrives while the upstream is still streaming (about 4 s): not
        # held until the stream's end
        while b"\n\n" not in first:
            chunk = sock.recv(1 << 16)
            assert chunk, first
            first += chunk
        assert first.startswith(b"data: {"), (UVICORN_CHANGED, first)
        assert b"[DONE]" not in first
        events = first + _rest(sock)  # (the server closes the connection at its end)
    assert _content(events) == WORDS

    # the answer cached, replayed to an HTTP/1.0 client: framed as it may read it too
    with _send(address, b"1.0", _chat("live", stream=True)) as sock:
        fields, first = _head(sock)
        assert fields[b"x-deja-cache"] == b"hit"
        assert b"transfer-encoding" not in fields, (UVICORN_CHANGED, fields)
        replayed = first + _rest(sock)
    if b"content-length" in fields:
        assert len(replayed) == int(fields[b"content-length"])
    assert _content(replayed) == WORDS


def test_http10_answers_of_a_known_length_and_http11_streams_are_unchanged(
    address: tuple[str, int],
) -> None:
    with _send(address, b"1.0", _chat("whole", stream=False)) as sock:
        fields, first = _head(sock)
        body = first + _rest(sock)
    assert fields[b":status"] == b"HTTP/1.1 200 OK"
    assert b"transfer-encoding" not in fields
    assert int(fields[b"content-length"]) == len(body)
    assert orjson.loads(body)["choices"][0]["message"]["content"] == WORDS

    with _send(address, b"1.1", _chat("chunked", stream=True)) as sock:
        fields, first = _head(sock)
        chunked = first + _rest(sock)
    assert fields[b"transfer-encoding"] == b"chunked"
    events, rest = b"", chunked  # (its chunks undone: the same events)
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        assert rest[size : size + 2] == b"\r\n"
        events, rest = events + rest[:size], rest[size + 2 :]
    assert rest == b"\r\n"
    assert _content(events) == WORDS
