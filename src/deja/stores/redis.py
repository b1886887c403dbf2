"""Redis and Valkey as a store shared by every process: standalone, Sentinel or Cluster.

::

    store = RedisStore(url="redis://cache.internal:6379/0")
    store = RedisStore(startup_nodes=["10.0.0.1:7000", "10.0.0.2:7000"])  # Cluster
    store = RedisStore(sentinels=[("10.0.0.5", 26379)], service_name="mymaster")
    cache = deja.Cache(store=store, ttl=3600)

One :class:`RedisStore` serves sync and async callers: it holds a redis-py client for
each (``redis`` and ``redis.asyncio``), both created on first use, never in the
constructor. The commands are in :mod:`deja._async.redis_ops` (and its generated sync
twin); this module owns the settings, builds the clients and hands each call to them.

A cache must never be slower than having no cache, so the defaults are strict: 100 ms
per operation, 250 ms to connect, no retries of a command that timed out (a dead server
costs one timeout per call, and the cache façade's circuit breaker stops even that after
a few failures), and a bounded connection pool that waits at most ``pool_timeout`` for a
free connection. A command that may safely run twice is sent once more on a fresh
connection when its pooled one turns out closed (the server restarted, or failed over).
The asyncio client's timeouts do not count the time its event loop spent busy elsewhere
(up to 2 s; :class:`~deja._aio.PatientTimeout`): a process parsing a burst of requests
left replies that came in time unread past their timeouts, and failed them. That holds
for every node of a Cluster, and for a Sentinel-managed master and the sentinels asked
where it is.

Eviction and tags
-----------------
A tag record is a key like any other, so a server with ``maxmemory`` may evict it, and
``delete_tag`` then misses the entries it named, which stay served until they expire.
Under ``allkeys-lru`` (a common setting for a cache) a record goes first: it is written
when an entry is tagged and never read, while the entries are hit. The ``volatile-*``
policies evict only keys with a TTL, but a record has one too (its longest entry's), so
they take records as well; even ``volatile-ttl``, since a record expires about when its
last entry does and Redis picks among sampled keys (under the audit's traffic, four runs
each evicted a record while 1 to 5 of its 20 entries were held). Only ``noeviction`` keeps
every record: a full server then refuses new answers (the cache's write breaker) and
still serves what it holds; give entries a TTL (the cache's ``ttl``), since under it, as
under the ``volatile-*`` policies, an entry without one is never freed. The store reads
the policy once, with ``INFO memory`` when its first client is made (in the background;
``CONFIG GET`` is often refused on managed Redis, and a refused or failed read is let go
silently), and logs one warning when ``maxmemory`` is set under any other policy.

Restarts and tags
-----------------
The cache writes an entry's tag records before its value (a value stored without its
records would be out of reach of ``delete_tag``). A server that restarts without
persistence between the two takes the value on a fresh connection and has lost the
records. The store numbers the connections it opens, and each context (an asyncio task, a
thread) notes, from its mark on, when its first command was sent and which connection
answered its latest (no round trip; see :class:`~deja.stores.base.ConnectionOrder`): when
the value was answered on a connection opened after the first record was sent, it may
have reached a new server life, and the cache writes the entry's records again.
Connections opened before (a pool that grew for other callers, a reconnect after a
timeout, the store's first connection, opened for the first record) do not count; one
opened for another caller after the first record was sent does, if the value goes on
it (a restart cannot be told from it without a round trip). On a standalone server
or a Sentinel-managed master that closes the window. On a Cluster no connection is
numbered: an entry and its records live in different slots, most often on different
nodes, so a node that restarts empty loses its records while the entries on the other
nodes stay, whatever the order of the writes; a cluster whose tags must hold needs
persistence or replicas. An injected client is not numbered either.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import logging
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from deja._aio import MOST_FORGIVEN, PatientTimeout
from deja._forks import renew_in_child
from deja._waits import is_seconds
from deja.errors import MissingDependencyError, StoreBusy, StoreError
from deja.stores.base import StoreUsage

if TYPE_CHECKING:
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    from deja._async.redis_ops import AsyncRedisClient, AsyncRedisOps
    from deja._sync.redis_ops import RedisClient, RedisOps

__all__ = ["RedisStore", "parse_nodes", "parse_port"]

logger = logging.getLogger("deja.stores.redis")

Node = tuple[str, int]
NodeSpec = str | Sequence[object] | Mapping[str, object]
"""A server address: ``"host:port"``, ``(host, port)`` or ``{"host": ..., "port": ...}``."""

_Mode = Literal["standalone", "cluster", "sentinel"]
_DEFAULT_PORT = 6379
# The eviction policy that leaves tag records alone: every other one, once maxmemory is
# reached, may evict a record while entries it names are held (see the module docstring).
_TAG_SAFE_POLICIES = frozenset({"noeviction"})


def _eviction_warning(where: str, memory: Sequence[Mapping[str, Any]]) -> str | None:
    """What to warn of, given the ``INFO memory`` answers of the servers (every master of
    a cluster) behind a store, or ``None`` when their policy keeps tag records."""
    for answer in memory:
        policy = str(answer.get("maxmemory_policy", "noeviction"))
        limit = int(answer.get("maxmemory", 0))
        if limit > 0 and policy not in _TAG_SAFE_POLICIES:
            return (
                f"redis {where} evicts keys when full (maxmemory {limit} bytes,"
                f" maxmemory-policy {policy}), deja's tag records too, while entries they"
                " name are held (under LRU or LFU first: a record is written, never read;"
                " a record has its entries' TTL, so volatile-* policies, volatile-ttl"
                " included, take records as well): delete_tag then misses those entries,"
                " which stay served until they expire. If you tag entries, use"
                " maxmemory-policy noeviction (a full server stores no new answers and"
                " still serves its hits) and give every entry a TTL (the cache's ttl):"
                " an entry stored without one is never freed, under noeviction as under"
                " any volatile-* policy"
            )
    return None


def _node(spec: object, what: str) -> Node:
    """Normalize one address (LiteLLM writes ``{"host": ..., "port": "7001"}``)."""
    host: object
    port: object
    if isinstance(spec, str):
        host, sep, port = spec.rpartition(":")
        if not sep:
            host, port = spec, _DEFAULT_PORT
    elif isinstance(spec, Mapping):
        host, port = spec.get("host"), spec.get("port", _DEFAULT_PORT)
    elif isinstance(spec, Sequence) and len(spec) == 2:
        host, port = spec
    else:
        raise ValueError(f"{what}: expected 'host:port', (host, port) or a mapping, got {spec!r}")
    if not isinstance(host, str) or not host:
        raise ValueError(f"{what}: a host name is required, got {host!r}")
    return host.strip("[]"), parse_port(port, what)


def parse_port(port: object, what: str = "port") -> int:
    """A port number from an int or a digit string; :class:`ValueError` otherwise."""
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{what}: expected a port number 1-65535, got {port!r}")
    return port


def _without_credentials(url: str) -> str:
    """``url`` with any user-info masked, even when it is malformed (``rediss//u:pw@h``)."""
    return re.sub(r"^([^@/]*/*)[^@/]*@", r"\1***@", url)


def parse_nodes(specs: object, what: str = "nodes") -> tuple[Node, ...]:
    """Addresses as ``(host, port)`` pairs from :data:`NodeSpec` values (or one of them)."""
    if specs is None:
        return ()
    if isinstance(specs, str | Mapping):
        specs = [specs]
    if not isinstance(specs, Sequence):
        raise ValueError(f"{what}: expected a list of addresses, got {specs!r}")
    return tuple(_node(spec, what) for spec in specs)


def _driver_info() -> dict[str, Any]:
    """What the connections of a client tell the server of their library (CLIENT
    SETINFO), made once for them all: redis-py 7+ makes it per connection when not given
    one, reading its own version from the installed packages' metadata (a scan of
    sys.path: 1.6 ms a connection on an idle machine, far more on a loaded one), on the
    event loop, for each of the connections a burst opens at once. Older redis-py read it
    once, at import."""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:
        return {}
    return {"driver_info": DriverInfo()}


def _seconds(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if not is_seconds(value):  # (NaN, inf, and an int past a float's range: 10**400)
        raise ValueError(f"{what} must be a positive number of seconds, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Settings:
    """Everything needed to build a client, validated; no secrets in the repr."""

    mode: _Mode
    url: str | None
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool
    ssl_ca_certs: str | None
    ssl_cert_reqs: str | None
    ssl_check_hostname: bool | None
    startup_nodes: tuple[Node, ...]
    sentinels: tuple[Node, ...]
    service_name: str | None
    sentinel_password: str | None
    op_timeout: float
    connect_timeout: float
    pool_timeout: float
    max_connections: int
    client_name: str | None

    def connection_kwargs(self) -> dict[str, Any]:
        """Options of each connection to a data server (not to a sentinel)."""
        kwargs: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "socket_timeout": self.op_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "client_name": self.client_name,
            **_driver_info(),
        }
        if self.tls:
            tls = {
                "ssl_ca_certs": self.ssl_ca_certs,
                "ssl_cert_reqs": self.ssl_cert_reqs,
                "ssl_check_hostname": self.ssl_check_hostname,
            }
            kwargs.update((k, v) for k, v in tls.items() if v is not None)
        return kwargs

    def sentinel_kwargs(self) -> dict[str, Any]:
        """Options of the connections to the sentinels themselves."""
        return {
            "password": self.sentinel_password,
            "socket_timeout": self.op_timeout,
            "socket_connect_timeout": self.connect_timeout,
        }

    def where(self) -> str:
        """The target, without credentials, for reprs and messages."""
        if self.mode == "sentinel":
            nodes = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel {self.service_name}@{nodes}"
        if self.url is not None:
            parts = urlsplit(self.url)
            target = f"{parts.scheme}://{parts.hostname}:{parts.port or _DEFAULT_PORT}{parts.path}"
            return f"{self.mode} {target}"
        if self.mode == "cluster" and self.startup_nodes:
            return "cluster " + ",".join(f"{h}:{p}" for h, p in self.startup_nodes)
        return f"{self.mode} {self.host}:{self.port}/{self.db}"


class _ThreadGate:
    """At most ``limit`` sync operations at once; a wait longer than ``timeout`` fails.

    For pools that raise instead of waiting when exhausted (cluster nodes, Sentinel), and
    in front of the standalone pool, whose own "No connection available" would read as
    the store failing (a burst is no outage: :class:`~deja.errors.StoreBusy`).
    """

    def __init__(self, limit: int, timeout: float) -> None:
        self._limit = limit
        self._timeout = timeout
        self._renew()
        # a child forked while a parent's thread held a slot would never get it back
        renew_in_child(self, _ThreadGate._renew)

    def _renew(self) -> None:
        self._slots = threading.BoundedSemaphore(self._limit)

    def __enter__(self) -> None:
        if not self._slots.acquire(timeout=self._timeout):
            raise StoreBusy(f"no redis connection free within {self._timeout:g} s")

    def __exit__(self, *exc_info: object) -> None:
        self._slots.release()


class _AsyncGate:
    """The asyncio twin of :class:`_ThreadGate` (one per event loop).

    Also put in front of the standalone pool: redis-py's asyncio BlockingConnectionPool
    lets a task that just released a connection take it straight back, so under load a
    waiter can starve past the pool timeout; asyncio's semaphore serves waiters in order.

    A waiter gives up when the server answered nothing for ``timeout`` while it waited,
    not after ``timeout`` in all: a queue served in turn is a burst, and each waiter
    turned away was a lookup missed or a lock not taken (an answer paid twice). Nor is
    the time the event loop spent busy elsewhere counted (:class:`PatientTimeout`). A
    server that does not answer still turns waiters away after ``timeout``. What counts
    as an answer: a command that ended with a reply (an error reply too), and, through
    :meth:`answered`, any reply a connection reads (a new connection's handshake, while
    a burst's first commands all wait for theirs).
    """

    def __init__(
        self,
        limit: int,
        timeout: float,
        *,
        prepare: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        from redis.exceptions import ResponseError

        self._slots = asyncio.Semaphore(limit)
        self._timeout = timeout
        self._prepare = prepare
        self._answers = ResponseError  # (an error reply is an answer: the server is there)
        self._answered = -math.inf  # loop time of the last command answered

    async def __aenter__(self) -> None:
        if self._prepare is not None:
            # A cluster client's first command discovers the topology and reads the
            # command table (a large reply: ~0.1 s). Done before queueing, callers that
            # wait for it do not use up their wait for a connection.
            await self._prepare()
            self._prepare = None
        slots = self._slots
        if not slots.locked():
            await slots.acquire()  # a free slot: returns at once, so no timer is armed
            return
        most = max(_QUEUED_TIMES * self._timeout, _LEAST_QUEUED)
        try:
            async with asyncio.timeout(most):
                async with PatientTimeout(self._timeout, progress=self._last_answer):
                    await slots.acquire()
        except TimeoutError:
            raise StoreBusy(
                f"no redis connection free: none for {self._timeout:g} s with no command"
                f" answered, or {most:g} s in all"
            ) from None

    def _last_answer(self) -> float:
        return self._answered

    def answered(self) -> None:
        """The server answered something just now (called on the gate's event loop)."""
        self._answered = asyncio.get_running_loop().time()

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is None or issubclass(exc_type, self._answers):
            self.answered()
        self._slots.release()


_MASTER_CHECK_EVERY = 1.0  # seconds between two asks of the sentinels where the master is
# The longest a command waits in line for a connection in all, however steadily the server
# answers the commands ahead of it (8 x pool_timeout, at least 5 s): past it, StoreBusy (a
# lookup missed, a hit never waits without end behind a slow server). At least 5 s: a
# lookup that misses pays an LLM call of seconds; 3,000 lookups queued on one connection
# took 2.3 s on a loaded 2-core machine (2 s turned the last ones away).
_QUEUED_TIMES = 8
_LEAST_QUEUED = 5.0


class _MasterWatch:
    """A gate that, at most once per ``_MASTER_CHECK_EVERY`` seconds, has the sentinels
    asked where the master is, in the background (a command never waits for the
    sentinels: hung ones added their timeouts to a command a second). redis-py asks only
    when it opens a connection: after a graceful failover the pooled connections kept
    writing to the old master, which accepts writes until it is demoted, and then takes
    the new master's data (a delete that returned was undone, entries written meanwhile
    lost). When the address changed, redis-py's pool drops its idle connections to the old
    one (the sync pool also its busy ones, when they come back); the asyncio pool keeps
    busy ones, so they are disconnected too (their commands fail once, and those that may
    run twice are sent again)."""

    def __init__(self, gate: Any, pool: Any) -> None:
        self._gate = gate
        self._pool = pool
        self._due = 0.0

    def _due_now(self) -> bool:
        now = time.monotonic()
        if now < self._due:
            return False
        self._due = now + _MASTER_CHECK_EVERY
        return True

    def __enter__(self) -> None:
        if self._due_now():
            threading.Thread(target=self._check, name="deja-sentinel", daemon=True).start()
        self._gate.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self._gate.__exit__(*exc_info)

    def _check(self) -> None:
        try:
            self._pool.get_master_address()
        except Exception:  # the sentinels unreachable: the commands say how things are
            logger.debug("asking the sentinels for the master failed", exc_info=True)

    async def __aenter__(self) -> None:
        if self._due_now():
            from deja._aio import kept

            kept(asyncio.ensure_future(self._acheck()))
        await self._gate.__aenter__()

    async def __aexit__(self, *exc_info: object) -> None:
        await self._gate.__aexit__(*exc_info)

    async def _acheck(self) -> None:
        pool = self._pool
        before = pool.master_address
        try:
            after = await pool.get_master_address()
            if before is not None and after != before:
                await pool.disconnect(inuse_connections=True)
        except Exception:  # see _check
            logger.debug("asking the sentinels for the master failed", exc_info=True)


def _master_of(address: Any) -> tuple[str, int] | None:
    """A SENTINEL GET-MASTER-ADDR-BY-NAME answer as ``(host, port)``."""
    if not address:
        return None
    host, port = address[0], address[1]
    return (host.decode() if isinstance(host, bytes) else str(host)), int(port)


@functools.cache
def _sentinel_classes() -> tuple[type, type]:
    """redis-py's Sentinel managers (sync, asyncio), asking for the master with SENTINEL
    GET-MASTER-ADDR-BY-NAME, as Redis's client guidelines say: redis-py reads SENTINEL
    MASTERS, which goes on naming the old master until a failover is over (while the old
    one, not demoted yet, accepts writes that the promoted one never gets)."""
    import redis.asyncio.sentinel
    import redis.sentinel
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    unreachable = (RedisConnectionError, RedisTimeoutError)

    class SyncSentinel(redis.sentinel.Sentinel):
        def discover_master(self, service_name: str) -> tuple[str, int]:
            for number, sentinel in enumerate(self.sentinels):
                try:
                    address = _master_of(sentinel.sentinel_get_master_addr_by_name(service_name))
                except unreachable:
                    continue
                if address is not None:
                    self.sentinels[0], self.sentinels[number] = sentinel, self.sentinels[0]
                    return address
            raise redis.sentinel.MasterNotFoundError(f"no master found for {service_name!r}")

    class AsyncSentinel(redis.asyncio.sentinel.Sentinel):
        async def discover_master(self, service_name: str) -> tuple[str, int]:
            for number, sentinel in enumerate(self.sentinels):
                try:
                    answer = await sentinel.sentinel_get_master_addr_by_name(service_name)
                except unreachable:
                    continue
                address = _master_of(answer)
                if address is not None:
                    self.sentinels[0], self.sentinels[number] = sentinel, self.sentinels[0]
                    return address
            raise redis.sentinel.MasterNotFoundError(f"no master found for {service_name!r}")

    return SyncSentinel, AsyncSentinel


class _AskedNode:
    """The node an ASK redirect names, as redis-py's asyncio cluster client sees it for the
    one command it sends there.

    That client sends ``ASKING`` and then the command as two commands, each on a connection
    taken from the node's pool in turn (first in, first out): with two free connections
    they go on different ones, the node answers MOVED (it only takes the key after ASKING on
    the same connection), the old owner answers ASK again, and so on until "TTL exhausted",
    while the client's error handling closes connections other tasks are using. So every
    command for a slot being migrated failed under concurrency. Here ``ASKING`` is held and
    sent together with the command on one connection, as the sync client does.
    """

    __slots__ = ("_asking", "_node")

    def __init__(self, node: Any) -> None:
        self._node = node
        self._asking = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if args == ("ASKING",) and not kwargs:
            self._asking = True
            return True
        if not self._asking:
            return await self._node.execute_command(*args, **kwargs)
        self._asking = False
        from redis.asyncio.cluster import PipelineCommand

        kwargs.pop("asking", None)  # redis-py >= 8 passes its own (False here)
        asking = PipelineCommand(0, "ASKING")
        command = PipelineCommand(1, *args, **kwargs)
        await self._node.execute_pipeline([asking, command])
        for sent in (asking, command):
            if isinstance(sent.result, Exception):
                raise sent.result
        return command.result


@functools.cache
def _cluster_class() -> type[AsyncRedisCluster]:
    """redis-py's asyncio cluster client, sending an ASK redirect's ``ASKING`` on the
    connection that carries the command (see :class:`_AskedNode`)."""
    import redis.asyncio.cluster

    class AsyncCluster(redis.asyncio.cluster.RedisCluster):
        def get_node(
            self, host: str | None = None, port: int | None = None, node_name: str | None = None
        ) -> Any:
            node = super().get_node(host, port, node_name)
            # Only the redirect asks by name alone; the rest compare the answer with None.
            if node is None or host is not None or port is not None:
                return node
            return _AskedNode(node)

    return AsyncCluster


class RedisStore:
    """A :class:`~deja.stores.base.Store` on Redis 7+ or Valkey, with a tag index.

    Where the server is (keyword-only, one of):

    * ``url``: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS);
    * ``host``/``port``/``db`` (default ``127.0.0.1:6379/0``), with ``ssl=True`` for TLS;
    * ``startup_nodes`` (Cluster; LiteLLM's ``redis_startup_nodes``): a few nodes, the
      client discovers the rest. ``cluster=True`` with a ``url`` or ``host`` also means a
      cluster reached through that node. ``cluster`` defaults to "startup_nodes given";
    * ``sentinels`` and ``service_name`` (Sentinel): the master is looked up through the
      sentinels (``sentinel_password`` authenticates to them).

    ``username``/``password`` authenticate to the data servers (credentials in a URL take
    precedence); ``ssl_ca_certs``, ``ssl_cert_reqs`` and ``ssl_check_hostname`` tune TLS.

    Limits: ``op_timeout`` (seconds per command, default 0.1), ``connect_timeout`` (0.25),
    ``max_connections`` (50 per process and event loop; on a cluster, per node), and
    ``pool_timeout``, the longest wait for a free connection (default: ``connect_timeout``;
    with asyncio, the longest wait while the server answers nothing: a queue of commands
    served in turn is waited in).
    A command that times out is not retried: the cache façade's fail-open and circuit
    breaker deal with failures, and a retry would only double the cost of a dead server. A
    read, a write of a value, a delete, a tag or a tag's drop is sent once more on a fresh
    connection when its connection was closed: after a restart every pooled connection is
    stale, and each failed once (a lookup served as a miss, a delete raised ``StoreError``
    on a server that answers). Taking a lock is not: the connection may have died after
    the server took it.
    ``client_name`` is sent with CLIENT SETNAME, so ``CLIENT LIST`` shows deja's
    connections.

    ``client``/``async_client`` inject ready redis-py clients (``Redis``, ``RedisCluster``
    or a Sentinel ``master_for`` client, built with ``decode_responses=False``). They are
    used as given and never closed by the store; a side given no client is built from the
    options above.

    Keys are used as given (they carry the cache's prefix already); expiry is Redis's own
    (``SET ... PX``), by the server's clock. ``entries`` in :meth:`usage` counts every key
    of the database, tag records included. The connections are closed by :meth:`close`
    (sync client) and :meth:`aclose` (both); using the store afterwards reconnects.

    Raises :class:`~deja.errors.MissingDependencyError` if redis-py is not installed, and
    :class:`ValueError` for contradictory options. Every operation raises
    :class:`~deja.errors.StoreError` when Redis fails.
    """

    name = "redis"

    def __init__(
        self,
        *,
        url: str | None = None,
        host: str | None = None,
        port: int | str | None = None,
        db: int | None = None,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        ssl_ca_certs: str | None = None,
        ssl_cert_reqs: str | None = None,
        ssl_check_hostname: bool | None = None,
        cluster: bool | None = None,
        startup_nodes: Sequence[NodeSpec] | None = None,
        sentinels: Sequence[NodeSpec] | None = None,
        service_name: str | None = None,
        sentinel_password: str | None = None,
        op_timeout: float = 0.1,
        connect_timeout: float = 0.25,
        pool_timeout: float | None = None,
        max_connections: int = 50,
        client_name: str | None = None,
        client: RedisClient | None = None,
        async_client: AsyncRedisClient | None = None,
    ) -> None:
        try:
            import redis  # noqa: F401 - only to fail early, with the pip command to run
        except ImportError as exc:
            raise MissingDependencyError("redis", "redis") from exc

        nodes = parse_nodes(startup_nodes, "startup_nodes")
        watchers = parse_nodes(sentinels, "sentinels")
        for given, parsed, what in (
            (startup_nodes, nodes, "startup_nodes"),
            (sentinels, watchers, "sentinels"),
        ):
            if given is not None and not parsed:
                # (it was taken for "none given": a standalone server on this machine)
                raise ValueError(f"{what} is empty: give at least one address, or leave it out")
        if url is not None and (host is not None or port is not None or db is not None):
            raise ValueError("give either url or host/port/db, not both")
        if url is not None and (
            not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://"))
        ):
            # the client would take it and fail at the first command, every command
            raise ValueError(
                "url must start with redis://, rediss:// or unix://,"
                f" got {_without_credentials(str(url))!r:.80}"
            )
        if url is not None and not url.startswith("unix://"):
            try:
                urlsplit(url).port  # noqa: B018 - parsed now, not at the first command
            except ValueError:
                raise ValueError(
                    f"url has no valid port: {_without_credentials(url)!r:.80}"
                ) from None
        mode: _Mode
        if watchers:
            if not service_name:
                raise ValueError("sentinels need the service_name of the master")
            if url is not None or nodes or cluster:
                raise ValueError("sentinels cannot be combined with url, startup_nodes or cluster")
            mode = "sentinel"
        elif cluster or (nodes and cluster is None):
            mode = "cluster"
        elif nodes:
            raise ValueError("startup_nodes are cluster nodes; drop cluster=False")
        else:
            mode = "standalone"
        if db is not None and (isinstance(db, bool) or not isinstance(db, int) or db < 0):
            raise ValueError(f"db must be a database number >= 0, not {db!r:.40}")
        if mode == "cluster" and db not in (None, 0):
            raise ValueError("a Redis Cluster has only database 0")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise TypeError("max_connections must be an int")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        connect = _seconds(connect_timeout, "connect_timeout")
        self._settings = _Settings(
            mode=mode,
            url=url,
            host=host if host is not None else "127.0.0.1",
            port=parse_port(port) if port is not None else _DEFAULT_PORT,
            db=db or 0,
            username=username,
            password=password,
            tls=ssl or (url is not None and url.startswith("rediss://")),
            ssl_ca_certs=ssl_ca_certs,
            ssl_cert_reqs=ssl_cert_reqs,
            ssl_check_hostname=ssl_check_hostname,
            startup_nodes=nodes,
            sentinels=watchers,
            service_name=service_name,
            sentinel_password=sentinel_password,
            op_timeout=_seconds(op_timeout, "op_timeout"),
            connect_timeout=connect,
            pool_timeout=connect
            if pool_timeout is None
            else _seconds(pool_timeout, "pool_timeout"),
            max_connections=max_connections,
            client_name=client_name,
        )
        self._client = client
        self._async_client = async_client
        self._lock = threading.Lock()
        self._sync: RedisOps | None = None
        # The asyncio client of one event loop cannot be used from another, so each loop
        # gets its own; the last one used is kept at hand for the hot path. Clients of
        # loops that have closed are dropped (their sockets went with the loop).
        self._async_last: tuple[asyncio.AbstractEventLoop, AsyncRedisOps] | None = None
        self._async_by_loop: dict[asyncio.AbstractEventLoop, AsyncRedisOps] = {}
        # The server's eviction policy, read once (see the module docstring): "unread"
        # until a read is started with a new client, and again after a read that failed.
        self._policy: Literal["unread", "reading", "read"] = "unread"
        # The connections it opens to a standalone server or a Sentinel's master are
        # numbered, and the replies noted (see "Restarts and tags" in the module docstring)
        self._numbers = _ConnectionNumbers()

    def __repr__(self) -> str:
        return f"RedisStore({self._settings.where()})"

    @property
    def mode(self) -> _Mode:
        """``standalone``, ``cluster`` or ``sentinel``."""
        return self._settings.mode

    def mark_connections(self) -> int | None:
        """Start this context's account of the connections that answer it (see
        :class:`~deja.stores.base.ConnectionOrder`). ``None`` on a Cluster and on injected
        clients, whose connections are not numbered (see "Restarts and tags" in the module
        docstring)."""
        if self._settings.mode == "cluster" or (
            self._client is not None or self._async_client is not None
        ):
            return None
        return self._numbers.mark()

    def reconnected_since(self, mark: int) -> bool:
        """Whether this context's latest command since ``mark`` may have reached another
        server life than its first (see :class:`~deja.stores.base.ConnectionOrder`)."""
        return self._numbers.reconnected_since(mark)

    # -- sync ---------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value of ``key``, or ``None``."""
        return self._ops().get(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: no expiry)."""
        self._ops().set(key, value, ttl)

    def delete(self, key: str) -> bool:
        """Delete ``key``; whether it existed."""
        return self._ops().delete(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """One value (or ``None``) per key, in order."""
        return self._ops().get_many(keys)

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store every item with the same ``ttl``."""
        self._ops().set_many(items, ttl)

    def clear(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; how many were deleted."""
        return self._ops().clear(prefix)

    def tag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        """Add ``keys`` to ``tag``; the record lives at least ``ttl`` seconds."""
        self._ops().tag(tag, keys, ttl)

    def keys_for(self, tag: str) -> list[str]:
        """The keys tagged with ``tag`` (some may have expired since)."""
        return self._ops().keys_for(tag)

    def drop(self, tag: str) -> list[str]:
        """Forget ``tag`` and return the keys it named."""
        return self._ops().drop(tag)

    def lock(self, name: str, *, ttl: float) -> str | None:
        """Take the cross-process lock ``name`` for ``ttl`` seconds (see :class:`Locking`)."""
        return self._ops().lock(name, ttl=ttl)

    def unlock(self, name: str, token: str) -> None:
        """Release ``name`` if ``token`` still holds it."""
        self._ops().unlock(name, token)

    def extend(self, name: str, token: str, *, ttl: float) -> bool:
        """Keep ``name`` for ``ttl`` seconds more if ``token`` still holds it."""
        return self._ops().extend(name, token, ttl=ttl)

    async def alock(self, name: str, *, ttl: float) -> str | None:
        """Async :meth:`lock`."""
        return await self._aops().alock(name, ttl=ttl)

    async def aunlock(self, name: str, token: str) -> None:
        """Async :meth:`unlock`."""
        await self._aops().aunlock(name, token)

    async def aextend(self, name: str, token: str, *, ttl: float) -> bool:
        """Async :meth:`extend`."""
        return await self._aops().aextend(name, token, ttl=ttl)

    def usage(self) -> StoreUsage:
        """Keys in the database(s), used memory and evicted keys, summed over masters."""
        return self._ops().usage()

    @property
    def usage_source(self) -> str | None:
        """What :meth:`usage` measures (the server and database): two stores on one
        database report one figure, which metrics count once. ``None`` (counted apart)
        for a store on a client it was given, whose server it does not know."""
        if self._client is not None or self._async_client is not None:
            return None
        s = self._settings
        if s.url is not None:  # (its database may be in the path or in ?db=N)
            parts = urlsplit(s.url)
            where = f"{parts.hostname}:{parts.port or _DEFAULT_PORT}{parts.path}?{parts.query}"
            return f"redis {s.mode} {where}"
        return f"redis {s.where()} db={s.db}"

    def close(self) -> None:
        """Disconnect the sync client's connections (idempotent)."""
        with self._lock:
            ops, self._sync = self._sync, None
        if ops is not None:
            ops.close()

    # -- async --------------------------------------------------------------------------

    async def aget(self, key: str) -> bytes | None:
        """The value of ``key``, or ``None``."""
        return await self._aops().aget(key)

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: no expiry)."""
        await self._aops().aset(key, value, ttl)

    async def adelete(self, key: str) -> bool:
        """Delete ``key``; whether it existed."""
        return await self._aops().adelete(key)

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """One value (or ``None``) per key, in order."""
        return await self._aops().aget_many(keys)

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store every item with the same ``ttl``."""
        await self._aops().aset_many(items, ttl)

    async def aclear(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; how many were deleted."""
        return await self._aops().aclear(prefix)

    async def atag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        """Add ``keys`` to ``tag``; the record lives at least ``ttl`` seconds."""
        await self._aops().atag(tag, keys, ttl)

    async def akeys_for(self, tag: str) -> list[str]:
        """The keys tagged with ``tag`` (some may have expired since)."""
        return await self._aops().akeys_for(tag)

    async def adrop(self, tag: str) -> list[str]:
        """Forget ``tag`` and return the keys it named."""
        return await self._aops().adrop(tag)

    async def aclose(self) -> None:
        """Disconnect this event loop's client and the sync client (idempotent)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            ops = self._async_by_loop.pop(loop, None)
            last = self._async_last
            if last is not None and last[0] is loop:
                self._async_last = None
            sync, self._sync = self._sync, None
        if ops is not None:
            await ops.aclose()
        if sync is not None:
            # Closing drops sockets without a round trip to the server: it does not block.
            sync.close()

    # -- clients ------------------------------------------------------------------------

    def _ops(self) -> RedisOps:
        ops = self._sync
        if ops is not None:
            return ops
        with self._lock:
            if self._sync is not None:
                return self._sync
            ops, gate = self._new_sync_ops()
            self._sync = ops
            read_policy = self._start_policy_read()
        if read_policy:
            threading.Thread(
                target=self._read_policy, args=(ops.client, gate), name="deja-redis", daemon=True
            ).start()
        return ops

    def _aops(self) -> AsyncRedisOps:
        loop = asyncio.get_running_loop()
        last = self._async_last
        if last is not None and last[0] is loop:
            return last[1]
        gate = None
        with self._lock:
            ops = self._async_by_loop.get(loop)
            if ops is None:
                for old in [old for old in self._async_by_loop if old.is_closed()]:
                    del self._async_by_loop[old]
                ops, made_gate = self._new_async_ops()
                self._async_by_loop[loop] = ops
                if self._start_policy_read():
                    gate = made_gate
            self._async_last = (loop, ops)
        if gate is not None:
            from deja._aio import kept

            kept(asyncio.ensure_future(self._aread_policy(ops.client, gate)))
        return ops

    def _new_sync_ops(self) -> tuple[RedisOps, AbstractContextManager[object]]:
        from deja._sync.redis_ops import RedisOps

        if self._client is not None:
            return RedisOps(self._client, owned=False), nullcontext()
        from redis.exceptions import RedisClusterException, RedisError

        try:
            return _sync_ops(self._settings, self._numbers)
        except (RedisError, RedisClusterException, OSError) as exc:
            # A cluster client discovers the topology while it is built.
            raise StoreError(f"cannot connect to redis ({self._settings.where()}): {exc}") from exc

    def _new_async_ops(self) -> tuple[AsyncRedisOps, AbstractAsyncContextManager[object]]:
        from deja._async.redis_ops import AsyncRedisOps

        if self._async_client is not None:
            return AsyncRedisOps(self._async_client, owned=False), nullcontext()
        return _async_ops(self._settings, self._numbers)

    # -- the eviction policy ------------------------------------------------------------

    def _start_policy_read(self) -> bool:
        """Whether the client just made (under ``self._lock``) is to read the policy."""
        if self._policy != "unread":
            return False
        self._policy = "reading"
        return True

    def _policy_read(self, memory: Sequence[Mapping[str, Any]] | None) -> None:
        """The ``INFO memory`` answers (``None``: the read failed; a later client tries)."""
        with self._lock:
            self._policy = "unread" if memory is None else "read"
        if memory is None:
            return
        warning = _eviction_warning(self._settings.where(), memory)
        if warning is not None:
            logger.warning("%s", warning)
        logger.debug(
            "redis %s: eviction policy read: %s",
            self._settings.where(),
            ", ".join(f"{a.get('maxmemory_policy')} ({a.get('maxmemory')} bytes)" for a in memory),
        )

    def _read_policy(self, client: Any, gate: AbstractContextManager[object]) -> None:
        """Read the eviction policy with the sync client, in a thread of its own (a
        command never waits for it), through the gate its commands take."""
        import redis.cluster

        try:
            with gate:
                if isinstance(client, redis.cluster.RedisCluster):
                    cluster: Any = client  # (redis-py leaves these untyped)
                    memory = [
                        cluster.execute_command("INFO", "memory", target_nodes=node)
                        for node in cluster.get_primaries()
                    ]
                else:
                    memory = [client.info("memory")]
        except Exception:  # refused (managed Redis), or no answer: it is only advice
            logger.debug("redis: reading the eviction policy failed", exc_info=True)
            self._policy_read(None)
            return
        self._policy_read(memory)

    async def _aread_policy(self, client: Any, gate: AbstractAsyncContextManager[object]) -> None:
        """:meth:`_read_policy` with an asyncio client, as a task of its event loop."""
        import redis.asyncio.cluster

        try:
            async with gate:
                if isinstance(client, redis.asyncio.cluster.RedisCluster):
                    await client.initialize()  # (the masters are known once it has run)
                    memory = [
                        await client.execute_command("INFO", "memory", target_nodes=node)
                        for node in client.get_primaries()
                    ]
                else:
                    memory = [await client.info("memory")]
        except Exception:  # see _read_policy
            logger.debug("redis: reading the eviction policy failed", exc_info=True)
            self._policy_read(None)
            return
        self._policy_read(memory)


# A context's account since its mark: (the numbers, the mark, a number drawn as its first
# command was sent, the number of the connection that answered the latest). A tuple set
# anew each time, never changed in place: a task started meanwhile copies the context, and
# its commands must not show in its parent's account, nor the parent's in it.
_answered: contextvars.ContextVar[tuple[_ConnectionNumbers, int, int, int] | None] = (
    contextvars.ContextVar("deja_redis_answered", default=None)
)


class _ConnectionNumbers:
    """The numbers of a store's connections, given as they open, and the account of which
    answered each context (see :class:`~deja.stores.base.ConnectionOrder`).

    Marks are drawn from the same sequence, so a connection numbered above a mark opened
    after it. A server that restarted after it ran a context's first command since its
    mark (and lost what it wrote) is reached on a connection opened after that command was
    sent: one numbered above the number drawn then. Connections opened before, for others
    or for that command, cannot have reached it. ``next()`` is atomic: no lock (a lock
    held by another thread at a fork would hang the child)."""

    __slots__ = ("_numbers",)

    def __init__(self) -> None:
        self._numbers = itertools.count(1)

    def opened(self) -> int:
        """The number of a connection that just opened."""
        return next(self._numbers)

    def mark(self) -> int:
        """A mark, and this context's account started from it."""
        mark = next(self._numbers)
        _answered.set((self, mark, 0, 0))
        return mark

    def sending(self) -> None:
        """A connection is about to send a command for this context (its first since the
        mark draws a number)."""
        account = _answered.get()
        if account is not None and account[0] is self and not account[2]:
            _answered.set((self, account[1], next(self._numbers), account[3]))

    def answered(self, number: int) -> None:
        """The connection ``number`` read a reply for this context."""
        account = _answered.get()
        if account is not None and account[0] is self:
            _answered.set((self, account[1], account[2], number))

    def reconnected_since(self, mark: int) -> bool:
        """See :meth:`RedisStore.reconnected_since`."""
        account = _answered.get()
        if account is None or account[0] is not self or account[1] != mark:
            return True  # (not known: another mark was taken since)
        _, _, sent, latest = account
        return not sent or not latest or latest > sent


def _backstop(seconds: float) -> float:
    """redis-py's own timeout on an asyncio connection whose deja timeout is ``seconds``
    (:func:`_patient`): it outlasts deja's, forgiven a busy loop, and bounds only what
    deja's do not (a write to a server that stopped reading)."""
    return seconds + MOST_FORGIVEN + 1.0


def _patient(
    base: type[Any],
    s: _Settings,
    answered: Callable[[], None],
    numbers: _ConnectionNumbers | None,
) -> type[Any]:
    """``base``, a redis-py asyncio connection class, whose connect and read timeouts
    (``connect_timeout``, ``op_timeout``) do not count the time the event loop spent busy
    elsewhere (:class:`~deja._aio.PatientTimeout`), and which calls ``answered()`` for each
    reply it reads; with ``numbers``, each connection it makes is numbered, and each
    command sent and reply read noted in the caller's account (:class:`_ConnectionNumbers`).

    A burst of requests keeps a process's loop busy (each request is parsed, looked up,
    answered): a reply that came in time sat unread while other callbacks ran, and the
    plain timeout, firing in the same turn, failed it. In a two-worker proxy, 400
    requests at once cost 30 to 40 such timeouts, in a row: the cache's breaker opened
    and for a second every request skipped the store, its lookup and its lock (a prompt
    asked on both workers was paid twice). A server that does not answer still times out
    after ``op_timeout`` while the loop keeps up.
    """
    from redis.exceptions import TimeoutError as RedisTimeoutError

    connect_timeout, op_timeout = s.connect_timeout, s.op_timeout

    class PatientConnection(base):  # type: ignore[misc]
        _deja_number = 0  # (until it connects)

        async def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
            if numbers is not None:
                numbers.sending()
            await super().send_packed_command(*args, **kwargs)

        async def _connect(self) -> None:
            # (a TimeoutError here is redis-py's "Timeout connecting to server")
            async with PatientTimeout(connect_timeout):
                await super()._connect()
            if numbers is not None:
                self._deja_number = numbers.opened()

        async def read_response(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("timeout") is not None or (len(args) > 1 and args[1] is not None):
                return await super().read_response(*args, **kwargs)  # (a caller's own)
            patience = PatientTimeout(op_timeout)
            try:
                async with patience:
                    # cancelled when it expires: redis-py then drops the connection (a
                    # reply read later would answer the next command)
                    reply = await super().read_response(*args, **kwargs)
            except TimeoutError:
                if not patience.expired():
                    raise
                raise RedisTimeoutError(f"Timeout reading from {self._host_error()}") from None
            answered()
            if numbers is not None:
                numbers.answered(self._deja_number)
            return reply

    PatientConnection.__name__ = PatientConnection.__qualname__ = f"Patient{base.__name__}"
    return PatientConnection


def _numbered(base: type[Any], numbers: _ConnectionNumbers) -> type[Any]:
    """``base``, a sync redis-py connection class, numbering each socket it connects and
    noting each command sent and each reply read in the caller's account
    (:class:`_ConnectionNumbers`)."""

    class NumberedConnection(base):  # type: ignore[misc]
        _deja_number = 0  # (until it connects)

        def _connect(self) -> Any:
            sock = super()._connect()
            self._deja_number = numbers.opened()
            return sock

        def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
            numbers.sending()
            super().send_packed_command(*args, **kwargs)

        def read_response(self, *args: Any, **kwargs: Any) -> Any:
            reply = super().read_response(*args, **kwargs)
            numbers.answered(self._deja_number)
            return reply

    NumberedConnection.__name__ = NumberedConnection.__qualname__ = f"Numbered{base.__name__}"
    return NumberedConnection


# redis-py leaves a few constructors untyped (sync pools, cluster nodes, Sentinel); those
# calls carry a narrow ignore.


def _sync_ops(
    s: _Settings, numbers: _ConnectionNumbers
) -> tuple[RedisOps, AbstractContextManager[object]]:
    """Build the sync client for ``s`` (a cluster client connects while it is built), and
    the gate its commands take; ``numbers`` numbers the connections it makes to a
    standalone server or a Sentinel's master (see "Restarts and tags" in the module
    docstring)."""
    import redis
    import redis.cluster
    import redis.sentinel
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from deja._sync.redis_ops import RedisOps

    no_retry = Retry(NoBackoff(), 0)
    kwargs = s.connection_kwargs()
    limit = s.max_connections
    if s.mode == "standalone":
        pool_kwargs = {**kwargs, "max_connections": limit, "timeout": s.pool_timeout}
        pool: redis.BlockingConnectionPool
        if s.url is not None:
            pool = redis.BlockingConnectionPool.from_url(s.url, retry=no_retry, **pool_kwargs)
        else:
            pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
                host=s.host,
                port=s.port,
                db=s.db,
                connection_class=redis.SSLConnection if s.tls else redis.Connection,
                retry=no_retry,
                **pool_kwargs,
            )
        pool.connection_class = _numbered(pool.connection_class, numbers)
        gate: AbstractContextManager[object] = _ThreadGate(limit, s.pool_timeout)
        return RedisOps(redis.Redis.from_pool(pool), gate=gate), gate
    gate = _ThreadGate(limit, s.pool_timeout)
    if s.mode == "cluster":
        cluster_kwargs = {**kwargs, "max_connections": limit, "retry": no_retry}
        if s.tls:
            cluster_kwargs["ssl"] = True
        cluster: redis.cluster.RedisCluster
        if s.startup_nodes:
            cluster = redis.cluster.RedisCluster(
                startup_nodes=[
                    redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                    for h, p in s.startup_nodes
                ],
                **cluster_kwargs,
            )
        elif s.url is not None:
            cluster = redis.cluster.RedisCluster.from_url(s.url, **cluster_kwargs)
        else:
            cluster = redis.cluster.RedisCluster(host=s.host, port=s.port, **cluster_kwargs)
        return RedisOps(cluster, gate=gate), gate
    if s.tls:
        kwargs["ssl"] = True
    sentinel = _sentinel_classes()[0](
        list(s.sentinels),
        sentinel_kwargs={**s.sentinel_kwargs(), "retry": no_retry},
        retry=no_retry,
        **kwargs,
    )
    master = sentinel.master_for(s.service_name, db=s.db, max_connections=limit)
    master.connection_pool.connection_class = _numbered(
        master.connection_pool.connection_class, numbers
    )
    watch = _MasterWatch(gate, master.connection_pool)
    return RedisOps(master, gate=watch, also_close=sentinel.sentinels), watch


def _async_ops(
    s: _Settings, numbers: _ConnectionNumbers
) -> tuple[AsyncRedisOps, AbstractAsyncContextManager[object]]:
    """Build the asyncio client for ``s`` (no I/O: it connects on first use), and the gate
    its commands take (``numbers``: as for :func:`_sync_ops`)."""
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.asyncio.sentinel
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from deja._async.redis_ops import AsyncRedisOps

    no_retry = Retry(NoBackoff(), 0)
    # deja's own timeouts bound the connections' work (_patient); redis-py's outlast them
    patience = {
        "socket_timeout": _backstop(s.op_timeout),
        "socket_connect_timeout": _backstop(s.connect_timeout),
    }
    kwargs = {**s.connection_kwargs(), **patience}
    limit = s.max_connections
    if s.mode == "standalone":
        # The gate already admits at most `limit` commands at a time, in order, so a plain
        # pool of `limit` connections can never be exhausted; redis-py's asyncio blocking
        # pool would add a Condition and a timer to every command (a third of the
        # throughput at 64-way concurrency here).
        pool_kwargs = {**kwargs, "max_connections": limit}
        pool: redis.asyncio.ConnectionPool
        if s.url is not None:
            pool = redis.asyncio.ConnectionPool.from_url(s.url, retry=no_retry, **pool_kwargs)
        else:
            pool = redis.asyncio.ConnectionPool(
                host=s.host,
                port=s.port,
                db=s.db,
                connection_class=(
                    redis.asyncio.SSLConnection if s.tls else redis.asyncio.Connection
                ),
                retry=no_retry,
                **pool_kwargs,
            )
        standalone = _AsyncGate(limit, s.pool_timeout)
        pool.connection_class = _patient(pool.connection_class, s, standalone.answered, numbers)
        return AsyncRedisOps(redis.asyncio.Redis.from_pool(pool), gate=standalone), standalone
    if s.mode == "cluster":
        cluster_kwargs = {**kwargs, "max_connections": limit, "retry": no_retry}
        if s.tls:
            cluster_kwargs["ssl"] = True
        cluster: redis.asyncio.cluster.RedisCluster
        cluster_class = _cluster_class()
        if s.startup_nodes:
            cluster = cluster_class(
                startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in s.startup_nodes],
                **cluster_kwargs,
            )
        elif s.url is not None:
            cluster = cluster_class.from_url(s.url, **cluster_kwargs)
        else:
            cluster = cluster_class(host=s.host, port=s.port, **cluster_kwargs)
        gate = _AsyncGate(limit, s.pool_timeout, prepare=cluster.initialize)
        # (not counted: see "Restarts and tags" in the module docstring)
        _connect_nodes_with(cluster, _patient(_node_class(cluster), s, gate.answered, None))
        return AsyncRedisOps(cluster, gate=gate), gate
    if s.tls:
        kwargs["ssl"] = True
    sentinel = _sentinel_classes()[1](
        list(s.sentinels),
        sentinel_kwargs={**s.sentinel_kwargs(), **patience, "retry": no_retry},
        retry=no_retry,
        **kwargs,
    )
    for watcher in sentinel.sentinels:
        # A connection to the master asks a sentinel where the master is first: a reply
        # timed with a plain timeout failed the connection (MasterNotFoundError).
        asked = watcher.connection_pool
        asked.connection_class = _patient(asked.connection_class, s, _unheeded, None)
    master = sentinel.master_for(s.service_name or "", db=s.db, max_connections=limit)
    gate = _AsyncGate(limit, s.pool_timeout)
    master.connection_pool.connection_class = _patient(
        master.connection_pool.connection_class, s, gate.answered, numbers
    )
    watch = _MasterWatch(gate, master.connection_pool)
    return AsyncRedisOps(master, gate=watch, also_close=sentinel.sentinels), watch


def _unheeded() -> None:
    """A reply nothing heeds (a sentinel's)."""


def _node_class(cluster: AsyncRedisCluster) -> type[Any]:
    """The connection class redis-py's asyncio ``cluster`` gives its nodes."""
    return cluster.nodes_manager.connection_kwargs["connection_class"]  # type: ignore[no-any-return]


def _connect_nodes_with(cluster: AsyncRedisCluster, connection_class: type[Any]) -> None:
    """Have every node of a redis-py asyncio ``cluster`` open connections of
    ``connection_class``: the nodes it was given (made already), and those it finds later
    (topology, redirects), which it makes from its connection options. redis-py's
    constructor takes no connection class (it sets its own), so it is put there after."""
    manager = cluster.nodes_manager
    manager.connection_kwargs["connection_class"] = connection_class
    for node in [*manager.startup_nodes.values(), *manager.nodes_cache.values()]:
        node.connection_class = connection_class
