"""The admin routes that key a request (``/cache/delete`` and ``/cache/explain`` with a
``request``) answer a failing key builder as the data routes do: the operator's code failed,
a JSON 500 naming it, not a 400 blaming the request nor an exception out of the app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from deja.testing import FakeOpenAIServer
from tests.server.conftest import MASTER, proxy_config

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Capital of Peru?"}]}
ADMIN = {"authorization": f"Bearer {MASTER}"}


def _hook_builder(upstream: FakeOpenAIServer) -> dict[str, Any]:
    return proxy_config(upstream, hooks=[{"path": "kb.py", "key_builder": "kb"}])


def _caching_builder(upstream: FakeOpenAIServer) -> dict[str, Any]:
    return proxy_config(upstream, caching={"type": "memory", "key_builder": "kb.kb"})


@pytest.mark.parametrize(
    ("config", "builder", "code"),
    [
        # a hook that raises: named, as every data route names it
        (_hook_builder, "raise RuntimeError('vault token hvs.SECRET123 rejected')", "hook_failed"),
        # caching.key_builder returning a digest deja refuses (a space in it)
        (_caching_builder, "return 'has space'", "key_builder_failed"),
    ],
    ids=["hook", "caching"],
)
async def test_admin_routes_answer_a_failing_key_builder_as_the_data_routes_do(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    config: Callable[[FakeOpenAIServer], dict[str, Any]],
    builder: str,
    code: str,
) -> None:
    (tmp_path / "kb.py").write_text(f"def kb(request, tenant=None):\n    {builder}\n")
    async with make_proxy(config(upstream)) as proxy:
        data = await proxy.post(CHAT, json=BODY)
        deleted = await proxy.post("/cache/delete", json={"request": BODY}, headers=ADMIN)
        explained = await proxy.post("/cache/explain", json={"request": BODY}, headers=ADMIN)
    assert data.status_code == 500 and data.json()["error"]["code"] == code
    # the operator's builder fails again on a retry (the SDKs retry a 500 unless told); a
    # hook may call a service that recovers
    assert data.headers.get("x-should-retry") == ("false" if code == "key_builder_failed" else None)
    for answer in (deleted, explained):
        assert answer.status_code == 500, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"] == data.json()["error"]
        assert "SECRET123" not in answer.text
    assert upstream.count(CHAT) == 0


async def test_admin_routes_still_call_a_bad_request_a_400(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """The request's own fault stays the caller's: a bad cache control is a 400."""
    body = {**BODY, "cache": {"ttl": "soon"}}
    async with make_proxy(proxy_config(upstream)) as proxy:
        deleted = await proxy.post("/cache/delete", json={"request": body}, headers=ADMIN)
        explained = await proxy.post("/cache/explain", json={"request": body}, headers=ADMIN)
    for answer in (deleted, explained):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["type"] == "invalid_request_error"


async def test_explain_answers_a_key_builder_failing_on_the_semantic_scope_as_its_failure(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    """The builder is also asked for the request without its final text (the scope of a
    lookup by meaning): one that fails only there serves requests (they skip the tier) and
    explain names it (it said 503 "the semantic tier failed")."""
    (tmp_path / "kb.py").write_text(
        "def kb(request, tenant=None):\n"
        "    return request.messages[-1]['content'].split()[0].lower()\n"
    )
    caching = {"type": "semantic", "params": {"embedding_model": "local"}, "key_builder": "kb.kb"}
    async with make_proxy(proxy_config(upstream, caching=caching)) as proxy:
        data = await proxy.post(CHAT, json=BODY)
        explained = await proxy.post("/cache/explain", json={"request": BODY}, headers=ADMIN)
    assert data.status_code == 200, data.text
    assert explained.status_code == 500, explained.text
    assert explained.json()["error"]["code"] == "key_builder_failed"
