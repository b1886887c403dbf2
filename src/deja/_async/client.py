"""The client: OpenAI-compatible chat completions and embeddings through the cache.

Works against any OpenAI-compatible upstream (OpenAI, DeepSeek, Groq, Mistral, Ollama,
vLLM, llama.cpp...). One pooled HTTP client per deja client; per-call timeouts; retries
with exponential backoff that honour ``Retry-After``; upstream errors translated into the
typed :class:`~deja.errors.ProviderError` family and never cached.

The source of truth is src/deja/_async/client.py; the sync twin in src/deja/_sync/ is
generated from it by scripts/unasync.py.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, overload
from urllib.parse import quote

import httpx2
import orjson

from deja._aio import off_loop  # unasync:
from deja._async.cache import AsyncCache, check_parts
from deja._async.context_caches import AsyncContextCaches
from deja._async.embeddings import acached_embeddings, embedding_items
from deja._async.singleflight import AsyncSingleFlight
from deja._async.streams import AsyncCachedStream, aopen_uncached
from deja._embedding_items import embedding_input_limit
from deja._openai_args import MAX_RETRY_AFTER, call_patience
from deja._transport import (
    AsyncHTTP,
    AsyncHTTPResponse,
    ChunkStream,
    async_http_client,
    check_http_client,
    header_text,
)
from deja._upstream import (
    ADAPTED,
    NOT_A_STREAM_BYTES,
    asked_delay,
    choices_asked,
    compatible_payload,
    encoded,
    error_for,
    finished_choices,
    not_a_stream,
    note_answer_headers,
    queried,
    retry_worthy,
    split_arguments,
    stream_error,
    warn_once,
)
from deja._upstream import (
    PROVIDER_OPTIONS as _PROVIDER_OPTIONS,
)
from deja._waits import is_seconds
from deja.controls import CacheControl, parse_controls
from deja.errors import (
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    RateLimitError,
    UpstreamConnectionError,
    UpstreamTimeoutError,
)
from deja.metrics import Metrics, NullMetrics
from deja.prices import PriceTable, packaged_prices
from deja.providers.anthropic import AnthropicProvider, AnthropicRequest
from deja.providers.bedrock import (
    AwsCredentials,
    BedrockApiKey,
    BedrockProvider,
    BedrockRequest,
    resolve_aws,
    resolve_region,
)
from deja.providers.context_cache import ContextCache
from deja.providers.eventstream import EventStreamDecoder, to_events
from deja.providers.gemini import (
    ContextCachePlan,
    GeminiProvider,
    GeminiRequest,
    cached_content_gone,
    parse_cached_content,
)
from deja.providers.google_auth import AccessToken, ServiceAccount, parse_token_response
from deja.providers.planner import Plan
from deja.providers.usage import cache_tokens, normalize_usage
from deja.request import (
    PROVIDER_API_BASES,
    Request,
    check_encoding_format,
    env_api_base,
    is_openais,
    redact_url,
    resolve_model,
    upstream_base,
)
from deja.response import ChatCompletion, ChatCompletionChunk, CreateEmbeddingResponse
from deja.result import CacheInfo
from deja.streaming import SSEDecoder, StreamFormatError

__all__ = ["AsyncChatCompletionStream", "AsyncClient"]

logger = logging.getLogger(__name__)
# an HTTP header name (RFC 9110's token)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

_T = TypeVar("_T")

# Providers whose wire format is OpenAI's; the others get their own adapters.
_OPENAI_COMPATIBLE = frozenset(PROVIDER_API_BASES) - ADAPTED
# Providers whose endpoint is per region (or project): api_base is optional for them.
_REGIONAL = frozenset({"bedrock", "vertex_ai"})
# A context cache Gemini refused to make (too small, say) is not asked for again so soon.
_REFUSED_CACHE_SECONDS = 600.0
# the most (model, api_base) resolutions a client remembers
_ENDPOINT_MEMO = 4096
# an upstream answer at least this large is parsed in a thread
_BIG = 1 << 20  # bytes
# How long resolved AWS credentials are reused: frozen credentials from the chain have at
# least 10 minutes left (botocore refreshes 15 minutes before expiry).
_AWS_CREDENTIALS_SECONDS = 300.0
# Call options naming SigV4 credentials: explicit, they win over AWS_BEARER_TOKEN_BEDROCK.
_AWS_SIGNING_OPTIONS = ("aws_access_key_id", "aws_secret_access_key", "aws_profile_name")
# Statuses worth retrying: the request may well succeed a moment later.
# Body fields that configure the call rather than the request sent upstream.
# providers served without a key (local servers): the client's key is not needed there
_KEYLESS = frozenset({"ollama", "lm_studio", "vllm", "hosted_vllm", "llamacpp"})
_NO_METRICS = NullMetrics()
_NO_OPTIONS: Mapping[str, Any] = {}
# (provider, upstream model name, api_base for the key, base URL for calls; "" when the
# provider's adapter builds the URL from the region)
_Endpoint = tuple[str, str, str | None, str]
_AZURE_API_VERSION = "2024-10-21"


class StreamTranslator(Protocol):
    """A provider's stream events in, OpenAI ``chat.completion.chunk`` dicts out."""

    @property
    def finished(self) -> bool: ...
    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]: ...


class _BedrockEvents:
    """Bedrock's binary event stream (``application/vnd.amazon.eventstream``) decoded into
    ``{event_type: payload}`` dicts; an exception event raises the typed error."""

    def __init__(self) -> None:
        self._decoder = EventStreamDecoder()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return to_events(self._decoder.feed(data))


class _Attempts:
    """How often one call was retried so far: a stream's sends and the reads of its first
    event share the one ``max_retries``, as a plain call's sends do. ``started``: when the
    last attempt was sent (a stream's lasts until its end)."""

    __slots__ = ("made", "started")

    def __init__(self) -> None:
        self.made = 0
        self.started = 0.0


class _Primed:
    """A stream whose first chunks were read already, while the call could still be
    retried (nothing had been passed on); then the rest of the stream."""

    def __init__(self, first: list[dict[str, Any]], rest: AsyncIterator[dict[str, Any]]) -> None:
        self._first = first
        self._rest = rest

    def __aiter__(self) -> _Primed:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._first:
            return self._first.pop(0)
        return await self._rest.__anext__()

    async def aclose(self) -> None:
        """Close the upstream (read to its end or not)."""
        self._first = []
        await _close_events(self._rest)


# chunks read ahead at most while none carries any of the answer yet
_PRIMING_CHUNKS = 8


def _carries_answer(chunk: Mapping[str, Any]) -> bool:
    """Whether a chunk carries some of the answer (text, a tool call, reasoning, a finish
    reason, usage), not only the role that opens it: a provider's start event (Anthropic's
    ``message_start``, Bedrock's ``messageStart``) becomes such a chunk before anything is
    generated, and an overload may still follow it."""
    if chunk.get("usage"):
        return True
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, Mapping) or choice.get("finish_reason") is not None:
            return True
        delta = choice.get("delta")
        if not isinstance(delta, Mapping):
            return True
        if any(value not in (None, "", [], {}) for key, value in delta.items() if key != "role"):
            return True
    return False


async def _close_events(events: AsyncIterator[dict[str, Any]]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


def _with_points(payload: dict[str, Any], points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``payload`` with ``points`` after its own ``cache_control_injection_points``."""
    if points:
        own = payload.get("cache_control_injection_points") or []
        payload["cache_control_injection_points"] = [*own, *points]
    return payload


def _provider_options(options: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not options:
        return _NO_OPTIONS
    unknown = set(options) - _PROVIDER_OPTIONS
    if unknown:
        raise InvalidRequestError(f"unknown provider options: {', '.join(sorted(unknown))}")
    return options


def _option(options: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = options.get(name)
        if value:
            return str(value)
    return None


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _sendable_key(key: str | None, provider: str) -> str | None:
    """``key`` as a header carries it (:func:`~deja._transport.header_text`); one it cannot
    carry is an :class:`InvalidRequestError` naming the provider, not the key."""
    if not key:
        return key
    if not isinstance(key, str):  # (a call's own api_key: the client's own is checked)
        raise InvalidRequestError(f"api_key must be a str, not {type(key).__name__}")
    try:
        return header_text(key)
    except ValueError as exc:
        raise InvalidRequestError(f"the API key for {provider} {exc}") from None


def _bedrock_api_key(options: Mapping[str, Any], api_key: str | None) -> str | None:
    """The Bedrock API key to send as a bearer token, or ``None`` to sign with SigV4.

    The call's ``aws_bearer_token_bedrock``, else the call's own ``api_key`` — never the
    client's default key or ``<PROVIDER>_API_KEY``, which are other providers' — else,
    unless the call names SigV4 credentials (:data:`_AWS_SIGNING_OPTIONS`), the
    environment's ``AWS_BEARER_TOKEN_BEDROCK``.
    """
    explicit = _option(options, "aws_bearer_token_bedrock") or api_key
    if explicit:
        return _sendable_key(explicit, "bedrock")
    if _option(options, *_AWS_SIGNING_OPTIONS) is not None:
        return None
    return _sendable_key(_env("AWS_BEARER_TOKEN_BEDROCK"), "bedrock")


def _region_and_key(region: str | None, profile: str | None, key: str) -> tuple[str, BedrockApiKey]:
    """The region to call with a Bedrock API key: no AWS credentials are looked for."""
    return resolve_region(region, profile=profile), BedrockApiKey(key)


def _load_service_account(source: Any, token_uri: str | None) -> ServiceAccount:
    """A service account from a key file path, the key file's JSON text, or its mapping;
    ``token_uri`` (when set) replaces the file's token endpoint."""
    if isinstance(source, Mapping):
        return ServiceAccount.from_info(source, token_uri=token_uri)
    text = str(source).strip()
    if text.startswith("{"):
        try:
            info = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"vertex_credentials is not valid JSON: {exc}") from exc
        return ServiceAccount.from_info(info, token_uri=token_uri)
    return ServiceAccount.from_file(text, token_uri=token_uri)


@dataclass(frozen=True, slots=True)
class _GoogleAuth:
    api_key: str | None = None
    token: str | None = None
    project: str | None = None
    location: str | None = None


def _bill_context_cache(usage: object, entry: ContextCache, now: float) -> None:
    """Put the context cache made for a call into its ``usage``, where prices count it:
    the tokens written (at the input price) and the token-hours of storage bought."""
    if not isinstance(usage, dict):
        return
    hours = max(0.0, entry.expire_time - now) / 3600.0
    usage["context_cache"] = {
        "created_tokens": entry.tokens,
        "storage_token_hours": round(entry.tokens * hours, 3),
    }


# What a success body holds when it is an answer (chat/completions, embeddings, Anthropic,
# Gemini, Bedrock, a context cache's record): one beside an "error" object is no failure.
_ANSWER_FIELDS = frozenset(
    {"choices", "data", "content", "candidates", "output", "name", "embedding", "embeddings"}
)


def upstream_error_label(error: ProviderError) -> str:
    """The ``error`` label of ``deja_upstream_errors_total`` for ``error`` (a bounded
    set): the status code the upstream answered (400-599), ``timeout``,
    ``pool_timeout`` (no free connection of this client's within the timeout: never sent),
    ``connection``, else ``bad_answer`` (a success status with a body or stream deja
    cannot use)."""
    if isinstance(error, UpstreamTimeoutError):
        return "pool_timeout" if isinstance(error.__cause__, httpx2.PoolTimeout) else "timeout"
    if isinstance(error, UpstreamConnectionError):
        return "connection"
    status = error.status_code
    if isinstance(status, int) and 400 <= status <= 599:
        return str(status)
    return "bad_answer"


def _request_id(headers: Mapping[str, str]) -> str | None:
    """AWS's request id, the id of a Converse answer (Converse sends none in the body)."""
    found = headers.get("x-amzn-requestid")
    return f"chatcmpl-{found}" if found else None


class EventDecoder(Protocol):
    """Turns a streamed body's bytes, as they arrive, into the events they complete."""

    def feed(self, data: bytes) -> Sequence[Any]: ...


class AsyncChatCompletionStream:
    """A streamed chat completion: iterate :class:`~deja.response.ChatCompletionChunk`\\ s.

    ``cache`` says how it is served. Close it (or use ``async with``) when you stop
    early: the upstream is closed and nothing is stored.
    """

    def __init__(self, stream: AsyncCachedStream) -> None:
        self._stream = stream
        self.cache: CacheInfo = stream.info

    def __aiter__(self) -> AsyncChatCompletionStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        return ChatCompletionChunk(await self._stream.__anext__())

    async def aclose(self) -> None:
        """Stop reading (closes the upstream if nobody else reads it)."""
        await self._stream.aclose()

    async def __aenter__(self) -> AsyncChatCompletionStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class AsyncClient:
    """Chat completions and embeddings from any OpenAI-compatible API, through a cache.

    Keyword-only options: ``cache`` (an :class:`~deja.AsyncCache`; ``None`` calls the
    upstream every time), ``api_key`` and ``api_base`` (defaults: ``OPENAI_API_KEY`` /
    ``OPENAI_BASE_URL``, or ``<PROVIDER>_API_KEY`` and the provider's endpoint for a
    ``provider/model`` name; the client's ``api_key`` goes to its own endpoint only, its
    ``api_base`` or else OpenAI's, never to another provider's), ``timeout`` seconds to
    connect and between two reads of an answer, as the OpenAI SDK's httpx timeout bounds each
    (a stream: between two chunks; an upstream sending its answer slowly may take longer in
    all; a call joining an identical one in flight waits no longer than its own attempts
    could take, and then asks for itself), ``max_retries`` on 408, 429 and 5xx answers, on
    connection errors and on timeouts, as the OpenAI SDK retries (backoff doubles from
    ``backoff`` seconds, with jitter; ``Retry-After`` is honoured up to 60 s; a call may
    take up to ``(max_retries + 1) * timeout`` plus the pauses), ``http_client`` to bring your own
    pooled HTTP client, ``max_connections`` for the one deja creates on first use
    (deja's own HTTP/1.1 client for async — httpx2 when ``HTTP_PROXY``, ``HTTPS_PROXY``
    or ``ALL_PROXY`` is set — and httpx2 for sync).
    ``azure/<deployment>`` models call Azure OpenAI (``api_base`` = the resource endpoint,
    ``api-key`` header, ``api_version`` in the body or ``AZURE_API_VERSION``).
    ``cache_control_injection_points`` (LiteLLM's format) place prompt-cache breakpoints on
    providers that need them (``anthropic/...`` and ``bedrock/...`` models; on ``gemini/`` and
    ``vertex_ai/`` ones they make a context cache, billed by the hour), after a request's own.
    Usage comes back in OpenAI's schema for every provider (cached tokens in
    ``prompt_tokens_details.cached_tokens`` and the cache-write fields); ``metrics`` (default:
    the cache's) counts them in ``deja_provider_cached_tokens_total``, and ``prices``
    (default: the cache's, else the packaged table) prices them and uncached answers.

    ``bedrock/`` models call Bedrock Converse, with a Bedrock API key (the call's
    ``aws_bearer_token_bedrock`` or ``api_key``, or ``AWS_BEARER_TOKEN_BEDROCK`` unless the
    call names AWS keys or a profile) or SigV4 (``aws_*`` call options or the AWS
    chain), ``gemini/`` and ``vertex_ai/`` models Gemini (an API key, or a service
    account's token and the ``vertex_*`` options); Gemini context caches are made from
    ``cache_control`` markers and kept in the cache's store (see
    :meth:`acreate_context_cache`), or in ``context_caches`` when given (a client that
    serves a cache it does not hold, as the proxy's does, passes one over that cache's
    store: every process sharing the store then shares each resource). ``clock`` (wall
    clock) times access tokens and context caches.
    """

    def __init__(
        self,
        *,
        cache: AsyncCache | None = None,
        api_key: str | None = None,
        api_base: str | None = None,
        timeout: float = 600.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        http_client: AsyncHTTP | None = None,
        max_connections: int = 100,
        headers: Mapping[str, str] | None = None,
        cache_control_injection_points: Sequence[Mapping[str, Any]] = (),
        metrics: Metrics | None = None,
        prices: PriceTable | None = None,
        context_caches: AsyncContextCaches | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if cache is not None and not isinstance(cache, AsyncCache):
            raise TypeError(
                f"cache must be a deja.AsyncCache, not {type(cache).__name__}"
                " (a store goes inside one: AsyncCache(store=...))"
            )
        for name, value in (("timeout", timeout), ("backoff", backoff)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number of seconds, not {value!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise TypeError(f"max_retries must be an int, not {max_retries!r}")
        if max_retries < 0 or not 0 <= backoff < float("inf"):
            raise ValueError("max_retries and backoff must be >= 0")
        # NaN too, as a call's own timeout is checked; and an int past a float's range
        if not is_seconds(timeout):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        # each of these failed only at the first call (some after the upstream answered,
        # the answer then lost), or made every call wait out its timeout (no connection)
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise TypeError(f"max_connections must be an int, not {max_connections!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, not {max_connections}")
        if api_base is not None and not isinstance(api_base, str):
            raise TypeError(f"api_base must be a URL string, not {type(api_base).__name__}")
        if headers is not None and (
            not isinstance(headers, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise TypeError(f"headers must map header names to str values, not {headers!r:.80}")
        for field, text in (headers or {}).items():
            # (a line break failed every call as "cannot reach", a non-ASCII value with a
            # UnicodeEncodeError from the transport)
            if not _HEADER_NAME.fullmatch(field):
                raise ValueError(f"header name {field!r} is not an HTTP header name")
            try:
                header_text(text)
            except ValueError as exc:
                raise ValueError(f"header {field!r} {exc}") from None
        if http_client is not None:
            sends_async = True  # unasync: sends_async = False
            check_http_client(http_client, asynchronous=sends_async)
        check_parts(metrics=metrics, prices=prices, clock=clock)
        if api_key is not None:
            if not isinstance(api_key, str):
                raise TypeError(f"api_key must be a str, not {type(api_key).__name__}")
            try:
                api_key = header_text(api_key)
            except ValueError as exc:
                raise ValueError(f"api_key {exc}") from None
        self.cache = cache
        self.api_key = api_key
        self.api_base = api_base
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.headers = dict(headers or {})
        self._http = http_client
        self._owns_http = http_client is None
        self._max_connections = max_connections
        self._http_lock = threading.Lock()
        self._http_pid = os.getpid()
        self.injection_points = tuple(cache_control_injection_points)
        self.metrics = metrics
        self.prices = prices
        self._clock = clock
        self._anthropic = AnthropicProvider()
        self._bedrock = BedrockProvider()
        self._gemini = GeminiProvider()
        self._context_caches = context_caches
        self._refused_caches: dict[str, float] = {}
        self._accounts: dict[str, ServiceAccount] = {}
        self._tokens: dict[str, AccessToken] = {}
        self._token_flight: AsyncSingleFlight[AccessToken] = AsyncSingleFlight()
        self._aws: dict[
            tuple[str | None, ...], tuple[float, tuple[str, AwsCredentials | BedrockApiKey]]
        ] = {}
        self._endpoints: dict[tuple[str, str | None, str | None], _Endpoint] = {}

    # -- public calls -------------------------------------------------------------------

    @overload
    async def acompletion(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        stream: Literal[False] = False,
        cache: Mapping[str, Any] | CacheControl | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        **body: Any,
    ) -> ChatCompletion: ...

    @overload
    async def acompletion(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        stream: Literal[True],
        cache: Mapping[str, Any] | CacheControl | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        **body: Any,
    ) -> AsyncChatCompletionStream: ...

    @overload
    async def acompletion(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        stream: bool,
        cache: Mapping[str, Any] | CacheControl | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        **body: Any,
    ) -> ChatCompletion | AsyncChatCompletionStream: ...

    async def acompletion(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        cache: Mapping[str, Any] | CacheControl | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        **body: Any,
    ) -> ChatCompletion | AsyncChatCompletionStream:
        """A chat completion, served from the cache when possible.

        ``body`` holds the request fields (``temperature``, ``tools``, ``stream``...),
        sent as given; ``cache`` holds the per-request cache options (never sent).
        ``stream=True`` returns an :class:`AsyncChatCompletionStream`.
        """
        body, control, extra_headers, options, query = self._split(body, cache)
        if self.cache is None and control is not None:
            parse_controls(control)  # bad options are errors with or without a cache
        provider, name, base, url_base = self._endpoint(model, api_base)
        api_key = self._call_key(provider, api_key, api_base)
        if query:
            base, url_base = queried(provider, base, url_base, query, body)
        # (a body field named like one of Request.chat's arguments, tenant or api_base, is
        # a field to send: a body is read as the proxy reads one)
        request = Request.from_body({**body, "model": model, "messages": messages}, api_base=base)
        seconds = self._seconds(timeout)
        # The upstream body and headers are built only when the upstream is called: a hit
        # must not pay for them.
        if body.get("stream"):
            stream_options = body.get("stream_options") or {}
            if not isinstance(stream_options, Mapping):
                raise InvalidRequestError(
                    f"stream_options must be an object, not {stream_options!r:.80}"
                )
            include_usage = bool(stream_options.get("include_usage"))

            async def open_stream() -> AsyncIterator[dict[str, Any]]:
                payload = {**body, "model": name, "messages": list(request.messages)}
                return await self._chat_stream(
                    provider,
                    url_base,
                    payload,
                    api_key=api_key,
                    extra_headers=extra_headers,
                    timeout=seconds,
                    options=options,
                )

            if self.cache is None:
                stream = await aopen_uncached(
                    open_stream,
                    include_usage=include_usage,
                    cost=functools.partial(self._prices().response_cost, request.upstream),
                )
            else:
                stream = await self.cache.stream(  # chunks reach callers read-only
                    request,
                    open_stream,
                    control=control,
                    include_usage=include_usage,
                    copy_chunks=False,
                    # joining an identical stream: each chunk within this call's timeout,
                    # the first within its attempts and their pauses
                    timeout=seconds,
                    first_timeout=call_patience(seconds, self.max_retries),
                )
            return AsyncChatCompletionStream(stream)

        async def call() -> dict[str, Any]:
            payload = {**body, "model": name, "messages": list(request.messages)}
            return await self._chat(
                provider,
                url_base,
                payload,
                api_key=api_key,
                extra_headers=extra_headers,
                timeout=seconds,
                options=options,
            )

        if self.cache is None:
            answer = await call()
            cost = self._prices().response_cost(request.upstream, answer)
            return ChatCompletion(answer, CacheInfo("bypass", "", cost_usd=cost))
        # joining an identical call in flight, wait as long as this call's own attempts and
        # the pauses between them (Retry-After: up to 60 s each) could take
        patience = call_patience(seconds, self.max_retries)
        result = await self.cache.fetch(request, call, control=control, timeout=patience)
        response = result.response
        assert response is not None  # fetch returns a response or raises
        return ChatCompletion(response, result.info)

    async def aembedding(
        self,
        *,
        model: str,
        input: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]],
        cache: Mapping[str, Any] | CacheControl | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        **body: Any,
    ) -> CreateEmbeddingResponse:
        """Embeddings, cached per input item: only the items not in the cache go upstream.

        The upstream is always asked for floats; ``encoding_format="base64"`` is applied
        to the answer, so both formats share cache entries.
        """
        body, control, extra_headers, _, query = self._split(body, cache)
        encoding = body.pop("encoding_format", None)
        check_encoding_format(encoding)
        provider, name, base, url_base = self._endpoint(model, api_base)
        api_key = self._call_key(provider, api_key, api_base)
        if provider in ADAPTED:
            raise InvalidRequestError(f"deja calls {provider} for chat completions only")
        if query:
            base, url_base = queried(provider, base, url_base, query, body)
        headers = self._headers(provider, api_key, extra_headers)
        seconds = self._seconds(timeout)

        async def fetch_missing(items: list[Any]) -> Mapping[str, Any]:
            payload = {**body, "model": name, "input": items, "encoding_format": "float"}
            url = self._url(provider, url_base, payload, "/embeddings")
            return await self._post(url, payload, headers, seconds, provider)

        batch = await acached_embeddings(
            cache=self.cache,
            model=model,
            items=embedding_items(input),
            params=body,
            api_base=base,
            control=control,
            fetch_missing=fetch_missing,
            # joining an identical batch in flight, wait as long as this call could take
            timeout=call_patience(seconds, self.max_retries),
            prices=self._prices(),
            max_inputs=embedding_input_limit(provider),
        )
        return CreateEmbeddingResponse(batch.response(encoding_format=encoding), batch.info)

    async def acreate_context_cache(
        self,
        *,
        model: str,
        system_instruction: str | None = None,
        messages: Sequence[Mapping[str, Any]] = (),
        tools: Sequence[Mapping[str, Any]] | None = None,
        ttl: int = 3600,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> ContextCache:
        """Make a Gemini context cache of a prompt prefix, to name in later requests.

        The prefix is ``system_instruction``, ``messages`` (OpenAI format) and ``tools``;
        it lives ``ttl`` seconds. Pass the result's ``id`` as a request's
        ``context_cache_id``; such a request sends no system message or tools (the cache
        holds them). Requests whose ``cache_control`` markers cover the same prefix reuse
        it too. ``options``: the ``vertex_*`` settings of a ``vertex_ai/`` model. Raises
        :class:`~deja.errors.InvalidRequestError` for a model that is not Gemini's, and
        the provider's error when it refuses (a prefix below the model's minimum size).
        """
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
            raise InvalidRequestError("ttl must be a whole number of seconds >= 1")
        provider, name, _, url_base = self._endpoint(model, api_base)
        if provider not in ("gemini", "vertex_ai"):
            raise InvalidRequestError(
                f"context caches are Gemini's (gemini/ or vertex_ai/ models), not {provider}'s"
            )
        unknown = set(options) - _PROVIDER_OPTIONS
        if unknown:
            raise InvalidRequestError(f"unknown options: {', '.join(sorted(unknown))}")
        prefix: list[dict[str, Any]] = []
        if system_instruction:
            prefix.append({"role": "system", "content": system_instruction})
        prefix.extend(dict(m) for m in messages)
        if not prefix and not tools:
            raise InvalidRequestError(
                "nothing to cache: give a system_instruction, messages or tools"
            )
        payload: dict[str, Any] = {
            "model": name,
            # a marker ends the prefix; the request's last turn is never part of a cache, so
            # a placeholder turn stands after it (it is not sent anywhere)
            "messages": [*prefix, {"role": "user", "content": "."}],
            "cache_control_injection_points": [
                {"location": "message", "index": len(prefix) - 1}
                if prefix
                else {"location": "tool"}
            ],
        }
        if tools:
            payload["tools"] = list(tools)
        wire = await self._gemini_request(
            provider, payload, url_base, options, api_key, {}, stream=False
        )
        plan = wire.context_cache
        if plan is None:
            raise InvalidRequestError("nothing to cache in the given prefix")
        seconds = self._seconds(timeout)
        made = await self._create_context_cache(wire, plan, seconds, provider, ttl=ttl)
        await self._caches().arecord(self._cache_digest(wire, plan), made)
        return made

    async def adelete_context_cache(
        self,
        *,
        model: str,
        name: str,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> None:
        """Delete Gemini context cache ``name`` (its ``id``) now, ending its storage cost.

        A request whose markers name that prefix afterwards makes a new cache. Raises the
        provider's :class:`~deja.errors.NotFoundError` when there is no such cache.
        """
        provider, bare, _, url_base = self._endpoint(model, api_base)
        if provider not in ("gemini", "vertex_ai"):
            raise InvalidRequestError(
                f"context caches are Gemini's (gemini/ or vertex_ai/ models), not {provider}'s"
            )
        auth = await self._gemini_auth(provider, options, api_key)
        endpoint, _ = self._gemini.endpoint(
            f"{provider}/{bare}",
            api_base=url_base or None,
            vertex_project=auth.project,
            vertex_location=auth.location,
        )
        headers = {"content-type": "application/json"}
        if auth.api_key:
            headers["x-goog-api-key"] = auth.api_key
        if auth.token:
            headers["authorization"] = f"Bearer {auth.token}"
        seconds = self._seconds(timeout)
        url = endpoint.cached_content_url(name)
        try:
            await self._post(url, b"", headers, seconds, provider, method="DELETE")
        except ProviderError as exc:
            # Google AI says 403 "CachedContent not found (or permission denied)" for a
            # cache that is not there: the NotFoundError this method promises
            if exc.status_code != 403 or not cached_content_gone(exc.status_code, exc.body):
                raise
            raise NotFoundError(
                str(exc), status_code=exc.status_code, body=exc.body, provider=exc.provider
            ) from exc
        self._metrics().context_cache(provider, "deleted")
        if self._context_caches is not None:  # the next call makes a new one at once
            await self._context_caches.aforget_name(name)

    async def arequest(
        self,
        path: str,
        payload: Mapping[str, Any],
        *,
        model: str,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        extra_headers: Mapping[str, str] | None = None,
        provider_options: Mapping[str, Any] | None = None,
        injection_points: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """POST an OpenAI-format body to ``model``'s upstream, with no cache: its JSON answer.

        ``path`` is the route under the API base (``/chat/completions``); ``model`` picks
        the endpoint and is sent as the provider's model name. ``provider_options`` are the
        ``aws_*`` / ``vertex_*`` settings of Bedrock and Vertex AI; ``injection_points``
        (a deployment's ``cache_control_injection_points``) apply after the body's own.
        Retries and errors as for :meth:`acompletion`. The proxy calls upstreams through
        this.
        """
        provider, name, _, url_base = self._endpoint(model, api_base)
        seconds = self._seconds(timeout)
        if path == "/chat/completions":  # any provider, translated to and from OpenAI's format
            return await self._chat(
                provider,
                url_base,
                _with_points({**payload, "model": name}, injection_points),
                api_key=api_key,
                extra_headers=extra_headers or {},
                timeout=seconds,
                options=_provider_options(provider_options),
            )
        if provider in ADAPTED:
            raise InvalidRequestError(f"deja calls {provider} for chat completions only")
        headers = self._headers(provider, api_key, extra_headers or {})
        body = {**payload, "model": name}
        return await self._post(
            self._url(provider, url_base, body, path), body, headers, seconds, provider
        )

    async def astream(
        self,
        path: str,
        payload: Mapping[str, Any],
        *,
        model: str,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        extra_headers: Mapping[str, str] | None = None,
        provider_options: Mapping[str, Any] | None = None,
        injection_points: Sequence[Mapping[str, Any]] = (),
    ) -> AsyncIterator[dict[str, Any]]:
        """Like :meth:`arequest` for ``stream: true``: an iterator of the SSE events' JSON."""
        provider, name, _, url_base = self._endpoint(model, api_base)
        seconds = self._seconds(timeout)
        body = {**payload, "model": name}
        if path == "/chat/completions":
            return await self._chat_stream(
                provider,
                url_base,
                _with_points(body, injection_points),
                api_key=api_key,
                extra_headers=extra_headers or {},
                timeout=seconds,
                options=_provider_options(provider_options),
            )
        if provider in ADAPTED:
            raise InvalidRequestError(f"deja calls {provider} for chat completions only")
        headers = self._headers(provider, api_key, extra_headers or {})
        url = self._url(provider, url_base, body, path)
        open_events = functools.partial(
            self._open_stream, url, body, headers, seconds, provider, openai_chunks=True
        )
        return await self._primed(lambda attempts: open_events(attempts=attempts))

    async def aclose(self) -> None:
        """Close the HTTP client deja created (not one you passed in)."""
        if self._http is not None and self._owns_http:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- internals ----------------------------------------------------------------------

    def _split(
        self, body: dict[str, Any], cache: Mapping[str, Any] | CacheControl | None
    ) -> tuple[
        dict[str, Any],
        Mapping[str, Any] | CacheControl | None,
        dict[str, str],
        dict[str, Any],
        dict[str, Any],
    ]:
        """Separate transport options from the request body
        (:func:`deja._upstream.split_arguments`)."""
        try:
            return split_arguments(body, cache)
        except (TypeError, ValueError):  # (diagnosed here: a call pays for no check)
            for name in ("extra_body", "extra_headers"):
                value = body.get(name)
                if value is not None and not isinstance(value, Mapping):
                    raise InvalidRequestError(
                        f"{name} must be an object (a dict), not {value!r:.80}"
                    ) from None
            raise

    async def _chat(
        self,
        provider: str,
        url_base: str,
        payload: dict[str, Any],
        *,
        api_key: str | None,
        extra_headers: Mapping[str, str],
        timeout: float,
        options: Mapping[str, Any] = _NO_OPTIONS,
    ) -> dict[str, Any]:
        """One chat completion from the upstream, in OpenAI's format whatever its own."""
        if provider in ("gemini", "vertex_ai"):
            gemini = await self._gemini_request(
                provider, payload, url_base, options, api_key, extra_headers, stream=False
            )

            async def post(sent: GeminiRequest) -> dict[str, Any]:
                return await self._post(sent.url, sent.json, sent.headers, timeout, provider)

            data, created = await self._gemini_send(gemini, post, timeout, provider)
            parsed = self._parsed(provider, self._gemini.parse_response, data, model=gemini.model)
            answer = self._account(provider, parsed)
            if created is not None:
                _bill_context_cache(answer.get("usage"), created, self._clock())
            return answer
        if provider == "bedrock":
            bedrock = await self._bedrock_request(
                payload, url_base, options, api_key, extra_headers, stream=False
            )
            data, headers = await self._post_json(
                bedrock.url, bedrock.content, bedrock.headers, timeout, provider
            )
            answer = self._parsed(
                provider,
                self._bedrock.parse_response,
                data,
                model=payload["model"],
                response_id=_request_id(headers),
            )
            return self._account(provider, answer)
        if provider == "anthropic":
            wire = self._anthropic_request(payload, url_base, api_key, extra_headers)
            data = await self._post(wire.url, wire.json, wire.headers, timeout, provider)
            return self._account(
                provider, self._parsed(provider, self._anthropic.parse_response, data)
            )
        payload = compatible_payload(provider, payload, self.injection_points)
        headers = self._headers(provider, api_key, extra_headers)
        url = self._url(provider, url_base, payload, "/chat/completions")
        data = await self._post(url, payload, headers, timeout, provider)
        return self._account(provider, data)

    def _parsed(
        self, provider: str, parse: Callable[..., dict[str, Any]], data: Any, **options: Any
    ) -> dict[str, Any]:
        """A provider's answer translated by ``parse``; one it cannot use (a 200 of
        another shape) is counted as a ``bad_answer`` upstream error, then raised."""
        try:
            return parse(data, **options)
        except ProviderError:
            self._metrics().upstream_error(provider, "bad_answer")
            raise

    def _account(self, provider: str, response: dict[str, Any]) -> dict[str, Any]:
        """Usage in the one schema (cached tokens included), and the cached-tokens metric."""
        usage = normalize_usage(response.get("usage"), provider=provider)
        if usage is None:
            return response
        response["usage"] = usage
        tokens = cache_tokens(usage)
        metrics = self._metrics()
        if tokens.read:
            metrics.provider_cached_tokens(provider, "read", tokens.read)
        if tokens.write:
            metrics.provider_cached_tokens(provider, "write", tokens.write)
        if tokens.read or tokens.write:
            model = f"{provider}/{response.get('model')}"
            saved, premium = self._prices().provider_cache_effect(model, usage)
            if tokens.read and saved is not None:
                metrics.provider_cache_saved(provider, saved)
            if tokens.write and premium is not None:
                metrics.provider_cache_write_premium(provider, premium)
        return response

    def _prices(self) -> PriceTable:
        if self.prices is not None:
            return self.prices
        return self.cache.prices if self.cache is not None else packaged_prices()

    def _metrics(self) -> Metrics:
        if self.metrics is not None:
            return self.metrics
        return self.cache.metrics if self.cache is not None else _NO_METRICS

    async def _chat_stream(
        self,
        provider: str,
        url_base: str,
        payload: dict[str, Any],
        *,
        api_key: str | None,
        extra_headers: Mapping[str, str],
        timeout: float,
        options: Mapping[str, Any] = _NO_OPTIONS,
    ) -> AsyncIterator[dict[str, Any]]:
        """An upstream stream as OpenAI ``chat.completion.chunk`` dicts, usage included,
        its first chunk read (:meth:`_primed`)."""
        open_events = functools.partial(
            self._chat_events,
            provider,
            url_base,
            payload,
            api_key=api_key,
            extra_headers=extra_headers,
            timeout=timeout,
            options=options,
        )
        return await self._primed(open_events)

    async def _primed(
        self, open_events: Callable[[_Attempts], Awaitable[AsyncIterator[dict[str, Any]]]]
    ) -> AsyncIterator[dict[str, Any]]:
        """``open_events(attempts)``, read up to its first chunk that carries some of the
        answer (:func:`_carries_answer`) before it is returned. An upstream may answer 200
        and then fail before any of the answer (Anthropic's overloaded event, Bedrock's
        throttling one, a stall; after its start event or not): nothing was passed on yet,
        so the call is retried as a plain call with that error would be, within the same
        ``max_retries`` (the sends' own retries count)."""
        attempts = _Attempts()
        while True:
            events = await open_events(attempts)  # (its sends are retried by _send)
            first: list[dict[str, Any]] = []
            try:
                while len(first) < _PRIMING_CHUNKS:
                    first.append(await events.__anext__())
                    if _carries_answer(first[-1]):
                        break
            except StopAsyncIteration:
                return _Primed(first, events)
            except ProviderError as exc:
                await _close_events(events)
                pause = self._retry_pause(exc, attempts.made)
                if pause is None:
                    raise
                await asyncio.sleep(pause)
                attempts.made += 1
                continue
            return _Primed(first, events)

    def _retry_pause(
        self, error: ProviderError, made: int, retry_after: float | None = None
    ) -> float | None:
        """The pause before retrying a call that failed with ``error`` after ``made``
        retries (timeouts, connection errors, 408, 429, 5xx; ``retry_after``: what the
        answer asked for, a 429's own by default); ``None``: not retried."""
        if made >= self.max_retries:
            return None
        if not retry_worthy(error):
            return None
        if retry_after is None and isinstance(error, RateLimitError):
            retry_after = error.retry_after
        if retry_after is not None and retry_after > MAX_RETRY_AFTER:
            return None  # the upstream asks for longer than a caller should block
        return self._delay(made, retry_after)

    async def _chat_events(
        self,
        provider: str,
        url_base: str,
        payload: dict[str, Any],
        attempts: _Attempts,
        *,
        api_key: str | None,
        extra_headers: Mapping[str, str],
        timeout: float,
        options: Mapping[str, Any],
    ) -> AsyncIterator[dict[str, Any]]:
        """:meth:`_chat_stream`'s stream, opened once (``attempts`` as for :meth:`_send`)."""
        if provider in ("gemini", "vertex_ai"):
            request = await self._gemini_request(
                provider, payload, url_base, options, api_key, extra_headers, stream=True
            )

            async def open_events(sent: GeminiRequest) -> ChunkStream:
                return await self._open_stream(
                    sent.url, sent.json, sent.headers, timeout, provider, attempts=attempts
                )

            events, created = await self._gemini_send(request, open_events, timeout, provider)
            gemini = self._gemini.stream_translator(
                model=request.model, candidates=request.candidate_count
            )
            return self._translated(
                provider, events, gemini, finish=gemini.finish, context_cache=created
            )
        if provider == "bedrock":
            bedrock = await self._bedrock_request(
                payload, url_base, options, api_key, extra_headers, stream=True
            )
            response_id, events = await self._open_stream_with_id(
                bedrock.url, bedrock.content, bedrock.headers, timeout, provider, attempts=attempts
            )
            translator: StreamTranslator = self._bedrock.stream_translator(
                model=payload["model"], response_id=response_id
            )
            return self._translated(provider, events, translator)
        if provider == "anthropic":
            wire = self._anthropic_request(payload, url_base, api_key, extra_headers)
            events = await self._open_stream(
                wire.url, wire.json, wire.headers, timeout, provider, attempts=attempts
            )
            return self._translated(provider, events, self._anthropic.stream_translator())
        payload = compatible_payload(provider, payload, self.injection_points)
        options = payload.get("stream_options") or {}
        # deja always asks for usage, to price and store the answer; the caller gets the
        # usage chunk only if it asked for it
        payload["stream_options"] = {**options, "include_usage": True}
        headers = self._headers(provider, api_key, extra_headers)
        url = self._url(provider, url_base, payload, "/chat/completions")
        events = await self._open_stream(
            url, payload, headers, timeout, provider, openai_chunks=True, attempts=attempts
        )

        async def accounted() -> ChunkStream:
            try:
                async for chunk in events:
                    if chunk.get("usage") is not None:
                        self._account(provider, chunk)
                    yield chunk
            finally:
                await events.aclose()

        return accounted()

    async def _translated(
        self,
        provider: str,
        events: ChunkStream,
        translator: StreamTranslator,
        *,
        finish: Callable[[], list[dict[str, Any]]] | None = None,
        context_cache: ContextCache | None = None,
    ) -> ChunkStream:
        """``events`` of a provider's own stream as OpenAI chunks, its usage accounted.

        ``finish`` gives the chunks due when the events end (Gemini's last usage). A stream
        that ends before the provider said it finished is an error: its answer is cut
        short (and is not stored). ``context_cache``: the cache made for this call, billed
        in the usage chunk.
        """

        def accounted(chunk: dict[str, Any]) -> dict[str, Any]:
            if chunk.get("usage") is not None:
                self._account(provider, chunk)
                if context_cache is not None:
                    _bill_context_cache(chunk["usage"], context_cache, self._clock())
            return chunk

        try:
            async for event in events:  # (its own failures are counted where it is read)
                try:
                    chunks = translator.feed(event)
                except ProviderError as exc:  # an error event of the provider's own format
                    self._metrics().upstream_error(provider, upstream_error_label(exc))
                    raise
                for chunk in chunks:
                    yield accounted(chunk)
        finally:
            await events.aclose()
        for chunk in finish() if finish is not None else ():
            yield accounted(chunk)
        if not translator.finished:
            self._metrics().upstream_error(provider, "connection")
            raise UpstreamConnectionError(
                "the upstream stream ended before the answer finished", provider=provider
            )

    # -- Gemini and Vertex AI -------------------------------------------------------------

    async def _gemini_request(  # noqa: PLR0917 (private, called twice)
        self,
        provider: str,
        payload: Mapping[str, Any],
        url_base: str,
        options: Mapping[str, Any],
        api_key: str | None,
        extra_headers: Mapping[str, str],
        *,
        stream: bool,
    ) -> GeminiRequest:
        """The generateContent request, authenticated (see :meth:`_gemini_auth`)."""
        auth = await self._gemini_auth(provider, options, api_key)
        wire = self._gemini.build_request(
            {**payload, "model": f"{provider}/{payload['model']}"},
            api_base=url_base or None,
            api_key=auth.api_key,
            access_token=auth.token,
            vertex_project=auth.project,
            vertex_location=auth.location,
            injection_points=self.injection_points,
            extra_headers=extra_headers,
            stream=stream,
        )
        warn_once(provider, wire.warnings)
        return wire

    async def _gemini_auth(
        self, provider: str, options: Mapping[str, Any], api_key: str | None
    ) -> _GoogleAuth:
        """Google AI: an API key (``api_key``, ``GEMINI_API_KEY``, ``GOOGLE_API_KEY``).
        Vertex AI: the project and location (the call's ``vertex_*`` options, else
        ``VERTEXAI_PROJECT`` / ``VERTEXAI_LOCATION``) and an OAuth token — ``api_key`` taken
        as one, or the service account's (``vertex_credentials`` or
        ``GOOGLE_APPLICATION_CREDENTIALS``)."""
        if provider != "vertex_ai":
            key = self._key(provider, api_key)
            return _GoogleAuth(api_key=key)
        project = _option(options, "vertex_project", "vertex_ai_project") or _env(
            "VERTEXAI_PROJECT", "VERTEX_PROJECT", "GOOGLE_CLOUD_PROJECT"
        )
        location = _option(options, "vertex_location", "vertex_ai_location") or _env(
            "VERTEXAI_LOCATION", "VERTEX_LOCATION"
        )
        token = _sendable_key(api_key, provider) or await self._vertex_token(options)
        return _GoogleAuth(token=token, project=project, location=location)

    async def _gemini_send(
        self,
        wire: GeminiRequest,
        send: Callable[[GeminiRequest], Awaitable[_T]],
        timeout: float,
        provider: str,
    ) -> tuple[_T, ContextCache | None]:
        """``send(wire)`` through its context cache when it asks for one (making the cache
        if needed, remaking it once if Gemini lost it); what ``send`` returned, and the
        cache if this call made it. A stream's lost cache shows in its status, so streams
        and plain calls take the same path."""
        cached, created = await self._context_cache(wire, timeout, provider)
        if cached is not None:
            try:
                answer = await send(wire.with_cached_content(cached.name))
                return answer, cached if created else None
            except ProviderError as exc:
                if not cached_content_gone(exc.status_code, exc.body):
                    raise
            cached, created = await self._remake_context_cache(wire, cached, timeout, provider)
            if cached is not None:
                answer = await send(wire.with_cached_content(cached.name))
                return answer, cached if created else None
        return await send(wire), None

    def _caches(self) -> AsyncContextCaches:
        caches = self._context_caches
        if caches is None:
            cache = self.cache
            # the response cache's store, so that every process sharing it shares the caches
            caches = self._context_caches = AsyncContextCaches(
                store=cache.store if cache is not None else None,
                key_prefix=cache.key_prefix if cache is not None else "deja:",
                clock=self._clock,
            )
        return caches

    @staticmethod
    def _cache_digest(wire: GeminiRequest, plan: ContextCachePlan) -> str:
        """The plan's digest, scoped to the credential: a cache made with one key or
        project is invisible to another (the secret itself is only hashed)."""
        credential = wire.headers.get("x-goog-api-key") or wire.endpoint.parent
        return hashlib.sha256(f"{plan.digest}\0{credential}".encode()).hexdigest()

    async def _context_cache(
        self, wire: GeminiRequest, timeout: float, provider: str
    ) -> tuple[ContextCache | None, bool]:
        """The context cache ``wire`` should use, made if needed: ``(entry, created)``, or
        ``(None, False)`` when it asks for none, its prefix is too small, or Gemini refused."""
        plan = wire.context_cache
        if plan is None or plan.below_minimum:
            return None, False
        digest = self._cache_digest(wire, plan)
        refused = self._refused_caches.get(digest)
        if refused is not None and refused > time.monotonic():
            return None, False
        caches = self._caches()
        metrics = self._metrics()

        async def create() -> ContextCache:
            return await self._create_context_cache(wire, plan, timeout, provider)

        try:
            entry, created = await caches.aget_or_create(digest, create)
        except ProviderError as exc:
            metrics.context_cache(provider, "failed")
            if exc.status_code in (401, 403):
                raise  # the request itself would fail the same way
            if exc.status_code == 400:
                self._refused_caches[digest] = time.monotonic() + _REFUSED_CACHE_SECONDS
            logger.warning("%s: no context cache (%s); sending the whole prompt", provider, exc)
            return None, False
        if not created:
            metrics.context_cache(provider, "reused")
        return entry, created

    async def _remake_context_cache(
        self, wire: GeminiRequest, lost: ContextCache, timeout: float, provider: str
    ) -> tuple[ContextCache | None, bool]:
        """Gemini no longer has ``lost`` (expired early, or deleted): forget it, make anew."""
        plan = wire.context_cache
        assert plan is not None  # only a planned cache is ever lost
        logger.info("%s: context cache %s is gone; making it again", provider, lost.name)
        await self._caches().aforget(self._cache_digest(wire, plan), lost.name)
        self._metrics().context_cache(provider, "recreated")
        return await self._context_cache(wire, timeout, provider)

    async def _create_context_cache(
        self,
        wire: GeminiRequest,
        plan: ContextCachePlan,
        timeout: float,
        provider: str,
        *,
        ttl: int | None = None,
    ) -> ContextCache:
        """POST the cachedContents resource (to live ``ttl`` seconds, default the marker's
        lifetime); its storage and creation are billed."""
        now = self._clock()
        ttl = plan.ttl_seconds if ttl is None else ttl
        data = await self._post(
            plan.create_url, plan.create_body(ttl), wire.headers, timeout, provider
        )
        made = parse_cached_content(data)
        expires = made.expire_time if made.expire_time is not None else now + ttl
        tokens = (
            made.total_token_count if made.total_token_count is not None else (plan.prefix_tokens)
        )
        entry = ContextCache(made.name, expires, tokens, f"{provider}/{wire.model}")
        usage: dict[str, Any] = {}
        _bill_context_cache(usage, entry, now)
        made_for = self._prices().cost(entry.model, {"prompt_tokens": 0, **usage})
        self._metrics().context_cache(provider, "created", made_for or 0.0)
        return entry

    async def _vertex_token(self, options: Mapping[str, Any]) -> str:
        """An OAuth access token of the call's (or the environment's) service account,
        fetched from its token URI and reused until a minute before it expires."""
        account = await self._service_account(options)
        ident = f"{account.client_email}\0{account.token_uri}"
        token = self._tokens.get(ident)
        if token is not None and not token.expired(self._clock()):
            return token.token

        async def fetch() -> AccessToken:
            now = self._clock()
            request = account.token_request(now)
            data = await self._post(
                request.url, request.body, request.headers, self.timeout, "vertex_ai"
            )
            fresh = parse_token_response(data, now)
            self._tokens[ident] = fresh
            return fresh

        fresh, _ = await self._token_flight.run(ident, fetch)
        return fresh.token

    async def _service_account(self, options: Mapping[str, Any]) -> ServiceAccount:
        source = options.get("vertex_credentials") or os.environ.get(
            "GOOGLE_APPLICATION_CREDENTIALS"
        )
        if not source:
            raise ConfigError(
                "vertex_ai/ models need a service account: pass vertex_credentials (a key "
                "file path or its JSON), set GOOGLE_APPLICATION_CREDENTIALS, or pass "
                "api_key=<an OAuth access token>"
            )
        token_uri = _option(options, "vertex_token_uri") or _env("VERTEXAI_TOKEN_URI")
        ident = (
            source
            if isinstance(source, str)
            else orjson.dumps(source, option=orjson.OPT_SORT_KEYS).decode()
        ) + f"\0{token_uri}"
        account = self._accounts.get(ident)
        if account is None:
            load = functools.partial(_load_service_account, source, token_uri)
            account = self._accounts[ident] = await asyncio.to_thread(load)
        return account

    async def _bedrock_request(
        self,
        payload: Mapping[str, Any],
        url_base: str,
        options: Mapping[str, Any],
        api_key: str | None,
        extra_headers: Mapping[str, str],
        *,
        stream: bool,
    ) -> BedrockRequest:
        """The authenticated Converse request; 1h breakpoints sent as 5m are counted."""
        region, credentials = await self._aws_credentials(options, api_key)
        wire = self._bedrock.build_request(
            payload,
            region=region,
            credentials=credentials,
            api_base=url_base or None,
            injection_points=self.injection_points,
            extra_headers=extra_headers,
            stream=stream,
        )
        warn_once("bedrock", wire.warnings)
        self._count_ttl_downgrades("bedrock", wire.plan)
        return wire

    async def _aws_credentials(
        self, options: Mapping[str, Any], api_key: str | None
    ) -> tuple[str, AwsCredentials | BedrockApiKey]:
        """Region and credentials: a Bedrock API key (see :func:`_bedrock_api_key`) with
        the region alone, else the call's ``aws_*`` options, else the AWS chain.

        Resolved off the event loop (the chain reads files and may ask the instance
        metadata service) and reused for a few minutes.
        """
        bearer = _bedrock_api_key(options, api_key)
        secret = options.get("aws_secret_access_key")
        token = options.get("aws_session_token")
        region = options.get("aws_region_name")
        profile = options.get("aws_profile_name")
        ident = (
            region,
            options.get("aws_access_key_id"),
            profile,
            # the secrets, the API key among them, only hashed
            hashlib.sha256(f"{secret}\0{token}\0{bearer}".encode()).hexdigest(),
        )
        now = time.monotonic()
        found = self._aws.get(ident)
        if found is not None and found[0] > now:
            return found[1]
        resolved: tuple[str, AwsCredentials | BedrockApiKey]
        if bearer is not None:
            with_key = functools.partial(_region_and_key, region, profile, bearer)
            resolved = await asyncio.to_thread(with_key)
        else:
            resolve = functools.partial(
                resolve_aws,
                region,
                access_key=options.get("aws_access_key_id"),
                secret_key=secret,
                session_token=token,
                profile=profile,
            )
            resolved = await asyncio.to_thread(resolve)
        self._aws[ident] = (now + _AWS_CREDENTIALS_SECONDS, resolved)
        return resolved

    def _endpoint(self, model: str, api_base: str | None) -> _Endpoint:
        """(provider, upstream model name, api_base for the key, base URL for calls).

        Resolved once per (model, api_base) and remembered: this runs on every call, hits
        included. Environment defaults are therefore read at a model's first call.
        """
        memo = (model, api_base, self.api_base)
        found = self._endpoints.get(memo)
        if found is None:
            found = self._resolve_endpoint(model, api_base)
            if len(self._endpoints) >= _ENDPOINT_MEMO:
                # callers naming ever new models (a proxy's wildcard route) must not grow it
                self._endpoints.clear()
            self._endpoints[memo] = found
        return found

    def _resolve_endpoint(self, model: str, api_base: str | None) -> _Endpoint:
        if api_base is not None and not isinstance(api_base, str):
            raise InvalidRequestError(
                f"api_base must be a URL string, not {type(api_base).__name__}"
            )
        # strict when the call would go to OpenAI's own endpoint for want of one named
        named = api_base or self.api_base or env_api_base("openai")
        provider, name = resolve_model(model, strict=not named or is_openais(named))
        if provider not in _OPENAI_COMPATIBLE and provider not in ADAPTED:
            raise InvalidRequestError(
                f"provider {provider!r} does not speak the OpenAI wire format; "
                "its adapter is not part of this client yet"
            )
        base = api_base or self.api_base or env_api_base(provider)
        if base is None:
            base = PROVIDER_API_BASES.get(provider)
        if base is None and provider in _REGIONAL:
            # the endpoint follows the region, known at call time; the key names the
            # provider's default endpoint (the same model answers alike in every region)
            return provider, name, None, ""
        if base is None:
            raise InvalidRequestError(f"model {model!r} needs api_base (no default endpoint)")
        return provider, name, base, upstream_base(provider, base)

    def _anthropic_request(
        self,
        payload: dict[str, Any],
        url_base: str,
        api_key: str | None,
        extra_headers: Mapping[str, str],
    ) -> AnthropicRequest:
        """Anthropic's Messages request for ``payload``, its adapter's warnings logged and
        1h breakpoints sent as 5m counted."""
        wire = self._anthropic.build_request(
            payload,
            api_base=url_base,
            api_key=self._key("anthropic", api_key),
            injection_points=self.injection_points,
            extra_headers=extra_headers,
        )
        warn_once("anthropic", wire.warnings)
        self._count_ttl_downgrades("anthropic", wire.plan)
        return wire

    def _count_ttl_downgrades(self, provider: str, plan: Plan) -> None:
        """Count the plan's 1h breakpoints sent as 5m: those after a 5m one (Anthropic's
        longer-lifetimes-first rule, the automatic breakpoint included) and, on Bedrock,
        those on a model with no 1h cache. Each is named in a warning too."""
        count = sum(1 for warning in plan.warnings if warning.kind == "ttl_downgraded")
        if count:
            self._metrics().provider_cache_ttl_downgraded(provider, count)

    def _call_key(self, provider: str, api_key: str | None, api_base: str | None) -> str | None:
        """The key of a call that names an endpoint other than the client's own ``api_base``:
        its own, else ``<PROVIDER>_API_KEY``, else none ("": the client's key stays with the
        client's endpoint)."""
        if api_key is not None or api_base is None or not self.api_key or not self.api_base:
            return api_key
        if api_base == self.api_base:
            return api_key
        return os.environ.get(f"{provider.upper()}_API_KEY", "")

    def _key(self, provider: str, api_key: str | None) -> str | None:
        """The call's key, else the client's for its own endpoint (``api_base``, or OpenAI's
        without one: never another provider's), else ``<PROVIDER>_API_KEY``; without
        surrounding whitespace (a key read from a secret file), and one with a control
        character inside is an :class:`InvalidRequestError` (not a call that fails as if
        the upstream could not be reached)."""
        return _sendable_key(self._found_key(provider, api_key), provider)

    def _found_key(self, provider: str, api_key: str | None) -> str | None:
        if api_key is not None:
            return api_key or None  # "": no key, on purpose (see _call_key)
        if self.api_key and (provider == "openai" or self.api_base):
            return self.api_key
        variable = f"{provider.upper()}_API_KEY"
        found = os.environ.get(variable)
        if found is None and provider == "gemini":
            found = os.environ.get("GOOGLE_API_KEY")
        if found is None and self.api_key and provider not in _KEYLESS:
            # say so, rather than call without a key (a 401 that names no cause)
            raise InvalidRequestError(
                f"no API key for {provider}: the client's api_key is sent to its own"
                f" endpoint only (its api_base, else OpenAI's); set {variable}, pass"
                " api_key= on the call, or give the client this provider's api_base"
            )
        return found

    def _url(self, provider: str, url_base: str, payload: dict[str, Any], path: str) -> str:
        """The endpoint URL; Azure OpenAI addresses a deployment with an api-version.

        For ``azure/<deployment>`` the deployment is the model name and ``api_version``
        comes from the request body (removed from it), the ``AZURE_API_VERSION`` or
        ``OPENAI_API_VERSION`` environment variable, or a recent GA default.
        """
        if provider != "azure":
            # a query in the base (a gateway's ?key=...) goes after the path
            base, mark, query = url_base.partition("?")
            return f"{base}{path}{mark}{query}"
        version = (
            payload.pop("api_version", None)
            or os.environ.get("AZURE_API_VERSION")
            or os.environ.get("OPENAI_API_VERSION")
            or _AZURE_API_VERSION
        )
        deployment = payload.pop("model", None)
        if "/openai/deployments/" in url_base or "api-version=" in url_base:
            base = url_base  # already a deployment URL
        else:
            base = f"{url_base}/openai/deployments/{deployment}"
        joiner = "&" if "?" in base else "?"
        if "api-version=" in base:
            return base.replace("?", path + "?", 1) if "?" in base else base + path
        return f"{base}{path}{joiner}api-version={quote(str(version), safe='')}"

    def _headers(
        self, provider: str, api_key: str | None, extra: Mapping[str, str]
    ) -> dict[str, str]:
        key = self._key(provider, api_key)
        headers = {"content-type": "application/json", **self.headers}
        if key:
            if provider == "azure":
                headers["api-key"] = key  # Azure OpenAI's key header
            else:
                headers["authorization"] = f"Bearer {key}"
        headers.update(extra)
        return headers

    def _client(self) -> AsyncHTTP:
        http = self._http
        if http is None or self._http_pid != os.getpid():
            with self._http_lock:
                http = self._http
                if http is not None and self._owns_http and self._http_pid != os.getpid():
                    # a forked child: the parent's pooled connections are the parent's (a
                    # shared socket would mix the processes' answers); left alone, not closed
                    http = None
                if http is None:
                    http = self._http = async_http_client(
                        max_connections=self._max_connections, timeout=self.timeout
                    )
                self._http_pid = os.getpid()
        return http

    def _seconds(self, timeout: float | None) -> float:
        """A call's own ``timeout``, checked before anything is asked of the upstream (or
        of the cache), else the client's."""
        if timeout is None:
            return self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")
        if not is_seconds(timeout):  # NaN, inf, past a float's range too
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        return float(timeout)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        jitter: float = 0.75 + random.random() / 2
        return float(self.backoff * 2.0**attempt * jitter)

    async def _send(
        self,
        url: str,
        content: bytes,
        headers: Mapping[str, str],
        timeout: float,
        provider: str,
        *,
        stream: bool,
        method: str = "POST",
        attempts: _Attempts | None = None,
    ) -> AsyncHTTPResponse:
        """Send with retries; returns a successful response (streaming: not yet read).

        ``content`` is sent as it is: a signed request (Bedrock) must not be re-encoded.
        ``attempts``: the retries the call made already (a stream's, whose first event
        failed), counted against ``max_retries`` with these.
        """
        attempts = attempts or _Attempts()
        metrics = self._metrics()
        while True:
            retry_after: float | None = None
            # each attempt takes the client's current pool: a close() during a pause between
            # attempts lets this call go on with a new one
            http = self._client()
            started = attempts.started = time.monotonic()
            try:
                request = http.build_request(
                    method, url, content=content, headers=headers, timeout=timeout
                )
                response: AsyncHTTPResponse = await http.send(request, stream=stream)
            except httpx2.PoolTimeout as exc:  # never sent: this client's own queue
                shown = redact_url(url)
                error: ProviderError = UpstreamTimeoutError(
                    f"no free connection to {shown} within {timeout} s (this client's calls"
                    " to it in flight at their limit, max_connections)",
                    provider=provider,
                    url=shown,
                )
                error.__cause__ = exc
            except httpx2.TimeoutException as exc:
                metrics.upstream_seconds(provider, time.monotonic() - started)
                shown = redact_url(url)
                error = UpstreamTimeoutError(
                    f"no answer from {shown} within {timeout} s", provider=provider, url=shown
                )
                error.__cause__ = exc
            except httpx2.TransportError as exc:
                metrics.upstream_seconds(provider, time.monotonic() - started)
                shown = redact_url(url)
                error = UpstreamConnectionError(
                    f"cannot reach {shown}: {exc}", provider=provider, url=shown
                )
                error.__cause__ = exc
            else:
                if response.status_code < 400:
                    if not stream:  # (a stream's call lasts until its end: timed there)
                        metrics.upstream_seconds(provider, time.monotonic() - started)
                    note_answer_headers(response.headers)  # (for the proxy's caller)
                    return response
                if stream:
                    await response.aread()
                    await response.aclose()
                metrics.upstream_seconds(provider, time.monotonic() - started)
                error = error_for(response, provider)
                if not isinstance(error, RateLimitError):
                    # (a 503's wait goes with its error: the proxy waits it, and tells it)
                    retry_after = error.retry_after = asked_delay(response.headers)
            metrics.upstream_error(provider, upstream_error_label(error))
            pause = self._retry_pause(error, attempts.made, retry_after)
            if pause is None:
                raise error
            await asyncio.sleep(pause)
            attempts.made += 1

    async def _post(
        self,
        url: str,
        payload: Mapping[str, Any] | bytes,
        headers: Mapping[str, str],
        timeout: float,
        provider: str,
        *,
        method: str = "POST",
    ) -> dict[str, Any]:
        """Send ``payload`` (JSON-encoded unless already bytes); the JSON object answered."""
        data, _ = await self._post_json(url, payload, headers, timeout, provider, method=method)
        return data

    async def _post_json(
        self,
        url: str,
        payload: Mapping[str, Any] | bytes,
        headers: Mapping[str, str],
        timeout: float,
        provider: str,
        *,
        method: str = "POST",
    ) -> tuple[dict[str, Any], Mapping[str, str]]:
        """:meth:`_post`, with the answer's headers."""
        content = payload if isinstance(payload, bytes) else encoded(payload)
        response = await self._send(
            url, content, headers, timeout, provider, stream=False, method=method
        )
        content = response.content
        try:
            # (a batch of 2,048 embeddings is ~30 MB of JSON: parsed off the event loop)
            parse = functools.partial(orjson.loads, content)
            data = await off_loop(parse, len(content), threshold=_BIG)  # unasync: data = parse()
        except orjson.JSONDecodeError as exc:
            self._metrics().upstream_error(provider, "bad_answer")
            raise ProviderError(
                f"upstream answered {response.status_code} with a body that is not JSON",
                status_code=response.status_code,
                provider=provider,
            ) from exc
        if not isinstance(data, dict):
            self._metrics().upstream_error(provider, "bad_answer")
            raise ProviderError(
                "upstream answered with JSON that is not an object", provider=provider
            )
        if isinstance(data.get("error"), dict) and not _ANSWER_FIELDS.intersection(data):
            # a gateway's failure sent with a success status: the error it names (served
            # as a 200 answer with no choices, never failed over), as a stream's is read
            error = stream_error(
                data, provider, what=f"upstream answered {response.status_code} with an error"
            )
            self._metrics().upstream_error(provider, upstream_error_label(error))
            raise error
        return data, response.headers

    async def _open_stream(
        self,
        url: str,
        payload: Mapping[str, Any] | bytes,
        headers: Mapping[str, str],
        timeout: float,
        provider: str,
        *,
        framing: Callable[[], EventDecoder] = SSEDecoder,
        openai_chunks: bool = False,
        attempts: _Attempts | None = None,
    ) -> ChunkStream:
        """Send ``payload``; the events of the streamed answer, decoded by ``framing``
        (server-sent events by default; AWS's binary event stream for Bedrock).
        ``openai_chunks``: the events are OpenAI chunks, and a stream that stops before a
        finish reason or ``[DONE]`` broke off. ``attempts`` as for :meth:`_send`."""
        _, events = await self._open_events(
            url,
            payload,
            headers,
            timeout,
            provider,
            framing=framing,
            openai_chunks=openai_chunks,
            attempts=attempts,
        )
        return events

    async def _open_stream_with_id(
        self,
        url: str,
        payload: Mapping[str, Any] | bytes,
        headers: Mapping[str, str],
        timeout: float,
        provider: str,
        *,
        attempts: _Attempts | None = None,
    ) -> tuple[str | None, ChunkStream]:
        """A Bedrock ConverseStream: the answer's id (from AWS's request id) and events."""
        answered, events = await self._open_events(
            url, payload, headers, timeout, provider, framing=_BedrockEvents, attempts=attempts
        )
        return _request_id(answered), events

    async def _open_events(
        self,
        url: str,
        payload: Mapping[str, Any] | bytes,
        headers: Mapping[str, str],
        timeout: float,
        provider: str,
        *,
        framing: Callable[[], EventDecoder],
        openai_chunks: bool = False,
        attempts: _Attempts | None = None,
    ) -> tuple[Mapping[str, str], ChunkStream]:
        content = payload if isinstance(payload, bytes) else encoded(payload)
        attempts = attempts or _Attempts()
        response = await self._send(
            url, content, headers, timeout, provider, stream=True, attempts=attempts
        )
        metrics = self._metrics()

        # an OpenAI stream is whole at [DONE], or once each choice asked for has finished
        # (a body ended by closing the connection has no other end: cut after the first
        # of n choices finished, it looked whole)
        unfinished = set(range(choices_asked(payload))) if openai_chunks else set()

        async def chunks() -> ChunkStream:
            # every failure the stream shows is counted here, once: a cut, a timeout, an
            # error event, a body that is no stream (those of the send: by _send)
            try:
                decoder = framing()
                # the body's start while no event came: what the upstream sent instead
                start = b""
                seen = False
                try:
                    async for data in response.aiter_bytes():
                        if not seen and len(start) < NOT_A_STREAM_BYTES:
                            start += data
                        try:
                            events = decoder.feed(data)
                        except StreamFormatError as exc:  # the upstream's fault: a bad gateway
                            raise ProviderError(
                                f"upstream stream is not well formed: {exc}",
                                status_code=502,
                                provider=provider,
                            ) from None
                        for event in events:
                            if event == "[DONE]":
                                return
                            if isinstance(event, dict) and event.get("error") is not None:
                                raise stream_error(event, provider)
                            seen = True
                            if unfinished:
                                unfinished.difference_update(finished_choices(event))
                            yield event
                except httpx2.TimeoutException as exc:
                    shown = redact_url(url)
                    raise UpstreamTimeoutError(
                        f"stream from {shown} sent nothing within {timeout} s: {exc}",
                        provider=provider,
                        url=shown,
                    ) from exc
                except httpx2.TransportError as exc:
                    shown = redact_url(url)
                    raise UpstreamConnectionError(
                        f"stream from {shown} broke off: {exc}", provider=provider, url=shown
                    ) from exc
                finally:
                    await response.aclose()
                    metrics.upstream_seconds(provider, time.monotonic() - attempts.started)
                if not seen:
                    raise not_a_stream(start, response.headers, provider)
                if unfinished:
                    shown = redact_url(url)
                    raise UpstreamConnectionError(
                        f"stream from {shown} ended before its last chunk (no [DONE], and"
                        f" choice {min(unfinished)} without a finish reason)",
                        provider=provider,
                        url=shown,
                    )
            except ProviderError as exc:
                metrics.upstream_error(provider, upstream_error_label(exc))
                raise

        return response.headers, chunks()
