"""The simulated Gemini server over real HTTP: auth, replies, streams and cachedContents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from deja._fake_gemini import FakeGeminiServer, GeminiReply
from deja.errors import NotFoundError, PermissionDeniedError, provider_error_for_status
from deja.providers.gemini import (
    GeminiEndpoint,
    GeminiProvider,
    GeminiRequest,
    cached_content_gone,
    parse_cached_content,
)
from deja.streaming import SSEDecoder, StreamAssembler
from deja.testing import FakeClock

NOW = 1_700_000_000.0
KEY = "AIza-simulated"
provider = GeminiProvider()
DOC = "The handbook says many things. " * 300  # ~2,300 tokens, estimated (Vertex: >= 2,048)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def server(clock: FakeClock) -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(api_key=KEY, clock=clock) as fake:
        yield fake


def google(server: FakeGeminiServer, body: dict[str, Any], **kwargs: Any) -> GeminiRequest:
    return provider.build_request(body, api_base=server.url, api_key=KEY, **kwargs)


def vertex(server: FakeGeminiServer, body: dict[str, Any], **kwargs: Any) -> GeminiRequest:
    return provider.build_request(
        {**body, "model": "vertex_ai/" + body["model"].split("/")[-1]},
        api_base=server.url,
        access_token=server.issue_token(),
        vertex_project="proj",
        vertex_location="us-east4",
        **kwargs,
    )


def chat(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": "gemini/gemini-2.5-flash", "messages": list(messages), **params}


def user(content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **extra}


def send(wire: GeminiRequest) -> httpx2.Response:
    return httpx2.post(wire.url, json=wire.json, headers=wire.headers)


def stream(wire: GeminiRequest, *, created: int = 1) -> dict[str, Any]:
    with httpx2.stream("POST", wire.url, json=wire.json, headers=wire.headers) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(answer.iter_bytes())
    decoder = SSEDecoder()
    translator = provider.stream_translator(created=created, candidates=wire.candidate_count)
    assembler = StreamAssembler()
    for item in decoder.feed(raw) + decoder.flush():
        assert isinstance(item, dict)
        for chunk in translator.feed(item):
            assembler.add(chunk)
    for chunk in translator.finish():
        assembler.add(chunk)
    assert assembler.complete
    return assembler.response()


def error_of(answer: httpx2.Response) -> dict[str, Any]:
    body = answer.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == answer.status_code
    return dict(body["error"])


# -- auth ---------------------------------------------------------------------------------------


def test_google_ai_key_checks(server: FakeGeminiServer) -> None:
    wire = google(server, chat(user("hi")))
    assert "key=" not in wire.url
    assert send(wire).status_code == 200
    missing = httpx2.post(wire.url, json=wire.json)
    assert missing.status_code == 403
    assert error_of(missing)["status"] == "PERMISSION_DENIED"
    wrong = httpx2.post(wire.url, json=wire.json, headers={"x-goog-api-key": "nope"})
    error = error_of(wrong)
    assert (wrong.status_code, error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"] == "API key not valid. Please pass a valid API key."
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    # The query parameter works too (deja never sends one, but other clients do).
    assert httpx2.post(wire.url + f"?key={KEY}", json=wire.json).status_code == 200


def test_vertex_bearer_checks(server: FakeGeminiServer, clock: FakeClock) -> None:
    wire = vertex(server, chat(user("hi")))
    assert send(wire).status_code == 200
    missing = httpx2.post(wire.url, json=wire.json)
    assert missing.status_code == 401
    assert error_of(missing)["message"].startswith("Request is missing required authentication")
    bad = httpx2.post(wire.url, json=wire.json, headers={"authorization": "Bearer forged"})
    assert bad.status_code == 401
    assert error_of(bad)["message"].startswith("Request had invalid authentication credentials")
    clock.advance(3601)
    assert send(wire).status_code == 401
    # A server without Vertex auth takes anything (for tests that do not care).
    with FakeGeminiServer(vertex_auth=False) as open_server:
        loose = provider.build_request(
            chat(user("x"), model="vertex_ai/m"), api_base=open_server.url, vertex_project="p"
        )
        assert send(loose).status_code == 200


# -- replies ------------------------------------------------------------------------------------


def test_default_reply_is_deterministic(server: FakeGeminiServer) -> None:
    wire = google(server, chat({"role": "system", "content": "Be kind."}, user("What is 2+2?")))
    first, second = send(wire).json(), send(wire).json()
    assert first["candidates"] == second["candidates"]
    assert first["responseId"] != second["responseId"]
    assert first["candidates"] == [
        {
            "content": {
                "parts": [{"text": first["candidates"][0]["content"]["parts"][0]["text"]}],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ]
    assert first["candidates"][0]["content"]["parts"][0]["text"].startswith(
        "Simulated answer to: What is 2+2? ["
    )
    usage = first["usageMetadata"]
    assert usage["promptTokenCount"] == 2 + 3  # "Be kind." + "What is 2+2?", four chars a token
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert first["modelVersion"] == "gemini-2.5-flash"
    parsed = provider.parse_response(first)
    assert parsed["choices"][0]["finish_reason"] == "stop"
    assert parsed["usage"]["prompt_tokens"] == 5


def test_candidates_max_tokens_and_stop_sequences(server: FakeGeminiServer) -> None:
    several = send(google(server, chat(user("Name a colour"), n=3))).json()
    assert [c["index"] for c in several["candidates"]] == [0, 1, 2]
    texts = {c["content"]["parts"][0]["text"] for c in several["candidates"]}
    assert len(texts) == 3
    short = send(google(server, chat(user("Name a colour"), max_tokens=2))).json()
    assert short["candidates"][0]["finishReason"] == "MAX_TOKENS"
    # 2 tokens of 4 characters each
    assert short["candidates"][0]["content"]["parts"][0]["text"] == "Simulate"
    stopped = send(google(server, chat(user("Name a colour"), stop=["answer"]))).json()
    assert stopped["candidates"][0]["content"]["parts"][0]["text"] == "Simulated "


def test_scripted_function_calls_thoughts_and_signature(server: FakeGeminiServer) -> None:
    reply = GeminiReply(
        "Checking.",
        thoughts="They want the weather.",
        thought_signature="sig-1",
        function_calls=[{"name": "weather", "args": {"city": "Oslo"}}],
        thoughts_tokens=40,
    )
    server.queue_reply(reply, times=2)
    hidden = send(google(server, chat(user("Weather in Oslo?")))).json()
    parts = hidden["candidates"][0]["content"]["parts"]
    assert parts == [
        {"text": "Checking."},
        {
            "functionCall": {"name": "weather", "args": {"city": "Oslo"}},
            "thoughtSignature": "sig-1",
        },
    ]
    assert hidden["usageMetadata"]["thoughtsTokenCount"] == 40
    shown = send(google(server, chat(user("Weather in Oslo?"), reasoning_effort="low"))).json()
    assert shown["candidates"][0]["content"]["parts"][0] == {
        "text": "They want the weather.",
        "thought": True,
    }
    message = provider.parse_response(shown)["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    assert message["message"]["reasoning_content"] == "They want the weather."
    assert message["message"]["tool_calls"][0]["extra_content"] == {
        "google": {"thought_signature": "sig-1"}
    }


def test_safety_finish_and_blocked_prompt(server: FakeGeminiServer) -> None:
    server.queue_reply(GeminiReply(finish_reason="SAFETY"))
    filtered = send(google(server, chat(user("x")))).json()
    assert "content" not in filtered["candidates"][0]
    assert filtered["candidates"][0]["finishReason"] == "SAFETY"
    assert provider.parse_response(filtered)["choices"][0]["finish_reason"] == "content_filter"
    server.queue_reply(GeminiReply(block_reason="PROHIBITED_CONTENT"))
    blocked = send(google(server, chat(user("x")))).json()
    assert "candidates" not in blocked
    assert blocked["promptFeedback"]["blockReason"] == "PROHIBITED_CONTENT"
    parsed = provider.parse_response(blocked)
    assert parsed["choices"][0]["finish_reason"] == "content_filter"
    assert parsed["prompt_feedback"]["blockReason"] == "PROHIBITED_CONTENT"


def test_reply_function(server: FakeGeminiServer) -> None:
    server.reply_with(lambda body: GeminiReply("tools seen") if body.get("tools") else None)
    tool = {"type": "function", "function": {"name": "f"}}
    with_tools = send(google(server, chat(user("x"), tools=[tool]))).json()
    assert with_tools["candidates"][0]["content"]["parts"] == [{"text": "tools seen"}]
    plain = send(google(server, chat(user("x")))).json()
    assert plain["candidates"][0]["content"]["parts"][0]["text"].startswith("Simulated")


def without_ids(response: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in response.items() if k not in ("id", "created")}
    for choice in out["choices"]:
        for call in choice["message"].get("tool_calls") or ():
            call.pop("id")
    return out


@pytest.mark.parametrize(
    "reply",
    [
        None,
        GeminiReply("Sure: it is sunny today.", thoughts="Think first.", thought_signature="s"),
        GeminiReply(function_calls=[{"name": "a", "args": {"x": 1}}, {"name": "b", "args": {}}]),
        GeminiReply(block_reason="SAFETY"),
    ],
)
def test_stream_assembles_to_the_non_stream_answer(
    server: FakeGeminiServer, reply: GeminiReply | None
) -> None:
    body = chat(user("Is it sunny?"), reasoning_effort="low")
    if reply is not None:
        server.queue_reply(reply, times=2)
    whole = provider.parse_response(send(google(server, body)).json(), created=1)
    streamed = stream(google(server, body, stream=True))
    assert without_ids(streamed) == without_ids(whole)


def test_stream_without_sse_is_a_json_array(server: FakeGeminiServer) -> None:
    wire = google(server, chat(user("Tell me more")), stream=True)
    url = wire.url.replace("?alt=sse", "")
    answer = httpx2.post(url, json=wire.json, headers=wire.headers)
    events = answer.json()
    assert isinstance(events, list) and len(events) > 1
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events).startswith(
        "Simulated answer to: Tell me more"
    )


def test_validation_errors(server: FakeGeminiServer) -> None:
    url = GeminiEndpoint.google_ai(server.url).model_url("gemini-2.5-flash")
    headers = {"x-goog-api-key": KEY}
    empty = httpx2.post(url, json={"contents": []}, headers=headers)
    assert (
        error_of(empty)["message"]
        == "* GenerateContentRequest.contents: contents is not specified\n"
    )
    role = httpx2.post(
        url, json={"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, headers=headers
    )
    assert error_of(role)["message"] == "Please use a valid role: user, model."
    parts = httpx2.post(url, json={"contents": [{"role": "user", "parts": []}]}, headers=headers)
    assert "must not be empty" in error_of(parts)["message"]
    unknown = httpx2.get(server.url + "/v1beta/nothing", headers=headers)
    assert unknown.status_code == 404


def test_fail_next_uses_googles_error_shape(server: FakeGeminiServer) -> None:
    wire = google(server, chat(user("x")))
    server.fail_next(429, headers={"retry-after": "3"})
    server.fail_next(
        503, body={"error": {"code": 503, "message": "custom", "status": "UNAVAILABLE"}}
    )
    throttled = send(wire)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "3"
    assert error_of(throttled)["status"] == "RESOURCE_EXHAUSTED"
    assert error_of(send(wire))["message"] == "custom"
    assert send(wire).status_code == 200


def test_requests_are_recorded(server: FakeGeminiServer) -> None:
    wire = google(server, chat(user("record me")))
    send(wire)
    [recorded] = server.requests
    assert recorded.method == "POST"
    assert recorded.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert recorded.headers["x-goog-api-key"] == KEY
    assert recorded.body == wire.json
    assert server.count(recorded.path) == 1 and server.count() == 1
    server.reset()
    assert server.count() == 0


# -- cachedContents -----------------------------------------------------------------------------


def cached_body(**params: Any) -> dict[str, Any]:
    return chat(
        {"role": "system", "content": DOC, "cache_control": {"type": "ephemeral"}},
        user("First question?"),
        **params,
    )


def create(server: FakeGeminiServer, wire: GeminiRequest, ttl: int = 600) -> httpx2.Response:
    plan = wire.context_cache
    assert plan is not None
    return httpx2.post(plan.create_url, json=plan.create_body(ttl), headers=wire.headers)


@pytest.mark.parametrize("endpoint", ["google_ai", "vertex"])
def test_cached_contents_lifecycle(
    server: FakeGeminiServer, clock: FakeClock, endpoint: str
) -> None:
    make = google if endpoint == "google_ai" else vertex
    wire = make(server, cached_body())
    plan = wire.context_cache
    assert plan is not None and not plan.below_minimum

    created = create(server, wire, ttl=600)
    assert created.status_code == 200, created.text
    cache = parse_cached_content(created.json())
    assert cache.expire_time == NOW + 600
    assert cache.total_token_count == plan.prefix_tokens
    assert cache.model == plan.model
    assert cache.display_name == plan.display_name
    if endpoint == "vertex":
        assert cache.name.startswith("projects/proj/locations/us-east4/cachedContents/")
    else:
        assert cache.name.startswith("cachedContents/")

    # Use it: the prefix is not sent again and is reported as cached.
    used = wire.with_cached_content(cache.name)
    answer = send(used)
    assert answer.status_code == 200, answer.text
    usage = answer.json()["usageMetadata"]
    assert usage["cachedContentTokenCount"] == plan.prefix_tokens
    assert usage["promptTokenCount"] == plan.prefix_tokens + 4  # + "First question?"
    normalized = provider.parse_response(answer.json())["usage"]
    assert normalized["prompt_tokens_details"]["cached_tokens"] == plan.prefix_tokens
    assert normalized["cache_creation_input_tokens"] == 0

    # Get, list, extend.
    url = plan.endpoint.cached_content_url(cache.name)
    got = httpx2.get(url, headers=wire.headers).json()
    assert got["name"] == cache.name and "contents" not in got
    listed = httpx2.get(plan.create_url, headers=wire.headers).json()
    assert [c["name"] for c in listed["cachedContents"]] == [cache.name]
    clock.advance(500)
    patch_url, patch_body = plan.endpoint.ttl_update(cache.name, 900)
    patched = httpx2.patch(patch_url, json=patch_body, headers=wire.headers)
    assert parse_cached_content(patched.json()).expire_time == NOW + 500 + 900
    clock.advance(899)
    assert send(used).status_code == 200

    # Expiry: the cache is gone, and using it says so.
    clock.advance(1)
    gone = send(used)
    assert gone.status_code == (403 if endpoint == "google_ai" else 404)
    assert cached_content_gone(gone.status_code, gone.json())
    assert provider_error_for_status(gone.status_code) in (PermissionDeniedError, NotFoundError)
    assert httpx2.get(url, headers=wire.headers).status_code == gone.status_code
    assert httpx2.get(plan.create_url, headers=wire.headers).json() == {}

    # Recreate, then delete.
    again = parse_cached_content(create(server, wire).json())
    assert again.name != cache.name
    assert send(wire.with_cached_content(again.name)).status_code == 200
    deleted = httpx2.delete(plan.endpoint.cached_content_url(again.name), headers=wire.headers)
    assert (deleted.status_code, deleted.json()) == (200, {})
    after = send(wire.with_cached_content(again.name))
    assert cached_content_gone(after.status_code, after.json())
    assert server.cached_contents == []


def test_google_ai_missing_cache_message(server: FakeGeminiServer) -> None:
    wire = google(server, cached_body())
    answer = send(wire.with_cached_content("doesnotexist"))
    assert answer.status_code == 403
    assert error_of(answer) == {
        "code": 403,
        "message": "CachedContent not found (or permission denied)",
        "status": "PERMISSION_DENIED",
    }


@pytest.mark.parametrize("endpoint", ["google_ai", "vertex"])
def test_cached_content_with_system_tools_or_tool_config_is_refused(
    server: FakeGeminiServer, endpoint: str
) -> None:
    make = google if endpoint == "google_ai" else vertex
    wire = make(server, cached_body())
    name = parse_cached_content(create(server, wire).json()).name
    used = wire.with_cached_content(name)
    for extra in (
        {"systemInstruction": {"parts": [{"text": "again"}]}},
        {"tools": [{"functionDeclarations": [{"name": "f"}]}]},
        {"toolConfig": {"functionCallingConfig": {"mode": "AUTO"}}},
    ):
        answer = httpx2.post(used.url, json={**used.json, **extra}, headers=used.headers)
        error = error_of(answer)
        assert (answer.status_code, error["status"]) == (400, "INVALID_ARGUMENT")
        if endpoint == "google_ai":
            assert error["message"].startswith(
                "CachedContent can not be used with GenerateContent request setting "
                "system_instruction, tools or tool_config."
            )
        else:
            assert error["message"] == (
                "Tool config, tools and system instruction should not be set in the request "
                "when using cached content."
            )


def test_cache_model_must_match(server: FakeGeminiServer) -> None:
    wire = google(server, cached_body())
    name = parse_cached_content(create(server, wire).json()).name
    pro = google(server, {**cached_body(), "model": "gemini/gemini-2.5-pro"})
    answer = send(pro.with_cached_content(name))
    assert error_of(answer)["message"] == (
        "Model used by GenerateContent request (models/gemini-2.5-pro) and CachedContent "
        "(models/gemini-2.5-flash) has to be the same."
    )


def test_cache_below_the_minimum_is_refused(server: FakeGeminiServer) -> None:
    small = chat(
        {"role": "system", "content": "Tiny.", "cache_control": {"type": "ephemeral"}}, user("x")
    )
    wire = google(server, small)
    assert wire.context_cache is not None and wire.context_cache.below_minimum
    refused = create(server, wire)
    assert error_of(refused) == {
        "code": 400,
        "message": "Cached content is too small. total_token_count=2, min_total_token_count=1024",
        "status": "INVALID_ARGUMENT",
    }
    vertex_refused = create(server, vertex(server, small))
    assert error_of(vertex_refused)["message"] == (
        "The cached content is of 2 tokens. The minimum token count to start caching is 2048."
    )


def test_vertex_refuses_caches_under_2048_tokens_whatever_the_model() -> None:
    """Google AI takes 1,024 tokens for gemini-2.5-flash; Vertex wants 2,048 of every
    model: deja plans no cache under it on Vertex (no refused create, no wasted call)."""
    mid = chat(
        {
            "role": "system",
            "content": "The handbook says many things. " * 200,  # ~1,550 tokens
            "cache_control": {"type": "ephemeral"},
        },
        user("x"),
    )
    with FakeGeminiServer(api_key=KEY) as server:
        on_google = google(server, mid).context_cache
        on_vertex = vertex(server, mid).context_cache
        assert on_google is not None and on_vertex is not None
        assert (on_google.minimum_tokens, on_google.below_minimum) == (1024, False)
        assert (on_vertex.minimum_tokens, on_vertex.below_minimum) == (2048, True)
        refused = create(server, vertex(server, mid))
        assert refused.status_code == 400
        assert "minimum token count to start caching is 2048" in error_of(refused)["message"]


def test_cache_create_validation(server: FakeGeminiServer) -> None:
    wire = google(server, cached_body())
    plan = wire.context_cache
    assert plan is not None
    body = plan.create_body(60)
    bad_ttl = httpx2.post(plan.create_url, json={**body, "ttl": "an hour"}, headers=wire.headers)
    assert bad_ttl.status_code == 400
    both = httpx2.post(
        plan.create_url,
        json={**body, "expireTime": "2030-01-01T00:00:00Z"},
        headers=wire.headers,
    )
    assert "Only one of ttl and expireTime" in error_of(both)["message"]
    bare_model = httpx2.post(
        plan.create_url, json={**body, "model": "gemini-2.5-flash"}, headers=wire.headers
    )
    assert bare_model.status_code == 400
    until = {k: v for k, v in body.items() if k != "ttl"}
    until["expireTime"] = "2023-11-14T22:21:40.5Z"  # NOW + 500.5 s
    expiring = httpx2.post(plan.create_url, json=until, headers=wire.headers)
    assert parse_cached_content(expiring.json()).expire_time == NOW + 500.5
    default = httpx2.post(
        plan.create_url, json={k: v for k, v in body.items() if k != "ttl"}, headers=wire.headers
    )
    assert parse_cached_content(default.json()).expire_time == NOW + 3600


def test_caches_are_scoped_to_their_endpoint(server: FakeGeminiServer) -> None:
    east = vertex(server, cached_body())
    name = parse_cached_content(create(server, east).json()).name
    west = provider.build_request(
        {**cached_body(), "model": "vertex_ai/gemini-2.5-flash"},
        api_base=server.url,
        access_token=server.issue_token(),
        vertex_project="proj",
        vertex_location="us-west1",
    )
    ident = name.rsplit("/", 1)[-1]
    answer = send(west.with_cached_content(ident))
    assert answer.status_code == 404
    google_ai = google(server, cached_body())
    assert send(google_ai.with_cached_content(ident)).status_code == 403
    [live] = server.cached_contents
    assert live["scope"] == "projects/proj/locations/us-east4"
    assert httpx2.get(west.context_cache.create_url, headers=west.headers).json() == {}  # type: ignore[union-attr]


def test_the_whole_context_cache_flow(server: FakeGeminiServer, clock: FakeClock) -> None:
    """What the client does: plan → look up the digest → create → use → on loss, recreate."""
    names: dict[str, str] = {}  # the client's digest → cached content name bookkeeping

    def call(wire: GeminiRequest) -> dict[str, Any]:
        plan = wire.context_cache
        assert plan is not None and not plan.below_minimum
        for _ in range(2):
            name = names.get(plan.digest)
            if name is None:
                made = create(server, wire, ttl=plan.ttl_seconds)
                name = names[plan.digest] = parse_cached_content(made.json()).name
            answer = send(wire.with_cached_content(name))
            if answer.status_code == 200:
                return dict(answer.json())
            assert cached_content_gone(answer.status_code, answer.json())
            del names[plan.digest]
        raise AssertionError("the cache could not be recreated")

    first = call(google(server, cached_body()))
    second = call(google(server, cached_body(temperature=0.1)))  # same prefix, same cache
    assert len(server.cached_contents) == 1
    assert (
        first["usageMetadata"]["cachedContentTokenCount"]
        == second["usageMetadata"]["cachedContentTokenCount"]
    )
    clock.advance(301)  # the marker's default 5 minutes
    third = call(google(server, cached_body()))
    assert third["usageMetadata"]["cachedContentTokenCount"] > 0
    creates = [
        r for r in server.requests if r.path.endswith("/cachedContents") and r.method == "POST"
    ]
    assert len(creates) == 2
