"""One usage schema for every provider, from each provider's documented usage payloads."""

from __future__ import annotations

from typing import Any

import pytest

from deja.providers.usage import (
    CacheTokens,
    cache_tokens,
    normalize_anthropic,
    normalize_compatible,
    normalize_deepseek,
    normalize_openai,
    normalize_usage,
)

NO_WRITES = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}

# OpenAI's documented prompt-caching usage (a gpt-4o call with 1,920 cached tokens).
OPENAI = {
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
# Anthropic's documented prompt-caching example (the whole of "Pride and Prejudice" cached):
# the first call writes the prefix, the second reads it.
ANTHROPIC_WRITE = {
    "cache_creation_input_tokens": 188086,
    "cache_read_input_tokens": 0,
    "input_tokens": 21,
    "output_tokens": 393,
}
ANTHROPIC_READ = {
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 188086,
    "input_tokens": 21,
    "output_tokens": 393,
}
# The current Messages API shape, with the 5m/1h write split and extra fields.
ANTHROPIC_SPLIT = {
    "input_tokens": 50,
    "cache_creation_input_tokens": 1500,
    "cache_read_input_tokens": 2048,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
    "output_tokens": 120,
    "server_tool_use": {"web_search_requests": 0},
    "service_tier": "standard",
}
# DeepSeek's documented context-caching usage: hit + miss == prompt_tokens.
DEEPSEEK = {
    "prompt_tokens": 1000,
    "completion_tokens": 100,
    "total_tokens": 1100,
    "prompt_cache_hit_tokens": 800,
    "prompt_cache_miss_tokens": 200,
    "completion_tokens_details": {"reasoning_tokens": 40},
}


def test_openai_usage_gains_the_top_level_cache_fields() -> None:
    usage = normalize_openai(OPENAI)
    assert usage == {
        **OPENAI,
        "cache_read_input_tokens": 1920,
        "cache_creation_input_tokens": 0,
        "cache_creation": NO_WRITES,
    }
    assert OPENAI["prompt_tokens_details"] == {"cached_tokens": 1920, "audio_tokens": 0}


def test_anthropic_input_tokens_exclude_reads_and_writes() -> None:
    write = normalize_anthropic(ANTHROPIC_WRITE)
    assert write == {
        "prompt_tokens": 188107,
        "completion_tokens": 393,
        "total_tokens": 188500,
        "prompt_tokens_details": {"cached_tokens": 0},
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 188086,
        # Before the split was reported, every write was a 5-minute one (the default).
        "cache_creation": {"ephemeral_5m_input_tokens": 188086, "ephemeral_1h_input_tokens": 0},
    }
    read = normalize_anthropic(ANTHROPIC_READ)
    assert read["prompt_tokens"] == 188107
    assert read["prompt_tokens_details"] == {"cached_tokens": 188086}
    assert read["cache_read_input_tokens"] == 188086
    assert read["cache_creation_input_tokens"] == 0


def test_anthropic_split_and_extras_are_kept() -> None:
    usage = normalize_anthropic(ANTHROPIC_SPLIT)
    assert usage == {
        "prompt_tokens": 50 + 1500 + 2048,
        "completion_tokens": 120,
        "total_tokens": 50 + 1500 + 2048 + 120,
        "prompt_tokens_details": {"cached_tokens": 2048},
        "server_tool_use": {"web_search_requests": 0},
        "service_tier": "standard",
        "cache_read_input_tokens": 2048,
        "cache_creation_input_tokens": 1500,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
    }
    assert "input_tokens" not in usage and "output_tokens" not in usage


def test_deepseek_hits_are_cache_reads() -> None:
    usage = normalize_deepseek(DEEPSEEK)
    assert usage == {
        **DEEPSEEK,
        "prompt_tokens_details": {"cached_tokens": 800},
        "cache_read_input_tokens": 800,
        "cache_creation_input_tokens": 0,
        "cache_creation": NO_WRITES,
    }


def test_deepseek_without_prompt_tokens_sums_hit_and_miss() -> None:
    usage = normalize_deepseek({"prompt_cache_hit_tokens": 30, "prompt_cache_miss_tokens": 70})
    assert usage["prompt_tokens"] == 100
    assert usage["total_tokens"] == 100


def test_deepseek_newer_cached_tokens_field_wins() -> None:
    usage = normalize_deepseek({**DEEPSEEK, "prompt_tokens_details": {"cached_tokens": 768}})
    assert usage["cache_read_input_tokens"] == 768


@pytest.mark.parametrize(
    ("usage", "read", "written", "prompt"),
    [
        (ANTHROPIC_SPLIT, 2048, 1500, 3598),  # an Anthropic-compatible gateway
        (DEEPSEEK, 800, 0, 1000),
        # Moonshot (Kimi) reports automatic cache hits at the top level.
        ({"prompt_tokens": 100, "completion_tokens": 5, "cached_tokens": 64}, 64, 0, 100),
        (OPENAI, 1920, 0, 2006),
        # Groq, xAI, vLLM: OpenAI's shape, sometimes without details.
        ({"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}, 0, 0, 10),
        ({"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": None}, 0, 0, 10),
        # OpenRouter (and OpenAI's models that bill writes): writes in the details
        (
            {
                "prompt_tokens": 194,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 100},
            },
            0,
            100,
            194,
        ),
        # A LiteLLM proxy upstream: OpenAI's shape plus Anthropic's top-level fields.
        (
            {
                "prompt_tokens": 3000,
                "completion_tokens": 9,
                "cache_read_input_tokens": 2000,
                "cache_creation_input_tokens": 900,
            },
            2000,
            900,
            3000,
        ),
    ],
)
def test_compatible_fallback_reads_every_known_shape(
    usage: dict[str, Any], read: int, written: int, prompt: int
) -> None:
    normalized = normalize_compatible(usage)
    assert normalized["prompt_tokens"] == prompt
    assert normalized["prompt_tokens_details"]["cached_tokens"] == read
    assert normalized["cache_read_input_tokens"] == read
    assert normalized["cache_creation_input_tokens"] == written


@pytest.mark.parametrize(
    ("provider", "usage", "normalizer"),
    [
        ("openai", OPENAI, normalize_openai),
        ("azure", OPENAI, normalize_openai),
        ("anthropic", ANTHROPIC_SPLIT, normalize_anthropic),
        ("deepseek", DEEPSEEK, normalize_deepseek),
        ("groq", OPENAI, normalize_compatible),
        ("together_ai", ANTHROPIC_WRITE, normalize_compatible),
    ],
)
def test_normalize_usage_dispatches_by_provider(
    provider: str, usage: dict[str, Any], normalizer: Any
) -> None:
    assert normalize_usage(usage, provider=provider) == normalizer(usage)


@pytest.mark.parametrize("value", [None, "12 tokens", [1, 2], 3])
def test_normalize_usage_of_a_non_object_is_none(value: object) -> None:
    assert normalize_usage(value, provider="openai") is None


@pytest.mark.parametrize(
    ("normalizer", "usage"),
    [
        (normalize_openai, OPENAI),
        (normalize_anthropic, ANTHROPIC_WRITE),
        (normalize_anthropic, ANTHROPIC_SPLIT),
        (normalize_deepseek, DEEPSEEK),
        (normalize_compatible, {"prompt_tokens": 100, "cached_tokens": 64}),
    ],
)
def test_normalizing_twice_changes_nothing(normalizer: Any, usage: dict[str, Any]) -> None:
    once = normalizer(usage)
    assert normalizer(once) == once
    assert normalize_compatible(once) == once
    assert normalize_openai(once) == once


def test_odd_fields_count_as_absent_and_counts_are_capped() -> None:
    usage = normalize_anthropic(
        {
            "input_tokens": True,
            "cache_read_input_tokens": -5,
            "cache_creation_input_tokens": "many",
            "output_tokens": 1.5,
        }
    )
    assert usage["prompt_tokens"] == 0
    assert usage["completion_tokens"] == 0
    capped = normalize_openai(
        {
            "prompt_tokens": 100,
            "prompt_tokens_details": {"cached_tokens": 500},
            "cache_creation_input_tokens": 50,
            "cache_creation": {"ephemeral_1h_input_tokens": 9999},
        }
    )
    assert capped["cache_read_input_tokens"] == 100
    assert capped["cache_creation_input_tokens"] == 0
    assert capped["cache_creation"] == NO_WRITES
    split = normalize_anthropic(
        {
            "input_tokens": 1,
            "cache_creation_input_tokens": 10,
            "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 99},
        }
    )
    assert split["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 10,
    }


def test_cache_tokens_by_kind() -> None:
    tokens = cache_tokens(normalize_anthropic(ANTHROPIC_SPLIT))
    assert tokens == CacheTokens(read=2048, write_5m=1000, write_1h=500)
    assert tokens.write == 1500
    assert cache_tokens(normalize_openai(OPENAI)) == CacheTokens(1920, 0, 0)
    assert cache_tokens(None) == CacheTokens(0, 0, 0)


def test_openai_cache_writes_in_the_details_are_writes() -> None:
    """OpenAI's ``prompt_tokens_details.cache_write_tokens`` (the models that bill cache
    writes): counted and priced as writes, the rest of the details kept."""
    usage = normalize_openai(
        {
            "prompt_tokens": 3000,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 1500},
        }
    )
    assert usage["cache_read_input_tokens"] == 1000
    assert usage["cache_creation_input_tokens"] == 1500
    assert usage["prompt_tokens_details"]["cache_write_tokens"] == 1500
    assert cache_tokens(usage).write == 1500
