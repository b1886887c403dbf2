"""A damaged file of a saved InProcessIndex costs what it held, never answers nor the rest.

Found by an audit of the saved files (round 21): one flipped bit in a vectors file
(``scope-*.npy``, which had no checksum) made unrelated questions match one of its rows
with a similarity of 6.6e+36, and be served another question's answer; one truncated or
garbage vectors file made the whole load fail, and the next sync wrote the directory
again, losing every intact scope; a manifest of a later format version (a rolling upgrade)
was overwritten; a damaged delta file failed the load and every later sync, for good.
Each test damages the files as the audit's scripts did.
"""

from __future__ import annotations

import json
import logging
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deja.errors import ConfigError
from deja.semantic.index import InProcessIndex
from deja.testing import FakeClock

DIM = 16
SCOPES = ("s0", "s1", "s2")


def vec(i: int) -> np.ndarray:
    v = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def new_index(clock: FakeClock) -> InProcessIndex:
    return InProcessIndex(dim=DIM, hnsw_threshold=None, max_entries=None, clock=clock)


def saved_scopes(root: Path, clock: FakeClock) -> InProcessIndex:
    """Save to ``root`` an index of three scopes of 50 entries each (``s1-7``: scope s1,
    vector ``vec(57)``)."""
    index = new_index(clock)
    for n, scope in enumerate(SCOPES):
        for j in range(50):
            index.add(f"{scope}-{j}", vec(50 * n + j), scope=scope)
    index.save(root)
    return index


def loaded(root: Path, clock: FakeClock) -> InProcessIndex:
    index = new_index(clock)
    index.load(root)
    return index


def manifest_of(root: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((root / "index.json").read_bytes())
    return manifest


def rows_file(root: Path, scope: str) -> Path:
    (name,) = [item["vectors"] for item in manifest_of(root)["scopes"] if item["scope"] == scope]
    return root / name


def flip_exponent_bit(path: Path, row: int, column: int, bit: int = 0x40) -> float:
    """Flip one bit of the high byte of one float of a vectors file (by default the top
    bit of its exponent, as the audit did); returns the value it now holds (~1e37 for a
    unit vector's value)."""
    offset = np.load(path, mmap_mode="r").offset + (row * DIM + column) * 4 + 3
    data = bytearray(path.read_bytes())
    data[offset] ^= bit
    path.write_bytes(bytes(data))
    return float(np.frombuffer(bytes(data[offset - 3 : offset + 1]), "<f4")[0])


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero-length":
        path.write_bytes(b"")
    else:  # "garbage"
        path.write_bytes(np.random.default_rng(7).bytes(len(data)))


def assert_whole(index: InProcessIndex, scopes: tuple[str, ...]) -> None:
    """Every entry of ``scopes`` is there, found first by its own vector (similarity 1)."""
    for n, scope in enumerate(SCOPES):
        if scope not in scopes:
            continue
        for j in (0, 17, 49):
            [hit] = index.search(vec(50 * n + j), scope=scope, k=1)
            assert hit.id == f"{scope}-{j}" and hit.similarity == pytest.approx(1.0, abs=1e-5)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- 1. a flipped bit in a vectors file ---------------------------------------------------


def test_the_manifest_holds_the_checksum_of_each_vectors_file(
    tmp_path: Path, clock: FakeClock
) -> None:
    saved_scopes(tmp_path, clock)
    for item in manifest_of(tmp_path)["scopes"]:
        assert item["vectors_crc32"] == zlib.crc32((tmp_path / item["vectors"]).read_bytes())


@pytest.mark.parametrize("bit", [0x40, 0x02])
def test_a_flipped_bit_in_a_vectors_file_drops_its_scope_instead_of_matching_everything(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, bit: int
) -> None:
    """0x40: the top bit of the exponent (the audit's 1e37); 0x02: a lower one (x16 or
    /16, a value no check of the rows alone could tell from a vector's)."""
    saved_scopes(tmp_path, clock)
    victim = rows_file(tmp_path, "s1")
    damaged = flip_exponent_bit(victim, row=17, column=3, bit=bit)
    assert abs(damaged) > 1e30 if bit == 0x40 else abs(damaged) < 100
    # an unrelated question on the damaged value's side: similarity ~1e36 before the fix
    query = vec(123_456)
    query[3] = np.copysign(abs(query[3]) + 0.05, damaged)
    query /= np.linalg.norm(query)
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        index = loaded(tmp_path, clock)
    assert index.search(query, scope="s1") == []
    [warning] = warnings_of(caplog)
    assert str(victim) in warning and "checksum" in warning
    assert sorted(index.scopes()) == ["s0", "s2"]
    assert_whole(index, ("s0", "s2"))
    for scope in SCOPES:
        assert all(hit.similarity <= 1.0 + 1e-5 for hit in index.search(query, scope=scope))
    # the next sync writes the index again without the damaged file: it loads cleanly
    caplog.clear()
    assert index.sync(tmp_path)
    assert not victim.exists()
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        again = loaded(tmp_path, clock)
    assert sorted(again.scopes()) == ["s0", "s2"] and not warnings_of(caplog)


def test_a_base_saved_without_checksums_loads_as_before_and_gets_them_at_its_next_save(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    saved_scopes(tmp_path, clock)
    manifest = manifest_of(tmp_path)
    for item in manifest["scopes"]:
        item.pop("vectors_crc32", None)  # as an earlier version saved it
    manifest.pop("manifest_crc32", None)  # (as an earlier deja wrote it: unsealed)
    (tmp_path / "index.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.INFO, logger="deja.semantic"):
        index = loaded(tmp_path, clock)
    assert not caplog.records
    assert_whole(index, SCOPES)
    index.add("new", vec(999), scope="s0")
    index.save(tmp_path)
    assert all("vectors_crc32" in item for item in manifest_of(tmp_path)["scopes"])
    assert len(loaded(tmp_path, clock)) == 151


def test_without_a_checksum_a_row_of_huge_or_nan_values_still_never_scores(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A base of an earlier version has no checksum: the rows are checked for what a
    flipped exponent bit makes of a unit vector's value (its squared length overflows),
    and for NaN and infinities."""
    saved_scopes(tmp_path, clock)
    manifest = manifest_of(tmp_path)
    for item in manifest["scopes"]:
        item.pop("vectors_crc32", None)
    manifest.pop("manifest_crc32", None)  # (as an earlier deja wrote it: unsealed)
    (tmp_path / "index.json").write_text(json.dumps(manifest))
    damaged = flip_exponent_bit(rows_file(tmp_path, "s1"), row=17, column=3)
    rows = np.load(rows_file(tmp_path, "s2"))
    rows[4, 0] = np.nan
    np.save(rows_file(tmp_path, "s2"), rows)
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        index = loaded(tmp_path, clock)
    query = vec(123_456)
    query[3] = np.copysign(0.9, damaged)
    assert index.search(query / np.linalg.norm(query), scope="s1") == []
    [warning] = warnings_of(caplog)
    assert str(rows_file(tmp_path, "s1")) in warning and str(rows_file(tmp_path, "s2")) in warning
    assert sorted(index.scopes()) == ["s0"]
    assert_whole(index, ("s0",))


def test_a_delta_row_that_is_not_finite_is_not_taken_in(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    writer = saved_scopes(tmp_path, clock)
    writer.add("late", vec(1000), scope="s0")
    assert writer.sync(tmp_path)
    [delta] = sorted(tmp_path.glob("delta-*.npz"))
    with np.load(delta) as data:  # written again whole (its zip checksums are right)
        doc, vectors = str(data["doc"]), np.array(data["vectors"])
    vectors[0, 5] = np.inf
    with delta.open("wb") as f:
        np.savez(f, vectors=vectors, doc=np.array(doc))
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        index = loaded(tmp_path, clock)
    assert "late" not in index and len(index) == 150
    [warning] = warnings_of(caplog)
    assert delta.name in warning and "infinite" in warning


def test_vectors_whose_squared_length_overflows_are_refused_as_nan_is(clock: FakeClock) -> None:
    index = new_index(clock)
    huge = vec(1) * np.float32(1e30)  # finite, and a similarity of ~1e30 to its side
    with pytest.raises(ValueError, match="NaN or infinite"):
        index.add("huge", huge, scope="s")
    with pytest.raises(ValueError, match="NaN or infinite"):
        index.add_many(["a", "huge"], np.stack([vec(0), huge]), scope="s")
    assert len(index) == 0


# -- 2. one unreadable vectors file; a manifest of a later version --------------------------


@pytest.mark.parametrize("how", ["truncated", "zero-length", "garbage"])
def test_one_unreadable_vectors_file_costs_its_scope_only(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    saved_scopes(tmp_path, clock)
    victim = rows_file(tmp_path, "s1")
    damage(victim, how)
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        index = loaded(tmp_path, clock)  # (the whole load failed before)
    [warning] = warnings_of(caplog)
    assert str(victim) in warning
    assert sorted(index.scopes()) == ["s0", "s2"]
    # the worker serves, stores, and syncs: the intact scopes stay on disk
    index.add("new", vec(999), scope="s0")
    assert index.sync(tmp_path)
    restarted = loaded(tmp_path, clock)
    assert restarted.scopes() == {"s0": 51, "s2": 50}
    assert_whole(restarted, ("s0", "s2"))


def test_a_sync_into_a_directory_with_an_unreadable_vectors_file_keeps_the_other_scopes(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process (never loaded the directory) merges the base: it takes in the
    intact scopes and leaves out the damaged one, instead of overwriting the base."""
    saved_scopes(tmp_path, clock)
    victim = rows_file(tmp_path, "s1")
    damage(victim, "truncated")
    other = new_index(clock)
    other.add("other", vec(777), scope="t")
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        assert other.sync(tmp_path)
    assert any(str(victim) in w for w in warnings_of(caplog))
    assert "overwriting" not in caplog.text
    restarted = loaded(tmp_path, clock)
    assert restarted.scopes() == {"s0": 50, "s2": 50, "t": 1}
    assert_whole(restarted, ("s0", "s2"))


def test_a_manifest_that_cannot_be_read_is_moved_aside_not_destroyed(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    saved_scopes(tmp_path, clock)
    before = sorted(p.name for p in tmp_path.iterdir() if p.name != "index.lock")
    whole = (tmp_path / "index.json").read_bytes()
    (tmp_path / "index.json").write_bytes(whole[: len(whole) // 2])  # cut short
    other = new_index(clock)
    other.add("other", vec(777), scope="t")
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        assert other.sync(tmp_path)  # (wrote over it, and swept its files, before)
    [aside] = list(tmp_path.glob("broken-*"))
    assert sorted(p.name for p in aside.iterdir()) == before  # the manifest and its files
    assert str(aside) in caplog.text
    assert loaded(tmp_path, clock).scopes() == {"t": 1}
    # nothing of it was lost: with its manifest mended, it is the index it was
    (aside / "index.json").write_bytes(whole)
    restored = loaded(aside, clock)
    assert restored.scopes() == {"s0": 50, "s1": 50, "s2": 50}
    assert_whole(restored, SCOPES)


def test_only_the_newest_bases_moved_aside_are_kept(tmp_path: Path, clock: FakeClock) -> None:
    index = new_index(clock)
    index.add("x", vec(0), scope="s")
    for _ in range(5):
        (tmp_path / "index.json").write_text("{not json")
        index.save(tmp_path)
        clock.advance(60)
    assert len(list(tmp_path.glob("broken-*"))) == 3
    assert "x" in loaded(tmp_path, clock)


def newer_base(root: Path, clock: FakeClock) -> bytes:
    """A base of 500 entries whose manifest says a later format version (a newer deja
    wrote it: the audit's rolling upgrade); returns the manifest's bytes."""
    newer = new_index(clock)
    newer.add_many([f"upgraded-{i}" for i in range(500)], [vec(i) for i in range(500)], scope="s")
    newer.save(root)
    manifest = manifest_of(root)
    manifest["version"] = 2
    manifest.pop("manifest_crc32", None)  # (as an earlier deja wrote it: unsealed)
    (root / "index.json").write_text(json.dumps(manifest))
    return (root / "index.json").read_bytes()


def test_a_manifest_of_a_later_version_is_never_overwritten(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    written = newer_base(tmp_path, clock)
    files = sorted(p.name for p in tmp_path.iterdir())
    old = new_index(clock)
    with pytest.raises(ConfigError, match="newer deja"):
        old.load(tmp_path)
    old.add("old-1", vec(1), scope="s")
    with caplog.at_level(logging.DEBUG, logger="deja.semantic"):
        assert old.sync(tmp_path) is False
        old.add("old-2", vec(2), scope="s")
        assert old.sync(tmp_path) is False
        old.save(tmp_path)
        old.save(tmp_path, merge=False)
    warned = warnings_of(caplog)
    assert len(warned) == 1 and "newer deja" in warned[0]  # once
    assert (tmp_path / "index.json").read_bytes() == written
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    assert "old-1" in old and "old-2" in old  # kept in memory


def test_an_older_worker_writes_again_once_the_directory_holds_a_base_it_reads(
    tmp_path: Path, clock: FakeClock
) -> None:
    newer_base(tmp_path, clock)
    old = new_index(clock)
    old.add("old-1", vec(1), scope="s")
    assert old.sync(tmp_path) is False
    # the rolling upgrade went back: the directory is cleared and a readable base saved
    for path in tmp_path.iterdir():
        path.unlink()
    peer = new_index(clock)
    peer.add("peer", vec(3), scope="s")
    peer.save(tmp_path)
    assert old.sync(tmp_path) is True
    assert sorted(loaded(tmp_path, clock)._meta) == ["old-1", "peer"]


# -- 3. an unreadable delta ---------------------------------------------------------------


def base_and_delta(root: Path, clock: FakeClock) -> tuple[InProcessIndex, Path]:
    """A base of 100 entries and one delta of 5 more (the audit's sem_bad_delta.py)."""
    writer = new_index(clock)
    for j in range(100):
        writer.add(f"base-{j}", vec(j), scope="s")
    writer.sync(root)
    for j in range(5):
        writer.add(f"delta-{j}", vec(1000 + j), scope="s")
    assert writer.sync(root)
    [delta] = sorted(root.glob("delta-*.npz"))
    return writer, delta


def damage_delta(delta: Path, how: str) -> None:
    data = bytearray(delta.read_bytes())
    if how == "zero-length":
        data = bytearray()
    elif how == "truncated":
        del data[len(data) // 2 :]
    else:  # "flipped": one byte inside the stored vectors (not their headers)
        data[data.find(b"\x93NUMPY") + 200] ^= 0xFF
    delta.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["zero-length", "truncated", "flipped"])
def test_an_unreadable_delta_is_skipped_and_moved_aside_at_load(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    _, delta = base_and_delta(tmp_path, clock)
    damage_delta(delta, how)
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        index = loaded(tmp_path, clock)  # (EOFError / BadZipFile before)
    [warning] = warnings_of(caplog)
    assert str(delta) in warning and "unreadable vector index delta" in warning
    assert len(index) == 100
    assert not delta.exists() and len(list(tmp_path.glob(f"{delta.name}.broken-*"))) == 1
    index.add("new", vec(5000), scope="s")
    assert index.sync(tmp_path) is True  # (raised at every sync before)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        again = loaded(tmp_path, clock)
    assert not warnings_of(caplog) and len(again) == 101
    # the next full save removes it, with the other deltas of its base
    again.save(tmp_path)
    assert not list(tmp_path.glob("delta-*"))


def test_a_delta_damaged_after_a_worker_loaded_fails_none_of_its_syncs(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    writer = new_index(clock)
    for j in range(100):
        writer.add(f"base-{j}", vec(j), scope="s")
    writer.sync(tmp_path)
    reader = loaded(tmp_path, clock)
    writer.add("delta-0", vec(1000), scope="s")
    assert writer.sync(tmp_path)
    [delta] = sorted(tmp_path.glob("delta-*.npz"))
    damage_delta(delta, "truncated")
    reader.add("mine", vec(2000), scope="s")
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        assert reader.sync(tmp_path) is True
        reader.add("mine-2", vec(2001), scope="s")
        assert reader.sync(tmp_path) is True
    assert sum(str(delta) in w for w in warnings_of(caplog)) == 1
    assert sorted(id for id in loaded(tmp_path, clock)._meta if not id.startswith("base")) == [
        "mine",
        "mine-2",
    ]


def test_a_delta_that_cannot_be_read_for_now_is_tried_again(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An OSError reading a delta (an I/O error, say) may pass: the delta is neither taken
    for damaged nor moved aside, and the next sync reads it."""
    _, delta = base_and_delta(tmp_path, clock)
    data = delta.read_bytes()
    delta.unlink()
    delta.mkdir()  # reading it raises IsADirectoryError, an OSError
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        index = loaded(tmp_path, clock)
    assert "for now" in caplog.text and len(index) == 100 and delta.is_dir()
    delta.rmdir()
    delta.write_bytes(data)
    index.add("new", vec(5000), scope="s")
    assert index.sync(tmp_path)
    assert len(index) == 106


def test_the_exit_stops_background_graph_builds(tmp_path: Path) -> None:
    """A build thread that came back from usearch while the interpreter was finalizing
    aborted the process (exit 134, "terminate called without an active exception"): half
    the runs of a script that loaded an index and searched it while its graph was rebuilt.
    At exit the builds are told to stop, between chunks of rows, and waited for."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys, numpy as np
        from deja.semantic import index
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((1200, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        saved = index.InProcessIndex(dim=384, hnsw_threshold=10**9)
        saved.add_many([f"k{i}" for i in range(1200)], vectors, scope="t/s")
        saved.save(sys.argv[1])
        for run in range(int(sys.argv[2])):
            loaded = index.InProcessIndex(dim=384, hnsw_threshold=100)
            loaded.load(sys.argv[1])  # its graph is built in the background
            for v in vectors[:300]:
                loaded.search(v, scope="t/s", k=1)
        # the last one's build is still running as the interpreter exits
        """
    )
    codes = [
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / f"i{n}"), "1"],
            check=False,
            capture_output=True,
        ).returncode
        for n in range(4)
    ]
    assert codes == [0, 0, 0, 0]


def test_a_stopped_build_leaves_the_scope_searched_exactly() -> None:
    from deja.semantic import index

    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((3 * index._BUILD_CHUNK, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    built = index.InProcessIndex(dim=16, hnsw_threshold=10**9)
    built.add_many([f"k{i}" for i in range(len(vectors))], vectors, scope="s")
    try:
        index._STOPPING.set()  # as at exit, before the build's first chunk
        built.hnsw_threshold = 100
        with built._lock:
            built._queue_build("s", built._scopes["s"])
        built._build_due(background=True)
        assert built.join_builds(30)
        assert built._scopes["s"].hnsw is None  # given up: no graph
        [hit] = built.search(vectors[7], scope="s", k=1)
        assert hit.id == "k7"  # found all the same, exactly
    finally:
        index._STOPPING.clear()
