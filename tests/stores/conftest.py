"""Fixtures for the store contract suite: every store in STORE_FACTORIES runs every test.

To put a new store under the contract, add one line to ``STORE_FACTORIES``: a callable
taking ``(tmp_path, clock)`` and returning a fresh, empty store that expires by ``clock``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deja.stores import DiskStore, MemoryStore, Store
from deja.testing import FakeClock

StoreFactory = Callable[[Path, FakeClock], Store]

STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": lambda tmp_path, clock: MemoryStore(clock=clock),
    "disk": lambda tmp_path, clock: DiskStore(tmp_path / "disk", clock=clock),
}


@pytest.fixture
def clock() -> FakeClock:
    """A wall clock that only moves when a test advances it."""
    return FakeClock()


@pytest.fixture(params=list(STORE_FACTORIES), ids=list(STORE_FACTORIES))
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Callable[[], Store]]:
    """Build stores of one kind (each call a new store object); all closed at teardown."""
    factory = STORE_FACTORIES[request.param]
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
