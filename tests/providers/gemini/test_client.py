"""deja.Client with `gemini/` and `vertex_ai/` models, against the local Gemini server:
API keys and service-account tokens, translation, and the context-cache manager."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import deja
from deja.errors import InvalidRequestError
from deja.testing import FakeClock, FakeGeminiServer, GeminiReply
from tests.providers.gemini.shared import HANDBOOK, KEY, MODEL, SYSTEM_POINT

pytest.importorskip("cryptography")


def client(server: FakeGeminiServer, **kw: Any) -> deja.Client:
    kw.setdefault("cache", deja.Cache())
    return deja.Client(api_base=server.url, api_key=KEY, max_retries=0, **kw)


def ask(question: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": HANDBOOK}, {"role": "user", "content": question}]


def generate_calls(server: FakeGeminiServer) -> list[Any]:
    return [r for r in server.requests if ":generateContent" in r.path]


def test_a_call_is_translated_keyed_and_cached(server: FakeGeminiServer) -> None:
    c = client(server)
    first = c.completion(model=MODEL, messages=ask("Leave?"), temperature=0.2, max_tokens=50)
    second = c.completion(model=MODEL, messages=ask("Leave?"), temperature=0.2, max_tokens=50)
    assert first.cache.status == "miss" and second.cache.status == "hit"
    assert second.model_dump() == first.model_dump()
    assert first.choices[0].message.content and first.choices[0].finish_reason == "stop"
    (sent,) = generate_calls(server)
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY and KEY not in sent.path + sent.query
    assert sent.body["systemInstruction"] == {"parts": [{"text": HANDBOOK}]}
    assert sent.body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 50}
    assert first.usage.prompt_tokens > 0 and first.cache.cost_usd > 0


def test_the_system_cache_keeps_its_hour_beside_other_breakpoints(
    server: FakeGeminiServer,
) -> None:
    # The caller's 5m marker on a tool and a point on the latest message used to shorten
    # the system point's 1h cache to 300s (remade about every 4 minutes).
    tool = {
        "type": "function",
        "cache_control": {"type": "ephemeral"},
        "function": {"name": "lookup", "description": "look up a policy"},
    }
    points = [*SYSTEM_POINT, {"location": "message", "index": -1}]
    c = client(server, cache_control_injection_points=points)
    c.completion(model=MODEL, tools=[tool], messages=ask("How many days?"))
    (create,) = [r for r in server.requests if r.path == "/v1beta/cachedContents"]
    assert create.body["ttl"] == "3600s"


def test_markers_make_one_context_cache_that_later_calls_reuse(
    server: FakeGeminiServer, clock: FakeClock
) -> None:
    metrics = deja.PrometheusMetrics()
    c = client(server, metrics=metrics, cache_control_injection_points=SYSTEM_POINT)
    first_question = "How many days of leave?"
    first = c.completion(model=MODEL, messages=ask(first_question))
    second = c.completion(model=MODEL, messages=ask("Can leave be carried over?"))
    (made,) = server.cached_contents
    (create,) = [r for r in server.requests if r.path == "/v1beta/cachedContents"]
    assert create.body["systemInstruction"] == {"parts": [{"text": HANDBOOK}]}
    assert create.body["ttl"] == "3600s"  # 1h: the marker's lifetime
    for sent in generate_calls(server):
        assert sent.body["cachedContent"] == made["name"]
        assert "systemInstruction" not in sent.body  # the cache holds it
    assert (
        second.usage.prompt_tokens_details.cached_tokens == made["usageMetadata"]["totalTokenCount"]
    )
    # the call that made the cache pays for it: its tokens at the input price and an hour
    # of storage; the next call only reads it, at the cached price
    assert first.usage.context_cache["created_tokens"] == made["usageMetadata"]["totalTokenCount"]
    assert first.cache.cost_usd > second.cache.cost_usd
    assert "context_cache" not in second.usage.model_dump()
    text = metrics.render().decode()
    assert 'deja_provider_context_cache_total{event="created",provider="gemini"} 1.0' in text
    assert 'deja_provider_context_cache_total{event="reused",provider="gemini"} 1.0' in text
    assert 'deja_provider_context_cache_usd_total{provider="gemini"}' in text
    assert 'deja_provider_cached_tokens_total{kind="read",provider="gemini"}' in text
    # a response-cache hit of the first call saves what asking again would cost now: the
    # context cache is not made (nor its storage bought) a second time
    hit = c.completion(model=MODEL, messages=ask(first_question))
    assert hit.cache.status == "hit"
    without = {k: v for k, v in first.usage.model_dump().items() if k != "context_cache"}
    repeat = c.cache.prices.cost(f"gemini/{first.model}", without)  # type: ignore[union-attr]
    assert hit.cache.saved_usd == pytest.approx(repeat) and repeat < first.cache.cost_usd / 5


def test_a_cache_gone_at_the_provider_is_made_again(
    server: FakeGeminiServer, clock: FakeClock
) -> None:
    metrics = deja.PrometheusMetrics()
    c = client(server, metrics=metrics, cache_control_injection_points=SYSTEM_POINT)
    c.completion(model=MODEL, messages=ask("one"))
    (first,) = server.cached_contents
    deja.Client(api_base=server.url, api_key=KEY).delete_context_cache(
        model=MODEL, name=first["name"]
    )
    assert server.cached_contents == []
    again = c.completion(model=MODEL, messages=ask("two"))
    (second,) = server.cached_contents
    assert second["name"] != first["name"]
    assert again.choices[0].message.content
    assert generate_calls(server)[-1].body["cachedContent"] == second["name"]
    assert 'event="recreated",provider="gemini"} 1.0' in metrics.render().decode()


def test_deleting_a_cache_drops_its_record_at_once(server: FakeGeminiServer) -> None:
    metrics = deja.PrometheusMetrics()
    c = client(server, metrics=metrics, cache_control_injection_points=SYSTEM_POINT)
    c.completion(model=MODEL, messages=ask("one"))
    (first,) = server.cached_contents
    c.delete_context_cache(model=MODEL, name=first["name"])
    again = c.completion(model=MODEL, messages=ask("two"))
    (second,) = server.cached_contents
    assert again.choices[0].message.content and second["name"] != first["name"]
    # no call was sent to the deleted cache first: the record went with it
    assert [r.body["cachedContent"] for r in generate_calls(server)] == [
        first["name"],
        second["name"],
    ]
    text = metrics.render().decode()
    assert 'event="recreated"' not in text
    assert 'deja_provider_context_cache_total{event="created",provider="gemini"} 2.0' in text


def test_deleting_a_missing_cache_is_a_not_found_error(server: FakeGeminiServer) -> None:
    # Google AI answers 403 "CachedContent not found (or permission denied)"
    c = client(server)
    made = c.create_context_cache(model=MODEL, system_instruction=HANDBOOK)
    c.delete_context_cache(model=MODEL, name=made.id)
    with pytest.raises(deja.NotFoundError, match="CachedContent not found") as caught:
        c.delete_context_cache(model=MODEL, name=made.id)
    assert caught.value.status_code == 403


def test_a_cache_expired_at_the_provider_is_made_again(
    server: FakeGeminiServer, clock: FakeClock
) -> None:
    c = client(server, cache_control_injection_points=[{"location": "message", "role": "system"}])
    c.completion(model=MODEL, messages=ask("one"))
    clock.advance(301)  # the 5m default lifetime has passed for the server
    c.completion(model=MODEL, messages=ask("two"))
    assert len(server.cached_contents) == 1  # the first expired, the second is live
    assert server.count("/v1beta/cachedContents") == 2


def test_clients_sharing_a_store_share_the_cache(server: FakeGeminiServer) -> None:
    store = deja.MemoryStore()
    one = client(server, cache=deja.Cache(store=store), cache_control_injection_points=SYSTEM_POINT)
    two = client(server, cache=deja.Cache(store=store), cache_control_injection_points=SYSTEM_POINT)
    one.completion(model=MODEL, messages=ask("one"))
    two.completion(model=MODEL, messages=ask("two"))
    assert server.count("/v1beta/cachedContents") == 1


def test_another_api_key_gets_its_own_cache(server: FakeGeminiServer) -> None:
    store = deja.MemoryStore()
    c = client(server, cache=deja.Cache(store=store), cache_control_injection_points=SYSTEM_POINT)
    c.completion(model=MODEL, messages=ask("one"))
    with FakeGeminiServer(api_key="AIza-other") as other:
        d = deja.Client(
            api_base=other.url,
            api_key="AIza-other",
            cache=deja.Cache(store=store),
            cache_control_injection_points=SYSTEM_POINT,
        )
        d.completion(model=MODEL, messages=ask("one"))
        assert other.count("/v1beta/cachedContents") == 1


async def test_concurrent_calls_make_one_cache(server: FakeGeminiServer) -> None:
    server.latency = 0.05
    async with deja.AsyncClient(
        api_base=server.url,
        api_key=KEY,
        cache=deja.AsyncCache(),
        cache_control_injection_points=SYSTEM_POINT,
    ) as c:
        answers = await asyncio.gather(
            *(c.acompletion(model=MODEL, messages=ask(f"question {i}")) for i in range(6))
        )
    assert all(a.choices[0].message.content for a in answers)
    assert server.count("/v1beta/cachedContents") == 1
    assert sum("context_cache" in a.usage.model_dump() for a in answers) == 1


def test_a_prefix_below_the_minimum_is_sent_whole(
    server: FakeGeminiServer, caplog: pytest.LogCaptureFixture
) -> None:
    c = client(server, cache_control_injection_points=SYSTEM_POINT)
    reply = c.completion(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
    )
    assert reply.choices[0].message.content
    assert server.count("/v1beta/cachedContents") == 0
    assert generate_calls(server)[-1].body["systemInstruction"]
    assert any("minimum" in r.getMessage() for r in caplog.records)


def test_a_refused_cache_falls_back_and_is_not_asked_again(server: FakeGeminiServer) -> None:
    c = client(server, cache_control_injection_points=SYSTEM_POINT)
    server.minimum_tokens = 10**6  # the provider's own count says it is too small
    first = c.completion(model=MODEL, messages=ask("one"))
    second = c.completion(model=MODEL, messages=ask("two"))
    assert first.choices[0].message.content and second.choices[0].message.content
    assert server.count("/v1beta/cachedContents") == 1  # refused once, then not asked
    assert all("systemInstruction" in r.body for r in generate_calls(server))


def test_streams_use_the_cache_and_replay(server: FakeGeminiServer) -> None:
    c = client(server, cache_control_injection_points=SYSTEM_POINT)
    server.queue_reply(GeminiReply("Twenty-five days."))

    def streamed() -> list[Any]:
        options = {"include_usage": True}
        return list(
            c.completion(model=MODEL, messages=ask("Leave?"), stream=True, stream_options=options)
        )

    live = streamed()
    sent = server.requests[-1]
    assert sent.path.endswith(":streamGenerateContent") and "alt=sse" in sent.query
    assert sent.body["cachedContent"] == server.cached_contents[0]["name"]
    text = "".join(x.choices[0].delta.content or "" for x in live if x.choices)
    assert text == "Twenty-five days."
    usage = live[-1].usage
    assert usage.prompt_tokens_details.cached_tokens > 0 and usage.context_cache
    replay = streamed()  # the same request again
    assert [x.model_dump() for x in replay] == [x.model_dump() for x in live]


def test_the_seed_guide_create_context_cache_and_context_cache_id(
    server: FakeGeminiServer, clock: FakeClock
) -> None:
    c = client(server)
    cached = c.create_context_cache(
        model="gemini/gemini-2.5-pro", system_instruction=HANDBOOK * 4, ttl=3600
    )
    assert cached.id.startswith("cachedContents/") and cached.tokens > 4096
    assert cached.expire_time == pytest.approx(clock() + 3600, abs=1)
    create = server.requests[-1]
    assert create.body["ttl"] == "3600s" and "contents" not in create.body
    reply = c.completion(
        model="gemini/gemini-2.5-pro",
        messages=[{"role": "user", "content": "What is the leave policy?"}],
        context_cache_id=cached.id,
    )
    assert generate_calls(server)[-1].body["cachedContent"] == cached.id
    assert reply.usage.prompt_tokens_details.cached_tokens == cached.tokens
    with pytest.raises(InvalidRequestError, match="system"):
        c.completion(
            model="gemini/gemini-2.5-pro",
            messages=ask("Leave?"),
            context_cache_id=cached.id,
            cache={"no-cache": True},
        )
    # the cached prefix is part of the prompt: without it, it is another request
    plain = c.completion(
        model="gemini/gemini-2.5-pro",
        messages=[{"role": "user", "content": "What is the leave policy?"}],
    )
    assert plain.cache.status == "miss" and plain.cache.key != reply.cache.key
    # a cache that no longer exists is the provider's error, not a silent retry
    with pytest.raises(deja.PermissionDeniedError, match="CachedContent not found"):
        c.completion(
            model="gemini/gemini-2.5-pro",
            messages=[{"role": "user", "content": "What is the leave policy?"}],
            context_cache_id="cachedContents/another",
        )


def test_context_caches_are_gemini_only() -> None:
    with pytest.raises(InvalidRequestError, match="Gemini"):
        deja.Client().create_context_cache(model="gpt-4o", system_instruction="x")


@pytest.fixture
def vertex(server: FakeGeminiServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    account = server.service_account()
    monkeypatch.setenv("VERTEXAI_API_BASE", server.url)
    monkeypatch.setenv("VERTEXAI_PROJECT", "acme-prod")
    monkeypatch.setenv("VERTEXAI_LOCATION", "europe-west4")
    return account


def test_vertex_with_a_service_account_token(
    server: FakeGeminiServer, vertex: dict[str, Any], clock: FakeClock, tmp_path: Path
) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(vertex))
    c = deja.Client(cache=deja.Cache(), max_retries=0)
    model = "vertex_ai/gemini-2.5-flash"
    first = c.completion(model=model, messages=ask("one"), vertex_credentials=str(key_file))
    c.completion(model=model, messages=ask("two"), vertex_credentials=json.dumps(vertex))
    assert first.choices[0].message.content
    assert server.count("/token") == 1  # one token, reused
    sent = generate_calls(server)[-1]
    assert sent.path == (
        "/v1/projects/acme-prod/locations/europe-west4/publishers/google/models/"
        "gemini-2.5-flash:generateContent"
    )
    assert sent.headers["authorization"].startswith("Bearer ya29.")
    assert "vertex_credentials" not in sent.raw.decode()


def test_vertex_token_is_refreshed_before_it_expires(
    server: FakeGeminiServer,
    vertex: dict[str, Any],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(vertex))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    server.token_lifetime = 120
    c = deja.Client(max_retries=0, clock=clock)
    c.completion(model="vertex_ai/gemini-2.5-flash", messages=ask("one"))
    clock.advance(50)  # 70 s left: still used
    c.completion(model="vertex_ai/gemini-2.5-flash", messages=ask("two"))
    assert server.count("/token") == 1
    clock.advance(20)  # 50 s left: a request could outlive it
    c.completion(model="vertex_ai/gemini-2.5-flash", messages=ask("three"))
    assert server.count("/token") == 2


def test_vertex_without_credentials_is_a_config_error(
    vertex: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with pytest.raises(deja.ConfigError, match="service account"):
        deja.Client().completion(model="vertex_ai/gemini-2.5-flash", messages=ask("one"))


def test_vertex_context_cache(server: FakeGeminiServer, vertex: dict[str, Any]) -> None:
    c = deja.Client(cache_control_injection_points=SYSTEM_POINT, max_retries=0)
    options = {"vertex_credentials": json.dumps(vertex)}
    c.completion(model="vertex_ai/gemini-2.5-flash", messages=ask("one"), **options)
    c.completion(model="vertex_ai/gemini-2.5-flash", messages=ask("two"), **options)
    (made,) = server.cached_contents
    assert made["name"].startswith("projects/acme-prod/locations/europe-west4/cachedContents/")
    assert made["model"].endswith("/publishers/google/models/gemini-2.5-flash")
    assert generate_calls(server)[-1].body["cachedContent"] == made["name"]


def test_the_token_uri_can_be_set_apart_from_the_key_file(
    server: FakeGeminiServer, vertex: dict[str, Any]
) -> None:
    moved = {**vertex, "token_uri": "http://127.0.0.1:9/unreachable"}
    c = deja.Client(max_retries=0)
    reply = c.completion(
        model="vertex_ai/gemini-2.5-flash",
        messages=ask("one"),
        vertex_credentials=json.dumps(moved),
        vertex_token_uri=server.token_uri,
    )
    assert reply.choices[0].message.content and server.count("/token") == 1


def test_googles_retry_info_is_the_rate_limits_retry_after(server: FakeGeminiServer) -> None:
    # Google puts the delay in the error body (google.rpc.RetryInfo), not in a header
    def quota(delay: str) -> dict[str, Any]:
        detail = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
        return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [detail]}}

    c = deja.Client(api_base=server.url, api_key=KEY, max_retries=2, backoff=0.01)
    server.fail_next(429, body=quota("36000s"))
    with pytest.raises(deja.RateLimitError) as caught:
        c.completion(model=MODEL, messages=ask("hi"))
    assert caught.value.retry_after == 36000.0
    assert len(generate_calls(server)) == 1  # longer than a caller should block: no retry
    server.fail_next(429, body=quota("0.05s"))
    assert c.completion(model=MODEL, messages=ask("hi")).choices[0].message.content
    assert len(generate_calls(server)) == 3  # waited as asked, then answered
