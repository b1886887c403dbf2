"""One usage schema for every provider: OpenAI's, with the prompt cache spelled out.

Providers count prompt-cache tokens in different places, and LiteLLM's tracker is full of
costs that were wrong because one of them was read as another. deja normalizes every
upstream's ``usage`` into OpenAI's shape, extended with the cache fields Anthropic made
common, so that one price table and one metric read every provider the same way::

    {
      "prompt_tokens": 3000,                # ALL input: uncached + cache read + cache write
      "completion_tokens": 120,
      "total_tokens": 3120,
      "prompt_tokens_details": {"cached_tokens": 2048},      # = cache reads
      "cache_read_input_tokens": 2048,
      "cache_creation_input_tokens": 900,                    # cache writes, both lifetimes
      "cache_creation": {"ephemeral_5m_input_tokens": 900, "ephemeral_1h_input_tokens": 0},
    }

Mapped from:

* **OpenAI** (and Azure OpenAI, same body): already this shape; the top-level cache fields
  are filled in (OpenAI bills no writes, so they are 0).
* **Anthropic**: ``input_tokens`` counts only the input *after* the last cache breakpoint,
  so ``prompt_tokens = input_tokens + cache_read_input_tokens +
  cache_creation_input_tokens``; ``output_tokens`` is ``completion_tokens``; the
  ``cache_creation`` 5m/1h split is kept (absent: every write counts as 5m, the default).
* **DeepSeek**: ``prompt_cache_hit_tokens`` are the cache reads and
  ``prompt_cache_hit_tokens + prompt_cache_miss_tokens == prompt_tokens``.
* **the rest of the OpenAI-compatible family** (:func:`normalize_compatible`): whichever of
  those shapes the body has, plus Moonshot's top-level ``cached_tokens``.

Every normalizer is pure, returns a new dict, never raises on odd input (a field that is
not a non-negative integer counts as absent) and is idempotent: normalizing a normalized
usage gives it back unchanged. Provider fields that are not token counts deja maps
(``service_tier``, ``server_tool_use``, ``completion_tokens_details``…) are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "CacheTokens",
    "cache_tokens",
    "normalize_anthropic",
    "normalize_compatible",
    "normalize_deepseek",
    "normalize_openai",
    "normalize_usage",
]

# Anthropic's native count fields: replaced by their OpenAI-shaped equivalents.
_ANTHROPIC_COUNTS = frozenset(
    {
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cache_creation",
    }
)


class CacheTokens(NamedTuple):
    """Prompt-cache tokens of one response, by kind (what the cached-tokens metric counts)."""

    read: int
    write_5m: int
    write_1h: int

    @property
    def write(self) -> int:
        """Tokens written to the cache, both lifetimes."""
        return self.write_5m + self.write_1h


def _count(value: object) -> int | None:
    """``value`` if it is a token count (a non-negative int, not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _split(usage: Mapping[str, Any], written: int) -> dict[str, int]:
    """The 5m/1h split of ``written`` cache-write tokens.

    Trusts the total: a 1h count larger than it is capped, and whatever is not 1h is 5m
    (Anthropic's default lifetime, and the only one before the split was reported).
    """
    split = usage.get("cache_creation")
    one_hour = _count(split.get("ephemeral_1h_input_tokens")) if isinstance(split, Mapping) else 0
    one_hour = min(one_hour or 0, written)
    return {"ephemeral_5m_input_tokens": written - one_hour, "ephemeral_1h_input_tokens": one_hour}


def _finish(
    base: Mapping[str, Any],
    *,
    prompt: int,
    completion: int,
    read: int,
    written: int,
    split_from: Mapping[str, Any],
    details: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The normalized usage: ``base``'s extra fields plus the schema's, in a stable order."""
    read = min(read, prompt)
    written = min(written, prompt - read)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {**(details or {}), "cached_tokens": read},
    }
    for key, value in base.items():
        if key not in usage:
            usage[key] = value
    usage["cache_read_input_tokens"] = read
    usage["cache_creation_input_tokens"] = written
    usage["cache_creation"] = _split(split_from, written)
    return usage


def normalize_openai(usage: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's (or Azure OpenAI's) usage with the top-level cache fields filled in.

    Reads come from ``prompt_tokens_details.cached_tokens`` (or, when a compatible server
    put them there, a top-level ``cache_read_input_tokens``); writes from a top-level
    ``cache_creation_input_tokens`` (Anthropic-compatible servers), else
    ``prompt_tokens_details.cache_write_tokens`` (OpenAI's models that bill writes, and
    OpenRouter); none is a write of 0.
    """
    prompt = _count(usage.get("prompt_tokens")) or 0
    completion = _count(usage.get("completion_tokens")) or 0
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else None
    read = _count(details.get("cached_tokens")) if details is not None else None
    if read is None:
        read = _count(usage.get("cache_read_input_tokens"))
    written = _count(usage.get("cache_creation_input_tokens"))
    if written is None and details is not None:
        written = _count(details.get("cache_write_tokens"))
    return _finish(
        usage,
        prompt=prompt,
        completion=completion,
        read=read or 0,
        written=written or 0,
        split_from=usage,
        details=details,
    )


def normalize_anthropic(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Anthropic Messages usage in the OpenAI schema.

    ``input_tokens`` excludes cache reads and writes, so they are added back to make
    ``prompt_tokens`` the whole input. A usage that is already normalized (it has
    ``prompt_tokens`` and no ``input_tokens``) is returned as :func:`normalize_openai` reads it.
    """
    if "input_tokens" not in usage and "prompt_tokens" in usage:
        return normalize_openai(usage)
    uncached = _count(usage.get("input_tokens")) or 0
    read = _count(usage.get("cache_read_input_tokens")) or 0
    written = _count(usage.get("cache_creation_input_tokens")) or 0
    extras = {key: value for key, value in usage.items() if key not in _ANTHROPIC_COUNTS}
    return _finish(
        extras,
        prompt=uncached + read + written,
        completion=_count(usage.get("output_tokens")) or 0,
        read=read,
        written=written,
        split_from=usage,
        details=None,
    )


def normalize_deepseek(usage: Mapping[str, Any]) -> dict[str, Any]:
    """DeepSeek usage in the OpenAI schema.

    DeepSeek caches automatically and reports ``prompt_cache_hit_tokens`` (reads) and
    ``prompt_cache_miss_tokens``, whose sum is ``prompt_tokens``; both are kept. Newer
    responses also carry ``prompt_tokens_details.cached_tokens``, which wins when present.
    """
    hit = _count(usage.get("prompt_cache_hit_tokens"))
    miss = _count(usage.get("prompt_cache_miss_tokens"))
    prompt = _count(usage.get("prompt_tokens"))
    if prompt is None:
        prompt = (hit or 0) + (miss or 0)
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else None
    read = _count(details.get("cached_tokens")) if details is not None else None
    if read is None:
        read = hit
    return _finish(
        usage,
        prompt=prompt,
        completion=_count(usage.get("completion_tokens")) or 0,
        read=read or 0,
        written=0,  # DeepSeek bills no cache writes
        split_from={},
        details=details,
    )


def normalize_compatible(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Usage from any OpenAI-compatible server, whichever cache fields it uses.

    Anthropic-shaped (``input_tokens`` and no ``prompt_tokens``: Anthropic-compatible
    gateways), DeepSeek-shaped (``prompt_cache_hit_tokens``), Moonshot's top-level
    ``cached_tokens``, or else OpenAI's own shape.
    """
    if "input_tokens" in usage and "prompt_tokens" not in usage:
        return normalize_anthropic(usage)
    if "prompt_cache_hit_tokens" in usage:
        return normalize_deepseek(usage)
    details = usage.get("prompt_tokens_details")
    has_details = isinstance(details, Mapping) and _count(details.get("cached_tokens")) is not None
    top = _count(usage.get("cached_tokens"))
    if top is not None and not has_details:
        # Moonshot (Kimi) reports its automatic cache hits at the top level.
        return normalize_openai({**usage, "prompt_tokens_details": {"cached_tokens": top}})
    return normalize_openai(usage)


def normalize_usage(usage: object, *, provider: str) -> dict[str, Any] | None:
    """``usage`` from ``provider``'s upstream in the one schema; ``None`` if it is not an object.

    ``provider`` is the model prefix deja resolved (``openai``, ``azure``, ``anthropic``,
    ``deepseek``, ``bedrock``, ``groq``…); providers without a normalizer of their own get
    :func:`normalize_compatible`.
    """
    if not isinstance(usage, Mapping):
        return None
    if provider in ("openai", "azure"):
        return normalize_openai(usage)
    if provider == "anthropic":
        return normalize_anthropic(usage)
    if provider == "deepseek":
        return normalize_deepseek(usage)
    if provider == "bedrock":
        from deja.providers.bedrock import normalize_bedrock  # it builds on this module

        return normalize_bedrock(usage)
    if provider in ("gemini", "vertex_ai"):
        from deja.providers.gemini import normalize_gemini

        return normalize_gemini(usage)
    return normalize_compatible(usage)


def cache_tokens(usage: object) -> CacheTokens:
    """The prompt-cache reads and writes of a *normalized* usage (zeros when absent)."""
    if not isinstance(usage, Mapping):
        return CacheTokens(0, 0, 0)
    details = usage.get("prompt_tokens_details")
    read = _count(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    if read is None:
        read = _count(usage.get("cache_read_input_tokens"))
    written = _count(usage.get("cache_creation_input_tokens")) or 0
    split = _split(usage, written)
    return CacheTokens(
        read or 0, split["ephemeral_5m_input_tokens"], split["ephemeral_1h_input_tokens"]
    )
