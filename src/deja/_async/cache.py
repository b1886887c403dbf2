"""The cache façade: keys, codec, TTL, admission, single-flight, metrics and fail-open.

The source of truth is src/deja/_async/cache.py; the sync twin in src/deja/_sync/ is
generated from it by scripts/unasync.py (edit the source, then run the script).

Fail-open is one policy, applied here and nowhere else: any exception from the store on
the request path (a lookup or a write) becomes a miss, a metric
(``deja_cache_errors_total{store,op}``) and at most one warning per breaker window. After
``breaker_threshold`` consecutive failures the store is skipped entirely (status
``bypass``) until a probe succeeds. Explicit management calls (``delete``, ``delete_tag``,
``clear``) do raise :class:`~deja.errors.StoreError`: a deletion that did not happen must
not look as if it did.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import orjson

from deja import _aio
from deja._aio import current_loop, off_loop, within  # unasync: from deja._waits import bounded
from deja._async.singleflight import AsyncSingleFlight, WaitExpired, allows_longer
from deja._async.streams import AsyncBroadcast, AsyncCachedStream, OpenStream
from deja._embedding_items import batch_lock_name
from deja._forks import renew_in_child
from deja._invalidations import MARKS, Asked, Invalidations
from deja._lock_keeper import AsyncLockKeeper
from deja._recurring import Recurring
from deja._upstream import call_key_fields
from deja._waits import is_seconds, seconds_left
from deja.breaker import CircuitBreaker
from deja.controls import CacheControl, CacheMode, in_mode, merge, parse_controls
from deja.entry import Entry, StoredEntry, decode, encode
from deja.errors import (
    ConfigError,
    ControlError,
    EntryDecodeError,
    EntryVersionError,
    InvalidRequestError,
    KeyBuilderError,
    StoreBusy,
    StoreError,
    UpstreamTimeoutError,
)
from deja.keys import (
    KEY_VERSION,
    KeyBuilder,
    check_key_prefix,
    explain,
    make_key,
    request_builder,
    scope_hash,
    scope_prefix,
    tenant_hash,
)
from deja.metrics import Metrics, NullMetrics
from deja.policy import (
    ADMISSION_RULES_SINCE,
    AdmissionPolicy,
    age,
    answer_expiry,
    expiry,
    is_fresh,
    kept_for,
    resolve_ttl,
)
from deja.request import Request, check_tenant
from deja.result import CacheInfo, CacheResult, CacheStats, CacheStatus
from deja.semantic.scope import builder_context
from deja.stores.base import (
    ConnectionOrder,
    Locking,
    SharedValues,
    Store,
    TagIndex,
    locking_of,
    validate_ttl,
)
from deja.streaming import StreamAssembler, StreamFormatError, iter_replay_chunks

if TYPE_CHECKING:
    from deja.prices import PriceTable
    from deja.semantic.cache import Feedback, SemanticCache, SemanticLookup

__all__ = ["AsyncCache"]

logger = logging.getLogger("deja.cache")
_T = TypeVar("_T")

_UNSET: Any = object()

OnResponse = Callable[[dict[str, Any]], Awaitable[CacheControl | None]]
"""Runs on a fresh upstream answer before it is stored; may return the options to store with."""

# Decoded-entry memo for stores that hand back the stored bytes object itself (memory):
# a repeat hit on a hot key then skips decoding. Bounded by count and by bytes; cleared
# whole when full (hot keys come back at once, and no LRU bookkeeping costs the hit path).
_MEMO_ENTRIES = 2048
_MEMO_BYTES = 32 * 2**20
_MEMO_MAX_VALUE = 64 * 2**10
_UNRELEASED_MAX = 10_000  # beyond, a lock whose release failed just expires
# An invalidation's mark in a store shared by processes, read by the answers in flight in
# the others when they are stored: kept longer than any call lasts; a mark stamped up to
# _MARK_SLACK seconds before a call began reaches it too (the processes' clocks differ).
_MARK_TTL = 3600.0
_MARK_SLACK = 0.5
# How long the waiters on a lock are told that its holder's answer could not be stored (an
# answer the admission policy refuses, say): identical calls in that window go side by side.
_UNSTORED_TTL = 5.0
# How often the vectors of an index in this process are checked against the store (the
# entries a store evicted, lost or let expire), and how many at least each time (else a
# fiftieth of the index: a round of a 100,000-entry index in 50 minutes), read in batches.
_PRUNE_INTERVAL = 60.0
_PRUNE_LEAST = 500
_PRUNE_BATCH = 256
# Seconds between two warnings of entries kept whose tag records could not be written again
# after the store reconnected (_kept_untagged; the ones in between are counted).
_UNTAGGED_LINES_EVERY = 60.0


def _tagged(data: bytes, tag: str) -> bool:
    """Whether the stored entry ``data`` carries ``tag`` (bytes this deja cannot read go
    with the tag that named them)."""
    try:
        return tag in decode(data).tags
    except EntryDecodeError:
        return True


def _shared_part(store: Store) -> Store | None:
    """The part of ``store`` other processes use too, where invalidations leave their
    marks: the store, a two-tier store's shared tier (never its L1: a copy kept there would
    hide a newer mark), or ``None`` for a memory store."""
    from deja.stores.memory import MemoryStore
    from deja.stores.tiered import TieredStore

    if isinstance(store, TieredStore):
        return _shared_part(store.l2)
    return None if isinstance(store, MemoryStore) else store


def _store_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it came from) is a store refusing a write for being
    full: Redis's ``OOM command not allowed`` under ``noeviction``, a disk out of space."""
    seen: BaseException | None = exc
    for _ in range(8):  # (a chain of causes, not a cycle)
        if seen is None:
            return False
        if (
            type(seen).__name__ == "OutOfMemoryError"
            or getattr(seen, "errno", None) == errno.ENOSPC
            or "database or disk is full" in str(seen)
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _stream_slot(key: str) -> object:
    """Where the live stream of ``key`` is kept (``_streams``): by event loop and key, as
    a stream's readers wait on its loop's events."""
    return (current_loop(), key)  # unasync: return key


class _Tagging(NamedTuple):
    """When an entry's tags were written: the drops of tag records this process had ended
    then, the cache's clock (another process's drops, by their marks), and the store's
    mark of the connections that answer (a server restarted since, empty, is reached on a
    new one: :class:`~deja.stores.base.ConnectionOrder`; ``None`` when it keeps none)."""

    drops: int
    at: float
    connections: int | None


class _InFlight(NamedTuple):
    """What an invalidation is told of a call or stream in flight (its single-flight or
    broadcast label): its tenant, its tags, whether a hook may tag its answer when it comes
    (an ``on_response``), and when it began (the cache's clock: another process's marks are
    stamped by theirs)."""

    tenant: str | None
    tags: tuple[str, ...]
    hooked: bool
    began: float


def _may_be_tagged(tag: str, tenant: str | None, key: str, label: object) -> bool:
    """Whether the call or stream in flight for ``key`` (``label``: :class:`_InFlight`)
    may store an entry of ``tenant`` tagged ``tag``."""
    if not isinstance(label, _InFlight):
        return True  # (told nothing of it)
    return label.tenant == tenant and (tag in label.tags or label.hooked)


# The names of what an invalidation reaches, after :meth:`AsyncCache._mark_id`'s prefix:
# the same on the side that leaves a mark and the side that reads it.
_EVERY = "*"
_LATEST = "last"  # (every mark also stamps this one: a miss reads it first)


def _key_reach(key: str) -> str:
    return "key:" + key


def _scope_reach(tenant: str | None, namespace: str | None) -> str:
    return "scope:" + scope_hash(tenant, namespace)


def _tag_reach(tag: str, tenant: str | None) -> str:
    return f"tag:{tenant_hash(tenant)}:{tag}"  # (in every namespace of the tenant)


def _response_tokens(response: Mapping[str, Any] | None) -> int:
    usage = response.get("usage") if response is not None else None
    if isinstance(usage, Mapping):
        total = usage.get("total_tokens")
        if isinstance(total, int) and not isinstance(total, bool):
            return total
    return 0


def check_parts(*, metrics: object, prices: object, clock: object) -> None:
    """Refuse a cache's or a client's ``metrics``, ``prices`` or ``clock`` that is not
    one (a string, a number...): each failed only at the first call that used it, with an
    AttributeError from deep inside (after the upstream call was paid for, some)."""
    _check_metrics(metrics)
    if prices is not None:
        from deja.prices import PriceTable

        if not isinstance(prices, PriceTable):
            raise TypeError(f"prices must be a deja PriceTable, not {type(prices).__name__}")
    if not callable(clock):
        raise TypeError(f"clock must be a function returning the time, not {clock!r:.80}")


def _checked_admission(admission: Any) -> AdmissionPolicy:
    if not callable(getattr(admission, "admit", None)):
        raise TypeError(f"admission must be a deja.AdmissionPolicy, not {type(admission).__name__}")
    return admission  # type: ignore[no-any-return]


def _check_metrics(metrics: object) -> None:
    """Refuse ``metrics`` (of a cache or a client) that is neither ``None`` nor a
    :class:`~deja.metrics.Metrics`, nor an object with its methods."""
    if metrics is not None and not isinstance(metrics, Metrics):
        methods = [name for name in dir(NullMetrics) if not name.startswith("_")]
        missing = [name for name in methods if not hasattr(metrics, name)]
        lacks = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if missing[4:] else "")
        raise TypeError(
            f"metrics must be a deja Metrics (PrometheusMetrics, NullMetrics or an object"
            f" with their methods), not {type(metrics).__name__}: it lacks {lacks}"
        )


def _checked_namespace(namespace: Any) -> str | None:
    """``None`` or a namespace the ``cache`` option takes (else :class:`ControlError`):
    a namespace no request can name would key entries nothing reads or deletes."""
    if namespace is not None:
        parse_controls({"namespace": namespace})  # one validation rule for namespaces
    return namespace  # type: ignore[no-any-return]


def _checked_size(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int (bytes), not {type(value).__name__}")
    if value < least:
        raise ValueError(f"{name} must be >= {least}, not {value}")
    return value


def _check_wait(name: str, value: float | None) -> None:
    """A call's ``timeout`` (or ``first_timeout``): ``None`` or a positive number of
    seconds (a string failed inside the single-flight wait; -1 and NaN were taken)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r:.40}")
    if not is_seconds(value):  # NaN, inf, an int past a float's range too
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r:.40}")


def _answer(response: _T, what: str = "fetch's call must return") -> _T:
    """``response`` if it is an answer to store (a mapping); else a TypeError saying what
    was expected, before the policy's reads of it fail with an AttributeError. An
    ``async def`` given to the sync :class:`Cache` returns a coroutine: it is closed
    (never run, so no "never awaited" warning) and the caller pointed at AsyncCache."""
    if isinstance(response, Mapping):
        return response
    if inspect.iscoroutine(response):
        response.close()
        cache = "deja.Async" + "Cache"  # (in two: the sync twin's generator renames the word)
        raise TypeError(
            f"{what} an OpenAI-shaped dict, not a coroutine: an async function needs {cache}"
        )
    raise TypeError(f"{what} an OpenAI-shaped dict (a mapping), not {type(response).__name__}")


def _awaitable(answer: Any) -> Awaitable[Any]:
    """``answer`` (what an AsyncCache's ``call()`` returned) if it can be awaited; else the
    TypeError of a sync function given to the async cache."""
    if not inspect.isawaitable(answer):
        raise TypeError(
            f"fetch's call returned a {type(answer).__name__}, not an awaitable: AsyncCache"
            " needs an async function (a sync one goes to deja.Cache)"
        )
    return answer


def _check_request(request: object) -> None:
    if not isinstance(request, Request):
        raise TypeError(
            f"a deja.Request is expected (Request.chat(model=..., messages=...)), not"
            f" {type(request).__name__}"
        )


class AsyncCache:
    """The exact-match response cache over one :class:`~deja.stores.base.Store`.

    Keyword-only options:

    * ``store``: where entries live (default: a fresh :class:`~deja.MemoryStore`);
    * ``ttl``: default seconds an entry lives (``None``: until evicted); a request's
      ``ttl`` control overrides it;
    * ``key_prefix``: the first part of every key; bump it (``"deja:prompt-v2:"``) to
      invalidate everything at once without deleting anything. ``""`` is none: keys then
      start with the key format's version, ``v1:`` (keep a prefix in a store that holds
      other data: :meth:`clear` deletes every key under ``<key_prefix>v1:``);
    * ``namespace``: default namespace for requests that name none;
    * ``key_builder``: custom digest function (see :mod:`deja.keys`), ``f(request)``,
      ``f(request, tenant)`` or LiteLLM's ``f(model, messages, **kwargs)``
      (:func:`~deja.keys.key_builder_form`); deja still adds prefix and scope, so a
      builder cannot reach across tenants or namespaces;
    * ``admission``: which responses may be stored (:class:`~deja.policy.AdmissionPolicy`);
    * ``max_entry_bytes`` / ``compress_min_bytes``: size cap and compression threshold of
      one encoded entry;
    * ``prices``: a :class:`~deja.prices.PriceTable` for cost and savings (default: the
      packaged table, loaded on first use);
    * ``metrics``: a :class:`~deja.metrics.Metrics` (default: none recorded);
    * ``clock``: wall clock for created/expiry times (inject a fake in tests);
    * ``breaker_threshold`` / ``breaker_reset``: consecutive store failures before the
      store is skipped, and seconds before it is probed again;
    * ``lock_ttl`` / ``lock_wait``: with a store shared by processes that offers a lock
      (:class:`~deja.stores.base.Locking`: Redis, disk), identical misses in different
      processes also make one upstream call (a :class:`~deja.stores.TieredStore` locks
      in its shared tier): the lock expires after ``lock_ttl`` seconds unless its holder,
      still calling, extends it (a holder that dies frees it), and a waiter gives up
      waiting after ``lock_wait`` seconds, or its own call's ``timeout``, and calls the
      upstream itself;
    * ``semantic``: a :class:`~deja.semantic.SemanticCache`, the second tier: an exact
      miss is looked up by meaning (``semantic_hit``, with ``similarity``), and every stored
      answer is indexed; a request's ``semantic: false`` control skips it. Its failures are
      misses, like the store's;
    * ``semantic_path``: a directory where the semantic index survives restarts (beside a
      DiskStore's files, say): loaded at the first semantic lookup, saved by ``close()``;
    * ``semantic_save_interval``: with ``semantic_path`` and an index in this process, every
      that many seconds (checked when the semantic tier is used) the index is saved in a
      background thread if it, or the index saved there, changed; the save of an
      in-process index merges what other processes saved to the same directory, so the
      workers of one proxy match each other's prompts within about that time (Qdrant's
      local mode is saved whole, each worker's its own), and a crash loses at most that much
      (default 60, and at least 20 times as long as the last save took, so that saving a
      large index takes at most 5% of the time; ``None``: only ``close()`` and
      :meth:`sync_semantic` save);
    * ``mode``: LiteLLM's cache modes: ``"default_on"`` caches every request,
      ``"default_off"`` only those that opt in with ``use-cache: true`` (the others
      neither read nor write it).

    ``ttl``, ``key_prefix``, ``namespace``, ``admission``, ``mode``, ``max_entry_bytes``
    and ``compress_min_bytes`` may be changed on a live cache (``cache.key_prefix =
    "deja:prompt-v2:"``); each new value is checked as the constructor checks it.
    """

    def __init__(
        self,
        *,
        store: Store | None = None,
        ttl: float | None = None,
        key_prefix: str = "deja:",
        namespace: str | None = None,
        key_builder: KeyBuilder | None = None,
        admission: AdmissionPolicy | None = None,
        max_entry_bytes: int = 4 * 2**20,
        compress_min_bytes: int = 4096,
        prices: PriceTable | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        breaker_threshold: int = 5,
        breaker_reset: float = 1.0,
        lock_ttl: float = 30.0,
        lock_wait: float = 600.0,
        semantic: SemanticCache | None = None,
        semantic_path: str | os.PathLike[str] | None = None,
        semantic_save_interval: float | None = 60.0,
        mode: CacheMode = "default_on",
    ) -> None:
        if store is None:
            from deja.stores.memory import MemoryStore

            store = MemoryStore()
        if not isinstance(store, Store):
            raise TypeError(
                f"store must be a deja store (MemoryStore, DiskStore, RedisStore...), not"
                f" {type(store).__name__}"
            )
        check_parts(metrics=metrics, prices=prices, clock=clock)
        if semantic is not None and not callable(getattr(semantic, "bind", None)):
            raise TypeError(
                f"semantic must be a deja.semantic.SemanticCache, not {type(semantic).__name__}"
            )
        # (each setting is checked as it is set: see "settings" below)
        self.semantic = semantic  # (bound below: key_prefix's setter moves a bound tier)
        self.mode = mode
        self.store = store
        self.ttl = ttl
        self.key_prefix = key_prefix
        self.namespace = namespace
        if key_builder is not None and not callable(key_builder):
            raise TypeError(f"key_builder must be a function, not {key_builder!r:.60}")
        self.key_builder = request_builder(key_builder) if key_builder is not None else None
        self.admission = admission if admission is not None else AdmissionPolicy()
        self.max_entry_bytes = max_entry_bytes
        self.compress_min_bytes = compress_min_bytes
        self.metrics: Metrics = metrics if metrics is not None else NullMetrics()
        watch = getattr(metrics, "watch_store", None)  # (PrometheusMetrics: entries, evictions)
        if watch is not None:
            watch(store.name, store)
        # the breakers' gauges read 0 from the start (they had no sample until a failure:
        # an alert on them saw no data, not "closed")
        self.metrics.breaker_state(store.name, False)
        self.metrics.write_breaker_state(store.name, False)
        self._prices = prices
        self._clock = clock
        self._store_name = store.name
        self._tags_supported = isinstance(store, TagIndex)
        self._connection_order = store if isinstance(store, ConnectionOrder) else None
        self._breaker = CircuitBreaker(threshold=breaker_threshold, reset_after=breaker_reset)
        # writes (entries, locks) have their own: a store that refuses them (full under
        # noeviction, a read-only user) still serves what it holds
        self._writes = CircuitBreaker(threshold=breaker_threshold, reset_after=breaker_reset)
        # the semantic tier's (its embedder, its index): a remote embedder that fails or
        # hangs is asked again after ten of the store's reset times, not by every miss
        self._semantic_breaker = CircuitBreaker(
            threshold=breaker_threshold, reset_after=breaker_reset * 10
        )
        self._semantic_error: str | None = None
        self._semantic_last: object = None  # a failure counted once, however shared
        self._late: tuple[float, TimeoutError] | None = None  # (when, the failure counted)
        self._last_warning = float("-inf")
        self._semantic_warned = float("-inf")
        self._refusal_warned = float("-inf")  # (an input the embedder refused: _semantic_failed)
        self._unscoped_warned = float("-inf")  # (a key builder failing on a scope: _unscoped)
        self._untagged_lines = Recurring(window=_UNTAGGED_LINES_EVERY)  # (_kept_untagged)
        self._outage_said = False  # a failure was logged since the last "answering again"
        # its reads failed since the last one answered (a store down, not only full)
        self._reads_failing = False
        self._renew()  # its calls in flight and locks (renewed in a forked child)
        # what was invalidated while answers were being fetched: those are not kept (in
        # a store other processes share, what they invalidated is read from their marks)
        self._invalidations = Invalidations()
        self._marks = _shared_part(store)
        renew_in_child(self, AsyncCache._renew)
        self._memo: dict[str, tuple[bytes, StoredEntry]] | None = (
            {} if isinstance(store, SharedValues) and store.shares_values() else None
        )
        self._memo_bytes = 0
        if semantic is not None:
            semantic.bind(key_prefix)
        if semantic is not None and semantic.metrics is None:
            semantic.metrics = self.metrics  # embedder calls are counted with the cache's
        if (
            semantic_path is not None
            and semantic is not None
            and not getattr(semantic.index, "process_local", True)
        ):
            # a shared index (Redis, a Qdrant server or on-disk store) is stored as it
            # changes: loading this process's copy at its next start replaced what the
            # others had stored since (an entry reported wrong came back, theirs went)
            logger.warning(
                "semantic_path %s is not used: the semantic index %s is shared, not this"
                " process's, and is neither loaded from it nor saved there",
                semantic_path,
                type(semantic.index).__name__,
            )
            semantic_path = None
        self._semantic_path = Path(semantic_path) if semantic_path is not None else None
        self._semantic_loaded = self._semantic_path is None
        if self._semantic_path is not None and store.name == "memory":
            logger.warning(
                "a semantic_path beside a memory store: the entries live in this process"
                " only, so vectors saved there (or shared by other processes) point at"
                " nothing after a restart or in another process, and are forgotten as they"
                " are found"
            )
        if semantic_save_interval is not None and semantic_save_interval < 0:
            raise ValueError("semantic_save_interval must be >= 0 or None")
        self.semantic_save_interval = semantic_save_interval
        self._semantic_next_save = time.monotonic() + (semantic_save_interval or 0.0)
        self._semantic_next_prune = time.monotonic() + _PRUNE_INTERVAL
        self._semantic_hits = 0
        self._locking = locking_of(store)
        # locks whose release failed (the store was down): key -> (token, when it expires)
        self._unreleased: dict[str, tuple[str, float]] = {}
        # (NaN and inf refused too: a lock that never expires, a wait that never ends)
        if not (is_seconds(lock_ttl) and is_seconds(lock_wait, zero=True)):
            raise ValueError(
                "lock_ttl must be positive and lock_wait >= 0, finite numbers of seconds,"
                f" not {lock_ttl!r:.40} and {lock_wait!r:.40}"
            )
        self.lock_ttl = lock_ttl
        self.lock_wait = lock_wait
        self._hits = self._misses = self._bypasses = self._coalesced = 0
        self._store_errors = self._saved_tokens = 0
        self._saved_usd = 0.0

    # -- settings ---------------------------------------------------------------------
    # Properties, so that a setting changed on a live cache (``cache.ttl = "900"``) is
    # checked as the constructor checks it, not refused by every later call; the request
    # path reads the private attributes (a hit pays for no property).

    @property
    def mode(self) -> CacheMode:
        """``"default_on"`` or ``"default_off"`` (see the class docstring)."""
        return self._mode

    @mode.setter
    def mode(self, mode: CacheMode) -> None:
        if mode not in ("default_on", "default_off"):
            raise ValueError(f"mode must be 'default_on' or 'default_off', got {mode!r}")
        self._mode = mode

    @property
    def ttl(self) -> float | None:
        """Default seconds an entry lives (``None``: until evicted)."""
        return self._ttl

    @ttl.setter
    def ttl(self, ttl: float | None) -> None:
        self._ttl = validate_ttl(ttl)

    @property
    def key_prefix(self) -> str:
        """The first part of every key; set a new one to invalidate every entry at once."""
        return self._key_prefix

    @key_prefix.setter
    def key_prefix(self, key_prefix: str) -> None:
        check_key_prefix(key_prefix)
        semantic = self.semantic
        old = self.__dict__.get("_key_prefix")
        if semantic is not None and old is not None and key_prefix != old:
            # the tier follows its cache to the new prefix, as the constructor binds it:
            # else a bumped prefix's lookups by meaning still served the old entries
            semantic.rebind(old, key_prefix)
        self._key_prefix = key_prefix

    @property
    def namespace(self) -> str | None:
        """The namespace of requests that name none."""
        return self._namespace_default

    @namespace.setter
    def namespace(self, namespace: str | None) -> None:
        self._namespace_default = _checked_namespace(namespace)

    @property
    def admission(self) -> AdmissionPolicy:
        """Which responses may be stored."""
        return self._admission

    @admission.setter
    def admission(self, admission: AdmissionPolicy) -> None:
        self._admission = _checked_admission(admission)

    @property
    def max_entry_bytes(self) -> int:
        """The largest encoded entry stored."""
        return self._max_entry_bytes

    @max_entry_bytes.setter
    def max_entry_bytes(self, size: int) -> None:
        self._max_entry_bytes = _checked_size("max_entry_bytes", size, 1)

    @property
    def compress_min_bytes(self) -> int:
        """Entries at least this large are compressed."""
        return self._compress_min_bytes

    @compress_min_bytes.setter
    def compress_min_bytes(self, size: int) -> None:
        self._compress_min_bytes = _checked_size("compress_min_bytes", size, 0)

    # -- keys -------------------------------------------------------------------------

    def key(self, request: Request, control: Mapping[str, Any] | CacheControl | None = None) -> str:
        """The key ``request`` is stored under (with the control's namespace, if any)."""
        if control is not None and not isinstance(control, CacheControl):
            control = parse_controls(control)  # (a dict, as get and explain take)
        namespace = control.namespace if control is not None else None
        try:
            return make_key(
                request,
                key_prefix=self._key_prefix,
                namespace=namespace if namespace is not None else self._namespace_default,
                builder=self.key_builder,
            )
        except AttributeError:  # (checked here, not before: a hit pays for no isinstance)
            _check_request(request)
            raise

    def key_for(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        api_base: str | None = None,
        tenant: str | None = None,
        namespace: str | None = None,
        **params: Any,
    ) -> str:
        """The key of a chat request given as call arguments (for targeted deletion): the
        arguments of the :class:`deja.Client` call that stored it, read as the call reads
        them (``cache``'s namespace, ``extra_body``, ``extra_query``; ``caching``,
        ``timeout``, ``extra_headers`` and the provider settings change no key).

        Without ``api_base``, the endpoint is the one a :class:`deja.Client` without one
        calls: the environment's (``OPENAI_BASE_URL``...), else the provider's (as for
        any :class:`~deja.Request`). A client made with ``api_base=`` keys by that: pass
        the same here.
        """
        cache, api_base, fields = call_key_fields(model, api_base, params)
        request = Request.from_body(
            {**fields, "model": model, "messages": messages}, api_base=api_base, tenant=tenant
        )
        ctl = parse_controls(cache)
        if namespace is not None:
            ctl = merge(ctl, CacheControl(namespace=_checked_namespace(namespace)))
        return self.key(request, ctl)

    def explain(
        self, request: Request, control: Mapping[str, Any] | CacheControl | None = None
    ) -> dict[str, Any]:
        """The key of ``request`` and the normalized fields that made it."""
        _check_request(request)
        ctl = parse_controls(control)
        return explain(
            request,
            key_prefix=self._key_prefix,
            namespace=self._namespace(ctl),
            builder=self.key_builder,
        )

    async def explain_semantic(
        self, request: Request, control: Mapping[str, Any] | CacheControl | None = None
    ) -> dict[str, Any]:
        """What the semantic tier makes of ``request`` now, as plain data: whether it
        applies, the threshold it uses, and each candidate it compares (entry key, the
        prompt that entry was stored for, similarity, strikes-adjusted decision: ``hit``,
        ``threshold``, ``guards:<which>`` or ``verifier``, with a ``detail`` where the
        reason needs one, and the verifier's probability), best first, with the key it
        would serve. Nothing is stored or counted. The answer
        to "why was this prompt given that answer?" (or not given one).
        """
        _check_request(request)  # (None failed inside the scope's reading of it)
        if self.semantic is None:
            raise ConfigError("this cache has no semantic tier")
        lookup, threshold = await self._semantic_inspect(request, parse_controls(control))
        return {
            "applicable": lookup.applicable,
            "reason": lookup.reason,  # (why not applicable: "script", "too_long"...)
            "threshold": threshold,
            "match": None if lookup.match is None else lookup.match.key,
            "candidates": [
                {
                    "key": key,
                    "prompt": prompt,
                    "similarity": round(decision.similarity, 6),
                    "decision": decision.reason,
                    "detail": decision.detail,
                    "probability": decision.probability,
                }
                for (key, decision), prompt in zip(lookup.candidates, lookup.prompts, strict=True)
            ],
        }

    async def _semantic_inspect(
        self, request: Request, ctl: CacheControl, skip: frozenset[str] = frozenset()
    ) -> tuple[SemanticLookup, float]:
        """The semantic tier's look at ``request`` under its controls, and the threshold
        it used: the request's ``similarity_threshold`` when stricter than the tier's (a
        request may ask for closer matches, never looser ones)."""
        semantic = self.semantic
        assert semantic is not None  # callers check
        if not self._semantic_loaded:
            await asyncio.to_thread(self._load_semantic)
        threshold = semantic.threshold
        if ctl.similarity_threshold is not None and ctl.similarity_threshold > threshold:
            threshold = ctl.similarity_threshold
        namespace = self._namespace(ctl)
        lookup = await semantic.ainspect(
            request,
            namespace=namespace,
            threshold=threshold,
            context_key=self._context_key(request, namespace),
            skip=skip,
        )
        self._semantic_used()
        return lookup, threshold

    def _context_key(self, request: Request, namespace: str | None) -> str | None:
        """See :func:`deja.semantic.scope.builder_context` (raises
        :class:`~deja.errors.KeyBuilderError` if the builder fails on that request)."""
        return builder_context(
            request, key_prefix=self._key_prefix, namespace=namespace, builder=self.key_builder
        )

    def _namespace(self, ctl: CacheControl) -> str | None:
        """The request's namespace, else this cache's."""
        return ctl.namespace if ctl.namespace is not None else self._namespace_default

    # -- the request path ---------------------------------------------------------------

    async def get(
        self, request: Request, *, control: Mapping[str, Any] | CacheControl | None = None
    ) -> CacheResult:
        """Look ``request`` up. ``result.response`` is ``None`` unless it is a hit."""
        ctl = in_mode(parse_controls(control), self._mode)
        key = self.key(request, ctl)
        if ctl.no_cache:
            return self._count(CacheResult(None, CacheInfo("bypass", key)))
        found = await self._lookup(key, ctl)
        if found.entry is None and self._by_meaning(found, ctl):  # (no call on a hit)
            similar, _ = await self._semantic_lookup(request, key, ctl)
            if similar is not None:
                return self._count(similar)
        return self._count(found)

    async def put(
        self,
        request: Request,
        response: Mapping[str, Any],
        *,
        control: Mapping[str, Any] | CacheControl | None = None,
        chunks: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Store ``response`` for ``request`` if the admission policy allows.

        Returns whether it was stored. Store failures are fail-open (``False``).
        """
        response = _answer(response, "put's response must be")
        if chunks is not None and (
            not isinstance(chunks, list) or not all(isinstance(c, Mapping) for c in chunks)
        ):
            # (stored, a chunk that is no object failed every later stream of the key)
            raise TypeError("put's chunks must be a list of chunk dicts (the stream's events)")
        ctl = self._control(control)
        key = self.key(request, ctl)
        return await self._put(
            key, request, response, ctl, cost=self.cost(request, response), chunks=chunks
        )

    async def get_many(
        self,
        requests: Sequence[Request],
        *,
        control: Mapping[str, Any] | CacheControl | None = None,
        count: bool = True,
    ) -> list[CacheResult]:
        """Look ``requests`` up in one store round trip (``get_many``: Redis MGET), in the
        exact tier only (the embeddings of a batch, each item a request). ``count=False``
        leaves the statistics to the caller (:meth:`count`), who knows more later."""
        ctl = in_mode(parse_controls(control), self._mode)
        keys = [self.key(request, ctl) for request in requests]
        if ctl.no_cache or not self._breaker.allow():
            status: CacheStatus = "bypass"
            results = [CacheResult(None, CacheInfo(status, key)) for key in keys]
        else:
            results = await self._lookup_many(keys, ctl)
        if count:
            for result in results:
                self._count(result)
        return results

    def count(self, result: CacheResult) -> None:
        """Count ``result`` in the statistics and metrics (after ``get_many(count=False)``)."""
        self._count(result)

    async def _lookup_many(self, keys: list[str], ctl: CacheControl) -> list[CacheResult]:
        started = time.perf_counter()
        try:
            values = await self.store.aget_many(keys)
        except Exception as exc:
            self._store_failed("get", exc)
            return [CacheResult(None, CacheInfo("miss", key)) for key in keys]
        self._store_recovered()
        elapsed = time.perf_counter() - started
        self.metrics.lookup_seconds(self._store_name, elapsed)

        # a large batch (2,048 embeddings: ~0.7 s of decompressing and parsing) is read in
        # a thread, its responses parsed there too, so the event loop goes on serving; the
        # thread reads the memo, and what it decoded is memoised back on the loop (the
        # memo is the loop's: a repeated 256-input batch decoded every vector again)
        big = len(keys) >= _aio.OFFLOAD_BATCH  # unasync: big = False

        def examine_all() -> list[tuple[CacheResult, EntryDecodeError | None]]:
            examined = [
                self._examine(key, data, ctl, elapsed, remember=not big)
                for key, data in zip(keys, values, strict=True)
            ]
            for result, _ in examined if big else ():
                _ = result.response
            return examined

        examined = await off_loop(examine_all, len(keys))  # unasync: examined = examine_all()
        results = []
        memo = self._memo if big else None
        for key, data, (result, corrupt) in zip(keys, values, examined, strict=True):
            if corrupt is not None:
                await self._discard(key, corrupt)
            elif memo is not None and result.entry is not None and data is not None:
                self._remember(memo, key, data, result.entry)
            results.append(result)
        return results

    async def put_many(
        self,
        items: Sequence[tuple[Request, Mapping[str, Any]]],
        *,
        control: Mapping[str, Any] | CacheControl | None = None,
    ) -> int:
        """Store each ``(request, response)`` the admission policy allows, in one store round
        trip (``set_many``: a Redis pipeline); returns how many were stored."""
        ctl = self._control(control)
        for item in items:  # (checked first: none stored of a batch with a bad item)
            if not isinstance(item, tuple) or len(item) != 2:
                raise TypeError(f"put_many takes (request, response) pairs, not {item!r:.80}")
            _answer(item[1], "put_many's responses must be")
        if ctl.no_store or not items:
            return 0
        ttl = resolve_ttl(ctl.ttl, self._ttl)
        encoded: dict[str, bytes] = {}
        stored: list[tuple[str, Request]] = []
        # answers that expire by themselves (audio) are stored with a TTL of their own
        alone: list[tuple[str, Request, Mapping[str, Any]]] = []

        def encode_all() -> None:
            for request, response in items:
                key = self.key(request, ctl)
                if answer_expiry(response) is not None:
                    alone.append((key, request, response))
                    continue
                data = self._encoded(
                    key, request, response, ctl, ttl, cost=self.cost(request, response)
                )
                if data is not None:
                    encoded[key] = data
                    stored.append((key, request))

        await off_loop(encode_all, len(items))  # unasync: encode_all()
        count = 0
        for key, request, response in alone:
            count += await self._put(key, request, response, ctl, cost=self.cost(request, response))
        if not encoded or not self._writable():
            return count
        tenants: dict[str | None, list[str]] = {}
        for key, request in stored:
            tenants.setdefault(request.tenant, []).append(key)
        tagging = self._tagging()
        try:
            for tenant, keys in tenants.items():  # one tag write per tag, not per entry
                await self._tag(keys, tenant, ctl, ttl)  # (first, as for one entry)
        except Exception as exc:
            self._store_failed("tag", exc, trip_breaker=False)  # (as for one entry)
            return count
        try:
            await self.store.aset_many(encoded, ttl)
        except Exception as exc:
            self._write_failed("set", exc)
            return count
        reconnected = self._reconnected(tagging)  # (before any other command: see there)
        self._writes_recovered()
        for tenant, keys in tenants.items():
            if not await self._tagged_still(
                keys, tenant, ctl, ttl, tagging, reconnected=reconnected
            ):
                stored = [item for item in stored if item[1].tenant != tenant]
        for key, request in stored:
            await self._index_semantic(key, request, ctl, ttl)
        return count + len(stored)

    async def coalesce(
        self,
        key: str,
        call: Callable[[], Awaitable[Any]],
        *,
        stored: Callable[[], Awaitable[Any]] | None = None,
        timeout: float | None = None,
    ) -> tuple[Any, bool]:
        """Run ``call`` once for the concurrent callers of ``key`` (the single-flight of a
        batch of embeddings): ``(result, shared)``, ``shared`` for those who got another's.

        ``stored()`` finds ``call``'s result in the store (``None`` until it is all
        there): with it, processes sharing a store that locks make one call too (a process
        that finds another's call in flight waits for it and returns ``stored()``).
        ``timeout``: how long this caller waits for another's call (then
        :class:`~deja.errors.UpstreamTimeoutError`), as :meth:`fetch`'s; a leader's timeout
        is not raised to a caller that allowed more (it calls itself)."""

        async def lead() -> tuple[Any, bool]:
            if stored is None or self._locking is None:
                return await call(), False
            name = batch_lock_name(key)
            token, found = await self._cross_process_lead(name, stored, timeout)
            if found is not None:
                return found, True
            try:
                async with AsyncLockKeeper(self._locking, name + ":lock", token, self.lock_ttl):
                    return await call(), False
            finally:
                if token is not None:
                    await self._unlock(name, token)

        try:
            (result, elsewhere), shared = await self._batch_flight.run(key, lead, wait=timeout)
        except WaitExpired as exc:
            raise UpstreamTimeoutError(f"no answer within {timeout} s: {exc}") from None
        if shared:
            self._coalesced += 1
            self.metrics.coalesced()
        return result, shared or elsewhere

    async def fetch(
        self,
        request: Request,
        call: Callable[[], Awaitable[dict[str, Any]]],
        *,
        control: Mapping[str, Any] | CacheControl | None = None,
        on_response: OnResponse | None = None,
        timeout: float | None = None,
    ) -> CacheResult:
        """Serve ``request`` from the cache, or ``call`` the upstream once and store it.

        Concurrent identical misses share one ``call`` (single-flight); the leader checks
        the store again before calling, in case another process filled it meanwhile.
        ``call``'s exceptions reach every waiting caller and nothing is stored.
        ``timeout``: how long the caller's own call could take (its attempts), which bounds
        its wait for an identical call in flight (then
        :class:`~deja.errors.UpstreamTimeoutError`); a leader's
        ``UpstreamTimeoutError`` reaches only the callers that allowed no more time than
        it did, and one of the others calls again. In the async cache it also bounds the
        lookup by meaning: an embedder slower than that (hung, say, up to its own timeout)
        makes this call a miss, not a longer call (its answer is not indexed: that would
        wait for the embedder again).
        ``on_response(response)``, if given, runs on a fresh answer before it is stored and
        may return new cache options for storing it (more tags, another TTL, no-store; not
        another namespace, which would be another key): the proxy's post-LLM hooks.
        """
        _check_wait("timeout", timeout)
        ctl = self._control(control)
        key = self.key(request, ctl)
        if ctl.no_cache:
            # skips the lookup and single-flight: the caller asked for a fresh answer
            if not ctl.no_store:  # (one that stores nothing replaces nothing)
                await self._refreshing(key)
            since = self._asked()
            try:
                pending = _awaitable(call())  # unasync: pending = call()
                response = _answer(await pending)
            except BaseException:  # counted all the same (the upstream's errors too)
                self._count(CacheResult(None, CacheInfo("bypass", key)))
                raise
            cost = self.cost(request, response)
            store_ctl = await self.after_response(on_response, response, ctl)
            await self._put(key, request, response, store_ctl, cost=cost, since=since)
            return self._count(CacheResult(response, CacheInfo("bypass", key, cost_usd=cost)))
        found = await self._lookup(key, ctl)
        if found.entry is not None:
            return self._count(found)
        indexable = True
        if self._by_meaning(found, ctl):
            sought = self._semantic_lookup(request, key, ctl)
            sought = within(sought, timeout, (None, False), self._semantic_late)  # unasync:
            similar, indexable = await sought
            if similar is not None:
                return self._count(similar)
        status = found.info.status
        await self._left_behind(key, request, ctl)
        try:
            live = await self._read_live_stream(key, timeout)
        except BaseException:  # its stream broke, or this call's time ran out: a miss
            self._count(CacheResult(None, CacheInfo(status, key)))
            raise
        if live is not None:
            return self._count(live)

        async def lead() -> CacheResult:
            since = self._asked()  # (an answer to keep began no sooner)
            # an identical call may have stored the answer since; a store that could not
            # answer a moment ago is not asked again (a hung one: another timeout)
            if found.gone or found.stale:
                again = await self._lookup(key, ctl)
                if again.entry is not None:
                    return again
            token, waited = None, None
            slot = _stream_slot(key)
            # (an answer it will not store: the others need not wait; a call of this
            # process holding the lock, an older one an invalidation detached this caller
            # from: its answer will not be stored, so this one calls now, not after it)
            if not ctl.no_store and slot not in self._lock_holders:
                token, waited = await self._cross_process_lead(
                    key, functools.partial(self._stored_answer, key, ctl), timeout
                )
            if waited is not None:
                return waited
            if token is not None:
                self._lock_holders.add(slot)
            try:
                async with AsyncLockKeeper(self._locking, key + ":lock", token, self.lock_ttl):
                    pending = _awaitable(call())  # unasync: pending = call()
                    response = _answer(await pending)
                cost = self.cost(request, response)
                store_ctl = await self.after_response(on_response, response, ctl)
                kept = await self._put(
                    key, request, response, store_ctl, cost=cost, index=indexable, since=since
                )
                if not kept and token is not None:
                    await self._leave_unstored(key)
            except Exception:
                if token is not None:
                    # (the call failed: the processes waiting on the lock call side by
                    # side, not one after the other, each after the last one's timeout)
                    await self._leave_unstored(key)
                raise
            finally:
                if token is not None:
                    self._lock_holders.discard(slot)
                    await self._unlock(key, token)
            return CacheResult(response, CacheInfo(status, key, cost_usd=cost))

        try:
            result, shared = await self._flight.run(
                key,
                lead,
                wait=timeout,
                label=_InFlight(request.tenant, ctl.tags, on_response is not None, self._clock()),
            )
        except BaseException as exc:
            # a miss all the same: an outage must not look like a better hit ratio
            self._count(CacheResult(None, CacheInfo(status, key)))
            if isinstance(exc, WaitExpired):
                raise UpstreamTimeoutError(f"no answer within {timeout} s: {exc}") from None
            raise
        if not shared:
            return self._count(result)
        self._coalesced += 1
        self.metrics.coalesced()
        info = result.info
        # followers get their own copy: callers may mutate what they receive
        data = result.response_bytes
        assert data is not None  # the leader returns a response or raises
        response = orjson.loads(data)
        # credited what a hit on the stored answer is, not what the leader paid
        saved = info.saved_usd if info.hit else self._saving(request, response, info.cost_usd)
        return self._count(CacheResult(response, CacheInfo("hit", key, age=0.0, saved_usd=saved)))

    async def stream(
        self,
        request: Request,
        open_stream: OpenStream,
        *,
        control: Mapping[str, Any] | CacheControl | None = None,
        include_usage: bool = False,
        on_response: OnResponse | None = None,
        copy_chunks: bool = True,
        timeout: float | None = None,
        first_timeout: float | None = None,
    ) -> AsyncCachedStream:
        """Serve a streamed request: replay a hit, or share one upstream stream.

        ``open_stream()`` opens the upstream stream (asking it for usage) and returns an
        iterator of ``chat.completion.chunk`` dicts. A hit (streamed or not when stored) is
        replayed at its original chunk boundaries, without sleeps. On a miss the chunks pass
        through as they arrive; identical requests arriving meanwhile share them live. The
        answer is stored only if every choice finished cleanly and admission allows it.
        ``include_usage``: whether this caller gets the usage chunk. ``on_response`` as for
        :meth:`fetch`, on the assembled answer before it is stored. A caller that joins a
        stream in flight is a hit whose ``saved_usd`` is known when the stream ends. Each
        caller of a live stream gets its own copy of every chunk, unless ``copy_chunks`` is
        false (a caller that only serializes them, as the proxy does). ``timeout``: how
        long a caller that joins another's stream waits for each chunk (``first_timeout``,
        if given, for the first: the opener's attempts and their pauses), as its own call's
        reads would, before :class:`~deja.errors.UpstreamTimeoutError` (a miss; the stream
        goes on for the others): the opener's own timeout bounds the upstream's reads, and
        its timeout before the first chunk is not raised to a caller that joined it and
        allowed more (``first_timeout``, else ``timeout``): that one asks again.

        Upstream errors before the first chunk are raised here; later ones by the iterator.
        """
        _check_wait("timeout", timeout)
        _check_wait("first_timeout", first_timeout)
        ctl = self._control(control)
        key = self.key(request, ctl)
        if ctl.no_cache and not ctl.no_store:
            await self._refreshing(key)
        since = self._asked()  # (before any stream this caller may open)
        status: CacheStatus = "bypass"
        indexable = True
        if not ctl.no_cache:
            found = await self._lookup(key, ctl)
            if found.entry is None and self._by_meaning(found, ctl):
                similar, indexable = await self._semantic_lookup(request, key, ctl)
                found = similar or found
            if found.entry is not None:
                return self._replay(found, include_usage)
            status = found.info.status
        info = CacheInfo(status, key)
        # how long this caller waits for a stream's first chunk (its call's attempts), over
        # all the streams it joins: asking again, it joins the next one with what is left
        # (a patient caller kept landing on streams impatient ones opened, and waited on)
        first_wait = timeout if first_timeout is None else first_timeout
        deadline = None if first_wait is None else time.monotonic() + first_wait

        def new_stream(mine: CacheInfo) -> AsyncBroadcast:
            """An upstream stream of this caller's own (``mine``, its cache result): its
            answer is stored when it completes."""
            broadcast = AsyncBroadcast(open_stream, None)
            broadcast.on_complete = functools.partial(
                self._store_streamed,
                broadcast=broadcast,
                info=mine,
                request=request,
                ctl=ctl,
                on_response=on_response,
                indexable=indexable,
                since=since,
            )
            broadcast.patience = first_wait  # (before anyone joins it)
            broadcast.label = _InFlight(
                request.tenant, ctl.tags, on_response is not None, self._clock()
            )
            return broadcast

        if not ctl.no_cache:
            await self._left_behind(key, request, ctl)
        slot = _stream_slot(key)
        while True:  # once more when a stream it joined timed out sooner than it would
            if ctl.no_cache:
                broadcast, joined = new_stream(info), None
            else:
                # (status "bypass": the store is skipped, there is nothing to read again)
                live = self._join_or_open(slot, info, new_stream if status == "bypass" else None)
                if live is None:
                    # No identical stream to join: before opening the upstream, read the
                    # store again, as a plain call's leader does. An identical stream may
                    # have ended since this request's lookup, and a stream leaves the live
                    # ones only once its answer is stored.
                    again = await self._lookup(key, ctl)
                    if again.entry is not None:
                        return self._replay(again, include_usage)
                    live = self._join_or_open(slot, info, new_stream)
                assert live is not None  # (given new_stream, it opens if it cannot join)
                broadcast, joined = live
            if joined is None:
                self._count(CacheResult(None, info))
                result = AsyncCachedStream(
                    info, broadcast=broadcast, include_usage=include_usage, copy_chunks=copy_chunks
                )
                await result.prefetch()
                return result
            info = joined
            # (its first chunk within what is left of first_wait; each next within timeout)
            wait = None if deadline is None else (seconds_left(deadline), timeout)
            gave_up = None if wait is None else functools.partial(self._gave_up, broadcast, info)
            result = AsyncCachedStream(
                info,
                broadcast=broadcast,
                include_usage=include_usage,
                copy_chunks=copy_chunks,
                subscribed=True,
                wait=wait,
                on_gave_up=gave_up,
            )
            try:
                await result.prefetch()
            except BaseException as exc:
                if not self._asks_again(broadcast, info, exc, seconds_left(deadline)):
                    raise
                info = CacheInfo(status, key)  # this caller's, should it open the stream now
                continue
            return result

    def _join_or_open(
        self,
        slot: object,
        info: CacheInfo,
        new_stream: Callable[[CacheInfo], AsyncBroadcast] | None,
    ) -> tuple[AsyncBroadcast, CacheInfo | None] | None:
        """Under the lock, so that two callers never both open one: the live stream of
        ``slot``, subscribed to, with the cache result of this caller who joined it (a
        hit); else one ``new_stream(info)`` opened and made the live one, with ``None``;
        ``None`` when there is no live stream and ``new_stream`` is ``None``."""
        with self._streams_lock:
            live = self._streams.get(slot)
            if live is not None and live.subscribe():  # (else abandoned by its last reader)
                joined = CacheInfo("hit", info.key, None, 0.0)
                # counted when the answer is complete (a hit, crediting what it cost), or
                # when the stream ends without one (a miss); at once if it is complete
                # already (being stored)
                if live.saved is None:
                    live.joined.append(joined)
                else:
                    self._count(CacheResult(None, joined))
                    self._credit(joined, *live.saved)
                return live, joined
            if new_stream is None:
                return None
            broadcast = new_stream(info)
            self._streams[slot] = broadcast
            broadcast.on_finished = functools.partial(self._stream_ended, slot, broadcast)
            return broadcast, None

    async def _store_streamed(
        self,
        assembler: StreamAssembler,
        *,
        broadcast: AsyncBroadcast,
        info: CacheInfo,
        request: Request,
        ctl: CacheControl,
        on_response: OnResponse | None,
        indexable: bool,
        since: Asked,
    ) -> None:
        """A stream this cache opened (for the caller ``info``) ended: price its answer,
        count the callers who shared it, and store it if every choice finished cleanly."""
        key = info.key
        if not assembler.complete:
            logger.debug("CACHE SKIP key=%s reason=unfinished_stream", key)
            return
        response = assembler.response()
        info.cost_usd = cost = self.cost(request, response)
        tokens = _response_tokens(response)
        saving = self._saving(request, response, cost)
        with self._streams_lock:  # who joined so far; later joiners count themselves
            broadcast.saved = (saving, tokens)
            joined, broadcast.joined = broadcast.joined, []
        for other in joined:  # the callers who shared it: hits, saving what a hit does
            self._count(CacheResult(None, other))
            self._credit(other, saving, tokens)
        chunks: list[dict[str, Any]] | None = assembler.chunks()
        if on_response is None:
            store_ctl = ctl
        else:
            before = orjson.dumps(response)
            store_ctl = await self.after_response(on_response, response, ctl)
            if orjson.dumps(response) != before:
                # the hook changed the answer (redacted it, say): a replay is made from
                # the answer as it left it, never from the chunks as they came
                chunks = None
        broadcast.answer = response
        await self._put(
            key,
            request,
            response,
            store_ctl,
            cost=cost,
            chunks=chunks,
            index=indexable,
            since=since,
        )

    def _replay(self, found: CacheResult, include_usage: bool) -> AsyncCachedStream:
        """A stored answer replayed to a streamed request (counted as found)."""
        entry = found.entry
        assert entry is not None
        self._count(found)
        replay = iter_replay_chunks(entry.response, entry.chunks, include_usage=include_usage)
        return AsyncCachedStream(found.info, replay=replay, include_usage=True)

    def _gave_up(self, broadcast: AsyncBroadcast, info: CacheInfo) -> None:
        """A caller that joined ``broadcast`` stopped waiting for it (its own timeout, or
        an error before its first chunk): a miss, not the hit it would be counted as when
        the stream ends (unless it was counted already: it joined as the answer was being
        stored)."""
        if self._leave_joined(broadcast, info):
            info.status = "miss"
            self._count(CacheResult(None, info))

    def _leave_joined(self, broadcast: AsyncBroadcast, info: CacheInfo) -> bool:
        """Take ``info`` off the callers ``broadcast`` counts when it ends: whether it was
        still there (not counted yet)."""
        with self._streams_lock:  # (by identity: two joiners' infos are equal)
            left = [other for other in broadcast.joined if other is not info]
            waiting = len(left) < len(broadcast.joined)
            broadcast.joined = left
        return waiting

    def _asks_again(
        self, broadcast: AsyncBroadcast, info: CacheInfo, error: BaseException, wait: float | None
    ) -> bool:
        """A caller that joined ``broadcast`` (``info``, allowing ``wait`` for the first
        chunk) got ``error`` before its first chunk: whether it asks again. It does when
        that is the stream's own upstream timeout, before any chunk, and this caller
        allowed more time than the opener did: as a plain call outlasting its leader's
        timeout, it opens a new stream (or joins one another such caller opened), and its
        cache result is that one's. Otherwise it is a miss. A reader that has had chunks
        gets such a timeout all the same: the stream cannot start over under it."""
        again = (
            broadcast.timed_out(error)
            # only before any chunk: a reader that had some cannot be started over without
            # them coming twice, so it keeps the timeout
            and broadcast.failed_at_first
            and allows_longer(wait, broadcast.patience)
        )
        if again:
            self._leave_joined(broadcast, info)
        else:
            self._gave_up(broadcast, info)
        return again

    def _credit(self, info: CacheInfo, saved: float, tokens: int) -> None:
        """A caller that shared another's stream saved what a hit on its answer saves, and
        is counted as coalesced once the answer is whole (as a plain call joining one is: a
        stream that failed was counted as coalesced for each of its joiners)."""
        self._coalesced += 1
        self.metrics.coalesced()
        info.saved_usd = saved
        self._saved_usd += saved
        self._saved_tokens += tokens
        self.metrics.saved(tokens, saved)

    def _saving(self, request: Request, response: Mapping[str, Any], cost: float) -> float:
        """What a hit on ``response`` (which cost ``cost``) saves: what asking again would
        cost, the provider's caches warm (a prompt cache's writes priced as reads, no
        context cache made again), else ``cost``. One rule for the saving stored with an
        entry and for the callers that shared the call in flight, who are hits too."""
        again = self.prices.repeat_cost(request.upstream, response)
        return cost if again is None else again

    async def _read_live_stream(self, key: str, timeout: float | None = None) -> CacheResult | None:
        """The answer of an identical streamed request in flight, read to its end (a plain
        call waits for the whole answer anyway: it shares the stream's upstream call), or
        ``None`` when there is none or it ended unfinished. Its errors are this call's, and
        so is its ``timeout``: past it, this call gives up (the stream goes on for its
        other readers) and leaves the stream, so that the last reader leaving still closes
        the upstream (the sync twin's reader thread leaves at its next chunk). The stream
        opener's timeout is not raised to a call that allowed more (``None``: it asks)."""
        slot = _stream_slot(key)
        with self._streams_lock:
            broadcast = self._streams.get(slot)
            if broadcast is not None and not broadcast.subscribe():
                broadcast = None
        if broadcast is None:
            return None
        reader = AsyncCachedStream(
            CacheInfo("hit", key),
            broadcast=broadcast,
            include_usage=True,
            copy_chunks=False,
            subscribed=True,
        )
        assembler = StreamAssembler()
        gave_up = threading.Event()  # (sync: set when this call stops waiting for its reader)

        async def read_all() -> None:
            try:
                async for chunk in reader:
                    if gave_up.is_set():
                        break
                    assembler.add(chunk)
            finally:  # the reader leaves in the thread that reads (sync: see below)
                await reader.aclose()

        try:
            # (sync: a thread, since a sync read cannot be interrupted: this call's reader
            # may be the one pulling the next chunk, blocked on the upstream's socket, and
            # leaving the stream from another thread could close the upstream under that
            # read; so the reader leaves from its own thread, at its next chunk)
            await asyncio.wait_for(read_all(), timeout)  # unasync: bounded(read_all, timeout)
        except StreamFormatError:
            return None  # an answer the stream's readers get, but no whole one: ask for it
        except UpstreamTimeoutError as exc:
            if broadcast.timed_out(exc) and allows_longer(timeout, broadcast.patience):
                # its opener's timeout, sooner than this call's: it asks for itself, as a
                # plain call outlasting its leader's timeout does (nothing of the stream
                # was passed on to it, so it can start over at any chunk)
                return None
            raise
        except TimeoutError:
            # this call leaves the stream (async: closed here too, had the read been
            # cancelled before it began; sync: the reader thread leaves at its next chunk)
            await reader.aclose()  # unasync: gave_up.set()
            raise UpstreamTimeoutError(
                f"no answer within {timeout} s: an identical streamed call is in flight"
            ) from None
        if not assembler.complete:
            return None
        # the answer as the post-cache hooks left it (a redaction holds even when they
        # said not to store it), a copy of its own; none if they failed: this call asks
        # for itself, as it would have without the stream (and fails as it would have)
        hooked, saved = broadcast.answer, broadcast.saved
        if hooked is None or saved is None:  # (saved is set first, with what a hit saves)
            return None
        self._coalesced += 1
        self.metrics.coalesced()
        response = orjson.loads(orjson.dumps(hooked))
        return CacheResult(response, CacheInfo("hit", key, age=0.0, saved_usd=saved[0]))

    def _by_meaning(self, found: CacheResult, ctl: CacheControl) -> bool:
        """Whether an exact lookup's miss is looked up by meaning too: not while the store
        is skipped (its circuit open), as no match could be read from it, and the search
        would cost an embedding (a paid one, perhaps) and a dead index's timeout."""
        return found.info.status != "bypass" and self.semantic is not None and ctl.semantic

    async def _semantic_lookup(
        self, request: Request, key: str, ctl: CacheControl
    ) -> tuple[CacheResult | None, bool]:
        """An exact miss looked up by meaning: the entry of a similar earlier prompt, if
        any, and whether the semantic tier answered (``False``: it failed)."""
        semantic = self.semantic
        assert semantic is not None  # callers check
        if not self._semantic_breaker.allow():
            return None, True
        skip: frozenset[str] = frozenset()
        while True:
            try:
                lookup, _ = await self._semantic_inspect(request, ctl, skip)
            except KeyBuilderError as exc:  # the operator's builder failed, not the tier
                self._unscoped(exc)
                return None, True
            except Exception as exc:  # the semantic tier is an optimisation: fail open
                self._semantic_failed(exc)
                return None, False
            if lookup.embedded:
                self._semantic_recovered()
            else:  # no text to embed, or a remembered vector: the embedder was not tried
                self._semantic_breaker.release()
            match = lookup.match
            if match is None:
                nearest = lookup.best_similarity
                if nearest is not None and not skip:  # how close misses come: the headroom
                    # below the threshold, or refused above it by a guard or the verifier
                    below = lookup.candidates[0][1].reason == "threshold"
                    self.metrics.similarity("near_miss" if below else "rejected", nearest)
                return None, True
            found = await self._lookup(match.key, ctl)
            if found.entry is not None:
                break
            if found.gone:  # expired or deleted: not a store that failed to answer now,
                await semantic.aforget(match.key)  # nor an entry older than this request takes
            elif not found.stale:
                return None, True  # the store did not answer: nor would it for the next one
            # the next candidate may be a fresh answer to the same question
            skip |= {match.key}
            if len(skip) >= semantic.top_k:
                return None, True
        self.metrics.similarity("hit", match.similarity)
        info = found.info
        info.status = "semantic_hit"
        info.similarity = match.similarity
        logger.debug("CACHE SEMANTIC HIT key=%s similarity=%.4f", match.key, match.similarity)
        return found, True

    async def _stored_answer(self, key: str, ctl: CacheControl) -> CacheResult | None:
        """The entry under ``key`` if there is one (another process stored it)."""
        found = await self._lookup(key, ctl)
        return found if found.entry is not None else None

    async def _cross_process_lead(
        self, key: str, stored: Callable[[], Awaitable[_T | None]], timeout: float | None
    ) -> tuple[str | None, _T | None]:
        """Take the store's lock for ``key``, or wait for the process that holds it (at most
        ``lock_wait`` seconds, and the caller's ``timeout``).

        Returns ``(token, None)`` when this process should call the upstream (``token`` is
        ``None`` when there is no lock to release), or ``(None, answer)`` when the holder
        stored the answer meanwhile (``stored()`` found it). Lock errors fail open: this
        process calls upstream. A holder whose answer could not be stored (refused by the
        admission policy, too large...) says so (:meth:`_left_unstored`): the waiters then
        call at once, side by side, not one after the other behind the lock.
        """
        locking = self._locking
        if locking is None or not self._writable():
            return None, None
        if self._unreleased:
            await self._release_unreleased(locking)
        name = key + ":lock"
        wait = self.lock_wait if timeout is None else min(self.lock_wait, timeout)
        deadline = time.monotonic() + wait
        pause = 0.02
        while True:
            try:
                token = await locking.alock(name, ttl=self.lock_ttl)
            except Exception as exc:
                self._write_failed("lock", exc)
                return None, None
            self._writes_recovered()
            if token is not None:
                # the holder may have stored the answer just before releasing the lock
                try:
                    again = await stored()
                except BaseException:  # cancelled: the others must not wait out the TTL
                    await self._unlock(key, token)
                    raise
                if again is not None:
                    await self._unlock(key, token)
                    return None, again
                if await self._left_unstored(key):
                    await self._unlock(key, token)
                    return None, None
                return token, None
            if time.monotonic() >= deadline:
                logger.debug("CACHE LOCK WAIT TIMEOUT key=%s", key)
                if wait != self.lock_wait:  # the caller's own time is up, not the holder's
                    raise UpstreamTimeoutError(
                        f"no answer within {timeout} s: another process's identical call"
                        " had not ended"
                    )
                return None, None
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.25)
            again = await stored()
            if again is not None:
                self._coalesced += 1
                self.metrics.coalesced()
                return None, again
            if await self._left_unstored(key):
                return None, None

    async def _left_unstored(self, key: str) -> bool:
        """Whether the last holder of ``key``'s lock could not store its answer (within
        the last :data:`_UNSTORED_TTL` seconds; a store that cannot say: no)."""
        try:
            return await self.store.aget(key + ":unstored") is not None
        except Exception:
            return False

    async def _leave_unstored(self, key: str) -> None:
        """Tell the processes waiting on ``key``'s lock that its answer was not stored."""
        try:
            await self.store.aset(key + ":unstored", b"1", _UNSTORED_TTL)
        except Exception as exc:
            self._write_failed("set", exc)

    async def _unlock(self, key: str, token: str) -> None:
        locking = self._locking
        if locking is None:
            return
        try:
            await locking.aunlock(key + ":lock", token)
        except Exception as exc:
            # it expires by itself, but the callers of other processes would wait until
            # then for a holder long gone: released by the next miss that reaches the store
            self._store_failed("unlock", exc, trip_breaker=False)
            if len(self._unreleased) < _UNRELEASED_MAX:
                self._unreleased[key] = (token, time.monotonic() + self.lock_ttl)

    async def _release_unreleased(self, locking: Locking) -> None:
        """Release the locks whose release failed, up to the first failure."""
        while True:
            try:
                key, (token, expires) = self._unreleased.popitem()
            except KeyError:  # none left (another thread took the last one)
                return
            if expires <= time.monotonic():
                continue  # expired by itself
            try:
                await locking.aunlock(key + ":lock", token)
            except Exception:
                self._unreleased.setdefault(key, (token, expires))
                return

    async def after_response(
        self, on_response: OnResponse | None, response: dict[str, Any], ctl: CacheControl
    ) -> CacheControl:
        """The cache options to store a fresh ``response`` with: ``ctl``, as
        ``on_response(response)`` (the proxy's post-cache hooks) changes them."""
        if on_response is None:
            return ctl
        updated = await on_response(response)
        if updated is None:
            return ctl
        if updated.namespace != ctl.namespace:
            raise ControlError(
                "a response hook cannot change the namespace (the key is already chosen)",
                option="namespace",
            )
        return self._control(updated)

    def _stream_ended(self, slot: object, broadcast: AsyncBroadcast) -> None:
        """A shared stream ended (done, failed or abandoned): no request joins it any more,
        and the callers who joined it and were not counted yet (no complete answer was
        assembled) are counted: hits if it ended cleanly (they got the whole answer, which
        could not be stored), else misses (they looked the key up and got no answer)."""
        with self._streams_lock:
            if self._streams.get(slot) is broadcast:
                del self._streams[slot]
            if broadcast.failed_at_first:
                # each caller that joined it, still waiting for its first chunk, gets the
                # error and counts itself: a miss, or its new call's result if it asks again
                return
            joined, broadcast.joined = broadcast.joined, []
        answered = broadcast.answered
        for info in joined:
            if not answered:
                info.status = "miss"
            self._count(CacheResult(None, info))

    # -- management -------------------------------------------------------------------

    async def delete(self, key: str) -> bool:
        """Delete one entry by key (and its semantic vector); returns whether it existed."""
        if not isinstance(key, str):  # (bytes, None...: no entry has it, a silent False)
            raise TypeError(f"delete takes an entry's key (a str), not {type(key).__name__}")
        self._noted(key)  # (before deleting: see _put)
        if self.semantic is not None:
            # (a saved index loaded after the forgetting would bring the vector back)
            await self.load_semantic()
            await self.semantic.aforget(key)
        try:
            await self._mark_deleting(_key_reach(key))
            return await self.store.adelete(key)
        except Exception as exc:
            raise StoreError(f"delete failed on store {self._store_name}: {exc!r}") from exc

    async def feedback(self, key: str, *, correct: bool) -> Feedback | None:
        """Report whether the answer served under ``key`` was right for the prompt it was
        served to (``response.cache.key`` of a ``semantic_hit``).

        A wrong answer is a strike on the entry in the semantic tier: the entry then needs
        a closer prompt to be served for, and after ``max_strikes`` strikes it is served
        only to identical requests (exact hits); a right one takes a strike back (see
        :meth:`deja.semantic.SemanticCache.feedback`). Strikes live with the entry in the
        vector index, so every process sharing a Redis or Qdrant index sees them. Returns
        what the report did, or ``None`` when the semantic tier holds no entry ``key``.
        An exact hit that was wrong is not the semantic tier's doing: :meth:`delete` it.
        Raises :class:`~deja.errors.ConfigError` without a semantic tier or with an index
        that keeps no strikes, :class:`~deja.errors.InvalidRequestError` for a key that is
        not a string or a ``correct`` that is not a bool, and
        :class:`~deja.errors.StoreError` when the index fails.
        """
        if self.semantic is None:
            raise ConfigError("feedback is about semantic hits: this cache has no semantic tier")
        if not isinstance(key, str) or not key:
            raise InvalidRequestError(f"feedback needs the entry's key (a string), got {key!r:.80}")
        if not isinstance(correct, bool):
            raise InvalidRequestError(
                f"feedback's 'correct' must be True or False, got {correct!r}"
            )
        if not self._semantic_loaded:
            await asyncio.to_thread(self._load_semantic)
        try:
            report = await self.semantic.afeedback(key, correct=correct)
        except (StoreError, ConfigError):
            raise
        except Exception as exc:
            raise StoreError(f"feedback failed on the semantic index: {exc!r}") from exc
        if report is None:
            self.metrics.semantic_feedback("unknown")
        else:
            self.metrics.semantic_feedback(
                "right" if correct else "forgotten" if report.forgotten else "wrong"
            )
        return report

    async def delete_request(
        self, request: Request, *, control: Mapping[str, Any] | CacheControl | None = None
    ) -> bool:
        """Delete the entry ``request`` would hit; returns whether it existed."""
        return await self.delete(self.key(request, parse_controls(control)))

    async def delete_tag(
        self, tag: str, *, namespace: str | None = _UNSET, tenant: str | None = None
    ) -> int:
        """Delete every entry of ``tenant`` stored with ``tag``: in every namespace, or in
        ``namespace`` only when one is given (``None``: the cache's default namespace).

        Returns the number of entries deleted. A tag, namespace or tenant no entry can have
        (a list of tags, an empty namespace, a tenant that is not a string) is refused: it
        would delete nothing, and look as if it had.
        """
        if not isinstance(tag, str):
            raise TypeError(
                f"delete_tag takes one tag (a str), not {type(tag).__name__}: call it per tag"
            )
        parse_controls({"tags": [tag]})  # a name the tags option takes (ControlError)
        check_tenant(tenant)
        if namespace is not _UNSET:
            _checked_namespace(namespace)
        store = self._tag_store()
        if namespace is _UNSET:
            # the tenant's record of every namespace, and the default namespace's (where
            # entries tagged by earlier deja versions are recorded)
            records = [
                self._tenant_tag_id(tag, tenant),
                self._tag_id(tag, tenant, self._namespace_default),
            ]
            self._invalidations.tag(tag, tenant, None, every=True)
        else:
            scope = namespace if namespace is not None else self._namespace_default
            records = [self._tag_id(tag, tenant, scope)]
            self._invalidations.tag(tag, tenant, scope, every=False)
        # (before deleting: see _put)
        self._invalidating(functools.partial(_may_be_tagged, tag, tenant))
        try:
            # The records are read, their entries deleted, and only then the records
            # dropped: a delete_tag cut short (a store failing halfway) leaves them to its
            # retry, which would find nothing to delete otherwise while the entries it
            # missed were served. Every key the drop names is read again: an entry tagged
            # meanwhile, or stored again since (its value written after the first read),
            # goes too, rather than stay with no record naming it.
            deleted = 0
            gone: set[str] = set()
            with self._invalidations.dropping():  # (see _tagged_still)
                for take in (store.akeys_for, store.adrop):
                    # marked before each pass: the second mark, just before the drop, is
                    # for another process's entry tagged before the drop and written
                    # after it (a drop long after the first mark: a large tag), left with
                    # no record naming it: its writer reads the mark after its write and
                    # tags it again, or takes it back (_tagged_still, _marked_after)
                    await self._mark_deleting(_tag_reach(tag, tenant))
                    named: dict[str, None] = {}
                    for record in records:
                        named.update(dict.fromkeys(await take(record)))
                    deleted += await self._delete_tagged(tag, list(named), gone)
        except Exception as exc:
            raise StoreError(f"delete_tag failed on store {self._store_name}: {exc!r}") from exc
        return deleted

    async def _delete_tagged(self, tag: str, keys: list[str], gone: set[str]) -> int:
        """Delete those of ``keys`` whose entries carry ``tag``; how many went. The keys
        deleted are added to ``gone`` (keys already in it, deleted by the first pass, are
        not read again alone).
        A record may name an entry stored again since without the tag (or in another
        namespace's record only): each entry's own tags decide.

        A key the batch read found nothing under is read again alone, a read that raises
        if the store cannot answer for that key: a Redis Cluster reads the keys of a node
        that fails (or rests after failing) as misses, right for a lookup, but here a miss
        passes for "already gone", and the drop would forget an entry that is served again
        once its node answers. The entries read are deleted even so, then StoreError is
        raised: the records stay for the retry. (A key gone before costs one read more.)"""
        values = await self.store.aget_many(keys) if keys else []
        unread = [n for n, data in enumerate(values) if data is None and keys[n] not in gone]
        failures: list[StoreError] = []
        for done, n in enumerate(unread, 1):
            try:
                values[n] = await self.store.aget(keys[n])
            except StoreError as exc:  # (StoreBusy too: the node is skipped a moment)
                failures.append(exc)
            if done % _aio.OFFLOAD_BATCH == 0:
                await asyncio.sleep(0)  # a store that never waits: let others in

        def still_tagged() -> list[str]:
            return [
                key
                for key, data in zip(keys, values, strict=True)
                if data is not None and _tagged(data, tag)
            ]

        # (each entry decoded: a large batch off the event loop)
        doomed = await off_loop(still_tagged, len(keys))  # unasync: doomed = still_tagged()
        if self.semantic is not None and doomed:
            await self.load_semantic()  # (as delete's)
        deleted = 0
        for n, key in enumerate(doomed, 1):
            if self.semantic is not None:
                await self.semantic.aforget(key)
            if await self.store.adelete(key):
                gone.add(key)
                deleted += 1
            if n % _aio.OFFLOAD_BATCH == 0:
                await asyncio.sleep(0)  # a store that never waits: let others in
        if failures:
            raise StoreError(
                f"{len(failures)} of the {len(keys)} tagged keys could not be read"
                f" ({deleted} entries deleted): {failures[0]}"
            ) from failures[0]
        return deleted

    async def clear(self, *, namespace: str | None = _UNSET, tenant: str | None = _UNSET) -> int:
        """Delete entries under this cache's ``key_prefix`` only.

        With no arguments: every entry of this prefix (all tenants and namespaces). With
        ``namespace`` and/or ``tenant``: that one scope (an unnamed tenant is ``None``, an
        unnamed namespace the cache's default). Returns the number deleted, as the store
        counts it (an S3 store counts the entries it listed: one another clear or delete
        removed at the same time is counted by both; see
        :meth:`~deja.stores.s3.S3Store.clear`). A namespace or tenant no entry can have is
        refused (it would delete nothing, silently).
        """
        if namespace is not _UNSET:
            _checked_namespace(namespace)
        if tenant is not _UNSET:
            check_tenant(tenant)
        everything = namespace is _UNSET and tenant is _UNSET
        scope_tenant = None if tenant is _UNSET else tenant
        scope_namespace = self._namespace_default if namespace is _UNSET else namespace
        if everything:
            prefix = f"{self._key_prefix}{KEY_VERSION}:"
        else:
            prefix = scope_prefix(self._key_prefix, scope_tenant, scope_namespace)
        self._invalidations.prefix(prefix)  # (before deleting: see _put)
        self._invalidating(lambda key, _: key.startswith(prefix))
        if self.semantic is not None:
            await self.load_semantic()  # (as delete's)
            if everything:
                await self.semantic.aclear()
            else:
                await self.semantic.aforget_scope(tenant=scope_tenant, namespace=scope_namespace)
        try:
            await self._mark_deleting(
                _EVERY if everything else _scope_reach(scope_tenant, scope_namespace)
            )
            return await self.store.aclear(prefix)
        except Exception as exc:
            raise StoreError(f"clear failed on store {self._store_name}: {exc!r}") from exc

    def stats(self) -> CacheStats:
        """Hit, miss and savings counters of this cache object."""
        return CacheStats(
            hits=self._hits,
            semantic_hits=self._semantic_hits,
            misses=self._misses,
            bypasses=self._bypasses,
            coalesced=self._coalesced,
            store_errors=self._store_errors,
            saved_tokens=self._saved_tokens,
            saved_usd=self._saved_usd,
        )

    @property
    def prices(self) -> PriceTable:
        """The price table costs and savings are computed with."""
        prices = self._prices
        if prices is None:
            from deja.prices import PriceTable

            prices = self._prices = PriceTable.default()
        return prices

    def cost(self, request: Request, response: Mapping[str, Any]) -> float:
        """USD cost of ``response`` by the price table (0.0 for an unknown model)."""
        return self.prices.response_cost(request.upstream, response)

    async def load_semantic(self) -> None:
        """Load the semantic index from ``semantic_path`` now if it is not loaded yet (the
        tier's first use loads it otherwise). Loading memory-maps the saved index and
        inserts the rows of its deltas into the graph (~1 ms each), so the proxy does this
        before it takes requests. A missing or unreadable index starts empty."""
        if not self._semantic_loaded:
            await asyncio.to_thread(self._load_semantic)

    async def aclose(self) -> None:
        """Save the semantic index (if it has a path) and close the store."""
        if self.semantic is not None and self._semantic_path is not None and self._semantic_loaded:
            try:
                await asyncio.to_thread(self._save_semantic)
            except Exception as exc:  # losing the index costs misses, never answers
                logger.warning("saving the semantic index failed: %s", exc)
        await self.store.aclose()

    def _save_semantic(self) -> None:
        semantic = self.semantic
        assert semantic is not None
        if semantic.syncs:
            # what changed since the last sync, as a delta beside the base (N workers
            # closing at once would each rewrite the whole index otherwise)
            self._sync_semantic()
            return

        def save(path: Path) -> bool:  # an index that saves only in full (Qdrant's)
            semantic.save(path)
            return True

        self._counted_save(save)

    async def sync_semantic(self) -> bool:
        """Bring the semantic index and ``semantic_path`` in step now: take in what other
        processes saved there since this cache last loaded or synced it, and write what
        this one changed since (what ``semantic_save_interval`` does in the background;
        :meth:`deja.semantic.index.InProcessIndex.sync`). Returns whether it took in or
        wrote anything. Raises :class:`~deja.errors.ConfigError` without a
        semantic tier or ``semantic_path``, :class:`~deja.errors.StoreError` when the save
        fails (nothing in memory is lost; the next save tries again).
        """
        if self.semantic is None or self._semantic_path is None:
            raise ConfigError("sync_semantic needs a semantic tier and a semantic_path")
        if not self._semantic_loaded:
            await asyncio.to_thread(self._load_semantic)
        try:
            return await asyncio.to_thread(self._sync_semantic)
        except Exception as exc:
            raise StoreError(
                f"saving the semantic index to {self._semantic_path} failed: {exc!r}"
            ) from exc

    def _sync_semantic(self) -> bool:
        assert self.semantic is not None
        return self._counted_save(self.semantic.sync)

    def _counted_save(self, save: Callable[[Path], bool]) -> bool:
        """Run ``save`` (true when it wrote) on the index directory, one at a time (after a
        background save in flight), and count it in the metrics."""
        assert self.semantic is not None and self._semantic_path is not None
        with self._semantic_saving:
            started = time.perf_counter()
            try:
                self._semantic_path.mkdir(parents=True, exist_ok=True)
                saved = save(self._semantic_path)
            except Exception:
                self.metrics.semantic_index_save_failed()
                raise
            if saved:
                spent = time.perf_counter() - started
                self.metrics.semantic_index_saved(spent, len(self.semantic.index))
                # a large index: at most 1/20 of the time goes to saving it
                now = time.monotonic()
                self._semantic_next_save = max(self._semantic_next_save, now + 19 * spent)
            return saved

    def _semantic_used(self) -> None:
        """Start a background :meth:`sync_semantic` when ``semantic_save_interval`` has
        passed since the last one, and a :meth:`_prune_semantic` every
        :data:`_PRUNE_INTERVAL` (cheap checks on every use of the semantic tier)."""
        now = time.monotonic()
        if now >= self._semantic_next_prune and self._semantic_pruning.acquire(blocking=False):
            self._semantic_next_prune = now + _PRUNE_INTERVAL
            threading.Thread(
                target=self._background_prune, name="deja-semantic-prune", daemon=True
            ).start()
        interval = self.semantic_save_interval
        if interval is None or self._semantic_path is None or not self._semantic_loaded:
            return
        now = time.monotonic()
        if now < self._semantic_next_save or self._semantic_saving.locked():
            return
        self._semantic_next_save = now + interval
        saver = threading.Thread(
            target=self._background_sync, name="deja-semantic-save", daemon=True
        )
        self._semantic_saver: threading.Thread | None = saver
        saver.start()

    def _background_prune(self) -> None:
        try:
            self._prune_semantic()
        except Exception as exc:  # (the store failing: the next round reads them again)
            logger.debug("checking the semantic index against the store failed: %s", exc)
        finally:
            self._semantic_pruning.release()

    def _prune_semantic(self) -> int:
        """Drop the vectors of the entries the store no longer holds; returns how many.

        Nothing tells an index in this process that its entries went when the store
        evicted them (a disk store's ``size_limit``, Redis's ``maxmemory``), lost them
        (a Redis restarted without its data) or let them expire: their vectors stayed, up
        to the index's bound, in every worker's memory and the saved index (a soak on a
        disk store held 130 entries and a growing index of 1,455 vectors after 4 minutes).
        Each call reads the next :data:`_PRUNE_LEAST` (or a fiftieth of the index) of its
        keys, oldest first, from the store, round after round. A store that cannot answer
        raises (the next call reads those again)."""
        semantic = self.semantic
        if semantic is None or self._reads_failing:
            return 0
        pending = self._prune_pending
        if not pending:
            held = semantic.held_keys()
            if not held:
                return 0
            pending.extend(held)
        count = max(_PRUNE_LEAST, len(semantic.index) // 50)
        keys = [pending.popleft() for _ in range(min(count, len(pending)))]
        dropped = 0
        for start in range(0, len(keys), _PRUNE_BATCH):
            batch = keys[start : start + _PRUNE_BATCH]
            try:
                values = self.store.get_many(batch)
            except BaseException:
                pending.extendleft(reversed(keys[start:]))
                raise
            dropped += sum(
                semantic.forget(key)
                for key, value in zip(batch, values, strict=True)
                if value is None
            )
        if dropped:
            logger.debug("semantic index: %d vectors of entries the store no longer holds", dropped)
        return dropped

    def _background_sync(self) -> None:
        try:
            self._save_semantic()  # (an index that saves only in full, Qdrant's: in full)
        except Exception as exc:  # losing a save costs misses after a crash, never answers
            logger.warning("saving the semantic index failed: %s", exc)

    def _load_semantic(self) -> None:
        """Load the saved index once (a missing or unreadable one starts empty)."""
        self._semantic_loaded = True
        path = self._semantic_path
        if self.semantic is None or path is None or not path.exists():
            return
        try:
            self.semantic.load(path)
        except Exception as exc:
            logger.warning(
                "the semantic index at %s could not be loaded (%s); starting empty", path, exc
            )

    async def __aenter__(self) -> AsyncCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- internals ----------------------------------------------------------------------

    async def _lookup(self, key: str, ctl: CacheControl) -> CacheResult:
        if not self._breaker.allow():
            return CacheResult(None, CacheInfo("bypass", key))
        started = time.perf_counter()
        try:
            data = await self.store.aget(key)
        except Exception as exc:
            self._store_failed("get", exc)
            return CacheResult(None, CacheInfo("miss", key))
        self._store_recovered()
        elapsed = time.perf_counter() - started
        self.metrics.lookup_seconds(self._store_name, elapsed)
        result, corrupt = self._examine(key, data, ctl, elapsed)
        if corrupt is not None:
            await self._discard(key, corrupt)
        return result

    def _examine(
        self,
        key: str,
        data: bytes | None,
        ctl: CacheControl,
        elapsed: float,
        *,
        remember: bool = True,
    ) -> tuple[CacheResult, EntryDecodeError | None]:
        """What the store's ``data`` for ``key`` makes of a lookup: a hit, or a miss, and
        the error of bytes that are no entry (the caller discards them). Not a coroutine:
        a hit pays for no extra await. ``remember``: keep the decoded entry in the memo
        (not from another thread)."""
        if data is None:
            logger.debug("CACHE MISS key=%s lookup_ms=%.3f", key, elapsed * 1000)
            return CacheResult(None, CacheInfo("miss", key), gone=True), None
        memo = self._memo
        remembered = memo.get(key) if memo is not None else None
        if remembered is not None and remembered[0] is data:
            entry = remembered[1]
        else:
            try:
                entry = decode(data)
            except EntryVersionError as exc:  # another deja's: not ours to read or delete
                logger.debug("CACHE MISS key=%s reason=%s", key, exc)
                return CacheResult(None, CacheInfo("miss", key)), None
            except EntryDecodeError as exc:
                return CacheResult(None, CacheInfo("miss", key), gone=True), exc
            if entry.created < ADMISSION_RULES_SINCE and not self._readmitted(key, entry):
                return CacheResult(None, CacheInfo("miss", key), gone=True, stale=True), None
            if memo is not None and remember:
                self._remember(memo, key, data, entry)
        now = self._clock()
        if not is_fresh(
            now=now, created=entry.created, expires=entry.expires, max_age=ctl.s_maxage
        ):
            logger.debug("CACHE MISS (stale) key=%s lookup_ms=%.3f", key, elapsed * 1000)
            expired = entry.expires is not None and now >= entry.expires
            return CacheResult(None, CacheInfo("miss", key), gone=expired, stale=True), None
        logger.debug("CACHE HIT key=%s lookup_ms=%.3f", key, elapsed * 1000)
        # positional: this runs on every hit (status, key, similarity, age, cost, saved)
        info = CacheInfo("hit", key, None, age(now, entry.created), 0.0, entry.cost_usd or 0.0)
        return CacheResult(None, info, entry), None

    async def _put(
        self,
        key: str,
        request: Request,
        response: Mapping[str, Any],
        ctl: CacheControl,
        *,
        cost: float,
        chunks: list[dict[str, Any]] | None = None,
        index: bool = True,
        since: Asked | None = None,
    ) -> bool:
        """Store an answer (``index``: and give it to the semantic tier; not after this
        request's own lookup by meaning failed, which would likely fail again, at the
        price of another embedder timeout).

        ``since``: when the answer was asked for. An invalidation made since that reaches
        its entry (a ``delete_tag`` of one of its tags, say, in this process or another)
        declared what it was made from stale: it is not kept (the entry is deleted again
        if the invalidation came while it was being written)."""
        if ctl.no_store:
            return False
        if since is not None and self._reached(since, key, request, ctl):
            return False
        ttl = kept_for(response, resolve_ttl(ctl.ttl, self._ttl), self._clock())
        if ttl is False:  # an audio answer whose audio expired already
            return False
        data = self._encoded(key, request, response, ctl, ttl, cost=cost, chunks=chunks)
        if data is None or not self._writable():
            return False
        tagging = self._tagging()
        try:
            # the tags first: an entry whose tag write failed would be stored where
            # invalidating the tag does not reach it (a tag naming no entry is harmless)
            await self._tag([key], request.tenant, ctl, ttl)
        except Exception as exc:
            # this answer is not stored; untagged ones still are (a damaged tag index
            # held every answer back once the writes' breaker opened on tagged ones)
            self._store_failed("tag", exc, trip_breaker=False)
            return False
        try:
            await self.store.aset(key, data, ttl)
        except Exception as exc:
            self._write_failed("set", exc)
            return False
        reconnected = self._reconnected(tagging)  # (before any other command: see there)
        self._writes_recovered()
        # (a fetch's answer reads the marks below: one asked before a drop is taken back)
        if not await self._tagged_still(
            [key],
            request.tenant,
            ctl,
            ttl,
            tagging,
            reconnected=reconnected,
            elsewhere=since is None,
        ):
            return False
        if since is not None and (
            self._reached(since, key, request, ctl)
            or await self._marked_after(since, key, request, ctl)
        ):
            try:  # an invalidation came while it was written, after its deletes maybe
                await self.store.adelete(key)
            except Exception as exc:
                self._store_failed("delete", exc, trip_breaker=False)
            return False
        if index:
            await self._index_semantic(key, request, ctl, ttl)
        return True

    def _asked(self) -> Asked:
        """The moment an answer is asked for (``since`` of :meth:`_put`)."""
        return Asked(self._invalidations.now(), self._clock())

    def _reached(self, since: Asked, key: str, request: Request, ctl: CacheControl) -> bool:
        """Whether an invalidation this process made after ``since`` reaches ``key``."""
        if not self._invalidations.since(
            since.count, key, request.tenant, self._namespace(ctl), ctl.tags
        ):
            return False
        logger.debug("CACHE SKIP key=%s reason=invalidated_while_fetched", key)
        return True

    async def _marked_after(
        self, since: Asked, key: str, request: Request, ctl: CacheControl
    ) -> bool:
        """Whether another process sharing the store made an invalidation reaching ``key``
        after ``since`` (by the marks :meth:`_mark` leaves; this process's own are left
        to :meth:`_reached`)."""
        tenant = request.tenant
        reaches = [
            _EVERY,
            _scope_reach(tenant, self._namespace(ctl)),
            _key_reach(key),
            *(_tag_reach(tag, tenant) for tag in ctl.tags),
        ]
        if not await self._marked_since(since.at, reaches):
            return False
        logger.debug("CACHE SKIP key=%s reason=invalidated_elsewhere", key)
        return True

    async def _marked_since(self, at: float, reaches: list[str]) -> bool:
        """Whether another process left a mark of one of ``reaches`` since ``at`` (the
        cache's clock). A store that cannot answer, or failed to a moment ago (a hung one:
        another timeout), says no: the answer is kept, as writes fail open."""
        shared = self._marks
        if shared is None or self._reads_failing:
            return False
        since = Asked(0, at)
        try:
            # the latest invalidation's stamp first: those it reaches are read only when
            # one came since (one read, not 3 and one per tag, on an S3 store)
            if not self._stamped_after(await shared.aget(self._mark_id(_LATEST)), since):
                return False
            stamps = await shared.aget_many([self._mark_id(reach) for reach in reaches])
        except Exception as exc:
            self._store_failed("get", exc, trip_breaker=False)
            return False
        return any(self._stamped_after(stamp, since, own=False) for stamp in stamps)

    def _stamped_after(self, stamp: object, since: Asked, *, own: bool = True) -> bool:
        """Whether ``stamp`` (a mark's value) is of an invalidation made after ``since``
        (and, unless ``own``, by another process: this one's are :meth:`_reached`'s)."""
        if not isinstance(stamp, bytes):
            return False  # (none, or not a mark this deja wrote)
        when, _, origin = stamp.partition(b" ")
        try:
            after = float(when) >= since.at - _MARK_SLACK
        except ValueError:
            return False
        return after and (own or origin != self._origin)

    def _mark_id(self, reach: str) -> str:
        """Where the mark of an invalidation reaching ``reach`` is kept: beside the
        entries, out of every prefix :meth:`clear` deletes."""
        return f"{self._key_prefix}{KEY_VERSION}{MARKS}{reach}"

    async def _mark(self, *reaches: str) -> None:
        """Leave the marks of an invalidation (before it deletes) for the answers the other
        processes sharing the store have in flight (:meth:`_marked_after`)."""
        shared = self._marks
        if shared is not None:
            stamp = f"{self._clock()!r} ".encode() + self._origin
            marks = {self._mark_id(reach): stamp for reach in (*reaches, _LATEST)}
            await shared.aset_many(marks, _MARK_TTL)

    async def _mark_deleting(self, *reaches: str) -> None:
        """:meth:`_mark` for a ``delete``, ``delete_tag`` or ``clear``, which goes on when
        the store refuses the marks for being full: a Redis full under ``noeviction``
        refuses every write, deletes aside (a disk out of space the same), and its
        operator's invalidations are what frees it (an answer another process would store
        meanwhile is refused as well). Any other failure is raised: the invalidation is
        not made (its retry is), rather than made without the marks that keep the other
        processes' answers in flight from being stored after it."""
        try:
            await self._mark(*reaches)
        except Exception as exc:
            if not _store_full(exc):
                raise
            self._store_failed("set", exc, trip_breaker=False)

    async def _refreshing(self, key: str) -> None:
        """A fresh answer is asked for ``key`` (``no-cache``): the calls in flight for it
        here and in the other processes, asked for before, are not stored after it (an
        older answer ending later replaced the refreshed one), nor joined any more here."""
        self._noted(key)
        if not self._writable():  # (a store refusing writes: not one timeout more each)
            return
        try:
            await self._mark(_key_reach(key))
        except Exception as exc:  # (the request goes on: a write that failed, as any)
            self._write_failed("set", exc)

    async def _left_behind(self, key: str, request: Request, ctl: CacheControl) -> None:
        """The call or stream in flight here for ``key``, if another process's invalidation
        reached it since it began, is joined no more (its answer, asked for before, is not
        stored; a caller arriving now gets one of its own). One read of the latest mark's
        stamp, for a caller that would join one: it waits for an upstream call anyway."""
        if self._marks is None:
            return
        slot = _stream_slot(key)
        with self._streams_lock:
            broadcast = self._streams.get(slot)
        labels = [self._flight.label_of(key), None if broadcast is None else broadcast.label]
        began = [label.began for label in labels if isinstance(label, _InFlight)]
        if began and await self._marked_after(Asked(0, min(began)), key, request, ctl):
            self._invalidating(lambda other, _: other == key)

    def _noted(self, key: str) -> None:
        """Note, before it goes, that ``key``'s entry is invalidated (see :meth:`_put`)."""
        self._invalidations.key(key)
        self._invalidating(lambda other, _: other == key)

    def _invalidating(self, reached: Callable[[str, object], bool]) -> None:
        """Callers of the calls and streams in flight that ``reached(key, label)`` selects
        (their label: an :class:`_InFlight`), coming from now on, do not join them
        (they were asked for before an invalidation)."""
        self._flight.detach(reached)
        with self._streams_lock:
            for slot in [
                slot
                for slot, broadcast in self._streams.items()
                if reached(slot[1] if isinstance(slot, tuple) else str(slot), broadcast.label)
            ]:
                del self._streams[slot]

    def _encoded(
        self,
        key: str,
        request: Request,
        response: Mapping[str, Any],
        ctl: CacheControl,
        ttl: float | None,
        *,
        cost: float,
        chunks: list[dict[str, Any]] | None = None,
    ) -> bytes | None:
        """The stored bytes of ``response``, or ``None`` when it is not to be stored."""
        verdict = self._admission.admit(response)
        if not verdict.ok:
            logger.debug("CACHE SKIP key=%s reason=%s", key, verdict.reason)
            return None
        now = self._clock()
        usage = response.get("usage")
        entry = Entry(
            response=dict(response),
            created=now,
            expires=expiry(now, ttl),
            model=request.upstream,
            tenant=request.tenant,
            namespace=self._namespace(ctl),
            tags=ctl.tags,
            usage=dict(usage) if isinstance(usage, Mapping) else None,
            cost_usd=self._saving(request, response, cost),  # what a hit on it saves
            chunks=chunks,
        )
        try:
            data = encode(entry, compress_min_bytes=self._compress_min_bytes)
        except TypeError as exc:  # orjson: a response that is not JSON
            logger.warning("CACHE SKIP key=%s reason=not_json (%s)", key, type(exc).__name__)
            return None
        if len(data) > self._max_entry_bytes:
            logger.debug("CACHE SKIP key=%s reason=too_large bytes=%d", key, len(data))
            return None
        return data

    async def _tag(
        self, keys: list[str], tenant: str | None, ctl: CacheControl, ttl: float | None
    ) -> None:
        """Record ``keys`` (of ``tenant``) under each of the request's tags (raises what the
        store raises)."""
        if not ctl.tags:
            return
        store = self._tag_store()
        namespace = self._namespace(ctl)
        for tag in ctl.tags:
            await store.atag(self._tag_id(tag, tenant, namespace), keys, ttl)
            await store.atag(self._tenant_tag_id(tag, tenant), keys, ttl)

    def _tagging(self) -> _Tagging:
        """The moment tags are written (see :meth:`_tagged_still`): taken just before, with
        no other command of this caller's in between."""
        order = self._connection_order
        mark = None if order is None else order.mark_connections()
        return _Tagging(self._invalidations.drops_ended(), self._clock(), mark)

    def _reconnected(self, tagging: _Tagging) -> bool:
        """Whether the entries' values, just written after their tag records (``tagging``),
        were answered on a connection the store opened after the first record was sent:
        they may have reached a server that restarted empty (no persistence) in between,
        and lost the records. Connections opened before, for other callers or for the
        first record, are no sign of it. Asked right after the value
        write, before this caller sends the store any other command (the store tells by
        the latest reply)."""
        order = self._connection_order
        mark = tagging.connections
        return order is not None and mark is not None and order.reconnected_since(mark)

    async def _tagged_still(
        self,
        keys: list[str],
        tenant: str | None,
        ctl: CacheControl,
        ttl: float | None,
        tagging: _Tagging,
        *,
        reconnected: bool,
        elsewhere: bool = True,
    ) -> bool:
        """Whether the entries ``keys`` just written are still named by their tag records.

        A ``delete_tag`` whose drop ran between their tag write (``tagging``) and their
        value write read their keys before the values were there, then forgot the
        records: the entries would be left with no record, out of reach of every later
        ``delete_tag``. They are tagged again; when that fails they are deleted
        (``False``) rather than kept unreachable. A drop in this process is known by
        :class:`Invalidations`; one in another process sharing the store, with
        ``elsewhere``, by the mark it leaves just before its drop (one read of the latest
        stamp; a writer that reads the marks anyway, a fetch's, leaves it to them).

        A server that restarted empty in between would have lost the records too; that is
        only suspected (``reconnected``: the values answered on a connection opened since,
        :meth:`_reconnected`), so they are tagged again, but when that fails they are kept
        (a warning, :meth:`_kept_untagged`): deleting would lose paid answers for a
        restart that most likely did not happen."""
        if not ctl.tags:
            return True
        dropped = self._invalidations.dropped_since(tagging.drops) or (
            elsewhere
            and await self._marked_since(tagging.at, [_tag_reach(tag, tenant) for tag in ctl.tags])
        )
        if not dropped and not reconnected:
            return True
        try:
            await self._tag(keys, tenant, ctl, ttl)
            return True
        except Exception as exc:
            self._store_failed("tag", exc, trip_breaker=False)
            if not dropped:
                self._kept_untagged(exc)
                return True
        try:
            for key in keys:
                await self.store.adelete(key)
        except Exception as exc:
            self._store_failed("delete", exc, trip_breaker=False)
        return False

    def _kept_untagged(self, exc: BaseException) -> None:
        """Entries were kept although their tag records could not be written again after
        a suspected restart (:meth:`_tagged_still`; the failure is counted as the store's):
        said once, then counted (:class:`~deja._recurring.Recurring`)."""
        said = self._untagged_lines.occurred(type(exc))
        if said is None:
            return
        _, unsaid, seconds = said
        more = f" ({unsaid} more since the last such line, {seconds:.0f} s ago)" if unsaid else ""
        logger.warning(
            "cache store %s: tagged entries kept whose tag records could not be written "
            "again after the store reconnected (%s: %s); had the server restarted empty, "
            "delete_tag would miss them until their TTL%s",
            self._store_name,
            type(exc).__name__,
            exc,
            more,
        )

    async def _index_semantic(
        self, key: str, request: Request, ctl: CacheControl, ttl: float | None
    ) -> None:
        """Give the semantic tier the stored entry ``key`` of ``request``."""
        if self.semantic is None or not ctl.semantic or self._semantic_breaker.is_open:
            return
        if not self._semantic_loaded:
            await asyncio.to_thread(self._load_semantic)
        namespace = self._namespace(ctl)
        try:
            context_key = self._context_key(request, namespace)
        except KeyBuilderError as exc:
            self._unscoped(exc)
            return
        try:
            await self.semantic.astore(
                request, key, ttl=ttl, namespace=namespace, context_key=context_key
            )
        except Exception as exc:  # the semantic tier is an optimisation: fail open
            self._semantic_failed(exc)
        self._semantic_used()

    def _unscoped(self, exc: KeyBuilderError) -> None:
        """The custom key builder failed on ``request`` without its final text, the key
        that scopes a lookup by meaning (what the builder keeps apart beyond the prompt):
        such a request skips the semantic tier. Warned of once per breaker window, as the
        builder's failure; the tier itself is well (its breaker is not touched)."""
        now = time.monotonic()
        if now - self._unscoped_warned >= self._breaker.reset_after:
            self._unscoped_warned = now
            logger.warning(
                "the key builder failed on a request without its final user text, which "
                "scopes the lookup by meaning (%s): such requests skip the semantic tier",
                exc,
            )

    @property
    def semantic_problem(self) -> str | None:
        """Why the semantic tier is being skipped (its embedder or index failed several
        times in a row; it is tried again after a while), or ``None``: the error's kind
        (and status), not its text, which may name an account or a key."""
        return self._semantic_error if self._semantic_breaker.resting else None

    def _semantic_late(self) -> None:
        """A lookup by meaning outlasted its caller's timeout: a failure of the tier (a
        hung embedder must open its breaker, though each lookup is given up). The callers
        late within one second count once (they waited for the same slow calls: one spike
        with a dozen callers opened the breaker of a healthy embedder)."""
        now = time.monotonic()
        late = self._late
        if late is None or now - late[0] > 1.0:
            late = self._late = (now, TimeoutError("a lookup by meaning outlasted its call"))
        self._semantic_failed(late[1])

    def _semantic_failed(self, exc: BaseException) -> None:
        # the embedder's or the vector index's failure: the semantic tier's, not the store's
        self.metrics.semantic_error(type(exc).__name__)
        now = time.monotonic()
        if self.semantic is not None and self.semantic.refused(exc):
            # the embedder refused that one input (too long, say) and embeds others: only
            # this lookup fails (five long prompts in a row opened the breaker for every
            # tenant). Neither a failure nor a success: a probe it was is given back.
            self._semantic_breaker.release()
            if now - self._refusal_warned >= self._semantic_breaker.reset_after:
                self._refusal_warned = now
                logger.warning(
                    "the embedder refused an input (%s: %s): that lookup is skipped; if it"
                    " refuses every input, check its settings",
                    type(exc).__name__,
                    exc,
                )
            return
        if now - self._semantic_warned >= self._breaker.reset_after:
            self._semantic_warned = now
            logger.warning(
                "the semantic tier failed (%s: %s); answering from the exact tier only",
                type(exc).__name__,
                exc,
            )
        # one failed call, shared by the callers who waited (or a token: its lookups gave up
        # within the same second, each with an error of its own)
        failure = getattr(exc, "failure", exc)
        if failure is self._semantic_last:
            return
        self._semantic_last = failure
        status = getattr(exc, "status_code", None)
        self._semantic_error = type(exc).__name__ + (f" ({status})" if status else "")
        if self._semantic_breaker.failure():
            self.metrics.semantic_breaker_state(True)
            logger.warning(
                "the semantic tier failed %d times in a row (%s: %s): misses skip it for %g s",
                self._semantic_breaker.threshold,
                type(exc).__name__,
                exc,
                self._semantic_breaker.reset_after,
            )

    def _semantic_recovered(self) -> None:
        self._semantic_last = None
        if self._semantic_breaker.success():
            self.metrics.semantic_breaker_state(False)
            logger.warning("the semantic tier is answering again")

    def _count(self, result: CacheResult) -> CacheResult:
        status = result.info.status
        if status in ("hit", "semantic_hit"):
            if status == "hit":
                self._hits += 1
            else:
                self._semantic_hits += 1
            entry = result.entry
            tokens = entry.total_tokens if entry is not None else _response_tokens(result.response)
            self._saved_tokens += tokens
            self._saved_usd += result.info.saved_usd
            self.metrics.saved(tokens, result.info.saved_usd)
        elif status == "miss":
            self._misses += 1
        elif status == "bypass":
            self._bypasses += 1
        self.metrics.request("semantic" if status == "semantic_hit" else "exact", status)
        return result

    def _remember(
        self, memo: dict[str, tuple[bytes, StoredEntry]], key: str, data: bytes, entry: StoredEntry
    ) -> None:
        size = len(data)
        if size > _MEMO_MAX_VALUE:
            return
        before = memo.get(key)
        if before is not None:  # the same bytes: nothing new; others (stored again): replaced
            if before[0] is data:
                return
            self._memo_bytes -= len(before[0])
        if len(memo) >= _MEMO_ENTRIES or self._memo_bytes + size > _MEMO_BYTES:
            memo.clear()
            self._memo_bytes = 0
        memo[key] = (data, entry)
        self._memo_bytes += size

    def _control(self, control: Mapping[str, Any] | CacheControl | None) -> CacheControl:
        """The options of a request that stores or may store: validated, in this cache's
        mode."""
        ctl = in_mode(parse_controls(control), self._mode)
        if ctl.tags and not self._tags_supported:
            raise ControlError(
                f"store {self._store_name!r} has no tag index, so entries cannot be tagged",
                option="tags",
            )
        return ctl

    def _tag_store(self) -> TagIndex:
        store = self.store
        if not isinstance(store, TagIndex):
            raise ControlError(
                f"store {self._store_name!r} has no tag index, so tags are not supported",
                option="tags",
            )
        return store

    def _tag_id(self, tag: str, tenant: str | None, namespace: str | None) -> str:
        return f"{self._key_prefix}{KEY_VERSION}:{scope_hash(tenant, namespace)}:#{tag}"

    def _tenant_tag_id(self, tag: str, tenant: str | None) -> str:
        """The record of ``tag`` over every namespace of ``tenant``."""
        return f"{self._key_prefix}{KEY_VERSION}:{tenant_hash(tenant)}:*#{tag}"

    async def _discard(self, key: str, exc: EntryDecodeError) -> None:
        """An undecodable entry: count it, and delete it so it stops costing lookups."""
        self._store_failed("decode", exc, trip_breaker=False)
        try:
            await self.store.adelete(key)
        except Exception as delete_exc:
            # a write: a store that cannot delete (read-only, full) still answers lookups
            self._write_failed("delete", delete_exc)

    def _readmitted(self, key: str, entry: StoredEntry) -> bool:
        """Whether an entry stored before this deja's admission rules (an older deja kept
        answers a server cut off itself, or that stopped abnormally) passes them now: one
        that does not is a miss, replaced by the next answer (each such hit was a partial
        answer for the entry's whole TTL, and during a rolling upgrade the older nodes
        went on storing them)."""
        try:
            verdict = self.admission.admit(entry.response)
        except Exception:  # (not a JSON object: the decoder's to say, later)
            return True
        if not verdict.ok:
            logger.info("CACHE MISS key=%s reason=stored-before-%s", key, verdict.reason)
        return verdict.ok

    def _writable(self) -> bool:
        """Whether to write to the store now: not while it is skipped (its lookups fail;
        they probe it), nor while it refuses writes (then one write probes it)."""
        return not self._breaker.is_open and self._writes.allow()

    def _write_failed(self, op: str, exc: BaseException) -> None:
        """A write failed: counted and logged like any store failure, it opens the writes'
        breaker, not the one that skips lookups (a full store still answers them)."""
        self._store_failed(op, exc, trip_breaker=False)
        if not isinstance(exc, StoreBusy) and self._writes.failure():
            self.metrics.write_breaker_state(self._store_name, True)
            logger.warning(
                "cache store %s refuses writes (%s: %s)%s; writes retried in %s s",
                self._store_name,
                type(exc).__name__,
                exc,
                # a store down fails both: nothing is served from it then
                ", and its reads fail too: nothing is served from it or stored"
                if self._reads_failing or self._breaker.is_open
                else ": what it holds is still served, new answers are not stored",
                self._writes.reset_after,
            )

    def _writes_recovered(self) -> None:
        if self._writes.success():
            self.metrics.write_breaker_state(self._store_name, False)
            logger.warning("cache store %s accepts writes again", self._store_name)

    def _renew(self) -> None:
        """Fresh single-flights, live streams and locks: at start, and in a forked child
        (where the parent's threads that led a call, or held a lock, are not)."""
        self._flight: AsyncSingleFlight[CacheResult] = AsyncSingleFlight(
            timed_out=lambda error: isinstance(error, UpstreamTimeoutError)
        )
        self._batch_flight: AsyncSingleFlight[Any] = AsyncSingleFlight(
            timed_out=lambda error: isinstance(error, UpstreamTimeoutError)
        )
        # live streams by (event loop, key): a stream's readers wait on its loop's events
        self._streams: dict[object, AsyncBroadcast] = {}
        self._streams_lock = threading.RLock()  # a finalizer may end a stream while held
        # this process's marks (:meth:`_mark`), told from the other processes'
        self._origin = os.urandom(8).hex().encode()
        self._semantic_saving = threading.Lock()  # one save at a time, close() after it
        self._semantic_saver = None
        # the calls of this process holding their key's cross-process lock, by
        # (event loop, key): an identical call leading after them was detached from them
        self._lock_holders: set[object] = set()
        self._semantic_pruning = threading.Lock()  # held by the prune thread running
        self._prune_pending: deque[str] = deque()  # the keys of the round under way

    def _store_recovered(self) -> None:
        self._reads_failing = False
        if self._breaker.success():
            self.metrics.breaker_state(self._store_name, False)
            if self._outage_said:  # one "again" per warning (a flapping store: not each)
                self._outage_said = False
                logger.warning("cache store %s is answering again", self._store_name)

    def _store_failed(self, op: str, exc: BaseException, *, trip_breaker: bool = True) -> None:
        self._store_errors += 1
        self.metrics.store_error(self._store_name, op)
        # a burst that found no free connection says nothing of the store's health:
        # skipping the store for it would turn every stored answer into a paid call
        trip_breaker = trip_breaker and not isinstance(exc, StoreBusy)
        if trip_breaker:
            self._reads_failing = True
        if trip_breaker and self._breaker.failure():
            self.metrics.breaker_state(self._store_name, True)
        now = time.monotonic()
        if now - self._last_warning >= self._breaker.reset_after:
            self._last_warning = now
            self._outage_said = True
            logger.warning(
                "cache store %s failed on %s (%s: %s)%s",
                self._store_name,
                op,
                type(exc).__name__,
                exc,
                "; serving without the cache" if op == "get" else "",
            )
