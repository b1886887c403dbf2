"""The arguments of an official ``openai`` SDK call, read for the cache (shared by the
async wrapper and its generated sync twin, see :func:`deja.wrap`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from deja.errors import InvalidRequestError, UpstreamTimeoutError

__all__ = [
    "keyed_api_base",
    "raw_response_defaults",
    "required",
    "sdk_dump",
    "split_call",
    "wants_http_response",
]

# SDK call options that are not request fields
_SDK_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})

# The headers the SDK's `with_raw_response` / `with_streaming_response` wrappers add to
# `extra_headers` before calling `create` (openai/_constants.py): with either, the SDK returns
# its `LegacyAPIResponse` / `APIResponse` (or another class) instead of the parsed model.
_RAW_RESPONSE_HEADER = "x-stainless-raw-response"  # any non-empty value; matched in any case
_OVERRIDE_CAST_TO_HEADER = "____stainless_override_cast_to"  # popped by exact name


# The call arguments the SDK types as iterables (``Iterable[...]``, ``SequenceNotStr``), and
# the message fields it does: a caller may pass a generator for any of them.
_ITERABLE_ARGS = ("messages", "tools", "functions", "stop", "modalities", "input")
_ITERABLE_MESSAGE_FIELDS = ("content", "tool_calls")


def split_call(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """(kwargs for the SDK without deja's controls, request fields for the key, controls):
    deja's controls ride in ``extra_body`` (``cache``, and LiteLLM's ``caching`` switch).

    Iterables the SDK accepts where deja wants a sequence (``messages=(m for m in M)``) are
    made lists first, once: a generator can be read only once, and the key and the SDK
    call must see the same items.
    """
    kwargs = _with_lists(kwargs)
    extra_body = dict(kwargs.get("extra_body") or {})
    control = extra_body.pop("cache", None)
    if "caching" in extra_body:  # LiteLLM's per-call switch, as deja.Client takes it
        from deja.controls import caching_switch, merge, parse_controls

        control = merge(parse_controls(control), caching_switch(extra_body.pop("caching")))
    sdk_kwargs = dict(kwargs)
    if extra_body:
        sdk_kwargs["extra_body"] = extra_body
    else:
        sdk_kwargs.pop("extra_body", None)
    fields = {k: v for k, v in kwargs.items() if k not in _SDK_OPTIONS and not _not_given(v)}
    fields.update(extra_body)  # sent upstream as body fields, so they are keyed like them
    return sdk_kwargs, fields, control


def _with_lists(kwargs: dict[str, Any]) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for name in _ITERABLE_ARGS:
        value = kwargs.get(name)
        if value is None or type(value) is str:
            continue
        listed = _listed(value)
        if name == "messages" and type(listed) is list:
            listed = _listed_messages(listed)
        elif name == "input" and type(listed) is list and _nested(listed):
            items = [_listed(item) for item in listed]  # Iterable[Iterable[int]]
            if any(a is not b for a, b in zip(items, listed, strict=True)):
                listed = items
        if listed is not value:
            changed[name] = listed
    return {**kwargs, **changed} if changed else kwargs


def _nested(items: list[Any]) -> bool:
    # strings or token ids (thousands of them) have no inner items to look at
    return bool(items) and type(items[0]) is not str and type(items[0]) is not int


def _listed(value: Any) -> Any:
    """``value`` as a list when it is an iterable but not a sequence (a generator, a map, a
    set...), else as it is (a string, a mapping or a model object stays one)."""
    if (
        type(value) is list
        or isinstance(value, (str, bytes, bytearray, Mapping, Sequence))
        or not isinstance(value, Iterable)
        or callable(getattr(value, "model_dump", None))  # pydantic models iterate their fields
    ):
        return value
    return list(value)


def _listed_messages(messages: list[Any]) -> list[Any]:
    out = messages
    for i, message in enumerate(messages):
        if type(message) is not dict and not isinstance(message, Mapping):
            continue  # an SDK model object: its fields are lists already
        copy = None
        for field in _ITERABLE_MESSAGE_FIELDS:
            value = message.get(field)
            t = type(value)
            if t is str or t is list or value is None:  # the common cases, at once
                continue
            listed = _listed(value)
            if listed is not value:
                copy = copy if copy is not None else dict(message)
                copy[field] = listed
        if copy is not None:
            out = out if out is not messages else list(messages)
            out[i] = copy
    return out


def wants_http_response(default_headers: Mapping[str, Any], kwargs: Mapping[str, Any]) -> bool:
    """Whether the SDK is asked for its HTTP response object rather than the parsed model:
    ``with_raw_response`` / ``with_streaming_response`` (or the same headers given by hand, on
    the call or the client). Headers merge as the SDK merges them: case-insensitively, the
    call's over the client's, an ``openai.omit`` value removing one."""
    extra = kwargs.get("extra_headers")
    extra = extra if isinstance(extra, Mapping) else {}
    if _OVERRIDE_CAST_TO_HEADER in extra and not _not_given(extra[_OVERRIDE_CAST_TO_HEADER]):
        return True
    raw: Any = None
    for headers in (default_headers, extra):
        for name, value in headers.items():
            if str(name).lower() == _RAW_RESPONSE_HEADER:
                raw = None if _not_given(value) else value
    return bool(raw)


def raw_response_defaults(default_headers: Mapping[str, Any]) -> dict[str, Any]:
    """The one client default header :func:`wants_http_response` reads (the others are not
    kept: they may hold credentials)."""
    return {k: v for k, v in default_headers.items() if str(k).lower() == _RAW_RESPONSE_HEADER}


def keyed_api_base(api_base: str, default_query: Mapping[str, Any], extra_query: Any) -> str:
    """``api_base`` with the query string the SDK adds to the request URL (the client's
    ``default_query``, e.g. Azure's ``api-version``, then the call's ``extra_query``). It
    reaches the upstream and may change the answer, so it is keyed as part of the endpoint,
    like a query written into the base URL; credential parameters are dropped from keys as
    usual (:func:`deja.request.normalize_api_base`)."""
    extra = extra_query if isinstance(extra_query, Mapping) else {}
    query = {k: v for k, v in {**default_query, **extra}.items() if not _not_given(v)}
    if not query:
        return api_base
    parts = urlsplit(api_base)
    merged = dict(parse_qsl(parts.query, keep_blank_values=True))
    merged.update((str(k), _query_value(v)) for k, v in query.items())
    return urlunsplit(parts._replace(query=urlencode(sorted(merged.items()))))


def _query_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _not_given(value: Any) -> bool:
    """The SDK's "not given" markers (``openai.NOT_GIVEN``, ``openai.omit``): the SDK sends
    nothing for them, so nothing is keyed."""
    return type(value).__name__ in ("NotGiven", "Omit")


def required(fields: dict[str, Any], name: str) -> Any:
    if name not in fields:
        raise InvalidRequestError(f"'{name}' is required")
    return fields.pop(name)


def sdk_dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
    return data


MAX_RETRY_AFTER = 60.0
"""The longest ``Retry-After`` pause a client honours (seconds)."""


def call_patience(seconds: float, retries: int) -> float:
    """How long a call may take: ``retries`` more attempts of ``seconds`` each, after pauses
    a ``Retry-After`` may make up to :data:`MAX_RETRY_AFTER` each (how long it waits for an
    identical call in flight)."""
    return seconds * (retries + 1) + retries * MAX_RETRY_AFTER


def sdk_patience(
    call_kwargs: Mapping[str, Any], client_timeout: Any, max_retries: Any
) -> float | None:
    """:func:`call_patience` of an SDK call: its ``timeout`` (absent or the SDK's "not
    given": its client's; ``None``: no bound), ``max_retries`` of its client."""
    timeout = call_kwargs.get("timeout", client_timeout)
    if _not_given(timeout):
        timeout = client_timeout
    seconds = _seconds_of(timeout)
    if seconds is None:
        return None
    retries = max_retries if isinstance(max_retries, int) and max_retries >= 0 else 2
    return call_patience(seconds, retries)


class SdkTimeout(UpstreamTimeoutError):
    """An SDK's own timeout error (``original``), carried through the cache's single-flight
    as the timeout it is: callers who allowed more time ask again, the others get it."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def _seconds_of(timeout: Any) -> float | None:
    """A number of seconds, or an ``httpx.Timeout``'s longest phase (``None``: unbounded)."""
    if isinstance(timeout, bool):
        return None
    if isinstance(timeout, (int, float)):
        return float(timeout) if timeout > 0 else None
    phases = [getattr(timeout, name, None) for name in ("connect", "read", "write", "pool")]
    numbers = [float(p) for p in phases if isinstance(p, (int, float))]
    if not numbers or any(p is None for p in phases):
        return None
    return max(numbers)
