"""Per-request cache options → :class:`CacheControl` (pure).

Options use LiteLLM's names so existing code keeps working::

    cache={"no-cache": True}          # skip the lookup (still stores the fresh answer)
    cache={"no-store": True}          # do not store this answer
    cache={"ttl": 600}                # store for 600 s (overrides the cache's default)
    cache={"s-maxage": 60}            # accept only entries at most 60 s old
    cache={"namespace": "faq-v2"}     # key into a separate namespace
    cache={"tags": ["doc:42"]}        # tag the stored entry for bulk invalidation
    cache={"semantic": False}         # exact matches only for this request
    cache={"similarity_threshold": 0.92}  # semantic matches only this close, or closer

``similarity_threshold`` can only make the semantic tier stricter for the request: a value
below the tier's own threshold changes nothing (that threshold is the one its false-hit
rate was measured at, with the guards and the verifier behind it).

Aliases: ``use-cache`` (``False`` skips the cache entirely: no lookup, no store;
``True`` opts in where the cache is in LiteLLM's ``default_off`` mode),
``s-max-age``, and the other spelling of each (``no_cache``, ``s_maxage``,
``similarity-threshold``...). Anything else
is a :class:`~deja.errors.ControlError` naming the option. The proxy also reads the HTTP
``Cache-Control`` request header (:func:`from_header`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from deja.errors import ControlError
from deja.stores.base import MAX_TTL

__all__ = [
    "DEFAULT_CONTROL",
    "CacheControl",
    "CacheMode",
    "from_header",
    "caching_switch",
    "in_mode",
    "merge",
    "parse_controls",
]

CacheMode = Literal["default_on", "default_off"]
"""LiteLLM's cache modes: cache every call, or only calls that opt in."""

_MAX_NAME = 256
# Each tag is a record the store keeps and updates per entry (a command on Redis, an object
# on S3): a cap keeps one request from costing thousands of them.
MAX_TAGS = 32


@dataclass(frozen=True, slots=True)
class CacheControl:
    """The cache options of one request. The defaults mean "use the cache normally"."""

    no_cache: bool = False
    no_store: bool = False
    ttl: float | None = None
    s_maxage: float | None = None
    namespace: str | None = None
    tags: tuple[str, ...] = ()
    semantic: bool = True
    similarity_threshold: float | None = None
    # ``use-cache: true``: the request asks for the cache, which a cache in ``default_off``
    # mode gives only to requests that do
    opted_in: bool = False


DEFAULT_CONTROL = CacheControl()

_CANONICAL = {
    "no-cache": "no-cache",
    "no_cache": "no-cache",
    "no-store": "no-store",
    "no_store": "no-store",
    "use-cache": "use-cache",
    "use_cache": "use-cache",
    "ttl": "ttl",
    "s-maxage": "s-maxage",
    "s_maxage": "s-maxage",
    "s-max-age": "s-maxage",
    "s_max_age": "s-maxage",
    "namespace": "namespace",
    "tags": "tags",
    "semantic": "semantic",
    "similarity_threshold": "similarity-threshold",
    "similarity-threshold": "similarity-threshold",
}


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ControlError(
            f"cache option '{name}' must be true or false, got {value!r}", option=name
        )
    return value


def _seconds(name: str, value: Any, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlError(
            f"cache option '{name}' must be a number of seconds, got {value!r}", option=name
        )
    ok = value >= 0 if allow_zero else value > 0
    # (an int past a float's range, 10**400, is no finite number either: no OverflowError)
    if not ok or (isinstance(value, float) and not math.isfinite(value)) or abs(value) > 1e300:
        bound = "non-negative" if allow_zero else "positive"
        raise ControlError(
            f"cache option '{name}' must be a {bound} finite number of seconds, got {value!r}",
            option=name,
        )
    return float(value)


def _ttl(name: str, value: Any) -> float:
    ttl = _seconds(name, value, allow_zero=False)
    if ttl > MAX_TTL:  # a store would refuse it (Redis) or keep it forever anyway
        raise ControlError(
            f"cache option '{name}' must be at most {MAX_TTL:.0f} seconds (100 years), got"
            f" {value!r}; leave it out for the cache's own ttl (a cache made with no ttl"
            " keeps entries until they are deleted)",
            option=name,
        )
    return ttl


def _similarity(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0.0 <= value <= 1.0  # NaN fails this too
    ):
        raise ControlError(
            f"cache option '{name}' must be a cosine similarity between 0 and 1, got {value!r}",
            option=name,
        )
    return float(value)


def _name(option: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME or not value.isprintable():
        raise ControlError(
            f"cache option '{option}' must be a printable string of 1 to {_MAX_NAME}"
            f" characters, got {value!r:.80}",
            option=option,
        )
    return value


def parse_controls(options: Mapping[str, Any] | CacheControl | None) -> CacheControl:
    """Validate per-request options (a dict such as the body's ``cache`` field)."""
    if options is None:
        return DEFAULT_CONTROL
    if isinstance(options, CacheControl):
        return options
    if not isinstance(options, Mapping):
        raise ControlError(
            f"cache options must be an object, got {type(options).__name__}", option="cache"
        )
    fields: dict[str, Any] = {}
    for raw, value in options.items():
        name = _CANONICAL.get(raw) if isinstance(raw, str) else None
        if name is None:
            known = ", ".join(sorted({k for k in _CANONICAL if "_" not in k}))
            raise ControlError(f"unknown cache option {raw!r} (known: {known})", option=str(raw))
        if name == "no-cache":
            fields["no_cache"] = fields.get("no_cache", False) or _bool(raw, value)
        elif name == "no-store":
            fields["no_store"] = fields.get("no_store", False) or _bool(raw, value)
        elif name == "use-cache":
            if _bool(raw, value):
                fields["opted_in"] = True
            else:
                fields["no_cache"] = fields["no_store"] = True
        elif name == "ttl":
            fields["ttl"] = _ttl(raw, value)
        elif name == "s-maxage":
            fields["s_maxage"] = _seconds(raw, value, allow_zero=True)
        elif name == "namespace":
            fields["namespace"] = _name(raw, value)
        elif name == "tags":
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise ControlError(
                    f"cache option '{raw}' must be a list of strings, got {value!r:.80}",
                    option=raw,
                )
            tags = tuple(dict.fromkeys(_name(raw, tag) for tag in value))
            if len(tags) > MAX_TAGS:
                raise ControlError(
                    f"cache option '{raw}' holds {len(tags)} tags; at most {MAX_TAGS}",
                    option=raw,
                )
            fields["tags"] = tags
        elif name == "similarity-threshold":
            fields["similarity_threshold"] = _similarity(raw, value)
        else:  # semantic
            fields["semantic"] = _bool(raw, value)
    return CacheControl(**fields)


def from_header(value: str | None) -> CacheControl:
    """Read an HTTP ``Cache-Control`` request header.

    ``no-cache`` skips the lookup, ``no-store`` skips the write, ``max-age=N`` accepts
    only entries at most N seconds old. Other directives are ignored, as HTTP requires.
    """
    if not value:
        return DEFAULT_CONTROL
    fields: dict[str, Any] = {}
    for directive in value.split(","):
        name, _, arg = directive.strip().partition("=")
        name = name.strip().lower()
        if name == "no-cache":
            fields["no_cache"] = True
        elif name == "no-store":
            fields["no_store"] = True
        elif name in ("max-age", "s-maxage"):
            arg = arg.strip().strip('"')
            # ASCII digits only: str.isdigit() also takes "²" and other digits float() refuses
            if not (arg.isascii() and arg.isdigit()):
                raise ControlError(
                    f"Cache-Control {name} must be a whole number of seconds, got {arg!r:.40}",
                    option=name,
                )
            # given twice ("max-age=1, max-age=100"): the stricter holds, as between the
            # header and the body
            age = float(arg)
            fields["s_maxage"] = min(age, fields.get("s_maxage", age))
    return CacheControl(**fields)


def in_mode(control: CacheControl, mode: CacheMode) -> CacheControl:
    """``control`` as a cache in ``mode`` takes it: in ``default_off`` a request that does
    not opt in (``use-cache: true``) neither reads nor writes the cache."""
    if mode == "default_on" or control.opted_in:
        return control
    return replace(control, no_cache=True, no_store=True)


def caching_switch(value: object) -> CacheControl:
    """LiteLLM's per-call ``caching`` argument as cache options: ``true`` opts in (a cache
    in ``default_off`` mode), ``false`` neither reads nor stores. Never a request field."""
    if not isinstance(value, bool):
        raise ControlError(f"caching must be true or false, got {value!r}", option="caching")
    return parse_controls({"use-cache": True} if value else {"no-cache": True, "no-store": True})


def merge(first: CacheControl, second: CacheControl) -> CacheControl:
    """Combine two sources (e.g. header and body): the stricter wins, ``second`` otherwise."""
    # the common request sets nothing anywhere: defaults change nothing in a merge
    if first is DEFAULT_CONTROL:
        return second
    if second is DEFAULT_CONTROL:
        return first
    ages = [a for a in (first.s_maxage, second.s_maxage) if a is not None]
    floors = [t for t in (first.similarity_threshold, second.similarity_threshold) if t is not None]
    return replace(
        second,
        no_cache=first.no_cache or second.no_cache,
        no_store=first.no_store or second.no_store,
        ttl=second.ttl if second.ttl is not None else first.ttl,
        s_maxage=min(ages) if ages else None,
        namespace=second.namespace if second.namespace is not None else first.namespace,
        tags=tuple(dict.fromkeys(first.tags + second.tags)),
        semantic=first.semantic and second.semantic,
        similarity_threshold=max(floors) if floors else None,
        opted_in=first.opted_in or second.opted_in,
    )
