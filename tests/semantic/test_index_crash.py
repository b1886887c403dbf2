"""InProcessIndex saves cut short at any step: the manifest is the one commit point.

A full save (a first save, ``save``, the compaction of a ``sync``) writes its vectors and
graphs under names of the new base's generation, then renames its manifest over
``index.json``; the files of the previous base go only after that. Each test here cuts a
save at one of its steps (an fsync, a rename, a removal) and loads the directory as a
restarted process does: every id must still find its own vector (the bug this guards
against paired one entry's id, and cached answer, with another entry's vector), the
directory must hold either the whole previous index or the whole new one, and what the cut
save left behind must be cleaned up. Also: directories saved by earlier versions (files
named ``scope-<n>.*`` in every save) still load, and a torn one of those is detected.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deja.semantic.index as ix
from deja.errors import ConfigError
from deja.semantic.index import InProcessIndex

DIM = 16


def vec(i: int) -> np.ndarray:
    v = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def new_index(**options: Any) -> InProcessIndex:
    return InProcessIndex(dim=DIM, hnsw_threshold=40, max_entries=None, **options)


class Entries:
    """The entries an index should hold: id -> (scope, the number of its vector)."""

    def __init__(self) -> None:
        self.of: dict[str, tuple[str, int]] = {}
        self._next = 0

    def add(self, index: InProcessIndex, scope: str, ids: list[str]) -> None:
        numbers = list(range(self._next, self._next + len(ids)))
        self._next += len(ids)
        index.add_many(ids, np.stack([vec(n) for n in numbers]), scope=scope)
        self.of.update({id: (scope, n) for id, n in zip(ids, numbers, strict=True)})

    def again(self, index: InProcessIndex, id: str) -> None:
        """Store ``id`` again (same vector): it moves to the end of its scope's rows."""
        scope, n = self.of[id]
        index.add(id, vec(n), scope=scope)

    def remove(self, index: InProcessIndex, id: str) -> None:
        index.remove(id)
        del self.of[id]

    def remove_scope(self, index: InProcessIndex, scope: str) -> None:
        index.remove_scope(scope)
        self.of = {id: where for id, where in self.of.items() if where[0] != scope}

    def copy(self) -> dict[str, tuple[str, int]]:
        return dict(self.of)


def assert_consistent(index: InProcessIndex, expected: dict[str, tuple[str, int]]) -> None:
    """Every entry of ``index`` is found by its own vector, at similarity 1, and holds it."""
    assert sorted(index._meta) == sorted(expected)
    for id, (scope, n) in expected.items():
        np.testing.assert_allclose(index.vector(id), vec(n), atol=1e-6)
        best = index.search(vec(n), scope=scope, k=1)[0]
        assert best.id == id, f"the vector of {id!r} finds {best.id!r}"
        assert best.similarity == pytest.approx(1.0, abs=1e-5)


def named_files(root: Path) -> set[str]:
    """The files the manifest in ``root`` names, and the manifest and the lock."""
    manifest = json.loads((root / "index.json").read_bytes())
    names = {"index.json", "index.lock"}
    for item in manifest["scopes"]:
        names.update(n for n in (item["vectors"], item["hnsw"]) if n)
    return names


def base_files(root: Path) -> set[str]:
    """The files of ``root`` but the deltas of its base."""
    generation = json.loads((root / "index.json").read_bytes())["generation"]
    return {p.name for p in root.iterdir() if not p.name.startswith(f"delta-{generation}-")}


class Crash(BaseException):
    """The save is cut here (a BaseException, as SystemExit or KeyboardInterrupt are)."""


class Disk:
    """Counts the steps of a save that change or sync the directory (fsync, rename,
    remove) and fails the ``fail_at``-th. ``killed``: every later step fails too, as in a
    process killed at that point (not even its clean-up runs); otherwise only that step
    fails (a full disk, an I/O error), and the save raises."""

    def __init__(self, fail_at: int | None = None, *, killed: bool = True) -> None:
        self.fail_at = fail_at
        self.killed = killed
        self.steps: list[str] = []
        self.dead = False

    @contextlib.contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        with monkeypatch.context() as m:
            for name in ("fsync", "replace", "unlink"):
                m.setattr(os, name, self._wrap(name, getattr(os, name)))
            yield

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise Crash(f"{name} after the crash")
            # a rename is named by its target, a removal by its file
            path = args[1] if name == "replace" else args[0] if name == "unlink" else ""
            self.steps.append(f"{name} {Path(str(path)).name}".strip())
            if len(self.steps) == self.fail_at:
                self.dead = self.killed
                if self.killed:
                    raise Crash(self.steps[-1])
                raise OSError(28, "No space left on device")
            return real(*args, **kwargs)

        return step


def first_base(root: Path) -> tuple[InProcessIndex, Entries]:
    """An index with three scopes saved to ``root``: "a" (exact), "big" (an HNSW graph)
    and "c", written as its scopes 0, 1 and 2."""
    index, entries = new_index(), Entries()
    entries.add(index, "a", [f"a{i}" for i in range(6)])
    entries.add(index, "big", [f"big{i}" for i in range(50)])
    entries.add(index, "c", [f"c{i}" for i in range(4)])
    assert index.join_builds(10) and index.is_hnsw("big")
    index.save(root)
    return index, entries


def change(index: InProcessIndex, entries: Entries) -> None:
    """Changes that move rows in every scope kept and renumber the scopes: with files
    named ``scope-<n>.npy`` in every save, the new rows of "big" would be written where
    the previous manifest expects those of "a"."""
    entries.remove_scope(index, "a")
    entries.remove(index, "big0")  # the last row moves into its place
    entries.again(index, "big5")  # to the end
    entries.remove(index, "c0")
    entries.add(index, "d", ["d0", "d1", "d2"])


def write_under_test(how: str, index: InProcessIndex, root: Path) -> None:
    if how == "save":
        index.save(root)
    else:  # a periodic sync whose deltas have grown enough: it writes the base again
        assert index.sync(root)


def prepare(how: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    index, entries = first_base(root)
    if how == "compaction":
        entries.again(index, "c1")
        entries.add(index, "c", ["c-late"])
        assert index.sync(root)  # a delta of the first base
        assert any(p.name.startswith("delta-") for p in root.iterdir())
        monkeypatch.setattr(ix, "_COMPACT_FILES", 1)  # the next sync compacts
    before = entries.copy()
    change(index, entries)
    return index, before, entries.copy()


def steps_of(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    root = tmp_path / "dry-run"
    index, _, _ = prepare(how, root, monkeypatch)
    disk = Disk()
    with disk.installed(monkeypatch):
        write_under_test(how, index, root)
    return disk.steps


@pytest.mark.parametrize("how", ["save", "compaction"])
def test_a_save_killed_at_any_step_leaves_a_consistent_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    steps = steps_of(how, tmp_path, monkeypatch)
    # the vectors and graph files, the manifest, then the removal of the old ones
    assert any(s.startswith("replace scope-") for s in steps)
    assert any(s.startswith("unlink scope-") for s in steps)
    commit = steps.index("replace index.json") + 1  # the step (from 1) of the commit
    assert not [s for s in steps[:commit] if s.startswith("unlink")]
    for n in range(1, len(steps) + 1):
        root = tmp_path / f"killed-at-{n}"
        index, before, after = prepare(how, root, monkeypatch)
        disk = Disk(n)
        with disk.installed(monkeypatch), pytest.raises(Crash):
            write_under_test(how, index, root)
        restarted = new_index()
        restarted.load(root)
        # all of the previous index, or all of the new one: never a mix
        assert_consistent(restarted, before if n <= commit else after)
        # the load swept what the killed save left: only what the manifest names is left
        assert base_files(root) == named_files(root), f"killed at step {n}: {steps[n - 1]}"
        # and the restarted process saves (and loads) normally
        restarted.save(root)
        again = new_index()
        again.load(root)
        assert_consistent(again, before if n <= commit else after)
        assert set(os.listdir(root)) == named_files(root)


@pytest.mark.parametrize("how", ["save", "compaction"])
def test_a_save_failing_at_any_step_leaves_a_consistent_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    steps = steps_of(how, tmp_path, monkeypatch)
    commit = steps.index("replace index.json") + 1  # the step (from 1) of the commit
    for n in range(1, len(steps) + 1):
        root = tmp_path / f"failed-at-{n}"
        index, before, after = prepare(how, root, monkeypatch)
        listing = set(os.listdir(root))
        disk = Disk(n, killed=False)
        with disk.installed(monkeypatch), contextlib.suppress(OSError):
            write_under_test(how, index, root)
        if n <= commit:  # failed before its commit: its own files are gone again
            assert set(os.listdir(root)) == listing, f"failed at step {n}: {steps[n - 1]}"
        restarted = new_index()
        restarted.load(root)
        assert_consistent(restarted, before if n <= commit else after)
        # the index that failed to save still holds everything and saves it next time
        assert_consistent(index, after)
        write_under_test("save", index, root)
        assert set(os.listdir(root)) == named_files(root)
        reloaded = new_index()
        reloaded.load(root)
        assert_consistent(reloaded, after)


def test_a_first_save_killed_at_any_step_loads_as_nothing_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fill(index: InProcessIndex) -> dict[str, tuple[str, int]]:
        entries = Entries()
        entries.add(index, "s", [f"s{i}" for i in range(8)])
        entries.add(index, "big", [f"big{i}" for i in range(45)])
        assert index.join_builds(10)
        return entries.copy()

    index, disk = new_index(), Disk()
    fill(index)
    with disk.installed(monkeypatch):
        index.save(tmp_path / "dry-run")
    commit = disk.steps.index("replace index.json") + 1
    for n in range(1, len(disk.steps) + 1):
        root = tmp_path / f"killed-at-{n}"
        index = new_index()
        expected = fill(index)
        with Disk(n).installed(monkeypatch), pytest.raises(Crash):
            index.save(root)
        restarted = new_index()
        if n <= commit:
            with pytest.raises(ConfigError, match="no vector index"):
                restarted.load(root)
            restarted.add("new", vec(999), scope="s")
            restarted.save(root)  # sweeps the files of the killed save
            expected = {"new": ("s", 999)}
        else:
            restarted.load(root)
        assert_consistent(restarted, expected)
        assert base_files(root) == named_files(root)


_KILLED_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import deja.semantic.index as ix

    def vec(i):
        v = np.random.default_rng(i).standard_normal(16).astype(np.float32)
        return v / np.linalg.norm(v)

    index = ix.InProcessIndex(dim=16, max_entries=None)
    for i in range(6):
        index.add(f"e{i}", vec(i), scope="s")
    index.save(sys.argv[1])
    index.remove("e0")  # e5's row moves to row 0
    real = ix._atomic_write

    def killed(target, write):
        if target.name == "index.json":
            os.kill(os.getpid(), signal.SIGKILL)
        real(target, write)

    ix._atomic_write = killed
    index.save(sys.argv[1])
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_a_process_killed_before_its_manifest_keeps_ids_on_their_vectors(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, str(tmp_path)],
        check=False,
        timeout=60,
        capture_output=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert len(list(tmp_path.glob("scope-*.npy"))) == 2  # the old base's and the new one's
    restarted = InProcessIndex(dim=DIM, max_entries=None)
    restarted.load(tmp_path)
    assert_consistent(restarted, {f"e{i}": ("s", i) for i in range(6)})
    assert set(os.listdir(tmp_path)) == named_files(tmp_path)


# -- directories saved by earlier versions ------------------------------------------------


def to_legacy_layout(root: Path) -> None:
    """Make the base in ``root`` look as earlier versions wrote it: its files named
    ``scope-<n>.npy`` / ``scope-<n>.usearch`` (the same in every save), written before
    the manifest."""
    manifest = json.loads((root / "index.json").read_bytes())
    for number, item in enumerate(manifest["scopes"]):
        for key, ext in (("vectors", "npy"), ("hnsw", "usearch")):
            if item[key]:
                os.replace(root / item[key], root / f"scope-{number}.{ext}")
                item[key] = f"scope-{number}.{ext}"
    manifest.pop("manifest_crc32", None)  # (as an earlier deja wrote it: unsealed)
    (root / "index.json").write_text(json.dumps(manifest))  # written last, as they did


def test_an_index_saved_in_the_earlier_layout_loads_and_is_migrated(tmp_path: Path) -> None:
    index, entries = first_base(tmp_path)
    entries.add(index, "c", ["c-delta"])
    assert index.sync(tmp_path)  # a delta of that base, beside it
    to_legacy_layout(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("scope-*")) == [
        "scope-0.npy",
        "scope-1.npy",
        "scope-1.usearch",
        "scope-2.npy",
    ]
    loaded = new_index()
    loaded.load(tmp_path)
    assert loaded.is_hnsw("big")  # the graph viewed from scope-1.usearch
    assert_consistent(loaded, entries.copy())
    assert not loaded._full_save_due  # nothing torn
    # a worker of the new version saves among workers still on the old layout
    loaded.add("x", vec(1000), scope="a")
    loaded.save(tmp_path)
    assert not list(tmp_path.glob("scope-[0-9].*"))  # the old files are gone
    assert set(os.listdir(tmp_path)) == named_files(tmp_path)
    again = new_index()
    again.load(tmp_path)
    assert_consistent(again, {**entries.copy(), "x": ("a", 1000)})


def test_a_legacy_index_torn_by_a_killed_save_is_not_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, entries = first_base(tmp_path)
    to_legacy_layout(tmp_path)
    # what an earlier version left when killed between its renames: scope-0.npy holds the
    # rows of another save (here those of "big"), the manifest is still the previous one
    manifest_written = os.stat(tmp_path / "index.json").st_mtime_ns
    rows = np.stack([vec(n) for scope, n in entries.of.values() if scope == "big"])
    np.save(tmp_path / "scope-0.npy", rows[:6])  # as many rows as "a" has entries
    later = manifest_written + 1_000_000_000
    os.utime(tmp_path / "scope-0.npy", ns=(later, later))
    expected = {id: where for id, where in entries.of.items() if where[0] != "a"}
    loaded = new_index()
    loaded.load(tmp_path)
    assert "cut short" in caplog.text
    assert loaded.search(vec(entries.of["big3"][1]), scope="a", k=1) == []  # no wrong id
    assert_consistent(loaded, expected)
    # the next sync writes the base again, in the current layout
    assert loaded._full_save_due and loaded.sync(tmp_path)
    assert set(os.listdir(tmp_path)) == named_files(tmp_path)
    assert not list(tmp_path.glob("scope-[0-9].*"))
    again = new_index()
    again.load(tmp_path)
    assert_consistent(again, expected)


def test_a_save_merging_a_torn_legacy_index_leaves_its_torn_scope_out(tmp_path: Path) -> None:
    _, entries = first_base(tmp_path)
    to_legacy_layout(tmp_path)
    later = os.stat(tmp_path / "index.json").st_mtime_ns + 1_000_000_000
    np.save(tmp_path / "scope-2.npy", np.stack([vec(900 + i) for i in range(4)]))
    os.utime(tmp_path / "scope-2.npy", ns=(later, later))
    other = new_index()
    other.add("o", vec(2000), scope="c")
    other.save(tmp_path)  # takes the legacy base in first
    merged = new_index()
    merged.load(tmp_path)
    expected = {id: where for id, where in entries.of.items() if where[0] != "c"}
    assert_consistent(merged, {**expected, "o": ("c", 2000)})


# -- leftovers, readers ---------------------------------------------------------------------


def test_what_unfinished_saves_left_is_removed_by_the_next_load_or_save(tmp_path: Path) -> None:
    index, entries = first_base(tmp_path)
    entries.add(index, "c", ["c-delta"])
    assert index.sync(tmp_path)
    kept = set(os.listdir(tmp_path))
    generation = json.loads((tmp_path / "index.json").read_bytes())["generation"]
    other = "0123456789abcdef0123456789abcdef"
    litter = [
        f"scope-{other}-0.npy",  # renamed by a save killed before its manifest
        f"scope-{other}-1.usearch",
        f"scope-{other}-2.npy.tmp",  # half written
        "index.json.tmp",
        "scope-4.npy",  # of an earlier version's base
        f"delta-{other}-w-00000001.npz",  # of a base replaced since
        f"delta-{generation}-w-00000002.npz.tmp",
    ]
    for name in litter:
        (tmp_path / name).write_bytes(b"left over")
    (tmp_path / "notes.txt").write_text("not the index's")
    loaded = new_index()
    loaded.load(tmp_path)
    assert_consistent(loaded, entries.copy())
    assert set(os.listdir(tmp_path)) == kept | {"notes.txt"}
    for name in litter:
        (tmp_path / name).write_bytes(b"left over")
    loaded.save(tmp_path)
    assert set(os.listdir(tmp_path)) == named_files(tmp_path) | {"notes.txt"}


def test_a_load_without_the_lock_leaves_other_files_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_base(tmp_path)
    (tmp_path / "scope-0123-0.npy.tmp").write_bytes(b"maybe another process's save")

    @contextlib.contextmanager
    def unlocked(root: Path, *, exclusive: bool) -> Iterator[bool]:
        yield False  # a file system without locks: a save may be under way

    monkeypatch.setattr(ix, "_locked", unlocked)
    new_index().load(tmp_path)
    assert (tmp_path / "scope-0123-0.npy.tmp").exists()


def test_a_reader_without_the_lock_reads_the_base_that_replaced_the_one_it_began_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, entries = first_base(tmp_path)

    @contextlib.contextmanager
    def unlocked(root: Path, *, exclusive: bool) -> Iterator[bool]:
        yield False

    monkeypatch.setattr(ix, "_locked", unlocked)
    reader = new_index()
    read = reader._read_manifest
    reads: list[str] = []

    def then_a_save(root: Path) -> dict[str, Any]:
        manifest = read(root)
        reads.append(manifest["generation"])
        if len(reads) == 1:
            change(writer, entries)
            writer.save(tmp_path)  # commits, and removes the files of the manifest just read
        return manifest

    monkeypatch.setattr(reader, "_read_manifest", then_a_save)
    reader.load(tmp_path)
    assert len(reads) == 2 and reads[0] != reads[1]  # read again, the new base
    assert_consistent(reader, entries.copy())


def test_a_malformed_base_is_never_misread(tmp_path: Path) -> None:
    first_base(tmp_path)
    manifest = json.loads((tmp_path / "index.json").read_bytes())
    rows = np.load(tmp_path / manifest["scopes"][0]["vectors"])
    np.save(tmp_path / manifest["scopes"][0]["vectors"], rows[:-1])  # one row short
    loaded = new_index()
    loaded.load(tmp_path)  # that scope is left out, the others load (it lost them all)
    short = len(manifest["scopes"][0]["ids"])
    total = sum(len(item["ids"]) for item in manifest["scopes"])
    assert len(loaded) == total - short and short > 0
    manifest["scopes"][0]["vectors"] = "../elsewhere.npy"
    manifest.pop("manifest_crc32", None)  # (as an earlier deja wrote it: unsealed)
    (tmp_path / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="names the file"):
        new_index().load(tmp_path)


def test_indexes_loaded_from_files_a_later_save_removes_keep_their_entries(
    tmp_path: Path,
) -> None:
    writer, entries = first_base(tmp_path)
    loaded = new_index()
    loaded.load(tmp_path)  # its rows and graphs are memory-mapped from the files
    mapped = entries.copy()
    for round_ in range(3):  # each save renumbers and removes the files read
        entries.remove_scope(writer, "a" if round_ == 0 else f"new{round_ - 1}")
        entries.add(writer, f"new{round_}", [f"n{round_}-{i}" for i in range(3)])
        entries.remove(writer, next(id for id in entries.of if id.startswith("big")))
        writer.save(tmp_path, merge=False)
        assert set(os.listdir(tmp_path)) == named_files(tmp_path)
        assert_consistent(loaded, mapped)
    loaded.add("mine", vec(5000), scope="big")  # copies the mapped rows and graph
    assert_consistent(loaded, {**mapped, "mine": ("big", 5000)})


def test_readers_loading_while_a_writer_saves_see_whole_indexes(tmp_path: Path) -> None:
    writer, entries = first_base(tmp_path)
    before = new_index()
    before.load(tmp_path)
    states = [entries.copy()]
    change(writer, entries)
    states.append(entries.copy())
    errors: list[BaseException] = []
    loads = 0
    stop = threading.Event()

    def read() -> None:
        nonlocal loads
        try:
            while not stop.is_set():
                reader = new_index()
                reader.load(tmp_path)
                state = next(s for s in states if sorted(reader._meta) == sorted(s))
                assert_consistent(reader, state)
                loads += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(20):  # the two states in turn, each a full base of its own
            (writer if i % 2 else before).save(tmp_path, merge=False)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors[0]
    assert loads > 0
