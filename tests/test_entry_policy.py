"""The entry codec and the pure caching rules."""

from __future__ import annotations

import zlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deja.entry import Entry, decode, encode
from deja.errors import EntryDecodeError
from deja.policy import is_fresh, resolve_ttl

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5), st.booleans())
def test_round_trip(response: dict, compress: bool) -> None:  # type: ignore[type-arg]
    entry = Entry(
        response=response,
        created=1.5,
        expires=None,
        model="openai/gpt-4o",
        tags=("a",),
        cost_usd=0.1,
    )
    assert decode(encode(entry, compress_min_bytes=0 if compress else 10**9)) == entry


def test_all_fields_round_trip() -> None:
    entry = Entry(
        response={"id": "x"},
        created=10.0,
        expires=20.0,
        model="m",
        tenant="t",
        namespace="n",
        tags=("a", "b"),
        usage={"total_tokens": 3},
        cost_usd=0.5,
        chunks=[{"delta": "x"}],
    )
    assert decode(encode(entry)) == entry


def test_compression_above_threshold() -> None:
    entry = Entry(response={"text": "a" * 10_000}, created=0.0, expires=None, model="m")
    small = encode(entry, compress_min_bytes=4096)
    assert small[:4] == b"DJ\x01\x01" and len(small) < 1000
    assert encode(entry, compress_min_bytes=10**6)[:4] == b"DJ\x01\x00"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"DJ\x01\x00{not json",
        b"DJ\x01\x01not zlib",
        b"DJ\x09\x00{}",
        b"DJ\x01\x00[]",
        b'DJ\x01\x00{"response": {}, "model": "m"}',
        b'DJ\x01\x00{"response": [], "model": "m", "created": 1}',
        b'DJ\x01\x00{"response": {}, "model": "m", "created": "1"}',
        b"DJ\x01\x01" + zlib.compress(b"[1]"),
        "not bytes",
    ],
)
def test_undecodable(data: object) -> None:
    with pytest.raises(EntryDecodeError):
        decode(data)  # type: ignore[arg-type]


def test_unknown_fields_of_the_same_version_are_tolerated() -> None:
    doc = {"response": {}, "model": "m", "created": 1, "future_field": [1, 2]}
    assert decode(b"DJ\x01\x00" + orjson.dumps(doc)).response == {}


def test_freshness() -> None:
    assert is_fresh(now=10, created=0, expires=None, max_age=None)
    assert not is_fresh(now=10, created=0, expires=10, max_age=None)
    assert is_fresh(now=9.9, created=0, expires=10, max_age=None)
    assert is_fresh(now=10, created=0, expires=None, max_age=10)
    assert not is_fresh(now=10.1, created=0, expires=None, max_age=10)
    assert is_fresh(now=0, created=5, expires=None, max_age=0)  # clock skew: age never < 0


def test_resolve_ttl() -> None:
    assert resolve_ttl(None, None) is None
    assert resolve_ttl(None, 60.0) == 60.0
    assert resolve_ttl(5.0, 60.0) == 5.0
