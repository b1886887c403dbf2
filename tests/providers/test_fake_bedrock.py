"""The simulated Bedrock runtime over real HTTP: SigV4, prompt caching, refusals, streams,
and deja's Bedrock adapter talking to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import orjson
import pytest

from deja._fake_bedrock import BedrockReply, FakeBedrockServer
from deja.errors import ProviderError, RateLimitError, ServerError
from deja.providers.bedrock import AwsCredentials, BedrockProvider, sign_request
from deja.providers.eventstream import EventStreamDecoder, exception_error, to_event
from deja.streaming import StreamAssembler
from deja.testing import FakeClock

CREDENTIALS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "tok-1")
REGION = "us-east-1"
SONNET_45 = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET_37 = "anthropic.claude-3-7-sonnet-20250219-v1:0"
NOVA = "amazon.nova-lite-v1:0"
DOCUMENT = "The quick brown fox jumps over the lazy dog. " * 120  # ~1,350 tokens
EPHEMERAL = {"type": "ephemeral"}
provider = BedrockProvider()


@pytest.fixture(scope="module")
def cache_clock() -> FakeClock:
    """Drives the server's cache lifetimes, so expiry needs no sleeping."""
    return FakeClock(start=0.0)


@pytest.fixture(scope="module")
def shared(cache_clock: FakeClock) -> Iterator[FakeBedrockServer]:
    with FakeBedrockServer(credentials=CREDENTIALS, region=REGION, clock=cache_clock) as server:
        yield server


@pytest.fixture
def server(shared: FakeBedrockServer) -> FakeBedrockServer:
    shared.reset()
    return shared


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(timeout=10) as client:
        yield client


def chat(model: str = SONNET_45, **extra: Any) -> dict[str, Any]:
    return {
        "model": f"bedrock/{model}",
        "messages": [
            {"role": "system", "content": DOCUMENT, "cache_control": EPHEMERAL},
            {"role": "user", "content": "Summarize."},
        ],
        **extra,
    }


def send(
    http: httpx2.Client, server: FakeBedrockServer, body: dict[str, Any], **options: Any
) -> httpx2.Response:
    """Build, sign and send ``body`` through deja's adapter, as the client will."""
    wire = provider.build_request(
        body, region=REGION, credentials=CREDENTIALS, api_base=server.url, **options
    )
    return http.post(wire.url, content=wire.content, headers=wire.headers)


def send_raw(
    http: httpx2.Client,
    server: FakeBedrockServer,
    model: str,
    payload: Any,
    *,
    operation: str = "converse",
) -> httpx2.Response:
    """Sign and send a Converse body as given, bypassing the adapter's safeguards."""
    model_path = model.replace(":", "%3A")
    url = f"{server.url}/model/{model_path}/{operation}"
    content = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    headers = sign_request(
        "POST",
        url,
        {"content-type": "application/json"},
        content,
        region=REGION,
        credentials=CREDENTIALS,
    )
    return http.post(url, content=content, headers=headers)


def stream_chunks(response: httpx2.Response, *, model: str = SONNET_45) -> tuple[list[Any], Any]:
    decoder = EventStreamDecoder()
    translator = provider.stream_translator(model=model, response_id="req-1", created=1)
    chunks: list[dict[str, Any]] = []
    for piece in response.iter_bytes():
        for message in decoder.feed(piece):
            chunks.extend(translator.feed(to_event(message)))
    decoder.close()
    return chunks, translator


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    assert assembler.complete
    return assembler.response()


# -- SigV4 ----------------------------------------------------------------------------------


def test_a_signed_request_is_accepted(http: httpx2.Client, server: FakeBedrockServer) -> None:
    response = send(http, server, chat())
    assert response.status_code == 200, response.text
    [recorded] = server.requests
    # The model id travels percent-encoded, and the signature was computed over that path.
    assert recorded.path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    assert recorded.headers["x-amz-security-token"] == "tok-1"
    assert response.headers["x-amzn-requestid"]
    assert server.count("converse") == 1 and server.count("converse-stream") == 0


def test_a_body_altered_after_signing_is_rejected(
    http: httpx2.Client, server: FakeBedrockServer
) -> None:
    wire = provider.build_request(
        chat(), region=REGION, credentials=CREDENTIALS, api_base=server.url
    )
    altered = wire.content.replace(b"Summarize.", b"Summarise.")
    response = http.post(wire.url, content=altered, headers=wire.headers)
    assert response.status_code == 403
    assert response.headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert response.json() == {
        "message": "The request signature we calculated does not match the signature you "
        "provided. Check your AWS Secret Access Key and signing method. Consult the service "
        "documentation for details."
    }


@pytest.mark.parametrize(
    ("credentials", "region", "kind"),
    [
        (
            AwsCredentials(CREDENTIALS.access_key, "wrong-secret", "tok-1"),
            REGION,
            "InvalidSignatureException",
        ),
        (
            AwsCredentials("AKIDOTHER", CREDENTIALS.secret_key, "tok-1"),
            REGION,
            "UnrecognizedClientException",
        ),
        (
            AwsCredentials(CREDENTIALS.access_key, CREDENTIALS.secret_key, "tok-2"),
            REGION,
            "UnrecognizedClientException",
        ),
        (CREDENTIALS, "eu-west-1", "InvalidSignatureException"),
    ],
)
def test_wrong_credentials_or_scope_are_rejected(
    http: httpx2.Client,
    server: FakeBedrockServer,
    credentials: AwsCredentials,
    region: str,
    kind: str,
) -> None:
    wire = provider.build_request(
        chat(), region=region, credentials=credentials, api_base=server.url
    )
    response = http.post(wire.url, content=wire.content, headers=wire.headers)
    assert response.status_code == 403
    assert response.headers["x-amzn-errortype"] == kind


def test_an_unsigned_request_is_rejected(http: httpx2.Client, server: FakeBedrockServer) -> None:
    response = http.post(f"{server.url}/model/{NOVA}/converse", json={"messages": []})
    assert response.status_code == 403
    assert response.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"


def test_a_server_without_credentials_checks_no_signature(http: httpx2.Client) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}
    with FakeBedrockServer() as open_server:
        response = http.post(f"{open_server.url}/model/{NOVA}/converse", json=body)
    assert response.status_code == 200
    assert response.json()["output"]["message"]["content"][0]["text"].startswith(
        "Simulated answer to: Hi"
    )


# -- prompt caching -------------------------------------------------------------------------


def test_the_first_request_writes_and_the_next_reads(
    http: httpx2.Client, server: FakeBedrockServer
) -> None:
    first = send(http, server, chat()).json()["usage"]
    second = send(http, server, chat()).json()["usage"]
    # inputTokens is what was neither read nor written; totalTokens counts everything.
    assert first["cacheWriteInputTokens"] > 1024
    assert first["cacheReadInputTokens"] == 0
    assert first["cacheDetails"] == [{"ttl": "5m", "inputTokens": first["cacheWriteInputTokens"]}]
    assert second["cacheReadInputTokens"] == first["cacheWriteInputTokens"]
    assert second["cacheWriteInputTokens"] == 0
    assert "cacheDetails" not in second
    assert second["inputTokens"] == first["inputTokens"] == 3  # "Summarize." is ~3 tokens
    for usage in (first, second):
        assert usage["totalTokens"] == (
            usage["inputTokens"]
            + usage["cacheReadInputTokens"]
            + usage["cacheWriteInputTokens"]
            + usage["outputTokens"]
        )


def test_normalized_usage_counts_all_input_and_reads_as_cached(
    http: httpx2.Client, server: FakeBedrockServer
) -> None:
    send(http, server, chat())
    data = send(http, server, chat()).json()
    usage = provider.parse_response(data, model=SONNET_45)["usage"]
    read = data["usage"]["cacheReadInputTokens"]
    assert usage["prompt_tokens"] == data["usage"]["inputTokens"] + read
    assert usage["prompt_tokens_details"]["cached_tokens"] == read
    assert usage["cache_read_input_tokens"] == read
    assert usage["total_tokens"] == data["usage"]["totalTokens"]


def test_entries_expire_on_the_injected_clock(
    http: httpx2.Client, server: FakeBedrockServer, cache_clock: FakeClock
) -> None:
    send(http, server, chat())
    cache_clock.advance(299)
    assert send(http, server, chat()).json()["usage"]["cacheReadInputTokens"] > 0
    cache_clock.advance(299)  # the read refreshed the lifetime: still there
    assert send(http, server, chat()).json()["usage"]["cacheReadInputTokens"] > 0
    cache_clock.advance(301)
    expired = send(http, server, chat()).json()["usage"]
    assert expired["cacheReadInputTokens"] == 0
    assert expired["cacheWriteInputTokens"] > 0


def test_a_1h_entry_outlives_five_minutes_and_is_reported_as_1h(
    http: httpx2.Client, server: FakeBedrockServer, cache_clock: FakeClock
) -> None:
    body = chat()
    body["messages"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    first = send(http, server, body).json()["usage"]
    assert first["cacheDetails"] == [{"ttl": "1h", "inputTokens": first["cacheWriteInputTokens"]}]
    normalized = provider.parse_response(send(http, server, body).json())["usage"]
    assert normalized["cache_read_input_tokens"] == first["cacheWriteInputTokens"]
    cache_clock.advance(1800)
    assert send(http, server, body).json()["usage"]["cacheReadInputTokens"] > 0
    cache_clock.advance(3601)
    assert send(http, server, body).json()["usage"]["cacheReadInputTokens"] == 0


def test_the_adapter_downgrades_1h_where_bedrock_would_refuse_it(
    http: httpx2.Client, server: FakeBedrockServer
) -> None:
    raw = {
        "system": [{"text": DOCUMENT}, {"cachePoint": {"type": "default", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": [{"text": "Summarize."}]}],
    }
    refused = send_raw(http, server, SONNET_37, raw)
    assert refused.status_code == 400
    assert refused.headers["x-amzn-errortype"] == "ValidationException"
    assert "ttl of 1h" in refused.json()["message"]
    body = chat(SONNET_37)
    body["messages"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    wire = provider.build_request(body, region=REGION, credentials=CREDENTIALS, api_base=server.url)
    assert wire.ttl_downgrades == 1
    response = http.post(wire.url, content=wire.content, headers=wire.headers)
    assert response.status_code == 200
    assert response.json()["usage"]["cacheDetails"][0]["ttl"] == "5m"


def test_a_prefix_below_the_minimum_is_not_cached(
    http: httpx2.Client, server: FakeBedrockServer
) -> None:
    body = chat()
    body["messages"][0]["content"] = "Short system prompt."
    for _ in range(2):
        usage = send(http, server, body).json()["usage"]
        assert usage["cacheReadInputTokens"] == usage["cacheWriteInputTokens"] == 0


def test_nova_caches_its_system_prompt(http: httpx2.Client, server: FakeBedrockServer) -> None:
    send(http, server, chat(NOVA))
    assert send(http, server, chat(NOVA)).json()["usage"]["cacheReadInputTokens"] > 1000


# -- refusals -------------------------------------------------------------------------------


def five_cache_points() -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for i in range(5):
        content += [{"text": f"Part {i}: {DOCUMENT}"}, {"cachePoint": {"type": "default"}}]
    return {"messages": [{"role": "user", "content": content}]}


@pytest.mark.parametrize(
    ("model", "payload", "message"),
    [
        (SONNET_45, five_cache_points(), "exceeds the maximum of 4"),
        (
            "anthropic.claude-3-haiku-20240307-v1:0",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"text": "Hi"}, {"cachePoint": {"type": "default"}}],
                    }
                ]
            },
            "does not support prompt caching",
        ),
        (
            NOVA,
            {
                "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
                "toolConfig": {
                    "tools": [
                        {"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}},
                        {"cachePoint": {"type": "default"}},
                    ]
                },
            },
            "cachePoint in toolConfig",
        ),
        (
            SONNET_45,
            {
                "system": [{"text": "a"}, {"cachePoint": {"type": "default"}}],
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"text": "b"},
                            {"cachePoint": {"type": "default", "ttl": "1h"}},
                        ],
                    }
                ],
            },
            "must not come after",
        ),
        (
            SONNET_45,
            {"messages": [{"role": "assistant", "content": [{"text": "Hi"}]}]},
            "start with a user",
        ),
        (
            SONNET_45,
            {
                "messages": [
                    {"role": "user", "content": [{"text": "Hi"}]},
                    {"role": "user", "content": [{"text": "again"}]},
                ]
            },
            "alternate",
        ),
        (SONNET_45, {"messages": [{"role": "user", "content": [{"text": " "}]}]}, "is blank"),
        (
            SONNET_45,
            {"messages": [{"role": "user", "content": [{"text": "Hi"}]}], "max_tokens": 5},
            "extraneous key [max_tokens]",
        ),
        (
            SONNET_45,
            {
                "messages": [
                    {"role": "user", "content": [{"text": "Hi"}]},
                    {
                        "role": "assistant",
                        "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}],
                    },
                ]
            },
            "toolConfig field must be defined",
        ),
        (SONNET_45, b"{not json", "Malformed input request"),
    ],
)
def test_bedrock_refusals(
    http: httpx2.Client, server: FakeBedrockServer, model: str, payload: Any, message: str
) -> None:
    response = send_raw(http, server, model, payload)
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"] == "ValidationException"
    assert message in response.json()["message"]


def test_the_adapter_never_sends_a_fifth_cache_point(
    http: httpx2.Client, server: FakeBedrockServer
) -> None:
    parts = [
        {"type": "text", "text": f"Part {i}: {DOCUMENT}", "cache_control": EPHEMERAL}
        for i in range(5)
    ]
    body = {"model": f"bedrock/{SONNET_45}", "messages": [{"role": "user", "content": parts}]}
    wire = provider.build_request(body, region=REGION, credentials=CREDENTIALS, api_base=server.url)
    assert wire.warnings[0].startswith("caller's cache_control at messages[0].content[0] dropped")
    response = http.post(wire.url, content=wire.content, headers=wire.headers)
    assert response.status_code == 200, response.text


def test_scripted_throttling_then_recovery(http: httpx2.Client, server: FakeBedrockServer) -> None:
    server.fail_next(429, headers={"retry-after": "2"})
    throttled = send(http, server, chat())
    assert throttled.status_code == 429
    assert throttled.headers["x-amzn-errortype"] == "ThrottlingException"
    assert throttled.headers["retry-after"] == "2"
    error = exception_error(throttled.headers["x-amzn-errortype"], throttled.json()["message"])
    assert isinstance(error, RateLimitError) and error.status_code == 429
    assert send(http, server, chat()).status_code == 200


# -- answers --------------------------------------------------------------------------------


def test_default_answers_honour_stop_sequences_and_max_tokens(
    http: httpx2.Client, server: FakeBedrockServer
) -> None:
    body = {"model": f"bedrock/{NOVA}", "messages": [{"role": "user", "content": "Capital?"}]}
    plain = send(http, server, body).json()
    text = plain["output"]["message"]["content"][0]["text"]
    assert text.startswith("Simulated answer to: Capital?")
    assert plain["stopReason"] == "end_turn"
    assert send(http, server, body).json()["output"] == plain["output"]  # deterministic
    stopped = send(http, server, {**body, "stop": ["answer"]}).json()
    assert stopped["stopReason"] == "stop_sequence"
    assert stopped["output"]["message"]["content"][0]["text"] == "Simulated "
    cut = send(http, server, {**body, "max_tokens": 2}).json()
    assert cut["stopReason"] == "max_tokens"
    assert provider.parse_response(cut)["choices"][0]["finish_reason"] == "length"


REPLY = BedrockReply(
    "Let me check the weather.",
    reasoning="The user wants the weather.",
    signature="sig-1",
    tool_uses=[{"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}],
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def test_a_tool_conversation_round_trips_through_the_adapter(
    http: httpx2.Client, server: FakeBedrockServer
) -> None:
    server.queue_reply(REPLY)
    body = {
        "model": f"bedrock/{SONNET_45}",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": TOOLS,
        "tool_choice": "auto",
    }
    first = provider.parse_response(send(http, server, body).json(), model=SONNET_45)
    message = first["choices"][0]["message"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    # The answer goes back as history (thinking with its signature, the call, its result).
    follow_up = {
        **body,
        "messages": [
            *body["messages"],
            message,
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "18°C, sunny"},
        ],
    }
    response = send(http, server, follow_up)
    assert response.status_code == 200, response.text
    sent = server.requests[-1].body["messages"]
    assert sent[1]["content"][0] == {
        "reasoningContent": {
            "reasoningText": {"text": "The user wants the weather.", "signature": "sig-1"}
        }
    }
    assert sent[2]["content"] == [
        {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18°C, sunny"}]}}
    ]


def test_a_stream_assembles_into_what_the_json_answer_parses_to(
    http: httpx2.Client, server: FakeBedrockServer
) -> None:
    body = {
        "model": f"bedrock/{SONNET_45}",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": TOOLS,
    }
    server.queue_reply(REPLY, times=2)
    whole = send(http, server, body).json()
    streamed = send(http, server, body, stream=True)
    assert streamed.headers["content-type"] == "application/vnd.amazon.eventstream"
    assert server.count("converse-stream") == 1
    chunks, translator = stream_chunks(streamed)
    assert translator.finished
    expected = provider.parse_response(whole, model=SONNET_45, response_id="req-1", created=1)
    assert assemble(chunks) == expected


def test_an_exception_event_mid_stream_raises_the_typed_error(
    http: httpx2.Client, server: FakeBedrockServer
) -> None:
    server.queue_reply(
        BedrockReply(
            "Hello there, friend.",
            stream_exception="throttlingException",
            exception_after=2,
            exception_message="Too many tokens, please wait before trying again.",
        )
    )
    response = send(http, server, chat(), stream=True)
    assert response.status_code == 200  # the failure comes inside the stream
    decoder = EventStreamDecoder()
    translator = provider.stream_translator()
    seen: list[dict[str, Any]] = []
    with pytest.raises(RateLimitError, match="Too many tokens") as info:
        for message in decoder.feed(response.content):
            seen.extend(translator.feed(to_event(message)))
    assert info.value.status_code == 429
    assert [c["choices"][0]["delta"] for c in seen] == [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
    ]
    assert not translator.finished


def test_a_model_stream_error_is_a_server_error(
    http: httpx2.Client, server: FakeBedrockServer
) -> None:
    server.queue_reply(BedrockReply("x", stream_exception="modelStreamErrorException"))
    response = send(http, server, chat(), stream=True)
    with pytest.raises(ServerError, match="modelStreamErrorException"):
        stream_chunks(response)


def test_a_connection_dropped_mid_frame_is_detected(
    http: httpx2.Client, server: FakeBedrockServer
) -> None:
    server.queue_reply(BedrockReply("One two three four.", abort_after_events=3))
    decoder = EventStreamDecoder()
    translator = provider.stream_translator()
    received = b""
    with (
        http.stream("POST", **_streamed(server, chat())) as response,
        pytest.raises(httpx2.HTTPError),
    ):
        for piece in response.iter_bytes():
            received += piece
    for message in decoder.feed(received):
        translator.feed(to_event(message))
    assert not decoder.finished
    with pytest.raises(ProviderError, match="ended inside a message"):
        decoder.close()
    assert not translator.finished


def _streamed(server: FakeBedrockServer, body: dict[str, Any]) -> dict[str, Any]:
    wire = provider.build_request(
        body, region=REGION, credentials=CREDENTIALS, api_base=server.url, stream=True
    )
    return {"url": wire.url, "content": wire.content, "headers": wire.headers}
