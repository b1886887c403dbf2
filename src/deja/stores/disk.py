"""A persistent store in a local directory, shared safely by threads and processes.

Values live in a :class:`diskcache.Cache` (SQLite in WAL mode, large values in files), which
serializes writers across processes. These details are ours:

* **Expiry.** diskcache expires items by the real ``time.time``, but stores take an injected
  ``clock``. So every value is framed by a small header holding its absolute expiry by that
  clock, checked on read; diskcache is also given ``expire=ttl`` (plus slack) so expired
  items are physically removed in time.
* **Tags.** Tag records live in their own SQLite file (``tags.sqlite3``), one row per (tag,
  key) pair. Kept apart from the values they can never collide with a cache key, are never
  evicted by diskcache's size limit (an evicted tag record would leave its entries
  impossible to invalidate) and never count against it; and one row per pair makes tagging
  a key O(log n) instead of rewriting the tag's whole key list.
* **Files left by a crash.** diskcache writes a large value's file before the row that
  names it, so a process killed in between leaves a file no row names, which nothing
  would ever remove (30 writers killed mid-write: 33.5 MB on disk for a 4 MiB
  ``size_limit``). The first time a process opens the directory, a background thread
  deletes such files older than a minute (:meth:`DiskStore.remove_orphans`).
* **Damaged values.** diskcache syncs neither a value's file nor its row, so a power loss
  can leave a file cut short (to 0 bytes, say). A value too short for its header, of an
  unknown format, or not bytes at all (another program's) reads as a miss, with a warning
  naming its key once, and is left for the next write of that key to replace: never as
  the store failing, which would have the cache skip the store for every request.
* **Locks** (:class:`~deja.stores.base.Locking`, :class:`~deja.stores.base.LockExtending`:
  identical misses in the processes sharing the directory make one upstream call). A lock
  is a row of its own SQLite file (``locks.sqlite3``), taken, extended or released by one
  statement: a file apart, so taking one never waits behind the values' writes (a lock
  and its release: 20-30 us at the median either way, but at the 99th percentile 1-4 ms in
  diskcache's database beside another process writing values, 0.9-1.3 ms apart). It
  expires by the store's ``clock`` like an entry, so a holder killed mid-call frees it
  after its TTL; one whose clock went back (the row says it was taken or extended later
  than now) is free too, rather than held for the whole jump.
* **A directory that cannot be written** (a read-only mount or file, a full disk).
  diskcache writes its settings each time it opens the directory, so it cannot open such
  a directory at all. Reads then go through a read-only SQLite connection instead (a
  warning names the directory, once), and every write raises a
  :class:`~deja.errors.StoreError` that names it; a later write that can open the
  directory brings the store back to normal. Taking a lock there raises it too (the
  cache then calls upstream at once, without single-flight: never waits for a lock).

Every other diskcache, SQLite and OS error is raised as :class:`deja.errors.StoreError`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sqlite3
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import diskcache

from deja._forks import renew_in_child
from deja.errors import StoreError
from deja.stores.base import StoreUsage, SyncStore, SyncTagIndex, validate_ttl

__all__ = ["DiskStore"]

logger = logging.getLogger("deja.stores.disk")

# Value framing: format version, then absolute expiry by the store's clock (0.0: never).
_HEADER = struct.Struct("<Bd")
_FORMAT = 1
_NO_EXPIRY = 0.0
# diskcache keeps an item this much longer than its TTL, so rounding between the two
# clocks never removes an entry before our own header says it expired.
_EXPIRE_SLACK = 1.0
# How long a call waits for another process's write lock before failing. A cache that
# waits longer than this is worse than a miss.
_LOCK_TIMEOUT = 10.0
_TAGS_FILE = "tags.sqlite3"
_LOCKS_FILE = "locks.sqlite3"
# how long a read-only view of an unwritable directory is read before it is opened anew
_READ_ONLY_REOPEN = 2.0
# A tag row is written before its value (so no entry is ever stored where its tag cannot
# reach it); another process's sweep may see the row in between. It is forgotten only
# when its value is still missing this long after a sweep first found it so.
_SWEEP_GRACE = 60.0
_SWEEP_SUSPECTS = 4096  # rows awaiting their grace, at most (more wait for the next round)
# diskcache names a large value's file xx/yy/<28 hex>.val
_VALUE_FILE = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{28}\.val")
_ORPHAN_AGE = 60.0  # seconds: a younger file may be a write in flight in another process
_collected: set[str] = set()  # directories this process looked for orphaned files in
_collected_lock = threading.Lock()
# Keys deleted per transaction by clear(): few commits, yet other writers get a turn.
_CLEAR_BATCH = 500

_BACKEND_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout)
EVICTION_POLICIES = ("least-recently-stored", "least-recently-used", "least-frequently-used")
# the most the write-ahead logs are kept at after a checkpoint (see DiskStore._journal_limit)
_JOURNAL_LIMIT = 4 * 2**20
_TAGS_JOURNAL_LIMIT = 2**20
_LOCKS_JOURNAL_LIMIT = 2**18  # a row per lock held: the file stays a few pages
_PAGE = 4096  # SQLite's default page size
# SQLite's primary result codes for a directory diskcache cannot open for writing: a
# read-only file or mount (READONLY; CANTOPEN for a WAL database whose -shm file cannot be
# created beside it) or a full disk (FULL).
_UNWRITABLE = frozenset({sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_FULL})
_DAMAGED_REMEMBERED = 1024  # keys whose damaged value was reported (then forgotten, all)
_SELECT_VALUE = (  # diskcache's own lookup of a live item (Cache.get)
    "SELECT mode, filename, value FROM Cache"
    " WHERE key = ? AND raw = ? AND (expire_time IS NULL OR expire_time > ?)"
)

_TAG_SCHEMA = (
    # expires is NULL for a tag that never expires.
    "CREATE TABLE IF NOT EXISTS tag (name TEXT PRIMARY KEY, expires REAL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS tag_expires ON tag (expires) WHERE expires IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS tag_key ("
    " name TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (name, key)) WITHOUT ROWID",
)
# One row per lock held: its holder's token, when it expires and when it was taken or last
# extended, by the store's clock. A later schema goes in a new table (or file): a deja that
# knows only this one shares the directory meanwhile. (An older deja ignores the file.)
_LOCK_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, token TEXT NOT NULL,"
    " expires REAL NOT NULL, renewed REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS locks_expires ON locks (expires)",
)
# A lock is held while it has not expired and was not taken or extended "later" than now by
# more than this: where the clock went back (an NTP step), the lock is free then, rather than
# held for the whole jump (its waiters would wait out lock_wait, 10 minutes by default).
_CLOCK_SLACK = 1.0
# ?1 name, ?2 token, ?3 now, ?4 ttl: a row inserted, or taken over from a holder whose lock
# is no longer held; 0 rows changed: held by another.
_TAKE_LOCK = (
    "INSERT INTO locks VALUES (?1, ?2, ?3 + ?4, ?3) ON CONFLICT (name) DO UPDATE SET"
    " token = excluded.token, expires = excluded.expires, renewed = excluded.renewed"
    f" WHERE locks.expires <= ?3 OR locks.renewed > ?3 + {_CLOCK_SLACK}"
)
_EXTEND_LOCK = (
    "UPDATE locks SET expires = ?3 + ?4, renewed = ?3 WHERE name = ?1 AND token = ?2"
    f" AND expires > ?3 AND renewed <= ?3 + {_CLOCK_SLACK}"
)
_RELEASE_LOCK = "DELETE FROM locks WHERE name = ? AND token = ?"
# Rows of locks no longer held (holders killed, releases that failed) are deleted by one lock
# call in this many: a probe of the expiry index, the file kept to the locks held.
_LOCK_SWEEP_EVERY = 256
_SWEEP_LOCKS = "DELETE FROM locks WHERE expires <= ?"

_SELECT_TAG_KEYS = (
    "SELECT tag_key.key FROM tag_key JOIN tag ON tag.name = tag_key.name"
    " WHERE tag_key.name = ? AND (tag.expires IS NULL OR tag.expires > ?)"
)


@contextmanager
def _backend_errors(action: str, where: str) -> Iterator[None]:
    """Translate back-end failures into StoreError at the store boundary, naming the file
    or directory (SQLite's "file is not a database" names neither)."""
    try:
        yield
    except _BACKEND_ERRORS as exc:
        raise StoreError(f"disk store: {action} failed in {where}: {exc!r}") from exc


@contextmanager
def _write_transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # BEGIN IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so
    # a read-modify-write cannot interleave with another process's.
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        # SQLite rolls back by itself on some errors; a second ROLLBACK would mask the
        # original error with "no transaction is active".
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _frame(value: bytes, expires: float) -> bytes:
    return _HEADER.pack(_FORMAT, expires) + value


class DiskStore(SyncStore, SyncTagIndex):
    """A persistent store in ``directory``, safe for several threads and processes at once.

    Nothing touches the disk until the first operation. ``size_limit`` (bytes) bounds the
    values approximately: once past it, each write makes diskcache evict a few items,
    by ``eviction_policy``: the least recently *stored* (``"least-recently-stored"``, the
    default: reads never write, which keeps hits cheap and processes from contending), or
    the least recently read (``"least-recently-used"``: keeps the hot prompts; each hit then
    writes its access time) or least often read (``"least-frequently-used"``: each hit
    writes its count). ``clock`` gives wall-clock seconds for expiry; pass
    :class:`deja.testing.FakeClock` in tests.

    The async methods run the sync ones in a worker thread, so they never block the loop,
    but for a single read under the default policy (see :meth:`aget`). After :meth:`close`
    the store reopens on next use.
    """

    name = "disk"
    offload = True

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        size_limit: int = 1 * 2**30,
        eviction_policy: str = "least-recently-stored",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if eviction_policy not in EVICTION_POLICIES:
            raise ValueError(
                f"eviction_policy must be one of {', '.join(EVICTION_POLICIES)},"
                f" not {eviction_policy!r}"
            )
        self._eviction_policy = eviction_policy
        if isinstance(size_limit, bool) or not isinstance(size_limit, int):
            raise TypeError(f"size_limit must be an int, not {type(size_limit).__name__}")
        if size_limit <= 0:
            raise ValueError(f"size_limit must be a positive number of bytes, not {size_limit}")
        self._directory = os.fspath(directory)
        if not self._directory or "\0" in self._directory:
            # ("" is the working directory; a NUL no path holds: every use a miss)
            raise ValueError(f"directory must be a directory's path, not {self._directory!r}")
        self._tags_file = os.path.join(self._directory, _TAGS_FILE)
        if os.path.exists(self._directory) and not os.path.isdir(self._directory):
            # it would open on first use and fail there, every use: a miss each time
            raise ValueError(f"{self._directory!r} exists and is not a directory")
        self._size_limit = size_limit
        self._clock = clock
        self._open_lock = threading.Lock()
        self._cache: Any = None  # diskcache.Cache, opened on first use
        # One tag-database connection per process, used under _tag_lock (tag operations are
        # short and SQLite serializes writers anyway).
        self._tag_lock = threading.Lock()
        self._tag_con: sqlite3.Connection | None = None
        self._tag_pid = 0
        self._swept_to: tuple[str, str] = ("", "")  # (name, key) the next sweep goes on from
        # rows found valueless: when first, and in which round of the cursor last
        self._suspects: dict[tuple[str, str], tuple[float, int]] = {}
        self._round = 0  # rounds of the sweep's cursor over the table
        # One lock-database connection per process too, used under _lock_lock.
        self._locks_file = os.path.join(self._directory, _LOCKS_FILE)
        self._lock_lock = threading.Lock()
        self._lock_con: sqlite3.Connection | None = None
        self._lock_pid = 0
        self._locks_taken = 0  # lock calls so far (one in _LOCK_SWEEP_EVERY sweeps)
        # the directory read-only, while it cannot be opened for writing (see _reader)
        self._read_only: _ReadOnlyValues | None = None
        self._damaged_lock = threading.Lock()
        self._damaged_keys: set[str] = set()  # keys whose damaged value was reported
        renew_in_child(self, DiskStore._renew)

    def _renew(self) -> None:
        # a forked child: a parent's thread inside a call (the lock keeper's extend, a tag
        # write) held one of these, and is not here: the child's first call waited for ever
        self._open_lock = threading.Lock()
        self._tag_lock = threading.Lock()
        self._lock_lock = threading.Lock()
        self._damaged_lock = threading.Lock()

    @property
    def directory(self) -> str:
        """The directory holding the store."""
        return self._directory

    def get(self, key: str) -> bytes | None:
        """Return the value for ``key``, or ``None`` if it is missing or expired."""
        with _backend_errors("get", self._directory):
            raw = self._reader().get(key)
        if raw is None:
            return None
        damage = _damage(raw)
        if damage is not None:
            self._damaged(key, damage)
            return None
        return self._unframe(raw)

    async def aget(self, key: str) -> bytes | None:
        """:meth:`get` on the calling thread when a read writes nothing (the default
        least-recently-stored policy) and the store is open: a SQLite read in WAL mode
        waits for no writer, and costs less than a hop to a worker thread (an async hit:
        ~60-150 us with the hop, ~15 us without); in a worker thread otherwise."""
        if self._cache is not None and self._eviction_policy == "least-recently-stored":
            return self.get(key)
        return await super().aget(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: no expiry)."""
        ttl = validate_ttl(ttl)
        _check_item(key, value)
        expires = _NO_EXPIRY if ttl is None else self._clock() + ttl
        with _backend_errors("set", self._directory):
            self._values().set(key, _frame(value, expires), expire=_physical_ttl(ttl))

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store every item with the same ``ttl``, in one transaction."""
        ttl = validate_ttl(ttl)
        for key, value in items.items():
            _check_item(key, value)
        expires = _NO_EXPIRY if ttl is None else self._clock() + ttl
        physical = _physical_ttl(ttl)
        with _backend_errors("set_many", self._directory):
            cache = self._values()
            with cache.transact():
                for key, value in items.items():
                    cache.set(key, _frame(value, expires), expire=physical)

    def delete(self, key: str) -> bool:
        """Delete ``key``; return whether it was held and not expired."""
        with _backend_errors("delete", self._directory):
            raw = self._values().pop(key)
        return raw is not None and _damage(raw) is None and self._unframe(raw) is not None

    def clear(self, prefix: str) -> int:
        """Delete every key starting with ``prefix`` (tag records and locks are untouched).

        Returns how many were deleted; this may include entries whose TTL had passed but
        that diskcache had not removed yet.
        """
        with _backend_errors("clear", self._directory):
            cache = self._values()
            doomed = [k for k in cache.iterkeys() if isinstance(k, str) and k.startswith(prefix)]
            deleted = 0
            for start in range(0, len(doomed), _CLEAR_BATCH):
                with cache.transact():
                    for key in doomed[start : start + _CLEAR_BATCH]:
                        deleted += bool(cache.delete(key))
            return deleted

    @property
    def usage_source(self) -> str:
        """What :meth:`usage` measures (the directory): metrics count two stores on one
        directory once."""
        return f"disk {os.path.realpath(self._directory)}"

    def usage(self) -> StoreUsage:
        """Entries held (including expired ones not yet removed) and bytes on disk.

        ``evictions`` is ``None``: diskcache does not report how many items it evicted (a
        count of 0 would tell an alert on evictions that ``size_limit`` is never reached).
        """
        with _backend_errors("usage", self._directory):
            cache = self._reader()
            return StoreUsage(entries=len(cache), bytes=int(cache.volume()), evictions=None)

    def close(self) -> None:
        """Close the files this thread opened, and let the async callers' worker threads
        go; the store reopens on next use."""
        self._release_workers()
        with self._open_lock:
            cache, self._cache = self._cache, None
            reader, self._read_only = self._read_only, None
        with self._tag_lock:
            con, self._tag_con = self._tag_con, None
            same_process = self._tag_pid == os.getpid()
        with self._lock_lock:
            lock_con, self._lock_con = self._lock_con, None
            same_process_locks = self._lock_pid == os.getpid()
        with _backend_errors("close", self._directory):
            if cache is not None:
                # diskcache connections are per thread; those other threads opened are
                # closed when the Cache object is collected.
                cache.close()
            if con is not None and same_process:
                con.close()
            if lock_con is not None and same_process_locks:
                lock_con.close()
            if reader is not None and reader.pid == os.getpid():
                reader.close()

    def tag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        """Add ``keys`` to ``tag``; the record lives at least ``ttl`` seconds (max of all)."""
        ttl = validate_ttl(ttl)
        if isinstance(keys, str):
            # A str is a Sequence[str] too; tagging its characters is never what was meant.
            raise TypeError("keys must be a sequence of keys, not a str")
        now = self._clock()
        expires = None if ttl is None else now + ttl
        with (
            _backend_errors("tag", self._tags_file),
            self._tag_lock,
            _write_transaction(self._tags()) as con,
        ):
            row = con.execute("SELECT expires FROM tag WHERE name = ?", (tag,)).fetchone()
            if row is None:
                con.execute("INSERT INTO tag VALUES (?, ?)", (tag, expires))
            elif row[0] is not None and row[0] <= now:
                # The old record expired: start afresh rather than extend it.
                con.execute("DELETE FROM tag_key WHERE name = ?", (tag,))
                con.execute("UPDATE tag SET expires = ? WHERE name = ?", (expires, tag))
            elif row[0] is not None:
                # A tag that never expires (NULL) stays so; otherwise keep the later expiry.
                longest = None if expires is None else max(row[0], expires)
                con.execute("UPDATE tag SET expires = ? WHERE name = ?", (longest, tag))
            con.executemany(
                "INSERT OR IGNORE INTO tag_key VALUES (?, ?)", [(tag, key) for key in keys]
            )
            # Drop every expired tag record, so the file does not grow without bound. The
            # partial index makes this a cheap probe when nothing has expired.
            con.execute(
                "DELETE FROM tag_key WHERE name IN (SELECT name FROM tag WHERE expires <= ?)",
                (now,),
            )
            con.execute("DELETE FROM tag WHERE expires <= ?", (now,))
            # (a valueless row is forgotten on its second visit, hence three per row added)
            self._sweep(con, 3 * (len(keys) + 1), fresh=keys)

    def _sweep(self, con: sqlite3.Connection, count: int, *, fresh: Sequence[str]) -> None:
        """Forget the tag rows of ``count`` keys (a cursor goes round the table) whose
        values are gone: evicted by ``size_limit``, or never expiring while their tag does
        not. Each tag write looks at three rows per row it adds, so the file stays in
        proportion to the entries held. The ``fresh`` keys just tagged are left alone, and a
        row whose value is missing goes only when it still is :data:`_SWEEP_GRACE` seconds
        after it was first found so (its value may be on its way, from another process)."""
        rows = con.execute(
            "SELECT name, key FROM tag_key WHERE (name, key) > (?, ?) ORDER BY name, key LIMIT ?",
            (*self._swept_to, count),
        ).fetchall()
        values = self._values()
        suspects = self._suspects
        now = self._clock()
        this_round = self._round
        gone = []
        for row in rows:
            if row[1] in fresh or row[1] in values:
                suspects.pop(row, None)
                continue
            seen = suspects.get(row)
            if seen is None:
                if len(suspects) < _SWEEP_SUSPECTS:
                    suspects[row] = (now, this_round)
            elif now - seen[0] >= _SWEEP_GRACE:
                del suspects[row]
                gone.append(row)
            else:
                suspects[row] = (seen[0], this_round)
        if len(rows) == count:
            self._swept_to = rows[-1]
        else:  # a round is over: a row not met in it is gone (dropped, expired, swept)
            self._swept_to = ("", "")
            self._round += 1
            for row in [row for row, seen in suspects.items() if seen[1] < this_round]:
                del suspects[row]
        if not gone:
            return
        con.executemany("DELETE FROM tag_key WHERE name = ? AND key = ?", gone)
        con.executemany(
            "DELETE FROM tag WHERE name = ? AND NOT EXISTS"
            " (SELECT 1 FROM tag_key WHERE tag_key.name = tag.name)",
            [(name,) for name in {name for name, _ in gone}],
        )

    def keys_for(self, tag: str) -> list[str]:
        """The keys tagged with ``tag`` (some may have expired or been deleted since)."""
        with _backend_errors("keys_for", self._tags_file):
            values = self._reader()
            if isinstance(values, _ReadOnlyValues):
                rows = values.tag_keys(tag, self._clock())
            else:
                with self._tag_lock:
                    rows = self._tags().execute(_SELECT_TAG_KEYS, (tag, self._clock())).fetchall()
        return [str(row[0]) for row in rows]

    def drop(self, tag: str) -> list[str]:
        """Forget ``tag`` and return the keys it named."""
        with (
            _backend_errors("drop", self._tags_file),
            self._tag_lock,
            _write_transaction(self._tags()) as con,
        ):
            rows = con.execute(_SELECT_TAG_KEYS, (tag, self._clock())).fetchall()
            con.execute("DELETE FROM tag_key WHERE name = ?", (tag,))
            con.execute("DELETE FROM tag WHERE name = ?", (tag,))
        return [str(row[0]) for row in rows]

    def lock(self, name: str, *, ttl: float) -> str | None:
        """Take the cross-process lock ``name`` for ``ttl`` seconds: a token, or ``None``
        while another holder has it (see :class:`~deja.stores.base.Locking`). One short
        write transaction; a directory that cannot be written raises
        :class:`~deja.errors.StoreError`, as a write does."""
        ttl = _lock_ttl(ttl)
        token = uuid.uuid4().hex
        with _backend_errors("lock", self._locks_file), self._lock_lock:
            con = self._locks()
            now = self._clock()
            taken = con.execute(_TAKE_LOCK, (name, token, now, ttl)).rowcount == 1
            self._locks_taken += 1
            if self._locks_taken % _LOCK_SWEEP_EVERY == 0:
                con.execute(_SWEEP_LOCKS, (now,))
        return token if taken else None

    def unlock(self, name: str, token: str) -> None:
        """Release ``name`` if ``token`` still holds it (a later holder's lock stays)."""
        with _backend_errors("unlock", self._locks_file), self._lock_lock:
            self._locks().execute(_RELEASE_LOCK, (name, token))

    def extend(self, name: str, token: str, *, ttl: float) -> bool:
        """Make ``name`` expire ``ttl`` seconds from now if ``token`` still holds it; say
        whether it did (see :class:`~deja.stores.base.LockExtending`)."""
        ttl = _lock_ttl(ttl)
        with _backend_errors("extend", self._locks_file), self._lock_lock:
            con = self._locks()
            return con.execute(_EXTEND_LOCK, (name, token, self._clock(), ttl)).rowcount == 1

    async def alock(self, name: str, *, ttl: float) -> str | None:
        """Async :meth:`lock`, in the store's worker threads."""
        return await self._offloaded(functools.partial(self.lock, name, ttl=ttl))

    async def aunlock(self, name: str, token: str) -> None:
        """Async :meth:`unlock`, in the store's worker threads."""
        await self._offloaded(self.unlock, name, token)

    async def aextend(self, name: str, token: str, *, ttl: float) -> bool:
        """Async :meth:`extend`, in the store's worker threads."""
        return await self._offloaded(functools.partial(self.extend, name, token, ttl=ttl))

    def _journal_limit(self) -> int:
        """How large SQLite's write-ahead log may grow before a checkpoint, which then cuts
        it back to that size: a quarter of ``size_limit``, at most 4 MiB (SQLite's own is 4
        MiB, kept at its largest for good: 4 MiB of log beside a cache bounded to 3)."""
        return min(self._size_limit // 4, _JOURNAL_LIMIT)

    def _values(self) -> Any:
        """The diskcache.Cache, opened on first use. A directory it cannot open for
        writing raises a StoreError naming the directory, and each write tries again
        (space may have been freed, the mount made writable)."""
        try:
            return self._opened()
        except sqlite3.OperationalError as exc:
            if not self._unwritable(exc):
                raise
            raise StoreError(
                f"disk store: {self._directory!r} cannot be written ({exc}: a read-only"
                " mount or file, or a full disk); writes are off, what it holds is still read"
            ) from exc

    def _reader(self) -> Any:
        """What reads go through: the diskcache.Cache, or a read-only view of the
        directory while it cannot be opened for writing (warned once per opening)."""
        cache = self._cache
        if cache is not None:
            return cache
        reader = self._read_only
        if reader is not None and reader.pid == os.getpid() and reader.fresh():
            return reader
        try:
            return self._opened()
        except sqlite3.OperationalError as exc:
            if not self._unwritable(exc):
                raise
            with self._open_lock:
                reader = self._read_only
                if reader is None or reader.pid != os.getpid() or not reader.fresh():
                    # opened anew now and then: a connection opened immutable (where the
                    # directory is read-only to this process) never sees what another
                    # process writes there (deleted entries were served for ever)
                    if reader is None or reader.pid != os.getpid():
                        logger.warning(
                            "disk store %s cannot be written (%s): its entries are read"
                            " through a read-only connection, and every write fails until"
                            " it can be",
                            self._directory,
                            exc,
                        )
                    else:
                        reader.close()
                    reader = _ReadOnlyValues(self._directory)
                    self._read_only = reader
            return reader

    def _unwritable(self, exc: sqlite3.OperationalError) -> bool:
        """Whether diskcache failed to open the directory because it cannot write to it
        (not because there is no database to read: a file where the directory should be
        stays an error, as does an empty directory, with nothing to read)."""
        code = getattr(exc, "sqlite_errorcode", None)  # None: not raised by SQLite itself
        database = os.path.join(self._directory, "cache.db")
        return code is not None and code & 0xFF in _UNWRITABLE and os.path.isfile(database)

    def _opened(self) -> Any:
        cache = self._cache
        if cache is None:
            with self._open_lock:
                if self._cache is None:
                    self._cache = diskcache.Cache(
                        self._directory,
                        size_limit=self._size_limit,
                        eviction_policy=self._eviction_policy,
                        timeout=_LOCK_TIMEOUT,
                        sqlite_journal_size_limit=self._journal_limit(),
                        # a checkpoint each time the log reaches it (SQLite's default is
                        # 1,000 pages, 4 MiB)
                        sqlite_wal_autocheckpoint=max(self._journal_limit() // _PAGE, 16),
                    )
                    if self._read_only is not None:
                        self._read_only.close()
                    self._read_only = None  # reads go through the cache from now on
                    self._collect_orphans_once()
                cache = self._cache
        return cache

    def _collect_orphans_once(self) -> None:
        directory = os.path.realpath(self._directory)
        with _collected_lock:
            if directory in _collected:
                return
            _collected.add(directory)
        threading.Thread(
            target=self._collect_orphans, name="deja-disk-orphans", daemon=True
        ).start()

    def _collect_orphans(self) -> None:
        try:
            removed, size = self.remove_orphans()
        except Exception as exc:  # a file left over costs room, never an answer
            logger.debug("looking for orphaned value files failed: %s", exc)
            return
        if removed:
            logger.info(
                "removed %d value files (%d bytes) no entry names, left by a process that"
                " stopped while writing",
                removed,
                size,
            )

    def remove_orphans(self, older_than: float = _ORPHAN_AGE) -> tuple[int, int]:
        """Delete the value files that no entry names and that are older than
        ``older_than`` seconds (a younger one may be another process's write in flight);
        returns how many went and their bytes. Done once per process and directory on
        first use, in a background thread."""
        self._values()  # the directory and its database exist
        database = os.path.join(self._directory, "cache.db")
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as con:
            named = {
                os.path.normpath(row[0])
                for row in con.execute("SELECT filename FROM Cache WHERE filename IS NOT NULL")
            }
        cutoff = time.time() - older_than
        removed = size = 0
        for root, _, files in os.walk(self._directory):
            for name in files:
                path = os.path.join(root, name)
                relative = os.path.relpath(path, self._directory)
                if relative in named or not _VALUE_FILE.fullmatch(relative.replace(os.sep, "/")):
                    continue
                try:
                    stat = os.stat(path)
                    if stat.st_mtime >= cutoff:
                        continue
                    os.remove(path)
                except FileNotFoundError:  # another process's collector, or a cull
                    continue
                removed += 1
                size += stat.st_size
        return removed, size

    def _tags(self) -> sqlite3.Connection:
        # Caller holds self._tag_lock. A connection must not cross a fork, hence the pid.
        pid = os.getpid()
        if self._tag_con is None or self._tag_pid != pid:
            self._tag_con = self._database(self._tags_file, _TAGS_JOURNAL_LIMIT, _TAG_SCHEMA)
            self._tag_pid = pid
        return self._tag_con

    def _locks(self) -> sqlite3.Connection:
        # Caller holds self._lock_lock. A connection must not cross a fork, hence the pid.
        pid = os.getpid()
        if self._lock_con is None or self._lock_pid != pid:
            self._lock_con = self._database(self._locks_file, _LOCKS_JOURNAL_LIMIT, _LOCK_SCHEMA)
            self._lock_pid = pid
        return self._lock_con

    def _database(self, path: str, journal_limit: int, schema: Sequence[str]) -> sqlite3.Connection:
        """A connection to the SQLite file ``path`` of the directory (the tags', the
        locks'), its schema made if missing. The directory is made first; where it cannot
        be written, the StoreError that names it is raised (as a write's), before any file
        is made there."""
        self._values()
        con = sqlite3.connect(
            path, timeout=_LOCK_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            _init_db(con, min(self._journal_limit(), journal_limit), schema)
        except BaseException:
            con.close()
            raise
        return con

    def _unframe(self, raw: bytes) -> bytes | None:
        """The value in ``raw`` (a value :func:`_damage` passed), ``None`` if it expired or
        a newer deja wrote it (a rolling upgrade: absent to this one, left in place)."""
        version, expires = _HEADER.unpack_from(raw)
        if version > _FORMAT:
            return None
        if expires != _NO_EXPIRY and expires <= self._clock():
            return None
        return raw[_HEADER.size :]

    def _damaged(self, key: str, damage: str) -> None:
        """Warn of ``key``'s damaged value, once per key: every read of it is a miss until
        a write replaces it (a read writes nothing, so it is not deleted here)."""
        with self._damaged_lock:
            if key in self._damaged_keys:
                return
            if len(self._damaged_keys) >= _DAMAGED_REMEMBERED:
                self._damaged_keys.clear()
            self._damaged_keys.add(key)
        logger.warning(
            "disk store %s: the value of key %s is not a DiskStore value (%s; a file cut"
            " short by a power loss, or another program's): read as a miss until the key is"
            " written again",
            self._directory,
            key,
            damage,
        )


def _damage(raw: object) -> str | None:
    """What is wrong with ``raw`` as a value a DiskStore wrote (``None``: nothing; a newer
    deja's format counts as one)."""
    if not isinstance(raw, bytes):
        return f"a {type(raw).__name__}, not bytes"
    if len(raw) < _HEADER.size:
        return f"{len(raw)} bytes, shorter than its {_HEADER.size}-byte header"
    if raw[0] < _FORMAT:
        return f"unknown format {raw[0]}"
    return None


class _ReadOnlyValues:
    """A DiskStore directory read through read-only SQLite connections, for a directory
    diskcache cannot open (it writes its settings on every open): answers ``get``,
    ``len`` and ``volume`` as :class:`diskcache.Cache` would, and the tag lookups, with
    no write. diskcache's :class:`~diskcache.Disk` reads a value from its row or file."""

    def __init__(self, directory: str) -> None:
        self.pid = os.getpid()  # a connection must not cross a fork
        self._disk = diskcache.Disk(directory)
        self._lock = threading.Lock()
        self._con = _connect_read_only(os.path.join(directory, "cache.db"))
        self._tags_file = os.path.join(directory, _TAGS_FILE)
        self._tags: sqlite3.Connection | None = None
        self._since = time.monotonic()

    def fresh(self) -> bool:
        """Whether to go on reading through these connections, not open new ones (which
        see other processes' writes, and find the directory writable again)."""
        return time.monotonic() - self._since < _READ_ONLY_REOPEN

    def get(self, key: str) -> object:
        db_key, raw = self._disk.put(key)
        with self._lock:
            if self._con is None:
                return None
            row = self._con.execute(_SELECT_VALUE, (db_key, raw, time.time())).fetchone()
        if row is None:
            return None
        try:
            return self._disk.fetch(row[0], row[1], row[2], False)
        except OSError:  # its file was deleted meanwhile (diskcache's get: a miss too)
            return None

    def __len__(self) -> int:
        return self._setting("count")

    def volume(self) -> int:
        with self._lock:
            if self._con is None:
                return 0
            (pages,) = self._con.execute("PRAGMA page_count").fetchone()
            (page_size,) = self._con.execute("PRAGMA page_size").fetchone()
        return int(pages) * int(page_size) + self._setting("size")

    def tag_keys(self, tag: str, now: float) -> list[Any]:
        with self._lock:
            if self._tags is None:
                self._tags = _connect_read_only(self._tags_file)
            if self._tags is None:
                return []
            return self._tags.execute(_SELECT_TAG_KEYS, (tag, now)).fetchall()

    def close(self) -> None:
        with self._lock:
            for con in (self._con, self._tags):
                if con is not None:
                    con.close()
            self._con = self._tags = None

    def _setting(self, name: str) -> int:
        with self._lock:
            if self._con is None:
                return 0
            row = self._con.execute("SELECT value FROM Settings WHERE key = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])


def _connect_read_only(path: str) -> sqlite3.Connection | None:
    """A read-only connection to the SQLite file ``path`` (``None``: there is none yet).

    A WAL database opens read-only only where its -shm file exists or can be created;
    where it cannot (a read-only mount), it is opened as immutable: read without locks,
    since nothing can write it there either.
    """
    if not os.path.exists(path):
        return None
    uri = f"file:{urllib.parse.quote(path)}?mode=ro"
    try:
        return _probed(sqlite3.connect(uri, uri=True, check_same_thread=False))
    except sqlite3.OperationalError:
        return _probed(sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False))


def _probed(con: sqlite3.Connection) -> sqlite3.Connection:
    # SQLite opens lazily: a database it cannot read fails on the first statement
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        con.close()
        raise
    return con


def _check_item(key: str, value: bytes) -> None:
    if not isinstance(key, str):
        raise TypeError(f"store keys must be str, not {type(key).__name__}")
    if not isinstance(value, bytes):
        raise TypeError(f"store values must be bytes, not {type(value).__name__}")


def _lock_ttl(ttl: float) -> float:
    """``ttl`` for a lock: a positive finite number of seconds (a lock always expires)."""
    checked = validate_ttl(ttl)
    if checked is None:
        raise ValueError("a lock's ttl must be a number of seconds, not None: a lock expires")
    return checked


def _physical_ttl(ttl: float | None) -> float | None:
    return None if ttl is None else ttl + _EXPIRE_SLACK


def _init_db(con: sqlite3.Connection, journal_limit: int, schema: Sequence[str]) -> None:
    """Open a database of ours (tags, locks) in WAL mode, its log checkpointed when it
    reaches ``journal_limit`` bytes and cut back to them (SQLite checkpoints at 1,000 pages,
    4 MiB: a store bounded to 2 MB had 3.8 MB of tag log beside it), with the tables of
    ``schema`` (created where missing: a directory an earlier version wrote)."""
    # WAL lets readers run beside a writer. Switching needs a moment with no other
    # connection in a transaction, and SQLite does not wait for that, so retry.
    deadline = time.monotonic() + _LOCK_TIMEOUT
    while True:
        try:
            con.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    # Like diskcache: durable across crashes of the process, not of the machine.
    con.execute("PRAGMA synchronous = NORMAL")
    con.execute(f"PRAGMA journal_size_limit = {journal_limit}")
    con.execute(f"PRAGMA wal_autocheckpoint = {max(journal_limit // _PAGE, 16)}")
    with _write_transaction(con):
        for statement in schema:
            con.execute(statement)
