"""The Anthropic Messages API adapter: OpenAI chat format in, OpenAI chat format out.

deja speaks OpenAI's chat format to its callers; :class:`AnthropicProvider` translates a
request into a ``POST {api_base}/v1/messages`` and the answer — JSON or server-sent
events — back, without I/O (the client sends the bytes). Models are named
``anthropic/<model>``; ``api_base`` is the host (default ``https://api.anthropic.com``).

Request, OpenAI → Anthropic:

* ``system``/``developer`` messages, wherever they are, become the top-level ``system``
  blocks, in order (Anthropic has no system turns);
* user content parts: text; ``image_url`` or ``file`` with a ``data:`` URL → by its media
  type: ``image/*`` a base64 ``image`` (``image/jpg``, which Anthropic refuses, as
  ``image/jpeg``), ``application/pdf`` a base64 ``document``, ``text/plain`` a
  ``document`` with a ``text`` source (the decoded text); any other type (csv, markdown,
  docx…) is refused, as Anthropic's documents take only those two; an ``http(s)`` URL → a
  ``url`` source; ``file_id`` → a ``file`` source; a file's ``filename`` becomes the
  document's ``title``; parts already in Anthropic's shape (``image``, ``document``…) pass
  through; audio is refused;
* assistant messages: ``thinking_blocks`` (with their signatures, as deja returns them)
  first, then text, then each tool call as a ``tool_use`` block (``arguments`` parsed); a
  paused turn's ``provider_specific_fields.content_blocks`` (see below) instead, as they are;
* ``tool`` messages → ``tool_result`` blocks in a user turn; consecutive turns of one role
  are merged (so tool results and the next user text share a turn, results first);
* blank (empty or whitespace-only) text is not sent, in messages, tool results and the
  system prompt (Anthropic refuses it; a breakpoint on it moves to the block before), and
  a message left with nothing is not sent, with a warning (so an empty assistant turn
  between two user turns disappears and they merge); a blank last user message, which
  would leave an assistant turn last (a prefill), is refused instead; the trailing
  whitespace of a final assistant message (a prefill) is cut, with a warning, as
  Anthropic refuses it;
* a turn (or the system prompt) that is one plain text block is sent as a string;
* function ``tools`` → ``{name, description, input_schema, strict}``; other tools (Anthropic's
  server tools) pass through; ``tool_choice`` ``auto``/``required``/``none``/a named
  function → ``auto``/``any``/``none``/``tool``; ``parallel_tool_calls: false`` →
  ``disable_parallel_tool_use``;
* ``stop`` → ``stop_sequences``; ``max_completion_tokens`` (or ``max_tokens``) →
  ``max_tokens``, which Anthropic requires: when absent, :data:`DEFAULT_MAX_TOKENS`
  (4,096, the largest output every Claude 3+ model accepts); ``temperature``, ``top_p``,
  ``top_k``, ``thinking`` and ``stream`` as they are (a ``null`` one, OpenAI's "unset", is
  not sent: Anthropic refuses it); ``user`` → ``metadata.user_id``; ``reasoning_effort`` →
  ``thinking`` with LiteLLM's budgets (low 1,024, medium 2,048, high 4,096 tokens), cut
  below a caller's ``max_tokens`` (Anthropic wants the budget under it, and OpenAI counts
  reasoning inside it); a limit that cannot hold the smallest budget (1,024) is refused;
* ``cache_control`` on tools, messages and content parts is kept and the
  ``cache_control_injection_points`` are placed by :mod:`deja.providers.planner`; a
  top-level ``cache_control`` (Anthropic's automatic caching) is sent as the planner
  leaves it (downgraded to ``"5m"`` after a 5m breakpoint, left out when the last block
  has a breakpoint of another lifetime);
* OpenAI-only parameters with no Anthropic equivalent (penalties, ``seed``,
  ``logit_bias``, ``logprobs``…) are not sent, each with a warning; ``n`` > 1 and a JSON
  ``response_format`` are refused; any other field passes through as an Anthropic extra.

Response, Anthropic → OpenAI: text blocks → ``content``; ``thinking`` blocks →
``reasoning_content`` plus ``thinking_blocks`` (text and signature, needed to continue a
tool-use conversation with thinking); ``tool_use`` → ``tool_calls``. Server tools
(``server_tool_use``, ``mcp_tool_use`` and their ``*_tool_result`` blocks: web search,
web fetch, code execution…) ran at Anthropic, so they are not tool calls the caller should
answer: they are left out, as are citations and block types newer than this adapter (the
text the model wrote around them is kept). ``stop_reason`` → ``finish_reason``
(``end_turn``/``stop_sequence`` → ``stop``,
``max_tokens``/``model_context_window_exceeded`` → ``length``, ``tool_use`` →
``tool_calls`` — ``stop`` when no client tool call came —, ``refusal`` →
``content_filter``). ``pause_turn`` (a server-tool loop paused: the turn is unfinished) →
``length``, OpenAI's value for an answer that is not whole, with
``provider_specific_fields`` on the message: ``native_finish_reason: "pause_turn"`` and
``content_blocks``, the answer's blocks as Anthropic sent them (server tool use and results
included). Sending that assistant message back as the last one continues the turn: its
``content_blocks`` go to Anthropic in place of the message's content. A stop reason newer
than this adapter → ``stop``, kept as ``native_finish_reason`` too; deja's admission policy
stores neither. Usage through
:func:`deja.providers.usage.normalize_anthropic`. A stream goes through
:class:`StreamTranslator`, which yields ``chat.completion.chunk`` dicts that
:class:`deja.streaming.StreamAssembler` assembles into exactly what :meth:`parse_response`
returns for the same answer.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from deja._upstream import stream_error
from deja.errors import InvalidRequestError, ProviderError
from deja.providers._openai_format import (
    arguments_text,
    assistant_message,
    function_call,
    tool_call,
)
from deja.providers.planner import (
    ANTHROPIC_BREAKPOINT_LIMIT,
    Plan,
    TokenEstimator,
    apply_plan,
    estimate_tokens,
    minimum_cacheable_tokens,
    plan_breakpoints,
)
from deja.providers.usage import normalize_anthropic

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_API_BASE",
    "DEFAULT_MAX_TOKENS",
    "MINIMUM_THINKING_BUDGET",
    "AnthropicProvider",
    "AnthropicRequest",
    "StreamTranslator",
    "effort_thinking",
    "finish_reason",
    "provider_fields",
]

ANTHROPIC_VERSION: Final = "2023-06-01"
"""The ``anthropic-version`` header deja sends (the current, and only stable, version)."""

DEFAULT_API_BASE: Final = "https://api.anthropic.com"

DEFAULT_MAX_TOKENS: Final = 4096
"""``max_tokens`` when the caller sets none: Anthropic requires one, and 4,096 is the
largest output every Claude 3 and later model accepts."""

_FINISH: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    # An unfinished turn (a server-tool loop paused, to be sent back to continue): OpenAI's
    # value for an answer that is not whole, and the same remedy as a max_tokens stop
    # (send the assistant turn back); provider_specific_fields tells the two apart.
    "pause_turn": "length",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Stop reasons whose OpenAI value says all there is; any other (pause_turn, one newer than
# this adapter) is also named in the message's provider_specific_fields, and deja's
# admission policy does not store such an answer.
_CLEAN_STOPS: Final = frozenset(_FINISH) - {"pause_turn"}
MINIMUM_THINKING_BUDGET: Final = 1024
"""Anthropic's smallest extended-thinking ``budget_tokens``."""

# LiteLLM's mapping of OpenAI's reasoning effort to an extended-thinking budget.
_THINKING_BUDGET: Final = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096}
# OpenAI parameters with no Anthropic equivalent: not sent (a warning names each one set).
_OPENAI_ONLY: Final = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "seed",
        "store",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "modalities",
        "audio",
        "prediction",
        "verbosity",
        "web_search_options",
    }
)
# Handled explicitly below; everything else in the body passes through.
_HANDLED: Final = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "metadata",
        "stream",
        "stream_options",
        "reasoning_effort",
        "response_format",
        "n",
        "functions",
        "function_call",
        "service_tier",
        "thinking",
        "cache_control_injection_points",
    }
)
_SYSTEM_ROLES: Final = frozenset({"system", "developer"})
_DATA_URL: Final = re.compile(
    r"data:(?P<media>[^;,]+)(?P<params>;[^,]*)?;base64,(?P<data>.*)", re.DOTALL
)
_CHARSET: Final = re.compile(r";\s*charset=\"?(?P<charset>[^;\"]+)", re.IGNORECASE)
# Blocks a cache_control marker cannot go on (Anthropic refuses markers on thinking).
_UNMARKABLE: Final = frozenset({"thinking", "redacted_thinking"})
_NATIVE_PARTS: Final = frozenset(
    {
        "image",
        "document",
        "search_result",
        "tool_use",
        "tool_result",
        "thinking",
        "redacted_thinking",
    }
)


def finish_reason(stop_reason: object) -> str | None:
    """OpenAI's ``finish_reason`` for an Anthropic ``stop_reason`` (an unknown one: ``stop``,
    OpenAI's clients know no other value; :func:`provider_fields` keeps the real one)."""
    if stop_reason is None:
        return None
    return _FINISH.get(str(stop_reason), "stop")


def effort_thinking(effort: object, max_tokens: object) -> dict[str, Any] | None:
    """The ``thinking`` field for OpenAI's ``reasoning_effort`` (``None`` for none or
    ``"none"``) under the caller's ``max_tokens`` (``None``: not set).

    The budget is LiteLLM's for the effort, cut to fit under ``max_tokens`` when the caller
    set one: Anthropic requires ``budget_tokens < max_tokens``, and OpenAI counts reasoning
    inside ``max_completion_tokens`` too, so the caller's limit stays the whole output. A
    limit that cannot hold Anthropic's smallest budget (1,024) is an
    :class:`~deja.errors.InvalidRequestError` naming both, rather than an output larger
    than the caller allowed.
    """
    if effort is None or effort == "none":
        return None
    budget = _THINKING_BUDGET.get(str(effort))
    if budget is None:
        raise InvalidRequestError(f"reasoning_effort {effort!r} is not known")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        if max_tokens <= MINIMUM_THINKING_BUDGET:
            raise InvalidRequestError(
                f"reasoning_effort {effort!r} needs a thinking budget of at least "
                f"{MINIMUM_THINKING_BUDGET} tokens, below the max_tokens, and max_tokens is "
                f"{max_tokens}: raise max_completion_tokens (or max_tokens) above "
                f"{MINIMUM_THINKING_BUDGET}, or leave out reasoning_effort"
            )
        budget = min(budget, max_tokens - 1)
    return {"type": "enabled", "budget_tokens": budget}


def provider_fields(stop_reason: object, content: object) -> dict[str, Any] | None:
    """The message's ``provider_specific_fields`` for an answer that stopped with
    ``stop_reason``: ``None`` after a clean stop; else ``native_finish_reason`` (what
    Anthropic said), and after ``pause_turn`` the answer's ``content_blocks`` as Anthropic
    sent them (server tool use and results, citations), to send back so the turn goes on."""
    if stop_reason is None or stop_reason in _CLEAN_STOPS:
        return None
    fields: dict[str, Any] = {"native_finish_reason": str(stop_reason)}
    if stop_reason == "pause_turn" and isinstance(content, list):
        fields["content_blocks"] = [
            copy.deepcopy(dict(b)) for b in content if isinstance(b, Mapping)
        ]
    return fields


def _answer_finish(stop_reason: object, tool_calls: int) -> str | None:
    """:func:`finish_reason` for an answer with ``tool_calls`` client tool calls:
    ``tool_calls`` only when there is one to answer (a server tool is not one)."""
    finish = finish_reason(stop_reason)
    return "stop" if finish == "tool_calls" and not tool_calls else finish


@dataclass(frozen=True, slots=True)
class AnthropicRequest:
    """What to send: ``url``, ``headers`` and the ``json`` body, plus the breakpoint
    ``plan`` and human-readable ``warnings`` (breakpoints not placed or downgraded,
    parameters not sent) for the caller's log."""

    url: str
    headers: dict[str, str]
    json: dict[str, Any]
    warnings: tuple[str, ...]
    plan: Plan


class AnthropicProvider:
    """Translates OpenAI chat requests to Anthropic's Messages API and the answers back.

    Options (keyword-only): ``version`` (the ``anthropic-version`` header),
    ``default_max_tokens`` (``max_tokens`` when the caller sets none), ``breakpoint_limit``
    (Anthropic's 4), ``minimum_tokens`` (model → minimum cacheable prefix; default: the
    packaged table) and ``estimator`` (text → estimated tokens). Stateless and
    thread-safe; no I/O.
    """

    name: Final = "anthropic"

    def __init__(
        self,
        *,
        version: str = ANTHROPIC_VERSION,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        breakpoint_limit: int = ANTHROPIC_BREAKPOINT_LIMIT,
        minimum_tokens: Callable[[str], int] = minimum_cacheable_tokens,
        estimator: TokenEstimator = estimate_tokens,
    ) -> None:
        if default_max_tokens < 1 or breakpoint_limit < 0:
            raise ValueError("default_max_tokens must be >= 1 and breakpoint_limit >= 0")
        self.version = version
        self.default_max_tokens = default_max_tokens
        self.breakpoint_limit = breakpoint_limit
        self.minimum_tokens = minimum_tokens
        self.estimator = estimator

    # -- request ------------------------------------------------------------------------

    def build_request(
        self,
        body: Mapping[str, Any],
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        injection_points: Sequence[Mapping[str, Any]] = (),
        extra_headers: Mapping[str, str] | None = None,
    ) -> AnthropicRequest:
        """The HTTP request for an OpenAI-format chat ``body``.

        ``body["model"]`` may carry the ``anthropic/`` prefix. ``api_base`` is the host
        (``/v1/messages`` is appended; a base already ending in ``/v1`` gets ``/messages``).
        ``api_key`` goes in ``x-api-key`` (omitted when ``None``: resolve
        ``ANTHROPIC_API_KEY`` before calling). ``injection_points`` (from configuration)
        apply after the body's own ``cache_control_injection_points``. ``extra_headers``
        (e.g. ``anthropic-beta``) are added last. Raises
        :class:`~deja.errors.InvalidRequestError` for a request Anthropic cannot express.
        """
        payload, plan, warnings = self.translate_request(body, injection_points=injection_points)
        base = (api_base or DEFAULT_API_BASE).rstrip("/")
        if base.endswith("/v1/messages"):
            url = base
        elif base.endswith("/v1"):
            url = base + "/messages"
        else:
            url = base + "/v1/messages"
        headers = {"content-type": "application/json", "anthropic-version": self.version}
        if api_key:
            headers["x-api-key"] = api_key
        headers.update(extra_headers or {})
        return AnthropicRequest(url, headers, payload, tuple(warnings), plan)

    def translate_request(
        self,
        body: Mapping[str, Any],
        *,
        injection_points: Sequence[Mapping[str, Any]] = (),
    ) -> tuple[dict[str, Any], Plan, list[str]]:
        """The Anthropic JSON body for an OpenAI chat ``body``, its breakpoint plan, and
        warnings (see :meth:`build_request`)."""
        if not isinstance(body, Mapping):
            raise InvalidRequestError("the request body must be an object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequestError("model must be a non-empty string")
        model = model.removeprefix("anthropic/")
        points = [*_points(body.get("cache_control_injection_points")), *injection_points]
        # Anthropic's automatic caching (a top-level cache_control) takes one of the slots
        # and comes last: the planner orders its lifetime with the others' (rule 5).
        plan = plan_breakpoints(
            body,
            injection_points=points,
            limit=self.breakpoint_limit,
            minimum_tokens=self.minimum_tokens(model),
            estimator=self.estimator,
            automatic=body.get("cache_control"),
        )
        planned = apply_plan(body, plan)
        planned.pop("cache_control", None)
        if plan.automatic is not None:
            planned["cache_control"] = dict(plan.automatic)
        warnings = [str(warning) for warning in plan.warnings]

        n = planned.get("n")
        if n is not None and n != 1:
            raise InvalidRequestError("Anthropic returns one choice: n must be 1")
        if planned.get("functions") is not None or planned.get("function_call") is not None:
            raise InvalidRequestError("functions/function_call are not supported: use tools")
        response_format = planned.get("response_format")
        if response_format is not None and (
            not isinstance(response_format, Mapping) or response_format.get("type") != "text"
        ):
            raise InvalidRequestError(
                "response_format is not supported by the Anthropic adapter (only type: text)"
            )

        system, messages = _messages(planned["messages"], warnings)
        payload: dict[str, Any] = {"model": model}
        max_tokens = planned.get("max_completion_tokens")
        if max_tokens is None:
            max_tokens = planned.get("max_tokens")
        thinking = planned.get("thinking")
        if thinking is None:
            thinking = effort_thinking(planned.get("reasoning_effort"), max_tokens)
        if max_tokens is None:
            # With thinking, max_tokens must exceed the thinking budget.
            budget = thinking.get("budget_tokens") if isinstance(thinking, Mapping) else None
            extra = budget if isinstance(budget, int) and not isinstance(budget, bool) else 0
            max_tokens = self.default_max_tokens + extra
        payload["max_tokens"] = max_tokens
        if system is not None:
            payload["system"] = system
        payload["messages"] = messages
        tools = planned.get("tools")
        if tools:
            payload["tools"] = _tools(tools, warnings)
        tool_choice = _tool_choice(planned.get("tool_choice"), planned.get("parallel_tool_calls"))
        if tool_choice is not None:
            payload["tool_choice"] = tool_choice
        stop = planned.get("stop")
        if stop is not None:
            payload["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if thinking is not None:
            payload["thinking"] = thinking
        metadata = _metadata(planned.get("metadata"), planned.get("user"), warnings)
        if metadata:
            payload["metadata"] = metadata
        tier = planned.get("service_tier")
        if tier in ("auto", "standard_only"):
            payload["service_tier"] = tier
        elif tier is not None:
            warnings.append(f"service_tier {tier!r} has no Anthropic equivalent: not sent")
        if planned.get("stream") is True:
            payload["stream"] = True
        for key, value in planned.items():
            if key in _HANDLED or key in payload:
                continue
            if key in _OPENAI_ONLY:
                if value not in (None, False):  # an unset or disabled option changes nothing
                    warnings.append(f"{key} has no Anthropic equivalent: not sent")
                continue
            if value is None:
                # OpenAI's "unset" (SDKs and frameworks send it); Anthropic refuses a null
                # temperature, top_p or top_k with a 400
                continue
            payload[key] = value  # temperature, top_p, top_k and Anthropic's own extras
        return payload, plan, warnings

    # -- response -----------------------------------------------------------------------

    def parse_response(
        self, data: Mapping[str, Any], *, created: int | None = None
    ) -> dict[str, Any]:
        """An OpenAI ``chat.completion`` dict for an Anthropic Messages response.

        ``created`` (Anthropic sends none) defaults to now. Raises
        :class:`~deja.errors.ProviderError` for a body that is not a message.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("content"), list):
            raise ProviderError(
                "Anthropic answered with a body that is not a message",
                body=data,
                provider="anthropic",
            )
        text: list[str] = []
        reasoning: list[str] = []
        thinking_blocks: list[dict[str, Any]] = []
        tool_calls: list[dict[str, Any]] = []
        for block in data["content"]:
            if not isinstance(block, Mapping):
                continue
            kind = block.get("type")
            if kind == "text":
                text.append(str(block.get("text") or ""))
            elif kind == "thinking":
                reasoning.append(str(block.get("thinking") or ""))
                thinking_blocks.append(
                    {
                        "type": "thinking",
                        "thinking": block.get("thinking") or "",
                        "signature": block.get("signature"),
                    }
                )
            elif kind == "redacted_thinking":
                thinking_blocks.append(dict(block))
            elif kind == "tool_use":
                tool_calls.append(tool_call(block.get("id"), block.get("name"), block.get("input")))
            # server_tool_use, mcp_tool_use, *_tool_result…: Anthropic ran those tools
        message = assistant_message(text, reasoning, thinking_blocks, tool_calls)
        fields = provider_fields(data.get("stop_reason"), data["content"])
        if fields is not None:
            message["provider_specific_fields"] = fields
        response: dict[str, Any] = {
            "id": data.get("id"),
            "object": "chat.completion",
            "created": int(time.time()) if created is None else created,
            "model": data.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _answer_finish(data.get("stop_reason"), len(tool_calls)),
                }
            ],
        }
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            response["usage"] = normalize_anthropic(usage)
        return response

    def stream_translator(self, *, created: int | None = None) -> StreamTranslator:
        """A fresh :class:`StreamTranslator` for one streamed response."""
        return StreamTranslator(created=created)


class _Block:
    """What one content block of a stream has said so far."""

    __slots__ = ("data", "kind", "sent_arguments", "signature", "thinking", "tool")

    def __init__(self, kind: str, *, tool: int = -1, data: Mapping[str, Any] | None = None) -> None:
        self.kind = kind
        self.tool = tool
        self.thinking: list[str] = []
        self.signature: str | None = None
        self.sent_arguments = False
        self.data = dict(data or {})


class _Whole:
    """One block of a stream as its non-stream twin has it: the start's block, with the
    pieces of its deltas (of its own kind only) put together."""

    __slots__ = ("base", "citations", "input", "pieces")

    # delta type → (the block type it belongs to, the block field it adds to)
    _FIELDS: Final = {
        "text_delta": ("text", "text"),
        "thinking_delta": ("thinking", "thinking"),
        "signature_delta": ("thinking", "signature"),
    }

    def __init__(self, block: Mapping[str, Any]) -> None:
        self.base = copy.deepcopy(dict(block))
        self.pieces: dict[str, list[str]] = {}
        self.input: list[str] = []
        self.citations: list[Any] = []

    def add(self, delta: Mapping[str, Any]) -> None:
        kind = delta.get("type")
        owner = self.base.get("type")
        if kind in self._FIELDS:
            block, field = self._FIELDS[kind]
            piece = delta.get(field)
            if owner == block and isinstance(piece, str):
                self.pieces.setdefault(field, []).append(piece)
        elif kind == "input_json_delta" and "input" in self.base:
            piece = delta.get("partial_json")
            if isinstance(piece, str):
                self.input.append(piece)
        elif kind == "citations_delta" and owner == "text":
            self.citations.append(copy.deepcopy(delta.get("citation")))

    def block(self) -> dict[str, Any]:
        block = copy.deepcopy(self.base)
        for field, pieces in self.pieces.items():
            block[field] = str(block.get(field) or "") + "".join(pieces)
        arguments = "".join(self.input)
        if arguments:
            try:
                block["input"] = json.loads(arguments)
            except ValueError:
                block["input"] = arguments  # as it came: Anthropic will say what is wrong
        if self.citations:
            block["citations"] = [*(block.get("citations") or ()), *self.citations]
        return block


class StreamTranslator:
    """Anthropic stream events → OpenAI ``chat.completion.chunk`` dicts, one event at a time.

    :meth:`feed` takes each decoded SSE ``data`` object (``message_start``,
    ``content_block_start``/``delta``/``stop``, ``message_delta``, ``message_stop``,
    ``ping``, ``error``) and returns the chunks it makes: a first chunk with the role, text
    as ``content`` deltas, thinking as ``reasoning_content`` deltas (and, at the block's
    end, the whole block with its signature in ``thinking_blocks``), each ``tool_use`` as
    an OpenAI tool-call delta (index, id, name, then the argument pieces), the finish
    chunk when ``message_delta`` brings the stop reason, and at ``message_stop`` a last
    chunk with ``choices: []`` and the normalized usage. Every chunk carries
    ``"usage": null`` as OpenAI's do when usage was asked for. An ``error`` event raises
    the matching :class:`~deja.errors.ProviderError`. Unknown events are ignored, as
    Anthropic asks of clients, and so are blocks :meth:`AnthropicProvider.parse_response`
    leaves out (server tool use and results, unknown block types) with all their deltas:
    a delta counts only for a block of its own kind.
    """

    def __init__(self, *, created: int | None = None) -> None:
        self.created = int(time.time()) if created is None else created
        self._id: Any = None
        self._model: Any = None
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, _Block] = {}
        self._tools = 0
        self._finished = False
        # every block as Anthropic would send it whole, for a pause_turn's content_blocks
        self._content: dict[int, _Whole] = {}

    @property
    def finished(self) -> bool:
        """True once ``message_stop`` arrived."""
        return self._finished

    @property
    def usage(self) -> dict[str, Any] | None:
        """The usage so far, normalized (``None`` before ``message_start``)."""
        return normalize_anthropic(self._usage) if self._usage else None

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Translate one event; returns the chunks to pass on (often none or one)."""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._id = message.get("id")
            self._model = message.get("model")
            self._merge_usage(message.get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._start(_index(event), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._delta(_index(event), event.get("delta") or {})
        if kind == "content_block_stop":
            return self._stop(_index(event))
        if kind == "message_delta":
            self._merge_usage(event.get("usage"))
            delta = event.get("delta") or {}
            reason = delta.get("stop_reason")
            if reason is None:
                return []
            # the blocks as Anthropic would send them whole: read only after pause_turn
            # (every other stop's fields have none), not built for every stream
            content = (
                [self._content[i].block() for i in sorted(self._content)]
                if reason == "pause_turn"
                else None
            )
            fields = provider_fields(reason, content)
            finish = {} if fields is None else {"provider_specific_fields": fields}
            return [self._chunk(finish, _answer_finish(reason, self._tools))]
        if kind == "message_stop":
            self._finished = True
            usage = self.usage
            if usage is None:
                return []
            return [self._envelope() | {"choices": [], "usage": usage}]
        if kind == "error":
            raise stream_error(event, "anthropic")
        return []  # ping, and event types newer than this adapter

    def _merge_usage(self, usage: object) -> None:
        # message_delta's counts are cumulative: each field it sends replaces the start's.
        if isinstance(usage, Mapping):
            self._usage.update({k: v for k, v in usage.items() if v is not None})

    def _envelope(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self._model,
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._envelope() | {"choices": [choice], "usage": None}

    def _start(self, index: int, block: Mapping[str, Any]) -> list[dict[str, Any]]:
        self._content[index] = _Whole(block)
        kind = str(block.get("type"))
        if kind == "tool_use":
            state = self._blocks[index] = _Block(kind, tool=self._tools)
            self._tools += 1
            opening = {
                "index": state.tool,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            chunks = [self._chunk({"tool_calls": [opening]})]
            if block.get("input"):  # the start's input is {} in practice; pieces follow
                state.sent_arguments = True
                chunks.append(self.arguments_text(state, arguments_text(block["input"])))
            return chunks
        state = self._blocks[index] = _Block(kind, data=block)
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if kind == "thinking" and block.get("thinking"):
            state.thinking.append(block["thinking"])
            return [self._chunk({"reasoning_content": block["thinking"]})]
        return []

    def _delta(self, index: int, delta: Mapping[str, Any]) -> list[dict[str, Any]]:
        whole = self._content.get(index)
        if whole is not None:
            whole.add(delta)
        state = self._blocks.get(index)
        block = state.kind if state is not None else None
        kind = delta.get("type")
        # A delta counts for a block of its own kind only: a server_tool_use block streams
        # its input as input_json_delta too, and it is not a tool call for the caller.
        if kind == "text_delta" and block in (None, "text") and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and block in (None, "thinking") and delta.get("thinking"):
            if state is not None:
                state.thinking.append(delta["thinking"])
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        if kind == "signature_delta" and state is not None and block == "thinking":
            state.signature = (state.signature or "") + str(delta.get("signature") or "")
            return []
        piece = delta.get("partial_json")
        if kind == "input_json_delta" and state is not None and block == "tool_use" and piece:
            state.sent_arguments = True
            return [self.arguments_text(state, piece)]
        return []  # server tools' input, citations, and delta types newer than this adapter

    def _stop(self, index: int) -> list[dict[str, Any]]:
        state = self._blocks.get(index)
        if state is None:
            return []
        if state.kind == "thinking":
            block = {
                "type": "thinking",
                "thinking": "".join(state.thinking),
                "signature": state.signature,
            }
            return [self._chunk({"thinking_blocks": [block]})]
        if state.kind == "redacted_thinking":
            return [self._chunk({"thinking_blocks": [state.data]})]
        if state.kind == "tool_use" and not state.sent_arguments:
            # A call with no input streams no pieces; its non-stream twin says "{}".
            return [self.arguments_text(state, "{}")]
        return []

    def arguments_text(self, state: _Block, piece: str) -> dict[str, Any]:
        call = {"index": state.tool, "function": {"arguments": piece}}
        return self._chunk({"tool_calls": [call]})


# -- request helpers ---------------------------------------------------------------------


def _points(value: object) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise InvalidRequestError("cache_control_injection_points must be a list")
    return list(value)


def _index(event: Mapping[str, Any]) -> int:
    index = event.get("index")
    return index if isinstance(index, int) else -1


def _with_marker(block: dict[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    control = source.get("cache_control")
    if control is not None:
        block["cache_control"] = dict(control)
    return block


def _media_block(url: str, where: str) -> dict[str, Any]:
    match = _DATA_URL.fullmatch(url)
    if match is not None:
        return _data_block(match, where)
    if url.startswith(("http://", "https://")):
        kind = "document" if url.lower().split("?")[0].endswith(".pdf") else "image"
        return {"type": kind, "source": {"type": "url", "url": url}}
    raise InvalidRequestError(f"{where}: an image URL must be a data: or http(s) URL")


def _data_block(match: re.Match[str], where: str) -> dict[str, Any]:
    """The block for a base64 ``data:`` URL, by its media type.

    Anthropic takes images as ``image`` blocks, PDFs as base64 ``document`` blocks and
    plain text as a ``document`` with a ``text`` source; nothing else (csv, markdown,
    docx…: its documents say to convert those to text first).
    """
    media = match["media"].strip().lower()
    if media == "image/jpg":  # a common misspelling Anthropic refuses; the type is jpeg
        media = "image/jpeg"
    data = match["data"]
    if media.startswith("image/"):
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    if media == "application/pdf":
        source = {"type": "base64", "media_type": media, "data": data}
        return {"type": "document", "source": source}
    if media == "text/plain":
        charset = _CHARSET.search(match["params"] or "")
        encoding = charset["charset"].strip() if charset is not None else "utf-8"
        try:
            text = base64.b64decode(data).decode(encoding)
        except (binascii.Error, ValueError, LookupError):
            raise InvalidRequestError(
                f"{where}: the text/plain data is not base64 text in {encoding}"
            ) from None
        source = {"type": "text", "media_type": "text/plain", "data": text}
        return {"type": "document", "source": source}
    raise InvalidRequestError(
        f"{where}: Anthropic does not accept {media} files: it takes images, PDFs "
        "(application/pdf) and plain text (text/plain); send other files as text"
    )


def _part(part: object, where: str) -> dict[str, Any]:
    """One OpenAI content part as an Anthropic content block (its marker kept)."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, Mapping):
        raise InvalidRequestError(f"{where} is not a content part object")
    kind = part.get("type")
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str):  # never dropped as blank: the key covers it
            raise InvalidRequestError(f"{where}.{kind} must be a string")
        return _with_marker({"type": "text", "text": text}, part)
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        if not isinstance(url, str):
            raise InvalidRequestError(f"{where}: image_url needs a url")
        return _with_marker(_media_block(url, where), part)
    if kind == "file":
        file = part.get("file")
        if not isinstance(file, Mapping):
            raise InvalidRequestError(f"{where}: file needs file_data or file_id")
        if isinstance(file.get("file_data"), str):
            block = _media_block(file["file_data"], where)
        elif isinstance(file.get("file_id"), str):
            block = {"type": "document", "source": {"type": "file", "file_id": file["file_id"]}}
        else:
            raise InvalidRequestError(f"{where}: file needs file_data or file_id")
        if isinstance(file.get("filename"), str) and block["type"] == "document":
            block["title"] = file["filename"]
        return _with_marker(block, part)
    if kind == "input_audio":
        raise InvalidRequestError(f"{where}: Anthropic does not accept audio input")
    return dict(part)  # Anthropic's own block types, and types newer than this adapter


def _content_blocks(content: object, where: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [_part(part, f"{where}.content[{j}]") for j, part in enumerate(content)]
    raise InvalidRequestError(f"{where}.content must be a string or a list of parts")


def _blank(block: Mapping[str, Any]) -> bool:
    """A text block Anthropic refuses: empty or whitespace only."""
    if block.get("type") != "text":
        return False
    text = block.get("text")
    return not isinstance(text, str) or not text.strip()


def _without_blank(blocks: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Any]:
    """``blocks`` without blank text, and the breakpoint of a dropped block that could not
    move to the block before it (``None`` when there was none, or it moved)."""
    kept: list[dict[str, Any]] = []
    stray: Any = None
    for block in blocks:
        if not _blank(block):
            kept.append(block)
            continue
        marker = block.get("cache_control")
        if marker is None:
            continue
        before = kept[-1] if kept else None
        if (
            before is not None
            and before.get("cache_control") is None
            and before.get("type") not in _UNMARKABLE
        ):
            before["cache_control"] = marker
        else:
            stray = marker
    return kept, stray


def _tool_result(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A ``tool`` message as a ``tool_result`` block (blank content is left out: a result
    without ``content`` is Anthropic's empty result)."""
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    if isinstance(content, str):
        if content.strip():
            result["content"] = content
    elif content is not None:
        blocks, stray = _without_blank(_content_blocks(content, where))
        if blocks:
            result["content"] = blocks
        if stray is not None:
            result["cache_control"] = stray
    return result


def _tool_use(call: object, where: str) -> dict[str, Any]:
    function, parsed = function_call(call, where)
    assert isinstance(call, Mapping)  # function_call checked it
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": parsed}


def _messages(messages: Sequence[Any], warnings: list[str]) -> tuple[Any, list[dict[str, Any]]]:
    """(system, messages) of the Anthropic body for OpenAI ``messages``.

    Anthropic refuses blank text blocks ("text content blocks must contain non-whitespace
    text"), a message with no content ("all messages must have non-empty content except
    for the optional final assistant message") and a final assistant message ending in
    whitespace: blank text is dropped (OpenAI histories often carry an empty or a newline
    content next to tool calls), then a message left empty, and a prefill's trailing
    whitespace is cut.
    """
    system: list[dict[str, Any]] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    last: tuple[str, str] | None = None  # (role, where) of the last non-system message
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidRequestError(f"{where} is not an object")
        role = message.get("role")
        content = message.get("content")
        if role in _SYSTEM_ROLES or role == "user":
            blocks = _content_blocks(content, where)
        elif role == "assistant":
            sent = _sent_blocks(message)
            if sent is not None:  # a paused turn sent back as Anthropic gave it
                blocks = sent
            else:
                blocks = [
                    dict(b) for b in message.get("thinking_blocks") or () if isinstance(b, Mapping)
                ]
                blocks += _content_blocks(content, where)
                for j, call in enumerate(message.get("tool_calls") or ()):
                    blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
        elif role == "tool":
            blocks = [_tool_result(message, where)]
        elif role == "function":
            raise InvalidRequestError(f"{where}: role 'function' is not supported; use tools")
        else:
            raise InvalidRequestError(f"{where}: unknown role {role!r}")
        blocks, stray = _without_blank(blocks)
        marker = message.get("cache_control")
        if marker is None:
            marker = stray
        if marker is not None:
            if blocks:
                blocks[-1]["cache_control"] = dict(marker)
            else:
                warnings.append(f"breakpoint at {where} not sent: the message is blank")
        if role in _SYSTEM_ROLES:
            system.extend(blocks)
            continue
        last = (str(role), where)
        if not blocks:
            warnings.append(f"{where} has no content Anthropic accepts (blank text): not sent")
            continue
        turn_role = "assistant" if role == "assistant" else "user"
        if turns and turns[-1][0] == turn_role:
            turns[-1][1].extend(blocks)  # Anthropic wants alternating turns: merge
        else:
            turns.append((turn_role, blocks))
    if last is None:
        return (_compact(system) if system else None), []
    if not turns:
        raise InvalidRequestError("messages: every message is blank (Anthropic refuses those)")
    if last[0] != "assistant" and turns[-1][0] != "user":
        # Dropping it would send the assistant turn before it as a prefill to continue.
        raise InvalidRequestError(
            f"{last[1]}: the last message is blank; Anthropic refuses whitespace-only text"
        )
    final = turns[-1][1][-1]
    text = final.get("text")
    prefill = turns[-1][0] == "assistant" and final.get("type") == "text"
    if prefill and isinstance(text, str) and text != text.rstrip():
        final["text"] = text.rstrip()
        warnings.append(
            f"{last[1]}: trailing whitespace of the final assistant message (a prefill) "
            "not sent: Anthropic refuses it"
        )
    out = [{"role": role, "content": _compact(blocks)} for role, blocks in turns]
    return (_compact(system) if system else None), out


def _sent_blocks(message: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The ``content_blocks`` deja returned with a ``pause_turn`` answer, when this assistant
    message carries them: Anthropic continues a paused turn from its content as it was, in
    order (server tool use next to its result), which ``content``, ``tool_calls`` and
    ``thinking_blocks`` cannot say; ``None`` otherwise."""
    fields = message.get("provider_specific_fields")
    blocks = fields.get("content_blocks") if isinstance(fields, Mapping) else None
    if not isinstance(blocks, list) or not blocks:
        return None
    return [copy.deepcopy(dict(b)) for b in blocks if isinstance(b, Mapping)]


def _compact(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One plain text block goes as a string, the shape a hand-written request has."""
    if len(blocks) == 1 and set(blocks[0]) == {"type", "text"} and blocks[0]["type"] == "text":
        text = blocks[0]["text"]
        if isinstance(text, str):
            return text
    return blocks


def _tools(tools: Sequence[Any], warnings: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise InvalidRequestError(f"tools[{i}] is not an object")
        if tool.get("type") != "function":
            out.append(dict(tool))  # Anthropic's server tools and Anthropic-shaped tools
            continue
        function = tool.get("function")
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidRequestError(f"tools[{i}].function needs a name")
        converted: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            converted["description"] = function["description"]
        converted["input_schema"] = function.get("parameters") or {
            "type": "object",
            "properties": {},
        }
        if function.get("strict"):  # Anthropic's strict tool use: grammar-constrained input
            converted["strict"] = True
        out.append(_with_marker(converted, tool))
    return out


def _tool_choice(choice: object, parallel: object) -> dict[str, Any] | None:
    converted: dict[str, Any] | None
    if choice is None:
        converted = None
    elif choice == "auto":
        converted = {"type": "auto"}
    elif choice == "required":
        converted = {"type": "any"}
    elif choice == "none":
        converted = {"type": "none"}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise InvalidRequestError("tool_choice.function needs a name")
        converted = {"type": "tool", "name": name}
    elif isinstance(choice, Mapping) and choice.get("type") in ("auto", "any", "tool", "none"):
        converted = dict(choice)  # already Anthropic's shape
    else:
        raise InvalidRequestError(f"tool_choice {choice!r} is not supported")
    if parallel is False:
        converted = converted or {"type": "auto"}
        if converted["type"] != "none":
            converted["disable_parallel_tool_use"] = True
    return converted


def _metadata(metadata: object, user: object, warnings: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(metadata, Mapping):
        for key, value in metadata.items():
            if key == "user_id":
                out["user_id"] = value
            else:
                warnings.append(f"metadata.{key} has no Anthropic equivalent: not sent")
    if isinstance(user, str) and user:
        out.setdefault("user_id", user)
    return out
