"""A simulated Amazon Bedrock runtime (Converse and ConverseStream) over real HTTP.

Nothing here reaches AWS. :class:`FakeBedrockServer` serves ``POST /model/{modelId}/converse``
(JSON) and ``POST /model/{modelId}/converse-stream`` (``application/vnd.amazon.eventstream``,
framed by :func:`deja.providers.eventstream.encode_message`) from a stdlib
:class:`~http.server.ThreadingHTTPServer` on a loopback port, records every request, and
simulates what matters to a cache in front of Bedrock:

* **SigV4**: given ``credentials``, the server recomputes each request's signature with
  botocore from the method, path, signed headers and body it received, and answers 403
  with AWS's error shape (``{"message": ...}`` and an ``x-amzn-ErrorType`` header:
  ``MissingAuthenticationTokenException``, ``IncompleteSignatureException``,
  ``UnrecognizedClientException`` for an unknown key or session token,
  ``InvalidSignatureException`` for a wrong region, service or signature). The request
  time is not checked against a clock;
* **API keys**: given ``api_keys``, a request with ``Authorization: Bearer <key>`` is
  accepted when the key is one of them, and answered 403 (``AccessDeniedException``,
  "Authentication failed: Please make sure your API Key is valid.") otherwise; SigV4 is
  checked as above when ``credentials`` are set too, and refused when they are not;
* **prompt caching**: the prefix up to each ``cachePoint`` (tools, then system, then
  messages) is remembered for its lifetime (default 5 minutes, ``"ttl": "1h"`` an hour) on
  an injectable clock. A request whose prefix was seen reads it
  (``cacheReadInputTokens``); new cache points write (``cacheWriteInputTokens``, with a
  ``cacheDetails`` 5m/1h breakdown); ``inputTokens`` is what is left, as on Bedrock, and
  ``totalTokens`` counts everything. A hit is looked for up to 20 blocks before each cache
  point, a read refreshes the entry, and a prefix below the model's minimum
  (:func:`deja.providers.bedrock.bedrock_minimum_tokens`, or the server's
  ``minimum_tokens``) is not cached. Tokens are estimated at four characters each (1,600
  per image or document), the planner's estimate;
* **Bedrock's refusals**, as ``ValidationException`` (400): more than 4 cache points, a
  ``"1h"`` ttl on a model without the 1h cache, a cache point on a model without prompt
  caching or in a Nova ``toolConfig``, a 1h cache point after a 5m one, a cache point with
  nothing before it, and malformed bodies (not JSON, unknown fields, a conversation that
  does not start with a user turn or does not alternate, blank text, ``toolUse`` without
  ``toolConfig``…); scripted failures (:meth:`FakeBedrockServer.fail_next`, e.g. 429
  ``ThrottlingException``) and, in streams, exception events or a cut connection
  (:class:`BedrockReply`).

Replies are deterministic text about the last user message unless scripted with
:class:`BedrockReply` (text, reasoning, tool use, stop reason). Public names
(:class:`FakeBedrockServer`, :class:`BedrockReply`) are meant to be re-exported from
:mod:`deja.testing`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final
from urllib.parse import unquote

import orjson

from deja._fake_server import FakeHandler, FakeServer, PromptCache, RecordedRequest
from deja.providers.bedrock import (
    SIGNING_SERVICE,
    AwsCredentials,
    bedrock_minimum_tokens,
    supports_1h_cache,
    supports_prompt_caching,
)
from deja.providers.eventstream import encode_message
from deja.providers.planner import IMAGE_TOKENS, estimate_tokens

__all__ = ["BedrockReply", "FakeBedrockServer"]

logger = logging.getLogger(__name__)

_MAX_CACHE_POINTS: Final = 4
_LOOKBACK: Final = 20  # blocks before a cache point where a hit is looked for
_TTL_SECONDS: Final = {"5m": 300.0, "1h": 3600.0}
_ARGUMENT_PIECE: Final = 8  # characters of tool input per streamed delta
_WORD: Final = re.compile(r"\s*\S+|\s+$")
_ROUTE: Final = re.compile(r"/model/(?P<model>[^/]+)/(?P<operation>converse|converse-stream)")
_AUTHORIZATION: Final = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;\-]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
_PADDING: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ERROR_TYPES: Final = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_TOP_LEVEL: Final = frozenset(
    {
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "promptVariables",
        "additionalModelResponseFieldPaths",
        "requestMetadata",
        "performanceConfig",
        "serviceTier",
        "outputConfig",
    }
)
_INFERENCE: Final = frozenset({"maxTokens", "temperature", "topP", "stopSequences"})
_BLOCKS: Final = frozenset(
    {
        "text",
        "image",
        "document",
        "video",
        "audio",
        "toolUse",
        "toolResult",
        "guardContent",
        "cachePoint",
        "reasoningContent",
        "citationsContent",
        "searchResult",
    }
)
_SYSTEM_BLOCKS: Final = frozenset({"text", "guardContent", "cachePoint"})


@dataclass(frozen=True)
class BedrockReply:
    """A scripted answer: ``BedrockReply("Bonjour")``.

    The content blocks come in Claude's order: ``reasoningContent`` (``reasoning`` with a
    ``signature``, one is made up when absent), then ``text``, then one ``toolUse`` per
    entry of ``tool_uses`` (``{"name", "input"}``, a ``toolUseId`` is made up when
    absent). ``stop_reason`` ``None`` means ``tool_use`` with tool uses, else
    ``end_turn``. ``output_tokens`` overrides the estimate, ``latency`` the server's.

    Streams only: ``stream_exception`` (e.g. ``"throttlingException"``) ends the stream
    with that exception event after ``exception_after`` events (``exception_message`` is
    its message); ``abort_after_events`` sends that many events, then half of the next
    frame, and drops the connection.
    """

    text: str | None = None
    _: KW_ONLY
    reasoning: str | None = None
    signature: str | None = None
    tool_uses: Sequence[Mapping[str, Any]] | None = None
    stop_reason: str | None = None
    output_tokens: int | None = None
    latency: float | None = None
    stream_exception: str | None = None
    exception_after: int = 0
    exception_message: str = "Simulated stream exception."
    abort_after_events: int | None = None


class _Refusal(Exception):
    """A request Bedrock refuses: HTTP status, AWS error type and message."""

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind or _ERROR_TYPES.get(status, "InternalServerException")


@dataclass(frozen=True)
class _Failure:
    status: int
    kind: str
    message: str
    headers: dict[str, str]


class FakeBedrockServer(FakeServer[BedrockReply, _Failure]):
    """A simulated Bedrock runtime on a loopback port (see the module docstring).

    ``credentials``: when set, every request must be SigV4-signed with them for
    ``region`` and service ``bedrock``. ``api_keys``: Bedrock API keys accepted as
    ``Authorization: Bearer <key>`` (with or without ``credentials``: when either is set,
    every request must authenticate one way or the other). ``minimum_tokens`` overrides
    the per-model minimum cacheable prefix; ``clock`` (seconds, monotonic) drives cache
    lifetimes, so a test can expire entries without sleeping. ``latency`` and
    ``chunk_delay`` (seconds before a response / between streamed events) may change while
    the server runs. The constructor does no I/O; :meth:`start` binds the socket::

        with FakeBedrockServer(credentials=creds) as server:
            wire = BedrockProvider().build_request(body, region="us-east-1",
                                                   credentials=creds, api_base=server.url)
            httpx2.post(wire.url, content=wire.content, headers=wire.headers)
    """

    _provider = "Bedrock"
    _log = logger

    def __init__(
        self,
        *,
        credentials: AwsCredentials | None = None,
        api_keys: Iterable[str] = (),
        region: str = "us-east-1",
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        minimum_tokens: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency, chunk_delay=chunk_delay)
        self.credentials = credentials
        self.api_keys = tuple(api_keys)
        self.region = region
        self.minimum_tokens = minimum_tokens
        self._cache = PromptCache(clock=clock, ttl_seconds=_TTL_SECONDS, lookback=_LOOKBACK)

    # -- lifecycle ----------------------------------------------------------------------------

    def _handler(self) -> type[_Handler]:
        return _Handler

    @property
    def url(self) -> str:
        """``http://HOST:PORT``: what to pass as ``api_base`` (deja appends ``/model/...``)."""
        return super().url

    # -- recording and scripting --------------------------------------------------------------

    def count(self, operation: str | None = None) -> int:
        """How many requests were received, in all or for one operation
        (``"converse"`` or ``"converse-stream"``)."""
        with self._lock:
            if operation is None:
                return len(self._requests)
            return sum(1 for r in self._requests if r.path.endswith("/" + operation))

    def reset(self) -> None:
        """Forget recorded requests, scripted replies and failures, and the prompt cache."""
        with self._lock:
            self._forget()
            self._cache.clear()

    def clear_prompt_cache(self) -> None:
        """Forget every cached prefix (as if all lifetimes had run out)."""
        with self._lock:
            self._cache.clear()

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        error_type: str | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Make the next ``times`` authenticated, well-formed requests fail with ``status``.

        ``error_type`` defaults to Bedrock's exception for the status (429
        ``ThrottlingException``, 400 ``ValidationException``, 503
        ``ServiceUnavailableException``…); ``headers`` are added to the answer.
        """
        kind = error_type or _ERROR_TYPES.get(status, "InternalServerException")
        text = message or f"Simulated {kind}."
        self._queue_failure(_Failure(status, kind, text, dict(headers or {})), times)

    # -- used by the handler --------------------------------------------------------------------

    def _prompt_usage(self, model: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Input usage of ``body`` against the simulated prompt cache (updating it)."""
        blocks = _flatten(model, body)
        if all(ttl is None for _, _, ttl in blocks):
            return {"inputTokens": sum(tokens for _, tokens, _ in blocks)}
        minimum = self.minimum_tokens
        if minimum is None:
            minimum = bedrock_minimum_tokens(model)
        with self._lock:
            use = self._cache.use(blocks, minimum)
        usage: dict[str, Any] = {
            "inputTokens": use.uncached,
            "cacheReadInputTokens": use.read,
            "cacheWriteInputTokens": use.created,
        }
        # Bedrock lists the writes by lifetime, 1h first, and only when there are some.
        details = [
            {"ttl": t, "inputTokens": use.written[t]} for t in ("1h", "5m") if use.written[t]
        ]
        if details:
            usage["cacheDetails"] = details
        return usage


class _Handler(FakeHandler[FakeBedrockServer]):
    def _answer_refusal(self, exc: Exception) -> bool:
        if not isinstance(exc, _Refusal):
            return False
        self._send_error(exc.status, exc.kind, exc.message)
        return True

    def _send_unreadable(self) -> None:
        self._send_error(400, "SerializationException", "Could not read the request body.")

    def _send_internal_error(self) -> None:
        self._send_error(500, "InternalServerException", "Internal server error (simulated)")

    def _route(self, request: RecordedRequest) -> None:
        owner, path, body = self.server.owner, request.path, request.body
        match = _ROUTE.fullmatch(path)
        if self.command != "POST" or match is None:
            raise _Refusal(404, f"Not found: {self.command} {path}", "UnknownOperationException")
        if owner.credentials is not None or owner.api_keys:
            _check_auth(owner, request)
        failure = owner._take_failure()
        if failure is not None:
            self._send_error(failure.status, failure.kind, failure.message, failure.headers)
            return
        if not isinstance(body, dict):
            raise _Refusal(400, "Malformed input request, please reformat your input and retry.")
        model = unquote(match["model"])
        _validate(model, body)
        self._converse(owner, model, body, stream=match["operation"] == "converse-stream")

    def _converse(
        self, owner: FakeBedrockServer, model: str, body: dict[str, Any], *, stream: bool
    ) -> None:
        started = time.monotonic()
        usage = owner._prompt_usage(model, body)
        reply = owner._take_reply(body)
        blocks, stop_reason, output = _answer(body, reply)
        prompt = usage["inputTokens"] + usage.get("cacheReadInputTokens", 0)
        prompt += usage.get("cacheWriteInputTokens", 0)
        usage = {
            "inputTokens": usage["inputTokens"],
            "outputTokens": output,
            "totalTokens": prompt + output,  # everything, cache reads and writes included
            **{k: v for k, v in usage.items() if k != "inputTokens"},
        }
        owner._sleep(
            reply.latency if reply is not None and reply.latency is not None else owner.latency
        )
        metrics = {"latencyMs": int((time.monotonic() - started) * 1000)}
        if stream:
            events = _events(blocks, stop_reason, usage, metrics)
            self._send_stream(events, reply)
            return
        answer = {
            "output": {"message": {"role": "assistant", "content": blocks}},
            "stopReason": stop_reason,
            "usage": usage,
            "metrics": metrics,
        }
        self._send_json(200, answer)

    # -- response -----------------------------------------------------------------------------

    def _provider_headers(self) -> Iterable[tuple[str, str]]:
        return [("x-amzn-RequestId", str(uuid.uuid4()))]

    def _send_error(
        self, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        # AWS's REST-JSON error shape: the type in a header, the message in the body.
        self._send_json(status, {"message": message}, {"x-amzn-ErrorType": kind, **(headers or {})})

    def _send_stream(self, events: list[tuple[str, dict[str, Any]]], reply: Any) -> None:
        frames = [_event_frame(kind, payload, i) for i, (kind, payload) in enumerate(events)]
        abort = None
        if isinstance(reply, BedrockReply):
            if reply.stream_exception is not None:
                cut = max(0, reply.exception_after)
                frames = frames[:cut]
                frames.append(_exception_frame(reply.stream_exception, reply.exception_message))
            elif reply.abort_after_events is not None:
                abort = max(0, reply.abort_after_events)
        if abort is not None:
            broken = frames[abort] if abort < len(frames) else frames[-1]
            frames = [*frames[:abort], broken[: len(broken) // 2]]
        fields = [("content-type", "application/vnd.amazon.eventstream")]
        self._send_frames(fields, frames, finished=abort is None)


# -- authentication -------------------------------------------------------------------------


def _check_auth(owner: FakeBedrockServer, request: RecordedRequest) -> None:
    """Refuse (403, as AWS does) a request bearing none of the server's API keys and not
    signed with its credentials."""
    authorization = request.headers.get("authorization")
    if not authorization:
        raise _Refusal(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        # secrets compared in constant time, as a real server would
        given = token.strip().encode()
        if not any(hmac.compare_digest(given, key.encode()) for key in owner.api_keys):
            raise _Refusal(
                403,
                "Authentication failed: Please make sure your API Key is valid.",
                "AccessDeniedException",
            )
        return
    if owner.credentials is None:
        raise _Refusal(
            403,
            "The security token included in the request is invalid.",
            "UnrecognizedClientException",
        )
    _check_signature(owner.credentials, owner.region, request, authorization)


def _check_signature(
    expected: AwsCredentials, region: str, request: RecordedRequest, authorization: str
) -> None:
    """Refuse (403, as AWS does) a request not signed with ``expected`` for ``region``."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers, path, query = request.headers, request.path, request.query
    match = _AUTHORIZATION.fullmatch(authorization.strip())
    date = headers.get("x-amz-date")
    if match is None or not date:
        raise _Refusal(
            403,
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders', "
            "and the request an X-Amz-Date header.",
            "IncompleteSignatureException",
        )
    if match["key"] != expected.access_key:
        raise _Refusal(
            403,
            "The security token included in the request is invalid.",
            "UnrecognizedClientException",
        )
    if expected.token is not None and headers.get("x-amz-security-token") != expected.token:
        raise _Refusal(
            403,
            "The security token included in the request is invalid.",
            "UnrecognizedClientException",
        )
    if match["region"] != region or match["service"] != SIGNING_SERVICE:
        raise _Refusal(
            403,
            f"Credential should be scoped to a valid region and to the service "
            f"'{SIGNING_SERVICE}'; region '{region}' is expected.",
            "InvalidSignatureException",
        )
    signed = match["signed"].split(";")
    if "host" not in signed or any(name not in headers for name in signed):
        raise _Refusal(
            403, "Signed headers must include host and be present.", "InvalidSignatureException"
        )
    # Recompute the signature from what arrived: the signed headers as received, the
    # path as sent (still percent-encoded), the exact body, at the request's own time.
    url = f"http://{headers['host']}{path}" + (f"?{query}" if query else "")
    received = AWSRequest(
        method=request.method,
        url=url,
        data=request.raw,
        headers={name: headers[name] for name in signed},
    )
    received.context["timestamp"] = date
    signer = SigV4Auth(
        Credentials(expected.access_key, expected.secret_key, expected.token),
        match["service"],
        match["region"],
    )
    canonical = signer.canonical_request(received)
    signature = signer.signature(signer.string_to_sign(received, canonical), received)
    if not hmac.compare_digest(signature, match["signature"]):
        raise _Refusal(
            403,
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.",
            "InvalidSignatureException",
        )


# -- validation -----------------------------------------------------------------------------


def _one_key(block: Any, where: str, allowed: frozenset[str]) -> str:
    if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in allowed:
        raise _Refusal(
            400, f"Malformed input request: {where} must hold exactly one known content block."
        )
    return str(next(iter(block)))


def _check_cache_point(value: Any, where: str, model: str) -> str:
    if not isinstance(value, dict) or value.get("type") != "default":
        raise _Refusal(400, f"Malformed input request: {where}.cachePoint.type must be 'default'.")
    if set(value) - {"type", "ttl"}:
        raise _Refusal(400, f"Malformed input request: extraneous key in {where}.cachePoint.")
    ttl = value.get("ttl", "5m")
    if ttl not in _TTL_SECONDS:
        raise _Refusal(400, f"{where}.cachePoint.ttl must be one of [5m, 1h].")
    if not supports_prompt_caching(model):
        raise _Refusal(400, f"The model {model} does not support prompt caching (cachePoint).")
    if ttl == "1h" and not supports_1h_cache(model):
        raise _Refusal(400, f"The model {model} does not support a cachePoint ttl of 1h.")
    return str(ttl)


def _validate(model: str, body: Mapping[str, Any]) -> None:
    """Refuse what Bedrock refuses (the checks a cache in front of it can trip)."""
    unknown = sorted(set(body) - _TOP_LEVEL)
    if unknown:
        raise _Refusal(
            400, f"Malformed input request: extraneous key [{unknown[0]}] is not permitted."
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Refusal(400, "A conversation must start with a user message. Try again.")
    ttls: list[str] = []
    previous: str | None = None

    def check(blocks: Any, where: str, allowed: frozenset[str]) -> None:
        if not isinstance(blocks, list):
            raise _Refusal(400, f"Malformed input request: {where} must be a list.")
        for j, block in enumerate(blocks):
            spot = f"{where}.{j}"
            kind = _one_key(block, spot, allowed)
            if kind == "cachePoint":
                if j == 0:
                    raise _Refusal(400, f"{spot}: a cachePoint needs content before it.")
                ttls.append(_check_cache_point(block["cachePoint"], spot, model))
            elif kind == "text" and not str(block["text"]).strip():
                raise _Refusal(
                    400,
                    f"The text field in the ContentBlock object at {spot} is blank. Add text "
                    "to the text field, and try again.",
                )

    tool_config = body.get("toolConfig")
    if tool_config is not None:
        tools = tool_config.get("tools") if isinstance(tool_config, dict) else None
        if not isinstance(tools, list) or not tools:
            raise _Refusal(400, "The toolConfig field must hold at least one tool.")
        for j, tool in enumerate(tools):
            kind = _one_key(
                tool, f"toolConfig.tools.{j}", frozenset({"toolSpec", "systemTool", "cachePoint"})
            )
            if kind == "cachePoint":
                if j == 0:
                    raise _Refusal(
                        400, f"toolConfig.tools.{j}: a cachePoint needs a tool before it."
                    )
                if "amazon.nova-" in model.lower():
                    raise _Refusal(
                        400, f"The model {model} does not support a cachePoint in toolConfig."
                    )
                ttls.append(_check_cache_point(tool["cachePoint"], f"toolConfig.tools.{j}", model))
    system = body.get("system")
    if system is not None:
        check(system, "system", _SYSTEM_BLOCKS)
    uses_tools = False
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise _Refusal(400, f"messages.{i}.role must be one of [user, assistant].")
        if i == 0 and role != "user":
            raise _Refusal(400, "A conversation must start with a user message. Try again.")
        if role == previous:
            raise _Refusal(
                400, "A conversation must alternate between user and assistant roles. Try again."
            )
        previous = role
        content = message.get("content")
        check(content, f"messages.{i}.content", _BLOCKS)
        uses_tools = uses_tools or any("toolUse" in b or "toolResult" in b for b in content)
    if uses_tools and tool_config is None:
        raise _Refusal(
            400,
            "The toolConfig field must be defined when using toolUse and toolResult content "
            "blocks.",
        )
    inference = body.get("inferenceConfig")
    if inference is not None:
        if not isinstance(inference, dict) or set(inference) - _INFERENCE:
            raise _Refusal(400, "Malformed input request: inferenceConfig has an unknown field.")
        limit = inference.get("maxTokens")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise _Refusal(400, "inferenceConfig.maxTokens must be at least 1.")
    if len(ttls) > _MAX_CACHE_POINTS:
        raise _Refusal(
            400,
            f"The number of cachePoint blocks in the request ({len(ttls)}) exceeds the maximum "
            f"of {_MAX_CACHE_POINTS}.",
        )
    first_5m = ttls.index("5m") if "5m" in ttls else len(ttls)
    if "1h" in ttls[first_5m:]:
        raise _Refusal(
            400,
            "A cachePoint with ttl 1h must not come after one with ttl 5m. Cache points are "
            "processed in the order toolConfig, system, messages.",
        )


# -- prompt cache ---------------------------------------------------------------------------


def _block_tokens(block: Any) -> int:
    if not isinstance(block, dict):
        return 0
    if isinstance(block.get("text"), str):
        return estimate_tokens(block["text"])
    if "image" in block or "document" in block or "video" in block:
        return IMAGE_TOKENS
    if isinstance(block.get("reasoningContent"), dict):
        text = block["reasoningContent"].get("reasoningText")
        return estimate_tokens(str(text.get("text") or "")) if isinstance(text, dict) else 0
    if isinstance(block.get("toolUse"), dict):
        use = block["toolUse"]
        return estimate_tokens(str(use.get("name", "")) + json.dumps(use.get("input")))
    if isinstance(block.get("toolResult"), dict):
        inner = block["toolResult"].get("content")
        return sum(_block_tokens(b) for b in inner) if isinstance(inner, list) else 0
    return estimate_tokens(json.dumps(block, ensure_ascii=False))  # toolSpec and the rest


def _flatten(model: str, body: Mapping[str, Any]) -> list[tuple[str, int, str | None]]:
    """Every block in prefix order (tools, system, messages): (prefix hash, tokens, ttl of
    the cachePoint right after it, if any)."""
    items: list[list[Any]] = []  # [section, block, ttl]

    def add(section: str, blocks: Any) -> None:
        for block in blocks if isinstance(blocks, list) else ():
            if isinstance(block, dict) and "cachePoint" in block:
                if items:
                    point = block["cachePoint"]
                    items[-1][2] = point.get("ttl", "5m") if isinstance(point, dict) else "5m"
            else:
                items.append([section, block, None])

    tool_config = body.get("toolConfig")
    if isinstance(tool_config, dict):
        add("tool", tool_config.get("tools"))
    add("system", body.get("system"))
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            add(str(message.get("role")), message.get("content"))
    digest = hashlib.sha256(model.encode())
    out: list[tuple[str, int, str | None]] = []
    for section, block, ttl in items:
        digest.update(orjson.dumps([section, block], option=orjson.OPT_SORT_KEYS))
        out.append((digest.copy().hexdigest(), _block_tokens(block), ttl))
    return out


# -- answers --------------------------------------------------------------------------------


def _last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            texts = [
                str(b["text"])
                for b in message.get("content") or ()
                if isinstance(b, dict) and isinstance(b.get("text"), str)
            ]
            if texts:
                return "\n".join(texts)
    return ""


def _answer(
    body: Mapping[str, Any], reply: BedrockReply | None
) -> tuple[list[dict[str, Any]], str, int]:
    """(content blocks, stopReason, output tokens) for a request."""
    inference = body.get("inferenceConfig") or {}
    if reply is None:
        question = _last_user_text(body["messages"])
        digest = hashlib.sha256(question.encode()).hexdigest()[:8]
        text = f"Simulated answer to: {question[:40]} [{digest}]"
        stop_reason = "end_turn"
        for sequence in inference.get("stopSequences") or ():
            if isinstance(sequence, str) and sequence and sequence in text:
                text, stop_reason = text.split(sequence, maxsplit=1)[0], "stop_sequence"
                break
        limit = inference.get("maxTokens")
        if isinstance(limit, int) and estimate_tokens(text) > limit:
            text, stop_reason = text[: limit * 4], "max_tokens"
        return [{"text": text}], stop_reason, estimate_tokens(text)
    blocks: list[dict[str, Any]] = []
    output = 0
    if reply.reasoning is not None:
        signature = reply.signature or hashlib.sha256(reply.reasoning.encode()).hexdigest()
        blocks.append(
            {
                "reasoningContent": {
                    "reasoningText": {"text": reply.reasoning, "signature": signature}
                }
            }
        )
        output += estimate_tokens(reply.reasoning)
    if reply.text is not None:
        blocks.append({"text": reply.text})
        output += estimate_tokens(reply.text)
    for use in reply.tool_uses or ():
        block = {
            "toolUseId": use.get("toolUseId")
            or use.get("id")
            or f"tooluse_{uuid.uuid4().hex[:22]}",
            "name": use.get("name"),
            "input": dict(use.get("input") or {}),
        }
        blocks.append({"toolUse": block})
        output += estimate_tokens(str(block["name"]) + json.dumps(block["input"]))
    stop_reason = reply.stop_reason or ("tool_use" if reply.tool_uses else "end_turn")
    if reply.output_tokens is not None:
        output = reply.output_tokens
    return blocks, stop_reason, output


def _pieces(text: str) -> list[str]:
    return _WORD.findall(text) or ([text] if text else [])


def _events(
    blocks: Sequence[Mapping[str, Any]],
    stop_reason: str,
    usage: Mapping[str, Any],
    metrics: Mapping[str, Any],
) -> list[tuple[str, dict[str, Any]]]:
    """The ConverseStream events for an answer, in Bedrock's order."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(blocks):
        deltas: list[dict[str, Any]]
        if "text" in block:
            deltas = [{"text": piece} for piece in _pieces(block["text"])]
        elif "reasoningContent" in block:
            reasoning = block["reasoningContent"]["reasoningText"]
            deltas = [{"reasoningContent": {"text": p}} for p in _pieces(reasoning["text"])]
            deltas.append({"reasoningContent": {"signature": reasoning["signature"]}})
        else:
            use = block["toolUse"]
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": start}))
            arguments = json.dumps(use["input"], ensure_ascii=False) if use["input"] else ""
            deltas = [
                {"toolUse": {"input": arguments[i : i + _ARGUMENT_PIECE]}}
                for i in range(0, len(arguments), _ARGUMENT_PIECE)
            ]
        events.extend(
            ("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}) for delta in deltas
        )
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events.append(("messageStop", {"stopReason": stop_reason}))
    events.append(("metadata", {"usage": dict(usage), "metrics": dict(metrics)}))
    return events


def _event_frame(kind: str, payload: Mapping[str, Any], number: int) -> bytes:
    # Bedrock pads every event with a "p" field of varying length against size side channels.
    padded = {**payload, "p": _PADDING[: 1 + (number * 7) % len(_PADDING)]}
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, orjson.dumps(padded))


def _exception_frame(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, orjson.dumps({"message": message}))
