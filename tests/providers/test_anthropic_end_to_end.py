"""deja.Client against the local Anthropic server, on what Anthropic refuses or runs itself.

Server tools (web search) come back as text, never as tool calls, streamed or not; blank
text and empty turns in a history are not sent (and the local server refuses them as
Anthropic does); files go as the documents Anthropic takes, or are refused before sending.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

import deja
from deja.testing import AnthropicReply, FakeAnthropicServer

KEY = "sk-ant-test"
MODEL = "anthropic/claude-sonnet-4-5"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key=KEY) as s:
        yield s


def client(server: FakeAnthropicServer) -> deja.Client:
    return deja.Client(cache=deja.Cache(), api_base=server.url, api_key=KEY, max_retries=0)


def post(server: FakeAnthropicServer, messages: list[dict[str, Any]]) -> httpx2.Response:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": messages}
    with httpx2.Client(timeout=10) as http:
        return http.post(server.url + "/v1/messages", json=body, headers=HEADERS)


def streamed(c: deja.Client, **kw: Any) -> list[dict[str, Any]]:
    return [chunk.model_dump() for chunk in c.completion(model=MODEL, stream=True, **kw)]


def joined(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# -- a server tool (web search) --------------------------------------------------------------

SEARCH = [
    {"type": "text", "text": "I'll search."},
    {
        "type": "server_tool_use",
        "id": "srvtoolu_1",
        "name": "web_search",
        "input": {"query": "weather paris"},
    },
    {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": [
            {
                "type": "web_search_result",
                "title": "Paris weather",
                "url": "https://weather.example/paris",
                "encrypted_content": "EqgfCioIARgBIiQ3YTAw",
                "page_age": None,
            }
        ],
    },
    {
        "type": "text",
        "text": " It is sunny.",
        "citations": [
            {
                "type": "web_search_result_location",
                "url": "https://weather.example/paris",
                "title": "Paris weather",
                "encrypted_index": "Eo8BCioIAhgBIiQy",
                "cited_text": "Sunny, 24 C",
            }
        ],
    },
]
SEARCH_ASK: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
    "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}],
    "max_tokens": 200,
}


def test_a_web_search_answer_is_text_streamed_or_not_and_the_stream_is_cached(
    server: FakeAnthropicServer,
) -> None:
    server.queue_reply(AnthropicReply(content=SEARCH), times=2)
    c = client(server)
    live = streamed(c, **SEARCH_ASK)
    assert not any(ch["choices"] and ch["choices"][0]["delta"].get("tool_calls") for ch in live)
    finish = [ch["choices"][0]["finish_reason"] for ch in live if ch["choices"]]
    assert finish[-1] == "stop"
    assert joined(live) == "I'll search. It is sunny."
    # The stream assembled and was stored: the repeat and the non-stream call are hits.
    assert streamed(c, **SEARCH_ASK) == live
    cached = c.completion(model=MODEL, **SEARCH_ASK)
    assert cached.cache.status == "hit"
    assert server.count("/v1/messages") == 1
    # The same answer asked without streaming: the same message, no tool call.
    plain = client(server).completion(model=MODEL, **SEARCH_ASK)
    assert plain.cache.status == "miss" and server.count("/v1/messages") == 2
    assert plain.choices[0].model_dump() == cached.choices[0].model_dump()
    assert plain.choices[0].message.content == "I'll search. It is sunny."
    assert plain.choices[0].message.tool_calls is None
    assert plain.choices[0].finish_reason == "stop"
    assert server.requests[-1].body["tools"] == SEARCH_ASK["tools"]


# -- blank text and empty turns --------------------------------------------------------------

CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
BLANK_HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "\n\n", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    {"role": "assistant", "content": ""},
    {"role": "user", "content": "Thanks. And Rome?"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def test_the_local_server_refuses_blank_text_and_empty_turns_as_anthropic_does(
    server: FakeAnthropicServer,
) -> None:
    use = {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}
    refused = [
        (
            [{"role": "user", "content": [{"type": "text", "text": " \n"}]}],
            "messages: text content blocks must contain non-whitespace text",
        ),
        (
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "\n\n"}, use]},
            ],
            "messages: text content blocks must contain non-whitespace text",
        ),
        (
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": []},
                {"role": "user", "content": "Hello?"},
            ],
            "messages.1: all messages must have non-empty content except for the optional "
            "final assistant message",
        ),
        (
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure: "}],
            "messages: final assistant content cannot end with trailing whitespace",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "text/plain",
                                "data": "eA==",
                            },
                        }
                    ],
                }
            ],
            "messages.0.content.0.image.source.base64.media_type: Input should be 'image/jpeg'",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "text/csv", "data": "eA=="},
                        }
                    ],
                }
            ],
            "document.source.base64.media_type: Input should be 'application/pdf'",
        ),
    ]
    for messages, error in refused:
        response = post(server, messages)
        assert response.status_code == 400, messages
        assert error in response.json()["error"]["message"]
    accepted = [
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": " "}, {"type": "text", "text": "a"}],
            }
        ],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": []}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure:"}],
    ]
    for messages in accepted:
        assert post(server, messages).status_code == 200, messages


@pytest.mark.parametrize("stream", [False, True])
def test_a_history_with_blank_text_and_an_empty_turn_goes_through(
    server: FakeAnthropicServer, stream: bool
) -> None:
    c = client(server)
    ask: dict[str, Any] = {"messages": BLANK_HISTORY, "tools": TOOLS, "max_tokens": 50}
    if stream:
        text = joined(streamed(c, **ask))
    else:
        text = c.completion(model=MODEL, **ask).choices[0].message.content
    assert text.startswith("Simulated answer to: Thanks. And Rome?")
    sent = server.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert [b["type"] for b in sent[1]["content"]] == ["tool_use"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_prefill_with_trailing_whitespace_goes_through(
    server: FakeAnthropicServer, stream: bool
) -> None:
    c = client(server)
    server.queue_reply(AnthropicReply('"answer": 42}'))
    messages = [
        {"role": "user", "content": "Answer in JSON."},
        {"role": "assistant", "content": "{\n  "},
    ]
    if stream:
        text = joined(streamed(c, messages=messages, max_tokens=50))
    else:
        text = (
            c.completion(model=MODEL, messages=messages, max_tokens=50).choices[0].message.content
        )
    assert text == '"answer": 42}'
    assert server.requests[-1].body["messages"][-1] == {"role": "assistant", "content": "{"}


# -- files -----------------------------------------------------------------------------------


def file_ask(media: str, data: bytes) -> dict[str, Any]:
    encoded = base64.b64encode(data).decode()
    part = {"filename": "invoice", "file_data": f"data:{media};base64,{encoded}"}
    content = [{"type": "text", "text": "Summarize the file."}, {"type": "file", "file": part}]
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 50}


@pytest.mark.parametrize("stream", [False, True])
def test_a_plain_text_file_is_sent_as_a_text_document(
    server: FakeAnthropicServer, stream: bool
) -> None:
    c = client(server)
    ask = file_ask("text/plain", b"Invoice 42: total 100 EUR")
    if stream:
        assert joined(streamed(c, **ask))
    else:
        assert c.completion(model=MODEL, **ask).choices[0].message.content
    assert server.requests[-1].body["messages"][0]["content"][1] == {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "Invoice 42: total 100 EUR"},
        "title": "invoice",
    }


@pytest.mark.parametrize("stream", [False, True])
def test_a_csv_file_is_refused_before_anything_is_sent(
    server: FakeAnthropicServer, stream: bool
) -> None:
    c = client(server)
    with pytest.raises(deja.InvalidRequestError, match="Anthropic does not accept text/csv files"):
        if stream:
            streamed(c, **file_ask("text/csv", b"a,b\n1,2\n"))
        else:
            c.completion(model=MODEL, **file_ask("text/csv", b"a,b\n1,2\n"))
    assert server.count("/v1/messages") == 0
