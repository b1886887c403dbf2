"""deja: never pay twice for the same LLM answer.

The public API is what this module exports; everything else lives in modules a user
need not import. Quick start::

    import deja

    cache = deja.Cache(ttl=3600)                      # in-memory, exact match
    request = deja.Request.chat(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    result = cache.fetch(request, lambda: call_the_llm())  # hit, or one upstream call
    print(result.info.status)                         # "miss", then "hit"
"""

from deja._async.cache import AsyncCache
from deja._async.client import AsyncClient
from deja._sync.cache import Cache
from deja._sync.client import Client
from deja._version import __version__
from deja.api import (
    _guard_module,
    acompletion,
    acreate_context_cache,
    adelete_context_cache,
    aembedding,
    close,
    completion,
    create_context_cache,
    delete_context_cache,
    disable_cache,
    embedding,
    enable_cache,
    set_default_client,
)
from deja.controls import CacheControl
from deja.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ConflictError,
    ControlError,
    DejaError,
    EntryDecodeError,
    EntryVersionError,
    InvalidRequestError,
    KeyBuilderError,
    MissingDependencyError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    ServerError,
    StoreBusy,
    StoreError,
    UnsupportedOperation,
    UpstreamConnectionError,
    UpstreamTimeoutError,
)
from deja.metrics import Metrics, NullMetrics, PrometheusMetrics
from deja.policy import AdmissionPolicy
from deja.prices import Price, PriceTable
from deja.providers.context_cache import ContextCache
from deja.request import Request
from deja.result import CacheInfo, CacheResult, CacheStats, cache_info
from deja.stores import (
    DiskStore,
    MemoryStore,
    RedisInvalidationBus,
    RedisStore,
    S3Store,
    Store,
    TagIndex,
    TieredStore,
)
from deja.wrap import wrap

__all__ = [
    "AdmissionPolicy",
    "AsyncCache",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Cache",
    "CacheControl",
    "CacheInfo",
    "CacheResult",
    "CacheStats",
    "Client",
    "ConfigError",
    "ConflictError",
    "ContextCache",
    "ControlError",
    "DejaError",
    "DiskStore",
    "EntryDecodeError",
    "EntryVersionError",
    "InvalidRequestError",
    "KeyBuilderError",
    "MemoryStore",
    "Metrics",
    "MissingDependencyError",
    "NotFoundError",
    "NullMetrics",
    "PermissionDeniedError",
    "Price",
    "PriceTable",
    "PrometheusMetrics",
    "ProviderError",
    "RateLimitError",
    "RedisInvalidationBus",
    "RedisStore",
    "Request",
    "S3Store",
    "ServerError",
    "Store",
    "StoreBusy",
    "StoreError",
    "TagIndex",
    "TieredStore",
    "UnsupportedOperation",
    "UpstreamConnectionError",
    "UpstreamTimeoutError",
    "__version__",
    "acompletion",
    "acreate_context_cache",
    "adelete_context_cache",
    "aembedding",
    "cache_info",
    "close",
    "completion",
    "create_context_cache",
    "delete_context_cache",
    "disable_cache",
    "embedding",
    "enable_cache",
    "set_default_client",
    "wrap",
]

# LiteLLM's module-level settings (``deja.api_base = ...``) are refused, not stored where
# nothing reads them (deja.api.LITELLM_SETTINGS)
_guard_module(__name__)
