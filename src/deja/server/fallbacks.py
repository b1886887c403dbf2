"""LiteLLM's fallbacks across model names, as rules without I/O: what kind of failure an
upstream error is, and which model names a request that failed so tries next.

A request for a model name tries its deployments first (routing, retries, cooldown: see
:mod:`deja.server.app`); when they all fail, the name's fallbacks are tried in order, each
a model name of its own with its own deployments. Which list applies depends on the failure:

* ``context_window``: the upstream refused the request as too long for the model's context
  (OpenAI's 400 ``context_length_exceeded``, Anthropic's "prompt is too long", Gemini's
  "exceeds the maximum number of tokens", Bedrock's "Input is too long");
* ``content_policy``: it refused it by its content policy (a 400 whose code is
  ``content_filter``, ``content_policy_violation``, Azure's ``ResponsibleAIPolicyViolation``);
* ``general``: a failure that moves on to a name's next deployment (a timeout, no
  connection, 408, 429, 5xx, a 2xx that is no answer), decided by the caller of
  :func:`failure_kind`.

Another 4xx (a bad request, a refused key, an unknown model) falls back to nothing: the
same request would fail the same way elsewhere, or the operator must fix a key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, Literal

from deja.config import FallbackSettings
from deja.errors import ProviderError

__all__ = ["FallbackKind", "fallback_names", "refusal_kind"]

FallbackKind = Literal["general", "context_window", "content_policy"]

# the statuses an upstream refuses a request's content with (OpenAI-compatible servers
# answer 400; some gateways 413 or 422)
_REFUSAL_STATUSES: Final = frozenset({400, 413, 422})
_CONTEXT_CODES: Final = frozenset({"context_length_exceeded"})
_POLICY_CODES: Final = frozenset(
    {
        "content_filter",
        "content_policy_violation",
        "responsibleaipolicyviolation",
        "invalid_prompt",  # (OpenAI's reasoning models: "flagged as potentially violating")
    }
)
# the providers' own words for a prompt over the model's context: OpenAI's and vLLM's
# "maximum context length", Anthropic's "prompt is too long" and "input length and
# `max_tokens` exceed context limit", Bedrock's, Gemini's, llama.cpp's "exceeds the
# available context size", "is longer than the model's context length", Cerebras' "current
# length is ... while limit is", "maximum input length is ... tokens" (as LiteLLM reads them)
_CONTEXT_WORDS: Final = re.compile(
    r"context_length_exceeded|maximum context length|context window|prompt is too long"
    r"|input is too long|exceeds the maximum number of tokens|exceed context limit"
    r"|exceeds the available context size|longer than the model's context length"
    r"|current length is \d+ while limit is|maximum input length is",
    re.IGNORECASE,
)
_POLICY_WORDS: Final = re.compile(
    r"content management policy|content_policy|violating our usage policy"
    r"|rejected as a result of (?:our|the) safety system",
    re.IGNORECASE,
)


def refusal_kind(exc: ProviderError) -> Literal["context_window", "content_policy"] | None:
    """Whether ``exc`` is the upstream refusing the request as too long for its context
    (``"context_window"``) or by its content policy (``"content_policy"``); ``None`` for
    any other failure."""
    if exc.status_code not in _REFUSAL_STATUSES:
        return None
    codes, text = _error_fields(exc.body)
    if codes & _CONTEXT_CODES:
        return "context_window"
    if codes & _POLICY_CODES:
        return "content_policy"
    text = text or str(exc)
    if _CONTEXT_WORDS.search(text):
        return "context_window"
    if _POLICY_WORDS.search(text):
        return "content_policy"
    return None


def _error_fields(body: object) -> tuple[set[str], str]:
    """The codes (lower case) and the message of an upstream's error body: OpenAI's
    ``{"error": {code, message}}`` (Azure's with an ``innererror`` code), Anthropic's
    ``{"type": "error", "error": {type, message}}``, AWS's ``{"message"}``."""
    if not isinstance(body, Mapping):
        return set(), body if isinstance(body, str) else ""
    error: Any = body.get("error")
    fields: Mapping[str, Any] = error if isinstance(error, Mapping) else body
    codes = {str(fields.get("code") or "").lower()}
    inner = fields.get("innererror")
    if isinstance(inner, Mapping):
        codes.add(str(inner.get("code") or "").lower())
    message = fields.get("message", body.get("message", body.get("Message")))
    return codes - {""}, message if isinstance(message, str) else ""


def fallback_names(
    settings: FallbackSettings, name: str, kind: FallbackKind, *, family: str | None = None
) -> tuple[str, ...]:
    """The model names a request for ``name`` (served by the wildcard name ``family``, if
    any) tries after a failure of ``kind``: its own entry, else its wildcard name's, else
    the ``"*"`` entry's; for a ``general`` failure, else ``default_fallbacks``."""
    table = {
        "general": settings.general,
        "context_window": settings.context_window,
        "content_policy": settings.content_policy,
    }[kind]
    for candidate in (name, family, "*"):
        if candidate is not None and candidate in table:
            return table[candidate]
    return settings.default if kind == "general" else ()
