"""Anthropic streams → OpenAI chunks, assembled into the same response, usage and cost."""

from __future__ import annotations

import json
from typing import Any

import pytest

from deja.errors import RateLimitError, ServerError
from deja.prices import PriceTable
from deja.providers.anthropic import AnthropicProvider, StreamTranslator
from deja.streaming import SSEDecoder, StreamAssembler, replay_chunks

provider = AnthropicProvider()
CREATED = 1_700_000_000
MODEL = "claude-sonnet-4-5-20250929"


def sse(*events: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events
    )


def ev(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return str(data["type"]), data


START_USAGE = {
    "input_tokens": 472,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 2048,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 2,
    "service_tier": "standard",
}
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"

# A recorded stream in Anthropic's format: thinking (with its signature), text, then a tool
# call whose input arrives as input_json_delta pieces; a ping after the first block starts.
RECORDED_STREAM = sse(
    ev(
        {
            "type": "message_start",
            "message": {
                "id": "msg_01Aq9w938a90dw8q",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": MODEL,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": START_USAGE,
            },
        }
    ),
    ev(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        }
    ),
    ev({"type": "ping"}),
    ev(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "The user wants "},
        }
    ),
    ev(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "the weather."},
        }
    ),
    ev(
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": SIGNATURE},
        }
    ),
    ev({"type": "content_block_stop", "index": 0}),
    ev({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
    ev(
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "Let me check "},
        }
    ),
    ev(
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "the weather."},
        }
    ),
    ev({"type": "content_block_stop", "index": 1}),
    ev(
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {},
            },
        }
    ),
    ev(
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        }
    ),
    ev(
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"location": "Par'},
        }
    ),
    ev(
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": 'is, France", "unit"'},
        }
    ),
    ev(
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": ': "celsius"}'},
        }
    ),
    ev({"type": "content_block_stop", "index": 2}),
    ev(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 89},
        }
    ),
    ev({"type": "message_stop"}),
)

# The same answer as the non-stream API returns it.
RECORDED_MESSAGE = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [
        {"type": "thinking", "thinking": "The user wants the weather.", "signature": SIGNATURE},
        {"type": "text", "text": "Let me check the weather."},
        {
            "type": "tool_use",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "input": {"location": "Paris, France", "unit": "celsius"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {**START_USAGE, "output_tokens": 89},
}


def translate(raw: bytes, *, split: int | None = None) -> list[dict[str, Any]]:
    """Decode SSE bytes (cut every ``split`` bytes, as a network would) and translate."""
    decoder = SSEDecoder()
    translator = provider.stream_translator(created=CREATED)
    pieces = [raw] if split is None else [raw[i : i + split] for i in range(0, len(raw), split)]
    events = [event for piece in pieces for event in decoder.feed(piece)] + decoder.flush()
    chunks: list[dict[str, Any]] = []
    for event in events:
        assert isinstance(event, dict)
        chunks.extend(translator.feed(event))
    assert translator.finished
    return chunks


def assemble(chunks: list[dict[str, Any]]) -> StreamAssembler:
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    return assembler


def deltas(chunks: list[dict[str, Any]]) -> list[Any]:
    return [c["choices"][0]["delta"] if c["choices"] else ("usage", c["usage"]) for c in chunks]


def test_recorded_stream_becomes_openai_chunks() -> None:
    chunks = translate(RECORDED_STREAM)
    head = {
        "id": "msg_01Aq9w938a90dw8q",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
    }
    for chunk in chunks:
        assert {k: chunk[k] for k in head} == head
    assert deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "The user wants "},
        {"reasoning_content": "the weather."},
        {
            "thinking_blocks": [
                {
                    "type": "thinking",
                    "thinking": "The user wants the weather.",
                    "signature": SIGNATURE,
                }
            ]
        },
        {"content": "Let me check "},
        {"content": "the weather."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"location": "Par'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'is, France", "unit"'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ': "celsius"}'}}]},
        {},
        ("usage", provider.parse_response(RECORDED_MESSAGE)["usage"]),
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 10 + ["tool_calls"]
    # As OpenAI streams with include_usage: usage null on every chunk, the totals last.
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []


@pytest.mark.parametrize("split", [None, 1, 7, 64])
def test_stream_assembles_into_the_non_stream_translation(split: int | None) -> None:
    assembler = assemble(translate(RECORDED_STREAM, split=split))
    assert assembler.complete
    assert assembler.response() == provider.parse_response(RECORDED_MESSAGE, created=CREATED)


def test_stream_and_non_stream_cost_the_same() -> None:
    prices = PriceTable.default()
    streamed = assemble(translate(RECORDED_STREAM)).response()["usage"]
    whole = provider.parse_response(RECORDED_MESSAGE)["usage"]
    assert streamed == whole
    cost = prices.cost(f"anthropic/{MODEL}", streamed)
    # 472 uncached * $3 + 2,048 cache reads * $0.30 + 89 output * $15, per 1M tokens
    assert cost == pytest.approx((472 * 3 + 2048 * 0.3 + 89 * 15) / 1_000_000)
    assert prices.cost(f"anthropic/{MODEL}", whole) == cost


def test_a_cache_hit_replays_what_the_stream_said() -> None:
    assembler = assemble(translate(RECORDED_STREAM))
    replayed = replay_chunks(assembler.response(), assembler.chunks(), include_usage=True)
    again = assemble(replayed)
    assert again.response() == assembler.response()


WRITE_USAGE_START = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": 1,
}


def text_stream(message_delta_usage: dict[str, Any]) -> bytes:
    return sse(
        ev(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_2",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": MODEL,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": WRITE_USAGE_START,
                },
            }
        ),
        ev(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
        ),
        ev(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Bonjour"},
            }
        ),
        ev({"type": "content_block_stop", "index": 0}),
        ev(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": message_delta_usage,
            }
        ),
        ev({"type": "message_stop"}),
    )


def test_cumulative_usage_in_message_delta_wins() -> None:
    # The current API repeats every count, cumulative, in message_delta.
    cumulative = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 2000,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2000},
        "output_tokens": 3,
    }
    response = assemble(translate(text_stream(cumulative))).response()
    assert response["choices"][0]["message"] == {"role": "assistant", "content": "Bonjour"}
    assert response["choices"][0]["finish_reason"] == "stop"
    assert response["usage"]["prompt_tokens"] == 2012
    assert response["usage"]["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 2000,
    }
    # Older streams send only output_tokens there: the start's counts stay.
    older = assemble(translate(text_stream({"output_tokens": 3}))).response()
    assert older["usage"]["prompt_tokens"] == 12
    assert older["usage"]["completion_tokens"] == 3


def test_crlf_line_endings_decode_the_same() -> None:
    crlf = RECORDED_STREAM.replace(b"\n", b"\r\n")
    assert assemble(translate(crlf)).response() == assemble(translate(RECORDED_STREAM)).response()


def test_tool_call_without_input_streams_empty_object_arguments() -> None:
    translator = StreamTranslator(created=CREATED)
    translator.feed(
        {
            "type": "message_start",
            "message": {"id": "m", "model": MODEL, "usage": WRITE_USAGE_START},
        }
    )
    translator.feed(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "now", "input": {}},
        }
    )
    [chunk] = translator.feed({"type": "content_block_stop", "index": 0})
    assert chunk["choices"][0]["delta"] == {
        "tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]
    }
    message = {
        "id": "m",
        "model": MODEL,
        "content": [{"type": "tool_use", "id": "t", "name": "now", "input": {}}],
        "stop_reason": "tool_use",
    }
    assert (
        provider.parse_response(message)["choices"][0]["message"]["tool_calls"][0]["function"][
            "arguments"
        ]
        == "{}"
    )


def test_two_tool_calls_get_openai_indices_in_order() -> None:
    translator = StreamTranslator(created=CREATED)
    translator.feed(
        {
            "type": "message_start",
            "message": {"id": "m", "model": MODEL, "usage": WRITE_USAGE_START},
        }
    )
    translator.feed(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": "Two calls:"},
        }
    )
    out = []
    for index, name in ((1, "a"), (2, "b")):
        out += translator.feed(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "tool_use", "id": name, "name": name, "input": {}},
            }
        )
        out += translator.feed(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": "{}"},
            }
        )
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in out]
    assert [(c["index"], c.get("id")) for c in calls] == [(0, "a"), (0, None), (1, "b"), (1, None)]


def test_redacted_thinking_is_kept_whole() -> None:
    translator = StreamTranslator(created=CREATED)
    translator.feed(
        {
            "type": "message_start",
            "message": {"id": "m", "model": MODEL, "usage": WRITE_USAGE_START},
        }
    )
    block = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}
    assert (
        translator.feed({"type": "content_block_start", "index": 0, "content_block": block}) == []
    )
    [chunk] = translator.feed({"type": "content_block_stop", "index": 0})
    assert chunk["choices"][0]["delta"] == {"thinking_blocks": [block]}


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("overloaded_error", ServerError),
        ("rate_limit_error", RateLimitError),
        ("api_error", ServerError),
    ],
)
def test_an_error_event_raises_the_matching_provider_error(
    kind: str, error: type[Exception]
) -> None:
    translator = StreamTranslator()
    with pytest.raises(error, match=kind):
        translator.feed({"type": "error", "error": {"type": kind, "message": "Overloaded"}})


def test_a_stream_cut_before_message_stop_is_not_complete() -> None:
    cut = RECORDED_STREAM[: RECORDED_STREAM.index(b"event: message_delta")]
    decoder = SSEDecoder()
    translator = provider.stream_translator(created=CREATED)
    assembler = StreamAssembler()
    for event in decoder.feed(cut):
        assert isinstance(event, dict)
        for chunk in translator.feed(event):
            assembler.add(chunk)
    assert not translator.finished
    assert not assembler.complete  # never stored


def test_unknown_events_and_deltas_are_ignored() -> None:
    translator = StreamTranslator()
    assert translator.feed({"type": "ping"}) == []
    assert translator.feed({"type": "something_new", "x": 1}) == []
    assert (
        translator.feed(
            {"type": "content_block_delta", "index": 5, "delta": {"type": "citations_delta"}}
        )
        == []
    )
    assert translator.usage is None


# -- server tools (web search): Anthropic runs them, they are not the caller's tool calls ---------

SEARCH_ID = "srvtoolu_014hJH82Qum7Td6UV8gDXThB"
SEARCH_RESULTS = [
    {
        "type": "web_search_result",
        "title": "Weather in New York City",
        "url": "https://world-weather.info/forecast/usa/new_york/may-2025/",
        "encrypted_content": "Ev0DCioIAxgCIiQ3NmU4ZmI4OC1k",
        "page_age": None,
    }
]
CITATION = {
    "type": "web_search_result_location",
    "url": "https://world-weather.info/forecast/usa/new_york/may-2025/",
    "title": "Weather in New York City",
    "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNm",
    "cited_text": "Sunny, 24 C",
}
SEARCH_USAGE = {
    "input_tokens": 10682,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": 510,
    "server_tool_use": {"web_search_requests": 1},
}


def block_events(index: int, start: dict[str, Any], *deltas: dict[str, Any]) -> list[Any]:
    return [
        ev({"type": "content_block_start", "index": index, "content_block": start}),
        *(ev({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas),
        ev({"type": "content_block_stop", "index": index}),
    ]


def text_delta(text: str) -> dict[str, Any]:
    return {"type": "text_delta", "text": text}


def json_delta(piece: str) -> dict[str, Any]:
    return {"type": "input_json_delta", "partial_json": piece}


def message_events(blocks: list[Any], stop_reason: str, usage: dict[str, Any]) -> bytes:
    start = {
        "id": "msg_01G",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 3},
    }
    return sse(
        ev({"type": "message_start", "message": start}),
        *blocks,
        ev(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": usage,
            }
        ),
        ev({"type": "message_stop"}),
    )


# The web search stream of Anthropic's streaming docs ("Streaming request with web search tool
# use"): text, the server_tool_use block whose input streams as input_json_delta, the
# web_search_tool_result whole in its start, then cited text.
WEB_SEARCH_STREAM = message_events(
    [
        *block_events(
            0,
            {"type": "text", "text": ""},
            text_delta("I'll check"),
            text_delta(" the current weather in New York City for you"),
            text_delta("."),
        ),
        *block_events(
            1,
            {"type": "server_tool_use", "id": SEARCH_ID, "name": "web_search", "input": {}},
            json_delta(""),
            json_delta('{"query'),
            json_delta('":'),
            json_delta(' "weather'),
            json_delta(" NY"),
            json_delta("C to"),
            json_delta('day"}'),
        ),
        *block_events(
            2,
            {"type": "web_search_tool_result", "tool_use_id": SEARCH_ID, "content": SEARCH_RESULTS},
        ),
        *block_events(
            3,
            {"type": "text", "text": ""},
            text_delta("Here's the current weather:"),
        ),
        *block_events(
            4,
            {"type": "text", "text": "", "citations": []},
            {"type": "citations_delta", "citation": CITATION},
            text_delta("sunny, 24 C"),
        ),
    ],
    "end_turn",
    SEARCH_USAGE,
)
WEB_SEARCH_MESSAGE = {
    "id": "msg_01G",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [
        {"type": "text", "text": "I'll check the current weather in New York City for you."},
        {
            "type": "server_tool_use",
            "id": SEARCH_ID,
            "name": "web_search",
            "input": {"query": "weather NYC today"},
        },
        {"type": "web_search_tool_result", "tool_use_id": SEARCH_ID, "content": SEARCH_RESULTS},
        {"type": "text", "text": "Here's the current weather:"},
        {"type": "text", "text": "sunny, 24 C", "citations": [CITATION]},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": SEARCH_USAGE,
}


@pytest.mark.parametrize("split", [None, 5])
def test_a_web_search_stream_has_no_tool_call_and_matches_its_non_stream_twin(
    split: int | None,
) -> None:
    chunks = translate(WEB_SEARCH_STREAM, split=split)
    assert not any(c["choices"] and "tool_calls" in c["choices"][0]["delta"] for c in chunks)
    assembler = assemble(chunks)
    assert assembler.complete
    response = assembler.response()
    assert response == provider.parse_response(WEB_SEARCH_MESSAGE, created=CREATED)
    assert response["choices"][0]["message"] == {
        "role": "assistant",
        "content": "I'll check the current weather in New York City for you."
        "Here's the current weather:sunny, 24 C",
    }
    assert response["choices"][0]["finish_reason"] == "stop"
    assert response["usage"]["server_tool_use"] == {"web_search_requests": 1}


def test_a_client_tool_call_after_a_server_tool_gets_openai_index_0() -> None:
    call_id = "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    raw = message_events(
        [
            *block_events(
                0,
                {"type": "server_tool_use", "id": SEARCH_ID, "name": "web_search", "input": {}},
                json_delta('{"query": "flights"}'),
            ),
            *block_events(
                1,
                {"type": "web_search_tool_result", "tool_use_id": SEARCH_ID, "content": []},
            ),
            *block_events(
                2,
                {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "lookup", "input": {}},
                json_delta('{"id": 7}'),
            ),
            *block_events(
                3,
                {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "content": []},
            ),
            *block_events(
                4,
                {"type": "tool_use", "id": call_id, "name": "book", "input": {}},
                json_delta(""),
                json_delta('{"day": "Monday"}'),
            ),
        ],
        "tool_use",
        {"input_tokens": 10, "output_tokens": 40},
    )
    chunks = translate(raw)
    calls = [
        call
        for c in chunks
        if c["choices"]
        for call in c["choices"][0]["delta"].get("tool_calls", ())
    ]
    assert calls == [
        {
            "index": 0,
            "id": call_id,
            "type": "function",
            "function": {"name": "book", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"day": "Monday"}'}},
    ]
    whole = {
        "id": "msg_01G",
        "model": MODEL,
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 40},
        "content": [
            {"type": "server_tool_use", "id": SEARCH_ID, "name": "web_search", "input": {}},
            {"type": "web_search_tool_result", "tool_use_id": SEARCH_ID, "content": []},
            {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "lookup", "input": {"id": 7}},
            {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "content": []},
            {"type": "tool_use", "id": call_id, "name": "book", "input": {"day": "Monday"}},
        ],
    }
    response = assemble(chunks).response()
    assert response == provider.parse_response(whole, created=CREATED)
    assert response["choices"][0]["finish_reason"] == "tool_calls"


def test_a_tool_use_stop_without_a_client_tool_call_finishes_with_stop() -> None:
    raw = message_events(
        [
            *block_events(
                0,
                {"type": "server_tool_use", "id": SEARCH_ID, "name": "web_search", "input": {}},
                json_delta('{"query": "x"}'),
            ),
        ],
        "tool_use",
        {"input_tokens": 10, "output_tokens": 5},
    )
    assert translate(raw)[-2]["choices"][0]["finish_reason"] == "stop"


def test_unknown_block_types_and_their_deltas_are_left_out() -> None:
    raw = message_events(
        [
            *block_events(0, {"type": "text", "text": ""}, text_delta("Before.")),
            *block_events(
                1,
                {"type": "some_future_block", "payload": {"a": 1}},
                text_delta("not the answer"),
                json_delta('{"x": 1}'),
                {"type": "thinking_delta", "thinking": "not reasoning"},
                {"type": "signature_delta", "signature": "nope"},
                {"type": "some_future_delta", "x": 2},
            ),
            *block_events(2, {"type": "text", "text": ""}, text_delta(" After.")),
        ],
        "end_turn",
        {"input_tokens": 10, "output_tokens": 5},
    )
    chunks = translate(raw)
    whole = {
        "id": "msg_01G",
        "model": MODEL,
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 5},
        "content": [
            {"type": "text", "text": "Before."},
            {"type": "some_future_block", "payload": {"a": 1}},
            {"type": "text", "text": " After."},
        ],
    }
    response = assemble(chunks).response()
    assert response == provider.parse_response(whole, created=CREATED)
    assert response["choices"][0]["message"] == {"role": "assistant", "content": "Before. After."}
    assert response["choices"][0]["finish_reason"] == "stop"
