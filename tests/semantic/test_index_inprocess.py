"""InProcessIndex specifics: eviction, exact vs HNSW, memory-mapped reload."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deja.semantic.index import InProcessIndex
from deja.testing import FakeClock


def vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_bounded_size_evicts_the_oldest_first(clock: FakeClock) -> None:
    index = InProcessIndex(dim=32, max_entries=3, clock=clock)
    v = vectors(5)
    for i in range(4):
        index.add(f"e{i}", v[i], scope="s")
    assert len(index) == 3
    assert "e0" not in index
    index.add("e1", v[1], scope="s")  # re-adding makes an entry the newest
    index.add("e4", v[4], scope="s")
    assert sorted(index.scopes().items()) == [("s", 3)]
    assert "e2" not in index and "e1" in index
    assert index.evictions == 2


def test_expired_entries_are_evicted_before_live_ones(clock: FakeClock) -> None:
    index = InProcessIndex(dim=32, max_entries=2, clock=clock)
    v = vectors(3)
    index.add("old-live", v[0], scope="s")
    index.add("young-expiring", v[1], scope="s", expires=clock() + 1)
    clock.advance(5)
    index.add("new", v[2], scope="s")
    assert "old-live" in index and "new" in index


def test_a_growing_scope_switches_to_hnsw_with_the_same_answers() -> None:
    index = InProcessIndex(dim=32, hnsw_threshold=100, max_entries=None)
    v = vectors(300)
    index.add_many([f"e{i}" for i in range(150)], v[:150], scope="s")
    assert index.is_hnsw("s")
    for i in range(150, 300):
        index.add(f"e{i}", v[i], scope="s")
    exact = InProcessIndex(dim=32, hnsw_threshold=None, max_entries=None)
    exact.add_many([f"e{i}" for i in range(300)], v, scope="s")
    queries = vectors(50, seed=1)
    agree = sum(
        index.search(q, scope="s", k=1)[0].id == exact.search(q, scope="s", k=1)[0].id
        for q in queries
    )
    assert agree >= 47  # an approximate graph (i8: 49 or 50 of 50 in 40 builds)


def test_reload_is_memory_mapped_and_copy_on_write(tmp_path: Path) -> None:
    index = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None)
    v = vectors(80)
    index.add_many([f"e{i}" for i in range(80)], v, scope="big")
    index.add("lone", v[0], scope="small")
    index.save(tmp_path)
    loaded = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None)
    loaded.load(tmp_path)
    big = loaded._scopes["big"]
    assert isinstance(big.matrix, np.memmap) and big.hnsw_viewed
    assert loaded.search(v[5], scope="big", k=1)[0].id == "e5"
    loaded.add("e80", v[1] * -1, scope="big")  # first write copies into memory
    assert not isinstance(loaded._scopes["big"].matrix, np.memmap)
    assert loaded.search(-v[1], scope="big", k=1)[0].id == "e80"
    # saving again over the files the loaded index reads is safe
    loaded.save(tmp_path)
    again = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None)
    again.load(tmp_path)
    assert len(again) == 82


def test_load_refuses_another_dimension(tmp_path: Path) -> None:
    import pytest

    from deja.errors import ConfigError

    InProcessIndex(dim=32).save(tmp_path)
    with pytest.raises(ConfigError):
        InProcessIndex(dim=16).load(tmp_path)
    with pytest.raises(ConfigError):
        InProcessIndex(dim=16).load(tmp_path / "missing")


def test_a_reloaded_graph_searches_with_the_configured_expansion(tmp_path: Path) -> None:
    index = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None, expansion_search=200)
    index.add_many([f"e{i}" for i in range(80)], vectors(80), scope="big")
    index.save(tmp_path)
    loaded = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None, expansion_search=200)
    loaded.load(tmp_path)
    # usearch restores a graph with its own default (64); a large index needs more
    assert loaded._scopes["big"].hnsw.expansion_search == 200


def test_the_default_search_expansion_grows_with_the_scope() -> None:
    from deja.semantic.index import auto_expansion

    assert [auto_expansion(n) for n in (1, 200_000, 200_001, 500_000, 1_000_000)] == [
        64,
        64,
        128,
        128,
        256,
    ]
    index = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None)
    index.add_many([f"e{i}" for i in range(80)], vectors(80), scope="big")
    assert index.search(vectors(1)[0], scope="big", k=1)
    assert index._scopes["big"].hnsw.expansion_search == auto_expansion(80, "i8") == 96
    assert [auto_expansion(n, "i8") for n in (1, 500_000, 1_000_000)] == [96, 192, 384]
    # a graph saved as f32 (by an earlier version) searches with the f32 steps
    f32 = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None, quantization="f32")
    f32.add_many([f"e{i}" for i in range(80)], vectors(80), scope="big")
    assert f32.search(vectors(1)[0], scope="big", k=1)
    assert f32._scopes["big"].hnsw.expansion_search == 64


@pytest.mark.parametrize("quantization", ["i8", "bf16", "f32"])
def test_a_quantized_graph_returns_exact_similarities_in_order(quantization: str) -> None:
    index = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None, quantization=quantization)
    v = vectors(200)
    index.add_many([f"e{i}" for i in range(200)], v, scope="s")
    assert str(index._scopes["s"].hnsw.dtype).lower().endswith(quantization)
    exact = InProcessIndex(dim=32, hnsw_threshold=None, max_entries=None)
    exact.add_many([f"e{i}" for i in range(200)], v, scope="s")
    agree = 0
    for q in vectors(40, seed=3):
        found = index.search(q, scope="s", k=4)
        sims = [n.similarity for n in found]
        assert sims == sorted(sims, reverse=True)
        for n in found:  # the full-precision similarity, not the graph's estimate
            assert n.similarity == pytest.approx(float(v[int(n.id[1:])] @ q), abs=1e-6)
        agree += found[0].id == exact.search(q, scope="s", k=1)[0].id
    assert agree >= 36  # an approximate graph: a node may be out of its reach


def test_a_reloaded_graph_keeps_its_quantization_when_first_written(tmp_path: Path) -> None:
    index = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None, quantization="bf16")
    v = vectors(81)
    index.add_many([f"e{i}" for i in range(80)], v[:80], scope="big")
    index.save(tmp_path)
    # the saved file says how its graph stores vectors, whatever the loader's default
    loaded = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None)
    loaded.load(tmp_path)
    loaded.add("e80", v[80], scope="big")  # copies the viewed graph into memory
    big = loaded._scopes["big"]
    assert not big.hnsw_viewed and str(big.hnsw.dtype).lower().endswith("bf16")
    assert loaded.search(v[80], scope="big", k=1)[0].id == "e80"
    assert loaded.search(v[7], scope="big", k=1)[0].id == "e7"


def test_every_entry_of_a_batch_is_found_by_its_own_vector() -> None:
    # usearch adds a batch on several threads and leaves a few entries unreachable (about
    # one 80-entry build in three here) unless they are added again
    for seed in range(20):
        index = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None)
        v = vectors(80, seed=seed)
        index.add_many([f"e{i}" for i in range(80)], v, scope="s")
        assert index._scopes["s"].hnsw is not None
        found = [index.search(v[i], scope="s", k=1)[0].id for i in range(80)]
        assert found == [f"e{i}" for i in range(80)], f"seed {seed}"


@pytest.fixture
def held_build(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Graph builds wait, once their graph is built, until the second event is set (the
    first says one is waiting)."""
    from deja.semantic import index as module

    building, release = threading.Event(), threading.Event()
    relink = module._relink

    def held_relink(*args: object) -> None:
        building.set()
        assert release.wait(10)
        relink(*args)

    monkeypatch.setattr(module, "_relink", held_relink)
    yield building, release
    release.set()


def building_at_50(building: threading.Event, v: np.ndarray) -> InProcessIndex:
    """An index whose scope "s" just crossed its threshold of 50 (e0..e50 from ``v``),
    its graph held mid-build."""
    index = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None)
    index.add_many([f"e{i}" for i in range(50)], v[:50], scope="s")
    index.add("e50", v[50], scope="s")  # crosses the threshold: returns while it builds
    assert building.wait(10)
    return index


def test_a_graph_built_in_the_background_takes_in_what_changed_meanwhile(
    held_build: tuple[threading.Event, threading.Event],
) -> None:
    building, release = held_build
    v = vectors(80)
    index = building_at_50(building, v)
    assert not index.is_hnsw("s")
    assert index.search(v[3], scope="s", k=1)[0].id == "e3"  # searched exactly meanwhile
    index.remove("e1")
    index.add("e2", v[60], scope="s")  # the same id, another vector
    index.add("e0", v[0], scope="other")  # moves to another scope
    index.add_many([f"e{i}" for i in range(51, 55)], v[51:55], scope="s")
    release.set()
    assert index.join_builds(10)
    assert index.is_hnsw("s")
    s = index._scopes["s"]
    assert len(s.hnsw) == len(s.ids) == 53 and set(s.label_of) == set(s.ids)
    live = {f"e{i}": v[i] for i in range(3, 55)} | {"e2": v[60]}
    for id, vector in live.items():
        assert index.search(vector, scope="s", k=1)[0].id == id
    assert all(n.id not in ("e0", "e1") for n in index.search(v[1], scope="s", k=10))
    assert index.search(v[2], scope="s", k=1)[0].id != "e2"


def test_a_scope_saved_while_its_graph_was_built_gets_one_after_loading(
    held_build: tuple[threading.Event, threading.Event], tmp_path: Path
) -> None:
    building, release = held_build
    v = vectors(60)
    index = building_at_50(building, v)
    index.save(tmp_path)  # the graph is not there yet: the scope is saved without one
    release.set()
    assert index.join_builds(10) and index.is_hnsw("s")
    loaded = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None)
    loaded.load(tmp_path)
    # searched exactly at first, then by the graph built in the background
    assert loaded.search(v[7], scope="s", k=1)[0].id == "e7"
    assert loaded.join_builds(10) and loaded.is_hnsw("s")
    for i in range(51):
        assert loaded.search(v[i], scope="s", k=1)[0].id == f"e{i}"


def test_a_scope_removed_while_its_graph_is_built_drops_it(
    held_build: tuple[threading.Event, threading.Event],
) -> None:
    building, release = held_build
    v = vectors(60)
    index = building_at_50(building, v)
    assert index.remove_scope("s") == 51
    index.add("again", v[55], scope="s")
    release.set()
    assert index.join_builds(10)
    assert not index.is_hnsw("s") and index.scopes() == {"s": 1}
    assert index.search(v[55], scope="s", k=1)[0].id == "again"


def test_an_unknown_quantization_is_refused() -> None:
    with pytest.raises(ValueError, match="quantization"):
        InProcessIndex(dim=32, quantization="f64")


def test_a_viewed_graph_survives_a_save_that_renumbers_the_files(tmp_path: Path) -> None:
    index = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None)
    v = vectors(161)
    index.add_many([f"a{i}" for i in range(80)], v[:80], scope="a")  # saved as scope-0
    index.add_many([f"b{i}" for i in range(80)], v[80:160], scope="b")  # as scope-1
    index.save(tmp_path)
    loaded = InProcessIndex(dim=32, hnsw_threshold=50, max_entries=None)
    loaded.load(tmp_path)  # both graphs viewed from their files
    assert loaded.remove_scope("a") == 80
    loaded.save(tmp_path)  # "b" is scope-0 now; scope-1.usearch is gone
    loaded.add("b80", v[160], scope="b")  # first write to the viewed graph of "b"
    assert loaded.search(v[160], scope="b", k=1)[0].id == "b80"
    assert loaded.search(v[100], scope="b", k=1)[0].id == "b20"


def test_a_bulk_load_with_a_nan_vector_adds_nothing() -> None:
    import numpy as np

    from deja.semantic.index import InProcessIndex

    index = InProcessIndex(dim=4)
    vectors = np.eye(4, dtype=np.float32)[:3].copy()
    vectors[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.add_many(["a", "b", "c"], vectors, scope="s")
    assert len(index) == 0
