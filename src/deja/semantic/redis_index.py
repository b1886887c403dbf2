"""A :class:`~deja.semantic.index.VectorIndex` on Redis vector search (RediSearch).

::

    index = RedisVectorIndex(url="redis://cache.internal:6379/0", dim=384)

Every entry is a hash under ``key_prefix + id`` with the fields ``scope`` and ``root``
(TAG fields: the scope and its first ``/`` segment), ``payload`` (kept, not indexed),
``expires`` (the entry's expiry time by this index's clock, empty for "never"),
``vec`` (the vector as little-endian float32) and, once reported, ``strikes`` (changed
atomically on the server by :meth:`RedisVectorIndex.strike`, so every process sees one
count). The RediSearch index over them::

    FT.CREATE <index_name> ON HASH PREFIX 1 <key_prefix> SCHEMA
        scope TAG SEPARATOR "|" CASESENSITIVE  root TAG SEPARATOR "|" CASESENSITIVE
        payload TEXT NOINDEX
        vec VECTOR HNSW 10 TYPE FLOAT32 DIM <dim> DISTANCE_METRIC COSINE M <m> EF_CONSTRUCTION <ef>

is created on first use (never in the constructor). An existing index is reused only if
``FT.INFO`` shows this definition (the prefix ``key_prefix`` alone, FLOAT32 COSINE vectors of
``dim``, ``CASESENSITIVE`` tags split on ``|``); else :class:`~deja.errors.ConfigError`
names what differs. RediSearch keeps indexes in database 0 only, so a URL or client on
another database is refused in the constructor. ``search`` is one ``FT.SEARCH`` whose query
carries the scope filter: ``(@scope:{<scope>})=>[KNN k @vec $blob EF_RUNTIME <ef> AS dist]``,
so a small scope is never crowded out by a large one. It asks for a server-side ``TIMEOUT``
of 1.5 x ``op_timeout``: under RediSearch's default ``ON_TIMEOUT RETURN``, a shorter server
timeout answers a partial (often empty) result that looks like a miss; a partial result
that the server reports (RESP3 ``warning``) raises :class:`~deja.errors.StoreError`. A hash
under ``key_prefix`` whose fields do not parse (written by another program, or damaged) is
skipped, with one warning per index.

Expiry: an entry given ``expires`` gets a Redis TTL (``PEXPIREAT``), so Redis removes it
by itself; because Redis expires keys lazily (and the clock may be injected), ``search``
also drops entries whose stored ``expires`` has passed by this index's clock. With an
injected clock, the Redis TTL is shifted by the clock's offset from the wall clock, so the
entry lives as long on the server as the fake clock says.

Scope tags: a TAG value cannot hold the separator, and RediSearch trims blanks and folds
case by default, so the stored value is the scope with ``%``, ``|`` and whitespace
percent-encoded (``""`` becomes ``%``) and the fields are ``CASESENSITIVE``; in queries
every ASCII punctuation and blank is backslash-escaped.

Bulk removal (:meth:`RedisVectorIndex.remove_scope`, :meth:`RedisVectorIndex.clear`): a
deleted hash is also dropped from the HNSW graph, synchronously, at about 0.1 to 1 ms per
vector (more with a larger ``dim`` or ``m``), so a bulk removal never sends one big command.
The keys are found in pages of 500 (an ``FT.AGGREGATE`` cursor, or ``SCAN``) and deleted by
``UNLINK`` commands sent one after the other, each sized from the time the previous ones took
to last about a tenth of ``op_timeout``. They are not pipelined: the server runs the commands
it reads in one go before it replies, so a pipeline's first reply waits for several of them.
A removal of 100k entries takes tens of seconds overall, no command more than a few tens of ms.

Only standalone Redis (or Valkey with the RediSearch module) is supported: RediSearch on
a Redis Cluster needs the coordinator of Redis Enterprise/Stack, which redis-py's cluster
client cannot drive, so a cluster URL, ``startup_nodes``/``cluster=True`` or a server that
reports ``cluster_enabled:1`` raises :class:`~deja.errors.ConfigError`. Redis failures
raise :class:`~deja.errors.StoreError` (the semantic cache fails open on them); the
defaults are strict (250 ms per command and to connect, no retries).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from deja.errors import ConfigError, DejaError, MissingDependencyError, StoreError
from deja.semantic.index import Neighbor, checked_vector

__all__ = ["RedisVectorIndex", "escape_tag", "tag_value"]

logger = logging.getLogger(__name__)

_CLUSTER_MESSAGE = (
    "RediSearch vector indexes need a standalone Redis (or Valkey) server with the "
    "RediSearch module, not a Redis Cluster"
)
_PAGE = 500  # rows per FT.AGGREGATE cursor read, keys per SCAN (a hint to the server)
_FIRST_BATCH = 16  # keys in the first UNLINK of a bulk removal; then sized by the time taken
_MAX_BATCH = 1000
_BATCH_SHARE = 0.1  # the share of op_timeout one UNLINK of a bulk removal aims at
_CURSOR_IDLE_MS = 60_000  # a cursor left behind by a failed removal is dropped after this
_MAX_PASSES = 8  # remove_scope passes (each re-reads the scope) before it returns
_MAX_FETCH = 10_000
_QUERY_TIMEOUT_SHARE = 1.5  # the server's timeout of one search, as a share of op_timeout
_FIELDS = ("dist", "payload", "expires", "strikes")
# add delta to an existing entry's strikes, never below 0; -1 when there is no entry
_STRIKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = redis.call('HINCRBY', KEYS[1], 'strikes', ARGV[1])
if n < 0 then
  redis.call('HSET', KEYS[1], 'strikes', 0)
  n = 0
end
return n
"""


def tag_value(scope: str) -> str:
    """The TAG value stored for ``scope`` (an injective encoding; see the module doc)."""
    if not scope:
        return "%"
    out: list[str] = []
    for ch in scope:
        if ch in {"%", "|"} or ch.isspace() or ord(ch) < 32 or ord(ch) == 127:
            out.append("".join(f"%{b:02X}" for b in ch.encode()))
        else:
            out.append(ch)
    return "".join(out)


def escape_tag(value: str) -> str:
    """``value`` escaped for a RediSearch TAG query ``@field:{...}``."""
    return "".join(
        "\\" + ch if ord(ch) < 128 and not (ch.isalnum() or ch == "_") else ch for ch in value
    )


def _escape_glob(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _root(scope: str) -> str:
    return scope.split("/", 1)[0]


def _text(value: Any) -> str:
    # lenient: for server replies (names, FT.INFO); entry fields are parsed by _neighbor
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class _DamagedRow(ValueError):
    """A stored hash whose fields do not parse (written by another program, or damaged)."""


def _positive(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)


class _Batches:
    """The size of the next ``UNLINK`` of one bulk removal: the number of keys that should
    take ``budget`` seconds, by the time the previous ones took (a full batch may grow at
    most 4x; a slow one shrinks at once)."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.size = _FIRST_BATCH

    def took(self, keys: int, seconds: float) -> None:
        if keys < 1 or (keys < self.size and seconds <= self.budget):
            return  # a short, fast batch (the end of a page) tells nothing about the rate
        fit = int(keys * self.budget / max(seconds, 1e-6))
        self.size = max(1, min(fit, self.size * 4, _MAX_BATCH))


def _db_of(url: str, client: Any) -> int | None:
    """The database number the index would use (``None`` when it cannot be told): the
    injected client's ``db``, else the URL's ``?db=`` or path (redis-py's order)."""
    if client is not None:
        pool = getattr(client, "connection_pool", None)
        value: Any = getattr(pool, "connection_kwargs", {}).get("db", 0)
    else:
        from redis.connection import parse_url  # (what from_url reads the URL with)

        try:
            value = parse_url(url).get("db", 0)  # type: ignore[no-untyped-call]
        except ValueError:
            return None  # not a URL redis-py reads (a cluster's): it says so itself
    try:
        return int(value)
    except (TypeError, ValueError):
        return None  # redis-py refuses it itself


def _is_cluster_url(url: str) -> bool:
    parts = urlsplit(url)
    if "cluster" in parts.scheme.lower():
        return True
    query = parse_qs(parts.query)
    return any(v.lower() in ("1", "true", "yes") for v in query.get("cluster", []))


class RedisVectorIndex:
    """A :class:`~deja.semantic.index.VectorIndex` stored in Redis and searched by RediSearch.

    Keyword-only options:

    * ``url``: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS) of a
      standalone server with the RediSearch module;
    * ``dim``: the vector size (384 for the embedded model);
    * ``index_name`` / ``key_prefix``: the RediSearch index and the prefix of its hashes
      (two indexes on one server need distinct ones);
    * ``op_timeout`` / ``connect_timeout``: seconds per command / to connect (no retries);
    * ``m`` / ``ef_construction`` / ``ef_runtime``: HNSW parameters;
    * ``clock``: wall clock for expiry (inject a fake in tests);
    * ``client``: a ready sync redis-py ``Redis`` client built with
      ``decode_responses=False`` (search returns the binary vectors; used as given, never
      closed).

    Thread-safe (redis-py's pool); no I/O happens before the first call.
    """

    def __init__(
        self,
        *,
        url: str = "redis://127.0.0.1:6379/0",
        dim: int = 384,
        index_name: str = "deja-semantic",
        key_prefix: str = "deja-vec:",
        op_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        m: int = 16,
        ef_construction: int = 200,
        ef_runtime: int = 64,
        max_connections: int = 50,
        clock: Callable[[], float] = time.time,
        client: Any = None,
        startup_nodes: Sequence[object] | None = None,
        cluster: bool = False,
    ) -> None:
        if client is None:
            try:
                import redis  # noqa: F401 - only to fail early, with the pip command to run
            except ImportError as exc:
                raise MissingDependencyError("redis", "redis") from exc
        if startup_nodes or cluster or _is_cluster_url(url):
            raise ConfigError(_CLUSTER_MESSAGE)
        if client is not None and type(client).__name__ == "RedisCluster":
            raise ConfigError(_CLUSTER_MESSAGE)
        for name, value in (("dim", dim), ("m", m), ("ef_construction", ef_construction)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1")
        if isinstance(ef_runtime, bool) or not isinstance(ef_runtime, int) or ef_runtime < 1:
            raise ValueError("ef_runtime must be an int >= 1")
        if not index_name or not key_prefix:
            raise ValueError("index_name and key_prefix must not be empty")
        db = _db_of(url, client)
        if db is not None and db != 0:
            # RediSearch refuses every index outside db 0 ("Cannot create index on db != 0")
            raise ConfigError(
                f"RediSearch indexes only live in database 0, not {db}: use db 0 (a distinct "
                "index_name and key_prefix keep applications apart)"
            )
        self._url = url
        self._dim = dim
        self.index_name = index_name
        self.key_prefix = key_prefix
        self._op_timeout = _positive(op_timeout, "op_timeout")
        self._connect_timeout = _positive(connect_timeout, "connect_timeout")
        self.m = m
        self.ef_construction = ef_construction
        self.ef_runtime = ef_runtime
        self._max_connections = max_connections
        self._clock = clock
        self._client: Any = client
        self._own_client = client is None
        self._lock = threading.Lock()
        self._ready = False
        self._unlink_command = "UNLINK"  # DEL on a server without UNLINK (Redis < 4)
        self._warned = False  # a damaged hash was skipped (logged once at WARNING)
        # RediSearch's own query timeout (server default 500 ms) with its default policy
        # ON_TIMEOUT RETURN answers a partial (often empty) result, indistinguishable from
        # a miss in RESP2: each search asks for a timeout a little longer than op_timeout,
        # so that this client gives up first (a StoreError) instead
        self._query_timeout_ms = math.ceil(self._op_timeout * 1000 * _QUERY_TIMEOUT_SHARE)

    def __repr__(self) -> str:
        parts = urlsplit(self._url)
        where = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"
        return f"RedisVectorIndex({where}, index={self.index_name!r}, dim={self._dim})"

    @property
    def process_local(self) -> bool:
        """False: the entries live in Redis, shared by every process that uses it."""
        return False

    @property
    def dim(self) -> int:
        """Vector size this index holds."""
        return self._dim

    # -- connection ---------------------------------------------------------------------

    def _redis(self) -> Any:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry

                pool = redis.BlockingConnectionPool.from_url(
                    self._url,
                    retry=Retry(NoBackoff(), 0),
                    socket_timeout=self._op_timeout,
                    socket_connect_timeout=self._connect_timeout,
                    max_connections=self._max_connections,
                    timeout=self._connect_timeout,
                    protocol=2,
                )
                self._client = redis.Redis(connection_pool=pool)
            return self._client

    def _call(self, *args: Any) -> Any:
        """One command; redis failures become :class:`StoreError`."""
        try:
            return self._redis().execute_command(*args)
        except DejaError:
            raise
        except Exception as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> DejaError:
        try:
            import redis
        except ImportError:  # pragma: no cover - only with an injected client
            return StoreError(f"redis vector index {self.index_name!r} failed: {exc}")
        if isinstance(exc, redis.RedisError | OSError):
            return StoreError(f"redis vector index {self.index_name!r} failed: {exc}")
        if isinstance(exc, UnicodeDecodeError):  # the float32 vectors are not text
            return StoreError(
                "the redis client decodes responses; build it with decode_responses=False"
            )
        raise exc

    def _ensure(self) -> None:
        """Create the RediSearch index if this process has not seen it yet."""
        if self._ready:
            return
        info = self._call("INFO", "cluster")
        if isinstance(info, bytes | str):
            enabled = "cluster_enabled:1" in _text(info)
        else:
            enabled = str(info.get("cluster_enabled", info.get(b"cluster_enabled", 0))) == "1"
        if enabled:
            raise ConfigError(_CLUSTER_MESSAGE)
        vector = [
            "TYPE", "FLOAT32", "DIM", self._dim, "DISTANCE_METRIC", "COSINE",
            "M", self.m, "EF_CONSTRUCTION", self.ef_construction,
        ]  # fmt: skip
        try:
            self._redis().execute_command(
                "FT.CREATE", self.index_name, "ON", "HASH",
                "PREFIX", 1, self.key_prefix,
                "SCHEMA",
                "scope", "TAG", "SEPARATOR", "|", "CASESENSITIVE",
                "root", "TAG", "SEPARATOR", "|", "CASESENSITIVE",
                "payload", "TEXT", "NOINDEX",
                "vec", "VECTOR", "HNSW", len(vector), *vector,
            )  # fmt: skip
        except Exception as exc:
            message = str(exc).lower()
            if "already exists" in message:
                self._check_existing()
            elif "unknown command" in message:
                raise ConfigError(
                    f"the Redis server has no RediSearch module (FT.CREATE failed: {exc}); "
                    "load it with --loadmodule redisearch.so or use Redis Stack / Redis 8"
                ) from exc
            else:
                raise self._translate(exc) from exc
        self._ready = True

    def _check_existing(self) -> None:
        """Refuse an existing index that is not the one this index would create: another
        key prefix (a removal would delete another application's keys), another vector
        type, metric or size (entries silently unindexed or wrongly ranked), or scope tags
        that fold case or split on another separator (one scope would match another)."""
        info = _pairs(self._call("FT.INFO", self.index_name))
        definition = _pairs(info.get("index_definition") or [])
        problems: list[str] = []
        prefixes = sorted(_text(p) for p in definition.get("prefixes") or [])
        if prefixes != [self.key_prefix]:
            problems.append(f"key prefixes {prefixes}, not [{self.key_prefix!r}]")
        key_type = _text(definition.get("key_type") or "HASH")
        if key_type.upper() != "HASH":
            problems.append(f"{key_type} keys, not HASH")
        attributes: dict[str, tuple[dict[str, str], set[str]]] = {}
        for attribute in info.get("attributes") or []:
            fields, flags = _attribute(attribute)
            attributes[fields.get("attribute") or fields.get("identifier", "")] = fields, flags
        for name in ("scope", "root"):
            fields, flags = attributes.get(name, ({}, set()))
            got = (fields.get("type", "none").upper(), fields.get("separator"))
            if got != ("TAG", "|") or "CASESENSITIVE" not in flags:
                shown = " ".join([got[0], f"SEPARATOR {got[1]!r}", *sorted(flags)])
                problems.append(f"field {name!r} is {shown}, not TAG SEPARATOR '|' CASESENSITIVE")
        fields, _ = attributes.get("vec", ({}, set()))
        wanted = {"type": "VECTOR", "data_type": "FLOAT32", "distance_metric": "COSINE"}
        for what, value in wanted.items():
            found = fields.get(what, "none")
            if found.upper() != value:
                problems.append(f"field 'vec' has {what} {found}, not {value}")
        dim = fields.get("dim")
        if dim is not None and dim != str(self._dim):
            problems.append(f"it holds {dim}-d vectors, not {self._dim}-d")
        if problems:
            raise ConfigError(
                f"the RediSearch index {self.index_name!r} was not created by deja as "
                f"configured: {'; '.join(problems)}; give this index another index_name "
                "and key_prefix"
            )

    def _run(self, *args: Any) -> Any:
        """A command on the index; re-creates it once if the server lost it (a restart)."""
        self._ensure()
        try:
            return self._redis().execute_command(*args)
        except Exception as exc:
            if "no such index" in str(exc).lower() or "unknown index" in str(exc).lower():
                self._ready = False
                self._ensure()
                return self._call(*args)
            raise self._translate(exc) from exc

    def close(self) -> None:
        """Disconnect (only a client this index built itself; idempotent)."""
        with self._lock:
            client, ready = self._client, self._own_client
            if ready:
                self._client = None
        if ready and client is not None:
            client.close()
            client.connection_pool.disconnect()

    # -- writes -------------------------------------------------------------------------

    def add(
        self,
        id: str,
        vector: Any,
        *,
        scope: str,
        expires: float | None = None,
        payload: str | None = None,
    ) -> None:
        """Insert or replace one entry (the old hash is deleted first, in one transaction)."""
        blob = self._blob(vector)
        self._ensure()
        key = self.key_prefix + id
        fields: dict[str, Any] = {
            "scope": tag_value(scope),
            "root": tag_value(_root(scope)),
            "vec": blob,
            "expires": "" if expires is None else repr(float(expires)),
        }
        if payload is not None:
            fields["payload"] = payload
        try:
            pipe = self._redis().pipeline(transaction=True)
            pipe.delete(key)
            pipe.hset(key, mapping=fields)
            if expires is not None:
                pipe.pexpireat(key, self._server_deadline_ms(expires))
            pipe.execute()
        except Exception as exc:
            raise self._translate(exc) from exc

    def _server_deadline_ms(self, expires: float) -> int:
        # the wall-clock time at which the entry expires by self._clock
        offset = 0.0 if self._clock is time.time else time.time() - self._clock()
        at = expires + offset
        return max(1, math.ceil(at * 1000))

    def remove(self, id: str) -> bool:
        """Remove one entry; returns whether it existed."""
        self._ensure()
        return bool(self._call("DEL", self.key_prefix + id))

    def strike(self, id: str, delta: int) -> int | None:
        """Add ``delta`` to the entry's strikes (never below 0), atomically on the server;
        the new count, or ``None`` when there is no entry ``id``."""
        self._ensure()
        count = int(self._call("EVAL", _STRIKE, 1, self.key_prefix + id, int(delta)))
        return None if count < 0 else count

    def remove_scope(self, scope: str) -> int:
        """Remove every entry of ``scope`` and of its sub-scopes (``scope/...``).

        The entries are read from an ``FT.AGGREGATE`` cursor over the scope's ``root`` tag
        (500 per read) and deleted as they come (see the module doc). A top-level scope (no
        ``/``) is the whole root; for a deeper one the stored ``scope`` of each entry of the
        root is compared here: a prefix query (``@scope:{a/b/*}``) cannot be used, since
        RediSearch expands it to the first ``MAXEXPANSIONS`` tag values (200 by default),
        emptied ones included until its garbage collector runs, so a scope of more sub-scopes
        than that would never be emptied. The pass is repeated until one finds nothing: a
        garbage collection during a cursor can make it skip a few entries. Entries added
        meanwhile may stay. While RediSearch is still indexing the existing hashes (an
        index just re-created, a server loading its data: ``percent_indexed`` below 1), the
        index does not list them all, so every key under ``key_prefix`` is then also read
        by ``SCAN`` and its ``scope`` field compared. Returns the number of entries removed.
        """
        self._ensure()
        building = self._indexing()
        removed = self._remove_indexed(scope)
        if building or self._indexing():
            removed += self._sweep(scope)
        return removed

    def _indexing(self) -> bool:
        """Whether RediSearch is still indexing existing hashes (FT.INFO)."""
        info = _pairs(self._run("FT.INFO", self.index_name))
        try:
            percent = float(_text(info.get("percent_indexed", 1)))
            busy = int(_text(info.get("indexing", 0)))
        except ValueError:
            return True  # unknown: the sweep is always right, only slower
        return percent < 1 or busy != 0

    def _sweep(self, scope: str) -> int:
        """Remove the keys under ``key_prefix`` whose ``scope`` field is ``scope`` or below
        it, found by ``SCAN`` (indexed or not)."""
        exact, below = tag_value(scope).encode(), tag_value(scope + "/").encode()
        batches = _Batches(self._op_timeout * _BATCH_SHARE)
        removed = 0
        for mine in self._own_keys():
            try:
                pipe = self._redis().pipeline(transaction=False)
                for key in mine:
                    pipe.hget(key, "scope")
                scopes = pipe.execute(raise_on_error=False)
            except Exception as exc:
                raise self._translate(exc) from exc
            doomed = [
                key
                for key, value in zip(mine, scopes, strict=True)
                if isinstance(value, bytes | str)  # not an error (a key of another type)
                and (_raw(value) == exact or _raw(value).startswith(below))
            ]
            removed += self._unlink(doomed, batches)
        return removed

    def _own_keys(self) -> Iterator[list[Any]]:
        """The keys under ``key_prefix``, a ``SCAN`` page at a time (pages with none left
        out)."""
        pattern = _escape_glob(self.key_prefix) + "*"
        prefix = self.key_prefix.encode()
        cursor: Any = 0
        while True:
            cursor, keys = self._call("SCAN", cursor, "MATCH", pattern, "COUNT", _PAGE)
            mine = [k for k in keys if _raw(k).startswith(prefix)]
            if mine:
                yield mine
            if int(cursor) == 0:
                return

    def _remove_indexed(self, scope: str) -> int:
        """:meth:`remove_scope` through the index (the entries it lists)."""
        root = _root(scope)
        query = f"@root:{{{escape_tag(tag_value(root))}}}"
        if scope == root:
            load: tuple[str, ...] = ("@__key",)
            wanted: Callable[[dict[str, Any]], bool] | None = None
        else:
            exact, below = tag_value(scope).encode(), tag_value(scope + "/").encode()

            def wanted(row: dict[str, Any]) -> bool:
                value = row.get("scope")
                if value is None:
                    return False
                stored = _raw(value)  # bytes: a foreign value need not be UTF-8
                return stored == exact or stored.startswith(below)

            load = ("@__key", "@scope")
        batches = _Batches(self._op_timeout * _BATCH_SHARE)
        removed = 0
        idle = 0
        for _ in range(_MAX_PASSES):
            found, gone = self._remove_pass(query, load, wanted, batches)
            removed += gone
            if found == 0:
                break
            # keys found but not removed (expired meanwhile): once more, then give up
            idle = idle + 1 if gone == 0 else 0
            if idle >= 2:
                break
        return removed

    def _remove_pass(
        self,
        query: str,
        load: tuple[str, ...],
        wanted: Callable[[dict[str, Any]], bool] | None,
        batches: _Batches,
    ) -> tuple[int, int]:
        """One cursor pass over ``query``: (keys found, keys removed)."""
        reply = self._run(
            "FT.AGGREGATE", self.index_name, query,
            "LOAD", len(load), *load,
            "WITHCURSOR", "COUNT", _PAGE, "MAXIDLE", _CURSOR_IDLE_MS,
            "DIALECT", 2,
        )  # fmt: skip
        found = removed = 0
        cursor = 0
        try:
            while True:
                rows, cursor = _cursor_page(reply)
                keys = [
                    row["__key"]
                    for row in rows
                    if row.get("__key") is not None and (wanted is None or wanted(row))
                ]
                found += len(keys)
                removed += self._unlink(keys, batches)
                if not cursor:
                    return found, removed
                try:
                    reply = self._redis().execute_command(
                        "FT.CURSOR", "READ", self.index_name, cursor, "COUNT", _PAGE
                    )
                except Exception as exc:
                    if "cursor not found" not in str(exc).lower():
                        raise self._translate(exc) from exc
                    # idle past MAXIDLE (or the server restarted): counted as found, so
                    # that another pass reads the rest
                    cursor = 0
                    return max(found, 1), removed
        except BaseException:
            if cursor:  # free the server's cursor now rather than after MAXIDLE
                with contextlib.suppress(Exception):
                    self._redis().execute_command("FT.CURSOR", "DEL", self.index_name, cursor)
            raise

    def clear(self) -> int:
        """Remove this index's entries: every key under ``key_prefix`` (``SCAN``, then
        ``UNLINK`` in small batches; never FLUSHALL)."""
        self._ensure()
        batches = _Batches(self._op_timeout * _BATCH_SHARE)
        return sum(self._unlink(mine, batches) for mine in self._own_keys())

    def _unlink(self, keys: Sequence[Any], batches: _Batches) -> int:
        """Delete ``keys`` by commands of ``batches.size`` keys, one after the other."""
        removed = 0
        start = 0
        while start < len(keys):
            chunk = keys[start : start + batches.size]
            began = time.monotonic()
            removed += self._unlink_chunk(chunk)
            batches.took(len(chunk), time.monotonic() - began)
            start += len(chunk)
        return removed

    def _unlink_chunk(self, keys: Sequence[Any]) -> int:
        if self._unlink_command == "UNLINK":
            try:
                return int(self._redis().execute_command("UNLINK", *keys))
            except Exception as exc:
                if "unknown command" not in str(exc).lower():
                    raise self._translate(exc) from exc
                self._unlink_command = "DEL"
        return int(self._call("DEL", *keys))

    # -- reads --------------------------------------------------------------------------

    def search(
        self, vector: Any, *, scope: str, k: int = 4, with_vectors: bool = False
    ) -> list[Neighbor]:
        """The ``k`` live entries of ``scope`` most similar to ``vector``, best first
        (with their stored vectors when ``with_vectors``: the ``vec`` field is returned by
        the same ``FT.SEARCH``)."""
        if k < 1:
            raise ValueError("k must be >= 1")
        blob = self._blob(vector)
        returned = (*_FIELDS, "vec") if with_vectors else _FIELDS
        tag = escape_tag(tag_value(scope))
        ask = k
        while True:
            query = f"(@scope:{{{tag}}})=>[KNN {ask} @vec $blob EF_RUNTIME {max(self.ef_runtime, ask)} AS dist]"  # noqa: E501
            reply = self._run(
                "FT.SEARCH", self.index_name, query,
                "PARAMS", 2, "blob", blob,
                "SORTBY", "dist", "ASC",
                "RETURN", len(returned), *returned,
                "LIMIT", 0, ask,
                "TIMEOUT", self._query_timeout_ms,
                "DIALECT", 2,
            )  # fmt: skip
            if _timed_out(reply):
                raise StoreError(
                    f"redis vector index {self.index_name!r}: the search timed out on the "
                    "server (a partial result)"
                )
            rows = _rows_of(reply)
            now = self._clock()
            found: list[Neighbor] = []
            expired = 0
            for key, fields in rows:
                try:
                    neighbor = self._neighbor(key, fields, now, with_vectors)
                except _DamagedRow as exc:
                    self._skip(key, exc)
                    continue
                if neighbor is None:
                    expired += 1
                else:
                    found.append(neighbor)
            # expired entries took some of the k places: ask again for more
            if expired == 0 or len(rows) < ask or len(found) >= k or ask >= _MAX_FETCH:
                return found[:k]
            ask = min(_MAX_FETCH, ask * 4)

    def _neighbor(
        self, key: Any, fields: dict[str, Any], now: float, with_vectors: bool
    ) -> Neighbor | None:
        """One row of a search (``None`` when expired by this index's clock); raises
        :class:`_DamagedRow` when a field does not parse."""
        try:
            name = _strict(key) or ""
            stamp = _strict(fields.get("expires"))
            if stamp and float(stamp) <= now:
                return None
            payload = fields.get("payload")
            strikes = _strict(fields.get("strikes")) or "0"
            return Neighbor(
                name[len(self.key_prefix) :] if name.startswith(self.key_prefix) else name,
                1.0 - float(_strict(fields.get("dist")) or "1"),
                None if payload is None else _strict(payload),
                self._unblob(fields.get("vec")) if with_vectors else None,
                int(strikes),
            )
        except ValueError as exc:  # UnicodeDecodeError is a ValueError
            raise _DamagedRow(str(exc)) from exc

    def _skip(self, key: Any, exc: Exception) -> None:
        # once per index at WARNING (a damaged or foreign hash is seen on every search)
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        logger.log(
            level, "redis vector index %r: skipped the hash %r (%s)", self.index_name, key, exc
        )

    def __len__(self) -> int:
        """Entries in the RediSearch index (``num_docs``; expired ones not yet purged too)."""
        info = _pairs(self._run("FT.INFO", self.index_name))
        return int(info.get("num_docs", 0))

    # -- persistence --------------------------------------------------------------------

    def save(self, path: Any) -> None:
        """Nothing to do: the entries live in Redis, which persists them itself (RDB/AOF)."""

    def load(self, path: Any) -> None:
        """Nothing to do: the entries live in Redis (see :meth:`save`); ``path`` is ignored."""

    # -- internals ----------------------------------------------------------------------

    def _blob(self, vector: Any) -> bytes:
        return bytes(checked_vector(vector, self._dim).astype("<f4", copy=False).tobytes())

    def _unblob(self, blob: Any) -> Any:
        from deja.semantic._deps import np

        if not isinstance(blob, bytes):
            # a client built with decode_responses=True would have mangled the float32 bytes
            raise StoreError(
                "the redis client decodes responses; build it with decode_responses=False"
            )
        vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        if vec.shape[0] != self._dim:
            raise _DamagedRow(f"a stored vector has {vec.shape[0]} dimensions, not {self._dim}")
        # handed to the verifier as a unit vector: RediSearch scores a foreign or damaged one
        # by its direction (a cosine of 1.0 for huge values), the verifier by its values
        with np.errstate(over="ignore", invalid="ignore"):
            square = float(vec @ vec)
        if not (math.isfinite(square) and square > 0):
            raise _DamagedRow("a stored vector is zero, or holds NaN, infinite or huge values")
        return vec if abs(square - 1.0) < 1e-3 else vec / np.float32(math.sqrt(square))


def _pairs(reply: Any) -> dict[str, Any]:
    """FT.INFO as a dict with str keys (RESP2 flat list or RESP3 map)."""
    if isinstance(reply, dict):
        return {_text(k): v for k, v in reply.items()}
    items = list(reply)
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


# attribute options of FT.INFO that stand alone (RESP2); every other word has a value
_FLAGS = frozenset(
    {"CASESENSITIVE", "NOINDEX", "SORTABLE", "UNF", "NOSTEM", "WITHSUFFIXTRIE", "INDEXEMPTY",
     "INDEXMISSING"}
)  # fmt: skip


def _attribute(attribute: Any) -> tuple[dict[str, str], set[str]]:
    """One attribute of FT.INFO (``[identifier, vec, ..., dim, 8, CASESENSITIVE, ...]`` or
    a map with a ``flags`` list): its options by lower-case name, and its flags."""
    fields: dict[str, str] = {}
    flags: set[str] = set()
    if isinstance(attribute, dict):
        for key, value in attribute.items():
            if isinstance(value, list):
                if _text(key).lower() == "flags":
                    flags.update(_text(flag).upper() for flag in value)
            else:
                fields[_text(key).lower()] = _text(value)
        return fields, flags
    items = list(attribute)
    i = 0
    while i < len(items):
        word = _text(items[i]) if isinstance(items[i], bytes | str) else ""
        if word.upper() in _FLAGS or i + 1 == len(items):
            flags.add(word.upper())
            i += 1
        else:
            if not isinstance(items[i + 1], list):
                fields.setdefault(word.lower(), _text(items[i + 1]))
            i += 2
    return fields, flags


def _results(reply: dict[Any, Any]) -> list[Any]:
    found = reply.get(b"results")
    if found is None:
        found = reply.get("results")
    return list(found or [])


def _raw(key: bytes | str) -> bytes:
    return key if isinstance(key, bytes) else key.encode()


def _cursor_page(reply: Any) -> tuple[list[dict[str, Any]], int]:
    """The rows (loaded fields by str name, values as returned) and the cursor id (0 at
    the end) of an ``FT.AGGREGATE ... WITHCURSOR`` or ``FT.CURSOR READ`` reply."""
    page, cursor = reply[0], int(reply[1])
    rows: list[dict[str, Any]] = []
    if isinstance(page, dict):  # RESP3
        for result in _results(page):
            attrs = result.get(b"extra_attributes", result.get("extra_attributes", {}))
            rows.append({_text(k): v for k, v in attrs.items()})
        return rows, cursor
    for flat in list(page)[1:]:  # RESP2: [total, [field, value, ...], ...]
        if not flat:
            continue  # gone between the match and the load
        items = list(flat)
        rows.append({_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)})
    return rows, cursor


def _timed_out(reply: Any) -> bool:
    """Whether an FT.SEARCH reply says it is partial (RESP3 only: a ``warning`` list)."""
    if not isinstance(reply, dict):
        return False
    warnings = reply.get(b"warning", reply.get("warning")) or []
    return any("timeout" in _text(w).lower() for w in warnings)


def _strict(value: Any) -> str | None:
    """An entry's text field (``None`` when absent); UnicodeDecodeError when not UTF-8."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _rows_of(reply: Any) -> list[tuple[Any, dict[str, Any]]]:
    """``(key, fields)`` of an FT.SEARCH reply (RESP2 or RESP3), in order; the key and
    every field as text but the binary ones (:data:`_BINARY`), and any that is not UTF-8
    (a damaged or foreign hash: the caller skips the row), kept as returned."""
    rows: list[tuple[Any, dict[str, Any]]] = []
    # A document whose hash expired (or was deleted) between the match and the load of its
    # fields comes back without them (nil): it is gone, so it is left out.
    if isinstance(reply, dict):
        for result in _results(reply):
            key = result.get(b"id", result.get("id"))
            attrs = result.get(b"extra_attributes", result.get("extra_attributes"))
            if not attrs:
                continue
            rows.append((key, {_text(k): v for k, v in attrs.items()}))
        return rows
    items = list(reply[1:])
    for i in range(0, len(items) - 1, 2):
        if not items[i + 1]:
            continue
        flat = list(items[i + 1])
        fields = {_text(flat[j]): flat[j + 1] for j in range(0, len(flat) - 1, 2)}
        rows.append((items[i], fields))
    return rows
