"""The contract every store keeps (see deja.stores.base), run against each store in conftest."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deja.stores import LockExtending, Locking, Store, StoreStats, TagIndex
from deja.testing import FakeClock

BAD_TTLS = [0, -1, -0.5, math.nan, math.inf, "60", True, b"1"]


def tags_of(store: Store) -> TagIndex:
    if not isinstance(store, TagIndex):
        pytest.skip(f"{store.name} has no tag index")
    return store


def locks_of(store: Store) -> Locking:
    if not isinstance(store, Locking):
        pytest.skip(f"{store.name} offers no cross-process lock")
    return store


def extending_of(store: Store) -> LockExtending:
    if not isinstance(locks_of(store), LockExtending):
        pytest.skip(f"{store.name} cannot extend its locks")
    assert isinstance(store, LockExtending)
    return store


def stats_of(store: Store) -> StoreStats:
    if not isinstance(store, StoreStats):
        pytest.skip(f"{store.name} reports no usage")
    return store


# -- shape ---------------------------------------------------------------------------------


def test_is_a_store_with_a_name(store: Store) -> None:
    assert isinstance(store, Store)
    assert isinstance(store.name, str)
    assert store.name


# -- get / set / delete --------------------------------------------------------------------


def test_get_missing_is_none(store: Store) -> None:
    assert store.get("nope") is None


def test_set_then_get(store: Store) -> None:
    store.set("k", b"v", None)
    assert store.get("k") == b"v"


def test_overwrite_replaces_value(store: Store) -> None:
    store.set("k", b"old", None)
    store.set("k", b"new", None)
    assert store.get("k") == b"new"


def test_delete_returns_whether_the_key_existed(store: Store) -> None:
    store.set("k", b"v", None)
    assert store.delete("k") is True
    assert store.get("k") is None
    assert store.delete("k") is False
    assert store.delete("never") is False


def test_get_many_keeps_order_and_gives_none_for_missing(store: Store) -> None:
    store.set("a", b"1", None)
    store.set("c", b"3", None)
    assert store.get_many(["c", "missing", "a", "a"]) == [b"3", None, b"1", b"1"]
    assert store.get_many([]) == []


def test_set_many_stores_every_item(store: Store) -> None:
    store.set_many({"a": b"1", "b": b"2"}, None)
    assert store.get_many(["a", "b"]) == [b"1", b"2"]


def test_non_bytes_value_or_non_str_key_is_rejected(store: Store) -> None:
    with pytest.raises(TypeError):
        store.set("k", "text", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.set_many({"j": b"ok", "k": "text"}, None)  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        store.set(b"k", b"v", None)  # type: ignore[arg-type]
    assert store.get_many(["j", "k"]) == [None, None], "set_many checks before storing"


async def test_async_get_set_delete(store: Store) -> None:
    assert await store.aget("k") is None
    await store.aset("k", b"v", None)
    assert await store.aget("k") == b"v"
    await store.aset("k", b"w", None)
    assert await store.aget("k") == b"w"
    assert await store.adelete("k") is True
    assert await store.adelete("k") is False
    assert await store.aget("k") is None


async def test_async_get_many_and_set_many(store: Store) -> None:
    await store.aset_many({"a": b"1", "b": b"2"}, None)
    assert await store.aget_many(["b", "x", "a"]) == [b"2", None, b"1"]


# -- TTL -----------------------------------------------------------------------------------


def test_ttl_expires_by_the_clock(store: Store, clock: FakeClock) -> None:
    store.set("k", b"v", 10)
    clock.advance(9.9)
    assert store.get("k") == b"v"
    clock.advance(0.2)
    assert store.get("k") is None
    assert store.get_many(["k"]) == [None]


def test_expired_key_counts_as_absent_for_delete(store: Store, clock: FakeClock) -> None:
    store.set("k", b"v", 1)
    clock.advance(2)
    assert store.delete("k") is False


def test_set_many_applies_ttl(store: Store, clock: FakeClock) -> None:
    store.set_many({"a": b"1", "b": b"2"}, 5)
    store.set("c", b"3", None)
    clock.advance(6)
    assert store.get_many(["a", "b", "c"]) == [None, None, b"3"]


def test_ttl_none_never_expires(store: Store, clock: FakeClock) -> None:
    store.set("k", b"v", None)
    clock.advance(10 * 365 * 86400)
    assert store.get("k") == b"v"


def test_overwrite_resets_ttl(store: Store, clock: FakeClock) -> None:
    store.set("forever", b"1", 5)
    store.set("forever", b"2", None)
    store.set("later", b"1", 5)
    clock.advance(4)
    store.set("later", b"2", 5)
    clock.advance(4)
    assert store.get("forever") == b"2"
    assert store.get("later") == b"2"


def test_expired_key_can_be_set_again(store: Store, clock: FakeClock) -> None:
    store.set("k", b"old", 1)
    clock.advance(2)
    store.set("k", b"new", 1)
    assert store.get("k") == b"new"


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=repr)
def test_invalid_ttl_is_rejected(store: Store, ttl: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        store.set("k", b"v", ttl)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)):
        store.set_many({"k": b"v"}, ttl)  # type: ignore[arg-type]
    assert store.get("k") is None


async def test_async_ttl(store: Store, clock: FakeClock) -> None:
    await store.aset("a", b"1", 10)
    await store.aset_many({"b": b"2"}, 10)
    await store.aset("c", b"3", None)
    clock.advance(11)
    assert await store.aget("a") is None
    assert await store.aget_many(["a", "b", "c"]) == [None, None, b"3"]
    with pytest.raises(ValueError):
        await store.aset("d", b"4", -1)


# -- clear ---------------------------------------------------------------------------------

CLEAR_KEYS = ["user:1", "user:2", "user:10", "users:1", "user", "use", "x:user:1", "USER:1"]


def test_clear_deletes_exactly_the_prefix(store: Store) -> None:
    for key in CLEAR_KEYS:
        store.set(key, key.encode(), None)
    assert store.clear("user:") == 3
    survivors = {k: store.get(k) for k in CLEAR_KEYS}
    assert {k for k, v in survivors.items() if v is None} == {"user:1", "user:2", "user:10"}
    assert all(survivors[k] == k.encode() for k in CLEAR_KEYS if not k.startswith("user:"))


def test_clear_with_no_match_deletes_nothing(store: Store) -> None:
    store.set("a", b"1", None)
    assert store.clear("b") == 0
    assert store.get("a") == b"1"


def test_clear_empty_prefix_deletes_everything(store: Store) -> None:
    store.set_many({k: b"v" for k in CLEAR_KEYS}, None)
    assert store.clear("") == len(CLEAR_KEYS)
    assert store.get_many(CLEAR_KEYS) == [None] * len(CLEAR_KEYS)


async def test_async_clear(store: Store) -> None:
    await store.aset_many({k: b"v" for k in CLEAR_KEYS}, None)
    assert await store.aclear("use") == 6
    assert await store.aget("x:user:1") == b"v"
    assert await store.aget("USER:1") == b"v"


# -- values and keys -----------------------------------------------------------------------

VALUES = {
    "empty": b"",
    "nul": b"\x00",
    "all-bytes": bytes(range(256)) * 3,
    "not-utf8": b"\xff\xfe\xc3\x28",
    "megabyte": os.urandom(2**20),
}


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_binary_values_round_trip_exactly(store: Store, value: bytes) -> None:
    store.set("k", value, None)
    got = store.get("k")
    assert type(got) is bytes
    assert got == value
    store.set_many({"m": value}, 60)
    assert store.get_many(["m"]) == [value]


def test_empty_value_is_not_a_miss(store: Store) -> None:
    store.set("k", b"", None)
    assert store.get("k") == b""
    assert store.delete("k") is True


async def test_async_large_value(store: Store) -> None:
    value = VALUES["megabyte"]
    await store.aset("big", value, 60)
    assert await store.aget("big") == value


UNICODE_KEYS = ["ключ", "鍵/キー", "emoji-🔑-key", "café", "tab\tand space", "a" * 500]


def test_unicode_keys(store: Store) -> None:
    for i, key in enumerate(UNICODE_KEYS):
        store.set(key, str(i).encode(), None)
    assert store.get_many(UNICODE_KEYS) == [str(i).encode() for i in range(len(UNICODE_KEYS))]
    assert store.get("cafe") is None
    assert store.clear("鍵") == 1
    assert store.delete("ключ") is True


# -- tags ----------------------------------------------------------------------------------


def test_tag_keys_for_and_drop(store: Store) -> None:
    tags = tags_of(store)
    store.set_many({"a": b"1", "b": b"2", "c": b"3"}, None)
    tags.tag("t", ["a", "b"], None)
    tags.tag("u", ["b"], 60)
    assert sorted(tags.keys_for("t")) == ["a", "b"]
    assert tags.keys_for("u") == ["b"]
    assert sorted(tags.drop("t")) == ["a", "b"]
    assert tags.keys_for("t") == []
    assert tags.drop("t") == []
    assert tags.keys_for("u") == ["b"]
    assert store.get("a") == b"1", "drop forgets the tag; it does not delete entries"


def test_tag_accumulates_keys_without_duplicates(store: Store) -> None:
    tags = tags_of(store)
    store.set_many({"a": b"1", "b": b"2", "c": b"3"}, None)
    tags.tag("t", ["a"], 10)
    tags.tag("t", ["b", "a"], 10)
    tags.tag("t", ["c"], None)
    assert sorted(tags.keys_for("t")) == ["a", "b", "c"]


def test_unknown_tag_is_empty(store: Store) -> None:
    tags = tags_of(store)
    assert tags.keys_for("nope") == []
    assert tags.drop("nope") == []


def test_tag_record_lives_at_least_its_ttl(store: Store, clock: FakeClock) -> None:
    tags = tags_of(store)
    store.set("a", b"1", 100)
    tags.tag("t", ["a"], 100)
    store.set("b", b"2", 10)
    tags.tag("t", ["b"], 10)  # a shorter ttl must not shorten the record
    clock.advance(99)
    assert sorted(tags.keys_for("t")) == ["a", "b"]


def test_tag_is_separate_from_data_keys(store: Store) -> None:
    tags = tags_of(store)
    store.set("a", b"1", None)
    tags.tag("a", ["a"], None)
    tags.tag("tag:", ["a"], None)
    assert store.clear("") == 1
    assert store.get("tag:") is None
    assert tags.keys_for("a") == ["a"]


def test_tag_rejects_bad_ttl_and_a_bare_str(store: Store) -> None:
    tags = tags_of(store)
    with pytest.raises(ValueError):
        tags.tag("t", ["a"], 0)
    with pytest.raises(TypeError):
        tags.tag("t", "abc", None)


async def test_async_tags(store: Store) -> None:
    tags = tags_of(store)
    await store.aset_many({"a": b"1", "b": b"2"}, None)
    await tags.atag("t", ["a", "b"], 60)
    assert sorted(await tags.akeys_for("t")) == ["a", "b"]
    assert sorted(await tags.adrop("t")) == ["a", "b"]
    assert await tags.akeys_for("t") == []


# -- locks (cross-process single-flight) ----------------------------------------------------


def test_a_lock_has_one_holder_until_its_token_releases_it(store: Store) -> None:
    locking = locks_of(store)
    token = locking.lock("job:lock", ttl=30)
    assert isinstance(token, str) and token
    assert locking.lock("job:lock", ttl=30) is None, "held"
    other = locking.lock("other:lock", ttl=30)
    assert other is not None and other != token, "each name is its own lock"
    locking.unlock("job:lock", "not-the-holder")
    assert locking.lock("job:lock", ttl=30) is None, "a stranger's token releases nothing"
    locking.unlock("job:lock", token)
    again = locking.lock("job:lock", ttl=30)
    assert again is not None and again != token
    locking.unlock("job:lock", token)  # the earlier holder's token: the new holder keeps it
    assert locking.lock("job:lock", ttl=30) is None


def test_a_lock_expires_by_itself(store: Store, clock: FakeClock) -> None:
    locking = locks_of(store)
    token = locking.lock("job:lock", ttl=10)
    assert token is not None
    clock.advance(9.9)
    assert locking.lock("job:lock", ttl=10) is None
    clock.advance(0.2)  # its holder died: the lock is free after ttl
    taken = locking.lock("job:lock", ttl=10)
    assert taken is not None and taken != token
    locking.unlock("job:lock", token)  # the dead holder's release comes late: no effect
    assert locking.lock("job:lock", ttl=10) is None


def test_a_lock_is_extended_only_by_its_holder(store: Store, clock: FakeClock) -> None:
    locking = extending_of(store)
    token = locking.lock("job:lock", ttl=10)
    assert token is not None
    clock.advance(8)
    assert locking.extend("job:lock", token, ttl=10) is True
    assert locking.extend("job:lock", "not-the-holder", ttl=100) is False
    clock.advance(8)  # 16 s after it was taken, 8 s after it was extended
    assert locking.lock("job:lock", ttl=10) is None
    clock.advance(2.1)
    assert locking.extend("job:lock", token, ttl=10) is False, "expired: nothing to extend"
    assert locking.lock("job:lock", ttl=10) is not None


def test_a_released_lock_cannot_be_extended(store: Store) -> None:
    locking = extending_of(store)
    token = locking.lock("job:lock", ttl=30)
    assert token is not None
    locking.unlock("job:lock", token)
    assert locking.extend("job:lock", token, ttl=30) is False
    assert locking.lock("job:lock", ttl=30) is not None


def test_clear_leaves_the_locks_held(store: Store) -> None:
    locking = locks_of(store)
    assert locking.lock("deja:v1:0123456789abcdef:key:lock", ttl=30) is not None
    store.set("deja:v1:0123456789abcdef:key", b"v", None)
    assert store.clear("") == 1  # the entry, not the lock
    assert locking.lock("deja:v1:0123456789abcdef:key:lock", ttl=30) is None


async def test_async_locks(store: Store) -> None:
    locking = extending_of(store)
    token = await locking.alock("job:lock", ttl=30)
    assert token is not None
    assert await locking.alock("job:lock", ttl=30) is None
    assert locking.lock("job:lock", ttl=30) is None, "one lock, sync or async"
    assert await locking.aextend("job:lock", token, ttl=30) is True
    assert await locking.aextend("job:lock", "not-the-holder", ttl=30) is False
    await locking.aunlock("job:lock", token)
    assert await locking.aextend("job:lock", token, ttl=30) is False
    assert await locking.alock("job:lock", ttl=30) is not None


# -- usage and lifecycle -------------------------------------------------------------------


def test_usage_counts_entries(store: Store) -> None:
    stats = stats_of(store)
    empty = stats.usage()
    assert empty.entries == 0
    assert empty.evictions in (0, None)  # None: the store cannot tell (diskcache)
    store.set_many({"a": b"1" * 100, "b": b"2", "c": b"3"}, None)
    usage = stats.usage()
    assert usage.entries == 3
    assert usage.bytes is None or usage.bytes > 0
    store.delete("a")
    assert stats.usage().entries == 2


def test_close_is_idempotent(store: Store) -> None:
    store.set("k", b"v", None)
    store.close()
    store.close()


async def test_async_close(store: Store) -> None:
    await store.aset("k", b"v", None)
    await store.aclose()
    await store.aclose()


# -- agreement with a dict model -----------------------------------------------------------

MODEL_KEYS = ["a", "b", "ab", "ba", "a:1", "a:2", "ключ"]
KEY = st.sampled_from(MODEL_KEYS)
# (operation, key or prefix, value); only "set" uses the value.
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEY, st.binary(max_size=40)),
        st.tuples(st.sampled_from(["get", "delete", "get_many"]), KEY, st.just(b"")),
        st.tuples(st.just("clear"), st.sampled_from(["a", "a:", "b", "z"]), st.just(b"")),
    ),
    max_size=30,
)


@settings(
    max_examples=60,
    deadline=None,
    # One store serves every example; each example starts by emptying it.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(operations=OPERATIONS)
def test_agrees_with_a_dict(store: Store, operations: list[tuple[str, str, bytes]]) -> None:
    store.clear("")
    model: dict[str, bytes] = {}
    for op, key, value in operations:
        if op == "set":
            store.set(key, value, None)
            model[key] = value
        elif op == "get":
            assert store.get(key) == model.get(key)
        elif op == "delete":
            assert store.delete(key) == (model.pop(key, None) is not None)
        elif op == "get_many":
            keys = [key, "missing", *MODEL_KEYS]
            assert store.get_many(keys) == [model.get(k) for k in keys]
        else:
            doomed = [k for k in model if k.startswith(key)]
            assert store.clear(key) == len(doomed)
            for k in doomed:
                del model[k]
    assert store.get_many(MODEL_KEYS) == [model.get(k) for k in MODEL_KEYS]
