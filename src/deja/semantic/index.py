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

import atexit
import contextlib
import errno
import functools
import importlib
import importlib.util
import io
import json
import logging
import math
import operator
import os
import re
import shutil
import threading
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

import orjson

from deja.errors import ConfigError, MissingDependencyError
from deja.semantic._deps import np

logger = logging.getLogger("deja.semantic")

__all__ = ["QUANTIZATIONS", "InProcessIndex", "Neighbor", "VectorIndex", "auto_expansion"]

QUANTIZATIONS = ("i8", "bf16", "f32")
"""How an HNSW graph may store its copy of the vectors (``InProcessIndex(quantization=)``)."""

# how many more candidates than asked for an HNSW search proposes for the exact re-ranking
_RERANK_EXTRA = 12
# the search that looks for each entry of a batch by its own vector (_relink)
_RELINK_K = 8
_RELINK_EXPANSION = 32

# how long, and how many, removals an index remembers (so that a save merging another
# process's index does not bring back what one of them removed); past the count, the oldest
# are let go (see InProcessIndex._prune_tombstones)
_TOMBSTONE_SECONDS = 7 * 86400.0
_MAX_TOMBSTONES = 200_000

_FORMAT = "deja-vector-index"
_FORMAT_VERSION = 1

# On disk, a directory holds one base and its deltas:
#
# * ``index.json``, the manifest: every entry's id, scope and metadata, the name of each
#   scope's vectors file (and graph file, with its CRC-32), and the base's ``generation``
#   (a random hex); its first field, ``manifest_crc32``, is the CRC-32 of every byte after
#   it (see _sealed: the files' checksums do not cover the id table, and two ids swapped in
#   it, valid JSON still, put each entry's answer on the other's vector). A manifest that
#   fails it is one that cannot be read (below); one without it (saved by an earlier
#   version) is read unchecked. Checking it takes 6 ms at 100k entries (a 5.4 MB
#   manifest), 31 ms at 1M (57 MB), in loads of 1 s and 14 s;
# * ``scope-<generation>-<n>.npy`` (the rows of the manifest's n-th scope, in its id
#   order) and ``scope-<generation>-<n>.usearch`` (its HNSW graph, if any);
# * ``delta-<generation>-<writer>-<seq>.npz``: what one process changed since (a delta
#   holds its own rows, so it never depends on another file but the base);
# * ``index.lock``, the file lock of the processes sharing the directory.
#
# The manifest is the one commit point: a full save writes its files under names no other
# save uses (its new generation), fsyncs them and the directory, and only then renames its
# manifest over ``index.json`` (and fsyncs the directory again); the files of older bases
# are removed after that. A save killed at any step leaves the previous manifest with the
# files it names, and files no manifest names (removed by the next save, or load, holding
# the lock): a reader only ever opens what the manifest it read names, and no file is ever
# written again once named. Saves of earlier versions named the files ``scope-<n>.*`` in
# every save (so a save killed between its renames could leave a manifest beside another
# save's rows); they still load (see _torn_legacy), and the next full save rewrites them.
#
# usearch maps a graph file as it is and trusts it: one damaged past its header (bit rot, a
# bad copy) loaded fine, and the first search in its scope died of SIGSEGV, at every
# restart. So a load maps a graph only when its CRC-32 matches the one in the manifest
# (reading it takes 20-40 ms for the 53 MB graph of 100k entries, blake2b 70-80 ms; the
# load took ~0.4 s before). A graph that fails the check, or that an earlier version
# saved without one, is left unused: its scope is searched exactly from its rows (the
# authoritative copy; 15-20 ms a search at 100k entries, 60 ms beside the build) while a
# new graph is built from them in the background (30-100 s at 100k on two busy cores),
# and the next sync writes the base again, with that graph and its checksum (see
# InProcessIndex.load).
#
# The vectors files have a CRC-32 in the manifest too (``vectors_crc32``), computed as they
# are written: one flipped bit in one (the top bit of a float's exponent) made an unrelated
# question match that row with a similarity of 6.6e+36, and be served its answer. A load
# checks it before it uses the rows, in one pass with a check that no row holds a NaN, an
# infinity or values so large that its squared length overflows (what that flipped bit
# gives: caught even in a base of an earlier version, saved without checksums): 55-70 ms
# for the 154 MB of 100k rows of 384 floats, where the whole load took ~250 ms before (the
# pass reads the rows into the page cache, where the searches of the memory-mapped rows
# read them anyway); a full save takes ~50 ms more. A file that fails (damaged, cut short,
# not a vectors file, missing) costs its scope only: it is left out with a warning naming
# the file, the other scopes load, and the next sync writes the base again without it (a
# well-formed file of another size than its manifest says makes the base one that cannot
# be read: see below). A delta that cannot be read is skipped with a warning naming it and
# renamed ``<name>.broken-<time>`` (so that it fails no later sync; the next full save
# removes it with the other deltas of its base). A base whose manifest cannot be read at
# all is moved aside, whole, into ``broken-<time>/`` (the newest _KEEP_BROKEN kept) before
# a sync or save writes a new one; a manifest of a later format version (a rolling upgrade)
# is left as it is: this version neither loads nor writes there (warned once). An OSError
# other than a missing file (a disk error, a permission) is no damage: nothing is moved
# nor written over for what may pass (reading a base, the sync fails; a delta is skipped
# and read again at the next sync).
_MANIFEST = "index.json"
# The manifest's own checksum: its first field, the CRC-32 of every byte after that field
# (see _sealed); a manifest without it (saved by an earlier version) is read unchecked.
_SEAL = re.compile(rb'\{"manifest_crc32":(\d{1,10}),')
_UNSEALED = re.compile(rb'\s*\{\s*"format"\s*:')  # how an earlier version's manifest begins
_BROKEN = "broken-"
_KEEP_BROKEN = 3
# rows checked at a time for values no vector can hold, and summed (_scan_rows)
_CHECK_ROWS = 1024
_LEGACY_FILE = re.compile(r"scope-\d+\.(?:npy|usearch)")
# how many times a load reads the manifest again when a file it names is gone (removed by a
# save of another process where the directory cannot be locked)
_LOAD_ATTEMPTS = 3

# A sync writes what changed since the last one as a delta file beside the full save (the
# base); the base is written again (compacted) once its deltas reach this many files, or
# hold rows for this share of the base's entries (at least _COMPACT_MIN_ROWS). Every
# process inserts each delta row into its graph (~1 ms) when it takes the delta in or
# loads the directory, and a compaction holds the lock while it copies the index (1M
# entries: ~4 s), so the share is small: at 1M entries a compaction every 20k new ones.
_COMPACT_FILES = 256
_COMPACT_FRACTION = 0.02
_COMPACT_MIN_ROWS = 2000
# rows a full save copies per hold of the index lock
_COPY_ROWS = 4096
# entries a merge inserts per hold of the index lock (an i8 graph insert takes ~1 ms), and
# compares with its own per hold
_MERGE_BATCH = 16
_MERGE_COMPARE = 4096
# Graphs built in the background, and the signal that stops them at the interpreter's exit:
# a build thread that came back from usearch's C++ while the interpreter was finalizing
# aborted the process ("terminate called without an active exception", exit 134: half the
# runs of a short script that loaded an index whose graph it rebuilt). Its rows go in
# _BUILD_CHUNK at a time, so a stop waits for one chunk at most.
_BUILDS: set[threading.Thread] = set()
_BUILDS_LOCK = threading.Lock()
_STOPPING = threading.Event()
_BUILD_CHUNK = 4096
_EXIT_WAIT = 10.0  # seconds the exit waits for the builds to stop


class _BuildStopped(Exception):
    """The interpreter is exiting: a background build gives up."""


def _stop_builds() -> None:
    """At exit: stop the background builds and wait for them (at most _EXIT_WAIT s)."""
    _STOPPING.set()
    deadline = time.monotonic() + _EXIT_WAIT
    with _BUILDS_LOCK:
        threads = list(_BUILDS)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


atexit.register(_stop_builds)


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


def checked_vector(vector: Any, dim: int) -> Any:
    """``vector`` as a flat float32 array of ``dim`` values; :class:`ValueError` for another
    size, or for a NaN or infinite value, or values so large that its squared length
    overflows a float32 (such a vector matches nothing, or anything, and spoils a graph's
    walk): every index refuses them, whoever embedded them."""
    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vec.shape[0] != dim:
        raise ValueError(f"expected a {dim}-d vector, got {vec.shape[0]}-d")
    _finite(vec)
    return vec


def _finite(values: Any) -> None:
    rows = np.asarray(values, dtype=np.float32)
    if rows.ndim == 1:  # one vector (every lookup's): its squared length says it all, in ~1 us
        with np.errstate(over="ignore", invalid="ignore"):
            if math.isfinite(float(rows @ rows)):
                return
        raise ValueError("the vector holds NaN or infinite values (or values too large)")
    if rows.size and _unusable_rows(rows.reshape(-1, rows.shape[-1])):
        raise ValueError("the vector holds NaN or infinite values (or values too large)")


def _unusable_rows(rows: Any) -> int:
    """How many of ``rows`` (a matrix, perhaps memory-mapped) hold a NaN or an infinity, or
    values so large that their squared length overflows a float32: what a flipped bit of a
    float's exponent makes of a unit vector's value (a similarity of 1e36 to every query
    on that side). Read _CHECK_ROWS rows at a time."""
    bad = 0
    for start in range(0, len(rows), _CHECK_ROWS):
        chunk = rows[start : start + _CHECK_ROWS]
        with np.errstate(over="ignore", invalid="ignore"):
            squares = np.einsum("ij,ij->i", chunk, chunk)
        bad += int(np.count_nonzero(~np.isfinite(squares)))
    return bad


def _similarities(rows: Any, query: Any) -> Any:
    """The dot product of each row with ``query`` (cosine similarities of unit vectors), on
    the calling thread: a matrix product would go to BLAS, whose threads stall behind
    whatever else the process runs on busy cores (an exact scan of 5,000 rows took 8-10 ms
    beside the embedder's threads instead of 0.3 ms; a single thread is as fast here)."""
    return np.einsum("ij,j->i", rows, query)


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
    added: float = 0.0  # wall-clock time of the add (what a merging save compares)
    # the strikes when this index last loaded or saved the entry: what it added since is
    # its own, and adds to what another process saved (see _merge)
    saved_strikes: int = 0


@dataclass(slots=True)
class _Pending:
    """What this index changed since it last wrote a save or a delta: the ids it added,
    removed (a tombstone says when) and gave strikes to."""

    added: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    struck: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.struck)


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
    label_of: dict[str, int] = field(default_factory=dict)
    id_of: dict[int, str] = field(default_factory=dict)
    # the rows written while a save copies the rows a few at a time (see _copy_rows)
    written: set[int] | None = None
    # while its graph is built outside the lock: the ids inserted meanwhile (_build_hnsw)
    inserted: set[str] | None = None
    # its saved graph was left unused (damaged, or unchecked): once it has a new one, the
    # next sync writes the base again (see _open_base)
    graph_dropped: bool = False

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
            # a copy of the mapped graph, not a new read of its file: a later save (of this
            # or another process) may have removed the file since
            self.hnsw, self.hnsw_viewed = self.hnsw.copy(), False


class InProcessIndex:
    """An in-process :class:`VectorIndex`: exact search for small scopes, HNSW for large.

    Keyword-only options:

    * ``dim``: the vector size (384 for the embedded model);
    * ``max_entries``: size bound; the oldest entries are evicted first (``None``: unbounded);
    * ``hnsw_threshold``: a scope with more entries than this is searched by an HNSW graph
      (usearch) instead of exactly; ``None`` never builds one. The graph is built with
      the lock let go (searches and writes go on meanwhile: 20k entries take 4-8 s on two
      cores), in a thread of its own when a single ``add`` crosses the threshold;
    * ``quantization``: how the HNSW graph stores its copy of the vectors: ``"i8"`` (the
      default), ``"bf16"`` or ``"f32"``. The graph only proposes candidates: they are
      re-ranked by their exact similarity to the query from the full-precision rows, so a
      search returns exact similarities whatever the setting. At 100k entries an i8 graph
      searched 1.5 times wider is ~40% faster than an f32 one, builds in half the time,
      and finds as much (BENCHMARKS.md);
    * ``connectivity`` / ``expansion_add`` / ``expansion_search``: HNSW parameters.
      ``expansion_search=None`` (the default) grows the search expansion with the scope
      (:func:`auto_expansion`: 64 up to 200k entries, 128 up to 500k, 256 above, x 1.5
      for an i8 graph): for an f32 graph at 100k, 64 finds the exact nearest neighbour's
      similarity for 99%+ of queries, at 1M only 95.5%, where 256 gives 99.5% for ~0.5 ms
      more (BENCHMARKS.md). A number fixes it;
    * ``clock``: wall clock for expiry (inject a fake in tests).

    All methods are thread-safe (one lock; searches take well under a millisecond).

    Several processes may save to one directory (the workers of ``deja serve --workers
    N``). A directory holds a full save (the *base*) and *deltas*: :meth:`sync` writes only
    what this index changed since its last sync (new entries with their vectors, removals,
    strikes) as a small file, and takes in the deltas the others wrote, so a periodic sync
    costs in proportion to the changes, not to the index; the base is rewritten (compacted)
    only once its deltas hold 2% of its entries (at least 2,000) or make 256 files.
    :meth:`save` always writes a full base. Both hold a file lock and first take in what
    other processes wrote there since this one last loaded or synced, entry by entry, the
    later event winning: an entry added later replaces an older one of the same id, and a
    removal (``remove``, a forgotten entry, ``remove_scope``, ``clear``, an eviction) later
    than an add keeps the entry out, so a merge never brings back what another process
    removed. Removals are remembered for 7 days (at most 200,000, the oldest let go first).
    An index not loaded, saved nor synced yet remembers no eviction (an index that is never
    saved would hold nothing but those; a merge takes such an entry in among the oldest,
    where the bound evicts it again), only what it removed otherwise. The strikes one process
    gave an entry since it last wrote are added to the count the others wrote. Entries
    taken in keep their age (the oldest is still evicted first).
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
        quantization: str = "i8",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if dim < 1:
            raise ValueError("dim must be >= 1")
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be >= 1 or None")
        if hnsw_threshold is not None and hnsw_threshold < 1:
            raise ValueError("hnsw_threshold must be >= 1 or None")
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}")
        self._dim = dim
        self.max_entries = max_entries
        self.hnsw_threshold = hnsw_threshold
        self.connectivity = connectivity
        self.expansion_add = expansion_add
        self.expansion_search = expansion_search
        self.quantization = quantization
        self._clock = clock
        self._lock = threading.RLock()
        # insertion order = age order: the first entry is the oldest (evicted first)
        self._meta: dict[str, _Meta] = {}
        self._scopes: dict[str, _Scope] = {}
        self._next_label = 1
        self._next_purge = float("-inf")
        self.evictions = 0
        # id -> wall-clock time of its removal (see save), oldest first while ordered (the
        # removals of this index are stamped in order; those taken in may be out of order)
        self._tombstones: dict[str, float] = {}
        self._tombstones_ordered = True
        self._newest_tombstone = -math.inf
        # not loaded, saved nor synced yet: its evictions leave no tombstone (_bound)
        self._detached = True
        # the base this index last loaded, wrote or took in (None: none yet), where and
        # which file, and the deltas of that base it has taken in or written
        self._generation: str | None = None
        self._base: tuple[str, tuple[int, int, int] | None] | None = None
        self._applied: set[str] = set()
        self._pending = _Pending()
        # a write failed, or the base must be written again (torn, or naming a graph left
        # unused): the next sync writes a full base
        self._full_save_due = False
        # the directory and manifest (its stat) of a base of a later format version that a
        # save or sync left alone (warned of once per directory), or None
        self._newer_base: tuple[str, tuple[int, int, int] | None] | None = None
        self._writer = uuid.uuid4().hex[:12]  # names this index's delta files
        self._last_stamp = -math.inf
        self._delta_seq = 0
        # scopes grown past hnsw_threshold whose graph the writing thread builds once it
        # lets go of the lock (_build_due)
        self._builds: list[tuple[str, _Scope]] = []
        self._build_threads: list[threading.Thread] = []

    @property
    def process_local(self) -> bool:
        """True: the entries live in this process's memory (lost at exit unless saved)."""
        return True

    @property
    def dim(self) -> int:
        """Vector size this index holds."""
        return self._dim

    def __len__(self) -> int:
        return len(self._meta)

    def __contains__(self, id: object) -> bool:
        return id in self._meta

    def ids(self) -> list[str]:
        """The ids of every entry held, oldest first (a snapshot)."""
        with self._lock:
            return list(self._meta)

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
        """Insert or replace one entry (a replaced entry becomes the newest).

        The add that grows a scope past ``hnsw_threshold`` starts building its graph in a
        thread of its own and returns: the scope is searched exactly until the graph is
        ready (:meth:`join_builds` waits for it)."""
        vec = self._vector(vector)
        with self._lock:
            meta = _Meta(scope, expires, payload, added=self._stamp())
            self._insert(scope, [id], vec[None, :], [meta])
            self._added([id])
            self._bound()
        self._build_due(background=True)

    def add_many(
        self,
        ids: list[str],
        vectors: Any,
        *,
        scope: str,
        expires: float | None = None,
        payloads: list[str | None] | None = None,
    ) -> None:
        """Insert many entries of one scope at once (a bulk load: a graph the scope grows
        to need is built, in one pass, before this returns)."""
        texts = payloads if payloads is not None else [None] * len(ids)
        if len(texts) != len(ids):
            raise ValueError("payloads must have one item per id")
        vectors = np.asarray(vectors, dtype=np.float32)
        _finite(vectors)
        with self._lock:
            now = self._stamp()
            metas = [_Meta(scope, expires, text, added=now) for text in texts]
            self._insert(scope, ids, vectors, metas)
            self._added(ids)
            self._bound()
        self._build_due()

    def _stamp(self) -> float:
        """The wall-clock time of an add or a removal (what merges compare), never earlier
        than this index's previous one, so that a clock stepped back cannot make a later
        add look older than an earlier removal (the caller holds the lock)."""
        now = self._clock()
        if now <= self._last_stamp:
            now = self._last_stamp + 1e-6
        self._last_stamp = now
        return now

    def _added(self, ids: list[str]) -> None:
        self._pending.added.update(ids)
        self._pending.removed.difference_update(ids)

    def _forget(self, ids: Any, when: float, *, evicted: bool = False) -> None:
        """Tombstones for entries this index removed (another process's are not pending),
        kept within their bound (:meth:`_prune_tombstones`). An index never loaded, saved
        nor synced keeps none for what it ``evicted``: a merge would take such an entry in
        among the oldest, where the bound evicts it again, and an index that is never
        saved (a cache in memory) would otherwise fill its table with evictions only."""
        tombstones, pending = self._tombstones, self._pending
        if evicted and self._detached:
            for id in ids:
                pending.added.discard(id)
                pending.struck.discard(id)
            return
        if when < self._newest_tombstone:  # after one taken in from a clock ahead of this one
            self._tombstones_ordered = False
        self._newest_tombstone = max(self._newest_tombstone, when)
        for id in ids:
            tombstones.pop(id, None)  # inserted again last: the table stays in time order
            tombstones[id] = when
            pending.removed.add(id)
            pending.added.discard(id)
            pending.struck.discard(id)
        keep, most = self._tombstone_bounds()
        if len(tombstones) > most:
            self._prune_tombstones(when, keep)

    def _tombstone_bounds(self) -> tuple[int, int]:
        """How many removals this index remembers: at most the second number (200,000),
        and the first once it let the oldest go. The table is rebuilt (one pass over it)
        once in a while, not at every removal."""
        keep = _MAX_TOMBSTONES - _MAX_TOMBSTONES // 16
        return keep, keep + keep // 16

    def _attach(self) -> None:
        """Note that this index is loaded, saved or synced (the caller holds the lock): its
        evictions leave tombstones from now on."""
        self._detached = False

    def _insert(self, scope: str, ids: list[str], vectors: Any, metas: list[_Meta]) -> None:
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape != (len(ids), self._dim):
            raise ValueError(f"vectors must have shape ({len(ids)}, {self._dim})")
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
            if s.written is not None:
                s.written.update(range(n, need))
            for offset, (id, meta) in enumerate(zip(ids, metas, strict=True)):
                s.expires[n + offset] = np.inf if meta.expires is None else meta.expires
                s.ids.append(id)
                s.row_of[id] = n + offset
                self._meta[id] = meta
                self._tombstones.pop(id, None)
            if s.hnsw is not None:
                self._hnsw_add(s, ids, matrix)
            elif s.inserted is not None:  # its graph is being built: taken in at the end
                s.inserted.update(ids)
            else:
                self._queue_build(scope, s)

    def _queue_build(self, name: str, s: _Scope) -> None:
        """Queue a graph build for scope ``s`` when it is past ``hnsw_threshold`` with no
        graph nor build yet (the caller holds the lock, then calls :meth:`_build_due`)."""
        if (
            s.hnsw is None
            and s.inserted is None
            and self.hnsw_threshold is not None
            and len(s.ids) > self.hnsw_threshold
        ):
            s.inserted = set()
            self._builds.append((name, s))

    def remove(self, id: str) -> bool:
        """Remove one entry; returns whether it existed."""
        with self._lock:
            if id not in self._meta:
                return False
            self._remove(id)
            self._forget([id], self._stamp())
            return True

    def strike(self, id: str, delta: int) -> int | None:
        """Add ``delta`` to the entry's strikes (never below 0); the new count, or ``None``
        when there is no entry ``id`` (an expired one not yet purged still counts)."""
        with self._lock:
            meta = self._meta.get(id)
            if meta is None:
                return None
            meta.strikes = max(0, meta.strikes + delta)
            self._pending.struck.add(id)
            return meta.strikes

    def remove_scope(self, scope: str) -> int:
        """Remove every entry of ``scope`` and of its sub-scopes (``scope/...``)."""
        with self._lock:
            doomed = [name for name in self._scopes if _in_scope(name, scope)]
            removed = 0
            now = self._stamp()
            for name in doomed:
                s = self._scopes.pop(name)
                removed += len(s.ids)
                for id in s.ids:
                    del self._meta[id]
                self._forget(s.ids, now)
            return removed

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        with self._lock:
            count = len(self._meta)
            self._forget(list(self._meta), self._stamp())
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

    def save(self, path: str | os.PathLike[str], *, merge: bool = True) -> None:
        """Write the whole index to the directory ``path`` (created if missing) as a new
        base, replacing the base and the deltas there.

        The vectors and graphs are written under names of their own (the new base's
        generation) and made durable before the manifest naming them is renamed into place:
        that rename commits the save, and the files of the previous base are removed only
        after it. A reader never sees a half-written index, and a save killed at any point
        leaves the previous one whole (a process still reading memory-mapped files of an
        older save keeps them). Writers hold a lock on ``path/index.lock``. What other
        processes wrote to ``path`` since this index last loaded or synced there (a base,
        deltas) is first taken into this index (see the class docstring); ``merge=False``
        overwrites it instead. Searches and writes wait only while the index is copied for
        writing, not while it is written.

        A base there whose manifest cannot be read is moved aside into
        ``path/broken-<time>/``, not overwritten; one of a later format version (saved by a
        newer deja) is left as it is and nothing is written (a warning, once).
        """
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._attach()
        with _locked(root, exclusive=True):
            try:
                if merge:
                    self._take_in(root)
                else:
                    self._check_not_newer(root)
            except _NewerIndex as exc:
                self._leave_newer(root, exc)
                return
            self._write_base(root)

    def sync(self, path: str | os.PathLike[str]) -> bool:
        """Bring ``path`` and this index in step: take in what other processes wrote there
        since this index last loaded or synced there, and write what this index changed
        since as one delta file (a full base when there is none yet, or when the deltas
        have grown enough; see the class docstring). Returns whether it took in or wrote anything.

        Called periodically by each of several processes sharing one directory, this brings
        every process the entries the others stored, at a cost in proportion to the
        changes (see the class docstring). A base of a later format version there (saved by
        a newer deja, in a rolling upgrade) is never overwritten: this index writes nothing
        there (warned once; its changes stay in memory) and returns ``False``.
        """
        root = Path(path)
        stat = _stat(root)
        with self._lock:
            quiet = (
                not self._pending and not self._full_save_due and self._base == (str(root), stat)
            )
            if self._newer_base == (str(root), stat):  # that newer base, unchanged: left alone
                return False
        if quiet and not self._unapplied(root):
            return False
        with self._lock:
            self._attach()
        root.mkdir(parents=True, exist_ok=True)
        with _locked(root, exclusive=True):
            try:
                took, usable = self._take_in(root)
            except _NewerIndex as exc:
                self._leave_newer(root, exc)
                return False
            if not usable or self._full_save_due or self._compaction_due(root):
                self._write_base(root)
                return True
            return self._publish(root) or took

    def load(self, path: str | os.PathLike[str]) -> None:
        """Replace the contents with the index saved in ``path`` (its base and deltas).

        Vectors (and HNSW graphs) of the base are memory-mapped read-only and copied into
        memory only when their scope is first changed, so loading a large index is fast
        and cheap. A scope past ``hnsw_threshold`` saved without a graph gets one built in
        the background (:meth:`join_builds`), searched exactly meanwhile. So does a scope
        whose graph fails its checksum (a damaged file: one warning), or was saved by an
        earlier version without one: the file is never opened by usearch, and the next
        sync writes the base again once the new graph is built.

        A scope whose vectors file is damaged (fails its checksum, is cut short, is not a
        vectors file, holds a NaN or infinite row) or missing is left out with a warning
        naming the file; the other scopes load, and the next sync writes the base again
        without it. A delta that cannot be read is skipped (a warning naming it) and renamed
        ``<name>.broken-<time>``. :class:`~deja.errors.ConfigError` when there is no index,
        its manifest cannot be read or fails its checksum (edited or damaged; a manifest
        saved by an earlier version, without one, is read unchecked), or it was saved by a
        newer deja (a later format version).
        """
        root = Path(path)
        if not (root / _MANIFEST).is_file():
            raise ConfigError(f"no vector index saved in {root}")
        with _locked(root, exclusive=False) as held:
            stat, manifest, scopes, meta, torn = self._open_base(root)
            ordered = {id: meta[id] for id in manifest["order"] if id in meta}
            with self._lock:
                self._meta = ordered
                self._scopes = scopes
                self._next_label = int(manifest["next_label"])
                self._tombstones = _tombstones(manifest)
                self._tombstones_ordered = False
                self._newest_tombstone = max(self._tombstones.values(), default=-math.inf)
                self._attach()
                self._in_step(root, stat, manifest.get("generation", ""))
                self._pending = _Pending()
                # a torn base of an older version, or scopes left out (damaged files): the
                # next sync writes a whole new one
                self._full_save_due = torn
            # a graph the deltas' rows grow a scope to need (or the rebuild of one left
            # unused) is built in the background: the load does not wait for it
            self._take_deltas(root, background=True)
            with self._lock:  # what the deltas evicted is in the files already
                self._pending = _Pending()
                # a scope saved without its graph (saved while it was being built, or by
                # an index with another threshold) is searched exactly until it has one
                for name, s in self._scopes.items():
                    self._queue_build(name, s)
                    if s.graph_dropped and s.hnsw is None and s.inserted is None:
                        # no graph to wait for (this index builds none for it): the base
                        # is written again without the unused file at the next sync
                        self._full_save_due = True
            if held:  # no save can be under way: what the manifest does not name is litter
                _sweep(root, manifest)
        self._build_due(background=True)

    def _open_base(
        self, root: Path
    ) -> tuple[
        tuple[int, int, int] | None, dict[str, Any], dict[str, _Scope], dict[str, _Meta], bool
    ]:
        """Read the base in ``root`` (the directory's lock held): its manifest's stat, the
        manifest, its scopes (vectors and graphs memory-mapped), its entries' metadata, and
        whether the base must be written again: scopes of a torn save of an older version
        were left out (see :func:`_torn_legacy`), or scopes whose vectors file is damaged
        or missing (a warning names each file). Only the files the manifest names are
        opened; one gone since the manifest was read (a save of another process, where the
        directory cannot be locked) makes it read the manifest again."""
        for attempt in range(_LOAD_ATTEMPTS):
            stat = _stat(root)
            manifest = self._read_manifest(root)
            if not _loadable(manifest):
                raise ConfigError(
                    f"the vector index manifest in {root} is malformed: it lacks the"
                    " next_label or order a load reads"
                )
            torn = bool(_torn_legacy(root, manifest, stat))
            meta: dict[str, _Meta] = {}
            scopes: dict[str, _Scope] = {}
            damaged: list[str] = []
            unchecked: list[str] = []
            dropped: list[_Damaged] = []
            try:
                for item in manifest["scopes"]:
                    ids: list[str] = item["ids"]
                    matrix = _rows_kept(root, item, self._dim, stat, dropped)
                    if matrix is None:
                        continue
                    s = _Scope(dim=self._dim, ids=list(ids), owned=False, matrix=matrix)
                    s.row_of = {id: row for row, id in enumerate(ids)}
                    s.expires = np.array(
                        [np.inf if e is None else e for e in item["expires"]], dtype=np.float64
                    )
                    if item["hnsw"] is not None:
                        expected = item.get("hnsw_crc32")
                        graph = self._open_graph(root, stat, item["hnsw"], expected)
                        if graph is None:
                            # never mapped (usearch's search crashes in a damaged graph):
                            # the scope is searched exactly, and gets a graph built from its
                            # rows
                            (unchecked if expected is None else damaged).append(item["scope"])
                            s.graph_dropped = True
                        else:
                            # a restored graph searches with usearch's default, not this one
                            graph.expansion_search = self._expansion(len(ids), graph)
                            s.hnsw, s.hnsw_viewed = graph, True
                            s.label_of = dict(zip(ids, item["labels"], strict=True))
                            s.id_of = {label: id for id, label in s.label_of.items()}
                    scopes[item["scope"]] = s
                    meta.update(zip(ids, _metas(item), strict=True))
            except FileNotFoundError as exc:
                if attempt + 1 < _LOAD_ATTEMPTS and _stat(root) != stat:
                    continue  # a newer base replaced the one read: read that one
                raise ConfigError(
                    f"the vector index in {root} names a file that is missing: {exc}"
                ) from exc
            _left_out(root, dropped)
            if damaged:
                logger.warning(
                    "the HNSW graph of %d scope(s) of the vector index in %s does not match "
                    "its checksum, or is missing (a damaged file): left unused, those scopes "
                    "are searched exactly until a new graph is built from their rows",
                    len(damaged),
                    root,
                )
            if unchecked:
                logger.info(
                    "the vector index in %s was saved by an earlier deja, without checksums "
                    "of its HNSW graphs: the graphs of %d scope(s) are built again from their "
                    "rows (searched exactly meanwhile) and saved with checksums",
                    root,
                    len(unchecked),
                )
            return stat, manifest, scopes, meta, torn or bool(dropped)
        raise AssertionError("unreachable")  # pragma: no cover

    def _open_graph(
        self, root: Path, stat: tuple[int, int, int] | None, name: Any, expected: Any
    ) -> Any:
        """The HNSW graph file ``name`` of the base in ``root`` (``stat`` its manifest's),
        mapped by usearch when its CRC-32 is ``expected``; ``None`` when there is no
        checksum, or the file fails it, is missing or is refused by usearch (its rows, the
        authoritative copy, are searched exactly and give it a new graph).
        ``FileNotFoundError`` when the file is gone because a newer base replaced this
        one."""
        graph = _named(root, name)
        if expected is None:
            return None
        try:
            if _crc32(graph) != expected:
                return None
        except FileNotFoundError:
            if _stat(root) != stat:
                raise
            return None
        # (usearch returns None for a file it cannot read)
        return _usearch().restore(str(graph), view=True)

    def _read_manifest(self, root: Path) -> dict[str, Any]:
        """The manifest of the base in ``root``: :class:`ConfigError` when there is none,
        or it is not one of this index (not JSON, another format or dimension, not of the
        shape a merge reads), :class:`_NewerIndex` for one of a later format version."""
        try:
            data = (root / _MANIFEST).read_bytes()
            manifest: dict[str, Any] = _loads(data)
        except FileNotFoundError as exc:
            raise ConfigError(f"no vector index saved in {root}") from exc
        except ValueError as exc:
            raise ConfigError(f"the vector index manifest in {root} is not JSON: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
            raise ConfigError(f"{root} holds no deja vector index of a known version")
        version = manifest.get("version")
        if isinstance(version, int) and version > _FORMAT_VERSION:
            raise _NewerIndex(
                f"the vector index in {root} was saved by a newer deja (format version "
                f"{version}; this one reads version {_FORMAT_VERSION})"
            )
        if version != _FORMAT_VERSION:
            raise ConfigError(f"{root} holds no deja vector index of a known version")
        # (ids, metadata and file names: what the CRC-32s of the files do not cover; a
        # swapped id put answers on the wrong vectors). Unsealed, only a manifest an earlier
        # version saved, whose first field is "format": one whose seal's own name was
        # damaged ("manifest_crc33") is no such manifest.
        if "manifest_crc32" in manifest or not _UNSEALED.match(data):
            broken = _seal_broken(data)
            if broken is not None:
                raise ConfigError(f"the vector index manifest in {root} is damaged: {broken}")
        if manifest.get("dim") != self._dim:
            raise ConfigError(
                f"the index in {root} holds {manifest.get('dim')}-d vectors, not {self._dim}-d"
            )
        try:
            _check_manifest(manifest)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # (a load raised these as they were, not the ConfigError it promises; a sync
            # met a malformed tombstones table with an AttributeError, at every sync)
            raise ConfigError(f"the vector index manifest in {root} is malformed: {exc!r}") from exc
        return manifest

    def _take_in(self, root: Path) -> tuple[bool, bool]:
        """Under the directory's exclusive lock: merge the base in ``root`` when it is not
        the one this index is in step with, then the deltas of that base not yet taken in.
        Returns (whether anything was taken in, whether ``root`` holds a usable base: when
        not, the caller writes one, and this index's entries are not lost with it).

        A base whose manifest cannot be read (not JSON, of another format or dimension,
        malformed) is moved aside whole into ``root/broken-<time>/``; the scopes of a
        readable base whose vectors file is damaged or missing are left out (a warning
        names each file) and the base is written again without them (the caller sees
        ``_full_save_due``). :class:`_NewerIndex` for a base of a later format version,
        which the caller leaves alone; another ``OSError`` (reading the manifest, or a file
        it names) is raised: nothing is overwritten for what may pass."""
        stat = _stat(root)
        if stat is None:
            return False, False
        took = False
        with self._lock:
            in_step = self._base == (str(root), stat)
        if not in_step:
            try:
                manifest = self._read_manifest(root)
                if _torn_legacy(root, manifest, stat) or not _loadable(manifest):
                    # written again whole, in the current layout (or with the fields
                    # only a load reads: its entries are taken in meanwhile)
                    with self._lock:
                        self._full_save_due = True
                if manifest.get("generation", "") != self._generation:
                    files = _BaseFiles(root, self._dim)
                    if files.leave_out_damaged(manifest, stat):
                        with self._lock:  # written again without them
                            self._full_save_due = True
                    self._merge(files, manifest)
                    took = True
                with self._lock:
                    self._in_step(root, stat, manifest.get("generation", ""))
            except _NewerIndex:
                raise
            except (ConfigError, ValueError, KeyError, TypeError) as exc:
                if _stat(root) is None:  # (no manifest: none to keep)
                    return took, False
                self._move_base_aside(root, exc)
                return took, False
        return self._take_deltas(root) or took, True

    def _move_base_aside(self, root: Path, why: Exception) -> None:
        """Move the base in ``root`` whose manifest cannot be read (``why``), its files and
        its deltas, into a new ``root/broken-<time>/`` (the directory's exclusive lock
        held): a new base is written in its place, and it is kept for a look. The
        manifest goes last (a move cut short is finished by the next one); only the
        newest _KEEP_BROKEN such directories are kept."""
        names = sorted(
            name
            for name in os.listdir(root)
            if name.startswith(("scope-", "delta-")) and not name.endswith(".tmp")
        )
        aside = _new_aside(root, self._clock())
        for name in [*names, _MANIFEST]:
            with contextlib.suppress(FileNotFoundError):
                os.replace(root / name, aside / name)
        logger.warning(
            "the vector index in %s is unreadable (%r): moved aside to %s, a new one is "
            "written in its place",
            root,
            why,
            aside,
        )
        _prune_aside(root)

    def _check_not_newer(self, root: Path) -> None:
        """:class:`_NewerIndex` when the base in ``root`` (that a save without merging is
        about to replace) is of a later format version; nothing for any other base, or
        none, or one that cannot be read."""
        if _stat(root) is None:
            return
        try:
            self._read_manifest(root)
        except _NewerIndex:
            raise
        except (ConfigError, OSError):  # overwritten, as asked
            pass

    def _leave_newer(self, root: Path, why: _NewerIndex) -> None:
        """Leave alone the base of a later format version in ``root`` (``why`` says so):
        a rolling upgrade, whose newer processes write there. This index writes nothing
        there (its changes stay in memory), warned once per directory."""
        stat = _stat(root)
        with self._lock:
            first = self._newer_base is None or self._newer_base[0] != str(root)
            self._newer_base = (str(root), stat)
        (logger.warning if first else logger.debug)(
            "%s: this deja neither loads nor writes it (its changes stay in memory), so as "
            "not to overwrite what the newer one saved",
            why,
        )

    def _in_step(self, root: Path, stat: tuple[int, int, int] | None, generation: str) -> None:
        """Note that this index now holds the base ``generation`` of ``root`` (its
        manifest's ``stat``) and none of its deltas yet (the caller holds the lock)."""
        self._generation = generation
        self._base = (str(root), stat)
        self._applied = set()
        self._newer_base = None

    def _take_deltas(self, root: Path, *, background: bool = False) -> bool:
        """Merge the deltas of this index's base in ``root`` not yet taken in (the graphs
        they make due built here, or in the background). One that cannot be read is
        skipped with a warning naming it, and renamed ``<name>.broken-<time>`` so that no
        later sync reads it again (the next full save removes it, with the other deltas
        of its base); one that cannot be read for now (an ``OSError``) is tried again at
        the next sync."""
        took = False
        for name in self._unapplied(root):
            path = root / name
            try:
                raw = path.read_bytes()
            except FileNotFoundError:  # compacted away since the listing: in the base now
                continue
            except OSError as exc:
                logger.warning("cannot read the vector index delta %s for now (%r)", path, exc)
                continue
            try:
                doc, vectors = _read_delta(raw, self._dim)
            except _Damaged as exc:
                self._applied.add(name)
                aside = path.with_name(f"{name}.broken-{_time_stamp(self._clock())}")
                try:
                    os.replace(path, aside)
                except OSError:  # (a read-only directory; or another process moved it)
                    aside = path
                logger.warning(
                    "skipping the unreadable vector index delta %s (%s): its changes are lost; %s",
                    path,
                    exc.reason,
                    f"moved aside to {aside.name}" if aside != path else "left in place",
                )
                continue
            self._merge(_DeltaRows(vectors), doc, background=background)
            self._applied.add(name)
            took = True
        return took

    def _unapplied(self, root: Path) -> list[str]:
        """Names of the delta files of this index's base in ``root`` it has not taken in."""
        if self._generation is None:
            return []
        prefix = f"delta-{self._generation}-"
        try:
            names = os.listdir(root)
        except OSError:
            return []
        return sorted(
            n
            for n in names
            if n.startswith(prefix) and n.endswith(".npz") and n not in self._applied
        )

    def _compaction_due(self, root: Path) -> bool:
        """Whether the deltas of the base in ``root`` have grown enough to rewrite it."""
        prefix = f"delta-{self._generation}-"
        base = f"scope-{self._generation}-"
        count = delta_bytes = base_bytes = 0
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.name.startswith(prefix) and entry.name.endswith(".npz"):
                    count += 1
                    delta_bytes += entry.stat().st_size
                elif entry.name.endswith(".npy") and (
                    entry.name.startswith(base) or _LEGACY_FILE.fullmatch(entry.name)
                ):
                    base_bytes += entry.stat().st_size
        # sizes stand for rows (a row is dim float32s; the metadata beside it is small)
        limit = max(_COMPACT_MIN_ROWS * self._dim * 4, int(base_bytes * _COMPACT_FRACTION))
        return count >= _COMPACT_FILES or delta_bytes >= limit

    def _write_base(self, root: Path) -> None:
        """Write this index to ``root`` as a new base (the directory's lock held)."""
        try:
            copies = self._copy_rows()
            with self._lock:
                snapshot = self._snapshot(copies)
                # all in the base now (its strikes as they are here): later changes pend
                for id in self._pending.struck | self._pending.added:
                    meta = self._meta.get(id)
                    if meta is not None:
                        meta.saved_strikes = meta.strikes
                self._pending = _Pending()
                self._full_save_due = False
        finally:
            with self._lock:
                for scope in self._scopes.values():
                    scope.written = None
        try:
            self._fill_metas(snapshot[2])
            _write(root, *snapshot)
        except BaseException:
            with self._lock:
                self._full_save_due = True
            raise
        with self._lock:
            self._in_step(root, _stat(root), snapshot[2]["generation"])

    def _publish(self, root: Path) -> bool:
        """Write what this index changed since it last wrote as one delta file of its base
        in ``root`` (the directory's lock held); returns whether there was anything."""
        with self._lock:
            if not self._pending:
                return False
            doc, vectors = self._delta()
            self._delta_seq += 1
            name = f"delta-{self._generation}-{self._writer}-{self._delta_seq:08d}.npz"
        try:
            _atomic_write(root / name, functools.partial(_save_delta, vectors, doc))
        except BaseException:
            with self._lock:
                self._full_save_due = True  # what the file held is written with the base
            raise
        with self._lock:
            self._applied.add(name)
        return True

    def _delta(self) -> tuple[dict[str, Any], Any]:
        """The pending changes as a delta (a manifest's shape; the caller holds the lock):
        new entries with their metadata and rows, removals, and strikes given to entries
        taken from elsewhere; the pending set is emptied."""
        pending, self._pending = self._pending, _Pending()
        by_scope: dict[str, list[str]] = {}
        for id in pending.added:
            meta = self._meta.get(id)
            if meta is not None:
                by_scope.setdefault(meta.scope, []).append(id)
        items: list[dict[str, Any]] = []
        blocks: list[Any] = []
        first = 0
        for name, ids in by_scope.items():
            s = self._scopes[name]
            blocks.append(np.array(s.matrix[[s.row_of[id] for id in ids]], dtype=np.float32))
            metas = [self._meta[id] for id in ids]
            items.append(
                {
                    "scope": name,
                    "first": first,
                    "ids": ids,
                    "expires": [m.expires for m in metas],
                    "payloads": [m.payload for m in metas],
                    "strikes": [m.strikes for m in metas],
                    "added": [m.added for m in metas],
                }
            )
            for m in metas:
                m.saved_strikes = m.strikes
            first += len(ids)
        strikes: list[list[Any]] = []
        for id in pending.struck - pending.added:
            meta = self._meta.get(id)
            if meta is not None and meta.strikes != meta.saved_strikes:
                strikes.append([id, meta.added, meta.strikes - meta.saved_strikes])
                meta.saved_strikes = meta.strikes
        removed = {id: self._tombstones[id] for id in pending.removed if id in self._tombstones}
        doc = {"scopes": items, "tombstones": removed, "strikes": strikes}
        vectors = np.concatenate(blocks) if blocks else np.zeros((0, self._dim), np.float32)
        return doc, vectors

    def _merge(
        self, rows: _BaseFiles | _DeltaRows, doc: dict[str, Any], *, background: bool = False
    ) -> None:
        """Merge what another process wrote (a base's manifest or a delta, ``rows`` reading
        its vectors) into this index: per entry id, the latest of the adds and removals
        either knows of wins; strikes another process gave are added to this one's.

        The entries are inserted a few at a time, the lock let go between, so searches
        wait for one small batch of graph inserts, not for the whole merge. A graph the
        merge makes due is built before it returns, or with ``background`` in a thread of
        its own (a load, which must not wait for a build: 30 s or more at 100k entries)."""
        now = self._clock()
        with self._lock:
            for id, when in _tombstones(doc).items():
                mine = self._meta.get(id)
                if mine is not None and when >= mine.added:
                    self._remove(id)
                if id not in self._meta and when > self._tombstones.get(id, -math.inf):
                    self._tombstones[id] = when
                    self._tombstones_ordered = False
                    self._newest_tombstone = max(self._newest_tombstone, when)
            keep, most = self._tombstone_bounds()
            if len(self._tombstones) > most:
                self._prune_tombstones(now, keep)
        taken: list[str] = []
        for item in doc["scopes"]:
            # which entries to take: compared a few thousand at a time under the lock
            take: list[tuple[str, int, _Meta]] = []
            theirs_all = list(zip(item["ids"], _metas(item), strict=True))
            for start in range(0, len(theirs_all), _MERGE_COMPARE):
                with self._lock:
                    batch = theirs_all[start : start + _MERGE_COMPARE]
                    for row, (id, theirs) in enumerate(batch, start):
                        if theirs.expires is not None and theirs.expires <= now:
                            continue
                        mine = self._meta.get(id)
                        if mine is not None and mine.added == theirs.added:
                            own = mine.strikes - mine.saved_strikes  # the same add: both saw it
                            mine.strikes = max(0, theirs.strikes + own)
                            mine.saved_strikes = theirs.strikes
                        elif self._newer(id, theirs):
                            take.append((id, row, theirs))
            # inserted a few at a time (checked again: this index may have changed since)
            for start in range(0, len(take), _MERGE_BATCH):
                with self._lock:
                    batch_take = [
                        t for t in take[start : start + _MERGE_BATCH] if self._newer(t[0], t[2])
                    ]
                    if batch_take:
                        vectors = rows.read(item, [row for _, row, _ in batch_take])
                        ids = [id for id, _, _ in batch_take]
                        self._insert(item["scope"], ids, vectors, [m for _, _, m in batch_take])
                        taken.extend(ids)
                self._build_due(background=background)
                time.sleep(0)  # a search waiting for the lock gets it before the next batch
        with self._lock:
            for id, when, count in doc.get("strikes") or ():
                mine = self._meta.get(id)
                if mine is not None and mine.added == when:
                    # what this index gave of its own (strikes - saved_strikes) stays
                    now_struck = max(0, mine.strikes + int(count))
                    mine.saved_strikes += now_struck - mine.strikes
                    mine.strikes = now_struck
            taken = [id for id in taken if id in self._meta]
            if taken:
                self._reorder(taken)
            self._bound()

    def _newer(self, id: str, theirs: _Meta) -> bool:
        """Whether another process's add of ``id`` is later than what this index knows of
        it (its own add, or its removal)."""
        mine = self._meta.get(id)
        if mine is not None and mine.added >= theirs.added:
            return False
        return self._tombstones.get(id, -math.inf) < theirs.added

    def _reorder(self, taken: list[str]) -> None:
        """Put the entries just taken in at their place in age order (insertion order is
        age order: the oldest is evicted first). Only the newest part of the index moves:
        the entries added after the oldest of them."""
        new = set(taken)
        oldest = min(self._meta[id].added for id in taken)
        tail: list[str] = []
        for id in reversed(self._meta):
            if id not in new and self._meta[id].added <= oldest:
                break
            tail.append(id)
        moved = sorted(((id, self._meta.pop(id)) for id in tail), key=lambda p: p[1].added)
        self._meta.update(moved)

    def _copy_rows(self) -> dict[str, tuple[_Scope, Any]]:
        """Copies of every scope's rows, made _COPY_ROWS rows per hold of the lock (copying
        1M rows at once held searches up ~1 s). Rows written meanwhile are noted in each
        scope's ``written`` for :meth:`_snapshot` to copy again under the lock."""
        copies: dict[str, tuple[_Scope, Any]] = {}
        with self._lock:
            for name, scope in self._scopes.items():
                scope.written = set()
                copies[name] = (scope, np.empty((len(scope.ids), self._dim), np.float32))
        for scope, out in copies.values():
            for start in range(0, len(out), _COPY_ROWS):
                with self._lock:
                    end = min(start + _COPY_ROWS, len(out), len(scope.ids))
                    if end > start:
                        out[start:end] = scope.matrix[start:end]
                time.sleep(0)  # a search waiting for the lock gets it before the next rows
        return copies

    @staticmethod
    def _rows_now(scope: _Scope, copied: Any) -> Any:
        """``copied`` (from :meth:`_copy_rows`) made equal to the scope's rows now: cut or
        extended to its size, the rows written since copied again (the caller holds the
        lock)."""
        n, before = len(scope.ids), len(copied)
        rows = copied[:n] if n <= before else np.concatenate([copied, scope.matrix[before:n]])
        for row in scope.written or ():
            if row < min(n, before):
                rows[row] = scope.matrix[row]
        return rows

    def _snapshot(
        self, copies: dict[str, tuple[_Scope, Any]] | None = None
    ) -> tuple[dict[str, Any], dict[str, bytearray], dict[str, Any]]:
        """Copies of what :func:`_write` writes: vectors and graphs by file name, and the
        manifest (with a fresh generation). ``copies``: the rows :meth:`_copy_rows` copied
        already (the caller holds the lock)."""
        vectors: dict[str, Any] = {}
        graphs: dict[str, bytearray] = {}
        scopes: list[dict[str, Any]] = []
        # copies of the tables (a dict copy is one C pass; reading 1M entries out of them
        # one by one took ~0.7 s, and is done after the lock is let go: _fill_metas)
        meta_of = self._meta.copy()
        # the files are named after the base's generation: a save never writes over a file
        # that an earlier manifest names (see _write)
        generation = uuid.uuid4().hex
        for number, (name, s) in enumerate(self._scopes.items()):
            vectors_file = f"scope-{generation}-{number}.npy"
            copied = (copies or {}).get(name)
            if copied is not None and copied[0] is s and s.written is not None:
                vectors[vectors_file] = self._rows_now(s, copied[1])
            else:  # a scope made (or made again) since: copied here
                vectors[vectors_file] = np.array(s.matrix[: len(s.ids)], dtype=np.float32)
            hnsw_file = None
            if s.hnsw is not None:
                hnsw_file = f"scope-{generation}-{number}.usearch"
                graphs[hnsw_file] = s.hnsw.save()  # a bytearray
            scopes.append(
                {
                    "scope": name,
                    "vectors": vectors_file,
                    "hnsw": hnsw_file,
                    "ids": list(s.ids),
                    "labels": s.label_of.copy() if s.hnsw is not None else None,
                    "metas": meta_of,
                }
            )
        self._prune_tombstones(self._clock(), self._tombstone_bounds()[1])
        manifest = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "dim": self._dim,
            "metric": "cos",
            "next_label": self._next_label,
            "order": meta_of,
            "scopes": scopes,
            "tombstones": dict(self._tombstones),
            "generation": generation,
        }
        return vectors, graphs, manifest

    @staticmethod
    def _fill_metas(manifest: dict[str, Any]) -> None:
        """Turn the tables a :meth:`_snapshot` manifest copied into lists of the entries'
        fields (outside the lock: an entry's expiry, payload and add time never change, and its
        ``saved_strikes`` are its strikes as the snapshot saw them — :meth:`_write_base`
        sets them so under the lock, and only a merge or a delta, which wait for the
        directory's lock this save holds, changes them)."""
        meta_of: dict[str, _Meta] = manifest["order"]
        manifest["order"] = list(meta_of)
        for item in manifest["scopes"]:
            metas = _gather(meta_of, item["ids"])
            del item["metas"]
            if item["labels"] is not None:
                item["labels"] = _gather(item["labels"], item["ids"])
            item["strikes"] = [m.saved_strikes for m in metas]
            item["expires"] = [m.expires for m in metas]
            item["payloads"] = [m.payload for m in metas]
            item["added"] = [m.added for m in metas]

    def _prune_tombstones(self, now: float, keep: int) -> None:
        """Let go of the removals older than 7 days, then of the oldest past ``keep`` (the
        caller holds the lock); their pending removals go too (a delta writes only the
        remembered ones)."""
        tombstones = self._tombstones
        if not self._tombstones_ordered:  # stable: ties keep their order
            tombstones = dict(sorted(tombstones.items(), key=operator.itemgetter(1)))
        horizon = now - _TOMBSTONE_SECONDS
        cut = len(tombstones) - keep
        items = iter(tombstones.items())
        kept: dict[str, float] = {}
        for id, when in items:  # the oldest first: only those let go are walked here
            if cut <= 0 and when >= horizon:
                kept[id] = when
                break
            cut -= 1
            self._pending.removed.discard(id)
        kept.update(items)  # the rest, in one pass
        self._tombstones = kept
        self._tombstones_ordered = True
        self._newest_tombstone = next(reversed(kept.values()), -math.inf)

    # -- internals --------------------------------------------------------------------

    def _vector(self, vector: Any) -> Any:
        return checked_vector(vector, self._dim)

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
        # nothing of it is left to write (an expired entry purged leaves no tombstone, and
        # would otherwise stay pending until a save: forever in an index never saved)
        self._pending.added.discard(id)
        self._pending.struck.discard(id)
        s = self._scopes[meta.scope]
        s.own()
        row = s.row_of.pop(id)
        last = len(s.ids) - 1
        if row != last:  # move the last row into the hole: rows stay dense
            moved = s.ids[last]
            s.matrix[row] = s.matrix[last]
            if s.written is not None:
                s.written.add(row)
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
            oldest = next(iter(self._meta))
            self._remove(oldest)
            self._forget([oldest], self._stamp(), evicted=True)
            self.evictions += 1

    def _purge_locked(self) -> int:
        now = self._clock()
        doomed = [id for id, m in self._meta.items() if m.expires is not None and m.expires <= now]
        for id in doomed:
            self._remove(id)
        return len(doomed)

    def _search_exact(self, s: _Scope, query: Any, k: int, now: float) -> list[tuple[str, float]]:
        n = len(s.ids)
        sims = _similarities(s.matrix[:n], query)
        expired = s.expires[:n] <= now
        if expired.any():
            sims = np.where(expired, -np.inf, sims)
        if n > k:
            top = np.argpartition(-sims, k - 1)[:k]
            top = top[np.argsort(-sims[top], kind="stable")]
        else:
            top = np.argsort(-sims, kind="stable")
        return [(s.ids[i], float(sims[i])) for i in top if sims[i] != -np.inf]

    def _expansion(self, size: int, graph: Any = None) -> int:
        """The search expansion for a scope of ``size`` entries searched by ``graph`` (by
        default one of this index's quantization)."""
        if self.expansion_search is not None:
            return self.expansion_search
        kind = str(graph.dtype).rsplit(".", 1)[-1].lower() if graph is not None else None
        return auto_expansion(size, kind or self.quantization)

    def _search_hnsw(self, s: _Scope, query: Any, k: int, now: float) -> list[tuple[str, float]]:
        expansion = self._expansion(len(s.ids), s.hnsw)
        if s.hnsw.expansion_search != expansion:  # the scope grew past a step
            s.hnsw.expansion_search = expansion
        # The graph proposes a few more than k (expired entries are skipped here, purged
        # later); their exact similarities come from the full-precision rows, since the
        # graph's own distances are those of its quantized copy.
        matches = s.hnsw.search(query, k + _RERANK_EXTRA)
        ids = []
        for label in matches.keys.tolist():
            id = s.id_of.get(label)
            if id is not None and s.expires[s.row_of[id]] > now:
                ids.append(id)
        if not ids:
            return []
        similarities = _similarities(s.matrix[[s.row_of[id] for id in ids]], query).tolist()
        ranked = sorted(zip(ids, similarities, strict=True), key=lambda pair: -pair[1])
        return ranked[:k]

    def _hnsw_add(self, s: _Scope, ids: list[str], vectors: Any) -> None:
        labels = np.arange(self._next_label, self._next_label + len(ids), dtype=np.uint64)
        self._next_label += len(ids)
        for id, label in zip(ids, labels.tolist(), strict=True):
            s.label_of[id] = label
            s.id_of[label] = id
        self._graph_add(s.hnsw, [], labels, vectors)

    def join_builds(self, timeout: float | None = None) -> bool:
        """Wait for the graphs being built in the background (see ``add``); returns
        whether none is left running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            threads = list(self._build_threads)
        for thread in threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
        with self._lock:
            self._build_threads = [t for t in self._build_threads if t.is_alive()]
            return not self._build_threads

    def _build_due(self, *, background: bool = False) -> None:
        """Build the graphs of the scopes an insert grew past ``hnsw_threshold`` (the
        caller does not hold the lock): here, or in a thread of their own."""
        if background:
            with self._lock:
                if not self._builds:
                    return
                thread = threading.Thread(target=self._build_in_background, name="deja-index-build")
                thread.daemon = True
                self._build_threads = [t for t in self._build_threads if t.is_alive()]
                self._build_threads.append(thread)
            with _BUILDS_LOCK:
                _BUILDS.add(thread)
            thread.start()
            return
        while True:
            with self._lock:
                if not self._builds:
                    return
                name, s = self._builds.pop()
            self._build_hnsw(name, s)

    def _build_in_background(self) -> None:
        try:
            self._build_due()
        except _BuildStopped:
            pass  # the interpreter is exiting (the scope is searched exactly until then)
        finally:
            with _BUILDS_LOCK:
                _BUILDS.discard(threading.current_thread())

    def _build_hnsw(self, name: str, s: _Scope) -> None:
        """Build the graph of scope ``s`` (named ``name``) and start searching it.

        The graph is built from copies of the rows with the lock let go (20k entries take
        4-8 s on two cores, which searches and writes would otherwise wait through; the
        scope is searched exactly meanwhile), in rounds: each takes in, under the lock,
        what changed during the one before (entries removed or inserted again leave the
        graph, new ones are copied to join it), until few enough are left to insert
        under the lock and start searching the graph. A scope removed or replaced
        meanwhile (remove_scope, clear, load) drops the graph."""
        graph = None
        label_of: dict[str, int] = {}  # what the graph holds
        try:
            while True:
                with self._lock:
                    if self._scopes.get(name) is not s or s.hnsw is not None:
                        s.inserted = None
                        return
                    if graph is None:
                        graph = self._new_graph(len(s.ids))
                    inserted, s.inserted = s.inserted or set(), set()
                    gone = [
                        label_of.pop(id)
                        for id in list(label_of)
                        if id not in s.row_of or id in inserted
                    ]
                    joining = [id for id in s.ids if id not in label_of]
                    labels = np.arange(
                        self._next_label, self._next_label + len(joining), dtype=np.uint64
                    )
                    self._next_label += len(joining)
                    label_of.update(zip(joining, labels.tolist(), strict=True))
                    if len(joining) == len(s.ids):  # the first round: every row, in order
                        rows = np.array(s.matrix[: len(s.ids)], np.float32)
                    else:
                        rows = np.array(s.matrix[[s.row_of[id] for id in joining]], np.float32)
                    last = len(joining) <= _MERGE_BATCH
                    if last:  # the graph is searched from now on
                        self._graph_add(graph, gone, labels, rows)
                        s.label_of = label_of
                        s.id_of = {label: id for id, label in label_of.items()}
                        s.hnsw, s.hnsw_viewed, s.inserted = graph, False, None
                        if s.graph_dropped:  # replaces an unused saved graph: save this one
                            s.graph_dropped = False
                            self._full_save_due = True
                        return
                self._graph_add(graph, gone, labels, rows)
        except BaseException:
            with self._lock:
                s.inserted = None  # the next insert grown past the threshold tries again
            raise

    @staticmethod
    def _graph_add(graph: Any, gone: list[int], labels: Any, rows: Any) -> None:
        if gone:
            graph.remove(np.array(gone, dtype=np.uint64))
        for start in range(0, len(labels), _BUILD_CHUNK):
            if _STOPPING.is_set() and threading.current_thread() in _BUILDS:
                raise _BuildStopped
            end = start + _BUILD_CHUNK
            chunk, vectors = labels[start:end], rows[start:end]
            graph.add(chunk, vectors)
            if len(chunk) > 1:
                _relink(graph, chunk, vectors)

    def _new_graph(self, size: int) -> Any:
        return _usearch()(
            ndim=self._dim,
            metric="cos",
            dtype=self.quantization,
            connectivity=self.connectivity,
            expansion_add=self.expansion_add,
            expansion_search=self._expansion(size),
        )


def _relink(graph: Any, labels: Any, vectors: Any) -> None:
    """Add again, on one thread, the entries of a batch that a search for their own vector
    does not find.

    usearch adds a batch on all cores, and a few of its entries come out with no edge
    leading to them: in the graph, but no search reaches them, so their answers would
    never be served (5 of a 20k build of clustered vectors, 16 of 100k, 0-3 of 80; none
    on one thread, which builds 1.5-2.5 times slower). A narrow search for each finds
    them for 20-40% of the build's time, and takes a few reachable ones along (122 at
    100k), which costs only their re-adding."""
    expansion = graph.expansion_search
    graph.expansion_search = _RELINK_EXPANSION
    try:
        found = graph.search(vectors, _RELINK_K).keys
    finally:
        graph.expansion_search = expansion
    lost = ~(found == labels[:, None]).any(axis=1)
    if lost.any():
        graph.remove(labels[lost])
        graph.add(labels[lost], vectors[lost], threads=1)


def auto_expansion(size: int, quantization: str = "f32") -> int:
    """The HNSW search expansion for a scope of ``size`` entries when none is set: 64 up
    to 200k entries, 128 up to 500k, 256 above, and 1.5 times that for an i8 graph (whose
    coarser distances need a wider search to reach what f32 reaches; BENCHMARKS.md)."""
    base = 64 if size <= 200_000 else 128 if size <= 500_000 else 256
    return base * 3 // 2 if quantization == "i8" else base


def _gather(table: dict[str, Any], keys: list[str]) -> list[Any]:
    """``[table[k] for k in keys]`` in slices: one C call over 1M keys holds the GIL for
    ~0.2 s, and searches in other threads wait that long."""
    out: list[Any] = []
    for start in range(0, len(keys), 50_000):
        out.extend(map(table.__getitem__, keys[start : start + 50_000]))
    return out


def _save_npy(rows: Any, f: Any) -> int:
    """Write ``rows`` to ``f`` as a ``.npy`` file (what ``np.save`` writes); returns the
    file's CRC-32, of its header and of the rows in memory (what a load checks before it
    uses the rows; ~50 ms for 100k rows of 384 floats)."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(rows))
    f.write(header.getvalue())
    rows.tofile(f)
    return zlib.crc32(rows.data, zlib.crc32(header.getvalue()))


def _write_bytes(data: bytes | bytearray, f: Any) -> None:
    f.write(data)


_T = TypeVar("_T")


def _atomic_write(target: Path, write: Callable[[Any], _T]) -> _T:
    """Write ``target`` through a file of its own made durable, then renamed into place;
    returns what ``write`` returned."""
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("wb") as f:
        written = write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return written


def _metas(item: dict[str, Any]) -> list[_Meta]:
    """The entries' metadata of one saved scope (saves of older versions have no strikes
    and no add times: 0 for both)."""
    n = len(item["ids"])
    strikes = item.get("strikes") or [0] * n
    added = item.get("added") or [0.0] * n
    return [
        _Meta(item["scope"], expires, payload, int(count), float(when), int(count))
        for expires, payload, count, when in zip(
            item["expires"], item["payloads"], strikes, added, strict=True
        )
    ]


def _tombstones(manifest: dict[str, Any]) -> dict[str, float]:
    return {str(id): float(when) for id, when in (manifest.get("tombstones") or {}).items()}


@contextlib.contextmanager
def _locked(root: Path, *, exclusive: bool) -> Iterator[bool]:
    """Hold ``root/index.lock`` (shared for readers, exclusive for writers) where the
    platform has ``fcntl``, the directory is writable and its file system locks; otherwise
    no lock (one process saving there is still safe). Yields whether the lock is held."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield False
        return
    try:
        fd = os.open(root / "index.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only directory: nobody saves there either
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            held = True
        except OSError as exc:  # a file system without locks (some network ones)
            logger.warning("cannot lock %s (%s): saving without the lock", root, exc)
            held = False
        yield held
    finally:
        os.close(fd)


class _BaseFiles:
    """Reads the rows of a base's scope from its memory-mapped vectors file (mapped and
    checked once per file: a merge reads a few rows at a time)."""

    def __init__(self, root: Path, dim: int) -> None:
        self.root = root
        self.dim = dim
        self._mapped: dict[str, Any] = {}

    def leave_out_damaged(
        self, manifest: dict[str, Any], stat: tuple[int, int, int] | None
    ) -> list[_Damaged]:
        """Map and check the vectors file of every scope of ``manifest`` (its ``stat``),
        and leave out of it the scopes whose file is damaged or missing (with a warning
        naming each); returns those. ``FileNotFoundError`` for a file gone because a newer
        base replaced this one (where the directory cannot be locked)."""
        kept: list[dict[str, Any]] = []
        dropped: list[_Damaged] = []
        for item in manifest["scopes"]:
            matrix = _rows_kept(self.root, item, self.dim, stat, dropped)
            if matrix is not None:
                self._mapped[item["vectors"]] = matrix
                kept.append(item)
        manifest["scopes"] = kept
        _left_out(self.root, dropped)
        return dropped

    def read(self, item: dict[str, Any], rows: list[int]) -> Any:
        name = item["vectors"]
        matrix = self._mapped.get(name)
        if matrix is None:
            matrix = self._mapped[name] = _open_rows(self.root, item, self.dim)
        return np.array(matrix[rows], dtype=np.float32)


class _DeltaRows:
    """Reads the rows of a delta's scope from the delta's one array of vectors."""

    def __init__(self, vectors: Any) -> None:
        self.vectors = vectors

    def read(self, item: dict[str, Any], rows: list[int]) -> Any:
        return self.vectors[[int(item["first"]) + row for row in rows]]


def _dumps(doc: dict[str, Any]) -> bytes:
    """JSON of a manifest or delta: orjson (a 1M-entry manifest in a fraction of the time
    the json module takes, which holds the GIL, so searches wait, all the while); the json
    module for what orjson refuses (a prompt with a lone surrogate)."""
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:
        return json.dumps(doc, separators=(",", ":")).encode()


def _sealed(payload: bytes) -> bytes:
    """``payload``, a manifest's JSON object, with its checksum put first: the CRC-32 of
    every byte after it (one pass over the bytes; the JSON is not written again)."""
    body = memoryview(payload)[1:]  # (after the "{": a manifest is never an empty object)
    return b'{"manifest_crc32":%d,' % zlib.crc32(body) + body


def _seal_broken(data: bytes) -> str | None:
    """Why the manifest ``data`` (parsed, with a ``manifest_crc32`` field) fails its
    checksum, or ``None`` when it holds."""
    seal = _SEAL.match(data)
    if seal is None:
        return "its checksum is not where a save puts it (the file was rewritten)"
    if int(seal[1]) != zlib.crc32(memoryview(data)[seal.end() :]):
        return "it does not match its checksum (edited by hand, or damaged)"
    return None


def _loads(data: bytes) -> Any:
    """Parse what :func:`_dumps` wrote (the json module for what orjson refuses)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def _save_delta(vectors: Any, doc: dict[str, Any], f: Any) -> None:
    np.savez(f, vectors=vectors, doc=np.array(_dumps(doc).decode()))


def _write(
    root: Path, vectors: dict[str, Any], graphs: dict[str, bytearray], manifest: dict[str, Any]
) -> None:
    """Write a snapshot of :meth:`InProcessIndex._snapshot` to ``root``: its vectors and
    graphs (under names of the new base's own, which no manifest names yet), then the
    manifest, whose rename over ``index.json`` commits the save; then remove what the new
    manifest does not name (the files of older bases and their deltas, and the litter of
    saves that never finished). A save that fails before its commit removes its own files
    and leaves the previous base as it was."""
    for item in manifest["scopes"]:
        if item["hnsw"] is not None:  # what a load checks before it maps the graph
            item["hnsw_crc32"] = zlib.crc32(graphs[item["hnsw"]])
    committed = False
    try:
        crcs = {
            name: _atomic_write(root / name, functools.partial(_save_npy, rows))
            for name, rows in vectors.items()
        }
        for item in manifest["scopes"]:  # what a load checks before it uses the rows
            item["vectors_crc32"] = crcs[item["vectors"]]
        for name, data in graphs.items():
            _atomic_write(root / name, functools.partial(_write_bytes, data))
        _fsync_dir(root)  # the files are there for good before a manifest names them
        payload = _sealed(_dumps(manifest))
        _atomic_write(root / _MANIFEST, functools.partial(_write_bytes, payload))
        committed = True
        _fsync_dir(root)  # the new manifest is there for good before the old files go
    except BaseException:
        if not committed:
            _remove_base(root, manifest["generation"])
        raise
    _sweep(root, manifest)


def _remove_base(root: Path, generation: str) -> None:
    """Remove the files of the base ``generation`` of a save that failed before its
    manifest was written (whichever of them it wrote), and the manifest it was writing."""
    prefix = f"scope-{generation}-"
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            if name.startswith(prefix) or name == _MANIFEST + ".tmp":
                with contextlib.suppress(OSError):
                    os.unlink(root / name)


def _sweep(root: Path, manifest: dict[str, Any]) -> None:
    """Remove from ``root`` what its base ``manifest`` does not name: the vectors and
    graphs of older bases and of saves killed before their manifest, the deltas of other
    bases, and half-written files (``*.tmp``). The caller holds the directory's lock, so
    that no save is under way (or is the save that just wrote ``manifest``). A file that
    cannot be removed (memory-mapped on Windows) is left for a later sweep."""
    named = {
        name for item in manifest["scopes"] for name in (item["vectors"], item["hnsw"]) if name
    }
    deltas = f"delta-{manifest.get('generation', '')}-"
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if name.endswith(".tmp"):
            stale = name.startswith(("scope-", "delta-", _MANIFEST))
        elif name.startswith("scope-"):
            stale = name not in named
        elif name.startswith("delta-"):
            stale = not name.startswith(deltas)
        else:
            stale = False
        if stale:
            try:
                os.unlink(root / name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.debug("cannot remove %s of an older vector index save: %s", name, exc)


def _torn_legacy(
    root: Path, manifest: dict[str, Any], stat: tuple[int, int, int] | None
) -> list[str]:
    """Leave out of ``manifest`` (the base in ``root``, ``stat`` its manifest's) the scopes
    whose files a killed save of an earlier version replaced; returns their names.

    Earlier versions named the files of every base ``scope-<n>.*`` and renamed each into
    place before the manifest, so a save killed in between left the previous manifest
    beside rows of another save: row i no longer held the vector of the manifest's i-th
    id, and a search returned one entry's id (and answer) for another's prompt. Such a
    file was written after the manifest beside it, which a consistent save never does (its
    manifest is written last): that scope is dropped (its entries become misses), and the
    next full save writes the base again in the current layout. Files named after the
    base's generation are never written again once named: they are not checked."""
    if stat is None:
        return []
    written = stat[0]  # the manifest's modification time (ns)
    kept: list[dict[str, Any]] = []
    torn: list[str] = []
    for item in manifest["scopes"]:
        newer = False
        for name in (item["vectors"], item["hnsw"]):
            if name and _LEGACY_FILE.fullmatch(name):
                with contextlib.suppress(OSError):  # missing: the load reports it
                    newer = newer or os.stat(root / name).st_mtime_ns > written
        if newer:
            torn.append(item["scope"])
        else:
            kept.append(item)
    if torn:
        manifest["scopes"] = kept
        logger.warning(
            "the vector index in %s was saved by an older deja whose save was cut short: its "
            "rows of %d scope(s) belong to a later save, so they are left out (their entries "
            "are misses until stored again)",
            root,
            len(torn),
        )
    return torn


def _named(root: Path, name: Any) -> Path:
    """The file ``name`` of ``root`` a manifest names (a plain file name, nothing else)."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in {".", ".."}:
        raise ConfigError(f"the vector index in {root} names the file {name!r}")
    return root / name


class _Damaged(ConfigError):
    """A file of a saved index that cannot be used: cut short, not of its format, failing
    its checksum, holding rows no vector can be, or missing (``file`` names it)."""

    def __init__(self, file: object, reason: str) -> None:
        super().__init__(f"{file} {reason}" if file else reason)
        self.file = file
        self.reason = reason


class _NewerIndex(ConfigError):
    """The base in a directory is of a later format version than this deja's (a rolling
    upgrade): neither loaded nor overwritten."""


# what numpy raises for a file that is not a whole .npy / .npz (cut short, garbage)
_NOT_NUMPY = (ValueError, EOFError, OverflowError, TypeError, KeyError, zipfile.BadZipFile)


def _open_rows(root: Path, item: dict[str, Any], dim: int) -> Any:
    """The vectors file of a manifest's scope ``item``, memory-mapped read-only, checked to
    hold one row of ``dim`` float32s per id of the scope (:class:`ConfigError`: the
    manifest and its files disagree), to match its CRC-32 when the manifest has one, and
    to hold no row that no vector can be (:func:`_unusable_rows`); :class:`_Damaged`
    when it is not a whole vectors file or fails a check."""
    path = _named(root, item["vectors"])
    try:
        matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except _NOT_NUMPY as exc:  # (an empty file: EOFError; cut short: ValueError)
        raise _Damaged(path, f"is not a whole vectors file ({exc})") from exc
    if (
        not isinstance(matrix, np.memmap)
        or matrix.dtype != np.float32
        or not matrix.flags.c_contiguous
    ):
        raise _Damaged(path, "is not a file of float32 vectors")
    n = len(item["ids"])
    if matrix.ndim != 2 or matrix.shape[0] != n or matrix.shape[1] != dim:
        # (a whole file of another save's, or one another process cut: this scope only)
        raise _Damaged(path, f"holds {matrix.shape} vectors where its manifest has {n} entries")
    expected = item.get("vectors_crc32")
    crc, bad = _scan_rows(path, matrix, checksum=expected is not None)
    if crc != expected:
        raise _Damaged(path, "does not match its checksum")
    if bad:
        raise _Damaged(path, f"holds {bad} row(s) with NaN, infinite or too large values")
    return matrix


def _rows_kept(
    root: Path,
    item: dict[str, Any],
    dim: int,
    stat: tuple[int, int, int] | None,
    dropped: list[_Damaged],
) -> Any:
    """:func:`_open_rows` of the base in ``root`` (its manifest's ``stat``), or ``None``
    with the reason added to ``dropped`` when the file is damaged or missing;
    ``FileNotFoundError`` when it is gone because a newer base replaced this one."""
    try:
        return _open_rows(root, item, dim)
    except _Damaged as exc:
        dropped.append(exc)
    except FileNotFoundError as exc:
        if _stat(root) != stat:
            raise  # a newer base replaced the one read: read that one
        dropped.append(_Damaged(exc.filename or item["vectors"], "is missing"))
    return None


def _scan_rows(path: Path, matrix: Any, *, checksum: bool) -> tuple[int | None, int]:
    """One pass over the memory-mapped ``matrix`` of the vectors file ``path``: the
    file's CRC-32 (with ``checksum``; its header read, then its rows, a few at a time:
    ``None`` when the file holds more than its header says), and how many of the rows no
    vector can be (:func:`_unusable_rows`, on the rows just summed while they are in the
    CPU's cache: 55-60 ms for 100k rows of 384 floats, where the two passes took 80-150)."""
    crc = None
    if checksum:
        with path.open("rb") as f:
            header = f.read(matrix.offset)
            whole = os.fstat(f.fileno()).st_size == matrix.offset + matrix.nbytes
        crc = zlib.crc32(header) if whole else None
    bad = 0
    for start in range(0, len(matrix), _CHECK_ROWS):
        chunk = matrix[start : start + _CHECK_ROWS]
        if crc is not None:
            crc = zlib.crc32(chunk.data, crc)
        bad += _unusable_rows(chunk)
    return crc, bad


def _read_delta(raw: bytes, dim: int) -> tuple[dict[str, Any], Any]:
    """The document and rows of a delta file's bytes ``raw``, checked whole before any of
    it is merged (a delta is CRC-checked by its zip format); :class:`_Damaged` when they
    are not a delta of ``dim``-d vectors."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            doc = _loads(str(data["doc"]).encode())
            vectors = np.array(data["vectors"], dtype=np.float32)
        if not isinstance(doc, dict) or vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"not a delta of {dim}-d vectors")
        for item in doc["scopes"]:
            _check_delta_item(item, len(vectors))
        _tombstones(doc)
        for strike in doc.get("strikes") or ():
            if not isinstance(strike[0], str) or int(strike[2]) != strike[2]:
                raise TypeError(f"a strike {strike!r}")
            float(strike[1])
    except (*_NOT_NUMPY, AttributeError, IndexError, OSError, zlib.error) as exc:
        raise _Damaged(None, f"is not a delta ({exc!r})") from exc
    bad = _unusable_rows(vectors)
    if bad:
        raise _Damaged(None, f"holds {bad} row(s) with NaN, infinite or too large values")
    return doc, vectors


def _check_manifest(manifest: dict[str, Any]) -> None:
    """``KeyError`` / ``TypeError`` / ``ValueError`` unless a base's ``manifest`` has the
    fields a merge reads, of their types, each scope's lists one item per id (what the
    CRC-32 of its files does not cover). A load reads two more (:func:`_check_loadable`)."""
    scopes = manifest["scopes"]
    if not isinstance(manifest.get("tombstones") or {}, dict):
        raise TypeError("tombstones must be an object")
    _tombstones(manifest)
    if not isinstance(scopes, list):
        raise TypeError("scopes must be a list")
    for item in scopes:
        _check_entries(item)
        if not isinstance(item["vectors"], str):
            raise TypeError("a scope's vectors must name a file")
        if item["hnsw"] is not None:
            if not isinstance(item["hnsw"], str):
                raise TypeError("a scope's hnsw must name a file")
            if len(item["labels"]) != len(item["ids"]):
                raise ValueError("a scope's graph labels do not match its ids")


def _check_loadable(manifest: dict[str, Any]) -> None:
    """:func:`_check_manifest`'s errors unless ``manifest`` also has the fields only a load
    reads (a merge of it takes in its entries without them)."""
    if not isinstance(manifest["next_label"], int):
        raise TypeError("next_label must be an integer")
    order = manifest["order"]
    if not isinstance(order, list) or not all(isinstance(id, str) for id in order):
        raise TypeError("order must be a list of ids")


def _loadable(manifest: dict[str, Any]) -> bool:
    """Whether a load reads ``manifest`` (one :func:`_check_manifest` passed)."""
    try:
        _check_loadable(manifest)
    except (KeyError, TypeError):
        return False
    return True


def _check_entries(item: dict[str, Any]) -> list[_Meta]:
    """``TypeError`` / ``ValueError`` unless the scope ``item`` (of a base or a delta) is
    whole: its lists one item per id, of the types a merge compares; its entries'
    metadata."""
    if not isinstance(item, dict) or not isinstance(item["ids"], list):
        raise TypeError("a scope must be an object with a list of ids")
    ids, metas = item["ids"], _metas(item)
    if not isinstance(item["scope"], str) or not all(isinstance(id, str) for id in ids):
        raise TypeError("ids and scopes must be strings")
    if len(metas) != len(ids):
        raise ValueError("its entries do not match its ids")
    for meta in metas:
        if meta.expires is not None:
            float(meta.expires)  # (a number, or TypeError / ValueError)
        if meta.payload is not None and not isinstance(meta.payload, str):
            raise TypeError("a payload must be a string")
    return metas


def _check_delta_item(item: dict[str, Any], rows: int) -> None:
    """``TypeError`` / ``ValueError`` unless the scope ``item`` of a delta with ``rows``
    rows is whole: its lists one item per id, of the types a merge compares."""
    _check_entries(item)
    first = int(item["first"])
    if first < 0 or first + len(item["ids"]) > rows:
        raise ValueError("its entries do not match its rows")


def _left_out(root: Path, dropped: list[_Damaged]) -> None:
    """Warn of the scopes of the base in ``root`` left out for their damaged files."""
    if dropped:
        logger.warning(
            "the vectors of %d scope(s) of the vector index in %s are unreadable, so those "
            "scopes are left out (their entries are misses until stored again; the next "
            "sync writes the index again without them): %s",
            len(dropped),
            root,
            "; ".join(str(exc) for exc in dropped),
        )


def _time_stamp(now: float) -> str:
    """``now`` (a wall-clock time) as it names what is moved aside: 20250101T120000Z."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


def _new_aside(root: Path, now: float) -> Path:
    """A new directory ``root/broken-<time>`` (``-<n>`` added when taken) to move a base
    that cannot be read into."""
    stamp = _time_stamp(now)
    for n in range(1, 1000):
        aside = root / f"{_BROKEN}{stamp}{'' if n == 1 else f'-{n}'}"
        try:
            aside.mkdir()
        except FileExistsError:
            continue
        return aside
    raise FileExistsError(f"too many bases moved aside in {root}")


def _prune_aside(root: Path) -> None:
    """Remove all but the newest _KEEP_BROKEN bases moved aside in ``root`` (processes
    that cannot read each other's base, of two dimensions say, move them aside at every
    sync: they must not fill the disk)."""
    asides = []
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.name.startswith(_BROKEN) and entry.is_dir(follow_symlinks=False):
                    asides.append((entry.stat().st_mtime_ns, entry.name))
    except OSError:  # (tried again at the next move)
        return
    for _, name in sorted(asides)[:-_KEEP_BROKEN]:
        logger.warning("removing %s, the oldest vector index moved aside there", root / name)
        shutil.rmtree(root / name, ignore_errors=True)


def _crc32(path: Path) -> int:
    """The CRC-32 of the file ``path``, read a MiB at a time (zlib lets go of the GIL)."""
    crc = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def _fsync_dir(root: Path) -> None:
    """Make the renames done in ``root`` durable (where a directory can be opened: POSIX;
    a file system that cannot sync a directory is let be)."""
    try:
        fd = os.open(root, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in {errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EOPNOTSUPP}:
            raise
    finally:
        os.close(fd)


def _stat(root: Path) -> tuple[int, int, int] | None:
    """What tells one save of ``root/index.json`` from another without reading it."""
    try:
        st = os.stat(root / _MANIFEST)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
