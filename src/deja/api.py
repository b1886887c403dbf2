"""Module-level convenience calls: ``deja.completion``, ``deja.acompletion`` and friends.

They use one explicit default client pair, :data:`DEFAULTS`, that a program can inspect or
replace (:func:`set_default_client`). Without :func:`enable_cache` they call the upstream
every time, as LiteLLM's functions do before ``litellm.enable_cache()``.

deja keeps no settings in its module: LiteLLM's module-level ones (``litellm.api_base =
...``, ``litellm.cache = ...``, :data:`LITELLM_SETTINGS`) are refused on ``deja``, each
with what to do instead, rather than stored where nothing reads them.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from deja._async.cache import AsyncCache
from deja._async.client import AsyncClient
from deja._sync.cache import Cache
from deja._sync.client import Client
from deja.stores.base import Store

__all__ = [
    "DEFAULTS",
    "LITELLM_SETTINGS",
    "Defaults",
    "acompletion",
    "acreate_context_cache",
    "adelete_context_cache",
    "aembedding",
    "close",
    "completion",
    "create_context_cache",
    "delete_context_cache",
    "disable_cache",
    "embedding",
    "enable_cache",
    "set_default_client",
]


class Defaults:
    """The default sync and async clients behind the module-level functions.

    Created on first use (so importing deja does nothing); replace them with
    :func:`set_default_client`.
    """

    def __init__(self) -> None:
        self._client: Client | None = None
        self._async_client: AsyncClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Client:
        """The sync default client."""
        with self._lock:
            if self._client is None:
                self._client = Client()
            return self._client

    @property
    def async_client(self) -> AsyncClient:
        """The async default client."""
        with self._lock:
            if self._async_client is None:
                self._async_client = AsyncClient()
            return self._async_client

    def close(self) -> None:
        """Close the default sync client's connections (the async one's close with their
        event loops); the next call opens new ones."""
        with self._lock:
            client = self._client
        if client is not None:
            client.close()

    def replace(self, client: Client | None, async_client: AsyncClient | None) -> None:
        """Swap in new default clients (``None`` leaves that one as it is)."""
        with self._lock:
            if client is not None:
                self._client = client
            if async_client is not None:
                self._async_client = async_client


DEFAULTS = Defaults()
"""The one default client pair (an explicit object, so tests and apps can replace it)."""


def set_default_client(
    client: Client | None = None, *, async_client: AsyncClient | None = None
) -> None:
    """Make ``client`` / ``async_client`` the ones the module-level functions use."""
    _check_defaults(client, async_client)
    DEFAULTS.replace(client, async_client)


def _check_defaults(client: object, async_client: object) -> None:
    """Refuse the wrong kind of client (an AsyncClient as ``client``, an ``openai.OpenAI``):
    it failed only at the next ``deja.completion``, with an AttributeError from inside."""
    if client is not None and not isinstance(client, Client):
        hint = " (give it as async_client=)" if isinstance(client, AsyncClient) else ""
        raise TypeError(f"client must be a deja.Client, not {type(client).__name__}{hint}")
    if async_client is not None and not isinstance(async_client, AsyncClient):
        hint = " (give it as client=)" if isinstance(async_client, Client) else ""
        raise TypeError(
            f"async_client must be a deja.AsyncClient, not {type(async_client).__name__}{hint}"
        )


# The settings of the cache enable_cache() returns that its async twin takes too
_SHARED_SETTINGS = frozenset(
    {
        "mode",
        "store",
        "ttl",
        "key_prefix",
        "namespace",
        "key_builder",
        "admission",
        "max_entry_bytes",
        "compress_min_bytes",
    }
)


def _shared(name: str) -> property:
    """A setting of :class:`_DefaultCache` that its async twin takes too, checked as
    :class:`~deja.Cache` checks it (its own property runs first: a value refused there is
    set on neither cache)."""
    checked = vars(Cache).get(name)  # Cache's property, for a setting it checks
    # (chosen once, here: ``store`` and ``key_builder`` are read on every hit)
    get: Callable[[Cache], Any]
    put: Callable[[Cache, Any], None]
    if isinstance(checked, property):
        get, put = checked.__get__, checked.__set__
    else:

        def get(self: Cache) -> Any:
            return self.__dict__[name]

        def put(self: Cache, value: Any) -> None:
            self.__dict__[name] = value

    def set(self: Cache, value: Any) -> None:
        put(self, value)
        twin = self.__dict__.get("_twin")
        if twin is not None:
            setattr(twin, name, get(self))

    return property(get, set)


class _DefaultCache(Cache):
    """The cache :func:`enable_cache` returns: a setting changed on it (``cache.ttl =
    900``, ``cache.key_prefix = "v2:"``: what LiteLLM users do to ``litellm.cache``) is
    the async default client's setting too; it changed the sync calls only. (Properties
    for those settings alone: a ``__setattr__`` would slow every write, and make its
    counters' ``+=`` lose counts between threads.)"""

    _twin: AsyncCache | None = None


for _name in _SHARED_SETTINGS:
    setattr(_DefaultCache, _name, _shared(_name))


_DEFAULT_CLIENTS = (
    "or make the module functions' clients yours, before deja.enable_cache():"
    " deja.set_default_client(deja.Client({0}=...), async_client=deja.AsyncClient({0}=...))"
)

LITELLM_SETTINGS: Final[Mapping[str, str]] = {
    "api_base": "pass api_base= to the call, set OPENAI_BASE_URL, "
    + _DEFAULT_CLIENTS.format("api_base"),
    "api_key": "pass api_key= to the call, set OPENAI_API_KEY (<PROVIDER>_API_KEY), "
    + _DEFAULT_CLIENTS.format("api_key"),
    "cache": "cache = deja.enable_cache(...) gives deja.completion and acompletion a cache and"
    " returns it (cache.ttl = 900, cache.delete(cache.key_for(...)), cache.clear())",
    "caching": "deja.enable_cache() returns the module functions' cache (its key_for(...) is"
    " LiteLLM's get_cache_key; deja.keys.digest_of its cache_key_generator)",
    "set_verbose": "deja logs with the logging module (logging.getLogger('deja')"
    ".setLevel(logging.DEBUG)); cache.explain(request) says why a request misses",
    "num_retries": "deja.Client(max_retries=...), " + _DEFAULT_CLIENTS.format("max_retries"),
    "request_timeout": "pass timeout= to the call, " + _DEFAULT_CLIENTS.format("timeout"),
}
"""LiteLLM's module-level settings, each with what a deja program does instead. deja keeps
no settings in its module, so ``deja.api_base = ...`` would change nothing (a warming script
pointed at a proxy that way called the provider itself): setting or reading one of these
names on ``deja`` raises an :class:`AttributeError` saying this."""


def _litellm_setting(name: str) -> AttributeError | None:
    hint = LITELLM_SETTINGS.get(name)
    if hint is None:
        return None
    return AttributeError(f"deja has no module-level {name} (LiteLLM's litellm.{name}): {hint}")


class _DejaModule(types.ModuleType):
    """The ``deja`` package's module type: refuses LiteLLM's module-level settings."""

    def __setattr__(self, name: str, value: object) -> None:
        error = _litellm_setting(name)
        if error is not None:
            raise error
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        # reached only for a name the module does not have
        error = _litellm_setting(name)
        if error is not None:
            raise error
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


def _guard_module(name: str) -> None:
    """Give the module ``name`` (the ``deja`` package) :class:`_DejaModule`'s refusals."""
    sys.modules[name].__class__ = _DejaModule


def enable_cache(
    *,
    ttl: float | None = None,
    store: Store | None = None,
    key_prefix: str = "deja:",
    namespace: str | None = None,
    **litellm_options: object,
) -> Cache:
    """Give the default clients a cache (both share ``store``; default: in memory), and
    return the sync one (``cache.delete(cache.key_for(...))``, ``cache.clear()``,
    ``cache.ttl = 900``...: what LiteLLM users do with ``litellm.cache``). Its deletions
    reach the async calls' entries too (one store), and a setting changed on it (``ttl``,
    ``key_prefix``, ``namespace``...) applies to them too; but its ``stats()`` count the
    sync calls only: the async ones are counted by
    ``deja.api.DEFAULTS.async_client.cache``.

    LiteLLM's own arguments (``type="redis", host=..., port=...``) raise a
    :class:`TypeError` saying which store to pass instead."""
    if litellm_options:
        raise TypeError(
            f"enable_cache() got LiteLLM's {', '.join(map(repr, sorted(litellm_options)))}:"
            " deja takes the store itself, e.g."
            " deja.enable_cache(store=deja.RedisStore(url='redis://HOST:6379/0'))"
            " (or deja.DiskStore(path), deja.S3Store(bucket=...); the default is in memory,"
            " LiteLLM's type='local')"
        )
    if store is None:
        from deja.stores.memory import MemoryStore

        store = MemoryStore()
    options: dict[str, Any] = {"ttl": ttl, "key_prefix": key_prefix, "namespace": namespace}
    cache = _DefaultCache(store=store, **options)
    cache._twin = DEFAULTS.async_client.cache = AsyncCache(store=store, **options)
    DEFAULTS.client.cache = cache
    return cache


def close() -> None:
    """Close the default client's connections (at exit, or before a fork)."""
    DEFAULTS.close()


def disable_cache() -> None:
    """The default clients call the upstream every time again."""
    DEFAULTS.client.cache = None
    DEFAULTS.async_client.cache = None


if TYPE_CHECKING:
    # The type checker sees the default clients' own methods, overloads and all: the
    # signatures are written once, on Client and AsyncClient.
    _client = Client()
    _async_client = AsyncClient()
    completion = _client.completion
    acompletion = _async_client.acompletion
    embedding = _client.embedding
    aembedding = _async_client.aembedding
    create_context_cache = _client.create_context_cache
    acreate_context_cache = _async_client.acreate_context_cache
    delete_context_cache = _client.delete_context_cache
    adelete_context_cache = _async_client.adelete_context_cache
else:

    def _named(call: Any, method: Any, doc: str) -> Callable[..., Any]:
        """``call`` as ``help()`` and IDEs show it: ``method``'s name and signature (without
        ``self``), ``doc``."""
        import inspect

        signature = inspect.signature(method)
        call.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
        call.__name__ = call.__qualname__ = method.__name__
        call.__doc__ = doc
        return call

    def _through_default(name: str, doc: str) -> Callable[..., Any]:
        def call(**arguments: Any) -> Any:
            return getattr(DEFAULTS.client, name)(**arguments)

        return _named(call, getattr(Client, name), doc)

    def _through_async_default(name: str, doc: str) -> Callable[..., Any]:
        async def call(**arguments: Any) -> Any:
            return await getattr(DEFAULTS.async_client, name)(**arguments)

        return _named(call, getattr(AsyncClient, name), doc)

    completion = _through_default(
        "completion",
        "A chat completion through the default client (see :meth:`deja.Client.completion`).",
    )
    acompletion = _through_async_default("acompletion", "The async twin of :func:`completion`.")
    embedding = _through_default(
        "embedding",
        "Embeddings through the default client, cached per input item (see"
        " :meth:`deja.Client.embedding`).",
    )
    aembedding = _through_async_default("aembedding", "The async twin of :func:`embedding`.")
    create_context_cache = _through_default(
        "create_context_cache",
        "A Gemini context cache through the default client (see"
        " :meth:`deja.Client.create_context_cache`); pass its ``id`` as ``context_cache_id``.",
    )
    acreate_context_cache = _through_async_default(
        "acreate_context_cache", "The async twin of :func:`create_context_cache`."
    )
    delete_context_cache = _through_default(
        "delete_context_cache", "Delete a Gemini context cache through the default client."
    )
    adelete_context_cache = _through_async_default(
        "adelete_context_cache", "The async twin of :func:`delete_context_cache`."
    )
