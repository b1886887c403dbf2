"""Stores: bytes by key, with TTL, for the cache façade (see :mod:`deja.stores.base`).

Importing this package imports no optional dependency: RedisStore and S3Store import
redis-py and boto3 when they are first constructed.
"""

from deja.stores.base import (
    LockExtending,
    Locking,
    Store,
    StoreStats,
    StoreUsage,
    TagIndex,
)
from deja.stores.bus import Invalidation, InvalidationBus, LocalInvalidationBus
from deja.stores.disk import DiskStore
from deja.stores.memory import MemoryStore
from deja.stores.redis import RedisStore
from deja.stores.redis_bus import RedisInvalidationBus
from deja.stores.s3 import S3Store
from deja.stores.tiered import TieredStore

__all__ = [
    "DiskStore",
    "Invalidation",
    "InvalidationBus",
    "LocalInvalidationBus",
    "LockExtending",
    "Locking",
    "MemoryStore",
    "RedisInvalidationBus",
    "RedisStore",
    "S3Store",
    "Store",
    "StoreStats",
    "StoreUsage",
    "TagIndex",
    "TieredStore",
]
