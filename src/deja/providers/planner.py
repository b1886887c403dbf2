"""Where the provider's prompt-cache breakpoints go: a pure planner over OpenAI requests.

Anthropic (and Claude on Bedrock and Vertex) cache a prompt prefix only up to a block that
carries ``cache_control``, accept at most 4 such blocks, want longer lifetimes first, and
silently cache nothing below a per-model minimum prefix length. LiteLLM's injection hook
drops breakpoints without a word, overruns the limit (Anthropic then rejects the whole
request with a 400) and spends slots on prefixes too short to cache. This module decides
placement up front, names every breakpoint it does not place, and touches no network.

Rules, in order:

1. **The caller's own markers are kept.** ``cache_control`` on a tool, on a message (its
   last block) or on a content part is the caller's decision. If those alone exceed the
   limit, the *last* ones (in prefix order) are kept — they cache the longest prefixes — and
   each dropped one is named. A caller's marker below the model's minimum is still sent
   (a warning says the provider will not cache it).
2. **Injection points** (LiteLLM's ``cache_control_injection_points``) are applied in the
   order listed, earlier points winning, until the limit is reached. A target that already
   has a breakpoint is left alone (the caller's lifetime is kept). Every breakpoint an
   injection point does not place is named in a warning: over the limit, below the minimum
   prefix, or nothing to mark.
3. **Minimum prefix.** An injected breakpoint whose cumulative prefix — tools, then system
   messages, then the other messages, up to and including its block — is estimated below
   ``minimum_tokens`` is not placed.
4. **Longer lifetimes first.** Anthropic rejects a ``"1h"`` breakpoint that comes after a
   ``"5m"`` one; such a breakpoint is downgraded to ``"5m"``, with a warning.
5. **Anthropic's automatic breakpoint** (a top-level ``cache_control``) goes on the
   request's last block, after every other one, and takes one of the slots. Rule 4 applies
   to it too: a ``"1h"`` one after a ``"5m"`` breakpoint is sent as ``"5m"``, with a
   warning. On a last block that already has a breakpoint of another lifetime (Anthropic
   refuses the pair) it is not sent, with a warning: that breakpoint caches the same prefix.

Injection points (each a mapping; unknown keys are an error):

* ``{"location": "message", "role": "system"}`` — every message with that role, in order;
* ``{"location": "message", "index": -1}`` — one message by index (negative from the end;
  with ``role`` too, the message must have that role);
* ``{"location": "message", "last": 2}`` — the last N messages (optionally of ``role``),
  latest first, so that when slots run out the longest prefix is the one cached;
* ``{"location": "tool"}`` — the last tool definition (caching every tool), or
  ``{"location": "tool", "index": 0}``; ``tool_config`` (LiteLLM's Bedrock name) is an alias;
* ``{"location": "message"}`` alone marks nothing, in LiteLLM as here: it is skipped with a
  ``no_target`` warning, not refused (:func:`check_injection_point` tells it apart).

Each may carry LiteLLM's ``control`` (``{"type": "ephemeral", "ttl": "1h"}``) or the
shorthand ``ttl``; the default lifetime is ``"5m"``.

Token counts are estimated, because no tokenizer can be downloaded at run time: about four
characters per token for English, one per character for CJK (:func:`estimate_tokens`), over
the text sent — message text, tool-call names and arguments, tool definitions as JSON — and
:data:`IMAGE_TOKENS` per image or document. Minimums per model are data
(``providers/data/minimum_cacheable_tokens.json``, :func:`minimum_cacheable_tokens`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import Any, Final, Literal, TypeAlias

from deja.errors import InvalidRequestError

__all__ = [
    "ANTHROPIC_BREAKPOINT_LIMIT",
    "IMAGE_TOKENS",
    "Breakpoint",
    "Plan",
    "PlanWarning",
    "Target",
    "TokenEstimator",
    "apply_plan",
    "check_injection_point",
    "estimate_tokens",
    "minimum_cacheable_tokens",
    "plan_breakpoints",
]

TTL: TypeAlias = Literal["5m", "1h"]
TokenEstimator: TypeAlias = Callable[[str], int]
"""Estimates the tokens of a text (the default: :func:`estimate_tokens`)."""

ANTHROPIC_BREAKPOINT_LIMIT: Final = 4
"""Anthropic accepts at most this many ``cache_control`` blocks in one request."""

IMAGE_TOKENS: Final = 1600
"""Estimated tokens of one image or document part: Anthropic's size for a ~1.15-megapixel
image, the largest it keeps unscaled; the size is not known without decoding the image."""

_SYSTEM_ROLES: Final = frozenset({"system", "developer"})
_LAST_BLOCK: Final = 1 << 30  # order of a message's last block, after any content part
_TTLS: Final = ("5m", "1h")
_POINT_KEYS: Final = frozenset({"location", "role", "index", "last", "control", "ttl"})
_LOCATIONS: Final = {"message": "message", "tool": "tool", "tool_config": "tool"}
_MEDIA_PARTS: Final = frozenset({"image_url", "image", "document", "file", "input_audio"})
_NOOP: Final = "marks nothing: a message point needs role, index or last (LiteLLM skips it too)"

WarningKind: TypeAlias = Literal[
    "over_limit", "below_minimum", "no_target", "ttl_downgraded", "merged"
]
# A different minor version after a family prefix ("claude-opus-5" + "-5"): another model.
# "-0" is the alias of the family itself (claude-sonnet-4-0); a date has 8 digits.
_OTHER_VERSION: Final = re.compile(r"-(?!0(?:$|[-@:]))\d{1,2}(?:$|[-@:])")


def estimate_tokens(text: str) -> int:
    """Estimated tokens of ``text``, rounded up: four ASCII characters a token (OpenAI's and
    Anthropic's rule of thumb for English), three a token for the characters UTF-8 writes
    in two bytes (accented Latin, Greek, Cyrillic, Hebrew, Arabic), and a token each for
    those of three or four bytes (CJK, kana, Hangul, Indic and Southeast Asian scripts,
    emoji), which tokenizers trained mostly on English cut a character a token or finer.

    Each figure is about or below what those tokenizers count, so a prefix near a minimum
    is judged short rather than long (a Chinese prompt at four characters a token was
    judged a quarter of its size, and lost its breakpoints). The classes come from the
    UTF-8 length itself, with no loop over the characters: this runs on every message of
    every request.
    """
    length = len(text)
    if text.isascii():
        return (length + 3) // 4
    ascii_chars = len(text.encode("ascii", "ignore"))
    # Every non-ASCII character takes two UTF-8 bytes or more; the bytes beyond two count
    # the characters of three bytes (lone surrogates, which JSON can carry, among them).
    # A four-byte one (an emoji) counts as two of those less a two-byte one: ~1.7 tokens.
    dense = len(text.encode("utf-8", "surrogatepass")) - 2 * length + ascii_chars
    two_byte = length - ascii_chars - dense
    return (3 * ascii_chars + 4 * two_byte + 12 * dense + 11) // 12


@functools.lru_cache(maxsize=1)
def _minimums() -> tuple[int, tuple[tuple[str, int], ...]]:
    """The packaged minimums (read once): the default and (prefix, tokens), longest first."""
    path = files("deja.providers") / "data" / "minimum_cacheable_tokens.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    rows = sorted(document["models"].items(), key=lambda item: -len(item[0]))
    return int(document["default"]), tuple((name, int(tokens)) for name, tokens in rows)


def minimum_cacheable_tokens(model: str) -> int:
    """The fewest prompt tokens ``model`` caches at a breakpoint (Anthropic's documented
    minimums; 1,024 for a model the table does not know).

    Accepts ``anthropic/claude-sonnet-4-5-20250929``, aliases (``claude-sonnet-4-0``), Bedrock
    ids (``us.anthropic.claude-3-5-haiku-20241022-v1:0``) and dotted spellings
    (``claude-3.5-sonnet``): the longest known family prefix wins. A minor version the
    table does not know (``claude-opus-5-5`` next to ``claude-opus-5``) is another model,
    whose minimum may differ: it gets the default, not its family's figure.
    """
    default, rows = _minimums()
    name = model.strip().lower().rsplit("/", 1)[-1]
    start = name.find("claude")
    if start < 0:
        return default
    name = name[start:].replace(".", "-")
    for prefix, tokens in rows:
        rest = name[len(prefix) :]
        if (
            name.startswith(prefix)
            and (not rest or rest[0] in "-@:")
            and _OTHER_VERSION.match(rest) is None
        ):
            return tokens
    return default


@dataclass(frozen=True, slots=True)
class Target:
    """A block of an OpenAI-format request that can carry ``cache_control``.

    ``kind`` ``"tool"``: ``tools[index]``. ``kind`` ``"message"``: ``messages[index]`` —
    its content part ``part``, or with ``part`` ``None`` the message's last block (the
    message-level ``cache_control`` convention, e.g. a string content or a tool call).
    """

    kind: Literal["tool", "message"]
    index: int
    part: int | None = None

    def __str__(self) -> str:
        if self.kind == "tool":
            return f"tools[{self.index}]"
        if self.part is None:
            return f"messages[{self.index}]"
        return f"messages[{self.index}].content[{self.part}]"


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """One placed breakpoint: where, its lifetime, who asked for it, and the
    ``cache_control`` object that goes on the block. ``prefix_tokens`` is the estimated
    cumulative prefix up to and including the block; ``point`` is the index of the
    injection point that placed it (``None``: the caller's own marker)."""

    target: Target
    ttl: TTL
    source: Literal["caller", "injected"]
    control: Mapping[str, Any]
    prefix_tokens: int
    point: int | None = None


@dataclass(frozen=True, slots=True)
class PlanWarning:
    """Something the plan did not do as asked. ``placed`` tells whether the breakpoint is
    still in the request (a TTL downgrade, a caller's marker below the minimum) or not.

    ``kind``: ``over_limit`` (no slot left, or a caller's marker beyond the limit),
    ``below_minimum`` (prefix below the model's minimum), ``no_target`` (an injection point
    that matched nothing markable), ``ttl_downgraded`` (``1h`` after ``5m``), ``merged``
    (the automatic breakpoint not sent: the last block has one of another lifetime, which
    caches the same prefix). ``target`` is ``None`` for the automatic breakpoint.
    """

    kind: WarningKind
    message: str
    target: Target | None = None
    placed: bool = False

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Plan:
    """Where the breakpoints go (in prefix order) and what was not done as asked.

    ``limit`` is the number of block-level breakpoints the plan could place (the provider's
    limit, less the automatic breakpoint's slot). ``automatic`` is the top-level
    ``cache_control`` to send for Anthropic's automatic breakpoint (downgraded to ``"5m"``
    if need be), ``None`` when the request has none or it is not sent.
    """

    breakpoints: tuple[Breakpoint, ...]
    warnings: tuple[PlanWarning, ...]
    limit: int
    minimum_tokens: int
    automatic: Mapping[str, Any] | None = None

    @property
    def not_placed(self) -> dict[str, int]:
        """Breakpoints asked for but not in the request, counted by ``kind`` (for a metric)."""
        counts: dict[str, int] = {}
        for warning in self.warnings:
            if not warning.placed:
                counts[warning.kind] = counts.get(warning.kind, 0) + 1
        return counts


@dataclass(frozen=True, slots=True)
class _Point:
    number: int
    location: Literal["message", "tool"]
    role: str | None
    index: int | None
    last: int | None
    control: dict[str, Any]
    ttl: TTL
    shown: str

    @property
    def noop(self) -> bool:
        """LiteLLM's ``{"location": "message"}`` with no role, index or last: LiteLLM marks
        no message for it, and neither does deja (an error would take the model down for a
        configuration LiteLLM runs)."""
        return (
            self.location == "message"
            and self.role is None
            and self.index is None
            and self.last is None
        )


def _ttl_of(control: Mapping[str, Any], where: str) -> TTL:
    """Validate a ``cache_control`` object; its lifetime (``"5m"`` when absent)."""
    if control.get("type") != "ephemeral":
        raise InvalidRequestError(
            f"cache_control at {where}: type must be 'ephemeral', got {control.get('type')!r}"
        )
    ttl = control.get("ttl", "5m")
    if ttl not in _TTLS:
        raise InvalidRequestError(f"cache_control at {where}: ttl must be '5m' or '1h'")
    return "1h" if ttl == "1h" else "5m"


def _control(value: object, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"cache_control at {where} must be an object")
    _ttl_of(value, where)
    return dict(value)


def check_injection_point(point: object, *, where: str) -> bool:
    """Validate one of LiteLLM's ``cache_control_injection_points`` exactly as
    :func:`plan_breakpoints` reads it, for a configuration checked before any request;
    whether it marks anything. ``False``: LiteLLM's no-op ``{"location": "message"}``
    without role, index or last, which the planner skips with a warning.

    Raises :class:`~deja.errors.InvalidRequestError`, its message naming ``where`` (the
    point's path in the configuration), for a point every request would be refused for.
    """
    return not _parse_point(point, 0, where).noop


def _parse_point(raw: object, number: int, where: str | None = None) -> _Point:
    """Validate injection point ``raw`` (number ``number``); errors name ``where`` (by
    default ``cache_control_injection_points[<number>]``, as the request carries it)."""
    where = where or f"cache_control_injection_points[{number}]"
    if not isinstance(raw, Mapping):
        raise InvalidRequestError(f"{where} must be an object")
    unknown = sorted(set(map(str, raw)) - _POINT_KEYS)
    if unknown:
        raise InvalidRequestError(
            f"{where}: unknown key {unknown[0]!r} (expected {', '.join(sorted(_POINT_KEYS))})"
        )
    location = _LOCATIONS.get(str(raw.get("location")))
    if location is None:
        raise InvalidRequestError(f"{where}.location must be 'message' or 'tool'")
    role = raw.get("role")
    if role is not None and (location != "message" or not isinstance(role, str)):
        raise InvalidRequestError(f"{where}.role must be a role name, for location: message")
    index = raw.get("index")
    if isinstance(index, str):  # LiteLLM accepts "-1" from YAML and query strings
        try:
            index = int(index)
        except ValueError:
            raise InvalidRequestError(f"{where}.index must be an integer") from None
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        raise InvalidRequestError(f"{where}.index must be an integer")
    last = raw.get("last")
    if last is not None and location != "message":
        raise InvalidRequestError(f"{where}.last applies only to location: message")
    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
        raise InvalidRequestError(f"{where}.last must be a positive integer, for messages")
    control = _control(raw.get("control"), f"{where}.control") or {"type": "ephemeral"}
    shorthand = raw.get("ttl")
    if shorthand is not None:
        if shorthand not in _TTLS:
            raise InvalidRequestError(f"{where}.ttl must be '5m' or '1h'")
        if "ttl" in control and control["ttl"] != shorthand:
            raise InvalidRequestError(f"{where}: ttl and control.ttl disagree")
        if shorthand == "1h":
            control["ttl"] = "1h"
    shown = json.dumps(dict(raw), default=str)  # as the caller wrote it, for warnings
    return _Point(
        number=number,
        location="tool" if location == "tool" else "message",
        role=role,
        index=index,
        last=last,
        control=control,
        ttl=_ttl_of(control, where),
        shown=shown,
    )


class _Request:
    """The parts of an OpenAI body the planner reads, validated once."""

    def __init__(self, body: Mapping[str, Any], estimator: TokenEstimator) -> None:
        messages = body.get("messages")
        if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
            raise InvalidRequestError("messages must be a list of message objects")
        tools = body.get("tools") or []
        if not isinstance(tools, Sequence) or isinstance(tools, (str, bytes)):
            raise InvalidRequestError("tools must be a list")
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping):
                raise InvalidRequestError(f"messages[{i}] is not an object")
        self.messages: Sequence[Mapping[str, Any]] = messages
        self.tools: Sequence[Any] = tools
        self._segments = self._measure(estimator)

    def role(self, index: int) -> str:
        return str(self.messages[index].get("role"))

    def canonical(self, target: Target) -> Target:
        """The target of the block itself: a message's last block is its last content part
        when the translated message ends with its content (not for a tool result, whose
        parts sit inside one block, nor for a message that ends with tool calls)."""
        if target.kind != "message" or target.part is not None:
            return target
        message = self.messages[target.index]
        content = message.get("content")
        if (
            isinstance(content, list)
            and content
            and message.get("role") != "tool"
            and not message.get("tool_calls")
        ):
            return Target("message", target.index, len(content) - 1)
        return target

    def last_block(self) -> Target | None:
        """The block Anthropic's automatic breakpoint goes on: the last block of the last
        message that is not a system message (those become the top-level system prompt)."""
        for i in range(len(self.messages) - 1, -1, -1):
            if self.role(i) not in _SYSTEM_ROLES:
                return self.canonical(Target("message", i))
        return None

    def markable(self, target: Target) -> bool:
        """Whether the block exists (an empty message has no block to mark)."""
        if target.kind == "tool":
            return 0 <= target.index < len(self.tools)
        message = self.messages[target.index]
        if target.part is not None:
            content = message.get("content")
            return isinstance(content, list) and 0 <= target.part < len(content)
        content = message.get("content")
        return bool(
            message.get("role") == "tool"
            or message.get("tool_calls")
            or (isinstance(content, str) and content)
            or (isinstance(content, list) and content)
        )

    def order(self, target: Target) -> tuple[int, int, int]:
        """Position in the provider's prefix: tools, then system messages, then the rest."""
        if target.kind == "tool":
            return (0, target.index, 0)
        section = 1 if self.role(target.index) in _SYSTEM_ROLES else 2
        return (section, target.index, _LAST_BLOCK if target.part is None else target.part)

    def prefix_tokens(self, target: Target) -> int:
        """Estimated tokens of the prefix up to and including ``target``'s block."""
        end = self.order(target)
        return sum(tokens for key, tokens in self._segments if key <= end)

    def _measure(self, estimator: TokenEstimator) -> list[tuple[tuple[int, int, int], int]]:
        segments: list[tuple[tuple[int, int, int], int]] = []
        for i, tool in enumerate(self.tools):
            segments.append(((0, i, 0), estimator(_json_without_marker(tool))))
        for i, message in enumerate(self.messages):
            section = 1 if message.get("role") in _SYSTEM_ROLES else 2
            content = message.get("content")
            if isinstance(content, str):
                segments.append(((section, i, 0), estimator(content)))
            elif isinstance(content, list):
                for j, part in enumerate(content):
                    segments.append(((section, i, j), _part_tokens(part, estimator)))
            extra = ""
            for call in message.get("tool_calls") or ():
                if isinstance(call, Mapping):
                    function = call.get("function")
                    if isinstance(function, Mapping):
                        extra += str(function.get("name", "")) + str(function.get("arguments", ""))
            if extra:
                segments.append(((section, i, _LAST_BLOCK - 1), estimator(extra)))
        return segments


def _json_without_marker(value: object) -> str:
    if isinstance(value, Mapping):
        value = {k: v for k, v in value.items() if k != "cache_control"}
    return json.dumps(value, ensure_ascii=False, default=str)


def _part_tokens(part: object, estimator: TokenEstimator) -> int:
    if not isinstance(part, Mapping):
        return estimator(str(part))
    kind = part.get("type")
    if kind == "text":
        return estimator(str(part.get("text") or ""))
    if kind in _MEDIA_PARTS:
        return IMAGE_TOKENS
    return estimator(_json_without_marker(part))


def _caller_markers(request: _Request) -> list[tuple[Target, dict[str, Any]]]:
    """The caller's own ``cache_control`` markers, one per block, validated."""
    found: dict[Target, dict[str, Any]] = {}
    for i, tool in enumerate(request.tools):
        if isinstance(tool, Mapping):
            control = _control(tool.get("cache_control"), f"tools[{i}]")
            if control is not None:
                found[Target("tool", i)] = control
    for i, message in enumerate(request.messages):
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, Mapping):
                    target = Target("message", i, j)
                    control = _control(part.get("cache_control"), str(target))
                    if control is not None:
                        found[target] = control
        control = _control(message.get("cache_control"), f"messages[{i}]")
        if control is not None:
            # On the same block as a part's own marker, the part's marker is the one.
            found.setdefault(request.canonical(Target("message", i)), control)
    return list(found.items())


def _resolve(point: _Point, request: _Request) -> list[Target]:
    """The blocks an injection point asks for, in the order it wants them."""
    if point.location == "tool":
        count = len(request.tools)
        if point.index is None:
            return [Target("tool", count - 1)] if count else []
        index = point.index + count if point.index < 0 else point.index
        return [Target("tool", index)] if 0 <= index < count else []
    count = len(request.messages)
    if point.index is not None:
        index = point.index + count if point.index < 0 else point.index
        if not 0 <= index < count:
            return []
        if point.role is not None and request.role(index) != point.role:
            return []
        return [Target("message", index)]
    indices = [i for i in range(count) if point.role is None or request.role(i) == point.role]
    if point.last is not None:
        indices = indices[-point.last :][::-1]  # latest first: the longest prefix wins a slot
    return [Target("message", i) for i in indices]


def plan_breakpoints(
    body: Mapping[str, Any],
    *,
    injection_points: Sequence[Mapping[str, Any]] = (),
    limit: int = ANTHROPIC_BREAKPOINT_LIMIT,
    minimum_tokens: int = 0,
    estimator: TokenEstimator = estimate_tokens,
    automatic: Mapping[str, Any] | None = None,
    longer_first: bool = True,
) -> Plan:
    """Plan the prompt-cache breakpoints of an OpenAI-format request ``body``.

    ``body`` is read, never changed (its ``messages``, ``tools`` and their
    ``cache_control`` markers); ``injection_points`` are LiteLLM's
    ``cache_control_injection_points`` (see the module docstring), applied in order after
    the caller's markers. ``limit`` is the provider's maximum number of breakpoints and
    ``minimum_tokens`` the model's minimum cacheable prefix (see
    :func:`minimum_cacheable_tokens`). ``automatic`` is Anthropic's automatic breakpoint,
    the body's top-level ``cache_control`` (rule 5; :attr:`Plan.automatic` says what to
    send for it). ``longer_first`` applies rule 4; a provider without that rule passes
    ``False`` (Gemini: the breakpoint that becomes a context cache keeps its own
    lifetime). Raises :class:`~deja.errors.InvalidRequestError` for a malformed injection
    point or ``cache_control`` object.
    """
    if limit < 0 or minimum_tokens < 0:
        raise ValueError("limit and minimum_tokens must be >= 0")
    request = _Request(body, estimator)
    points = [_parse_point(raw, number) for number, raw in enumerate(injection_points)]
    warnings: list[PlanWarning] = []
    auto = _control(automatic, "cache_control (top level)")
    if auto is not None:
        limit = max(limit - 1, 0)  # the automatic breakpoint takes one of the slots

    besides = " besides the automatic one" if auto is not None else ""
    markers = sorted(_caller_markers(request), key=lambda item: request.order(item[0]))
    cut = max(0, len(markers) - limit)
    for target, _ in markers[:cut]:
        warnings.append(
            PlanWarning(
                "over_limit",
                f"caller's cache_control at {target} dropped: the request has "
                f"{len(markers)} and the provider accepts {limit}{besides}; the last "
                f"{limit} are kept",
                target,
            )
        )
    chosen: dict[Target, Breakpoint] = {}
    for target, control in markers[cut:]:
        tokens = request.prefix_tokens(target)
        chosen[target] = Breakpoint(
            target, _ttl_of(control, str(target)), "caller", control, tokens
        )
        if tokens < minimum_tokens:
            warnings.append(
                PlanWarning(
                    "below_minimum",
                    f"caller's cache_control at {target} kept, but its prefix (~{tokens} "
                    f"tokens, estimated) is below the model's minimum of {minimum_tokens}: "
                    "the provider will not cache it",
                    target,
                    placed=True,
                )
            )
    taken = {target for target, _ in markers}  # a dropped caller marker is not re-injected

    for point in points:
        if point.noop:
            warnings.append(
                PlanWarning("no_target", f"injection point #{point.number} {point.shown} {_NOOP}")
            )
            continue
        targets = _resolve(point, request)
        if not targets:
            warnings.append(
                PlanWarning(
                    "no_target", f"injection point #{point.number} {point.shown} matched nothing"
                )
            )
        for wanted in targets:
            target = request.canonical(wanted)
            if target in taken:
                continue  # a breakpoint is there already: the caller's, or an earlier point's
            taken.add(target)
            name = f"injected breakpoint at {target} (injection point #{point.number})"
            if not request.markable(target):
                warnings.append(
                    PlanWarning("no_target", f"{name} not placed: no content to mark", target)
                )
                continue
            tokens = request.prefix_tokens(target)
            if tokens < minimum_tokens:
                warnings.append(
                    PlanWarning(
                        "below_minimum",
                        f"{name} not placed: its prefix (~{tokens} tokens, estimated) is below "
                        f"the model's minimum of {minimum_tokens}",
                        target,
                    )
                )
                continue
            if len(chosen) >= limit:
                warnings.append(
                    PlanWarning(
                        "over_limit",
                        f"{name} not placed: the provider's limit of {limit} breakpoints"
                        f"{besides} is reached",
                        target,
                    )
                )
                continue
            chosen[target] = Breakpoint(
                target, point.ttl, "injected", dict(point.control), tokens, point.number
            )

    placed: list[Breakpoint] = []
    seen_5m = False
    for chosen_one in sorted(chosen.values(), key=lambda b: request.order(b.target)):
        kept = chosen_one
        if chosen_one.ttl == "1h" and seen_5m and longer_first:
            warnings.append(
                PlanWarning(
                    "ttl_downgraded",
                    f"breakpoint at {chosen_one.target} downgraded from ttl 1h to 5m: it "
                    "comes after a 5m breakpoint, and longer lifetimes must come first",
                    chosen_one.target,
                    placed=True,
                )
            )
            kept = replace(chosen_one, ttl="5m", control={**chosen_one.control, "ttl": "5m"})
        seen_5m = seen_5m or kept.ttl == "5m"
        placed.append(kept)
    if auto is not None:
        auto = _automatic(auto, placed, request.last_block(), warnings, longer_first)
    return Plan(tuple(placed), tuple(warnings), limit, minimum_tokens, auto)


def _automatic(
    control: dict[str, Any],
    placed: Sequence[Breakpoint],
    last: Target | None,
    warnings: list[PlanWarning],
    longer_first: bool,
) -> dict[str, Any] | None:
    """Rule 5: the top-level ``cache_control`` to send, or ``None``. The automatic
    breakpoint comes after every placed one, on the last block."""
    ttl = _ttl_of(control, "cache_control (top level)")
    if ttl == "1h" and longer_first and any(b.ttl == "5m" for b in placed):
        warnings.append(
            PlanWarning(
                "ttl_downgraded",
                "automatic cache_control (top level) downgraded from ttl 1h to 5m: it goes "
                "on the last block, after a 5m breakpoint, and longer lifetimes must come "
                "first",
                placed=True,
            )
        )
        control, ttl = {**control, "ttl": "5m"}, "5m"
    there = next((b for b in placed if b.target == last), None)
    if there is not None and there.ttl != ttl:
        warnings.append(
            PlanWarning(
                "merged",
                f"automatic cache_control (top level, ttl {ttl}) not sent: the last block, "
                f"{last}, has a breakpoint with ttl {there.ttl}, which caches the same "
                "prefix (Anthropic refuses two lifetimes on one block)",
                last,
                placed=True,
            )
        )
        return None
    return control


def _without_marker(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if k != "cache_control"}
    return value


def apply_plan(body: Mapping[str, Any], plan: Plan) -> dict[str, Any]:
    """A copy of ``body`` with exactly ``plan``'s breakpoints as ``cache_control`` markers.

    Every marker not in the plan (a dropped caller marker) is removed, downgraded ones are
    rewritten, and ``cache_control_injection_points`` is taken out of the body. A
    message-level breakpoint on a message with list content goes on its last part; on a
    string content, a tool call or a tool result it stays on the message, which the
    adapter puts on the last translated block. ``body`` itself is not changed; ``plan``
    must have been made from it.
    """
    out = {k: v for k, v in body.items() if k != "cache_control_injection_points"}
    messages: list[Any] = []
    for message in body.get("messages") or ():
        copy = _without_marker(message)
        content = copy.get("content") if isinstance(copy, dict) else None
        if isinstance(content, list):
            copy["content"] = [_without_marker(part) for part in content]
        messages.append(copy)
    out["messages"] = messages
    tools = [_without_marker(tool) for tool in body.get("tools") or ()]
    if "tools" in body:
        out["tools"] = tools if body.get("tools") is not None else None
    for breakpoint in plan.breakpoints:
        target, control = breakpoint.target, dict(breakpoint.control)
        if target.kind == "tool":
            tools[target.index]["cache_control"] = control
        elif target.part is None:
            messages[target.index]["cache_control"] = control
        else:
            messages[target.index]["content"][target.part]["cache_control"] = control
    return out
