"""The Anthropic adapter: exact wire requests, response translation, and round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import deja
from deja.config import load_config
from deja.errors import InvalidRequestError, ProviderError
from deja.providers.anthropic import (
    DEFAULT_MAX_TOKENS,
    AnthropicProvider,
    finish_reason,
)
from deja.providers.planner import minimum_cacheable_tokens
from deja.testing import FakeAnthropicServer

EPHEMERAL = {"type": "ephemeral"}
PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
provider = AnthropicProvider()
LONG_SYSTEM = "You are a helpful assistant. Answer in French. " * 100  # ~1,200 tokens


# -- the seed's examples ---------------------------------------------------------------------


def test_seed_manual_cache_control_example() -> None:
    # caching-guide.md, Part 1 "Manual Example". The seed writes the model as
    # claude-3.5-sonnet-20240620; Anthropic's id is claude-3-5-sonnet-20240620.
    request = provider.build_request(
        {
            "model": "anthropic/claude-3-5-sonnet-20240620",
            "messages": [
                {
                    "role": "system",
                    "content": "Translate to French.",
                    "cache_control": {"type": "ephemeral"},
                },
                {"role": "user", "content": "Good morning"},
            ],
        },
        api_key="sk-ant-test",
    )
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant-test",
    }
    assert request.json == {
        "model": "claude-3-5-sonnet-20240620",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "Translate to French.", "cache_control": EPHEMERAL}],
        "messages": [{"role": "user", "content": "Good morning"}],
    }
    # The caller's marker is sent as asked; deja says why it will not cache anything.
    assert request.warnings == (
        "caller's cache_control at messages[0] kept, but its prefix (~5 tokens, estimated) is "
        "below the model's minimum of 1024: the provider will not cache it",
    )


SEED_CONFIG = """\
model_list:
  - model_name: claude-3.5-cached
    litellm_params:
      model: anthropic/claude-3-5-sonnet-20240620
hooks:                                  # ← tell LiteLLM to load the hook file
  - path: anthropic_cache_control_hook.py
    async_pre_llm_hook: async_pre_llm_hook

# optional – restrict which messages the hook touches
cache_control_injection_points:
  - location: message
    role: system
"""  # noqa: RUF001 - the seed's snippet (with Anthropic's real model id)


def seed_request(tmp_path: Path, system: str) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(SEED_CONFIG, encoding="utf-8")
    settings = load_config(path, environ={})
    model = settings.model_list[0].model
    return provider.build_request(
        {
            "model": model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": "Hello!"},
            ],
        },
        api_key="sk-ant-test",
        injection_points=settings.cache_control_injection_points,
    )


def test_seed_config_injection_example_marks_the_system_prompt(tmp_path: Path) -> None:
    request = seed_request(tmp_path, LONG_SYSTEM)
    assert request.json == {
        "model": "claude-3-5-sonnet-20240620",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": LONG_SYSTEM, "cache_control": EPHEMERAL}],
        "messages": [{"role": "user", "content": "Hello!"}],
    }
    assert request.warnings == ()


def test_seed_config_injection_skips_a_system_prompt_too_short_to_cache(tmp_path: Path) -> None:
    # The seed's own system prompt is 7 tokens: a breakpoint there would cache nothing.
    request = seed_request(tmp_path, "You are a helpful assistant.")
    assert request.json["system"] == "You are a helpful assistant."
    assert request.warnings == (
        "injected breakpoint at messages[0] (injection point #0) not placed: its prefix "
        "(~7 tokens, estimated) is below the model's minimum of 1024",
    )
    assert request.plan.not_placed == {"below_minimum": 1}


def test_per_call_injection_points_come_before_configured_ones() -> None:
    body = {
        "model": "anthropic/claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": LONG_SYSTEM},
            {"role": "user", "content": LONG_SYSTEM},
        ],
        "cache_control_injection_points": [{"location": "message", "index": -1}],
    }
    request = AnthropicProvider(breakpoint_limit=1).build_request(
        body, injection_points=[{"location": "message", "role": "system"}]
    )
    assert request.json["system"] == LONG_SYSTEM
    assert request.json["messages"][0]["content"][0]["cache_control"] == EPHEMERAL
    assert "cache_control_injection_points" not in request.json


# -- request translation ---------------------------------------------------------------------


def test_full_request_translation() -> None:
    body = {
        "model": "anthropic/claude-sonnet-4-5-20250929",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}},
                    {
                        "type": "file",
                        "file": {
                            "filename": "report.pdf",
                            "file_data": "data:application/pdf;base64,JVBERi0x",
                        },
                    },
                ],
                "name": "alice",
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
            {
                "role": "tool",
                "tool_call_id": "toolu_2",
                "content": [{"type": "text", "text": "09:00"}],
            },
            {"role": "user", "content": "Thanks. And tomorrow?"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city.",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            },
            {"type": "function", "function": {"name": "get_time"}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stop": "END",
        "max_completion_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "user": "user-42",
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 7,
        "presence_penalty": 0,
        "logprobs": False,
    }
    request = provider.build_request(body, api_base="http://127.0.0.1:9999/", api_key="k")
    assert request.url == "http://127.0.0.1:9999/v1/messages"
    assert request.json == {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 300,
        "system": [
            {"type": "text", "text": "You are terse."},
            {"type": "text", "text": "Use metric units."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.test/cat.jpg"},
                    },
                    {
                        "type": "document",
                        "source": {
                            "type": "base64",
                            "media_type": "application/pdf",
                            "data": "JVBERi0x",
                        },
                        "title": "report.pdf",
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "09:00"}],
                    },
                    {"type": "text", "text": "Thanks. And tomorrow?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather for a city.",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
        "stream": True,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
    }
    # Disabled options (penalty 0, logprobs false) change nothing and are dropped quietly.
    assert request.warnings == ("seed has no Anthropic equivalent: not sent",)


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("none", False, {"type": "none"}),
        ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"type": "any"}, None, {"type": "any"}),
    ],
)
def test_tool_choice(choice: Any, parallel: Any, expected: dict[str, Any]) -> None:
    body: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": "Hi"}],
    }
    body["tools"] = [{"type": "function", "function": {"name": "f"}}]
    body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert provider.build_request(body).json["tool_choice"] == expected


def test_consecutive_turns_of_one_role_are_merged() -> None:
    body = {
        "model": "claude-haiku-4-5",
        "messages": [
            {"role": "user", "content": "One."},
            {"role": "user", "content": "Two."},
            {"role": "assistant", "content": "A."},
            {"role": "assistant", "content": [{"type": "text", "text": "B."}]},
        ],
    }
    assert provider.build_request(body).json["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "A."}, {"type": "text", "text": "B."}],
        },
    ]


def test_max_tokens_default_and_reasoning_effort() -> None:
    base = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "Hi"}]}
    assert provider.build_request(base).json["max_tokens"] == DEFAULT_MAX_TOKENS
    assert provider.build_request({**base, "max_tokens": 10}).json["max_tokens"] == 10
    both = {**base, "max_tokens": 10, "max_completion_tokens": 20}
    assert provider.build_request(both).json["max_tokens"] == 20
    thinking = provider.build_request({**base, "reasoning_effort": "medium"}).json
    assert thinking["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert thinking["max_tokens"] == DEFAULT_MAX_TOKENS + 2048  # must exceed the budget
    native = {**base, "thinking": {"type": "enabled", "budget_tokens": 5000}, "max_tokens": 8000}
    assert provider.build_request(native).json["thinking"] == {
        "type": "enabled",
        "budget_tokens": 5000,
    }
    assert "thinking" not in provider.build_request({**base, "reasoning_effort": "none"}).json
    assert AnthropicProvider(default_max_tokens=1024).build_request(base).json["max_tokens"] == 1024


@pytest.mark.parametrize(
    ("api_base", "url"),
    [
        (None, "https://api.anthropic.com/v1/messages"),
        ("https://gateway.test/anthropic", "https://gateway.test/anthropic/v1/messages"),
        ("https://gateway.test/anthropic/v1/", "https://gateway.test/anthropic/v1/messages"),
        ("https://gateway.test/v1/messages", "https://gateway.test/v1/messages"),
    ],
)
def test_url_from_api_base(api_base: str | None, url: str) -> None:
    body = {"model": "anthropic/claude-haiku-4-5", "messages": [{"role": "user", "content": "Hi"}]}
    assert provider.build_request(body, api_base=api_base).url == url


def test_headers_without_key_and_with_extras() -> None:
    body = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Hi"}]}
    request = provider.build_request(body, extra_headers={"anthropic-beta": "files-api-2025-04-14"})
    assert request.headers == {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "files-api-2025-04-14",
    }


def test_warnings_for_parameters_anthropic_lacks() -> None:
    body = {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": "Hi"}],
        "frequency_penalty": 0.5,
        "logit_bias": {"50256": -100},
        "metadata": {"trace": "x"},
        "service_tier": "flex",
        "tools": [{"type": "function", "function": {"name": "f", "strict": True}}],
    }
    built = provider.build_request(body)
    # strict tool use is Anthropic's too: sent, not warned about
    assert built.json["tools"] == [
        {"name": "f", "input_schema": {"type": "object", "properties": {}}, "strict": True}
    ]
    assert built.warnings == (
        "metadata.trace has no Anthropic equivalent: not sent",
        "service_tier 'flex' has no Anthropic equivalent: not sent",
        "frequency_penalty has no Anthropic equivalent: not sent",
        "logit_bias has no Anthropic equivalent: not sent",
    )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"n": 2}, "n must be 1"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"functions": [{"name": "f"}]}, "use tools"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "role 'function'"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "audio",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}],
                    }
                ]
            },
            "data: or http",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "t",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{oops"},
                            }
                        ],
                    }
                ]
            },
            "not JSON",
        ),
        ({"model": ""}, "model"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ],
)
def test_requests_anthropic_cannot_express_are_errors(change: dict[str, Any], match: str) -> None:
    body = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "Hi"}], **change}
    with pytest.raises(InvalidRequestError, match=match):
        provider.build_request(body)


def test_top_level_automatic_caching_takes_a_slot() -> None:
    body = {
        "model": "claude-haiku-4-5",
        "cache_control": EPHEMERAL,
        "messages": [
            {"role": "user", "content": f"m{i}", "cache_control": EPHEMERAL} for i in range(4)
        ],
    }
    request = AnthropicProvider(minimum_tokens=lambda m: 0).build_request(body)
    assert request.json["cache_control"] == EPHEMERAL
    assert request.plan.not_placed == {"over_limit": 1}


def test_automatic_one_hour_next_to_an_injected_breakpoint_is_accepted() -> None:
    # A client configured with a system injection point (5m), and a caller asking for
    # Anthropic's automatic caching with a 1h lifetime: the automatic breakpoint lands
    # after the 5m one, which Anthropic refuses with a 400 unless deja orders them.
    system = "You are a meticulous assistant. " * 400
    with FakeAnthropicServer(api_key="sk-ant-test") as server:
        client = deja.Client(
            api_base=server.url,
            api_key="sk-ant-test",
            max_retries=0,
            cache_control_injection_points=[{"location": "message", "role": "system"}],
        )
        reply = client.completion(
            model="anthropic/claude-sonnet-4-5",
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": "hello " * 500},
            ],
            max_tokens=50,
            cache_control={"type": "ephemeral", "ttl": "1h"},
        )
        sent = server.requests[-1].body
    assert sent["system"][-1]["cache_control"] == EPHEMERAL
    assert sent["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert reply.usage.cache_creation_input_tokens > 0


# -- response translation --------------------------------------------------------------------

TOOL_RESPONSE = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {
            "type": "thinking",
            "thinking": "The user wants the weather.",
            "signature": "EqQBCgIYAhIM",
        },
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
        {"type": "text", "text": "Let me check."},
        {
            "type": "tool_use",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "input": {"location": "Paris, France", "unit": "celsius"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 472,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2048,
        "output_tokens": 89,
    },
}


def test_response_translation() -> None:
    assert provider.parse_response(TOOL_RESPONSE, created=1_700_000_000) == {
        "id": "msg_01Aq9w938a90dw8q",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "reasoning_content": "The user wants the weather.",
                    "thinking_blocks": [
                        {
                            "type": "thinking",
                            "thinking": "The user wants the weather.",
                            "signature": "EqQBCgIYAhIM",
                        },
                        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
                    ],
                    "tool_calls": [
                        {
                            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"location": "Paris, France", "unit": "celsius"}',
                            },
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 2520,
            "completion_tokens": 89,
            "total_tokens": 2609,
            "prompt_tokens_details": {"cached_tokens": 2048},
            "cache_read_input_tokens": 2048,
            "cache_creation_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        },
    }


def test_tool_only_answer_has_null_content_and_empty_answer_an_empty_string() -> None:
    only_tool = {**TOOL_RESPONSE, "content": TOOL_RESPONSE["content"][3:]}
    assert provider.parse_response(only_tool)["choices"][0]["message"]["content"] is None
    empty = {**TOOL_RESPONSE, "content": [], "stop_reason": "max_tokens"}
    choice = provider.parse_response(empty)["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": ""}
    assert choice["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "length"),  # unfinished: sent back to go on (not stored)
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),  # (its own name kept in provider_specific_fields)
        (None, None),
    ],
)
def test_stop_reasons(stop_reason: str | None, finish: str | None) -> None:
    assert finish_reason(stop_reason) == finish


def test_a_body_that_is_not_a_message_is_a_provider_error() -> None:
    with pytest.raises(ProviderError):
        provider.parse_response({"type": "error", "error": {"type": "api_error"}})


def test_round_trip_a_tool_use_turn_goes_back_as_it_came() -> None:
    """An answer translated to OpenAI and sent back as history is Anthropic's own turn again:
    thinking with its signature, text, tool use with its input."""
    answer = provider.parse_response(TOOL_RESPONSE)["choices"][0]["message"]
    body = {
        "model": "claude-sonnet-4-5-20250929",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            answer,
            {"role": "tool", "tool_call_id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "content": "18 C"},
        ],
    }
    sent = provider.build_request(body).json["messages"]
    assert sent[1] == {"role": "assistant", "content": TOOL_RESPONSE["content"]}
    assert sent[2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "content": "18 C",
            }
        ],
    }


def test_round_trip_request_translation_keeps_every_block() -> None:
    """OpenAI parts → Anthropic blocks keep text, images, markers and tool calls one for one."""
    body = {
        "model": "claude-haiku-4-5",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "A", "cache_control": EPHEMERAL},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}},
                ],
            }
        ],
    }
    sent = AnthropicProvider(minimum_tokens=lambda m: 0).build_request(body).json
    blocks = sent["messages"][0]["content"]
    assert [b["type"] for b in blocks] == ["text", "image"]
    assert blocks[0]["cache_control"] == EPHEMERAL
    assert blocks[1]["source"]["media_type"] == "image/jpeg"
    assert json.loads(json.dumps(sent)) == sent  # plain JSON all the way down


def test_minimum_lookup_is_injectable() -> None:
    seen: list[str] = []

    def minimum(model: str) -> int:
        seen.append(model)
        return minimum_cacheable_tokens(model)

    body = {
        "model": "anthropic/claude-3-5-haiku-20241022",
        "messages": [{"role": "user", "content": "Hi"}],
    }
    AnthropicProvider(minimum_tokens=minimum).build_request(body)
    assert seen == ["claude-3-5-haiku-20241022"]


# -- blank text and empty turns (Anthropic refuses both) ----------------------------------------

WEATHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def translate(messages: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    payload, _, warnings = provider.translate_request(
        {"model": "anthropic/claude-sonnet-4-5", "messages": messages}
    )
    return payload, warnings


def test_blank_text_next_to_tool_calls_and_an_empty_assistant_turn_are_not_sent() -> None:
    payload, warnings = translate(
        [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "\n\n", "tool_calls": [WEATHER_CALL]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Thanks. And Rome?"},
        ]
    )
    assert payload["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            ],
        },
        {  # the empty assistant turn is gone, so the user turns around it merge
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "text", "text": "Thanks. And Rome?"},
            ],
        },
    ]
    assert warnings == ["messages[3] has no content Anthropic accepts (blank text): not sent"]


def test_blank_parts_system_and_a_blank_middle_user_turn_are_not_sent() -> None:
    payload, warnings = translate(
        [
            {"role": "system", "content": " \t"},
            {"role": "developer", "content": [{"type": "text", "text": "\n"}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "  "}, "Hi", {"type": "text", "text": ""}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
            {"role": "user", "content": "   "},
            {"role": "assistant", "content": "How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ]
    )
    assert "system" not in payload
    assert payload["messages"] == [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Hello."},
                {"type": "text", "text": "How can I help?"},
            ],
        },
        {"role": "user", "content": "Tell me a joke."},
    ]
    assert warnings == ["messages[4] has no content Anthropic accepts (blank text): not sent"]


def test_thinking_next_to_blank_text_is_kept() -> None:
    thinking = {"type": "thinking", "thinking": "Paris, then.", "signature": "sig"}
    payload, _ = translate(
        [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": " ",
                "thinking_blocks": [thinking],
                "tool_calls": [WEATHER_CALL],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ]
    )
    assert [b["type"] for b in payload["messages"][1]["content"]] == ["thinking", "tool_use"]


def test_a_blank_tool_result_is_sent_without_content() -> None:
    payload, warnings = translate(
        [
            {"role": "user", "content": "Run both."},
            {"role": "assistant", "tool_calls": [WEATHER_CALL, {**WEATHER_CALL, "id": "call_2"}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "  "},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": ""}]},
        ]
    )
    assert payload["messages"][-1] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1"},
            {"type": "tool_result", "tool_use_id": "call_2"},
        ],
    }
    assert warnings == []


def test_a_breakpoint_on_blank_text_moves_to_the_block_before() -> None:
    payload, warnings = translate(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Long document."},
                    {"type": "text", "text": "\n", "cache_control": EPHEMERAL},
                ],
            },
            {"role": "assistant", "content": " ", "cache_control": EPHEMERAL},
            {"role": "user", "content": "Question?"},
        ]
    )
    assert payload["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Long document.", "cache_control": EPHEMERAL},
                {"type": "text", "text": "Question?"},
            ],
        }
    ]
    assert warnings[-2:] == [  # after the planner's (the prefixes are short)
        "breakpoint at messages[1] not sent: the message is blank",
        "messages[1] has no content Anthropic accepts (blank text): not sent",
    ]


def test_a_prefill_loses_its_trailing_whitespace() -> None:
    payload, warnings = translate(
        [
            {"role": "user", "content": "Give me JSON."},
            {"role": "assistant", "content": [{"type": "text", "text": "Here it is: {\n  "}]},
        ]
    )
    assert payload["messages"][-1] == {"role": "assistant", "content": "Here it is: {"}
    assert warnings == [
        "messages[1]: trailing whitespace of the final assistant message (a prefill) not sent: "
        "Anthropic refuses it"
    ]
    # Only the final assistant message is a prefill: earlier ones keep their whitespace.
    payload, warnings = translate(
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! "},
            {"role": "user", "content": "Bye"},
        ]
    )
    assert payload["messages"][1]["content"] == "Hello! " and warnings == []


def test_a_blank_final_assistant_message_is_not_sent() -> None:
    payload, warnings = translate(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]
    )
    assert payload["messages"] == [{"role": "user", "content": "Hi"}]
    assert warnings == ["messages[1] has no content Anthropic accepts (blank text): not sent"]


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        (  # dropping it would make "Hello." a prefill to continue
            [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": " \n"},
            ],
            r"messages\[2\]: the last message is blank",
        ),
        ([{"role": "system", "content": "Be nice."}, {"role": "user", "content": ""}], "blank"),
    ],
)
def test_a_blank_last_user_message_is_refused(messages: list[dict[str, Any]], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        translate(messages)


@pytest.mark.parametrize(
    "part",
    [
        {"type": "text", "text": {"question": "What is the capital of Peru?"}},
        {"type": "text", "text": 42},
        {"type": "text"},
        {"type": "refusal", "refusal": ["no"]},
    ],
)
def test_a_text_part_that_is_not_a_string_is_refused_not_dropped_as_blank(
    part: dict[str, Any],
) -> None:
    # dropped, it made an answer to the other parts alone, cached under the whole request's key
    content = [{"type": "text", "text": "Answer the question below."}, part]
    with pytest.raises(InvalidRequestError, match=r"messages\[0\]\.content\[1\]\.\w+ must be a"):
        translate([{"role": "user", "content": content}])


# -- file parts: documents Anthropic accepts ------------------------------------------------------


def user_part(part: dict[str, Any]) -> dict[str, Any]:
    payload, _ = translate([{"role": "user", "content": [{"type": "text", "text": "Read."}, part]}])
    block: dict[str, Any] = payload["messages"][0]["content"][1]
    return block


def b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_a_plain_text_file_is_a_text_document_with_its_title() -> None:
    data = b64("Invoice 42: 100 €".encode())
    part = {
        "type": "file",
        "file": {"filename": "invoice.txt", "file_data": f"data:text/plain;base64,{data}"},
        "cache_control": EPHEMERAL,
    }
    assert user_part(part) == {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "Invoice 42: 100 €"},
        "title": "invoice.txt",
        "cache_control": EPHEMERAL,
    }
    latin = b64("caf\xe9".encode("latin-1"))
    part = {
        "type": "file",
        "file": {"file_data": f"data:text/plain;charset=ISO-8859-1;base64,{latin}"},
    }
    assert user_part(part)["source"]["data"] == "café"


def test_pdf_and_image_files_keep_their_block_types() -> None:
    pdf = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
    }
    assert user_part(pdf) == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
        "title": "a.pdf",
    }
    image = {
        "type": "file",
        "file": {"filename": "dot.png", "file_data": f"data:image/png;base64,{PNG}"},
    }
    assert user_part(image) == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }
    url = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    assert user_part(url) == user_part(image)


@pytest.mark.parametrize(
    "media",
    [
        "text/csv",
        "text/markdown",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/octet-stream",
    ],
)
def test_other_file_types_are_refused_naming_the_media_type(media: str) -> None:
    part = {"type": "file", "file": {"filename": "x", "file_data": f"data:{media};base64,eA=="}}
    with pytest.raises(
        InvalidRequestError, match=rf"content\[1\]: Anthropic does not accept {media} files"
    ):
        user_part(part)
    with pytest.raises(InvalidRequestError, match=media):
        user_part({"type": "image_url", "image_url": {"url": f"data:{media};base64,eA=="}})


def test_plain_text_that_does_not_decode_is_refused() -> None:
    part = {"type": "file", "file": {"file_data": "data:text/plain;base64,/w=="}}  # byte 0xff
    with pytest.raises(InvalidRequestError, match="not base64 text in utf-8"):
        user_part(part)


# -- server tools in answers ---------------------------------------------------------------------

# Anthropic's web search answer (its docs' shape): the search and its results ran at Anthropic.
WEB_SEARCH_MESSAGE = {
    "id": "msg_01G",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "text", "text": "I'll check the weather."},
        {
            "type": "server_tool_use",
            "id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
            "name": "web_search",
            "input": {"query": "weather NYC today"},
        },
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_014hJH82Qum7Td6UV8gDXThB",
            "content": [
                {
                    "type": "web_search_result",
                    "title": "Weather in New York City",
                    "url": "https://world-weather.info/forecast/usa/new_york/",
                    "encrypted_content": "Ev0DCioIAxgCIiQ3NmU4ZmI4OC1k",
                    "page_age": None,
                }
            ],
        },
        {
            "type": "text",
            "text": "It is sunny.",
            "citations": [
                {
                    "type": "web_search_result_location",
                    "url": "https://world-weather.info/forecast/usa/new_york/",
                    "title": "Weather in New York City",
                    "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNm",
                    "cited_text": "Sunny, 24 C",
                }
            ],
        },
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 2679,
        "output_tokens": 510,
        "server_tool_use": {"web_search_requests": 1},
    },
}


def test_server_tool_use_and_results_are_not_tool_calls() -> None:
    response = provider.parse_response(WEB_SEARCH_MESSAGE, created=1)
    choice = response["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": "I'll check the weather.It is sunny.",
    }
    assert choice["finish_reason"] == "stop"
    assert response["usage"]["server_tool_use"] == {"web_search_requests": 1}


def test_a_client_tool_call_next_to_a_server_tool_is_the_only_tool_call() -> None:
    call = {"type": "tool_use", "id": "toolu_1", "name": "book", "input": {"day": "Monday"}}
    mcp = [
        {
            "type": "mcp_tool_use",
            "id": "mcptoolu_1",
            "name": "lookup",
            "server_name": "s",
            "input": {},
        },
        {"type": "mcp_tool_result", "tool_use_id": "mcptoolu_1", "is_error": False, "content": []},
    ]
    data = {
        **WEB_SEARCH_MESSAGE,
        "content": [*WEB_SEARCH_MESSAGE["content"], *mcp, call],
        "stop_reason": "tool_use",
    }
    choice = provider.parse_response(data)["choices"][0]
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "book", "arguments": '{"day": "Monday"}'},
        }
    ]
    assert choice["finish_reason"] == "tool_calls"
    # A tool_use stop with no client tool call has nothing for the caller to answer.
    data = {**WEB_SEARCH_MESSAGE, "stop_reason": "tool_use"}
    assert provider.parse_response(data)["choices"][0]["finish_reason"] == "stop"
