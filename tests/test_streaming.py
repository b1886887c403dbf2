# ruff: noqa: E501  -- the recorded streams below are kept byte for byte as they came off the wire
"""Streams: assembling chunks into one response, replaying responses as chunks, SSE."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deja.errors import DejaError
from deja.policy import AdmissionPolicy
from deja.streaming import (
    SSE_DONE,
    SSEDecoder,
    StreamAssembler,
    StreamFormatError,
    replay_chunks,
    sse_event,
)

# ---------------------------------------------------------------------------------------
# Helpers


def decode(wire: bytes) -> list[dict[str, Any]]:
    """The chunks of a recorded SSE stream (everything before ``[DONE]``)."""
    decoder = SSEDecoder()
    events = decoder.feed(wire)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(isinstance(chunk, dict) for chunk in chunks)
    return chunks  # type: ignore[return-value]


def assemble(chunks: Iterable[dict[str, Any]]) -> StreamAssembler:
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    return assembler


ENVELOPE = ("id", "object", "created", "model", "service_tier", "system_fingerprint")


def normalized(
    original: Sequence[dict[str, Any]], *, include_usage: bool, usage: Any
) -> list[dict[str, Any]]:
    """What a replay of ``original`` must equal.

    The documented differences: usage follows the caller's ``include_usage`` (null on
    every chunk, then a final ``choices: []`` chunk), and ``obfuscation`` padding is not
    replayed.
    """
    out = []
    for chunk in original:
        kept = {key: value for key, value in chunk.items() if key not in ("usage", "obfuscation")}
        if not kept["choices"] and set(kept) <= {*ENVELOPE, "choices"}:
            continue  # the usage chunk: replayed from the response's usage
        if include_usage:
            kept["usage"] = None
        out.append(kept)
    if include_usage and usage is not None:
        envelope = {key: original[0][key] for key in ENVELOPE if key in original[0]}
        out.append({**envelope, "choices": [], "usage": usage})
    return out


def plain_with(message: dict[str, Any], logprobs: Any = None) -> dict[str, Any]:
    """PLAIN_RESPONSE with another message."""
    choice = {**PLAIN_RESPONSE["choices"][0], "message": message, "logprobs": logprobs}
    return {**PLAIN_RESPONSE, "choices": [choice]}


def without_usage(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "usage"}


def deltas(chunks: Iterable[dict[str, Any]], key: str) -> list[Any]:
    return [
        choice["delta"][key]
        for chunk in chunks
        for choice in chunk["choices"]
        if key in choice.get("delta", {})
    ]


# ---------------------------------------------------------------------------------------
# Recorded streams (OpenAI, Azure OpenAI, DeepSeek, vLLM), as they came over the wire

PLAIN = rb"""data: {"id":"chatcmpl-BjQ3kE1xYvTqRr0hZ5p6sN7aLm2Uc","object":"chat.completion.chunk","created":1750000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Qz8j1"}

data: {"id":"chatcmpl-BjQ3kE1xYvTqRr0hZ5p6sN7aLm2Uc","object":"chat.completion.chunk","created":1750000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"content":"The"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"kP2"}

data: {"id":"chatcmpl-BjQ3kE1xYvTqRr0hZ5p6sN7aLm2Uc","object":"chat.completion.chunk","created":1750000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"content":" capital"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"a"}

data: {"id":"chatcmpl-BjQ3kE1xYvTqRr0hZ5p6sN7aLm2Uc","object":"chat.completion.chunk","created":1750000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"content":" of"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Zx9Lq"}

data: {"id":"chatcmpl-BjQ3kE1xYvTqRr0hZ5p6sN7aLm2Uc","object":"chat.completion.chunk","created":1750000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"content":" France"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"T"}

data: {"id":"chatcmpl-BjQ3kE1xYvTqRr0hZ5p6sN7aLm2Uc","object":"chat.completion.chunk","created":1750000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"content":" is"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"m0Rk"}

data: {"id":"chatcmpl-BjQ3kE1xYvTqRr0hZ5p6sN7aLm2Uc","object":"chat.completion.chunk","created":1750000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"content":" Paris"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"8u"}

data: {"id":"chatcmpl-BjQ3kE1xYvTqRr0hZ5p6sN7aLm2Uc","object":"chat.completion.chunk","created":1750000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{"content":"."},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Yw3Ve"}

data: {"id":"chatcmpl-BjQ3kE1xYvTqRr0hZ5p6sN7aLm2Uc","object":"chat.completion.chunk","created":1750000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null,"obfuscation":"cB"}

data: {"id":"chatcmpl-BjQ3kE1xYvTqRr0hZ5p6sN7aLm2Uc","object":"chat.completion.chunk","created":1750000000,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_07871e2ad8","choices":[],"usage":{"prompt_tokens":14,"completion_tokens":7,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"H1x"}

data: [DONE]

"""

PLAIN_USAGE = {
    "prompt_tokens": 14,
    "completion_tokens": 7,
    "total_tokens": 21,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}

PLAIN_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-BjQ3kE1xYvTqRr0hZ5p6sN7aLm2Uc",
    "object": "chat.completion",
    "created": 1750000000,
    "model": "gpt-4o-2024-08-06",
    "service_tier": "default",
    "system_fingerprint": "fp_07871e2ad8",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The capital of France is Paris."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": PLAIN_USAGE,
}

# Parallel tool calls; the two calls' argument deltas interleave by index.
TOOLS = rb"""data: {"id":"chatcmpl-BjR8vT2","object":"chat.completion.chunk","created":1750000100,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"role":"assistant","content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjR8vT2","object":"chat.completion.chunk","created":1750000100,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_8QxKq1Lw","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjR8vT2","object":"chat.completion.chunk","created":1750000100,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_Z7mV2pRt","type":"function","function":{"name":"get_time","arguments":""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjR8vT2","object":"chat.completion.chunk","created":1750000100,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjR8vT2","object":"chat.completion.chunk","created":1750000100,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\": "}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjR8vT2","object":"chat.completion.chunk","created":1750000100,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\": \"Paris\"}"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjR8vT2","object":"chat.completion.chunk","created":1750000100,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"Europe/Paris\"}"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjR8vT2","object":"chat.completion.chunk","created":1750000100,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}

data: [DONE]

"""

TOOLS_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-BjR8vT2",
    "object": "chat.completion",
    "created": 1750000100,
    "model": "gpt-4o-mini-2024-07-18",
    "service_tier": "default",
    "system_fingerprint": "fp_34a54ae93c",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_8QxKq1Lw",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_Z7mV2pRt",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz": "Europe/Paris"}'},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
}

# DeepSeek: reasoning_content deltas, the other field null, usage on the finish chunk.
DEEPSEEK = rb"""data: {"id":"5f2c7a1e-93b4-4d1c-a2f0-6c1d9e8b7a21","object":"chat.completion.chunk","created":1738300000,"model":"deepseek-reasoner","system_fingerprint":"fp_5417b77867_prod0225","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""},"logprobs":null,"finish_reason":null}]}

data: {"id":"5f2c7a1e-93b4-4d1c-a2f0-6c1d9e8b7a21","object":"chat.completion.chunk","created":1738300000,"model":"deepseek-reasoner","system_fingerprint":"fp_5417b77867_prod0225","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"The"},"logprobs":null,"finish_reason":null}]}

data: {"id":"5f2c7a1e-93b4-4d1c-a2f0-6c1d9e8b7a21","object":"chat.completion.chunk","created":1738300000,"model":"deepseek-reasoner","system_fingerprint":"fp_5417b77867_prod0225","choices":[{"index":0,"delta":{"content":null,"reasoning_content":" user wants"},"logprobs":null,"finish_reason":null}]}

data: {"id":"5f2c7a1e-93b4-4d1c-a2f0-6c1d9e8b7a21","object":"chat.completion.chunk","created":1738300000,"model":"deepseek-reasoner","system_fingerprint":"fp_5417b77867_prod0225","choices":[{"index":0,"delta":{"content":null,"reasoning_content":" 2+2."},"logprobs":null,"finish_reason":null}]}

data: {"id":"5f2c7a1e-93b4-4d1c-a2f0-6c1d9e8b7a21","object":"chat.completion.chunk","created":1738300000,"model":"deepseek-reasoner","system_fingerprint":"fp_5417b77867_prod0225","choices":[{"index":0,"delta":{"content":"2 + 2","reasoning_content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"5f2c7a1e-93b4-4d1c-a2f0-6c1d9e8b7a21","object":"chat.completion.chunk","created":1738300000,"model":"deepseek-reasoner","system_fingerprint":"fp_5417b77867_prod0225","choices":[{"index":0,"delta":{"content":" = 4.","reasoning_content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"5f2c7a1e-93b4-4d1c-a2f0-6c1d9e8b7a21","object":"chat.completion.chunk","created":1738300000,"model":"deepseek-reasoner","system_fingerprint":"fp_5417b77867_prod0225","choices":[{"index":0,"delta":{"content":"","reasoning_content":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":12},"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":12}}

data: [DONE]

"""

DEEPSEEK_USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 20,
    "total_tokens": 32,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 12},
    "prompt_cache_hit_tokens": 0,
    "prompt_cache_miss_tokens": 12,
}

# vLLM >= 0.10 names the field "reasoning"; it also sends tool_calls: [] in every delta.
VLLM = rb"""data: {"id":"chatcmpl-a1b2c3","object":"chat.completion.chunk","created":1752000000,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-a1b2c3","object":"chat.completion.chunk","created":1752000000,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":{"reasoning":"Greet","tool_calls":[]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-a1b2c3","object":"chat.completion.chunk","created":1752000000,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":{"reasoning":" back.","tool_calls":[]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-a1b2c3","object":"chat.completion.chunk","created":1752000000,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":{"content":"Hello!","tool_calls":[]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-a1b2c3","object":"chat.completion.chunk","created":1752000000,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null}]}

data: [DONE]

"""

REFUSAL = rb"""data: {"id":"chatcmpl-BjS1rF9","object":"chat.completion.chunk","created":1750000200,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_a288987b44","choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjS1rF9","object":"chat.completion.chunk","created":1750000200,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_a288987b44","choices":[{"index":0,"delta":{"refusal":"I'm"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjS1rF9","object":"chat.completion.chunk","created":1750000200,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_a288987b44","choices":[{"index":0,"delta":{"refusal":" sorry,"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjS1rF9","object":"chat.completion.chunk","created":1750000200,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_a288987b44","choices":[{"index":0,"delta":{"refusal":" I can't help with that."},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjS1rF9","object":"chat.completion.chunk","created":1750000200,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_a288987b44","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: [DONE]

"""

# n=2: the two choices interleave and finish in the other order.
TWO_CHOICES = rb"""data: {"id":"chatcmpl-BjT0n2","object":"chat.completion.chunk","created":1750000300,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjT0n2","object":"chat.completion.chunk","created":1750000300,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_34a54ae93c","choices":[{"index":1,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjT0n2","object":"chat.completion.chunk","created":1750000300,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"content":"Heads"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjT0n2","object":"chat.completion.chunk","created":1750000300,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_34a54ae93c","choices":[{"index":1,"delta":{"content":"Tails"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjT0n2","object":"chat.completion.chunk","created":1750000300,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_34a54ae93c","choices":[{"index":1,"delta":{"content":"!"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjT0n2","object":"chat.completion.chunk","created":1750000300,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_34a54ae93c","choices":[{"index":1,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: {"id":"chatcmpl-BjT0n2","object":"chat.completion.chunk","created":1750000300,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"content":"."},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-BjT0n2","object":"chat.completion.chunk","created":1750000300,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: [DONE]

"""

# Azure OpenAI: a first chunk with no choices and a blank envelope carrying the prompt
# filter results, then per-choice content_filter_results; here the output filter fires.
AZURE_FILTERED = rb"""data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}]}

data: {"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1750000400,"id":"chatcmpl-BjAz7q","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_ee1d74bde0"}

data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{"content":"Here is how"},"finish_reason":null,"index":0,"logprobs":null}],"created":1750000400,"id":"chatcmpl-BjAz7q","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_ee1d74bde0"}

data: {"choices":[{"content_filter_results":{"violence":{"filtered":true,"severity":"medium"}},"delta":{},"finish_reason":"content_filter","index":0,"logprobs":null}],"created":1750000400,"id":"chatcmpl-BjAz7q","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_ee1d74bde0"}

data: [DONE]

"""

AZURE_PROMPT_FILTER = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            "hate": {"filtered": False, "severity": "safe"},
            "self_harm": {"filtered": False, "severity": "safe"},
            "sexual": {"filtered": False, "severity": "safe"},
            "violence": {"filtered": False, "severity": "safe"},
        },
    }
]

LOGPROBS = rb"""data: {"id":"chatcmpl-BjU4lp","object":"chat.completion.chunk","created":1750000500,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":{"content":[],"refusal":null},"finish_reason":null}]}

data: {"id":"chatcmpl-BjU4lp","object":"chat.completion.chunk","created":1750000500,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":{"content":[{"token":"Hi","logprob":-0.0009,"bytes":[72,105],"top_logprobs":[]}],"refusal":null},"finish_reason":null}]}

data: {"id":"chatcmpl-BjU4lp","object":"chat.completion.chunk","created":1750000500,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{"content":" \u00e9t\u00e9"},"logprobs":{"content":[{"token":" \u00e9t\u00e9","logprob":-1.25,"bytes":[32,195,169,116,195,169],"top_logprobs":[]}],"refusal":null},"finish_reason":null}]}

data: {"id":"chatcmpl-BjU4lp","object":"chat.completion.chunk","created":1750000500,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: [DONE]

"""

LEGACY = rb"""data: {"id":"cmpl-BjV9tc","object":"text_completion","created":1750000600,"choices":[{"text":" Paris","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct"}

data: {"id":"cmpl-BjV9tc","object":"text_completion","created":1750000600,"choices":[{"text":".","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct"}

data: {"id":"cmpl-BjV9tc","object":"text_completion","created":1750000600,"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}],"model":"gpt-3.5-turbo-instruct"}

data: {"id":"cmpl-BjV9tc","object":"text_completion","created":1750000600,"model":"gpt-3.5-turbo-instruct","choices":[],"usage":{"prompt_tokens":6,"completion_tokens":2,"total_tokens":8}}

data: [DONE]

"""


# ---------------------------------------------------------------------------------------
# Assembling recorded streams


def test_plain_answer_with_usage() -> None:
    chunks = decode(PLAIN)
    assembler = assemble(chunks)
    assert assembler.response() == PLAIN_RESPONSE
    assert assembler.complete
    assert assembler.finish_reasons == {0: "stop"}
    assert AdmissionPolicy().admit(assembler.response()).ok


def test_plain_answer_record_is_compact() -> None:
    record = assemble(decode(PLAIN)).chunks()
    assert record == [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None}}]},
        {"choices": [{"index": 0, "delta": {"content": "The"}}]},
        {"choices": [{"index": 0, "delta": {"content": " capital"}}]},
        {"choices": [{"index": 0, "delta": {"content": " of"}}]},
        {"choices": [{"index": 0, "delta": {"content": " France"}}]},
        {"choices": [{"index": 0, "delta": {"content": " is"}}]},
        {"choices": [{"index": 0, "delta": {"content": " Paris"}}]},
        {"choices": [{"index": 0, "delta": {"content": "."}}]},
        {"choices": [{"index": 0, "finish_reason": "stop"}]},
    ]
    # the record is stored as JSON: it must survive the entry codec unchanged
    assert orjson.loads(orjson.dumps(record)) == record


@pytest.mark.parametrize("include_usage", [True, False])
def test_plain_answer_replays_at_the_same_boundaries(include_usage: bool) -> None:
    original = decode(PLAIN)
    assembler = assemble(original)
    replayed = replay_chunks(assembler.response(), assembler.chunks(), include_usage=include_usage)
    assert replayed == normalized(original, include_usage=include_usage, usage=PLAIN_USAGE)
    if include_usage:
        assert all(chunk["usage"] is None for chunk in replayed[:-1])
        assert replayed[-1]["choices"] == []
        assert replayed[-1]["usage"] == PLAIN_USAGE
    else:
        assert all("usage" not in chunk for chunk in replayed)


def test_parallel_tool_calls_interleaved_by_index() -> None:
    original = decode(TOOLS)
    assembler = assemble(original)
    assert assembler.response() == TOOLS_RESPONSE
    assert assembler.complete
    assert AdmissionPolicy().admit(assembler.response()).ok  # tool-call-only answers are stored
    replayed = replay_chunks(TOOLS_RESPONSE, assembler.chunks(), include_usage=False)
    assert replayed == normalized(original, include_usage=False, usage=None)
    assert assemble(replayed).response() == TOOLS_RESPONSE


def test_tool_call_ids_and_types_repeated_late_or_missing() -> None:
    base = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    deltas_ = [
        {"role": "assistant", "tool_calls": [{"index": 0, "function": {"arguments": ""}}]},
        # the id and name come after the first delta, then repeat with every piece
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
            ]
        },
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a"'},
                }
            ]
        },
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": None,
                    "type": None,
                    "function": {"name": None, "arguments": ": 1}"},
                }
            ]
        },
        # no index at all (some OpenAI-compatible servers): a new id is a new call, a known
        # id is that call, and a delta without an id continues the call before it
        {
            "tool_calls": [
                {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{"}}
            ]
        },
        {"tool_calls": [{"function": {"arguments": "}"}}]},
        {"tool_calls": [{"id": "call_3", "type": "function", "function": {"name": "h"}}]},
        {"tool_calls": [{"id": "call_1", "function": {"arguments": ""}}]},
    ]
    chunks = [
        {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas_
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    message = assemble(chunks).response()["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "f", "arguments": '{"a": 1}'},
            },
            {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            # a call whose arguments never came still has the field, as when not streamed
            {"id": "call_3", "type": "function", "function": {"name": "h", "arguments": ""}},
        ],
    }


def test_parallel_tool_calls_sharing_index_0_are_told_apart_by_id() -> None:
    # Ollama and SGLang send every parallel call at index 0: merged by index they were one
    # call whose arguments were two JSON objects end to end
    base = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def call(call_id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
        function = {"name": name, "arguments": arguments} if name else {"arguments": arguments}
        return {"tool_calls": [{"index": 0, "id": call_id, "function": function}]}

    deltas_ = [
        {"role": "assistant", **call("call_a", "write", "")},
        call(None, None, '{"path":'),
        call("call_a", None, '"a.py"}'),  # its own id again: the same call
        call("call_b", "write", '{"path":'),
        call(None, None, '"b.py"}'),
    ]
    chunks = [
        {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas_
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    message = assemble(chunks).response()["choices"][0]["message"]
    assert message["tool_calls"] == [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "write", "arguments": '{"path":"a.py"}'},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "write", "arguments": '{"path":"b.py"}'},
        },
    ]
    replayed = replay_chunks(assemble(chunks).response(), None, include_usage=False)
    assert assemble(replayed).response()["choices"][0]["message"] == message


def test_deepseek_reasoning_content_with_usage_on_the_finish_chunk() -> None:
    original = decode(DEEPSEEK)
    assembler = assemble(original)
    assert assembler.response() == {
        "id": "5f2c7a1e-93b4-4d1c-a2f0-6c1d9e8b7a21",
        "object": "chat.completion",
        "created": 1738300000,
        "model": "deepseek-reasoner",
        "system_fingerprint": "fp_5417b77867_prod0225",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "2 + 2 = 4.",
                    "reasoning_content": "The user wants 2+2.",
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": DEEPSEEK_USAGE,
    }
    assert assembler.complete
    # replayed in OpenAI's form: usage moves to its own last chunk, for callers who ask
    replayed = replay_chunks(assembler.response(), assembler.chunks(), include_usage=True)
    assert replayed == normalized(original, include_usage=True, usage=DEEPSEEK_USAGE)
    assert replayed[-1] == {
        "id": "5f2c7a1e-93b4-4d1c-a2f0-6c1d9e8b7a21",
        "object": "chat.completion.chunk",
        "created": 1738300000,
        "model": "deepseek-reasoner",
        "system_fingerprint": "fp_5417b77867_prod0225",
        "choices": [],
        "usage": DEEPSEEK_USAGE,
    }
    # the nulls stay: DeepSeek clients read delta.reasoning_content on every chunk
    reasoning = ["", "The", " user wants", " 2+2.", None, None, None]
    assert deltas(replayed, "reasoning_content") == reasoning


def test_vllm_reasoning_field_keeps_its_name() -> None:
    assembler = assemble(decode(VLLM))
    message = assembler.response()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Hello!", "reasoning": "Greet back."}
    assert assembler.complete
    replayed = replay_chunks(assembler.response(), assembler.chunks(), include_usage=False)
    assert deltas(replayed, "reasoning") == ["Greet", " back."]
    assert deltas(replayed, "tool_calls") == [[], [], []]  # what the client saw, as it came


def test_refusal() -> None:
    assembler = assemble(decode(REFUSAL))
    choice = assembler.response()["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": "I'm sorry, I can't help with that.",
    }
    assert choice["finish_reason"] == "stop"
    assert AdmissionPolicy().admit(assembler.response()).ok


def test_two_choices_kept_apart_by_index() -> None:
    original = decode(TWO_CHOICES)
    assembler = assemble(original)
    response = assembler.response()
    assert [c["index"] for c in response["choices"]] == [0, 1]
    assert [c["message"]["content"] for c in response["choices"]] == ["Heads.", "Tails!"]
    assert assembler.finish_reasons == {0: "stop", 1: "stop"}
    assert assembler.complete
    replayed = replay_chunks(response, assembler.chunks(), include_usage=False)
    assert replayed == normalized(original, include_usage=False, usage=None)


def test_one_of_two_choices_unfinished_is_not_complete() -> None:
    chunks = decode(TWO_CHOICES)
    del chunks[-1]  # choice 0 never finishes
    assembler = assemble(chunks)
    assert assembler.finish_reasons == {0: None, 1: "stop"}
    assert not assembler.complete


def test_azure_content_filter_finish() -> None:
    original = decode(AZURE_FILTERED)
    assembler = assemble(original)
    response = assembler.response()
    # the envelope comes from the first chunk that has one, not the blank filter chunk
    assert response["id"] == "chatcmpl-BjAz7q"
    assert response["model"] == "gpt-4o-2024-11-20"
    assert response["created"] == 1750000400
    assert response["prompt_filter_results"] == AZURE_PROMPT_FILTER
    assert response["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Here is how"},
            "logprobs": None,
            "finish_reason": "content_filter",
            # (a provider's own field of the choice, kept for a non-stream replay)
            "content_filter_results": {"violence": {"filtered": True, "severity": "medium"}},
        }
    ]
    assert assembler.complete  # it did finish, but the admission policy refuses it
    assert AdmissionPolicy().admit(response).reason == "content_filter"


def test_azure_blank_first_chunk_is_replayed_as_it_came() -> None:
    original = decode(AZURE_FILTERED)
    assembler = assemble(original)
    record = assembler.chunks()
    assert record[0] == {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "prompt_filter_results": AZURE_PROMPT_FILTER,
    }
    assert "id" not in record[1]
    replayed = replay_chunks(assembler.response(), record, include_usage=False)
    assert replayed[0]["choices"] == []
    assert replayed[0]["id"] == ""
    assert replayed[0]["prompt_filter_results"] == AZURE_PROMPT_FILTER
    # every later chunk is as it came
    assert replayed[1:] == normalized(original, include_usage=False, usage=None)[1:]
    assert assemble(replayed).response() == assembler.response()


def test_azure_stream_that_finishes_normally_is_admitted() -> None:
    chunks = decode(AZURE_FILTERED)
    chunks[-1]["choices"][0]["finish_reason"] = "stop"
    assembler = assemble(chunks)
    assert assembler.complete
    assert AdmissionPolicy().admit(assembler.response()).ok


def test_unfinished_stream_is_not_complete() -> None:
    chunks = decode(PLAIN)[:5]  # the connection dropped mid-answer
    assembler = assemble(chunks)
    assert not assembler.complete
    assert assembler.finish_reasons == {0: None}
    response = assembler.response()
    assert response["choices"][0]["message"]["content"] == "The capital of France"
    assert response["choices"][0]["finish_reason"] is None
    assert "usage" not in response
    assert AdmissionPolicy().admit(response).reason == "unfinished"


def test_nothing_seen_is_not_complete() -> None:
    assert not StreamAssembler().complete
    assert not assemble([decode(AZURE_FILTERED)[0]]).complete
    assert StreamAssembler().response()["choices"] == []


def test_error_chunk_mid_stream_is_not_complete() -> None:
    chunks = decode(PLAIN)[:4]
    chunks.append({"error": {"message": "upstream overloaded", "type": "server_error"}})
    chunks.append(decode(PLAIN)[-2])  # even if a finish chunk follows
    assembler = assemble(chunks)
    assert not assembler.complete
    assert AdmissionPolicy().admit(assembler.response()).reason == "error"


def test_logprobs_are_concatenated() -> None:
    original = decode(LOGPROBS)
    assembler = assemble(original)
    choice = assembler.response()["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hi été"}
    assert choice["logprobs"] == {
        "content": [
            {"token": "Hi", "logprob": -0.0009, "bytes": [72, 105], "top_logprobs": []},
            {
                "token": " été",
                "logprob": -1.25,
                "bytes": [32, 195, 169, 116, 195, 169],
                "top_logprobs": [],
            },
        ],
        "refusal": None,
    }
    replayed = replay_chunks(assembler.response(), assembler.chunks(), include_usage=False)
    assert replayed == normalized(original, include_usage=False, usage=None)
    # without a record, a stream is cut token by token so each chunk keeps its logprobs
    synthesized = replay_chunks(assembler.response(), None, include_usage=False)
    assert deltas(synthesized, "content") == ["", "Hi", " été"]
    assert assemble(synthesized).response() == assembler.response()


# A token that splits a UTF-8 character is shown as escaped bytes, so the tokens do not
# spell the content and the logprobs cannot be cut token by token.
SPLIT_TOKENS = [
    {"token": "Caf", "logprob": -0.1, "bytes": [67, 97, 102], "top_logprobs": []},
    {"token": "\\xc3", "logprob": -0.2, "bytes": [195], "top_logprobs": []},
    {"token": "\\xa9", "logprob": -0.3, "bytes": [169], "top_logprobs": []},
]


@pytest.mark.parametrize(
    "logprobs",
    [
        {"content": SPLIT_TOKENS, "refusal": None},
        {
            "content": SPLIT_TOKENS,
            "refusal": [{"token": "No", "logprob": -2.0, "bytes": [78, 111]}],
        },
        {"content": None, "refusal": None},
    ],
)
def test_logprobs_that_do_not_spell_the_content_survive_a_synthesized_replay(
    logprobs: dict[str, Any],
) -> None:
    response = plain_with({"role": "assistant", "content": "Café"}, logprobs)
    chunks = replay_chunks(response, None, include_usage=True)
    assert deltas(chunks, "content") == ["", "Café"]
    assert assemble(chunks).response() == response


def test_legacy_text_completion_stream() -> None:
    original = decode(LEGACY)
    assembler = assemble(original)
    response = assembler.response()
    assert response == {
        "id": "cmpl-BjV9tc",
        "object": "text_completion",
        "created": 1750000600,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": " Paris.", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8},
    }
    assert assembler.complete
    assert assembler.kind == "text_completion"
    assert AdmissionPolicy().admit(response).ok
    assert assembler.chunks() == [
        {"choices": [{"index": 0, "text": " Paris"}]},
        {"choices": [{"index": 0, "text": "."}]},
        {"choices": [{"index": 0, "finish_reason": "stop"}]},
    ]
    for include_usage in (True, False):
        replayed = replay_chunks(response, assembler.chunks(), include_usage=include_usage)
        assert replayed == normalized(
            original, include_usage=include_usage, usage=response["usage"]
        )


def test_legacy_function_call_and_audio_are_assembled() -> None:
    base = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    deltas_ = [
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": ""}},
        {"function_call": {"arguments": '{"q":'}},
        {"function_call": {"arguments": ' "x"}'}},
        {"audio": {"id": "audio_1", "data": "UklG", "transcript": "Hel", "expires_at": 9}},
        {"audio": {"data": "RiQA", "transcript": "lo"}},
        {"annotations": [{"type": "url_citation", "url_citation": {"url": "https://a"}}]},
        {"annotations": [{"type": "url_citation", "url_citation": {"url": "https://b"}}]},
    ]
    chunks = [{**base, "choices": [{"index": 0, "delta": d}]} for d in deltas_]
    chunks.append(
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "function_call"}]}
    )
    response = assemble(chunks).response()
    assert response["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "f", "arguments": '{"q": "x"}'},
        "audio": {"id": "audio_1", "data": "UklGRiQA", "transcript": "Hello", "expires_at": 9},
        "annotations": [
            {"type": "url_citation", "url_citation": {"url": "https://a"}},
            {"type": "url_citation", "url_citation": {"url": "https://b"}},
        ],
    }
    assert assemble(replay_chunks(response, None, include_usage=False)).response() == response


# ---------------------------------------------------------------------------------------
# Malformed streams


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        ("data: {}", "not an object"),
        ({"choices": {"index": 0}}, "choices is not a list"),
        ({"choices": ["x"]}, "choice is not an object"),
        ({"choices": [{"index": "0", "delta": {}}]}, "index"),
        ({"choices": [{"index": 0, "delta": "hi"}]}, "delta is not an object"),
        ({"choices": [{"index": 0, "delta": {"tool_calls": {"index": 0}}}]}, "tool_calls"),
        ({"choices": [{"index": 0, "delta": {"tool_calls": ["x"]}}]}, "tool call"),
        ({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": -1}]}}]}, "tool call index"),
        ({"choices": [{"index": 0, "delta": {"content": ["part"]}}]}, "changed type"),
        ({"choices": [{"index": 0, "logprobs": "x"}]}, "logprobs"),
        ({"choices": [{"index": 0, "delta": {"content": 3.5}}]}, "changed type"),
        ({"choices": [{"index": 0, "delta": {"content": {"text": "x"}}}]}, "changed type"),
        (
            {
                "choices": [
                    {"index": 0, "delta": {"annotations": []}},
                    {"index": 0, "delta": {"annotations": "x"}},
                ]
            },
            "changed type",
        ),
    ],
)
def test_malformed_chunks_raise(chunk: Any, message: str) -> None:
    assembler = assemble(decode(PLAIN)[:2])  # content "The" already seen
    with pytest.raises(StreamFormatError, match=message):
        assembler.add(chunk)
    assert not assembler.complete


def test_malformed_text_completion_chunks_raise() -> None:
    assembler = assemble(decode(LEGACY)[:1])
    assembler.add({"object": "text_completion", "choices": [{"index": 0, "text": None}]})
    with pytest.raises(StreamFormatError, match="text is not a string"):
        assembler.add({"object": "text_completion", "choices": [{"index": 0, "text": 5}]})
    with pytest.raises(StreamFormatError, match="logprobs field 'tokens' changed type"):
        assemble(
            [
                {
                    "object": "text_completion",
                    "choices": [{"text": "a", "logprobs": {"tokens": ["a"]}}],
                },
                {
                    "object": "text_completion",
                    "choices": [{"text": "b", "logprobs": {"tokens": "b"}}],
                },
            ]
        )


def test_mixed_stream_kinds_raise() -> None:
    assembler = assemble(decode(PLAIN)[:2])
    with pytest.raises(StreamFormatError, match=r"text_completion chunk in a chat\.completion"):
        assembler.add(decode(LEGACY)[0])


def test_malformed_stream_is_never_complete_even_if_it_finishes() -> None:
    chunks = decode(PLAIN)
    assembler = assemble(chunks[:3])
    with pytest.raises(StreamFormatError):
        assembler.add({"choices": [{"index": 0, "delta": {"content": 3.5}}]})
    for chunk in chunks[3:]:
        assembler.add(chunk)
    assert not assembler.complete


def test_stream_format_error_is_a_value_error_and_a_deja_error() -> None:
    assert issubclass(StreamFormatError, ValueError)
    assert issubclass(StreamFormatError, DejaError)


@pytest.mark.parametrize(
    ("response", "chunks"),
    [
        ("x", None),
        ({"choices": "x"}, None),
        ({"choices": ["x"]}, None),
        ({"choices": [{"message": "x"}]}, None),
        ({"choices": [{"message": {"tool_calls": ["x"]}}]}, None),
        (PLAIN_RESPONSE, ["x"]),
        (PLAIN_RESPONSE, [{"choices": {}}]),
        (PLAIN_RESPONSE, [{"choices": ["x"]}]),
        (PLAIN_RESPONSE, [{"choices": [{"delta": 1}]}]),
    ],
)
def test_replay_rejects_malformed_input(response: Any, chunks: Any) -> None:
    with pytest.raises(StreamFormatError):
        replay_chunks(response, chunks, include_usage=False)


def test_content_parts_are_replayed_whole() -> None:
    # Mistral's reasoning models answer with a list of content parts
    parts = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "Hmm."}]},
        {"type": "text", "text": "Yes."},
    ]
    response = plain_with({"role": "assistant", "content": parts})
    chunks = replay_chunks(response, None, include_usage=True)
    assert deltas(chunks, "content") == [parts]
    assert assemble(chunks).response() == response


# ---------------------------------------------------------------------------------------
# Replaying non-stream responses


LONG_ANSWER = (
    "Caching an LLM answer pays off when the same question comes back: the second caller "
    "gets the stored response in milliseconds and nobody pays for the tokens again."
)


def test_synthesized_stream_has_openai_shape() -> None:
    response = plain_with({"role": "assistant", "content": LONG_ANSWER})
    chunks = replay_chunks(response, None, include_usage=False)
    first, *middle, last = chunks
    envelope = {
        "id": "chatcmpl-BjQ3kE1xYvTqRr0hZ5p6sN7aLm2Uc",
        "object": "chat.completion.chunk",
        "created": 1750000000,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "system_fingerprint": "fp_07871e2ad8",
    }
    assert first == {
        **envelope,
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    }
    assert last == {
        **envelope,
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
    }
    pieces = deltas(middle, "content")
    assert len(pieces) == len(middle) >= 8  # progressive, not one block
    assert "".join(pieces) == LONG_ANSWER
    assert all(len(piece) <= 16 for piece in pieces)
    # cut at word boundaries: every piece after the first starts at a space
    assert all(piece.startswith(" ") for piece in pieces[1:])
    assert assemble(chunks).response() == without_usage(response)


def test_synthesized_tool_calls_use_openai_delta_form() -> None:
    chunks = replay_chunks(TOOLS_RESPONSE, None, include_usage=False)
    calls = [d[0] for d in deltas(chunks, "tool_calls")]
    assert calls[0] == {
        "index": 0,
        "id": "call_8QxKq1Lw",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(set(call) == {"index", "function"} for call in calls[1:] if call["index"] == 0)
    assert [call["index"] for call in calls if "id" in call] == [0, 1]
    assert assemble(chunks).response() == TOOLS_RESPONSE
    # the first delta says content null, as OpenAI streams it: an SDK that adds the deltas
    # up itself (no deja assembler) gets None on a hit as on a miss, not ""
    first = chunks[0]["choices"][0]["delta"]
    assert first == {"role": "assistant", "content": None}


def test_synthesized_usage_chunk_when_the_recorded_stream_had_none() -> None:
    # the stream was recorded without usage (the caller did not ask), usage known otherwise
    chunks = [c for c in decode(PLAIN) if c["choices"]]
    assembler = assemble(chunks)
    assert "usage" not in assembler.response()
    response = {**assembler.response(), "usage": PLAIN_USAGE}
    replayed = replay_chunks(response, assembler.chunks(), include_usage=True)
    assert replayed == normalized(decode(PLAIN), include_usage=True, usage=PLAIN_USAGE)


def test_replay_with_include_usage_but_no_usage_known() -> None:
    response = without_usage(PLAIN_RESPONSE)
    replayed = replay_chunks(response, None, include_usage=True)
    assert all(chunk["usage"] is None for chunk in replayed)
    assert all(chunk["choices"] for chunk in replayed)


def test_synthesized_legacy_text_completion() -> None:
    response = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 7,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": LONG_ANSWER, "index": 0, "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 30, "total_tokens": 33},
    }
    chunks = replay_chunks(response, None, include_usage=True)
    assert all(chunk["object"] == "text_completion" for chunk in chunks)
    assert chunks[-2]["choices"] == [
        {"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}
    ]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == response["usage"]
    assert len(chunks) > 8
    assert assemble(chunks).response() == response


def test_provider_extras_survive_a_synthesized_replay() -> None:
    response = {**PLAIN_RESPONSE, "prompt_filter_results": AZURE_PROMPT_FILTER}
    chunks = replay_chunks(response, None, include_usage=True)
    assert chunks[0]["choices"] == [] and chunks[0]["prompt_filter_results"] == AZURE_PROMPT_FILTER
    assert assemble(chunks).response() == response


# ---------------------------------------------------------------------------------------
# Properties: any response survives replay and assembly; recorded streams replay exactly

_words = st.text(min_size=1, max_size=12)
_texts = st.text(max_size=40) | st.lists(_words, max_size=12).map(" ".join)
_names = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)
_arguments = st.dictionaries(
    st.text(max_size=6),
    st.text(max_size=20) | st.integers(-(2**53), 2**53) | st.booleans(),
    max_size=3,
).map(lambda value: orjson.dumps(value).decode())
_maybe_text = st.none() | st.text(min_size=1, max_size=20)


def _entries(tokens: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": []}
        for token in tokens
    ]


@st.composite
def chat_messages(draw: st.DrawFn) -> tuple[dict[str, Any], Any]:
    """A message in the canonical non-stream shape, and its choice's logprobs."""
    n_calls = draw(st.integers(0, 3))
    calls = [
        {
            "id": f"call_{draw(st.text('abcXYZ019', min_size=1, max_size=8))}_{j}",
            "type": "function",
            "function": {"name": draw(_names), "arguments": draw(_arguments | _texts)},
        }
        for j in range(n_calls)
    ]
    refusal = draw(st.none() | st.none() | _texts)
    logprobs_mode = draw(st.sampled_from(["none", "none", "aligned", "unaligned"]))
    if logprobs_mode == "aligned":
        tokens = draw(st.lists(st.text(max_size=5), max_size=10))
        content: str | None = "".join(tokens)
        logprobs: Any = {"content": _entries(tokens), "refusal": None}
    else:
        content = draw(_texts)
        logprobs = None
        if logprobs_mode == "unaligned":
            logprobs = {"content": _entries(draw(st.lists(_words, max_size=4))), "refusal": None}
    content_null = bool(calls) or refusal is not None
    if content_null and (content == "" or draw(st.booleans())):
        content = None  # a tool-call or refusal answer: content is null
    message: dict[str, Any] = {"role": "assistant", "content": content}
    reasoning_key = draw(st.sampled_from([None, "reasoning_content", "reasoning"]))
    if reasoning_key is not None:
        message[reasoning_key] = draw(_texts)
    if refusal is not None:
        message["refusal"] = refusal
    if calls:
        message["tool_calls"] = calls
    if draw(st.integers(0, 4)) == 0:
        message["annotations"] = [
            {"type": "url_citation", "url_citation": {"url": f"https://e.com/{k}", "title": t}}
            for k, t in enumerate(draw(st.lists(st.text(max_size=8), max_size=3)))
        ]
    return message, logprobs


def _envelope(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "id": draw(st.text(max_size=30)),
        "object": kind,
        "created": draw(st.integers(0, 2**31)),
        "model": draw(st.text(max_size=30)),
    }
    for key in ("service_tier", "system_fingerprint"):
        if draw(st.booleans()):
            response[key] = draw(_maybe_text)
    return response


def _usage(draw: st.DrawFn) -> dict[str, Any] | None:
    if not draw(st.booleans()):
        return None
    prompt, completion = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": draw(st.integers(0, prompt))},
    }


_finish_reasons = st.sampled_from(["stop", "length", "tool_calls", "content_filter"])


@st.composite
def chat_responses(draw: st.DrawFn) -> dict[str, Any]:
    response = _envelope(draw, "chat.completion")
    choices = []
    for index in range(draw(st.integers(1, 3))):
        message, logprobs = draw(chat_messages())
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": draw(_finish_reasons),
            }
        )
    response["choices"] = choices
    usage = _usage(draw)
    if usage is not None:
        response["usage"] = usage
    return response


@st.composite
def text_responses(draw: st.DrawFn) -> dict[str, Any]:
    response = _envelope(draw, "text_completion")
    choices = []
    for index in range(draw(st.integers(1, 3))):
        logprobs = None
        if draw(st.booleans()):
            tokens = draw(st.lists(st.text(max_size=4), max_size=6))
            text = "".join(tokens)
            logprobs = {
                "tokens": tokens,
                "token_logprobs": [-0.25] * len(tokens),
                "top_logprobs": [{t: -0.25} for t in tokens],
                "text_offset": list(range(len(tokens))),
            }
        else:
            text = draw(_texts)
        choices.append(
            {
                "text": text,
                "index": index,
                "logprobs": logprobs,
                "finish_reason": draw(_finish_reasons),
            }
        )
    response["choices"] = choices
    usage = _usage(draw)
    if usage is not None:
        response["usage"] = usage
    return response


# -- a test-side stream generator, independent of the module's own synthesizer


def _split(rnd: random.Random, text: str) -> list[str]:
    if not text:
        return []
    cuts = sorted(rnd.sample(range(1, len(text)), min(len(text) - 1, rnd.randint(0, 6))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def _groups(rnd: random.Random, items: list[Any], n: int) -> list[list[Any]]:
    cuts = sorted(rnd.choices(range(len(items) + 1), k=n - 1)) if n > 0 else []
    return [items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)], strict=True)]


def _interleave(rnd: random.Random, sequences: list[list[Any]]) -> list[Any]:
    pending = [list(s) for s in sequences if s]
    out = []
    while pending:
        k = rnd.randrange(len(pending))
        out.append(pending[k].pop(0))
        if not pending[k]:
            pending.pop(k)
    return out


def _chat_events(rnd: random.Random, choice: dict[str, Any]) -> list[dict[str, Any]]:
    """One choice of a response as OpenAI-style choice deltas, cut at random places."""
    index, message, logprobs = choice["index"], choice["message"], choice["logprobs"]
    events: list[dict[str, Any]] = []

    def emit(delta: dict[str, Any], chunk_logprobs: Any = None, finish: Any = None) -> None:
        events.append(
            {"index": index, "delta": delta, "logprobs": chunk_logprobs, "finish_reason": finish}
        )

    content = message["content"]
    first: dict[str, Any] = {"role": "assistant"}
    first["content"] = "" if content is not None else rnd.choice([None, ""])
    if rnd.random() < 0.5:
        first["refusal"] = None  # OpenAI sends it; null fields are not recorded
    emit(first)
    for key in ("reasoning_content", "reasoning"):
        if key in message:
            for piece in _split(rnd, message[key]) or [""]:
                emit({key: piece, "content": None} if rnd.random() < 0.3 else {key: piece})
    pieces = _split(rnd, content or "")
    if logprobs is not None and pieces:
        for piece, group in zip(
            pieces, _groups(rnd, logprobs["content"], len(pieces)), strict=True
        ):
            emit({"content": piece}, {"content": group, "refusal": None})
        logprobs = None
    else:
        for piece in pieces:
            emit({"content": piece})
    if "refusal" in message:
        for piece in _split(rnd, message["refusal"]) or [""]:
            emit({"refusal": piece})
    per_call = []
    for j, call in enumerate(message.get("tool_calls", [])):
        head = {"index": j, "id": call["id"], "type": "function"}
        sequence = [{**head, "function": {"name": call["function"]["name"], "arguments": ""}}]
        for piece in _split(rnd, call["function"]["arguments"]):
            # some servers repeat the id and type with every piece
            extra = head if rnd.random() < 0.3 else {"index": j}
            sequence.append({**extra, "function": {"arguments": piece}})
        per_call.append(sequence)
    for tool_delta in _interleave(rnd, per_call):
        emit({"tool_calls": [tool_delta]})
    if "annotations" in message:
        groups = _groups(rnd, message["annotations"], rnd.randint(1, 3))
        for group in groups:
            emit({"annotations": group})
    emit({}, logprobs, choice["finish_reason"])
    return events


def _text_events(rnd: random.Random, choice: dict[str, Any]) -> list[dict[str, Any]]:
    index, logprobs = choice["index"], choice["logprobs"]
    pieces = _split(rnd, choice["text"])
    events = []
    groups: list[dict[str, Any] | None] = [None] * len(pieces)
    if logprobs is not None and pieces:
        split_keys = {k: _groups(random.Random(7), v, len(pieces)) for k, v in logprobs.items()}
        # the same cut points for every list: one random.Random(7) per key
        groups = [{k: split_keys[k][g] for k in logprobs} for g in range(len(pieces))]
        logprobs = None
    for piece, group in zip(pieces, groups, strict=True):
        events.append({"text": piece, "index": index, "logprobs": group, "finish_reason": None})
    events.append(
        {"text": "", "index": index, "logprobs": logprobs, "finish_reason": choice["finish_reason"]}
    )
    return events


@st.composite
def recorded_streams(
    draw: st.DrawFn, responses: st.SearchStrategy[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A response and a stream of it as an upstream might send it.

    Returns the response the stream assembles into (without usage when the stream had
    none) and the chunks.
    """
    response = draw(responses)
    rnd = draw(st.randoms(use_true_random=False))
    text = response["object"] == "text_completion"
    envelope = {key: response[key] for key in ENVELOPE if key in response}
    envelope["object"] = "text_completion" if text else "chat.completion.chunk"
    with_usage = "usage" in response and draw(st.booleans())
    events = _interleave(
        rnd,
        [(_text_events if text else _chat_events)(rnd, choice) for choice in response["choices"]],
    )
    chunks = []
    while events:
        # mostly one choice per chunk, sometimes two different choices in one chunk
        take = (
            2
            if len(events) > 1 and events[0]["index"] != events[1]["index"] and rnd.random() < 0.2
            else 1
        )
        chunk: dict[str, Any] = {**envelope, "choices": events[:take]}
        events = events[take:]
        if with_usage:
            chunk["usage"] = None
        if rnd.random() < 0.3:
            chunk["obfuscation"] = "x" * rnd.randint(1, 8)
        chunks.append(chunk)
    if with_usage:
        chunks.append({**envelope, "choices": [], "usage": response["usage"]})
    return (response if with_usage else without_usage(response)), chunks


PROPERTY_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(chat_responses() | text_responses(), st.booleans())
def test_synthesized_replay_assembles_back(response: dict[str, Any], include_usage: bool) -> None:
    chunks = replay_chunks(response, None, include_usage=include_usage)
    # what the caller receives is JSON over SSE
    chunks = [orjson.loads(sse_event(chunk)[len(b"data: ") :]) for chunk in chunks]
    assembler = assemble(chunks)
    assert assembler.complete
    assert assembler.response() == (response if include_usage else without_usage(response))
    kind = "text_completion" if response["object"] == "text_completion" else "chat.completion.chunk"
    assert all(chunk["object"] == kind for chunk in chunks)
    if include_usage:
        assert all(
            chunk["usage"] is None for chunk in chunks[: -1 if "usage" in response else None]
        )
    else:
        assert all("usage" not in chunk for chunk in chunks)
    content_pieces = deltas(chunks, "content") if kind != "text_completion" else []
    assert all(len(piece) <= 16 for piece in content_pieces if isinstance(piece, str))


@PROPERTY_SETTINGS
@given(recorded_streams(chat_responses() | text_responses()))
def test_recorded_stream_replays_exactly(
    case: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    response, original = case
    assembler = assemble(original)
    assert assembler.complete
    assert assembler.response() == response
    # the record goes through the entry codec as JSON
    record = orjson.loads(orjson.dumps(assembler.chunks()))
    stored = orjson.loads(orjson.dumps(assembler.response()))
    for include_usage in (True, False):
        replayed = replay_chunks(stored, record, include_usage=include_usage)
        usage = response.get("usage")
        assert replayed == normalized(original, include_usage=include_usage, usage=usage)
        again = assemble(replayed).response()
        assert again == (response if include_usage else without_usage(response))
    # compact: nothing that every chunk repeats, no usage, no nulls that replay restores
    for chunk in record:
        assert "usage" not in chunk and "obfuscation" not in chunk
        assert not set(chunk) & set(ENVELOPE)
        for choice in chunk.get("choices", []):
            assert None not in choice.values()
            assert choice.get("delta") != {}


@settings(max_examples=300, deadline=None)
@given(_texts | st.text(max_size=200))
def test_synthesized_content_joins_back_exactly(text: str) -> None:
    response = plain_with({"role": "assistant", "content": text})
    chunks = replay_chunks(response, None, include_usage=False)
    pieces = deltas(chunks, "content")
    assert pieces[0] == ""
    assert "".join(pieces) == text
    assert all(0 < len(piece) <= 16 for piece in pieces[1:])


# ---------------------------------------------------------------------------------------
# SSE


def test_sse_event_bytes() -> None:
    assert sse_event({"id": "x", "choices": []}) == b'data: {"id":"x","choices":[]}\n\n'
    assert SSE_DONE == b"data: [DONE]\n\n"


SSE_PAYLOAD = (
    b": keep-alive\r\n\r\n"
    b'data: {"a":1}\r\n\r\n'
    b"event: message\nid: 7\nretry: 1000\n"
    b'data: {"b":\n'
    b"data: [1, 2]}\n\n"
    b": OPENROUTER PROCESSING\n\n"
    b'data:{"c":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"}\r\r'
    b"data:\n\n"
    b"data: [DONE]\n\n"
)
SSE_EVENTS: list[Any] = [{"a": 1}, {"b": [1, 2]}, {"c": "é€😀"}, "[DONE]"]


def test_sse_decoder_whole_payload() -> None:
    assert SSEDecoder().feed(SSE_PAYLOAD) == SSE_EVENTS


def test_sse_decoder_split_at_every_byte_position() -> None:
    for i in range(len(SSE_PAYLOAD) + 1):
        decoder = SSEDecoder()
        events = decoder.feed(SSE_PAYLOAD[:i]) + decoder.feed(SSE_PAYLOAD[i:])
        assert events == SSE_EVENTS, i


def test_sse_decoder_split_at_every_pair_of_positions() -> None:
    size = len(SSE_PAYLOAD)
    for i in range(size + 1):
        for j in range(i, size + 1):
            decoder = SSEDecoder()
            events = (
                decoder.feed(SSE_PAYLOAD[:i])
                + decoder.feed(SSE_PAYLOAD[i:j])
                + decoder.feed(SSE_PAYLOAD[j:])
            )
            assert events == SSE_EVENTS, (i, j)


def test_sse_decoder_one_byte_at_a_time() -> None:
    decoder = SSEDecoder()
    events = []
    for i in range(len(SSE_PAYLOAD)):
        events += decoder.feed(SSE_PAYLOAD[i : i + 1])
    assert events == SSE_EVENTS


def test_sse_decoder_byte_order_mark_split() -> None:
    payload = b"\xef\xbb\xbf" + SSE_PAYLOAD
    for i in range(5):
        decoder = SSEDecoder()
        assert decoder.feed(payload[:i]) + decoder.feed(payload[i:]) == SSE_EVENTS


def test_sse_decoder_recorded_stream_in_network_sized_reads() -> None:
    decoder = SSEDecoder()
    events = []
    for i in range(0, len(PLAIN), 61):
        events += decoder.feed(PLAIN[i : i + 61])
    assert events == [*decode(PLAIN), "[DONE]"]


def test_sse_round_trip_of_a_replay() -> None:
    chunks = replay_chunks(PLAIN_RESPONSE, None, include_usage=True)
    wire = b"".join(sse_event(chunk) for chunk in chunks) + SSE_DONE
    assert SSEDecoder().feed(wire) == [*chunks, "[DONE]"]


def test_sse_decoder_flush_takes_an_event_without_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a":1}\n\ndata: [DONE]') == [{"a": 1}]
    assert decoder.flush() == ["[DONE]"]
    assert decoder.flush() == []
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a":1}\n') == []
    assert decoder.flush() == [{"a": 1}]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"data: not json\n\n", "not JSON"),
        (b'data: {"a":\n\n', "not JSON"),
        (b"data: [1, 2]\n\n", "JSON list, not an object"),
        (b'data: "x"\n\n', "JSON str, not an object"),
        (b"data: \xff\xfe\n\n", "not JSON"),
    ],
)
def test_sse_decoder_rejects_data_that_is_not_a_json_object(payload: bytes, message: str) -> None:
    with pytest.raises(StreamFormatError, match=message):
        SSEDecoder().feed(payload)


def test_callers_changing_their_chunks_change_nothing_stored_or_replayed() -> None:
    import deja
    from tests.helpers import chat_request

    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    call = {"index": 0, "id": "call_1", "type": "function"}

    def upstream() -> Iterable[dict[str, Any]]:
        yield {
            **head,
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "tool_calls": [{**call, "function": {"name": "f", "arguments": '{"a":'}}],
                    },
                }
            ],
        }
        yield {
            **head,
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]},
                }
            ],
        }
        yield {
            **head,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }

    cache = deja.Cache()

    def read_accumulating_in_place() -> str:
        """The common hand-written accumulator: the first delta's call grows in place."""
        first: dict[str, Any] | None = None
        for chunk in cache.stream(chat_request(), upstream, include_usage=True):
            for choice in chunk["choices"]:
                for piece in choice["delta"].get("tool_calls") or []:
                    if first is None:
                        first = piece
                    else:
                        first["function"]["arguments"] += piece["function"]["arguments"]
            if chunk.get("usage"):
                chunk["usage"]["prompt_tokens"] = 0
        assert first is not None
        return str(first["function"]["arguments"])

    assert [read_accumulating_in_place() for _ in range(3)] == ['{"a":1}'] * 3  # miss, hits
    stored = deja.Cache(store=cache.store)  # the bytes, not this cache's decoded copy
    replayed = [
        piece["function"].get("arguments", "")
        for chunk in stored.stream(chat_request(), upstream)
        for choice in chunk["choices"]
        for piece in choice["delta"].get("tool_calls") or []
    ]
    assert "".join(replayed) == '{"a":1}'
    hit = stored.get(chat_request())
    assert hit is not None and hit.response["usage"]["prompt_tokens"] == 5


def test_a_replay_is_made_chunk_by_chunk_after_its_record_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 2,000-chunk answer's first chunk waited for every other to be built (~4 ms); a
    broken record is still refused before the first chunk goes out."""
    import deja.streaming as streaming

    envelope = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    deltas = [{"role": "assistant", "content": ""}] + [{"content": f"w{i} "} for i in range(2000)]
    stream = [
        {**envelope, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    stream.append({**envelope, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    assembler = assemble(stream)
    made = 0
    real = streaming._replay_choice

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal made
        made += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(streaming, "_replay_choice", counting)
    replay = streaming.iter_replay_chunks(
        assembler.response(), assembler.chunks(), include_usage=False
    )
    first = next(replay)
    assert made == 1 and first["choices"][0]["delta"]["role"] == "assistant"
    assert len(list(replay)) + 1 == len(
        replay_chunks(assembler.response(), assembler.chunks(), include_usage=False)
    )
    broken = [*assembler.chunks()[:1500], "not a chunk"]
    with pytest.raises(StreamFormatError):
        streaming.iter_replay_chunks(assembler.response(), broken, include_usage=False)
