"""Streams, sans I/O: assemble a stream into one response, replay a response as a stream.

A streamed miss passes through to the caller chunk by chunk while a
:class:`StreamAssembler` builds, from the same chunks, the response the upstream would
have sent without ``stream=true`` (that is what is stored, checked by the admission
policy and served to non-stream callers), plus a compact record of the chunk boundaries.
A streamed hit is turned back into chunks by :func:`replay_chunks`: at the recorded
boundaries when the entry came from a stream, or cut at word boundaries when it came
from a non-stream call. Both OpenAI shapes are handled: ``chat.completion.chunk``
(``/v1/chat/completions``) and ``text_completion`` (``/v1/completions``).

The chunk record keeps what differs from chunk to chunk (the choices' deltas as they
came, logprobs, finish reasons and any provider extras) and leaves out what every chunk
repeats (id, object, created, model, system fingerprint, service tier), what replay
restores by itself (``logprobs: null``, ``finish_reason: null``, empty deltas), OpenAI's
per-chunk ``obfuscation`` padding, and usage, which lives once in the response and is
re-emitted in OpenAI's place (a final ``choices: []`` chunk) only for a caller who asked
for it.

:func:`sse_event`, :data:`SSE_DONE` and :class:`SSEDecoder` convert between chunks and
the server-sent events they travel in. Nothing here does I/O or touches an event loop.
A stream that is not shaped like a chunk stream raises :class:`StreamFormatError`; the
caller passes it on as it came but does not store it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias

import orjson

from deja.errors import DejaError

__all__ = [
    "SSEDecoder",
    "SSEEvent",
    "SSE_DONE",
    "StreamAssembler",
    "StreamFormatError",
    "iter_replay_chunks",
    "own_copy",
    "replay_chunks",
    "sse_event",
]

SSE_DONE = b"data: [DONE]\n\n"
"""The event that ends an OpenAI stream."""

SSEEvent: TypeAlias = dict[str, Any] | Literal["[DONE]"]
"""One decoded server-sent event: a chunk, or the ``[DONE]`` marker."""

_Kind: TypeAlias = Literal["chat.completion", "text_completion"]
_CHAT: Final = "chat.completion"
_CHAT_CHUNK: Final = "chat.completion.chunk"
_TEXT: Final = "text_completion"

# Fields every chunk of one stream repeats; replay takes them from the response.
_ENVELOPE = ("id", "object", "created", "model", "service_tier", "system_fingerprint")
_RESPONSE_KEYS = frozenset({*_ENVELOPE, "choices", "usage"})
# Per-chunk random padding OpenAI adds against length side channels: replaying a stored
# copy protects nothing, so it is neither recorded nor copied into the response.
_PADDING = "obfuscation"
_CHAT_CHOICE_KEYS = frozenset({"index", "delta", "logprobs", "finish_reason"})
_TEXT_CHOICE_KEYS = frozenset({"index", "text", "logprobs", "finish_reason"})
# Inside nested objects (a tool call, its function, audio) these strings arrive in pieces;
# every other field is sent once (some providers repeat ids and names in every delta).
_CONCAT = frozenset({"arguments", "input", "data", "transcript"})
# With any of these, an empty content is reported as null, as in a non-stream response.
_CONTENT_NULL_WITH = ("function_call", "refusal", "audio")
# Replayed pieces: about four tokens of ~4 characters each, cut at word boundaries, so a
# long answer arrives in many small chunks and renders progressively like a live one.
_PIECE_CHARS = 16
_WORD = re.compile(r"\s*\S+|\s+")


class StreamFormatError(DejaError, ValueError):
    """A stream (or SSE payload) that is not shaped like an OpenAI chunk stream.

    Such a stream can still be passed on as it came, but it is never stored.
    """


class _Text(list[str]):
    """Pieces of a string that arrives in deltas, joined once at the end."""

    __slots__ = ()


def _is_index(value: object) -> bool:
    return type(value) is int and value >= 0


def _meaningful(value: object) -> bool:
    # Azure's prompt-filter chunk carries id "", model "" and created 0.
    return value is not None and value != "" and not (type(value) is int and value == 0)


def _merge(target: dict[str, Any], key: str, value: Any, *, concat_all: bool) -> None:
    """Fold one delta field into ``target``.

    Strings are concatenated at the message level (content, reasoning, refusal…) and, in
    nested objects, for the fields in ``_CONCAT``; any other string keeps its first
    non-empty value. Message-level lists (annotations) are extended; objects are merged
    field by field; other values keep the first one seen.
    """
    if value is None:
        return
    current = target.get(key)
    if isinstance(value, str):
        if concat_all or key in _CONCAT:
            if current is None:
                target[key] = _Text((value,))
            elif isinstance(current, _Text):
                current.append(value)
            else:
                raise StreamFormatError(f"delta field {key!r} changed type mid-stream")
        elif not current:
            target[key] = value
    elif isinstance(value, Mapping):
        if current is None:
            current = target[key] = {}
        elif type(current) is not dict:
            raise StreamFormatError(f"delta field {key!r} changed type mid-stream")
        for sub_key, sub_value in value.items():
            _merge(current, sub_key, sub_value, concat_all=False)
    elif isinstance(value, list):
        if current is None:
            target[key] = list(value)
        elif concat_all:
            if type(current) is not list:
                raise StreamFormatError(f"delta field {key!r} changed type mid-stream")
            current.extend(value)
    elif current is None:
        target[key] = value
    elif isinstance(current, (_Text, list, dict)):
        raise StreamFormatError(f"delta field {key!r} changed type mid-stream")


def _finalize(value: Any) -> Any:
    """A fresh copy of an accumulated value, with string pieces joined."""
    if isinstance(value, _Text):
        return "".join(value)
    if type(value) is dict:
        return {key: _finalize(item) for key, item in value.items()}
    if type(value) is list:
        return list(value)
    return value


def _merge_logprobs(target: dict[str, Any], logprobs: Mapping[str, Any]) -> None:
    # Both shapes are lists per field: chat {"content": [...], "refusal": [...]}, legacy
    # {"tokens": [...], "token_logprobs": [...], "top_logprobs": [...], "text_offset": [...]}.
    for key, value in logprobs.items():
        current = target.get(key)
        if isinstance(value, list):
            if current is None:
                target[key] = list(value)
            elif type(current) is list:
                current.extend(value)
            else:
                raise StreamFormatError(f"logprobs field {key!r} changed type mid-stream")
        elif type(current) is list and value is not None:
            raise StreamFormatError(f"logprobs field {key!r} changed type mid-stream")
        elif current is None:
            target[key] = value


class _Choice:
    """What one choice (one ``index``) of a stream has said so far."""

    __slots__ = (
        "extras",
        "finish_reason",
        "index",
        "last_tool",
        "logprobs",
        "role",
        "tool_at",
        "tool_calls",
        "values",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.role: Any = None
        self.values: dict[str, Any] = {}
        # a call's place: (its index in the stream, how many calls that index held before),
        # so that calls sharing one index stay apart, in the order they came
        self.tool_calls: dict[tuple[int, int], dict[str, Any]] = {}
        self.tool_at: dict[int, tuple[int, int]] = {}  # the call an index names now
        self.last_tool: tuple[int, int] | None = None
        self.logprobs: dict[str, Any] | None = None
        self.finish_reason: Any = None
        # provider fields of the choice (Azure's content_filter_results, vLLM's
        # stop_reason): the last value that says something, else the first
        self.extras: dict[str, Any] = {}

    def add_extra(self, key: str, value: Any) -> None:
        if key not in self.extras or (value is not None and value not in ("", {}, [])):
            self.extras[key] = value

    def add_delta(self, delta: Mapping[str, Any]) -> None:
        for key, value in delta.items():
            if value is None:
                continue
            if key == "role":
                if self.role is None:  # sent in the first delta only, or repeated
                    self.role = value
            elif key == "tool_calls":
                self._add_tool_calls(value)
            else:
                _merge(self.values, key, value, concat_all=True)

    def add_text(self, text: object) -> None:
        if text is None:
            return
        if not isinstance(text, str):
            raise StreamFormatError("a text_completion choice's text is not a string")
        _merge(self.values, "text", text, concat_all=True)

    def add_logprobs(self, logprobs: object) -> None:
        if logprobs is None:
            return
        if not isinstance(logprobs, Mapping):
            raise StreamFormatError("a choice's logprobs is not an object")
        if self.logprobs is None:
            self.logprobs = {}
        _merge_logprobs(self.logprobs, logprobs)

    def _add_tool_calls(self, calls: object) -> None:
        if not isinstance(calls, list):
            raise StreamFormatError("delta tool_calls is not a list")
        for call in calls:
            if not isinstance(call, Mapping):
                raise StreamFormatError("a tool call delta is not an object")
            index = call.get("index")
            if index is None:
                place = self._unindexed_tool(call.get("id"))
            elif not _is_index(index):
                raise StreamFormatError(f"tool call index {index!r} is not an integer")
            else:
                place = self._indexed_tool(index, call.get("id"))
            self.last_tool = place
            state = self.tool_calls.setdefault(place, {})
            for key, value in call.items():
                if key != "index":
                    _merge(state, key, value, concat_all=False)

    def _indexed_tool(self, index: int, call_id: object) -> tuple[int, int]:
        # Some OpenAI-compatible servers (Ollama, SGLang) send every parallel call at index
        # 0, told apart by id only: another id at an index starts another call there (its
        # arguments merged into the first's were one call of invalid JSON).
        place = self.tool_at.get(index)
        if place is None:
            place = (index, 0)
        elif call_id and self.tool_calls[place].get("id") not in (None, call_id):
            place = (index, place[1] + 1)
        self.tool_at[index] = place
        return place

    def _unindexed_tool(self, call_id: object) -> tuple[int, int]:
        # Some OpenAI-compatible servers omit the index: a new id starts a new call, and a
        # delta without an id continues the call before it.
        if call_id:
            for place, state in self.tool_calls.items():
                if state.get("id") == call_id:
                    return place
            index = max((place[0] for place in self.tool_calls), default=-1) + 1
            return self._indexed_tool(index, call_id)
        return self.last_tool or self._indexed_tool(0, None)

    def message(self) -> dict[str, Any]:
        values = {key: _finalize(value) for key, value in self.values.items()}
        content = values.pop("content", None)
        tool_calls = [_tool_call(self.tool_calls[i]) for i in sorted(self.tool_calls)]
        if content == "" and (
            tool_calls or any(values.get(key) is not None for key in _CONTENT_NULL_WITH)
        ):
            content = None  # a non-stream tool-call or refusal answer has content: null
        message: dict[str, Any] = {"role": self.role or "assistant", "content": content}
        message.update(values)
        if tool_calls:
            message["tool_calls"] = tool_calls
        return message

    def logprobs_out(self) -> dict[str, Any] | None:
        if self.logprobs is None:
            return None
        return {key: _finalize(value) for key, value in self.logprobs.items()}


def _tool_call(state: dict[str, Any]) -> dict[str, Any]:
    call: dict[str, Any] = {}
    if "id" in state:
        call["id"] = state["id"]
    call["type"] = state.get("type") or "function"
    for key, value in state.items():
        if key not in ("id", "type"):
            call[key] = _finalize(value)
    function = call.get("function")
    if type(function) is dict and "arguments" not in function:
        function["arguments"] = ""  # a call with no arguments still has the field
    return call


class StreamAssembler:
    """Builds, chunk by chunk, the non-stream response equal to a stream.

    Feed every chunk (a parsed ``chat.completion.chunk`` or streamed ``text_completion``)
    to :meth:`add` as it passes through to the caller. Afterwards, :meth:`response` is the
    response the same answer has without ``stream=true``, :attr:`complete` says whether
    every choice finished, and :meth:`chunks` is the compact record of the chunk boundaries
    that :func:`replay_chunks` turns back into the same stream.

    Tolerated, because real servers send them: chunks with no choices (the usage chunk,
    Azure's prompt-filter chunk), usage on the last content chunk, deltas that omit fields
    or set them to null, the role in the first delta only, tool call ids and types that
    repeat or come late, ``reasoning_content`` (DeepSeek, vLLM) and ``reasoning`` (newer
    vLLM, OpenRouter) — each kept under the name it came with. A chunk that is not shaped
    like a chunk raises :class:`StreamFormatError`, after which :attr:`complete` is false.

    What it records is its own: a chunk may be changed after :meth:`add` (by a caller that
    accumulates tool-call arguments in place) without changing what is stored.
    """

    def __init__(self) -> None:
        self._kind: _Kind | None = None
        self._first: dict[str, Any] = {}
        self._envelope: dict[str, Any] = {}
        self._extras: dict[str, Any] = {}
        self._usage: Any = None
        self._choices: dict[int, _Choice] = {}
        self._records: list[dict[str, Any]] = []
        self._failed = False

    def add(self, chunk: Mapping[str, Any]) -> None:
        """Take the next chunk of the stream."""
        try:
            self._add(chunk)
        except StreamFormatError:
            self._failed = True
            raise

    def _add(self, chunk: object) -> None:
        if not isinstance(chunk, Mapping):
            raise StreamFormatError(f"a stream chunk is a {type(chunk).__name__}, not an object")
        choices = chunk.get("choices")
        if choices is None:
            choices = []
        elif not isinstance(choices, list):
            raise StreamFormatError("a stream chunk's choices is not a list")
        for choice in choices:
            if not isinstance(choice, Mapping):
                raise StreamFormatError("a stream chunk's choice is not an object")
        kind = self._detect_kind(chunk, choices)

        record: dict[str, Any] = {}
        for key in _ENVELOPE:
            if key in chunk:
                value = chunk[key]
                record[key] = value  # kept until chunks() knows whether it differs
                if key == "object":
                    continue
                self._first.setdefault(key, value)
                if key not in self._envelope and _meaningful(value):
                    self._envelope[key] = value
        for key, value in chunk.items():
            if key in _RESPONSE_KEYS or key == _PADDING:
                continue
            kept = record[key] = own_copy(value)
            if kept is not None:
                self._extras.setdefault(key, kept)
        usage = chunk.get("usage")
        if usage is not None:
            self._usage = own_copy(usage)

        recorded = []
        for position, choice in enumerate(choices):
            index = choice.get("index", position)
            if not _is_index(index):
                raise StreamFormatError(f"choice index {index!r} is not an integer")
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = _Choice(index)
            entry: dict[str, Any] = {"index": index}
            if kind == _CHAT:
                delta = choice.get("delta")
                if delta is not None and not isinstance(delta, Mapping):
                    raise StreamFormatError("a choice's delta is not an object")
                if delta:
                    state.add_delta(delta)
                    # Verbatim, nulls included: SDKs expose a provider's extra fields as
                    # attributes only when present (DeepSeek clients read
                    # delta.reasoning_content on every chunk, null or not).
                    entry["delta"] = _owned(delta)
                known = _CHAT_CHOICE_KEYS
            else:
                text = choice.get("text")
                state.add_text(text)
                if text:
                    entry["text"] = text
                known = _TEXT_CHOICE_KEYS
            logprobs = choice.get("logprobs")
            state.add_logprobs(logprobs)
            if logprobs is not None:
                entry["logprobs"] = own_copy(logprobs)
            finish_reason = choice.get("finish_reason")
            if finish_reason is not None:
                state.finish_reason = finish_reason
                entry["finish_reason"] = finish_reason
            for key, value in choice.items():
                if key not in known:  # provider extras, e.g. Azure's content_filter_results
                    kept = entry[key] = own_copy(value)
                    state.add_extra(key, kept)
            recorded.append(entry)
        if recorded:
            record["choices"] = recorded
        self._records.append(record)

    def _detect_kind(self, chunk: Mapping[str, Any], choices: list[Mapping[str, Any]]) -> _Kind:
        declared = chunk.get("object")
        kind: _Kind | None = None
        if declared == _CHAT_CHUNK:
            kind = _CHAT
        elif declared == _TEXT:
            kind = _TEXT
        elif choices:
            kind = _TEXT if "text" in choices[0] and "delta" not in choices[0] else _CHAT
        if kind is None:
            return self._kind or _CHAT
        if self._kind is None:
            self._kind = kind
        elif kind != self._kind:
            raise StreamFormatError(f"a {kind} chunk in a {self._kind} stream")
        return kind

    @property
    def kind(self) -> _Kind:
        """The response object the stream assembles into (chat unless it said otherwise)."""
        return self._kind or _CHAT

    @property
    def complete(self) -> bool:
        """True when at least one choice came and every choice has a finish_reason.

        A stream that was cut, cancelled, reported an error or was malformed is not
        complete, and must not be stored.
        """
        return (
            not self._failed
            and self._extras.get("error") is None
            and bool(self._choices)
            and all(
                isinstance(choice.finish_reason, str) and choice.finish_reason
                for choice in self._choices.values()
            )
        )

    @property
    def finish_reasons(self) -> dict[int, str | None]:
        """Each choice's finish_reason by index (None: not finished), in index order."""
        return {
            index: self._choices[index].finish_reason or None for index in sorted(self._choices)
        }

    def _envelope_value(self, key: str) -> Any:
        return self._envelope.get(key, self._first.get(key))

    def response(self) -> dict[str, Any]:
        """The non-stream response equal to the chunks so far (a fresh object each call).

        A choice's provider fields (Azure's ``content_filter_results``) are in its choice,
        as a non-stream answer has them: the last value that says something (not null nor
        empty), else the first one.
        """
        kind = self.kind
        response: dict[str, Any] = {
            "id": self._envelope_value("id"),
            "object": kind,
            "created": self._envelope_value("created"),
            "model": self._envelope_value("model"),
        }
        for key in ("service_tier", "system_fingerprint"):
            if key in self._first:
                response[key] = self._envelope_value(key)
        choices = []
        for index in sorted(self._choices):
            state = self._choices[index]
            if kind == _CHAT:
                choice: dict[str, Any] = {"index": index, "message": state.message()}
            else:
                text = _finalize(state.values.get("text"))
                choice = {"text": text or "", "index": index}
            choice["logprobs"] = state.logprobs_out()
            choice["finish_reason"] = state.finish_reason
            for key, value in state.extras.items():  # as a non-stream answer has them
                if key not in choice:
                    choice[key] = own_copy(value)
            choices.append(choice)
        response["choices"] = choices
        if self._usage is not None:
            response["usage"] = self._usage
        response.update(self._extras)
        return response

    def chunks(self) -> list[dict[str, Any]]:
        """The chunk boundaries, compact, for :func:`replay_chunks` (JSON-serializable).

        Each record keeps a chunk's choices (``index``, the ``delta`` or ``text`` as it
        came when not empty, ``logprobs`` and ``finish_reason`` when not null, provider
        extras) and its extra top-level fields; the fields every chunk repeats are kept
        only where a chunk differs from the response. Chunks that carry nothing else (the
        usage chunk) are left out: usage is re-emitted from the response.
        """
        expected = {
            "id": self._envelope_value("id"),
            "object": _TEXT if self.kind == _TEXT else _CHAT_CHUNK,
            "created": self._envelope_value("created"),
            "model": self._envelope_value("model"),
            "service_tier": self._envelope_value("service_tier"),
            "system_fingerprint": self._envelope_value("system_fingerprint"),
        }
        records = []
        for record in self._records:
            compact = {
                key: value
                for key, value in record.items()
                if key not in expected or value != expected[key]
            }
            if compact:
                records.append(compact)
        return records


def replay_chunks(
    response: Mapping[str, Any],
    chunks: Sequence[Mapping[str, Any]] | None,
    *,
    include_usage: bool,
) -> list[dict[str, Any]]:
    """The chunks to send a ``stream=true`` caller whose request hit ``response``.

    ``chunks`` is the record from :meth:`StreamAssembler.chunks` when the entry came from
    a stream (the replay has the same boundaries, deltas and finish reasons); ``None``
    when it came from a non-stream call, in which case a stream is synthesized: per
    choice a role chunk, reasoning, content cut at word boundaries, refusal and tool calls
    in OpenAI's delta form, then a finish chunk. Id, created, model, system fingerprint
    and service tier come from ``response``.

    Usage follows the caller's ``stream_options.include_usage``, whatever the original
    stream asked: with it, every chunk carries ``"usage": null`` and a last chunk with
    ``choices: []`` carries the response's usage; without it, no chunk has a usage field.
    """
    return list(iter_replay_chunks(response, chunks, include_usage=include_usage))


def iter_replay_chunks(
    response: Mapping[str, Any],
    chunks: Sequence[Mapping[str, Any]] | None,
    *,
    include_usage: bool,
) -> Iterator[dict[str, Any]]:
    """:func:`replay_chunks`, made one at a time as they are read: the first goes out
    before the others are built (a 2,000-chunk answer's first chunk waited ~4 ms for all
    of them). The record's shape is checked first (:class:`StreamFormatError` here, not
    halfway through the replay)."""
    if not isinstance(response, Mapping):
        raise StreamFormatError("the response to replay is not an object")
    text = response.get("object") == _TEXT
    envelope: dict[str, Any] = {
        "id": response.get("id"),
        "object": _TEXT if text else _CHAT_CHUNK,
        "created": response.get("created"),
        "model": response.get("model"),
    }
    for key in ("service_tier", "system_fingerprint"):
        if key in response:
            envelope[key] = response[key]
    records = _synthesize(response, text=text) if chunks is None else chunks
    for record in records:
        if not isinstance(record, Mapping):
            raise StreamFormatError("a recorded chunk is not an object")
        choices = record.get("choices")
        if choices is not None and not isinstance(choices, list):
            raise StreamFormatError("a recorded chunk's choices is not a list")
        for choice in choices or ():
            if not isinstance(choice, Mapping):
                raise StreamFormatError("a recorded choice is not an object")
            if not text and not isinstance(choice.get("delta") or {}, Mapping):
                raise StreamFormatError("a recorded delta is not an object")
    return _replayed(response, records, envelope, text=text, include_usage=include_usage)


def _replayed(
    response: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    envelope: dict[str, Any],
    *,
    text: bool,
    include_usage: bool,
) -> Iterator[dict[str, Any]]:
    for record in records:
        chunk = dict(envelope)
        for key in _ENVELOPE:
            if key in record:
                chunk[key] = record[key]
        chunk["choices"] = [
            _replay_choice(choice, position, text=text)
            for position, choice in enumerate(record.get("choices") or ())
        ]
        for key, value in record.items():
            if key not in _RESPONSE_KEYS:
                chunk[key] = own_copy(value)
        if include_usage:
            chunk["usage"] = None
        yield chunk
    usage = response.get("usage")
    if include_usage and usage is not None:
        yield {**envelope, "choices": [], "usage": own_copy(usage)}


def _replay_choice(record: Mapping[str, Any], position: int, *, text: bool) -> dict[str, Any]:
    """A recorded choice as a chunk's (its shape checked by :func:`iter_replay_chunks`)."""
    index = record.get("index", position)
    if text:
        choice: dict[str, Any] = {"text": record.get("text") or "", "index": index}
        known = _TEXT_CHOICE_KEYS
    else:
        choice = {"index": index, "delta": _owned(record.get("delta") or {})}
        known = _CHAT_CHOICE_KEYS
    choice["logprobs"] = own_copy(record.get("logprobs"))
    choice["finish_reason"] = record.get("finish_reason")
    for key, value in record.items():
        if key not in known:
            choice[key] = own_copy(value)
    return choice


def own_copy(value: Any) -> Any:
    """``value`` itself when immutable, else a deep copy: what a stream hands out or records
    must not be shared with what it keeps (a caller may change the chunks it receives)."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:  # not JSON (a caller's own Cache.stream source): copied all the same
        return copy.deepcopy(value)


def _owned(delta: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``delta`` that shares no list or object with it."""
    return {key: own_copy(value) for key, value in delta.items()}


def _pieces(text: str) -> list[str]:
    """``text`` cut into pieces of about ``_PIECE_CHARS`` at word boundaries.

    A run without spaces (code, URLs, CJK) longer than a piece is cut inside. The pieces
    join back to ``text`` exactly; an empty text has no pieces.
    """
    pieces: list[str] = []
    current = ""
    for match in _WORD.finditer(text):
        word = match.group()
        if current and len(current) + len(word) > _PIECE_CHARS:
            pieces.append(current)
            current = ""
        while len(word) > _PIECE_CHARS:
            pieces.append(word[:_PIECE_CHARS])
            word = word[_PIECE_CHARS:]
        current += word
    if current:
        pieces.append(current)
    return pieces


def _string_pieces(value: str) -> list[str]:
    # An empty string is still sent once, so that the field is there after assembly.
    return _pieces(value) or [""]


def _synthesize(response: Mapping[str, Any], *, text: bool) -> list[dict[str, Any]]:
    """Chunk records for a response that was never streamed."""
    choices = response.get("choices")
    if not isinstance(choices, list):
        raise StreamFormatError("the response to replay has no choices list")
    records: list[dict[str, Any]] = []
    extras = {
        key: value
        for key, value in response.items()
        if key not in _RESPONSE_KEYS and value is not None
    }
    if extras:  # provider fields go first, as Azure sends its prompt filter results
        records.append(extras)
    for position, choice in enumerate(choices):
        if not isinstance(choice, Mapping):
            raise StreamFormatError("a choice of the response to replay is not an object")
        index = choice.get("index", position)
        if text:
            entries, leftover = _text_records(choice, index)
        else:
            message = choice.get("message") or {}
            if not isinstance(message, Mapping):
                raise StreamFormatError("a message of the response to replay is not an object")
            entries, leftover = _chat_records(message, choice.get("logprobs"), index)
        records.extend({"choices": [entry]} for entry in entries)
        finish: dict[str, Any] = {"index": index}
        if leftover is not None:
            finish["logprobs"] = leftover  # no content chunk to carry them
        if choice.get("finish_reason") is not None:
            finish["finish_reason"] = choice["finish_reason"]
        if len(finish) > 1:
            records.append({"choices": [finish]})
    return records


def _text_records(choice: Mapping[str, Any], index: int) -> tuple[list[dict[str, Any]], Any]:
    """A text_completion choice's text chunks, and logprobs no chunk carries."""
    value = choice.get("text")
    text = value if isinstance(value, str) else ""
    entries: list[dict[str, Any]] = [{"index": index, "text": piece} for piece in _pieces(text)]
    logprobs = choice.get("logprobs")
    if logprobs is not None and entries:
        entries[0]["logprobs"] = logprobs
        logprobs = None
    return entries, logprobs


def _chat_records(
    message: Mapping[str, Any], logprobs: Any, index: int
) -> tuple[list[dict[str, Any]], Any]:
    """A chat choice's delta chunks, and logprobs no chunk carries."""
    entries: list[dict[str, Any]] = []

    def send(delta: dict[str, Any], chunk_logprobs: Any = None) -> None:
        entry: dict[str, Any] = {"index": index, "delta": delta}
        if chunk_logprobs is not None:
            entry["logprobs"] = chunk_logprobs
        entries.append(entry)

    content = message.get("content")
    content_null = bool(message.get("tool_calls")) or any(
        message.get(key) is not None for key in _CONTENT_NULL_WITH
    )
    first: dict[str, Any] = {"role": message.get("role") or "assistant"}
    if content is not None and not isinstance(content, str):
        first["content"] = content  # content parts cannot be cut; they go whole
    elif isinstance(content, str):
        first["content"] = ""
    elif content_null:
        first["content"] = None  # as OpenAI streams a tool call's or a refusal's first delta
    send(first)

    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str):
            for piece in _string_pieces(value):
                send({key: piece})

    pending = logprobs
    if isinstance(content, str) and content:
        tokens = _aligned_tokens(content, logprobs)
        if tokens is not None:
            # One chunk per token with its own logprobs, as OpenAI streams them.
            others = {key: value for key, value in logprobs.items() if key != "content"}
            for entry in tokens:
                send({"content": entry["token"]}, {"content": [entry], **others})
        else:
            for position, piece in enumerate(_pieces(content)):
                send({"content": piece}, logprobs if position == 0 else None)
        pending = None

    for key, value in message.items():
        if value is None or key in ("role", "content", "reasoning_content", "reasoning"):
            continue
        if key == "tool_calls" and isinstance(value, list):
            for position, call in enumerate(value):
                for delta in _object_deltas(call):
                    send({"tool_calls": [{"index": position, **delta}]})
        elif key == "function_call" and isinstance(value, Mapping):
            for delta in _object_deltas(value):
                send({"function_call": delta})
        elif isinstance(value, str):
            for piece in _string_pieces(value):
                send({key: piece})
        else:
            send({key: value})  # audio, annotations, provider extras: whole, once

    return entries, pending


def _aligned_tokens(content: str, logprobs: Any) -> list[Mapping[str, Any]] | None:
    """The content logprob entries, if they spell ``content`` token by token."""
    if not isinstance(logprobs, Mapping):
        return None
    entries = logprobs.get("content")
    if not isinstance(entries, list) or not entries:
        return None
    if any(value is not None for key, value in logprobs.items() if key != "content"):
        return None
    if not all(isinstance(e, Mapping) and isinstance(e.get("token"), str) for e in entries):
        return None
    if "".join(e["token"] for e in entries) != content:
        return None  # tokens that split a UTF-8 character do not spell the text
    return entries


def _object_deltas(value: object) -> list[dict[str, Any]]:
    """A tool call (or legacy function call) as OpenAI streams it.

    The first delta has everything with the arguments empty, the next ones the
    arguments in pieces.
    """
    if not isinstance(value, Mapping):
        raise StreamFormatError("a tool call of the response to replay is not an object")
    first: dict[str, Any] = {}
    rest: list[dict[str, Any]] = []
    for key, item in value.items():
        if isinstance(item, Mapping):
            head = dict(item)
            for sub_key in ("arguments", "input"):
                pieces = head.get(sub_key)
                if isinstance(pieces, str):
                    head[sub_key] = ""
                    rest.extend({key: {sub_key: piece}} for piece in _pieces(pieces))
            first[key] = head
        elif key in ("arguments", "input") and isinstance(item, str):
            first[key] = ""
            rest.extend({key: piece} for piece in _pieces(item))
        else:
            first[key] = item
    return [first, *rest]


def sse_event(chunk: Mapping[str, Any]) -> bytes:
    """``chunk`` as one server-sent event: ``data: <json>`` and a blank line."""
    return b"data: " + orjson.dumps(chunk if type(chunk) is dict else dict(chunk)) + b"\n\n"


_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    """Incremental server-sent-events decoder for OpenAI-style streams.

    :meth:`feed` takes bytes as they arrive, however the network cut them, and returns
    the events completed so far: each ``data:`` payload parsed as a JSON object, or the
    string ``"[DONE]"``. Lines may end in ``\\n``, ``\\r\\n`` or ``\\r``; comment lines
    (``: keep-alive``) and other fields (``event:``, ``id:``, ``retry:``) are skipped;
    several ``data:`` lines in one event are joined with newlines, as the SSE standard
    says. A payload that is not a JSON object raises :class:`StreamFormatError`.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._skip_lf = False  # the last read ended in "\r", which may be half of "\r\n"
        self._at_start = True

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Decode the next bytes of the stream; return the events they complete."""
        buffer = self._buffer + bytes(data)
        position = 0
        if self._skip_lf and buffer:
            self._skip_lf = False
            if buffer[:1] == b"\n":
                position = 1
        if self._at_start:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer  # maybe the start of a byte order mark
                return []
            self._at_start = False
            if buffer.startswith(_BOM):
                position = len(_BOM)
        events: list[SSEEvent] = []
        for match in _LINE_END.finditer(buffer, position):
            self._line(buffer[position : match.start()], events)
            position = match.end()
            self._skip_lf = match.group() == b"\r" and position == len(buffer)
        self._buffer = buffer[position:]
        return events

    def flush(self) -> list[SSEEvent]:
        """At the end of the stream: the last event, if the server left off its blank line."""
        events: list[SSEEvent] = []
        if self._buffer:
            self._line(self._buffer, events)
            self._buffer = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                payload = b"\n".join(self._data)
                self._data = []
                if payload:
                    events.append(_parse_event(payload))
            return
        if line[:1] == b":":
            return  # a comment, e.g. ": keep-alive" or ": OPENROUTER PROCESSING"
        field, _, value = line.partition(b":")
        if field == b"data":
            self._data.append(value[1:] if value[:1] == b" " else value)


def _parse_event(payload: bytes) -> SSEEvent:
    if payload == b"[DONE]":
        return "[DONE]"
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        # The message names the position, never the payload (it may hold a prompt).
        raise StreamFormatError(f"SSE data of {len(payload)} bytes is not JSON: {exc}") from exc
    if type(value) is not dict:
        raise StreamFormatError(f"SSE data is a JSON {type(value).__name__}, not an object")
    return value
