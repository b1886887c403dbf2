"""A simulated OpenAI-compatible HTTP server, the provider that deja's tests and demo talk to.

Nothing here reaches a real provider. :class:`FakeOpenAIServer` serves OpenAI's documented wire
format (chat completions, legacy completions, embeddings, models; JSON and SSE streaming; error
bodies; usage with ``prompt_tokens_details.cached_tokens`` and
``completion_tokens_details.reasoning_tokens``) over real HTTP/1.1 on a loopback port, from a
stdlib :class:`~http.server.ThreadingHTTPServer` in a daemon thread, and records every request it
receives. Replies, failures, delays and dropped connections are scripted per test. With
``prompt_cache="deepseek"`` it answers as DeepSeek does: its automatic context cache remembers
every prompt prefix in 64-token units, and usage reports ``prompt_cache_hit_tokens`` and
``prompt_cache_miss_tokens`` (DeepSeek's fields) instead of OpenAI's details.

Public names are re-exported from :mod:`deja.testing`; import them from there.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import re
import struct
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, replace
from typing import Any, Final, Literal

import orjson

from deja._fake_server import (
    FakeHandler,
    FakeServer,
    RecordedRequest,
    ScriptedFailure,
    status_phrase,
)

__all__ = ["FakeOpenAIServer", "RecordedRequest", "Reply"]

logger = logging.getLogger(__name__)

#: Models listed by ``GET /v1/models`` unless the server is given its own list.
DEFAULT_MODELS: Final = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
)

# Every OpenAI route is served with or without the `/v1` prefix; these are the unprefixed forms.
_POST_ROUTES: Final = {
    "/chat/completions": "chat",
    "/completions": "completions",
    "/embeddings": "embeddings",
}
_MAX_N: Final = 128
_WORD: Final = re.compile(r"\s*\S+")
_ARGUMENT_PIECE: Final = 8  # characters of tool-call arguments per streamed delta
_CREATED_MODEL: Final = 1_700_000_000  # `created` of listed models: a fixed, plausible epoch


@dataclass(frozen=True)
class Reply:
    """A scripted answer for the simulated server's chat or text completion routes.

    ``Reply("Paris.")`` answers with that content. Leave ``content`` as ``None`` for an answer
    with no content (only tool calls, a refusal, or nothing at all). ``finish_reason`` ``None``
    means ``"tool_calls"`` when there are tool calls, else ``"stop"``. Tool calls are
    ``{"id", "type": "function", "function": {"name", "arguments"}}`` dicts; a missing ``id`` is
    generated, ``type`` defaults to ``"function"`` and dict ``arguments`` are JSON-encoded.

    Usage fields override the estimate (about 4 characters a token). ``chunks`` splits streamed
    content into that many deltas (default: one per word). ``latency`` replaces the server's
    latency for this request. ``abort_after_chunks`` ends the response unfinished: a stream
    stops after that many ``data:`` events (no ``finish_reason``, no ``[DONE]``) and the
    connection is closed; a non-streamed response stops halfway through its body.
    """

    content: str | None = None
    _: KW_ONLY
    reasoning_content: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    chunks: int | None = None
    latency: float | None = None
    abort_after_chunks: int | None = None


# DeepSeek caches prompt prefixes on disk in units of 64 tokens (about 256 characters here).
_DEEPSEEK_UNIT_CHARS: Final = 256
_RATE_LIMIT: Final = 10_000  # requests a minute, in the x-ratelimit-* headers


@dataclass(frozen=True)
class _Answer:
    """One choice's resolved output."""

    content: str | None
    reasoning: str | None
    refusal: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str


class _BadRequest(Exception):
    """A request OpenAI would refuse with 400; carries the error body's fields."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class FakeOpenAIServer(FakeServer[Reply, ScriptedFailure]):
    """A simulated OpenAI-compatible API on a loopback port, for tests, benchmarks and demos.

    No real model answers: replies are deterministic text derived from the last user message
    (``"Simulated answer to: …"``), unless scripted with :meth:`reply_with` or
    :meth:`queue_reply`. Routes (with or without the ``/v1`` prefix): ``POST /v1/chat/completions``
    and ``POST /v1/completions`` (JSON or SSE with ``"stream": true``), ``POST /v1/embeddings``
    (float or base64; deterministic unit vectors), ``GET /v1/models`` and
    ``GET /v1/models/{id}``. Errors use OpenAI's body ``{"error": {message, type, param, code}}``.

    Scripted faults (:meth:`fail_next`, :meth:`delay_next`, :meth:`drop_next`) and ``latency``
    apply to the POST routes only, so ``/models`` stays usable as a health check. Queued replies
    win over the reply function, which wins over the default answer.

    The constructor does no I/O; :meth:`start` binds the socket (``port=0``: a free port) and
    serves from a daemon thread, so sync and async tests can both use it::

        with FakeOpenAIServer() as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
            client.chat.completions.create(model="gpt-4o", messages=[...])
            assert server.count("/v1/chat/completions") == 1

    ``latency`` (seconds before each response) and ``chunk_delay`` (seconds between streamed
    events) are plain attributes and may be changed while the server runs. With ``api_key``
    set, requests without ``Authorization: Bearer <api_key>`` get 401. An embeddings request
    of more than ``max_embedding_inputs`` inputs (a plain attribute too; OpenAI's 2,048 by
    default) gets 400, as OpenAI's API refuses it.
    """

    _provider = "OpenAI"
    _log = logger
    _backlog = 128  # benchmarks open many connections at once

    def __init__(
        self,
        *,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        embedding_dim: int = 16,
        api_key: str | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        prompt_cache: Literal["deepseek"] | None = None,
    ) -> None:
        if prompt_cache not in (None, "deepseek"):
            raise ValueError("prompt_cache must be None or 'deepseek'")
        super().__init__(host=host, port=port, latency=latency, chunk_delay=chunk_delay)
        self.prompt_cache = prompt_cache
        self._prefixes: set[bytes] = set()
        self.embedding_dim = embedding_dim
        self.max_embedding_inputs = 2048
        self.api_key = api_key
        self.models = tuple(models)
        self._delays: deque[float] = deque()
        self._drops = 0
        self.fingerprint = "fp_" + hashlib.sha256(b"deja-simulated").hexdigest()[:10]

    # -- lifecycle ----------------------------------------------------------------------------

    def _handler(self) -> type[_Handler]:
        return _Handler

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server (no ``/v1``)."""
        return super().url

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: what to pass as an OpenAI client's ``base_url``."""
        return self.url + "/v1"

    # -- recording and scripting --------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        """How many requests were received, in all or for one path.

        The ``/v1`` prefix and a trailing slash are ignored on both sides, so
        ``count("/v1/chat/completions")`` also counts requests sent to ``/chat/completions``.
        """
        return self._count(path, _route_path)

    def reset(self) -> None:
        """Forget recorded requests and every scripted reply, failure, delay and drop."""
        with self._lock:
            self._forget()
            self._delays.clear()
            self._drops = 0

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Make the next ``times`` POST requests fail with ``status``.

        The body is OpenAI's error shape for that status unless ``body`` is given; ``headers``
        are added to the response (e.g. ``{"retry-after": "2"}`` with a 429).
        """
        self._queue_failure(ScriptedFailure(status, body, dict(headers or {})), times)

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` POST requests for ``seconds`` before handling them."""
        with self._lock:
            self._delays.extend([seconds] * times)

    def drop_next(self, *, times: int = 1) -> None:
        """Close the connection of the next ``times`` POST requests without any response."""
        with self._lock:
            self._drops += times

    # -- used by the handler --------------------------------------------------------------------

    def _take_faults(self) -> tuple[bool, float, ScriptedFailure | None, int]:
        """Consume this request's scripted drop, delay and failure, in that order, and say
        which reset they belong after (:meth:`reset`)."""
        with self._lock:
            if self._drops:
                self._drops -= 1
                return True, 0.0, None, self._generation
            delay = self._delays.popleft() if self._delays else 0.0
            failure = self._failures.popleft() if self._failures else None
            return False, delay, failure, self._generation

    def _deepseek_cache(self, messages: list[Any], prompt_tokens: int) -> dict[str, int]:
        """DeepSeek's automatic context cache: the longest prefix, in whole 64-token units,
        that an earlier request sent is a hit; every unit of this prompt is remembered."""
        text = b"".join(orjson.dumps(m, option=orjson.OPT_SORT_KEYS) for m in messages)
        units = len(text) // _DEEPSEEK_UNIT_CHARS
        boundaries = [text[: k * _DEEPSEEK_UNIT_CHARS] for k in range(1, units + 1)]
        with self._lock:
            hit_units = 0
            for k, prefix in enumerate(boundaries, start=1):
                if prefix not in self._prefixes:
                    break
                hit_units = k
            self._prefixes.update(boundaries)
        hit = min(hit_units * 64, prompt_tokens)
        return {"prompt_cache_hit_tokens": hit, "prompt_cache_miss_tokens": prompt_tokens - hit}


class _Handler(FakeHandler[FakeOpenAIServer]):
    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- request ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self.started = time.monotonic()  # what openai-processing-ms counts from
        super()._dispatch()

    def _answer_refusal(self, exc: Exception) -> bool:
        if not isinstance(exc, _BadRequest):
            return False
        self._send_error(400, exc.message, "invalid_request_error", param=exc.param, code=exc.code)
        return True

    def _send_unreadable(self) -> None:
        self._send_error(400, "Could not read the request body.", "invalid_request_error")

    def _send_internal_error(self) -> None:
        self._send_error(500, "The simulated server failed on this request.", "server_error")

    def _route(self, request: RecordedRequest) -> None:
        owner, path, headers, body = self.server.owner, request.path, request.headers, request.body
        route_path = _route_path(path)
        if self.command == "POST":
            route = _POST_ROUTES.get(route_path)
        elif self.command == "GET" and (
            route_path == "/models" or route_path.startswith("/models/")
        ):
            route = "models"
        else:
            route = None
        if route is None:
            self._send_error(404, f"Invalid URL ({self.command} {path})", "invalid_request_error")
            return
        if path.startswith("/openai/deployments/") and isinstance(body, dict):
            # Azure takes the model from the deployment in the URL
            body.setdefault("model", path.split("/")[3])
        if owner.api_key is not None and not self._authorized(owner.api_key, headers):
            return
        if route == "models":
            self._models(owner, route_path)
            return

        drop, delay, failure, generation = owner._take_faults()
        if drop:
            self._hang_up()
            return
        owner._sleep(delay)
        if delay and owner._generation != generation:
            # the server was reset while this request was held (its caller long gone):
            # what is scripted now is for the requests after the reset, not for this one
            self._hang_up()
            return
        if failure is not None:
            self._send_failure(failure, body)
            return
        if self.bad_json:
            raise _BadRequest(
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                "but what was sent was not valid JSON.)"
            )
        if not isinstance(body, dict):
            raise _BadRequest("The request body must be a JSON object.")
        if route == "chat":
            self._chat(owner, body)
        elif route == "completions":
            self._completions(owner, body)
        else:
            self._embeddings(owner, body)

    def _authorized(self, api_key: str, headers: Mapping[str, str]) -> bool:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip() == api_key:
            return True
        if headers.get("api-key") == api_key:  # Azure OpenAI's header
            return True
        if not auth:
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            code = None
        else:
            shown = token.strip()
            shown = f"{shown[:3]}*****{shown[-4:]}" if len(shown) > 8 else "*****"
            message = f"Incorrect API key provided: {shown}. (simulated server)"
            code = "invalid_api_key"
        self._send_error(401, message, "invalid_request_error", code=code)
        return False

    # -- routes -------------------------------------------------------------------------------

    def _models(self, owner: FakeOpenAIServer, route_path: str) -> None:
        def model(name: str) -> dict[str, Any]:
            return {"id": name, "object": "model", "created": _CREATED_MODEL, "owned_by": "system"}

        if route_path == "/models":
            self._send_json(200, {"object": "list", "data": [model(m) for m in owner.models]})
            return
        name = route_path.removeprefix("/models/")
        if name in owner.models:
            self._send_json(200, model(name))
        else:
            message = f"The model '{name}' does not exist"
            self._send_error(
                404, message, "invalid_request_error", param="model", code="model_not_found"
            )

    def _chat(self, owner: FakeOpenAIServer, body: dict[str, Any]) -> None:
        model = _require_model(body)
        messages = body.get("messages")
        if messages is None:
            raise _BadRequest(
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        if not isinstance(messages, list):
            raise _BadRequest(
                "Invalid type for 'messages': expected an array of objects.",
                param="messages",
                code="invalid_type",
            )
        if not messages:
            raise _BadRequest(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param="messages",
                code="empty_array",
            )
        for i, message in enumerate(messages):
            _check_message(message, i)
            _check_tool_calls(message, i)
        _check_numbers(body, legacy=False)
        _check_tool_fields(body)
        n = _choice_count(body)
        stream, include_usage = _stream_flags(body)

        reply = owner._take_reply(body)
        if reply is None:
            question = _last_user_text(messages)
            limit = _max_tokens(body)
            answers = [_default_answer("Simulated answer to", question, i, limit) for i in range(n)]
            structured = _structured(question[:40], body.get("response_format"))
            if structured is not None:  # (OpenAI's JSON modes answer JSON)
                answers = [replace(a, content=structured) for a in answers]
        else:
            answers = [_scripted_answer(reply) for _ in range(n)]
        prompt_chars = sum(_message_chars(m) for m in messages)
        if body.get("tools"):
            prompt_chars += len(orjson.dumps(body["tools"]))
        usage = _usage(prompt_chars, answers, reply, details=owner.prompt_cache is None)
        if owner.prompt_cache == "deepseek":
            usage.update(owner._deepseek_cache(messages, usage["prompt_tokens"]))

        owner._sleep(_latency(owner, reply))
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:29]}"
        created = int(time.time())
        abort = reply.abort_after_chunks if reply is not None else None
        if not stream:
            choices = [
                {
                    "index": i,
                    "message": _message(a),
                    "logprobs": None,
                    "finish_reason": a.finish_reason,
                }
                for i, a in enumerate(answers)
            ]
            payload = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": owner.fingerprint,
            }
            self._send_json(200, payload, truncate=abort is not None)
            return

        head = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": owner.fingerprint,
        }
        pieces = _interleave([_chat_deltas(a, reply.chunks if reply else None) for a in answers])
        events = [
            _chunk(
                head,
                [{"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}],
                include_usage,
            )
            for i, delta, finish in pieces
        ]
        if include_usage:
            events.append(_chunk(head, [], include_usage, usage))
        self._send_stream(events, abort)

    def _completions(self, owner: FakeOpenAIServer, body: dict[str, Any]) -> None:
        model = _require_model(body)
        if "prompt" not in body:
            raise _BadRequest(
                "Missing required parameter: 'prompt'.",
                param="prompt",
                code="missing_required_parameter",
            )
        prompts = _prompt_texts(body["prompt"])
        _check_numbers(body, legacy=True)
        n = _choice_count(body)
        stream, include_usage = _stream_flags(body)

        reply = owner._take_reply(body)
        max_tokens = _max_tokens(body)
        answers: list[_Answer] = []
        for prompt in prompts:
            for i in range(n):
                if reply is None:
                    answer = _default_answer("Simulated completion of", prompt, i, max_tokens)
                else:
                    answer = _scripted_answer(reply)
                if body.get("echo") is True:
                    answer = _Answer(
                        prompt + (answer.content or ""), None, None, [], answer.finish_reason
                    )
                answers.append(answer)
        usage = _usage(sum(len(p) for p in prompts), answers, reply, details=False)

        owner._sleep(_latency(owner, reply))
        completion_id = f"cmpl-{uuid.uuid4().hex[:29]}"
        created = int(time.time())
        abort = reply.abort_after_chunks if reply is not None else None
        if not stream:
            choices = [
                {
                    "text": a.content or "",
                    "index": i,
                    "logprobs": None,
                    "finish_reason": a.finish_reason,
                }
                for i, a in enumerate(answers)
            ]
            payload = {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage,
                "system_fingerprint": owner.fingerprint,
            }
            self._send_json(200, payload, truncate=abort is not None)
            return

        head = {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": owner.fingerprint,
        }
        per_choice: list[list[tuple[dict[str, Any], str | None]]] = []
        for a in answers:
            texts = _split(a.content or "", reply.chunks if reply else None)
            per_choice.append(
                [({"text": t}, None) for t in texts] + [({"text": ""}, a.finish_reason)]
            )
        events = [
            _chunk(
                head,
                [{**text, "index": i, "logprobs": None, "finish_reason": finish}],
                include_usage,
            )
            for i, text, finish in _interleave(per_choice)
        ]
        if include_usage:
            events.append(_chunk(head, [], include_usage, usage))
        self._send_stream(events, abort)

    def _embeddings(self, owner: FakeOpenAIServer, body: dict[str, Any]) -> None:
        model = _require_model(body)
        if "input" not in body:
            raise _BadRequest(
                "Missing required parameter: 'input'.",
                param="input",
                code="missing_required_parameter",
            )
        texts = _embedding_inputs(body["input"])
        if len(texts) > owner.max_embedding_inputs:
            raise _BadRequest(
                f"Too many inputs: {len(texts)}. At most {owner.max_embedding_inputs} inputs"
                " may be embedded in one request.",
                param="input",
                code="invalid_value",
            )
        dim = body.get("dimensions")
        if dim is None:
            dim = owner.embedding_dim
        elif isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise _BadRequest(
                f"Invalid value for 'dimensions': {dim!r}. Expected a positive integer.",
                param="dimensions",
                code="invalid_value",
            )
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _BadRequest(
                f"Invalid value for 'encoding_format': {encoding!r}. Supported values are: "
                "'float' and 'base64'.",
                param="encoding_format",
                code="invalid_value",
            )
        data = []
        for index, text in enumerate(texts):
            packed = _embedding_bytes(text, dim)
            vector: Any = (
                base64.b64encode(packed).decode("ascii")
                if encoding == "base64"
                else list(struct.unpack(f"<{dim}f", packed))
            )
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(_tokens(t) for t in texts)
        owner._sleep(owner.latency)
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # -- response -----------------------------------------------------------------------------

    def _provider_headers(self) -> Iterable[tuple[str, str]]:
        elapsed_ms = int((time.monotonic() - self.started) * 1000)
        owner: FakeOpenAIServer = self.server.owner
        return [
            ("x-request-id", f"req_{uuid.uuid4().hex}"),
            ("openai-processing-ms", str(elapsed_ms)),
            # OpenAI's rate-limit headers (a made-up limit, counted down by the requests)
            ("x-ratelimit-limit-requests", str(_RATE_LIMIT)),
            ("x-ratelimit-remaining-requests", str(max(_RATE_LIMIT - owner.count(), 0))),
            ("x-ratelimit-reset-requests", "6ms"),
        ]

    def _send_error(
        self,
        status: int,
        message: str,
        type_: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        error = {"message": message, "type": type_, "param": param, "code": code}
        self._send_json(status, {"error": error}, headers)

    def _send_failure(self, failure: ScriptedFailure, body: Any) -> None:
        if failure.body is not None:
            self._send_json(failure.status, failure.body, failure.headers)
            return
        model = body.get("model") if isinstance(body, dict) else None
        message, type_, code = _default_error(failure.status, str(model or "the model"))
        self._send_error(failure.status, message, type_, code=code, headers=failure.headers)

    def _send_stream(self, events: list[bytes], abort: int | None) -> None:
        frames = [b"data: " + event + b"\n\n" for event in events]
        finished = abort is None
        if abort is not None:
            frames = frames[: max(abort, 0)]
        else:
            frames.append(b"data: [DONE]\n\n")
        fields = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
        ]
        # HTTP/1.1 frames the stream with chunked encoding so the connection can be reused;
        # an HTTP/1.0 client gets the stream delimited by closing the connection.
        if self.request_version != "HTTP/1.0":
            self._send_frames(fields, frames, finished=finished)
            return
        self.close_connection = True
        self._write_frames(self._head(200, fields), frames)
        if not finished:
            self._hang_up()


# -- pure helpers -------------------------------------------------------------------------------


def _route_path(path: str) -> str:
    path = path.partition("?")[0].rstrip("/")
    if path == "/v1" or path.startswith("/v1/"):
        path = path[3:]
    elif path.startswith("/openai/deployments/"):
        # Azure OpenAI: /openai/deployments/<deployment>/chat/completions?api-version=...
        path = "/" + path.split("/", 4)[4] if path.count("/") >= 4 else path
    return path or "/"


def _default_error(status: int, model: str) -> tuple[str, str, str | None]:
    """OpenAI's message, type and code for a failure with this status."""
    if status == 401:
        return (
            "Incorrect API key provided. (simulated failure)",
            "invalid_request_error",
            "invalid_api_key",
        )
    if status == 403:
        return (
            "You are not allowed to sample from this model. (simulated failure)",
            "invalid_request_error",
            None,
        )
    if status == 404:
        return (
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )
    if status == 429:
        return (
            f"Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, "
            "Requested 1. (simulated failure)",
            "requests",
            "rate_limit_exceeded",
        )
    if status == 503:
        return "The engine is currently overloaded, please try again later.", "server_error", None
    if status >= 500:
        return (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        )
    return f"Simulated {status} {status_phrase(status)} error.", "invalid_request_error", None


def _require_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("you must provide a model parameter")
    return model


def _choice_count(body: Mapping[str, Any]) -> int:
    n = body.get("n")
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int):
        raise _invalid_type("n", "an integer", n)
    _out_of_range("n", "integer", n, 1, _MAX_N)
    return n


def _stream_flags(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise _BadRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return stream, include_usage


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _latency(owner: FakeOpenAIServer, reply: Reply | None) -> float:
    if reply is not None and reply.latency is not None:
        return reply.latency
    return owner.latency


def _text_of(content: Any) -> str:
    """The text of a message content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _check_tool_calls(message: Any, i: int) -> None:
    """A message's ``tool_calls`` as OpenAI takes them: an array of objects whose
    ``function`` is an object (its 400 ``invalid_type`` otherwise, not a crash: a 500)."""
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    if calls is None:
        return
    where = f"messages[{i}].tool_calls"
    if not isinstance(calls, list):
        raise _BadRequest(
            f"Invalid type for '{where}': expected an array of objects.",
            param=where,
            code="invalid_type",
        )
    for j, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise _BadRequest(
                f"Invalid type for '{where}[{j}].function': expected an object.",
                param=f"{where}[{j}].function",
                code="invalid_type",
            )


# What OpenAI answers a request field of the wrong type or out of its range with (its 400
# bodies: "Invalid type for 'n': expected an integer, but got a string instead.", code
# invalid_type; "Invalid 'temperature': decimal below minimum value. Expected a value >= 0,
# but got -1 instead.", code decimal_below_min_value): a test of deja in front of it must
# not see taken what OpenAI refuses.
_DECIMAL_RANGES: Final = {
    "temperature": (0, 2),
    "top_p": (0, 1),
    "presence_penalty": (-2, 2),
    "frequency_penalty": (-2, 2),
}
_INTEGER_RANGES: Final = {
    "max_tokens": (1, None),
    "max_completion_tokens": (1, None),
    "top_logprobs": (0, 20),
    "seed": (None, None),
}
_ROLES: Final = ("system", "assistant", "user", "function", "tool", "developer")
_TOOL_CHOICES: Final = ("none", "auto", "required")
_RESPONSE_FORMATS: Final = ("json_object", "json_schema", "text")
# what stands for an assistant message's content in OpenAI's schema
_ASSISTANT_CONTENT: Final = ("tool_calls", "function_call", "refusal", "audio")


def _json_type(value: Any) -> str:
    """``value``'s JSON type as OpenAI's messages name it ("an integer", "null"...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _invalid_type(param: str, expected: str, value: Any) -> _BadRequest:
    return _BadRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _missing(param: str) -> _BadRequest:
    return _BadRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _invalid_value(param: str, value: Any, supported: Sequence[str]) -> _BadRequest:
    quoted = [f"'{v}'" for v in supported]
    listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
    return _BadRequest(
        f"Invalid value: {value!r}. Supported values are: {listed}.",
        param=param,
        code="invalid_value",
    )


def _out_of_range(name: str, kind: str, value: Any, low: Any, high: Any) -> None:
    if low is not None and value < low:
        raise _BadRequest(
            f"Invalid '{name}': {kind} below minimum value. Expected a value >= {low}, but got"
            f" {value} instead.",
            param=name,
            code=f"{kind}_below_min_value",
        )
    if high is not None and value > high:
        raise _BadRequest(
            f"Invalid '{name}': {kind} above maximum value. Expected a value <= {high}, but got"
            f" {value} instead.",
            param=name,
            code=f"{kind}_above_max_value",
        )


def _check_numbers(body: Mapping[str, Any], *, legacy: bool) -> None:
    """The sampling numbers as OpenAI takes them: of their type, within their range (the
    legacy completions' ``max_tokens`` may be 0: the prompt echoed alone)."""
    for name, (low, high) in _DECIMAL_RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _invalid_type(name, "a decimal", value)
        _out_of_range(name, "decimal", value, low, high)
    for name, (least, most) in _INTEGER_RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            raise _invalid_type(name, "an integer", value)
        floor = 0 if legacy and name == "max_tokens" else least
        _out_of_range(name, "integer", value, floor, most)
    bias = body.get("logit_bias")
    if bias is not None:
        if not isinstance(bias, dict):
            raise _invalid_type("logit_bias", "an object", bias)
        for token, value in bias.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _invalid_type(f"logit_bias.{token}", "a decimal", value)


def _check_tool_fields(body: Mapping[str, Any]) -> None:
    """``tools``, ``tool_choice`` and ``response_format`` as OpenAI takes them."""
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid_type("tools", "an array of objects", tools)
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise _invalid_type(where, "an object", tool)
            kind = tool.get("type")
            if kind is None:
                raise _missing(f"{where}.type")
            if kind not in ("function", "custom"):
                raise _invalid_value(f"{where}.type", kind, ("function", "custom"))
            if kind != "function":
                continue
            function = tool.get("function")
            if function is None:
                raise _missing(f"{where}.function")
            if not isinstance(function, dict):
                raise _invalid_type(f"{where}.function", "an object", function)
            name = function.get("name")
            if name is None:
                raise _missing(f"{where}.function.name")
            if not isinstance(name, str):
                raise _invalid_type(f"{where}.function.name", "a string", name)
            if not name:
                raise _BadRequest(
                    f"Invalid '{where}.function.name': empty string. Expected a string with"
                    " minimum length 1, but got an empty string instead.",
                    param=f"{where}.function.name",
                    code="empty_string",
                )
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise _invalid_value("tool_choice", choice, _TOOL_CHOICES)
    elif isinstance(choice, dict):
        if choice.get("type") == "function" and not isinstance(choice.get("function"), dict):
            raise _missing("tool_choice.function")
    elif choice is not None:
        raise _invalid_type(
            "tool_choice", "one of 'none', 'auto', or 'required' or an object", choice
        )
    form = body.get("response_format")
    if form is not None:
        if not isinstance(form, dict):
            raise _invalid_type("response_format", "an object", form)
        kind = form.get("type")
        if kind is None:
            raise _missing("response_format.type")
        if kind not in _RESPONSE_FORMATS:
            raise _invalid_value("response_format.type", kind, _RESPONSE_FORMATS)
        if kind == "json_schema" and form.get("json_schema") is None:
            raise _missing("response_format.json_schema")


def _check_message(message: Any, i: int) -> None:
    """One chat message as OpenAI takes it: an object with a known role, and content (or,
    from the assistant, what stands for it); a tool message names its tool call."""
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _invalid_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise _missing(f"{where}.role")
    if role not in _ROLES:
        raise _invalid_value(f"{where}.role", role, _ROLES)
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise _invalid_type(f"{where}.content", "one of a string or array of objects", content)
    if content == []:
        raise _BadRequest(
            f"Invalid '{where}.content': empty array. Expected an array with minimum length 1,"
            " but got an empty array instead.",
            param=f"{where}.content",
            code="empty_array",
        )
    if role == "tool" and "tool_call_id" not in message:
        raise _missing(f"{where}.tool_call_id")
    if content is not None:
        return
    if role == "assistant" and any(message.get(k) is not None for k in _ASSISTANT_CONTENT):
        return
    if role == "developer":  # (its own schema's words)
        if "content" not in message:
            raise _missing(f"{where}.content")
        raise _invalid_type(f"{where}.content", "one of a string or array of objects", content)
    # OpenAI's words for a message whose content is missing or null, with its param
    raise _BadRequest(
        "Invalid value for 'content': expected a string, got null.", param=f"messages.[{i}].content"
    )


def _message_chars(message: Any) -> int:
    if not isinstance(message, dict):
        return 0
    chars = len(_text_of(message.get("content")))
    for call in message.get("tool_calls") or ():
        function = call.get("function", {}) if isinstance(call, dict) else {}
        chars += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
    return chars


def _last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _tokens(text: str | None) -> int:
    # About four characters a token, OpenAI's own rule of thumb for English text.
    return (len(text) + 3) // 4 if text else 0


def _default_answer(lead: str, question: str, index: int, max_tokens: int | None) -> _Answer:
    seed = question if index == 0 else f"{question}#{index}"
    digest = hashlib.sha256(seed.encode()).hexdigest()[:8]
    content = f"{lead}: {question[:40]} [{digest}]"
    finish = "stop"
    if max_tokens is not None and _tokens(content) > max_tokens:
        content, finish = content[: max_tokens * 4], "length"
    return _Answer(content, None, None, [], finish)


def _structured(text: str, response_format: Any) -> str | None:
    """The content OpenAI's JSON modes answer (``None`` for plain text): under
    ``json_schema`` an instance of the schema (Structured Outputs), its strings ``text``;
    under ``json_object`` an object holding ``text``."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return orjson.dumps({"answer": text}).decode()
    spec = response_format.get("json_schema")
    if kind != "json_schema" or not isinstance(spec, dict):
        return None
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        return orjson.dumps({"answer": text}).decode()
    definitions = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return orjson.dumps(_instance(schema, text, definitions, 0)).decode()


def _instance(schema: Any, text: str, definitions: Mapping[str, Any], depth: int) -> Any:
    """A value ``schema`` takes (its first choice where it offers several)."""
    if not isinstance(schema, dict) or depth > 32:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _instance(definitions.get(ref.rsplit("/", 1)[-1]), text, definitions, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for union in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(union), list) and schema[union]:
            return _instance(schema[union][0], text, definitions, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties")
        return {
            name: _instance(sub, text, definitions, depth + 1)
            for name, sub in (properties.items() if isinstance(properties, dict) else ())
        }
    if kind == "array":
        return [_instance(schema.get("items"), text, definitions, depth + 1)]
    if kind == "string":
        return text
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    return None


def _scripted_answer(reply: Reply) -> _Answer:
    calls: list[dict[str, Any]] = []
    for call in reply.tool_calls or ():
        function = dict(call.get("function") or {})
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()
        calls.append(
            {
                "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                "type": call.get("type", "function"),
                "function": {"name": function.get("name", ""), "arguments": arguments},
            }
        )
    finish = reply.finish_reason or ("tool_calls" if calls else "stop")
    return _Answer(reply.content, reply.reasoning_content, reply.refusal, calls, finish)


def _message(answer: _Answer) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.content,
        "refusal": answer.refusal,
        "annotations": [],
    }
    if answer.reasoning is not None:
        message["reasoning_content"] = answer.reasoning  # DeepSeek's and vLLM's field
    if answer.tool_calls:
        message["tool_calls"] = answer.tool_calls
    return message


def _usage(
    prompt_chars: int, answers: Sequence[_Answer], reply: Reply | None, *, details: bool
) -> dict[str, Any]:
    prompt = max(1, (prompt_chars + 3) // 4)
    reasoning = sum(_tokens(a.reasoning) for a in answers)
    visible = sum(
        _tokens(a.content)
        + _tokens(a.refusal)
        + sum(_tokens(c["function"]["name"] + c["function"]["arguments"]) for c in a.tool_calls)
        for a in answers
    )
    cached = 0
    if reply is not None:
        prompt = reply.prompt_tokens if reply.prompt_tokens is not None else prompt
        reasoning = reply.reasoning_tokens if reply.reasoning_tokens is not None else reasoning
        cached = reply.cached_tokens or 0
    # As with OpenAI's o-series, completion tokens include the reasoning tokens.
    completion = visible + reasoning
    if reply is not None and reply.completion_tokens is not None:
        completion = reply.completion_tokens
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if details:
        usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
        usage["completion_tokens_details"] = {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return usage


def _split(text: str, chunks: int | None) -> list[str]:
    """Streamed pieces of ``text``: ``chunks`` near-equal slices, or one per word."""
    if not text:
        return []
    if chunks is None:
        words = _WORD.findall(text)
        trailing = text[sum(len(w) for w in words) :]
        if trailing:  # trailing whitespace (or an all-whitespace text) rides on the last piece
            words = [*words[:-1], words[-1] + trailing] if words else [trailing]
        return words
    count = max(1, min(chunks, len(text)))
    bounds = [round(i * len(text) / count) for i in range(count + 1)]
    return [text[bounds[i] : bounds[i + 1]] for i in range(count)]


def _chat_deltas(answer: _Answer, chunks: int | None) -> list[tuple[dict[str, Any], str | None]]:
    """One choice's stream: (delta, finish_reason) in OpenAI's order."""
    first: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if answer.content is not None:
        first["content"] = ""
    elif answer.refusal is not None:
        first["refusal"] = ""
    deltas: list[tuple[dict[str, Any], str | None]] = [(first, None)]
    # Reasoning comes before the answer, as DeepSeek and vLLM stream it.
    deltas += [({"reasoning_content": p}, None) for p in _split(answer.reasoning or "", None)]
    deltas += [({"content": p}, None) for p in _split(answer.content or "", chunks)]
    deltas += [({"refusal": p}, None) for p in _split(answer.refusal or "", None)]
    for index, call in enumerate(answer.tool_calls):
        opening = {
            "index": index,
            "id": call["id"],
            "type": call["type"],
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        if len(deltas) == 1 and answer.content is None and answer.refusal is None:
            # A tool-call-only answer opens its first call in the role chunk, as OpenAI does.
            first["tool_calls"] = [opening]
        else:
            deltas.append(({"tool_calls": [opening]}, None))
        arguments = call["function"]["arguments"]
        for start in range(0, len(arguments), _ARGUMENT_PIECE):
            piece = arguments[start : start + _ARGUMENT_PIECE]
            deltas.append(
                ({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}, None)
            )
    deltas.append(({}, answer.finish_reason))
    return deltas


def _interleave(
    per_choice: Sequence[Sequence[tuple[dict[str, Any], str | None]]],
) -> list[tuple[int, dict[str, Any], str | None]]:
    """Round-robin the choices' events, as OpenAI interleaves them when ``n`` > 1."""
    out: list[tuple[int, dict[str, Any], str | None]] = []
    for step in itertools.zip_longest(*per_choice):
        for index, item in enumerate(step):
            if item is not None:
                out.append((index, item[0], item[1]))
    return out


def _chunk(
    head: Mapping[str, Any],
    choices: list[dict[str, Any]],
    include_usage: bool,
    usage: dict[str, Any] | None = None,
) -> bytes:
    chunk = {**head, "choices": choices}
    # With include_usage every chunk carries "usage": null and the last one the totals;
    # without it OpenAI sends no usage key at all.
    if include_usage:
        chunk["usage"] = usage
    return orjson.dumps(chunk)


def _prompt_texts(prompt: Any) -> list[str]:
    """Legacy completions' ``prompt``: a string, strings, a token array or token arrays."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(_is_token(t) for t in prompt):
            return [_token_text(prompt)]
        if all(isinstance(p, list) and p and all(_is_token(t) for t in p) for p in prompt):
            return [_token_text(p) for p in prompt]
    raise _BadRequest(
        "Invalid type for 'prompt': expected a string, an array of strings, an array of "
        "integers or an array of integer arrays.",
        param="prompt",
        code="invalid_type",
    )


def _embedding_inputs(value: Any) -> list[str]:
    """Embeddings' ``input`` as texts; token arrays become a stable text of their ids."""
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        texts = list(value)
    elif isinstance(value, list) and value and all(_is_token(t) for t in value):
        texts = [_token_text(value)]
    elif (
        isinstance(value, list)
        and value
        and all(isinstance(v, list) and v and all(_is_token(t) for t in v) for v in value)
    ):
        texts = [_token_text(v) for v in value]
    else:
        texts = []
    if not texts or any(t == "" for t in texts):
        raise _BadRequest(
            "'$.input' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
            param="input",
        )
    return texts


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _token_text(tokens: Sequence[int]) -> str:
    return "tokens:" + ",".join(map(str, tokens))


def _embedding_bytes(text: str, dim: int) -> bytes:
    """A deterministic unit vector for ``text`` as little-endian float32, OpenAI's base64 layout.

    Float responses unpack these same bytes, so both encodings give identical numbers.
    """
    raw = hashlib.shake_256(text.encode()).digest(4 * dim)
    values = [v / 2_147_483_648.0 - 1.0 for v in struct.unpack(f"<{dim}I", raw)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return struct.pack(f"<{dim}f", *(v / norm for v in values))
