"""What the proxy's log says of failures that recur on every request (audit19/logs): an
upstream down (connection errors, timeouts, 5xx, 429, a refused key, a failover) is said
per deployment, once when it starts and then once per window with a count, and once when
the deployment answers again; a failing hook's traceback is logged once, then counted.
Before, each failed request logged its own line (or, for 5xx and 429, none at all)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from deja.config import parse_config
from deja.server.app import ProxyApp
from deja.testing import FakeClock, FakeOpenAIServer
from tests.server.conftest import MASTER, proxy_config

CHAT = "/v1/chat/completions"


def _app(config: dict[str, Any], tmp_path: Path, clock: FakeClock | None = None) -> ProxyApp:
    app = ProxyApp(parse_config(config, base_dir=tmp_path))
    if clock is not None:
        app._recurring.clock = clock
    return app


def _client(app: ProxyApp) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),
        base_url="http://proxy",
        headers={"authorization": f"Bearer {MASTER}"},
    )


def _config(upstream: FakeOpenAIServer, **params: Any) -> dict[str, Any]:
    config = proxy_config(upstream)
    config["model_list"][0]["litellm_params"].update(params)
    return config


async def _ask(client: httpx2.AsyncClient, n: int, tag: str = "q") -> list[int]:
    """``n`` distinct requests, 20 at a time; their statuses."""
    statuses: list[int] = []
    for start in range(0, n, 20):
        answers = await asyncio.gather(
            *(
                client.post(
                    CHAT,
                    json={
                        "model": "gpt-4o",
                        "messages": [{"role": "user", "content": f"{tag} {i}"}],
                    },
                )
                for i in range(start, min(n, start + 20))
            )
        )
        statuses += [a.status_code for a in answers]
    return statuses


def _wildcard(upstream: FakeOpenAIServer) -> dict[str, Any]:
    """A proxy whose one route is LiteLLM's ``openai/*`` wildcard, to ``upstream``."""
    config = proxy_config(upstream)
    config["model_list"] = [
        {
            "model_name": "openai/*",
            "litellm_params": {"model": "openai/*", "api_base": upstream.base_url},
        }
    ]
    return config


def _lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "deja.server"]


@pytest.mark.parametrize(
    ("fail", "status", "kind", "level"),
    [
        (lambda up: up.fail_next(500, times=10**6), 500, "500", logging.WARNING),
        (
            lambda up: up.fail_next(429, times=10**6, headers={"retry-after": "0"}),
            429,
            "429",
            logging.WARNING,
        ),
        (lambda up: up.drop_next(times=10**6), 502, "connection", logging.WARNING),
        (
            lambda up: up.fail_next(401, times=10**6),
            502,
            "(401: the upstream refused its credentials, fix its api_key)",
            logging.ERROR,
        ),
    ],
    ids=["500", "429", "dropped", "401"],
)
async def test_an_upstream_down_is_one_line_not_one_per_request(
    fail: Callable[[FakeOpenAIServer], None],
    status: int,
    kind: str,
    level: int,
    upstream: FakeOpenAIServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """200 requests to a failing deployment: one line, naming the model name, the
    deployment (model and api_base), the failure and what the caller was answered (was:
    200 lines for dropped connections and a refused key, none for 500 and 429)."""
    fail(upstream)
    caplog.set_level(logging.WARNING, logger="deja")
    async with _client(_app(_config(upstream), tmp_path)) as client:
        assert await _ask(client, 200) == [status] * 200
    lines = _lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    line = lines[0].getMessage()
    assert lines[0].levelno == level
    assert f"'openai/gpt-4o' of 'gpt-4o' failed at {upstream.base_url.rstrip('/')}" in line
    assert kind in line
    assert f"answered {status} to the caller" in line
    assert "sk-up" not in line


async def test_a_timeout_names_the_deployment_once(
    upstream: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.delay_next(1.0, times=40)
    caplog.set_level(logging.WARNING, logger="deja")
    async with _client(_app(_config(upstream, timeout=0.2), tmp_path)) as client:
        assert await _ask(client, 40) == [504] * 40
    lines = [r.getMessage() for r in _lines(caplog)]
    assert len(lines) == 1, lines
    assert "(timeout: no answer from the upstream within 0.2 s)" in lines[0]
    assert "answered 504 to the caller" in lines[0]


async def test_a_sustained_failure_is_counted_once_per_window_then_its_recovery_said(
    upstream: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(0.0)
    caplog.set_level(logging.WARNING, logger="deja")
    upstream.fail_next(503, times=10**6)
    async with _client(_app(_config(upstream), tmp_path, clock)) as client:
        await _ask(client, 50, "a")
        clock.advance(5)
        await _ask(client, 50, "b")
        assert len(_lines(caplog)) == 1  # all within the window
        clock.advance(6)
        await _ask(client, 1, "c")
        lines = [r.getMessage() for r in _lines(caplog)]
        assert len(lines) == 2, lines
        assert "(503: upstream answered 503" in lines[1]
        assert "(99 more since the last such line, 11 s ago)" in lines[1]
        upstream.reset()
        assert await _ask(client, 30, "d") == [200] * 30
    lines = [r.getMessage() for r in _lines(caplog)]
    assert len(lines) == 3, lines
    assert "'openai/gpt-4o' of 'gpt-4o'" in lines[2]
    assert "answers again (101 failed calls in the 11 s before)" in lines[2]


async def test_a_flapping_deployment_is_not_said_again_on_every_flap(
    upstream: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every other call failing (429s under a quota): two lines, not two per failure."""
    caplog.set_level(logging.WARNING, logger="deja")
    async with _client(_app(_config(upstream), tmp_path, FakeClock(0.0))) as client:
        for i in range(40):
            upstream.fail_next(429, headers={"retry-after": "0"})
            assert await _ask(client, 1, f"fail {i}") == [429]
            assert await _ask(client, 1, f"pass {i}") == [200]
    lines = [r.getMessage() for r in _lines(caplog)]
    assert len(lines) == 2, lines
    assert "(429: upstream answered 429" in lines[0] and "answers again" in lines[1]


async def test_failover_is_said_once_per_window_with_the_primary_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeOpenAIServer() as primary, FakeOpenAIServer() as backup:
        config = _config(primary, order=1)
        config["model_list"].insert(
            1,
            {
                "model_name": "gpt-4o",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": backup.base_url,
                    "order": 2,
                },
            },
        )
        primary.fail_next(500, times=10**6)
        caplog.set_level(logging.WARNING, logger="deja")
        async with _client(_app(config, tmp_path)) as client:
            assert await _ask(client, 200) == [200] * 200
        lines = [r.getMessage() for r in _lines(caplog)]
        assert len(lines) == 1, lines
        assert f"'openai/gpt-4o' of 'gpt-4o' failed at {primary.base_url.rstrip('/')}" in lines[0]
        assert "(500: upstream answered 500" in lines[0]
        assert lines[0].endswith("trying the next deployment")


async def test_a_callers_own_bad_request_is_not_logged(
    upstream: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.fail_next(400, times=20)
    caplog.set_level(logging.DEBUG, logger="deja.server")
    async with _client(_app(_config(upstream), tmp_path)) as client:
        assert await _ask(client, 20) == [400] * 20
    assert _lines(caplog) == []


HOOKS = """
async def pre(request):
    if "preboom" in str(request.get("messages")):
        raise RuntimeError("pre hook bug")
    return request


async def post(response, request):
    if "postboom" in str(request.get("messages")):
        raise ValueError("post hook bug")
    return None
"""


@pytest.mark.parametrize(
    ("content", "status", "stage"),
    [("preboom", 500, "pre-LLM hook pre failed"), ("postboom", 200, "post-cache hook post failed")],
)
async def test_a_hook_failing_50_times_logs_one_traceback_then_a_count(
    content: str,
    status: int,
    stage: str,
    upstream: FakeOpenAIServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "hooks.py").write_text(HOOKS)
    config = proxy_config(
        upstream,
        hooks=[{"path": "hooks.py", "async_pre_llm_hook": "pre", "async_post_cache_hook": "post"}],
    )
    clock = FakeClock(0.0)
    caplog.set_level(logging.WARNING, logger="deja")
    async with _client(_app(config, tmp_path, clock)) as client:
        for i in range(50):
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"{content} {i}"}]}
            answer = await client.post(CHAT, json=body)
            assert answer.status_code == status
            if status == 500:
                assert answer.json()["error"]["code"] == "hook_failed"
        for seconds in (6, 5):  # failing on: one line when the window is over
            clock.advance(seconds)
            body = {
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": f"{content} {seconds}"}],
            }
            assert (await client.post(CHAT, json=body)).status_code == status
    lines = _lines(caplog)
    assert [r.exc_info is not None for r in lines] == [True, False], [r.getMessage() for r in lines]
    assert lines[0].getMessage().startswith(stage)
    assert lines[1].getMessage().startswith(f"{stage} 51 more times (")
    assert "in the last 11 s" in lines[1].getMessage()


@pytest.mark.parametrize(
    ("fail_ops", "said"),
    [
        ({"get", "set"}, "and its reads fail too: nothing is served from it or stored"),
        ({"set"}, "what it holds is still served, new answers are not stored"),
    ],
    ids=["store down", "store full"],
)
def test_the_write_breaker_warning_says_whether_the_store_still_serves(
    fail_ops: set[str], said: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A store down fails reads and writes: its write-breaker warning said "answers are
    served from it" beside the lookups' "serving without the cache" (the cache's, logged
    by `deja serve` as by any library user)."""
    import deja
    from tests.helpers import FaultyStore, chat_request, chat_response

    store = FaultyStore()
    cache = deja.Cache(store=store, breaker_threshold=3, breaker_reset=60)
    store.fail_ops = fail_ops
    with caplog.at_level(logging.WARNING, logger="deja"):
        assert cache.fetch(chat_request("new"), chat_response).info.status == "miss"
        for i in range(2):  # (writes fail as often as reads: these trip the writes' breaker)
            cache.put(chat_request(f"put {i}"), chat_response())
    refusals = [r.getMessage() for r in caplog.records if "refuses writes" in r.getMessage()]
    assert len(refusals) == 1
    assert said in refusals[0]


async def test_a_wildcard_routes_failures_are_one_line_whatever_models_callers_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # keyed by the caller's model name, a route like openai/* logged a line per name
    with FakeOpenAIServer() as upstream:
        config = _wildcard(upstream)
        upstream.drop_next(times=10**6)
        caplog.set_level(logging.WARNING, logger="deja")
        async with _client(_app(config, tmp_path)) as client:
            for i in range(40):
                body = {
                    "model": f"openai/model-{i}",
                    "messages": [{"role": "user", "content": "x"}],
                }
                assert (await client.post(CHAT, json=body)).status_code == 502
    lines = [r.getMessage() for r in _lines(caplog)]
    assert len(lines) == 1, lines


async def test_a_stream_cut_every_time_is_never_said_to_answer_again(
    upstream: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # "answers again" was said when a stream opened; it failed later, mid-way
    from deja.testing import Reply

    clock = FakeClock(0.0)
    upstream.reply_with(lambda body: Reply("one two three four", abort_after_chunks=2))
    caplog.set_level(logging.WARNING, logger="deja")
    async with _client(_app(_config(upstream), tmp_path, clock)) as client:
        for i in range(3):
            body = {
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": f"cut {i}"}],
            }
            answer = await client.post(CHAT, json=body)
            assert b'"error"' in answer.content and b"[DONE]" not in answer.content
            clock.advance(11)
    lines = [r.getMessage() for r in _lines(caplog)]
    assert len(lines) == 3 and not any("answers again" in line for line in lines), lines


async def test_a_hooks_failures_before_a_quiet_window_are_counted_in_the_next_line(
    upstream: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "hooks.py").write_text(
        "async def pre(body):\n    raise RuntimeError('broken hook')\n"
    )
    clock = FakeClock(0.0)
    config = proxy_config(upstream, hooks=[{"path": "hooks.py", "async_pre_llm_hook": "pre"}])
    caplog.set_level(logging.WARNING, logger="deja")
    async with _client(_app(config, tmp_path, clock)) as client:
        assert await _ask(client, 5, "a") == [500] * 5
        clock.advance(11)
        assert await _ask(client, 1, "b") == [500]
    lines = [r.getMessage() for r in _lines(caplog)]
    assert len(lines) == 2, lines
    assert "(4 more before, 11 s ago)" in lines[1]


@pytest.mark.parametrize(
    ("hooks", "status", "said"),
    [
        (
            "def pre(body):\n    body['cache'] = {'ttl': 'forever'}\n    return body\n",
            500,
            "pre-LLM hook pre set cache options deja does not have",
        ),
        (
            "def pre(body):\n    return ['not', 'a', 'body']\n",
            200,
            "pre-LLM hook pre returned a list",
        ),
        (
            "def post(response, request):\n    return {'ttl': -5}\n",
            200,
            "post-cache hook post asked for an invalid cache option",
        ),
        (
            "def post(response, request):\n    return 42\n",
            200,
            "post-cache hook post returned an int",
        ),
        (
            "def post(response, request):\n    return {'namespace': 'elsewhere'}\n",
            200,
            "post-cache hooks asked for namespace 'elsewhere'",
        ),
    ],
    ids=[
        "pre: bad options",
        "pre: wrong type",
        "post: bad options",
        "post: wrong type",
        "post: ns",
    ],
)
async def test_a_hook_misused_on_every_request_is_said_once_then_counted(
    hooks: str,
    status: int,
    said: str,
    upstream: FakeOpenAIServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hook that returns the wrong type or cache options deja does not have does so on
    every request: one line, then a count per window (a line per request flooded the log
    at ERROR, while a hook that raises was already said once)."""
    (tmp_path / "hooks.py").write_text(hooks)
    hook = (
        {"async_pre_llm_hook": "pre"} if "def pre" in hooks else {"async_post_cache_hook": "post"}
    )
    clock = FakeClock(0.0)
    config = proxy_config(upstream, hooks=[{"path": "hooks.py", **hook}])
    caplog.set_level(logging.WARNING, logger="deja")
    async with _client(_app(config, tmp_path, clock)) as client:
        assert await _ask(client, 5, "a") == [status] * 5
        clock.advance(11)
        assert await _ask(client, 1, "b") == [status]
    lines = [r.getMessage() for r in _lines(caplog)]
    assert len(lines) == 2, lines
    assert lines[0].startswith(said) and lines[1].startswith(said), lines
    assert "(4 more times since the last such line, 11 s ago)" in lines[1]


async def test_another_model_of_a_wildcard_route_answering_is_not_the_failing_one_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # one model of openai/* failing and another answering said "answers again" of the one
    # that answered every 10 s, and reset the failing one's count (review)
    with FakeOpenAIServer() as upstream:
        config = _wildcard(upstream)
        clock = FakeClock(0.0)
        caplog.set_level(logging.WARNING, logger="deja")
        async with _client(_app(config, tmp_path, clock)) as client:
            for i in range(3):
                for model, status in (("openai/model-a", 503), ("openai/model-b", 200)):
                    if status == 503:
                        upstream.fail_next(503)  # model-a's call
                    body = {"model": model, "messages": [{"role": "user", "content": f"q {i}"}]}
                    assert (await client.post(CHAT, json=body)).status_code == status
                clock.advance(11)
    lines = [r.getMessage() for r in _lines(caplog)]
    assert lines and not any("answers again" in line for line in lines), lines
