"""The entry codec and the pure caching rules."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import deja
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
    assert decode(encode(entry, compress_min_bytes=0 if compress else 10**9)).to_entry() == entry


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
    assert decode(encode(entry)).to_entry() == entry


def test_compression_above_threshold() -> None:
    entry = Entry(response={"text": "a" * 10_000}, created=0.0, expires=None, model="m")
    small = encode(entry, compress_min_bytes=4096)
    assert small[:4] == b"DJ\x01\x01" and len(small) < 1000
    assert decode(small).response == entry.response
    assert encode(entry, compress_min_bytes=10**6)[:4] == b"DJ\x01\x00"


def _valid() -> bytes:
    return encode(Entry(response={"id": "x"}, created=1.0, expires=None, model="m"))


def _with_body(body: bytes, *, meta_len: int, flags: int = 0, version: int = 1) -> bytes:
    data = struct.pack("<2sBBdddqI", b"DJ", version, flags, 1.0, 0.0, 0.0, 0, meta_len) + body
    return data + struct.pack("<I", zlib.crc32(data))


@given(st.binary(max_size=300))
def test_crc_residue(message: bytes) -> None:
    # the property decode relies on: CRC-32 over a message and its own CRC is constant
    assert zlib.crc32(message + struct.pack("<I", zlib.crc32(message))) == 0x2144DF1C


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"DJ\x01\x00short",
        _valid()[:-3],  # truncated
        _valid()[:-1] + b"!",  # one byte changed: checksum mismatch
        _valid().replace(b"DJ\x01", b"DJ\x09", 1),  # unknown version
        _valid().replace(b"DJ\x01\x00", b"DJ\x01\x04", 1),  # unknown flag
        _with_body(b"not zlib", meta_len=0, flags=1),
        _with_body(b"{}{}", meta_len=10),
        "not bytes",
        12345,
    ],
    ids=lambda d: repr(d)[:30],
)
def test_undecodable(data: object) -> None:
    with pytest.raises(EntryDecodeError):
        decode(data)  # type: ignore[arg-type]


def test_lazy_parts_reject_non_objects() -> None:
    stored = decode(_with_body(b"{}[1]", meta_len=2))
    with pytest.raises(EntryDecodeError):
        stored.parse_response()


def test_hit_fields_need_no_json_parsing() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    entry = Entry(
        response={"id": "x"}, created=5.0, expires=9.0, model="m", usage=usage, cost_usd=0.25
    )
    stored = decode(encode(entry))
    assert (stored.created, stored.expires, stored.cost_usd, stored.total_tokens) == (
        5.0,
        9.0,
        0.25,
        7,
    )
    assert stored.response_bytes == orjson.dumps({"id": "x"})
    assert stored.parse_response() is not stored.parse_response()  # private copies


def test_unknown_meta_fields_of_the_same_version_are_tolerated() -> None:
    meta = orjson.dumps({"model": "m", "future_field": [1, 2]})
    stored = decode(_with_body(meta + b"{}", meta_len=len(meta)))
    assert stored.response == {} and stored.model == "m"


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


def test_an_entry_of_a_newer_deja_is_a_miss_left_in_place(tmp_path: Path) -> None:
    """Two deja versions share a store during a rolling upgrade: neither deletes the
    other's entries, nor counts them as store failures (which would open the breaker)."""
    import diskcache

    import deja
    from deja.entry import FORMAT_VERSION, encode
    from deja.stores import DiskStore
    from tests.helpers import chat_request, chat_response

    cache = deja.Cache()
    key = cache.key(chat_request())
    newer = bytearray(encode(Entry(response=chat_response(), created=1.0, expires=None, model="m")))
    newer[2] = FORMAT_VERSION + 1  # the format byte after the magic
    cache.store.set(key, bytes(newer), None)
    with pytest.raises(deja.EntryVersionError):
        decode(bytes(newer))
    assert cache.get(chat_request()).info.status == "miss"
    assert cache.store.get(key) == bytes(newer)  # still there for the newer deja
    assert cache.stats().store_errors == 0

    store = DiskStore(tmp_path)
    disk = deja.Cache(store=store)
    disk.put(chat_request("mine"), chat_response())
    raw = diskcache.Cache(str(tmp_path))
    for i in range(6):  # values framed by a newer DiskStore
        raw.set(disk.key(chat_request(f"theirs {i}")), struct.pack("<Bd", 2, 0.0) + b"payload")
    raw.close()
    assert [disk.get(chat_request(f"theirs {i}")).info.status for i in range(6)] == ["miss"] * 6
    assert disk.get(chat_request("mine")).info.status == "hit"  # the breaker stayed closed
    assert disk.stats().store_errors == 0


@pytest.mark.parametrize("finish", ["insufficient_system_resource", "abort", "error"])
def test_an_answer_an_older_deja_stored_cut_off_is_not_served(finish: str) -> None:
    """0.6.0 stored answers a server cut off itself; after the upgrade they were served for
    their whole TTL (a rolling upgrade's older nodes went on storing them). An entry made
    before this release's admission rules is admitted again when read."""
    from deja.policy import ADMISSION_RULES_SINCE
    from deja.stores.memory import MemoryStore

    store = MemoryStore()
    cache = deja.Cache(store=store)
    request = deja.Request.chat(
        model="deepseek/deepseek-chat", messages=[{"role": "user", "content": "Explain TCP"}]
    )
    cut = {
        "id": "x",
        "object": "chat.completion",
        "model": "deepseek-chat",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "TCP is a"},
                "finish_reason": finish,
            }
        ],
    }
    for created, served in (
        (ADMISSION_RULES_SINCE - 3600, False),
        (ADMISSION_RULES_SINCE + 1, True),
    ):
        entry = Entry(response=cut, created=created, expires=None, model="deepseek/deepseek-chat")
        store.set(cache.key(request), encode(entry), None)
        found = cache.get(request)
        # (one stored since was admitted when stored: not parsed again on every read)
        assert (found.entry is not None) is served, (created, found.info.status)
