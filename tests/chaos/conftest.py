"""Chaos runs are opt-in: collected only when ``tests/chaos`` (or a file in it) is named on
the command line, as ``make chaos`` does. ``make test`` (plain ``pytest``) never sees them,
so its collection and its time budget are untouched.

Options (each also read from the environment, so ``make chaos`` passes them through):
``--chaos-seed`` / ``DEJA_CHAOS_SEED`` (default: a new random seed, printed) and
``--chaos-ops`` / ``DEJA_CHAOS_OPS`` (operations per run, default :data:`DEFAULT_OPS`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.checks import Ledger
from tests.stores.redis_servers import ValkeyServer, start_standalone

HERE = Path(__file__).parent
DEFAULT_OPS = 700
SEED = pytest.StashKey[int]()
OPS = pytest.StashKey[int]()
# pytest-timeout is a backstop only (every request has its own deadline, which is reported
# as a violation): generous, and growing with the run's length.
BASE_TIMEOUT = 240
TIMEOUT_PER_OP = 0.4


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "randomized end-to-end runs (tests/chaos)")
    group.addoption("--chaos-seed", type=int, default=None, help="replay this seed")
    group.addoption("--chaos-ops", type=int, default=None, help="operations per run")


def _named_on_command_line(config: pytest.Config) -> bool:
    """Whether a command-line argument is this directory or something in it."""
    here = HERE.resolve()
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::", 1)[0]).resolve()
        if path == here or here in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave the runs out unless asked for (``None``: pytest's other rules decide)."""
    if collection_path.name.startswith("test_") and not _named_on_command_line(config):
        return True
    return None


def _setting(config: pytest.Config, option: str, variable: str) -> int | None:
    """The option's value, else the environment variable's, else ``None``."""
    value: int | None = config.getoption(option, default=None)
    if value is None and os.environ.get(variable):
        value = int(os.environ[variable])
    return value


def pytest_configure(config: pytest.Config) -> None:
    seed = _setting(config, "--chaos-seed", "DEJA_CHAOS_SEED")
    ops = _setting(config, "--chaos-ops", "DEJA_CHAOS_OPS")
    config.stash[SEED] = seed if seed is not None else random.SystemRandom().randrange(10**6)
    config.stash[OPS] = ops if ops is not None else DEFAULT_OPS


def pytest_report_header(config: pytest.Config) -> str:
    seed, ops = config.stash[SEED], config.stash[OPS]
    return f"chaos: seed {seed}, {ops} operations per run (replay: DEJA_CHAOS_SEED={seed})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    timeout = BASE_TIMEOUT + TIMEOUT_PER_OP * config.stash[OPS]
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.timeout(timeout))


@pytest.fixture
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    """The violations and figures of this run, which ends the test with its verdict."""
    config = request.config
    return Ledger(
        run=request.node.nodeid,
        seed=config.stash[SEED],
        ops=config.stash[OPS],
        directory=tmp_path,
    )


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyServer]:
    """One valkey-server for the session; each run that uses it flushes it first."""
    server = start_standalone(tmp_path_factory.mktemp("valkey"))
    yield server
    server.kill()
