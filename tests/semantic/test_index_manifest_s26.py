"""A manifest (``index.json``) that is JSON of the known format and version, but not of the
shape a save writes (a field missing, of another type, lists of unequal lengths: an edit
by hand, a bad migration, bit rot that kept the JSON valid).

A load raised what the code reading it met (``KeyError: 'next_label'``, ``TypeError``,
``ValueError`` from a ``zip(strict=True)``, ``AttributeError``), where it promises
:class:`~deja.errors.ConfigError`; the cache logged "could not be loaded ('next_label')"
and nothing else. A ``tombstones`` that was not an object failed every sync of every
worker with an ``AttributeError`` (the other malformations were moved aside, as a manifest
that is not JSON is): the index was never saved again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deja.errors import ConfigError
from deja.semantic.index import InProcessIndex
from deja.testing import FakeClock

DIM = 8


def vec(i: int) -> np.ndarray:
    v = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def new_index(clock: FakeClock) -> InProcessIndex:
    return InProcessIndex(dim=DIM, hnsw_threshold=None, max_entries=None, clock=clock)


def malform(manifest: dict[str, Any], how: str) -> None:
    first = manifest["scopes"][0]
    if how == "no next_label":
        del manifest["next_label"]
    elif how == "next_label a string":
        manifest["next_label"] = "x"
    elif how == "order a string":
        manifest["order"] = "x"
    elif how == "tombstones a string":
        manifest["tombstones"] = "x"
    elif how == "scopes a number":
        manifest["scopes"] = 5
    elif how == "scope without ids":
        del first["ids"]
    elif how == "fewer payloads than ids":
        first["payloads"] = first["payloads"][1:]
    elif how == "expires not numbers":
        first["expires"] = ["soon"] * len(first["ids"])
    elif how == "strikes not numbers":
        first["strikes"] = ["x"] * len(first["ids"])
    else:  # pragma: no cover
        raise AssertionError(how)


CASES = [
    "no next_label",
    "next_label a string",
    "order a string",
    "tombstones a string",
    "scopes a number",
    "scope without ids",
    "fewer payloads than ids",
    "expires not numbers",
    "strikes not numbers",
]


def saved(root: Path, clock: FakeClock, how: str) -> None:
    index = new_index(clock)
    for i in range(10):
        index.add(f"id-{i}", vec(i), scope=f"s{i % 2}", payload=f"prompt {i}")
    index.save(root)
    manifest = json.loads((root / "index.json").read_bytes())
    malform(manifest, how)
    manifest.pop("manifest_crc32", None)  # (as an earlier deja wrote it: unsealed)
    (root / "index.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("how", CASES)
def test_a_malformed_manifest_fails_a_load_with_config_error(
    tmp_path: Path, clock: FakeClock, how: str
) -> None:
    saved(tmp_path, clock, how)
    with pytest.raises(ConfigError, match=r"manifest in .* is malformed") as caught:
        new_index(clock).load(tmp_path)
    assert str(tmp_path) in str(caught.value)  # it names where


# what only a load reads: a sync's merge takes the entries in (as before), and writes a
# base a load reads
LOAD_ONLY = {"no next_label", "next_label a string", "order a string"}


@pytest.mark.parametrize("how", CASES)
def test_a_sync_over_a_malformed_manifest_writes_a_base_that_loads(
    tmp_path: Path, clock: FakeClock, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    saved(tmp_path, clock, how)
    worker = new_index(clock)
    worker.add("mine", vec(99), scope="t", payload="my prompt")
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        assert worker.sync(tmp_path)
    restarted = new_index(clock)
    restarted.load(tmp_path)
    [hit] = restarted.search(vec(99), scope="t", k=1)
    assert (hit.id, hit.payload) == ("mine", "my prompt")
    if how in LOAD_ONLY:
        assert restarted.scopes() == {"s0": 5, "s1": 5, "t": 1}
        for i in range(10):  # each id still on its own vector and prompt
            [hit] = restarted.search(vec(i), scope=f"s{i % 2}", k=1)
            assert (hit.id, hit.payload) == (f"id-{i}", f"prompt {i}")
        assert not list(tmp_path.glob("broken-*"))
    else:  # moved aside whole, not destroyed, with a warning naming where
        assert restarted.scopes() == {"t": 1}
        [aside] = list(tmp_path.glob("broken-*"))
        assert (aside / "index.json").is_file()
        assert str(aside) in caplog.text
