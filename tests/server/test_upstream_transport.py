"""The proxy's upstream calls: one keep-alive connection reused across misses and streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx2
import orjson
import pytest

from deja._lean_http import LeanHTTPClient
from deja.server.app import ProxyApp
from deja.testing import FakeOpenAIServer
from tests.server.conftest import proxy_config

CHAT = "/v1/chat/completions"
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def apps(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[ProxyApp]]:
    """The proxies a test builds, closed (upstream connections too) when it ends."""
    built: list[ProxyApp] = []
    original = ProxyApp.__init__

    def keep(self: ProxyApp, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        built.append(self)

    monkeypatch.setattr(ProxyApp, "__init__", keep)
    yield built
    for app in built:
        await app.aclose()


async def test_misses_and_streams_share_one_upstream_connection(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    apps: list[ProxyApp],
) -> None:
    async with make_proxy(proxy_config(upstream)) as proxy:
        for i in range(4):
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"q{i}"}]}
            answer = await proxy.post(CHAT, json=body)
            assert answer.status_code == 200 and answer.headers["x-deja-cache"] == "miss"
        streamed = await proxy.post(
            CHAT,
            json={
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": "a stream"}],
            },
        )
        assert streamed.status_code == 200 and streamed.text.rstrip().endswith("[DONE]")
        embedded = await proxy.post(
            "/v1/embeddings", json={"model": "text-embedding-3-small", "input": ["a", "b"]}
        )
        assert len(orjson.loads(embedded.content)["data"]) == 2
    recorded = upstream.requests
    assert len(recorded) == 6
    assert {r.connection for r in recorded} == {1}  # kept alive from first to last
    assert {r.headers["user-agent"].split("/")[0] for r in recorded} == {"deja-llm"}


async def test_the_proxy_uses_the_lean_client_unless_a_proxy_is_configured(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    apps: list[ProxyApp],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
    async with make_proxy(proxy_config(upstream)) as proxy:
        assert (await proxy.post(CHAT, json=body)).status_code == 200
    # an https proxy for https URLs only: this http upstream is still reached directly
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    async with make_proxy(proxy_config(upstream)) as proxy:
        assert (
            await proxy.post(CHAT, json={**body, "cache": {"no-cache": True}})
        ).status_code == 200
    lean, fallback = (app.client._http for app in apps)
    assert isinstance(lean, LeanHTTPClient)
    assert isinstance(fallback, httpx2.AsyncClient)
