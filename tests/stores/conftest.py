"""Fixtures for the store contract suite: every store in STORE_FACTORIES runs every test.

To put a new store under the contract, add one line to ``STORE_FACTORIES``: a callable
taking ``(tmp_path, clock)`` and returning a fresh, empty store that expires by ``clock``.
A store that lives on a server started by a session fixture is a :class:`ServerStore`
instead: it names the fixture, and says whether expiry is the server's (then the tests
that move a :class:`FakeClock` skip it, since no fake clock moves a server's clock; such
a store proves its TTLs with short real ones in its own test module).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from deja.stores import DiskStore, MemoryStore, Store
from deja.testing import FakeClock

if TYPE_CHECKING:
    from tests.stores import redis_servers

StoreFactory = Callable[[Path, FakeClock], Store]


@dataclass(frozen=True)
class ServerStore:
    """A store on a server: ``build(server, tmp_path, clock)`` with the fixture's value.

    ``build`` must return a fresh, empty store (flush the test server first).
    ``server_side_expiry``: the server expires entries by its own clock, so the contract
    tests that advance a FakeClock are skipped for this store.
    """

    fixture: str
    build: Callable[[Any, Path, FakeClock], Store]
    server_side_expiry: bool = True


def _redis_store(server: Any, tmp_path: Path, clock: FakeClock) -> Store:
    from deja.stores.redis import RedisStore
    from tests.stores.redis_servers import ValkeyCluster

    server.flush()  # our own test server: flushing it is fine
    if isinstance(server, ValkeyCluster):
        return RedisStore(startup_nodes=server.startup_nodes)
    return RedisStore(url=server.url)


def _s3_store(tmp_path: Path, clock: FakeClock) -> Store:
    # Imported on use: moto's server starts only when an S3 test runs (a fresh bucket each).
    pytest.importorskip("moto")
    from tests.stores.s3_server import shared_server

    return shared_server().store(clock=clock)


STORE_FACTORIES: dict[str, StoreFactory | ServerStore] = {
    "memory": lambda tmp_path, clock: MemoryStore(clock=clock),
    "disk": lambda tmp_path, clock: DiskStore(tmp_path / "disk", clock=clock),
    "s3": _s3_store,
    "redis": ServerStore("redis_server", _redis_store),
    "redis-cluster": ServerStore("redis_cluster", _redis_store),
}


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[redis_servers.ValkeyServer]:
    """One standalone valkey-server for the whole session (flushed by each store factory)."""
    from tests.stores.redis_servers import start_standalone

    server = start_standalone(tmp_path_factory.mktemp("valkey"))
    yield server
    server.kill()


@pytest.fixture(scope="session")
def redis_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[redis_servers.ValkeyCluster]:
    """A 3-master valkey cluster for the whole session."""
    from tests.stores.redis_servers import start_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("valkey-cluster"))
    yield cluster
    cluster.kill()


@pytest.fixture(scope="session")
def redis_sentinel(
    tmp_path_factory: pytest.TempPathFactory, redis_server: redis_servers.ValkeyServer
) -> Iterator[redis_servers.ValkeySentinel]:
    """A sentinel watching :func:`redis_server` as its master."""
    from tests.stores.redis_servers import start_sentinel

    sentinel = start_sentinel(tmp_path_factory.mktemp("sentinel"), redis_server)
    yield sentinel
    sentinel.server.kill()


@pytest.fixture
def clock() -> FakeClock:
    """A wall clock that only moves when a test advances it."""
    return FakeClock()


@pytest.fixture(params=list(STORE_FACTORIES), ids=list(STORE_FACTORIES))
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Callable[[], Store]]:
    """Build stores of one kind (each call a new store object); all closed at teardown."""
    entry = STORE_FACTORIES[request.param]
    factory: StoreFactory
    if isinstance(entry, ServerStore):
        test_args = inspect.signature(request.function).parameters
        if entry.server_side_expiry and "clock" in test_args:
            pytest.skip(f"{request.param} expires by the server's clock; FakeClock cannot move it")
        server = request.getfixturevalue(entry.fixture)
        build = entry.build

        def factory(tmp_path: Path, clock: FakeClock) -> Store:
            return build(server, tmp_path, clock)

    else:
        factory = entry
    made: list[Store] = []

    def make() -> Store:
        store = factory(tmp_path, clock)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    """A fresh, empty store of each kind."""
    return make_store()


@pytest.fixture(params=["standalone", "cluster"])
def topology(request: pytest.FixtureRequest) -> Any:
    """The session's standalone valkey server or cluster, flushed: each test starts empty."""
    fixture = "redis_server" if request.param == "standalone" else "redis_cluster"
    server = request.getfixturevalue(fixture)
    server.flush()
    return server


@pytest.fixture
def make_redis() -> Iterator[Callable[..., Any]]:
    """Build RedisStores on a test server (standalone or cluster); each closed at teardown."""
    from deja.stores.redis import RedisStore
    from tests.stores.redis_servers import ValkeyCluster

    made: list[RedisStore] = []

    def make(server: Any, **options: Any) -> RedisStore:
        if isinstance(server, ValkeyCluster):
            store = RedisStore(startup_nodes=server.startup_nodes, **options)
        else:
            store = RedisStore(url=server.url, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()
