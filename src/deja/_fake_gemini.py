"""A simulated Gemini API (Google AI and Vertex AI) over real HTTP, for deja's Gemini tests.

Nothing here reaches Google. :class:`FakeGeminiServer` serves, from a stdlib
:class:`~http.server.ThreadingHTTPServer` on a loopback port, both URL layouts:

* Google AI: ``POST /v1beta/models/{model}:generateContent`` and
  ``:streamGenerateContent`` (server-sent events with ``?alt=sse``, else a JSON array), and
  ``/v1beta/cachedContents[/{id}]``; authenticated with ``x-goog-api-key`` or ``?key=`` when
  the server has an ``api_key`` (missing: 403 ``PERMISSION_DENIED``; wrong: Google's 400
  ``INVALID_ARGUMENT`` "API key not valid" with an ``API_KEY_INVALID`` reason);
* Vertex AI: ``POST /v1/projects/{p}/locations/{l}/publishers/google/models/{model}:…`` and
  ``/v1/projects/{p}/locations/{l}/cachedContents[/{id}]``, authenticated with
  ``Authorization: Bearer`` tokens this server issued (missing or unknown: 401
  ``UNAUTHENTICATED``);
* ``POST /token``: the OAuth JWT-bearer grant. The assertion's RS256 signature is verified
  against the public key of a registered service account (:meth:`FakeGeminiServer.service_account`
  makes one), and its claims (``iss`` known, ``aud`` = this endpoint, a ``scope``, ``iat`` /
  ``exp`` at most an hour apart and current); the answer is
  ``{"access_token", "expires_in", "token_type": "Bearer"}`` or Google's OAuth error body.

Context caching is simulated on an injectable wall clock: ``cachedContents`` create (TTL or
``expireTime``, 1 hour by default; refused below the model's minimum token count with
Google's 400), get, list, patch and delete; an expired or deleted cache is gone (Google AI
answers 403 ``PERMISSION_DENIED`` "CachedContent not found (or permission denied)", Vertex
404 ``NOT_FOUND``); a ``generateContent`` that names a cache and also sets
``systemInstruction``, ``tools`` or ``toolConfig`` gets Google's 400; a request that uses a
cache reports ``cachedContentTokenCount`` (the cache's tokens, also counted in
``promptTokenCount``). Tokens are estimated as deja's adapter estimates them (four characters
each, 1,600 per media part). Errors use Google's body ``{"error": {code, message, status}}``.

Function responses are checked as the API checks them: one whose ``id`` matches no
``functionCall`` of the model turn before it, or that has none when those calls have ids,
is refused with a 400 (FunctionCall.id: "return the response with the matching id"; the
wording of that 400 is this server's, Google documents the rule, not the message); media
in ``functionResponse.parts`` must be ``inlineData`` (``fileData`` too on Vertex AI: the
Gemini API's FunctionResponsePart has no such field, and answers its "Unknown name" 400),
and a Gemini 1.x or 2.x model refuses them ("Multimodal function responses are not
supported for this model.").

Replies are deterministic text about the last user message unless scripted with
:class:`GeminiReply` (text, thoughts, function calls, a thought signature, a finish reason, a
blocked prompt). Every request is recorded. Public names (:class:`FakeGeminiServer`,
:class:`GeminiReply`, :func:`make_service_account`) are re-exported from :mod:`deja.testing`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qs

import orjson

from deja._fake_server import (
    FakeHandler,
    FakeServer,
    RecordedRequest,
    ScriptedFailure,
    status_phrase,
)
from deja.errors import MissingDependencyError
from deja.providers.gemini import _epoch, _estimate, minimum_cache_tokens
from deja.providers.google_auth import CLOUD_PLATFORM_SCOPE, JWT_BEARER_GRANT
from deja.providers.planner import estimate_tokens

__all__ = ["FakeGeminiServer", "GeminiReply", "make_service_account"]

logger = logging.getLogger(__name__)

_STATUS_NAMES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_DEFAULT_MESSAGES: Final = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline Exceeded",
}
_MODEL_ROUTE: Final = re.compile(
    r"/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^/:]+):(?P<method>\w+)"
)
_VERTEX_MODEL_ROUTE: Final = re.compile(
    r"/(?P<version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/google/models/(?P<model>[^/:]+):(?P<method>\w+)"
)
_CACHE_ROUTE: Final = re.compile(
    r"/(?P<version>v1beta|v1|v1alpha)/cachedContents(?:/(?P<id>[^/]+))?"
)
_VERTEX_CACHE_ROUTE: Final = re.compile(
    r"/(?P<version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/cachedContents(?:/(?P<id>[^/]+))?"
)
_TTL: Final = re.compile(r"(\d+(?:\.\d+)?)s")
# Media in a function response: Gemini 3 models; older ones answer this 400.
_MEDIA_REFUSED: Final = re.compile(r"gemini-[12](?:[.\-]|$)")
_NO_MULTIMODAL_RESPONSES: Final = "Multimodal function responses are not supported for this model."
_WORD: Final = re.compile(r"\s*\S+|\s+$")
_DEFAULT_TTL: Final = 3600.0  # Gemini's default cache lifetime
_MAX_ASSERTION_LIFETIME: Final = 3600
_CLOCK_SKEW: Final = 300  # seconds an assertion's iat may run ahead of the server
_CACHE_CONFLICT: Final = {
    "google_ai": "CachedContent can not be used with GenerateContent request setting "
    "system_instruction, tools or tool_config.\n\nProposed fix: move those values to "
    "CachedContent from GenerateContent request.",
    "vertex": "Tool config, tools and system instruction should not be set in the request "
    "when using cached content.",
}
_UNAUTHENTICATED_HELP: Final = (
    "Expected OAuth 2 access token, login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_SHORT_LIVED: Final = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
    "timeframe. Check your iat and exp values in the JWT claim."
)


@dataclass(frozen=True)
class GeminiReply:
    """A scripted answer: ``GeminiReply("Bonjour")``.

    Parts come in Gemini's order: ``thoughts`` (a ``thought: true`` part, sent only when the
    request's ``thinkingConfig.includeThoughts`` is true, but always counted in
    ``thoughtsTokenCount``), then ``text``, then one ``functionCall`` per entry of
    ``function_calls`` (``{"name", "args"}``, optionally ``"id"``). ``thought_signature``
    goes on the first function call, else on the last text part. ``finish_reason`` is
    Gemini's (default ``STOP``, also for function calls, as Gemini sends it);
    ``"SAFETY"`` with no text gives a candidate without content. ``block_reason`` blocks the
    prompt: no candidates, only ``promptFeedback``. ``candidates_tokens`` and
    ``thoughts_tokens`` override the estimates; ``latency`` the server's.
    """

    text: str | None = None
    _: KW_ONLY
    thoughts: str | None = None
    thought_signature: str | None = None
    function_calls: Sequence[Mapping[str, Any]] | None = None
    finish_reason: str | None = None
    block_reason: str | None = None
    candidates_tokens: int | None = None
    thoughts_tokens: int | None = None
    latency: float | None = None


def make_service_account(
    *,
    client_email: str = "deja-test@deja-simulated.iam.gserviceaccount.com",
    token_uri: str = "https://oauth2.googleapis.com/token",
    project_id: str = "deja-simulated",
) -> dict[str, Any]:
    """A throwaway service-account key file (as a dict) with a fresh 2,048-bit RSA key.

    The key is made here and known to no one else; register it with a fake server
    (:meth:`FakeGeminiServer.add_service_account`) to get tokens for it. Needs
    ``cryptography``.
    """
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError as exc:
        raise MissingDependencyError("cryptography", "vertex") from exc
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": client_email,
        "client_id": str(secrets.randbelow(10**20)),
        "token_uri": token_uri,
    }


class _GoogleError(Exception):
    """An error answer in Google's shape."""

    def __init__(
        self, code: int, message: str, *, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "status": _STATUS_NAMES.get(self.code, "UNKNOWN"),
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


class _OAuthError(Exception):
    """An OAuth token-endpoint error (``{"error", "error_description"}``)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass
class _Cache:
    name: str
    scope: str
    model: str
    display_name: str | None
    contents: list[Any]
    system_instruction: Any
    tools: Any
    tool_config: Any
    tokens: int
    create_time: float
    update_time: float
    expire_time: float

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "model": self.model}
        if self.display_name:
            out["displayName"] = self.display_name
        out["createTime"] = _timestamp(self.create_time)
        out["updateTime"] = _timestamp(self.update_time)
        out["expireTime"] = _timestamp(self.expire_time)
        out["usageMetadata"] = {"totalTokenCount": self.tokens}
        return out


@dataclass(frozen=True)
class _Route:
    kind: str  # "google_ai" | "vertex"
    target: str  # "model" | "cache" | "token"
    scope: str  # "" or "projects/{p}/locations/{l}"
    model: str | None = None
    method: str | None = None
    cache_id: str | None = None


class FakeGeminiServer(FakeServer[GeminiReply, ScriptedFailure]):
    """A simulated Gemini API on a loopback port (see the module docstring).

    ``api_key``: when set, Google AI routes need it. ``vertex_auth``: whether Vertex routes
    need a bearer token this server issued (default true). ``minimum_tokens`` overrides the
    per-model minimum cache size (an int, or a function of the model name; default
    :func:`deja.providers.gemini.minimum_cache_tokens`, and at least 2,048 on Vertex routes
    as Vertex documents it; an int applies as given). ``clock`` (epoch seconds) drives
    cache lifetimes, timestamps and token expiry, so a test can expire a cache without
    sleeping. ``latency`` and ``chunk_delay`` may change while the server runs. The
    constructor does no I/O; :meth:`start` binds the socket::

        with FakeGeminiServer(api_key="k") as server:
            url = server.url + "/v1beta/models/gemini-2.5-flash:generateContent"
            httpx2.post(url, json=..., headers={"x-goog-api-key": "k"})
    """

    _provider = "Gemini"
    _log = logger

    def __init__(
        self,
        *,
        api_key: str | None = None,
        vertex_auth: bool = True,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        minimum_tokens: int | Callable[[str], int] | None = None,
        token_lifetime: int = 3600,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency, chunk_delay=chunk_delay)
        self.api_key = api_key
        self.vertex_auth = vertex_auth
        self.minimum_tokens = minimum_tokens
        self.token_lifetime = token_lifetime
        self._clock = clock
        self._caches: dict[str, _Cache] = {}
        self._accounts: dict[str, Any] = {}  # client_email -> RSA public key
        self._tokens: dict[str, float] = {}  # access token -> expiry

    # -- lifecycle ----------------------------------------------------------------------------

    def _handler(self) -> type[_Handler]:
        return _Handler

    @property
    def url(self) -> str:
        """``http://HOST:PORT``: the ``api_base`` for both endpoints (deja adds the version)."""
        return super().url

    @property
    def token_uri(self) -> str:
        """The simulated OAuth token endpoint (``url + "/token"``)."""
        return self.url + "/token"

    # -- credentials ----------------------------------------------------------------------------

    def service_account(
        self, *, client_email: str = "deja-test@deja-simulated.iam.gserviceaccount.com"
    ) -> dict[str, Any]:
        """A fresh service-account key file (dict) registered here, whose ``token_uri`` is
        this server's token endpoint. Needs ``cryptography``; the server must be running."""
        info = make_service_account(client_email=client_email, token_uri=self.token_uri)
        self.add_service_account(info)
        return info

    def add_service_account(self, info: Mapping[str, Any]) -> None:
        """Accept assertions signed by the key in ``info`` (a service-account key file)."""
        try:
            from cryptography.hazmat.primitives import serialization
        except ImportError as exc:
            raise MissingDependencyError("cryptography", "vertex") from exc
        key = serialization.load_pem_private_key(str(info["private_key"]).encode(), None)
        with self._lock:
            self._accounts[str(info["client_email"])] = key.public_key()

    def issue_token(self, *, lifetime: float | None = None) -> str:
        """A bearer token the Vertex routes accept, without the JWT flow."""
        token = "ya29.simulated-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = self._clock() + (
                self.token_lifetime if lifetime is None else lifetime
            )
        return token

    # -- recording and scripting --------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        """How many requests were received, in all or for one exact path (query ignored)."""
        # Recorded paths never hold the query, so this compares the wanted one exactly.
        return self._count(path, lambda p: p.partition("?")[0])

    @property
    def cached_contents(self) -> list[dict[str, Any]]:
        """Every live cached content, as ``get`` shows it plus ``scope`` (oldest first)."""
        with self._lock:
            self._expire()
            caches = sorted(self._caches.values(), key=lambda c: c.create_time)
            return [{**c.public(), "scope": c.scope} for c in caches]

    def reset(self) -> None:
        """Forget requests, scripted replies and failures, caches and issued tokens."""
        with self._lock:
            self._forget()
            self._caches.clear()
            self._tokens.clear()

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Make the next ``times`` model or cachedContents requests (not ``/token``) fail
        with ``status``: Google's error body for it unless ``body`` is given; ``headers``
        are added (e.g. ``retry-after``)."""
        self._queue_failure(ScriptedFailure(status, body, dict(headers or {})), times)

    # -- used by the handler --------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock()

    def _minimum(self, model: str) -> int:
        if isinstance(self.minimum_tokens, int):
            return self.minimum_tokens
        if callable(self.minimum_tokens):
            return self.minimum_tokens(model)
        return minimum_cache_tokens(model)

    def _expire(self) -> None:
        """Drop expired caches (caller holds the lock): Gemini deletes them on expiry."""
        now = self._clock()
        for name in [n for n, c in self._caches.items() if c.expire_time <= now]:
            del self._caches[name]

    def _cache(self, route: _Route, name: str) -> _Cache:
        with self._lock:
            self._expire()
            cache = self._caches.get(name)
        if cache is None or cache.scope != route.scope:
            raise _missing_cache(route)
        return cache

    def _check_token(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
            return expiry is not None and expiry > self._clock()


class _Handler(FakeHandler[FakeGeminiServer]):
    json_type = "application/json; charset=UTF-8"

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _parses_json(self, headers: Mapping[str, str]) -> bool:
        return "x-www-form-urlencoded" not in headers.get("content-type", "")  # OAuth's form

    def _answer_refusal(self, exc: Exception) -> bool:
        if isinstance(exc, _GoogleError):
            self._send_error(exc)
        elif isinstance(exc, _OAuthError):
            payload = {"error": exc.error, "error_description": exc.description}
            self._send_json(exc.status, payload)
        else:
            return False
        return True

    def _send_unreadable(self) -> None:
        self._send_error(_GoogleError(400, "Could not read the request body."))

    def _send_internal_error(self) -> None:
        self._send_error(_GoogleError(500, _DEFAULT_MESSAGES[500]))

    # -- routing ------------------------------------------------------------------------------

    def _route(self, request: RecordedRequest) -> None:
        owner, path, body = self.server.owner, request.path, request.body
        query = parse_qs(request.query)
        route = _match(path)
        if route is None:
            raise _GoogleError(404, f"The requested URL {path} was not found on this server.")
        if route.target == "token":
            if self.command != "POST":
                raise _GoogleError(404, f"The requested URL {path} was not found on this server.")
            self._token(owner, request.raw)
            return
        self._authorize(owner, route, query, request.headers)
        failure = owner._take_failure()
        if failure is not None:
            self._send_failure(failure)
            return
        if route.target == "model":
            if self.command != "POST":
                raise _GoogleError(404, f"The requested URL {path} was not found on this server.")
            if route.method not in ("generateContent", "streamGenerateContent"):
                raise _GoogleError(404, f"Method {route.method} is not simulated.")
            if not isinstance(body, dict):
                raise _GoogleError(400, "Invalid JSON payload received.")
            sse = query.get("alt", [""])[0] == "sse"
            self._generate(owner, route, body, route.method == "streamGenerateContent", sse)
            return
        self._cached_contents(owner, route, body)

    def _authorize(
        self,
        owner: FakeGeminiServer,
        route: _Route,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
    ) -> None:
        if route.kind == "google_ai":
            if owner.api_key is None:
                return
            key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
            if not key:
                raise _GoogleError(
                    403,
                    "Method doesn't allow unregistered callers (callers without established "
                    "identity). Please use API Key or other form of API consumer identity to "
                    "call this API.",
                )
            if key != owner.api_key:
                raise _GoogleError(
                    400,
                    "API key not valid. Please pass a valid API key.",
                    details=[
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"},
                        }
                    ],
                )
            return
        if not owner.vertex_auth:
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _GoogleError(
                401,
                f"Request is missing required authentication credential. {_UNAUTHENTICATED_HELP}",
            )
        if not owner._check_token(token.strip()):
            raise _GoogleError(
                401, f"Request had invalid authentication credentials. {_UNAUTHENTICATED_HELP}"
            )

    # -- OAuth ----------------------------------------------------------------------------------

    def _token(self, owner: FakeGeminiServer, raw: bytes) -> None:
        form = parse_qs(raw.decode("utf-8", "replace"))
        grant = (form.get("grant_type") or [""])[0]
        if grant != JWT_BEARER_GRANT:
            raise _OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant}")
        assertion = (form.get("assertion") or [""])[0]
        claims = _verify_assertion(owner, assertion)
        scope = claims.get("scope")
        if not isinstance(scope, str) or CLOUD_PLATFORM_SCOPE not in scope.split():
            raise _OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        token = owner.issue_token()
        self._send_json(
            200,
            {"access_token": token, "expires_in": owner.token_lifetime - 1, "token_type": "Bearer"},
        )

    # -- generateContent ------------------------------------------------------------------------

    def _generate(
        self, owner: FakeGeminiServer, route: _Route, body: dict[str, Any], stream: bool, sse: bool
    ) -> None:
        model = str(route.model)
        resource = _model_resource(route, model)
        cache: _Cache | None = None
        name = body.get("cachedContent")
        if name is not None:
            if any(body.get(k) is not None for k in ("systemInstruction", "tools", "toolConfig")):
                raise _GoogleError(400, _CACHE_CONFLICT[route.kind])
            cache = owner._cache(route, str(name))
            if cache.model != resource:
                raise _GoogleError(
                    400,
                    f"Model used by GenerateContent request ({resource}) and CachedContent "
                    f"({cache.model}) has to be the same.",
                )
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise _GoogleError(
                400, "* GenerateContentRequest.contents: contents is not specified\n"
            )
        _validate_contents(contents, "GenerateContentRequest", route.kind, model)
        _check_call_ids(contents, "GenerateContentRequest", cache.contents if cache else [])
        prompt = _estimate(
            body.get("systemInstruction"),
            body.get("tools"),
            body.get("toolConfig"),
            contents,
            estimate_tokens,
        )
        cached_tokens = cache.tokens if cache is not None else 0
        prompt += cached_tokens
        reply = owner._take_reply(body)
        owner._sleep(
            reply.latency if reply is not None and reply.latency is not None else owner.latency
        )
        response_id = uuid.uuid4().hex[:22]
        config = body.get("generationConfig") or {}
        usage: dict[str, Any] = {"promptTokenCount": prompt, "totalTokenCount": prompt}
        if reply is not None and reply.block_reason is not None:
            if cached_tokens:
                usage["cachedContentTokenCount"] = cached_tokens
            blocked = {
                "promptFeedback": {
                    "blockReason": reply.block_reason,
                    "safetyRatings": _safety_ratings(reply.block_reason),
                },
                "usageMetadata": usage,
                "modelVersion": model,
                "responseId": response_id,
            }
            self._respond([blocked], stream=stream, sse=sse)
            return
        answers = _answers(config, reply, contents)
        output = sum(a.output_tokens for a in answers)
        thoughts = sum(a.thoughts_tokens for a in answers)
        usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": output,
            "totalTokenCount": prompt + output + thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        if cached_tokens:
            usage["cachedContentTokenCount"] = cached_tokens
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached_tokens}]
        head = {"modelVersion": model, "responseId": response_id}
        if not stream:
            candidates = [a.candidate(i) for i, a in enumerate(answers)]
            self._respond(
                [{"candidates": candidates, "usageMetadata": usage, **head}],
                stream=False,
                sse=False,
            )
            return
        events: list[dict[str, Any]] = []
        running = {"promptTokenCount": prompt, "totalTokenCount": prompt}
        for i, answer in enumerate(answers):
            for piece in answer.pieces(i):
                events.append({"candidates": [piece], "usageMetadata": running, **head})
        if events:
            events[-1] = {**events[-1], "usageMetadata": usage}
        self._respond(events, stream=True, sse=sse)

    # -- cachedContents -------------------------------------------------------------------------

    def _cached_contents(self, owner: FakeGeminiServer, route: _Route, body: Any) -> None:
        method = self.command
        if route.cache_id is None:
            if method == "POST":
                self._send_json(200, _create_cache(owner, route, body).public())
                return
            if method == "GET":
                with owner._lock:
                    owner._expire()
                    caches = sorted(
                        (c for c in owner._caches.values() if c.scope == route.scope),
                        key=lambda c: c.create_time,
                    )
                listed = {"cachedContents": [c.public() for c in caches]} if caches else {}
                self._send_json(200, listed)
                return
            raise _GoogleError(404, "Method not allowed on the cachedContents collection.")
        name = _cache_name(route, route.cache_id)
        cache = owner._cache(route, name)
        if method == "GET":
            self._send_json(200, cache.public())
        elif method == "DELETE":
            with owner._lock:
                owner._caches.pop(name, None)
            self._send_json(200, {})
        elif method == "PATCH":
            if not isinstance(body, dict):
                raise _GoogleError(400, "Invalid JSON payload received.")
            now = owner._now()
            expire = _expiry(body, now)
            if expire is None:
                raise _GoogleError(400, "Only ttl or expireTime may be updated.")
            with owner._lock:
                cache.expire_time = expire
                cache.update_time = now
            self._send_json(200, cache.public())
        else:
            raise _GoogleError(404, f"Method {method} is not allowed on a cached content.")

    # -- response -------------------------------------------------------------------------------

    def _respond(self, payloads: list[dict[str, Any]], *, stream: bool, sse: bool) -> None:
        if not stream:
            self._send_json(200, payloads[0])
            return
        if sse:
            frames = [b"data: " + orjson.dumps(p) + b"\r\n\r\n" for p in payloads]
            content_type = "text/event-stream"
        else:
            # Without alt=sse Gemini streams one JSON array, element by element.
            encoded = [orjson.dumps(p) for p in payloads]
            frames = [b"[" + encoded[0]] + [b",\r\n" + e for e in encoded[1:]] + [b"]"]
            content_type = "application/json; charset=UTF-8"
        self._send_frames([("content-type", content_type)], frames)

    def _send_error(self, error: _GoogleError, headers: Mapping[str, str] | None = None) -> None:
        self._send_json(error.code, error.body(), headers)

    def _send_failure(self, failure: ScriptedFailure) -> None:
        if failure.body is not None:
            self._send_json(failure.status, failure.body, failure.headers)
            return
        message = _DEFAULT_MESSAGES.get(
            failure.status, f"Simulated {failure.status} {status_phrase(failure.status)}."
        )
        self._send_error(_GoogleError(failure.status, message), failure.headers)


# -- pure helpers ---------------------------------------------------------------------------


def _match(path: str) -> _Route | None:
    if path == "/token":
        return _Route("google_ai", "token", "")
    match = _VERTEX_MODEL_ROUTE.fullmatch(path)
    if match is not None:
        scope = f"projects/{match['project']}/locations/{match['location']}"
        return _Route("vertex", "model", scope, model=match["model"], method=match["method"])
    match = _MODEL_ROUTE.fullmatch(path)
    if match is not None:
        return _Route("google_ai", "model", "", model=match["model"], method=match["method"])
    match = _VERTEX_CACHE_ROUTE.fullmatch(path)
    if match is not None:
        scope = f"projects/{match['project']}/locations/{match['location']}"
        return _Route("vertex", "cache", scope, cache_id=match["id"])
    match = _CACHE_ROUTE.fullmatch(path)
    if match is not None:
        return _Route("google_ai", "cache", "", cache_id=match["id"])
    return None


def _model_resource(route: _Route, model: str) -> str:
    if route.kind == "vertex":
        return f"{route.scope}/publishers/google/models/{model}"
    return f"models/{model}"


def _cache_name(route: _Route, ident: str) -> str:
    if route.kind == "vertex":
        return f"{route.scope}/cachedContents/{ident}"
    return f"cachedContents/{ident}"


def _missing_cache(route: _Route) -> _GoogleError:
    # Google AI hides whether a cache exists behind a permission error; Vertex says 404.
    if route.kind == "google_ai":
        return _GoogleError(403, "CachedContent not found (or permission denied)")
    return _GoogleError(404, "Requested entity was not found.")


def _timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expiry(body: Mapping[str, Any], now: float) -> float | None:
    """The expiry a create or patch body asks for (``None``: it names none)."""
    ttl, expire = body.get("ttl"), body.get("expireTime")
    if ttl is not None and expire is not None:
        raise _GoogleError(400, "Only one of ttl and expireTime may be set.")
    if ttl is not None:
        match = _TTL.fullmatch(str(ttl))
        if match is None:
            raise _GoogleError(
                400,
                f"Invalid value at 'cached_content.ttl' "
                f'(type.googleapis.com/google.protobuf.Duration), "{ttl}"',
            )
        return now + float(match[1])
    if expire is not None:
        when = _epoch(expire)
        if when is None:
            raise _GoogleError(400, f"Invalid value at 'cached_content.expire_time', \"{expire}\"")
        if when <= now:
            raise _GoogleError(400, "expire_time must be in the future.")
        return when
    return None


def _validate_contents(contents: list[Any], request: str, kind: str, model: str) -> None:
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            raise _GoogleError(400, f"* {request}.contents[{i}]: must be an object\n")
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise _GoogleError(400, "Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _GoogleError(
                400, f"* {request}.contents[{i}].parts: contents.parts must not be empty.\n"
            )
        for j, part in enumerate(parts):
            response = part.get("functionResponse") if isinstance(part, dict) else None
            if isinstance(response, dict) and response.get("parts") is not None:
                _validate_response_parts(response["parts"], f"contents[{i}].parts[{j}]", kind)
                if response["parts"] and _MEDIA_REFUSED.match(model.lower()):
                    raise _GoogleError(400, _NO_MULTIMODAL_RESPONSES)


def _validate_response_parts(parts: Any, where: str, kind: str) -> None:
    """FunctionResponse.parts: FunctionResponsePart objects, each ``inlineData``
    (``{mimeType, data}``) or, on Vertex AI only, ``fileData`` (``{mimeType, fileUri}``)."""
    if not isinstance(parts, list):
        raise _GoogleError(
            400, f"Invalid JSON payload received. '{where}.function_response.parts' must be a list."
        )
    allowed = {"inlineData": "data", "fileData": "fileUri"}
    if kind != "vertex":
        del allowed["fileData"]  # the Gemini API's FunctionResponsePart has inline data only
    for k, part in enumerate(parts):
        here = f"{where}.function_response.parts[{k}]"
        if not isinstance(part, dict):
            raise _GoogleError(400, f"Invalid JSON payload received. '{here}' is not an object.")
        for key in part:
            if key not in allowed:
                raise _GoogleError(
                    400,
                    f"Invalid JSON payload received. Unknown name \"{key}\" at '{here}': "
                    "Cannot find field.",
                )
        if len(part) != 1:
            raise _GoogleError(400, f"* {here}: exactly one of inline_data or file_data\n")
        ((key, media),) = part.items()
        field = allowed[key]
        if (
            not isinstance(media, dict)
            or not isinstance(media.get("mimeType"), str)
            or not isinstance(media.get(field), str)
        ):
            raise _GoogleError(400, f"* {here}: {key} needs mimeType and {field}\n")


def _check_call_ids(contents: list[Any], request: str, before: list[Any]) -> None:
    """Function responses against the ids of the calls they answer (those of the model turn
    right before): Google's FunctionCall.id asks the client to "return the response with
    the matching id", and Gemini 3 refuses a turn that does not. A response id that no call
    of that turn has is refused, and so is a response without an id when the calls have
    ids. (The rule is the API's; the wording of these 400s is this server's.)"""
    previous = before[-1] if before else None
    for i, content in enumerate(contents):
        parts = content.get("parts") or []
        responses = [
            (j, p["functionResponse"])
            for j, p in enumerate(parts)
            if isinstance(p, dict) and isinstance(p.get("functionResponse"), dict)
        ]
        if responses:
            calls = []
            if isinstance(previous, dict) and previous.get("role") == "model":
                calls = [
                    p["functionCall"]
                    for p in previous.get("parts") or ()
                    if isinstance(p, dict) and isinstance(p.get("functionCall"), dict)
                ]
            ids = {c["id"] for c in calls if isinstance(c.get("id"), str) and c["id"]}
            for j, response in responses:
                given = response.get("id")
                where = f"{request}.contents[{i}].parts[{j}].function_response.id"
                if given and given not in ids:
                    raise _GoogleError(
                        400,
                        f"* {where}: the id {given!r} matches no function call of the "
                        "previous model turn (simulated server)\n",
                    )
                if ids and not given:
                    raise _GoogleError(
                        400,
                        f"* {where}: the function calls of the previous model turn have ids; "
                        "each function response must carry the id of the call it answers "
                        "(simulated server)\n",
                    )
        previous = content


def _create_cache(owner: FakeGeminiServer, route: _Route, body: Any) -> _Cache:
    if not isinstance(body, dict):
        raise _GoogleError(400, "Invalid JSON payload received.")
    model = body.get("model")
    if route.kind == "vertex":
        prefix = f"{route.scope}/publishers/google/models/"
        if not isinstance(model, str) or not model.startswith(prefix):
            raise _GoogleError(
                400, f"cached_content.model must be a model in {route.scope} (simulated server)"
            )
    elif not isinstance(model, str) or not model.startswith("models/"):
        raise _GoogleError(
            400, "cached_content.model must be of the form models/{model} (simulated server)"
        )
    contents = body.get("contents") or []
    if not isinstance(contents, list):
        raise _GoogleError(400, "Invalid JSON payload received. contents must be a list.")
    _validate_contents(
        contents, "CreateCachedContentRequest.cached_content", route.kind, model.rsplit("/", 1)[-1]
    )
    _check_call_ids(contents, "CreateCachedContentRequest.cached_content", [])
    tokens = _estimate(
        body.get("systemInstruction"),
        body.get("tools"),
        body.get("toolConfig"),
        contents,
        estimate_tokens,
    )
    minimum = owner._minimum(model.rsplit("/", 1)[-1])
    if route.kind == "vertex" and not isinstance(owner.minimum_tokens, int):
        # Vertex's own floor, from its context-cache overview (not taken from deja)
        minimum = max(minimum, 2048)
    if tokens < minimum:
        if route.kind == "vertex":
            message = (
                f"The cached content is of {tokens} tokens. The minimum token count to start "
                f"caching is {minimum}."
            )
        else:
            message = (
                f"Cached content is too small. total_token_count={tokens}, "
                f"min_total_token_count={minimum}"
            )
        raise _GoogleError(400, message)
    now = owner._now()
    expire = _expiry(body, now)
    if route.kind == "vertex":
        name = f"{route.scope}/cachedContents/{secrets.randbelow(9 * 10**18) + 10**18}"
    else:
        name = "cachedContents/" + "".join(
            secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12)
        )
    display = body.get("displayName")
    cache = _Cache(
        name=name,
        scope=route.scope,
        model=model,
        display_name=display if isinstance(display, str) else None,
        contents=contents,
        system_instruction=body.get("systemInstruction"),
        tools=body.get("tools"),
        tool_config=body.get("toolConfig"),
        tokens=tokens,
        create_time=now,
        update_time=now,
        expire_time=expire if expire is not None else now + _DEFAULT_TTL,
    )
    with owner._lock:
        owner._caches[name] = cache
    return cache


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _verify_assertion(owner: FakeGeminiServer, assertion: str) -> dict[str, Any]:
    """The claims of a JWT-bearer assertion, after checking it as Google does."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
    except ImportError as exc:
        raise MissingDependencyError("cryptography", "vertex") from exc
    pieces = assertion.split(".")
    if len(pieces) != 3:
        raise _OAuthError("invalid_grant", "Invalid JWT: the assertion is not a JWS.")
    try:
        header = json.loads(_b64decode(pieces[0]))
        claims = json.loads(_b64decode(pieces[1]))
        signature = _b64decode(pieces[2])
    except ValueError:
        raise _OAuthError("invalid_grant", "Invalid JWT: the assertion is malformed.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _OAuthError("invalid_grant", "Invalid JWT: the assertion is malformed.")
    if header.get("alg") != "RS256":
        raise _OAuthError("invalid_grant", "Invalid JWT Signature.")
    with owner._lock:
        key = owner._accounts.get(str(claims.get("iss")))
    if key is None:
        raise _OAuthError("invalid_grant", "Invalid grant: account not found")
    try:
        key.verify(
            signature,
            f"{pieces[0]}.{pieces[1]}".encode("ascii"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature:
        raise _OAuthError("invalid_grant", "Invalid JWT Signature.") from None
    if claims.get("aud") != owner.token_uri:
        raise _OAuthError(
            "invalid_grant", f"Invalid JWT: Failed audience check. Expected {owner.token_uri}."
        )
    issued, expires, now = claims.get("iat"), claims.get("exp"), owner._now()
    if (
        not isinstance(issued, int)
        or not isinstance(expires, int)
        or expires - issued > _MAX_ASSERTION_LIFETIME
        or expires <= issued
        or issued > now + _CLOCK_SKEW
        or expires <= now
    ):
        raise _OAuthError("invalid_grant", _SHORT_LIVED)
    return claims


def _safety_ratings(blocked: str) -> list[dict[str, Any]]:
    categories = (
        "HARM_CATEGORY_HATE_SPEECH",
        "HARM_CATEGORY_DANGEROUS_CONTENT",
        "HARM_CATEGORY_HARASSMENT",
        "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    )
    ratings = []
    for i, category in enumerate(categories):
        rating: dict[str, Any] = {"category": category, "probability": "NEGLIGIBLE"}
        if i == 1 and blocked == "SAFETY":
            rating = {**rating, "probability": "HIGH", "blocked": True}
        ratings.append(rating)
    return ratings


def _last_user_text(contents: Sequence[Any]) -> str:
    for content in reversed(contents):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            texts = [
                str(p["text"])
                for p in content.get("parts") or ()
                if isinstance(p, dict) and isinstance(p.get("text"), str)
            ]
            if texts:
                return "\n".join(texts)
    return ""


def _pieces(text: str) -> list[str]:
    return _WORD.findall(text) or ([text] if text else [])


@dataclass
class _Answer:
    """One candidate's resolved output."""

    thought: str | None
    text: str | None
    calls: list[dict[str, Any]]
    signature: str | None
    finish: str
    output_tokens: int
    thoughts_tokens: int

    def parts(self) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if self.thought:
            parts.append({"text": self.thought, "thought": True})
        if self.text:
            parts.append({"text": self.text})
        parts += [{"functionCall": dict(call)} for call in self.calls]
        self._sign(parts)
        return parts

    def _sign(self, parts: list[dict[str, Any]]) -> None:
        if self.signature is None or not parts:
            return
        calls = [p for p in parts if "functionCall" in p]
        texts = [p for p in parts if "text" in p and not p.get("thought")]
        (calls[0] if calls else texts[-1] if texts else parts[-1])["thoughtSignature"] = (
            self.signature
        )

    def candidate(self, index: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        parts = self.parts()
        if parts:
            out["content"] = {"parts": parts, "role": "model"}
        out["finishReason"] = self.finish
        if self.finish in ("SAFETY", "PROHIBITED_CONTENT"):
            out["safetyRatings"] = _safety_ratings("SAFETY")
        out["index"] = index
        return out

    def pieces(self, index: int) -> list[dict[str, Any]]:
        """The candidate as streamed: words of thought and text, then the calls in one
        event; the finish reason on the last."""
        parts: list[dict[str, Any]] = []
        parts += [{"text": p, "thought": True} for p in _pieces(self.thought or "")]
        parts += [{"text": p} for p in _pieces(self.text or "")]
        calls = [{"functionCall": dict(call)} for call in self.calls]
        self._sign([*parts, *calls])
        events: list[dict[str, Any]] = [
            {"content": {"parts": [part], "role": "model"}, "index": index} for part in parts
        ]
        if calls:
            events.append({"content": {"parts": calls, "role": "model"}, "index": index})
        if not events:
            events.append({"index": index})
        events[-1]["finishReason"] = self.finish
        return events


def _answers(config: Any, reply: GeminiReply | None, contents: Sequence[Any]) -> list[_Answer]:
    config = config if isinstance(config, dict) else {}
    count = config.get("candidateCount", 1)
    count = count if isinstance(count, int) and 1 <= count <= 8 else 1
    thinking = config.get("thinkingConfig")
    include = isinstance(thinking, dict) and thinking.get("includeThoughts") is True
    if reply is None:
        question = _last_user_text(contents)
        answers = []
        for i in range(count):
            seed = question if i == 0 else f"{question}#{i}"
            digest = hashlib.sha256(seed.encode()).hexdigest()[:8]
            text, finish = f"Simulated answer to: {question[:40]} [{digest}]", "STOP"
            for sequence in config.get("stopSequences") or ():
                if isinstance(sequence, str) and sequence and sequence in text:
                    text = text.split(sequence, 1)[0]
                    break
            limit = config.get("maxOutputTokens")
            if isinstance(limit, int) and estimate_tokens(text) > limit:
                text, finish = text[: limit * 4], "MAX_TOKENS"
            answers.append(_Answer(None, text, [], None, finish, estimate_tokens(text), 0))
        return answers
    calls = []
    for call in reply.function_calls or ():
        entry: dict[str, Any] = {"name": call.get("name"), "args": dict(call.get("args") or {})}
        if call.get("id"):
            entry["id"] = call["id"]
        calls.append(entry)
    output = reply.candidates_tokens
    if output is None:
        output = estimate_tokens(reply.text or "") + sum(
            estimate_tokens(str(c["name"]) + json.dumps(c["args"])) for c in calls
        )
    thoughts = reply.thoughts_tokens
    if thoughts is None:
        thoughts = estimate_tokens(reply.thoughts or "")
    answer = _Answer(
        reply.thoughts if include else None,
        reply.text,
        calls,
        reply.thought_signature,
        reply.finish_reason or "STOP",
        output,
        thoughts,
    )
    return [answer] * count
