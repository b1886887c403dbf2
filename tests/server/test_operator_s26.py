"""Operator-facing gaps of an audit (session 26): a cache store that cannot be reached
at start, hooks that never return, and pre-LLM hooks that make a valid request invalid."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

import deja
from deja.config import parse_config
from deja.server.app import ProxyApp
from deja.stores.memory import MemoryStore
from deja.testing import FakeOpenAIServer
from tests.server.conftest import MASTER, TEAM_A, proxy_config


def _closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start_and_stop(app: ProxyApp) -> list[str]:
    """Run ``app``'s ASGI lifespan (start, then stop); the types of the messages it sent."""
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    return sent


def _store_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "cannot be reached" in r.getMessage()]


# -- a store that cannot be reached at start -------------------------------------------


@pytest.mark.parametrize(
    "caching",
    [
        {"type": "redis", "url": "redis://:hunter2@127.0.0.1:{port}/0"},
        {
            "type": "s3",
            "s3_bucket_name": "answers",
            "s3_endpoint_url": "http://127.0.0.1:{port}",
            "s3_region_name": "us-east-1",
            "s3_aws_access_key_id": "AKIDEXAMPLE",
            "s3_aws_secret_access_key": "secret-example",
        },
        {"type": "tiered", "l2": {"type": "redis", "url": "redis://127.0.0.1:{port}/0"}},
    ],
    ids=["redis", "s3", "tiered"],
)
async def test_a_store_that_cannot_be_reached_is_said_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, caching: dict[str, Any]
) -> None:
    """Redis down, a dead S3 endpoint: the proxy started without a word (only
    /health/ready's 503, or the first requests' misses, told). It still starts (fail-open),
    with one ERROR line naming the store and why, and no password."""
    port = _closed_port()
    config = {"caching": _with_port(caching, port)}
    app = ProxyApp(parse_config(config, base_dir=tmp_path))
    with caplog.at_level("ERROR", logger="deja"):
        sent = await _start_and_stop(app)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    lines = _store_lines(caplog)
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    said = lines[0].getMessage()
    assert said.startswith(f"the cache store ({caching['type']}) cannot be reached (")
    assert str(port) in said and "uncached" in said
    assert "hunter2" not in said


def _with_port(block: dict[str, Any], port: int) -> dict[str, Any]:
    return {
        name: _with_port(value, port)
        if isinstance(value, dict)
        else value.format(port=port)
        if isinstance(value, str)
        else value
        for name, value in block.items()
    }


async def test_a_store_that_never_answers_holds_the_start_a_bounded_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store of the operator's with no timeout of its own: the probe gives up."""

    class Hung(MemoryStore):
        async def aget(self, key: str) -> bytes | None:
            await asyncio.Event().wait()
            return None

    monkeypatch.setattr("deja.server.app._STORE_PROBE_SECONDS", 0.01)
    settings = parse_config({"caching": {"type": "memory"}}, base_dir=tmp_path)
    app = ProxyApp(settings, cache=deja.AsyncCache(store=Hung()))
    with caplog.at_level("ERROR", logger="deja"):
        sent = await _start_and_stop(app)
    assert sent[0] == "lifespan.startup.complete"
    [line] = _store_lines(caplog)
    assert "(no answer within 0.01 s)" in line.getMessage()


async def test_a_store_that_answers_is_not_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = ProxyApp(parse_config({"caching": {"type": "memory"}}, base_dir=tmp_path))
    with caplog.at_level("ERROR", logger="deja"):
        sent = await _start_and_stop(app)
    assert sent[0] == "lifespan.startup.complete"
    assert _store_lines(caplog) == []


# -- hooks that never return -----------------------------------------------------------

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Capital of Peru?"}]}
HUNG = "import asyncio\n\nasync def {name}(*args):\n    await asyncio.Event().wait()\n"
# what the test waits at most for an answer, were a hung hook not stopped (the hooks are
# given 0.05 s: this bound only turns a hang into a failure)
_GUARD = 30.0


def _hooked(upstream: FakeOpenAIServer, tmp_path: Path, source: str, **hook: str) -> dict[str, Any]:
    """The test proxy's configuration with one hook file (``source``) and hook_timeout 0.05."""
    (tmp_path / "hooks.py").write_text(source)
    config = proxy_config(upstream, hooks=[{"path": "hooks.py", **hook}])
    config["general_settings"]["hook_timeout"] = 0.05
    return config


async def test_a_hung_pre_llm_hook_is_a_hook_that_failed(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An async pre-LLM hook that never returns held its caller for ever; past
    hook_timeout it is cancelled and answered as one that raised: a 500 hook_failed."""
    config = _hooked(upstream, tmp_path, HUNG.format(name="pre"), async_pre_llm_hook="pre")
    async with make_proxy(config) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            answer = await asyncio.wait_for(proxy.post(CHAT, json=BODY), _GUARD)
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "hook_failed"
    assert upstream.count(CHAT) == 0
    [line] = [r for r in caplog.records if r.getMessage().startswith("pre-LLM hook pre failed")]
    assert "general_settings.hook_timeout (0.05 s)" in (line.exc_text or "")


@pytest.mark.parametrize("stream", [False, True])
async def test_a_hung_post_cache_hook_serves_the_answer_unstored(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    stream: bool,
) -> None:
    """An async post-cache hook that never returns held the caller, every caller who
    joined the same call, and a stream's [DONE] for ever; past hook_timeout it is
    cancelled and taken for one that raised: the answer is served, not stored."""
    config = _hooked(upstream, tmp_path, HUNG.format(name="post"), async_post_cache_hook="post")
    body = {**BODY, "stream": True} if stream else BODY
    async with make_proxy(config) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            # two at once: the second joins the first's call
            both = asyncio.gather(proxy.post(CHAT, json=body), proxy.post(CHAT, json=body))
            answers = await asyncio.wait_for(both, _GUARD)
            again = await asyncio.wait_for(proxy.post(CHAT, json=body), _GUARD)
    assert [a.status_code for a in answers] == [200, 200]
    if stream:
        assert all(a.text.rstrip().endswith("data: [DONE]") for a in answers)
    else:
        assert all(a.json()["choices"][0]["message"]["content"] for a in answers)
    assert again.headers["x-deja-cache"] == "miss"  # not stored
    said = [r for r in caplog.records if r.getMessage().startswith("post-cache hook post failed")]
    assert said and "not stored" in said[0].getMessage()
    assert "general_settings.hook_timeout (0.05 s)" in (said[0].exc_text or "")


async def test_a_hooks_own_timeout_is_not_taken_for_hook_timeout(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = "async def pre(body):\n    raise TimeoutError('moderation API timed out')\n"
    config = _hooked(upstream, tmp_path, source, async_pre_llm_hook="pre")
    async with make_proxy(config) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 500
    [line] = [r for r in caplog.records if r.getMessage().startswith("pre-LLM hook pre failed")]
    assert "moderation API timed out" in (line.exc_text or "")
    assert "hook_timeout" not in (line.exc_text or "")


async def test_a_slow_sync_hook_cannot_be_stopped_and_is_said(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sync hook runs on the event loop to its end (no timeout can fire meanwhile): its
    result stands, and that it ran past hook_timeout is said, once then counted."""
    source = (
        "import time\n\n"
        "def pre(body):\n"
        "    time.sleep(0.06)\n"  # (at least that long: past the 0.05 s limit)
        "    body['temperature'] = 0.25\n"
        "    return body\n"
    )
    config = _hooked(upstream, tmp_path, source, async_pre_llm_hook="pre")
    async with make_proxy(config) as proxy:
        with caplog.at_level("WARNING", logger="deja"):
            answers = [await proxy.post(CHAT, json={**BODY, "seed": i}) for i in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert upstream.requests[-1].body["temperature"] == 0.25  # its result stands
    said = [r.getMessage() for r in caplog.records if "is not async" in r.getMessage()]
    assert len(said) == 1  # once, then counted
    assert said[0].startswith("pre-LLM hook pre is not async and ran ")
    assert "general_settings.hook_timeout (0.05 s)" in said[0]


def test_hook_timeout_is_a_positive_number_of_seconds(tmp_path: Path) -> None:
    assert parse_config({}, base_dir=tmp_path).general.hook_timeout == 30.0
    settings = parse_config({"general_settings": {"hook_timeout": 2.5}}, base_dir=tmp_path)
    assert settings.general.hook_timeout == 2.5
    for bad in (0, -1, "soon"):
        with pytest.raises(deja.ConfigError) as raised:
            parse_config({"general_settings": {"hook_timeout": bad}}, base_dir=tmp_path)
        assert raised.value.path == "general_settings.hook_timeout"


# -- a pre-LLM hook that makes a valid request invalid ---------------------------------

_BROKEN_BY = "made a valid request invalid"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ("body.pop('model')", "'model' is required and must be a string"),
        ("body['model'] = 7", "'model' is required and must be a string"),
        ("body['messages'] = 'secret prompt text'", "messages must be a list of message objects"),
        ("body['messages'] = []", "messages must hold at least one message"),
        ("body['messages'] = [{'content': 'x'}]", "messages[0].role must be a non-empty string"),
        ("body['temperature'] = 'secret prompt text'", "temperature must be a number"),
    ],
)
async def test_a_hook_that_breaks_a_valid_request_is_the_proxys_fault(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    change: str,
    rule: str,
    stream: bool,
) -> None:
    """The caller got a 400 blaming its request (which was fine: it cannot fix it), and
    nothing was logged. Now: a 500 hook_failed, and the log says which hook, and what rule
    its body broke (not the value: it may be a prompt), once, then counted."""
    source = f"def pre(body):\n    {change}\n    return body\n"
    config = _hooked(upstream, tmp_path, source, async_pre_llm_hook="pre")
    body = {**BODY, "stream": True} if stream else BODY
    async with make_proxy(config) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            answers = [await proxy.post(CHAT, json=body) for _ in range(2)]
    for answer in answers:
        assert answer.status_code == 500
        error = answer.json()["error"]
        assert error["code"] == "hook_failed" and "pre-LLM hook pre" in error["message"]
    assert upstream.count(CHAT) == 0
    said = [r.getMessage() for r in caplog.records if _BROKEN_BY in r.getMessage()]
    assert said == [f"pre-LLM hook pre {_BROKEN_BY}: {rule} (its request is answered 500)"]
    assert "secret" not in caplog.text


async def test_a_callers_own_invalid_request_is_still_its_400(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The hooks did not break it: the caller's body was refused already."""
    source = "def pre(body):\n    body['user'] = 'tagged'\n    return body\n"
    config = _hooked(upstream, tmp_path, source, async_pre_llm_hook="pre")
    async with make_proxy(config) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            bad = await proxy.post(CHAT, json={**BODY, "temperature": "hot"})
            good = await proxy.post(CHAT, json=BODY)
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "temperature"
    assert good.status_code == 200
    assert upstream.requests[-1].body["user"] == "tagged"
    assert not [r for r in caplog.records if _BROKEN_BY in r.getMessage()]


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ("body.pop('input')", "'input' is required"),
        ("body['input'] = []", "input must be a string, a list of strings"),
        ("body['dimensions'] = 0", "dimensions must be an integer >= 1"),
    ],
)
async def test_a_hook_that_breaks_a_valid_embeddings_request_is_the_proxys_fault(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    change: str,
    rule: str,
) -> None:
    """An input the hook took out was a KeyError, a bare 500 naming no hook; the others
    were the caller's 400."""
    source = f"def pre(body):\n    {change}\n    return body\n"
    config = _hooked(upstream, tmp_path, source, async_pre_llm_hook="pre")
    body = {"model": "text-embedding-3-small", "input": "Capital of Peru?"}
    async with make_proxy(config) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            answer = await proxy.post("/v1/embeddings", json=body)
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "hook_failed"
    [said] = [r.getMessage() for r in caplog.records if _BROKEN_BY in r.getMessage()]
    assert said.startswith(f"pre-LLM hook pre {_BROKEN_BY}: {rule}")


async def test_hooks_that_declare_tenant_are_given_the_callers(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
) -> None:
    """The seed guide's post-cache hook tags an entry with its tenant for later eviction; a
    hook got the body and the answer only, and could not tell whose request it was. A hook
    that declares ``tenant`` (or ``**kwargs``) is given the caller's; one that does not is
    called as before."""
    source = (
        "def pre(body, tenant):\n"
        "    body['user'] = f'seen-by-{tenant}'\n"
        "    return body\n"
        "async def post(response, request, **_):\n"
        "    return {'tags': [f\"tenant:{_['tenant']}\"]}\n"
        "def plain(response, request):\n"
        "    return {'tags': ['plain']}\n"
    )
    (tmp_path / "hooks.py").write_text(source)
    hooks = [
        {"path": "hooks.py", "async_pre_llm_hook": "pre", "async_post_cache_hook": "post"},
        {"path": "hooks.py", "async_post_cache_hook": "plain"},
    ]
    config = proxy_config(upstream, hooks=hooks)
    team_a, master = {"authorization": f"Bearer {TEAM_A}"}, {"authorization": f"Bearer {MASTER}"}
    async with make_proxy(config, key=None) as proxy:  # (one app: one store)
        answer = await proxy.post(CHAT, json=BODY, headers=team_a)
        assert answer.status_code == 200, answer.text
        assert upstream.requests[-1].body["user"] == "seen-by-team-a"
        for tag, tenant, deleted in (
            ("tenant:team-b", "team-b", 0),
            ("tenant:team-a", "team-a", 1),
            ("plain", "team-a", 0),  # (gone with the entry: both tags were its own)
        ):
            done = await proxy.post(
                "/cache/invalidate", json={"tag": tag, "tenant": tenant}, headers=master
            )
            assert done.status_code == 200, done.text
            assert done.json() == {"deleted": deleted}, tag
        again = await proxy.post(CHAT, json=BODY, headers=team_a)
        assert again.headers["x-deja-cache"] == "miss"


async def test_two_hook_files_functions_of_one_name_are_called_each_its_own_way(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
) -> None:
    """LiteLLM's function name in two files, one declaring ``tenant``: both were given it
    (by the name), and the other failed on every request, so nothing was stored."""
    (tmp_path / "team_hooks.py").write_text(
        "def async_post_cache_hook(response, request, tenant=None):\n"
        "    return {'tags': [f'tenant:{tenant}']}\n"
    )
    (tmp_path / "audit_hooks.py").write_text(
        "def async_post_cache_hook(response, request):\n    return None\n"
    )
    name = "async_post_cache_hook"
    hooks = [{"path": "team_hooks.py", name: name}, {"path": "audit_hooks.py", name: name}]
    async with make_proxy(proxy_config(upstream, hooks=hooks)) as proxy:
        first = await proxy.post(CHAT, json=BODY)
        again = await proxy.post(CHAT, json=BODY)
    assert first.status_code == again.status_code == 200
    assert again.headers["x-deja-cache"] == "hit"
