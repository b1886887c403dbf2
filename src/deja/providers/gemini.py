"""The Gemini adapter (Google AI and Vertex AI): OpenAI chat format in, OpenAI chat format out.

deja speaks OpenAI's chat format to its callers; :class:`GeminiProvider` translates a request
into Gemini's ``generateContent`` (or ``streamGenerateContent?alt=sse``) and the answer back,
without I/O. Models are named ``gemini/<model>`` (the Gemini Developer API, "Google AI",
authenticated by an API key in ``x-goog-api-key`` — never in the URL) or
``vertex_ai/<model>`` (Vertex AI, ``Authorization: Bearer`` with an OAuth access token, see
:mod:`deja.providers.google_auth`). :class:`GeminiEndpoint` builds every URL of both.

Request, OpenAI → Gemini:

* ``system``/``developer`` messages, wherever they are, become ``systemInstruction`` (in
  order); ``assistant`` turns become ``model`` turns, ``user`` turns stay ``user``, and
  consecutive turns of one role are merged;
* content parts: text; ``image_url`` with a ``data:`` URL → ``inlineData`` (mime type and
  base64 data), with an ``http(s)://`` or ``gs://`` URL → ``fileData`` (``fileUri``, the mime
  type from ``image_url.format``, else guessed from the path, else ``image/jpeg`` with a
  warning); ``file`` (``file_data`` → ``inlineData``, ``file_id`` → ``fileData``);
  ``input_audio`` → ``inlineData``; parts already in Gemini's shape pass through;
* assistant ``tool_calls`` → ``functionCall`` parts (``arguments`` parsed); a signature deja
  returned (``tool_call.extra_content.google.thought_signature``, the shape of Google's own
  OpenAI-compatible endpoint) goes back as the part's ``thoughtSignature``, and a message-level
  ``extra_content.google.thought_signature`` onto the turn's last text part;
  ``reasoning_content`` is not sent (Gemini does not take thoughts back); the id Gemini gave
  a call (``tool_call.extra_content.google.function_call_id``, which deja sets) goes back as
  ``functionCall.id`` — ids deja made up for id-less calls, or from other providers, do not;
* ``tool`` messages → ``functionResponse`` parts in a user turn, named after the function of
  the matching ``tool_call_id`` and carrying its Gemini ``id`` when it had one (Google:
  "return the response with the matching id"); the text is the ``response`` (a JSON object
  as is, anything else ``{"content": ...}``); media parts (``image_url``, ``file``,
  ``input_audio``, Gemini's ``inlineData``/``fileData``) go in ``functionResponse.parts``,
  Gemini 3's multimodal function responses: inline data on Google AI (a file URI there is
  an :class:`~deja.errors.InvalidRequestError`; Vertex takes ``fileData`` too), media types
  beyond the documented png/jpeg/webp/pdf/text-plain with a warning, and a Gemini 1.x or
  2.x model, which cannot take them, an :class:`~deja.errors.InvalidRequestError`;
* function ``tools`` → one ``functionDeclarations`` tool, the parameters converted to the
  OpenAPI subset Gemini accepts by :func:`convert_schema` (or, with
  ``schema_mode="json_schema"``, sent unchanged as ``parametersJsonSchema``); tools already in
  Gemini's shape (``{"googleSearch": {}}``…) pass through; ``tool_choice``
  ``auto``/``required``/``none``/a named function → ``toolConfig.functionCallingConfig`` mode
  ``AUTO``/``ANY``/``NONE``/``ANY`` with ``allowedFunctionNames``;
* ``generationConfig``: ``temperature``, ``top_p`` → ``topP``, ``top_k`` → ``topK``,
  ``max_completion_tokens`` (or ``max_tokens``) → ``maxOutputTokens``, ``stop`` →
  ``stopSequences``, ``n`` → ``candidateCount``, ``seed``, ``presence_penalty``,
  ``frequency_penalty``; ``response_format`` ``json_object`` → ``responseMimeType:
  application/json``, ``json_schema`` → that plus ``responseSchema`` (converted) or
  ``responseJsonSchema``; ``reasoning_effort`` → ``thinkingConfig`` (LiteLLM's budgets:
  minimal 128, low 1,024, medium 2,048, high 4,096, with ``includeThoughts``; ``none`` → budget
  0; Gemini 3 models get ``thinkingLevel`` instead, the effort's own where the model has it
  — Flash and Flash-Lite minimal/low/medium/high, 3 Pro low/high, 3.1 Pro low/medium/high
  — else minimal → low and medium → high; ``none``, as Gemini 3 cannot stop thinking, →
  ``minimal`` where there is one, else nothing, with a warning); Anthropic-style ``thinking``
  → ``thinkingBudget``; a native ``generationConfig`` in the body wins field by field;
  ``safety_settings``/``safetySettings`` and Vertex ``labels`` pass through;
* ``context_cache_id`` (LiteLLM's name; ``cached_content`` too) → ``cachedContent``: a bare
  id or ``cachedContents/<id>`` (on Vertex, qualified with the project and location). Gemini
  answers 400 when such a request also sets a system instruction, tools or a tool config, so
  system messages, ``tools`` or ``tool_choice`` next to it are an
  :class:`~deja.errors.InvalidRequestError` naming the conflict;
* ``logprobs: true`` → ``responseLogprobs``, with ``top_logprobs`` → ``logprobs`` (the
  number of top tokens per step); the answer's ``logprobsResult`` comes back as OpenAI's
  ``choices[].logprobs.content``;
* OpenAI-only parameters with no Gemini equivalent (``logit_bias``, ``user``,
  ``parallel_tool_calls: false``…) are not sent, each with a warning; any other field passes
  through as a Gemini extra.

Context caching. Gemini has no ``cache_control`` markers on the wire; it caches a prefix as a
``cachedContents`` resource that later requests name. The markers (the caller's, and
``cache_control_injection_points``, placed by :mod:`deja.providers.planner` with no limit) say
where that prefix ends: at the **last** breakpoint, which caches the longest prefix. A request
that uses a cache may not carry a system instruction, tools or a tool config, so the cache
always holds all three whole — a marker on a tool or a system message caches just them — plus
the ``contents`` up to the breakpoint (a marker on a content part splits its message there).
The request must keep at least one turn: a breakpoint on the last message leaves that turn out
of the cache. :attr:`GeminiRequest.context_cache` is the resulting :class:`ContextCachePlan`
(content digest, create URL and body, estimated size against the model's minimum); the
client looks the digest up, creates the cache when it has none, and sends
:meth:`GeminiRequest.with_cached_content` instead. An explicit ``context_cache_id`` disables
planning.

Response, Gemini → OpenAI: one choice per candidate (its ``index``); text parts →
``content``; thought parts (``thought: true``) → ``reasoning_content``; ``functionCall`` →
``tool_calls`` and ``finish_reason: tool_calls``, each with Gemini's own id when the call
has one (also kept as ``extra_content.google.function_call_id``, the mark that sends it
back), else a deterministic ``call_`` id (SHA-256 of the response id, candidate, position,
name and arguments, so a stream and its non-stream twin agree, and a cached answer keeps
it); ``finishReason`` ``STOP`` → ``stop``, ``MAX_TOKENS`` →
``length``, the safety family (``SAFETY``, ``RECITATION``, ``BLOCKLIST``,
``PROHIBITED_CONTENT``, ``SPII``, image variants), ``LANGUAGE`` and ``MODEL_ARMOR`` →
``content_filter``, anything else (``MALFORMED_FUNCTION_CALL``, ``OTHER``…) → ``stop``
(``tool_calls`` with function calls), OpenAI's clients knowing no other value; a reason that
mapping loses is kept as the message's ``provider_specific_fields.native_finish_reason``,
and deja does not store such an answer. ``logprobsResult`` → ``logprobs``. A prompt blocked
before any candidate (``promptFeedback.blockReason``) is an answer, not an error: one empty
choice with ``finish_reason: content_filter`` and the feedback under ``prompt_feedback`` —
the request was well-formed, the stream and non-stream paths stay alike, and deja never
stores a ``content_filter`` answer. Usage goes through :func:`normalize_gemini`.
:class:`StreamTranslator` turns SSE events into chunks that
:class:`deja.streaming.StreamAssembler` assembles into exactly what :meth:`parse_response`
returns.
"""

from __future__ import annotations

import copy
import hashlib
import json
import mimetypes
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import quote, urlsplit

import orjson

from deja.errors import InvalidRequestError, ProviderError, provider_error_for_status
from deja.providers._openai_format import arguments_text, assistant_message, function_call
from deja.providers.planner import (
    IMAGE_TOKENS,
    Plan,
    TokenEstimator,
    estimate_tokens,
    plan_breakpoints,
)
from deja.providers.usage import normalize_openai

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_VERTEX_LOCATION",
    "CachePrefix",
    "CachedContent",
    "ContextCachePlan",
    "GeminiEndpoint",
    "GeminiProvider",
    "GeminiRequest",
    "StreamTranslator",
    "cached_content_gone",
    "convert_schema",
    "finish_reason",
    "format_ttl",
    "logprobs",
    "minimum_cache_tokens",
    "normalize_gemini",
    "parse_cached_content",
    "provider_fields",
]

DEFAULT_API_BASE: Final = "https://generativelanguage.googleapis.com"
"""The Gemini Developer API's host (Google AI)."""

DEFAULT_VERTEX_LOCATION: Final = "us-central1"
"""Vertex location when none is given (LiteLLM's default too)."""

GOOGLE_AI_VERSION: Final = "v1beta"
VERTEX_VERSION: Final = "v1"

SchemaMode: TypeAlias = Literal["openapi", "json_schema"]
EndpointKind: TypeAlias = Literal["google_ai", "vertex"]

_PROVIDER_NAMES: Final = {"google_ai": "gemini", "vertex": "vertex_ai"}
_VERSION_SEGMENT: Final = re.compile(r"/v\d+(?:(?:alpha|beta)\d*)?$")
_DATA_URL: Final = re.compile(r"data:(?P<media>[^;,]+)(?:;[^,]*)?;base64,(?P<data>.*)", re.DOTALL)
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})"
)
_TTL: Final = re.compile(r"(\d+(?:\.\d+)?)s")

_SAFETY_REASONS: Final = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)
# Output blocked for reasons outside the safety family: an unsupported language (mapped to
# content_filter by other OpenAI-shaped SDKs too), Vertex's Model Armor.
_BLOCKED_REASONS: Final = frozenset({"LANGUAGE", "MODEL_ARMOR"})
# LiteLLM's budgets for OpenAI's reasoning effort on Gemini 2.x.
_THINKING_BUDGET: Final = {"minimal": 128, "low": 1024, "medium": 2048, "high": 4096}
# Gemini 3 takes a thinking level, not a budget, and the levels differ by model (Google's
# model pages): Flash and Flash-Lite minimal/low/medium/high, 3 Pro low/high, 3.1 Pro
# low/medium/high. An effort the model lacks goes to its neighbour: minimal → low,
# medium → high (3 Pro's default).
_FLASH_LEVELS: Final = ("minimal", "low", "medium", "high")
_GEMINI_3_PRO: Final = re.compile(r"gemini-3-pro(?:-|$)")
_LEVEL_FALLBACK: Final = {"minimal": "low", "medium": "high"}

# Fewest tokens a cachedContents resource may hold, by model family (longest prefix wins).
# Google AI's caching guide lists 2.5 Flash 1,024 and 2.5 Pro 4,096; 2.5 Flash-Lite refuses
# below 2,048 (its 400 says "min_total_token_count=2048"); 2.0 Flash answered 4,096; Gemini 3:
# Pro 4,096, Flash 1,024; 1.5 needed 32,768 when it launched. Unknown models get 4,096: a
# minimum set too high only skips a cache, one too low costs a refused create. (The guide
# of 2026-10 lists 2,048 for 2.5 Flash and Pro and 4,096 for 3.5+ Flash and 3.1 Pro; the
# API still answers 2.5 Flash's create "min_total_token_count=1024", discuss.ai.google.dev
# topic 178942: Flash keeps 1,024, Pro 4,096 until a create of fewer is seen to work.)
_MINIMUM_CACHE_TOKENS: Final = (
    ("gemini-2.5-flash-lite", 2048),
    ("gemini-2.5-flash", 1024),
    ("gemini-2.5-pro", 4096),
    ("gemini-2.0-flash", 4096),
    ("gemini-3-flash", 1024),
    ("gemini-3-pro", 4096),
    ("gemini-3.1-pro", 4096),
    ("gemini-1.5", 32768),
)
_DEFAULT_MINIMUM_CACHE_TOKENS: Final = 4096
# Vertex AI's context-cache overview: "Caching requests must contain a minimum of 2,048
# tokens" (every model; Google AI's own minimums above are per model)
VERTEX_MINIMUM_CACHE_TOKENS: Final = 2048

# OpenAI parameters with no Gemini equivalent: not sent (a warning names each one set).
_OPENAI_ONLY: Final = frozenset(
    {
        "logit_bias",
        "user",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "modalities",
        "audio",
        "prediction",
        "verbosity",
        "web_search_options",
        "safety_identifier",
    }
)
# Handled explicitly below; everything else in the body passes through.
_HANDLED: Final = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "response_format",
        "reasoning_effort",
        "thinking",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "stream",
        "stream_options",
        "context_cache_id",
        "cached_content",
        "cachedContent",
        "cache_control",
        "cache_control_injection_points",
        "generationConfig",
        "generation_config",
        "safetySettings",
        "safety_settings",
    }
)
_SYSTEM_ROLES: Final = frozenset({"system", "developer"})
_NATIVE_PART_KEYS: Final = frozenset(
    {
        "text",
        "inlineData",
        "fileData",
        "functionCall",
        "functionResponse",
        "executableCode",
        "codeExecutionResult",
    }
)
_CACHED_FIELDS: Final = ("systemInstruction", "tools", "toolConfig")
# Where a tool call deja returns keeps the id Gemini gave its functionCall (the tool call's
# ``extra_content.google``, next to ``thought_signature``). Google's FunctionCall.id: "If
# populated, the client to execute the function_call and return the response with the
# matching id"; Gemini 3 returns one with every call. Ids deja makes up for id-less calls,
# and ids from other providers, carry no mark and are never sent.
_CALL_ID_KEY: Final = "function_call_id"
# The media types Google documents for multimodal function responses (Gemini API function
# calling guide, "Multimodal function responses": images png/jpeg/webp, documents pdf and
# text/plain); other types are sent with a warning, for Gemini to accept or refuse.
_FUNCTION_RESPONSE_MEDIA: Final = frozenset(
    {"image/png", "image/jpeg", "image/webp", "application/pdf", "text/plain"}
)
# Multimodal function responses are "available for Gemini 3 series models"; Gemini 1.x and
# 2.x answer 400 ("Multimodal function responses are not supported for this model"), so
# deja refuses them first. Names it cannot place (aliases, tuned models) are sent.
_NO_FUNCTION_RESPONSE_MEDIA: Final = re.compile(r"gemini-(?:[12](?:[.\-]|$)|pro(?:-vision)?$)")

# -- JSON schema → Gemini's OpenAPI 3.0 subset ----------------------------------------------

# The Schema fields Gemini documents (https://ai.google.dev/api/caching#Schema).
_SCHEMA_KEEP: Final = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "properties",
        "required",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "anyOf",
        "propertyOrdering",
        "default",
        "example",
    }
)
# Formats Gemini acts on; others were refused with a 400 ("only 'enum' and 'date-time' are
# supported for STRING type"), so they are dropped rather than risked.
_FORMATS: Final = {
    "string": frozenset({"enum", "date-time"}),
    "number": frozenset({"float", "double"}),
    "integer": frozenset({"int32", "int64"}),
}
_JSON_TYPES: Final = {bool: "boolean", int: "integer", float: "number", str: "string"}


def convert_schema(
    schema: Mapping[str, Any], *, dropped: list[str] | None = None, path: str = ""
) -> dict[str, Any]:
    """``schema`` (JSON Schema, as OpenAI tools take it) in the OpenAPI 3.0 subset Gemini's
    ``Schema`` accepts. Pure; ``schema`` is not changed.

    * ``$ref`` to ``#/$defs/…`` or ``#/definitions/…`` is inlined (sibling keywords such as
      ``description`` kept over the target's); a recursive reference cannot be inlined and
      is an :class:`~deja.errors.InvalidRequestError` (send such tools with
      ``schema_mode="json_schema"``);
    * ``null`` becomes ``nullable: true``: ``"type": ["string", "null"]``, and ``anyOf`` /
      ``oneOf`` with a ``{"type": "null"}`` branch (one branch left: it is inlined);
      ``oneOf`` becomes ``anyOf``; a type list of several types becomes ``anyOf``;
    * ``allOf`` of one schema is inlined, of several object schemas merged (properties and
      ``required``), otherwise dropped;
    * ``const`` becomes a one-value ``enum``; ``enum`` values that are not strings are
      turned into strings (Gemini enums are strings) and the type into ``string``; a ``null``
      member becomes ``nullable``;
    * ``format`` is kept only where Gemini acts on it (string ``enum``/``date-time``, number
      ``float``/``double``, integer ``int32``/``int64``);
    * every other keyword (``additionalProperties``, ``$schema``, ``$id``, ``$defs``,
      ``definitions``, ``examples``, ``patternProperties``, ``unevaluatedProperties``,
      ``not``, ``if``/``then``/``else``, ``dependentRequired``, ``uniqueItems``,
      ``multipleOf``, ``exclusiveMinimum``/``exclusiveMaximum``, ``contains``,
      ``prefixItems``, ``readOnly``/``writeOnly``, ``deprecated``, ``strict``…) is dropped;
    * ``required`` keeps only names that are in ``properties``.

    Each dropped or rewritten keyword is appended to ``dropped`` (when given) as a dotted path
    under ``path``, for a warning.
    """
    if not isinstance(schema, Mapping):
        raise InvalidRequestError(f"{path or 'schema'} must be a JSON object")
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        found = schema.get(key)
        if isinstance(found, Mapping):
            defs.update({f"#/{key}/{name}": value for name, value in found.items()})
    notes: list[str] = [] if dropped is None else dropped
    return _SchemaConverter(defs, notes).convert(schema, path, ())


class _SchemaConverter:
    def __init__(self, defs: Mapping[str, Any], notes: list[str]) -> None:
        self.defs = defs
        self.notes = notes

    def note(self, path: str, key: str) -> None:
        self.notes.append(_join(path, key))

    def resolve(
        self, node: Mapping[str, Any], path: str, seen: tuple[str, ...]
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """``node`` with ``$ref`` chains replaced by their targets (siblings win)."""
        out = dict(node)
        while "$ref" in out:
            ref = out.pop("$ref")
            if not isinstance(ref, str) or ref not in self.defs:
                raise InvalidRequestError(
                    f"{path or 'schema'}: $ref {ref!r} does not name a local $defs entry"
                )
            if ref in seen:
                raise InvalidRequestError(
                    f"{path or 'schema'}: $ref {ref!r} is recursive, which Gemini's schema "
                    "subset cannot express; send this tool with schema_mode='json_schema'"
                )
            seen = (*seen, ref)
            target = self.defs[ref]
            if not isinstance(target, Mapping):
                raise InvalidRequestError(f"{path or 'schema'}: $ref {ref!r} is not a schema")
            out = {**target, **out}
        return out, seen

    def convert(self, raw: Any, path: str, seen: tuple[str, ...]) -> dict[str, Any]:
        if raw is True or raw == {}:
            return {}
        if not isinstance(raw, Mapping):
            raise InvalidRequestError(f"{path or 'schema'} must be a JSON object")
        node, seen = self.resolve(raw, path, seen)
        out: dict[str, Any] = {}
        nullable = node.get("nullable") is True

        all_of = node.pop("allOf", None)
        if isinstance(all_of, list) and all_of:
            merged = self.merge_all_of(all_of, path, seen)
            if merged is None:
                self.note(path, "allOf")
            else:
                node = {**merged, **node}

        alternatives = node.pop("anyOf", None)
        one_of = node.pop("oneOf", None)
        if one_of is not None:
            self.note(path, "oneOf")  # rewritten: exactly-one is not expressible
            alternatives = [*(alternatives or []), *one_of] if isinstance(one_of, list) else None
        if isinstance(alternatives, list):
            branches = []
            for i, branch in enumerate(alternatives):
                if isinstance(branch, Mapping) and branch.get("type") == "null":
                    nullable = True
                    continue
                branches.append(self.convert(branch, _join(path, f"anyOf[{i}]"), seen))
            if len(branches) == 1:
                # One real branch: inline it, the outer keywords (description…) winning.
                inner = branches[0]
                outer = {k: v for k, v in node.items() if k != "type" or "type" not in inner}
                rest = self.convert(outer, path, seen) if outer else {}
                out.update(inner)
                out.update({k: v for k, v in rest.items() if k != "nullable"})
                nullable = nullable or inner.get("nullable") is True
                node = {}
            elif branches:
                out["anyOf"] = branches

        kind = node.get("type")
        if isinstance(kind, list):
            types = [t for t in kind if t != "null"]
            nullable = nullable or len(types) < len(kind)
            if len(types) == 1:
                kind = types[0]
            elif types:
                out["anyOf"] = [{"type": t} for t in types]
                kind = None
            else:
                kind = None
        elif kind == "null":
            nullable, kind = True, None
        if "const" in node:
            const = node["const"]
            self.note(path, "const")
            if const is None:
                nullable = True
            else:
                node = {**node, "enum": [const]}
                if kind is None:
                    kind = _JSON_TYPES.get(type(const))
        if isinstance(kind, str):
            out["type"] = kind

        for key, value in node.items():
            if key in ("type", "const", "nullable", "anyOf", "oneOf", "allOf"):
                continue
            if key == "properties" and isinstance(value, Mapping):
                out["properties"] = {
                    name: self.convert(sub, _join(path, f"properties.{name}"), seen)
                    for name, sub in value.items()
                }
            elif key == "items":
                if isinstance(value, list):  # tuple validation: any of the positions
                    self.note(path, "items")
                    out["items"] = {
                        "anyOf": [
                            self.convert(v, _join(path, f"items[{i}]"), seen)
                            for i, v in enumerate(value)
                        ]
                    }
                else:
                    out["items"] = self.convert(value, _join(path, "items"), seen)
            elif key == "enum" and isinstance(value, list):
                values = [v for v in value if v is not None]
                nullable = nullable or len(values) < len(value)
                if any(not isinstance(v, str) for v in values):
                    self.note(path, "enum")
                    out["type"] = "string"
                out["enum"] = [v if isinstance(v, str) else _enum_text(v) for v in values]
            elif key == "format":
                allowed = _FORMATS.get(str(out.get("type")), frozenset())
                if value in allowed:
                    out["format"] = value
                else:
                    self.note(path, "format")
            elif key == "required" and isinstance(value, list):
                continue  # after properties, below
            elif key in _SCHEMA_KEEP:
                out[key] = copy.deepcopy(value)
            else:
                self.note(path, key)
        required = node.get("required")
        if isinstance(required, list):
            names = out.get("properties") or {}
            kept = [name for name in required if name in names]
            if len(kept) < len(required):
                self.note(path, "required")
            if kept:
                out["required"] = kept
        if "enum" in out and out.get("type") is None:
            out["type"] = "string"
        if nullable:
            out["nullable"] = True
        return out

    def merge_all_of(
        self, parts: list[Any], path: str, seen: tuple[str, ...]
    ) -> dict[str, Any] | None:
        resolved = []
        for part in parts:
            if not isinstance(part, Mapping):
                return None
            resolved.append(self.resolve(part, path, seen)[0])
        if len(resolved) == 1:
            return resolved[0]
        if not all(p.get("type", "object") == "object" for p in resolved):
            return None
        merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
        for part in resolved:
            merged["properties"].update(part.get("properties") or {})
            for name in part.get("required") or ():
                if name not in merged["required"]:
                    merged["required"].append(name)
            for key, value in part.items():
                if key not in ("type", "properties", "required"):
                    merged.setdefault(key, value)
        return merged


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _enum_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# -- usage, finish reasons, minimums -----------------------------------------------------

_GEMINI_COUNTS: Final = frozenset(
    {
        "promptTokenCount",
        "cachedContentTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
        "toolUsePromptTokenCount",
        "totalTokenCount",
    }
)


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def normalize_gemini(usage_metadata: object) -> dict[str, Any]:
    """Gemini's ``usageMetadata`` in deja's usage schema (see :mod:`deja.providers.usage`).

    * ``prompt_tokens`` = ``promptTokenCount`` (which already includes the cached tokens,
      Google documents) + ``toolUsePromptTokenCount`` (built-in tool results fed back to the
      model, billed as input), with ``prompt_tokens_details.tool_use_prompt_tokens`` when
      Gemini sent it;
    * ``prompt_tokens_details.cached_tokens`` and ``cache_read_input_tokens`` =
      ``cachedContentTokenCount`` (explicit ``cachedContents`` and implicit cache hits alike);
    * ``completion_tokens`` = ``candidatesTokenCount`` + ``thoughtsTokenCount`` (thinking is
      billed as output), with ``completion_tokens_details.reasoning_tokens`` = the thoughts;
    * ``total_tokens`` = prompt + completion (Gemini's ``totalTokenCount`` is the same sum);
    * cache writes are 0: Gemini bills a ``cachedContents`` resource by storage time, not by
      a write premium.

    The native counts are replaced; other fields (``promptTokensDetails``, ``trafficType``…)
    are kept. Pure, never raises (a count that is not a non-negative integer counts as 0),
    and idempotent: an already-normalized usage comes back unchanged.
    """
    usage = usage_metadata if isinstance(usage_metadata, Mapping) else {}
    if "prompt_tokens" in usage and "promptTokenCount" not in usage:
        return normalize_openai(usage)
    tool_use = usage.get("toolUsePromptTokenCount")
    thoughts = _count(usage.get("thoughtsTokenCount"))
    details: dict[str, Any] = {"cached_tokens": _count(usage.get("cachedContentTokenCount"))}
    if tool_use is not None:
        details["tool_use_prompt_tokens"] = _count(tool_use)
    shaped: dict[str, Any] = {
        "prompt_tokens": _count(usage.get("promptTokenCount")) + _count(tool_use),
        "completion_tokens": _count(usage.get("candidatesTokenCount")) + thoughts,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }
    for key, value in usage.items():
        if key not in _GEMINI_COUNTS and key not in shaped:
            shaped[key] = value
    return normalize_openai(shaped)


def finish_reason(reason: object, *, tool_calls: bool = False) -> str | None:
    """OpenAI's ``finish_reason`` for a Gemini ``finishReason``: always one of OpenAI's
    values, which strictly typed clients require.

    ``MAX_TOKENS`` → ``length``; the safety family, ``LANGUAGE`` (an unsupported language,
    output blocked) and ``MODEL_ARMOR`` → ``content_filter``; ``STOP`` and anything else
    (``MALFORMED_FUNCTION_CALL``, ``UNEXPECTED_TOOL_CALL``, ``TOO_MANY_TOOL_CALLS``,
    ``OTHER``, values newer than this adapter) → ``stop``, or ``tool_calls`` when the
    candidate called functions. :func:`provider_fields` keeps the reasons that mapping
    loses; ``None`` stays ``None``.
    """
    if reason is None:
        return None
    name = str(reason)
    if name in _SAFETY_REASONS or name in _BLOCKED_REASONS:
        return "content_filter"
    if name == "MAX_TOKENS":
        return "length"
    return "tool_calls" if tool_calls else "stop"


def provider_fields(reason: object) -> dict[str, Any] | None:
    """The message's ``provider_specific_fields`` for a candidate that finished with
    ``reason``: ``None`` when :func:`finish_reason` says all (``STOP``, ``MAX_TOKENS``, the
    safety family), else ``{"native_finish_reason": reason}`` — an abnormal stop, which
    deja's admission policy does not store."""
    if reason is None:
        return None
    name = str(reason)
    if name in ("STOP", "MAX_TOKENS") or name in _SAFETY_REASONS:
        return None
    return {"native_finish_reason": name}


def minimum_cache_tokens(model: str) -> int:
    """The fewest tokens a ``cachedContents`` resource for ``model`` may hold (Gemini refuses
    smaller ones with a 400). Accepts ``gemini/…``, ``vertex_ai/…``, ``models/…`` and
    versioned names (``gemini-2.5-flash-001``, ``gemini-2.5-pro-preview-05-06``)."""
    name = _bare_model(model).lower()
    for prefix, tokens in _MINIMUM_CACHE_TOKENS:
        if name == prefix or (name.startswith(prefix) and name[len(prefix)] in "-@:"):
            return tokens
    return _DEFAULT_MINIMUM_CACHE_TOKENS


def _endpoint_minimum(minimum: int, endpoint: GeminiEndpoint) -> int:
    """A model's minimum cache size where ``endpoint`` serves it: Vertex refuses any cache
    under :data:`VERTEX_MINIMUM_CACHE_TOKENS`, whatever the model's own minimum."""
    return max(minimum, VERTEX_MINIMUM_CACHE_TOKENS) if endpoint.kind == "vertex" else minimum


def _bare_model(model: str) -> str:
    name = model.strip()
    for prefix in ("gemini/", "vertex_ai/"):
        name = name.removeprefix(prefix)
    if "/models/" in name:  # projects/…/publishers/google/models/x
        name = name.rsplit("/models/", 1)[1]
    return name.removeprefix("models/")


# -- endpoints ------------------------------------------------------------------------------


def format_ttl(seconds: int) -> str:
    """A Duration in Google's JSON form: ``3600`` → ``"3600s"``."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
        raise ValueError("a cache TTL is a whole number of seconds >= 1")
    return f"{seconds}s"


def _versioned(base: str, version: str) -> str:
    base = base.rstrip("/")
    if _VERSION_SEGMENT.search(urlsplit(base).path):
        return base
    return f"{base}/{version}"


@dataclass(frozen=True, slots=True)
class GeminiEndpoint:
    """Where Gemini requests go: Google AI (``kind="google_ai"``) or Vertex AI.

    ``base`` is scheme, host and API version (``https://generativelanguage.googleapis.com/
    v1beta``, ``https://us-central1-aiplatform.googleapis.com/v1``); Vertex also has its
    ``project`` and ``location``. Build one with :meth:`google_ai` or :meth:`vertex`. Every
    URL here is credential-free: keys go in headers.
    """

    kind: EndpointKind
    base: str
    project: str | None = None
    location: str | None = None

    @classmethod
    def google_ai(
        cls, api_base: str | None = None, *, version: str = GOOGLE_AI_VERSION
    ) -> GeminiEndpoint:
        """The Gemini Developer API at ``api_base`` (default :data:`DEFAULT_API_BASE`); a base
        without a version path gets ``/v1beta``."""
        return cls("google_ai", _versioned(api_base or DEFAULT_API_BASE, version))

    @classmethod
    def vertex(
        cls,
        project: str,
        location: str = DEFAULT_VERTEX_LOCATION,
        *,
        api_base: str | None = None,
        version: str = VERTEX_VERSION,
    ) -> GeminiEndpoint:
        """Vertex AI in ``project`` and ``location``: host ``{location}-aiplatform.
        googleapis.com`` (``aiplatform.googleapis.com`` for ``global``) unless ``api_base``."""
        if not project or "/" in project:
            raise InvalidRequestError("vertex_project must be a project id")
        if not location or "/" in location:
            raise InvalidRequestError("vertex_location must be a location name")
        host = (
            "https://aiplatform.googleapis.com"
            if location == "global"
            else f"https://{location}-aiplatform.googleapis.com"
        )
        return cls("vertex", _versioned(api_base or host, version), project, location)

    @property
    def provider(self) -> str:
        """deja's provider name: ``gemini`` or ``vertex_ai``."""
        return _PROVIDER_NAMES[self.kind]

    @property
    def parent(self) -> str:
        """``projects/{p}/locations/{l}`` on Vertex, ``""`` on Google AI."""
        if self.kind == "vertex":
            return f"projects/{self.project}/locations/{self.location}"
        return ""

    def identity(self) -> dict[str, Any]:
        """What makes two endpoints the same cache namespace (part of a cache digest)."""
        parts = urlsplit(self.base)
        out: dict[str, Any] = {
            "kind": self.kind,
            "base": f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}",
        }
        if self.kind == "vertex":
            out["project"] = self.project
            out["location"] = self.location
        return out

    def model_resource(self, model: str) -> str:
        """``models/{m}`` (Google AI) or ``projects/…/publishers/google/models/{m}``."""
        name = _bare_model(model)
        if self.kind == "vertex":
            return f"{self.parent}/publishers/google/models/{name}"
        return f"models/{name}"

    def model_url(self, model: str, *, stream: bool = False) -> str:
        """The ``generateContent`` URL (``streamGenerateContent?alt=sse`` with ``stream``)."""
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{self.base}/{quote(self.model_resource(model), safe='/')}:{method}"

    def cached_contents_url(self) -> str:
        """The ``cachedContents`` collection: POST creates, GET lists."""
        if self.kind == "vertex":
            return f"{self.base}/{self.parent}/cachedContents"
        return f"{self.base}/cachedContents"

    def cached_content_name(self, name: str) -> str:
        """The full resource name for a bare id, ``cachedContents/<id>`` or a full name.

        Raises :class:`~deja.errors.InvalidRequestError` for a name of another endpoint
        kind, or a Vertex name from another project or location.
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequestError("a cached content name must be a non-empty string")
        name = name.strip()
        if name.startswith("projects/"):
            if self.kind != "vertex":
                raise InvalidRequestError(
                    f"cached content {name!r} is a Vertex resource; Google AI names look like "
                    "'cachedContents/<id>'"
                )
            if not name.startswith(self.parent + "/cachedContents/"):
                raise InvalidRequestError(
                    f"cached content {name!r} is not in {self.parent}: a cache is only visible "
                    "in the project and location that created it"
                )
            return name
        ident = name.removeprefix("cachedContents/")
        if not ident or "/" in ident:
            raise InvalidRequestError(f"{name!r} is not a cached content name")
        if self.kind == "vertex":
            return f"{self.parent}/cachedContents/{ident}"
        return f"cachedContents/{ident}"

    def cached_content_url(self, name: str) -> str:
        """The URL of one cached content: GET reads, PATCH updates, DELETE deletes it."""
        return f"{self.base}/{self.cached_content_name(name)}"

    def ttl_update(self, name: str, ttl_seconds: int) -> tuple[str, dict[str, Any]]:
        """``(url, body)`` of the PATCH that gives cached content ``name`` ``ttl_seconds``
        more to live (from now)."""
        return (
            self.cached_content_url(name) + "?updateMask=ttl",
            {"ttl": format_ttl(ttl_seconds)},
        )


# -- cached contents ----------------------------------------------------------------------


def _epoch(value: object) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp (Google sends up to nanoseconds)."""
    if not isinstance(value, str):
        return None
    match = _RFC3339.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    fraction = (match[7] or "")[:6].ljust(6, "0")
    zone = match[8]
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        stamp = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=tz)
    except ValueError:
        return None
    return stamp.timestamp()


@dataclass(frozen=True, slots=True)
class CachedContent:
    """A ``cachedContents`` resource as Gemini describes it: full ``name``, ``model``
    resource, ``expire_time`` (epoch seconds; ``None`` if Gemini sent none) and
    ``total_token_count`` (what storage is billed on)."""

    name: str
    model: str | None
    expire_time: float | None
    total_token_count: int | None
    display_name: str | None = None


def parse_cached_content(data: object) -> CachedContent:
    """The :class:`CachedContent` in the JSON answer to a create, get or patch. Raises
    :class:`~deja.errors.ProviderError` for an answer without a ``name``."""
    if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
        raise ProviderError(
            "Gemini answered a cachedContents call with a body that is not a cached content",
            body=data,
            provider="gemini",
        )
    usage = data.get("usageMetadata")
    total = usage.get("totalTokenCount") if isinstance(usage, Mapping) else None
    model = data.get("model")
    display = data.get("displayName")
    return CachedContent(
        name=data["name"],
        model=model if isinstance(model, str) else None,
        expire_time=_epoch(data.get("expireTime")),
        total_token_count=total if isinstance(total, int) and not isinstance(total, bool) else None,
        display_name=display if isinstance(display, str) else None,
    )


def cached_content_gone(status_code: int | None, body: object) -> bool:
    """Whether an error answer to a request that named a ``cachedContent`` means the cache
    no longer exists (expired or deleted), so the client should create it again.

    Vertex answers 404 ``NOT_FOUND``; Google AI answers 403 ``PERMISSION_DENIED`` with
    "CachedContent not found (or permission denied)" — a 403 without that message is a
    real permission error and is not a missing cache.
    """
    if status_code == 404:
        return True
    if status_code != 403:
        return False
    error = body.get("error") if isinstance(body, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else body
    return isinstance(message, str) and "cachedcontent" in message.lower().replace(" ", "")


def _canonical(value: Any) -> Any:
    """JSON value with integral floats as ints and ``None`` members dropped (1 == 1.0)."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def _digest(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(
        orjson.dumps(_canonical(payload), option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


@dataclass(frozen=True, slots=True)
class CachePrefix:
    """Where the context-cache prefix ends in a translated request: ``contents`` (the
    leading turns the cache holds, beside the system instruction, tools and tool config),
    ``request_contents`` (the turns a request that uses the cache still sends), the lifetime
    the marker asked for (``ttl_seconds``: 300 for ``"5m"``, 3,600 for ``"1h"``) and the
    planner's :class:`~deja.providers.planner.Plan`."""

    contents: list[dict[str, Any]]
    request_contents: list[dict[str, Any]]
    ttl_seconds: int
    plan: Plan


@dataclass(frozen=True)
class ContextCachePlan:
    """A context cache this request could use: what to create and how to find it again.

    ``digest`` (SHA-256 hex of the canonical JSON of the model, the endpoint identity —
    kind, base URL, and on Vertex the project and location — and the prefix: system
    instruction, tools, tool config and prefix contents) names the cache in deja's own
    bookkeeping: equal digests can share one ``cachedContents`` resource. ``create_url`` and
    :meth:`create_body` make it (send them with the request's headers). ``prefix_tokens`` is
    the estimate (:func:`deja.providers.planner.estimate_tokens`); when it is below
    ``minimum_tokens`` (:attr:`below_minimum`) Gemini would refuse the create, so no cache
    should be made. ``ttl_seconds`` is the lifetime the caller's marker asked for, a hint.
    """

    digest: str
    model: str
    endpoint: GeminiEndpoint
    create_url: str
    system_instruction: dict[str, Any] | None
    tools: list[dict[str, Any]] | None
    tool_config: dict[str, Any] | None
    contents: list[dict[str, Any]]
    request_contents: list[dict[str, Any]]
    prefix_tokens: int
    minimum_tokens: int
    ttl_seconds: int

    @property
    def below_minimum(self) -> bool:
        """True when the prefix is estimated too small for Gemini to cache."""
        return self.prefix_tokens < self.minimum_tokens

    @property
    def display_name(self) -> str:
        """The ``displayName`` the cache is created with (``deja-`` and 16 hex digits)."""
        return f"deja-{self.digest[:16]}"

    def create_body(self, ttl_seconds: int) -> dict[str, Any]:
        """The JSON body that creates the cache, to live ``ttl_seconds`` (>= 1)."""
        body: dict[str, Any] = {"model": self.model, "displayName": self.display_name}
        if self.contents:
            body["contents"] = copy.deepcopy(self.contents)
        if self.system_instruction is not None:
            body["systemInstruction"] = copy.deepcopy(self.system_instruction)
        if self.tools is not None:
            body["tools"] = copy.deepcopy(self.tools)
        if self.tool_config is not None:
            body["toolConfig"] = copy.deepcopy(self.tool_config)
        body["ttl"] = format_ttl(ttl_seconds)
        return body


@dataclass(frozen=True)
class GeminiRequest:
    """What to send: ``url``, ``headers`` and the ``json`` body; ``warnings`` (parameters
    not sent, schema keywords dropped, breakpoints that did not become a cache) for the
    caller's log; ``context_cache`` (a :class:`ContextCachePlan` when the request asked for
    context caching, else ``None``); the ``endpoint``, the bare ``model`` name, whether it
    is a ``stream``, and how many candidates were asked for (``candidate_count``, for
    :meth:`GeminiProvider.stream_translator`)."""

    url: str
    headers: dict[str, str]
    json: dict[str, Any]
    warnings: tuple[str, ...]
    context_cache: ContextCachePlan | None
    endpoint: GeminiEndpoint
    model: str
    stream: bool = False
    candidate_count: int = 1

    @property
    def provider(self) -> str:
        """``gemini`` or ``vertex_ai`` (the name usage and prices are filed under)."""
        return self.endpoint.provider

    def with_cached_content(self, name: str) -> GeminiRequest:
        """This request using cached content ``name`` instead of sending its prefix: without
        ``systemInstruction``, ``tools``, ``toolConfig`` and the cached turns, with
        ``cachedContent`` set (``name`` is qualified for the endpoint). Needs a
        :attr:`context_cache` plan; the returned request has none.
        """
        plan = self.context_cache
        if plan is None:
            raise ValueError("with_cached_content needs a request with a context_cache plan")
        body = {k: v for k, v in self.json.items() if k not in (*_CACHED_FIELDS, "contents")}
        body = {
            "contents": copy.deepcopy(plan.request_contents),
            **body,
            "cachedContent": self.endpoint.cached_content_name(name),
        }
        return replace(self, json=body, context_cache=None)


# -- the provider ---------------------------------------------------------------------------


class GeminiProvider:
    """Translates OpenAI chat requests to Gemini's ``generateContent`` and the answers back.

    Options (keyword-only): ``schema_mode`` — ``"openapi"`` (default: tool parameters and
    response schemas converted by :func:`convert_schema` into ``parameters`` /
    ``responseSchema``, which every Gemini model and both endpoints accept) or
    ``"json_schema"`` (sent unchanged as ``parametersJsonSchema`` / ``responseJsonSchema``,
    newer models only); ``minimum_tokens`` (model → minimum cache size; default
    :func:`minimum_cache_tokens`); ``estimator`` (text → estimated tokens);
    ``default_location`` for Vertex. Stateless and thread-safe; no I/O.
    """

    name: Final = "gemini"

    def __init__(
        self,
        *,
        schema_mode: SchemaMode = "openapi",
        minimum_tokens: Callable[[str], int] = minimum_cache_tokens,
        estimator: TokenEstimator = estimate_tokens,
        default_location: str = DEFAULT_VERTEX_LOCATION,
    ) -> None:
        if schema_mode not in ("openapi", "json_schema"):
            raise ValueError("schema_mode must be 'openapi' or 'json_schema'")
        self.schema_mode: SchemaMode = schema_mode
        self.minimum_tokens = minimum_tokens
        self.estimator = estimator
        self.default_location = default_location

    # -- request ------------------------------------------------------------------------

    def endpoint(
        self,
        model: str,
        *,
        api_base: str | None = None,
        vertex_project: str | None = None,
        vertex_location: str | None = None,
    ) -> tuple[GeminiEndpoint, str]:
        """The endpoint and bare model name for ``model``: ``vertex_ai/…`` (or any model
        when ``vertex_project`` is given) is Vertex, ``gemini/…`` and bare names Google AI."""
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequestError("model must be a non-empty string")
        bare = _bare_model(model)
        if not bare:
            raise InvalidRequestError(f"model {model!r} names no model")
        if model.startswith("vertex_ai/") or (vertex_project and not model.startswith("gemini/")):
            if not vertex_project:
                raise InvalidRequestError(
                    f"{model}: Vertex AI needs vertex_project (and vertex_location, "
                    f"default {self.default_location})"
                )
            location = vertex_location or self.default_location
            return GeminiEndpoint.vertex(vertex_project, location, api_base=api_base), bare
        return GeminiEndpoint.google_ai(api_base), bare

    def build_request(
        self,
        body: Mapping[str, Any],
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        access_token: str | None = None,
        vertex_project: str | None = None,
        vertex_location: str | None = None,
        injection_points: Sequence[Mapping[str, Any]] = (),
        extra_headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> GeminiRequest:
        """The HTTP request for an OpenAI-format chat ``body``.

        ``body["model"]`` may carry the ``gemini/`` or ``vertex_ai/`` prefix (see
        :meth:`endpoint`). ``api_key`` goes in ``x-goog-api-key`` and ``access_token`` in
        ``Authorization: Bearer`` (resolve ``GEMINI_API_KEY`` or a service account's token
        before calling; either is omitted when ``None``). ``stream`` (or ``body["stream"]``)
        picks ``streamGenerateContent?alt=sse``. ``injection_points`` (from configuration)
        apply after the body's own. ``extra_headers`` are added last. Raises
        :class:`~deja.errors.InvalidRequestError` for a request Gemini cannot express.
        """
        if not isinstance(body, Mapping):
            raise InvalidRequestError("the request body must be an object")
        model = body.get("model")
        if not isinstance(model, str):
            raise InvalidRequestError("model must be a non-empty string")
        endpoint, bare = self.endpoint(
            model,
            api_base=api_base,
            vertex_project=vertex_project,
            vertex_location=vertex_location,
        )
        payload, prefix, warnings = self.translate_request(
            body, injection_points=injection_points, endpoint=endpoint
        )
        streaming = stream or body.get("stream") is True
        headers = {"content-type": "application/json"}
        if api_key:
            headers["x-goog-api-key"] = api_key
        if access_token:
            headers["authorization"] = f"Bearer {access_token}"
        headers.update(extra_headers or {})
        plan = None
        if prefix is not None:
            plan = self._cache_plan(endpoint, bare, payload, prefix)
            if plan is None:
                warnings.append("context caching asked for, but the prefix is empty: no cache")
            elif plan.below_minimum:
                warnings.append(
                    f"no context cache: the prefix (~{plan.prefix_tokens} tokens, estimated) is "
                    f"below {bare}'s minimum of {plan.minimum_tokens} cached tokens"
                )
        count = payload.get("generationConfig", {}).get("candidateCount", 1)
        return GeminiRequest(
            url=endpoint.model_url(bare, stream=streaming),
            headers=headers,
            json=payload,
            warnings=tuple(warnings),
            context_cache=plan,
            endpoint=endpoint,
            model=bare,
            stream=streaming,
            candidate_count=count if isinstance(count, int) and count > 0 else 1,
        )

    def translate_request(
        self,
        body: Mapping[str, Any],
        *,
        injection_points: Sequence[Mapping[str, Any]] = (),
        endpoint: GeminiEndpoint | None = None,
    ) -> tuple[dict[str, Any], CachePrefix | None, list[str]]:
        """The ``generateContent`` body for an OpenAI chat ``body``, where its context-cache
        prefix ends (``None``: no caching asked for, or an explicit ``context_cache_id``),
        and warnings (see :meth:`build_request`). ``endpoint`` qualifies an explicit
        cached-content id (default: Google AI)."""
        if not isinstance(body, Mapping):
            raise InvalidRequestError("the request body must be an object")
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequestError("model must be a non-empty string")
        bare = _bare_model(model)
        messages = body.get("messages")
        if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
            raise InvalidRequestError("messages must be a list of message objects")
        if body.get("functions") is not None or body.get("function_call") is not None:
            raise InvalidRequestError("functions/function_call are not supported: use tools")
        warnings: list[str] = []

        explicit = _explicit_cache(body)
        points = _points(body.get("cache_control_injection_points"))
        points += list(injection_points)
        automatic = body.get("cache_control")
        if automatic is not None:
            # Anthropic's automatic caching marks the last block: here, the last message.
            point: dict[str, Any] = {"location": "message", "index": -1}
            if isinstance(automatic, Mapping):
                point["control"] = dict(automatic)
            points.append(point)
        plan: Plan | None = None
        if explicit is not None:
            conflicts = [
                name
                for name, present in (
                    ("system messages", any(_role(m) in _SYSTEM_ROLES for m in messages)),
                    ("tools", bool(body.get("tools"))),
                    ("tool_choice", body.get("tool_choice") is not None),
                )
                if present
            ]
            if conflicts:
                raise InvalidRequestError(
                    f"context_cache_id {explicit!r} cannot be combined with "
                    f"{', '.join(conflicts)}: Gemini takes the system instruction, tools and "
                    "tool config from the cached content (it answers 400 otherwise)"
                )
            if points or _has_markers(body):
                warnings.append(
                    "cache_control markers ignored: the request names its cached content"
                )
        elif points or _has_markers(body):
            plan = plan_breakpoints(
                body,
                injection_points=points,
                limit=len(messages) + len(body.get("tools") or ()) + 1,
                estimator=self.estimator,
                # one breakpoint becomes the cache, with its own lifetime: Anthropic's
                # "longer lifetimes first" would shorten a 1h one after a 5m marker
                longer_first=False,
            )
            warnings += [str(w) for w in plan.warnings if w.kind == "no_target"]

        boundary: tuple[int, int | None] | None = None
        ttl_seconds = 300
        if plan is not None and plan.breakpoints:
            # One resource holds one prefix. Of several breakpoints, the one that ends in
            # the system prompt or the tools: it stays the same turn after turn, where one
            # on the latest message (an agent's "index: -1") moves every turn, and a cache
            # made per turn is used once, its creation and storage billed for nothing (7
            # caches, 7 uses, 1.3-4x the cost of no cache over a 7-turn run). Else the last.
            stable = [
                b
                for b in plan.breakpoints
                if b.target.kind == "tool" or _role(messages[b.target.index]) in _SYSTEM_ROLES
            ]  # (they cache the system instruction and tools, whole)
            chosen = stable[-1] if stable else plan.breakpoints[-1]
            if chosen.ttl == "1h":  # the lifetime its marker asked for
                ttl_seconds = 3600
            target = chosen.target
            boundary = (-1, None) if stable else (target.index, target.part)

        kind: EndpointKind = (
            endpoint.kind
            if endpoint is not None
            else "vertex"
            if model.startswith("vertex_ai/")
            else "google_ai"
        )
        system_parts, units = _messages(messages, boundary, _Target(kind, bare), warnings)
        contents = _merge(units)
        if not contents:
            raise InvalidRequestError("Gemini needs at least one user or assistant message")
        payload: dict[str, Any] = {"contents": contents}
        if system_parts:
            payload["systemInstruction"] = {"parts": system_parts}
        tools = body.get("tools")
        if tools:
            payload["tools"] = self._tools(tools, warnings)
        tool_config = _tool_config(body.get("tool_choice"))
        if tool_config is not None:
            payload["toolConfig"] = tool_config
        if body.get("parallel_tool_calls") is False:
            warnings.append("parallel_tool_calls: false has no Gemini equivalent: not sent")
        generation = self._generation_config(body, bare, warnings)
        if generation:
            payload["generationConfig"] = generation
        safety = body.get("safetySettings", body.get("safety_settings"))
        if safety is not None:
            payload["safetySettings"] = safety
        if explicit is not None:
            payload["cachedContent"] = (endpoint or GeminiEndpoint.google_ai()).cached_content_name(
                explicit
            )
        for key, value in body.items():
            if key in _HANDLED or key in payload:
                continue
            if key in _OPENAI_ONLY:
                if value not in (None, False):  # an unset or disabled option changes nothing
                    warnings.append(f"{key} has no Gemini equivalent: not sent")
                continue
            payload[key] = value  # Gemini's own extras (labels on Vertex…)

        prefix: CachePrefix | None = None
        if plan is not None:
            if not plan.breakpoints:
                return payload, None, warnings
            cached_units = [u for u in units if u.cached]
            rest_units = [u for u in units if not u.cached]
            cached, rest = _merge(cached_units), _merge(rest_units)
            if cached and not rest:
                # A request must send at least one turn: the last stays out of the cache.
                rest = [cached.pop()]
                warnings.append(
                    "the cache breakpoint covers every message; the last turn is sent with the "
                    "request (Gemini needs at least one) and the turns before it are cached"
                )
            prefix = CachePrefix(cached, rest, ttl_seconds, plan)
        return payload, prefix, warnings

    def _cache_plan(
        self,
        endpoint: GeminiEndpoint,
        model: str,
        payload: Mapping[str, Any],
        prefix: CachePrefix,
    ) -> ContextCachePlan | None:
        system = payload.get("systemInstruction")
        tools = payload.get("tools")
        tool_config = payload.get("toolConfig")
        if not prefix.contents and system is None and tools is None:
            return None
        resource = endpoint.model_resource(model)
        digest = _digest(
            {
                "v": 1,
                "model": resource,
                "endpoint": endpoint.identity(),
                "systemInstruction": system,
                "tools": tools,
                "toolConfig": tool_config,
                "contents": prefix.contents,
            }
        )
        tokens = _estimate(system, tools, tool_config, prefix.contents, self.estimator)
        return ContextCachePlan(
            digest=digest,
            model=resource,
            endpoint=endpoint,
            create_url=endpoint.cached_contents_url(),
            system_instruction=copy.deepcopy(system),
            tools=copy.deepcopy(tools),
            tool_config=copy.deepcopy(tool_config),
            contents=prefix.contents,
            request_contents=prefix.request_contents,
            prefix_tokens=tokens,
            minimum_tokens=_endpoint_minimum(self.minimum_tokens(model), endpoint),
            ttl_seconds=prefix.ttl_seconds,
        )

    def _tools(self, tools: object, warnings: list[str]) -> list[dict[str, Any]]:
        if not isinstance(tools, Sequence) or isinstance(tools, (str, bytes)):
            raise InvalidRequestError("tools must be a list")
        declarations: list[dict[str, Any]] = []
        native: list[dict[str, Any]] = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, Mapping):
                raise InvalidRequestError(f"tools[{i}] is not an object")
            kind = tool.get("type")
            if kind is None:
                # Gemini's own tools ({"googleSearch": {}}, {"codeExecution": {}}…).
                native.append({k: v for k, v in tool.items() if k != "cache_control"})
                continue
            if kind != "function":
                raise InvalidRequestError(
                    f"tools[{i}] of type {kind!r} is not supported by the Gemini adapter"
                )
            function = tool.get("function")
            if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
                raise InvalidRequestError(f"tools[{i}].function needs a name")
            name = function["name"]
            declaration: dict[str, Any] = {"name": name}
            if function.get("description"):
                declaration["description"] = function["description"]
            parameters = function.get("parameters")
            if parameters is not None and not isinstance(parameters, Mapping):
                raise InvalidRequestError(f"tools[{i}].function.parameters must be an object")
            if parameters and self.schema_mode == "json_schema":
                declaration["parametersJsonSchema"] = copy.deepcopy(dict(parameters))
            elif parameters:
                dropped: list[str] = []
                converted = convert_schema(parameters, dropped=dropped)
                # Gemini refuses an OBJECT schema with no properties ("should be non-empty
                # for OBJECT type"): a function without parameters sends none.
                if converted.get("properties") or converted.get("type") not in (None, "object"):
                    declaration["parameters"] = converted
                if dropped:
                    warnings.append(
                        f"tools[{i}] ({name}): JSON-schema keywords Gemini does not accept were "
                        f"dropped or rewritten: {', '.join(dropped)}"
                    )
            if function.get("strict"):
                warnings.append(f"tools[{i}].function.strict has no Gemini equivalent: not sent")
            declarations.append(declaration)
        out = [{"functionDeclarations": declarations}] if declarations else []
        return out + native

    def _generation_config(
        self, body: Mapping[str, Any], model: str, warnings: list[str]
    ) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for source, target in (
            ("temperature", "temperature"),
            ("top_p", "topP"),
            ("top_k", "topK"),
            ("seed", "seed"),
            ("presence_penalty", "presencePenalty"),
            ("frequency_penalty", "frequencyPenalty"),
        ):
            if body.get(source) is not None:
                config[target] = body[source]
        limit = body.get("max_completion_tokens")
        if limit is None:
            limit = body.get("max_tokens")
        if limit is not None:
            config["maxOutputTokens"] = limit
        stop = body.get("stop")
        if stop is not None:
            config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
        n = body.get("n")
        if n is not None and n != 1:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise InvalidRequestError("n must be a positive integer")
            config["candidateCount"] = n
        top = body.get("top_logprobs")
        if body.get("logprobs") is True:
            config["responseLogprobs"] = True
            if top:  # 0, as OpenAI's, asks for the chosen tokens only
                config["logprobs"] = top
        elif top:
            warnings.append("top_logprobs needs logprobs: true: not sent")
        self._response_format(body.get("response_format"), config, warnings)
        thinking = _thinking_config(body, model, warnings)
        if thinking is not None:
            config["thinkingConfig"] = thinking
        native = body.get("generationConfig", body.get("generation_config"))
        if native is not None:
            if not isinstance(native, Mapping):
                raise InvalidRequestError("generationConfig must be an object")
            config.update(native)  # the caller's native fields win
        return config

    def _response_format(
        self, response_format: object, config: dict[str, Any], warnings: list[str]
    ) -> None:
        if response_format is None:
            return
        if not isinstance(response_format, Mapping):
            raise InvalidRequestError("response_format must be an object")
        kind = response_format.get("type")
        if kind == "text":
            return
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
            return
        if kind != "json_schema":
            raise InvalidRequestError(f"response_format type {kind!r} is not supported")
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        config["responseMimeType"] = "application/json"
        if not isinstance(schema, Mapping):
            return
        if self.schema_mode == "json_schema":
            config["responseJsonSchema"] = copy.deepcopy(dict(schema))
            return
        dropped: list[str] = []
        config["responseSchema"] = convert_schema(schema, dropped=dropped)
        if dropped:
            warnings.append(
                "response_format: JSON-schema keywords Gemini does not accept were dropped or "
                f"rewritten: {', '.join(dropped)}"
            )

    # -- response -----------------------------------------------------------------------

    def parse_response(
        self,
        data: Mapping[str, Any],
        *,
        created: int | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """An OpenAI ``chat.completion`` dict for a ``generateContent`` response.

        ``created`` (Gemini sends none) defaults to now; ``model`` is used when the response
        has no ``modelVersion``. Raises the matching :class:`~deja.errors.ProviderError` for
        an error body, and a plain one for a body that is neither candidates nor a blocked
        prompt.
        """
        if isinstance(data, Mapping) and isinstance(data.get("error"), Mapping):
            raise _error(data, None)
        candidates = data.get("candidates") if isinstance(data, Mapping) else None
        feedback = data.get("promptFeedback") if isinstance(data, Mapping) else None
        blocked = isinstance(feedback, Mapping) and feedback.get("blockReason") is not None
        response_id = data.get("responseId")
        choices: list[dict[str, Any]] = []
        if isinstance(candidates, list) and candidates:
            found = [c for c in candidates if isinstance(c, Mapping)]
            indices = [_candidate_index(c) for c in found]
            if len(set(indices)) < len(indices):  # a server that numbers none: by position
                indices = list(range(len(found)))
            choices = [_choice(c, i, response_id) for c, i in zip(found, indices, strict=True)]
            choices.sort(key=lambda c: int(c["index"]))
        elif blocked:
            message = {"role": "assistant", "content": ""}
            choices = [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "content_filter",
                }
            ]
        if not choices:
            raise ProviderError(
                "Gemini answered with a body that has no candidates",
                body=data,
                provider="gemini",
            )
        response: dict[str, Any] = {
            "id": response_id if response_id else f"chatcmpl-{uuid.uuid4().hex[:29]}",
            "object": "chat.completion",
            "created": int(time.time()) if created is None else created,
            "model": data.get("modelVersion") or model,
            "choices": choices,
        }
        usage = data.get("usageMetadata")
        if isinstance(usage, Mapping):
            response["usage"] = normalize_gemini(usage)
        if blocked and not candidates and isinstance(feedback, Mapping):
            response["prompt_feedback"] = dict(feedback)
        return response

    def stream_translator(
        self, *, created: int | None = None, model: str | None = None, candidates: int = 1
    ) -> StreamTranslator:
        """A fresh :class:`StreamTranslator` for one streamed response (``candidates``: the
        request's ``candidateCount``, :attr:`GeminiRequest.candidate_count`)."""
        return StreamTranslator(created=created, model=model, candidates=candidates)


# -- response helpers ---------------------------------------------------------------------


def _tool_call_id(
    response_id: object, candidate: int, position: int, call: Mapping[str, Any]
) -> str:
    given = call.get("id")
    if isinstance(given, str) and given:
        return given
    seed = [response_id, candidate, position, call.get("name"), call.get("args")]
    digest = hashlib.sha256(orjson.dumps(_canonical(seed), option=orjson.OPT_SORT_KEYS))
    return "call_" + digest.hexdigest()[:24]


def _signature_extra(signature: str) -> dict[str, Any]:
    return {"google": {"thought_signature": signature}}


def _tool_call(
    response_id: object, candidate: int, position: int, part: Mapping[str, Any]
) -> dict[str, Any]:
    call = part.get("functionCall")
    call = call if isinstance(call, Mapping) else {}
    out: dict[str, Any] = {
        "id": _tool_call_id(response_id, candidate, position, call),
        "type": "function",
        "function": {"name": call.get("name"), "arguments": arguments_text(call.get("args"))},
    }
    google: dict[str, Any] = {}
    signature = part.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        google["thought_signature"] = signature
    given = call.get("id")
    if isinstance(given, str) and given:
        # Gemini's own id (also the tool call's id): marked so that it, and only it, goes
        # back as functionCall.id and functionResponse.id (see _gemini_call_id).
        google[_CALL_ID_KEY] = given
    if google:
        out["extra_content"] = {"google": google}
    return out


def _candidate_index(candidate: Mapping[str, Any]) -> int:
    # Gemini's JSON is proto3: a zero field is left out, so a missing index means 0.
    index = candidate.get("index", 0)
    return index if isinstance(index, int) and not isinstance(index, bool) else 0


def _choice(candidate: Mapping[str, Any], index: int, response_id: object) -> dict[str, Any]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    signature: str | None = None
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, Mapping):
            continue
        if "functionCall" in part:
            calls.append(_tool_call(response_id, index, len(calls), part))
            continue
        found = part.get("thoughtSignature")
        if signature is None and isinstance(found, str) and found:
            signature = found
        piece = part.get("text")
        if not isinstance(piece, str):
            continue  # executable code, inline data: not expressible in OpenAI's message
        if part.get("thought") is True:
            thoughts.append(piece)
        else:
            text.append(piece)
    message = assistant_message(text, thoughts, [], calls)
    if signature is not None:
        message["extra_content"] = _signature_extra(signature)
    fields = provider_fields(candidate.get("finishReason"))
    if fields is not None:
        message["provider_specific_fields"] = fields
    return {
        "index": index,
        "message": message,
        "logprobs": logprobs(candidate.get("logprobsResult")),
        "finish_reason": finish_reason(candidate.get("finishReason"), tool_calls=bool(calls)),
    }


def logprobs(result: object) -> dict[str, Any] | None:
    """OpenAI's ``choices[].logprobs`` for a candidate's ``logprobsResult`` (``None``
    without one): each of ``chosenCandidates`` with the ``topCandidates`` of its step."""
    if not isinstance(result, Mapping):
        return None
    chosen = result.get("chosenCandidates")
    tops = result.get("topCandidates")
    tops = tops if isinstance(tops, list) else []
    content = []
    for step, token in enumerate(chosen if isinstance(chosen, list) else ()):
        if not isinstance(token, Mapping):
            continue
        top = tops[step] if step < len(tops) else None
        others = top.get("candidates") if isinstance(top, Mapping) else None
        entry = _token_logprob(token)
        entry["top_logprobs"] = [
            _token_logprob(other) for other in others or () if isinstance(other, Mapping)
        ]
        content.append(entry)
    return {"content": content, "refusal": None}


def _token_logprob(token: Mapping[str, Any]) -> dict[str, Any]:
    text = token.get("token")
    text = text if isinstance(text, str) else ""
    # proto3 leaves a zero out: a missing logProbability is a certain token
    logprob = token.get("logProbability", 0.0)
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}


_STATUS_CODES: Final = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def _error(body: Mapping[str, Any], provider: str | None) -> ProviderError:
    error = body.get("error")
    error = error if isinstance(error, Mapping) else {}
    code = error.get("code")
    status = code if isinstance(code, int) and not isinstance(code, bool) else None
    if status is None:
        status = _STATUS_CODES.get(str(error.get("status")), 500)
    cls = provider_error_for_status(status)
    return cls(
        f"Gemini failed: {error.get('status')}: {error.get('message')}",
        status_code=status,
        body=dict(body),
        provider=provider or "gemini",
    )


class _Candidate:
    """What one candidate of a stream has said so far."""

    __slots__ = ("finished", "index", "tools")

    def __init__(self, index: int) -> None:
        self.index = index
        self.tools = 0
        self.finished = False


class StreamTranslator:
    """Gemini SSE events → OpenAI ``chat.completion.chunk`` dicts, one event at a time.

    :meth:`feed` takes each decoded ``data`` object of ``streamGenerateContent?alt=sse``
    (a partial ``GenerateContentResponse``) and returns the chunks it makes: per candidate a
    first chunk with the role, thought text as ``reasoning_content`` deltas, text as
    ``content`` deltas, each ``functionCall`` as one whole tool-call delta (index, id, name,
    arguments — Gemini sends calls whole), a thought signature as an ``extra_content`` delta,
    and the finish chunk when ``finishReason`` comes. Call :meth:`finish` at the end of the
    HTTP stream: it returns the last chunk, with ``choices: []`` and the normalized usage
    (Gemini repeats cumulative ``usageMetadata``, and its last event may come after the
    ``finishReason``: the latest wins, so it is only known at the end). A blocked prompt (no
    candidates, ``promptFeedback.blockReason``) becomes one ``content_filter`` choice with
    ``prompt_feedback``. An ``error`` event raises the matching
    :class:`~deja.errors.ProviderError`. Every chunk carries ``"usage": null`` as OpenAI's do
    when usage was asked for.
    """

    def __init__(
        self, *, created: int | None = None, model: str | None = None, candidates: int = 1
    ) -> None:
        self.created = int(time.time()) if created is None else created
        self.expected = max(1, candidates)
        self._id: Any = None
        self._model: Any = model
        self._usage: dict[str, Any] = {}
        self._candidates: dict[int, _Candidate] = {}
        self._blocked = False
        self._usage_sent = False

    @property
    def finished(self) -> bool:
        """True once every expected candidate finished (or the prompt was blocked)."""
        if self._blocked:
            return True
        done = [c for c in self._candidates.values() if c.finished]
        return len(done) >= self.expected and len(done) == len(self._candidates)

    @property
    def usage(self) -> dict[str, Any] | None:
        """The usage so far, normalized (``None`` before any ``usageMetadata``)."""
        return normalize_gemini(self._usage) if self._usage else None

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Translate one event; returns the chunks to pass on (often one)."""
        if isinstance(event.get("error"), Mapping):
            raise _error(event, None)
        if self._id is None and event.get("responseId"):
            self._id = event["responseId"]
        if event.get("modelVersion"):
            self._model = event["modelVersion"]
        usage = event.get("usageMetadata")
        if isinstance(usage, Mapping):
            self._usage.update(usage)
        chunks: list[dict[str, Any]] = []
        candidates = event.get("candidates")
        feedback = event.get("promptFeedback")
        if (
            not candidates
            and isinstance(feedback, Mapping)
            and feedback.get("blockReason") is not None
            and not self._blocked
        ):
            self._blocked = True
            self._start(0, chunks)
            chunk = self._chunk(0, {}, "content_filter")
            chunk["prompt_feedback"] = dict(feedback)
            chunks.append(chunk)
        for candidate in candidates if isinstance(candidates, list) else ():
            if isinstance(candidate, Mapping):
                self._candidate(candidate, chunks)
        return chunks

    def finish(self) -> list[dict[str, Any]]:
        """At the end of the stream: the usage chunk, if it was not sent yet."""
        usage = self.usage
        if self._usage_sent or usage is None:
            return []
        self._usage_sent = True
        return [self._envelope() | {"choices": [], "usage": usage}]

    def _candidate(self, candidate: Mapping[str, Any], chunks: list[dict[str, Any]]) -> None:
        index = _candidate_index(candidate)
        state = self._start(index, chunks)
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, Mapping) else None
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, Mapping):
                continue
            if "functionCall" in part:
                call = _tool_call(self._id, index, state.tools, part)
                chunks.append(self._chunk(index, {"tool_calls": [{"index": state.tools, **call}]}))
                state.tools += 1
                continue
            piece = part.get("text")
            if isinstance(piece, str) and piece:
                key = "reasoning_content" if part.get("thought") is True else "content"
                chunks.append(self._chunk(index, {key: piece}))
            signature = part.get("thoughtSignature")
            if isinstance(signature, str) and signature:
                chunks.append(self._chunk(index, {"extra_content": _signature_extra(signature)}))
        scores = logprobs(candidate.get("logprobsResult"))
        if scores is not None and scores["content"]:
            chunk = self._chunk(index, {})
            chunk["choices"][0]["logprobs"] = scores
            chunks.append(chunk)
        reason = candidate.get("finishReason")
        if reason is not None and not state.finished:
            state.finished = True
            fields = provider_fields(reason)
            delta = {} if fields is None else {"provider_specific_fields": fields}
            finish = finish_reason(reason, tool_calls=state.tools > 0)
            chunks.append(self._chunk(index, delta, finish))

    def _start(self, index: int, chunks: list[dict[str, Any]]) -> _Candidate:
        state = self._candidates.get(index)
        if state is None:
            state = self._candidates[index] = _Candidate(index)
            chunks.append(self._chunk(index, {"role": "assistant", "content": ""}))
        return state

    def _envelope(self) -> dict[str, Any]:
        if self._id is None:
            self._id = f"chatcmpl-{uuid.uuid4().hex[:29]}"
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self._model,
        }

    def _chunk(
        self, index: int, delta: dict[str, Any], finish: str | None = None
    ) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._envelope() | {"choices": [choice], "usage": None}


# -- request helpers ----------------------------------------------------------------------


@dataclass(slots=True)
class _Unit:
    """The parts one message (or one side of a split message) contributes to a turn."""

    role: str
    parts: list[dict[str, Any]]
    cached: bool = False


def _merge(units: Sequence[_Unit]) -> list[dict[str, Any]]:
    """Turns from units, consecutive units of one role merged (Gemini wants alternation)."""
    turns: list[dict[str, Any]] = []
    for unit in units:
        if not unit.parts:
            continue
        if turns and turns[-1]["role"] == unit.role:
            turns[-1]["parts"].extend(copy.deepcopy(unit.parts))
        else:
            turns.append({"role": unit.role, "parts": copy.deepcopy(unit.parts)})
    return turns


def _role(message: object) -> object:
    return message.get("role") if isinstance(message, Mapping) else None


def _explicit_cache(body: Mapping[str, Any]) -> str | None:
    for key in ("context_cache_id", "cached_content", "cachedContent"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequestError(f"{key} must be a cached content name or id")
        return value.strip()
    return None


def _points(value: object) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise InvalidRequestError("cache_control_injection_points must be a list")
    return list(value)


def _has_markers(body: Mapping[str, Any]) -> bool:
    for tool in body.get("tools") or ():
        if isinstance(tool, Mapping) and tool.get("cache_control") is not None:
            return True
    for message in body.get("messages") or ():
        if not isinstance(message, Mapping):
            continue
        if message.get("cache_control") is not None:
            return True
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(p, Mapping) and p.get("cache_control") is not None for p in content
        ):
            return True
    return False


def _guess_mime(url: str, where: str, warnings: list[str]) -> str:
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    if guessed:
        return guessed
    warnings.append(f"{where}: the media type of {url!r} is unknown; sent as image/jpeg")
    return "image/jpeg"


def _media(url: str, mime: object, where: str, warnings: list[str]) -> dict[str, Any]:
    match = _DATA_URL.fullmatch(url)
    if match is not None:
        return {"inlineData": {"mimeType": match["media"], "data": match["data"]}}
    if url.startswith(("http://", "https://", "gs://")):
        media = mime if isinstance(mime, str) and "/" in mime else _guess_mime(url, where, warnings)
        return {"fileData": {"mimeType": media, "fileUri": url}}
    raise InvalidRequestError(f"{where}: a media URL must be a data:, http(s):// or gs:// URL")


def _part(part: object, where: str, warnings: list[str]) -> dict[str, Any] | None:
    """One OpenAI content part as a Gemini part (``None``: an empty text, not sent)."""
    if isinstance(part, str):
        return {"text": part} if part else None
    if not isinstance(part, Mapping):
        raise InvalidRequestError(f"{where} is not a content part object")
    kind = part.get("type")
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):
            raise InvalidRequestError(f"{where}.{kind} must be a string")
        return {"text": text} if text else None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        if not isinstance(url, str):
            raise InvalidRequestError(f"{where}: image_url needs a url")
        mime = image.get("format") if isinstance(image, Mapping) else None
        return _media(url, mime, where, warnings)
    if kind == "file":
        file = part.get("file")
        if not isinstance(file, Mapping):
            raise InvalidRequestError(f"{where}: file needs file_data or file_id")
        if isinstance(file.get("file_data"), str):
            return _media(file["file_data"], file.get("format"), where, warnings)
        if isinstance(file.get("file_id"), str):
            return _media(file["file_id"], file.get("format"), where, warnings)
        raise InvalidRequestError(f"{where}: file needs file_data or file_id")
    if kind == "input_audio":
        audio = part.get("input_audio")
        if not isinstance(audio, Mapping) or not isinstance(audio.get("data"), str):
            raise InvalidRequestError(f"{where}: input_audio needs data")
        audio_format = audio.get("format") or "wav"
        return {"inlineData": {"mimeType": f"audio/{audio_format}", "data": audio["data"]}}
    if kind is None and _NATIVE_PART_KEYS & set(part):
        return {k: copy.deepcopy(v) for k, v in part.items() if k != "cache_control"}
    raise InvalidRequestError(f"{where}: content part type {kind!r} is not supported")


def _content_parts(
    content: object, where: str, warnings: list[str]
) -> list[tuple[int, dict[str, Any]]]:
    """(index of the OpenAI part, Gemini part) for a message content."""
    if content is None:
        return []
    if isinstance(content, str):
        return [(0, {"text": content})] if content else []
    if isinstance(content, list):
        out = []
        for j, raw in enumerate(content):
            converted = _part(raw, f"{where}.content[{j}]", warnings)
            if converted is not None:
                out.append((j, converted))
        return out
    raise InvalidRequestError(f"{where}.content must be a string or a list of parts")


def _google_extra(value: object, key: str) -> str | None:
    """``value.extra_content.google[key]`` when it is a non-empty string."""
    extra = value.get("extra_content") if isinstance(value, Mapping) else None
    google = extra.get("google") if isinstance(extra, Mapping) else None
    found = google.get(key) if isinstance(google, Mapping) else None
    return found if isinstance(found, str) and found else None


def _signature_of(value: object) -> str | None:
    return _google_extra(value, "thought_signature")


def _gemini_call_id(call: object) -> str | None:
    """The id Gemini gave this tool call's functionCall, when deja marked one (a tool call
    deja returned for a Gemini call that had an id); ``None`` for any other tool call."""
    return _google_extra(call, _CALL_ID_KEY)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where the request goes, for what depends on it: the endpoint kind and bare model."""

    kind: EndpointKind
    model: str


@dataclass(frozen=True, slots=True)
class _Call:
    """An earlier assistant tool call, for the tool message that answers it."""

    name: str
    gemini_id: str | None


def _function_call(call: object, where: str) -> dict[str, Any]:
    function, parsed = function_call(call, where)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"{where}.function needs a name")
    body: dict[str, Any] = {"name": name, "args": parsed}
    gemini_id = _gemini_call_id(call)
    if gemini_id is not None:
        body["id"] = gemini_id
    part: dict[str, Any] = {"functionCall": body}
    signature = _signature_of(call)
    if signature is not None:
        part["thoughtSignature"] = signature
    return part


def _response_media(
    part: dict[str, Any], where: str, target: _Target, warnings: list[str]
) -> dict[str, Any]:
    """A media part of a tool result as a FunctionResponsePart (``inlineData`` or
    ``fileData``, Google's FunctionResponseBlob / FunctionResponseFileData)."""
    key = "inlineData" if "inlineData" in part else "fileData"
    media = part[key]
    if not isinstance(media, Mapping):
        raise InvalidRequestError(f"{where}.{key} must be an object")
    if key == "fileData" and target.kind == "google_ai":
        # FunctionResponsePart.fileData is Vertex AI's only: the Gemini API's v1beta
        # FunctionResponsePart has inline data alone (its SDKs: "not supported in Gemini API").
        raise InvalidRequestError(
            f"{where}: a tool result's media must be inline data (a data: URL) for Google AI "
            f"models; {media.get('fileUri')!r} is a file URI, which Gemini's function "
            "responses take on Vertex AI only"
        )
    extra = sorted(set(part) - {key, "cache_control"})
    if extra:
        warnings.append(
            f"{where}: {', '.join(extra)} not sent: a function response part "
            "holds inlineData or fileData only"
        )
    mime = media.get("mimeType")
    if mime not in _FUNCTION_RESPONSE_MEDIA:
        warnings.append(
            f"{where}: {mime} is not a media type Gemini documents for function responses "
            f"({', '.join(sorted(_FUNCTION_RESPONSE_MEDIA))}); sent anyway"
        )
    return {key: dict(media)}


def _function_response(
    message: Mapping[str, Any],
    calls: Mapping[str, _Call],
    where: str,
    target: _Target,
    warnings: list[str],
) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    call = calls.get(call_id) if isinstance(call_id, str) else None
    name = call.name if call is not None else None
    if name is None and isinstance(message.get("name"), str):
        name = message["name"]
    if name is None:
        raise InvalidRequestError(
            f"{where}: tool_call_id {call_id!r} matches no earlier assistant tool call, and "
            "Gemini needs the function's name"
        )
    content = message.get("content")
    media: list[dict[str, Any]] = []
    if isinstance(content, list):
        texts: list[str] = []
        for j, raw in enumerate(content):
            here = f"{where}.content[{j}]"
            part = _part(raw, here, warnings)
            if part is None:
                continue
            if "inlineData" in part or "fileData" in part:
                media.append(_response_media(part, here, target, warnings))
            elif isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise InvalidRequestError(
                    f"{here}: a tool result holds text and media only, not "
                    f"{', '.join(sorted(set(part) & _NATIVE_PART_KEYS))}"
                )
        content = "".join(texts)
    if media and _NO_FUNCTION_RESPONSE_MEDIA.match(target.model.lower()):
        kinds = ", ".join(sorted({str(next(iter(m.values())).get("mimeType")) for m in media}))
        raise InvalidRequestError(
            f"{where}: the tool result holds media ({kinds}), and {target.model} cannot take "
            "media in a function response (Gemini documents multimodal function responses "
            "for Gemini 3 models); use a Gemini 3 model, or send the media in a user message"
        )
    value: Any = content
    if isinstance(content, str):
        try:
            value = json.loads(content)
        except ValueError:
            value = content
    response = dict(value) if isinstance(value, Mapping) else {"content": value}
    body: dict[str, Any] = {"name": name, "response": response}
    if call is not None and call.gemini_id is not None:
        body["id"] = call.gemini_id  # the matching functionCall carries it too
    if media:
        body["parts"] = media  # FunctionResponse.parts: Gemini 3's multimodal responses
    return {"functionResponse": body}


def _messages(
    messages: Sequence[Any],
    boundary: tuple[int, int | None] | None,
    target: _Target,
    warnings: list[str],
) -> tuple[list[dict[str, Any]], list[_Unit]]:
    """(system parts, turn units) of ``messages``; units up to ``boundary`` (message index,
    content part or ``None`` for the whole message) are marked ``cached``."""
    system: list[dict[str, Any]] = []
    units: list[_Unit] = []
    calls: dict[str, _Call] = {}
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidRequestError(f"{where} is not an object")
        role = message.get("role")
        content = message.get("content")
        if role in _SYSTEM_ROLES:
            system += [part for _, part in _content_parts(content, where, warnings)]
            continue
        if role == "function":
            raise InvalidRequestError(f"{where}: role 'function' is not supported; use tools")
        if role == "user":
            turn, indexed = "user", _content_parts(content, where, warnings)
        elif role == "assistant":
            turn, indexed = "model", _content_parts(content, where, warnings)
            signature = _signature_of(message)
            texts = [part for _, part in indexed if "text" in part]
            if signature is not None and texts:
                texts[-1]["thoughtSignature"] = signature
            for j, call in enumerate(message.get("tool_calls") or ()):
                part = _function_call(call, f"{where}.tool_calls[{j}]")
                if isinstance(call, Mapping) and isinstance(call.get("id"), str):
                    sent = part["functionCall"]
                    calls[call["id"]] = _Call(sent["name"], sent.get("id"))
                indexed.append((1 << 30, part))  # after every content part
        elif role == "tool":
            response = _function_response(message, calls, where, target, warnings)
            turn, indexed = "user", [(0, response)]
        else:
            raise InvalidRequestError(f"{where}: unknown role {role!r}")
        if boundary is None or i > boundary[0]:
            units.append(_Unit(turn, [part for _, part in indexed]))
        elif i < boundary[0] or boundary[1] is None:
            units.append(_Unit(turn, [part for _, part in indexed], cached=True))
        else:  # the breakpoint is on a content part of this message: split it there
            cut = boundary[1]
            units.append(_Unit(turn, [p for j, p in indexed if j <= cut], cached=True))
            units.append(_Unit(turn, [p for j, p in indexed if j > cut]))
    return system, units


def _tool_config(choice: object) -> dict[str, Any] | None:
    if choice is None:
        return None
    modes = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
    if isinstance(choice, str) and choice in modes:
        return {"functionCallingConfig": {"mode": modes[choice]}}
    if isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise InvalidRequestError("tool_choice.function needs a name")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    if isinstance(choice, Mapping) and "functionCallingConfig" in choice:
        return dict(choice)  # already Gemini's shape
    raise InvalidRequestError(f"tool_choice {choice!r} is not supported")


def _thinking_levels(name: str) -> tuple[str, ...]:
    """The ``thinkingLevel`` values a Gemini 3 model (lower-case bare name) takes."""
    if "flash" in name:
        return _FLASH_LEVELS
    if _GEMINI_3_PRO.match(name):
        return ("low", "high")
    return ("low", "medium", "high")  # 3.1 Pro, and the Pro models after it


def _thinking_config(
    body: Mapping[str, Any], model: str, warnings: list[str]
) -> dict[str, Any] | None:
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping):
        if thinking.get("type") == "disabled":
            return {"thinkingBudget": 0}
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int) and not isinstance(budget, bool):
            return {"thinkingBudget": budget, "includeThoughts": True}
        return {"includeThoughts": True}
    effort = body.get("reasoning_effort")
    if effort is None:
        return None
    name = model.lower()
    if name.startswith("gemini-3"):
        levels = _thinking_levels(name)
        if effort == "none":
            if "minimal" in levels:  # Google: the closest to off; Gemini 3 never is
                warnings.append(
                    f"reasoning_effort 'none': {model} cannot turn thinking off; "
                    "sent as thinkingLevel minimal"
                )
                return {"thinkingLevel": "minimal"}
            warnings.append(f"reasoning_effort 'none': {model} cannot turn thinking off; not sent")
            return None
        if effort not in _FLASH_LEVELS:
            raise InvalidRequestError(f"reasoning_effort {effort!r} is not known")
        level = str(effort) if effort in levels else _LEVEL_FALLBACK[str(effort)]
        return {"thinkingLevel": level, "includeThoughts": True}
    if effort == "none":
        if name.startswith("gemini-2.5-pro"):
            warnings.append(f"reasoning_effort 'none': {model} cannot turn thinking off; not sent")
            return None
        return {"thinkingBudget": 0}
    budget = _THINKING_BUDGET.get(str(effort))
    if budget is None:
        raise InvalidRequestError(f"reasoning_effort {effort!r} is not known")
    return {"thinkingBudget": budget, "includeThoughts": True}


def _text_tokens(value: object, estimator: TokenEstimator) -> int:
    """Estimated tokens of a Gemini value: text parts by length, media by
    :data:`~deja.providers.planner.IMAGE_TOKENS`, anything else as its JSON."""
    if isinstance(value, Mapping):
        if "inlineData" in value or "fileData" in value:
            return IMAGE_TOKENS
        if set(value) <= {"text", "thought", "thoughtSignature"} and isinstance(
            value.get("text"), str
        ):
            return estimator(value["text"])
        if "parts" in value and isinstance(value["parts"], list):
            return sum(_text_tokens(p, estimator) for p in value["parts"])
        response = value.get("functionResponse")
        if isinstance(response, Mapping) and isinstance(response.get("parts"), list):
            # media in a function response count as media, not as their base64 text
            rest = {k: v for k, v in response.items() if k != "parts"}
            return _text_tokens({**value, "functionResponse": rest}, estimator) + sum(
                _text_tokens(p, estimator) for p in response["parts"]
            )
        return estimator(json.dumps(value, ensure_ascii=False, sort_keys=True))
    if isinstance(value, list):
        return sum(_text_tokens(v, estimator) for v in value)
    if value is None:
        return 0
    return estimator(json.dumps(value, ensure_ascii=False))


def _estimate(
    system: object,
    tools: object,
    tool_config: object,
    contents: Sequence[Mapping[str, Any]],
    estimator: TokenEstimator,
) -> int:
    return (
        _text_tokens(system, estimator)
        + _text_tokens(tools, estimator)
        + _text_tokens(tool_config, estimator)
        + sum(_text_tokens(turn, estimator) for turn in contents)
    )
