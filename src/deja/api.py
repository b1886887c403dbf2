"""Module-level convenience calls: ``deja.completion``, ``deja.acompletion`` and friends.

They use one explicit default client pair, :data:`DEFAULTS`, that a program can inspect or
replace (:func:`set_default_client`). Without :func:`enable_cache` they call the upstream
every time, as LiteLLM's functions do before ``litellm.enable_cache()``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from deja._async.cache import AsyncCache
from deja._async.client import AsyncChatCompletionStream, AsyncClient
from deja._sync.cache import Cache
from deja._sync.client import ChatCompletionStream, Client
from deja.controls import CacheControl
from deja.providers.context_cache import ContextCache
from deja.response import ChatCompletion, CreateEmbeddingResponse
from deja.stores.base import Store

__all__ = [
    "DEFAULTS",
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
    DEFAULTS.replace(client, async_client)


def enable_cache(
    *,
    ttl: float | None = None,
    store: Store | None = None,
    key_prefix: str = "deja:",
    namespace: str | None = None,
) -> Cache:
    """Give the default clients a cache (both share ``store``; default: in memory), and
    return the sync one (``cache.delete(cache.key_for(...))``, ``cache.clear()``...: what
    LiteLLM users do with ``litellm.cache``)."""
    if store is None:
        from deja.stores.memory import MemoryStore

        store = MemoryStore()
    options: dict[str, Any] = {"ttl": ttl, "key_prefix": key_prefix, "namespace": namespace}
    cache = DEFAULTS.client.cache = Cache(store=store, **options)
    DEFAULTS.async_client.cache = AsyncCache(store=store, **options)
    return cache


def close() -> None:
    """Close the default client's connections (at exit, or before a fork)."""
    DEFAULTS.close()


def disable_cache() -> None:
    """The default clients call the upstream every time again."""
    DEFAULTS.client.cache = None
    DEFAULTS.async_client.cache = None


@overload
def completion(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    stream: Literal[False] = False,
    cache: Mapping[str, Any] | CacheControl | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    **body: Any,
) -> ChatCompletion: ...


@overload
def completion(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    stream: Literal[True],
    cache: Mapping[str, Any] | CacheControl | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    **body: Any,
) -> ChatCompletionStream: ...


@overload
def completion(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    stream: bool,
    cache: Mapping[str, Any] | CacheControl | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    **body: Any,
) -> ChatCompletion | ChatCompletionStream: ...


def completion(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    cache: Mapping[str, Any] | CacheControl | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    **body: Any,
) -> ChatCompletion | ChatCompletionStream:
    """A chat completion through the default client (see :meth:`deja.Client.completion`)."""
    answer: ChatCompletion | ChatCompletionStream = DEFAULTS.client.completion(
        model=model,
        messages=messages,
        cache=cache,
        api_base=api_base,
        api_key=api_key,
        timeout=timeout,
        **body,
    )
    return answer


@overload
async def acompletion(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    stream: Literal[False] = False,
    cache: Mapping[str, Any] | CacheControl | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    **body: Any,
) -> ChatCompletion: ...


@overload
async def acompletion(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    stream: Literal[True],
    cache: Mapping[str, Any] | CacheControl | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    **body: Any,
) -> AsyncChatCompletionStream: ...


@overload
async def acompletion(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    stream: bool,
    cache: Mapping[str, Any] | CacheControl | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    **body: Any,
) -> ChatCompletion | AsyncChatCompletionStream: ...


async def acompletion(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    cache: Mapping[str, Any] | CacheControl | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    **body: Any,
) -> ChatCompletion | AsyncChatCompletionStream:
    """The async twin of :func:`completion`."""
    answer: ChatCompletion | AsyncChatCompletionStream = await DEFAULTS.async_client.acompletion(
        model=model,
        messages=messages,
        cache=cache,
        api_base=api_base,
        api_key=api_key,
        timeout=timeout,
        **body,
    )
    return answer


def embedding(
    *,
    model: str,
    input: Any,
    cache: Mapping[str, Any] | CacheControl | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    **body: Any,
) -> CreateEmbeddingResponse:
    """Embeddings through the default client, cached per input item."""
    return DEFAULTS.client.embedding(
        model=model,
        input=input,
        cache=cache,
        api_base=api_base,
        api_key=api_key,
        timeout=timeout,
        **body,
    )


async def aembedding(
    *,
    model: str,
    input: Any,
    cache: Mapping[str, Any] | CacheControl | None = None,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    **body: Any,
) -> CreateEmbeddingResponse:
    """The async twin of :func:`embedding`."""
    return await DEFAULTS.async_client.aembedding(
        model=model,
        input=input,
        cache=cache,
        api_base=api_base,
        api_key=api_key,
        timeout=timeout,
        **body,
    )


def create_context_cache(
    *,
    model: str,
    system_instruction: str | None = None,
    messages: Sequence[Mapping[str, Any]] = (),
    tools: Sequence[Mapping[str, Any]] | None = None,
    ttl: int = 3600,
    api_base: str | None = None,
    api_key: str | None = None,
    **options: Any,
) -> ContextCache:
    """A Gemini context cache through the default client (see
    :meth:`deja.Client.create_context_cache`); pass its ``id`` as ``context_cache_id``."""
    return DEFAULTS.client.create_context_cache(
        model=model,
        system_instruction=system_instruction,
        messages=messages,
        tools=tools,
        ttl=ttl,
        api_base=api_base,
        api_key=api_key,
        **options,
    )


async def acreate_context_cache(
    *,
    model: str,
    system_instruction: str | None = None,
    messages: Sequence[Mapping[str, Any]] = (),
    tools: Sequence[Mapping[str, Any]] | None = None,
    ttl: int = 3600,
    api_base: str | None = None,
    api_key: str | None = None,
    **options: Any,
) -> ContextCache:
    """The async twin of :func:`create_context_cache`."""
    return await DEFAULTS.async_client.acreate_context_cache(
        model=model,
        system_instruction=system_instruction,
        messages=messages,
        tools=tools,
        ttl=ttl,
        api_base=api_base,
        api_key=api_key,
        **options,
    )


def delete_context_cache(
    *,
    model: str,
    name: str,
    api_base: str | None = None,
    api_key: str | None = None,
    **options: Any,
) -> None:
    """Delete a Gemini context cache through the default client."""
    DEFAULTS.client.delete_context_cache(
        model=model, name=name, api_base=api_base, api_key=api_key, **options
    )


async def adelete_context_cache(
    *,
    model: str,
    name: str,
    api_base: str | None = None,
    api_key: str | None = None,
    **options: Any,
) -> None:
    """The async twin of :func:`delete_context_cache`."""
    await DEFAULTS.async_client.adelete_context_cache(
        model=model, name=name, api_base=api_base, api_key=api_key, **options
    )
