"""QdrantIndex specifics (the shared contract runs in test_index_contract.py as "qdrant").

All against qdrant-client's local mode (embedded engine); a server is only reached by URL,
here an unreachable one to check the error translation and the timeout.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
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
from tests.helpers import free_port
from tests.semantic.conftest import basis


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
        "added": clock(),
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


def test_an_unreachable_server_is_a_store_error_within_the_timeout() -> None:
    ix = QdrantIndex(url=f"http://127.0.0.1:{free_port()}", dim=8, timeout=1.0)
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


def test_a_store_error_names_the_server_without_its_credentials() -> None:
    # the text reaches the logs and the unauthenticated /health/ready
    url = f"http://deja:S3CRET@127.0.0.1:{free_port()}/?api-key=K3Y"
    ix = QdrantIndex(url=url, dim=8, timeout=1.0)
    with pytest.raises(StoreError) as caught:
        ix.search(basis(0), scope="s")
    assert "127.0.0.1" in str(caught.value)
    assert "S3CRET" not in str(caught.value) and "K3Y" not in str(caught.value)


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


# -- save / load: one file, one commit ---------------------------------------------------


def unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


# two states of one index with as many entries (one deleted, another stored): rows that
# belong to the other state still line up one for one with the entries
BEFORE = {"k0": 0, "k1": 1, "k2": 2}
AFTER = {"k0": 0, "k1": 1, "k3": 3}


def _filled(clock: FakeClock, seeds: dict[str, int]) -> QdrantIndex:
    ix = QdrantIndex(path=":memory:", dim=8, clock=clock)
    for id, seed in seeds.items():
        ix.add(id, unit(seed), scope="s", payload=f"prompt of {id}")
    return ix


def _held(ix: QdrantIndex, candidates: dict[str, int]) -> set[str]:
    held = {id for id in candidates if id in ix}
    assert len(ix) == len(held)
    return held


def _assert_paired(ix: QdrantIndex, seeds: dict[str, int]) -> None:
    """Every entry's own vector finds that entry, with its own payload, and nothing else
    is found by a vector of another entry."""
    for id, seed in seeds.items():
        found = ix.search(unit(seed), scope="s", k=1)
        if id in ix:
            assert found[0].id == id and found[0].similarity > 0.999
            assert found[0].payload == f"prompt of {id}"
        else:
            assert not found or found[0].similarity < 0.99


def _npz_names(root: Path) -> set[str]:
    return {name for name in os.listdir(root) if name != "index.lock"}


@pytest.mark.parametrize("failing_rename", [1, 2])
def test_a_save_that_fails_leaves_the_previous_one_whole(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, failing_rename: int
) -> None:
    _filled(clock, BEFORE).save(tmp_path)
    renames: list[object] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        renames.append(dst)
        if len(renames) == failing_rename:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        _filled(clock, AFTER).save(tmp_path)
    monkeypatch.undo()
    loaded = QdrantIndex(path=":memory:", dim=8, clock=clock)
    loaded.load(tmp_path)
    _assert_paired(loaded, BEFORE | AFTER)
    assert _held(loaded, BEFORE | AFTER) == set(BEFORE)
    assert _npz_names(tmp_path) == {"qdrant-index.npz"}  # it removed what it wrote


def test_a_save_killed_before_its_commit_leaves_the_previous_one_whole(
    tmp_path: Path, clock: FakeClock
) -> None:
    _filled(clock, BEFORE).save(tmp_path)
    child = f"""
import os, sys
import onnxruntime  # noqa: F401  (before the rest, as deja imports them)
import numpy as np
from deja.semantic.qdrant_index import QdrantIndex

ix = QdrantIndex(path=":memory:", dim=8)
for id, seed in {AFTER!r}.items():
    v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    ix.add(id, v / np.linalg.norm(v), scope="s", payload=f"prompt of {{id}}")
real_replace = os.replace
def replace(src, dst):
    if os.path.basename(dst) in ("qdrant-index.npz", "index.json"):
        os._exit(9)  # kill -9 with the new vectors written, before the entries are
    real_replace(src, dst)
os.replace = replace
ix.save(sys.argv[1])
"""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path)],
        check=False,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 9, done.stderr
    loaded = QdrantIndex(path=":memory:", dim=8, clock=clock)
    loaded.load(tmp_path)
    assert _held(loaded, BEFORE | AFTER) == set(BEFORE)
    _assert_paired(loaded, BEFORE | AFTER)
    assert len(_npz_names(tmp_path)) == 2  # the killed save's file, never loaded
    _filled(clock, AFTER).save(tmp_path)  # the next save removes it
    assert _npz_names(tmp_path) == {"qdrant-index.npz"}
    loaded.load(tmp_path)
    assert _held(loaded, BEFORE | AFTER) == set(AFTER)
    _assert_paired(loaded, BEFORE | AFTER)


def test_indexes_saving_to_one_directory_at_once_never_mix(
    tmp_path: Path, clock: FakeClock
) -> None:
    # as the workers of `deja serve --workers 2` do, each with its own entries; the last
    # save wins whole, and a load meanwhile always finds one whole save
    first = {f"a{i}": i for i in range(20)}
    second = {f"b{i}": 100 + i for i in range(20)}
    savers = [_filled(clock, first), _filled(clock, second)]
    savers[0].save(tmp_path)
    errors: list[BaseException] = []
    loads: list[set[str]] = []
    start = threading.Barrier(3)

    def saving(ix: QdrantIndex) -> None:
        start.wait()
        for _ in range(25):
            try:
                ix.save(tmp_path)
            except Exception as exc:
                errors.append(exc)

    def loading() -> None:
        reader = QdrantIndex(path=":memory:", dim=8, clock=clock)
        start.wait()
        for _ in range(25):
            try:
                reader.load(tmp_path)
                loads.append(_held(reader, first | second))
                _assert_paired(reader, first | second)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=saving, args=(ix,)) for ix in savers]
    threads.append(threading.Thread(target=loading))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert loads and all(held in (set(first), set(second)) for held in loads)
    assert _npz_names(tmp_path) == {"qdrant-index.npz"}
    last = QdrantIndex(path=":memory:", dim=8, clock=clock)
    last.load(tmp_path)
    assert _held(last, first | second) in (set(first), set(second))
    _assert_paired(last, first | second)


def test_a_save_of_the_earlier_format_is_refused_then_replaced(
    tmp_path: Path, clock: FakeClock
) -> None:
    # the earlier format: index.json beside vectors.npy, renamed into place one after the
    # other, so nothing tells a torn pair from a whole one
    legacy = {
        "format": "deja-qdrant-index",
        "version": 1,
        "dim": 8,
        "metric": "cos",
        "entries": [{"id": "old", "scope": "s", "expires": None, "payload": "p", "strikes": 0}],
    }
    (tmp_path / "index.json").write_text(json.dumps(legacy, separators=(",", ":")))
    np.save(tmp_path / "vectors.npy", unit(7)[None, :])
    ix = _filled(clock, {"kept": 5})
    with pytest.raises(ConfigError, match="older deja"):
        ix.load(tmp_path)
    assert _held(ix, {"kept": 5, "old": 7}) == {"kept"}  # left as it was
    ix.save(tmp_path)
    assert _npz_names(tmp_path) == {"qdrant-index.npz"}


def test_a_save_leaves_an_in_process_index_of_the_directory_alone(
    tmp_path: Path, clock: FakeClock
) -> None:
    from deja.semantic.index import InProcessIndex

    inproc = InProcessIndex(dim=8, clock=clock)
    inproc.add("x", unit(1), scope="s")
    inproc.save(tmp_path)
    before = _npz_names(tmp_path)
    _filled(clock, BEFORE).save(tmp_path)
    assert _npz_names(tmp_path) == before | {"qdrant-index.npz"}
    again = InProcessIndex(dim=8, clock=clock)
    again.load(tmp_path)
    assert "x" in again


def test_a_save_that_does_not_hold_one_vector_per_entry_is_refused(
    tmp_path: Path, clock: FakeClock
) -> None:
    _filled(clock, BEFORE).save(tmp_path)
    saved = tmp_path / "qdrant-index.npz"
    whole = saved.read_bytes()
    with np.load(saved) as data:
        doc, vectors = str(data["doc"]), np.array(data["vectors"])
    ix = _filled(clock, {"kept": 5})
    with saved.open("wb") as f:
        np.savez(f, vectors=vectors[:2], doc=np.array(doc))
    with pytest.raises(ConfigError, match="3 entries"):
        ix.load(tmp_path)
    saved.write_bytes(whole[: len(whole) // 2])  # cut short (a copy, a full disk)
    with pytest.raises(ConfigError, match="unreadable"):
        ix.load(tmp_path)
    rotten = bytearray(whole)  # one bit flipped in the vectors: the zip's CRC tells
    rotten[whole.find(vectors.tobytes()) + 5] ^= 0x10
    saved.write_bytes(rotten)
    with pytest.raises(ConfigError, match="unreadable"):
        ix.load(tmp_path)
    assert _held(ix, {"kept": 5} | BEFORE) == {"kept"}


# -- the max_entries bound (local mode) ---------------------------------------------------


def test_max_entries_evicts_the_oldest_first(clock: FakeClock) -> None:
    ix = QdrantIndex(path=":memory:", dim=8, clock=clock, max_entries=8)
    seeds = {f"e{i}": i for i in range(14)}
    for i in range(12):  # at one clock time: the order of the adds still counts
        ix.add(f"e{i}", unit(i), scope="s", payload=f"prompt of e{i}")
    assert _held(ix, seeds) == {f"e{i}" for i in range(4, 12)}
    assert ix.evictions == 4
    ix.add("e4", unit(4), scope="s", payload="prompt of e4")  # replaced: now the newest
    ix.add("e12", unit(12), scope="s", payload="prompt of e12")
    assert _held(ix, seeds) == {"e4"} | {f"e{i}" for i in range(6, 13)}
    _assert_paired(ix, seeds)


def test_max_entries_evicts_the_expired_first_then_below_the_bound(clock: FakeClock) -> None:
    ix = QdrantIndex(path=":memory:", dim=8, clock=clock, max_entries=4)
    ix.add("old", unit(0), scope="s")
    ix.add("soon", unit(1), scope="s", expires=clock() + 5)
    ix.add("x2", unit(2), scope="s")
    ix.add("x3", unit(3), scope="s")
    clock.advance(10)
    ix.add("new", unit(4), scope="s")
    assert _held(ix, {"old": 0, "soon": 1, "x2": 2, "x3": 3, "new": 4}) == {
        "old",
        "x2",
        "x3",
        "new",
    }
    big = QdrantIndex(path=":memory:", dim=8, clock=clock, max_entries=32)
    big.add_many([f"e{i}" for i in range(33)], np.stack([unit(i) for i in range(33)]), scope="s")
    assert len(big) == 30  # 1/16 below the bound: the next adds do not each scan it all


def test_a_bound_is_for_local_mode_only() -> None:
    with pytest.raises(ConfigError, match="local-mode"):
        QdrantIndex(url="http://127.0.0.1:6333", dim=8, max_entries=10)
    with pytest.raises(ValueError):
        QdrantIndex(path=":memory:", dim=8, max_entries=0)


def test_load_keeps_the_entries_ages_and_applies_the_bound(
    tmp_path: Path, clock: FakeClock
) -> None:
    source = QdrantIndex(path=":memory:", dim=8, clock=clock)
    seeds = {f"e{i}": i for i in range(10)} | {"new": 50}
    for i in range(10):
        source.add(f"e{i}", unit(i), scope="s", payload=f"prompt of e{i}")
        clock.advance(1)
    source.save(tmp_path)
    clock.set(clock() - 100)  # a clock behind the saved ages: a later add is still newer
    small = QdrantIndex(path=":memory:", dim=8, clock=clock, max_entries=4)
    small.load(tmp_path)
    assert _held(small, seeds) == {"e6", "e7", "e8", "e9"}
    small.add("new", unit(50), scope="s", payload="prompt of new")
    assert _held(small, seeds) == {"e7", "e8", "e9", "new"}
    _assert_paired(small, seeds)


def _rows(client: QdrantClient, ix: QdrantIndex) -> int:
    """The rows qdrant-client's local mode holds for the collection, deleted ones too."""
    return len(client._client.collections[ix.collection].ids)


def test_local_mode_frees_the_rows_of_deleted_points(clock: FakeClock) -> None:
    client = QdrantClient(location=":memory:")
    bounded = QdrantIndex(client=client, dim=8, clock=clock, max_entries=20, collection="b")
    for i in range(700):
        bounded.add(f"e{i}", unit(i), scope="s", payload=f"prompt of e{i}")
    assert len(bounded) <= 20 and _rows(client, bounded) < 20 + 2 * 256
    every = {f"e{i}": i for i in range(700)}
    assert _held(bounded, every) == {f"e{i}" for i in range(700 - len(bounded), 700)}
    _assert_paired(bounded, {f"e{i}": i for i in range(650, 700)})

    churn = QdrantIndex(client=client, dim=8, clock=clock, collection="c")
    seeds = {f"e{i}": i for i in range(600)}
    churn.add_many(
        list(seeds),
        np.stack([unit(i) for i in range(600)]),
        scope="s",
        payloads=[f"prompt of {id}" for id in seeds],
    )
    assert churn.strike("e599", 1) == 1
    for i in range(301):  # then more deleted rows than live ones: copied anew
        assert churn.remove(f"e{i}")
    assert _rows(client, churn) == len(churn) == 299
    assert churn.search(unit(599), scope="s", k=1)[0].strikes == 1
    _assert_paired(churn, {f"e{i}": i for i in range(290, 320)})  # a local search: ~10 ms
    churn.add("again", unit(1000), scope="s")  # the new collection takes writes
    assert "again" in churn and len(churn) == 300


def test_config_bounds_a_local_mode_index_as_the_in_process_one(tmp_path: Path) -> None:
    from deja.config import parse_config

    def index(caching: dict[str, object]) -> object:
        settings = parse_config({"caching": caching}, base_dir=tmp_path, environ={})
        assert settings.caching is not None
        return settings.caching.build_semantic().index

    local = index({"type": "qdrant_semantic", "store": {"type": "memory", "max_entries": 100}})
    assert isinstance(local, QdrantIndex) and local.max_entries == 100
    server = index({"type": "qdrant_semantic", "qdrant_api_base": "http://127.0.0.1:6333"})
    assert isinstance(server, QdrantIndex) and server.max_entries is None
