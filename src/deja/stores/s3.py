"""A store in an S3 bucket (AWS S3 or any S3-compatible service: MinIO, R2, Ceph...).

Every value is one object. Nothing is sent until the first operation: the boto3 client
is created then (boto3 clients are thread-safe, so one serves every thread).

Layout
------
With ``prefix="deja"`` (a non-empty prefix always ends in ``/``; ``"deja"`` and
``"deja/"`` are the same store, as LiteLLM's ``s3_path``)::

    deja/<encoded key>                                  one object per entry
    deja/__deja_tags__/<tag hash>/<written>-<expires>-<key hash>   one per (tag, key)

An encoded key keeps ASCII letters, digits and ``-_!*'():`` and writes every other byte of
its UTF-8 form as ``%XX`` (so it never holds ``/``, ``.`` or a character S3 treats badly,
and decodes exactly). The encoding maps a key prefix to an object-name prefix, so
``clear(prefix)`` is one paginated ``ListObjectsV2`` (with delimiter ``/``, which also
keeps tag records and nested stores out of it) plus ``DeleteObjects`` in batches of
1,000. Use a prefix of its own for each store: two stores with the same bucket and prefix
are one store. S3 limits object names to 1,024 bytes, so a key's encoded form must fit
beside the prefix (deja's own keys are under 100 bytes).

Expiry
------
``set`` always records the TTL, as object metadata ``x-amz-meta-deja-expires`` (absolute
epoch seconds by the store's ``clock``, or ``never``), and honours it on every read: an
expired object reads as missing and is deleted, best-effort (a conditional delete on the
ETag that was read, so a fresh write of a different value is never lost). The standard
``Expires`` header is set too, for information only: S3 deletes nothing by it.

An object whose metadata is gone (copied onto itself with ``MetadataDirective=REPLACE``,
restored from a backup or migrated by a tool that does not keep ``x-amz-meta-*``) is
served as it is, with no expiry of the store's, and a warning names the first one: a deja
entry carries its own expiry, which the cache checks on every read (and bytes that are no
entry are a miss there, and deleted), so a restored cache keeps answering. The next write
of its key gives it the metadata again.

S3 does not delete objects by their metadata, so give the bucket a lifecycle rule:

    **Bucket lifecycle rule.** S3 never deletes an expired deja entry by itself: deja
    ignores it on read (and deletes it then), but an entry nobody reads again stays in the
    bucket, and on the bill. Add a lifecycle rule that expires the objects under deja's
    prefix once your longest TTL has passed. Lifecycle counts whole days from an object's
    last write (S3 rounds up to the next midnight UTC and deletes asynchronously, often a
    day or so later), so set ``Days`` to the longest TTL in days, rounded up, at least 1.
    For TTLs up to 24 hours and ``prefix: deja``::

        {"Rules": [{"ID": "deja-cache-expiry", "Status": "Enabled",
                    "Filter": {"Prefix": "deja/"},
                    "Expiration": {"Days": 1},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}

        aws s3api put-bucket-lifecycle-configuration --bucket my-cache \\
            --lifecycle-configuration file://lifecycle.json

    The rule also removes entries stored with no TTL, and tag records, once they are that
    old; a cache can lose an entry at any time, so that only costs a miss. On a versioned
    bucket add ``"NoncurrentVersionExpiration": {"NoncurrentDays": 1}`` and
    ``"Expiration": {"ExpiredObjectDeleteMarker": true}`` in a second rule, or old versions
    are kept for ever. Better: use an unversioned bucket for the cache.

    **Permissions.** The store needs ``s3:GetObject``, ``s3:PutObject`` and
    ``s3:DeleteObject`` on ``arn:aws:s3:::BUCKET/PREFIX*`` and ``s3:ListBucket`` on the
    bucket. Without ListBucket, S3 answers a missing object with 403 instead of 404, so
    every miss would look like an error.

Tags
----
Each (tag, key) pair is a small object whose name holds when it was written, when it
expires and a hash of the key (the key itself is the body). Writers never rewrite a shared
object, so concurrent taggers never lose each other's keys. A tag's record lives as long
as its longest-lived pair; once every pair has expired the record is dead, and pairs
written later start a new record (as a :class:`~deja.stores.disk.DiskStore` tag row
does). ``keys_for`` and ``drop`` list the tag's objects and read one per key, so they cost
O(pairs) requests, run through a small thread pool; ``keys_for`` deletes the pairs of dead
records on the way and ``drop`` deletes them all. A key tagged again adds a pair (each
write does), so a long-lived tag on often-rewritten keys grows until dropped or until the
lifecycle rule removes its old pairs.

Sync and async
--------------
This store is the documented exemption from deja's "write async, generate sync" rule:
boto3 has no asyncio client (aiobotocore would be one more dependency, tracking botocore
versions), so the store is written once, synchronously, and its ``a``-methods run the sync
ones in a worker thread (``offload = True``): the event loop is never blocked. The threads
are the store's own, as many as ``max_pool_connections`` (the connections they share), so a
hung endpoint holds up no other ``to_thread`` user, and 30 async callers no longer queue
for asyncio's few default threads behind each other's timeouts (16 s at the median for a
4 s timeout; now each waits its own). Once a call found the endpoint unreachable or timing
out (after its ``max_attempts``), an async call reaching its thread is turned away at once
with :class:`~deja.errors.StoreBusy` (a miss) until a probe a second later gets an answer
(see :class:`~deja.stores.base.SyncStore`). ``get_many``/``set_many`` issue their per-key
requests concurrently through a small thread pool, since S3 has no batch get.

Errors
------
Every botocore and boto3 error is raised as :class:`deja.errors.StoreError` (``raise ...
from``); a missing object is a miss (``None``), not an error. Requests time out after
``connect_timeout``/``read_timeout`` seconds and are tried ``max_attempts`` times in all,
so an unreachable endpoint fails fast and the cache façade turns it into a miss.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from deja._invalidations import MARKS
from deja._waits import is_seconds
from deja.errors import MissingDependencyError, StoreError
from deja.stores.base import StoreUsage, SyncStore, SyncTagIndex, validate_ttl

__all__ = ["S3Store"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")

# Sent as the header x-amz-meta-deja-expires; boto3 adds the x-amz-meta- part.
_EXPIRES_META = "deja-expires"
_NEVER = "never"
_TAG_DIR = "__deja_tags__/"
# The most keys one DeleteObjects request may name.
_DELETE_BATCH = 1000
# S3's "safe" characters, less "." (a name like "deja/.." is a path segment to some
# HTTP stacks) and plus ":" (in every deja key; S3 and botocore handle it fine).
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_!*'():")
_ESCAPE = tuple(chr(b) if b in _SAFE else f"%{b:02X}" for b in range(256))
# Error codes S3 answers for an object that is not there (HEAD has no body, hence "404").
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# Per-key requests of one get_many/set_many in flight at once (a cap, not a floor: the
# pool starts threads only as needed).
_MAX_WORKERS = 16


def _encode_key(key: str) -> str:
    return "".join(map(_ESCAPE.__getitem__, key.encode("utf-8")))


def _decode_name(name: str) -> str | None:
    """The key an encoded object name stands for, or ``None`` if it is not one of ours."""
    try:
        key = unquote_to_bytes(name).decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Only the canonical encoding is ours: skip an object some other program wrote.
    return key if _encode_key(key) == name else None


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"store keys must be str, not {type(key).__name__}")
    return key


def _check_item(key: object, value: object) -> None:
    _check_key(key)
    if not isinstance(value, bytes):
        raise TypeError(f"store values must be bytes, not {type(value).__name__}")


def _positive_number(name: str, value: object) -> float:
    if not is_seconds(value):  # also rejects NaN, inf, an int past a float's range
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class _TagPair:
    """One (tag, key) object, as its name describes it."""

    name: str
    written_ms: int
    expires_ms: float  # math.inf: never
    key_hash: str


def _parse_pair(name: str, root: str) -> _TagPair | None:
    written, sep1, rest = name[len(root) :].partition("-")
    expires, sep2, key_hash = rest.partition("-")
    if not (sep1 and sep2 and written.isdigit() and key_hash):
        return None
    if expires == _NEVER:
        return _TagPair(name, int(written), math.inf, key_hash)
    if not expires.isdigit():
        return None
    return _TagPair(name, int(written), float(expires), key_hash)


def _live_record(pairs: Sequence[_TagPair], now_ms: float) -> tuple[list[_TagPair], list[_TagPair]]:
    """Split a tag's pairs into those of its live record and the dead ones.

    Replays the writes in order: a pair written when every earlier pair had expired starts
    a new record, and the earlier ones are dead. The last record is live while one of its
    pairs has not expired. This gives what a single record whose expiry only grows (the
    DiskStore's row) would hold, with no object that two writers must both update.
    """
    ordered = sorted(pairs, key=lambda p: (p.written_ms, p.expires_ms))
    start = 0
    longest = -math.inf
    for i, pair in enumerate(ordered):
        if pair.written_ms >= longest:
            # Everything written before this pair had expired when it was written.
            start, longest = i, pair.expires_ms
        else:
            longest = max(longest, pair.expires_ms)
    if longest <= now_ms:
        return [], ordered
    return ordered[start:], ordered[:start]


class S3Store(SyncStore, SyncTagIndex):
    """A store in an S3 bucket, shared by every process that can reach it.

    Keyword-only options:

    * ``bucket``: the bucket (it must exist; deja never creates or configures one);
    * ``prefix``: where in the bucket this store lives (``"deja"`` → objects ``deja/...``);
    * ``region``, ``endpoint_url``: where the bucket is; ``endpoint_url`` names any
      S3-compatible service (path-style addressing is then used, which they all accept);
    * ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``: explicit
      credentials; when absent, boto3's usual chain is used (environment, shared files,
      SSO, container or instance roles);
    * ``use_ssl``, ``verify``: TLS on or off, and certificate checking (``False`` or a CA
      bundle path);
    * ``max_pool_connections``: HTTP connections kept to the endpoint, and worker threads
      for async callers' calls;
    * ``connect_timeout``, ``read_timeout``: seconds, per request; ``max_attempts``:
      tries per request in all (1 = no retry). A slow cache is worse than a miss;
    * ``clock``: wall-clock seconds for expiry (pass :class:`deja.testing.FakeClock` in
      tests); ``client``: a ready boto3 S3 client to use instead (the store never closes
      a client it did not create).

    The constructor does no I/O; the client is created on first use and again after
    :meth:`close`. Raises :class:`~deja.errors.MissingDependencyError` if boto3 is not
    installed.
    """

    name = "s3"
    # boto3 is synchronous: the async methods run the sync ones in a worker thread.
    offload = True

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        region: str | None = None,
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        use_ssl: bool = True,
        verify: bool | str | None = None,
        max_pool_connections: int = 32,
        connect_timeout: float = 1.0,
        read_timeout: float = 2.0,
        max_attempts: int = 2,
        clock: Callable[[], float] = time.time,
        client: Any = None,
    ) -> None:
        try:
            import boto3.exceptions
            import boto3.session
            import botocore.config
            import botocore.exceptions
        except ImportError as exc:
            raise MissingDependencyError("boto3", "s3") from exc
        if not isinstance(bucket, str) or not bucket:
            raise ValueError(f"bucket must be a non-empty str, not {bucket!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        self._bucket = bucket
        # A non-empty prefix is a "directory": "deja" and "deja/" are one store, and a
        # store at "deja" never sees the objects of a store at "deja2".
        self._root = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self._tag_root = self._root + _TAG_DIR
        if endpoint_url is not None and not (
            isinstance(endpoint_url, str)
            and endpoint_url.startswith(("http://", "https://"))
            and len(endpoint_url) > len("https://")
        ):
            raise ValueError(f"endpoint_url must be an http(s) URL, not {endpoint_url!r:.60}")
        self._region = region
        self._endpoint_url = endpoint_url
        self._credentials = (aws_access_key_id, aws_secret_access_key, aws_session_token)
        self._use_ssl = use_ssl
        self._verify = verify
        self._max_pool_connections = _positive_int("max_pool_connections", max_pool_connections)
        self._connect_timeout = _positive_number("connect_timeout", connect_timeout)
        self._read_timeout = _positive_number("read_timeout", read_timeout)
        self._max_attempts = _positive_int("max_attempts", max_attempts)
        self._clock = clock
        self._session_class: Any = boto3.session.Session
        self._config_class: Any = botocore.config.Config
        self._client_error: type[Exception] = botocore.exceptions.ClientError
        self._errors: tuple[type[Exception], ...] = (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            boto3.exceptions.Boto3Error,
        )
        # Failures that cost a timeout: no connection, or no answer in time.
        self._unreachable_errors: tuple[type[Exception], ...] = (
            botocore.exceptions.ConnectionError,
            botocore.exceptions.HTTPClientError,
        )
        self._lock = threading.Lock()
        self._owns_client = client is None
        self._client: Any = client
        self._pool: ThreadPoolExecutor | None = None
        self._unmarked_said = False  # an object without expiry metadata was reported

    @property
    def bucket(self) -> str:
        """The bucket holding the store."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """Where in the bucket the store lives (``""`` or ending in ``/``)."""
        return self._root

    def __repr__(self) -> str:
        return f"S3Store(bucket={self._bucket!r}, prefix={self._root!r})"

    # -- values ------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """Return the value for ``key``, or ``None`` if it is missing or expired."""
        return self._get(self._object_name(_check_key(key)))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` in order (``None`` for missing), fetched concurrently."""
        names = {key: self._object_name(_check_key(key)) for key in keys}
        found = dict(zip(names, self._map(self._get, list(names.values())), strict=True))
        return [found[key] for key in keys]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``None``: no expiry)."""
        ttl = validate_ttl(ttl)
        _check_item(key, value)
        self._put(self._object_name(key), value, self._expiry(ttl))

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Store every item with the same ``ttl``, concurrently (not atomically)."""
        ttl = validate_ttl(ttl)
        for key, value in items.items():
            _check_item(key, value)
        expires = self._expiry(ttl)
        writes = [(self._object_name(key), value) for key, value in items.items()]
        self._map(lambda write: self._put(write[0], write[1], expires), writes)

    def delete(self, key: str) -> bool:
        """Delete ``key``; return whether it was held and not expired (HEAD, then DELETE)."""
        name = self._object_name(_check_key(key))
        s3 = self._s3()
        with self._translate("delete"):
            try:
                head = s3.head_object(Bucket=self._bucket, Key=name)
            except self._client_error as exc:
                if not _is_missing(exc):
                    raise
                # a HEAD has no body: its 404 is also what a missing bucket answers, and a
                # deletion that could not happen must not read as "nothing to delete"
                s3.head_bucket(Bucket=self._bucket)
                return False
            s3.delete_object(Bucket=self._bucket, Key=name)
        expires = _expires_at(head.get("Metadata", {}))
        # An object deja did not write was there all the same, and is gone now.
        return expires is None or expires > self._clock()

    def clear(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; return how many this call listed and
        deleted (an upper bound of what it removed, exact when no other deletion runs).

        Tag records are untouched. S3 cannot say whether an object was still there when
        it deleted it: ``DeleteObjects`` reports every name it is given as deleted, and a
        conditional delete that would tell is not offered by every S3-compatible service.
        So the count is of the entries this call listed, all gone when it returns; an
        entry another call deleted between the listing and the deletion (a ``clear`` at
        the same time, in this process or another, a ``delete``, a lifecycle rule) is
        counted by this call too. Two clears of one prefix at once may each return about
        the whole count, their sum more than the bucket held. With no other deletion under
        the prefix meanwhile, the count is exact; it may include entries whose TTL had
        passed but that were still in the bucket.
        """
        start = self._root + _encode_key(prefix)
        deleted = 0
        for page in self._list_pages("clear", start, delimiter="/"):
            names = [item["Key"] for item in page if self._is_entry(item["Key"])]
            deleted += self._delete_names("clear", names)
        return deleted

    @property
    def usage_source(self) -> str:
        """What :meth:`usage` measures: metrics count two stores on one prefix once."""
        return f"s3 {self._endpoint_url or ''} {self._bucket}/{self._root}"

    usage_interval: float = 300.0
    """Metrics read :meth:`usage` at most this often (seconds): it lists the whole prefix."""

    def usage(self) -> StoreUsage:
        """Objects held (including expired ones still in the bucket) and their bytes.

        This lists the whole prefix: O(objects) requests (one per 1,000), so call it
        rarely (metrics scrapes read it every :attr:`usage_interval`). ``evictions`` is
        always 0.
        """
        entries = size = 0
        for page in self._list_pages("usage", self._root, delimiter="/"):
            for item in page:
                if self._is_entry(item["Key"]):
                    entries += 1
                    size += int(item.get("Size", 0))
        return StoreUsage(entries=entries, bytes=size, evictions=0)

    def close(self) -> None:
        """Release the HTTP connections and worker threads; the store reopens on next use.

        Call it when no other call is in flight. A client passed in is left open.
        """
        self._release_workers()
        with self._lock:
            pool, self._pool = self._pool, None
            client = self._client
            if self._owns_client:
                self._client = None
        if pool is not None:
            pool.shutdown(wait=True)
        if client is not None and self._owns_client:
            with self._translate("close"):
                client.close()

    # -- tags --------------------------------------------------------------------------

    def tag(self, tag: str, keys: Sequence[str], ttl: float | None) -> None:
        """Add ``keys`` to ``tag``; the record lives at least ``ttl`` seconds (max of all)."""
        ttl = validate_ttl(ttl)
        if isinstance(keys, str):
            # A str is a Sequence[str] too; tagging its characters is never what was meant.
            raise TypeError("keys must be a sequence of keys, not a str")
        unique = list(dict.fromkeys(_check_key(key) for key in keys))
        now = self._clock()
        # Rounded outwards, so the record lives at least ttl and never starts late.
        written = math.floor(now * 1000)
        expires = _NEVER if ttl is None else str(math.ceil((now + ttl) * 1000))
        root = self._tag_dir(tag)
        writes = [(f"{root}{written}-{expires}-{_hash(key)}", key.encode()) for key in unique]
        self._map(lambda write: self._put_tag_pair(write[0], write[1]), writes)

    def keys_for(self, tag: str) -> list[str]:
        """The keys tagged with ``tag`` (some may have expired or been deleted since).

        Pairs of a record that died are deleted on the way, best-effort.
        """
        live, dead = self._tag_pairs("keys_for", tag)
        if dead:
            try:
                self._delete_names("keys_for", [pair.name for pair in dead])
            except StoreError as exc:
                logger.debug("s3 store: could not delete dead tag records: %r", exc)
        return self._tag_keys(live)

    def drop(self, tag: str) -> list[str]:
        """Forget ``tag`` and return the keys it named."""
        live, dead = self._tag_pairs("drop", tag)
        keys = self._tag_keys(live)
        self._delete_names("drop", [pair.name for pair in (*live, *dead)])
        return keys

    # -- internals ---------------------------------------------------------------------

    def _offload_workers(self) -> int:
        # One thread per connection: more would only wait for one, fewer would queue
        # async callers while connections sit idle.
        return self._max_pool_connections

    def _unreachable(self, exc: BaseException) -> bool:
        return isinstance(exc, StoreError) and isinstance(exc.__cause__, self._unreachable_errors)

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """Raise boto3/botocore failures as StoreError, at the store boundary."""
        try:
            yield
        except self._errors as exc:
            raise StoreError(f"s3 store: {action} failed: {exc!r}") from exc

    def _s3(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    with self._translate("connect"):
                        self._client = self._new_client()
                client = self._client
        return client

    def _new_client(self) -> Any:
        access_key, secret_key, token = self._credentials
        # A session per store: boto3's default session is shared module state, and
        # creating clients from one session in several threads is not safe.
        session = self._session_class(
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=token,
            region_name=self._region,
        )
        config = self._config_class(
            connect_timeout=self._connect_timeout,
            read_timeout=self._read_timeout,
            max_pool_connections=self._max_pool_connections,
            retries={"mode": "standard", "total_max_attempts": self._max_attempts},
            # S3-compatible services answer on one host name; virtual-hosted buckets
            # (bucket.host) need DNS that a local MinIO or test server does not have.
            s3={"addressing_style": "path" if self._endpoint_url else "auto"},
        )
        return session.client(
            "s3",
            endpoint_url=self._endpoint_url,
            use_ssl=self._use_ssl,
            verify=self._verify,
            config=config,
        )

    def _map(self, function: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``function`` over ``items`` in order, concurrently through the worker pool."""
        if len(items) <= 1:
            return [function(item) for item in items]
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=min(_MAX_WORKERS, self._max_pool_connections),
                        thread_name_prefix="deja-s3",
                    )
                pool = self._pool
        return list(pool.map(function, items))

    def _object_name(self, key: str) -> str:
        name = self._root + _encode_key(key)
        if not name:
            raise ValueError("the empty key needs a store prefix (S3 object names are not empty)")
        return name

    def _tag_dir(self, tag: str) -> str:
        return f"{self._tag_root}{_hash(_check_key(tag))}/"

    def _expiry(self, ttl: float | None) -> float:
        return math.inf if ttl is None else self._clock() + ttl

    def _get(self, name: str) -> bytes | None:
        s3 = self._s3()
        with self._translate("get"):
            try:
                response = s3.get_object(Bucket=self._bucket, Key=name)
            except self._client_error as exc:
                if _is_missing(exc):
                    return None
                raise
            body = response["Body"].read()
        expires = _expires_at(response.get("Metadata", {}))
        if expires is None:
            # Its metadata is gone: copied or restored by a tool that does not keep
            # x-amz-meta-* (aws s3 cp --metadata-directive REPLACE, a download and upload,
            # a migration). The value is served as it is: a deja entry carries its own
            # expiry, which the cache checks on every read, and bytes that are no entry are
            # rejected (and deleted) there. Raising would make one such object the whole
            # store failing (the cache skipped for every request, never rewritten).
            self._unmarked(name)
            return bytes(body)
        if expires > self._clock():
            return bytes(body)
        self._delete_expired(name, response.get("ETag"))
        return None

    def _unmarked(self, name: str) -> None:
        """Say once per store that an object without deja's expiry metadata was served."""
        if self._unmarked_said:
            logger.debug("s3 store: object %r has no deja expiry metadata; served", name)
            return
        self._unmarked_said = True
        logger.warning(
            "s3 store: object %r (bucket %r) has no x-amz-meta-%s metadata (copied or"
            " restored without it?); such objects are served without an expiry of the"
            " store's (a deja entry's own expiry still applies) until their key is written"
            " again; said once",
            name,
            self._bucket,
            _EXPIRES_META,
        )

    def _delete_expired(self, name: str, etag: str | None) -> None:
        # Conditional on the ETag we read: if another process has written a different
        # value since, the delete fails and the fresh value stays. (Same bytes rewritten
        # with a new TTL share the ETag and would go: one extra miss, at worst.)
        extra = {"IfMatch": etag} if etag else {}
        try:
            with self._translate("delete expired"):
                self._s3().delete_object(Bucket=self._bucket, Key=name, **extra)
        except StoreError as exc:
            # The lifecycle rule removes it in the end; reads ignore it meanwhile.
            logger.debug("s3 store: could not delete an expired object: %r", exc)

    def _put(self, name: str, value: bytes, expires: float) -> None:
        params: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": name,
            "Body": value,
            "ContentType": "application/octet-stream",
            "Metadata": {_EXPIRES_META: _NEVER if math.isinf(expires) else repr(expires)},
        }
        if not math.isinf(expires):
            # A TTL beyond what a date can say gets no header: it is only informative.
            with suppress(OverflowError, OSError, ValueError):
                params["Expires"] = datetime.fromtimestamp(expires, tz=UTC)
        with self._translate("set"):
            self._s3().put_object(**params)

    def _put_tag_pair(self, name: str, key: bytes) -> None:
        with self._translate("tag"):
            self._s3().put_object(
                Bucket=self._bucket, Key=name, Body=key, ContentType="text/plain; charset=utf-8"
            )

    def _list_pages(
        self, action: str, prefix: str, *, delimiter: str | None
    ) -> Iterator[list[dict[str, Any]]]:
        """ListObjectsV2 items (``Key``, ``Size``...) under ``prefix``, a page at a time.

        A page holds at most 1,000 items, the most one DeleteObjects request takes.
        """
        s3 = self._s3()
        params: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        if delimiter is not None:
            params["Delimiter"] = delimiter
        with self._translate(action):
            paginator = s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(**params):
                yield list(page.get("Contents", ()))

    def _delete_names(self, action: str, names: Sequence[str]) -> int:
        """Delete objects by name with DeleteObjects; return how many S3 reports deleted."""
        deleted = 0
        s3 = self._s3()
        for start in range(0, len(names), _DELETE_BATCH):
            batch = names[start : start + _DELETE_BATCH]
            with self._translate(action):
                response = s3.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": name} for name in batch], "Quiet": False},
                )
            deleted += len(response.get("Deleted", ()))
            errors = response.get("Errors", ())
            if errors:
                first = errors[0]
                raise StoreError(
                    f"s3 store: {action} deleted {deleted} objects, then failed on "
                    f"{len(errors)}: {first.get('Code')}: {first.get('Message')}"
                )
        return deleted

    def _is_entry(self, name: str) -> bool:
        """Whether a listed object name is one of this store's entries (not a cache's
        mark of an invalidation: they expire by themselves)."""
        key = _decode_name(name[len(self._root) :])
        return key is not None and MARKS not in key

    def _tag_pairs(self, action: str, tag: str) -> tuple[list[_TagPair], list[_TagPair]]:
        root = self._tag_dir(tag)
        pairs = [
            pair
            for page in self._list_pages(action, root, delimiter=None)
            for item in page
            if (pair := _parse_pair(item["Key"], root)) is not None
        ]
        return _live_record(pairs, self._clock() * 1000)

    def _tag_keys(self, pairs: Sequence[_TagPair]) -> list[str]:
        # A key tagged several times has several pairs; read one of them.
        one_each = {pair.key_hash: pair.name for pair in pairs}
        bodies = self._map(self._get_tag_pair, list(one_each.values()))
        return [body.decode("utf-8") for body in bodies if body is not None]

    def _get_tag_pair(self, name: str) -> bytes | None:
        s3 = self._s3()
        with self._translate("keys_for"):
            try:
                response = s3.get_object(Bucket=self._bucket, Key=name)
            except self._client_error as exc:
                if _is_missing(exc):
                    return None  # dropped meanwhile
                raise
            return bytes(response["Body"].read())


def _expires_at(metadata: Mapping[str, str]) -> float | None:
    """The expiry recorded in an object's metadata (``inf``: never), ``None`` if none is."""
    raw = metadata.get(_EXPIRES_META)
    if raw == _NEVER:
        return math.inf
    try:
        expires = float(raw) if raw is not None else math.nan
    except ValueError:
        return None
    return None if math.isnan(expires) else expires


def _is_missing(exc: Any) -> bool:
    """Whether a botocore ClientError says the object (not the bucket) does not exist."""
    error = exc.response.get("Error", {})
    return error.get("Code") in _MISSING_CODES
