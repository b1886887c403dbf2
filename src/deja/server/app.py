"""The caching proxy: an OpenAI-compatible ASGI app in front of the configured upstreams.

Routes (``/v1`` prefix optional): ``POST /chat/completions``, ``/completions``,
``/embeddings``; ``GET /models``; ``GET /health`` (liveness, no auth), ``/health/ready``
(the cache store answers); ``GET /metrics`` (Prometheus); admin routes under ``/cache/``
for the master key only. Every answer that went through the cache carries ``x-deja-cache``
(``hit``, ``miss``, ``bypass``...), ``x-deja-cache-key``, ``x-deja-cost-usd`` and, on a
hit, ``age``; a hit's body is the stored bytes as they were. ``POST /cache/feedback``
(any caller, its own entries) reports a wrong semantic hit by its ``x-deja-cache-key``.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import inspect
import logging
import math
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final, TypeVar

import orjson

from deja._aio import off_loop
from deja._async.cache import AsyncCache, OnResponse
from deja._async.client import AsyncClient, _bedrock_api_key, upstream_error_label
from deja._async.context_caches import AsyncContextCaches
from deja._async.embeddings import OnEmbeddings, acached_embeddings
from deja._async.streams import AsyncCachedStream, aopen_uncached
from deja._embedding_items import (
    EMBEDDING_INPUT_LIMITS,
    EmbeddingBatch,
    embedding_input_limit,
    embedding_items,
    item_requests,
)
from deja._recurring import Recurring
from deja._upstream import (
    CALL_SETTINGS,
    PROVIDER_OPTIONS,
    AnswerHeaders,
    answer_headers,
    encoded_headers,
    retry_worthy,
)
from deja.config import (
    DEPLOYMENT_DEFAULTS,
    ModelDeployment,
    Settings,
    build_cache,
    model_name_pattern,
)
from deja.controls import CacheControl, caching_switch, from_header, merge, parse_controls
from deja.errors import (
    ControlError,
    DejaError,
    InvalidRequestError,
    KeyBuilderError,
    MissingDependencyError,
    ProviderError,
    StoreError,
    UpstreamConnectionError,
    UpstreamTimeoutError,
)
from deja.keys import check_digest, remember_digest, request_builder, scope_prefix
from deja.metrics import PrometheusMetrics
from deja.providers.bedrock import require_botocore
from deja.providers.google_auth import require_cryptography
from deja.request import (
    Request,
    RequestKind,
    check_encoding_format,
    check_tenant,
    redact_url,
    redact_urls_in,
    resolve_model,
)
from deja.result import CacheInfo
from deja.server.auth import Auth, Caller
from deja.server.fallbacks import FallbackKind, fallback_names, refusal_kind
from deja.server.http import (
    HTTPError,
    Message,
    Receive,
    Scope,
    Send,
    error_body,
    header,
    joined_header,
    read_body,
    send_json,
    send_raw,
)
from deja.server.workers import aggregated_exposition, aggregated_stats, multiprocess
from deja.streaming import SSE_DONE, sse_event

__all__ = ["HookError", "ProxyApp", "Route"]

logger = logging.getLogger("deja.server")

_T = TypeVar("_T")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class HookError(DejaError):
    """A user hook raised; the request fails with a 500 that names the hook."""


class HookTimeoutError(TimeoutError):
    """An async hook did not finish within ``general_settings.hook_timeout``: it is
    cancelled, and taken for one that raised."""


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment of a route, with what every request to it reads (built once)."""

    deployment: ModelDeployment
    # the upstream call's options (endpoint, key, timeout...), and those of a streamed call
    options: dict[str, Any]
    stream_options: dict[str, Any]
    # default request parameters (chat and text completions: keyed)
    defaults: Mapping[str, Any]
    # what only its calls carry (Azure's api_version)
    extras: Mapping[str, Any]
    retries: int
    # the first target (in config order) that asks the same (model and default
    # parameters): requests are keyed as it has them, and answers of one kind never stand
    # for another's
    kin: int

    @property
    def model(self) -> str:
        return self.deployment.model

    @property
    def api_base(self) -> str | None:
        base: str | None = self.options["api_base"]
        return base


@dataclass(frozen=True, slots=True)
class Route:
    """One model name: its deployments (:class:`Target`).

    Several deployments share the requests as LiteLLM's default ``simple-shuffle`` does:
    each request tries them in a random order, weighted by their ``weight`` (else ``rpm``,
    else ``tpm``; equal without), lower ``order`` values first; a failure worth it moves
    on to the next. The request is keyed as the first deployment in the config has it.
    """

    name: str
    targets: tuple[Target, ...]
    # callers may name s3:// / gs:// files: every deployment allows it
    storage_urls: bool = False
    # target indices by priority (``order``), each group with its weights
    groups: tuple[tuple[tuple[int, ...], tuple[float, ...]], ...] = ()
    # the model_list name with ``*`` this route was made from for a caller's model name
    family: str | None = None

    def request(
        self, i: int, body: Mapping[str, Any], *, kind: RequestKind, tenant: str | None
    ) -> Request:
        """``body`` keyed as deployment ``i`` sends it: its model, its endpoint, and its
        default parameters under the body's own."""
        target = self.targets[i]
        return Request.from_body(
            {**target.defaults, **body, "model": target.model},
            kind=kind,
            api_base=target.api_base,
            tenant=tenant,
        )

    def plan(self) -> Plan:
        """The deployments one request tries, and the one it is keyed as."""
        if len(self.targets) == 1:
            return _ONLY  # nothing to choose (what it notes is the same for every request)
        attempts = self.attempts()
        return Plan(attempts, self.targets[attempts[0]].kin)

    def payload(self, i: int, path: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        """What deployment ``i`` is sent for ``payload``: its defaults under the caller's
        values (generation routes), and its call-only settings."""
        target = self.targets[i]
        defaults = target.defaults if path in _GENERATION_PATHS else _NOTHING
        extras = target.extras
        if not defaults and not extras:
            return payload
        return {**extras, **defaults, **payload}

    def attempts(self) -> list[int]:
        """The deployments (indices) to try for one request, in order."""
        if len(self.targets) == 1:
            return [0]
        tried: list[int] = []
        for members, weights in self.groups:
            if len(members) == 1:
                tried.append(members[0])
                continue
            # a weighted random permutation (Efraimidis-Spirakis: sort by u ** (1 / w))
            ranks = sorted(
                ((random.random() ** (1.0 / w), i) for i, w in zip(members, weights, strict=True)),
                reverse=True,
            )
            tried.extend(i for _, i in ranks)
        return tried


@dataclass(slots=True)
class Plan:
    """One request's way through a route: the deployments to try, in order, the one it is
    keyed as, and (once known) the one that answered."""

    attempts: list[int]
    keyed_as: int
    served: int | None = None


_ONLY = Plan([0], 0)  # the plan of every request to a route of one deployment (read-only)


def _defaults(deployment: ModelDeployment) -> dict[str, object]:
    """The request parameters a deployment sends under the caller's own: its default
    parameters, and its ``extra_body`` entries (fields of the server's own)."""
    params = deployment.litellm_params
    defaults = {k: v for k, v in params.items() if k in DEPLOYMENT_DEFAULTS}
    extra = params.get("extra_body")
    if isinstance(extra, Mapping):
        defaults.update(extra)
    return defaults


def make_route(name: str, deployments: Sequence[ModelDeployment]) -> Route:
    """The :class:`Route` of ``deployments`` under the model name ``name``."""
    by_order: dict[float, list[int]] = {}
    for i, deployment in enumerate(deployments):
        if _weight(deployment) == 0:
            continue  # drained: never tried, not even when the others fail
        by_order.setdefault(_number(deployment.litellm_params.get("order"), math.inf), []).append(i)
    if not by_order:  # the loader refuses such a model_list; settings built by hand may not
        raise ValueError(f"every deployment of {name!r} has a share (weight, rpm or tpm) of 0")
    groups = tuple(
        (tuple(members), tuple(_weight(deployments[i]) for i in members))
        for _, members in sorted(by_order.items())
    )
    defaults = [_defaults(d) for d in deployments]
    asks = [
        (d.model, orjson.dumps(x, option=orjson.OPT_SORT_KEYS))
        for d, x in zip(deployments, defaults, strict=True)
    ]
    targets = []
    for i, deployment in enumerate(deployments):
        options = _deployment_options(deployment)
        targets.append(
            Target(
                deployment,
                options,
                _stream_options(deployment, options),
                defaults[i],
                _call_extras(deployment),
                int(deployment.litellm_params.get("max_retries") or 0),  # type: ignore[call-overload]
                asks.index(asks[i]),
            )
        )
    return Route(
        name,
        tuple(targets),
        storage_urls=all(d.litellm_params.get("allow_storage_urls") is True for d in deployments),
        groups=groups,
    )


def _call_extras(deployment: ModelDeployment) -> dict[str, Any]:
    """Body fields only the call to ``deployment`` carries: an Azure deployment's
    ``api_version`` (the client moves it to the URL)."""
    version = deployment.litellm_params.get("api_version")
    if version is not None and deployment.model.startswith("azure/"):
        return {"api_version": version}
    return {}


def _stream_options(deployment: ModelDeployment, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for a streamed call: LiteLLM's ``stream_timeout`` in place of ``timeout``."""
    seconds = deployment.litellm_params.get("stream_timeout")
    return options if seconds is None else {**options, "timeout": float(seconds)}  # type: ignore[arg-type]


def _number(value: object, default: float) -> float:
    """A positive number from a config value (a number or a numeric string), else ``default``."""
    if isinstance(value, bool):
        return default
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) and number > 0 else default


def _weight(deployment: ModelDeployment) -> float:
    """LiteLLM's simple-shuffle weight: ``weight``, else ``rpm``, else ``tpm``, else 1
    (:attr:`~deja.config.ModelDeployment.weight`); 0 (drained) is never picked, as
    LiteLLM's weighted ``random.choices`` never picks it."""
    return deployment.weight


class _Wildcard:
    """A ``model_list`` name with ``*`` (LiteLLM's wildcard routing): ``openai/*`` serves
    ``openai/gpt-4o``; a ``*`` in a deployment's model takes what the name's ``*`` matched
    (``model_name: "*"``, ``model: "openai/*"`` sends ``gpt-4o`` to OpenAI)."""

    def __init__(self, pattern: str, deployments: Sequence[ModelDeployment]) -> None:
        self.pattern = pattern
        self.deployments = tuple(deployments)
        self._regex = model_name_pattern(pattern)
        self.specificity = len(pattern) - pattern.count("*")
        # the provider a deployment's own api_key is for: the one its model names with any
        # name in its * (``"*"``: OpenAI's, as a bare model name is)
        self._keyed = [
            resolve_model(_filled(d.model, ["x"]))[0] if d.litellm_params.get("api_key") else None
            for d in self.deployments
        ]

    def route(self, model: str) -> Route | None:
        matched = self._regex.fullmatch(model)
        if matched is None:
            return None
        pieces = matched.groups()
        if any(_UNSAFE_PIECE.search(piece) for piece in pieces):
            # what the * matched goes into the upstream URL (Gemini's, an Azure deployment's):
            # gemini-2.0-flash/../gemini-2.5-pro would name another model than a key allows
            raise HTTPError(400, f"invalid model name {model!r}", param="model")
        concrete = []
        for deployment, keyed in zip(self.deployments, self._keyed, strict=True):
            filled = _filled(deployment.model, pieces)
            if keyed is not None and resolve_model(filled)[0] != keyed:
                # a provider named in the *: the deployment's key would go to another
                # company's endpoint ("*" with an OpenAI key, asked for "openrouter/...")
                raise HTTPError(
                    400,
                    f"model {model!r} is not served here: this route's key is {keyed}'s",
                    param="model",
                    code="model_not_found",
                )
            params = {**deployment.litellm_params, "model": filled}
            concrete.append(replace(deployment, model_name=model, litellm_params=params))
        return replace(make_route(model, concrete), family=self.pattern)


# a path segment "." or "..", a URL's own characters, a backslash, whitespace or controls
_UNSAFE_PIECE = re.compile(r"(?:^|/)\.{1,2}(?:/|$)|[?#%\\\s\x00-\x1f\x7f]")


def _filled(template: str, pieces: Sequence[str]) -> str:
    """``template`` with its ``*``s replaced by ``pieces`` in turn (the last one repeats)."""
    parts = template.split("*")
    filled = parts[0]
    for k, part in enumerate(parts[1:]):
        filled += pieces[min(k, len(pieces) - 1)] + part
    return filled


def _priced_as(route: Route, plan: Plan, request: Request) -> str:
    """The upstream model an answer to ``request`` is priced as: the one it is keyed as,
    or the one that answered, if that is another (a failover)."""
    served = plan.served
    if served is None or route.targets[served].kin == plan.keyed_as:
        return request.upstream
    provider, name = resolve_model(route.targets[served].model)
    return f"{provider}/{name}"


def _asked_of(route: Route, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as a request for ``route``'s model name (a fallback's: its own name, which
    its key and the post-cache hooks see; the pre-call hooks ran once, on the name asked
    for)."""
    return body if route.name == body.get("model") else {**body, "model": route.name}


def _fallback_header(fallback: Route | None) -> list[tuple[bytes, bytes]]:
    """``x-deja-fallback: <model name>`` when a fallback name answered."""
    return [] if fallback is None else [(b"x-deja-fallback", fallback.name.encode())]


@dataclass(slots=True)
class _Walk:
    """One request's way through its fallbacks: who asks (its key bounds the names), the
    model name it asked for and its own list (in place of that name's general fallbacks),
    the names tried, how many more fallbacks it may try, and the names whose fallbacks are
    being tried, with their kinds of failure and errors (the first: the name asked for; a
    fallback that fails with none of its own to try goes on with the next of the last
    one's)."""

    caller: Caller
    asked: str
    requested: tuple[str, ...] | None
    tried: set[str]
    left: int
    failing: list[tuple[Route, FallbackKind, ProviderError]] = field(default_factory=list)


# model names a request's own ``fallbacks`` may list
_MAX_REQUESTED_FALLBACKS: Final = 16

_FALLBACK_REASONS: Final = {
    "context_window": "the request is too long for its context",
    "content_policy": "refused by the upstream's content policy",
}


def _cache_headers(info: CacheInfo, *, cost_known: bool = True) -> list[tuple[bytes, bytes]]:
    """The cache's response headers. ``cost_known=False`` (a stream fetched upstream: its
    headers leave before its usage arrives) leaves the cost out rather than say 0."""
    headers = [(b"x-deja-cache", info.status.encode())]
    if info.key:  # (none for an embeddings batch of several inputs, nor without a cache)
        headers.append((b"x-deja-cache-key", info.key.encode()))
    if cost_known:
        headers.append((b"x-deja-cost-usd", f"{info.cost_usd:.8f}".encode()))
    if info.saved_usd:
        headers.append((b"x-deja-saved-usd", f"{info.saved_usd:.8f}".encode()))
    if info.similarity is not None:
        headers.append((b"x-deja-similarity", f"{info.similarity:.4f}".encode()))
    if info.age is not None:
        headers.append((b"age", str(int(info.age)).encode()))
    return headers


@contextlib.contextmanager
def _telling() -> Iterator[None]:
    """Keep the headers of the upstream answer of the calls inside for this request's
    caller (:class:`AnswerHeaders`, set at its start; none outside a request's task)."""
    told = answer_headers.get()
    if told is None:
        yield
        return
    told.armed = True
    try:
        yield
    finally:
        told.armed = False


def _told_headers() -> list[tuple[bytes, bytes]]:
    """The headers of the upstream answer this request got by its own call (its request
    id, rate limits: :class:`AnswerHeaders`); none for an answer served from the cache, or
    one it joined another request's call for (it made none)."""
    told = answer_headers.get()
    return told.headers if told is not None else []


_SERVED = frozenset({"hit", "semantic_hit"})
_WILDCARD_ROUTES = 4096  # model names resolved through wildcards, remembered
_GENERATION_PATHS = frozenset({"/chat/completions", "/completions"})
_NOTHING: Mapping[str, Any] = {}
_MAX_RETRY_PAUSE = 10.0
_SEMANTIC_PROBE_SECONDS = 5.0
# ... and to the exact tier's store, read once at the start (side by side with those)
_STORE_PROBE_SECONDS = 5.0
# OpenAI's limit on the inputs of one embeddings request, which the proxy mirrors (each
# deployment is then sent its misses in calls of at most its own provider's limit)
_MAX_EMBEDDING_INPUTS = EMBEDDING_INPUT_LIMITS["openai"]
# how often a worker writes its in-memory store's figures into the shared metrics
_PUBLISH_SECONDS = 5.0
_REPLAY_EVENTS = 32  # events of a replayed answer per message
_SHUTTING_DOWN = "the proxy is shutting down; retry"
# OpenAI's SDKs retry a 5xx twice unless told so: an error the same call meets again (the
# proxy's own credentials refused, its key builder failing, a missing package) is told
_NO_RETRY = ((b"x-should-retry", b"false"),)
_NO_STORE = CacheControl(no_store=True)
_BYPASS = CacheControl(no_cache=True, no_store=True)
_CALL_KINDS = frozenset({"chat", "completion", "embedding"})
# A body from this size on is parsed, checked and keyed in a thread (a hit's body of a few
# KiB pays no thread hop), with at most _MAX_CONTAINERS objects and arrays (a body under
# this size cannot hold more: each takes 2 bytes and a comma)
_LARGE_BODY = 256 * 1024
_MAX_CONTAINERS = 200_000


def _retry_delay(exc: ProviderError, retry: int) -> float:
    """The pause before retrying a deployment: what it asked for (Retry-After), else an
    exponential backoff with jitter; at most 10 s."""
    asked = getattr(exc, "retry_after", None)
    if isinstance(asked, (int, float)) and asked >= 0:
        return float(min(asked, _MAX_RETRY_PAUSE))
    return float(min(0.25 * 2.0**retry * (0.75 + random.random() / 2), _MAX_RETRY_PAUSE))


def _retry_worthy(exc: ProviderError) -> bool:
    """Worth calling the same deployment again for: what is worth a retry, any 5xx, and a
    success status whose answer deja cannot use (HTML from a gateway's login page, JSON
    that is no answer)."""
    status = exc.status_code or 0
    return retry_worthy(exc) or status >= 500 or upstream_error_label(exc) == "bad_answer"


def _failover_worthy(exc: ProviderError) -> bool:
    """Worth trying the next deployment of the same model name for: what is worth a retry,
    and the deployment's credentials refused (401, 403: a rotated or revoked key, a model
    its account may not use; another deployment has its own). The caller got a 502 while
    a healthy deployment of the same name went untried."""
    return _retry_worthy(exc) or exc.status_code in (401, 403)


# How often a failure that recurs on every request is logged: once when it starts, then
# at most one line per window with the count since. Not the cache's breaker window (1 s,
# how soon a store is probed again): an upstream down for ten minutes is 60 lines of a
# kind per deployment, not 600.
_LOG_WINDOW = 10.0
_LOGGED_KEYS = 1024  # failures tracked at once (deployments of wildcard names: bounded)


class _Cooldowns:
    """Deployments that failed ``allowed_fails`` times in a row (a failure worth trying the
    next one for), tried after their model name's others for ``cooldown_time`` seconds, as
    LiteLLM's router cools them down: a hung first deployment cost every request its full
    timeout before the next one answered. Never skipped: when every deployment of a name
    is cooling down, they are all tried, in their order."""

    def __init__(self, allowed_fails: int, seconds: float) -> None:
        self.allowed_fails = allowed_fails
        self.seconds = seconds
        # (route name, deployment index) -> [failures in a row, cooling until (monotonic)]
        self._state: dict[tuple[str, int], list[float]] = {}

    def order(self, route: Route, attempts: list[int]) -> list[int]:
        """``attempts`` with the deployments cooling down now moved last."""
        if not self._state or self.allowed_fails == 0 or len(attempts) < 2:
            return attempts
        now = time.monotonic()
        cooling = [i for i in attempts if self._until(route, i) > now]
        if not cooling or len(cooling) == len(attempts):
            return attempts
        return [i for i in attempts if i not in cooling] + cooling

    def _until(self, route: Route, i: int) -> float:
        state = self._state.get((route.name, i))
        return state[1] if state is not None else 0.0

    def failed(self, route: Route, i: int) -> bool:
        """Count a failure of deployment ``i``; whether it starts cooling down now."""
        if self.allowed_fails == 0 or len(route.targets) < 2:
            return False
        key = (route.name, i)
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = [0.0, 0.0]
            if len(self._state) > _LOGGED_KEYS:  # (wildcard names: bounded, oldest out)
                del self._state[next(iter(self._state))]
        state[0] += 1
        if state[0] < self.allowed_fails:
            return False
        starts = state[1] <= time.monotonic()
        state[0], state[1] = 0.0, time.monotonic() + self.seconds
        return starts

    def answered(self, route: Route, i: int) -> None:
        """Deployment ``i`` answered: its failures in a row start over."""
        if self._state:
            self._state.pop((route.name, i), None)


class _UpstreamFailures:
    """The proxy's lines about upstream failures, per deployment (its model name, model
    and redacted ``api_base``): the first of a kind (a status, ``timeout``,
    ``connection``...) says what failed and what deja did; then at most one line per
    window and kind with the count since (:class:`~deja._recurring.Recurring`); and one
    line when the deployment answers again. A refused credential is an ERROR, the rest WARNINGs; a
    caller's own 4xx is not the operator's to know of (its answer tells the caller)."""

    def __init__(self, recurring: Recurring) -> None:
        self._recurring = recurring
        # failing deployments: (since when, failures since it last answered)
        self._down: dict[tuple[str, str, str], tuple[float, int]] = {}
        self._again_said: dict[tuple[str, str, str], float] = {}

    def failed(self, route: Route, target: Target, exc: ProviderError, did: str) -> None:
        """``target`` of ``route`` failed with ``exc``, and deja ``did`` this about it."""
        kind = _operator_kind(exc)
        if kind is None:
            return
        where = _where(route, target)
        now = self._recurring.clock()
        since, failures = self._down.pop(where, (now, 0))
        if len(self._down) >= _LOGGED_KEYS:
            del self._down[next(iter(self._down))]
        self._down[where] = (since, failures + 1)
        said = self._recurring.occurred((_family(route, target), kind))
        if said is None:
            return
        _, unsaid, seconds = said
        refused = exc.status_code in (401, 403)
        logger.log(
            logging.ERROR if refused else logging.WARNING,
            "deployment %r of %r failed at %s (%s: %s); %s%s",
            target.model,
            route.name,
            _shown_base(target),
            kind,
            (
                "the upstream refused its credentials, fix its api_key"
                if refused  # (the provider's message is left out: it may echo the key)
                else _short_message(exc)
            ),
            did,
            f" ({unsaid} more since the last such line, {seconds:.0f} s ago)" if unsaid else "",
        )

    def answered(self, route: Route, target: Target) -> None:
        """``target`` of ``route`` answered: said once if it was failing."""
        if not self._down:  # (every answer asks: nothing to look up while none fails)
            return
        where = _where(route, target)
        down = self._down.get(where)
        if down is None:
            return
        now = self._recurring.clock()
        family = _family(route, target)
        if now - self._again_said.get(family, -math.inf) < self._recurring.window:
            return  # flapping: said lately; still failing, so a later answer says it
        del self._down[where]
        self._again_said.pop(family, None)
        if len(self._again_said) >= _LOGGED_KEYS:
            del self._again_said[next(iter(self._again_said))]
        self._again_said[family] = now
        since, failures = down
        logger.warning(
            "deployment %r of %r at %s answers again (%d failed calls in the %.0f s before)",
            target.model,
            route.name,
            _shown_base(target),
            failures,
            now - since,
        )


def _where(route: Route, target: Target) -> tuple[str, str, str]:
    """The deployment a failure or an answer is counted for: its route's name, its model,
    its ``api_base`` (of a wildcard route: the model the caller named, so that another
    model answering does not say this one answers again)."""
    return (route.name, target.model, target.api_base or "")


def _family(route: Route, target: Target) -> tuple[str, str, str]:
    """What failure lines are rate-limited by: the deployment; for a wildcard route, its
    ``model_list`` pattern and ``api_base`` (the caller names the model: a line per name
    was a line per request again)."""
    if route.family is not None:
        return (route.family, "*", target.api_base or "")
    return _where(route, target)


def _operator_kind(exc: ProviderError) -> str | None:
    """What kind of upstream failure ``exc`` is (``deja_upstream_errors_total``'s label),
    if an operator must know of it: a timeout, a connection error, a refused credential
    (401, 403), 408, 429, a 5xx or an unusable answer; ``None`` for the caller's own
    mistake (another 4xx: a bad request, an unknown model)."""
    status = exc.status_code or 0
    if 400 <= status < 500 and status not in (401, 403) and not retry_worthy(exc):
        return None
    return upstream_error_label(exc)


def _shown_base(target: Target) -> str:
    base = target.api_base
    return redact_url(base) if base else "its provider's default endpoint"


def _short_message(exc: ProviderError) -> str:
    """``exc``'s message for the log: the upstream's address once (the line names the
    deployment's), at most 200 characters."""
    text = str(exc)
    if exc.url:
        text = text.replace(exc.url, "the upstream")
    return text if len(text) <= 200 else text[:199] + "…"


class ProxyApp:
    """The proxy as an ASGI 3 application, built from validated :class:`~deja.config.Settings`.

    ``cache`` and ``client`` may be injected (tests); otherwise they are built from the
    settings: the configured cache (none: every request goes upstream) and one pooled
    upstream client. Call :meth:`aclose` (the ASGI lifespan does) to close both.

    Raises :class:`~deja.errors.MissingDependencyError` (naming the deployment) when a
    deployment's provider needs an extra that is not installed: ``bedrock/`` signing
    with SigV4 needs botocore, ``vertex_ai/`` with a service account cryptography.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        cache: AsyncCache | None = None,
        client: AsyncClient | None = None,
        metrics: PrometheusMetrics | None = None,
    ) -> None:
        # before anything is opened: a deployment that cannot be called refuses the start
        _require_provider_dependencies(settings.model_list)
        self.settings = settings
        self.metrics = metrics if metrics is not None else PrometheusMetrics()
        if cache is None and settings.caching is not None:
            cache = build_cache(settings, asynchronous=True, metrics=self.metrics)
        self.cache = cache
        if cache is not None:
            self.metrics.watch_store(cache.store.name, cache.store)
        # what answers are priced at (x-deja-cost-usd), with or without a cache
        self._prices = cache.prices if cache is not None else settings.price_table()
        self.client = (
            client
            if client is not None
            else AsyncClient(
                max_retries=0,
                max_connections=settings.proxy.max_upstream_connections,
                metrics=self.metrics,
                cache_control_injection_points=settings.cache_control_injection_points,
                # the client holds no cache here (this app serves it), so it is told the
                # configured prices and where the cache's store keeps context caches
                prices=self._prices,
                context_caches=(
                    AsyncContextCaches(store=cache.store, key_prefix=cache.key_prefix)
                    if cache is not None
                    else None
                ),
            )
        )
        self.auth = Auth(settings.general)
        self.routes, self._wildcards = self._routes(settings.model_list)
        # LiteLLM's supported_call_types: the routes of the other kinds bypass the cache
        kinds = settings.caching.call_types if settings.caching is not None else None
        self._uncached_kinds = _CALL_KINDS - kinds if kinds is not None else frozenset()
        self._wildcard_routes: dict[str, Route | None] = {}
        self._max_body = settings.general.max_request_bytes
        self._publisher: asyncio.Future[None] | None = None
        self._body_timeout = settings.general.request_body_timeout
        self._hook_timeout = settings.general.hook_timeout
        self._pre_hooks: list[tuple[str, Callable[..., Any]]] = []
        self._post_hooks: list[tuple[str, Callable[..., Any]]] = []
        self._hooks_without_embeddings: set[str] = set()
        # the hook functions that declare a ``tenant`` parameter (or ``**kwargs``): given the
        # caller's (by the function: two files' hooks may share a name)
        self._tenant_hooks: set[int] = set()  # (ids: a callable object may not hash)
        # failures that recur on every request (an upstream down, a hook that raises):
        # logged when they start, then counted, once per window
        self._recurring = Recurring(window=_LOG_WINDOW, max_keys=_LOGGED_KEYS)
        self._upstream_failures = _UpstreamFailures(self._recurring)
        self._cooldowns = _Cooldowns(settings.proxy.allowed_fails, settings.proxy.cooldown_time)
        self._fallbacks = settings.proxy.fallbacks
        for spec in settings.hooks:
            for name, hooks in (
                (spec.async_pre_llm_hook, self._pre_hooks),
                (spec.async_post_cache_hook, self._post_hooks),
            ):
                if name:
                    hook = spec.load(name)
                    hooks.append((name, hook))
                    if _takes_tenant(hook):
                        self._tenant_hooks.add(id(hook))
            if spec.key_builder and self.cache is not None:
                self.cache.key_builder = _tenant_key_builder(
                    spec.key_builder, spec.load(spec.key_builder)
                )
        if self.cache is not None and self.cache.key_builder is not None:
            self.cache.key_builder = self._timed_key_builder(self.cache.key_builder)
        if self.cache is None and self._post_hooks:
            logger.warning(
                "post-cache hooks (%s) run on answers the cache stores: without a caching"
                " block they never run (answers are passed on as they come)",
                _names(self._post_hooks),
            )
        self._handlers: dict[tuple[str, str], Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            ("POST", "/chat/completions"): self._chat,
            ("POST", "/completions"): self._completions,
            ("POST", "/embeddings"): self._embeddings,
            ("GET", "/models"): self._models,
            ("GET", "/health"): self._health,
            ("GET", "/health/ready"): self._ready,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/cache/ping"): self._admin_ping,
            ("GET", "/cache/stats"): self._admin_stats,
            ("POST", "/cache/delete"): self._admin_delete,
            ("POST", "/cache/invalidate"): self._admin_invalidate,
            ("POST", "/cache/flush"): self._admin_flush,
            ("POST", "/cache/flushall"): self._admin_flush,  # LiteLLM's name
            ("POST", "/cache/explain"): self._admin_explain,
            ("POST", "/cache/feedback"): self._feedback,
        }
        if not settings.model_list:
            # a config of a caching block alone (each of the seed guide's snippets) started
            # without a word, and answered every request with a 404
            logger.warning(
                "no model_list: the proxy serves no model, and every request is a 404"
                " model_not_found (as LiteLLM's proxy refuses it); add its deployments, or"
                " pass every name to OpenAI with model_name: '*' and model: 'openai/*'"
            )
        if not settings.general.master_key:
            logger.warning(
                "no general_settings.master_key (nor LITELLM_MASTER_KEY): authentication is "
                "OFF, every caller shares one tenant, and the /cache admin routes are disabled"
                + (
                    " (and /metrics is open: require_auth_for_metrics_endpoint needs one)"
                    if settings.metrics_auth
                    else ""
                )
            )

    @staticmethod
    def _routes(
        model_list: tuple[ModelDeployment, ...],
    ) -> tuple[dict[str, Route], tuple[_Wildcard, ...]]:
        """The exact names' routes, and the wildcard names, most specific first."""
        grouped: dict[str, list[ModelDeployment]] = {}
        for deployment in model_list:
            grouped.setdefault(deployment.model_name, []).append(deployment)
        routes = {name: make_route(name, deps) for name, deps in grouped.items() if "*" not in name}
        wildcards = sorted(
            (_Wildcard(name, deps) for name, deps in grouped.items() if "*" in name),
            key=lambda w: -w.specificity,
        )
        return routes, tuple(wildcards)

    def _find_route(self, model: str) -> Route | None:
        """``model``'s route: its own name's, else the first wildcard name's that matches."""
        route = self.routes.get(model)
        if route is not None or not self._wildcards:
            return route
        known = self._wildcard_routes
        if model in known:
            return known[model]
        route = next((r for w in self._wildcards if (r := w.route(model)) is not None), None)
        if len(known) >= _WILDCARD_ROUTES:  # names callers made up: bounded
            known.clear()
        known[model] = route
        return route

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.cache is not None:  # before the first request, not during it
                    await self.cache.load_semantic()
                # (side by side: the start waits for the slower probe only)
                unreachable, problem = await asyncio.gather(
                    self._store_problem(), self._semantic_problem()
                )
                if unreachable is not None and self.cache is not None:
                    # fail-open: the proxy serves, uncached; only /health/ready (503) said
                    # so, or the misses of the first requests
                    logger.error(
                        "the cache store (%s) cannot be reached (%s): requests go to the"
                        " upstream uncached until it answers (/health/ready answers 503"
                        " meanwhile)",
                        self.cache.store.name,
                        unreachable,
                    )
                if problem is not None:
                    logger.error(
                        "the semantic tier cannot work (%s): requests are answered by the"
                        " exact tier only until it can",
                        problem,
                    )
                if multiprocess():
                    self._publisher = asyncio.ensure_future(self._publish_store_usage())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._publisher is not None:
                    self._publisher.cancel()
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _publish_store_usage(self) -> None:
        """With several workers, this worker's in-memory store figures, written into the
        shared metrics now and then (a scrape adds them up over the workers)."""
        while True:
            self.metrics.publish_store_usage()
            await asyncio.sleep(_PUBLISH_SECONDS)

    async def aclose(self) -> None:
        """Close the upstream client and the cache store."""
        await self.client.aclose()
        if self.cache is not None:
            await self.cache.aclose()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") or "/"
        if path.startswith("/v1/"):
            path = path[3:]
        handler = self._handlers.get((scope["method"], path))
        if handler is None and scope["method"] == "GET" and path.startswith("/models/"):
            handler = self._model
        try:
            if handler is None:
                raise self._not_found(scope["method"], path)
            await handler(scope, receive, send)
        except asyncio.CancelledError:
            # the server stops and its drain time is over: answer what has not been answered
            # yet as an API error a client retries, not the server's bare 500 (a response
            # already started cannot start again: the server refuses, and the cancel stands)
            body = error_body(503, _SHUTTING_DOWN, code="shutting_down")
            try:
                await send_raw(send, 503, body, [(b"retry-after", b"1")])
            except Exception:
                raise asyncio.CancelledError from None
        except HTTPError as exc:
            if exc.status == 499:  # the client went away: nobody to answer
                return
            body = exc.payload()
            headers = exc.headers
            if header(scope, b"expect") is not None:
                # refused before its body was asked for: the client may not send it, and a
                # connection kept open would take the next request for this one's body
                headers = [*headers, (b"connection", b"close")]
            await send_raw(send, exc.status, body, headers)

    def _not_found(self, method: str, path: str) -> HTTPError:
        if path in ("/responses", "/messages"):
            return HTTPError(
                404, f"{path} is not served by this deja version", code="not_implemented"
            )
        if any(p == path for _, p in self._handlers):
            return HTTPError(405, f"{method} is not allowed on {path}")
        return HTTPError(404, f"no route {method} {path}", code="not_found")

    # -- inputs ---------------------------------------------------------------------------

    def _caller(self, scope: Scope) -> Caller:
        return self.auth.identify(scope)

    async def _json_body(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        return (await self._sized_json_body(scope, receive))[0]

    async def _sized_json_body(self, scope: Scope, receive: Receive) -> tuple[dict[str, Any], int]:
        """The body's JSON object, and its size in bytes (from :data:`_LARGE_BODY` on, its
        request's Python work is done in a thread, not on the event loop)."""
        raw = await read_body(scope, receive, self._max_body, self._body_timeout)
        return await off_loop(lambda: _json_object(raw), len(raw), threshold=_LARGE_BODY), len(raw)

    def _route(self, body: Mapping[str, Any], caller: Caller) -> Route:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise HTTPError(400, "'model' is required and must be a string", param="model")
        # a model the key may not use is one that does not exist, as GET /models/{name}
        # has it: a 403 told a restricted key which other names the proxy serves. (Asked
        # first: a wildcard route's own refusals would tell them too.)
        route = self._find_route(model) if caller.may_use(model) else None
        if route is None:
            raise HTTPError(
                404, f"the model {model!r} does not exist", param="model", code="model_not_found"
            )
        return route

    def _controls(self, scope: Scope, body: dict[str, Any]) -> CacheControl:
        from_body = _body_controls(body)
        try:
            return merge(from_header(joined_header(scope, b"cache-control")), from_body)
        except ControlError as exc:  # a Cache-Control header, not a body parameter
            raise HTTPError(400, str(exc)) from None

    async def _pre_llm(self, body: dict[str, Any], *, tenant: str | None) -> dict[str, Any]:
        for name, hook in self._pre_hooks:
            try:
                call = self._hook_call(hook, body, tenant=tenant)
                result = await self._run_hook("pre-LLM", name, call)
            except Exception as exc:
                refusal = _refusal(exc)
                if refusal is not None:  # the hook turned the request down (a policy)
                    raise refusal from None
                # the operator's bug: its detail goes to the log, not to every caller
                self._hook_failed("pre-LLM", name, exc, "its request is answered 500")
                raise HookError(f"hook {name} failed (the proxy's log has why)") from exc
            if isinstance(result, dict):
                body = result
            elif result is not None:
                self._hook_said(
                    logging.WARNING,
                    ("pre-LLM", name, "returned"),
                    "pre-LLM hook %s returned %s, not the request body: ignored",
                    name,
                    _a(type(result).__name__),
                )
        return body

    async def _prepared(
        self,
        body: dict[str, Any],
        caller: Caller,
        route: Route,
        ctl: CacheControl,
        *,
        size: int = 0,
    ) -> tuple[dict[str, Any], Route, CacheControl, bytes | None]:
        """The request as the pre-call hooks leave it: their body, with the cache options
        they set (a ``cache`` object, taken out: never forwarded), and the route of the
        model they name (which the caller's key must be allowed too); and the caller's body
        as the hooks were given it, as JSON (``None``: no hook ran), to tell, when the
        hooks' body is refused, whether the caller's was fine (:meth:`_hooks_broke`).
        ``size``: the body's size in bytes (a large one is written out off the event loop).
        """
        if not self._pre_hooks:
            return body, route, ctl, None
        model = body.get("model")
        before = None
        with contextlib.suppress(TypeError):  # (an integer past 64 bits: no snapshot)
            before = await off_loop(partial(orjson.dumps, body), size, threshold=_LARGE_BODY)
        body = await self._pre_llm(body, tenant=caller.tenant)
        hooked = body.pop("cache", None)
        if hooked is not None:
            try:
                ctl = merge(ctl, parse_controls(hooked))
            except ControlError as exc:
                names = _names(self._pre_hooks)
                self._hook_said(
                    logging.ERROR,
                    ("pre-LLM", names, "options"),
                    "pre-LLM hook %s set cache options deja does not have: %s (its request is"
                    " answered 500)",
                    names,
                    exc,
                )
                raise HookError(
                    "a pre-LLM hook set invalid cache options (the proxy's log has why)"
                ) from exc
        if body.get("model") != model:
            hooked_model = body.get("model")
            if not isinstance(hooked_model, str) or not hooked_model:
                # (the caller's was a model name it may use: its route was found)
                refused = InvalidRequestError(
                    "'model' is required and must be a string", param="model"
                )
                raise self._hooks_broke(refused)
            route = self._route(body, caller)
        return body, route, ctl, before

    def _hooks_broke(self, exc: InvalidRequestError) -> HookError:
        """The pre-LLM hooks made the caller's valid request invalid (``exc``: why the
        body they left is refused): the operator's code at fault, not the caller, who was
        answered a 400 to fix a request that was fine, and nothing was logged. Said once,
        then counted; the request is answered 500 ``hook_failed``."""
        names = _names(self._pre_hooks)
        self._hook_said(
            logging.ERROR,
            ("pre-LLM", names, "invalid"),
            "pre-LLM hook %s made a valid request invalid: %s (its request is answered 500)",
            names,
            _without_value(str(exc)),  # (the value may be a prompt's text)
        )
        return HookError(f"pre-LLM hook {names} made the request invalid (the proxy's log has why)")

    def _blamed(
        self,
        exc: Exception,
        before: bytes | None,
        hooked: Callable[[], object],
        asked: Callable[[dict[str, Any]], object],
    ) -> Exception:
        """``exc``, or the :class:`HookError` of :meth:`_hooks_broke` when ``exc`` is the
        body the pre-LLM hooks left refused (``hooked()`` refuses it too) and ``asked``
        takes the caller's (``before``, as JSON). Run on a refusal only: a request the
        hooks leave valid pays for the snapshot alone."""
        if before is None or not isinstance(exc, InvalidRequestError):
            return exc
        try:
            hooked()
        except InvalidRequestError:
            pass
        else:
            return exc  # refused elsewhere than in the body the hooks left
        try:
            asked(orjson.loads(before))
        except InvalidRequestError:
            return exc  # the caller's own mistake: its 400
        return self._hooks_broke(exc)

    def _hook_call(
        self, hook: Callable[..., Any], *args: object, tenant: str | None
    ) -> Callable[[], Any]:
        """``hook(*args)``, with ``tenant=`` the caller's tenant (``None``: no virtual key
        names one) for a hook that declares it."""
        if id(hook) in self._tenant_hooks:
            return partial(hook, *args, tenant=tenant)
        return partial(hook, *args)

    def _on_response(
        self, body: dict[str, Any], ctl: CacheControl, *, tenant: str | None
    ) -> Callable[[dict[str, Any]], Awaitable[CacheControl | None]] | None:
        if not self._post_hooks:
            return None
        embeddings = "input" in body and "messages" not in body and "prompt" not in body

        async def run(response: dict[str, Any]) -> CacheControl | None:
            # An embeddings batch's hooks see a copy, never served, and its thousands of
            # vectors are not written out for this: no snapshot (``sent``) for them.
            sent = None
            if not embeddings:
                with contextlib.suppress(TypeError):  # (unwritable already: no hook's doing)
                    sent = orjson.dumps(response)
            # The answer is paid for by now: a hook that fails, or asks for what is no cache
            # option, costs the caller nothing; the answer is served and not stored. One
            # that fails changes nothing: what it changed before it raised (or timed out)
            # is undone, from ``sent``, the answer as the hooks before it left it (as JSON:
            # a plain answer's, none for embeddings, whose hooks are given a copy); so does
            # one that asks for an invalid cache option, and one that leaves the answer
            # something JSON cannot write (a set, an object of its own: a 500 lost the paid
            # answer), the hooks after it not run.
            # Each hook's options add to the others' (controls.merge: the tags of all, the
            # stricter no-store, max age and similarity floor, the later hook's TTL).
            extra: CacheControl | None = None
            for name, hook in self._post_hooks:
                try:
                    call = self._hook_call(hook, response, body, tenant=tenant)
                    result = await self._run_hook("post-cache", name, call)
                except Exception as exc:
                    if embeddings and isinstance(
                        exc, (KeyError, IndexError, TypeError, AttributeError)
                    ):
                        # a hook written for chat answers, which reads their fields: it has
                        # no say on embeddings (it had none before hooks saw them)
                        if name not in self._hooks_without_embeddings:
                            self._hooks_without_embeddings.add(name)
                            logger.warning(
                                "post-cache hook %s does not read embeddings answers (%s: %s):"
                                " they are stored without its cache options",
                                name,
                                type(exc).__name__,
                                exc,
                            )
                        continue
                    if sent is not None:
                        _restore(response, sent)
                    outcome = "the answer is served as it was before it, not stored"
                    self._hook_failed("post-cache", name, exc, outcome)
                    return merge(ctl, _NO_STORE)
                before = sent
                if before is not None:
                    try:
                        sent = orjson.dumps(response)  # (the next hook's to go back to)
                    except TypeError as exc:
                        _restore(response, before)
                        outcome = (
                            "it left the answer unwritable as JSON: served as the hooks before"
                            " it left it, not stored"
                        )
                        self._hook_failed("post-cache", name, exc, outcome)
                        return merge(ctl, _NO_STORE)
                if isinstance(result, Mapping):
                    try:
                        asked = parse_controls(result)
                    except ControlError as exc:
                        if before is not None:
                            _restore(response, before)
                        self._hook_said(
                            logging.ERROR,
                            ("post-cache", name, "options"),
                            "post-cache hook %s asked for an invalid cache option (%s): the answer"
                            " is served as it was before it, not stored",
                            name,
                            exc,
                        )
                        return merge(ctl, _NO_STORE)
                    extra = asked if extra is None else merge(extra, asked)
                elif result is not None:
                    self._hook_said(
                        logging.WARNING,
                        ("post-cache", name, "returned"),
                        "post-cache hook %s returned %s, not cache options: ignored",
                        name,
                        _a(type(result).__name__),
                    )
            if extra is None:
                return None
            if extra.namespace is not None and extra.namespace != ctl.namespace:
                self._hook_said(
                    logging.ERROR,
                    ("post-cache", "namespace"),
                    "post-cache hooks asked for namespace %r, but the key is chosen before the"
                    " call (set it in a pre-call hook): the answer is not stored",
                    extra.namespace,
                )
                return merge(ctl, _NO_STORE)
            return merge(ctl, extra)

        return run

    async def _run_hook(self, stage: str, name: str, call: Callable[[], Any]) -> Any:
        """What the hook ``call`` runs returns, awaited when it is awaitable, within
        ``general_settings.hook_timeout`` (else a :class:`HookTimeoutError`: a hung hook
        held its caller, every caller who joined the same call, and a stream's [DONE]).

        A sync hook runs here, on the event loop, to its end: nothing can stop it (a thread
        could not be stopped either, and would race the request over the body it changes).
        One that took longer than the limit is said, once then counted; its result stands.
        """
        started = time.monotonic()
        result = call()
        # (any awaitable: a sync hook may hand back a coroutine, a Future, or another
        # library's awaitable, which went unawaited)
        if not inspect.isawaitable(result):
            took = time.monotonic() - started
            if took > self._hook_timeout:
                self._hook_said(
                    logging.WARNING,
                    (stage, name, "slow"),
                    "%s hook %s is not async and ran %.1f s, past general_settings.hook_timeout"
                    " (%g s): a sync hook cannot be stopped, and every request of this worker"
                    " waited for it; make it async def",
                    stage,
                    name,
                    took,
                    self._hook_timeout,
                )
            return result
        deadline = asyncio.timeout(self._hook_timeout)
        try:
            async with deadline:
                return await result
        except TimeoutError as exc:
            if not deadline.expired():  # the hook's own (a call of its that timed out)
                raise
            raise HookTimeoutError(
                f"did not finish within general_settings.hook_timeout"
                f" ({self._hook_timeout:g} s): cancelled"
            ) from exc

    def _timed_key_builder(self, build: Callable[[Request], str]) -> Callable[[Request], str]:
        """The configured key builder ``build``, held to ``general_settings.hook_timeout`` as
        a sync hook is: a key is computed synchronously, on every lookup (an ``async def``
        builder is refused at start), so it runs on the event loop to its end, and one
        that took longer than the limit is said, once then counted; its digest stands."""
        name = getattr(build, "__qualname__", "key_builder")

        def timed(request: Request) -> str:
            started = time.monotonic()
            try:
                # (a digest deja refuses is checked here too: said as a failure is)
                return check_digest(build(request))
            except Exception as exc:  # (it fails on every request: said once, then counted)
                self._hook_failed("key builder", name, exc, "no key for its request")
                raise
            finally:
                took = time.monotonic() - started
                if took > self._hook_timeout:
                    self._hook_said(
                        logging.WARNING,
                        ("key builder", name, "slow"),
                        "key builder %s ran %.1f s, past general_settings.hook_timeout (%g s):"
                        " a key builder cannot be stopped (keys are computed synchronously),"
                        " and every request of this worker waited for it",
                        name,
                        took,
                        self._hook_timeout,
                    )

        timed.__qualname__ = name
        return timed

    def _hook_said(self, level: int, key: tuple[str, ...], message: str, *args: object) -> None:
        """A hook's misuse that recurs on every request (cache options deja does not have,
        a value of the wrong type returned): said once, then counted, one line per window
        (as a hook that raises: :meth:`_hook_failed`)."""
        said = self._recurring.occurred(("hook", *key))
        if said is None:
            return
        _, unsaid, seconds = said
        if unsaid:
            message += " (%d more times since the last such line, %.0f s ago)"
            args = (*args, unsaid, seconds)
        logger.log(level, message, *args)

    def _hook_failed(self, stage: str, name: str, exc: Exception, outcome: str) -> None:
        """A hook raised: its traceback once per exception type and window, then a count
        per window (a hook that breaks breaks on every request)."""
        said = self._recurring.occurred(("hook", stage, name, type(exc)))
        if said is None:
            return
        fresh, unsaid, seconds = said
        if fresh:  # (with the failures of the window before, if they were not said)
            before = f" ({unsaid} more before, {seconds:.0f} s ago)" if unsaid else ""
            logger.error("%s hook %s failed: %s%s", stage, name, outcome, before, exc_info=exc)
        else:
            logger.error(
                "%s hook %s failed %d more times (%s) in the last %.0f s: %s",
                stage,
                name,
                unsaid + 1,
                type(exc).__name__,
                seconds,
                outcome,
            )

    def _storing(
        self,
        route: Route,
        plan: Plan,
        body: dict[str, Any],
        ctl: CacheControl,
        *,
        tenant: str | None,
    ) -> Any:
        """The post-cache hooks, and: an answer from a deployment that asks something
        else than the one the request is keyed as (another model, a failover) is served,
        not stored under that key."""
        hooks = self._on_response(body, ctl, tenant=tenant)
        if len(route.targets) == 1:
            return hooks

        async def run(response: dict[str, Any]) -> CacheControl | None:
            # (the hooks see every fresh answer: a redacting one, a failover's too)
            asked = await hooks(response) if hooks is not None else None
            if plan.served is not None and route.targets[plan.served].kin != plan.keyed_as:
                return merge(asked or ctl, _NO_STORE)
            return asked

        return run

    def _embeddings_storing(
        self,
        route: Route,
        plan: Plan,
        body: dict[str, Any],
        ctl: CacheControl,
        *,
        tenant: str | None,
    ) -> OnEmbeddings | None:
        """:meth:`_storing` for an embeddings ``body``: the hooks are given, with the
        answer, the request of its items (``body`` with ``input`` the inputs of the answer's
        items, in their order, when they are not all its inputs: some were served from the
        cache, or given twice and fetched once). Given the whole ``input``, a hook could not
        tell which input a vector of the answer, indexed from 0, was."""
        whole: OnResponse | None = self._storing(route, plan, body, ctl, tenant=tenant)
        if whole is None:
            return None
        count = len(embedding_items(body["input"]))

        async def run(answer: dict[str, Any], inputs: list[Any]) -> CacheControl | None:
            # (the inputs fetched are some of the body's, in order, each once: as many are
            # all of them)
            hooks = whole
            if len(inputs) != count:
                # (token arrays copied: the batch reads its own after the hooks ran)
                given = [list(i) if isinstance(i, list) else i for i in inputs]
                some = {**body, "input": given}
                hooks = self._storing(route, plan, some, ctl, tenant=tenant)
            assert hooks is not None  # (as for the whole body)
            return await hooks(answer)

        return run

    # -- upstream -------------------------------------------------------------------------

    async def _call(
        self,
        route: Route,
        plan: Plan,
        path: str,
        payload: Mapping[str, Any],
        *,
        walk: _Walk | None,
    ) -> dict[str, Any]:
        answer: dict[str, Any] = await self._upstream(
            route, plan, path, payload, stream=False, walk=walk
        )
        return answer

    async def _open(
        self,
        route: Route,
        plan: Plan,
        path: str,
        payload: Mapping[str, Any],
        *,
        walk: _Walk | None,
    ) -> Any:
        return await self._upstream(route, plan, path, payload, stream=True, walk=walk)

    async def _upstream(
        self,
        route: Route,
        plan: Plan,
        path: str,
        payload: Mapping[str, Any],
        *,
        stream: bool,
        walk: _Walk | None,
    ) -> Any:
        """Call ``route``'s deployments in the ``plan``'s order until one answers (noted
        in the plan): each as many times as its ``max_retries`` allows more, then the next
        one, on failures worth it (timeouts, connection errors, 429, 5xx). ``walk``: the
        request's way through its fallbacks (``None``: it has none), which the last
        deployment's failure line tells the next step of. The headers of the answer are
        kept for the caller (its request id, rate limits: :func:`_told_headers`)."""
        last: ProviderError | None = None
        attempts = self._cooldowns.order(route, plan.attempts)
        for n, i in enumerate(attempts):
            body = route.payload(i, path, payload)
            target = route.targets[i]
            for retry in range(target.retries + 1):
                try:
                    with _telling():
                        opened: Any = (
                            await self.client.astream(path, body, **target.stream_options)
                            if stream
                            else await self.client.arequest(path, body, **target.options)
                        )
                    if plan is not _ONLY:  # one deployment: nothing to tell (and shared)
                        plan.served = i
                        self._cooldowns.answered(route, i)
                    if not stream:  # (a stream has answered when it ends: its relay says so)
                        self._upstream_failures.answered(route, target)
                    return opened
                except ProviderError as exc:
                    worthy = _failover_worthy(exc)
                    again = retry < target.retries and _retry_worthy(exc)
                    if again:
                        did = "retrying it"
                    elif worthy and n + 1 < len(attempts):
                        did = "trying the next deployment"
                    else:  # its fallbacks, or the error is the answer
                        did = self._after_failing(route, exc, walk)
                    self._upstream_failures.failed(route, target, exc, did)
                    if not worthy:
                        raise
                    if self._cooldowns.failed(route, i):
                        logger.info(  # (its failures are logged as such, once a window)
                            "deployment %r of %r at %s failed %d times in a row: tried after"
                            " the others for %g s",
                            target.model,
                            route.name,
                            _shown_base(target),
                            self._cooldowns.allowed_fails,
                            self._cooldowns.seconds,
                        )
                    last = exc
                    if not again:
                        break
                    await asyncio.sleep(_retry_delay(exc, retry))
        assert last is not None  # a route has at least one deployment
        raise last

    def _fallback_kind(self, exc: ProviderError) -> FallbackKind | None:
        """Which fallbacks a request that failed with ``exc`` tries (``None``: none)."""
        kind = refusal_kind(exc)
        if kind is None and _retry_worthy(exc):
            return "general"
        return kind

    def _after_failing(self, failed: Route, exc: ProviderError, walk: _Walk | None) -> str:
        """What a request does once every deployment of ``failed`` failed, the last with
        ``exc`` (its log line says so), as :meth:`_fall_back` goes on: ``failed``'s own
        fallbacks, else the next of those being tried, else the caller is answered the
        error of the name it asked for."""
        if walk is not None:
            kind = self._fallback_kind(exc)
            if kind is not None and self._tries_one(failed, kind, walk):
                return "trying the model name's fallbacks"
            if any(self._tries_one(f, k, walk) for f, k, _ in walk.failing):
                return "trying the next fallback"
            if walk.failing:  # (a fallback failed: the caller gets the asked name's error)
                asked, _, error = walk.failing[0]
                return f"answered the {_http_error(error).status} of {asked.name!r} to the caller"
        return f"answered {_http_error(exc).status} to the caller"

    def _tries_one(self, failed: Route, kind: FallbackKind, walk: _Walk) -> bool:
        """Whether ``walk`` tries one of ``failed``'s fallbacks for ``kind``."""
        return walk.left > 0 and next(self._fallbacks_left(failed, kind, walk), None) is not None

    def _requested_fallbacks(self, body: dict[str, Any]) -> tuple[str, ...] | None:
        """The request's own ``fallbacks`` (LiteLLM's per-request list: model names tried,
        in its place, when the name asked for fails), taken out of the body: never sent
        upstream nor keyed. ``None`` without one; a 400 for a list of names not served."""
        given = body.pop("fallbacks", None)
        if given is None:
            return None
        if (
            not isinstance(given, list)
            or len(given) > _MAX_REQUESTED_FALLBACKS
            or not all(isinstance(name, str) for name in given)
        ):
            raise HTTPError(
                400,
                f"'fallbacks' must be a list of at most {_MAX_REQUESTED_FALLBACKS} model names",
                param="fallbacks",
            )
        for name in given:
            if self._find_route(name) is None:
                raise HTTPError(
                    400,
                    f"fallback model {name!r} is not served here",
                    param="fallbacks",
                    code="model_not_found",
                )
        return tuple(given)

    def _walk(
        self, route: Route, caller: Caller, requested: tuple[str, ...] | None
    ) -> _Walk | None:
        """The way through its fallbacks of ``caller``'s request for ``route``
        (``requested``: its own list); ``None`` when it has none to take."""
        if not self._fallbacks and requested is None:
            return None
        return _Walk(caller, route.name, requested, {route.name}, self._fallbacks.max_fallbacks)

    async def _falling_back(
        self, route: Route, attempt: Callable[[Route], Awaitable[_T]], walk: _Walk | None
    ) -> tuple[_T, Route | None]:
        """``attempt(route)``; when it fails so that LiteLLM's fallbacks say, the same for
        the fallback names, in LiteLLM's order: the failed name's list, each name's own
        fallbacks tried when it fails, before the next of the list; each name once (a cycle
        is harmless), at most ``max_fallbacks`` of them, none the caller's key may not use.
        Returns the answer and the fallback route that gave it (``None``: ``route``'s own);
        when no fallback answers, raises ``route``'s error (the model the caller asked for
        failed so). ``walk`` (:meth:`_walk`; ``None``: no fallbacks) holds the request's own
        list, in place of the configured fallbacks of the name asked for (those of the names
        it lists still apply); ``attempt`` passes it on to :meth:`_upstream`, for its log."""
        try:
            return await attempt(route), None
        except ProviderError as exc:
            if walk is None:
                raise
            found = await self._fall_back(route, exc, attempt, walk)
            if found is None:
                raise  # (exc, its cause as it was: what the caller's model name failed with)
            return found

    async def _fall_back(
        self,
        failed: Route,
        exc: ProviderError,
        attempt: Callable[[Route], Awaitable[_T]],
        walk: _Walk,
    ) -> tuple[_T, Route] | None:
        """The answer of the first of ``failed``'s fallbacks (for ``exc``) to answer, with
        its route; ``None`` when none does."""
        kind = self._fallback_kind(exc)
        if kind is None:
            return None
        walk.failing.append((failed, kind, exc))
        try:
            for route in self._fallbacks_left(failed, kind, walk):
                if walk.left == 0:
                    return None
                walk.tried.add(route.name)
                walk.left -= 1
                self._fell_back(failed, route.name, exc, kind)
                try:
                    answer = await attempt(route)
                except ProviderError as again:
                    self._count_fallback(failed, route, kind, "failed")
                    found = await self._fall_back(route, again, attempt, walk)
                    if found is not None:
                        return found
                except (HTTPError, InvalidRequestError) as refused:
                    # this name cannot take the request as it is (a file URL its deployments
                    # do not allow, a parameter its provider refuses): the next one may; the
                    # caller is told of the model it asked for, not of this one
                    self._count_fallback(failed, route, kind, "refused")
                    logger.debug("fallback %r refused the request: %s", route.name, refused)
                else:
                    self._count_fallback(failed, route, kind, "answered")
                    return answer, route
            return None
        finally:
            walk.failing.pop()

    def _fallbacks_left(self, failed: Route, kind: FallbackKind, walk: _Walk) -> Iterator[Route]:
        """The routes of ``failed``'s fallbacks for a failure of ``kind`` (the request's own
        list in place of the general ones of the name it asked for) that ``walk`` may still
        try, in order: not tried yet (read as it goes: a name tried meanwhile, down another
        name's fallbacks, is passed over), the caller's key may use, a route takes. (A
        fresh one yields what is left of a list being walked: the names before were tried
        or passed over, for reasons that still hold.)"""
        names = (
            walk.requested
            if walk.requested is not None and kind == "general" and failed.name == walk.asked
            else fallback_names(self._fallbacks, failed.name, kind, family=failed.family)
        )
        for name in names:
            if name in walk.tried or not walk.caller.may_use(name):
                continue  # (tried already; a name the caller's key may not use: never)
            route = self._fallback_route(name)
            if route is not None:
                yield route

    def _count_fallback(
        self, failed: Route, route: Route, kind: FallbackKind, outcome: str
    ) -> None:
        """``deja_fallbacks_total``: by model_list name (a wildcard's pattern for a name it
        serves, so that the names callers make up are no labels)."""
        self.metrics.fallback(
            failed.family or failed.name, route.family or route.name, kind, outcome
        )

    def _fallback_route(self, name: str) -> Route | None:
        """The route of fallback ``name``; ``None`` for a name a wildcard serves but refuses
        here (another provider's name for a route keyed to one: the caller is told of the
        model it asked for) or none serves (settings made by hand: the loader checks)."""
        try:
            return self._find_route(name)
        except HTTPError as refused:
            logger.debug("fallback %r refused the request: %s", name, refused)
            return None

    def _fell_back(self, failed: Route, name: str, exc: ProviderError, kind: FallbackKind) -> None:
        """A WARNING per fallback: the first of a kind, then at most one line per window
        with the count since (as the deployments' failure lines)."""
        said = self._recurring.occurred(("fallback", failed.family or failed.name, name, kind))
        if said is None:
            return
        _, unsaid, seconds = said
        logger.warning(
            "model %r failed (%s): falling back to %r%s",
            failed.name,
            (
                _FALLBACK_REASONS[kind]
                if kind != "general"
                else f"{upstream_error_label(exc)}, every deployment"
            ),
            name,
            f" ({unsaid} more since the last such line, {seconds:.0f} s ago)" if unsaid else "",
        )

    # -- completion routes ----------------------------------------------------------------

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(scope, receive, send, kind="chat", path="/chat/completions")

    async def _completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(scope, receive, send, kind="completion", path="/completions")

    async def _generate(
        self, scope: Scope, receive: Receive, send: Send, *, kind: str, path: str
    ) -> None:
        caller = self._caller(scope)
        body, size = await self._sized_json_body(scope, receive)
        answer_headers.set(AnswerHeaders())  # (this request's task: its own)
        large = size >= _LARGE_BODY
        requested = self._requested_fallbacks(body)
        route = self._route(body, caller)
        ctl = self._controls(scope, body)
        if kind in self._uncached_kinds:
            ctl = merge(ctl, _BYPASS)
        request_kind: RequestKind = "chat" if kind == "chat" else "completion"
        asked_route, before = route, None
        try:
            body, route, ctl, before = await self._prepared(body, caller, route, ctl, size=size)
            walk = self._walk(route, caller, requested)
            # the default key builder's digest, for a large body (a custom builder is the
            # operator's code: it runs where it always has, on the event loop)
            key_ahead = large and self.cache is not None and self.cache.key_builder is None
            semantic = self.cache.semantic if key_ahead and self.cache is not None else None

            def keyed(route: Route, plan: Plan, body: dict[str, Any]) -> Request:
                if not route.storage_urls:
                    _refuse_storage_urls(body)
                request = route.request(
                    plan.keyed_as,
                    body,
                    kind=request_kind,
                    tenant=caller.tenant,
                )
                if key_ahead:
                    remember_digest(request)
                    if semantic is not None:  # its scope: the whole body normalized again
                        semantic.query(request)
                return request

            async def prepared(route: Route) -> tuple[Plan, Request, dict[str, Any]]:
                """The plan and the request of ``route`` (a fallback's: asked by its name)."""
                asked = _asked_of(route, body)
                plan = route.plan()
                # each of these walks the whole body in Python (a 10 MiB body of tiny JSON
                # nodes: seconds): in a thread for a large one, every other request waiting else
                request = await off_loop(
                    lambda: keyed(route, plan, asked), size, threshold=_LARGE_BODY
                )
                return plan, request, asked

            if body.get("stream"):

                async def open_stream(route: Route) -> tuple[Plan, AsyncCachedStream]:
                    plan, request, asked = await prepared(route)
                    opened = await self._open_stream(
                        route, plan, path, body=asked, request=request, ctl=ctl, walk=walk
                    )
                    return plan, opened

                (plan, opened), fallback = await self._falling_back(route, open_stream, walk)
                await self._relay(send, receive, fallback or route, plan, opened, fallback=fallback)
                return
            payload = {k: v for k, v in body.items() if k != "model"}

            async def complete(route: Route) -> tuple[CacheInfo, bytes]:
                plan, request, asked = await prepared(route)
                return await self._complete(
                    route,
                    plan,
                    path,
                    payload=payload,
                    request=request,
                    ctl=ctl,
                    body=asked,
                    walk=walk,
                )

            (info, data), fallback = await self._falling_back(route, complete, walk)
        except HTTPError:
            raise
        except Exception as exc:
            # a body the pre-LLM hooks made invalid: keyed as each route would key it
            def hooked(hooked_route: Route = route) -> Request:
                return hooked_route.request(0, body, kind=request_kind, tenant=caller.tenant)

            def asked(original: dict[str, Any]) -> Request:
                return asked_route.request(0, original, kind=request_kind, tenant=caller.tenant)

            raise _http_error(self._blamed(exc, before, hooked, asked)) from exc
        await send_raw(
            send, 200, data, _cache_headers(info) + _fallback_header(fallback) + _told_headers()
        )

    async def _complete(
        self,
        route: Route,
        plan: Plan,
        path: str,
        *,
        payload: dict[str, Any],
        request: Request,
        ctl: CacheControl,
        body: dict[str, Any],
        walk: _Walk | None,
    ) -> tuple[CacheInfo, bytes]:
        async def call() -> dict[str, Any]:
            return await self._call(route, plan, path, payload, walk=walk)

        if self.cache is None:  # priced all the same: a paid call is no free one
            response = await call()
            cost = self._prices.response_cost(_priced_as(route, plan, request), response)
            return CacheInfo("bypass", "", cost_usd=cost), orjson.dumps(response)
        result = await self.cache.fetch(
            request,
            call,
            control=ctl,
            on_response=self._storing(route, plan, body, ctl, tenant=request.tenant),
        )
        data = result.response_bytes
        assert data is not None  # fetch returns a response or raises
        served = plan.served
        if served is not None and route.targets[served].kin != plan.keyed_as and result.response:
            # another model answered (a failover): its price, not the keyed model's
            result.info.cost_usd = self._prices.response_cost(
                _priced_as(route, plan, request), result.response
            )
        return result.info, data

    async def _open_stream(
        self,
        route: Route,
        plan: Plan,
        path: str,
        *,
        body: dict[str, Any],
        request: Request,
        ctl: CacheControl,
        walk: _Walk | None,
    ) -> AsyncCachedStream:
        """The stream of ``request``: a hit's replay, one in flight joined, or one opened
        upstream (an upstream error before its first chunk is raised here)."""
        options = body.get("stream_options") or {}
        include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        payload = {k: v for k, v in body.items() if k != "model"}
        # deja always asks for usage, to price and store the answer; the caller gets the
        # usage chunk only if it asked for it
        payload["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }

        async def open_stream() -> Any:
            return await self._open(route, plan, path, payload, walk=walk)

        if self.cache is None:
            return await aopen_uncached(open_stream, include_usage=include_usage)
        return await self.cache.stream(
            request,
            open_stream,
            control=ctl,
            include_usage=include_usage,
            on_response=self._storing(route, plan, body, ctl, tenant=request.tenant),
            copy_chunks=False,  # serialized as they come, never changed
        )

    async def _relay(
        self,
        send: Send,
        receive: Receive,
        route: Route,
        plan: Plan,
        stream: AsyncCachedStream,
        *,
        fallback: Route | None,
    ) -> None:
        """Send ``stream`` (``route``'s, opened by :meth:`_open_stream` with ``plan``) to
        the caller, chunk by chunk, until it ends, the caller leaves or takes nothing."""
        # the deployment this request's stream came from, if this caller opened it (one
        # that joined another's stream: the opener's relay says how it went)
        opened = stream.info.status != "hit" and not stream.replayed
        served = plan.served if len(route.targets) > 1 else 0
        source = route.targets[served] if opened and served is not None else None
        # A client that takes nothing (its socket's buffers full) holds each send as long
        # as it likes, and with it the stream's upstream connection, which nothing reads
        # meanwhile: other callers of that upstream waited for a free one, then got 504s.
        # It may take as long over one send as the deployment waits between two chunks of
        # the upstream's (stream_timeout, else timeout); then it has left.
        target = route.targets[served if served is not None else plan.keyed_as]
        patience = float(target.stream_options.get("timeout") or self.client.timeout)
        timed = _TimedSend(send)

        async def relay() -> None:
            try:
                await timed(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": _SSE_HEADERS
                        + _cache_headers(stream.info, cost_known=stream.info.status in _SERVED)
                        + _fallback_header(fallback)
                        + _told_headers(),
                    }
                )
                if stream.replayed:
                    await _send_replay(timed, stream)
                else:  # each chunk as it comes
                    async for chunk in stream:
                        body = sse_event(chunk)
                        await timed({"type": "http.response.body", "body": body, "more_body": True})
                await timed({"type": "http.response.body", "body": SSE_DONE, "more_body": False})
                if source is not None:  # a stream answered to its end
                    self._upstream_failures.answered(route, source)
            except ProviderError as exc:
                if source is not None:
                    self._upstream_failures.failed(
                        route, source, exc, "ended the caller's stream with an error event"
                    )
                # the status is sent: report the failure in-band, as OpenAI does, and end;
                # with the error a status would have carried (the upstream's own type and
                # code: a client tells a rate limit from a server error by them)
                event = b"data: " + _http_error(exc).payload() + b"\n\n"
                await timed({"type": "http.response.body", "body": event, "more_body": False})
            except OSError:  # a server that raises when the client went away mid-stream
                pass

        # A server may drop what is sent to a client that went away without raising: the
        # request's receive channel says so (http.disconnect). Then this reader stops and
        # leaves the stream; the last to leave closes the upstream, and nothing is stored.
        # So does one that takes nothing for too long (its response is left unfinished:
        # the server closes the connection, and says so in a line of its own).
        relaying = asyncio.ensure_future(relay())
        watching = asyncio.ensure_future(_disconnected(receive))
        tasks = (relaying, watching)
        try:
            # (one timer for the stream, none per send: a send costs two clock readings)
            while not (relaying.done() or watching.done()):
                left = patience - timed.waited()
                if left <= 0:
                    break
                await asyncio.wait(tasks, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if relaying.done():
                relaying.result()  # an unexpected error goes on up
            elif watching.done():
                logger.info("client left mid-stream: stream %s abandoned", stream.info.key or "-")
            else:
                logger.warning(
                    "client took no data for %g s: stream %s abandoned",
                    patience,
                    stream.info.key or "-",
                )
        except asyncio.CancelledError:
            # the server stops and its drain time is over (see _http). Said now, while the
            # relay waits between two sends: the server ends the process once its lifespan
            # shutdown is done, before the cleanup below may have run.
            if timed.started and not relaying.done():  # (its body not ended yet)
                await _send_shutting_down(send)
            raise
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await stream.aclose()

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = self._caller(scope)
        body, size = await self._sized_json_body(scope, receive)
        answer_headers.set(AnswerHeaders())  # (this request's task: its own)
        requested = self._requested_fallbacks(body)
        route = self._route(body, caller)
        ctl = self._controls(scope, body)
        if "embedding" in self._uncached_kinds:
            ctl = merge(ctl, _BYPASS)
        if "input" not in body:
            raise HTTPError(400, "'input' is required", param="input")
        try:
            count = len(embedding_items(body["input"]))  # (one token array is one input)
        except InvalidRequestError:
            count = 0  # a malformed input is answered where it is read
        if count > _MAX_EMBEDDING_INPUTS:
            # OpenAI's own limit: one caller's batch must not flush everyone's entries out
            # of a bounded store, nor hold the proxy for seconds
            raise HTTPError(
                400,
                f"'input' may hold at most {_MAX_EMBEDDING_INPUTS} items per request, not {count}",
                param="input",
            )
        encoding = body.pop("encoding_format", None)
        try:
            check_encoding_format(encoding)
        except InvalidRequestError as exc:
            raise _http_error(exc) from exc
        asked_route = route

        def keyed(route: Route, body: Mapping[str, Any]) -> list[Request]:
            """``body``'s requests as ``route`` keys them (a body the pre-LLM hooks left
            refused: whose fault, see :meth:`_blamed`)."""
            return _item_requests(route, 0, body, tenant=caller.tenant)

        before = None
        try:
            body, route, ctl, before = await self._prepared(body, caller, route, ctl, size=size)
            if before is not None:  # (an input the hooks took out: a KeyError further on)
                _embeddings_input(body)
        except HTTPError:
            raise
        except Exception as exc:
            hooked = partial(keyed, route, body)
            raise _http_error(
                self._blamed(exc, before, hooked, partial(keyed, asked_route))
            ) from exc
        params = {k: v for k, v in body.items() if k not in ("model", "input")}
        walk = self._walk(route, caller, requested)

        async def embed(route: Route) -> EmbeddingBatch:
            """The whole batch from ``route`` (a fallback's too: its items cached under the
            name asked for are not mixed in)."""
            plan = route.plan()
            # vectors of two models cannot stand beside each other (some items of a batch are
            # cached): an embeddings call fails over to deployments of the same kind only
            if len(route.targets) > 1:
                kind = route.targets[plan.keyed_as].kin
                plan.attempts = [i for i in plan.attempts if route.targets[i].kin == kind]

            async def fetch_missing(items: list[Any]) -> Mapping[str, Any]:
                payload = {**params, "input": items, "encoding_format": "float"}
                return await self._call(route, plan, "/embeddings", payload, walk=walk)

            asked = _asked_of(route, body)
            return await acached_embeddings(
                cache=self.cache,
                model=route.targets[plan.keyed_as].model,
                items=embedding_items(body["input"]),
                params=params,
                api_base=route.targets[plan.keyed_as].api_base,
                control=ctl,
                fetch_missing=fetch_missing,
                tenant=caller.tenant,
                on_response=self._embeddings_storing(route, plan, asked, ctl, tenant=caller.tenant),
                prices=self._prices,
                # (the calls may go to any of the deployments tried: the least of theirs)
                max_inputs=min(
                    embedding_input_limit(resolve_model(route.targets[i].model)[0])
                    for i in plan.attempts
                ),
            )

        try:
            batch, fallback = await self._falling_back(route, embed, walk)
        except HTTPError:
            raise
        except Exception as exc:
            hooked = partial(keyed, route, body)
            raise _http_error(
                self._blamed(exc, before, hooked, partial(keyed, asked_route))
            ) from exc

        def serialized() -> bytes:
            return orjson.dumps(batch.response(encoding_format=encoding))

        # (2,048 vectors of 1,536 floats: ~0.1 s to write out, off the event loop)
        data = await off_loop(serialized, len(batch.vectors))
        await send_raw(
            send,
            200,
            data,
            # a batch part served, part fetched is a "miss": say how much was served
            [
                *_cache_headers(batch.info),
                (b"x-deja-cached-items", f"{batch.cached}/{len(batch.vectors)}".encode()),
                *_fallback_header(fallback),
                *_told_headers(),
            ],
        )

    # -- plain routes ---------------------------------------------------------------------

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = self._caller(scope)
        names = [*self.routes, *(w.pattern for w in self._wildcards)]
        data = [_model_object(name) for name in names if caller.may_use(name)]
        await send_json(send, 200, {"object": "list", "data": data})

    async def _model(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /models/{name}``: one model the caller may use (a name may hold slashes)."""
        caller = self._caller(scope)
        name = scope["path"].rstrip("/").split("/models/", 1)[1]
        if not caller.may_use(name) or self._find_route(name) is None:  # (as _route asks)
            raise HTTPError(
                404, f"the model {name!r} does not exist", param="model", code="model_not_found"
            )
        await send_json(send, 200, _model_object(name))

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"status": "ok"})

    async def _store_problem(self) -> str | None:
        """What keeps the exact tier's store from answering, or ``None``: one read of it (as
        ``/health/ready`` reads it), given :data:`_STORE_PROBE_SECONDS` (a store's own
        timeouts are short; one of the operator's may have none)."""
        if self.cache is None:
            return None
        try:
            await asyncio.wait_for(
                self.cache.store.aget(f"{self.cache.key_prefix}health"),
                timeout=_STORE_PROBE_SECONDS,
            )
        except TimeoutError:
            return f"no answer within {_STORE_PROBE_SECONDS:g} s"
        except Exception as exc:  # (a store's URL may hold its password)
            said = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
            return redact_urls_in(said)
        return None

    async def _semantic_problem(self) -> str | None:
        """What keeps the semantic tier from working, or ``None``: an embedder that cannot
        load (a package of the ``semantic`` extra missing, asked of a
        :class:`~deja.semantic.embedders.Checkable` one without loading its model), then
        one search of its index (a Redis without the RediSearch module, a Qdrant server
        down, an index of vectors of another size)."""
        semantic = self.cache.semantic if self.cache is not None else None
        if semantic is None:
            return None
        failing = self.cache.semantic_problem if self.cache is not None else None
        if failing is not None:  # an embedder that answers errors (or not at all) to misses
            return f"failing, skipped for now: {failing}"
        try:
            import numpy as np

            from deja.semantic.embedders import Checkable

            embedder = semantic.embedder
            if isinstance(embedder, Checkable):
                await asyncio.wait_for(
                    asyncio.to_thread(embedder.check), timeout=_SEMANTIC_PROBE_SECONDS
                )
            probe = np.zeros(embedder.dim, dtype=np.float32)
            probe[0] = 1.0
            search = semantic.index.search
            await asyncio.wait_for(
                asyncio.to_thread(search, probe, scope="deja:health", k=1),
                timeout=_SEMANTIC_PROBE_SECONDS,
            )
        except Exception as exc:  # (an unauthenticated route: no credentials in URLs)
            return redact_urls_in(f"{type(exc).__name__}: {exc}")
        return None

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.cache is None:
            await send_json(send, 200, {"status": "ok", "cache": None})
            return
        started = time.perf_counter()
        try:
            await self.cache.store.aget(f"{self.cache.key_prefix}health")
        except Exception as exc:
            await send_json(
                send,
                503,
                {
                    "status": "unavailable",
                    "cache": self.cache.store.name,
                    "error": type(exc).__name__,
                },
            )
            return
        ms = (time.perf_counter() - started) * 1000
        ready: dict[str, Any] = {
            "status": "ok",
            "cache": self.cache.store.name,
            "latency_ms": round(ms, 3),
        }
        if self.cache.semantic is not None:
            # still ready without it (the exact tier answers), but say so
            problem = await self._semantic_problem()
            ready["semantic"] = "ok" if problem is None else "unavailable"
            if problem is not None:
                ready["semantic_error"] = problem
        await send_json(send, 200, ready)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.settings.enable_prometheus is False:  # turned off, as LiteLLM's is
            raise HTTPError(404, "/metrics is not served: litellm_settings.enable_prometheus")
        if self.settings.metrics_auth:  # LiteLLM's require_auth_for_metrics_endpoint
            self.auth.identify(scope)  # any valid key (401 otherwise)
        # a scrape reads the stores' usage (blocking I/O): never on the event loop
        if multiprocess():
            self.metrics.publish_store_usage()  # this worker's figures: fresh
            body = await asyncio.to_thread(aggregated_exposition, self.metrics.store_usage)
        else:
            body = await asyncio.to_thread(self.metrics.render)
        await send_raw(send, 200, body, content_type=self.metrics.content_type.encode())

    # -- admin ----------------------------------------------------------------------------

    def _admin(self, scope: Scope) -> AsyncCache:
        if not self.settings.general.master_key:
            raise HTTPError(403, "admin routes are disabled: no master_key is configured")
        if not self.auth.identify(scope).is_admin:
            raise HTTPError(401, "admin routes need the master key", code="invalid_api_key")
        if self.cache is None:
            raise HTTPError(404, "no cache is configured")
        return self.cache

    async def _admin_ping(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache = self._admin(scope)
        started = time.perf_counter()
        try:
            await cache.store.aget(f"{cache.key_prefix}ping")
        except Exception as exc:
            await send_json(
                send,
                503,
                {"status": "unhealthy", "store": cache.store.name, "error": type(exc).__name__},
            )
            return
        await send_json(
            send,
            200,
            {
                "status": "healthy",
                "store": cache.store.name,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )

    async def _admin_stats(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache = self._admin(scope)
        if multiprocess():  # every worker's counters, not only this one's
            # (files read, dead workers' folded, under a lock other workers hold meanwhile:
            # never on the event loop)
            figures = await asyncio.to_thread(aggregated_stats)
            figures |= {"store": cache.store.name, "key_prefix": cache.key_prefix}
            await send_json(send, 200, figures)
            return
        stats = cache.stats()
        await send_json(
            send,
            200,
            {
                "exact": {
                    "hits": stats.hits,
                    "misses": stats.misses,
                    "bypasses": stats.bypasses,
                    "coalesced": stats.coalesced,
                },
                "semantic": {"hits": stats.semantic_hits},
                "hit_ratio": stats.hit_ratio,
                "store_errors": stats.store_errors,
                "saved_tokens": stats.saved_tokens,
                "saved_usd": stats.saved_usd,
                "store": cache.store.name,
                "key_prefix": cache.key_prefix,
            },
        )

    async def _admin_body(
        self, scope: Scope, receive: Receive
    ) -> tuple[AsyncCache, dict[str, Any]]:
        cache = self._admin(scope)
        return cache, await self._json_body(scope, receive)

    def _admin_answer(self, cache: AsyncCache, answer: dict[str, Any]) -> dict[str, Any]:
        """An admin change's answer, saying so when it reached this worker's cache only."""
        if multiprocess() and cache.store.name == "memory":
            answer["warning"] = (
                "in-memory cache with several workers: only the worker that answered was"
                " changed (use a shared store: disk, redis, s3)"
            )
        return answer

    def _admin_tenants(self, body: Mapping[str, Any]) -> tuple[str | None, ...]:
        """The tenant an admin call names, or, when it names none, every tenant."""
        tenant = body.get("tenant")
        if tenant is not None:
            try:
                check_tenant(tenant)  # (the library's rule: "" was a 500 from inside)
            except InvalidRequestError as exc:
                raise HTTPError(400, str(exc), param="tenant") from None
        return (tenant,) if tenant is not None else self.auth.tenants

    async def _admin_request(
        self, body: Mapping[str, Any], tenant: str | None
    ) -> tuple[list[Request], CacheControl]:
        """The requests an admin call describes, as ``tenant`` would have sent it: through
        the pre-LLM hooks, which may change what is keyed; keyed as each kind of its
        route's deployments (with its default parameters) would key it; an embeddings body
        is one request per input item."""
        request_body = body.get("request")
        if not isinstance(request_body, dict):
            raise HTTPError(
                400,
                "give 'key' (or 'keys'), or 'request' with the request body that made the entry",
                param="request",
            )
        request_body = dict(request_body)
        # (as the data routes take it out: keyed, it named another entry than theirs)
        self._requested_fallbacks(request_body)
        route = self._route(request_body, _ADMIN_CALLER)
        ctl = _body_controls(request_body)
        # the route the caller's body names, as the caller sent it: the hooks do not
        # change what kind of request it is
        asked_route = route
        kind: RequestKind = (
            "chat"
            if "messages" in request_body
            else "embedding"
            if "input" in request_body
            else "completion"
        )

        def keyed(route: Route, body: Mapping[str, Any]) -> list[Request]:
            """``body``'s requests as each kind of ``route``'s deployments (with its
            default parameters) would key them, ``tenant``'s."""
            requests: list[Request] = []
            for i in dict.fromkeys(t.kin for t in route.targets):  # each once, config order
                if kind == "embedding":  # as _embeddings keys them: one request per item
                    requests += _item_requests(route, i, body, tenant=tenant)
                else:
                    requests.append(route.request(i, body, kind=kind, tenant=tenant))
            return requests

        try:
            request_body, route, ctl, before = await self._prepared(
                request_body, _ADMIN_CALLER, route, ctl
            )
        except HookError as exc:
            raise _http_error(exc) from exc
        try:
            return keyed(route, request_body), ctl
        except InvalidRequestError as exc:
            # a body the pre-LLM hooks made invalid: the operator's 500, as on the data
            # routes (the caller was answered a 400 for a request that was fine)
            blamed = self._blamed(
                exc, before, partial(keyed, route, request_body), partial(keyed, asked_route)
            )
            if blamed is exc:
                raise
            raise _http_error(blamed) from exc

    async def _admin_delete(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache, body = await self._admin_body(scope, receive)
        try:
            if isinstance(body.get("key"), str):
                key = body["key"]
                deleted = await cache.delete(key)
                await send_json(
                    send, 200, self._admin_answer(cache, {"deleted": deleted, "key": key})
                )
                return
            named = body.get("keys")  # LiteLLM's body: a list of keys
            if named is not None:
                if not isinstance(named, list) or not all(isinstance(k, str) for k in named):
                    raise HTTPError(400, "'keys' must be a list of strings", param="keys")
                gone = [key for key in named if await cache.delete(key)]
                answer = {"deleted": bool(gone), "keys": gone}
                await send_json(send, 200, self._admin_answer(cache, answer))
                return
            # a request without a tenant: its entry for every tenant
            keys: list[str] = []
            for tenant in self._admin_tenants(body):
                requests, ctl = await self._admin_request(body, tenant)
                keys.extend(cache.key(request, ctl) for request in requests)
            gone = [key for key in keys if await cache.delete(key)]
        except (InvalidRequestError, ControlError, KeyBuilderError) as exc:
            # a key builder that fails is the operator's code: the data routes' 500
            raise _http_error(exc) from None
        except StoreError as exc:
            raise HTTPError(503, str(exc)) from None
        key = gone[0] if gone else keys[0]
        answer = {"deleted": bool(gone), "key": key, "keys": gone}
        await send_json(send, 200, self._admin_answer(cache, answer))

    async def _admin_invalidate(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache, body = await self._admin_body(scope, receive)
        _admin_fields(body, ("tag", "namespace", "tenant"))
        tag, namespace = body.get("tag"), body.get("namespace")
        for name, value in (("tag", tag), ("namespace", namespace)):
            if value is not None and not isinstance(value, str):
                raise HTTPError(400, f"'{name}' must be a string", param=name)
        if tag is None and namespace is None:
            raise HTTPError(400, "give 'tag' or 'namespace' (and optionally 'tenant')")
        tenants = self._admin_tenants(body)  # none named: every tenant's entries
        if tag is not None and namespace is None:
            # a configured namespace keeps a tag's invalidation to it, as it keeps a flush
            # (staging and prod sharing a store: prod's invalidation deleted staging's)
            namespace = cache.namespace
        try:
            deleted = 0
            for tenant in tenants:
                if tag is not None and namespace is None:  # every namespace
                    deleted += await cache.delete_tag(tag, tenant=tenant)
                elif tag is not None:
                    deleted += await cache.delete_tag(tag, namespace=namespace, tenant=tenant)
                else:
                    deleted += await cache.clear(namespace=namespace, tenant=tenant)
        except ControlError as exc:  # (a tag a request's tags could not hold)
            raise HTTPError(400, str(exc), param="tag" if tag is not None else None) from None
        except StoreError as exc:
            raise HTTPError(503, str(exc)) from None
        await send_json(send, 200, self._admin_answer(cache, {"deleted": deleted}))

    async def _admin_flush(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Delete this proxy's entries: the body's ``tenant``'s (in the configured
        ``namespace``, or the unnamed one), or with none named those of the configured
        ``namespace`` (every configured tenant's), as environments sharing a store
        (staging and prod, say) tell their entries apart by it; else, or with
        ``{"all": true}``, every entry under its key prefix."""
        cache = self._admin(scope)
        raw = await read_body(scope, receive, self._max_body, self._body_timeout)
        body = _json_object(raw) if raw.strip() else {}
        _admin_fields(body, ("all", "tenant"))
        everything = body.get("all", False)
        if not isinstance(everything, bool):
            raise HTTPError(400, "'all' must be true or false", param="all")
        if "tenant" in body and body["tenant"] is None:  # (read as none named: everyone's)
            raise HTTPError(400, "'tenant' must be a tenant's name", param="tenant")
        named = body.get("tenant") is not None
        if everything and named:  # (it flushed every tenant's entries, the body's tenant's too)
            raise HTTPError(
                400, "'all' flushes every tenant: name no 'tenant' with it", param="all"
            )
        scoped = named or (cache.namespace is not None and not everything)
        try:
            if not scoped:
                deleted = await cache.clear()
            else:
                deleted = 0
                for tenant in self._admin_tenants(body):  # one named, or every configured one
                    deleted += await cache.clear(namespace=cache.namespace, tenant=tenant)
        except StoreError as exc:
            raise HTTPError(503, str(exc)) from None
        answer: dict[str, Any] = {"deleted": deleted, "key_prefix": cache.key_prefix}
        if scoped:
            answer["namespace"] = cache.namespace
        if named:
            answer["tenant"] = body["tenant"]
        await send_json(send, 200, self._admin_answer(cache, answer))

    async def _admin_explain(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache, body = await self._admin_body(scope, receive)
        if "request" not in body:  # the request body itself, maybe with the tenant beside it
            request_body = dict(body)
            body = {"request": request_body}
            if "tenant" in request_body:
                body["tenant"] = request_body.pop("tenant")
        tenant = self._admin_tenants(body)[0]
        try:
            requests, ctl = await self._admin_request(body, tenant)
            request = requests[0]
            explained = {"tenant": tenant, **cache.explain(request, ctl)}
            if len(requests) > 1:  # other deployment kinds of the route, other input items
                explained["other_keys"] = [cache.key(other, ctl) for other in requests[1:]]
            if tenant is None and len(self.auth.tenants) > 1:
                explained["note"] = (
                    "explained as the master key's request; name 'tenant' to explain a"
                    " virtual key's (its entries are kept apart)"
                )
        except (InvalidRequestError, ControlError, KeyBuilderError) as exc:
            # the request's fault is a 400; a key builder's is the data routes' 500
            raise _http_error(exc) from None
        if cache.semantic is not None and ctl.semantic:
            try:  # which earlier prompts it would be served for, and why (not)
                explained["semantic"] = await cache.explain_semantic(request, ctl)
            except KeyBuilderError as exc:  # on the request without its final text
                raise _http_error(exc) from None
            except Exception as exc:
                raise HTTPError(503, f"the semantic tier failed: {exc!r}") from None
        await send_json(send, 200, explained)

    # -- feedback (any caller, on its own entries) ----------------------------------------

    async def _feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``{"key": <x-deja-cache-key of a semantic hit>, "correct": false}``: report a
        wrong (or right) semantic hit. The master key may report on any entry; any other
        caller only on entries of its own tenant, in the cache's namespace or in the one it
        names (``"namespace"``, as it was set on the request). Entries of other scopes are
        as unknown to it as entries that do not exist (404)."""
        caller = self._caller(scope)
        body = await self._json_body(scope, receive)
        _admin_fields(body, ("key", "correct", "namespace"))
        key, correct, namespace = body.get("key"), body.get("correct"), body.get("namespace")
        if not isinstance(key, str) or not key:
            raise HTTPError(
                400, "'key' (the x-deja-cache-key of the answer) is required", param="key"
            )
        if not isinstance(correct, bool):
            raise HTTPError(400, "'correct' is required and must be true or false", param="correct")
        if namespace is not None and not isinstance(namespace, str):
            raise HTTPError(400, "'namespace' must be a string", param="namespace")
        cache = self.cache
        if cache is None or cache.semantic is None:
            raise HTTPError(404, "no semantic cache is configured: nothing takes feedback")
        own = scope_prefix(
            cache.key_prefix, caller.tenant, namespace if namespace is not None else cache.namespace
        )
        report = None
        if caller.is_admin or key.startswith(own):
            try:
                report = await cache.feedback(key, correct=correct)
            except StoreError as exc:
                raise HTTPError(503, str(exc)) from None
        if report is None:
            raise HTTPError(404, "no semantic entry with that key", param="key", code="not_found")
        await send_json(
            send, 200, {"key": key, "strikes": report.strikes, "forgotten": report.forgotten}
        )


_ADMIN_CALLER = Caller(tenant=None, models=(), is_admin=True)


def _provider_check(deployment: ModelDeployment) -> tuple[Callable[[], None], str] | None:
    """What ``deployment``'s calls import (a check that raises
    :class:`~deja.errors.MissingDependencyError` without it, and why they need it), or
    ``None`` when they need no extra.

    The client's own rules: a Bedrock API key with a known region is sent as it is, any
    other Bedrock call signs with (or looks for a region through) botocore; a Vertex AI
    deployment without an access token (``api_key``) signs its service account's token
    requests with cryptography.
    """
    provider, _ = resolve_model(deployment.model)
    params = deployment.litellm_params
    api_key = params.get("api_key")
    if provider == "bedrock":
        options = {name: value for name, value in params.items() if name in PROVIDER_OPTIONS}
        bearer = _bedrock_api_key(options, str(api_key) if api_key else None)
        region = (
            options.get("aws_region_name")
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
        )
        if bearer is None:
            return require_botocore, "signs its requests with SigV4"
        if not region:
            return require_botocore, "reads its region from the AWS profile"
    elif provider == "vertex_ai" and not api_key:
        return require_cryptography, "signs its service account's token requests"
    return None


def _require_provider_dependencies(deployments: Sequence[ModelDeployment]) -> None:
    """Raise :class:`~deja.errors.MissingDependencyError` for the first deployment whose
    provider needs an extra that is not installed: found at start, not as a failure of
    every request to it."""
    for i, deployment in enumerate(deployments):
        found = _provider_check(deployment)
        if found is None:
            continue
        check, why = found
        try:
            check()
        except MissingDependencyError as exc:
            detail = f"model_list[{i}] {deployment.model_name!r}: {deployment.model} {why}"
            raise MissingDependencyError(exc.package, exc.extra, detail=detail) from exc


def _deployment_options(deployment: ModelDeployment) -> dict[str, Any]:
    params = deployment.litellm_params
    options: dict[str, Any] = {"model": deployment.model, "api_base": params.get("api_base")}
    if params.get("api_key") is not None:
        options["api_key"] = params["api_key"]
    if params.get("timeout") is not None:
        options["timeout"] = float(params["timeout"])  # type: ignore[arg-type]
    headers = dict(params.get("extra_headers") or {})  # type: ignore[call-overload]
    if params.get("organization") is not None and not any(
        name.lower() == "openai-organization" for name in headers
    ):
        headers["OpenAI-Organization"] = params["organization"]
    if headers:
        options["extra_headers"] = headers
    if params.get("cache_control_injection_points"):
        options["injection_points"] = params["cache_control_injection_points"]
    # the deployment's Bedrock and Vertex AI settings: the client's provider options
    provider = {
        name: value
        for name, value in params.items()
        if name in PROVIDER_OPTIONS and value is not None
    }
    if provider:
        options["provider_options"] = provider
    return options


def _restore(response: dict[str, Any], sent: bytes) -> None:
    """Put ``response`` back (in place: its callers hold it) as ``sent`` has it (its JSON
    before a post-cache hook changed it)."""
    response.clear()
    response.update(orjson.loads(sent))


def _tenant_key_builder(name: str, hook: Callable[..., Any]) -> Callable[[Request], str]:
    """The proxy's ``key_builder(request, tenant)`` hook as the cache's builder (one written
    as ``key_builder(request)``, as ``caching.key_builder`` is, or in LiteLLM's form, works
    too: :func:`deja.keys.key_builder_form`)."""
    call = request_builder(hook)

    def build(request: Request) -> str:
        try:
            digest = call(request)
        except Exception as exc:
            # the operator's bug (its message may hold secrets): the detail to the log only
            # (ProxyApp._timed_key_builder logs it, once then counted)
            raise HookError(f"hook {name} failed (the proxy's log has why)") from exc
        if not isinstance(digest, str):
            if inspect.iscoroutine(digest):  # (a plain def returning one: never awaited)
                digest.close()
            raise HookError(f"hook {name} returned {type(digest).__name__}, not a digest string")
        return digest

    build.__qualname__ = name
    return build


# Where a content part names a file the provider fetches itself (OpenAI's image_url.url,
# file.file_data / file_id; Converse's s3Location.uri; Gemini's fileData.fileUri).
# the fields that name a file: "image_url" too, which adapters take as a bare string
_URL_FIELDS = frozenset({"url", "image_url", "file_data", "file_id", "uri", "fileUri", "file_uri"})
# body fields that never name a file (the tools' schemas are most of a large body)
_FILELESS_FIELDS = frozenset(
    {"model", "tools", "functions", "tool_choice", "response_format", "metadata", "logit_bias"}
)
_STORAGE_SCHEMES = ("s3://", "gs://")


_CALL_SETTINGS = CALL_SETTINGS | {"timeout"}  # (a library call's timeout is an argument)


def _body_controls(body: dict[str, Any]) -> CacheControl:
    """The cache options a request body carries, taken out of it (never sent upstream nor
    keyed): its ``cache`` object, and LiteLLM's per-call ``caching`` switch, as the library
    takes them. A bad one is a 400 naming it."""
    options = body.pop("cache", None)
    # LiteLLM's per-call settings: this proxy's retries and timeouts are the deployment's
    for name in _CALL_SETTINGS.intersection(body):
        del body[name]
    try:
        ctl = parse_controls(options)
        if "caching" in body:
            ctl = merge(ctl, caching_switch(body.pop("caching")))
    except ControlError as exc:
        # An option inside the object is cache.<name>; a "cache" that is not an object
        # (which parse_controls names "cache" too) is the field itself.
        inside = exc.option not in (None, "caching") and isinstance(options, Mapping)
        param = "caching" if exc.option == "caching" else "cache"
        raise HTTPError(400, str(exc), param=f"cache.{exc.option}" if inside else param) from None
    return ctl


def _embeddings_input(body: Mapping[str, Any]) -> None:
    """Refuse an embeddings body without an ``input`` the clients and the API take."""
    if "input" not in body:
        raise InvalidRequestError("'input' is required", param="input")
    embedding_items(body["input"])


def _without_value(message: str) -> str:
    """An :class:`InvalidRequestError`'s message without the value it quotes (``..., got
    'the text'``): what the rule is, for a log that must not hold a prompt."""
    return message.split(", got ", 1)[0]


def _refuse_storage_urls(body: dict[str, Any]) -> None:
    """A 400 for an ``s3://`` or ``gs://`` URL anywhere in the body's media fields: in the
    messages' content parts, and in the provider's own fields an adapter passes through
    (Gemini's ``systemInstruction`` ``fileData``...). Bedrock and Vertex AI read such an
    object with the credentials the request is signed with, the deployment's, so a caller
    could read whatever the proxy's cloud identity may (a deployment allows them with
    ``allow_storage_urls: true``). Strings are never searched, only the fields that name a
    file: a prompt may talk about gs:// paths."""
    for param, value in body.items():
        if not isinstance(value, (dict, list)) or param in _FILELESS_FIELDS:
            continue
        stack: list[Any] = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                for name, inner in item.items():
                    if (
                        name in _URL_FIELDS
                        and isinstance(inner, str)
                        and inner[:5].lower().startswith(_STORAGE_SCHEMES)
                    ):
                        raise HTTPError(
                            400,
                            f"{inner[:5]} URLs are read with the proxy's cloud credentials;"
                            " this model does not allow them (unless its deployment sets"
                            " allow_storage_urls: true)",
                            param=param,
                        )
                    if isinstance(inner, (dict, list)):
                        stack.append(inner)
            elif isinstance(item, list):
                stack.extend(item)


def _model_object(name: str) -> dict[str, Any]:
    """A model as OpenAI's ``/models`` lists it."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "deja"}


def _caller_message(exc: ProviderError) -> str:
    """What a caller is told of an upstream failure: the upstream's address and the
    transport's detail (host, port) stay in the proxy's log."""
    text = str(exc)
    if not exc.url:
        return text
    detail = f": {exc.__cause__}" if exc.__cause__ is not None else ""
    if detail and text.endswith(detail):
        text = text[: -len(detail)]
    return text.replace(exc.url, "the upstream")


async def _send_replay(send: Send, stream: AsyncCachedStream) -> None:
    """A stored answer's events: the first at once, the rest ``_REPLAY_EVENTS`` to a
    message, with the event loop free between messages (a 2,000-chunk replay sent one
    message per chunk in one go: every other request of the worker waited ~10 ms)."""
    events: list[bytes] = []
    first = True
    async for chunk in stream:
        events.append(sse_event(chunk))
        if first or len(events) >= _REPLAY_EVENTS:
            body = b"".join(events)
            await send({"type": "http.response.body", "body": body, "more_body": True})
            events.clear()
            if not first:
                await asyncio.sleep(0)
            first = False
    if events:
        await send({"type": "http.response.body", "body": b"".join(events), "more_body": True})


class _TimedSend:
    """A streamed answer's ``send``, timing the one under way: a server with flow control
    holds a send while the client's socket takes nothing, for as long as it stays open."""

    __slots__ = ("_send", "_since", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._since: float | None = None  # when the send under way began
        self.started = False  # the response's start is sent

    async def __call__(self, message: Message) -> None:
        self._since = time.monotonic()
        await self._send(message)
        self._since = None
        self.started = True

    def waited(self) -> float:
        """How long the send under way has waited (0: none is)."""
        since = self._since
        return 0.0 if since is None else time.monotonic() - since


async def _send_shutting_down(send: Send) -> None:
    """End a stream cut by the server's stop as an upstream failure's is ended: an
    in-band error event, here with the 503's code (too late for a status), so that a client
    retries instead of taking the cut for a broken network; no ``[DONE]``."""
    error = {"message": _SHUTTING_DOWN, "type": "server_error", "param": None}
    event = sse_event({"error": {**error, "code": "shutting_down"}})
    with contextlib.suppress(OSError):  # a server that raises when the client went away
        await send({"type": "http.response.body", "body": event, "more_body": False})


def _item_requests(
    route: Route, target: int, body: Mapping[str, Any], *, tenant: str | None
) -> list[Request]:
    """An embeddings ``body``'s requests, one per item, as ``route``'s deployment ``target``
    keys them (an ``input`` missing, or of a shape OpenAI refuses: InvalidRequestError)."""
    _embeddings_input(body)
    return item_requests(
        model=route.targets[target].model,
        items=embedding_items(body["input"]),
        params={k: v for k, v in body.items() if k not in ("model", "input", "encoding_format")},
        api_base=route.targets[target].api_base,
        tenant=tenant,
    )


def _names(hooks: list[tuple[str, Callable[..., Any]]]) -> str:
    """The names of ``hooks``, for a message."""
    return ", ".join(name for name, _ in hooks)


def _takes_tenant(hook: Callable[..., Any]) -> bool:
    """Whether ``hook`` declares a ``tenant`` keyword (or takes ``**kwargs``): it is then
    given the caller's tenant (a hook that tags, or partitions, by team)."""
    try:
        parameters = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):  # (a builtin without a signature)
        return False
    return any(
        p.kind is p.VAR_KEYWORD
        or (p.name == "tenant" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        for p in parameters
    )


def _a(word: str) -> str:
    """``word`` with its article: "an int", "a list"."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


async def _disconnected(receive: Receive) -> None:
    """Return when the client has gone (the request body is read by then)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _refusal(exc: Exception) -> HTTPError | None:
    """A pre-call hook's way to turn a request down: an ``HTTPException`` (Starlette's,
    FastAPI's, as LiteLLM's hooks raise; any class of that name) with a 4xx
    ``status_code`` answers that status, its ``detail`` (or message) the error's message.
    Other exceptions with a status (an SDK's error from the hook's own call: its message may
    name the operator's key) are the hook failing, not a refusal."""
    if not any(cls.__name__ == "HTTPException" for cls in type(exc).__mro__):
        return None
    status = getattr(exc, "status_code", None)
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status < 500:
        return None
    detail = getattr(exc, "detail", None)
    message = detail if isinstance(detail, str) and detail else str(exc) or "request refused"
    return HTTPError(status, message, code="rejected")


def _openai_error(body: object) -> bool:
    """Whether ``body`` is an error in OpenAI's shape: ``{"error": {"message", "type"...}}``."""
    if not isinstance(body, dict) or set(body) != {"error"}:
        return False
    error = body["error"]
    return isinstance(error, dict) and "message" in error and "type" in error


def _http_error(exc: Exception) -> HTTPError:
    """The HTTP answer for an exception on the request path."""
    if isinstance(exc, HookError):
        return HTTPError(500, str(exc), code="hook_failed")
    if isinstance(exc, KeyBuilderError) and isinstance(exc.__cause__, HookError):
        return HTTPError(500, str(exc.__cause__), code="hook_failed")  # (the hook's words)
    if isinstance(exc, KeyBuilderError):
        # the operator's code (its message may hold secrets): the detail to the log only,
        # where ProxyApp._timed_key_builder said it (a raise or a digest refused), once
        # then counted
        return HTTPError(
            500,
            "the cache's key builder failed (the proxy's log has why)",
            code="key_builder_failed",
            headers=_NO_RETRY,
        )
    if isinstance(exc, InvalidRequestError):
        return HTTPError(400, str(exc), param=exc.param)
    if isinstance(exc, ControlError):
        return HTTPError(400, str(exc))
    if isinstance(exc, UpstreamTimeoutError):
        return HTTPError(504, _caller_message(exc), code="upstream_timeout")
    if isinstance(exc, UpstreamConnectionError):
        return HTTPError(502, _caller_message(exc), code="upstream_unreachable")
    if isinstance(exc, ProviderError) and exc.status_code in (401, 403):
        # the upstream refused the deployment's credentials: the proxy's failure, not the
        # caller's key (an SDK would tell the caller to fix theirs); the failover loop logs
        # it, naming the deployment (_UpstreamFailures)
        return HTTPError(
            502,
            f"the upstream refused the proxy's credentials ({exc.status_code})",
            code="upstream_auth_failed",
            headers=_NO_RETRY,
        )
    if isinstance(exc, ProviderError):
        # an upstream that answered 2xx with something unusable is a bad gateway, not a 200
        status = exc.status_code if exc.status_code and exc.status_code >= 400 else 502
        # an OpenAI-shaped error body goes as it is; Anthropic's and Gemini's are told in
        # OpenAI's shape, as Bedrock's are (one route may fail over across providers)
        body = orjson.dumps(exc.body) if _openai_error(exc.body) else None
        # (the upstream's request id and rate limits, as a success's: _told_headers)
        headers = encoded_headers(exc.upstream_headers)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            # whole seconds, rounded up: 0.4 s said as 0 had SDKs retry at once
            headers.append((b"retry-after", str(math.ceil(retry_after)).encode()))
        return HTTPError(status, _caller_message(exc), body=body, headers=headers)
    if isinstance(exc, MissingDependencyError):
        # found at start for what the configuration names; whatever else needs one is
        # said as it is: what to install, on the proxy's side
        logger.error("a request needs a package that is not installed: %s", exc)
        return HTTPError(500, str(exc), code="missing_dependency", headers=_NO_RETRY)
    logger.exception("unexpected error on the request path")
    return HTTPError(500, f"internal error: {type(exc).__name__}")


# every byte but those that open a string, an object or an array (bytes.translate's deletions)
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'"{[')
_STRING = re.compile(rb'"[^"]*"')
_SCAN_CHUNK = 256 * 1024  # (each C pass over one holds the GIL ~1 ms)


def _structural_containers(raw: bytes) -> int:
    """How many objects and arrays ``raw`` opens outside its strings, if it is JSON;
    counting stops past :data:`_MAX_CONTAINERS` (what it counts of an invalid body is at
    least what parsing its valid start builds).

    In C-speed passes over a chunk at a time, so a thread running it lets the event loop
    in between (bytes methods hold the GIL: a body of 10 MiB of escapes took 0.2 s): the
    escaped backslashes and quotes go (a backslash escapes the one byte after it, and no
    chunk ends in a backslash), then every byte but quotes and brackets; a chunk that
    starts or ends inside a string gets that string's other quote; the quotes then pair up
    as strings, empty and adjacent pairs dropped first (that leaves each bracket inside or
    outside a string), so two quotes left in a row have a bracket between them and the
    ones outside are at least half the quotes: too many quotes is too many containers."""
    containers = 0
    inside = False
    start = 0
    while start < len(raw) and containers <= _MAX_CONTAINERS:
        end = min(start + _SCAN_CHUNK, len(raw))
        while end < len(raw) and raw[end - 1] == 0x5C:  # a backslash
            end += 1
        chunk = raw[start:end].replace(b"\\\\", b"").replace(b'\\"', b"")
        marks = chunk.translate(None, _NOT_STRUCTURE)
        if inside:
            marks = b'"' + marks
        inside = marks.count(b'"') % 2 == 1
        if inside:
            marks += b'"'
        marks = marks.replace(b'""', b"")
        if marks.count(b'"') > 2 * _MAX_CONTAINERS + 2:
            return _MAX_CONTAINERS + 1
        outside = _STRING.sub(b"", marks)
        containers += outside.count(b"{") + outside.count(b"[")
        start = end
    return containers


def _admin_fields(body: Mapping[str, Any], known: tuple[str, ...]) -> None:
    """Refuse an admin body's field the route does not read (400, naming it): a misspelt
    ``tenant`` in a flush flushed every tenant's entries, as a body naming none does."""
    for name in body:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise HTTPError(
                400,
                f"unknown field {name!r} (this route reads {', '.join(map(repr, known))}){hint}",
                param=name,
            )


def _json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (a large one with at most
    :data:`_MAX_CONTAINERS` objects and arrays)."""
    if len(raw) >= _LARGE_BODY:
        # what parsing costs is its objects and arrays (lists: ~0.25 us each, the garbage
        # collector's passes over them included), and orjson parses holding the GIL, in a
        # thread too: 10 MiB of "[]," held every request of the worker for a second. Each
        # one opens with a '{' or a '[', so counting those (~2 ms a MiB) bounds it before
        # any parsing; past the bound, the ones inside strings (a prompt of pasted JSON or
        # code) are told apart from the body's own (~5 ms a MiB more)
        containers = raw.count(b"{") + raw.count(b"[")
        if containers > _MAX_CONTAINERS:
            containers = _structural_containers(raw)
        if containers > _MAX_CONTAINERS:
            raise HTTPError(
                400,
                f"the body holds more than {_MAX_CONTAINERS} JSON objects and arrays: it is"
                " refused unparsed",
                code="request_too_complex",
            )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "the body must be a JSON object", code="invalid_json")
    return body
