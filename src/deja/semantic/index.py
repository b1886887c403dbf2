"""Vector indexes: prompt vectors by scope, searched by cosine similarity.

:class:`VectorIndex` is the protocol every back-end implements (this in-process one; the
Redis and Qdrant ones of a later issue); ``tests/semantic/test_index_contract.py`` is the
suite they all must pass. Its API is synchronous and thread-safe: the semantic cache calls
it from a worker thread in its async methods, so no implementation blocks an event loop.

A *scope* is an opaque string; ``search`` only ever returns entries of the scope asked for
(the filter is part of the search, never applied to a global top-k afterwards, which could
return nothing for a small scope). Scopes are hierarchical on ``/``: ``remove_scope("t1")``
removes ``t1`` and every ``t1/...`` scope, which is how a tenant or a namespace is cleared.

:class:`InProcessIndex` keeps one matrix per scope and searches it exactly while the scope
is small; a scope that grows past ``hnsw_threshold`` entries also gets an HNSW graph
(usearch) and is searched approximately. It honours expiry times, bounds its size (oldest
entries evicted first), and saves to / loads from a directory, memory-mapping the vectors.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from deja.errors import ConfigError, MissingDependencyError
from deja.semantic._deps import np

__all__ = ["InProcessIndex", "Neighbor", "VectorIndex", "auto_expansion"]

_FORMAT = "deja-vector-index"
_FORMAT_VERSION = 1


class Neighbor(NamedTuple):
    """One search result: the entry ``id``, its cosine ``similarity`` and its ``payload``.

    ``vector`` is the stored vector (a 1-d float32 numpy array) when the search was asked
    for it (``with_vectors=True``), else ``None``. ``strikes`` is the entry's count of
    wrong-answer reports (:meth:`VectorIndex.strike`).
    """

    id: str
    similarity: float
    payload: str | None = None
    vector: Any = None
    strikes: int = 0


@runtime_checkable
class VectorIndex(Protocol):
    """Unit vectors by id, grouped in scopes; thread-safe.

    ``add`` replaces an entry with the same id. ``expires`` is a wall-clock time (seconds
    since the epoch) after which the entry is never returned. ``payload`` is a small string
    kept with the entry and returned by ``search`` (the semantic cache keeps the prompt
    text there, for the guards). ``search(..., with_vectors=True)`` also returns each
    neighbour's stored vector, in the same round trip (the verifier weighs it).

    Each entry also holds a count of *strikes*, wrong-answer reports on it
    (:meth:`strike`), returned with it by ``search``; it is kept where the entry is, so
    every process sharing a remote index sees the same count. ``add`` starts it at 0.
    """

    @property
    def dim(self) -> int:
        """Vector size this index holds."""
        ...

    def add(
        self,
        id: str,
        vector: Any,
        *,
        scope: str,
        expires: float | None = None,
        payload: str | None = None,
    ) -> None:
        """Insert or replace one entry."""
        ...

    def search(
        self, vector: Any, *, scope: str, k: int = 4, with_vectors: bool = False
    ) -> list[Neighbor]:
        """The ``k`` live entries of ``scope`` most similar to ``vector``, best first
        (with their stored vectors when ``with_vectors``)."""
        ...

    def remove(self, id: str) -> bool:
        """Remove one entry; returns whether it existed."""
        ...

    def strike(self, id: str, delta: int) -> int | None:
        """Add ``delta`` to the entry's strikes (never below 0); returns the new count,
        or ``None`` when there is no entry ``id``."""
        ...

    def remove_scope(self, scope: str) -> int:
        """Remove every entry of ``scope`` and of its sub-scopes (``scope/...``)."""
        ...

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        ...

    def __len__(self) -> int:
        """Number of entries held (expired ones not yet purged included)."""
        ...

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole index to ``path`` (a directory)."""
        ...

    def load(self, path: str | os.PathLike[str]) -> None:
        """Replace the contents with what :meth:`save` wrote to ``path``."""
        ...


def _in_scope(scope: str, root: str) -> bool:
    return scope == root or scope.startswith(root + "/")


def _usearch() -> Any:
    # Import onnxruntime first when it is installed: with usearch 2.26 / onnxruntime 1.32,
    # importing onnxruntime *after* usearch's native module crashes the process (SIGSEGV),
    # and the embedded model may well be loaded after the first HNSW graph is built.
    if importlib.util.find_spec("onnxruntime") is not None:
        importlib.import_module("onnxruntime")
    try:
        from usearch.index import Index
    except ImportError as exc:
        raise MissingDependencyError("usearch", "semantic") from exc
    return Index


@dataclass(slots=True)
class _Meta:
    scope: str
    expires: float | None
    payload: str | None
    strikes: int = 0


@dataclass(slots=True)
class _Scope:
    """The entries of one scope: rows of a matrix, and an HNSW graph once large."""

    dim: int
    ids: list[str] = field(default_factory=list)
    row_of: dict[str, int] = field(default_factory=dict)
    matrix: Any = None  # (capacity, dim) float32; may be a read-only memory map
    expires: Any = None  # (capacity,) float64, +inf for "never"
    owned: bool = True  # False while matrix/expires are memory-mapped from a file
    hnsw: Any = None  # usearch Index (may be a read-only view) or None
    hnsw_viewed: bool = False
    hnsw_path: str | None = None
    label_of: dict[str, int] = field(default_factory=dict)
    id_of: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def own(self) -> None:
        # Copy-on-write: a loaded scope reads its memory-mapped file until first changed.
        if not self.owned:
            n = len(self.ids)
            capacity = max(16, n * 2)
            matrix = np.empty((capacity, self.dim), dtype=np.float32)
            matrix[:n] = self.matrix[:n]
            expires = np.full(capacity, np.inf)
            expires[:n] = self.expires[:n]
            self.matrix, self.expires, self.owned = matrix, expires, True
        if self.hnsw is not None and self.hnsw_viewed:
            index = _usearch()(ndim=self.dim, metric="cos", dtype="f32")
            index.load(self.hnsw_path)
            self.hnsw, self.hnsw_viewed = index, False


class InProcessIndex:
    """An in-process :class:`VectorIndex`: exact search for small scopes, HNSW for large.

    Keyword-only options:

    * ``dim``: the vector size (384 for the embedded model);
    * ``max_entries``: size bound; the oldest entries are evicted first (``None``: unbounded);
    * ``hnsw_threshold``: a scope with more entries than this is searched by an HNSW graph
      (usearch) instead of exactly; ``None`` never builds one;
    * ``connectivity`` / ``expansion_add`` / ``expansion_search``: HNSW parameters.
      ``expansion_search=None`` (the default) grows the search expansion with the scope
      (:func:`auto_expansion`: 64 up to 200k entries, 128 up to 500k, 256 above): at 100k,
      64 finds the exact nearest neighbour's similarity for 99%+ of queries, at 1M only
      95.5%, where 256 gives 99.5% for ~0.5 ms more (BENCHMARKS.md). A number fixes it;
    * ``clock``: wall clock for expiry (inject a fake in tests).

    All methods are thread-safe (one lock; searches take well under a millisecond).
    """

    def __init__(
        self,
        *,
        dim: int = 384,
        max_entries: int | None = 100_000,
        hnsw_threshold: int | None = 20_000,
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if dim < 1:
            raise ValueError("dim must be >= 1")
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be >= 1 or None")
        if hnsw_threshold is not None and hnsw_threshold < 1:
            raise ValueError("hnsw_threshold must be >= 1 or None")
        self._dim = dim
        self.max_entries = max_entries
        self.hnsw_threshold = hnsw_threshold
        self.connectivity = connectivity
        self.expansion_add = expansion_add
        self.expansion_search = expansion_search
        self._clock = clock
        self._lock = threading.RLock()
        # insertion order = age order: the first entry is the oldest (evicted first)
        self._meta: dict[str, _Meta] = {}
        self._scopes: dict[str, _Scope] = {}
        self._next_label = 1
        self._next_purge = float("-inf")
        self.evictions = 0

    @property
    def dim(self) -> int:
        """Vector size this index holds."""
        return self._dim

    def __len__(self) -> int:
        return len(self._meta)

    def __contains__(self, id: object) -> bool:
        return id in self._meta

    # -- writes -----------------------------------------------------------------------

    def add(
        self,
        id: str,
        vector: Any,
        *,
        scope: str,
        expires: float | None = None,
        payload: str | None = None,
    ) -> None:
        """Insert or replace one entry (a replaced entry becomes the newest)."""
        vec = self._vector(vector)
        with self._lock:
            if id in self._meta:
                self._remove(id)
            s = self._scopes.get(scope)
            if s is None:
                s = self._scopes[scope] = _Scope(dim=self._dim)
            s.own()
            n = len(s.ids)
            if s.matrix is None or n == s.matrix.shape[0]:
                self._grow(s, max(16, n * 2))
            s.matrix[n] = vec
            s.expires[n] = np.inf if expires is None else expires
            s.ids.append(id)
            s.row_of[id] = n
            self._meta[id] = _Meta(scope, expires, payload)
            if s.hnsw is not None:
                self._hnsw_add(s, [id], vec[None, :])
            elif self.hnsw_threshold is not None and len(s.ids) > self.hnsw_threshold:
                self._build_hnsw(s)
            self._bound()

    def add_many(
        self,
        ids: list[str],
        vectors: Any,
        *,
        scope: str,
        expires: float | None = None,
        payloads: list[str | None] | None = None,
    ) -> None:
        """Insert many entries of one scope at once (a bulk load; HNSW built in one pass)."""
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape != (len(ids), self._dim):
            raise ValueError(f"vectors must have shape ({len(ids)}, {self._dim})")
        texts = payloads if payloads is not None else [None] * len(ids)
        with self._lock:
            for id in ids:
                if id in self._meta:
                    self._remove(id)
            s = self._scopes.get(scope)
            if s is None:
                s = self._scopes[scope] = _Scope(dim=self._dim)
            s.own()
            n = len(s.ids)
            need = n + len(ids)
            if s.matrix is None or need > s.matrix.shape[0]:
                self._grow(s, max(16, need, n * 2))
            s.matrix[n:need] = matrix
            s.expires[n:need] = np.inf if expires is None else expires
            for offset, (id, text) in enumerate(zip(ids, texts, strict=True)):
                s.ids.append(id)
                s.row_of[id] = n + offset
                self._meta[id] = _Meta(scope, expires, text)
            if s.hnsw is not None:
                self._hnsw_add(s, ids, matrix)
            elif self.hnsw_threshold is not None and len(s.ids) > self.hnsw_threshold:
                self._build_hnsw(s)
            self._bound()

    def remove(self, id: str) -> bool:
        """Remove one entry; returns whether it existed."""
        with self._lock:
            if id not in self._meta:
                return False
            self._remove(id)
            return True

    def strike(self, id: str, delta: int) -> int | None:
        """Add ``delta`` to the entry's strikes (never below 0); the new count, or ``None``
        when there is no entry ``id`` (an expired one not yet purged still counts)."""
        with self._lock:
            meta = self._meta.get(id)
            if meta is None:
                return None
            meta.strikes = max(0, meta.strikes + delta)
            return meta.strikes

    def remove_scope(self, scope: str) -> int:
        """Remove every entry of ``scope`` and of its sub-scopes (``scope/...``)."""
        with self._lock:
            doomed = [name for name in self._scopes if _in_scope(name, scope)]
            removed = 0
            for name in doomed:
                s = self._scopes.pop(name)
                removed += len(s.ids)
                for id in s.ids:
                    del self._meta[id]
            return removed

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        with self._lock:
            count = len(self._meta)
            self._meta.clear()
            self._scopes.clear()
            return count

    def purge_expired(self) -> int:
        """Remove the entries whose expiry time has passed; returns how many."""
        now = self._clock()
        with self._lock:
            doomed = [
                id
                for id, meta in self._meta.items()
                if meta.expires is not None and meta.expires <= now
            ]
            for id in doomed:
                self._remove(id)
            return len(doomed)

    # -- reads ------------------------------------------------------------------------

    def search(
        self, vector: Any, *, scope: str, k: int = 4, with_vectors: bool = False
    ) -> list[Neighbor]:
        """The ``k`` live entries of ``scope`` most similar to ``vector``, best first
        (with copies of their stored vectors when ``with_vectors``)."""
        if k < 1:
            raise ValueError("k must be >= 1")
        query = self._vector(vector)
        now = self._clock()
        with self._lock:
            s = self._scopes.get(scope)
            if s is None or not s.ids:
                return []
            if s.hnsw is not None:
                found = self._search_hnsw(s, query, k, now)
            else:
                found = self._search_exact(s, query, k, now)
            meta = self._meta
            if not with_vectors:
                return [
                    Neighbor(id, sim, meta[id].payload, None, meta[id].strikes) for id, sim in found
                ]
            # one copy (a plain array, even from a memory map): a later remove moves rows
            # around inside the matrix
            rows = np.array(s.matrix[[s.row_of[id] for id, _ in found]], dtype=np.float32)
            return [
                Neighbor(id, sim, meta[id].payload, row, meta[id].strikes)
                for (id, sim), row in zip(found, rows, strict=True)
            ]

    def vector(self, id: str) -> Any:
        """A copy of the stored vector of ``id`` (``KeyError`` if absent)."""
        with self._lock:
            meta = self._meta[id]
            s = self._scopes[meta.scope]
            return np.array(s.matrix[s.row_of[id]], dtype=np.float32)

    def scopes(self) -> dict[str, int]:
        """Entry count per scope."""
        with self._lock:
            return {name: len(s.ids) for name, s in self._scopes.items()}

    def is_hnsw(self, scope: str) -> bool:
        """Whether ``scope`` is searched by an HNSW graph (else exactly)."""
        with self._lock:
            s = self._scopes.get(scope)
            return s is not None and s.hnsw is not None

    # -- persistence ------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the directory ``path`` (created if missing).

        Each file is written beside its final name and renamed into place, and the manifest
        last, so a reader never sees a half-written index (and a process still reading
        memory-mapped files of an older save keeps its own copy).
        """
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            scopes: list[dict[str, Any]] = []
            written = {"index.json"}
            for number, (name, s) in enumerate(self._scopes.items()):
                n = len(s.ids)
                vectors_file = f"scope-{number}.npy"
                rows = s.matrix[:n]
                _atomic_write(root / vectors_file, functools.partial(_save_npy, rows))
                written.add(vectors_file)
                hnsw_file = None
                if s.hnsw is not None:
                    hnsw_file = f"scope-{number}.usearch"
                    target = root / hnsw_file
                    tmp = target.with_name(target.name + ".tmp")
                    s.hnsw.save(str(tmp))
                    os.replace(tmp, target)
                    written.add(hnsw_file)
                scopes.append(
                    {
                        "scope": name,
                        "vectors": vectors_file,
                        "hnsw": hnsw_file,
                        "ids": s.ids,
                        "labels": [s.label_of[id] for id in s.ids] if s.hnsw is not None else None,
                        "expires": [self._meta[id].expires for id in s.ids],
                        "payloads": [self._meta[id].payload for id in s.ids],
                        "strikes": [self._meta[id].strikes for id in s.ids],
                    }
                )
            manifest = {
                "format": _FORMAT,
                "version": _FORMAT_VERSION,
                "dim": self._dim,
                "metric": "cos",
                "next_label": self._next_label,
                "order": list(self._meta),
                "scopes": scopes,
            }
            data = json.dumps(manifest, separators=(",", ":")).encode()
            _atomic_write(root / "index.json", lambda f: f.write(data))
        for stale in root.glob("scope-*"):
            if stale.name not in written and not stale.name.endswith(".tmp"):
                stale.unlink(missing_ok=True)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Replace the contents with the index saved in ``path``.

        Vectors (and HNSW graphs) are memory-mapped read-only and copied into memory only
        when their scope is first changed, so loading a large index is fast and cheap.
        """
        root = Path(path)
        try:
            manifest = json.loads((root / "index.json").read_bytes())
        except FileNotFoundError as exc:
            raise ConfigError(f"no vector index saved in {root}") from exc
        if manifest.get("format") != _FORMAT or manifest.get("version") != _FORMAT_VERSION:
            raise ConfigError(f"{root} holds no deja vector index of a known version")
        if manifest["dim"] != self._dim:
            raise ConfigError(
                f"the index in {root} holds {manifest['dim']}-d vectors, not {self._dim}-d"
            )
        meta: dict[str, _Meta] = {}
        scopes: dict[str, _Scope] = {}
        for item in manifest["scopes"]:
            ids: list[str] = item["ids"]
            s = _Scope(dim=self._dim, ids=list(ids), owned=False)
            s.row_of = {id: row for row, id in enumerate(ids)}
            s.matrix = np.load(root / item["vectors"], mmap_mode="r")
            s.expires = np.array(
                [np.inf if e is None else e for e in item["expires"]], dtype=np.float64
            )
            if item["hnsw"] is not None:
                s.hnsw_path = str(root / item["hnsw"])
                s.hnsw = _usearch().restore(s.hnsw_path, view=True)
                # a restored graph searches with usearch's default, not this index's setting
                s.hnsw.expansion_search = self._expansion(len(ids))
                s.hnsw_viewed = True
                s.label_of = dict(zip(ids, item["labels"], strict=True))
                s.id_of = {label: id for id, label in s.label_of.items()}
            scopes[item["scope"]] = s
            # strikes were kept beside the index before; such a save has none here
            strikes = item.get("strikes") or [0] * len(ids)
            for id, expires, payload, count in zip(
                ids, item["expires"], item["payloads"], strikes, strict=True
            ):
                meta[id] = _Meta(item["scope"], expires, payload, int(count))
        ordered = {id: meta[id] for id in manifest["order"] if id in meta}
        with self._lock:
            self._meta = ordered
            self._scopes = scopes
            self._next_label = int(manifest["next_label"])

    # -- internals --------------------------------------------------------------------

    def _vector(self, vector: Any) -> Any:
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self._dim:
            raise ValueError(f"expected a {self._dim}-d vector, got {vec.shape[0]}-d")
        return vec

    def _grow(self, s: _Scope, capacity: int) -> None:
        n = len(s.ids)
        matrix = np.empty((capacity, self._dim), dtype=np.float32)
        expires = np.full(capacity, np.inf)
        if s.matrix is not None and n:
            matrix[:n] = s.matrix[:n]
            expires[:n] = s.expires[:n]
        s.matrix, s.expires = matrix, expires

    def _remove(self, id: str) -> None:
        meta = self._meta.pop(id)
        s = self._scopes[meta.scope]
        s.own()
        row = s.row_of.pop(id)
        last = len(s.ids) - 1
        if row != last:  # move the last row into the hole: rows stay dense
            moved = s.ids[last]
            s.matrix[row] = s.matrix[last]
            s.expires[row] = s.expires[last]
            s.ids[row] = moved
            s.row_of[moved] = row
        s.ids.pop()
        if s.hnsw is not None:
            label = s.label_of.pop(id)
            del s.id_of[label]
            s.hnsw.remove(label)
        if not s.ids:
            del self._scopes[meta.scope]

    def _bound(self) -> None:
        limit = self.max_entries
        if limit is None or len(self._meta) <= limit:
            return
        # expired entries go first; then the oldest
        if self._clock() >= self._next_purge:
            self._next_purge = self._clock() + 1.0
            self.evictions += self._purge_locked()
        while len(self._meta) > limit:
            self._remove(next(iter(self._meta)))
            self.evictions += 1

    def _purge_locked(self) -> int:
        now = self._clock()
        doomed = [id for id, m in self._meta.items() if m.expires is not None and m.expires <= now]
        for id in doomed:
            self._remove(id)
        return len(doomed)

    def _search_exact(self, s: _Scope, query: Any, k: int, now: float) -> list[tuple[str, float]]:
        n = len(s.ids)
        sims = s.matrix[:n] @ query
        expired = s.expires[:n] <= now
        if expired.any():
            sims = np.where(expired, -np.inf, sims)
        if n > k:
            top = np.argpartition(-sims, k - 1)[:k]
            top = top[np.argsort(-sims[top], kind="stable")]
        else:
            top = np.argsort(-sims, kind="stable")
        return [(s.ids[i], float(sims[i])) for i in top if sims[i] != -np.inf]

    def _expansion(self, size: int) -> int:
        return auto_expansion(size) if self.expansion_search is None else self.expansion_search

    def _search_hnsw(self, s: _Scope, query: Any, k: int, now: float) -> list[tuple[str, float]]:
        expansion = self._expansion(len(s.ids))
        if s.hnsw.expansion_search != expansion:  # the scope grew past a step
            s.hnsw.expansion_search = expansion
        # ask for a few more than k: expired entries are skipped here, purged later
        matches = s.hnsw.search(query, k + 8)
        out: list[tuple[str, float]] = []
        for label, distance in zip(matches.keys, matches.distances, strict=True):
            id = s.id_of.get(int(label))
            if id is None or s.expires[s.row_of[id]] <= now:
                continue
            out.append((id, 1.0 - float(distance)))
            if len(out) == k:
                break
        return out

    def _hnsw_add(self, s: _Scope, ids: list[str], vectors: Any) -> None:
        labels = np.arange(self._next_label, self._next_label + len(ids), dtype=np.uint64)
        self._next_label += len(ids)
        for id, label in zip(ids, labels.tolist(), strict=True):
            s.label_of[id] = label
            s.id_of[label] = id
        s.hnsw.add(labels, vectors)

    def _build_hnsw(self, s: _Scope) -> None:
        s.hnsw = _usearch()(
            ndim=self._dim,
            metric="cos",
            dtype="f32",
            connectivity=self.connectivity,
            expansion_add=self.expansion_add,
            expansion_search=self._expansion(len(s.ids)),
        )
        s.hnsw_viewed = False
        s.label_of.clear()
        s.id_of.clear()
        self._hnsw_add(s, list(s.ids), s.matrix[: len(s.ids)])


def auto_expansion(size: int) -> int:
    """The HNSW search expansion for a scope of ``size`` entries when none is set."""
    if size <= 200_000:
        return 64
    return 128 if size <= 500_000 else 256


def _save_npy(rows: Any, f: Any) -> None:
    np.save(f, rows)


def _atomic_write(target: Path, write: Callable[[Any], object]) -> None:
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
