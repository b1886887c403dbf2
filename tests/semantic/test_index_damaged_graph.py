"""A saved HNSW graph that is damaged, or that nothing vouches for, never reaches usearch.

usearch maps a saved graph (``scope-*.usearch``) without checking it: a file damaged past
its header (bit rot, a bad copy) loaded fine, and the first search in its scope killed the
process with SIGSEGV, at every restart. A save now records each graph's CRC-32 in the
manifest and a load checks it first: a graph that fails the check, or was saved without
one (by an earlier version), is left unused, its scope searched exactly from its rows (the
authoritative copy) while its graph is rebuilt from them, and the next sync writes the
base again with the new graph. The loads of a damaged graph run in a child process: on
a regression, the crash fails one test instead of killing the test run.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deja.semantic.index import InProcessIndex

DIM = 16
BIG = 200  # entries of the scope with a graph (past the threshold of 40)


def vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def saved(root: Path) -> dict[str, Any]:
    """Save to ``root`` an index with a scope "big" searched by a graph and a small exact
    scope "a"; returns its manifest."""
    index = InProcessIndex(dim=DIM, hnsw_threshold=40, max_entries=None)
    index.add_many([f"e{i}" for i in range(BIG)], vectors(BIG), scope="big")
    index.add_many([f"a{i}" for i in range(5)], vectors(5, seed=1), scope="a")
    assert index.is_hnsw("big")
    index.save(root)
    manifest: dict[str, Any] = json.loads((root / "index.json").read_bytes())
    return manifest


def graph_of(root: Path, manifest: dict[str, Any]) -> Path:
    (name,) = [item["hnsw"] for item in manifest["scopes"] if item["hnsw"]]
    return root / name


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "overwritten":  # the neighbour lists past the header: SIGSEGV in a search
        data[len(data) // 3 :] = b"\xff" * (len(data) - len(data) // 3)
    else:  # "truncated": usearch refused it, and the whole index started empty
        del data[len(data) // 2 :]
    path.write_bytes(bytes(data))


# Loads the index in argv[1] (with the hnsw_threshold in argv[2]), searches every entry of
# "big" by its own vector, waits for the graph builds, syncs, and prints what it saw.
_CHILD = textwrap.dedent(
    """
    import json, logging, sys
    import numpy as np
    from deja.semantic.index import InProcessIndex

    warnings = []

    class Collect(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    logging.getLogger("deja.semantic").addHandler(Collect())
    v = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    threshold = None if sys.argv[2] == "none" else int(sys.argv[2])
    index = InProcessIndex(dim=16, hnsw_threshold=threshold, max_entries=None)
    index.load(sys.argv[1])
    viewed = index._scopes["big"].hnsw_viewed  # (a graph rebuilt meanwhile is not viewed)
    found = [index.search(x, scope="big", k=1)[0].id for x in v]
    built = index.join_builds(60)
    print(json.dumps({
        "viewed": viewed,
        "found": sum(id == f"e{i}" for i, id in enumerate(found)),
        "entries": len(index),
        "built": built,
        "hnsw": index.is_hnsw("big"),
        "warnings": warnings,
        "wrote": index.sync(sys.argv[1]),
    }))
    """
)


def load_in_child(root: Path, threshold: int | None) -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), str(threshold).lower()],
        check=False,
        timeout=120,
        capture_output=True,
        text=True,
    )
    crashed = child.returncode == -getattr(signal, "SIGSEGV", 11)
    assert child.returncode == 0, (
        f"the load and search died{' of SIGSEGV' if crashed else ''} "
        f"(exit code {child.returncode}): {child.stderr[-2000:]}"
    )
    result: dict[str, Any] = json.loads(child.stdout)
    return result


def assert_rewritten(root: Path, damaged: Path, *, with_graph: bool, extra: int = 0) -> None:
    """The base in ``root`` was written again: the damaged graph is gone, and a new
    process loads it whole (viewing the new graph at once when there is one), with
    ``extra`` entries beside those :func:`saved` wrote."""
    assert not damaged.exists()
    manifest = json.loads((root / "index.json").read_bytes())
    (big,) = [item for item in manifest["scopes"] if item["scope"] == "big"]
    assert (big["hnsw"] is not None) is with_graph
    restarted = InProcessIndex(dim=DIM, hnsw_threshold=40, max_entries=None)
    restarted.load(root)  # in this process: the manifest vouches for the new graph
    assert restarted.is_hnsw("big") is with_graph and len(restarted) == BIG + 5 + extra
    for i, x in enumerate(vectors(BIG)):
        assert restarted.search(x, scope="big", k=1)[0].id == f"e{i}"
    assert restarted.search(vectors(5, seed=1)[3], scope="a", k=1)[0].id == "a3"


@pytest.mark.parametrize("how", ["overwritten", "truncated"])
def test_a_damaged_graph_is_rebuilt_from_the_rows_never_searched(tmp_path: Path, how: str) -> None:
    graph = graph_of(tmp_path, saved(tmp_path))
    damage(graph, how)
    seen = load_in_child(tmp_path, 40)
    assert not seen["viewed"]  # the damaged file never reached usearch
    assert seen["found"] == BIG and seen["entries"] == BIG + 5  # searched exactly: no loss
    assert seen["built"] and seen["hnsw"]  # the graph rebuilt from the rows
    assert len(seen["warnings"]) == 1 and "checksum" in seen["warnings"][0]
    assert seen["wrote"]  # the next sync writes the base again, with the rebuilt graph
    assert_rewritten(tmp_path, graph, with_graph=True)


def test_a_damaged_graph_of_a_scope_searched_exactly_is_written_away_at_once(
    tmp_path: Path,
) -> None:
    graph = graph_of(tmp_path, saved(tmp_path))
    damage(graph, "overwritten")
    seen = load_in_child(tmp_path, None)  # this index builds no graphs
    assert not seen["viewed"] and not seen["hnsw"]
    assert seen["found"] == BIG and len(seen["warnings"]) == 1
    assert seen["wrote"]  # no rebuild to wait for: the next sync writes the base again
    assert_rewritten(tmp_path, graph, with_graph=False)


def test_a_graph_saved_without_a_checksum_is_rebuilt_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = saved(tmp_path)
    graph = graph_of(tmp_path, manifest)
    writer = InProcessIndex(dim=DIM, hnsw_threshold=40, max_entries=None)
    writer.load(tmp_path)
    writer.add("late", vectors(1, seed=2)[0], scope="big")
    assert writer.sync(tmp_path)  # a delta with a row of "big" beside the base
    manifest = json.loads((tmp_path / "index.json").read_bytes())
    for item in manifest["scopes"]:  # as earlier versions wrote it
        item.pop("hnsw_crc32", None)
    manifest.pop("manifest_crc32", None)  # (as an earlier deja wrote it: unsealed)
    (tmp_path / "index.json").write_text(json.dumps(manifest))
    loaded = InProcessIndex(dim=DIM, hnsw_threshold=40, max_entries=None)
    # the background build waits for the checks below (on a loaded machine it could end
    # before them, and the graph be searched already)
    go = threading.Event()
    build = InProcessIndex._build_in_background

    def held(index: InProcessIndex) -> None:
        go.wait(60)
        build(index)

    monkeypatch.setattr(InProcessIndex, "_build_in_background", held)
    with caplog.at_level(logging.INFO, logger="deja.semantic"):
        loaded.load(tmp_path)
    # nothing vouches for the file: not mapped; and the load did not wait for the new
    # graph (the delta's row used to build it there, ~30 s or more at 100k entries)
    assert not loaded.is_hnsw("big") and "late" in loaded
    assert "without checksums" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # not damage
    assert loaded.search(vectors(BIG)[7], scope="big", k=1)[0].id == "e7"
    assert loaded.search(vectors(1, seed=2)[0], scope="big", k=1)[0].id == "late"
    go.set()
    assert loaded.join_builds(60) and loaded.is_hnsw("big")
    assert loaded.sync(tmp_path)  # written again once, with the graph and its checksum
    assert_rewritten(tmp_path, graph, with_graph=True, extra=1)
    assert not loaded.sync(tmp_path)  # and only once


def test_a_saved_graph_carries_the_checksum_of_its_file(tmp_path: Path) -> None:
    import zlib

    manifest = saved(tmp_path)
    (big,) = [item for item in manifest["scopes"] if item["hnsw"]]
    assert big["hnsw_crc32"] == zlib.crc32((tmp_path / big["hnsw"]).read_bytes())
    (small,) = [item for item in manifest["scopes"] if not item["hnsw"]]
    assert "hnsw_crc32" not in small
    loaded = InProcessIndex(dim=DIM, hnsw_threshold=40, max_entries=None)
    loaded.load(tmp_path)
    assert loaded.is_hnsw("big")  # an intact graph is mapped as before
    assert not loaded._full_save_due and not loaded.sync(tmp_path)
