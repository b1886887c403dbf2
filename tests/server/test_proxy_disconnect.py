"""A client that leaves a streamed answer: the proxy stops reading it (driven as ASGI, with
a receive channel that reports the disconnect, as uvicorn does, while send stays silent)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from deja.config import parse_config
from deja.server.app import ProxyApp
from deja.testing import FakeOpenAIServer, Reply
from tests.server.conftest import TEAM_A, proxy_config

WORDS = " ".join(f"w{i}" for i in range(60))
BODY = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "Tell a long story"}],
    "stream": True,
}


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """A POST to the chat route as one tenant."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [*headers, (b"authorization", f"Bearer {TEAM_A}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("proxy", 80),
    }


async def _call(app: ProxyApp, body: dict[str, Any], *, leave_after: int | None) -> list[bytes]:
    """POST ``body``; the client goes away after ``leave_after`` body messages (None: never).
    The proxy's ``send`` never raises, as uvicorn's does not once the client has gone."""
    scope = _scope([(b"content-type", b"application/json")])
    gone = asyncio.Event()
    received: list[bytes] = []
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": orjson.dumps(body), "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if gone.is_set():
            return  # dropped, silently
        if message["type"] == "http.response.body":
            received.append(message.get("body", b""))
            if leave_after is not None and len(received) >= leave_after:
                gone.set()
        elif message["type"] == "http.response.start":
            assert message["status"] == 200

    await app(scope, receive, send)
    return received


@pytest.fixture
def slow_upstream() -> Any:
    with FakeOpenAIServer(chunk_delay=0.05) as server:
        yield server


@pytest.mark.parametrize("caching", [True, False])
async def test_a_client_leaving_mid_stream_ends_the_upstream_read(
    slow_upstream: FakeOpenAIServer, tmp_path: Path, caching: bool
) -> None:
    config = proxy_config(slow_upstream)
    if not caching:
        del config["caching"]
    app = ProxyApp(parse_config(config, base_dir=tmp_path))
    slow_upstream.queue_reply(Reply(WORDS))
    slow_upstream.queue_reply(Reply(WORDS))
    started = time.monotonic()
    events = await _call(app, BODY, leave_after=2)
    left_after = time.monotonic() - started
    assert len(events) == 2
    # the whole answer takes 60 x 0.05 s = 3 s upstream; the proxy left long before
    assert left_after < 2.0, left_after
    if caching:
        # nothing was stored: the same request is a miss again, read to its end
        slow_upstream.chunk_delay = 0.0
        again = await _call(app, BODY, leave_after=None)
        text = b"".join(again)
        assert text.endswith(b"data: [DONE]\n\n") and b"w59" in text
        assert slow_upstream.count("/v1/chat/completions") == 2


async def test_a_body_that_never_arrives_gets_a_408(
    slow_upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    config = proxy_config(slow_upstream)
    config["general_settings"]["request_body_timeout"] = 0.2
    app = ProxyApp(parse_config(config, base_dir=tmp_path))
    scope = _scope([])
    stalled = asyncio.Event()  # a client that sent headers and a first byte, then nothing
    first = True
    answers: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"{", "more_body": True}
        await stalled.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        answers.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    assert answers[0]["status"] == 408
    assert b"request_timeout" in answers[1]["body"]
    assert slow_upstream.count("/v1/chat/completions") == 0
