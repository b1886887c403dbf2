"""The simulated OpenAI server speaks OpenAI's wire format to httpx and to the official SDK.

httpx2 is the HTTP client the official `openai` SDK is built on (the maintained httpx line).
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from deja.testing import FakeOpenAIServer, RecordedRequest, Reply

CHAT = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
}
WEATHER_CALLS = [
    {
        "id": "call_weather_paris",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
    },
    {"function": {"name": "get_time", "arguments": {"tz": "Europe/Paris"}}},
]


@pytest.fixture(scope="module")
def shared() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def server(shared: FakeOpenAIServer) -> FakeOpenAIServer:
    shared.reset()
    shared.latency = 0.0
    shared.chunk_delay = 0.0
    return shared


@pytest.fixture
def client(server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    # No retries: each test decides exactly how many requests the server sees.
    with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as sdk:
        yield sdk


def sse_events(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, checking the framing on the way."""
    assert text.endswith("\n\n")
    events = text.split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events), events
    return [e.removeprefix("data: ") for e in events]


# -- lifecycle ---------------------------------------------------------------------------------


def test_constructor_does_no_io_and_stop_is_idempotent() -> None:
    server = FakeOpenAIServer()
    with pytest.raises(RuntimeError, match="start"):
        _ = server.base_url
    server.stop()  # never started: nothing to do
    server.start()
    server.start()  # already running: no second socket
    assert server.base_url == server.url + "/v1"
    assert server.url.startswith("http://127.0.0.1:")
    assert "simulated" in repr(server)
    port = int(server.url.rsplit(":", 1)[1])
    server.stop()
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_stop_closes_kept_alive_connections_and_wakes_delayed_handlers() -> None:
    server = FakeOpenAIServer().start()
    with httpx2.Client(base_url=server.base_url) as http:
        assert http.get("/models").status_code == 200  # a kept-alive connection stays open
        server.delay_next(30)
        errors: list[BaseException] = []

        def slow() -> None:
            try:
                httpx2.post(server.base_url + "/chat/completions", json=CHAT, timeout=30)
            except httpx2.HTTPError as exc:
                errors.append(exc)

        thread = threading.Thread(target=slow)
        thread.start()
        while server.count() < 2:
            time.sleep(0.005)
        started = time.monotonic()
        server.stop()
        thread.join(5)
    assert time.monotonic() - started < 2
    assert not thread.is_alive()
    assert errors


def test_docstrings_say_simulated() -> None:
    for obj in (FakeOpenAIServer, Reply, RecordedRequest):
        assert obj.__doc__
    assert "simulated" in (FakeOpenAIServer.__doc__ or "").lower()
    assert "simulated" in (Reply.__doc__ or "").lower()


# -- chat completions --------------------------------------------------------------------------


def test_chat_completion_shape_over_httpx(server: FakeOpenAIServer) -> None:
    with httpx2.Client(base_url=server.base_url) as http:
        first = http.post("/chat/completions", json=CHAT)
        second = http.post("/chat/completions", json=CHAT)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-request-id"].startswith("req_")
    data = first.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert data["id"] != second.json()["id"]
    assert data["model"] == "gpt-4o"
    assert isinstance(data["created"], int)
    assert data["system_fingerprint"].startswith("fp_")
    [choice] = data["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    message = choice["message"]
    assert message["role"] == "assistant"
    assert message["content"].startswith("Simulated answer to: What is the capital of France?")
    assert message["refusal"] is None
    assert "tool_calls" not in message
    # Deterministic: the same question gets the same answer.
    assert second.json()["choices"][0]["message"]["content"] == message["content"]
    usage = data["usage"]
    assert usage["prompt_tokens"] == len("What is the capital of France?") // 4 + 1
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0


async def test_chat_completion_over_async_httpx(server: FakeOpenAIServer) -> None:
    async with httpx2.AsyncClient(base_url=server.base_url) as http:
        response = await http.post("/chat/completions", json=CHAT)
        async with http.stream(
            "POST", "/chat/completions", json={**CHAT, "stream": True}
        ) as streamed:
            text = (await streamed.aread()).decode()
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert sse_events(text)[-1] == "[DONE]"
    assert server.count("/v1/chat/completions") == 2


def test_chat_completion_with_the_sdk(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
        ],
    )
    assert completion.model == "gpt-4o-mini"
    assert "Name a colour." in (completion.choices[0].message.content or "")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    assert completion.usage.prompt_tokens == (len("Be brief.") + len("Name a colour.") + 3) // 4
    assert (completion.system_fingerprint or "").startswith("fp_")
    assert server.requests[-1].headers["authorization"] == "Bearer sk-test"


def test_n_choices_differ_and_are_indexed(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(n=3, **CHAT)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    contents = {c.message.content for c in completion.choices}
    assert len(contents) == 3
    stream = client.chat.completions.create(n=3, stream=True, **CHAT)
    parts: dict[int, str] = {0: "", 1: "", 2: ""}
    finished = set()
    for chunk in stream:
        for choice in chunk.choices:
            parts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    assert finished == {0, 1, 2}
    assert set(parts.values()) == contents


def test_max_tokens_truncates_with_finish_reason_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(max_tokens=2, **CHAT)
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Simulate"


# -- streaming ---------------------------------------------------------------------------------


def test_stream_wire_format_without_usage(server: FakeOpenAIServer) -> None:
    with httpx2.Client(base_url=server.base_url) as http:
        response = http.post("/chat/completions", json={**CHAT, "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert {c["created"] for c in chunks} == {chunks[0]["created"]}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["system_fingerprint"] == chunks[0]["system_fingerprint"] for c in chunks)
    assert all("usage" not in c for c in chunks)  # OpenAI omits it unless asked
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    plain = httpx2.post(server.base_url + "/chat/completions", json=CHAT).json()
    assert text == plain["choices"][0]["message"]["content"]


def test_stream_with_sdk_and_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        stream=True,
        stream_options={"include_usage": True},
        **CHAT,
    )
    chunks = list(stream)
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.total_tokens > 0
    assert usage_chunk.usage.prompt_tokens_details is not None
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text.startswith("Simulated answer to: What is the capital")


async def test_async_sdk_stream(server: FakeOpenAIServer) -> None:
    server.queue_reply(Reply("Paris is the capital.", reasoning_content="Easy."))
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sk", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(stream=True, **CHAT)
        chunks = [chunk async for chunk in stream]
        embedded = await sdk.embeddings.create(model="text-embedding-3-small", input="Paris")
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Paris is the capital."
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(embedded.data[0].embedding) == 16


def test_http_1_0_stream_and_chunked_request_body(server: FakeOpenAIServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    payload = json.dumps({**CHAT, "stream": True}).encode()
    # An HTTP/1.0 client gets the stream delimited by the connection closing, not chunked.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s"
            % (len(payload), payload)
        )
        received = b""
        while data := sock.recv(65536):
            received += data
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert sse_events(body.decode())[-1] == "[DONE]"
    # A request body sent with chunked transfer encoding is read and recorded whole.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        half = len(payload) // 2
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n"
            + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (half, payload[:half], len(payload) - half, payload[half:])
        )
        received = b""
        while data := sock.recv(65536):
            received += data
    assert received.startswith(b"HTTP/1.1 200 ")
    assert server.requests[-1].raw == payload


def test_scripted_chunk_count(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    answer = "The capital of France is Paris, a city on the Seine. " * 3
    server.queue_reply(Reply(answer, chunks=35))
    chunks = list(client.chat.completions.create(stream=True, **CHAT))
    content = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(content) == 35
    assert "".join(c or "" for c in content) == answer
    # Default chunking: one delta per word, leading space attached like a token.
    server.queue_reply(Reply("one two  three\n"))
    chunks = list(client.chat.completions.create(stream=True, **CHAT))
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["one", " two", "  three\n"]


def test_tool_call_deltas_reassemble(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.queue_reply(Reply(tool_calls=WEATHER_CALLS), times=2)
    plain = client.chat.completions.create(**CHAT)
    assert plain.choices[0].finish_reason == "tool_calls"
    assert plain.choices[0].message.content is None
    calls = plain.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].id == "call_weather_paris"
    assert calls[1].id.startswith("call_")
    assert calls[1].function.arguments == '{"tz":"Europe/Paris"}'

    stream = list(client.chat.completions.create(stream=True, **CHAT))
    first = stream[0].choices[0].delta
    # A tool-call-only answer opens the first call in the role chunk, content null.
    assert first.role == "assistant"
    assert first.content is None
    assert first.tool_calls is not None
    opening = first.tool_calls[0]
    assert (opening.index, opening.id, opening.type) == (0, "call_weather_paris", "function")
    assert opening.function is not None
    assert (opening.function.name, opening.function.arguments) == ("get_weather", "")
    rebuilt: dict[int, dict[str, str]] = {}
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or ():
            entry = rebuilt.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            if call.id:
                assert entry["id"] == "", "only the first delta of a call carries its id"
                entry["id"] = call.id
                assert call.function is not None
                entry["name"] = call.function.name or ""
            else:
                assert call.type is None
                assert call.function is not None
                assert call.function.name is None
            entry["arguments"] += (call.function.arguments or "") if call.function else ""
    assert rebuilt[0] == {
        "id": "call_weather_paris",
        "name": "get_weather",
        "arguments": '{"city": "Paris", "unit": "celsius"}',
    }
    assert json.loads(rebuilt[1]["arguments"]) == {"tz": "Europe/Paris"}
    assert rebuilt[1]["id"].startswith("call_")
    assert stream[-1].choices[0].finish_reason == "tool_calls"


def test_reasoning_content_stream_and_non_stream(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    reply = Reply("Paris.", reasoning_content="France's capital is Paris.")
    server.queue_reply(reply, times=2)
    plain = client.chat.completions.create(model="deepseek-reasoner", messages=CHAT["messages"])
    message = plain.choices[0].message
    assert message.content == "Paris."
    assert (message.model_extra or {})["reasoning_content"] == "France's capital is Paris."
    assert plain.usage is not None
    assert plain.usage.completion_tokens_details is not None
    reasoning_tokens = plain.usage.completion_tokens_details.reasoning_tokens
    assert reasoning_tokens == (len("France's capital is Paris.") + 3) // 4
    assert plain.usage.completion_tokens == reasoning_tokens + 2  # reasoning counts in completion

    with httpx2.Client(base_url=server.base_url) as http:
        text = http.post("/chat/completions", json={**CHAT, "stream": True}).text
    deltas = [json.loads(e)["choices"][0]["delta"] for e in sse_events(text)[:-1]]
    kinds = [
        next(k for k in ("role", "reasoning_content", "content") if k in d) for d in deltas[:-1]
    ]
    # Reasoning streams first, then the answer.
    assert kinds == ["role"] + ["reasoning_content"] * 4 + ["content"]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "France's capital is Paris."


def test_refusal_stream_and_non_stream(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.queue_reply(Reply(refusal="I can't help with that."), times=2)
    plain = client.chat.completions.create(**CHAT)
    assert plain.choices[0].message.refusal == "I can't help with that."
    assert plain.choices[0].message.content is None
    stream = list(client.chat.completions.create(stream=True, **CHAT))
    assert stream[0].choices[0].delta.refusal == ""
    assert "".join(c.choices[0].delta.refusal or "" for c in stream) == "I can't help with that."


def test_chunk_delay_spreads_the_stream(server: FakeOpenAIServer) -> None:
    server.chunk_delay = 0.02
    server.queue_reply(Reply("a b c d e"))
    arrivals = []
    with (
        httpx2.Client() as http,
        http.stream(
            "POST", server.base_url + "/chat/completions", json={**CHAT, "stream": True}
        ) as response,
    ):
        for _ in response.iter_lines():
            arrivals.append(time.monotonic())
    # role + 5 words + finish + [DONE] = 8 events, 7 gaps of 20 ms.
    assert arrivals[-1] - arrivals[0] >= 0.12


def test_abort_mid_stream(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.queue_reply(Reply("one two three four five", abort_after_chunks=3), times=3)
    received: list[str] = []
    with (
        pytest.raises(httpx2.RemoteProtocolError),
        httpx2.Client() as http,
        http.stream(
            "POST", server.base_url + "/chat/completions", json={**CHAT, "stream": True}
        ) as response,
    ):
        for line in response.iter_lines():
            received.append(line)
    events = [line.removeprefix("data: ") for line in received if line]
    assert len(events) == 3
    assert "[DONE]" not in events
    assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events)

    seen = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(stream=True, **CHAT):
            seen.append(chunk)
    assert len(seen) == 3

    with pytest.raises(openai.APIConnectionError):  # non-stream: the body is cut short
        client.chat.completions.create(**CHAT)
    # The server is fine afterwards.
    assert client.chat.completions.create(**CHAT).choices


# -- legacy completions ------------------------------------------------------------------------


def test_legacy_completions(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    completion = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt=["Say hi", "Say bye"], n=2
    )
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]
    assert completion.choices[0].text.startswith("Simulated completion of: Say hi")
    assert completion.choices[2].text.startswith("Simulated completion of: Say bye")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 4

    server.queue_reply(Reply("Hello there, friend."))
    stream = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Say hi",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == "Hello there, friend."
    assert stream[-2].choices[0].finish_reason == "stop"
    assert stream[-1].choices == []
    assert stream[-1].usage is not None
    assert server.count("/completions") == 2


# -- embeddings and models ---------------------------------------------------------------------


def test_embeddings_with_sdk_default_base64(
    server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
    # The SDK asks for base64 unless told otherwise, and decodes it.
    assert server.requests[-1].body["encoding_format"] == "base64"
    assert [d.index for d in result.data] == [0, 1]
    hello = result.data[0].embedding
    assert len(hello) == 16
    assert sum(v * v for v in hello) == pytest.approx(1.0, abs=1e-5)
    assert result.data[1].embedding != hello
    floats = client.embeddings.create(
        model="text-embedding-3-small", input="hello", encoding_format="float", dimensions=16
    )
    assert floats.data[0].embedding == hello  # both encodings carry the same float32 values
    assert result.usage.prompt_tokens == 4
    assert result.model == "text-embedding-3-small"


def test_embeddings_wire_format(server: FakeOpenAIServer) -> None:
    with httpx2.Client(base_url=server.base_url) as http:
        wide = http.post(
            "/embeddings",
            json={"model": "m", "input": "hi", "dimensions": 64, "encoding_format": "base64"},
        ).json()
        tokens = http.post("/embeddings", json={"model": "m", "input": [[1, 2, 3], [4]]}).json()
        empty = http.post("/embeddings", json={"model": "m", "input": ""})
    assert wide["object"] == "list"
    assert wide["data"][0]["object"] == "embedding"
    raw = base64.b64decode(wide["data"][0]["embedding"])
    assert len(raw) == 64 * 4
    vector = struct.unpack("<64f", raw)
    assert sum(v * v for v in vector) == pytest.approx(1.0, abs=1e-5)
    assert len(tokens["data"]) == 2
    assert len(tokens["data"][0]["embedding"]) == 16
    assert empty.status_code == 400
    assert empty.json()["error"]["param"] == "input"


def test_models(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o" in ids
    assert client.models.retrieve("gpt-4o").owned_by == "system"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    # /models is never failed, so it can serve as a health check.
    server.fail_next(500)
    assert client.models.list().data
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**CHAT)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exception", "error_type"),
    [
        (400, openai.BadRequestError, "invalid_request_error"),
        (401, openai.AuthenticationError, "invalid_request_error"),
        (403, openai.PermissionDeniedError, "invalid_request_error"),
        (404, openai.NotFoundError, "invalid_request_error"),
        (409, openai.ConflictError, "invalid_request_error"),
        (422, openai.UnprocessableEntityError, "invalid_request_error"),
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
def test_fail_next_maps_to_sdk_exceptions(
    server: FakeOpenAIServer,
    client: openai.OpenAI,
    status: int,
    exception: type[openai.APIStatusError],
    error_type: str,
) -> None:
    server.fail_next(status)
    with pytest.raises(exception) as caught:
        client.chat.completions.create(**CHAT)
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict)
    assert set(caught.value.body) == {"message", "type", "param", "code"}
    assert caught.value.body["type"] == error_type
    assert client.chat.completions.create(**CHAT).choices


def test_rate_limit_with_retry_after_and_sdk_retries(server: FakeOpenAIServer) -> None:
    # OpenAI sends both; the SDK prefers the millisecond one, which keeps this test quick.
    server.fail_next(429, times=2, headers={"retry-after": "1", "retry-after-ms": "20"})
    with openai.OpenAI(base_url=server.base_url, api_key="sk", max_retries=0) as sdk:
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.chat.completions.create(**CHAT)
        assert caught.value.response.headers["retry-after"] == "1"
        assert caught.value.code == "rate_limit_exceeded"
    # The SDK's own retry honours retry-after and gets through on the next attempt.
    with openai.OpenAI(base_url=server.base_url, api_key="sk", max_retries=2) as sdk:
        assert sdk.chat.completions.create(**CHAT).choices
    assert server.count("/v1/chat/completions") == 3


def test_fail_next_with_custom_body_and_stream(server: FakeOpenAIServer) -> None:
    body = {"error": {"message": "quota", "type": "insufficient_quota", "param": None, "code": "q"}}
    server.fail_next(429, body=body)
    response = httpx2.post(server.base_url + "/chat/completions", json={**CHAT, "stream": True})
    # A streamed request that fails gets a JSON error, not an event stream.
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert response.json() == body


def test_request_errors_have_openai_bodies(server: FakeOpenAIServer) -> None:
    with httpx2.Client(base_url=server.url) as http:
        unknown = http.post("/v1/nope", json={})
        bad_json = http.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        no_model = http.post("/v1/chat/completions", json={"messages": CHAT["messages"]})
        no_messages = http.post("/v1/chat/completions", json={"model": "gpt-4o"})
        no_stream = http.post(
            "/v1/chat/completions", json={**CHAT, "stream_options": {"include_usage": True}}
        )
        bad_n = http.post("/v1/chat/completions", json={**CHAT, "n": 0})
    assert unknown.status_code == 404
    assert unknown.json() == {
        "error": {
            "message": "Invalid URL (POST /v1/nope)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert bad_json.status_code == 400
    assert "parse the JSON body" in bad_json.json()["error"]["message"]
    assert no_model.status_code == 400
    assert no_model.json()["error"]["message"] == "you must provide a model parameter"
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["code"] == "missing_required_parameter"
    assert no_messages.json()["error"]["param"] == "messages"
    assert no_stream.status_code == 400
    assert bad_n.status_code == 400
    assert server.requests[1].body is None
    assert server.requests[1].raw == b"{not json"


def test_api_key_is_checked() -> None:
    with FakeOpenAIServer(api_key="sk-right") as guarded:
        bad = openai.OpenAI(base_url=guarded.base_url, api_key="sk-wrong-key", max_retries=0)
        with bad, pytest.raises(openai.AuthenticationError) as caught:
            bad.chat.completions.create(**CHAT)
        assert caught.value.code == "invalid_api_key"
        assert "sk-wrong-key" not in str(caught.value)  # keys are masked, as OpenAI does
        missing = httpx2.post(guarded.base_url + "/chat/completions", json=CHAT)
        assert missing.status_code == 401
        with openai.OpenAI(base_url=guarded.base_url, api_key="sk-right", max_retries=0) as good:
            assert good.chat.completions.create(**CHAT).choices
        assert [r.headers.get("authorization") for r in guarded.requests] == [
            "Bearer sk-wrong-key",
            None,
            "Bearer sk-right",
        ]


def test_drop_next_is_a_connection_error(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.drop_next()
    with pytest.raises(httpx2.RemoteProtocolError):
        httpx2.post(server.base_url + "/chat/completions", json=CHAT)
    server.drop_next()
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(**CHAT)
    assert client.chat.completions.create(**CHAT).choices
    assert server.count("/v1/chat/completions") == 3


def test_delay_next_causes_a_timeout(server: FakeOpenAIServer) -> None:
    server.delay_next(1.0)
    with httpx2.Client(base_url=server.base_url) as http:
        with pytest.raises(httpx2.ReadTimeout):
            http.post("/chat/completions", json=CHAT, timeout=0.1)
        started = time.monotonic()
        assert http.post("/chat/completions", json=CHAT).status_code == 200
        assert time.monotonic() - started < 0.5


def test_latency(server: FakeOpenAIServer) -> None:
    server.latency = 0.05
    with httpx2.Client(base_url=server.base_url) as http:
        started = time.monotonic()
        http.post("/chat/completions", json=CHAT)
        slow = time.monotonic() - started
        server.queue_reply(Reply("fast", latency=0.0))
        started = time.monotonic()
        http.post("/chat/completions", json=CHAT)
        fast = time.monotonic() - started
        started = time.monotonic()
        http.get("/models")  # health checks are never slowed
        models = time.monotonic() - started
    assert slow >= 0.05
    assert fast < 0.05
    assert models < 0.05


# -- scripting and recording -------------------------------------------------------------------


def test_reply_function_and_queue(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    def by_question(body: dict[str, Any]) -> Reply | None:
        question = body["messages"][-1]["content"]
        return Reply(f"echo: {question}", cached_tokens=3) if "echo" in question else None

    server.reply_with(by_question)
    server.queue_reply(Reply("queued"), times=2)

    def ask(text: str) -> Any:
        return client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}]
        )

    assert ask("echo me").choices[0].message.content == "queued"  # the queue comes first
    assert ask("echo me").choices[0].message.content == "queued"
    echoed = ask("echo me")
    assert echoed.choices[0].message.content == "echo: echo me"
    assert echoed.usage is not None
    assert echoed.usage.prompt_tokens_details is not None
    assert echoed.usage.prompt_tokens_details.cached_tokens == 3
    assert (ask("hi").choices[0].message.content or "").startswith("Simulated answer to: hi")
    server.queue_reply(Reply(None))
    empty = ask("hi").choices[0]
    assert (empty.message.content, empty.finish_reason) == (None, "stop")
    server.reply_with(None)
    assert (ask("echo me").choices[0].message.content or "").startswith("Simulated")


def test_usage_overrides(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.queue_reply(
        Reply(
            "ok",
            prompt_tokens=1000,
            completion_tokens=50,
            cached_tokens=768,
            reasoning_tokens=40,
            finish_reason="length",
        )
    )
    completion = client.chat.completions.create(**CHAT)
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 50, 1050)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 768
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 40
    assert completion.choices[0].finish_reason == "length"


def test_recording_and_reset(server: FakeOpenAIServer) -> None:
    with httpx2.Client(base_url=server.url, headers={"Authorization": "Bearer sk-abc"}) as http:
        http.post("/v1/chat/completions", json=CHAT, headers={"X-Custom": "yes"})
        http.post("/chat/completions?api-version=1", json=CHAT)
        http.get("/v1/models")
    assert server.count() == 3
    assert server.count("/v1/chat/completions") == 2
    assert server.count("/chat/completions/") == 2
    assert server.count("/models") == 1
    first, second, _ = server.requests
    assert first.method == "POST"
    assert first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == "Bearer sk-abc"
    assert first.headers["x-custom"] == "yes"
    assert first.body == CHAT
    assert json.loads(first.raw) == CHAT
    assert (second.path, second.query) == ("/chat/completions", "api-version=1")
    server.fail_next(500)
    server.queue_reply(Reply("x"))
    server.reset()
    assert server.count() == 0
    response = httpx2.post(server.base_url + "/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("Simulated")


def test_keep_alive_reuses_one_connection(server: FakeOpenAIServer) -> None:
    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx2.Client(base_url=server.base_url, limits=limits) as http:
        for i in range(100):
            if i % 10 == 0:
                with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as r:
                    r.read()
            else:
                assert http.post("/chat/completions", json=CHAT).status_code == 200
        http.post("/nope", json={})
        http.post("/chat/completions", content=b"not json")
    assert len({r.connection for r in server.requests}) == 1


def test_concurrent_requests_are_all_recorded(server: FakeOpenAIServer) -> None:
    def worker() -> None:
        with httpx2.Client(base_url=server.base_url) as http:
            for _ in range(25):
                assert http.post("/chat/completions", json=CHAT).status_code == 200

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.count("/v1/chat/completions") == 200
    assert len({r.connection for r in server.requests}) == 8


def test_server_overhead_is_small(server: FakeOpenAIServer) -> None:
    # A regression guard for e.g. Nagle's algorithm meeting delayed ACKs (40 ms a request).
    with httpx2.Client(base_url=server.base_url) as http:
        http.post("/chat/completions", json=CHAT)
        times = []
        for _ in range(200):
            started = time.perf_counter()
            http.post("/chat/completions", json=CHAT)
            times.append(time.perf_counter() - started)
    assert sorted(times)[100] < 0.01


@pytest.mark.parametrize(
    "tool_calls", [1, {}, ["x"], [{"id": "a", "type": "function", "function": "f"}]]
)
def test_malformed_tool_calls_are_a_400_as_openai_answers_them(
    server: FakeOpenAIServer, tool_calls: Any
) -> None:
    """They crashed the simulated server (a 500 the proxy passed on, found by a fuzzer)."""
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "assistant", "content": None, "tool_calls": tool_calls},
            {"role": "user", "content": "x"},
        ],
    }
    answer = httpx2.post(f"{server.base_url}/chat/completions", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_type"


# What OpenAI answers these with (its messages and codes, as its API sends them): the
# simulated server must not take what the real API refuses, or a test of deja in front of
# it sees cached what could never be.
REFUSED_AS_OPENAI_DOES = [
    (
        {"temperature": -1},
        "temperature",
        "decimal_below_min_value",
        "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got -1"
        " instead.",
    ),
    ({"temperature": 2.5}, "temperature", "decimal_above_max_value", None),
    ({"temperature": "hot"}, "temperature", "invalid_type", None),
    ({"top_p": 7}, "top_p", "decimal_above_max_value", None),
    ({"presence_penalty": -3}, "presence_penalty", "decimal_below_min_value", None),
    (
        {"max_tokens": -1},
        "max_tokens",
        "integer_below_min_value",
        "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got -1"
        " instead.",
    ),
    ({"max_completion_tokens": 0}, "max_completion_tokens", "integer_below_min_value", None),
    ({"top_logprobs": -1, "logprobs": True}, "top_logprobs", "integer_below_min_value", None),
    ({"top_logprobs": 21, "logprobs": True}, "top_logprobs", "integer_above_max_value", None),
    (
        {"seed": 1.5},
        "seed",
        "invalid_type",
        "Invalid type for 'seed': expected an integer, but got a decimal number instead.",
    ),
    ({"n": 0}, "n", "integer_below_min_value", None),
    ({"n": "2"}, "n", "invalid_type", None),
    (
        {"tools": "none"},
        "tools",
        "invalid_type",
        "Invalid type for 'tools': expected an array of objects, but got a string instead.",
    ),
    ({"tools": [5]}, "tools[0]", "invalid_type", None),
    ({"tools": [{"function": {"name": "f"}}]}, "tools[0].type", "missing_required_parameter", None),
    ({"tools": [{"name": "f", "input_schema": {}}]}, "tools[0].type", None, None),
    (
        {"tools": [{"type": "function"}]},
        "tools[0].function",
        "missing_required_parameter",
        "Missing required parameter: 'tools[0].function'.",
    ),
    (
        {"tools": [{"type": "function", "function": {"parameters": {}}}]},
        "tools[0].function.name",
        "missing_required_parameter",
        None,
    ),
    ({"tools": [{"type": "function", "function": {"name": ""}}]}, None, "empty_string", None),
    ({"tool_choice": 7}, "tool_choice", "invalid_type", None),
    ({"tool_choice": "bogus"}, "tool_choice", "invalid_value", None),
    (
        {"response_format": "json"},
        "response_format",
        "invalid_type",
        "Invalid type for 'response_format': expected an object, but got a string instead.",
    ),
    (
        {"response_format": {}},
        "response_format.type",
        "missing_required_parameter",
        "Missing required parameter: 'response_format.type'.",
    ),
    ({"response_format": {"type": "bogus"}}, "response_format.type", "invalid_value", None),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", None, None),
    ({"logit_bias": "x"}, "logit_bias", "invalid_type", None),
    ({"logit_bias": {"1": "x"}}, "logit_bias.1", "invalid_type", None),
    (
        {"messages": [{"role": "user"}]},
        "messages.[0].content",
        None,
        "Invalid value for 'content': expected a string, got null.",
    ),
    ({"messages": [{"role": "user", "content": []}]}, "messages[0].content", "empty_array", None),
    ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content", "invalid_type", None),
    ({"messages": ["hi"]}, "messages[0]", "invalid_type", None),
    ({"messages": [{"content": "hi"}]}, "messages[0].role", "missing_required_parameter", None),
    ({"messages": [{"role": "bogus", "content": "hi"}]}, "messages[0].role", "invalid_value", None),
    (
        {"messages": [CHAT["messages"][0], {"role": "developer"}]},
        "messages[1].content",
        "missing_required_parameter",
        None,
    ),
    (
        {"messages": [CHAT["messages"][0], {"role": "assistant"}]},
        "messages.[1].content",
        None,
        None,
    ),
    (
        {"messages": [CHAT["messages"][0], {"role": "tool", "content": "42"}]},
        "messages[1].tool_call_id",
        "missing_required_parameter",
        None,
    ),
]


@pytest.mark.parametrize(("extra", "param", "code", "message"), REFUSED_AS_OPENAI_DOES)
def test_request_fields_are_refused_as_openai_refuses_them(
    server: FakeOpenAIServer,
    extra: dict[str, Any],
    param: str | None,
    code: str | None,
    message: str | None,
) -> None:
    answer = httpx2.post(f"{server.base_url}/chat/completions", json={**CHAT, **extra})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    if message is not None:
        assert error["message"] == message


def test_what_openai_takes_the_simulated_server_takes(server: FakeOpenAIServer) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    bodies = [
        {"temperature": 0, "top_p": 1, "max_tokens": 1, "n": 2, "seed": -5},
        {"temperature": 2, "presence_penalty": -2, "frequency_penalty": 2},
        {"logprobs": True, "top_logprobs": 0, "logit_bias": {"50256": -100}},
        {"tools": [tool], "tool_choice": {"type": "function", "function": {"name": "f"}}},
        {"tools": [tool], "tool_choice": "required", "response_format": {"type": "json_object"}},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
        {
            "messages": [
                {"role": "developer", "content": "Be brief."},
                CHAT["messages"][0],
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
                {"role": "assistant", "refusal": "No."},
                {"role": "user", "content": [{"type": "text", "text": "And?"}]},
            ]
        },
    ]
    for extra in bodies:
        answer = httpx2.post(f"{server.base_url}/chat/completions", json={**CHAT, **extra})
        assert answer.status_code == 200, (extra, answer.text)
    # the legacy completions' max_tokens may be 0: the prompt echoed alone
    legacy = {"model": "gpt-3.5-turbo-instruct", "prompt": "Hi", "max_tokens": 0, "echo": True}
    assert httpx2.post(f"{server.base_url}/completions", json=legacy).status_code == 200
    legacy["max_tokens"] = -1
    assert httpx2.post(f"{server.base_url}/completions", json=legacy).status_code == 400


def test_structured_outputs_answer_an_instance_of_the_schema(client: openai.OpenAI) -> None:
    """OpenAI's json_schema mode answers JSON the schema takes (the SDK's parse() read the
    plain-text answer, and failed); json_object answers an object."""
    import pydantic

    class Step(pydantic.BaseModel):
        explanation: str
        output: int

    class Answer(pydantic.BaseModel):
        steps: list[Step]
        final: str
        sure: bool
        unit: str | None

    parsed = client.chat.completions.parse(
        model="gpt-4o", messages=CHAT["messages"], response_format=Answer
    )
    answer = parsed.choices[0].message.parsed
    assert answer is not None and answer.final.startswith("What is the capital")
    assert answer.steps[0].output == 0 and answer.sure is False
    json_object = client.chat.completions.create(
        model="gpt-4o", messages=CHAT["messages"], response_format={"type": "json_object"}
    )
    assert json.loads(json_object.choices[0].message.content or "") == {
        "answer": "What is the capital of France?"
    }
    text = client.chat.completions.create(
        model="gpt-4o", messages=CHAT["messages"], response_format={"type": "text"}
    )
    assert (text.choices[0].message.content or "").startswith("Simulated answer to:")


def test_a_request_held_through_a_reset_takes_nothing_scripted_after_it(
    server: FakeOpenAIServer,
) -> None:
    """A held request whose caller timed out woke in the next test and answered with the
    reply that test had queued (which then got the default answer)."""
    server.delay_next(0.5)
    with httpx2.Client(base_url=server.base_url) as http, pytest.raises(httpx2.ReadTimeout):
        http.post("/chat/completions", json=CHAT, timeout=0.1)
    # the held request took its delay before the reset (a loaded server read it only after
    # one, and took the reply queued for the next as the request after the reset it was)
    deadline = time.monotonic() + 30
    while server._delays and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not server._delays
    server.reset()
    server.queue_reply(Reply("for the next request"))
    time.sleep(0.6)  # (the held request wakes)
    with httpx2.Client(base_url=server.base_url) as http:
        answer = http.post("/chat/completions", json=CHAT).json()
    assert answer["choices"][0]["message"]["content"] == "for the next request"
