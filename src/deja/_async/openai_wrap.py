"""Caching for an official ``openai`` SDK client, in place (see :func:`deja.wrap`).

``chat.completions.create`` and ``embeddings.create`` go through the cache, and so does
``chat.completions.parse`` (the ``create`` call it makes, the SDK parsing the answer);
everything else is the SDK, untouched. Cache options ride in ``extra_body={"cache": {...}}``
and are never sent upstream. Hits come back as the SDK's own types; the SDK's exceptions
pass unchanged. A call for the HTTP response itself (``with_raw_response`` /
``with_streaming_response``, which call the replaced ``create`` with a marker header) goes
to the SDK uncached: a cache hit has no HTTP response to give.

The source of truth is src/deja/_async/openai_wrap.py; the sync twin in src/deja/_sync/ is
generated from it by scripts/unasync.py.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Mapping
from typing import Any

from deja._async.cache import AsyncCache
from deja._async.embeddings import acached_embeddings, embedding_items
from deja._async.streams import AsyncCachedStream
from deja._openai_args import (
    SdkTimeout,
    _not_given,
    keyed_api_base,
    raw_response_defaults,
    required,
    sdk_dump,
    sdk_patience,
    split_call,
    wants_http_response,
)
from deja.errors import UpstreamTimeoutError
from deja.request import Request
from deja.result import CacheInfo, attach_info, cache_info

__all__ = ["AsyncCachedCompletions", "AsyncCachedEmbeddings", "AsyncWrappedStream"]


class AsyncWrappedStream:
    """A cached or shared stream that yields the SDK's ``ChatCompletionChunk`` objects.

    ``response`` is no HTTP response (a hit has none): it only closes this stream, which is
    all the SDK's ``chat.completions.stream()`` helper does with the ``response`` of the
    stream it gets from ``create``.
    """

    def __init__(self, stream: AsyncCachedStream, chunk_type: Any) -> None:
        self._stream = stream
        self._chunk_type = chunk_type
        self.cache: CacheInfo = stream.info
        self.response = _StreamCloser(self)

    def __aiter__(self) -> AsyncWrappedStream:
        return self

    async def __anext__(self) -> Any:
        return self._chunk_type.model_validate(await self._stream.__anext__())

    async def close(self) -> None:
        """Stop reading (closes the upstream if nobody else reads it)."""
        await self._stream.aclose()

    async def __aenter__(self) -> AsyncWrappedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _StreamCloser:
    """``AsyncWrappedStream.response``: closing it closes the stream."""

    def __init__(self, stream: AsyncWrappedStream) -> None:
        self._stream = stream

    async def aclose(self) -> None:
        await self._stream.close()


class _Wrapped:
    """What both replaced ``create`` methods share: the SDK's own ``create`` and the client's
    endpoint, default query and default raw-response header (a client copy is wrapped anew)."""

    def __init__(self, original: Any, cache: AsyncCache, client: Any, types: Any) -> None:
        self._original = original
        self._cache = cache
        self._api_base = str(client.base_url)
        self._default_query: dict[str, Any] = dict(client.default_query)
        self._default_headers = raw_response_defaults(client.default_headers)
        self._types = types
        # how long a call may take, so that one joining an identical call in flight waits
        # no longer (the SDK's per-call timeout= overrides the client's)
        self._timeout = getattr(client, "timeout", None)
        self._max_retries = getattr(client, "max_retries", None)

    def _api_base_for(self, kwargs: dict[str, Any]) -> str:
        return keyed_api_base(self._api_base, self._default_query, kwargs.get("extra_query"))


class AsyncCachedCompletions(_Wrapped):
    """Replaces ``client.chat.completions.create`` and ``parse`` (``original_parse``, the
    SDK's own)."""

    def __init__(
        self, original: Any, cache: AsyncCache, client: Any, types: Any, original_parse: Any
    ) -> None:
        super().__init__(original, cache, client, types)
        self._original_parse = original_parse
        # the arguments the SDK's parse() takes: another one is its TypeError, as unwrapped
        self._parse_args = frozenset(inspect.signature(original_parse).parameters)

    async def parse(self, **kwargs: Any) -> Any:
        """``chat.completions.parse``, cached as the ``create`` call it makes: the pydantic
        ``response_format`` written as the JSON schema the SDK sends for it (so it shares
        entries with a ``create`` given that schema, and with the ``stream()`` helper's
        answers), the answer then parsed by the SDK's own parser, on a hit as on a miss.
        A raw / streaming-response call is the SDK's (without the cache options)."""
        unknown = sorted(kwargs.keys() - self._parse_args)
        if unknown:
            raise TypeError(f"parse() got an unexpected keyword argument {unknown[0]!r}")
        if wants_http_response(self._default_headers, kwargs):
            return await self._original_parse(**split_call(kwargs)[0])
        parsing = self._types.parsing
        response_format = kwargs.get("response_format", self._types.openai.NOT_GIVEN)
        call = dict(kwargs)
        call["extra_headers"] = {  # as the SDK's parse() marks its calls
            "X-Stainless-Helper-Method": "chat.completions.parse",
            **(kwargs.get("extra_headers") or {}),
        }
        if "response_format" in kwargs:
            call["response_format"] = parsing.type_to_response_format_param(response_format)
        tools: Any = self._types.openai.NOT_GIVEN
        if "tools" in kwargs and not _not_given(kwargs["tools"]):
            tools = call["tools"] = list(kwargs["tools"])  # a generator is read once
            parsing.validate_input_tools(tools)  # function tools only, as the SDK's parse()
        completion = await self.create(**call)
        parsed = parsing.parse_chat_completion(
            response_format=response_format, chat_completion=completion, input_tools=tools
        )
        info = cache_info(completion)
        return attach_info(parsed, info) if info is not None else parsed

    async def create(self, **kwargs: Any) -> Any:
        """``chat.completions.create``, cached; a raw / streaming-response call is the SDK's."""
        if isinstance(kwargs.get("response_format"), type):
            # a pydantic class: the SDK's create() refuses it with its own message (use
            # parse()); deja adds nothing to that
            return await self._original(**kwargs)
        sdk_kwargs, fields, control = split_call(kwargs)
        if wants_http_response(self._default_headers, kwargs):
            return await self._original(**sdk_kwargs)
        model, messages = required(fields, "model"), required(fields, "messages")
        api_base = self._api_base_for(kwargs)
        request = Request.chat(model=model, messages=messages, api_base=api_base, **fields)
        if fields.get("stream"):
            options = dict(fields.get("stream_options") or {})
            include_usage = bool(options.get("include_usage"))
            sdk_kwargs["stream_options"] = {**options, "include_usage": True}

            async def open_stream() -> AsyncIterator[dict[str, Any]]:
                sdk_stream = await self._original(**sdk_kwargs)

                async def chunks() -> AsyncIterator[dict[str, Any]]:
                    try:
                        async for chunk in sdk_stream:
                            yield sdk_dump(chunk)
                    finally:
                        await sdk_stream.close()

                return chunks()

            stream = await self._cache.stream(  # each chunk becomes an SDK object
                request,
                open_stream,
                control=control,
                include_usage=include_usage,
                copy_chunks=False,
                # joining an identical stream: no chunk waited for longer than this call
                # could take in all
                timeout=sdk_patience(sdk_kwargs, self._timeout, self._max_retries),
            )
            return AsyncWrappedStream(stream, self._types.ChatCompletionChunk)

        async def call() -> dict[str, Any]:
            try:
                return sdk_dump(await self._original(**sdk_kwargs))
            except self._types.openai.APITimeoutError as exc:
                raise SdkTimeout(exc) from exc

        patience = sdk_patience(sdk_kwargs, self._timeout, self._max_retries)
        try:
            result = await self._cache.fetch(request, call, control=control, timeout=patience)
        except SdkTimeout as exc:  # this call's own, or a call it waited for that allowed
            raise exc.original from None  # no more time than this one: the SDK's error
        except UpstreamTimeoutError as exc:  # waited out another call: the SDK's own error
            import httpx

            url = f"{self._api_base.rstrip('/')}/chat/completions"
            raise self._types.openai.APITimeoutError(request=httpx.Request("POST", url)) from exc
        return attach_info(self._types.ChatCompletion.model_validate(result.response), result.info)


class AsyncCachedEmbeddings(_Wrapped):
    """Replaces ``client.embeddings.create``: cached per input item."""

    async def create(self, **kwargs: Any) -> Any:
        """``embeddings.create``, cached per item; a raw / streaming-response call is the SDK's."""
        sdk_kwargs, fields, control = split_call(kwargs)
        if wants_http_response(self._default_headers, kwargs):
            return await self._original(**sdk_kwargs)
        encoding = fields.pop("encoding_format", None)
        model, value = required(fields, "model"), required(fields, "input")

        async def fetch_missing(items: list[Any]) -> Mapping[str, Any]:
            call_kwargs = {**sdk_kwargs, "input": items, "encoding_format": "float"}
            try:
                return sdk_dump(await self._original(**call_kwargs))
            except self._types.openai.APITimeoutError as exc:
                raise SdkTimeout(exc) from exc

        api_base = self._api_base_for(kwargs)
        try:  # as chat calls: a joiner of an identical batch in flight keeps its timeout
            batch = await acached_embeddings(
                cache=self._cache,
                model=model,
                items=embedding_items(value),
                params=fields,
                api_base=api_base,
                control=control,
                fetch_missing=fetch_missing,
                timeout=sdk_patience(sdk_kwargs, self._timeout, self._max_retries),
            )
        except SdkTimeout as exc:
            raise exc.original from None
        except UpstreamTimeoutError as exc:  # waited out another call: the SDK's own error
            import httpx

            url = f"{api_base.rstrip('/')}/embeddings"
            raise self._types.openai.APITimeoutError(request=httpx.Request("POST", url)) from exc
        body = batch.response(encoding_format=encoding)
        if encoding != "base64":
            return attach_info(self._types.CreateEmbeddingResponse.model_validate(body), batch.info)
        # the SDK types vectors as float lists; base64 strings are built without validation,
        # as the SDK itself does when a caller asks for base64
        types = self._types
        built = types.CreateEmbeddingResponse.model_construct(
            object=body["object"],
            model=body["model"],
            usage=types.embedding_usage.model_validate(body["usage"]),
            data=[types.Embedding.model_construct(**item) for item in body["data"]],
        )
        return attach_info(built, batch.info)
