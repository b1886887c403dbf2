"""Upstream helpers both clients share (:class:`deja.AsyncClient` and its generated sync
twin :class:`deja.Client`), kept here once: what a streamed answer that carried no event
was, whether an OpenAI chunk ends a choice, the once-per-process log of what a provider
adapter could not do for a request, the body sent to an OpenAI-compatible upstream, the
typed error of an error answer, how long an upstream asks to wait, and where an SDK-style
``extra_query`` goes.
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Final

import orjson

from deja._openai_args import keyed_api_base
from deja._transport import HTTPAnswer
from deja.controls import caching_switch, merge, parse_controls
from deja.errors import (
    InvalidRequestError,
    ProviderError,
    RateLimitError,
    UpstreamConnectionError,
    UpstreamTimeoutError,
    provider_error_for_status,
)
from deja.request import env_api_base, normalize_api_base, resolve_model

__all__ = [
    "ADAPTED",
    "AUTOMATIC_CACHING",
    "AnswerHeaders",
    "NOT_A_STREAM_BYTES",
    "PROVIDER_OPTIONS",
    "CALL_SETTINGS",
    "TRANSPORT_FIELDS",
    "call_key_fields",
    "compatible_payload",
    "encoded",
    "error_for",
    "choices_asked",
    "finished_choices",
    "not_a_stream",
    "note_answer_headers",
    "encoded_headers",
    "told_headers",
    "stream_error",
    "asked_delay",
    "queried",
    "split_arguments",
    "warn_once",
]

# LiteLLM's per-call provider settings: credentials and the region of the endpoint. They
# pick where and as whom a call is made, never what it asks, so they are not in the key.
PROVIDER_OPTIONS = frozenset(
    {
        "aws_region_name",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_profile_name",
        "aws_bearer_token_bedrock",  # a Bedrock API key, sent instead of a SigV4 signature
        "vertex_project",
        "vertex_location",
        "vertex_credentials",
        "vertex_token_uri",  # where the service account's token comes from (default: its file's)
        "vertex_ai_project",  # LiteLLM's older names
        "vertex_ai_location",
    }
)


logger = logging.getLogger("deja.client")


# An upstream answer's headers a proxy passes on to its caller: the provider's request id
# (what its support asks for; OpenAI's SDKs read x-request-id as ``_request_id``), its
# processing time and its rate limits (a batch job paces itself by them)
_REQUEST_ID_HEADERS: Final = ("x-request-id", "request-id", "x-amzn-requestid")
_TOLD_HEADERS: Final = frozenset({*_REQUEST_ID_HEADERS, "openai-processing-ms"})
_TOLD_PREFIXES: Final = ("x-ratelimit-", "anthropic-ratelimit-")


class AnswerHeaders:
    """The told headers (:data:`answer_headers`) of the last upstream answer a call got
    while ``armed``: the proxy arms it around its own upstream calls only, so that an
    embedding call of the semantic tier, made for the same request, tells nothing."""

    __slots__ = ("armed", "headers")

    def __init__(self) -> None:
        self.armed = False
        self.headers: list[tuple[bytes, bytes]] = []


answer_headers: ContextVar[AnswerHeaders | None] = ContextVar("deja_answer_headers", default=None)
"""Set by the proxy for each request; the clients fill it (a task the call runs in copies
the context, and with it this same object)."""


def note_answer_headers(headers: Mapping[str, str]) -> None:
    """Keep ``headers``' told ones in :data:`answer_headers`, when armed (a successful
    answer's: the last one is the one that answered)."""
    told = answer_headers.get()
    if told is None or not told.armed:
        return
    told.headers = encoded_headers(told_headers(headers))


def told_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of an upstream answer, successful or not, that a proxy passes on
    (names in lower case)."""
    return {
        name: value
        for name, value in ((n.lower(), v) for n, v in headers.items())
        if name in _TOLD_HEADERS or name.startswith(_TOLD_PREFIXES)
    }


def encoded_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """``headers`` as an ASGI answer's (latin-1)."""
    return [
        (name.encode("latin-1", "replace"), value.encode("latin-1", "replace"))
        for name, value in headers.items()
    ]


# how much of a body that carried no event is kept, to say what it was
NOT_A_STREAM_BYTES = 2048

_warned: set[str] = set()
_warned_lock = threading.Lock()
_WARNED_MAX = 1024


def warn_once(provider: str, warnings: Sequence[str]) -> None:
    """Log what a provider adapter could not do for a request (a breakpoint not placed, a
    parameter with no equivalent) once per process and message, not on every call, whichever
    client (sync or async) met it."""
    for warning in warnings:
        text = f"{provider}: {warning}"
        with _warned_lock:
            if text in _warned or len(_warned) >= _WARNED_MAX:
                continue
            _warned.add(text)
        logger.warning("%s", text)


RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504, 529})  # 529: overloaded


def retry_worthy(error: ProviderError) -> bool:
    """Whether a call that failed with ``error`` may succeed sent again: a timeout, a
    connection error, 408, 429, 500, 502-504, Anthropic's 529 (overloaded), and Bedrock's
    424 (the model failed mid-answer: "Retry your request", its API reference says)."""
    if isinstance(error, (UpstreamTimeoutError, UpstreamConnectionError)):
        return True
    status = error.status_code
    return status in RETRY_STATUSES or (status == 424 and error.provider == "bedrock")


def finished_choices(event: Any) -> list[int]:
    """The indexes of the choices an OpenAI chunk ends (those with a finish reason)."""
    choices = event.get("choices") if isinstance(event, dict) else None
    if not isinstance(choices, list):
        return []
    return [
        choice.get("index", 0) if isinstance(choice.get("index", 0), int) else 0
        for choice in choices
        if isinstance(choice, dict) and choice.get("finish_reason") is not None
    ]


def choices_asked(payload: Mapping[str, Any] | bytes) -> int:
    """How many choices an OpenAI request asks for: ``n`` (1 when not a positive int) for
    each prompt of a completions request (a list of strings or of token arrays is one
    prompt each; a list of token ids is one prompt)."""
    if not isinstance(payload, Mapping):
        return 1
    n = payload.get("n")
    each = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    prompt = payload.get("prompt")
    if isinstance(prompt, list) and prompt and not all(isinstance(p, int) for p in prompt):
        return each * len(prompt)
    return each


# The status an error object in a stream stands for (it has no HTTP status of its own), by
# its ``type`` or ``code``: what decides a retry or a failover, as a plain call's status
# does. Anthropic's error types (which OpenAI-compatible gateways use too) and OpenAI's.
ERROR_TYPE_STATUS: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "api_error": 500,
    "server_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def stream_error(
    body: Mapping[str, Any], provider: str, *, what: str = "upstream stream failed"
) -> ProviderError:
    """The typed error of a stream's ``{"error": {...}}`` (an error event, or a JSON body
    answering a stream request): the status its ``code`` names (gateways put the HTTP
    status there), else its ``type``'s or ``code``'s (:data:`ERROR_TYPE_STATUS`). A kind
    unknown here is Anthropic's own failure (500) for Anthropic, as its API reference says
    of new types; for others a plain :class:`~deja.errors.ProviderError` (a bad gateway,
    not retried)."""
    error = body.get("error")
    fields: Mapping[str, Any] = error if isinstance(error, Mapping) else {}
    code, kind = fields.get("code"), fields.get("type")
    status: int | None = None
    if isinstance(code, (int, str)) and not isinstance(code, bool) and str(code).isdigit():
        status = int(code) if 400 <= int(code) <= 599 else None
    if status is None:
        status = ERROR_TYPE_STATUS.get(str(kind)) or ERROR_TYPE_STATUS.get(str(code))
    if status is None and provider == "anthropic":
        status = 500
    named = f"{kind}: " if kind else ""
    message = f"{what}: {named}{fields.get('message', error)}"
    cls = provider_error_for_status(status) if status is not None else ProviderError
    return cls(message, status_code=status, body=dict(body), provider=provider)


def not_a_stream(start: bytes, headers: Mapping[str, str], provider: str) -> ProviderError:
    """The error for a streamed answer that carried no event: the upstream's own error if
    it sent one as JSON (:func:`stream_error`), else what it sent instead."""
    try:
        body: Any = orjson.loads(start) if start else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return stream_error(body, provider)
    kind = headers.get("content-type") or "no content type"
    return ProviderError(
        f"upstream answered a stream request without any event ({kind}, {len(start)} bytes"
        f"{' or more' if len(start) >= NOT_A_STREAM_BYTES else ''})",
        provider=provider,
    )


# Providers that cache prompts by themselves and take no cache_control markers: the
# markers (and the seed's top-level ``cache_control=True`` for DeepSeek) are not sent.
AUTOMATIC_CACHING = frozenset({"openai", "azure", "deepseek"})

# Cache markers providers that cache by themselves do not take: Anthropic's ``cache_control``
# and the ``"cached": True`` flag LiteLLM's guide puts on OpenAI messages and parts.
_MARKERS = ("cache_control", "cached")


def _marked(value: Any) -> bool:
    return isinstance(value, Mapping) and any(m in value for m in _MARKERS)


def _unmarked(value: Any) -> Any:
    if _marked(value):
        return {k: v for k, v in value.items() if k not in _MARKERS}
    return value


def compatible_payload(
    provider: str, payload: dict[str, Any], client_points: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """``payload`` for an OpenAI-compatible upstream, without deja-only fields.

    ``cache_control_injection_points`` is configuration, never sent (nor placed: deja places
    breakpoints in Anthropic, Bedrock and Gemini requests; a gateway such as OpenRouter gets
    the markers a caller wrote, and a warning says the points were not placed). For providers that
    cache automatically (:data:`AUTOMATIC_CACHING`) every cache marker goes
    (``cache_control``, LiteLLM's ``"cached": True``): on the body, messages, content parts
    and tools (OpenAI rejects unknown fields).
    """
    points = payload.pop("cache_control_injection_points", None) or client_points
    if provider not in AUTOMATIC_CACHING:
        if points:
            warn_once(
                provider,
                [
                    "cache_control_injection_points are placed for anthropic/, bedrock/, "
                    "gemini/ and vertex_ai/ models only; this request went as written "
                    "(mark the messages with cache_control yourself to send breakpoints)"
                ],
            )
        return payload
    payload.pop("cache_control", None)
    messages = []
    for original in payload.get("messages") or ():
        message = _unmarked(original)
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list) and any(_marked(part) for part in content):
            message = {**message, "content": [_unmarked(part) for part in content]}
        messages.append(message)
    payload["messages"] = messages
    if isinstance(payload.get("tools"), list):
        payload["tools"] = [_unmarked(tool) for tool in payload["tools"]]
    return payload


def encoded(payload: Any) -> bytes:
    """The JSON body sent upstream; one JSON cannot encode (nested deeper than 254 levels,
    which the cache key's fields are refused for already) is the caller's error."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError as exc:
        raise InvalidRequestError(f"the request cannot be sent as JSON: {exc}") from None


def asked_delay(headers: Mapping[str, str], body: object = None) -> float | None:
    """Seconds the upstream asks to wait: its ``retry-after-ms`` / ``retry-after`` header,
    else a Google error body's ``RetryInfo`` detail (``"retryDelay": "36s"``)."""
    found = _header_retry_after(headers)
    return found if found is not None else _retry_info(body)


def _retry_info(body: object) -> float | None:
    error = body.get("error") if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, Mapping) or not str(detail.get("@type", "")).endswith(
            "google.rpc.RetryInfo"
        ):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            return _seconds(delay[:-1])  # (none for "infs", "1e999s": no usable wait)
    return None


def _header_retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait a ``retry-after-ms`` / ``retry-after`` header asks for; ``None`` for none,
    or one that says nothing usable (``soon``, ``inf``, ``nan``: such a header made every
    call through it an internal error, never failed over)."""
    value = headers.get("retry-after-ms")
    if value is not None:
        seconds = _seconds(value)
        if seconds is not None:
            return seconds / 1000
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _seconds(value: str) -> float | None:
    """A header's number of seconds, at least 0; ``None`` when it is no finite number."""
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def error_for(response: HTTPAnswer, provider: str) -> ProviderError:
    """The typed error for an upstream's error answer (its body read)."""
    try:
        body: Any = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        body = response.text
    message = f"upstream answered {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = f"{message}: {body['error'].get('message', '')}".rstrip(": ")
    elif isinstance(body, dict) and isinstance(
        text := body.get("message", body.get("Message")), str
    ):  # AWS's errors; a refused Bedrock API key says "Message"
        kind = response.headers.get("x-amzn-errortype", "").split(":", 1)[0]
        message = f"{message}: {kind + ': ' if kind else ''}{text}"
    elif isinstance(body, str) and body:
        message = f"{message}: {body[:200]}"
    cls = provider_error_for_status(response.status_code)
    error = cls(message, status_code=response.status_code, body=body, provider=provider)
    if isinstance(error, RateLimitError):
        error.retry_after = asked_delay(response.headers, body)
    # the upstream's request id (what its support asks for) and rate limits, for the
    # library's caller and passed on by the proxy as a success's are
    error.upstream_headers = told = told_headers(response.headers)
    error.request_id = next((told[name] for name in _REQUEST_ID_HEADERS if name in told), None)
    return error


# providers deja reaches through an adapter (chat completions only): it builds their URLs
ADAPTED = frozenset({"anthropic", "bedrock", "gemini", "vertex_ai"})


def queried(
    provider: str,
    base: str | None,
    url_base: str,
    query: Mapping[str, Any],
    body: dict[str, Any],
) -> tuple[str | None, str]:
    """The (keyed api_base, call URL base) of a call with an SDK-style ``extra_query``: its
    parameters go on the URL and are keyed with the endpoint, as :func:`deja.wrap` does.
    An Azure deployment's ``api-version`` becomes the body's ``api_version`` (which the
    client puts on the URL); a provider deja calls through an adapter takes none."""
    query = dict(query)
    if provider == "azure" and "api-version" in query:
        body["api_version"] = query.pop("api-version")
    if not query:
        return base, url_base
    if provider in ADAPTED or provider == "azure" or base is None:
        raise InvalidRequestError(
            f"extra_query is not sent to {provider}: deja builds its URLs"
            + (" (give api-version only)" if provider == "azure" else "")
        )
    return keyed_api_base(base, {}, query), keyed_api_base(url_base, {}, query)


# a call's arguments that are no request fields (split_arguments takes them out)
# LiteLLM's per-call settings of the call itself, not of the request: never sent (OpenAI
# refuses an unknown field with a 400, so every miss failed) and never keyed. deja's
# retries and timeouts are the client's (``max_retries=``, ``timeout=``) or the deployment's.
CALL_SETTINGS = frozenset({"num_retries", "max_retries", "request_timeout"})

TRANSPORT_FIELDS = (
    frozenset({"extra_headers", "extra_body", "extra_query", "cache", "caching"})
    | PROVIDER_OPTIONS
    | CALL_SETTINGS
)


def split_arguments(
    body: dict[str, Any], cache: Any
) -> tuple[dict[str, Any], Any, dict[str, str], dict[str, Any], dict[str, Any]]:
    """A client call's keyword arguments as ``(request fields, cache options, extra
    headers, provider settings, extra query)``: the SDK-style ``extra_*`` arguments,
    ``extra_body`` merged into the fields (its ``cache`` the options when ``cache`` is not
    given), LiteLLM's ``caching`` switch (in the arguments or in ``extra_body``: never sent)
    and the provider settings (:data:`PROVIDER_OPTIONS`) taken out. One reading for a
    call and for :meth:`deja.Cache.key_for`, so that both key alike."""
    if not TRANSPORT_FIELDS.intersection(body):
        return body, cache, {}, {}, {}
    body = dict(body)
    options = {name: body.pop(name) for name in PROVIDER_OPTIONS.intersection(body)}
    extra_headers = dict(body.pop("extra_headers", None) or {})
    query = body.pop("extra_query", None) or {}
    if not isinstance(query, Mapping):
        raise InvalidRequestError("extra_query must be a mapping of query parameters")
    extra_body = dict(body.pop("extra_body", None) or {})
    if "cache" in extra_body:  # deja.wrap() convention: controls ride in extra_body
        extra = extra_body.pop("cache")
        cache = cache if cache is not None else extra
    if "cache" in body:
        raise InvalidRequestError("pass cache options as cache=..., not inside the body")
    for source in (body, extra_body):
        if "caching" in source:
            cache = merge(parse_controls(cache), caching_switch(source.pop("caching")))
        for name in CALL_SETTINGS.intersection(source):
            del source[name]
    body.update(extra_body)
    return body, cache, extra_headers, options, dict(query)


def call_key_fields(
    model: str, api_base: str | None, arguments: Mapping[str, Any]
) -> tuple[Any, str | None, dict[str, Any]]:
    """(the cache options, the keyed api_base, the request fields) of a chat call's
    arguments (``cache`` among them) as :func:`split_arguments` reads them, the
    ``extra_query`` keyed with the endpoint: what :meth:`deja.Cache.key_for` keys by."""
    fields = dict(arguments)
    cache = fields.pop("cache", None)
    fields, cache, _, _, query = split_arguments(fields, cache)
    if query:
        provider, _ = resolve_model(model)
        base = normalize_api_base(api_base or env_api_base(provider), provider)
        api_base, _ = queried(provider, base, base or "", query, fields)
    return cache, api_base, fields
