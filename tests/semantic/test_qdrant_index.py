"""QdrantIndex specifics (the shared contract runs in test_index_contract.py as "qdrant").

All against qdrant-client's local mode (embedded engine); a server is only reached by URL,
here an unreachable one to check the error translation and the timeout.
"""

from __future__ import annotations

import socket
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_client")

from qdrant_client import QdrantClient, models

from deja.errors import ConfigError, MissingDependencyError, StoreError
from deja.semantic.index import VectorIndex
from deja.semantic.qdrant_index import QdrantIndex, point_id
from deja.testing import FakeClock


def basis(i: int, dim: int = 8) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


@pytest.fixture
def index(clock: FakeClock) -> QdrantIndex:
    return QdrantIndex(path=":memory:", dim=8, clock=clock)


def test_constructor_does_no_io() -> None:
    ix = QdrantIndex(url="http://deja-no-such-host.invalid:6333", dim=8)
    assert isinstance(ix, VectorIndex)
    assert ix.collection == "deja-semantic-8"
    assert ix._client is None


def test_url_and_path_together_are_refused() -> None:
    with pytest.raises(ConfigError):
        QdrantIndex(url="http://localhost:6333", path=":memory:")


def test_scopes_never_cross(index: QdrantIndex) -> None:
    rng = np.random.default_rng(1)
    scopes = ["a", "a/x", "a/y", "b", "ab", "a/x/deep"]
    for s in scopes:
        for i in range(10):
            index.add(f"{s}:{i}", rng.standard_normal(8), scope=s, payload=s)
    for s in scopes:
        found = index.search(rng.standard_normal(8), scope=s, k=50)
        assert len(found) == 10
        assert {n.payload for n in found} == {s}
        assert all(n.id.startswith(f"{s}:") for n in found)
        sims = [n.similarity for n in found]
        assert sims == sorted(sims, reverse=True)
        assert all(-1.0001 <= x <= 1.0001 for x in sims)


def test_expiry_follows_the_injected_clock(index: QdrantIndex, clock: FakeClock) -> None:
    index.add("soon", basis(0), scope="s", expires=clock() + 5)
    index.add("later", basis(0), scope="s", expires=clock() + 50)
    index.add("never", basis(0), scope="s")
    assert {n.id for n in index.search(basis(0), scope="s", k=5)} == {"soon", "later", "never"}
    clock.advance(5)  # expiry time reached: gone (expires > now is what is live)
    assert {n.id for n in index.search(basis(0), scope="s", k=5)} == {"later", "never"}
    assert len(index) == 3  # still stored until purged


def test_purge_expired(index: QdrantIndex, clock: FakeClock) -> None:
    for i in range(5):
        index.add(f"e{i}", basis(i), scope="s", expires=clock() + 10 * (i + 1))
    index.add("never", basis(7), scope="t")
    assert index.purge_expired() == 0
    clock.advance(25)
    assert index.purge_expired() == 2
    assert len(index) == 4
    assert "e0" not in index and "e1" not in index and "e2" in index
    clock.advance(1000)
    assert index.purge_expired() == 3
    assert len(index) == 1
    assert index.search(basis(7), scope="t")[0].id == "never"


def test_remove_scope_is_hierarchical_at_any_depth(index: QdrantIndex) -> None:
    for scope in ["t1", "t1/a", "t1/a/b", "t1/ab", "t10", "t10/a", "t2/t1"]:
        index.add(scope, basis(0), scope=scope)
    assert index.remove_scope("t1/a") == 2  # t1/a and t1/a/b, not t1/ab
    assert "t1/ab" in index and "t1" in index
    assert index.remove_scope("t1") == 2  # t1 and t1/ab, not t10 or t2/t1
    assert {n.id for n in index.search(basis(0), scope="t10/a")} == {"t10/a"}
    assert index.search(basis(0), scope="t2/t1")[0].id == "t2/t1"
    assert index.remove_scope("nothing") == 0
    assert len(index) == 3


def test_points_have_uuid5_ids_and_the_documented_payload(
    clock: FakeClock,
) -> None:
    client = QdrantClient(location=":memory:")
    ix = QdrantIndex(client=client, dim=8, clock=clock)
    ix.add("prompt-1", basis(0), scope="t1/ctx/x", expires=clock() + 9, payload="hello")
    (point,) = client.retrieve("deja-semantic-8", ids=[point_id("prompt-1")])
    assert uuid.UUID(str(point.id)).version == 5
    assert point.payload == {
        "id": "prompt-1",
        "scope": "t1/ctx/x",
        "root": "t1",
        "path": ["t1", "t1/ctx", "t1/ctx/x"],
        "payload": "hello",
        "expires": clock() + 9,
    }


def test_a_collection_per_dimension(clock: FakeClock) -> None:
    client = QdrantClient(location=":memory:")
    small = QdrantIndex(client=client, dim=8, clock=clock, collection="c")
    big = QdrantIndex(client=client, dim=16, clock=clock, collection="c")
    small.add("x", basis(0), scope="s")
    big.add("x", basis(0, dim=16), scope="s")
    big.add("y", basis(1, dim=16), scope="s")
    assert {c.name for c in client.get_collections().collections} == {"c-8", "c-16"}
    assert (len(small), len(big)) == (1, 2)
    assert small.clear() == 1
    assert (len(small), len(big)) == (0, 2)


def test_an_existing_collection_of_another_size_is_refused() -> None:
    client = QdrantClient(location=":memory:")
    client.create_collection(
        "c-8", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
    )
    with pytest.raises(ConfigError, match="4-d"):
        len(QdrantIndex(client=client, dim=8, collection="c"))


def test_local_mode_on_disk_persists(tmp_path: Path, clock: FakeClock) -> None:
    ix = QdrantIndex(path=str(tmp_path / "q"), dim=8, clock=clock)
    ix.add("kept", basis(2), scope="s", payload="p")
    ix.close()
    again = QdrantIndex(path=str(tmp_path / "q"), dim=8, clock=clock)
    assert len(again) == 1
    assert again.search(basis(2), scope="s")[0].payload == "p"
    again.close()


def test_save_and_load_between_modes(tmp_path: Path, clock: FakeClock) -> None:
    ix = QdrantIndex(path=":memory:", dim=8, clock=clock)
    ix.add_many([f"e{i}" for i in range(300)], np.eye(8)[np.arange(300) % 8], scope="s")
    ix.add("t", basis(1), scope="t", expires=clock() + 5, payload="pt")
    ix.save(tmp_path / "dump")
    disk = QdrantIndex(path=str(tmp_path / "q"), dim=8, clock=clock)
    disk.add("stale", basis(0), scope="s")
    disk.load(tmp_path / "dump")
    assert len(disk) == 301 and "stale" not in disk
    assert disk.search(basis(1), scope="t")[0].payload == "pt"
    clock.advance(5)
    assert disk.search(basis(1), scope="t") == []
    with pytest.raises(ConfigError):
        QdrantIndex(path=":memory:", dim=16).load(tmp_path / "dump")
    with pytest.raises(ConfigError):
        disk.load(tmp_path / "nothing-here")
    disk.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_an_unreachable_server_is_a_store_error_within_the_timeout() -> None:
    ix = QdrantIndex(url=f"http://127.0.0.1:{_free_port()}", dim=8, timeout=1.0)
    for call in (
        lambda: ix.add("x", basis(0), scope="s"),
        lambda: ix.search(basis(0), scope="s"),
        lambda: len(ix),
        lambda: ix.remove_scope("s"),
        ix.purge_expired,
    ):
        start = time.monotonic()
        with pytest.raises(StoreError, match=r"127\.0\.0\.1"):
            call()
        assert time.monotonic() - start < 3.0


def test_a_silent_server_times_out_as_a_store_error() -> None:
    # accepts connections but never answers: only the timeout ends the call
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        ix = QdrantIndex(url=f"http://127.0.0.1:{port}", dim=8, timeout=1.0)
        start = time.monotonic()
        with pytest.raises(StoreError):
            ix.search(basis(0), scope="s")
        assert time.monotonic() - start < 3.5


def test_missing_qdrant_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    ix = QdrantIndex(path=":memory:", dim=8)
    with pytest.raises(MissingDependencyError, match=r"deja-llm\[qdrant\]"):
        ix.add("x", basis(0), scope="s")


def test_rejects_bad_vectors_before_any_call(index: QdrantIndex) -> None:
    with pytest.raises(ValueError):
        index.add("x", np.full(8, np.nan), scope="s")
    with pytest.raises(ValueError):
        index.search(basis(0), scope="s", k=0)


def test_expired_points_are_purged_periodically_on_writes() -> None:
    import numpy as np

    from deja.semantic.qdrant_index import QdrantIndex
    from deja.testing import FakeClock

    clock = FakeClock()
    index = QdrantIndex(path=":memory:", dim=4, clock=clock, purge_every=60)
    vector = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    index.add("old", vector, scope="s", expires=clock() + 10)
    clock.advance(11)
    index.add("new", vector, scope="s")
    assert len(index) == 2  # not yet: the purge runs at most every 60 s
    clock.advance(60)
    index.add("newer", vector, scope="s")
    assert len(index) == 2 and [n.id for n in index.search(vector, scope="s", k=5)] != ["old"]


def _two_processes(clock: FakeClock) -> tuple[QdrantClient, QdrantIndex, QdrantIndex]:
    """Two indexes on one collection, each with its own locks, as two processes would be."""
    client = QdrantClient(location=":memory:")
    first = QdrantIndex(client=client, dim=8, clock=clock)
    second = QdrantIndex(client=client, dim=8, clock=clock)
    first.add("x", basis(0), scope="s")
    return client, first, second


def test_a_strike_between_another_reports_read_and_write_is_not_lost(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, first, second = _two_processes(clock)
    real_retrieve = client.retrieve
    raced: list[int | None] = []

    def retrieve(*args: object, **kwargs: object) -> object:
        found = real_retrieve(*args, **kwargs)  # type: ignore[arg-type]
        if not raced and "strikes" in (kwargs.get("with_payload") or []):  # type: ignore[operator]
            raced.append(None)  # the other process reports right after this read
            raced[0] = second.strike("x", 1)
        return found

    monkeypatch.setattr(client, "retrieve", retrieve)
    assert first.strike("x", 1) == 2  # its first write found the count changed: redone on 1
    assert raced == [1]
    assert first.search(basis(0), scope="s", k=1)[0].strikes == 2


def test_a_strike_applied_then_followed_by_another_is_not_redone(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, first, second = _two_processes(clock)
    real_set_payload = client.set_payload
    raced: list[int | None] = []

    def set_payload(*args: object, **kwargs: object) -> object:
        done = real_set_payload(*args, **kwargs)  # type: ignore[arg-type]
        if not raced:
            raced.append(None)  # the other process reports before this one reads back
            raced[0] = second.strike("x", 1)
        return done

    monkeypatch.setattr(client, "set_payload", set_payload)
    assert first.strike("x", 1) == 1
    assert raced == [2]
    assert first.search(basis(0), scope="s", k=1)[0].strikes == 2
    for _ in range(40):  # the token log stays short
        first.strike("x", 1)
    stored = client.retrieve(first.collection, ids=[point_id("x")], with_payload=True)
    assert len(stored[0].payload["strike_log"]) == 32  # type: ignore[index]
    assert first.strike("x", -100) == 0
