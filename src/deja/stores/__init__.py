"""Stores: bytes by key, with TTL, for the cache façade (see :mod:`deja.stores.base`)."""

from deja.stores.base import Store, StoreStats, StoreUsage, TagIndex
from deja.stores.disk import DiskStore
from deja.stores.memory import MemoryStore

__all__ = [
    "DiskStore",
    "MemoryStore",
    "Store",
    "StoreStats",
    "StoreUsage",
    "TagIndex",
]
