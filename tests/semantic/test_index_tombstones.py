"""InProcessIndex removals ("tombstones"): what a merge needs of them, kept bounded.

An index remembers the entries it removed (and when) so that a save merging another
process's index does not bring them back. Those were pruned only by a full save, so an
index never saved (``deja.Cache(semantic=SemanticCache())``, a proxy with a memory store)
kept one per eviction for ever.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import deja.semantic.index as index_module
from deja.semantic.index import InProcessIndex
from deja.testing import FakeClock

DAY = 86400.0


def vec(i: int, dim: int = 16) -> np.ndarray:
    v = np.random.default_rng(i).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def churn(index: InProcessIndex, clock: FakeClock, names: range, prefix: str = "e") -> None:
    for i in names:
        clock.advance(1)
        index.add(f"{prefix}{i}", vec(i % 50), scope="s")


def loaded(path: Path, clock: FakeClock) -> InProcessIndex:
    index = InProcessIndex(dim=16, clock=clock, max_entries=None)
    index.load(path)
    return index


def test_an_index_never_saved_remembers_no_eviction(clock: FakeClock) -> None:
    index = InProcessIndex(dim=16, max_entries=32, clock=clock)
    churn(index, clock, range(5000))
    assert len(index) == 32 and index.evictions == 5000 - 32
    assert not index._tombstones and not index._pending.removed
    assert not index._pending.added - set(index._meta)
    # what it removes otherwise is remembered
    assert index.remove("e4999")
    assert list(index._tombstones) == ["e4999"]


def test_a_clear_before_the_first_save_keeps_other_processes_entries(
    tmp_path: Path, clock: FakeClock
) -> None:
    # (a regression of a bound on removals that made a merge refuse older entries)
    other = InProcessIndex(dim=16, max_entries=None, clock=clock)
    for i in range(5):
        other.add(f"b{i}", vec(i), scope="s")
    other.save(tmp_path)
    clock.advance(1)
    mine = InProcessIndex(dim=16, max_entries=10, clock=clock)
    churn(mine, clock, range(20), prefix="a")
    mine.clear()
    mine.save(tmp_path)
    assert sorted(loaded(tmp_path, clock)._meta) == [f"b{i}" for i in range(5)]


def test_removals_before_the_first_save_keep_to_the_bound(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "_MAX_TOMBSTONES", 64)
    index = InProcessIndex(dim=16, max_entries=None, clock=clock)
    churn(index, clock, range(1000))
    index.clear()
    assert 60 <= len(index._tombstones) <= 64
    assert index._pending.removed == set(index._tombstones)


def test_a_saved_index_keeps_at_most_the_bound_the_oldest_let_go_first(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "_MAX_TOMBSTONES", 64)
    index = InProcessIndex(dim=16, max_entries=4, clock=clock)
    index.add("seed", vec(0), scope="s")
    index.save(tmp_path)  # attached: the full bound from now on, though never saved again
    churn(index, clock, range(1000))
    assert 60 <= len(index._tombstones) <= 64
    kept = sorted(index._tombstones, key=index._tombstones.__getitem__)
    assert kept[-1] == "e995"  # the latest eviction ...
    assert kept == [f"e{i}" for i in range(996 - len(kept), 996)]  # ... and those before it
    # a delta writes what is remembered: the pending removals went with their tombstones
    assert index._pending.removed == set(kept)
    assert index.sync(tmp_path)
    doc = loaded(tmp_path, clock)._tombstones
    assert sorted(doc) == sorted(kept)


def test_removals_are_let_go_after_seven_days(tmp_path: Path, clock: FakeClock) -> None:
    index = InProcessIndex(dim=16, max_entries=8, clock=clock)
    churn(index, clock, range(8))
    assert index.remove("e0") and index.remove("e1")
    clock.advance(8 * DAY)
    assert index.remove("e2")
    index.save(tmp_path)  # a full save keeps the last 7 days' removals only
    assert sorted(index._tombstones) == ["e2"]


def test_the_oldest_are_let_go_first_also_when_taken_in_out_of_order(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "_MAX_TOMBSTONES", 32)
    seed = InProcessIndex(dim=16, max_entries=None, clock=clock)
    for i in range(10):
        seed.add(f"old{i}", vec(i), scope="s")
    seed.save(tmp_path)
    a, b = loaded(tmp_path, clock), loaded(tmp_path, clock)
    clock.advance(10)
    for i in range(10):  # b's removals: earlier than a's
        assert b.remove(f"old{i}")
    assert b.sync(tmp_path)
    clock.advance(10)
    a.add("x", vec(20), scope="s")
    for i in range(20):  # a's own removals are recorded first, b's taken in after them
        a.add(f"a{i}", vec(i + 30), scope="s")
        assert a.remove(f"a{i}")
    assert a.sync(tmp_path)
    assert all(f"old{i}" in a._tombstones for i in range(10))
    for i in range(20, 40):
        a.add(f"a{i}", vec(i + 30), scope="s")
        assert a.remove(f"a{i}")
    # b's older removals went first, though a's own were in the table before them
    assert not any(f"old{i}" in a._tombstones for i in range(10))
    assert "a39" in a._tombstones and len(a._tombstones) <= 32


def test_a_removal_before_the_first_save_is_not_brought_back_by_its_merge(
    tmp_path: Path, clock: FakeClock
) -> None:
    other = InProcessIndex(dim=16, max_entries=None, clock=clock)
    other.add("x", vec(1), scope="s", payload="other's")
    other.add("y", vec(2), scope="s")
    other.save(tmp_path)
    clock.advance(1)
    mine = InProcessIndex(dim=16, max_entries=100, clock=clock)  # never loaded the dir
    mine.add("x", vec(1), scope="s", payload="mine")
    assert mine.remove("x")
    mine.save(tmp_path)
    assert "x" not in mine and "y" in mine
    assert "x" not in loaded(tmp_path, clock)


def test_a_saved_index_has_its_full_bound_and_no_cut_off(tmp_path: Path, clock: FakeClock) -> None:
    """Once loaded, saved or synced, an index remembers up to the full bound (it shares a
    directory: the others' entries are taken in as before)."""
    index = InProcessIndex(dim=16, max_entries=4, clock=clock)
    index.save(tmp_path)
    churn(index, clock, range(200))
    assert len(index._tombstones) == 196


def test_expired_entries_purged_do_not_stay_pending(clock: FakeClock) -> None:
    index = InProcessIndex(dim=16, max_entries=None, clock=clock)
    for i in range(100):
        index.add(f"e{i}", vec(i), scope="s", expires=clock() + 10)
        index.strike(f"e{i}", 1)
    clock.advance(11)
    assert index.purge_expired() == 100
    assert not index._pending.added and not index._pending.struck
    index.add("z", vec(0), scope="s")
    index.strike("z", 1)
    assert index.remove_scope("s") == 1
    assert not index._pending.added and not index._pending.struck
