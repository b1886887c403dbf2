"""The proxy in-process (ASGI): routes, headers, tenants, controls, admin, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from deja.testing import FakeOpenAIServer, Reply
from tests.server.conftest import MASTER, TEAM_A, TEAM_B, proxy_config, two_deployments

CHAT = "/v1/chat/completions"
BODY = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
}


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_miss_then_hit_with_headers(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    first = await proxy.post(CHAT, json=BODY)
    second = await proxy.post("/chat/completions", json=BODY)  # the /v1 prefix is optional
    assert first.status_code == second.status_code == 200
    assert first.headers["x-deja-cache"] == "miss" and second.headers["x-deja-cache"] == "hit"
    assert first.headers["x-deja-cache-key"] == second.headers["x-deja-cache-key"]
    assert (
        float(first.headers["x-deja-cost-usd"]) > 0
        and float(second.headers["x-deja-cost-usd"]) == 0
    )
    assert second.headers["age"] == "0"
    assert second.content == first.content  # the stored bytes as they were
    assert upstream.count(CHAT) == 1
    sent = upstream.requests[-1]
    assert sent.body["model"] == "gpt-4o" and "cache" not in sent.body
    assert sent.headers["authorization"] == "Bearer sk-up"  # the deployment's key, not the caller's


async def test_tenants_are_isolated(proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer) -> None:
    a = await proxy.post(CHAT, json=BODY, headers=auth(TEAM_A))
    b = await proxy.post(CHAT, json=BODY, headers=auth(TEAM_B))
    assert a.headers["x-deja-cache"] == "miss" and b.headers["x-deja-cache"] == "miss"
    assert a.headers["x-deja-cache-key"] != b.headers["x-deja-cache-key"]
    assert upstream.count(CHAT) == 2
    again = await proxy.post(CHAT, json=BODY, headers=auth(TEAM_B))
    assert again.headers["x-deja-cache"] == "hit"


async def test_auth_errors(proxy: httpx2.AsyncClient) -> None:
    missing = await proxy.post(CHAT, json=BODY, headers={"authorization": ""})
    wrong = await proxy.post(CHAT, json=BODY, headers=auth("sk-wrong"))
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
    forbidden = await proxy.post(
        "/v1/embeddings",
        json={"model": "text-embedding-3-small", "input": "x"},
        headers=auth(TEAM_B),
    )
    # a model the key may not use does not exist for it (a 403 told it the name is served)
    assert forbidden.status_code == 404
    assert forbidden.json()["error"]["code"] == "model_not_found"
    models = await proxy.get("/v1/models", headers=auth(TEAM_B))
    assert [m["id"] for m in models.json()["data"]] == ["gpt-4o"]
    one = await proxy.get("/v1/models/gpt-4o", headers=auth(TEAM_B))
    assert one.status_code == 200 and one.json()["id"] == "gpt-4o"
    hidden = await proxy.get("/v1/models/text-embedding-3-small", headers=auth(TEAM_B))
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "model_not_found"
    assert (await proxy.get("/v1/models/nope/x", headers=auth(TEAM_B))).status_code == 404
    assert (await proxy.get("/health", headers={"authorization": ""})).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (orjson.dumps({"messages": []}), 400, "'model'"),
        (orjson.dumps({"model": "gpt-4o"}), 400, "messages"),
        (orjson.dumps({"model": "nope", "messages": []}), 404, "does not exist"),
        (orjson.dumps({**BODY, "messages": "hi"}), 400, "messages"),
        (orjson.dumps({**BODY, "cache": {"ttl": "soon"}}), 400, "ttl"),
        (orjson.dumps({**BODY, "cache": {"bogus": 1}}), 400, "bogus"),
        (b'{"model": "gpt-4o", "messages": [], "temperature": NaN}', 400, "JSON"),
    ],
)
async def test_bad_input_is_a_4xx_with_an_openai_error(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer, body: bytes, status: int, fragment: str
) -> None:
    response = await proxy.post(CHAT, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert fragment in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    assert upstream.count(CHAT) == 0


async def test_body_size_limit(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    config = proxy_config(upstream)
    config["general_settings"]["max_request_size_mb"] = 1
    async with make_proxy(config) as proxy:
        big = {**BODY, "messages": [{"role": "user", "content": "x" * 2_000_000}]}
        response = await proxy.post(CHAT, json=big)
        assert response.status_code == 413
        assert upstream.count(CHAT) == 0


async def test_upstream_errors_pass_through_and_are_not_cached(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    upstream.fail_next(429, headers={"retry-after": "3"})
    limited = await proxy.post(CHAT, json=BODY)
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "requests"  # the upstream's own error body
    assert limited.headers["retry-after"] == "3"
    upstream.fail_next(400)
    assert (await proxy.post(CHAT, json=BODY)).status_code == 400
    ok = await proxy.post(CHAT, json=BODY)
    assert ok.status_code == 200 and ok.headers["x-deja-cache"] == "miss"


async def test_failover_to_the_next_deployment(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    with FakeOpenAIServer() as backup:
        async with make_proxy(two_deployments(upstream.base_url, backup)) as proxy:
            upstream.fail_next(503)
            response = await proxy.post(CHAT, json=BODY)
            assert response.status_code == 200
            assert upstream.count(CHAT) == 1 and backup.count(CHAT) == 1


async def test_a_deployment_whose_key_is_refused_fails_over_without_retries(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """A deployment's key rotated or revoked (401), or its account refused the model
    (403): the next deployment of the name has its own, and answers (the caller got a 502
    while it went untried). Calling the refused one again is pointless: no retry."""
    with FakeOpenAIServer() as backup:
        async with make_proxy(two_deployments(upstream.base_url, backup, max_retries=2)) as proxy:
            for n, status in enumerate((401, 403), start=1):
                upstream.fail_next(status)
                asked = {**BODY, "messages": [{"role": "user", "content": f"refused {status}"}]}
                response = await proxy.post(CHAT, json=asked)
                assert response.status_code == 200, response.text
                assert upstream.count(CHAT) == n and backup.count(CHAT) == n
            # the last deployment's refusal is still the caller's 502
            backup.fail_next(401)
            config_one = proxy_config(backup)
        async with make_proxy(config_one) as alone:
            refused = await alone.post(CHAT, json=BODY)
            assert refused.status_code == 502
            assert refused.json()["error"]["code"] == "upstream_auth_failed"


async def test_router_num_retries_is_each_deployments_default(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """A deployment retries nothing unless its ``max_retries`` says; LiteLLM's
    ``router_settings.num_retries`` sets it for those that say nothing (it was ignored:
    a 503 with a Retry-After went straight to the caller)."""
    config = proxy_config(upstream, router_settings={"num_retries": 2})
    config["model_list"].append(
        {
            "model_name": "no-retries",
            "litellm_params": {
                "model": "openai/gpt-4o",
                "api_base": upstream.base_url,
                "num_retries": 0,  # its own word wins (LiteLLM's name; max_retries too)
            },
        }
    )
    async with make_proxy(config) as proxy:
        for _ in range(2):
            upstream.fail_next(503, headers={"retry-after": "0"})
        answer = await proxy.post(CHAT, json=BODY)
        assert answer.status_code == 200, answer.text
        assert upstream.count(CHAT) == 3
        upstream.fail_next(503, headers={"retry-after": "0"})
        asked = {"model": "no-retries", "messages": [{"role": "user", "content": "not cached"}]}
        refused = await proxy.post(CHAT, json=asked)
        assert refused.status_code == 503
        assert upstream.count(CHAT) == 4


async def test_controls_from_body_and_header(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    await proxy.post(CHAT, json=BODY)
    fresh = await proxy.post(CHAT, json=BODY, headers={"cache-control": "no-cache"})
    assert fresh.headers["x-deja-cache"] == "bypass"
    in_ns = await proxy.post(CHAT, json={**BODY, "cache": {"namespace": "other"}})
    assert in_ns.headers["x-deja-cache"] == "miss"
    no_store = {
        **BODY,
        "messages": [{"role": "user", "content": "do not keep"}],
        "cache": {"no-store": True},
    }
    await proxy.post(CHAT, json=no_store)
    assert (await proxy.post(CHAT, json=no_store)).headers["x-deja-cache"] == "miss"
    assert upstream.count(CHAT) == 5
    # two Cache-Control field lines mean what one comma-joined line means (RFC 9110 5.3)
    two_lines = {**BODY, "messages": [{"role": "user", "content": "two header lines"}]}
    headers = [("cache-control", "max-age=60"), ("cache-control", "no-store")]
    await proxy.post(CHAT, json=two_lines, headers=headers)
    assert (await proxy.post(CHAT, json=two_lines)).headers["x-deja-cache"] == "miss"


async def test_streaming_miss_and_replay(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    upstream.queue_reply(Reply("one two three four five six seven eight nine ten"))
    body = {**BODY, "stream": True}
    first = await proxy.post(CHAT, json=body)
    second = await proxy.post(CHAT, json=body)
    assert first.headers["content-type"] == "text/event-stream"
    assert first.headers["x-deja-cache"] == "miss" and second.headers["x-deja-cache"] == "hit"
    assert first.text == second.text
    assert first.text.endswith("data: [DONE]\n\n")
    events = [
        orjson.loads(line[6:]) for line in first.text.split("\n\n") if line.startswith("data: {")
    ]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == "one two three four five six seven eight nine ten"
    assert all("usage" not in e for e in events)
    plain = await proxy.post(CHAT, json=BODY)
    assert plain.headers["x-deja-cache"] == "hit"
    assert plain.json()["choices"][0]["message"]["content"] == text
    assert upstream.count(CHAT) == 1


async def test_legacy_completions(proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer) -> None:
    body = {"model": "gpt-4o", "prompt": "Say hi"}
    first = await proxy.post("/v1/completions", json=body)
    second = await proxy.post("/v1/completions", json=body)
    assert first.status_code == 200 and second.headers["x-deja-cache"] == "hit"
    assert second.json()["choices"][0]["text"] == first.json()["choices"][0]["text"]
    assert upstream.count("/v1/completions") == 1


async def test_embeddings_per_item_and_per_tenant(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    body = {"model": "text-embedding-3-small", "input": ["a", "b"]}
    first = await proxy.post("/v1/embeddings", json=body)
    assert first.status_code == 200 and first.headers["x-deja-cache"] == "miss"
    second = await proxy.post("/v1/embeddings", json={**body, "input": ["b", "c"]})
    assert upstream.requests[-1].body["input"] == ["c"]
    assert second.json()["data"][0]["embedding"] == first.json()["data"][1]["embedding"]
    assert "age" not in second.headers  # ("c" was fetched: a new answer)
    again = await proxy.post("/v1/embeddings", json=body)
    assert again.headers["x-deja-cache"] == "hit" and int(again.headers["age"]) >= 0
    other = await proxy.post("/v1/embeddings", json=body, headers=auth(MASTER))
    assert other.headers["x-deja-cache"] == "miss"  # another tenant (the admin's) never shares


async def test_not_served_routes(proxy: httpx2.AsyncClient) -> None:
    for path in ("/v1/responses", "/v1/messages"):
        response = await proxy.post(path, json={})
        assert response.status_code == 404 and "not served" in response.json()["error"]["message"]
    assert (await proxy.get("/v1/chat/completions")).status_code == 405
    assert (await proxy.get("/nope")).status_code == 404


async def test_health_ready_and_metrics(proxy: httpx2.AsyncClient) -> None:
    await proxy.post(CHAT, json=BODY)
    await proxy.post(CHAT, json=BODY)
    assert (await proxy.get("/health/ready")).json()["status"] == "ok"
    text = (await proxy.get("/metrics")).text
    assert 'deja_cache_requests_total{result="hit",tier="exact"} 1.0' in text
    assert 'deja_cache_requests_total{result="miss",tier="exact"} 1.0' in text


async def test_admin_routes(proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer) -> None:
    admin = auth(MASTER)
    assert (await proxy.get("/cache/stats")).status_code == 401  # a tenant key is not enough
    first = await proxy.post(CHAT, json={**BODY, "cache": {"tags": ["doc:1"]}})
    key = first.headers["x-deja-cache-key"]
    assert (await proxy.get("/cache/ping", headers=admin)).json()["status"] == "healthy"
    explained = (
        await proxy.post(
            "/cache/explain", json={"request": BODY, "tenant": "team-a"}, headers=admin
        )
    ).json()
    assert explained["key"] == key and explained["tenant"] == "team-a"
    assert explained["fields"]["model"] == "openai/gpt-4o"
    bare = await proxy.post("/cache/explain", json={**BODY, "tenant": "team-a"}, headers=admin)
    assert bare.json()["key"] == key  # the request body itself, the tenant beside it
    untold = (await proxy.post("/cache/explain", json=BODY, headers=admin)).json()
    assert untold["key"] != key and untold["tenant"] is None and "name 'tenant'" in untold["note"]
    deleted = await proxy.post(
        "/cache/delete", json={"request": BODY, "tenant": "team-a"}, headers=admin
    )
    assert deleted.json() == {"deleted": True, "key": key, "keys": [key]}
    await proxy.post(CHAT, json={**BODY, "cache": {"tags": ["doc:1"]}})
    invalidated = await proxy.post(
        "/cache/invalidate", json={"tag": "doc:1", "tenant": "team-a"}, headers=admin
    )
    assert invalidated.json() == {"deleted": 1}
    await proxy.post(CHAT, json=BODY)
    assert (await proxy.post("/cache/delete", json={"key": key}, headers=admin)).json()[
        "deleted"
    ] is True
    await proxy.post(CHAT, json=BODY)
    flushed = await proxy.post("/cache/flush", headers=admin)
    assert flushed.json()["deleted"] == 1
    stats = (await proxy.get("/cache/stats", headers=admin)).json()
    assert stats["exact"]["misses"] == 4 and stats["exact"]["hits"] == 0


async def test_without_master_key_auth_is_off_and_admin_disabled(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    config = proxy_config(upstream)
    del config["general_settings"]
    async with make_proxy(config, key=None) as proxy:
        assert (await proxy.post(CHAT, json=BODY)).status_code == 200
        assert (await proxy.get("/cache/stats")).status_code == 403


async def test_hooks(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    (tmp_path / "my_hooks.py").write_text(
        "async def async_pre_llm_hook(request):\n"
        "    system = {'role': 'system', 'content': 'Be brief.'}\n"
        "    request['messages'] = [system] + request['messages']\n"
        "    return request\n"
        "async def async_post_cache_hook(response, request):\n"
        "    return {'tags': ['hooked']}\n"
        "def key_builder(request, tenant):\n"
        "    return 'same-' + (tenant or 'none')\n"
        "async def broken(request):\n"
        "    raise ValueError('boom')\n"
    )
    config = proxy_config(
        upstream,
        hooks=[
            {
                "path": "my_hooks.py",
                "async_pre_llm_hook": "async_pre_llm_hook",
                "async_post_cache_hook": "async_post_cache_hook",
                "key_builder": "key_builder",
            }
        ],
    )
    async with make_proxy(config) as proxy:
        first = await proxy.post(CHAT, json=BODY)
        assert upstream.requests[-1].body["messages"][0] == {
            "role": "system",
            "content": "Be brief.",
        }
        assert first.headers["x-deja-cache-key"].endswith(":same-team-a")
        other = await proxy.post(
            CHAT, json={**BODY, "messages": [{"role": "user", "content": "other"}]}
        )
        assert other.headers["x-deja-cache"] == "hit"  # the custom builder ignores the prompt
        invalidated = await proxy.post(
            "/cache/invalidate", json={"tag": "hooked", "tenant": "team-a"}, headers=auth(MASTER)
        )
        assert invalidated.json() == {"deleted": 1}
    broken = proxy_config(upstream, hooks=[{"path": "my_hooks.py", "async_pre_llm_hook": "broken"}])
    async with make_proxy(broken) as proxy:
        response = await proxy.post(CHAT, json=BODY)
        assert response.status_code == 500 and "broken" in response.json()["error"]["message"]
        assert (await proxy.get("/health")).status_code == 200  # the process lives on


async def test_anthropic_deployment_through_the_proxy(
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    from deja.testing import FakeAnthropicServer

    system = "You are a meticulous assistant. " * 400
    with FakeAnthropicServer(api_key="sk-ant") as anthropic:
        config = {
            "model_list": [
                {
                    "model_name": "claude",
                    "litellm_params": {
                        "model": "anthropic/claude-sonnet-4-5",
                        "api_base": anthropic.url,
                        "api_key": "sk-ant",
                    },
                }
            ],
            "caching": {"type": "memory"},
            "cache_control_injection_points": [{"location": "message", "role": "system"}],
        }
        async with make_proxy(config, key=None) as proxy:
            body = {
                "model": "claude",
                "max_tokens": 50,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": "hi"},
                ],
            }
            first = await proxy.post(CHAT, json=body)
            assert first.status_code == 200, first.text
            second_body = {
                **body,
                "messages": [body["messages"][0], {"role": "user", "content": "again"}],
            }
            second = await proxy.post(CHAT, json=second_body)
            assert second.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
            assert anthropic.requests[-1].body["system"][-1]["cache_control"] == {
                "type": "ephemeral"
            }
            hit = await proxy.post(CHAT, json=body)
            assert hit.headers["x-deja-cache"] == "hit" and hit.content == first.content
            metrics = (await proxy.get("/metrics")).text
            assert 'deja_provider_cached_tokens_total{kind="read",provider="anthropic"}' in metrics
            assert 'deja_provider_cached_tokens_total{kind="write",provider="anthropic"}' in metrics
            assert 'deja_provider_cache_saved_usd_total{provider="anthropic"}' in metrics


async def test_the_semantic_index_is_loaded_before_the_first_request(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:

    from deja.config import parse_config
    from deja.server.app import ProxyApp

    caching = {"type": "semantic", "store": {"type": "disk", "directory": "cache"}}
    config = proxy_config(upstream, caching=caching)
    first = ProxyApp(parse_config(config, base_dir=tmp_path))
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=first),
        base_url="http://proxy",
        headers={"authorization": f"Bearer {TEAM_A}"},
    ) as client:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Where is my card?"}]}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    await first.aclose()  # writes the index beside the disk store

    second = ProxyApp(parse_config(config, base_dir=tmp_path))
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}])

    async def receive() -> dict[str, Any]:
        return next(messages, {"type": "lifespan.shutdown"})

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":  # no request has come in yet
            assert second.cache is not None and second.cache.semantic is not None
            sent.append({"entries": len(second.cache.semantic.index)})
        sent.append(message)

    await second({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    assert sent[0] == {"entries": 1}
    assert [m["type"] for m in sent[1:]] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_a_replayed_answer_is_sent_a_few_dozen_events_to_a_message() -> None:
    """A 2,000-chunk replay went out one message per chunk without a pause: every other
    request of the worker waited for all of it. The first event goes at once, then
    batches, the event loop free between them; the bytes are the same."""
    import asyncio

    from deja._async.streams import AsyncCachedStream
    from deja.result import CacheInfo
    from deja.server.app import _REPLAY_EVENTS, _send_replay
    from deja.streaming import sse_event

    chunks = [
        {"id": "c", "choices": [{"index": 0, "delta": {"content": f"w{i}"}}]} for i in range(70)
    ]
    sent: list[bytes] = []
    turns = 0

    async def send(message: dict[str, object]) -> None:
        assert message["more_body"] is True
        sent.append(message["body"])  # type: ignore[arg-type]

    async def other_request() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ticking = asyncio.ensure_future(other_request())
    await asyncio.sleep(0)
    await _send_replay(send, AsyncCachedStream(CacheInfo("hit", "k"), replay=chunks))
    ticking.cancel()
    assert [body.count(b"data: ") for body in sent] == [1, _REPLAY_EVENTS, _REPLAY_EVENTS, 5]
    assert b"".join(sent) == b"".join(sse_event(chunk) for chunk in chunks)
    assert turns >= 3  # the other request ran between the messages
