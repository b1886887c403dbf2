"""The Bedrock Converse adapter: exact wire requests, cachePoints, signing, credentials,
responses, usage, and streams assembled into the non-stream translation."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from deja.errors import (
    ConfigError,
    InvalidRequestError,
    MissingDependencyError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from deja.providers.bedrock import (
    AwsCredentials,
    BedrockProvider,
    StreamTranslator,
    bedrock_minimum_tokens,
    finish_reason,
    model_id,
    normalize_bedrock,
    resolve_aws,
    supports_1h_cache,
    supports_prompt_caching,
)
from deja.providers.eventstream import EventStreamDecoder, encode_message, to_event
from deja.streaming import StreamAssembler, replay_chunks

provider = BedrockProvider()
CREDENTIALS = AwsCredentials(
    "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "session-tok"
)
EPHEMERAL = {"type": "ephemeral"}
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}
CACHE_POINT = {"cachePoint": {"type": "default"}}
CACHE_POINT_1H = {"cachePoint": {"type": "default", "ttl": "1h"}}
PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PDF = "JVBERi0xLjQK"  # "%PDF-1.4\n"
LONG = "You are a helpful assistant. Answer in French. " * 100  # ~1,200 tokens
SONNET_45 = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET_37 = "anthropic.claude-3-7-sonnet-20250219-v1:0"
NOVA = "amazon.nova-pro-v1:0"


def translate(body: dict[str, Any], **options: Any) -> Any:
    return provider.translate_request(body, **options)


# -- models -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
        ),
        ("bedrock/converse/us.amazon.nova-pro-v1:0", "us.amazon.nova-pro-v1:0"),
        ("amazon.nova-micro-v1:0", "amazon.nova-micro-v1:0"),
        (
            "bedrock/arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
    ],
)
def test_model_names(model: str, expected: str) -> None:
    assert model_id(model) == expected


def test_the_invoke_route_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="InvokeModel"):
        model_id("bedrock/invoke/anthropic.claude-3-5-sonnet-20240620-v1:0")


@pytest.mark.parametrize(
    ("model", "caching", "one_hour", "minimum"),
    [
        ("anthropic.claude-3-7-sonnet-20250219-v1:0", True, False, 1024),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", True, False, 2048),
        ("anthropic.claude-sonnet-4-20250514-v1:0", True, False, 1024),
        ("eu.anthropic.claude-opus-4-1-20250805-v1:0", True, False, 1024),
        (SONNET_45, True, True, 1024),
        ("global.anthropic.claude-haiku-4-5-20251001-v1:0", True, True, 4096),
        ("anthropic.claude-opus-4-5-20251101-v1:0", True, True, 4096),
        ("us.anthropic.claude-opus-4-6-v1", True, True, 4096),
        ("us.anthropic.claude-opus-4-7", True, True, 2048),
        # 512 on Anthropic's own API, which documents 1,024 on Bedrock for Fable 5 and
        # Mythos 5 and defers to AWS for the rest: never below Bedrock's 1,024
        ("us.anthropic.claude-opus-5", True, True, 1024),
        (
            "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0",
            True,
            True,
            1024,
        ),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", False, False, 1024),  # preview only
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", False, False, 1024),
        ("anthropic.claude-3-haiku-20240307-v1:0", False, False, 2048),
        ("amazon.nova-micro-v1:0", True, False, 1000),
        ("us.amazon.nova-lite-v1:0", True, False, 1000),
        (NOVA, True, False, 1000),
        ("us.amazon.nova-premier-v1:0", True, False, 1000),
        ("meta.llama3-70b-instruct-v1:0", False, False, 1024),
        ("mistral.mistral-large-2402-v1:0", False, False, 1024),
        ("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123", False, False, 1024),
    ],
)
def test_model_capabilities(model: str, caching: bool, one_hour: bool, minimum: int) -> None:
    assert supports_prompt_caching(model) is caching
    assert supports_1h_cache(model) is one_hour
    assert bedrock_minimum_tokens(model) == minimum


# -- request translation ------------------------------------------------------------------


def test_every_mapped_field_on_the_wire() -> None:
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello"},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in these?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {
                            "type": "file",
                            "file": {
                                "file_data": f"data:application/pdf;base64,{PDF}",
                                "filename": "Q3 report (final).pdf",
                            },
                        },
                        {"type": "image_url", "image_url": {"url": "s3://bucket/photos/cat.jpg"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": "",  # OpenAI histories carry "" next to tool calls
                    "thinking_blocks": [
                        {"type": "thinking", "thinking": "Look it up.", "signature": "sig=="},
                        {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
                    ],
                    "tool_calls": [
                        {
                            "id": "tooluse_1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q": "cat"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "tooluse_1", "content": "a cat"},
                {"role": "user", "content": "Thanks."},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "lookup",
                        "description": "Look something up.",
                        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                        "strict": True,
                    },
                }
            ],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
            "max_completion_tokens": 300,
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "stop": ["\n\nHuman:"],
            "metadata": {"team": "search"},
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": {"type": "object"}},
            },
            "service_tier": "priority",
            "stream": True,
            "stream_options": {"include_usage": True},
            "anthropic_beta": ["token-efficient-tools-2025-02-19"],
            "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
        }
    )
    assert translation.json == {
        "system": [{"text": "Be brief."}, {"text": "Answer in French."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "Hello"},
                    {"text": "What is in these?"},
                    {"image": {"format": "png", "source": {"bytes": PNG}}},
                    {
                        "document": {
                            "format": "pdf",
                            "name": "Q3 report (final)",
                            "source": {"bytes": PDF},
                        }
                    },
                    {
                        "image": {
                            "format": "jpeg",
                            "source": {"s3Location": {"uri": "s3://bucket/photos/cat.jpg"}},
                        }
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {
                        "reasoningContent": {
                            "reasoningText": {"text": "Look it up.", "signature": "sig=="}
                        }
                    },
                    {"reasoningContent": {"redactedContent": "ZW5jcnlwdGVk"}},
                    {
                        "toolUse": {
                            "toolUseId": "tooluse_1",
                            "name": "lookup",
                            "input": {"q": "cat"},
                        }
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "a cat"}]}},
                    {"text": "Thanks."},
                ],
            },
        ],
        "inferenceConfig": {
            "maxTokens": 300,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["\n\nHuman:"],
        },
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "lookup",
                        "description": "Look something up.",
                        "inputSchema": {
                            "json": {"type": "object", "properties": {"q": {"type": "string"}}}
                        },
                        "strict": True,
                    }
                }
            ],
            "toolChoice": {"tool": {"name": "lookup"}},
        },
        "additionalModelRequestFields": {
            "top_k": 40,
            "anthropic_beta": ["token-efficient-tools-2025-02-19"],
        },
        "outputConfig": {
            "textFormat": {
                "type": "json_schema",
                "structure": {"jsonSchema": {"schema": '{"type": "object"}', "name": "answer"}},
            }
        },
        "requestMetadata": {"team": "search"},
        "serviceTier": {"type": "priority"},
        "guardrailConfig": {"guardrailIdentifier": "gr-1", "guardrailVersion": "1"},
    }
    assert translation.warnings == []
    assert translation.ttl_downgrades == 0


def test_openai_only_parameters_are_not_sent_and_each_is_named() -> None:
    translation = translate(
        {
            "model": f"bedrock/{NOVA}",
            "messages": [{"role": "user", "content": "Hi"}],
            "frequency_penalty": 0.5,
            "presence_penalty": 0,
            "seed": 7,
            "logprobs": False,  # disabled: changes nothing, no warning
            "user": "user-42",
            "parallel_tool_calls": False,
            "cache_control": EPHEMERAL,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "none",
            "reasoning_effort": "low",
            "service_tier": "auto",
            "metadata": {"n": 1},
        }
    )
    assert translation.json == {
        "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "f",
                        "inputSchema": {"json": {"type": "object", "properties": {}}},
                    }
                }
            ]
        },
    }
    # presence_penalty 0 is OpenAI's default: not sending it changes nothing either.
    assert translation.warnings == [
        "reasoning_effort is sent to Claude models only on Bedrock: not sent",
        "parallel_tool_calls has no Bedrock Converse equivalent: not sent",
        "tool_choice 'none' has no Bedrock Converse equivalent: not sent (the model may still "
        "call a tool)",
        "metadata.n is not a string: not sent",
        "service_tier 'auto' has no Bedrock equivalent: not sent",
        "frequency_penalty has no Bedrock Converse equivalent: not sent",
        "seed has no Bedrock Converse equivalent: not sent",
        "user has no Bedrock Converse equivalent: not sent",
        "cache_control has no Bedrock Converse equivalent: not sent",
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "f"}}, {"tool": {"name": "f"}}),
        ({"any": {}}, {"any": {}}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = {
        "model": f"bedrock/{SONNET_45}",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": choice,
    }
    assert translate(body).json["toolConfig"]["toolChoice"] == expected


def test_reasoning_effort_becomes_claude_thinking_with_room_for_the_answer() -> None:
    translation = translate(
        {
            "model": f"bedrock/{SONNET_37}",
            "messages": [{"role": "user", "content": "Think."}],
            "reasoning_effort": "medium",
        }
    )
    assert translation.json["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    }
    assert translation.json["inferenceConfig"] == {"maxTokens": 4096 + 2048}


def test_nova_takes_top_k_inside_its_own_inference_config() -> None:
    translation = translate(
        {"model": f"bedrock/{NOVA}", "messages": [{"role": "user", "content": "Hi"}], "top_k": 20}
    )
    assert translation.json["additionalModelRequestFields"] == {"inferenceConfig": {"topK": 20}}


def test_the_callers_own_additional_fields_win() -> None:
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [{"role": "user", "content": "Hi"}],
            "top_k": 5,
            "additionalModelRequestFields": {"top_k": 9, "anthropic_beta": ["x"]},
        }
    )
    assert translation.json["additionalModelRequestFields"] == {"top_k": 9, "anthropic_beta": ["x"]}


def test_converse_shaped_parts_and_tools_pass_through() -> None:
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"guardContent": {"text": {"text": "check me"}}},
                        {"text": "and me"},
                    ],
                }
            ],
            "tools": [{"toolSpec": {"name": "g", "inputSchema": {"json": {"type": "object"}}}}],
        }
    )
    assert translation.json["messages"][0]["content"] == [
        {"guardContent": {"text": {"text": "check me"}}},
        {"text": "and me"},
    ]
    assert translation.json["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "g", "inputSchema": {"json": {"type": "object"}}}}]
    }


def test_blank_text_is_not_sent() -> None:
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "  "}, {"type": "text", "text": "Hi"}],
                },
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "Again"},
            ],
        }
    )
    # The empty assistant turn goes, and the user turns around it become one.
    assert translation.json["messages"] == [
        {"role": "user", "content": [{"text": "Hi"}, {"text": "Again"}]}
    ]
    assert translation.warnings == [
        "messages[1] has no content Bedrock accepts (blank text): not sent"
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n": 2}, "n must be 1"),
        ({"functions": [{"name": "f"}]}, "use tools"),
        ({"inferenceConfig": {"maxTokens": 5}}, "inferenceConfig is built from"),
        ({"response_format": {"type": "json_object"}}, "json_object"),
        ({"reasoning_effort": "extreme"}, "not known"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ]
            },
            "does not fetch URLs",
        ),
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
                        "role": "system",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": f"data:image/png;base64,{PNG}"},
                            }
                        ],
                    }
                ]
            },
            "text only",
        ),
        ({"tool_choice": "required"}, "tool_choice needs tools"),
    ],
)
def test_requests_converse_cannot_express_are_refused(change: dict[str, Any], message: str) -> None:
    body = {"model": f"bedrock/{SONNET_45}", "messages": [{"role": "user", "content": "Hi"}]}
    with pytest.raises(InvalidRequestError, match=message):
        translate({**body, **change})


# -- cachePoints ----------------------------------------------------------------------------


DOC = "Clause 7: refunds over 500 EUR need a manager's approval. " * 400  # ~6k tokens


def test_a_breakpoint_on_a_trailing_blank_part_moves_to_the_block_before() -> None:
    # Chat UIs append "\n"; the latest-message injection point lands on it. Bedrock refuses
    # blank text, and dropping the part used to drop its cachePoint without a word.
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": DOC}, {"type": "text", "text": "\n"}],
                }
            ],
        },
        injection_points=[{"location": "message", "index": -1}],
    )
    assert [str(b.target) for b in translation.plan.breakpoints] == ["messages[0].content[1]"]
    assert translation.json["messages"] == [
        {"role": "user", "content": [{"text": DOC}, CACHE_POINT]}
    ]
    assert translation.warnings == []


def test_a_breakpoint_on_a_leading_blank_part_goes_on_the_message_s_last_block() -> None:
    # Nothing before it in the message: the Anthropic adapter's rule, the message's end.
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": " ", "cache_control": ONE_HOUR},
                        {"type": "text", "text": DOC},
                    ],
                }
            ],
        }
    )
    assert translation.json["messages"] == [
        {"role": "user", "content": [{"text": DOC}, CACHE_POINT_1H]}
    ]


def test_a_breakpoint_on_a_blank_message_is_named() -> None:
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [
                {"role": "system", "content": DOC},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "\n", "cache_control": EPHEMERAL}],
                },
                {"role": "user", "content": "Hi"},
            ],
        }
    )
    assert "cachePoint" not in json.dumps(translation.json)
    assert translation.warnings == [
        "breakpoint at messages[1] not sent: the message is blank",
        "messages[1] has no content Bedrock accepts (blank text): not sent",
    ]


def test_a_breakpoint_on_a_blank_tool_result_part_follows_the_result() -> None:
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [
                {"role": "user", "content": DOC},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {
                    "role": "tool",
                    "tool_call_id": "t1",
                    "content": [
                        {"type": "text", "text": "42"},
                        {"type": "text", "text": "", "cache_control": EPHEMERAL},
                    ],
                },
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}],
        }
    )
    assert translation.json["messages"][-1] == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "42"}]}}, CACHE_POINT],
    }


def test_callers_markers_become_cache_points_after_their_blocks() -> None:
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [
                {"role": "system", "content": LONG, "cache_control": EPHEMERAL},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Document:"},
                        {"type": "text", "text": LONG, "cache_control": EPHEMERAL},
                        {"type": "text", "text": "Question?"},
                    ],
                },
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "42", "cache_control": EPHEMERAL},
            ],
            "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": EPHEMERAL}],
        }
    )
    assert translation.json["toolConfig"]["tools"] == [
        {"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}},
        CACHE_POINT,
    ]
    assert translation.json["system"] == [{"text": LONG}, CACHE_POINT]
    assert translation.json["messages"] == [
        {
            "role": "user",
            "content": [{"text": "Document:"}, {"text": LONG}, CACHE_POINT, {"text": "Question?"}],
        },
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "t1", "content": [{"text": "42"}]}},
                CACHE_POINT,
            ],
        },
    ]
    assert [str(b.target) for b in translation.plan.breakpoints] == [
        "tools[0]",
        "messages[0]",
        "messages[1].content[1]",
        "messages[3]",
    ]
    # The tool's prefix is tiny: deja says so, but sends the caller's marker as asked.
    assert translation.warnings == [
        "caller's cache_control at tools[0] kept, but its prefix (~12 tokens, estimated) is "
        "below the model's minimum of 1024: the provider will not cache it",
    ]


def test_injection_points_fill_the_limit_and_name_what_does_not_fit() -> None:
    turns: list[dict[str, Any]] = [{"role": "system", "content": LONG}]
    for i in range(4):
        turns.append({"role": "user", "content": f"Question {i}: " + LONG})
        turns.append({"role": "assistant", "content": f"Answer {i}."})
    turns.append({"role": "user", "content": "Last question."})
    translation = translate(
        {"model": f"bedrock/{SONNET_37}", "messages": turns},
        injection_points=[
            {"location": "message", "role": "system"},
            {"location": "message", "role": "user", "last": 4},
        ],
    )
    sent = json.dumps(translation.json)
    assert sent.count('"cachePoint"') == 4  # Bedrock's limit
    assert translation.json["system"] == [{"text": LONG}, CACHE_POINT]
    # The latest user turns win the remaining slots: they cache the longest prefixes.
    assert [str(b.target) for b in translation.plan.breakpoints] == [
        "messages[0]",
        "messages[5]",
        "messages[7]",
        "messages[9]",
    ]
    assert translation.warnings == [
        "injected breakpoint at messages[3] (injection point #1) not placed: the provider's "
        "limit of 4 breakpoints is reached",
    ]


def test_a_1h_breakpoint_is_kept_on_a_model_with_the_1h_cache() -> None:
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [
                {"role": "system", "content": LONG, "cache_control": ONE_HOUR},
                {"role": "user", "content": "Hi"},
            ],
        }
    )
    assert translation.json["system"] == [{"text": LONG}, CACHE_POINT_1H]
    assert translation.ttl_downgrades == 0
    assert translation.warnings == []
    assert translation.plan.breakpoints[0].ttl == "1h"


def test_a_1h_breakpoint_is_downgraded_and_counted_where_the_model_has_no_1h_cache() -> None:
    body = {
        "model": f"bedrock/{SONNET_37}",
        "messages": [
            {"role": "system", "content": LONG, "cache_control": ONE_HOUR},
            {"role": "user", "content": LONG + "?"},
        ],
    }
    wire = provider.build_request(
        body,
        region="us-east-1",
        credentials=CREDENTIALS,
        injection_points=[{"location": "message", "index": -1, "ttl": "1h"}],
    )
    assert wire.json["system"] == [{"text": LONG}, CACHE_POINT]
    assert wire.json["messages"] == [
        {"role": "user", "content": [{"text": LONG + "?"}, CACHE_POINT]}
    ]
    assert wire.ttl_downgrades == 2
    assert wire.warnings == (
        f"breakpoint at messages[0] downgraded from ttl 1h to 5m: {SONNET_37} does not "
        "support a 1h cache on Bedrock",
        f"breakpoint at messages[1] downgraded from ttl 1h to 5m: {SONNET_37} does not "
        "support a 1h cache on Bedrock",
    )
    assert [b.ttl for b in wire.plan.breakpoints] == ["5m", "5m"]
    assert [w.kind for w in wire.plan.warnings] == ["ttl_downgraded", "ttl_downgraded"]


def test_no_cache_point_goes_to_a_model_without_prompt_caching() -> None:
    translation = translate(
        {
            "model": "bedrock/meta.llama3-70b-instruct-v1:0",
            "messages": [
                {"role": "system", "content": LONG, "cache_control": EPHEMERAL},
                {"role": "user", "content": "Hi"},
            ],
        },
        injection_points=[{"location": "message", "index": -1}],
    )
    assert "cachePoint" not in json.dumps(translation.json)
    assert translation.plan.breakpoints == ()
    assert translation.warnings == [
        "breakpoint at messages[0] not sent: meta.llama3-70b-instruct-v1:0 does not support "
        "prompt caching on Bedrock",
        "breakpoint at messages[1] not sent: meta.llama3-70b-instruct-v1:0 does not support "
        "prompt caching on Bedrock",
    ]


def test_nova_caches_messages_but_not_tool_definitions() -> None:
    translation = translate(
        {
            "model": f"bedrock/us.{NOVA}",
            "messages": [
                {"role": "system", "content": LONG, "cache_control": EPHEMERAL},
                {"role": "user", "content": "Hi"},
            ],
            "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": EPHEMERAL}],
        }
    )
    assert translation.json["toolConfig"]["tools"] == [
        {"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object", "properties": {}}}}}
    ]
    assert translation.json["system"] == [{"text": LONG}, CACHE_POINT]
    assert translation.warnings[-1] == (
        f"breakpoint at tools[0] not sent: us.{NOVA} does not cache tool definitions (Bedrock "
        "refuses a cachePoint in its toolConfig)"
    )
    assert [str(b.target) for b in translation.plan.breakpoints] == ["messages[0]"]


def test_a_tool_breakpoint_nova_cannot_take_leaves_its_slot_to_a_message() -> None:
    messages: list[dict[str, Any]] = [{"role": "system", "content": LONG}]
    for i in range(4):
        messages += [
            {"role": "user", "content": f"question {i} {LONG}"},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    messages.append({"role": "user", "content": "last"})
    translation = translate(
        {
            "model": f"bedrock/us.{NOVA}",
            "messages": messages,
            "tools": [{"type": "function", "function": {"name": "f", "description": LONG}}],
        },
        injection_points=[
            {"location": "tool"},
            {"location": "message", "role": "system"},
            {"location": "message", "role": "user", "last": 3},
        ],
    )
    assert json.dumps(translation.json).count("cachePoint") == 4
    assert all(b.target.kind == "message" for b in translation.plan.breakpoints)
    assert translation.warnings == [
        f"breakpoint at tools[0] not sent: us.{NOVA} does not cache tool definitions (Bedrock "
        "refuses a cachePoint in its toolConfig)"
    ]


def test_a_tool_history_without_tools_is_told_as_text() -> None:
    # a summary asked after an agent loop: Converse refuses toolUse/toolResult blocks
    # without a toolConfig, and offering the old tools would let the model call them
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
                {"role": "user", "content": "Summarise that in one line."},
            ],
        }
    )
    sent = translation.json
    assert "toolConfig" not in sent
    assert "toolUse" not in json.dumps(sent) and "toolResult" not in json.dumps(sent)
    assert sent["messages"][1]["content"] == [
        {"text": '[called tool get_weather with {"city": "Paris"}]'}
    ]
    assert sent["messages"][2]["content"][:2] == [
        {"text": "[result of get_weather:]"},
        {"text": "sunny, 21 C"},
    ]
    assert "sent as text" in translation.warnings[-1]


# -- the signed request ---------------------------------------------------------------------


def test_build_request_signs_the_exact_bytes_it_sends() -> None:
    wire = provider.build_request(
        {"model": f"bedrock/{SONNET_45}", "messages": [{"role": "user", "content": "Hi"}]},
        region="us-west-2",
        credentials=CREDENTIALS,
        extra_headers={"x-amzn-bedrock-trace": "ENABLED"},
    )
    assert wire.url == (
        "https://bedrock-runtime.us-west-2.amazonaws.com/model/"
        "us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    )
    assert wire.content == orjson.dumps(wire.json)
    assert set(wire.headers) == {
        "content-type",
        "x-amzn-bedrock-trace",
        "x-amz-date",
        "x-amz-security-token",
        "authorization",
    }
    assert wire.headers["x-amz-security-token"] == "session-tok"
    authorization = wire.headers["authorization"]
    assert authorization.startswith(
        f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{wire.headers['x-amz-date'][:8]}/us-west-2/"
        "bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;"
        "x-amz-security-token;x-amzn-bedrock-trace, Signature="
    )
    # Recomputed independently from the request as it will be sent.
    request = AWSRequest(
        method="POST",
        url=wire.url,
        data=wire.content,
        headers={k: v for k, v in wire.headers.items() if k != "authorization"},
    )
    request.context["timestamp"] = wire.headers["x-amz-date"]
    signer = SigV4Auth(
        Credentials(CREDENTIALS.access_key, CREDENTIALS.secret_key, CREDENTIALS.token),
        "bedrock",
        "us-west-2",
    )
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    assert authorization.endswith(f"Signature={expected}")


def test_streams_and_arns_get_their_own_urls() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3"
    wire = provider.build_request(
        {"model": f"bedrock/converse/{arn}", "messages": [{"role": "user", "content": "Hi"}]},
        region="us-east-1",
        credentials=AwsCredentials("AK", "SK"),
        api_base="https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/",
        stream=True,
    )
    assert wire.url == (
        "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/model/"
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3"
        "/converse-stream"
    )
    assert "x-amz-security-token" not in wire.headers


def test_a_region_that_is_not_a_region_name_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="region"):
        provider.build_request(
            {"model": f"bedrock/{NOVA}", "messages": [{"role": "user", "content": "Hi"}]},
            region="evil.example.com/",
            credentials=CREDENTIALS,
        )


def test_credentials_never_show_their_secret() -> None:
    shown = repr(CREDENTIALS)
    assert "AKIDEXAMPLE" in shown
    assert CREDENTIALS.secret_key not in shown and "session-tok" not in shown


# -- credentials ----------------------------------------------------------------------------

_AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An AWS environment with nothing configured: no variables, empty files, no IMDS."""
    for name in _AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def test_explicit_keys_win(aws_env: Path) -> None:
    region, credentials = resolve_aws(
        "eu-west-1", access_key="AK", secret_key="SK", session_token="T"
    )
    assert (region, credentials) == ("eu-west-1", AwsCredentials("AK", "SK", "T"))


def test_environment_variables(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SKENV")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "TOKENV")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert resolve_aws() == ("ap-south-1", AwsCredentials("AKENV", "SKENV", "TOKENV"))
    monkeypatch.setenv("AWS_REGION", "us-east-2")  # AWS_REGION comes first
    assert resolve_aws()[0] == "us-east-2"
    assert resolve_aws("us-west-1")[0] == "us-west-1"  # and an explicit region before both


def test_a_profile_from_the_shared_files(aws_env: Path) -> None:
    (aws_env / "credentials").write_text(
        "[work]\naws_access_key_id = AKFILE\naws_secret_access_key = SKFILE\n"
    )
    (aws_env / "config").write_text("[profile work]\nregion = eu-central-1\n")
    assert resolve_aws(profile="work") == ("eu-central-1", AwsCredentials("AKFILE", "SKFILE"))


def test_missing_credentials_say_what_to_set(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        resolve_aws()


def test_a_missing_region_says_what_to_set(aws_env: Path) -> None:
    with pytest.raises(ConfigError, match="set AWS_REGION"):
        resolve_aws(access_key="AK", secret_key="SK")


def test_half_a_key_pair_and_unknown_profiles_are_config_errors(aws_env: Path) -> None:
    with pytest.raises(ConfigError, match="both an access key and a secret key"):
        resolve_aws("us-east-1", access_key="AK")
    with pytest.raises(ConfigError, match="nope"):
        resolve_aws("us-east-1", profile="nope")


def test_without_botocore_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "botocore.session", None)
    monkeypatch.setitem(sys.modules, "botocore.auth", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'deja-llm\[bedrock\]'"):
        resolve_aws("us-east-1", access_key="AK", secret_key="SK")
    with pytest.raises(MissingDependencyError, match=r"deja-llm\[bedrock\]"):
        provider.build_request(
            {"model": f"bedrock/{NOVA}", "messages": [{"role": "user", "content": "Hi"}]},
            region="us-east-1",
            credentials=CREDENTIALS,
        )


# -- responses ------------------------------------------------------------------------------

SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
USAGE = {
    "inputTokens": 12,
    "outputTokens": 89,
    "totalTokens": 3149,
    "cacheReadInputTokens": 2048,
    "cacheWriteInputTokens": 1000,
    "cacheDetails": [{"ttl": "1h", "inputTokens": 600}, {"ttl": "5m", "inputTokens": 400}],
}
# A Converse answer with reasoning, text and a tool call.
RESPONSE = {
    "output": {
        "message": {
            "role": "assistant",
            "content": [
                {
                    "reasoningContent": {
                        "reasoningText": {
                            "text": "The user wants the weather.",
                            "signature": SIGNATURE,
                        }
                    }
                },
                {"text": "Let me check the weather."},
                {
                    "toolUse": {
                        "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                        "name": "get_weather",
                        "input": {"location": "Paris, France", "unit": "celsius"},
                    }
                },
            ],
        }
    },
    "stopReason": "tool_use",
    "usage": USAGE,
    "metrics": {"latencyMs": 1532},
}
NORMALIZED = {
    "prompt_tokens": 12 + 2048 + 1000,
    "completion_tokens": 89,
    "total_tokens": 3149,
    "prompt_tokens_details": {"cached_tokens": 2048},
    "cache_read_input_tokens": 2048,
    "cache_creation_input_tokens": 1000,
    "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600},
}


def test_a_converse_answer_becomes_a_chat_completion() -> None:
    response = provider.parse_response(RESPONSE, model=SONNET_45, response_id="req-1", created=7)
    assert response == {
        "id": "req-1",
        "object": "chat.completion",
        "created": 7,
        "model": SONNET_45,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check the weather.",
                    "reasoning_content": "The user wants the weather.",
                    "thinking_blocks": [
                        {
                            "type": "thinking",
                            "thinking": "The user wants the weather.",
                            "signature": SIGNATURE,
                        }
                    ],
                    "tool_calls": [
                        {
                            "id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
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
        "usage": NORMALIZED,
    }


def test_a_tool_call_only_answer_has_null_content_and_redacted_reasoning_is_kept() -> None:
    data = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"redactedContent": "ZW5jcnlwdGVk"}},
                    {"toolUse": {"toolUseId": "t", "name": "now", "input": {}}},
                ],
            }
        },
        "stopReason": "tool_use",
    }
    message = provider.parse_response(data)["choices"][0]["message"]
    assert message["content"] is None
    assert message["thinking_blocks"] == [{"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"}]
    assert message["tool_calls"][0]["function"]["arguments"] == "{}"
    assert "reasoning_content" not in message


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_tool_use", "stop"),  # (kept as native_finish_reason, not stored)
        (None, None),
    ],
)
def test_stop_reasons(stop: str | None, finish: str | None) -> None:
    assert finish_reason(stop) == finish


def test_a_body_that_is_not_an_answer_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="not a Converse response"):
        provider.parse_response({"message": "Internal error"})


# -- usage ----------------------------------------------------------------------------------


def test_usage_counts_all_input_and_splits_writes_by_lifetime() -> None:
    assert normalize_bedrock(USAGE) == NORMALIZED


def test_usage_without_cache_details_counts_writes_as_5m() -> None:
    usage = normalize_bedrock(
        {"inputTokens": 5, "outputTokens": 1, "totalTokens": 1506, "cacheWriteInputTokens": 1500}
    )
    assert usage["prompt_tokens"] == 1505
    assert usage["cache_creation"] == {
        "ephemeral_5m_input_tokens": 1500,
        "ephemeral_1h_input_tokens": 0,
    }
    # cacheDetails alone (no total) is summed
    assert (
        normalize_bedrock({"inputTokens": 1, "cacheDetails": [{"ttl": "1h", "inputTokens": 9}]})[
            "cache_creation_input_tokens"
        ]
        == 9
    )


def test_usage_without_caching_is_plain() -> None:
    assert normalize_bedrock({"inputTokens": 30, "outputTokens": 4, "totalTokens": 34}) == {
        "prompt_tokens": 30,
        "completion_tokens": 4,
        "total_tokens": 34,
        "prompt_tokens_details": {"cached_tokens": 0},
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    }


@pytest.mark.parametrize(
    "odd",
    [
        None,
        "usage",
        {},
        {"inputTokens": "12", "outputTokens": -1, "cacheReadInputTokens": True},
        {"inputTokens": 3, "cacheDetails": "nope"},
        {"inputTokens": 3, "cacheDetails": [None, {"ttl": "2h", "inputTokens": 5}, {"ttl": "1h"}]},
    ],
)
def test_odd_usage_never_raises(odd: Any) -> None:
    usage = normalize_bedrock(odd)
    assert usage["prompt_tokens"] >= 0
    assert usage["cache_creation_input_tokens"] == 0


def test_normalizing_twice_changes_nothing_and_other_fields_are_kept() -> None:
    once = normalize_bedrock({**USAGE, "serverToolUsage": {"webSearch": 1}})
    assert once["serverToolUsage"] == {"webSearch": 1}
    assert normalize_bedrock(once) == once


# -- streams --------------------------------------------------------------------------------

CREATED = 1_700_000_000


def frame(kind: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, orjson.dumps(payload))


# The same answer as ConverseStream sends it: reasoning (its signature last), text, then a
# tool call whose input arrives in pieces; every event padded with Bedrock's "p" field.
RECORDED_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("messageStart", {"role": "assistant"}),
    (
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "The user wants "}}},
    ),
    (
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "the weather."}}},
    ),
    (
        "contentBlockDelta",
        {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": SIGNATURE}}},
    ),
    ("contentBlockStop", {"contentBlockIndex": 0}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Let me check "}}),
    ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "the weather."}}),
    ("contentBlockStop", {"contentBlockIndex": 1}),
    (
        "contentBlockStart",
        {
            "contentBlockIndex": 2,
            "start": {
                "toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather"}
            },
        },
    ),
    (
        "contentBlockDelta",
        {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"location": "Par'}}},
    ),
    (
        "contentBlockDelta",
        {"contentBlockIndex": 2, "delta": {"toolUse": {"input": 'is, France", "unit"'}}},
    ),
    (
        "contentBlockDelta",
        {"contentBlockIndex": 2, "delta": {"toolUse": {"input": ': "celsius"}'}}},
    ),
    ("contentBlockStop", {"contentBlockIndex": 2}),
    ("messageStop", {"stopReason": "tool_use"}),
    ("metadata", {"usage": USAGE, "metrics": {"latencyMs": 1532}}),
]
RECORDED_STREAM = b"".join(
    frame(kind, {**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"[: i + 3]})
    for i, (kind, payload) in enumerate(RECORDED_EVENTS)
)


def translate_stream(
    raw: bytes, *, split: int | None = None
) -> tuple[list[dict[str, Any]], StreamTranslator]:
    """Decode event-stream bytes (cut every ``split`` bytes, as a network would) and translate."""
    decoder = EventStreamDecoder()
    translator = provider.stream_translator(model=SONNET_45, response_id="req-1", created=CREATED)
    pieces = [raw] if split is None else [raw[i : i + split] for i in range(0, len(raw), split)]
    chunks: list[dict[str, Any]] = []
    for piece in pieces:
        for message in decoder.feed(piece):
            chunks.extend(translator.feed(to_event(message)))
    decoder.close()
    return chunks, translator


def assemble(chunks: list[dict[str, Any]]) -> StreamAssembler:
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    return assembler


def test_recorded_stream_becomes_openai_chunks() -> None:
    chunks, translator = translate_stream(RECORDED_STREAM)
    assert translator.finished
    head = {
        "id": "req-1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": SONNET_45,
    }
    for chunk in chunks:
        assert {k: chunk[k] for k in head} == head
    deltas = [c["choices"][0]["delta"] if c["choices"] else ("usage", c["usage"]) for c in chunks]
    assert deltas == [
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
                    "id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"location": "Par'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'is, France", "unit"'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ': "celsius"}'}}]},
        {},
        ("usage", NORMALIZED),
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 10 + ["tool_calls"]
    assert all(c["usage"] is None for c in chunks[:-1])


@pytest.mark.parametrize("split", [None, 1, 7, 64])
def test_stream_assembles_into_the_non_stream_translation(split: int | None) -> None:
    chunks, _ = translate_stream(RECORDED_STREAM, split=split)
    assembler = assemble(chunks)
    assert assembler.complete
    assert assembler.response() == provider.parse_response(
        RESPONSE, model=SONNET_45, response_id="req-1", created=CREATED
    )


def test_a_cache_hit_replays_what_the_stream_said() -> None:
    assembler = assemble(translate_stream(RECORDED_STREAM)[0])
    replayed = replay_chunks(assembler.response(), assembler.chunks(), include_usage=True)
    assert assemble(replayed).response() == assembler.response()


def test_a_stream_cut_before_its_metadata_is_not_finished() -> None:
    cut = b"".join(frame(kind, payload) for kind, payload in RECORDED_EVENTS[:-1])
    chunks, translator = translate_stream(cut)
    assert not translator.finished
    assert translator.usage is None
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_tool_call_without_input_streams_empty_object_arguments() -> None:
    translator = StreamTranslator(created=CREATED)
    translator.feed({"messageStart": {"role": "assistant"}})
    translator.feed(
        {
            "contentBlockStart": {
                "contentBlockIndex": 0,
                "start": {"toolUse": {"toolUseId": "t", "name": "now"}},
            }
        }
    )
    [chunk] = translator.feed({"contentBlockStop": {"contentBlockIndex": 0}})
    assert chunk["choices"][0]["delta"] == {
        "tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]
    }


def test_redacted_reasoning_streams_whole_when_its_block_stops() -> None:
    translator = StreamTranslator()
    delta = {"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": "ZW5j"}}}
    assert translator.feed({"contentBlockDelta": delta}) == []
    [chunk] = translator.feed({"contentBlockStop": {"contentBlockIndex": 0}})
    assert chunk["choices"][0]["delta"] == {
        "thinking_blocks": [{"type": "redacted_thinking", "data": "ZW5j"}]
    }


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"throttlingException": {"message": "Too many requests"}}, RateLimitError),
        (
            {"modelStreamErrorException": {"message": "boom", "originalStatusCode": 500}},
            ServerError,
        ),
        ({"internalServerException": {"message": "oops"}}, ServerError),
    ],
)
def test_exception_events_raise_typed_errors(event: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match=next(iter(event))):
        StreamTranslator().feed(event)


def test_unknown_events_and_deltas_are_ignored() -> None:
    translator = StreamTranslator()
    assert translator.feed({"somethingNew": {"x": 1}}) == []
    assert (
        translator.feed({"contentBlockDelta": {"contentBlockIndex": 3, "delta": {"citation": {}}}})
        == []
    )
    assert (
        translator.feed({"contentBlockStart": {"contentBlockIndex": 4, "start": {"image": {}}}})
        == []
    )
    assert translator.usage is None and not translator.finished


def test_a_native_output_config_merges_with_the_response_format() -> None:
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [{"role": "user", "content": "Hi"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"type": "object"}},
            },
            "outputConfig": {"effort": "high"},
        }
    )
    assert translation.json["outputConfig"] == {
        "textFormat": {
            "type": "json_schema",
            "structure": {"jsonSchema": {"schema": '{"type": "object"}'}},
        },
        "effort": "high",
    }


def test_a_blank_tool_result_is_sent_without_content() -> None:
    translation = translate(
        {
            "model": f"bedrock/{SONNET_45}",
            "messages": [
                {"role": "user", "content": "Run it."},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "t",
                            "type": "function",
                            "function": {"name": "run", "arguments": ""},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "t", "content": "   "},
            ],
            "tools": [{"type": "function", "function": {"name": "run"}}],
        }
    )
    assert translation.json["messages"][2] == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": "t", "content": []}}],
    }
