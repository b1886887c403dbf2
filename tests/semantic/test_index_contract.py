"""The contract every VectorIndex passes (in-process exact and HNSW; Redis and Qdrant later)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from deja.semantic.index import Neighbor, VectorIndex
from deja.testing import FakeClock
from tests.semantic.conftest import basis

MakeIndex = Callable[..., VectorIndex]


def unit(*values: float, dim: int = 8) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def test_is_a_vector_index(make_index: MakeIndex) -> None:
    index = make_index()
    assert isinstance(index, VectorIndex)
    assert index.dim == 8
    assert len(index) == 0


def test_search_finds_the_nearest_first(make_index: MakeIndex) -> None:
    index = make_index()
    for i in range(6):
        index.add(f"e{i}", basis(i), scope="s", payload=f"text {i}")
    found = index.search(unit(1, 0.2), scope="s", k=2)
    assert [n.id for n in found] == ["e0", "e1"]
    assert found[0].similarity == pytest.approx(1 / np.sqrt(1.04), abs=1e-4)
    assert found[0].payload == "text 0"
    assert isinstance(found[0], Neighbor)


def test_scope_is_filtered_inside_the_search(make_index: MakeIndex) -> None:
    index = make_index()
    # many better matches in another scope must not crowd out the one in this scope
    for i in range(20):
        index.add(f"other-{i}", unit(1, 0.01 * i), scope="big")
    index.add("mine", basis(3), scope="small")
    found = index.search(basis(0), scope="small", k=4)
    assert [n.id for n in found] == ["mine"]
    assert index.search(basis(0), scope="nowhere", k=4) == []


def test_add_replaces_an_entry_with_the_same_id(make_index: MakeIndex) -> None:
    index = make_index()
    index.add("x", basis(0), scope="s")
    index.add("x", basis(1), scope="t")
    assert len(index) == 1
    assert index.search(basis(0), scope="s") == []
    assert index.search(basis(1), scope="t")[0].id == "x"


def test_remove(make_index: MakeIndex) -> None:
    index = make_index()
    for i in range(6):
        index.add(f"e{i}", basis(i), scope="s")
    assert index.remove("e0") is True
    assert index.remove("e0") is False
    assert len(index) == 5
    assert all(n.id != "e0" for n in index.search(basis(0), scope="s", k=10))
    assert index.search(basis(5), scope="s", k=1)[0].id == "e5"


def test_remove_scope_is_hierarchical(make_index: MakeIndex) -> None:
    index = make_index()
    index.add("a", basis(0), scope="tenant1/ctx1")
    index.add("b", basis(0), scope="tenant1/ctx2")
    index.add("c", basis(0), scope="tenant10/ctx1")
    index.add("d", basis(0), scope="tenant2/ctx1")
    assert index.remove_scope("tenant1") == 2
    assert len(index) == 2
    assert index.search(basis(0), scope="tenant10/ctx1")[0].id == "c"
    assert index.clear() == 2
    assert len(index) == 0


def test_expired_entries_are_never_returned(make_index: MakeIndex, clock: FakeClock) -> None:
    index = make_index()
    index.add("short", basis(0), scope="s", expires=clock() + 10)
    index.add("long", unit(1, 0.5), scope="s", expires=clock() + 100)
    index.add("forever", unit(1, 1), scope="s")
    assert [n.id for n in index.search(basis(0), scope="s", k=3)] == ["short", "long", "forever"]
    clock.advance(11)
    assert [n.id for n in index.search(basis(0), scope="s", k=3)] == ["long", "forever"]
    clock.advance(100)
    assert [n.id for n in index.search(basis(0), scope="s", k=3)] == ["forever"]


def test_rejects_a_vector_of_the_wrong_size(make_index: MakeIndex) -> None:
    index = make_index()
    with pytest.raises(ValueError):
        index.add("x", np.ones(5), scope="s")
    with pytest.raises(ValueError):
        index.search(np.ones(5), scope="s")


def test_save_and_load(make_index: MakeIndex, tmp_path: Path, clock: FakeClock) -> None:
    index = make_index()
    for i in range(6):
        index.add(f"e{i}", basis(i), scope="s", payload=f"p{i}", expires=clock() + 50)
    index.add("t", basis(7), scope="t/x")
    index.save(tmp_path / "ix")
    loaded = make_index()
    loaded.load(tmp_path / "ix")
    assert len(loaded) == 7
    assert loaded.search(basis(2), scope="s", k=1) == [Neighbor("e2", pytest.approx(1.0), "p2")]
    # a loaded index is still writable, and expiry survived the round trip
    loaded.add("new", basis(3), scope="s")
    loaded.remove("e1")
    assert {n.id for n in loaded.search(basis(3), scope="s", k=2)} == {"new", "e3"}
    clock.advance(60)
    assert [n.id for n in loaded.search(basis(3), scope="s", k=10)] == ["new"]
    assert loaded.remove_scope("t") == 1


def test_many_threads(make_index: MakeIndex) -> None:
    import threading

    index = make_index(dim=16)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((400, 16)).astype(np.float32)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(offset, 400, 4):
                index.add(f"v{i}", vectors[i], scope="s")
                index.search(vectors[i], scope="s", k=3)
                if i % 8 == 0:
                    index.remove(f"v{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(index) == 350


def test_search_can_return_the_stored_vectors(make_index: MakeIndex) -> None:
    index = make_index()
    stored = {f"e{i}": unit(*([0.0] * i), 1.0, 0.3 * i) for i in range(6)}
    for id, vector in stored.items():
        index.add(id, vector, scope="s", payload=id)
    # k=2: the next candidates all tie at similarity 0, in no guaranteed order
    plain = index.search(basis(2), scope="s", k=2)
    assert all(n.vector is None for n in plain)
    found = index.search(basis(2), scope="s", k=2, with_vectors=True)
    assert [(n.id, n.similarity) for n in found] == [
        (n.id, pytest.approx(n.similarity, abs=1e-5)) for n in plain
    ]
    for n in found:
        assert n.vector.shape == (8,)
        np.testing.assert_allclose(n.vector, stored[n.id], atol=1e-6)
    # a returned vector is the caller's: later writes to the index do not change it
    before = found[0].vector.copy()
    index.remove(found[0].id)
    index.add("new", basis(5), scope="s")
    np.testing.assert_array_equal(found[0].vector, before)
    # and after rows moved (a remove fills the hole with the last row) vectors still match
    for n in index.search(basis(4), scope="s", k=10, with_vectors=True):
        expected = basis(5) if n.id == "new" else stored[n.id]
        np.testing.assert_allclose(n.vector, expected, atol=1e-6)


def test_stored_vectors_survive_save_and_load(make_index: MakeIndex, tmp_path: Path) -> None:
    index = make_index()
    index.add("a", unit(1, 2, 3), scope="s")
    index.add("b", unit(3, 2, 1), scope="s")
    index.save(tmp_path / "ix")
    loaded = make_index()
    loaded.load(tmp_path / "ix")
    found = {n.id: n.vector for n in loaded.search(unit(1, 2, 3), scope="s", with_vectors=True)}
    np.testing.assert_allclose(found["a"], unit(1, 2, 3), atol=1e-6)
    np.testing.assert_allclose(found["b"], unit(3, 2, 1), atol=1e-6)


def test_strikes_count_up_and_down_never_below_zero(make_index: MakeIndex) -> None:
    index = make_index()
    index.add("x", basis(0), scope="s", payload="p")
    index.add("y", basis(1), scope="s")
    assert index.search(basis(0), scope="s", k=1)[0].strikes == 0
    assert index.strike("x", 1) == 1
    assert index.strike("x", 1) == 2
    assert index.strike("x", -1) == 1
    found = index.search(basis(0), scope="s", k=2, with_vectors=True)
    assert [(n.id, n.strikes) for n in found] == [("x", 1), ("y", 0)]
    assert index.strike("x", -5) == 0
    assert index.strike("missing", 1) is None
    assert index.search(basis(0), scope="s", k=1)[0].strikes == 0


def test_a_replaced_entry_starts_without_strikes(make_index: MakeIndex) -> None:
    index = make_index()
    index.add("x", basis(0), scope="s")
    index.strike("x", 2)
    index.add("x", basis(0), scope="s")  # a new answer under the same key
    assert index.search(basis(0), scope="s", k=1)[0].strikes == 0
    index.remove("x")
    assert index.strike("x", 1) is None


def test_strikes_survive_save_and_load(make_index: MakeIndex, tmp_path: Path) -> None:
    index = make_index()
    index.add("x", basis(0), scope="s")
    index.add("y", basis(1), scope="s")
    index.strike("x", 1)
    index.save(tmp_path / "ix")
    loaded = make_index()
    loaded.load(tmp_path / "ix")
    assert {n.id: n.strikes for n in loaded.search(basis(0), scope="s", k=2)} == {"x": 1, "y": 0}
    assert loaded.strike("x", 1) == 2


def test_rejects_a_vector_that_is_not_a_number(make_index: MakeIndex) -> None:
    """An index fed directly (not through the semantic tier, which checks its embedder's
    vectors) kept NaN vectors, which match nothing and spoil a graph's walk."""
    index = make_index()
    nan = basis(0).copy()
    nan[1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.add("x", nan, scope="s")
    with pytest.raises(ValueError, match="NaN"):
        index.add("y", np.full(8, np.inf, dtype=np.float32), scope="s")
    assert len(index) == 0
    index.add("z", basis(0), scope="s")
    with pytest.raises(ValueError, match="NaN"):
        index.search(nan, scope="s")
    assert [n.id for n in index.search(basis(0), scope="s")] == ["z"]
