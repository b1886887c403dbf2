"""Upstream failures the proxy met badly (audit 20, routing): a Retry-After that says
nothing usable, a 200 that is no answer, LiteLLM's per-call settings in a body, and a
sub-second wait told to the caller as 0."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest

from deja._upstream import asked_delay
from deja.testing import FakeOpenAIServer
from tests.server.conftest import proxy_config, two_deployments

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Capital of Peru?"}]}


@pytest.fixture
def second() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.mark.parametrize("value", ["soon", "inf", "1e400", "nan", "Wed, 99 Foo 2026"])
def test_a_retry_after_that_says_nothing_usable_is_no_wait(value: str) -> None:
    assert asked_delay({"retry-after": value}) is None
    assert asked_delay({"retry-after-ms": value, "retry-after": "2"}) == 2.0


@pytest.mark.parametrize("value", ["soon", "inf"])
async def test_a_429_with_a_garbled_retry_after_fails_over(
    upstream: FakeOpenAIServer,
    second: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    value: str,
) -> None:
    """It was a 500 "internal error: ValueError" (inf: an OverflowError out of the app),
    and the healthy deployment was never tried."""
    upstream.fail_next(429, headers={"retry-after": value}, times=5)
    async with make_proxy(two_deployments(upstream.base_url, second)) as proxy:
        answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 200, answer.text
    assert second.count("/v1/chat/completions") == 1


class _Html(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b"<html><body>Gateway login</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


async def test_a_200_that_is_no_answer_fails_over(
    second: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """A 502 to the caller while the other deployment of the name went untried."""
    html = ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    with html:
        import threading

        threading.Thread(target=html.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{html.server_address[1]}/v1"
        async with make_proxy(two_deployments(base, second)) as proxy:
            answers = [await proxy.post(CHAT, json={**BODY, "seed": n}) for n in range(3)]
        html.shutdown()
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert second.count("/v1/chat/completions") == 3


async def test_litellm_s_per_call_settings_are_not_sent_upstream(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """OpenAI refuses unknown fields: every miss carrying one was a 400."""
    settings = {"num_retries": 2, "max_retries": 1, "request_timeout": 30, "timeout": 30}
    async with make_proxy(proxy_config(upstream)) as proxy:
        answer = await proxy.post(CHAT, json={**BODY, **settings})
        again = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 200
    assert not set(settings) & set(upstream.requests[-1].body)
    assert again.headers["x-deja-cache"] == "hit"  # (never keyed either)


def test_the_client_sends_no_per_call_settings_upstream(upstream: FakeOpenAIServer) -> None:
    import deja

    client = deja.Client(api_base=upstream.base_url, api_key="k")
    client.completion(model="gpt-4o", messages=BODY["messages"], num_retries=2)
    client.completion(model="gpt-4o", messages=BODY["messages"], extra_body={"request_timeout": 5})
    for request in upstream.requests:
        assert not {"num_retries", "request_timeout"} & set(request.body)


async def test_a_sub_second_wait_is_told_as_a_whole_second(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """retry-after-ms: 400 reached the caller as retry-after: 0 (SDKs retried at once)."""
    upstream.fail_next(429, headers={"retry-after-ms": "400"}, times=20)
    async with make_proxy(proxy_config(upstream)) as proxy:
        answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "1"


async def test_a_503_s_retry_after_reaches_the_caller(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """A 429's was told; a 503's was dropped (and not waited for between retries)."""
    upstream.fail_next(503, headers={"retry-after": "7"}, times=5)
    async with make_proxy(proxy_config(upstream)) as proxy:
        answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "7"


ERROR_200 = {"error": {"message": "upstream overloaded", "type": "server_error", "code": None}}


async def test_a_200_carrying_an_error_is_that_error_and_fails_over(
    upstream: FakeOpenAIServer,
    second: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    """It was served as a 200 answer with no choices (and so to every later caller)."""
    upstream.fail_next(200, body=ERROR_200, times=5)
    async with make_proxy(two_deployments(upstream.base_url, second)) as proxy:
        answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 200 and answer.json()["choices"]
    assert second.count("/v1/chat/completions") == 1


def test_the_client_raises_the_error_a_200_carries(upstream: FakeOpenAIServer) -> None:
    import deja

    upstream.fail_next(200, body=ERROR_200)
    client = deja.Client(cache=deja.Cache(), api_base=upstream.base_url, api_key="k", max_retries=0)
    with pytest.raises(deja.ServerError, match="upstream overloaded"):
        client.completion(model="gpt-4o", messages=BODY["messages"])
    answer = client.completion(model="gpt-4o", messages=BODY["messages"])
    assert answer.cache.status == "miss"  # nothing was stored


@pytest.mark.parametrize("delay", ["infs", "1e999s", "nans"])
def test_a_retry_info_body_that_says_no_usable_wait_is_none(delay: str) -> None:
    """Google's RetryInfo "1e999s" was a wait of infinity: the proxy's answer an empty 500."""
    body = {
        "error": {
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]
        }
    }
    assert asked_delay({}, body) is None


async def test_a_429_with_an_infinite_retry_after_on_the_last_deployment_is_a_429(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """(With two deployments the request failed over either way: the crash was the last
    deployment's error, an OverflowError out of the app.)"""
    upstream.fail_next(429, headers={"retry-after": "inf"}, times=5)
    async with make_proxy(proxy_config(upstream)) as proxy:
        answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 429 and "retry-after" not in answer.headers


async def test_a_deployment_failing_in_a_row_is_tried_after_the_others_for_a_while(
    upstream: FakeOpenAIServer,
    second: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    """A failing first deployment was tried by every request (a hung one cost each its
    full timeout) before the next answered: LiteLLM's router cools it down."""
    upstream.fail_next(503, times=100)
    config = two_deployments(upstream.base_url, second)
    config["router_settings"] = {"allowed_fails": 2, "cooldown_time": 60}
    async with make_proxy(config) as proxy:
        for n in range(5):
            answer = await proxy.post(CHAT, json={**BODY, "seed": n})
            assert answer.status_code == 200
    assert upstream.count("/v1/chat/completions") == 2  # then cooling: not tried first
    assert second.count("/v1/chat/completions") == 5


async def test_failures_not_in_a_row_never_cool_a_deployment_down(
    upstream: FakeOpenAIServer,
    second: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    """An answer between two failures starts the count again: two failures, not in a
    row, of a deployment allowed two leave it tried first."""
    config = two_deployments(upstream.base_url, second)
    config["router_settings"] = {"allowed_fails": 2, "cooldown_time": 60}
    async with make_proxy(config) as proxy:
        for n in range(4):
            if n in (0, 2):
                upstream.fail_next(503)
            answer = await proxy.post(CHAT, json={**BODY, "seed": n})
            assert answer.status_code == 200
    assert upstream.count("/v1/chat/completions") == 4  # tried first every time


async def test_deployments_all_cooling_down_are_all_tried(
    upstream: FakeOpenAIServer,
    second: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    upstream.fail_next(503, times=100)
    second.fail_next(503, times=2)
    config = two_deployments(upstream.base_url, second)
    config["router_settings"] = {"allowed_fails": 1, "cooldown_time": 60}
    async with make_proxy(config) as proxy:
        first = await proxy.post(CHAT, json={**BODY, "seed": 1})
        assert first.status_code == 503  # both failed: both cooling down now
        second_try = await proxy.post(CHAT, json={**BODY, "seed": 2})
        assert second_try.status_code == 503  # (second still failing)
        third = await proxy.post(CHAT, json={**BODY, "seed": 3})
    assert third.status_code == 200  # every one cooling: tried all the same


def test_router_settings_cooldown_is_read_and_the_rest_warned(tmp_path: Any) -> None:
    from deja.config import parse_config

    settings = parse_config(
        {"router_settings": {"allowed_fails": 5, "cooldown_time": 0.5, "routing_strategy": "x"}},
        base_dir=tmp_path,
        environ={},
    )
    assert (settings.proxy.allowed_fails, settings.proxy.cooldown_time) == (5, 0.5)
    assert any("router_settings (routing_strategy)" in w for w in settings.warnings)
    defaults = parse_config({}, base_dir=tmp_path, environ={}).proxy
    assert (defaults.allowed_fails, defaults.cooldown_time) == (3, 5.0)
