"""``deja.wrap(openai_client, cache=...)``: put deja's cache into an official SDK client."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, TypeVar

from deja._async.cache import AsyncCache
from deja._async.openai_wrap import AsyncCachedCompletions, AsyncCachedEmbeddings
from deja._sync.cache import Cache
from deja._sync.openai_wrap import CachedCompletions, CachedEmbeddings
from deja.errors import MissingDependencyError

__all__ = ["wrap"]

C = TypeVar("C")


def _sdk_types() -> Any:
    try:
        import openai
        from openai.lib import _parsing as parsing  # what the SDK's parse() calls
        from openai.types import CreateEmbeddingResponse, Embedding
        from openai.types.chat import ChatCompletion, ChatCompletionChunk
        from openai.types.create_embedding_response import Usage
    except ImportError as exc:
        raise MissingDependencyError("openai", "openai") from exc
    return SimpleNamespace(
        openai=openai,
        parsing=parsing,
        ChatCompletion=ChatCompletion,
        ChatCompletionChunk=ChatCompletionChunk,
        CreateEmbeddingResponse=CreateEmbeddingResponse,
        Embedding=Embedding,
        embedding_usage=Usage,
    )


def wrap(client: C, *, cache: Cache | AsyncCache | None = None) -> C:
    """Cache ``client.chat.completions.create`` (and ``parse``) and ``client.embeddings.create``.

    ``client`` is an ``openai.OpenAI`` (give a :class:`deja.Cache`) or an
    ``openai.AsyncOpenAI`` (give a :class:`deja.AsyncCache`); without ``cache`` a fresh
    in-memory one is used. The client is changed in place and returned: every other SDK
    feature works as before. Per-request options go in
    ``extra_body={"cache": {"ttl": 600}}`` and are never sent upstream. Hits are the
    SDK's own response types; the SDK's exceptions pass through unchanged. How a response
    was served (hit, miss...): :func:`deja.cache_info`. A streamed call returns an iterator
    of the SDK's chunks with ``.cache`` and ``close()``; the SDK's
    ``chat.completions.stream()`` helper is cached the same way, and
    ``chat.completions.parse()`` as the ``create`` call it makes (its pydantic
    ``response_format`` keyed as the JSON schema sent for it), its answer parsed anew.

    Raw-response calls bypass the cache: ``.with_raw_response.create(...)`` and
    ``.with_streaming_response.create(...)`` (chat and embeddings) ask for the HTTP response
    itself (status, headers, raw body), which a stored answer cannot honestly supply. They go
    to the SDK exactly as on an unwrapped client, returning its ``LegacyAPIResponse`` /
    ``APIResponse``; they are neither served from the cache nor stored (only the
    ``extra_body`` cache options are removed). The other SDK call options pass through
    unchanged: ``extra_headers`` and ``timeout`` are not keyed, while the query string the
    request URL gets (the client's ``default_query``, the call's ``extra_query``) is keyed
    with the endpoint, since it reaches the upstream.
    """
    types = _sdk_types()
    openai = types.openai
    if not isinstance(client, (openai.OpenAI, openai.AsyncOpenAI)):
        raise TypeError(
            f"deja.wrap takes an openai.OpenAI or AsyncOpenAI client, not {type(client).__name__}"
        )
    # chat.completions, and the SDK's other instance of it (beta.chat.completions, where
    # parse() lived before it moved: calls through it went upstream every time)
    every = [client.chat.completions]
    beta = getattr(getattr(getattr(client, "beta", None), "chat", None), "completions", None)
    if beta is not None and beta is not every[0] and hasattr(beta, "parse"):
        every.append(beta)
    embeddings = client.embeddings
    if isinstance(client, openai.AsyncOpenAI):
        acache = cache if cache is not None else AsyncCache()
        if not isinstance(acache, AsyncCache):
            raise TypeError("an AsyncOpenAI client needs a deja.AsyncCache")
        for completions in every:
            chat = AsyncCachedCompletions(
                completions.create, acache, client, types, completions.parse
            )
            completions.create, completions.parse = chat.create, chat.parse
        embeddings.create = AsyncCachedEmbeddings(embeddings.create, acache, client, types).create
    else:
        scache = cache if cache is not None else Cache()
        if not isinstance(scache, Cache):
            raise TypeError("an OpenAI client needs a deja.Cache (use AsyncCache with AsyncOpenAI)")
        for completions in every:
            schat = CachedCompletions(completions.create, scache, client, types, completions.parse)
            completions.create, completions.parse = schat.create, schat.parse
        embeddings.create = CachedEmbeddings(embeddings.create, scache, client, types).create
    # `client.with_options(timeout=5)` (or `.copy()`) makes a new client: wrap it too, with
    # the same cache, or its calls would quietly skip the cache
    shared = acache if isinstance(client, openai.AsyncOpenAI) else scache
    copy = client.copy

    def wrapped_copy(*args: Any, **kwargs: Any) -> Any:
        return wrap(copy(*args, **kwargs), cache=shared)

    client.copy = client.with_options = wrapped_copy
    return client
