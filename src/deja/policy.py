"""Caching rules as pure functions: admission, TTL resolution and freshness.

Admission (DESIGN.md): never store errors, cancelled or unfinished streams, answers cut
by a content filter, answers whose provider stopped abnormally or before the turn was done,
or answers with nothing in them (no content, tool calls, refusal or reasoning or audio at
all). The provider adapters map every stop to OpenAI's closest ``finish_reason`` and, when
that value does not say all (Anthropic's ``pause_turn``, Gemini's ``MALFORMED_FUNCTION_CALL``
or ``OTHER``, Bedrock's ``malformed_model_output``…), keep the provider's own in the
message's ``provider_specific_fields.native_finish_reason``: an answer whose native reason is
not a normal end is not stored, for a retry may well finish, and a paused turn is not an
answer. Tool-call-only answers are stored; audio answers until their ``audio.expires_at``.
``finish_reason: length`` is stored by default, because ``max_tokens`` is part of the key,
so the same request would be cut the same way again; :class:`AdmissionPolicy` can turn
that off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from deja.stores.base import MAX_TTL

__all__ = [
    "ADMISSION_RULES_SINCE",
    "Admission",
    "AdmissionPolicy",
    "age",
    "answer_expiry",
    "expiry",
    "is_fresh",
    "kept_for",
    "resolve_ttl",
]


@dataclass(frozen=True, slots=True)
class Admission:
    """The verdict on one response: ``ok`` to store, or the ``reason`` it is not stored."""

    ok: bool
    reason: str


ADMITTED = Admission(True, "ok")

# Finish reasons OpenAI-compatible servers give an answer they cut off themselves: DeepSeek's
# "insufficient_system_resource" (the inference system ran short, the answer is partial),
# "error" (OpenRouter, a failure mid-answer), "abort" (vLLM, a request aborted). Never
# stored: each was an answer cut short, served again for its whole TTL.
_INTERRUPTED_FINISHES: Final = frozenset({"insufficient_system_resource", "error", "abort"})

# When these admission rules (interrupted and abnormal stops: 0.7.0 as released, 4d44af7;
# 0.6.0 stored such answers) were in every release:
# an entry created before it is admitted again when read (older releases stored such
# answers), one after it was admitted when stored. 2026-11-28T16:00:00Z, 0.8.0. A node of an
# older release still running in a rolling upgrade stores them after it too: flush them
# (UPGRADING.md, "Upgrading from 0.7.0").
ADMISSION_RULES_SINCE: Final = 1795881600.0

# Provider stop reasons (compared lower-cased) that end an answer normally: a
# provider_specific_fields.native_finish_reason outside this set keeps the answer out of the
# cache. Gateways that report the native reason of every answer ("STOP", "end_turn") lose
# nothing by it.
_NORMAL_NATIVE_FINISHES: Final = frozenset(
    {
        "stop",
        "end_turn",
        "stop_sequence",
        "eos",
        "length",
        "max_tokens",
        "model_context_window_exceeded",
        "tool_calls",
        "tool_use",
        "function_call",
    }
)


def _has_text(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    if isinstance(value, list):  # content parts: any part (text, image, audio) is output
        return bool(value)
    return False


def _choice_has_output(choice: Mapping[str, Any]) -> bool:
    if _has_text(choice.get("text")):  # legacy /v1/completions
        return True
    message = choice.get("message")
    if not isinstance(message, Mapping):
        return False
    return (
        _has_text(message.get("content"))
        or bool(message.get("tool_calls"))
        or bool(message.get("function_call"))
        or _has_text(message.get("refusal"))
        or _has_text(message.get("reasoning_content"))
        or _has_text(message.get("reasoning"))
        or _has_audio(message.get("audio"))
    )


def _native_finish(choice: Mapping[str, Any]) -> str | None:
    """The provider's own stop reason an adapter kept on the choice's message, if any."""
    message = choice.get("message")
    fields = message.get("provider_specific_fields") if isinstance(message, Mapping) else None
    native = fields.get("native_finish_reason") if isinstance(fields, Mapping) else None
    return native if isinstance(native, str) else None


def _has_audio(audio: Any) -> bool:
    """An audio answer (``modalities: ["text", "audio"]``): its sound or transcript."""
    return isinstance(audio, Mapping) and any(
        _has_text(audio.get(key)) for key in ("data", "transcript")
    )


def answer_expiry(response: Mapping[str, Any]) -> float | None:
    """The earliest time (Unix seconds) a part of ``response`` stops being usable, if it
    says: OpenAI's audio answers carry an ``id`` a later turn may refer to until
    ``audio.expires_at``, so a cached copy must not outlive it."""
    earliest: float | None = None
    choices = response.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        message = choice.get("message") if isinstance(choice, Mapping) else None
        audio = message.get("audio") if isinstance(message, Mapping) else None
        expires = audio.get("expires_at") if isinstance(audio, Mapping) else None
        if isinstance(expires, (int, float)) and not isinstance(expires, bool):
            earliest = expires if earliest is None else min(earliest, expires)
    return earliest


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """Which responses may be stored.

    ``store_truncated``: store answers that stopped at ``max_tokens``
    (``finish_reason: length``); on by default.
    """

    store_truncated: bool = True

    def admit(self, response: object) -> Admission:
        """Decide whether ``response`` (an OpenAI-shaped body) may be stored."""
        if not isinstance(response, Mapping):
            return Admission(False, "not_an_object")
        if response.get("error") is not None:
            return Admission(False, "error")
        if response.get("object") == "list":  # embeddings
            data = response.get("data")
            if (
                isinstance(data, list)
                and data
                and all(isinstance(d, Mapping) and d.get("embedding") is not None for d in data)
            ):
                return ADMITTED
            return Admission(False, "empty")
        choices = response.get("choices")
        if not isinstance(choices, list) or not choices:
            return Admission(False, "no_choices")
        for choice in choices:
            if not isinstance(choice, Mapping):
                return Admission(False, "not_an_object")
            reason = choice.get("finish_reason")
            if reason is None:
                return Admission(False, "unfinished")
            if reason == "content_filter":
                return Admission(False, "content_filter")
            if reason in _INTERRUPTED_FINISHES:
                return Admission(False, "interrupted")
            native = _native_finish(choice)
            if native is not None and native.lower() not in _NORMAL_NATIVE_FINISHES:
                return Admission(False, "abnormal_stop")
            if reason == "length" and not self.store_truncated:
                return Admission(False, "truncated")
        if not any(_choice_has_output(c) for c in choices):
            return Admission(False, "empty")
        return ADMITTED


def kept_for(
    response: Mapping[str, Any], ttl: float | None, now: float
) -> float | Literal[False] | None:
    """The TTL to store ``response`` with: ``ttl``, no longer than the answer itself lasts
    (:func:`answer_expiry`; a figure beyond any TTL, milliseconds say, is capped at
    :data:`~deja.stores.base.MAX_TTL`); ``False`` when it has expired already."""
    until = answer_expiry(response)
    if until is None:
        return ttl
    left = until - now
    if left <= 0:
        return False
    left = min(left, MAX_TTL)
    return left if ttl is None else min(ttl, left)


def resolve_ttl(request_ttl: float | None, default_ttl: float | None) -> float | None:
    """The TTL to store with: the request's own, else the cache's default (``None``: none)."""
    return request_ttl if request_ttl is not None else default_ttl


def expiry(now: float, ttl: float | None) -> float | None:
    """Absolute expiry (wall clock) of an entry written at ``now``."""
    return None if ttl is None else now + ttl


def age(now: float, created: float) -> float:
    """Seconds since an entry was written (never negative, whatever the clocks did)."""
    return max(0.0, now - created)


def is_fresh(*, now: float, created: float, expires: float | None, max_age: float | None) -> bool:
    """Whether an entry may be served: not expired, and no older than ``max_age`` if set."""
    if expires is not None and now >= expires:
        return False
    return max_age is None or age(now, created) <= max_age
