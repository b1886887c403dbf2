"""A streamed request whose upstream answers 200 and then fails before its first chunk:
nothing was sent to the caller yet, so the proxy retries and fails over as for a plain call."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest

from deja.testing import FakeOpenAIServer
from tests.server.conftest import proxy_config

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Fail over?"}], "stream": True}


class _FailsFirst(BaseHTTPRequestHandler):
    """Answers every POST 200 as an event stream, then ``server.answer``: an error event
    of that ``type`` (``"stall"``: nothing, for longer than the proxy waits)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.server.calls += 1  # type: ignore[attr-defined]
        kind = self.server.answer  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        self.wfile.flush()
        if kind == "stall":
            time.sleep(1.5)
            return
        if kind.startswith("after_chunk:"):  # an answer under way, then the upstream's error
            kind, code = kind.split(":")[1:]
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-4o",
                "choices": [{"index": 0, "delta": {"content": "Half"}, "finish_reason": None}],
            }
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
            error = {"error": {"message": "slow down", "type": kind, "param": None, "code": code}}
            self.wfile.write(b"data: " + json.dumps(error).encode() + b"\n\n")
            return
        error = b'{"error": {"message": "no", "type": "%s", "param": null, "code": null}}'
        self.wfile.write(b"data: " + error % kind.encode() + b"\n\n")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def failing() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailsFirst)
    server.daemon_threads = True
    server.calls = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def two_deployments(failing: ThreadingHTTPServer, backup: FakeOpenAIServer) -> dict[str, Any]:
    config = proxy_config(backup)
    first = config["model_list"][0]["litellm_params"]
    config["model_list"][0]["litellm_params"] = {
        **first,
        "api_base": f"http://127.0.0.1:{failing.server_port}/v1",
        "order": 1,
        "max_retries": 1,
        "stream_timeout": 0.5,
    }
    config["model_list"].insert(
        1,
        {
            "model_name": "gpt-4o",
            "litellm_params": {"model": "openai/gpt-4o", "api_base": backup.base_url, "order": 2},
        },
    )
    return config


@pytest.mark.parametrize("answer", ["server_error", "stall"])
async def test_a_stream_failing_before_its_first_chunk_is_retried_then_failed_over(
    answer: str,
    failing: ThreadingHTTPServer,
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    failing.answer = answer  # type: ignore[attr-defined]
    async with make_proxy(two_deployments(failing, upstream)) as proxy:
        response = await proxy.post(CHAT, json=BODY)
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    assert failing.calls == 2 and upstream.count(CHAT) == 1  # type: ignore[attr-defined]


async def test_an_error_event_not_worth_a_retry_is_answered_as_is(
    failing: ThreadingHTTPServer,
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    failing.answer = "invalid_request_error"  # type: ignore[attr-defined]
    async with make_proxy(two_deployments(failing, upstream)) as proxy:
        response = await proxy.post(CHAT, json=BODY)
    assert response.status_code == 400 and response.json()["error"]["message"] == "no"
    assert failing.calls == 1 and upstream.count(CHAT) == 0  # type: ignore[attr-defined]


async def test_an_error_after_the_first_chunk_is_sent_in_band_with_the_upstreams_type_and_code(
    failing: ThreadingHTTPServer,
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    # too late to fail over or to answer a status: the event says what the upstream said,
    # so a client can tell a rate limit (retry later) from a server error
    failing.answer = "after_chunk:tokens:rate_limit_exceeded"  # type: ignore[attr-defined]
    async with make_proxy(two_deployments(failing, upstream)) as proxy:
        response = await proxy.post(CHAT, json=BODY)
    assert response.status_code == 200 and '"Half"' in response.text
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    error = json.loads(events[-1])["error"]
    assert (error["type"], error["code"], error["message"]) == (
        "tokens",
        "rate_limit_exceeded",
        "slow down",
    )
    assert "[DONE]" not in response.text and upstream.count(CHAT) == 0
