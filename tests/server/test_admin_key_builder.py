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


@pytest.mark.parametrize(
    ("change", "body"),
    [
        ("body['messages'] = 'secret prompt text'", BODY),
        ("body['temperature'] = 'secret prompt text'", BODY),
        ("body.pop('input')", {"model": "text-embedding-3-small", "input": "Capital of Peru?"}),
        ("body['dimensions'] = 0", {"model": "text-embedding-3-small", "input": "Capital?"}),
    ],
)
async def test_admin_routes_blame_a_hook_that_breaks_a_valid_request_as_the_data_routes_do(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    change: str,
    body: dict[str, Any],
) -> None:
    """A pre-LLM hook that makes the caller's valid body invalid is the operator's fault:
    the data routes answer 500 hook_failed naming it; the admin routes, which run the same
    hooks on the request they key, answered a 400 blaming the caller (an input the hook
    took out: "'prompt' is required", the body keyed as a completion), with the value."""
    (tmp_path / "hooks.py").write_text(f"def pre(body):\n    {change}\n    return body\n")
    config = proxy_config(upstream, hooks=[{"path": "hooks.py", "async_pre_llm_hook": "pre"}])
    route = CHAT if "messages" in body else "/v1/embeddings"
    async with make_proxy(config) as proxy:
        data = await proxy.post(route, json=body)
        deleted = await proxy.post("/cache/delete", json={"request": body}, headers=ADMIN)
        explained = await proxy.post("/cache/explain", json={"request": body}, headers=ADMIN)
    assert data.status_code == 500 and data.json()["error"]["code"] == "hook_failed"
    for answer in (deleted, explained):
        assert answer.status_code == 500, answer.text
        assert answer.json()["error"] == data.json()["error"]
        assert "pre-LLM hook pre" in answer.json()["error"]["message"]
        assert "secret" not in answer.text


async def test_admin_routes_still_blame_the_caller_for_its_own_invalid_request(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    """With a hook that leaves the body valid, the caller's own mistake stays its 400."""
    (tmp_path / "hooks.py").write_text("def pre(body):\n    body['user'] = 'x'\n    return body\n")
    config = proxy_config(upstream, hooks=[{"path": "hooks.py", "async_pre_llm_hook": "pre"}])
    bad = {**BODY, "temperature": "hot"}
    async with make_proxy(config) as proxy:
        deleted = await proxy.post("/cache/delete", json={"request": bad}, headers=ADMIN)
        explained = await proxy.post("/cache/explain", json={"request": bad}, headers=ADMIN)
        good = await proxy.post("/cache/explain", json={"request": BODY}, headers=ADMIN)
    for answer in (deleted, explained):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == "temperature"
    assert good.status_code == 200 and good.json()["key"].startswith("deja:")
