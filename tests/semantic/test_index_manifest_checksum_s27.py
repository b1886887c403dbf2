"""The manifest (``index.json``) carries a checksum of its own.

The CRC-32s in a manifest cover the files it names, not itself: an edit by hand or bit rot
that kept the JSON valid (two ids swapped in a scope's id table, one digit of an expiry
changed) loaded silently, and a search found an entry's vector and answered with another
entry's id, so another prompt's answer. A save now puts a CRC-32 of the manifest's bytes
first in it; a load of a manifest that fails it raises ConfigError, and a sync moves the
base aside whole and writes a new one (as for a manifest that is not JSON). A manifest
without the field (an earlier version's save) loads as before.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

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


def saved(root: Path, clock: FakeClock) -> bytes:
    index = new_index(clock)
    for i in range(10):
        index.add(f"id-{i}", vec(i), scope="s", payload=f"prompt {i}", expires=clock() + 3600)
    index.save(root)
    return (root / "index.json").read_bytes()


def swap_ids(data: bytes) -> bytes:
    """``id-1`` and ``id-3`` traded everywhere (same lengths: valid JSON, same layout)."""
    return (
        data.replace(b'"id-1"', b'"id-x"')
        .replace(b'"id-3"', b'"id-1"')
        .replace(b'"id-x"', b'"id-3"')
    )


def test_a_save_puts_the_checksum_first(tmp_path: Path, clock: FakeClock) -> None:
    data = saved(tmp_path, clock)
    assert data.startswith(b'{"manifest_crc32":')
    assert json.loads(data)["format"] == "deja-vector-index"


def test_swapped_ids_fail_the_load(tmp_path: Path, clock: FakeClock) -> None:
    data = saved(tmp_path, clock)
    (tmp_path / "index.json").write_bytes(swap_ids(data))
    with pytest.raises(ConfigError, match=r"manifest in .* is damaged.*checksum") as caught:
        new_index(clock).load(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_a_changed_digit_fails_the_load(tmp_path: Path, clock: FakeClock) -> None:
    data = saved(tmp_path, clock)
    at = data.index(b'"expires":[') + len(b'"expires":[')
    digit = data[at : at + 1]
    assert digit.isdigit()
    other = b"1" if digit != b"1" else b"2"
    (tmp_path / "index.json").write_bytes(data[:at] + other + data[at + 1 :])
    with pytest.raises(ConfigError, match="does not match its checksum"):
        new_index(clock).load(tmp_path)


def test_a_rewritten_manifest_with_its_old_checksum_fails_the_load(
    tmp_path: Path, clock: FakeClock
) -> None:
    manifest = json.loads(saved(tmp_path, clock))
    (tmp_path / "index.json").write_text(json.dumps(manifest, indent=2))  # same content
    with pytest.raises(ConfigError, match="not where a save puts it"):
        new_index(clock).load(tmp_path)


def test_a_sync_over_a_damaged_manifest_sets_the_base_aside_and_writes_one_that_loads(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    data = saved(tmp_path, clock)
    (tmp_path / "index.json").write_bytes(swap_ids(data))
    worker = new_index(clock)
    worker.add("mine", vec(99), scope="t", payload="my prompt")
    with caplog.at_level(logging.WARNING, logger="deja.semantic"):
        assert worker.sync(tmp_path)
    [aside] = list(tmp_path.glob("broken-*"))
    assert (aside / "index.json").read_bytes() == swap_ids(data)  # kept for a look
    assert str(aside) in caplog.text
    restarted = new_index(clock)
    restarted.load(tmp_path)
    assert restarted.scopes() == {"t": 1}  # no entry on another's vector
    [hit] = restarted.search(vec(99), scope="t", k=1)
    assert (hit.id, hit.payload) == ("mine", "my prompt")


def test_a_manifest_without_a_checksum_loads_and_the_next_save_adds_one(
    tmp_path: Path, clock: FakeClock
) -> None:
    manifest = json.loads(saved(tmp_path, clock))
    del manifest["manifest_crc32"]  # as an earlier deja wrote it
    (tmp_path / "index.json").write_text(json.dumps(manifest))
    index = new_index(clock)
    index.load(tmp_path)
    for i in range(10):
        [hit] = index.search(vec(i), scope="s", k=1)
        assert (hit.id, hit.payload) == (f"id-{i}", f"prompt {i}")
    index.add("new", vec(50), scope="s", payload="new prompt")
    index.save(tmp_path)
    assert (tmp_path / "index.json").read_bytes().startswith(b'{"manifest_crc32":')
    again = new_index(clock)
    again.load(tmp_path)
    assert again.scopes() == {"s": 11}


@pytest.mark.parametrize(
    "damaged", [b'{"manifest_crc33":', b'{"manifest_drc32":', b'{"xanifest_crc32":']
)
def test_a_damaged_checksum_name_fails_the_load(
    tmp_path: Path, clock: FakeClock, damaged: bytes
) -> None:
    """A byte of the checksum's own name damaged: the field was no longer found, and the
    manifest loaded unchecked, as an earlier version's (which begins with "format")."""
    data = saved(tmp_path, clock)
    head = b'{"manifest_crc32":'
    assert data.startswith(head)
    (tmp_path / "index.json").write_bytes(swap_ids(damaged + data[len(head) :]))
    with pytest.raises(ConfigError, match="checksum is not where a save puts it"):
        new_index(clock).load(tmp_path)
