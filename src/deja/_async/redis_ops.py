"""Store operations as Redis commands, over one redis-py client.

The source of truth is src/deja/_async/redis_ops.py; the sync twin in src/deja/_sync/ is
generated from it by scripts/unasync.py (redis-py's asyncio client becomes its sync one).
Neither twin is public: :class:`deja.stores.redis.RedisStore` owns one of each, builds
their clients from its settings, and is the :class:`~deja.stores.base.Store` users see.

The same code serves a standalone server, a Sentinel-managed master and a Cluster:

* ``get``: GET. ``get_many``: one MGET; on a cluster a GET per key, all sent in one
  pipeline (each node gets its keys' commands at once, and no command spans two slots:
  a multi-key command on a slot half-migrated is refused with TRYAGAIN until it moves;
  the keys of a cache rarely share a slot, so MGET per slot saved nothing).
* ``set``/``set_many``: ``SET key value PX ms`` (a plain SET when the TTL is ``None``),
  pipelined without a transaction for ``set_many``. Never MSET: it cannot set a TTL, and
  every write must.
* ``delete``: UNLINK (the value is freed off the server's main thread).
* ``clear(prefix)``: SCAN with ``MATCH <escaped prefix>*`` (on every master of a cluster),
  UNLINK in batches, grouped by slot on a cluster. Never KEYS (it blocks the server) nor
  FLUSHALL (other data may share the database). Locks held stay, uncounted: a key named
  like one (``...:lock``) is read first (a GET per such key, pipelined), and kept if it
  holds a lock's token.
* ``lock``: ``SET name token NX PX ms``, the token 32 hex digits; ``unlock`` and ``extend``
  are Lua scripts that act only while the token holds the lock.
* tags: one Redis SET per tag. Its key starts with the byte 0xFF, which no UTF-8 encoded
  key contains, so a tag record can never collide with a cache entry nor be matched by
  ``clear``; the tag sits in a ``{hash tag}`` so anything ever stored beside a tag record
  shares its slot. ``tag`` and ``drop`` are Lua scripts, so each is atomic.
* ``usage``: DBSIZE, ``INFO memory`` and ``INFO stats``, summed over the masters.

Every redis-py error (connection refused, timeout, WRONGTYPE, cluster down...) leaves as
:class:`~deja.errors.StoreError`, chained to the original (``raise ... from exc``); the
cache façade turns those into misses.
"""

from __future__ import annotations

import functools
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Final, TypeAlias, TypeVar

import redis.asyncio
import redis.asyncio.cluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from deja.breaker import NodeBreakers
from deja.errors import StoreError
from deja.stores.base import StoreUsage, validate_ttl

__all__ = ["AsyncRedisClient", "AsyncRedisOps"]

_R = TypeVar("_R")

AsyncRedisClient: TypeAlias = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
"""A client the operations accept: one server (standalone or Sentinel-managed) or a cluster."""

# What a failing Redis call may raise. RedisClusterException (slot not covered, no node
# reachable) does not derive from RedisError; OSError covers socket errors that reach us
# unwrapped.
_ERRORS: Final = (RedisError, RedisClusterException, OSError)

# No key that is a UTF-8 encoded str contains the byte 0xFF, so this prefix keeps tag
# records apart from every cache entry.
_TAG_PREFIX: Final = b"\xffdeja-tag:{"
_TAG_SUFFIX: Final = b"}"
# Keys per SCAN step and per UNLINK, and members per tag script call (Lua's unpack()
# has a stack limit of a few thousand values).
_SCAN_COUNT: Final = 1000
_UNLINK_BATCH: Final = 500
_TAG_BATCH: Final = 1000

# The cache names each lock it takes "<name>:lock" (a miss's "<entry key>:lock", a batch of
# embeddings' "<scope>:batch-<sha256>:lock", a context cache's "<record key>:lock"), under
# the very prefixes a clear is given. A name alone cannot tell a lock from an entry (a
# custom key builder's digest may end in ":lock"), so clear keeps a key so named only if it
# holds a token alock wrote (32 hex digits), which no cache entry does (an encoded entry
# starts with a binary header).
_LOCK_SUFFIX: Final = b":lock"
_TOKEN: Final = re.compile(rb"[0-9a-f]{32}")

# Add ARGV[2..] to the set KEYS[1]. ARGV[1] is the TTL in ms, or -1 for none. The record
# must live at least as long as its longest-lived entry: a TTL never shortens it, and a
# record without expiry keeps none.
# Release a lock only if it is still ours: a holder whose lock expired must not delete
# the next holder's.
_UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Extend a lock only while it is still ours; 1 if it was.
_EXTEND_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_TAG_SCRIPT: Final = """
local ttl = tonumber(ARGV[1])
local current = redis.call('PTTL', KEYS[1])
redis.call('SADD', KEYS[1], unpack(ARGV, 2))
if ttl < 0 then
    redis.call('PERSIST', KEYS[1])
elseif current == -2 or (current >= 0 and current < ttl) then
    redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"""
# Move a tag record (KEYS[1]) aside to a key of this drop's own (KEYS[2], same slot) and
# read it, in one step, so no key tagged in between is lost. Run twice (its reply lost and
# the command sent again) it reads the same keys: what it moved stays there (for ARGV[1]
# ms at most) until the drop deletes it, and a record tagged again meanwhile joins it.
# allow-oom: a store full under noeviction refused the drop of a tag whose entries were
# just deleted (every retry too, until memory freed); the drop frees memory itself
_DROP_SCRIPT: Final = """#!lua flags=allow-oom
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('SUNIONSTORE', KEYS[2], KEYS[2], KEYS[1])
    redis.call('UNLINK', KEYS[1])
    redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return redis.call('SMEMBERS', KEYS[2])
"""
_DROPPING_MS: Final = 600_000


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"store keys must be str, not {type(key).__name__}")
    return key


def _check_item(key: object, value: object) -> None:
    _check_key(key)
    if not isinstance(value, bytes):
        raise TypeError(f"store values must be bytes, not {type(value).__name__}")


def _milliseconds(ttl: float | None) -> int | None:
    """``ttl`` seconds as whole milliseconds for PX, rounded down (at least 1).

    Rounding down means Redis drops an entry no later than asked, so an expired value is
    never returned whatever the clock granularity.
    """
    ttl = validate_ttl(ttl)
    if ttl is None:
        return None
    return max(1, math.floor(ttl * 1000))


def _glob_escape(prefix: str) -> str:
    """``prefix`` with Redis glob characters escaped, for ``SCAN MATCH <prefix>*``."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in prefix)


def _tag_key(tag: str) -> bytes:
    if not isinstance(tag, str):
        raise TypeError(f"tags must be str, not {type(tag).__name__}")
    return _TAG_PREFIX + tag.encode() + _TAG_SUFFIX


def _slot(key: str | bytes) -> int:
    return key_slot(key.encode() if isinstance(key, str) else key)


def _value(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    # A client built with decode_responses=True hands back str: the bytes are lost.
    raise StoreError("the redis client decodes responses; build it with decode_responses=False")


def _member(member: object) -> str:
    # Members are keys we wrote as UTF-8; a client that decodes responses gives str already.
    return member.decode() if isinstance(member, bytes) else str(member)


def _cluster(client: redis.asyncio.cluster.RedisCluster) -> Any:
    # redis-py types its cluster pipelines and node targeting loosely (the sync twin not at
    # all), so cluster-only calls go through Any rather than a thicket of ignores.
    return client


def _failed(op: str, exc: BaseException) -> StoreError:
    return StoreError(f"redis {op} failed: {type(exc).__name__}: {exc}")


class AsyncRedisOps:
    """The store operations over one client (see the module docstring for the commands).

    ``gate`` bounds how many operations run at once, for clients whose connection pool
    fails instead of waiting when it is exhausted (cluster, Sentinel); it may raise
    :class:`~deja.errors.StoreError` when no slot frees in time. ``owned`` says whether
    :meth:`aclose` closes the client (and ``also_close``, e.g. the connections to the
    sentinels); an injected client belongs to its caller.
    """

    def __init__(
        self,
        client: AsyncRedisClient,
        *,
        gate: AbstractAsyncContextManager[object] | None = None,
        owned: bool = True,
        also_close: Sequence[redis.asyncio.Redis] = (),
    ) -> None:
        self._client = client
        self._gate: AbstractAsyncContextManager[object] = (
            gate if gate is not None else nullcontext()
        )
        self._owned = owned
        self._also_close = tuple(also_close)
        self._closed = False
        # on a cluster, a node that fails is skipped alone (StoreBusy), not the whole store
        self._nodes = (
            NodeBreakers(client) if isinstance(client, redis.asyncio.cluster.RedisCluster) else None
        )

    @property
    def client(self) -> AsyncRedisClient:
        """The redis-py client the commands go to."""
        return self._client

    async def aget(self, key: str) -> bytes | None:
        """GET ``key``."""
        _check_key(key)
        return _value(await self._on_node("get", key, lambda: self._client.get(key)))

    async def aset(self, key: str, value: bytes, ttl: float | None) -> None:
        """``SET key value PX ms`` (no PX when ``ttl`` is ``None``)."""
        px = _milliseconds(ttl)
        _check_item(key, value)
        await self._on_node("set", key, lambda: self._client.set(key, value, px=px))

    async def adelete(self, key: str) -> bool:
        """UNLINK ``key``; whether it existed."""
        _check_key(key)
        return bool(await self._on_node("delete", key, lambda: self._client.unlink(key)))

    async def _on_node(self, op: str, key: str, command: Callable[[], Awaitable[_R]]) -> _R:
        """``command`` (about ``key`` alone) through the gate, sent once more on a closed
        connection; on a cluster its outcome goes to the breaker of ``key``'s node, and
        while that one is open the command is not sent (StoreBusy)."""
        nodes = self._nodes
        if nodes is not None:
            nodes.admit(key)
        try:
            async with self._gate:
                result = await self._once_more(command)
        except _ERRORS as exc:
            if nodes is not None and not isinstance(exc, ResponseError):  # (one answered)
                nodes.failed(key)
            raise _failed(op, exc) from exc
        if nodes is not None:
            nodes.succeeded(key)
        return result

    async def aget_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """One value per key, in order (MGET; a GET per key in one pipeline on a cluster,
        where a batch that fails is read again key by key: the keys of the nodes that
        answer are served, and the breaker of each node that does not learns of it)."""
        wanted = [_check_key(key) for key in keys]
        if not wanted:
            return []
        client = self._client
        values: Sequence[object]
        nodes = self._nodes
        if nodes is not None and nodes.any_resting():  # a node's keys skipped now: misses
            asked = [key for key in wanted if not nodes.resting(key)]
            if len(asked) < len(wanted):
                found = dict(zip(asked, await self.aget_many(asked), strict=True))
                return [found.get(key) for key in wanted]
        try:
            async with self._gate:
                if isinstance(client, redis.asyncio.cluster.RedisCluster):
                    values = await self._once_more(lambda: self._get_pipelined(client, wanted))
                else:
                    values = await self._once_more(lambda: client.mget(wanted))
        except _ERRORS as exc:
            if nodes is None or isinstance(exc, ResponseError):
                raise _failed("get_many", exc) from exc
            return await self._get_one_by_one(wanted, exc)
        return [_value(value) for value in values]

    async def _get_one_by_one(self, keys: list[str], failure: BaseException) -> list[bytes | None]:
        values: list[bytes | None] = []
        answered = False
        for key in keys:
            try:
                values.append(await self.aget(key))
                answered = True
            except StoreError:  # (StoreBusy too: its node is skipped now)
                values.append(None)
        if not answered:
            raise _failed("get_many", failure) from failure
        return values

    async def _once_more(self, command: Callable[[], Awaitable[_R]]) -> _R:
        """``command()``, sent once more if its connection turned out to be closed: after a
        server restarts (or fails over) every pooled connection is stale, and the first
        command on each failed although the server answers (the failed connection is
        replaced: the retry connects afresh). Only for commands that may safely run twice:
        the connection may also die after the server ran one, its reply lost; a lock taken
        twice would be wrong (that is not retried; a tag drop is made safe to run twice), a
        value set or read twice is not. A timeout is not retried either: a slow server
        would cost each call twice its timeout."""
        try:
            return await command()
        except RedisConnectionError:
            return await command()

    async def _set_pipelined(self, items: Mapping[str, bytes], px: int | None) -> None:
        # A cluster pipeline sends each node the commands for its slots.
        pipe = self._client.pipeline(transaction=False)
        for key, value in items.items():
            pipe.set(key, value, px=px)
        await pipe.execute()

    async def _get_pipelined(
        self, client: redis.asyncio.cluster.RedisCluster, keys: list[str]
    ) -> list[object]:
        distinct = list(dict.fromkeys(keys))
        pipe = _cluster(client).pipeline(transaction=False)
        for key in distinct:
            pipe.get(key)
        found = dict(zip(distinct, await pipe.execute(), strict=True))
        return [found[key] for key in keys]

    async def aset_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """``SET key value PX ms`` for every item, pipelined (no transaction)."""
        px = _milliseconds(ttl)
        for key, value in items.items():
            _check_item(key, value)
        if not items:
            return
        try:
            async with self._gate:
                await self._once_more(lambda: self._set_pipelined(items, px))
        except _ERRORS as exc:
            raise _failed("set_many", exc) from exc

    async def aclear(self, prefix: str) -> int:
        """Delete every key starting with ``prefix`` (SCAN + UNLINK), but tag records and
        the locks held; how many went."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be str, not {type(prefix).__name__}")
        pattern = _glob_escape(prefix) + "*"
        deleted = 0
        batch: dict[bytes, None] = {}
        try:
            async with self._gate:
                # On a cluster, scan_iter walks every master in turn.
                async for key in self._client.scan_iter(match=pattern, count=_SCAN_COUNT):
                    if isinstance(key, bytes) and not key.startswith(_TAG_PREFIX):
                        batch[key] = None  # SCAN may return a key twice
                    if len(batch) >= _UNLINK_BATCH:
                        deleted += await self._unlink(await self._not_locks(list(batch)))
                        batch.clear()
                if batch:
                    deleted += await self._unlink(await self._not_locks(list(batch)))
        except _ERRORS as exc:
            raise _failed("clear", exc) from exc
        return deleted

    async def _not_locks(self, keys: list[bytes]) -> list[bytes]:
        """``keys`` without the locks held now (see ``_LOCK_SUFFIX``), nor the keys so named
        that are gone since the SCAN (a lock released: its name may be taken again)."""
        named = [key for key in keys if key.endswith(_LOCK_SUFFIX)]
        if not named:
            return keys
        pipe = self._client.pipeline(transaction=False)
        for key in named:
            pipe.get(key)
        kept: set[bytes] = set()
        for key, value in zip(named, await pipe.execute(raise_on_error=False), strict=True):
            if isinstance(value, ResponseError) and str(value).startswith("WRONGTYPE"):
                continue  # no string, so no lock: cleared as before
            if isinstance(value, BaseException):
                raise value
            if value is None or (isinstance(value, bytes) and _TOKEN.fullmatch(value)):
                kept.add(key)
        return [key for key in keys if key not in kept]

    async def _unlink(self, keys: list[bytes]) -> int:
        if not keys:
            return 0
        client = self._client
        if not isinstance(client, redis.asyncio.cluster.RedisCluster):
            return int(await client.unlink(*keys))
        groups: dict[int, list[bytes]] = {}
        for key in keys:
            groups.setdefault(_slot(key), []).append(key)
        pipe = _cluster(client).pipeline(transaction=False)
        for group in groups.values():
            pipe.execute_command("UNLINK", *group)
        return sum(int(n) for n in await pipe.execute())

    async def atag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        """Add ``keys`` to ``tag``'s set; it lives at least ``ttl`` seconds (max of all)."""
        px = _milliseconds(ttl)
        if isinstance(keys, str):
            # A str is a Sequence[str] too; tagging its characters is never what was meant.
            raise TypeError("keys must be a sequence of keys, not a str")
        members = [_check_key(key) for key in keys]
        record = _tag_key(tag)
        if not members:
            return  # Redis holds no empty sets: an empty tag is simply absent
        try:
            async with self._gate:
                for start in range(0, len(members), _TAG_BATCH):
                    chunk = members[start : start + _TAG_BATCH]
                    ttl_ms = -1 if px is None else px
                    tag_them = functools.partial(
                        self._client.eval, _TAG_SCRIPT, 1, record, ttl_ms, *chunk
                    )
                    await self._once_more(tag_them)
        except _ERRORS as exc:
            raise _failed("tag", exc) from exc

    async def akeys_for(self, tag: str) -> list[str]:
        """The keys in ``tag``'s set (SMEMBERS)."""
        record = _tag_key(tag)
        try:
            async with self._gate:
                members = await self._once_more(lambda: self._client.smembers(record))
        except _ERRORS as exc:
            raise _failed("keys_for", exc) from exc
        return [_member(member) for member in members]

    async def adrop(self, tag: str) -> list[str]:
        """Delete ``tag``'s set and return its keys, atomically (a Lua script moves it
        aside and reads it; then the moved set is deleted). Safe to send again: a reply
        lost after the server ran the script (the record gone, its keys unknown) left the
        tagged answers out of reach of any later drop."""
        record = _tag_key(tag)
        moved = record + b":dropping:" + uuid.uuid4().hex.encode()  # (the same slot)
        read = functools.partial(self._client.eval, _DROP_SCRIPT, 2, record, moved, _DROPPING_MS)
        try:
            async with self._gate:
                members = await self._once_more(read)
                await self._once_more(lambda: self._client.unlink(moved))
        except _ERRORS as exc:
            raise _failed("drop", exc) from exc
        return [_member(member) for member in members]

    async def alock(self, name: str, *, ttl: float) -> str | None:
        """``SET name token NX PX ttl``: a token if this caller now holds the lock, else None."""
        token = uuid.uuid4().hex  # (32 hex digits: what clear takes for a lock, see _TOKEN)
        try:
            async with self._gate:
                taken = await self._client.set(name, token, nx=True, px=_milliseconds(ttl))
        except _ERRORS as exc:
            raise _failed("lock", exc) from exc
        return token if taken else None

    async def aunlock(self, name: str, token: str) -> None:
        """Delete ``name`` only if ``token`` still holds it (a Lua compare-and-delete)."""
        try:
            async with self._gate:
                await self._once_more(lambda: self._client.eval(_UNLOCK_SCRIPT, 1, name, token))
        except _ERRORS as exc:
            raise _failed("unlock", exc) from exc

    async def aextend(self, name: str, token: str, *, ttl: float) -> bool:
        """Make ``name`` expire ``ttl`` seconds from now if ``token`` still holds it (Lua)."""
        try:
            async with self._gate:
                extended = await self._client.eval(
                    _EXTEND_SCRIPT, 1, name, token, max(1, int(ttl * 1000))
                )
        except _ERRORS as exc:
            raise _failed("extend", exc) from exc
        return bool(extended)

    async def ausage(self) -> StoreUsage:
        """Keys (DBSIZE, tag records included), used memory and evictions, over all masters."""
        client = self._client
        entries = used = evicted = 0
        try:
            async with self._gate:
                if isinstance(client, redis.asyncio.cluster.RedisCluster):
                    cluster = _cluster(client)
                    for node in cluster.get_primaries():
                        entries += int(await cluster.execute_command("DBSIZE", target_nodes=node))
                        memory = await cluster.execute_command("INFO", "memory", target_nodes=node)
                        stats = await cluster.execute_command("INFO", "stats", target_nodes=node)
                        used += int(memory["used_memory"])
                        evicted += int(stats["evicted_keys"])
                else:
                    entries = int(await client.dbsize())
                    used = int((await client.info("memory"))["used_memory"])
                    evicted = int((await client.info("stats"))["evicted_keys"])
        except _ERRORS as exc:
            raise _failed("usage", exc) from exc
        return StoreUsage(entries=entries, bytes=used, evictions=evicted)

    async def aclose(self) -> None:
        """Disconnect the client's connections (once; only a client these ops own)."""
        if self._closed or not self._owned:
            return
        self._closed = True
        try:
            await self._client.aclose()
            for extra in self._also_close:
                await extra.aclose()
        except _ERRORS as exc:
            raise _failed("close", exc) from exc
