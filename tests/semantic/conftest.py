"""Fixtures of the semantic tier tests.

``embedder`` is one :class:`LocalEmbedder` for the whole session (the model loads once,
~0.3 s). ``make_index`` builds fresh indexes of every kind in ``INDEX_FACTORIES``: to put
a new index under the contract suite, add one line there (a callable taking ``(dim,
clock)`` and returning a fresh, empty index that expires by ``clock``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")  # before usearch: the other order crashes onnxruntime
if importlib.util.find_spec("usearch") is None:
    pytest.skip("usearch is not installed", allow_module_level=True)

from deja.semantic.index import InProcessIndex, VectorIndex
from deja.testing import FakeClock

IndexFactory = Callable[[int, FakeClock], VectorIndex]

INDEX_FACTORIES: dict[str, IndexFactory] = {
    "exact": lambda dim, clock: InProcessIndex(dim=dim, clock=clock, hnsw_threshold=None),
    # a tiny HNSW threshold so that the contract runs through the graph as well
    "hnsw": lambda dim, clock: InProcessIndex(dim=dim, clock=clock, hnsw_threshold=4),
}


@pytest.fixture(scope="session")
def embedder() -> Any:
    pytest.importorskip("tokenizers")
    from deja.semantic.embedders import LocalEmbedder

    embedder = LocalEmbedder()
    embedder.load()
    return embedder


@pytest.fixture(params=list(INDEX_FACTORIES), ids=list(INDEX_FACTORIES))
def make_index(request: pytest.FixtureRequest, clock: FakeClock) -> Callable[..., VectorIndex]:
    factory = INDEX_FACTORIES[request.param]

    def make(dim: int = 8) -> VectorIndex:
        return factory(dim, clock)

    return make
