"""QdrantIndex against collections it did not make or that changed under it (audit s21):
another distance, a collection deleted while deja runs, points another tool wrote, and the
errors of an injected on-disk client. All in qdrant-client's local mode."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("qdrant_client")

from qdrant_client import QdrantClient, models

from deja.errors import ConfigError, StoreError
from deja.semantic.qdrant_index import QdrantIndex, point_id
from tests.semantic.conftest import basis

COLLECTION = "deja-semantic-8"


@pytest.mark.parametrize("distance", ["EUCLID", "MANHATTAN", "DOT"])
def test_an_existing_collection_of_another_distance_is_refused(distance: str) -> None:
    client = QdrantClient(location=":memory:")
    client.create_collection(
        COLLECTION,
        vectors_config=models.VectorParams(size=8, distance=getattr(models.Distance, distance)),
    )
    index = QdrantIndex(client=client, dim=8)
    with pytest.raises(ConfigError, match=COLLECTION) as caught:
        index.add("a", basis(0), scope="s", payload="a")
    assert models.Distance[distance].value in str(caught.value)
    with pytest.raises(ConfigError):
        index.search(basis(0), scope="s")


def test_an_existing_collection_of_named_vectors_is_refused() -> None:
    client = QdrantClient(location=":memory:")
    client.create_collection(
        COLLECTION,
        vectors_config={"text": models.VectorParams(size=8, distance=models.Distance.COSINE)},
    )
    with pytest.raises(ConfigError, match="named vectors"):
        QdrantIndex(client=client, dim=8).search(basis(0), scope="s")


def test_an_existing_cosine_collection_is_used() -> None:
    client = QdrantClient(location=":memory:")
    client.create_collection(
        COLLECTION, vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE)
    )
    index = QdrantIndex(client=client, dim=8)
    index.add("a", basis(0), scope="s", payload="a")
    assert [n.id for n in index.search(basis(0), scope="s")] == ["a"]


def test_a_collection_deleted_while_running_is_created_again(tmp_path: Path) -> None:
    client = QdrantClient(path=str(tmp_path / "q"))
    index = QdrantIndex(client=client, dim=8)
    index.add("a", basis(0), scope="s", payload="a")
    client.delete_collection(COLLECTION)
    index.add("b", basis(1), scope="s", payload="b")
    assert [n.id for n in index.search(basis(1), scope="s")] == ["b"]
    assert len(index) == 1
    client.delete_collection(COLLECTION)
    assert index.search(basis(1), scope="s") == []  # a read creates it again too
    assert "b" not in index
    client.delete_collection(COLLECTION)
    assert index.clear() == 0
    index.add("c", basis(2), scope="s", payload="c")
    assert [n.id for n in index.search(basis(2), scope="s")] == ["c"]


def _foreign(client: QdrantClient, pid: int, payload: dict[str, object]) -> None:
    vector = [float(x) for x in basis(0)]
    client.upsert(
        COLLECTION, points=[models.PointStruct(id=pid, vector=vector, payload=payload)], wait=True
    )


FOREIGN: list[dict[str, object]] = [
    {"scope": "s"},  # no id, no payload
    {"scope": "s", "id": 42, "payload": "p"},  # id not a string
    {"scope": "s", "id": "dict", "payload": {"a": 1}},  # payload not a string
    {"scope": ["s", "other"], "id": "list", "payload": "p"},  # scope a list
    {"scope": "s", "id": "strikes", "payload": "p", "strikes": "many"},
    {"scope": "s", "id": "added", "payload": "p", "added": "yesterday"},
]


@pytest.mark.parametrize("body", FOREIGN, ids=[str(b) for b in FOREIGN])
def test_a_point_that_is_no_deja_entry_is_skipped_by_search_and_save(
    body: dict[str, object], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = QdrantClient(location=":memory:")
    index = QdrantIndex(client=client, dim=8)
    index.add("good", basis(0), scope="s", payload="good")
    _foreign(client, 1, body)
    with caplog.at_level(logging.WARNING, logger="deja.semantic.qdrant_index"):
        found = index.search(basis(0), scope="s", k=10)
        assert [(n.id, n.payload) for n in found] == [("good", "good")]
        assert index.search(basis(0), scope="other", k=10) == []
        index.save(tmp_path / "saved")
    assert sum("no deja entry" in r.getMessage() for r in caplog.records) == 1  # logged once
    copy = QdrantIndex(path=":memory:", dim=8)
    copy.load(tmp_path / "saved")
    assert len(copy) == 1 and "good" in copy


def test_a_strike_on_an_entry_with_a_damaged_count_is_no_error() -> None:
    client = QdrantClient(location=":memory:")
    index = QdrantIndex(client=client, dim=8)
    index.add("x", basis(0), scope="s", payload="x")
    client.set_payload(COLLECTION, payload={"strikes": "many"}, points=[point_id("x")], wait=True)
    assert index.strike("x", 1) is None
    assert index.search(basis(0), scope="s") == []


def test_errors_of_an_injected_on_disk_client_name_its_path(tmp_path: Path) -> None:
    where = str(tmp_path / "q")
    client = QdrantClient(path=where)
    index = QdrantIndex(client=client, dim=8)
    index.add("a", basis(0), scope="s")
    client.delete_collection(COLLECTION)
    client.create_collection(  # another size, made by someone else: not "not found"
        COLLECTION, vectors_config=models.VectorParams(size=16, distance=models.Distance.COSINE)
    )
    with pytest.raises(StoreError) as caught:
        index.add("b", basis(0), scope="s")
    assert f"local mode ({where})" in str(caught.value)
    assert ":memory:" not in str(caught.value)
