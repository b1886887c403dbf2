"""The simulated Anthropic server: its errors, its prompt caching, and deja's requests to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from deja.prices import PriceTable
from deja.providers.anthropic import AnthropicProvider
from deja.streaming import SSEDecoder, StreamAssembler
from deja.testing import AnthropicReply, FakeAnthropicServer, FakeClock

KEY = "sk-ant-test"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
MODEL = "claude-sonnet-4-5-20250929"
DOCUMENT = "The quick brown fox jumps over the lazy dog. " * 120  # ~1,350 tokens
EPHEMERAL = {"type": "ephemeral"}
provider = AnthropicProvider()


@pytest.fixture(scope="module")
def cache_clock() -> FakeClock:
    """Drives the server's cache lifetimes, so expiry needs no sleeping."""
    return FakeClock(start=0.0)


@pytest.fixture(scope="module")
def shared(cache_clock: FakeClock) -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key=KEY, clock=cache_clock) as server:
        yield server


@pytest.fixture
def server(shared: FakeAnthropicServer) -> FakeAnthropicServer:
    shared.reset()
    return shared


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=10) as client:
        yield client


def post(
    http: httpx2.Client, server: FakeAnthropicServer, body: Any, headers: Any = HEADERS
) -> httpx2.Response:
    return http.post(server.url + "/v1/messages", json=body, headers=headers)


def message(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 100,
        "system": [{"type": "text", "text": DOCUMENT, "cache_control": EPHEMERAL}],
        "messages": [{"role": "user", "content": "Summarize."}],
        **extra,
    }


# -- Anthropic's errors ----------------------------------------------------------------------


def test_a_fifth_breakpoint_gets_anthropics_400(
    http: httpx2.Client, server: FakeAnthropicServer
) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 10,
        "messages": [
            {
                "role": "user" if i % 2 == 0 else "assistant",
                "content": [{"type": "text", "text": f"m{i}", "cache_control": EPHEMERAL}],
            }
            for i in range(5)
        ],
    }
    response = post(http, server, body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"] == {
        "type": "invalid_request_error",
        "message": "A maximum of 4 blocks with cache_control may be provided. Found 5.",
    }
    assert payload["request_id"].startswith("req_")


def test_deja_never_sends_a_fifth_breakpoint(
    http: httpx2.Client, server: FakeAnthropicServer
) -> None:
    body = {
        "model": f"anthropic/{MODEL}",
        "messages": [
            {
                "role": "user" if i % 2 == 0 else "assistant",
                "content": DOCUMENT + str(i),
                "cache_control": EPHEMERAL,
            }
            for i in range(5)
        ],
    }
    request = provider.build_request(body, api_base=server.url, api_key=KEY)
    assert request.plan.not_placed == {"over_limit": 1}
    response = http.post(request.url, json=request.json, headers=request.headers)
    assert response.status_code == 200
    assert server.requests[-1].body == request.json  # recorded exactly as sent


@pytest.mark.parametrize(
    ("headers", "status", "kind", "text"),
    [
        ({"x-api-key": KEY}, 400, "invalid_request_error", "anthropic-version: header is required"),
        (
            {"x-api-key": "sk-wrong", "anthropic-version": "2023-06-01"},
            401,
            "authentication_error",
            "invalid x-api-key",
        ),
        (
            {"anthropic-version": "2023-06-01"},
            401,
            "authentication_error",
            "x-api-key header is required",
        ),
        (
            {"authorization": "Bearer sk-wrong", "anthropic-version": "2023-06-01"},
            401,
            "authentication_error",
            "invalid x-api-key",
        ),
    ],
)
def test_header_errors(
    http: httpx2.Client,
    server: FakeAnthropicServer,
    headers: dict[str, str],
    status: int,
    kind: str,
    text: str,
) -> None:
    response = post(http, server, message(), headers)
    assert response.status_code == status
    assert response.json()["error"] == {"type": kind, "message": text}


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}]},
            "max_tokens: Field required",
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            'messages: Unexpected role "system"',
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": ""}]},
            "must be non-empty",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "system": [{"type": "text", "text": "a", "cache_control": EPHEMERAL}],
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "text",
                                "text": "b",
                                "cache_control": {"type": "ephemeral", "ttl": "1h"},
                            }
                        ],
                    }
                ],
            },
            "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block",
        ),
    ],
)
def test_body_errors(
    http: httpx2.Client, server: FakeAnthropicServer, body: dict[str, Any], text: str
) -> None:
    response = post(http, server, body)
    assert response.status_code == 400
    assert text in response.json()["error"]["message"]


def test_scripted_failures(http: httpx2.Client, server: FakeAnthropicServer) -> None:
    server.fail_next(529)
    server.fail_next(429, headers={"retry-after": "3"})
    first = post(http, server, message())
    assert first.status_code == 529
    assert first.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    second = post(http, server, message())
    assert (second.status_code, second.headers["retry-after"]) == (429, "3")
    assert post(http, server, message()).status_code == 200
    assert server.count("/v1/messages") == 3


# -- prompt caching simulation ----------------------------------------------------------------


def usage_of(response: httpx2.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    usage: dict[str, Any] = response.json()["usage"]
    return usage


def test_first_request_writes_the_prefix_and_a_repeat_reads_it(
    http: httpx2.Client, server: FakeAnthropicServer
) -> None:
    first = usage_of(post(http, server, message()))
    assert first["cache_read_input_tokens"] == 0
    assert first["cache_creation_input_tokens"] > 1024
    assert first["cache_creation"] == {
        "ephemeral_5m_input_tokens": first["cache_creation_input_tokens"],
        "ephemeral_1h_input_tokens": 0,
    }
    second = usage_of(post(http, server, message()))
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] == 0
    assert second["input_tokens"] == first["input_tokens"]
    # A different question after the same prefix still reads it.
    other = message(messages=[{"role": "user", "content": "Translate it."}])
    assert (
        usage_of(post(http, server, other))["cache_read_input_tokens"]
        == second["cache_read_input_tokens"]
    )


def test_one_hour_writes_are_split_out(http: httpx2.Client, server: FakeAnthropicServer) -> None:
    body = message(
        system=[
            {"type": "text", "text": DOCUMENT, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": DOCUMENT + " And more.", "cache_control": EPHEMERAL}
                ],
            }
        ],
    )
    usage = usage_of(post(http, server, body))
    split = usage["cache_creation"]
    assert split["ephemeral_1h_input_tokens"] > 1024
    assert split["ephemeral_5m_input_tokens"] > 1024
    assert usage["cache_creation_input_tokens"] == sum(split.values())


def test_entries_expire_with_their_lifetime(
    http: httpx2.Client, server: FakeAnthropicServer, cache_clock: FakeClock
) -> None:
    clock = cache_clock
    post(http, server, message())
    clock.advance(299)
    assert usage_of(post(http, server, message()))["cache_read_input_tokens"] > 0  # refreshed
    clock.advance(299)
    assert usage_of(post(http, server, message()))["cache_read_input_tokens"] > 0
    clock.advance(301)
    expired = usage_of(post(http, server, message()))
    assert expired["cache_read_input_tokens"] == 0
    assert expired["cache_creation_input_tokens"] > 0


def test_a_prefix_below_the_minimum_is_not_cached(
    http: httpx2.Client, server: FakeAnthropicServer
) -> None:
    body = message(system=[{"type": "text", "text": "Short.", "cache_control": EPHEMERAL}])
    for _ in range(2):
        usage = usage_of(post(http, server, body))
        assert usage["cache_creation_input_tokens"] == usage["cache_read_input_tokens"] == 0


def test_a_longer_conversation_reads_the_earlier_breakpoint(
    http: httpx2.Client, server: FakeAnthropicServer
) -> None:
    first = usage_of(post(http, server, message()))
    longer = message(
        messages=[
            {"role": "user", "content": "Summarize."},
            {"role": "assistant", "content": "A fox jumps."},
            {
                "role": "user",
                "content": [{"type": "text", "text": DOCUMENT, "cache_control": EPHEMERAL}],
            },
        ]
    )
    usage = usage_of(post(http, server, longer))
    assert usage["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert usage["cache_creation_input_tokens"] > 1024  # the new turn, up to the new breakpoint


# -- replies and streams ----------------------------------------------------------------------


def test_default_and_scripted_replies(http: httpx2.Client, server: FakeAnthropicServer) -> None:
    answer = post(http, server, message()).json()
    assert answer["type"] == "message" and answer["role"] == "assistant"
    assert answer["id"].startswith("msg_")
    assert answer["content"][0]["text"].startswith("Simulated answer to: Summarize.")
    assert answer["stop_reason"] == "end_turn"
    server.queue_reply(
        AnthropicReply(tool_uses=[{"id": "toolu_1", "name": "f", "input": {"a": 1}}])
    )
    scripted = post(http, server, message()).json()
    assert scripted["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}
    ]
    assert scripted["stop_reason"] == "tool_use"
    limited = post(http, server, message(max_tokens=2)).json()
    assert limited["stop_reason"] == "max_tokens"


def test_stream_events_follow_anthropics_order(
    http: httpx2.Client, server: FakeAnthropicServer
) -> None:
    server.queue_reply(
        AnthropicReply("Hi there.", thinking="Hmm.", tool_uses=[{"name": "f", "input": {"q": "x"}}])
    )
    response = post(http, server, message(stream=True))
    assert response.headers["content-type"].startswith("text/event-stream")
    assert b"event: message_start\ndata: " in response.content
    decoder = SSEDecoder()
    events = [e for e in decoder.feed(response.content) + decoder.flush() if isinstance(e, dict)]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[2] == "ping"
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    delta_kinds = {e["delta"]["type"] for e in events if e["type"] == "content_block_delta"}
    assert delta_kinds == {"thinking_delta", "signature_delta", "text_delta", "input_json_delta"}


# -- end to end: deja's adapter against the server ---------------------------------------------


def run(
    http: httpx2.Client, server: FakeAnthropicServer, body: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    request = provider.build_request(body, api_base=server.url, api_key=KEY, **kwargs)
    created = 1_700_000_000
    if not body.get("stream"):
        response = http.post(request.url, json=request.json, headers=request.headers)
        assert response.status_code == 200, response.text
        return provider.parse_response(response.json(), created=created)
    decoder = SSEDecoder()
    translator = provider.stream_translator(created=created)
    assembler = StreamAssembler()
    with http.stream("POST", request.url, json=request.json, headers=request.headers) as response:
        assert response.status_code == 200
        for data in response.iter_bytes():
            for event in decoder.feed(data):
                assert isinstance(event, dict)
                for chunk in translator.feed(event):
                    assembler.add(chunk)
    assert assembler.complete
    return assembler.response()


def test_injected_system_breakpoint_writes_then_reads_and_costs_less(
    http: httpx2.Client, server: FakeAnthropicServer
) -> None:
    prices = PriceTable.default()
    body = {
        "model": f"anthropic/{MODEL}",
        "messages": [
            {"role": "system", "content": DOCUMENT},
            {"role": "user", "content": "Summarize."},
        ],
    }
    points = [{"location": "message", "role": "system"}]
    first = run(http, server, body, injection_points=points)
    sent = server.requests[-1].body
    assert sent["system"] == [{"type": "text", "text": DOCUMENT, "cache_control": EPHEMERAL}]
    assert server.requests[-1].headers["anthropic-version"] == "2023-06-01"
    assert server.requests[-1].headers["x-api-key"] == KEY
    second = run(http, server, body, injection_points=points)
    written = first["usage"]["cache_creation_input_tokens"]
    assert written > 1024 and first["usage"]["cache_read_input_tokens"] == 0
    assert second["usage"]["cache_read_input_tokens"] == written
    assert second["usage"]["prompt_tokens"] == first["usage"]["prompt_tokens"]
    model = body["model"]
    write_cost = prices.cost(model, first["usage"])
    read_cost = prices.cost(model, second["usage"])
    assert write_cost is not None and read_cost is not None
    assert read_cost < write_cost
    uncached = first["usage"]["prompt_tokens"] - written
    completion = first["usage"]["completion_tokens"]
    assert write_cost == pytest.approx((uncached * 3 + written * 3.75 + completion * 15) / 1e6)
    assert prices.provider_cache_savings(model, second["usage"]) == pytest.approx(
        written * 2.7 / 1e6
    )
    assert prices.provider_cache_savings(model, first["usage"]) == pytest.approx(
        -written * 0.75 / 1e6
    )


def test_stream_and_non_stream_through_the_server_agree(
    http: httpx2.Client, server: FakeAnthropicServer
) -> None:
    body = {
        "model": f"anthropic/{MODEL}",
        "messages": [
            {"role": "system", "content": DOCUMENT},
            {"role": "user", "content": "Weather?"},
        ],
        "cache_control_injection_points": [{"location": "message", "role": "system", "ttl": "1h"}],
    }
    reply = AnthropicReply(
        "Checking.",
        thinking="They want weather.",
        signature="sig",
        tool_uses=[{"id": "toolu_9", "name": "weather", "input": {"city": "Paris"}}],
    )
    server.queue_reply(reply, times=2)
    plain = run(http, server, body)
    streamed = run(http, server, {**body, "stream": True})
    # Same answer; the first wrote the 1h prefix, the second read it.
    assert streamed["choices"] == plain["choices"]
    assert plain["usage"]["cache_creation"]["ephemeral_1h_input_tokens"] > 1024
    assert (
        streamed["usage"]["cache_read_input_tokens"]
        == plain["usage"]["cache_creation_input_tokens"]
    )
    prices = PriceTable.default()
    assert prices.cost(body["model"], plain["usage"]) == pytest.approx(
        (
            (plain["usage"]["prompt_tokens"] - plain["usage"]["cache_creation_input_tokens"]) * 3
            + plain["usage"]["cache_creation_input_tokens"] * 6
            + plain["usage"]["completion_tokens"] * 15
        )
        / 1e6
    )


def test_the_key_as_a_bearer_token_is_accepted(
    http: httpx2.Client, server: FakeAnthropicServer
) -> None:
    """Newer official SDKs send the key as ``Authorization: Bearer``."""
    headers = {"authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"}
    response = post(http, server, message(), headers)
    assert response.status_code == 200, response.text
