"""One metrics interface for every part of deja, and its Prometheus implementation.

The cache façade, the stores' usage, the semantic tier and the providers report through
:class:`Metrics`. :class:`NullMetrics` (the default) does nothing and costs nothing on a
hit; :class:`PrometheusMetrics` exports the names fixed in DESIGN.md:

=========================================  =========  ======================================
name                                       type       labels
=========================================  =========  ======================================
``deja_cache_requests_total``              counter    ``tier``, ``result`` (a request whose
                                                      upstream call failed counts too;
                                                      embeddings count each input item)
``deja_cache_lookup_seconds``              histogram  ``store``
``deja_cache_errors_total``                counter    ``store``, ``op``
``deja_cache_entries``                     gauge      ``store`` (read at scrape time; Redis:
                                                      every key of its database, tag records
                                                      and other applications' keys too)
``deja_cache_evictions_total``             counter    ``store`` (read at scrape time; Redis:
                                                      the server's; none for a disk store,
                                                      which cannot tell)
``deja_cache_saved_tokens_total``          counter
``deja_cache_saved_usd_total``             counter
``deja_singleflight_coalesced_total``      counter
``deja_semantic_similarity``               histogram  ``outcome``
``deja_provider_cached_tokens_total``      counter    ``provider``, ``kind``
``deja_provider_cache_saved_usd_total``    counter    ``provider`` (what cache reads saved)
``deja_provider_cache_write_premium_usd_total`` counter    ``provider`` (what cache writes
                                                      cost above the input price; net saving
                                                      = saved - write premium)
``deja_upstream_seconds``                  histogram  ``provider``
``deja_upstream_errors_total``             counter    ``provider``, ``error`` (failed upstream
                                                      calls, each attempt: its status code,
                                                      ``timeout``, ``connection``,
                                                      ``pool_timeout`` or ``bad_answer``)
``deja_cache_breaker_open``                gauge      ``store`` (0 closed, 1 open)
``deja_cache_write_breaker_open``          gauge      ``store`` (1: writes refused, not tried)
``deja_semantic_breaker_open``             gauge      (1: misses skip the semantic tier)
``deja_semantic_embeddings_total``         counter    ``embedder`` (calls, memo hits excluded)
``deja_semantic_embedding_seconds``        histogram  ``embedder``
``deja_semantic_embedding_usd_total``      counter    ``embedder`` (what the calls cost)
``deja_semantic_embedding_errors_total``   counter    ``embedder``, ``error`` (failed calls)
``deja_semantic_errors_total``             counter    ``error`` (the tier failed a lookup or
                                                      a store: embedder, vector index, or a
                                                      lookup past its call's timeout)
``deja_semantic_feedback_total``           counter    ``verdict`` (``right``, ``wrong``,
                                                      ``forgotten``, ``unknown``)
``deja_semantic_index_saves_total``        counter    ``result`` (``saved``, ``failed``)
``deja_semantic_index_save_seconds``       histogram
``deja_semantic_index_entries``            gauge      (in-process index, at its last save)
``deja_provider_cache_ttl_downgrades_total`` counter    ``provider`` (1h breakpoints sent as 5m)
``deja_provider_context_cache_total``      counter    ``provider``, ``event``
``deja_provider_context_cache_usd_total``  counter    ``provider`` (context-cache storage cost)
``deja_fallbacks_total``                   counter    ``model``, ``fallback``, ``kind``,
                                                      ``outcome`` (the proxy's fallbacks
                                                      across model names, each one tried:
                                                      see :meth:`PrometheusMetrics.fallback`)
=========================================  =========  ======================================
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, runtime_checkable

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.metrics_core import Metric

    from deja.stores.base import StoreStats, StoreUsage

__all__ = ["Metrics", "NullMetrics", "PrometheusMetrics"]

_log = logging.getLogger(__name__)

_P = ParamSpec("_P")

# Store reads range from a dict lookup (~1 µs) to a remote store under load (seconds).
_LOOKUP_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
# Upstream LLM calls take from tens of milliseconds (embeddings) to minutes (reasoning).
_SAVE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# Cosine similarity; finer near the top, where hit thresholds are chosen.
_SIMILARITY_BUCKETS = (
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.75,
    0.8,
    0.85,
    0.875,
    0.9,
    0.925,
    0.95,
    0.975,
    0.99,
    1.0,
)


@runtime_checkable
class Metrics(Protocol):
    """What deja reports. Every method must be cheap and must never raise."""

    def request(self, tier: str, result: str) -> None:
        """One cache lookup outcome.

        ``tier`` is ``exact`` or ``semantic``; ``result`` is ``hit``, ``semantic_hit``,
        ``miss`` or ``bypass``.
        """

    def lookup_seconds(self, store: str, seconds: float) -> None:
        """Time one store read took."""

    def store_error(self, store: str, op: str) -> None:
        """A store operation failed and was turned into a miss (fail-open)."""

    def saved(self, tokens: int, usd: float) -> None:
        """A hit saved this many tokens and this much money."""

    def coalesced(self) -> None:
        """A caller joined a call already in flight instead of going upstream."""

    def breaker_state(self, store: str, is_open: bool) -> None:
        """The store's circuit breaker opened or closed."""

    def write_breaker_state(self, store: str, is_open: bool) -> None:
        """The breaker of the store's writes opened (it refuses them: full, read-only) or
        closed."""

    def semantic_breaker_state(self, is_open: bool) -> None:
        """The semantic tier's breaker opened (its embedder or index failed again and
        again: misses skip it for a while) or closed."""

    def semantic_error(self, error: str) -> None:
        """The semantic tier failed a lookup or a store (its embedder, its vector index,
        or a lookup that outlasted its call): a miss of that tier, not a store error."""

    def similarity(self, outcome: str, value: float) -> None:
        """A semantic lookup's best similarity, by ``outcome``.

        ``outcome`` is ``hit``, ``near_miss`` (the nearest candidate below the threshold)
        or ``rejected`` (at or above it, refused by a guard or the verifier).
        """

    def provider_cached_tokens(self, provider: str, kind: str, tokens: int) -> None:
        """Provider-side prompt-cache tokens (``kind``: ``read``, ``write``)."""

    def provider_cache_saved(self, provider: str, usd: float) -> None:
        """USD the provider's own prompt cache saved on one answer: its reads, priced below
        input. Writes are not subtracted; see :meth:`provider_cache_write_premium`."""

    def provider_cache_write_premium(self, provider: str, usd: float) -> None:
        """USD one answer's prompt-cache writes cost above the input price (Anthropic and
        Bedrock bill writes at 1.25x or 2x input). Net saving = saved - write premium."""

    def upstream_seconds(self, provider: str, seconds: float) -> None:
        """Time one upstream call took."""

    def upstream_error(self, provider: str, error: str) -> None:
        """One upstream call (an attempt: each retry counts) failed with ``error``: the
        status code it answered (``"429"``, ``"503"``...), ``timeout``, ``connection``
        (refused, dropped, a stream cut short), ``pool_timeout`` (no free connection of
        this client's within the timeout: never sent) or ``bad_answer`` (a success status
        with an unusable body or stream)."""

    def embedding(self, embedder: str, seconds: float, usd: float) -> None:
        """One call to the semantic tier's embedder: how long it took and what it cost."""

    def embedding_failed(self, embedder: str, error: str) -> None:
        """One call to the semantic tier's embedder failed, with ``error`` (its kind)."""

    def semantic_feedback(self, verdict: str) -> None:
        """One feedback report on a semantic entry: ``right``, ``wrong``, ``forgotten``
        (wrong, and the entry reached its strike limit) or ``unknown`` (no such entry)."""

    def semantic_index_saved(self, seconds: float, entries: int) -> None:
        """The in-process semantic index was saved to its directory (merging what other
        processes saved there): how long it took and how many entries it holds."""

    def semantic_index_save_failed(self) -> None:
        """A save of the in-process semantic index failed (it is tried again later)."""

    def provider_cache_ttl_downgraded(self, provider: str, count: int) -> None:
        """``count`` 1h prompt-cache breakpoints were sent as 5m (the model has no 1h, or
        a 5m breakpoint came before them: longer lifetimes must come first)."""

    def context_cache(self, provider: str, event: str, usd: float = 0.0) -> None:
        """A provider context cache was ``created``, ``reused``, ``recreated`` (expired or
        gone), ``deleted`` or ``failed``; ``usd`` is the storage it was bought for."""


class NullMetrics:
    """Metrics that record nothing: the default, so a hit pays for no counters.

    Each method is an empty function; see :class:`Metrics` for what they stand for.
    """

    def request(self, tier: str, result: str) -> None:
        return None

    def lookup_seconds(self, store: str, seconds: float) -> None:
        return None

    def store_error(self, store: str, op: str) -> None:
        return None

    def saved(self, tokens: int, usd: float) -> None:
        return None

    def coalesced(self) -> None:
        return None

    def breaker_state(self, store: str, is_open: bool) -> None:
        return None

    def write_breaker_state(self, store: str, is_open: bool) -> None:
        return None

    def semantic_breaker_state(self, is_open: bool) -> None:
        return None

    def semantic_error(self, error: str) -> None:
        return None

    def similarity(self, outcome: str, value: float) -> None:
        return None

    def provider_cached_tokens(self, provider: str, kind: str, tokens: int) -> None:
        return None

    def provider_cache_saved(self, provider: str, usd: float) -> None:
        return None

    def provider_cache_write_premium(self, provider: str, usd: float) -> None:
        return None

    def upstream_seconds(self, provider: str, seconds: float) -> None:
        return None

    def upstream_error(self, provider: str, error: str) -> None:
        return None

    def embedding(self, embedder: str, seconds: float, usd: float) -> None:
        return None

    def embedding_failed(self, embedder: str, error: str) -> None:
        return None

    def semantic_feedback(self, verdict: str) -> None:
        return None

    def semantic_index_saved(self, seconds: float, entries: int) -> None:
        return None

    def semantic_index_save_failed(self) -> None:
        return None

    def provider_cache_ttl_downgraded(self, provider: str, count: int) -> None:
        return None

    def context_cache(self, provider: str, event: str, usd: float = 0.0) -> None:
        return None


def _never_raises(method: Callable[_P, None]) -> Callable[_P, None]:
    """Make a metrics method swallow (and log at DEBUG) any error.

    :class:`Metrics` promises that reporting never fails a request; this is the one place
    where PrometheusMetrics keeps that promise, rather than a ``try`` in every method.
    """

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            method(*args, **kwargs)
        except Exception:
            _log.debug("metrics: %s failed", method.__qualname__, exc_info=True)

    return wrapper


def _positive(amount: float) -> bool:
    """Whether ``amount`` can be added to a counter: counters only go up, and NaN or
    infinity would poison the series for good."""
    return isinstance(amount, (int, float)) and math.isfinite(amount) and amount > 0


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess() -> bool:
    """Whether this process writes its metrics into files shared with sibling workers
    (``deja serve`` with several workers sets :data:`MULTIPROC_ENV`)."""
    return bool(os.environ.get(MULTIPROC_ENV))


# A process writing metrics files into the multiprocess directory holds, for its life, a
# shared flock of a lock file of its own there (``deja-worker-<pid>.lock``), taken before
# its first file is made: its files are those of a process that is gone once an exclusive
# lock of that file can be had (deja.server.workers folds them then). A pid alone cannot
# tell: another container sharing the directory has pids of its own, and a pid is given
# again to a new process. Held until the process ends (the kernel drops it then, however
# it ends): one per process, which a forked child takes again for its own pid.
WRITER_LOCK_PREFIX = "deja-worker-"
WRITER_LOCK_SUFFIX = ".lock"
_writer_locks: dict[tuple[str, int], int] = {}


def hold_lock(path: str | os.PathLike[str]) -> int | None:
    """Hold a shared ``flock`` of ``path`` (made if missing) and return its descriptor:
    the lock is held until it is closed. ``None`` where there are no locks (no ``fcntl``,
    a file system without them) or the file cannot be made.

    A lock file deleted by whoever held it exclusive while this waited (a fold taking the
    files of the process whose pid this one was given) is opened again: a lock of a file
    no longer in the directory would tell nobody this process runs.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            _log.warning("cannot make the lock file %s: %s", path, exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            opened, named = os.fstat(fd), os.stat(path)
            if (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino):
                return fd
        except FileNotFoundError:  # (deleted as this waited: made again)
            pass
        except OSError as exc:
            _log.warning("cannot lock %s: %s", path, exc)
            os.close(fd)
            return None
        os.close(fd)


def hold_writer_lock() -> None:
    """In multiprocess mode, hold this process's writer lock in :data:`MULTIPROC_ENV`'s
    directory (see ``WRITER_LOCK_PREFIX``), once: before any metrics file is made."""
    from prometheus_client import values

    directory = os.environ.get(MULTIPROC_ENV)
    if not directory or (directory, os.getpid()) in _writer_locks:
        return
    if getattr(values.ValueClass, "_multiprocess", True) is False:
        return  # (the variable was set after prometheus_client chose memory: no files)
    pid = os.getpid()
    fd = hold_lock(os.path.join(directory, f"{WRITER_LOCK_PREFIX}{pid}{WRITER_LOCK_SUFFIX}"))
    if fd is not None:
        _writer_locks[directory, pid] = fd


def _per_process(store: object) -> bool:
    """Whether each process has a store of its own (the in-memory one)."""
    return getattr(store, "per_process", False) is True


class _Together:
    """Stores watched under one name: their figures added up (the entries of two memory
    stores of two caches sharing one metrics object; the second replaced the first), each
    back-end once: stores that name the same ``usage_source`` (two store objects on one
    Redis database or disk directory: a sync and an async cache) report one figure."""

    def __init__(self, stores: list[StoreStats]) -> None:
        self.stores = stores

    def add(self, store: StoreStats) -> None:
        if not any(known is store for known in self.stores):
            self.stores.append(store)

    @property
    def per_process(self) -> bool:
        return all(_per_process(store) for store in self.stores)

    @property
    def usage_interval(self) -> float:
        return max(float(getattr(store, "usage_interval", 0.0)) for store in self.stores)

    def usage(self) -> StoreUsage:
        from deja.stores.base import StoreUsage

        measured: set[str] = set()
        usages = []
        for store in self.stores:
            source = getattr(store, "usage_source", None)
            if isinstance(source, str):
                if source in measured:
                    continue  # (its figure is another's: counted once)
                measured.add(source)
            usages.append(store.usage())
        sizes = [u.bytes for u in usages]
        evictions = [u.evictions for u in usages]
        return StoreUsage(
            entries=sum(u.entries for u in usages),
            bytes=None if None in sizes else sum(b for b in sizes if b is not None),
            evictions=None if None in evictions else sum(e for e in evictions if e is not None),
        )


class _StoreUsageCollector:
    """Reads each watched store's ``usage()`` when Prometheus scrapes, never on a request.

    A store whose ``usage()`` is costly says how often it may be read
    (``usage_interval`` seconds, e.g. S3, which lists the whole prefix): scrapes in between
    repeat its last figures.

    With several workers (Prometheus multiprocess mode), a store each process has its own
    of (``per_process = True``: the in-memory one) is not read at scrape time, when only
    the answering worker's would be (its counter went down from one scrape to the next):
    each worker writes its own figures into the shared files (:meth:`publish`), which the
    scrape adds up over the live workers.
    """

    def __init__(self) -> None:
        self._stores: dict[str, StoreStats | _Together] = {}
        self._lock = threading.Lock()
        # when, entries, evictions (None: the store cannot tell; no sample then)
        self._last: dict[str, tuple[float, float, float | None]] = {}
        self._published: dict[str, float] = {}  # evictions written so far, per store
        self._shared: tuple[Any, Any] | None = None  # the gauge and counter written to

    def publish(self) -> None:
        """Write this worker's figures of its per-process stores into the shared metrics
        files (multiprocess mode only; a no-op otherwise)."""
        if not multiprocess():
            return
        with self._lock:
            stores = [(n, s) for n, s in self._stores.items() if _per_process(s)]
            if not stores:
                return
            if self._shared is None:
                from prometheus_client import Counter, Gauge

                self._shared = (
                    Gauge(
                        "deja_cache_entries",
                        "Entries held by the store.",
                        ["store"],
                        registry=None,
                        multiprocess_mode="livesum",
                    ),
                    Counter(
                        "deja_cache_evictions",
                        "Entries the store evicted to make room (not expiries).",
                        ["store"],
                        registry=None,
                    ),
                )
            entries, evictions = self._shared
            for name, store in stores:
                usage = store.usage()
                entries.labels(name).set(usage.entries)
                done = self._published.get(name, 0.0)
                if usage.evictions is not None and usage.evictions > done:
                    evictions.labels(name).inc(usage.evictions - done)
                    self._published[name] = float(usage.evictions)

    def watch(self, name: str, store: StoreStats) -> None:
        with self._lock:
            known = self._stores.get(name)
            if known is None or known is store:
                self._stores[name] = store
            elif isinstance(known, _Together):
                known.add(store)
            else:  # (two caches of one metrics object, each with a store of that name)
                self._stores[name] = _Together([known, store])

    def describe(self) -> Iterator[Metric]:
        # Claims the two names in the registry (so nothing else can register them) without
        # calling any store.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            stores = list(self._stores.items())
        if multiprocess():  # theirs are in the shared files (publish)
            stores = [(name, store) for name, store in stores if not _per_process(store)]
            if not stores:
                return  # (no second family of those names beside the files')
        entries, evictions = self._families()
        for name, store in stores:
            interval = float(getattr(store, "usage_interval", 0.0))
            last = self._last.get(name)
            now = time.monotonic()
            if last is not None and now - last[0] < interval:
                _, entry_count, eviction_count = last
            else:
                try:
                    usage = store.usage()
                    entry_count = float(usage.entries)
                    eviction_count = None if usage.evictions is None else float(usage.evictions)
                except Exception:
                    # A store that cannot report (connection down...) is left out of this
                    # scrape; the scrape itself must still succeed.
                    _log.debug("metrics: usage() of store %r failed", name, exc_info=True)
                    continue
                if interval > 0:
                    self._last[name] = (now, entry_count, eviction_count)
            entries.add_metric([name], entry_count)
            if eviction_count is not None:
                evictions.add_metric([name], eviction_count)
        yield entries
        yield evictions

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        entries = GaugeMetricFamily(
            "deja_cache_entries", "Entries held by the store.", labels=["store"]
        )
        evictions = CounterMetricFamily(
            "deja_cache_evictions",
            "Entries the store evicted to make room (not expiries).",
            labels=["store"],
        )
        return entries, evictions


class PrometheusMetrics:
    """:class:`Metrics` exported with ``prometheus_client``, on a registry of its own.

    Nothing is registered globally, so any number of instances (one per cache, one per
    test) coexist. ``registry`` is public: mount it, or register more collectors in it.
    :meth:`render` returns the text exposition for a ``/metrics`` route, served with
    :attr:`content_type`. Every method swallows its own errors: metrics never fail a
    request.
    """

    content_type: str
    """The ``Content-Type`` to serve :meth:`render`'s output with."""

    registry: CollectorRegistry
    """The registry holding every deja metric of this instance."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        # Imported here so ``import deja`` stays cheap for users of NullMetrics.
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
        )

        # (before the first metric: one without labels makes this process's file at once)
        hold_writer_lock()
        self.registry = CollectorRegistry() if registry is None else registry
        self.content_type = CONTENT_TYPE_LATEST
        reg = self.registry
        # prometheus_client appends ``_total`` to counter names itself.
        self._requests = Counter(
            "deja_cache_requests",
            "Cache lookups by tier (exact, semantic) and result (hit, semantic_hit, miss, bypass).",
            ["tier", "result"],
            registry=reg,
        )
        self._lookup_seconds = Histogram(
            "deja_cache_lookup_seconds",
            "Time one store read took.",
            ["store"],
            buckets=_LOOKUP_BUCKETS,
            registry=reg,
        )
        self._errors = Counter(
            "deja_cache_errors",
            "Store operations that failed and were turned into misses (fail-open).",
            ["store", "op"],
            registry=reg,
        )
        self._saved_tokens = Counter(
            "deja_cache_saved_tokens",
            "Tokens not sent upstream because a cache hit answered.",
            registry=reg,
        )
        self._saved_usd = Counter(
            "deja_cache_saved_usd",
            "US dollars not spent upstream because a cache hit answered.",
            registry=reg,
        )
        self._coalesced = Counter(
            "deja_singleflight_coalesced",
            "Callers that joined a call already in flight and got its answer instead of"
            " going upstream.",
            registry=reg,
        )
        self._similarity = Histogram(
            "deja_semantic_similarity",
            "Best similarity of a semantic lookup, by outcome (hit, near_miss, rejected).",
            ["outcome"],
            buckets=_SIMILARITY_BUCKETS,
            registry=reg,
        )
        self._provider_cached = Counter(
            "deja_provider_cached_tokens",
            "Provider-side prompt-cache tokens, by kind (read, write).",
            ["provider", "kind"],
            registry=reg,
        )
        self._provider_saved = Counter(
            "deja_provider_cache_saved_usd",
            "USD saved by reads from the providers' own prompt caches (read discounts only: "
            "subtract deja_provider_cache_write_premium_usd_total for the net).",
            ["provider"],
            registry=reg,
        )
        self._provider_write_premium = Counter(
            "deja_provider_cache_write_premium_usd",
            "USD paid for writes to the providers' own prompt caches above the input price.",
            ["provider"],
            registry=reg,
        )
        self._upstream_seconds = Histogram(
            "deja_upstream_seconds",
            "Time one upstream call took.",
            ["provider"],
            buckets=_UPSTREAM_BUCKETS,
            registry=reg,
        )
        self._upstream_errors = Counter(
            "deja_upstream_errors",
            "Failed upstream calls (each attempt), by error (status code, timeout,"
            " connection, pool_timeout, bad_answer).",
            ["provider", "error"],
            registry=reg,
        )
        self._embeddings = Counter(
            "deja_semantic_embeddings",
            "Calls to the semantic tier's embedder (texts served from its memo excluded).",
            ["embedder"],
            registry=reg,
        )
        self._embedding_seconds = Histogram(
            "deja_semantic_embedding_seconds",
            "Time one call to the semantic tier's embedder took.",
            ["embedder"],
            buckets=_LOOKUP_BUCKETS,
            registry=reg,
        )
        self._embedding_usd = Counter(
            "deja_semantic_embedding_usd",
            "USD the semantic tier's embedding calls cost (0 for the local model).",
            ["embedder"],
            registry=reg,
        )
        self._embedding_errors = Counter(
            "deja_semantic_embedding_errors",
            "Failed calls to the semantic tier's embedder, by error kind.",
            ["embedder", "error"],
            registry=reg,
        )
        self._feedback = Counter(
            "deja_semantic_feedback",
            "Feedback reports on semantic hits (right, wrong, forgotten, unknown entry).",
            ["verdict"],
            registry=reg,
        )
        self._index_saves = Counter(
            "deja_semantic_index_saves",
            "Saves of the in-process semantic index to its directory (saved, failed).",
            ["result"],
            registry=reg,
        )
        self._index_save_seconds = Histogram(
            "deja_semantic_index_save_seconds",
            "Time one save of the in-process semantic index took (merge included).",
            buckets=_SAVE_BUCKETS,
            registry=reg,
        )
        # gauges with several workers: the largest of the live workers' values (a worker
        # that died leaves no series behind; see deja.server.workers)
        self._index_entries = Gauge(
            "deja_semantic_index_entries",
            "Entries of the in-process semantic index at its last save.",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self._ttl_downgrades = Counter(
            "deja_provider_cache_ttl_downgrades",
            "1h prompt-cache breakpoints sent with a 5m lifetime (the model has no 1h).",
            ["provider"],
            registry=reg,
        )
        self._context_cache = Counter(
            "deja_provider_context_cache",
            "Provider context caches by event (created, reused, recreated, deleted, failed).",
            ["provider", "event"],
            registry=reg,
        )
        self._context_cache_usd = Counter(
            "deja_provider_context_cache_usd",
            "USD of provider context caches: creation (their tokens at the input price) and "
            "storage bought (tokens x hours x the storage price).",
            ["provider"],
            registry=reg,
        )
        self._breaker_open = Gauge(
            "deja_cache_breaker_open",
            "Whether the store's circuit breaker is open (1) or closed (0).",
            ["store"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self._write_breaker_open = Gauge(
            "deja_cache_write_breaker_open",
            "Whether writes to the store are refused and not tried (1) or tried (0).",
            ["store"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self._semantic_breaker_open = Gauge(
            "deja_semantic_breaker_open",
            "Whether misses skip the failing semantic tier for a while (1) or not (0).",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self._semantic_errors = Counter(
            "deja_semantic_errors",
            "Lookups and stores the semantic tier failed (embedder, vector index, or a lookup"
            " past its call's timeout), by error kind: misses of that tier.",
            ["error"],
            registry=reg,
        )
        # the proxy's own: the labels are model_list names (a wildcard-served name as its
        # pattern), never one a caller made up
        self._fallbacks = Counter(
            "deja_fallbacks",
            "Fallbacks across model names the proxy tried, by the model name that failed,"
            " the fallback name tried, the kind of failure (general, context_window,"
            " content_policy) and its outcome (answered, failed, refused).",
            ["model", "fallback", "kind", "outcome"],
            registry=reg,
        )
        self._usage = _StoreUsageCollector()
        self.store_usage: Any = self._usage
        """The collector of the watched stores' figures (read by this process, at scrape)."""
        reg.register(self._usage)
        # labelled children by (metric, labels): prometheus_client's labels() validates and
        # locks on every call (~1.2 us); a hit or a miss reports several of them
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    @_never_raises
    def request(self, tier: str, result: str) -> None:
        """Count one cache lookup outcome."""
        self._child(self._requests, tier, result).inc()

    @_never_raises
    def lookup_seconds(self, store: str, seconds: float) -> None:
        """Observe the duration of one store read."""
        value = float(seconds)  # convert first: a bad value must not create a label child
        self._child(self._lookup_seconds, store).observe(value)

    @_never_raises
    def store_error(self, store: str, op: str) -> None:
        """Count one failed store operation."""
        self._child(self._errors, store, op).inc()

    @_never_raises
    def saved(self, tokens: int, usd: float) -> None:
        """Add what one hit saved; zero, negative or non-finite amounts are ignored."""
        if _positive(tokens):
            self._saved_tokens.inc(tokens)
        if _positive(usd):
            self._saved_usd.inc(usd)

    @_never_raises
    def coalesced(self) -> None:
        """Count one caller that joined a call in flight."""
        self._coalesced.inc()

    @_never_raises
    def breaker_state(self, store: str, is_open: bool) -> None:
        """Set the store's breaker gauge to 1 (open) or 0 (closed)."""
        self._child(self._breaker_open, store).set(1.0 if is_open else 0.0)

    @_never_raises
    def write_breaker_state(self, store: str, is_open: bool) -> None:
        """Set the gauge of the store's writes to 1 (refused, not tried) or 0."""
        self._child(self._write_breaker_open, store).set(1.0 if is_open else 0.0)

    @_never_raises
    def semantic_breaker_state(self, is_open: bool) -> None:
        """Set the semantic tier's breaker gauge to 1 (skipped) or 0."""
        self._semantic_breaker_open.set(1.0 if is_open else 0.0)

    @_never_raises
    def semantic_error(self, error: str) -> None:
        """Count one failure of the semantic tier."""
        self._child(self._semantic_errors, error).inc()

    @_never_raises
    def similarity(self, outcome: str, value: float) -> None:
        """Observe a semantic lookup's best similarity."""
        similarity = float(value)
        self._child(self._similarity, outcome).observe(similarity)

    @_never_raises
    def provider_cached_tokens(self, provider: str, kind: str, tokens: int) -> None:
        """Add provider prompt-cache tokens; zero or negative counts are ignored."""
        if _positive(tokens):
            self._child(self._provider_cached, provider, kind).inc(tokens)

    @_never_raises
    def provider_cache_saved(self, provider: str, usd: float) -> None:
        """Add what cache reads saved; zero, negative or non-finite amounts are ignored."""
        if _positive(usd):
            self._child(self._provider_saved, provider).inc(usd)

    @_never_raises
    def provider_cache_write_premium(self, provider: str, usd: float) -> None:
        """Add what cache writes cost above input; zero, negative or non-finite amounts are
        ignored."""
        if _positive(usd):
            self._child(self._provider_write_premium, provider).inc(usd)

    @_never_raises
    def upstream_seconds(self, provider: str, seconds: float) -> None:
        """Observe the duration of one upstream call."""
        value = float(seconds)
        self._child(self._upstream_seconds, provider).observe(value)

    @_never_raises
    def upstream_error(self, provider: str, error: str) -> None:
        """Count one failed upstream call."""
        self._child(self._upstream_errors, provider, error).inc()

    @_never_raises
    def embedding(self, embedder: str, seconds: float, usd: float) -> None:
        """Count one embedder call, its duration and its cost."""
        value = float(seconds)
        self._child(self._embeddings, embedder).inc()
        self._child(self._embedding_seconds, embedder).observe(value)
        if _positive(usd):
            self._child(self._embedding_usd, embedder).inc(usd)

    @_never_raises
    def embedding_failed(self, embedder: str, error: str) -> None:
        """Count one failed embedder call."""
        self._child(self._embedding_errors, embedder, error).inc()

    @_never_raises
    def semantic_feedback(self, verdict: str) -> None:
        """Count one feedback report."""
        self._child(self._feedback, verdict).inc()

    @_never_raises
    def semantic_index_saved(self, seconds: float, entries: int) -> None:
        """Count one save of the semantic index, its duration and the entries it holds."""
        self._child(self._index_saves, "saved").inc()
        self._index_save_seconds.observe(float(seconds))
        self._index_entries.set(int(entries))

    @_never_raises
    def semantic_index_save_failed(self) -> None:
        """Count one failed save of the semantic index."""
        self._child(self._index_saves, "failed").inc()

    @_never_raises
    def provider_cache_ttl_downgraded(self, provider: str, count: int) -> None:
        """Add breakpoints whose 1h lifetime was downgraded to 5m."""
        if _positive(count):
            self._child(self._ttl_downgrades, provider).inc(count)

    @_never_raises
    def context_cache(self, provider: str, event: str, usd: float = 0.0) -> None:
        """Count one context-cache event and the storage it bought."""
        self._child(self._context_cache, provider, event).inc()
        if _positive(usd):
            self._child(self._context_cache_usd, provider).inc(usd)

    @_never_raises
    def fallback(self, model: str, fallback: str, kind: str, outcome: str) -> None:
        """Count one fallback the proxy tried: every deployment of ``model`` failed so
        (``kind``: ``general``, ``context_window``, ``content_policy``) that it tried
        ``fallback``, which ``answered``, ``failed`` too, or ``refused`` the request (it
        could not take it as it is). The proxy's own: no :class:`Metrics` method."""
        self._child(self._fallbacks, model, fallback, kind, outcome).inc()

    @_never_raises
    def watch_store(self, name: str, store: object) -> None:
        """Export ``store``'s entry count and evictions under ``store=name``.

        Only stores implementing :class:`deja.stores.base.StoreStats` are watched (others
        are ignored). ``usage()`` is called at scrape time, so requests pay nothing.
        Stores watched under one name are added up (two caches of one metrics object).
        """
        from deja.stores.base import StoreStats

        if isinstance(store, StoreStats):
            self._usage.watch(name, store)

    @_never_raises
    def publish_store_usage(self) -> None:
        """With several workers, write this worker's in-memory store figures into the
        shared metrics files (each worker calls it now and then; see
        :class:`_StoreUsageCollector`)."""
        self._usage.publish()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (``b""`` if it cannot be made)."""
        from prometheus_client import generate_latest

        try:
            return generate_latest(self.registry)
        except Exception:
            _log.debug("metrics: rendering the exposition failed", exc_info=True)
            return b""
