"""A simulated Anthropic Messages API over real HTTP, the provider deja's Anthropic tests talk to.

Nothing here reaches Anthropic. :class:`FakeAnthropicServer` serves ``POST /v1/messages`` in
Anthropic's wire format (JSON, and server-sent events with ``"stream": true``) from a stdlib
:class:`~http.server.ThreadingHTTPServer` on a loopback port, records every request, and
simulates what matters to a cache in front of it:

* **prompt caching**: the prefix up to each ``cache_control`` breakpoint (tools, then
  system, then messages) is remembered for its lifetime (``"5m"`` or ``"1h"``, on an
  injectable clock). A request whose prefix was seen reads it
  (``cache_read_input_tokens``); new breakpoints write (``cache_creation_input_tokens``,
  split in ``cache_creation.ephemeral_5m_input_tokens``/``ephemeral_1h_input_tokens``);
  ``input_tokens`` is what is left. As on Anthropic, a hit is looked for up to 20 blocks
  before each breakpoint, a read refreshes the entry's lifetime, and a prefix below the
  model's minimum (:func:`deja.providers.planner.minimum_cacheable_tokens`, or the
  server's ``minimum_tokens``) is not cached. Tokens are estimated at four characters each
  (1,600 per image or document), the planner's estimate;
* **Anthropic's errors**, with its bodies (``{"type": "error", "error": {type, message}}``):
  401 for a missing or wrong ``x-api-key`` (when the server has an ``api_key``), 400 for a
  missing ``anthropic-version`` header, for a fifth breakpoint (``"A maximum of 4 blocks
  with cache_control may be provided. Found 5."``), for a 1h breakpoint after a 5m one, for
  a ``system`` role inside ``messages``, for missing ``model``/``max_tokens``/``messages``,
  for empty text blocks, for a message whose text is all whitespace (``"text content
  blocks must contain non-whitespace text"``), for a message with no content but the
  final assistant one (``"all messages must have non-empty content except for the
  optional final assistant message"``), for a final assistant message ending in
  whitespace, for a base64 image that is not jpeg/png/gif/webp, a base64 document that is
  not a PDF and a text document that is not ``text/plain``; and scripted failures
  (:meth:`FakeAnthropicServer.fail_next`).

Replies are deterministic text about the last user message unless scripted with
:class:`AnthropicReply` (text, thinking, tool use, stop reason, or any content blocks, such
as a server tool's). Public names are re-exported from :mod:`deja.testing`; import them
from there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final

import orjson

from deja._fake_openai import _route_path
from deja._fake_server import (
    FakeHandler,
    FakeServer,
    PromptCache,
    RecordedRequest,
    ScriptedFailure,
)
from deja.providers.planner import IMAGE_TOKENS, estimate_tokens, minimum_cacheable_tokens

__all__ = ["AnthropicReply", "FakeAnthropicServer"]

logger = logging.getLogger(__name__)

_MAX_BREAKPOINTS: Final = 4
_LOOKBACK: Final = 20  # blocks before a breakpoint where Anthropic looks for a cache hit
_TTL_SECONDS: Final = {"5m": 300.0, "1h": 3600.0}
_ARGUMENT_PIECE: Final = 8  # characters of tool input per input_json_delta
_WORD: Final = re.compile(r"\s*\S+|\s+$")
_IMAGE_TYPES: Final = ("image/jpeg", "image/png", "image/gif", "image/webp")
# Blocks streamed as a start with an empty input, then input_json_delta pieces.
_INPUT_BLOCKS: Final = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class AnthropicReply:
    """A scripted answer: ``AnthropicReply("Bonjour")``.

    The content blocks come in Anthropic's order: ``thinking`` (with ``signature``, one is
    made up when absent), then ``text``, then one ``tool_use`` block per entry of
    ``tool_uses`` (``{"name", "input"}``, an ``id`` is made up when absent).
    ``content``, instead, gives Anthropic's content blocks as they are — e.g. a web search:
    ``text``, ``server_tool_use``, ``web_search_tool_result``, ``text`` — streamed as
    Anthropic streams each type (the input of ``tool_use``/``server_tool_use``/
    ``mcp_tool_use`` as ``input_json_delta`` pieces, citations as ``citations_delta``,
    other blocks whole in their ``content_block_start``).
    ``stop_reason`` ``None`` means ``tool_use`` with tool uses, else ``end_turn``.
    ``output_tokens`` overrides the estimate; ``latency`` the server's.
    """

    text: str | None = None
    _: KW_ONLY
    thinking: str | None = None
    signature: str | None = None
    tool_uses: Sequence[Mapping[str, Any]] | None = None
    content: Sequence[Mapping[str, Any]] | None = None
    stop_reason: str | None = None
    output_tokens: int | None = None
    latency: float | None = None


class _Refusal(Exception):
    """A request Anthropic refuses: status, error type and message."""

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind or _ERROR_TYPES.get(status, "api_error")


class FakeAnthropicServer(FakeServer[AnthropicReply, ScriptedFailure]):
    """A simulated Anthropic Messages API on a loopback port (see the module docstring).

    ``api_key``: when set, requests need ``x-api-key: <api_key>``. ``minimum_tokens``
    overrides the per-model minimum cacheable prefix; ``clock`` (seconds, monotonic) drives
    cache lifetimes, so a test can expire entries without sleeping. ``latency`` and
    ``chunk_delay`` (seconds before a response / between streamed events) may change while
    the server runs. The constructor does no I/O; :meth:`start` binds the socket::

        with FakeAnthropicServer(api_key="sk-ant-test") as server:
            httpx2.post(server.url + "/v1/messages", json=..., headers=...)
            assert server.count("/v1/messages") == 1
    """

    _provider = "Anthropic"
    _log = logger

    def __init__(
        self,
        *,
        api_key: str | None = None,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        minimum_tokens: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency, chunk_delay=chunk_delay)
        self.api_key = api_key
        self.minimum_tokens = minimum_tokens
        self._cache = PromptCache(clock=clock, ttl_seconds=_TTL_SECONDS, lookback=_LOOKBACK)

    # -- lifecycle ----------------------------------------------------------------------------

    def _handler(self) -> type[_Handler]:
        return _Handler

    @property
    def url(self) -> str:
        """``http://HOST:PORT``: what to pass as ``api_base`` (deja appends ``/v1/messages``)."""
        return super().url

    # -- recording and scripting --------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        """How many requests were received, in all or for one path (``/v1`` optional)."""
        return self._count(path, _route_path)

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
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Make the next ``times`` requests fail with ``status`` (Anthropic's error body for
        it unless ``body`` is given; ``headers`` added, e.g. ``retry-after``)."""
        self._queue_failure(ScriptedFailure(status, body, dict(headers or {})), times)

    # -- used by the handler --------------------------------------------------------------------

    def _prompt_usage(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Input usage of ``body`` against the simulated prompt cache (updating it)."""
        blocks = _flatten(body)
        minimum = self.minimum_tokens
        if minimum is None:
            minimum = minimum_cacheable_tokens(str(body.get("model", "")))
        with self._lock:
            use = self._cache.use(blocks, minimum)
        return {
            "input_tokens": use.uncached,
            "cache_creation_input_tokens": use.created,
            "cache_read_input_tokens": use.read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": use.written["5m"],
                "ephemeral_1h_input_tokens": use.written["1h"],
            },
        }


class _Handler(FakeHandler[FakeAnthropicServer]):
    def _answer_refusal(self, exc: Exception) -> bool:
        if not isinstance(exc, _Refusal):
            return False
        self._send_error(exc.status, exc.kind, exc.message)
        return True

    def _send_unreadable(self) -> None:
        self._send_error(400, "invalid_request_error", "Could not read the request body.")

    def _send_internal_error(self) -> None:
        self._send_error(500, "api_error", "Internal server error (simulated server)")

    def _route(self, request: RecordedRequest) -> None:
        owner, path, headers, body = self.server.owner, request.path, request.headers, request.body
        if self.command != "POST" or _route_path(path) != "/messages":
            raise _Refusal(404, f"Not found: {self.command} {path}", "not_found_error")
        if owner.api_key is not None:
            # the key in x-api-key (deja, older SDKs) or as a bearer token (newer SDKs)
            key = headers.get("x-api-key")
            bearer = headers.get("authorization") or ""
            if not key and bearer[:7].lower() == "bearer ":
                key = bearer[7:].strip()
            if not key:
                raise _Refusal(401, "x-api-key header is required")
            if key != owner.api_key:
                raise _Refusal(401, "invalid x-api-key")
        if not headers.get("anthropic-version"):
            raise _Refusal(400, "anthropic-version: header is required")
        failure = owner._take_failure()
        if failure is not None:
            self._send_failure(failure)
            return
        if not isinstance(body, dict):
            raise _Refusal(
                400,
                "There was an error parsing the body of your request. "
                "Please verify that it is valid JSON.",
            )
        _validate(body)
        self._messages(owner, body)

    def _messages(self, owner: FakeAnthropicServer, body: dict[str, Any]) -> None:
        usage = owner._prompt_usage(body)
        reply = owner._take_reply(body)
        blocks, stop_reason, stop_sequence, output = _answer(body, reply)
        usage["output_tokens"] = output
        searches = sum(
            1
            for b in blocks
            if b.get("type") == "server_tool_use" and b.get("name") == "web_search"
        )
        if searches:  # as Anthropic counts them
            usage["server_tool_use"] = {"web_search_requests": searches}
        usage["service_tier"] = "standard"
        owner._sleep(
            reply.latency if reply is not None and reply.latency is not None else owner.latency
        )
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        }
        if body.get("stream") is True:
            self._send_stream(_events(message))
        else:
            self._send_json(200, message)

    # -- response -----------------------------------------------------------------------------

    def _provider_headers(self) -> Iterable[tuple[str, str]]:
        return [("request-id", f"req_{uuid.uuid4().hex[:24]}")]

    def _send_error(
        self, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        body = {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": f"req_{uuid.uuid4().hex[:24]}",
        }
        self._send_json(status, body, headers)

    def _send_failure(self, failure: ScriptedFailure) -> None:
        if failure.body is not None:
            self._send_json(failure.status, failure.body, failure.headers)
            return
        kind = _ERROR_TYPES.get(failure.status, "api_error")
        message = "Overloaded" if failure.status == 529 else f"Simulated {kind}."
        self._send_error(failure.status, kind, message, failure.headers)

    def _send_stream(self, events: list[dict[str, Any]]) -> None:
        frames = [
            b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
            for event in events
        ]
        fields = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
        ]
        self._send_frames(fields, frames)


# -- pure helpers ---------------------------------------------------------------------------


def _count_markers(value: Any) -> int:
    """``cache_control`` blocks anywhere in ``value`` (nested tool_result content included)."""
    if isinstance(value, dict):
        own = 1 if value.get("cache_control") is not None else 0
        return own + sum(_count_markers(v) for k, v in value.items() if k != "cache_control")
    if isinstance(value, list):
        return sum(_count_markers(item) for item in value)
    return 0


def _validate(body: Mapping[str, Any]) -> None:
    """Refuse what Anthropic refuses (the checks a cache in front of it can trip)."""
    if not isinstance(body.get("model"), str):
        raise _Refusal(400, "model: Field required")
    if "max_tokens" not in body:
        raise _Refusal(400, "max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _Refusal(400, "messages: Field required")
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":
            raise _Refusal(
                400,
                'messages: Unexpected role "system". The Messages API accepts a top-level '
                '`system` parameter, not "system" as an input message role.',
            )
        if role not in ("user", "assistant"):
            raise _Refusal(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        _validate_content(i, message, final=i == len(messages) - 1)
    found = (
        _count_markers(body.get("tools"))
        + _count_markers(body.get("system"))
        + _count_markers(messages)
        + (1 if body.get("cache_control") is not None else 0)
    )
    if found > _MAX_BREAKPOINTS:
        raise _Refusal(
            400,
            f"A maximum of {_MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}.",
        )
    seen_5m = False
    for _, _, ttl in _flatten(body):
        if ttl == "1h" and seen_5m:
            raise _Refusal(
                400,
                "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control "
                "block. Note that blocks are processed in the following order: `tools`, "
                "`system`, `messages`.",
            )
        seen_5m = seen_5m or ttl == "5m"


def _validate_content(i: int, message: Mapping[str, Any], *, final: bool) -> None:
    """Anthropic's checks on one message's content (``final``: the last message)."""
    content = message.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(blocks, list):
        raise _Refusal(400, f"messages.{i}.content: Input should be a valid list")
    texts = [b.get("text") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
    if any(not isinstance(t, str) or not t for t in texts):
        raise _Refusal(400, f"messages.{i}: text content blocks must be non-empty")
    # Whitespace-only text passes next to real text, not alone or next to other blocks.
    if texts and not any(str(t).strip() for t in texts):
        raise _Refusal(400, "messages: text content blocks must contain non-whitespace text")
    assistant = message.get("role") == "assistant"
    if not blocks and not (final and assistant):
        raise _Refusal(
            400,
            f"messages.{i}: all messages must have non-empty content except for the "
            "optional final assistant message",
        )
    last = blocks[-1] if blocks else None
    if final and assistant and isinstance(last, dict) and last.get("type") == "text":
        text = str(last.get("text"))
        if text != text.rstrip():
            raise _Refusal(
                400, "messages: final assistant content cannot end with trailing whitespace"
            )
    for j, block in enumerate(blocks):
        _validate_source(f"messages.{i}.content.{j}", block)


def _validate_source(where: str, block: Any) -> None:
    """The media types Anthropic accepts for a base64 image, a document's source."""
    if not isinstance(block, dict) or not isinstance(block.get("source"), dict):
        if isinstance(block, dict) and block.get("type") == "tool_result":
            nested = block.get("content")
            for j, inner in enumerate(nested if isinstance(nested, list) else ()):
                _validate_source(f"{where}.tool_result.content.{j}", inner)
        return
    kind, source = block.get("type"), block["source"]
    media = source.get("media_type")
    if kind == "image" and source.get("type") == "base64" and media not in _IMAGE_TYPES:
        raise _Refusal(
            400,
            f"{where}.image.source.base64.media_type: Input should be 'image/jpeg', "
            "'image/png', 'image/gif' or 'image/webp'",
        )
    if kind == "document" and source.get("type") == "base64" and media != "application/pdf":
        raise _Refusal(
            400, f"{where}.document.source.base64.media_type: Input should be 'application/pdf'"
        )
    if kind == "document" and source.get("type") == "text" and media != "text/plain":
        raise _Refusal(
            400, f"{where}.document.source.text.media_type: Input should be 'text/plain'"
        )


def _ttl(block: Any) -> str | None:
    """The lifetime of a block's breakpoint, or ``None`` when it is not one."""
    if not isinstance(block, dict):
        return None
    control = block.get("cache_control")
    if control is None and block.get("type") == "tool_result":
        nested = block.get("content")
        if isinstance(nested, list):
            control = next(
                (
                    b.get("cache_control")
                    for b in nested
                    if isinstance(b, dict) and b.get("cache_control")
                ),
                None,
            )
    if not isinstance(control, dict):
        return None
    return "1h" if control.get("ttl") == "1h" else "5m"


def _block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return estimate_tokens(block)
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        return estimate_tokens(str(block.get("text") or ""))
    if kind == "thinking":
        return estimate_tokens(str(block.get("thinking") or ""))
    if kind in ("image", "document"):
        return IMAGE_TOKENS
    if kind == "tool_use":
        return estimate_tokens(str(block.get("name", "")) + json.dumps(block.get("input")))
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return sum(_block_tokens(b) for b in content)
        return estimate_tokens(str(content or ""))
    plain = {k: v for k, v in block.items() if k != "cache_control"}
    return estimate_tokens(json.dumps(plain, ensure_ascii=False))


def _identity(value: Any) -> Any:
    """A block as the cache sees it: without its markers."""
    if isinstance(value, dict):
        return {k: _identity(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_identity(v) for v in value]
    return value


def _flatten(body: Mapping[str, Any]) -> list[tuple[str, int, str | None]]:
    """Every block in prefix order (tools, system, messages): (prefix hash, tokens, ttl)."""
    items: list[tuple[str, Any]] = []
    for tool in body.get("tools") or ():
        items.append(("tool", tool))
    system = body.get("system")
    if isinstance(system, str):
        items.append(("system", {"type": "text", "text": system}))
    elif isinstance(system, list):
        items.extend(("system", block) for block in system)
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = str(message.get("role"))
        content = message.get("content")
        if isinstance(content, str):
            items.append((role, {"type": "text", "text": content}))
        elif isinstance(content, list):
            items.extend((role, block) for block in content)
    out: list[tuple[str, int, str | None]] = []
    digest = hashlib.sha256(str(body.get("model", "")).encode())
    automatic = body.get("cache_control")
    for position, (role, block) in enumerate(items):
        digest.update(orjson.dumps([role, _identity(block)], option=orjson.OPT_SORT_KEYS))
        ttl = _ttl(block)
        if ttl is None and automatic is not None and position == len(items) - 1:
            # Automatic caching: a top-level cache_control marks the last block.
            ttl = "1h" if isinstance(automatic, dict) and automatic.get("ttl") == "1h" else "5m"
        out.append((digest.copy().hexdigest(), _block_tokens(block), ttl))
    return out


def _last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                texts = [
                    str(b.get("text", ""))
                    for b in content
                    if isinstance(b, dict) and b.get("type") == "text"
                ]
                if texts:
                    return "\n".join(texts)
    return ""


def _answer(
    body: Mapping[str, Any], reply: AnthropicReply | None
) -> tuple[list[dict[str, Any]], str, str | None, int]:
    """(content blocks, stop_reason, stop_sequence, output tokens) for a request."""
    if reply is None:
        question = _last_user_text(body["messages"])
        digest = hashlib.sha256(question.encode()).hexdigest()[:8]
        text = f"Simulated answer to: {question[:40]} [{digest}]"
        stop_reason, stop_sequence = "end_turn", None
        for sequence in body.get("stop_sequences") or ():
            if isinstance(sequence, str) and sequence and sequence in text:
                text, stop_reason, stop_sequence = (
                    text.split(sequence, maxsplit=1)[0],
                    "stop_sequence",
                    sequence,
                )
                break
        limit = body.get("max_tokens")
        if isinstance(limit, int) and estimate_tokens(text) > limit:
            text, stop_reason = text[: limit * 4], "max_tokens"
        return [{"type": "text", "text": text}], stop_reason, stop_sequence, estimate_tokens(text)
    if reply.content is not None:
        blocks = [dict(block) for block in reply.content]
        uses = any(block.get("type") == "tool_use" for block in blocks)
        stop_reason = reply.stop_reason or ("tool_use" if uses else "end_turn")
        output = sum(_block_tokens(block) for block in blocks)
        if reply.output_tokens is not None:
            output = reply.output_tokens
        return blocks, stop_reason, None, output
    blocks = []
    output = 0
    if reply.thinking is not None:
        signature = reply.signature or hashlib.sha256(reply.thinking.encode()).hexdigest()
        blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": signature})
        output += estimate_tokens(reply.thinking)
    if reply.text is not None:
        blocks.append({"type": "text", "text": reply.text})
        output += estimate_tokens(reply.text)
    for use in reply.tool_uses or ():
        block = {
            "type": "tool_use",
            "id": use.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
            "name": use.get("name"),
            "input": dict(use.get("input") or {}),
        }
        blocks.append(block)
        output += estimate_tokens(str(block["name"]) + json.dumps(block["input"]))
    stop_reason = reply.stop_reason or ("tool_use" if reply.tool_uses else "end_turn")
    if reply.output_tokens is not None:
        output = reply.output_tokens
    return blocks, stop_reason, None, output


def _pieces(text: str) -> list[str]:
    return _WORD.findall(text) or ([text] if text else [])


def _events(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The SSE events Anthropic streams for ``message``, in its order."""
    usage = dict(message["usage"])
    start_usage = {**usage, "output_tokens": 1}  # Anthropic counts the first token at start
    head = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**head, "usage": start_usage}}
    ]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        deltas: list[dict[str, Any]]
        if kind == "text":
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                }
            )
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"])]
            deltas += [
                {"type": "citations_delta", "citation": citation}
                for citation in block.get("citations") or ()
            ]
        elif kind == "thinking":
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                }
            )
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind in _INPUT_BLOCKS:
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**block, "input": {}},
                }
            )
            # (literal UTF-8, as current Claude models write it: the non-stream form's)
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [
                {"type": "input_json_delta", "partial_json": arguments[i : i + _ARGUMENT_PIECE]}
                for i in range(0, len(arguments), _ARGUMENT_PIECE)
            ]
        else:  # redacted thinking, a server tool's result…: whole in its start
            events.append({"type": "content_block_start", "index": index, "content_block": block})
            deltas = []
        if index == 0:
            events.append({"type": "ping"})
        events.extend({"type": "content_block_delta", "index": index, "delta": d} for d in deltas)
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": message["stop_reason"],
                "stop_sequence": message["stop_sequence"],
            },
            "usage": {k: v for k, v in usage.items() if k != "service_tier"},
        }
    )
    events.append({"type": "message_stop"})
    return events
