"""A shared semantic index is never loaded from, nor saved to, a cache's semantic_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import deja
from deja.stores.disk import DiskStore
from tests.helpers import chat_request, chat_response

pytest.importorskip("qdrant_client")


def test_a_shared_index_ignores_semantic_path(
    embedder: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With an index other processes share (a Qdrant server; here qdrant-client's on-disk
    local mode, which is not this process's alone), each restart's first lookup loaded
    its old save over the shared collection: the other workers' entries went, and one
    they had reported wrong came back and was served again."""
    from qdrant_client import QdrantClient

    from deja.semantic import SemanticCache
    from deja.semantic.qdrant_index import QdrantIndex

    shared = QdrantClient(path=str(tmp_path / "qdrant"))
    index = QdrantIndex(client=shared, dim=384)
    assert not index.process_local
    saved = tmp_path / "semantic"
    with caplog.at_level("WARNING", logger="deja"):
        cache = deja.Cache(
            store=DiskStore(tmp_path / "store"),
            semantic=SemanticCache(embedder=embedder, index=index),
            semantic_path=saved,
        )
    assert "is not used" in caplog.text
    other = deja.Cache(  # another worker on the same index, stores an entry meanwhile
        store=DiskStore(tmp_path / "store"),
        semantic=SemanticCache(embedder=embedder, index=QdrantIndex(client=shared, dim=384)),
    )
    other.fetch(chat_request("What is the boiling point of water?"), lambda: chat_response("100 C"))
    cache.fetch(chat_request("How do I reset my router?"), lambda: chat_response("Hold reset."))
    assert len(index) == 2  # neither replaced the other's
    cache.close()
    other.close()
    assert not saved.exists()  # nothing saved there to load over the shared one later
