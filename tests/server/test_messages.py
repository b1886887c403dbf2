"""The proxy's log lines and error fields say what happened, once and under the right name."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from deja.server import run
from deja.testing import FakeOpenAIServer
from tests.helpers import free_port
from tests.server.conftest import proxy_config

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
IGNORED = "deja does not implement these LiteLLM settings"


def test_serve_logs_the_litellm_warning_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "x.yaml"
    config.write_text("litellm_settings: {cache: true, set_verbose: true, json_logs: true}\n")
    monkeypatch.setenv(run.CONFIG_ENV, "")  # serve() sets it; restored afterwards
    built: list[object] = []

    def fake_supervise(options: dict[str, Any], *, workers: int) -> None:
        assert workers == 1 and "factory" not in options  # one, of APP_FACTORY
        built.extend(run.app_from_env() for _ in range(2))  # a worker, and its restart

    monkeypatch.setattr(run, "_supervise", fake_supervise)
    with caplog.at_level(logging.WARNING):
        run.serve(config, workers=1, port=free_port())
    assert len(built) == 2
    logged = [r.getMessage() for r in caplog.records if IGNORED in r.getMessage()]
    assert len(logged) == 1, logged
    assert "litellm_settings.set_verbose" in logged[0] and str(config) in logged[0]


@pytest.mark.parametrize(
    ("cache", "param"),
    [
        (True, "cache"),
        ("no-store", "cache"),
        ([1], "cache"),
        ({"bogus": 1}, "cache.bogus"),
        ({"cache": 1}, "cache.cache"),  # an unknown option that happens to be named cache
        ({"ttl": "soon"}, "cache.ttl"),
    ],
)
async def test_a_bad_cache_field_names_the_right_param(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer, cache: object, param: str
) -> None:
    response = await proxy.post(CHAT, json={**BODY, "cache": cache})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert upstream.count(CHAT) == 0


async def test_a_bad_cache_control_header_is_not_a_body_param(
    proxy: httpx2.AsyncClient,
) -> None:
    response = await proxy.post(CHAT, json=BODY, headers={"cache-control": "max-age=soon"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] is None


def _failover_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "trying the next" in r.getMessage()]


async def test_the_only_deployment_failing_claims_no_retry(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.fail_next(503)
    with caplog.at_level(logging.WARNING, logger="deja.server"):
        response = await proxy.post(CHAT, json=BODY)
    assert response.status_code == 503
    assert _failover_lines(caplog) == []


async def test_failover_is_logged_only_before_another_deployment(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeOpenAIServer() as backup:
        config = proxy_config(upstream)
        backup_deployment = {
            "model_name": "gpt-4o",
            "litellm_params": {"model": "openai/gpt-4o", "api_base": backup.base_url},
        }
        config["model_list"].insert(1, backup_deployment)
        async with make_proxy(config) as proxy:
            upstream.fail_next(503)
            backup.fail_next(503)
            with caplog.at_level(logging.WARNING, logger="deja.server"):
                response = await proxy.post(CHAT, json=BODY)
        assert response.status_code == 503
        assert upstream.count(CHAT) == 1 and backup.count(CHAT) == 1
        (line,) = _failover_lines(caplog)  # the first failed and the backup followed
        assert "deployment 'openai/gpt-4o' of 'gpt-4o' failed" in line
