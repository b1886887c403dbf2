"""InProcessIndex saves of several processes to one directory merge instead of overwriting.

Each ``worker`` below is an index of its own loaded from the same directory, as the workers
of ``deja serve --workers N`` are; the last test runs real processes against one directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from deja.semantic.index import InProcessIndex
from deja.testing import FakeClock


def vec(i: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(i).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def worker(path: Path, clock: FakeClock, **options: object) -> InProcessIndex:
    index = InProcessIndex(dim=16, clock=clock, **options)  # type: ignore[arg-type]
    if (path / "index.json").exists():
        index.load(path)
    return index


def saved(path: Path, clock: FakeClock) -> InProcessIndex:
    index = InProcessIndex(dim=16, clock=clock, max_entries=None)
    index.load(path)
    return index


def test_every_workers_entries_survive_their_saves(tmp_path: Path, clock: FakeClock) -> None:
    seed = worker(tmp_path, clock)
    seed.add("shared", vec(0), scope="s", payload="before")
    seed.save(tmp_path)
    a, b = worker(tmp_path, clock), worker(tmp_path, clock)
    clock.advance(1)
    a.add("from-a", vec(1), scope="s", payload="a")
    b.add("from-b", vec(2), scope="s", payload="b")
    b.add("other-scope", vec(3), scope="t")
    a.save(tmp_path)
    b.save(tmp_path)  # merges a's save first
    merged = saved(tmp_path, clock)
    assert sorted(merged.scopes().items()) == [("s", 3), ("t", 1)]
    found = merged.search(vec(1), scope="s", k=1)[0]
    assert (found.id, found.payload) == ("from-a", "a")
    assert merged.search(vec(2), scope="s", k=1)[0].id == "from-b"
    # b's own index took a's entries in too, and saving again changes nothing
    assert "from-a" in b and len(b) == 4
    a.save(tmp_path)
    assert sorted(saved(tmp_path, clock).scopes().items()) == [("s", 3), ("t", 1)]


def test_a_removal_is_not_brought_back_by_another_workers_save(
    tmp_path: Path, clock: FakeClock
) -> None:
    seed = worker(tmp_path, clock)
    for name in ("forgotten", "deleted-scope", "kept"):
        seed.add(name, vec(len(name)), scope="gone" if name == "deleted-scope" else "s")
    seed.save(tmp_path)
    a, b = worker(tmp_path, clock), worker(tmp_path, clock)
    clock.advance(1)
    assert a.remove("forgotten")
    assert a.remove_scope("gone") == 1
    a.save(tmp_path)
    b.save(tmp_path)  # b still holds both in memory
    merged = saved(tmp_path, clock)
    assert "forgotten" not in merged and "deleted-scope" not in merged and "kept" in merged
    assert "forgotten" not in b  # b adopted the removals
    # a prompt stored again after the removal is a new entry: it comes back
    clock.advance(1)
    b.add("forgotten", vec(9), scope="s", payload="again")
    b.save(tmp_path)
    a.save(tmp_path)
    assert saved(tmp_path, clock).search(vec(9), scope="s", k=1)[0].payload == "again"


def test_the_later_add_of_one_id_wins_and_strikes_are_merged(
    tmp_path: Path, clock: FakeClock
) -> None:
    seed = worker(tmp_path, clock)
    seed.add("x", vec(0), scope="s", payload="first")
    seed.add("y", vec(1), scope="s")
    seed.save(tmp_path)
    a, b = worker(tmp_path, clock), worker(tmp_path, clock)
    assert a.strike("y", 1) == 1 and a.strike("y", 1) == 2
    clock.advance(1)
    b.add("x", vec(5), scope="s", payload="second")  # replaced later, elsewhere
    b.save(tmp_path)
    a.save(tmp_path)
    merged = saved(tmp_path, clock)
    x = merged.search(vec(5), scope="s", k=1)[0]
    assert (x.id, x.payload) == ("x", "second")
    assert [n.strikes for n in merged.search(vec(1), scope="s", k=2) if n.id == "y"] == [2]
    assert len(merged) == 2


def test_expired_entries_and_the_size_bound_apply_to_the_merge(
    tmp_path: Path, clock: FakeClock
) -> None:
    a, b = worker(tmp_path, clock, max_entries=3), worker(tmp_path, clock, max_entries=3)
    a.add("short-lived", vec(0), scope="s", expires=clock() + 5)
    a.add("a-old", vec(1), scope="s")
    a.save(tmp_path)
    clock.advance(10)
    for i in range(3):
        clock.advance(1)
        b.add(f"b-{i}", vec(10 + i), scope="s")
    b.save(tmp_path)
    merged = saved(tmp_path, clock)
    # the expired entry is left out; of the four live ones the oldest is evicted
    assert sorted(merged.scopes().items()) == [("s", 3)]
    assert "short-lived" not in merged and "a-old" not in merged


def test_merging_into_an_hnsw_scope_and_overwriting_on_request(
    tmp_path: Path, clock: FakeClock
) -> None:
    a = worker(tmp_path, clock, hnsw_threshold=20, max_entries=None)
    b = worker(tmp_path, clock, hnsw_threshold=20, max_entries=None)
    a.add_many([f"a{i}" for i in range(30)], np.stack([vec(i) for i in range(30)]), scope="s")
    a.save(tmp_path)
    b.add_many([f"b{i}" for i in range(30)], np.stack([vec(100 + i) for i in range(30)]), scope="s")
    b.save(tmp_path)
    merged = saved(tmp_path, clock)
    assert merged.is_hnsw("s") and len(merged) == 60
    assert merged.search(vec(7), scope="s", k=1)[0].id == "a7"
    assert merged.search(vec(107), scope="s", k=1)[0].id == "b7"
    fresh = InProcessIndex(dim=16, clock=clock)
    fresh.add("alone", vec(0), scope="s")
    fresh.save(tmp_path, merge=False)
    assert len(saved(tmp_path, clock)) == 1


def test_a_save_of_an_earlier_version_is_merged_as_added_long_ago(
    tmp_path: Path, clock: FakeClock
) -> None:
    old = worker(tmp_path, clock)
    old.add("old", vec(0), scope="s")
    old.save(tmp_path)
    manifest = json.loads((tmp_path / "index.json").read_bytes())
    for key in ("generation", "tombstones"):
        del manifest[key]
    for item in manifest["scopes"]:
        del item["added"]
    manifest.pop("manifest_crc32", None)  # (as an earlier deja wrote it: unsealed)
    (tmp_path / "index.json").write_text(json.dumps(manifest))
    mine = InProcessIndex(dim=16, clock=clock)  # started before it, never loaded it
    mine.add("new", vec(1), scope="s")
    mine.save(tmp_path)
    assert sorted(saved(tmp_path, clock).scopes().items()) == [("s", 2)]


def test_an_unreadable_save_in_the_way_is_overwritten(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "index.json").write_text("{not json")
    index = InProcessIndex(dim=16, clock=clock)
    index.add("x", vec(0), scope="s")
    index.save(tmp_path)
    assert "x" in saved(tmp_path, clock)
    # a manifest naming a vectors file that is gone
    other = InProcessIndex(dim=16, clock=clock)
    other.add("y", vec(1), scope="t")
    other.save(tmp_path / "other")
    (vectors_file,) = (tmp_path / "other").glob("scope-*.npy")
    vectors_file.unlink()
    index.save(tmp_path / "other")
    assert "unreadable" in caplog.text
    assert sorted(saved(tmp_path / "other", clock)._meta) == ["x"]


_SAVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from deja.semantic.index import InProcessIndex

    path, name = sys.argv[1], sys.argv[2]
    index = InProcessIndex(dim=16, max_entries=None)
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    for i in range(25):
        v = rng.standard_normal(16).astype(np.float32)
        index.add(f"{name}-{i}", v / np.linalg.norm(v), scope="s")
        index.save(path)
    """
)


@pytest.mark.parametrize("how", ["save", "sync"])
def test_processes_saving_to_one_directory_at_once_lose_nothing(tmp_path: Path, how: str) -> None:
    names = ["p0", "p1", "p2"]
    saver = _SAVER.replace("index.save(path)", f"index.{how}(path)")
    procs = [subprocess.Popen([sys.executable, "-c", saver, str(tmp_path), name]) for name in names]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    merged = InProcessIndex(dim=16, max_entries=None)
    merged.load(tmp_path)
    assert sorted(merged._meta) == sorted(f"{n}-{i}" for n in names for i in range(25))


def test_saving_twice_leaves_one_set_of_files_beside_the_lock(tmp_path: Path) -> None:
    index = InProcessIndex(dim=16)
    index.add("x", vec(0), scope="s")
    index.save(tmp_path)
    index.save(tmp_path)
    generation = json.loads((tmp_path / "index.json").read_bytes())["generation"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "index.json",
        "index.lock",
        f"scope-{generation}-0.npy",
    ]


def test_sync_saves_only_when_either_side_changed(tmp_path: Path, clock: FakeClock) -> None:
    a, b = worker(tmp_path, clock), worker(tmp_path, clock)
    a.add("x", vec(0), scope="s")
    assert a.sync(tmp_path) is True
    assert a.sync(tmp_path) is False  # nothing new on either side
    assert b.sync(tmp_path) is True and "x" in b  # a's save is new to b: merged
    assert b.sync(tmp_path) is False
    assert a.sync(tmp_path) is False  # b took a's save in and wrote nothing of its own
    assert a.strike("x", 1) == 1
    assert a.sync(tmp_path) is True
    assert b.sync(tmp_path) is True  # a's delta
    assert b.search(vec(0), scope="s", k=1)[0].strikes == 1
    assert (a.sync(tmp_path), b.sync(tmp_path)) == (False, False)


def deltas(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("delta-*"))


def test_a_sync_writes_only_what_changed_and_the_others_take_it_in(
    tmp_path: Path, clock: FakeClock
) -> None:
    seed = worker(tmp_path, clock, max_entries=None)
    for i in range(50):
        seed.add(f"e{i}", vec(i), scope="s", payload=str(i))
    seed.save(tmp_path)
    base = (tmp_path / "index.json").read_bytes()
    a, b = worker(tmp_path, clock, max_entries=None), worker(tmp_path, clock, max_entries=None)
    clock.advance(1)
    a.add("new", vec(100), scope="t", payload="from a")
    assert a.remove("e3") and a.strike("e4", 2) == 2
    assert a.sync(tmp_path) is True
    assert (tmp_path / "index.json").read_bytes() == base  # the base is not rewritten
    [name] = deltas(tmp_path)
    with np.load(tmp_path / name) as data:  # one new row, one removal, one strike count
        doc = json.loads(str(data["doc"]))
        assert data["vectors"].shape == (1, 16)
    assert [item["ids"] for item in doc["scopes"]] == [["new"]]
    assert list(doc["tombstones"]) == ["e3"]
    assert doc["strikes"] == [["e4", seed._meta["e4"].added, 2]]
    b.strike("e4", 1)
    assert b.sync(tmp_path) is True  # takes a's delta in, writes its own
    assert "e3" not in b and b.search(vec(100), scope="t", k=1)[0].payload == "from a"
    assert b.search(vec(4), scope="s", k=1)[0].strikes == 3
    assert a.sync(tmp_path) is True and a.search(vec(4), scope="s", k=1)[0].strikes == 3
    loaded = saved(tmp_path, clock)  # the base and both deltas
    assert sorted(loaded._meta) == sorted(a._meta) == sorted(b._meta)
    assert len(loaded) == 50 and loaded.search(vec(4), scope="s", k=1)[0].strikes == 3
    assert (a.sync(tmp_path), b.sync(tmp_path), loaded.sync(tmp_path)) == (False,) * 3


def test_deltas_are_folded_into_a_new_base_once_they_add_up(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deja.semantic.index as module

    monkeypatch.setattr(module, "_COMPACT_FILES", 3)
    a = worker(tmp_path, clock, max_entries=None)
    a.add("first", vec(0), scope="s")
    assert a.sync(tmp_path) is True  # no base yet: a full one
    b = worker(tmp_path, clock, max_entries=None)
    a.add("a1", vec(1), scope="s")
    b.add("b1", vec(2), scope="s")
    assert a.sync(tmp_path) and b.sync(tmp_path)
    assert len(deltas(tmp_path)) == 2
    a.add("a2", vec(3), scope="s")
    assert a.sync(tmp_path)  # writes a third delta
    assert len(deltas(tmp_path)) == 3
    b.add("b2", vec(4), scope="s")
    assert b.sync(tmp_path)  # three deltas: b writes a new base instead, with b2
    assert deltas(tmp_path) == []
    assert sorted(saved(tmp_path, clock)._meta) == ["a1", "a2", "b1", "b2", "first"]
    a.add("a3", vec(5), scope="s")  # a's base is gone: it takes b's in, then writes a delta
    assert a.sync(tmp_path) and "b2" in a
    assert len(deltas(tmp_path)) == 1
    assert sorted(saved(tmp_path, clock)._meta) == ["a1", "a2", "a3", "b1", "b2", "first"]


def x_saved_y_pending(path: Path, clock: FakeClock) -> InProcessIndex:
    """An index that saved ``x`` to ``path`` and has added ``y`` since."""
    index = worker(path, clock)
    index.add("x", vec(0), scope="s")
    index.save(path)
    index.add("y", vec(1), scope="s")
    return index


def test_a_save_replaces_the_deltas_and_an_unreadable_delta_is_skipped(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    a = x_saved_y_pending(tmp_path, clock)
    assert a.sync(tmp_path)
    [name] = deltas(tmp_path)
    (tmp_path / name).write_bytes(b"not a delta")
    with caplog.at_level("WARNING", logger="deja.semantic"):
        loaded = saved(tmp_path, clock)
    assert sorted(loaded._meta) == ["x"] and "unreadable vector index delta" in caplog.text
    a.save(tmp_path)
    assert deltas(tmp_path) == [] and sorted(saved(tmp_path, clock)._meta) == ["x", "y"]


def test_a_failed_delta_write_is_made_good_by_the_next_sync(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deja.semantic.index as module

    a = x_saved_y_pending(tmp_path, clock)

    def full_disk(*args: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(module, "_save_delta", full_disk)
        with pytest.raises(OSError, match="No space"):
            a.sync(tmp_path)
    assert a.sync(tmp_path) is True  # a full base this time: y is not lost
    assert deltas(tmp_path) == [] and sorted(saved(tmp_path, clock)._meta) == ["x", "y"]


def test_saves_while_another_thread_writes_stay_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deja.semantic.index as module

    monkeypatch.setattr(module, "_COPY_ROWS", 7)  # a save copies the rows a few at a time
    index = InProcessIndex(dim=16, max_entries=None, hnsw_threshold=100)
    done = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(400):
                index.add(f"e{i}", vec(i), scope="s" if i % 3 else "t")
                if i % 7 == 0:
                    index.remove(f"e{i // 2}")
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    loads = 0
    while not done.is_set() or loads == 0:
        index.save(tmp_path)
        copy = InProcessIndex(dim=16, max_entries=None)
        copy.load(tmp_path)
        for scope in copy.scopes():
            assert copy.search(vec(1), scope=scope, k=3)
        for id in list(copy._meta)[:50]:  # each saved row is its entry's own vector
            assert np.allclose(copy.vector(id), vec(int(id[1:])))
        loads += 1
    thread.join()
    assert not failures
    index.save(tmp_path)
    final = InProcessIndex(dim=16, max_entries=None)
    final.load(tmp_path)
    assert sorted(final._meta) == sorted(index._meta)
    for id in final._meta:
        assert np.allclose(final.vector(id), vec(int(id[1:])))


def test_strikes_given_in_two_processes_add_up(tmp_path: Path, clock: FakeClock) -> None:
    seed = worker(tmp_path, clock)
    seed.add("x", vec(0), scope="s")
    assert seed.strike("x", 1) == 1
    seed.save(tmp_path)
    a, b = worker(tmp_path, clock), worker(tmp_path, clock)
    assert a.strike("x", 1) == 2
    assert b.strike("x", 1) == 2 and b.strike("x", 1) == 3
    a.save(tmp_path)
    b.save(tmp_path)  # 1 saved + a's 1 + b's 2
    assert b.search(vec(0), scope="s", k=1)[0].strikes == 4
    a.save(tmp_path)  # takes b's in, adds nothing of its own twice
    assert a.search(vec(0), scope="s", k=1)[0].strikes == 4
    assert a.strike("x", -1) == 3
    a.save(tmp_path)
    b.save(tmp_path)
    assert saved(tmp_path, clock).search(vec(0), scope="s", k=1)[0].strikes == 3
    assert b.search(vec(0), scope="s", k=1)[0].strikes == 3


def test_a_file_system_without_locks_still_saves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    index = InProcessIndex(dim=16)
    index.add("x", vec(0), scope="s")
    index.save(tmp_path)
    assert "x" in saved(tmp_path, FakeClock())
    assert "saving without the lock" in caplog.text


def test_entries_taken_in_keep_their_age_so_the_oldest_is_evicted_first(
    tmp_path: Path, clock: FakeClock
) -> None:
    a, b = worker(tmp_path, clock, max_entries=None), worker(tmp_path, clock, max_entries=4)
    a.add("base", vec(0), scope="s")
    assert a.sync(tmp_path) and b.sync(tmp_path)
    for name, index in (("a1", a), ("b1", b), ("a2", a), ("b2", b)):
        clock.advance(1)
        index.add(name, vec(len(name) + ord(name[0])), scope="s")
    assert a.sync(tmp_path) and b.sync(tmp_path)  # b takes a1 and a2 in, in age order
    assert list(b._meta) == ["base", "a1", "b1", "a2", "b2"][-4:]  # base: evicted, oldest
    clock.advance(1)
    b.add("b3", vec(40), scope="s")
    assert list(b._meta) == ["b1", "a2", "b2", "b3"]
    assert b.sync(tmp_path) and a.sync(tmp_path)  # b's evictions reach a as removals
    assert sorted(a._meta) == ["a2", "b1", "b2", "b3"]


def test_a_prompt_orjson_refuses_is_saved_and_loaded_all_the_same(
    tmp_path: Path, clock: FakeClock
) -> None:
    a = worker(tmp_path, clock)
    a.add("odd", vec(0), scope="s", payload="half a pair \ud800 of surrogates")
    a.save(tmp_path)
    a.add("odder", vec(1), scope="s", payload="\udfff")
    assert a.sync(tmp_path)  # as a delta
    loaded = saved(tmp_path, clock)
    assert loaded.search(vec(0), scope="s", k=1)[0].payload == "half a pair \ud800 of surrogates"
    assert loaded.search(vec(1), scope="s", k=1)[0].payload == "\udfff"


def test_a_clock_stepped_back_does_not_make_a_later_add_look_removed(tmp_path: Path) -> None:
    now = [1_700_000_000.0]  # a wall clock that an operator (or NTP) can step back

    def index() -> InProcessIndex:
        made = InProcessIndex(dim=16, clock=lambda: now[0])
        if (tmp_path / "index.json").exists():
            made.load(tmp_path)
        return made

    a = index()
    a.add("seed", vec(9), scope="s")
    a.save(tmp_path)
    b = index()
    now[0] += 10
    a.add("x", vec(0), scope="s")
    now[0] += 1
    assert a.remove("x")
    assert a.sync(tmp_path) and b.sync(tmp_path) and "x" not in b
    now[0] -= 5  # stepped back
    a.add("x", vec(1), scope="s", payload="again")
    assert a.sync(tmp_path) and b.sync(tmp_path)
    assert b.search(vec(1), scope="s", k=1)[0].payload == "again"  # not taken for removed


def test_rows_written_while_a_save_copies_are_saved_as_they_are_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deja.semantic.index as module

    monkeypatch.setattr(module, "_COPY_ROWS", 7)
    index = InProcessIndex(dim=16, max_entries=None, hnsw_threshold=None)
    for i in range(30):
        index.add(f"e{i}", vec(i), scope="s")
    pauses = 0

    def meddle(seconds: float) -> None:  # between two batches of copied rows
        nonlocal pauses
        pauses += 1
        if pauses == 2:  # rows 0-13 copied: e29 moves into row 3, a new entry comes last
            assert index.remove("e3")
            index.add("e100", vec(100), scope="s")

    monkeypatch.setattr(module.time, "sleep", meddle)
    index.save(tmp_path)
    monkeypatch.undo()
    loaded = InProcessIndex(dim=16, max_entries=None)
    loaded.load(tmp_path)
    assert sorted(loaded._meta) == sorted(index._meta) and "e3" not in loaded
    for id in loaded._meta:
        assert np.allclose(loaded.vector(id), vec(int(id[1:]))), id
