"""The Amazon Bedrock Converse adapter: OpenAI chat format in, OpenAI chat format out.

:class:`BedrockProvider` translates an OpenAI chat request into a SigV4-signed (or, with
an Amazon Bedrock API key, bearer-authenticated)
``POST https://bedrock-runtime.{region}.amazonaws.com/model/{modelId}/converse`` (or
``/converse-stream``) and the answer — JSON, or the binary event stream decoded by
:mod:`deja.providers.eventstream` — back, without I/O. Models are named
``bedrock/<modelId>`` (``bedrock/converse/<modelId>`` too, as in LiteLLM); the model id
(``anthropic.claude-3-5-sonnet-20240620-v1:0``, an inference profile such as
``us.anthropic.claude-sonnet-4-5-20250929-v1:0``, or an ARN) is percent-encoded in the
path, since ids contain ``:`` and ARNs ``/``. The request is signed for service
``bedrock`` with botocore (an optional dependency: ``pip install 'deja-llm[bedrock]'``)
over the exact bytes in :attr:`BedrockRequest.content`. A Bedrock API key
(:class:`BedrockApiKey`) is sent as ``Authorization: Bearer <key>`` instead: no signature,
no ``x-amz-*`` headers and no botocore needed to send it.

Request, OpenAI → Converse:

* ``system``/``developer`` messages, wherever they are, become the top-level ``system``
  blocks (``{"text": ...}``), in order; they may hold text only;
* user content parts: text → ``{"text"}``; ``image_url`` with a ``data:`` URL → ``{"image":
  {"format", "source": {"bytes": <base64>}}}`` (png, jpeg, gif, webp), a PDF or other
  document type → ``{"document": {"format", "name", "source": {"bytes"}}}``; an
  ``s3://`` URI → ``source.s3Location``; ``file`` with ``file_data`` → a document (its
  ``filename``, reduced to the characters Bedrock allows, is the name); ``http(s)`` URLs,
  ``file_id`` and audio are refused (Bedrock fetches no URLs); a part already in Converse's
  shape (``{"text": ...}``, ``{"image": ...}``, ``{"document": ...}``, ``{"video": ...}``,
  ``{"guardContent": ...}``…) passes through; blank text is not sent (Bedrock refuses it),
  and a breakpoint on it moves to the block before, as in the Anthropic adapter;
* assistant messages: ``thinking_blocks`` (as deja returns them) first, as
  ``reasoningContent`` (``reasoningText {text, signature}``, or ``redactedContent``),
  then text, then each tool call as ``{"toolUse": {toolUseId, name, input}}``;
* ``tool`` messages → ``{"toolResult": {toolUseId, content}}`` blocks in a user turn;
  consecutive turns of one role are merged (Converse wants alternating turns);
* function ``tools`` → ``toolConfig.tools[].toolSpec {name, description, inputSchema:
  {json}, strict}``; tools already in Converse's shape pass through; ``tool_choice``
  ``auto``/``required``/a named function → ``{"auto": {}}``/``{"any": {}}``/``{"tool":
  {"name"}}``; ``none`` has no equivalent (the tools are kept, with a warning);
* ``max_completion_tokens`` (or ``max_tokens``), ``temperature``, ``top_p`` and ``stop``
  → ``inferenceConfig`` ``maxTokens``/``temperature``/``topP``/``stopSequences``;
* ``additionalModelRequestFields``: ``top_k`` (Claude and others: ``top_k``; Nova:
  ``inferenceConfig.topK``), and for Claude ``thinking`` and ``reasoning_effort`` (LiteLLM's
  budgets: low 1,024, medium 2,048, high 4,096, cut below the caller's ``max_tokens`` and
  refused when it cannot hold 1,024; without ``max_tokens``, ``maxTokens`` is 4,096 plus
  the budget: all as the Anthropic adapter does); fields the caller put in
  ``additionalModelRequestFields`` win, and any body field this adapter does not know
  goes there too (model-specific parameters such as ``anthropic_beta``);
* ``response_format`` ``json_schema`` → ``outputConfig.textFormat`` (type ``json_schema``,
  the schema as a JSON string); ``json_object`` is refused; ``metadata`` (string values)
  → ``requestMetadata``; ``service_tier`` ``default``/``priority``/``flex`` →
  ``serviceTier.type``; Converse's own top-level fields (``guardrailConfig``,
  ``performanceConfig``, ``promptVariables``, ``additionalModelResponseFieldPaths``…) pass
  through;
* **prompt caching**: ``cache_control`` on tools, messages and content parts, and the
  ``cache_control_injection_points``, are placed by :mod:`deja.providers.planner` (limit
  4, minimum prefix, longer lifetimes first) and sent as ``{"cachePoint": {"type":
  "default"}}`` blocks right after the marked block — in ``system``, in a message's
  ``content`` (after a tool result, for a tool message) or in ``toolConfig.tools``. A
  ``"1h"`` lifetime is sent as ``"ttl": "1h"`` on models that accept it (Claude 4.5 and
  later, see :func:`supports_1h_cache`); elsewhere it is downgraded to the default 5
  minutes, counted in :attr:`BedrockRequest.ttl_downgrades` and named in a warning. On a
  model without Bedrock prompt caching (:func:`supports_prompt_caching`) no cachePoint is
  sent and each breakpoint is named in a warning; Nova models do not cache tool
  definitions, so breakpoints on tools are not sent for them either;
* OpenAI-only parameters with no Converse equivalent (penalties, ``seed``, ``logit_bias``,
  ``logprobs``, ``user``, ``parallel_tool_calls: false``, a top-level ``cache_control``…)
  are not sent, each with a warning; ``n`` > 1 is refused. ``stream`` and
  ``stream_options`` are not body fields here: the endpoint decides, and ConverseStream
  always reports usage.

Response, Converse → OpenAI: text blocks → ``content``; ``reasoningContent`` →
``reasoning_content`` plus ``thinking_blocks`` (Anthropic's shape, signature kept, so a
tool-use conversation with thinking can continue); ``toolUse`` → ``tool_calls``;
``stopReason`` → ``finish_reason`` (``end_turn``/``stop_sequence`` → ``stop``,
``max_tokens``/``model_context_window_exceeded`` → ``length``, ``tool_use`` →
``tool_calls``, ``guardrail_intervened``/``content_filtered`` → ``content_filter``; others,
such as ``malformed_tool_use`` and ``malformed_model_output``, → ``stop``, with Bedrock's
own value kept as the message's ``provider_specific_fields.native_finish_reason``, which
keeps the answer out of the cache); usage through :func:`normalize_bedrock`.
Converse sends no response id or model: the caller passes them (the
``x-amzn-requestid`` header makes a good id). ``metrics.latencyMs`` is not copied: it is
volatile, and deja measures its own upstream time. A stream goes through
:class:`StreamTranslator`, whose chunks :class:`deja.streaming.StreamAssembler` assembles
into exactly what :meth:`BedrockProvider.parse_response` returns for the same answer.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, NamedTuple
from urllib.parse import quote

import orjson

from deja.errors import ConfigError, InvalidRequestError, MissingDependencyError, ProviderError
from deja.providers._openai_format import (
    assistant_message,
    function_call,
    tool_call,
)
from deja.providers.anthropic import effort_thinking
from deja.providers.eventstream import EXCEPTION_STATUS, exception_error
from deja.providers.planner import (
    ANTHROPIC_BREAKPOINT_LIMIT,
    Breakpoint,
    Plan,
    PlanWarning,
    TokenEstimator,
    apply_plan,
    estimate_tokens,
    minimum_cacheable_tokens,
    plan_breakpoints,
)
from deja.providers.usage import _count, _finish, normalize_openai

__all__ = [
    "BEDROCK_BREAKPOINT_LIMIT",
    "NOVA_MINIMUM_TOKENS",
    "SIGNING_SERVICE",
    "AwsCredentials",
    "BedrockApiKey",
    "BedrockProvider",
    "BedrockRequest",
    "BedrockTranslation",
    "StreamTranslator",
    "bedrock_minimum_tokens",
    "finish_reason",
    "model_id",
    "normalize_bedrock",
    "provider_fields",
    "require_botocore",
    "resolve_aws",
    "resolve_region",
    "sign_request",
    "supports_1h_cache",
    "supports_prompt_caching",
]

SIGNING_SERVICE: Final = "bedrock"
"""The SigV4 service name of the Bedrock runtime (its endpoint prefix is ``bedrock-runtime``)."""

BEDROCK_BREAKPOINT_LIMIT: Final = ANTHROPIC_BREAKPOINT_LIMIT
"""Bedrock accepts at most 4 cachePoint blocks in one request (Claude and Nova)."""

NOVA_MINIMUM_TOKENS: Final = 1000
"""Fewest prompt tokens before a cachePoint that Nova models cache (Bedrock's model table)."""
_BEDROCK_CLAUDE_FLOOR: Final = 1024  # see bedrock_minimum_tokens

_DEFAULT_MAX_TOKENS: Final = 4096  # the Anthropic adapter's default: every Claude 3+ accepts it
_FINISH: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# OpenAI parameters with no Converse equivalent: not sent (a warning names each one set).
_OPENAI_ONLY: Final = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "seed",
        "store",
        "user",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "modalities",
        "audio",
        "prediction",
        "verbosity",
        "web_search_options",
        "cache_control",  # Anthropic's automatic caching: Converse has no such switch
    }
)
# Converse's own top-level fields, sent as the caller wrote them.
_NATIVE: Final = frozenset(
    {
        "guardrailConfig",
        "additionalModelResponseFieldPaths",
        "promptVariables",
        "requestMetadata",
        "performanceConfig",
        "serviceTier",
        "outputConfig",
    }
)
# Converse fields this adapter builds from OpenAI parameters: a caller's copy would clash.
_BUILT: Final = frozenset({"system", "inferenceConfig", "toolConfig", "modelId"})
# Handled explicitly below; everything else goes to additionalModelRequestFields.
_HANDLED: Final = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "metadata",
        "stream",
        "stream_options",
        "reasoning_effort",
        "thinking",
        "response_format",
        "n",
        "functions",
        "function_call",
        "service_tier",
        "additionalModelRequestFields",
        "cache_control_injection_points",
    }
)
_SYSTEM_ROLES: Final = frozenset({"system", "developer"})
_DATA_URL: Final = re.compile(r"data:(?P<media>[^;,]+)(?:;[^,]*)?;base64,(?P<data>.*)", re.DOTALL)
_IMAGE_FORMATS: Final = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_DOCUMENT_FORMATS: Final = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
_EXTENSIONS: Final = {
    **{fmt: ("image", fmt) for fmt in ("png", "jpeg", "gif", "webp")},
    "jpg": ("image", "jpeg"),
    **{fmt: ("document", fmt) for fmt in _DOCUMENT_FORMATS.values()},
}
# Content blocks a caller may send in Converse's own shape (one key each).
_NATIVE_BLOCKS: Final = frozenset(
    {
        "text",
        "image",
        "document",
        "video",
        "audio",
        "toolUse",
        "toolResult",
        "guardContent",
        "reasoningContent",
        "citationsContent",
        "searchResult",
    }
)
_NATIVE_TOOLS: Final = frozenset({"toolSpec", "systemTool"})
_CHOICES: Final = frozenset({"auto", "any", "tool"})  # Converse's own toolChoice keys
_REGION: Final = re.compile(r"[a-z0-9-]+")
_DOCUMENT_NAME_BAD: Final = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")
_CLAUDE_NEW: Final = re.compile(r"claude-(opus|sonnet|haiku)-(\d+)(?:-(\d)(?!\d))?")
_CLAUDE_OLD: Final = re.compile(r"claude-(\d+)(?:-(\d))?-(opus|sonnet|haiku)")
_NOVA_CACHING: Final = re.compile(r"(?:^|\.)amazon\.nova-(micro|lite|pro|premier)-v1")


# -- models -------------------------------------------------------------------------------


def model_id(model: str) -> str:
    """The Bedrock model id of a deja model name: ``bedrock/`` and ``converse/`` removed.

    ``bedrock/invoke/...`` (LiteLLM's InvokeModel route) is refused: deja speaks Converse.
    """
    name = model.strip()
    name = name.removeprefix("bedrock/")
    if name.startswith("invoke/"):
        raise InvalidRequestError(
            f"model {model!r}: the InvokeModel API is not supported; use bedrock/<modelId> "
            "(Converse)"
        )
    name = name.removeprefix("converse/")
    if not name:
        raise InvalidRequestError(f"model {model!r} names no Bedrock model id")
    return name


def _base_name(model: str) -> str:
    # An ARN's resource id follows its last "/": foundation-model/<id>, inference-profile/<id>.
    name = model.strip().lower()
    return name.rsplit("/", 1)[-1] if name.startswith("arn:") else name


def _claude_version(model: str) -> tuple[str, int, int] | None:
    """(family, major, minor) of a Claude model id, or ``None`` for other models."""
    name = _base_name(model)
    match = _CLAUDE_NEW.search(name)
    if match is not None:
        return match[1], int(match[2]), int(match[3] or 0)
    match = _CLAUDE_OLD.search(name)
    if match is not None:
        return match[3], int(match[1]), int(match[2] or 0)
    return None


def _is_nova(model: str) -> bool:
    return "amazon.nova-" in _base_name(model)


def supports_prompt_caching(model: str) -> bool:
    """Whether Bedrock accepts ``cachePoint`` blocks for ``model`` (a model id, inference
    profile or ARN whose resource id names the model).

    Generally available on Claude 3.7 Sonnet, Claude 3.5 Haiku and every Claude 4 and
    later model, and on Nova Micro, Lite, Pro and Premier. Claude 3.5 Sonnet v2 had it
    only as a closed preview, older Claude models and other families not at all; an
    opaque ARN (a provisioned model, an application inference profile) is treated as
    not supporting it — pass your own predicate to :class:`BedrockProvider` to override.
    """
    version = _claude_version(model)
    if version is not None:
        family, major, minor = version
        return (major, minor) >= (3, 7) or (family == "haiku" and (major, minor) == (3, 5))
    return _NOVA_CACHING.search(_base_name(model)) is not None


def supports_1h_cache(model: str) -> bool:
    """Whether ``model`` accepts ``"ttl": "1h"`` on a cachePoint: Claude 4.5 and later
    (Haiku 4.5, Sonnet 4.5, Opus 4.5 when Bedrock added the option in January 2026, and
    the models since). Nova and older Claude models keep the 5-minute default only."""
    version = _claude_version(model)
    return version is not None and (version[1], version[2]) >= (4, 5)


def _caches_tools(model: str) -> bool:
    # Nova refuses a cachePoint in toolConfig; Claude caches tool definitions.
    return _claude_version(model) is not None


def _unmarked_tool(tool: Any) -> Any:
    if isinstance(tool, Mapping) and "cache_control" in tool:
        return {k: v for k, v in tool.items() if k != "cache_control"}
    return tool


def bedrock_minimum_tokens(model: str) -> int:
    """Fewest prompt tokens before a cachePoint that ``model`` caches: Nova's 1,000, or
    for Claude Anthropic's per-model minimum
    (:func:`~deja.providers.planner.minimum_cacheable_tokens`), but never below 1,024:
    Anthropic documents 1,024 on Bedrock for Claude Fable 5 and Mythos 5, which take 512
    on its own API, and defers to AWS for Bedrock's minimums."""
    if _is_nova(model):
        return NOVA_MINIMUM_TOKENS
    return max(minimum_cacheable_tokens(model), _BEDROCK_CLAUDE_FLOOR)


def finish_reason(stop_reason: object) -> str | None:
    """OpenAI's ``finish_reason`` for a Converse ``stopReason``: always one of OpenAI's
    values, which strictly typed clients require (``malformed_tool_use``,
    ``malformed_model_output`` and any newer value → ``stop``; :func:`provider_fields`
    keeps what Bedrock said)."""
    if stop_reason is None:
        return None
    return _FINISH.get(str(stop_reason), "stop")


def provider_fields(stop_reason: object) -> dict[str, Any] | None:
    """The message's ``provider_specific_fields`` for an answer that stopped with
    ``stop_reason``: ``None`` when :func:`finish_reason` says all, else
    ``{"native_finish_reason": stop_reason}`` — an abnormal stop (a malformed tool use or
    model output…), which deja's admission policy does not store."""
    if stop_reason is None or str(stop_reason) in _FINISH:
        return None
    return {"native_finish_reason": str(stop_reason)}


# -- credentials and signing ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """AWS credentials to sign with: an access key, its secret, and the session token of
    temporary credentials. The secret and token never appear in ``repr``."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class BedrockApiKey:
    """An Amazon Bedrock API key (what AWS's SDKs read from ``AWS_BEARER_TOKEN_BEDROCK``),
    sent as ``Authorization: Bearer <key>`` in place of a SigV4 signature. The key never
    appears in ``repr``."""

    key: str = field(repr=False)


def require_botocore() -> None:
    """Import what SigV4 signing and the AWS credential chain need (botocore, the
    ``bedrock`` extra), raising :class:`~deja.errors.MissingDependencyError` without it: a
    check at start-up for a deployment that would otherwise fail at its first request."""
    try:
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
        import botocore.session  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("botocore", "bedrock") from exc


def _botocore_session(profile: str | None) -> Any:
    try:
        import botocore.session
    except ImportError as exc:
        raise MissingDependencyError("botocore", "bedrock") from exc
    return botocore.session.Session(profile=profile)


def resolve_aws(
    region: str | None = None,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
    profile: str | None = None,
) -> tuple[str, AwsCredentials]:
    """The region and credentials to call Bedrock with.

    Explicit ``access_key`` and ``secret_key`` (both, with an optional ``session_token``)
    win; otherwise botocore's standard chain is asked — ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, the shared credentials and config
    files for ``profile`` (or ``AWS_PROFILE``), SSO, web identity, then container and
    instance metadata. The region is ``region``, else ``AWS_REGION``, else
    ``AWS_DEFAULT_REGION``, else the profile's ``region``. The credentials are a snapshot:
    temporary ones expire, so resolve again for a later request rather than keeping them.

    Raises :class:`~deja.errors.ConfigError` — a setup problem, not a bad request — when no
    region or no credentials are found (the message says what to set) or the profile does
    not exist, and :class:`~deja.errors.MissingDependencyError` when botocore is missing.
    The chain may read files and, last, ask the instance metadata service: call this from
    a worker thread in async code.
    """
    session = _botocore_session(profile)
    from botocore.exceptions import BotoCoreError

    try:
        if access_key is not None or secret_key is not None:
            if not access_key or not secret_key:
                raise ConfigError(
                    "AWS credentials need both an access key and a secret key "
                    "(aws_access_key_id and aws_secret_access_key)"
                )
            credentials = AwsCredentials(access_key, secret_key, session_token or None)
        else:
            found = session.get_credentials()
            if found is None:
                raise ConfigError(
                    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                    "(plus AWS_SESSION_TOKEN for temporary credentials), or AWS_PROFILE naming "
                    "a profile in ~/.aws/credentials or ~/.aws/config, or pass aws_access_key_id "
                    "and aws_secret_access_key"
                )
            frozen = found.get_frozen_credentials()
            credentials = AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)
    except BotoCoreError as exc:  # ProfileNotFound, an expired SSO token, a bad config file
        raise ConfigError(f"AWS configuration: {exc}") from exc
    return _region(region, lambda: session), credentials


def resolve_region(region: str | None = None, *, profile: str | None = None) -> str:
    """The region to call Bedrock in, as :func:`resolve_aws` finds it — ``region``, else
    ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else the ``region`` of ``profile`` (or
    ``AWS_PROFILE``) — without looking for credentials: what a Bedrock API key needs.

    botocore is imported, and the config files read, only when the profile is asked (so
    call this from a worker thread in async code). Raises :class:`~deja.errors.ConfigError`
    when no region is found or the profile does not exist, and
    :class:`~deja.errors.MissingDependencyError` when the profile is asked without botocore.
    """
    return _region(region, lambda: _botocore_session(profile))


def _region(region: str | None, session: Callable[[], Any]) -> str:
    """``region``, the environment's, or the profile of ``session()`` (made only if asked)."""
    chosen = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not chosen:
        made = session()
        from botocore.exceptions import BotoCoreError  # importable: session() made one

        try:
            chosen = made.get_config_variable("region")
        except BotoCoreError as exc:  # ProfileNotFound, a bad config file
            raise ConfigError(f"AWS configuration: {exc}") from exc
    if not chosen:
        raise ConfigError(
            "no AWS region: pass aws_region_name, or set AWS_REGION (or AWS_DEFAULT_REGION), "
            "or set region in the profile's ~/.aws/config"
        )
    return str(chosen)


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    content: bytes,
    *,
    region: str,
    credentials: AwsCredentials,
    service: str = SIGNING_SERVICE,
) -> dict[str, str]:
    """``headers`` plus the SigV4 ones (``x-amz-date``, ``x-amz-security-token`` for
    temporary credentials, ``authorization``), all names lower-cased.

    The signature covers the method, the URL's path and query, ``host`` (taken from the
    URL: send to exactly this URL), every header given, and the SHA-256 of ``content`` —
    send these bytes unchanged. A signature is valid for 5 minutes: re-sign a request
    that is retried later than that.
    """
    try:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
    except ImportError as exc:
        raise MissingDependencyError("botocore", "bedrock") from exc
    request = AWSRequest(method=method, url=url, data=content, headers=dict(headers))
    signer = Credentials(credentials.access_key, credentials.secret_key, credentials.token)
    SigV4Auth(signer, service, region).add_auth(request)
    return {str(name).lower(): str(value) for name, value in request.headers.items()}


# -- usage ----------------------------------------------------------------------------------

# Converse's native count fields: replaced by their OpenAI-shaped equivalents.
_BEDROCK_COUNTS: Final = frozenset(
    {
        "inputTokens",
        "outputTokens",
        "totalTokens",
        "cacheReadInputTokens",
        "cacheWriteInputTokens",
        "cacheDetails",
    }
)


def normalize_bedrock(usage: object) -> dict[str, Any]:
    """Converse usage in deja's one schema (:mod:`deja.providers.usage`).

    Bedrock's ``inputTokens`` counts only the input that was neither read from nor written
    to the cache (its ``totalTokens`` is everything: input, cache reads and writes,
    output), so ``prompt_tokens = inputTokens + cacheReadInputTokens +
    cacheWriteInputTokens``; ``prompt_tokens_details.cached_tokens`` and
    ``cache_read_input_tokens`` are the reads, ``cache_creation_input_tokens`` the writes,
    split 5m/1h from ``cacheDetails`` (``[{"ttl": "1h", "inputTokens": n}, ...]``; writes
    it does not attribute count as 5m, the default lifetime). ``totalTokens`` is
    recomputed. Other fields are kept.

    Pure, returns a new dict, never raises (a count that is not a non-negative integer is
    absent) and idempotent: an already normalized usage (``prompt_tokens`` and no
    ``inputTokens``) is read as OpenAI's shape.
    """
    if not isinstance(usage, Mapping):
        usage = {}
    if "inputTokens" not in usage and "prompt_tokens" in usage:
        return normalize_openai(usage)
    uncached = _count(usage.get("inputTokens")) or 0
    read = _count(usage.get("cacheReadInputTokens")) or 0
    by_ttl = {"5m": 0, "1h": 0}
    details = usage.get("cacheDetails")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, Mapping) and detail.get("ttl") in by_ttl:
                by_ttl[str(detail["ttl"])] += _count(detail.get("inputTokens")) or 0
    written = _count(usage.get("cacheWriteInputTokens"))
    if written is None:
        written = by_ttl["5m"] + by_ttl["1h"]
    extras = {key: value for key, value in usage.items() if key not in _BEDROCK_COUNTS}
    return _finish(
        extras,
        prompt=uncached + read + written,
        completion=_count(usage.get("outputTokens")) or 0,
        read=read,
        written=written,
        split_from={"cache_creation": {"ephemeral_1h_input_tokens": by_ttl["1h"]}},
        details=None,
    )


# -- the adapter ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BedrockRequest:
    """What to send: ``POST url`` with ``headers`` (signed, or carrying the API key: kept
    out of ``repr``) and exactly the bytes ``content`` (``json`` is the same body as a
    dict, for logs and tests). ``plan`` is the breakpoint plan, ``warnings`` what was not
    sent or was changed, and ``ttl_downgrades`` how many 1h breakpoints went as 5m because
    the model has no 1h cache (each is also in ``warnings``)."""

    url: str
    headers: dict[str, str] = field(repr=False)
    content: bytes
    json: dict[str, Any]
    warnings: tuple[str, ...]
    plan: Plan
    ttl_downgrades: int = 0


class BedrockTranslation(NamedTuple):
    """The Converse body for an OpenAI request, its breakpoint plan, warnings, and the
    number of 1h breakpoints downgraded to 5m (see :class:`BedrockRequest`)."""

    json: dict[str, Any]
    plan: Plan
    warnings: list[str]
    ttl_downgrades: int


class BedrockProvider:
    """Translates OpenAI chat requests to Bedrock's Converse API and the answers back.

    Options (keyword-only): ``breakpoint_limit`` (Bedrock's 4), ``prompt_caching`` (model
    id → whether cachePoints may be sent; default :func:`supports_prompt_caching`),
    ``one_hour_cache`` (model id → whether ``ttl: 1h`` is accepted; default
    :func:`supports_1h_cache`), ``minimum_tokens`` (model id → minimum cacheable prefix;
    default :func:`bedrock_minimum_tokens`) and ``estimator`` (text → estimated tokens).
    Stateless and thread-safe; no I/O (signing reads no files: credentials are passed in).
    """

    name: Final = "bedrock"

    def __init__(
        self,
        *,
        breakpoint_limit: int = BEDROCK_BREAKPOINT_LIMIT,
        prompt_caching: Callable[[str], bool] = supports_prompt_caching,
        one_hour_cache: Callable[[str], bool] = supports_1h_cache,
        minimum_tokens: Callable[[str], int] = bedrock_minimum_tokens,
        estimator: TokenEstimator = estimate_tokens,
    ) -> None:
        if breakpoint_limit < 0:
            raise ValueError("breakpoint_limit must be >= 0")
        self.breakpoint_limit = breakpoint_limit
        self.prompt_caching = prompt_caching
        self.one_hour_cache = one_hour_cache
        self.minimum_tokens = minimum_tokens
        self.estimator = estimator

    # -- request ------------------------------------------------------------------------

    def build_request(
        self,
        body: Mapping[str, Any],
        *,
        region: str,
        credentials: AwsCredentials | BedrockApiKey,
        api_base: str | None = None,
        injection_points: Sequence[Mapping[str, Any]] = (),
        extra_headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> BedrockRequest:
        """The authenticated HTTP request for an OpenAI-format chat ``body``: SigV4-signed
        with :class:`AwsCredentials`, or carrying a :class:`BedrockApiKey` as
        ``Authorization: Bearer``.

        ``body["model"]`` is ``bedrock/<modelId>`` (or the bare id). ``stream`` picks
        ``/converse-stream`` over ``/converse`` (``body["stream"]`` is ignored). ``api_base``
        replaces ``https://bedrock-runtime.{region}.amazonaws.com`` (a VPC endpoint, a
        test server); the region still scopes the signature. ``injection_points`` (from
        configuration) apply after the body's own ``cache_control_injection_points``;
        ``extra_headers`` are sent (and signed; an ``authorization`` among them is
        replaced). Raises :class:`~deja.errors.InvalidRequestError` for a request Converse
        cannot express and :class:`~deja.errors.MissingDependencyError` when signing
        without botocore.
        """
        if not isinstance(region, str) or _REGION.fullmatch(region) is None:
            raise InvalidRequestError(f"AWS region {region!r} is not a region name")
        translation = self.translate_request(body, injection_points=injection_points)
        model = model_id(str(body["model"]))
        base = (api_base or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/")
        operation = "converse-stream" if stream else "converse"
        url = f"{base}/model/{quote(model, safe='')}/{operation}"
        try:
            content = orjson.dumps(translation.json)
        except TypeError as exc:  # a value JSON cannot carry (an object, a >64-bit int)
            raise InvalidRequestError(f"the request cannot be sent as JSON: {exc}") from exc
        headers = {"content-type": "application/json", **(extra_headers or {})}
        if isinstance(credentials, BedrockApiKey):
            sent = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            sent["authorization"] = f"Bearer {credentials.key}"
        else:
            sent = sign_request(
                "POST", url, headers, content, region=region, credentials=credentials
            )
        return BedrockRequest(
            url,
            sent,
            content,
            translation.json,
            tuple(translation.warnings),
            translation.plan,
            translation.ttl_downgrades,
        )

    def translate_request(
        self,
        body: Mapping[str, Any],
        *,
        injection_points: Sequence[Mapping[str, Any]] = (),
    ) -> BedrockTranslation:
        """The Converse JSON body for an OpenAI chat ``body``, its breakpoint plan,
        warnings and TTL downgrades (see :meth:`build_request`). Pure."""
        if not isinstance(body, Mapping):
            raise InvalidRequestError("the request body must be an object")
        raw_model = body.get("model")
        if not isinstance(raw_model, str) or not raw_model:
            raise InvalidRequestError("model must be a non-empty string")
        model = model_id(raw_model)
        points = [*_points(body.get("cache_control_injection_points")), *injection_points]
        plan, downgrades = self._plan(body, model, points)
        planned = apply_plan(body, plan)
        warnings = [str(warning) for warning in plan.warnings]

        n = planned.get("n")
        if n is not None and n != 1:
            raise InvalidRequestError("Bedrock Converse returns one choice: n must be 1")
        if planned.get("functions") is not None or planned.get("function_call") is not None:
            raise InvalidRequestError("functions/function_call are not supported: use tools")
        clash = sorted(key for key in _BUILT if key in planned)
        if clash:
            raise InvalidRequestError(
                f"{clash[0]} is built from OpenAI parameters (messages, max_tokens, "
                "temperature, top_p, stop, tools, tool_choice): send those instead"
            )

        claude = _claude_version(model) is not None
        nova = _is_nova(model)
        context = _Context()
        system, messages = _messages(planned["messages"], context, warnings)
        payload: dict[str, Any] = {"messages": messages}
        if system:
            payload["system"] = system

        extra: dict[str, Any] = {}
        inference: dict[str, Any] = {}
        max_tokens = planned.get("max_completion_tokens")
        if max_tokens is None:
            max_tokens = planned.get("max_tokens")
        thinking = _thinking(planned, claude, max_tokens, warnings)
        if thinking is not None:
            extra["thinking"] = thinking
            if max_tokens is None:
                # With thinking, the answer's limit must exceed the thinking budget.
                budget = thinking.get("budget_tokens") if isinstance(thinking, Mapping) else None
                spare = budget if isinstance(budget, int) and not isinstance(budget, bool) else 0
                max_tokens = _DEFAULT_MAX_TOKENS + spare
        if max_tokens is not None:
            inference["maxTokens"] = max_tokens
        for source, target in (("temperature", "temperature"), ("top_p", "topP")):
            if planned.get(source) is not None:
                inference[target] = planned[source]
        stop = planned.get("stop")
        if stop is not None:
            inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
        if inference:
            payload["inferenceConfig"] = inference
        top_k = planned.get("top_k")
        if top_k is not None:
            if nova:
                extra["inferenceConfig"] = {"topK": top_k}
            else:
                extra["top_k"] = top_k

        tool_config = _tool_config(planned, warnings)
        if tool_config is not None:
            payload["toolConfig"] = tool_config
        elif _told_as_text(messages):
            warnings.append(
                "tool calls and results in a conversation without tools are sent as text "
                "(Converse refuses toolUse and toolResult blocks without a toolConfig)"
            )
        output_config = _output_config(planned.get("response_format"))
        if output_config is not None:
            payload["outputConfig"] = output_config
        request_metadata = _request_metadata(planned.get("metadata"), warnings)
        if request_metadata:
            payload["requestMetadata"] = request_metadata
        tier = planned.get("service_tier")
        if tier in ("default", "priority", "flex"):
            payload["serviceTier"] = {"type": tier}
        elif tier is not None:
            warnings.append(f"service_tier {tier!r} has no Bedrock equivalent: not sent")

        for key, value in planned.items():
            if key in _HANDLED:
                continue
            if key in _OPENAI_ONLY:
                if value not in (None, False):  # an unset or disabled option changes nothing
                    warnings.append(f"{key} has no Bedrock Converse equivalent: not sent")
                continue
            if key in _NATIVE:
                if key == "outputConfig" and "outputConfig" in payload:
                    if not isinstance(value, Mapping):
                        raise InvalidRequestError("outputConfig must be an object")
                    payload[key] = {**payload[key], **value}  # e.g. effort next to the format
                else:
                    payload[key] = value
                continue
            extra[key] = value  # a model-specific parameter (anthropic_beta, ...)
        caller_extra = planned.get("additionalModelRequestFields")
        if caller_extra is not None:
            if not isinstance(caller_extra, Mapping):
                raise InvalidRequestError("additionalModelRequestFields must be an object")
            extra.update(caller_extra)  # the caller's own Converse fields win
        if extra:
            payload["additionalModelRequestFields"] = extra
        return BedrockTranslation(payload, plan, warnings, downgrades)

    def _every_breakpoint(self, body: Mapping[str, Any], points: Sequence[Any]) -> Plan:
        """A plan without limits, only to name every breakpoint that was asked for."""
        return plan_breakpoints(
            body,
            injection_points=points,
            limit=sys.maxsize,
            minimum_tokens=0,
            estimator=self.estimator,
        )

    def _plan(
        self, body: Mapping[str, Any], model: str, points: Sequence[Mapping[str, Any]]
    ) -> tuple[Plan, int]:
        """The breakpoint plan for ``model``, and how many 1h breakpoints became 5m."""
        if not self.prompt_caching(model):
            probe = self._every_breakpoint(body, points)
            dropped = tuple(
                PlanWarning(
                    "over_limit",
                    f"breakpoint at {b.target} not sent: {model} does not support prompt "
                    "caching on Bedrock",
                    b.target,
                )
                for b in probe.breakpoints
            )
            return Plan((), dropped, 0, 0), 0
        untooled: list[PlanWarning] = []
        if not _caches_tools(model) and body.get("tools"):
            # the model caches no tool definitions: their breakpoints are named and left
            # out before planning, so they take none of the provider's slots
            probe = self._every_breakpoint(body, points)
            untooled = [
                PlanWarning(
                    "no_target",
                    f"breakpoint at {b.target} not sent: {model} does not cache tool "
                    "definitions (Bedrock refuses a cachePoint in its toolConfig)",
                    b.target,
                )
                for b in probe.breakpoints
                if b.target.kind == "tool"
            ]
            if untooled:
                body = {**body, "tools": [_unmarked_tool(t) for t in body["tools"]]}
                points = [p for p in points if p.get("location") not in ("tool", "tool_config")]
        plan = plan_breakpoints(
            body,
            injection_points=points,
            limit=self.breakpoint_limit,
            minimum_tokens=self.minimum_tokens(model),
            estimator=self.estimator,
        )
        warnings = [*untooled, *plan.warnings]
        kept: list[Breakpoint] = []
        downgrades = 0
        one_hour = self.one_hour_cache(model)
        for breakpoint in plan.breakpoints:
            target = breakpoint.target
            if breakpoint.ttl == "1h" and not one_hour:
                downgrades += 1
                warnings.append(
                    PlanWarning(
                        "ttl_downgraded",
                        f"breakpoint at {target} downgraded from ttl 1h to 5m: {model} "
                        "does not support a 1h cache on Bedrock",
                        target,
                        placed=True,
                    )
                )
                kept.append(
                    replace(breakpoint, ttl="5m", control={**breakpoint.control, "ttl": "5m"})
                )
                continue
            kept.append(breakpoint)
        return Plan(tuple(kept), tuple(warnings), plan.limit, plan.minimum_tokens), downgrades

    # -- response -----------------------------------------------------------------------

    def parse_response(
        self,
        data: Mapping[str, Any],
        *,
        model: str | None = None,
        response_id: str | None = None,
        created: int | None = None,
    ) -> dict[str, Any]:
        """An OpenAI ``chat.completion`` dict for a Converse response.

        Converse names neither the response nor the model: ``response_id`` (e.g. the
        ``x-amzn-requestid`` header) defaults to a random ``bedrock-<hex>``, ``model`` to
        ``None``, ``created`` to now. Raises :class:`~deja.errors.ProviderError` for a
        body that is not a Converse answer.
        """
        output = data.get("output") if isinstance(data, Mapping) else None
        message = output.get("message") if isinstance(output, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            raise ProviderError(
                "Bedrock answered with a body that is not a Converse response",
                body=data,
                provider="bedrock",
            )
        text: list[str] = []
        reasoning: list[str] = []
        thinking_blocks: list[dict[str, Any]] = []
        tool_calls: list[dict[str, Any]] = []
        for block in content:
            if not isinstance(block, Mapping):
                continue
            if isinstance(block.get("text"), str):
                text.append(block["text"])
            elif isinstance(block.get("reasoningContent"), Mapping):
                found = block["reasoningContent"]
                reasoning_text = found.get("reasoningText")
                if isinstance(reasoning_text, Mapping):
                    piece = str(reasoning_text.get("text") or "")
                    reasoning.append(piece)
                    thinking_blocks.append(
                        {
                            "type": "thinking",
                            "thinking": piece,
                            "signature": reasoning_text.get("signature"),
                        }
                    )
                elif found.get("redactedContent") is not None:
                    thinking_blocks.append(
                        {"type": "redacted_thinking", "data": found["redactedContent"]}
                    )
            elif isinstance(block.get("toolUse"), Mapping):
                use = block["toolUse"]
                tool_calls.append(
                    tool_call(use.get("toolUseId"), use.get("name"), use.get("input"))
                )
        reply = assistant_message(text, reasoning, thinking_blocks, tool_calls)
        fields = provider_fields(data.get("stopReason"))
        if fields is not None:
            reply["provider_specific_fields"] = fields
        response: dict[str, Any] = {
            "id": response_id or _new_id(),
            "object": "chat.completion",
            "created": int(time.time()) if created is None else created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": reply,
                    "logprobs": None,
                    "finish_reason": finish_reason(data.get("stopReason")),
                }
            ],
        }
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            response["usage"] = normalize_bedrock(usage)
        return response

    def stream_translator(
        self,
        *,
        model: str | None = None,
        response_id: str | None = None,
        created: int | None = None,
    ) -> StreamTranslator:
        """A fresh :class:`StreamTranslator` for one streamed response."""
        return StreamTranslator(model=model, response_id=response_id, created=created)


def _new_id() -> str:
    return f"bedrock-{uuid.uuid4().hex}"


# -- stream -------------------------------------------------------------------------------


class _Block:
    """What one content block of a stream has said so far."""

    __slots__ = ("kind", "redacted", "sent_arguments", "signature", "thinking", "tool")

    def __init__(self, kind: str, *, tool: int = -1) -> None:
        self.kind = kind
        self.tool = tool
        self.thinking: list[str] = []
        self.signature: str | None = None
        self.redacted: list[str] = []
        self.sent_arguments = False


class StreamTranslator:
    """ConverseStream events → OpenAI ``chat.completion.chunk`` dicts, one event at a time.

    :meth:`feed` takes each event as :func:`deja.providers.eventstream.to_event` makes it
    (``{"messageStart": {...}}``, ``contentBlockStart``/``Delta``/``Stop``,
    ``messageStop``, ``metadata``) and returns the chunks it makes: a first chunk with the
    role, text as ``content`` deltas, reasoning as ``reasoning_content`` deltas (and, when
    its block stops, the whole block with its signature in ``thinking_blocks``), each
    ``toolUse`` as an OpenAI tool-call delta (index, id, name, then the input pieces), the
    finish chunk at ``messageStop``, and at ``metadata`` a last chunk with ``choices: []``
    and the normalized usage. Every chunk carries ``"usage": null`` as OpenAI's do when
    usage was asked for. An exception event (``{"throttlingException": {...}}``…) raises
    the matching :class:`~deja.errors.ProviderError`. Other events and fields (Bedrock's
    ``p`` padding) are ignored.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        response_id: str | None = None,
        created: int | None = None,
    ) -> None:
        self.created = int(time.time()) if created is None else created
        self.model = model
        self.response_id = response_id or _new_id()
        self._usage: dict[str, Any] | None = None
        self._blocks: dict[int, _Block] = {}
        self._tools = 0
        self._stopped = False

    @property
    def finished(self) -> bool:
        """True once both ``messageStop`` and the ``metadata`` (usage) event arrived."""
        return self._stopped and self._usage is not None

    @property
    def usage(self) -> dict[str, Any] | None:
        """The normalized usage (``None`` before the ``metadata`` event)."""
        return self._usage

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Translate one event; returns the chunks to pass on (often none or one)."""
        for kind, body in event.items():
            if kind in EXCEPTION_STATUS or kind.endswith("Exception"):
                message = body.get("message") if isinstance(body, Mapping) else None
                raise exception_error(kind, message or body, body=dict(event))
            data = body if isinstance(body, Mapping) else {}
            if kind == "messageStart":
                return [self._chunk({"role": "assistant", "content": ""})]
            if kind == "contentBlockStart":
                return self._start(_index(data), data.get("start"))
            if kind == "contentBlockDelta":
                return self._delta(_index(data), data.get("delta"))
            if kind == "contentBlockStop":
                return self._stop(_index(data))
            if kind == "messageStop":
                self._stopped = True
                reason = data.get("stopReason")
                fields = provider_fields(reason)
                delta = {} if fields is None else {"provider_specific_fields": fields}
                return [self._chunk(delta, finish_reason(reason))]
            if kind == "metadata":
                usage = data.get("usage")
                self._usage = normalize_bedrock(usage if isinstance(usage, Mapping) else {})
                return [self._envelope() | {"choices": [], "usage": self._usage}]
        return []  # event types newer than this adapter

    def _envelope(self) -> dict[str, Any]:
        return {
            "id": self.response_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._envelope() | {"choices": [choice], "usage": None}

    def _block(self, index: int, kind: str) -> _Block:
        state = self._blocks.get(index)
        if state is None:
            state = self._blocks[index] = _Block(kind)
        return state

    def _start(self, index: int, start: object) -> list[dict[str, Any]]:
        use = start.get("toolUse") if isinstance(start, Mapping) else None
        if not isinstance(use, Mapping):
            return []  # text and reasoning blocks need no start; newer start types
        state = self._blocks[index] = _Block("tool", tool=self._tools)
        self._tools += 1
        opening = {
            "index": state.tool,
            "id": use.get("toolUseId"),
            "type": "function",
            "function": {"name": use.get("name"), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [opening]})]

    def _delta(self, index: int, delta: object) -> list[dict[str, Any]]:
        if not isinstance(delta, Mapping):
            return []
        text = delta.get("text")
        if isinstance(text, str):
            self._block(index, "text")
            return [self._chunk({"content": text})] if text else []
        use = delta.get("toolUse")
        if isinstance(use, Mapping):
            state = self._blocks.get(index)
            piece = use.get("input")
            if state is None or state.kind != "tool" or not isinstance(piece, str) or not piece:
                return []
            state.sent_arguments = True
            return [self.arguments_text(state, piece)]
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, Mapping):
            redacted = reasoning.get("redactedContent")
            if redacted is not None:
                self._block(index, "redacted").redacted.append(str(redacted))
                return []
            state = self._block(index, "reasoning")
            if isinstance(reasoning.get("signature"), str):
                state.signature = (state.signature or "") + reasoning["signature"]
            piece = reasoning.get("text")
            if isinstance(piece, str) and piece:
                state.thinking.append(piece)
                return [self._chunk({"reasoning_content": piece})]
        return []  # citations, images and delta types newer than this adapter

    def _stop(self, index: int) -> list[dict[str, Any]]:
        state = self._blocks.get(index)
        if state is None:
            return []
        if state.kind == "reasoning":
            block = {
                "type": "thinking",
                "thinking": "".join(state.thinking),
                "signature": state.signature,
            }
            return [self._chunk({"thinking_blocks": [block]})]
        if state.kind == "redacted":
            block = {"type": "redacted_thinking", "data": "".join(state.redacted)}
            return [self._chunk({"thinking_blocks": [block]})]
        if state.kind == "tool" and not state.sent_arguments:
            # A call with no input streams no pieces; its non-stream twin says "{}".
            return [self.arguments_text(state, "{}")]
        return []

    def arguments_text(self, state: _Block, piece: str) -> dict[str, Any]:
        call = {"index": state.tool, "function": {"arguments": piece}}
        return self._chunk({"tool_calls": [call]})


def _index(event: Mapping[str, Any]) -> int:
    index = event.get("contentBlockIndex")
    return index if isinstance(index, int) and not isinstance(index, bool) else -1


# -- request helpers ------------------------------------------------------------------------


class _Context:
    """Per-request state of the translation: document names must be unique."""

    def __init__(self) -> None:
        self.documents: set[str] = set()

    def document_name(self, wanted: object) -> str:
        base = ""
        if isinstance(wanted, str):
            stem = wanted.rsplit("/", 1)[-1]
            stem = stem.rsplit(".", 1)[0] if "." in stem else stem
            base = " ".join(_DOCUMENT_NAME_BAD.sub("-", stem).split())
        name = base or f"document-{len(self.documents) + 1}"
        candidate, number = name, 2
        while candidate in self.documents:
            candidate, number = f"{name} ({number})", number + 1
        self.documents.add(candidate)
        return candidate


def _points(value: object) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise InvalidRequestError("cache_control_injection_points must be a list")
    return list(value)


def _cache_point(control: object) -> dict[str, Any]:
    """The cachePoint block for a ``cache_control`` marker (5m is Bedrock's default)."""
    point: dict[str, Any] = {"type": "default"}
    if isinstance(control, Mapping) and control.get("ttl") == "1h":
        point["ttl"] = "1h"
    return {"cachePoint": point}


def _media_block(url: str, where: str, context: _Context, name: object = None) -> dict[str, Any]:
    match = _DATA_URL.fullmatch(url)
    if match is not None:
        media = match["media"].lower()
        if media in _IMAGE_FORMATS:
            return {"image": {"format": _IMAGE_FORMATS[media], "source": {"bytes": match["data"]}}}
        if media in _DOCUMENT_FORMATS:
            return {
                "document": {
                    "format": _DOCUMENT_FORMATS[media],
                    "name": context.document_name(name),
                    "source": {"bytes": match["data"]},
                }
            }
        raise InvalidRequestError(f"{where}: media type {media!r} is not supported by Bedrock")
    if url.startswith("s3://"):
        extension = url.rsplit(".", 1)[-1].lower() if "." in url.rsplit("/", 1)[-1] else ""
        kind_format = _EXTENSIONS.get(extension)
        if kind_format is None:
            raise InvalidRequestError(f"{where}: cannot tell the format of {url!r}")
        kind, fmt = kind_format
        source = {"s3Location": {"uri": url}}
        if kind == "image":
            return {"image": {"format": fmt, "source": source}}
        document_name = context.document_name(name or url)
        return {"document": {"format": fmt, "name": document_name, "source": source}}
    if url.startswith(("http://", "https://")):
        raise InvalidRequestError(
            f"{where}: Bedrock does not fetch URLs; send the file as a data: URL or an s3:// URI"
        )
    raise InvalidRequestError(f"{where}: an image URL must be a data: or s3:// URL")


def _part(part: object, where: str, context: _Context) -> list[dict[str, Any]]:
    """One OpenAI content part as Converse blocks: the block, then a cachePoint if marked."""
    if isinstance(part, str):
        return [{"text": part}] if part.strip() else []
    if not isinstance(part, Mapping):
        raise InvalidRequestError(f"{where} is not a content part object")
    kind = part.get("type")
    block: dict[str, Any] | None
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):
            raise InvalidRequestError(f"{where}.{kind} must be a string")
        block = {"text": text} if text.strip() else None  # Bedrock refuses blank text
    elif kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        if not isinstance(url, str):
            raise InvalidRequestError(f"{where}: image_url needs a url")
        block = _media_block(url, where, context)
    elif kind == "file":
        file = part.get("file")
        if not isinstance(file, Mapping) or not isinstance(file.get("file_data"), str):
            raise InvalidRequestError(
                f"{where}: file needs file_data (Bedrock cannot read OpenAI file ids)"
            )
        block = _media_block(file["file_data"], where, context, file.get("filename"))
    elif kind == "input_audio":
        raise InvalidRequestError(f"{where}: OpenAI audio input is not supported on Bedrock")
    elif kind is None and len(part) == 1 and next(iter(part)) in _NATIVE_BLOCKS:
        block = dict(part)  # already a Converse content block
    else:
        raise InvalidRequestError(f"{where}: content part type {kind!r} is not supported")
    blocks = [block] if block is not None else []
    if part.get("cache_control") is not None and blocks:
        blocks.append(_cache_point(part["cache_control"]))
    return blocks


def _content_blocks(
    content: object, where: str, context: _Context
) -> tuple[list[dict[str, Any]], object]:
    """The Converse blocks of a message's ``content``, and the breakpoint of a blank part
    that had no block before it to move to (``None`` when there was none, or it moved).

    A blank text part is not sent (Bedrock refuses it); its breakpoint goes after the
    block before it, as the Anthropic adapter moves it, so that an injected breakpoint on
    a trailing newline still caches the text it follows.
    """
    if content is None:
        return [], None
    if isinstance(content, str):
        return ([{"text": content}] if content.strip() else []), None
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where}.content must be a string or a list of parts")
    blocks: list[dict[str, Any]] = []
    stray: object = None
    for j, part in enumerate(content):
        converted = _part(part, f"{where}.content[{j}]", context)
        marker = part.get("cache_control") if isinstance(part, Mapping) else None
        if converted or marker is None:
            blocks.extend(converted)
        elif blocks and "cachePoint" not in blocks[-1]:
            blocks.append(_cache_point(marker))
        elif not blocks:
            stray = stray or marker
        # else the block before has its own cachePoint: the same prefix is cached
    return blocks, stray


def _tool_use(call: object, where: str) -> dict[str, Any]:
    function, parsed = function_call(call, where)
    assert isinstance(call, Mapping)  # function_call checked it
    return {"toolUse": {"toolUseId": call.get("id"), "name": function.get("name"), "input": parsed}}


def _reasoning_block(block: Mapping[str, Any]) -> dict[str, Any] | None:
    """A deja ``thinking_blocks`` entry (Anthropic's shape) as a Converse reasoning block."""
    kind = block.get("type")
    if kind == "thinking":
        text: dict[str, Any] = {"text": block.get("thinking") or ""}
        if block.get("signature") is not None:
            text["signature"] = block["signature"]
        return {"reasoningContent": {"reasoningText": text}}
    if kind == "redacted_thinking" and block.get("data") is not None:
        return {"reasoningContent": {"redactedContent": block["data"]}}
    return None


def _tool_result(message: Mapping[str, Any], where: str, context: _Context) -> list[dict[str, Any]]:
    content = message.get("content")
    inner: list[dict[str, Any]] = []
    marked: object = None
    if isinstance(content, str):
        inner = [{"text": content}] if content.strip() else []  # Bedrock refuses blank text
    elif isinstance(content, list):
        for j, part in enumerate(content):
            blocks = _part(part, f"{where}.content[{j}]", context)
            if not blocks and isinstance(part, Mapping) and part.get("cache_control"):
                blocks = [_cache_point(part["cache_control"])]  # a blank part's: kept
            for block in blocks:
                if "cachePoint" in block:
                    marked = marked or block  # a tool result's parts cannot hold one
                else:
                    inner.append(block)
    elif content is not None:
        raise InvalidRequestError(f"{where}.content must be a string or a list of parts")
    blocks = [{"toolResult": {"toolUseId": message.get("tool_call_id"), "content": inner}}]
    if isinstance(marked, dict):
        blocks.append(marked)
    return blocks


def _messages(
    messages: Sequence[Any], context: _Context, warnings: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages) of the Converse body for OpenAI ``messages``."""
    system: list[dict[str, Any]] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidRequestError(f"{where} is not an object")
        role = message.get("role")
        content = message.get("content")
        stray: object = None
        if role in _SYSTEM_ROLES:
            blocks, stray = _content_blocks(content, where, context)
            if any(not ({"text", "cachePoint", "guardContent"} >= set(b)) for b in blocks):
                raise InvalidRequestError(f"{where}: a system message may hold text only")
        elif role == "user":
            blocks, stray = _content_blocks(content, where, context)
        elif role == "assistant":
            blocks = []
            for block in message.get("thinking_blocks") or ():
                converted = _reasoning_block(block) if isinstance(block, Mapping) else None
                if converted is not None:
                    blocks.append(converted)
            text, stray = _content_blocks(content, where, context)
            blocks += text
            for j, call in enumerate(message.get("tool_calls") or ()):
                blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
        elif role == "tool":
            blocks = _tool_result(message, where, context)
        elif role == "function":
            raise InvalidRequestError(f"{where}: role 'function' is not supported; use tools")
        else:
            raise InvalidRequestError(f"{where}: unknown role {role!r}")
        marker = message.get("cache_control")
        if marker is None:
            marker = stray  # a leading blank part's: on the message's last block
        if marker is not None and blocks and "cachePoint" not in blocks[-1]:
            blocks.append(_cache_point(marker))
        if not blocks:
            if marker is not None:
                warnings.append(f"breakpoint at {where} not sent: the message is blank")
            warnings.append(f"{where} has no content Bedrock accepts (blank text): not sent")
            continue
        if role in _SYSTEM_ROLES:
            system.extend(blocks)
            continue
        turn_role = "assistant" if role == "assistant" else "user"
        if turns and turns[-1][0] == turn_role:
            turns[-1][1].extend(blocks)  # Converse wants alternating turns: merge
        else:
            turns.append((turn_role, blocks))
    return system, [{"role": role, "content": blocks} for role, blocks in turns]


def _tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise InvalidRequestError(f"tools[{i}] is not an object")
        if tool.get("type") == "function":
            function = tool.get("function")
            if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
                raise InvalidRequestError(f"tools[{i}].function needs a name")
            spec: dict[str, Any] = {"name": function["name"]}
            if function.get("description"):
                spec["description"] = function["description"]
            schema = function.get("parameters") or {"type": "object", "properties": {}}
            spec["inputSchema"] = {"json": schema}
            if function.get("strict") is True:
                spec["strict"] = True
            out.append({"toolSpec": spec})
        elif "type" not in tool and len(set(tool) - {"cache_control"} & _NATIVE_TOOLS) == 1:
            out.append({k: v for k, v in tool.items() if k != "cache_control"})
        else:
            raise InvalidRequestError(
                f"tools[{i}]: only function tools (or Converse toolSpec/systemTool entries) "
                "are supported on Bedrock"
            )
        if tool.get("cache_control") is not None:
            out.append(_cache_point(tool["cache_control"]))
    return out


def _told_as_text(messages: list[dict[str, Any]]) -> bool:
    """Rewrite, in place, the toolUse and toolResult blocks of ``messages`` as text blocks
    (a conversation that used tools, continued without offering any: Converse requires a
    toolConfig beside such blocks, and one would let the model call tools the caller no
    longer offers). Returns whether there were any."""
    names: dict[object, object] = {}
    changed = False
    for message in messages:
        blocks: list[dict[str, Any]] = []
        for block in message.get("content") or ():
            use = block.get("toolUse")
            result = block.get("toolResult")
            if isinstance(use, Mapping):
                names[use.get("toolUseId")] = use.get("name")
                arguments = json.dumps(use.get("input"), ensure_ascii=False)
                blocks.append({"text": f"[called tool {use.get('name')} with {arguments}]"})
            elif isinstance(result, Mapping):
                name = names.get(result.get("toolUseId"), "a tool")
                blocks.append({"text": f"[result of {name}:]"})
                blocks.extend(result.get("content") or [{"text": "(empty)"}])
            else:
                blocks.append(block)
                continue
            changed = True
        message["content"] = blocks
    return changed


def _tool_config(body: Mapping[str, Any], warnings: list[str]) -> dict[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if body.get("parallel_tool_calls") is False:
        warnings.append("parallel_tool_calls has no Bedrock Converse equivalent: not sent")
    if not tools:
        if choice not in (None, "none", "auto"):
            raise InvalidRequestError("tool_choice needs tools")
        return None
    config: dict[str, Any] = {"tools": _tools(tools)}
    if choice is None or choice == "none":
        if choice == "none":
            warnings.append(
                "tool_choice 'none' has no Bedrock Converse equivalent: not sent (the model "
                "may still call a tool)"
            )
        return config
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise InvalidRequestError("tool_choice.function needs a name")
        config["toolChoice"] = {"tool": {"name": name}}
    elif isinstance(choice, Mapping) and len(choice) == 1 and set(choice) <= _CHOICES:
        config["toolChoice"] = dict(choice)  # already Converse's shape
    else:
        raise InvalidRequestError(f"tool_choice {choice!r} is not supported")
    return config


def _thinking(body: Mapping[str, Any], claude: bool, max_tokens: Any, warnings: list[str]) -> Any:
    """The Claude ``thinking`` field from ``thinking`` or ``reasoning_effort``, if any
    (the Anthropic adapter's budgets, fitted under the caller's limit, ``max_tokens``,
    the same way)."""
    thinking = body.get("thinking")
    effort = body.get("reasoning_effort")
    if thinking is None and (effort is None or effort == "none"):
        return None
    if not claude:
        source = "thinking" if thinking is not None else "reasoning_effort"
        warnings.append(f"{source} is sent to Claude models only on Bedrock: not sent")
        return None
    if thinking is None:
        thinking = effort_thinking(effort, max_tokens)
    return thinking


def _output_config(response_format: object) -> dict[str, Any] | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_schema" and isinstance(response_format, Mapping):
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema"), Mapping):
            raise InvalidRequestError("response_format.json_schema needs a schema object")
        definition: dict[str, Any] = {"schema": json.dumps(spec["schema"], ensure_ascii=False)}
        if isinstance(spec.get("name"), str):
            definition["name"] = spec["name"]
        if isinstance(spec.get("description"), str):
            definition["description"] = spec["description"]
        return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}
    raise InvalidRequestError(
        f"response_format {kind!r} is not supported on Bedrock (text or json_schema only)"
    )


def _request_metadata(metadata: object, warnings: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(metadata, Mapping):
        for key, value in metadata.items():
            if isinstance(key, str) and isinstance(value, str):
                out[key] = value
            else:
                warnings.append(f"metadata.{key} is not a string: not sent")
    return out
