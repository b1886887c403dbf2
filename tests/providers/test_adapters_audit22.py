"""OpenAI's ``prompt_cache_options`` (a hint to OpenAI's prompt cache, as
``prompt_cache_key`` is) is not sent to Anthropic, Bedrock or Gemini, which would refuse
a field they do not know: it is named in the adapter's warnings instead."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from deja.providers.anthropic import AnthropicProvider
from deja.providers.bedrock import BedrockProvider
from deja.providers.gemini import GeminiProvider

OPTIONS = {"prompt_cache_options": {"mode": "explicit", "ttl": "1h"}}
HI = [{"role": "user", "content": "Hi"}]


def anthropic(body: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
    sent = AnthropicProvider().build_request(
        {"model": "anthropic/claude-sonnet-4-5", "max_tokens": 10, **body}
    )
    return sent.json, tuple(sent.warnings)


def bedrock(body: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
    sent = BedrockProvider().translate_request(
        {"model": "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", **body}
    )
    return sent.json, tuple(sent.warnings)


def gemini(body: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
    sent = GeminiProvider().build_request({"model": "gemini/gemini-2.5-flash", **body})
    return sent.json, tuple(sent.warnings)


@pytest.mark.parametrize("adapter", [anthropic, bedrock, gemini])
def test_prompt_cache_options_is_not_sent_to_other_providers(adapter: Any) -> None:
    without, _ = adapter({"messages": HI})
    sent, warnings = adapter({"messages": HI, **OPTIONS})
    assert b"prompt_cache_options" not in orjson.dumps(sent)
    assert sent == without
    assert any("prompt_cache_options" in warning for warning in warnings)
