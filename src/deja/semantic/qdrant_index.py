"""A :class:`~deja.semantic.index.VectorIndex` on Qdrant (qdrant-client, synchronous).

Production: ``QdrantIndex(url="http://qdrant:6333", api_key=...)`` talks to a Qdrant
server. Tests and single-process use: *local mode*, ``QdrantIndex(path="/some/dir")`` or
``QdrantIndex(path=":memory:")``, which runs qdrant-client's embedded, pure-Python engine
(no server; searches are brute force, so it is only meant for small indexes and tests).

Layout:

* one collection per vector size, named ``f"{collection}-{dim}"`` (so two embedders of
  different sizes never share one), cosine distance, created lazily on first use: the
  constructor does no I/O; an existing one of another size or distance, or of named
  vectors, is refused (ConfigError), and one deleted while the index runs is created
  again by the next call (which is retried once);
* a point whose payload is not one deja wrote (written by another tool, or damaged) is
  skipped by searches and saves, and the first one logged;
* one point per entry; Qdrant wants integer or UUID point ids, so the point id is
  ``uuid5(<deja namespace>, id)`` and the entry id is kept in the payload;
* the payload is ``{"id", "scope", "root", "path", "payload", "added", "expires"}``:
  ``root`` is the scope's first ``/`` segment and ``path`` the list of the scope and its
  ancestors (``"t1/a/b"`` → ``["t1", "t1/a", "t1/a/b"]``), which makes
  :meth:`QdrantIndex.remove_scope` hierarchical at any depth with one keyword match;
  ``added`` is the wall-clock time of the entry's last add (what the ``max_entries`` bound
  evicts by); ``expires`` (seconds since the epoch) is left out for entries that never
  expire; ``strikes`` (wrong-answer reports, see :meth:`QdrantIndex.strike`) and
  ``strike_rev`` / ``strike_log`` (its compare-and-set token and the last tokens applied)
  are added by the first report.

``search`` passes the scope filter (``scope`` equal to the one asked for, and ``expires``
after now or absent) *inside* the query, so a small scope is never crowded out by a big
one. Expired entries are never returned; they stay stored until :meth:`purge_expired`
deletes them (call it periodically; it is one delete-by-filter).

Local mode keeps every point in this process and never frees the row of a deleted one
(qdrant-client marks it deleted and keeps it, and searches still scan it), so a local-mode
index copies its live points into a new collection once the points it deleted are 256 or
more and outnumber them: memory and search time follow the live entries, not every entry
ever added. ``max_entries`` (local mode only) bounds the entries: past it, the expired
ones go, then the oldest.

``save`` / ``load`` export the entries of this index's collection to a directory and load
them back, replacing what the collection held. They work in every mode; with a server or a
local ``path`` the data is already durable, so they are only needed to move an index around
(and may be skipped); an in-memory index beside a disk store is saved so (see
:class:`deja.Cache`'s ``semantic_path``). The vectors and the entries are one file,
``qdrant-index.npz``, committed by one rename, so no save (cut short, or run beside
another's) can leave entries beside another save's vectors: a load finds one whole save or
the one before it. Saves to one directory hold its file lock (``index.lock``, as the
in-process index's) and the last one wins: each process's index holds its own entries and
a save writes them all, so N workers saving there keep the entries of the one that saved
last (misses for the others' prompts, never another prompt's answer). Merging instead, as
the in-process index does, would need the time of every removal (else a save would bring
back an entry another process deleted, or took out of the tier after wrong-answer
reports); workers that share entries want a Qdrant server.

Every qdrant-client or transport failure is raised as :class:`deja.errors.StoreError`;
a missing qdrant-client as :class:`deja.errors.MissingDependencyError` (extra ``qdrant``).
All methods are thread-safe: calls to a local-mode client are serialized by a lock (the
embedded engine is not thread-safe); a server client is used concurrently.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import random
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar

from deja.errors import ConfigError, MissingDependencyError, StoreError
from deja.request import redact_url, redact_urls_in
from deja.semantic._deps import np
from deja.semantic.index import (
    Neighbor,
    _atomic_write,
    _fsync_dir,
    _loads,
    _locked,
    _save_delta,
    checked_vector,
)

__all__ = ["QdrantIndex"]

logger = logging.getLogger(__name__)

_FORMAT = "deja-qdrant-index"
# 1: index.json + vectors.npy, renamed into place one after the other (see load)
_FORMAT_VERSION = 2
# the saved index: the rows and a JSON document of the entries in one .npz (the in-process
# index's delta layout), so one rename commits both
_FILE = "qdrant-index.npz"
# a save writes under a name of its own first (a killed save leaves it for the next one to
# remove): f"{_STAGED}{random hex}.npz"
_STAGED = "qdrant-index-"
# version 1's files; its index.json is the in-process index's manifest name too, so it is
# removed only when it starts as version 1 wrote it
_LEGACY = ("vectors.npy", "vectors.npy.tmp", "index.json.tmp")
_LEGACY_MANIFEST = "index.json"
_LEGACY_HEAD = b'{"format":"deja-qdrant-index"'
# a local-mode collection is rebuilt once the points deleted from it outnumber the live ones
# and this many (see the module docstring)
_COMPACT_MIN = 256
# the max_entries bound evicts down to 1/16 below it, so that the scan ordering every point
# by age (all of them, in local mode) runs once per bound/16 adds rather than at each one
_EVICT_MARGIN = 16
# uuid5 namespace of deja's point ids (a fixed, arbitrary UUID)
_NAMESPACE = uuid.UUID("5b0c3c1e-2f4a-4d5e-9a61-6e0d1f2a7c43")
_BATCH = 256
# compare-and-set rounds of one strike before giving up (each loses only to another report)
_STRIKE_ATTEMPTS = 16
# how many of the last strike updates' tokens an entry keeps (see QdrantIndex.strike)
_STRIKE_LOG = 32


class _CollectionGone(StoreError):
    """The collection was not found (deleted while the index ran): the call is retried once,
    which creates it again (see :func:`_retrying`)."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _retrying(
    method: Callable[Concatenate[QdrantIndex, _P], _R],
) -> Callable[Concatenate[QdrantIndex, _P], _R]:
    """Run ``method`` again, once, when it finds the collection gone: the failed call reset
    the index (see ``QdrantIndex._calls``), so the retry creates the collection afresh and
    checks it as on first use (an operator's reset, a server that lost it). Without this,
    every call failed until a restart."""

    @functools.wraps(method)
    def call(self: QdrantIndex, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except _CollectionGone:
            logger.warning("Qdrant collection %r was not found: creating it again", self.collection)
            return method(self, *args, **kwargs)

    return call


def _qdrant() -> tuple[Any, Any]:
    try:
        from qdrant_client import QdrantClient, models
    except ImportError as exc:
        raise MissingDependencyError("qdrant-client", "qdrant") from exc
    return QdrantClient, models


def point_id(id: str) -> str:
    """The Qdrant point id of the entry ``id`` (a UUID5 string)."""
    return str(uuid.uuid5(_NAMESPACE, id))


def _path(scope: str) -> list[str]:
    parts = scope.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


class QdrantIndex:
    """A :class:`~deja.semantic.index.VectorIndex` kept in a Qdrant collection.

    Keyword-only options:

    * ``url`` / ``api_key``: a Qdrant server (production);
    * ``path``: local mode instead, a directory or ``":memory:"`` (tests, small setups);
      with neither ``url``, ``path`` nor ``client``, local mode in memory;
    * ``collection``: the collection name prefix; the collection is ``f"{collection}-{dim}"``;
    * ``dim``: the vector size (384 for the embedded model);
    * ``timeout``: seconds per server call (qdrant-client rounds it up to whole seconds);
    * ``clock``: wall clock for expiry (inject a fake in tests);
    * ``client``: an existing ``QdrantClient`` to use instead of building one;
    * ``purge_every``: seconds between the deletions of expired points that writes run;
    * ``max_entries``: local mode only, the most entries the collection keeps (``None``:
      unbounded). An add that goes past it evicts the expired entries, then the oldest
      (by their last add) down to 1/16 below it. The count is the collection's: give each
      bounded index a collection of its own.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: str | None = None,
        collection: str = "deja-semantic",
        dim: int = 384,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
        client: Any = None,
        purge_every: float = 300.0,
        max_entries: int | None = None,
    ) -> None:
        if dim < 1:
            raise ValueError("dim must be >= 1")
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        if url is not None and path is not None:
            raise ConfigError("give a Qdrant url or a local-mode path, not both")
        if not collection:
            raise ConfigError("the Qdrant collection name must not be empty")
        self._dim = dim
        self.url = url
        self.path = path
        self.timeout = timeout
        self.collection_prefix = collection
        self.collection = f"{collection}-{dim}"
        self._clock = clock
        # expired points are skipped by every search; deleting them is housekeeping, done on
        # writes at most every `purge_every` seconds (Qdrant has no TTL of its own)
        self.purge_every = purge_every
        self._next_purge = clock() + purge_every
        self._api_key = api_key
        self._client: Any = client
        self._owns_client = client is None
        if client is not None:
            inner = getattr(client, "_client", None)
            self._local = type(inner).__name__ == "QdrantLocal"
            self._in_memory = self._local and not getattr(inner, "persistent", True)
        else:
            self._local = url is None
            self._in_memory = self._local and path in (None, ":memory:")
        if max_entries is not None and not self._local:
            # a server collection is shared: a bound would need its count and an ordered
            # scan on the server, evicting other processes' entries (not done; see TTLs)
            raise ConfigError(
                "max_entries bounds a Qdrant local-mode index only; a server collection's"
                " entries leave it with their TTL"
            )
        self.max_entries = max_entries
        self.evictions = 0
        # the add time stamped last: never earlier than the one before (a clock stepped
        # back must not make a later add look older)
        self._last_added = -math.inf
        # local mode: points deleted since the collection was last (re)built, whose rows
        # qdrant-client keeps (see _compact)
        self._dead = 0
        self._models: Any = None
        self._ready = False
        self._init_lock = threading.Lock()
        # serializes calls to a local-mode client; a no-op context for a server
        self._lock: threading.RLock | None = threading.RLock() if self._local else None
        # remove() and strike() read, then write: keep them atomic within this process
        self._read_write_lock = threading.Lock()
        # a point that is no deja entry is skipped; the first one is logged (see _skip)
        self._skipped = 0

    @property
    def process_local(self) -> bool:
        """True in qdrant-client's in-memory mode: the entries live in this process only
        (lost at exit unless saved). A server or an on-disk local mode keeps them itself."""
        return self._in_memory

    @property
    def dim(self) -> int:
        """Vector size this index holds."""
        return self._dim

    # -- plumbing ---------------------------------------------------------------------

    def _connect(self) -> tuple[Any, Any]:
        """The client and the models module; creates the collection on first use."""
        if self._ready:
            return self._client, self._models
        QdrantClient, models = _qdrant()
        with self._init_lock:
            if self._is_ready():  # a method: mypy must not narrow the flag checked above
                return self._client, self._models
            self._models = models
            with self._calls():
                if self._client is None:
                    if self.url is not None:
                        self._client = QdrantClient(
                            url=self.url,
                            api_key=self._api_key,
                            timeout=math.ceil(self.timeout),
                            check_compatibility=False,
                        )
                    elif self.path is None or self.path == ":memory:":
                        self._client = QdrantClient(location=":memory:")
                    else:
                        self._client = QdrantClient(path=self.path)
                client = self._client
                if not client.collection_exists(self.collection):
                    self._create(client, models)
                else:
                    self._check_collection(client, models)
            self._ready = True
        return self._client, self._models

    def _create(self, client: Any, models: Any) -> None:
        try:
            client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=self._dim, distance=models.Distance.COSINE),
            )
        except Exception:
            # created meanwhile by another process: fine; otherwise re-raise
            if not client.collection_exists(self.collection):
                raise
        if not self._local:
            for name, schema in (
                ("scope", models.PayloadSchemaType.KEYWORD),
                ("path", models.PayloadSchemaType.KEYWORD),
                ("id", models.PayloadSchemaType.KEYWORD),
                ("expires", models.PayloadSchemaType.FLOAT),
            ):
                client.create_payload_index(self.collection, name, schema)

    def _is_ready(self) -> bool:
        return self._ready

    def _check_collection(self, client: Any, models: Any) -> None:
        """Refuse an existing collection deja would misread: one of another vector size,
        or whose scores are not cosine similarities (another distance, or named vectors),
        which search would take as similarities (unrelated prompts served each other's
        answers)."""
        info = client.get_collection(self.collection)
        vectors = info.config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            names = sorted(vectors) if isinstance(vectors, dict) else vectors
            raise ConfigError(
                f"Qdrant collection {self.collection!r} holds named vectors ({names!r}), not"
                f" one unnamed {self._dim}-d cosine vector: give deja a collection of its own"
            )
        if vectors.size != self._dim:
            raise ConfigError(
                f"Qdrant collection {self.collection!r} holds {vectors.size}-d vectors,"
                f" not {self._dim}-d"
            )
        if vectors.distance != models.Distance.COSINE:
            distance = getattr(vectors.distance, "value", vectors.distance)
            raise ConfigError(
                f"Qdrant collection {self.collection!r} measures {distance} distance, not"
                " Cosine: its scores are no similarities; give deja a collection of its own"
            )

    @contextlib.contextmanager
    def _calls(self) -> Iterator[None]:
        """Serialize calls on a local-mode client; translate failures to StoreError."""
        try:
            if self._lock is None:
                yield
            else:
                with self._lock:
                    yield
        except (StoreError, ConfigError, MissingDependencyError):
            raise
        except Exception as exc:
            # (the URL may hold credentials, and the text goes to logs and /health/ready)
            url = self.url
            target = redact_url(url) if url is not None else self._target()
            said = str(exc) if url is None else str(exc).replace(url, target)
            gone = self._gone(exc)
            if gone:
                # deleted behind our back: the next call creates it again (see _retrying)
                self._ready = False
                self._dead = 0
            raise (_CollectionGone if gone else StoreError)(
                redact_urls_in(
                    f"Qdrant {target}, collection {self.collection!r}: {type(exc).__name__}: {said}"
                )
            ) from exc

    def _target(self) -> str:
        """What the errors name for a client not built from ``url``: local mode and its
        location, or the server an injected client talks to."""
        inner = getattr(self._client, "_client", None)
        if self._local:
            location = getattr(inner, "location", None) if self.path is None else self.path
            return f"local mode ({location if isinstance(location, str) else ':memory:'})"
        uri = getattr(inner, "rest_uri", None)
        return f"server {redact_url(uri)}" if isinstance(uri, str) else "server"

    def _gone(self, exc: Exception) -> bool:
        """Whether ``exc`` says this index's collection does not exist (deleted while this
        index ran): local mode's ValueError, a server's 404 or gRPC NOT_FOUND."""
        if getattr(exc, "status_code", None) == 404:
            return True
        if type(exc).__module__.startswith("grpc") and callable(getattr(exc, "code", None)):
            with contextlib.suppress(Exception):
                if getattr(exc.code(), "name", None) == "NOT_FOUND":  # type: ignore[attr-defined]
                    return True
        said = str(exc)
        return self.collection in said and (
            "not found" in said.lower() or "doesn't exist" in said.lower()
        )

    def _skip(self, point: Any) -> None:
        """Note a point skipped because it holds no deja entry (see :func:`_parse`); the
        first is logged, by its point id only (its payload may hold a prompt or answer)."""
        self._skipped += 1
        if self._skipped == 1:
            logger.warning(
                "Qdrant collection %r holds a point that is no deja entry (point id %s):"
                " skipped, as any other such point (not logged again)",
                self.collection,
                getattr(point, "id", None),
            )

    def _op(self) -> tuple[Any, Any]:
        with self._calls():
            return self._connect()

    def _vector(self, vector: Any) -> list[float]:
        values: list[float] = checked_vector(vector, self._dim).tolist()
        return values

    def _point(
        self,
        models: Any,
        id: str,
        vector: list[float],
        *,
        scope: str,
        expires: float | None,
        payload: str | None,
        added: float,
        strikes: int = 0,
    ) -> Any:
        body: dict[str, Any] = {
            "id": id,
            "scope": scope,
            "root": scope.split("/", 1)[0],
            "path": _path(scope),
            "payload": payload,
            "added": added,
        }
        if expires is not None:
            body["expires"] = float(expires)
        if strikes:
            body["strikes"] = strikes
        return models.PointStruct(id=point_id(id), vector=vector, payload=body)

    def _live_filter(self, models: Any, scope: str, now: float) -> Any:
        return models.Filter(
            must=[
                models.FieldCondition(key="scope", match=models.MatchValue(value=scope)),
                models.Filter(
                    should=[
                        models.FieldCondition(key="expires", range=models.Range(gt=now)),
                        models.IsEmptyCondition(is_empty=models.PayloadField(key="expires")),
                    ]
                ),
            ]
        )

    def _count(self, client: Any, flt: Any) -> int:
        return int(client.count(self.collection, count_filter=flt, exact=True).count)

    def _delete(self, client: Any, models: Any, flt: Any) -> None:
        client.delete(self.collection, points_selector=models.FilterSelector(filter=flt), wait=True)

    def _stamp(self) -> float:
        """The wall-clock time of an add, never earlier than the previous one's."""
        now = self._clock()
        if now <= self._last_added:
            now = self._last_added + 1e-6
        self._last_added = now
        return now

    def _deleted(self, count: int) -> None:
        """Note ``count`` points deleted; a local-mode collection that now holds more
        deleted rows than live ones is rebuilt (:meth:`_compact`)."""
        if not self._local or count <= 0:
            return
        self._dead += count
        if self._dead >= _COMPACT_MIN:
            self._compact()

    def _compact(self) -> None:
        """Copy a local-mode collection's live points into a new collection of the same
        name, when the deleted ones outnumber them: qdrant-client keeps a deleted point's
        row (its id, payload and vector) for good and scans it at every search, so without
        this memory and search time grow with every entry ever added. The live points are
        copied in memory and the copy holds the local-mode lock throughout, so no call of
        this index sees it half done; a failure leaves the collection to be created again by
        the next call (its entries lost: misses)."""
        client, models = self._op()
        with self._calls():
            live = self._count(client, None)
            if self._dead <= live:
                return
            copies = [
                models.PointStruct(id=p.id, vector=list(p.vector), payload=p.payload)
                for p in self._scroll_all(client, live, with_vectors=True)
            ]
            try:
                client.delete_collection(self.collection)
                self._create(client, models)
                for start in range(0, len(copies), _BATCH):
                    client.upsert(self.collection, points=copies[start : start + _BATCH], wait=True)
            except BaseException:
                self._ready = False  # the next call creates the collection if it is gone
                raise
            self._dead = 0

    def _scroll_all(self, client: Any, count: int, *, with_vectors: bool) -> list[Any]:
        """Every point of a local-mode collection holding ``count``, in one page (each page
        of a local-mode scroll sorts every point id)."""
        points, _ = client.scroll(
            self.collection, limit=count + 1, with_payload=True, with_vectors=with_vectors
        )
        return list(points)

    def _bound(self) -> None:
        """Evict past ``max_entries``: the expired entries, then the oldest, down to 1/16
        below the bound (see _EVICT_MARGIN)."""
        limit = self.max_entries
        if limit is None:
            return
        client, models = self._op()
        with self._calls():
            count = self._count(client, None)
            if count <= limit:
                return
            now = self._clock()
            points = self._scroll_all(client, count, with_vectors=False)

            def age(point: Any) -> tuple[bool, float]:
                # a point that is no deja entry (see _parse) counts as expired: it goes first
                entry = _parse(point.payload)
                if entry is None:
                    return (False, 0.0)
                return (entry.expires is None or entry.expires > now, entry.added or 0.0)

            points.sort(key=age)
            expired = sum(1 for p in points if not age(p)[0])
            doomed = [
                p.id for p in points[: max(count - (limit - limit // _EVICT_MARGIN), expired)]
            ]
            client.delete(
                self.collection, points_selector=models.PointIdsList(points=doomed), wait=True
            )
            self.evictions += len(doomed)
            self._deleted(len(doomed))

    # -- writes -----------------------------------------------------------------------

    @_retrying
    def add(
        self,
        id: str,
        vector: Any,
        *,
        scope: str,
        expires: float | None = None,
        payload: str | None = None,
    ) -> None:
        """Insert or replace one entry (an upsert of its point)."""
        vec = self._vector(vector)
        client, models = self._op()
        with self._calls():
            point = self._point(
                models, id, vec, scope=scope, expires=expires, payload=payload, added=self._stamp()
            )
            client.upsert(self.collection, points=[point], wait=True)
            self._bound()
        self._maybe_purge()

    def _maybe_purge(self) -> None:
        now = self._clock()
        if now >= self._next_purge:
            self._next_purge = now + self.purge_every
            self.purge_expired()

    @_retrying
    def add_many(
        self,
        ids: list[str],
        vectors: Any,
        *,
        scope: str,
        expires: float | None = None,
        payloads: list[str | None] | None = None,
    ) -> None:
        """Insert or replace many entries of one scope (upserted in batches)."""
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape != (len(ids), self._dim):
            raise ValueError(f"vectors must have shape ({len(ids)}, {self._dim})")
        texts = payloads if payloads is not None else [None] * len(ids)
        if len(texts) != len(ids):
            raise ValueError("payloads must have one item per id")
        client, models = self._op()
        rows = [self._vector(row) for row in matrix]
        with self._calls():
            now = self._stamp()
            points = [
                self._point(models, id, row, scope=scope, expires=expires, payload=text, added=now)
                for id, row, text in zip(ids, rows, texts, strict=True)
            ]
            for start in range(0, len(points), _BATCH):
                client.upsert(self.collection, points=points[start : start + _BATCH], wait=True)
            self._bound()

    @_retrying
    def remove(self, id: str) -> bool:
        """Remove one entry; returns whether it existed."""
        client, models = self._op()
        pid = point_id(id)
        with self._read_write_lock, self._calls():
            found = client.retrieve(self.collection, ids=[pid], with_payload=False)
            if not found:
                return False
            client.delete(
                self.collection, points_selector=models.PointIdsList(points=[pid]), wait=True
            )
            self._deleted(1)
            return True

    @_retrying
    def strike(self, id: str, delta: int) -> int | None:
        """Add ``delta`` to the entry's strikes (never below 0); the new count, or ``None``
        when there is no entry ``id``.

        Qdrant has no atomic increment, so this is a compare-and-set: the count is written
        with a fresh revision token by a payload update filtered on the entry *and* the
        token read; each update also appends its token to a short log of the last ones.
        Reading the log back says whether this update was applied (another process may
        have updated again since); when it was not, the report is applied again on the new
        count. Concurrent reports from any number of processes are all counted once.
        """
        client, models = self._op()
        pid = point_id(id)
        wanted = ["id", "scope", "strikes", "expires", "added", "strike_rev", "strike_log"]
        with self._read_write_lock, self._calls():
            for attempt in range(_STRIKE_ATTEMPTS):
                found = client.retrieve(self.collection, ids=[pid], with_payload=wanted)
                if not found:
                    return None
                payload = found[0].payload or {}
                entry = _parse(payload)
                if entry is None or entry.id != id:  # no deja entry: searches skip it too
                    self._skip(found[0])
                    return None
                count = max(0, entry.strikes + int(delta))
                seen = payload.get("strike_rev")
                revision = uuid.uuid4().hex
                done = payload.get("strike_log")
                log = [*(done if isinstance(done, list) else [])[-(_STRIKE_LOG - 1) :], revision]
                unchanged = (
                    models.IsEmptyCondition(is_empty=models.PayloadField(key="strike_rev"))
                    if seen is None
                    else models.FieldCondition(
                        key="strike_rev", match=models.MatchValue(value=seen)
                    )
                )
                client.set_payload(
                    self.collection,
                    payload={"strikes": count, "strike_rev": revision, "strike_log": log},
                    points=models.Filter(must=[models.HasIdCondition(has_id=[pid]), unchanged]),
                    wait=True,
                )
                after = client.retrieve(self.collection, ids=[pid], with_payload=["strike_log"])
                if not after:
                    return None
                applied = (after[0].payload or {}).get("strike_log")
                if isinstance(applied, list) and revision in applied:
                    return count
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
            raise StoreError(
                f"Qdrant collection {self.collection!r}: entry {id!r} changed under"
                f" {_STRIKE_ATTEMPTS} strike attempts in a row"
            )

    @_retrying
    def remove_scope(self, scope: str) -> int:
        """Remove every entry of ``scope`` and of its sub-scopes (``scope/...``).

        A top-level scope (no ``/``) is matched on ``root``, a nested one on ``path`` (the
        list of the entry scope's ancestors), so ``"t1"`` never takes ``"t10"`` along.
        """
        client, models = self._op()
        key = "root" if "/" not in scope else "path"
        flt = models.Filter(
            must=[models.FieldCondition(key=key, match=models.MatchValue(value=scope))]
        )
        with self._calls():
            count = self._count(client, flt)
            if count:
                self._delete(client, models, flt)
                self._deleted(count)
            return count

    @_retrying
    def clear(self) -> int:
        """Remove every entry of this index's collection; returns how many there were."""
        client, models = self._op()
        with self._calls():
            count = self._count(client, None)
            if count:
                self._delete(client, models, models.Filter())
                self._deleted(count)
            return count

    @_retrying
    def purge_expired(self) -> int:
        """Delete the entries whose expiry time has passed; returns how many.

        Searches never return expired entries; this only frees their storage. Call it
        periodically (it is one count and one delete-by-filter on the server).
        """
        client, models = self._op()
        flt = models.Filter(
            must=[models.FieldCondition(key="expires", range=models.Range(lte=self._clock()))]
        )
        with self._calls():
            count = self._count(client, flt)
            if count:
                self._delete(client, models, flt)
                self._deleted(count)
            return count

    # -- reads ------------------------------------------------------------------------

    @_retrying
    def search(
        self, vector: Any, *, scope: str, k: int = 4, with_vectors: bool = False
    ) -> list[Neighbor]:
        """The ``k`` live entries of ``scope`` most similar to ``vector``, best first
        (with their stored vectors when ``with_vectors``, in the same query; Qdrant keeps
        cosine vectors normalised, which the embedders' already are)."""
        if k < 1:
            raise ValueError("k must be >= 1")
        query = self._vector(vector)
        client, models = self._op()
        flt = self._live_filter(models, scope, self._clock())
        with self._calls():
            result = client.query_points(
                self.collection,
                query=query,
                query_filter=flt,
                limit=k,
                with_payload=True,
                with_vectors=with_vectors,
            )
        out: list[Neighbor] = []
        for point in result.points:
            entry = _parse(point.payload)
            # a list scope matches each of its items in the filter: only the exact one here
            if entry is None or entry.scope != scope:
                self._skip(point)
                continue
            stored = None
            if with_vectors:
                stored = np.asarray(point.vector, dtype=np.float32).reshape(-1)
            out.append(Neighbor(entry.id, float(point.score), entry.payload, stored, entry.strikes))
        return out

    @_retrying
    def __len__(self) -> int:
        """Number of entries held (expired ones not yet purged included)."""
        client, _ = self._op()
        with self._calls():
            return self._count(client, None)

    @_retrying
    def __contains__(self, id: object) -> bool:
        if not isinstance(id, str):
            return False
        client, _ = self._op()
        with self._calls():
            return bool(client.retrieve(self.collection, ids=[point_id(id)], with_payload=False))

    # -- persistence ------------------------------------------------------------------

    @_retrying
    def save(self, path: str | os.PathLike[str]) -> None:
        """Export every entry of the collection to the directory ``path`` (created if
        missing), replacing the index saved there.

        Optional with a server or a local-mode ``path`` (the data is durable there); use
        it to copy an index elsewhere. Vectors are saved as Qdrant holds them (normalized).
        The entries and their vectors are one file, written under a name of its own and
        made durable before one rename commits it, with ``path/index.lock`` held: a save
        cut short at any point leaves the previous one whole, and saves of several
        processes never mix (the last one wins; see the module docstring).
        """
        client, _ = self._op()
        entries: list[dict[str, Any]] = []
        rows: list[list[float]] = []
        offset: Any = None
        while True:
            # a page at a time under the lock, so searches run between pages (a 20k-entry
            # save held them for its whole 2.6 s); a point added or removed meanwhile is
            # in this save or the next, and a removed one loaded back is found gone
            with self._calls():
                points, offset = client.scroll(
                    self.collection,
                    limit=_BATCH,
                    offset=offset,
                    with_payload=True,
                    with_vectors=True,
                )
            for point in points:
                entry = _parse(point.payload)
                if entry is None:
                    self._skip(point)
                    continue
                entries.append(
                    {
                        "id": entry.id,
                        "scope": entry.scope,
                        "expires": entry.expires,
                        "payload": entry.payload,
                        "strikes": entry.strikes,
                        "added": entry.added,
                    }
                )
                rows.append(list(point.vector))
            if offset is None:
                break
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), self._dim)
        doc = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "dim": self._dim,
            "metric": "cos",
            "entries": entries,
        }
        with _locked(root, exclusive=True) as held:
            if held:  # no other save is under way: what one cut short left is litter
                _sweep(root)
            _commit(root, matrix, doc)

    @_retrying
    def load(self, path: str | os.PathLike[str]) -> None:
        """Replace the collection's entries with those :meth:`save` wrote to ``path``.

        Raises :class:`~deja.errors.ConfigError`, and leaves the collection as it was, when
        ``path`` holds no save, or one that cannot be read whole, or whose vectors are not
        one per entry (:class:`deja.Cache` logs it and starts the tier empty). A save of
        deja before this format is refused too: it kept the entries (``index.json``) and
        the vectors (``vectors.npy``) in two files renamed into place one after the other,
        so a save cut short between the two, or run beside another process's, could leave
        entries beside another save's vectors (each entry's id and answer found by another
        prompt's vector), and nothing in the files tells that apart. The next save replaces
        it. Entries beyond ``max_entries`` are evicted as by an add.
        """
        root = Path(path)
        try:
            with np.load(root / _FILE, allow_pickle=False) as data:
                doc = _loads(str(data["doc"]).encode())
                matrix = np.asarray(data["vectors"], dtype=np.float32)
        except FileNotFoundError as exc:
            if _legacy(root):
                raise ConfigError(
                    f"the Qdrant vector index in {root} was saved by an older deja in two files"
                    " that a save cut short, or run beside another, could leave paired with"
                    " other entries' vectors: not loaded (its entries are misses until stored"
                    " again; the next save replaces it)"
                ) from exc
            raise ConfigError(f"no Qdrant vector index saved in {root}") from exc
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ConfigError(
                f"the Qdrant vector index {root / _FILE} is unreadable: {exc!r}"
            ) from exc
        if (
            not isinstance(doc, dict)
            or doc.get("format") != _FORMAT
            or doc.get("version") != _FORMAT_VERSION
        ):
            raise ConfigError(f"{root} holds no deja Qdrant index of a known version")
        if doc.get("dim") != self._dim:
            raise ConfigError(
                f"the index in {root} holds {doc.get('dim')}-d vectors, not {self._dim}-d"
            )
        entries = doc.get("entries")
        if not isinstance(entries, list) or matrix.shape != (len(entries), self._dim):
            count = len(entries) if isinstance(entries, list) else None
            raise ConfigError(
                f"{root / _FILE} holds {matrix.shape} vectors where it lists {count} entries"
            )
        client, models = self._op()
        try:
            added = [float(e.get("added") or 0.0) for e in entries]
            points = [
                self._point(
                    models,
                    _text(e["id"]),
                    self._vector(row),
                    scope=_text(e["scope"]),
                    expires=e["expires"],
                    payload=e["payload"],
                    added=when,
                    strikes=int(e.get("strikes") or 0),
                )
                for e, row, when in zip(entries, matrix, added, strict=True)
            ]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{root / _FILE} holds an entry that is not one: {exc!r}") from exc
        with self._calls():
            held = self._count(client, None)
            self._delete(client, models, models.Filter())
            self._deleted(held)
            for start in range(0, len(points), _BATCH):
                client.upsert(self.collection, points=points[start : start + _BATCH], wait=True)
            self._last_added = max([self._last_added, *added])
            self._bound()

    def close(self) -> None:
        """Close the client (only one this index built itself)."""
        client = self._client
        if client is not None and self._owns_client:
            with contextlib.suppress(Exception):
                client.close()


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` when it is no number (absent, or damaged)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class _Entry(NamedTuple):
    """The deja fields of one point's payload, checked (see :func:`_parse`)."""

    id: str
    scope: str
    payload: str | None
    strikes: int
    expires: float | None
    added: float | None


def _parse(body: Any) -> _Entry | None:
    """The entry a point's payload holds, or ``None`` when it is not one deja wrote: a
    string ``id`` and ``scope``, a string (or absent) ``payload``, a count (or absent)
    ``strikes`` and numbers (or absent) ``expires`` / ``added``. A point written into the
    collection by another tool, or damaged, must not be served as an answer (an id of
    ``'None'``, a dict for the response text, a list scope matching several scopes) nor
    fail every search it turns up in."""
    if not isinstance(body, dict):
        return None
    id, scope, payload = body.get("id"), body.get("scope"), body.get("payload")
    strikes = body.get("strikes", 0)
    if strikes is None:
        strikes = 0
    expires, added = body.get("expires"), body.get("added")
    if (
        not isinstance(id, str)
        or not isinstance(scope, str)
        or not (payload is None or isinstance(payload, str))
        or isinstance(strikes, bool)
        or not isinstance(strikes, int)
        or strikes < 0
        or (expires is not None and _number(expires) is None)
        or (added is not None and _number(added) is None)
    ):
        return None
    return _Entry(id, scope, payload, strikes, _number(expires), _number(added))


def _commit(root: Path, matrix: Any, doc: dict[str, Any]) -> None:
    """Write ``matrix`` and ``doc`` as ``root/qdrant-index.npz``: first (fsynced) under a
    name no other save uses, then renamed over the saved index, which commits the save. A
    save that fails before that removes what it wrote; one killed leaves it to the next
    save's :func:`_sweep`."""
    staged = root / f"{_STAGED}{uuid.uuid4().hex}.npz"
    try:
        _atomic_write(staged, functools.partial(_save_delta, matrix, doc))
        os.replace(staged, root / _FILE)
    except BaseException:
        for written in (staged, staged.with_name(staged.name + ".tmp")):
            with contextlib.suppress(OSError):
                written.unlink()
        raise
    _fsync_dir(root)


def _sweep(root: Path) -> None:
    """Remove from ``root`` (its lock held: no save is under way) the files of saves cut
    short, and those of a save of the earlier format, which load refuses."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if name == _LEGACY_MANIFEST:
            stale = _legacy(root)
        else:
            stale = name.startswith(_STAGED) or name in _LEGACY
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(root / name)


def _legacy(root: Path) -> bool:
    """Whether ``root/index.json`` is a save of the earlier format (and not the in-process
    index's manifest, of the same name)."""
    try:
        with (root / _LEGACY_MANIFEST).open("rb") as f:
            return f.read(len(_LEGACY_HEAD)) == _LEGACY_HEAD
    except OSError:
        return False
