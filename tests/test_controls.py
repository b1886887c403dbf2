"""Per-request cache options: LiteLLM's names, aliases, types, and the HTTP header."""

from __future__ import annotations

from typing import Any

import pytest

import deja
from deja.controls import DEFAULT_CONTROL, CacheControl, from_header, merge, parse_controls
from deja.errors import ControlError
from deja.stores.base import MAX_TTL, validate_ttl
from deja.stores.memory import MemoryStore


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (None, DEFAULT_CONTROL),
        ({}, DEFAULT_CONTROL),
        ({"no-cache": True}, CacheControl(no_cache=True)),
        ({"no_cache": True}, CacheControl(no_cache=True)),
        ({"no-store": True}, CacheControl(no_store=True)),
        ({"use-cache": False}, CacheControl(no_cache=True, no_store=True)),
        ({"use-cache": True}, CacheControl(opted_in=True)),
        ({"ttl": 600}, CacheControl(ttl=600.0)),
        ({"s-maxage": 0}, CacheControl(s_maxage=0.0)),
        ({"s-max-age": 60}, CacheControl(s_maxage=60.0)),
        ({"s_maxage": 1.5}, CacheControl(s_maxage=1.5)),
        ({"namespace": "faq-v2"}, CacheControl(namespace="faq-v2")),
        ({"tags": ["a", "b", "a"]}, CacheControl(tags=("a", "b"))),
        ({"tags": ["t"] * 40 + ["u"]}, CacheControl(tags=("t", "u"))),  # counted once each
        ({"semantic": False}, CacheControl(semantic=False)),
        ({"similarity_threshold": 0.9}, CacheControl(similarity_threshold=0.9)),
        ({"similarity-threshold": 1}, CacheControl(similarity_threshold=1.0)),
    ],
)
def test_parse(options: dict[str, Any] | None, expected: CacheControl) -> None:
    assert parse_controls(options) == expected


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"nocache": True}, "nocache"),
        ({"no-cache": "yes"}, "no-cache"),
        ({"no-store": 1}, "no-store"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": -5}, "ttl"),
        ({"ttl": "600"}, "ttl"),
        ({"ttl": True}, "ttl"),
        ({"ttl": float("inf")}, "ttl"),
        ({"s-maxage": -1}, "s-maxage"),
        ({"namespace": ""}, "namespace"),
        ({"namespace": 5}, "namespace"),
        ({"namespace": "a\nb"}, "namespace"),
        ({"tags": "one"}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"tags": [f"t{i}" for i in range(33)]}, "tags"),  # each tag is a record to keep
        ({"semantic": "false"}, "semantic"),
        ({"similarity_threshold": 1.2}, "similarity_threshold"),
        ({"similarity_threshold": -0.1}, "similarity_threshold"),
        ({"similarity_threshold": float("nan")}, "similarity_threshold"),
        ({"similarity_threshold": "0.9"}, "similarity_threshold"),
        ({"similarity-threshold": True}, "similarity-threshold"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, Any], option: str) -> None:
    with pytest.raises(ControlError) as err:
        parse_controls(options)
    assert err.value.option == option
    assert option in str(err.value)


def test_not_an_object() -> None:
    with pytest.raises(ControlError):
        parse_controls(["no-cache"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, DEFAULT_CONTROL),
        ("", DEFAULT_CONTROL),
        ("no-cache", CacheControl(no_cache=True)),
        ("No-Store", CacheControl(no_store=True)),
        ("max-age=60", CacheControl(s_maxage=60.0)),
        ('max-age="30", no-store', CacheControl(s_maxage=30.0, no_store=True)),
        ("private, must-revalidate", DEFAULT_CONTROL),  # unknown directives are ignored
    ],
)
def test_header(header: str | None, expected: CacheControl) -> None:
    assert from_header(header) == expected


def test_bad_header_max_age() -> None:
    with pytest.raises(ControlError, match="max-age"):
        from_header("max-age=soon")


def test_merge_takes_the_stricter() -> None:
    header = from_header("no-store, max-age=60")
    body = parse_controls({"s-maxage": 300, "ttl": 10, "namespace": "n", "tags": ["t"]})
    merged = merge(header, body)
    assert merged == CacheControl(
        no_store=True, ttl=10.0, s_maxage=60.0, namespace="n", tags=("t",)
    )
    strict = parse_controls({"similarity_threshold": 0.95})
    loose = parse_controls({"similarity_threshold": 0.9})
    assert merge(strict, loose).similarity_threshold == 0.95
    assert merge(loose, strict).similarity_threshold == 0.95


@pytest.mark.parametrize("value", ["²", "¹²", "٣", "1²", "\uff16\uff10"])
def test_header_max_age_takes_ascii_digits_only(value: str) -> None:
    # str.isdigit() takes these; float() refuses some ("²"): a ValueError was a 500
    with pytest.raises(ControlError, match="whole number of seconds") as err:
        from_header(f"max-age={value}")
    assert err.value.option == "max-age"


def test_ttl_is_at_most_100_years() -> None:
    assert MAX_TTL == 100 * 365.25 * 86400
    assert parse_controls({"ttl": MAX_TTL}).ttl == MAX_TTL
    with pytest.raises(ControlError, match=r"at most 3155760000 seconds \(100 years\)") as err:
        parse_controls({"ttl": 1e16})  # Redis refuses it: a store error on every write
    assert err.value.option == "ttl"
    assert "leave it out" in str(err.value)


def test_validate_ttl_is_at_most_100_years() -> None:
    assert validate_ttl(MAX_TTL) == MAX_TTL
    with pytest.raises(ValueError, match="give no ttl \\(None\\) for entries that never expire"):
        validate_ttl(1e16)
    with pytest.raises(ValueError, match="at most"):
        deja.Cache(ttl=MAX_TTL * 2)
    with pytest.raises(ValueError, match="at most"):
        MemoryStore().set("k", b"v", 1e16)


def test_a_huge_request_ttl_never_reaches_the_store() -> None:
    cache = deja.Cache()
    request = deja.Request.chat(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
    answer = {
        "choices": [{"message": {"role": "assistant", "content": "a"}, "finish_reason": "stop"}]
    }
    with pytest.raises(ControlError, match="ttl"):
        cache.fetch(request, lambda: answer, control={"ttl": 1e16})
    assert cache.stats().store_errors == 0


def test_a_max_age_given_twice_keeps_the_stricter() -> None:
    """RFC 9111 never lets a later, laxer duplicate win: a caller asking for 1 s must not
    be served a 2 s old entry because 100 s came after."""
    assert from_header("max-age=1, max-age=100").s_maxage == 1
    assert from_header("max-age=100, s-maxage=1").s_maxage == 1
