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

import functools
import inspect
import sys
from collections.abc import AsyncIterator, Callable, Mapping
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
from deja.errors import InvalidRequestError, UpstreamTimeoutError
from deja.request import Request, check_encoding_format
from deja.result import CacheInfo, attach_info, cache_info

__all__ = ["AsyncCachedCompletions", "AsyncCachedEmbeddings", "AsyncWrappedStream"]


class AsyncWrappedStream:
    """A cached or shared stream that yields the SDK's ``ChatCompletionChunk`` objects.

    ``response`` is no HTTP response (a hit has none): it only closes this stream, which is
    all the SDK's ``chat.completions.stream()`` helper does with the ``response`` of the
    stream it gets from ``create``.
    """

    def __init__(
        self,
        stream: AsyncCachedStream,
        chunk_type: Any,
        timeout_error: Callable[[], BaseException],
    ) -> None:
        self._stream = stream
        self._chunk_type = chunk_type
        self._timeout_error = timeout_error
        self.cache: CacheInfo = stream.info
        self.response = _StreamCloser(self)

    def __aiter__(self) -> AsyncWrappedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self._stream.__anext__()
        except SdkTimeout as exc:  # the SDK's own, as it raised it
            raise exc.original from None
        except UpstreamTimeoutError as exc:  # waited out another's stream: the SDK's error
            raise self._timeout_error() from exc
        return self._chunk_type.model_validate(chunk)

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
    """What both replaced ``create`` methods share: the SDK's own ``create``, its client and
    the client's default raw-response header (a client copy is wrapped anew)."""

    def __init__(self, original: Any, cache: AsyncCache, client: Any, types: Any) -> None:
        self._original = original
        self._cache = cache
        # The client's endpoint, default query, timeout and retries are read at each call,
        # as the SDK reads them: `client.base_url = ...` (a public setter) points it at
        # another upstream, whose answers were otherwise keyed (and served) as the old one's.
        self._sdk = client
        self._base: tuple[object, str] = (None, "")  # the last base_url read, as text
        self._default_headers = raw_response_defaults(client.default_headers)
        self._types = types
        # what the SDK raises when its upstream is too slow, told apart from its other errors
        self._timeouts = (types.openai.APITimeoutError, *_transport_timeouts(client))

    def _base_url(self) -> str:
        """The client's ``base_url`` now, as text (made again only when it changed: this is
        every hit's path, and an SDK URL builds its text anew each time)."""
        # the property's own storage: its getter imports a module at every read in openai
        # 3.x (2.7 us of a ~45 us hit); tests/test_wrap_s21.py checks the two agree
        url = getattr(self._sdk, "_base_url", None) or self._sdk.base_url
        seen, text = self._base
        if url is not seen:
            text = str(url)
            self._base = (url, text)
        return text

    def _api_base_for(self, kwargs: dict[str, Any]) -> str:
        """The endpoint this call is keyed by: the client's, with the query string the SDK
        adds to the URL (the client's default query, the call's ``extra_query``)."""
        query = self._sdk.default_query
        return keyed_api_base(self._base_url(), query, kwargs.get("extra_query"))

    def _patience(self, sdk_kwargs: Mapping[str, Any]) -> float | None:
        """How long this call may take, so that one joining an identical call in flight
        waits no longer (the SDK's per-call ``timeout=`` overrides the client's)."""
        client = self._sdk
        timeout = getattr(client, "timeout", None)
        return sdk_patience(sdk_kwargs, timeout, getattr(client, "max_retries", None))

    def _timeout_error(self, path: str) -> BaseException:
        """The SDK's ``APITimeoutError`` for a call to ``path`` that waited out another's.
        Its request is built by the client's own HTTP client (httpx, or httpx2 since
        openai 3): deja imports neither, and ``httpx`` may well not be installed."""
        url = f"{self._base_url().rstrip('/')}/{path}"
        request = self._sdk._client.build_request("POST", url)
        error: BaseException = self._types.openai.APITimeoutError(request=request)
        return error


def _transport_timeouts(client: Any) -> tuple[type[BaseException], ...]:
    """The timeout error of ``client``'s HTTP library, which an SDK's stream may raise as
    it is while reading chunks (openai 3 makes it its ``APITimeoutError``; earlier
    versions may let it through): found through the library's own ``URL`` type (the
    client's ``base_url``'s), so that deja imports neither httpx nor httpx2."""
    library = sys.modules.get(type(client.base_url).__module__.partition(".")[0])
    found = getattr(library, "TimeoutException", None)
    if isinstance(found, type) and issubclass(found, BaseException):
        return (found,)
    return ()


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
        # built as the proxy builds one from a body: every field is a request field (keyed
        # and sent), one named api_base or tenant too, never Request.chat's own argument
        try:
            request = Request.from_body(fields, api_base=self._api_base_for(kwargs))
        except InvalidRequestError:
            # a request deja does not take (a shape no API takes, a field of a wrong
            # type): the SDK's own call, uncached, so that its caller gets the SDK's own
            # exception for it (or the answer of a server that takes it)
            return await self._original(**sdk_kwargs)
        if fields.get("stream"):
            options = dict(fields.get("stream_options") or {})
            include_usage = bool(options.get("include_usage"))
            sdk_kwargs["stream_options"] = {**options, "include_usage": True}

            timeouts = self._timeouts

            # The SDK's timeouts travel through the shared stream as the cache's own (see
            # the plain call's): a caller that joined it and allowed more time than its
            # opener asks again rather than get the opener's timeout.
            async def open_stream() -> AsyncIterator[dict[str, Any]]:
                try:
                    sdk_stream = await self._original(**sdk_kwargs)
                except timeouts as exc:
                    raise SdkTimeout(exc) from exc

                async def chunks() -> AsyncIterator[dict[str, Any]]:
                    try:
                        async for chunk in sdk_stream:
                            yield sdk_dump(chunk)
                    except timeouts as exc:
                        raise SdkTimeout(exc) from exc
                    finally:
                        await sdk_stream.close()

                return chunks()

            try:
                stream = await self._cache.stream(  # each chunk becomes an SDK object
                    request,
                    open_stream,
                    control=control,
                    include_usage=include_usage,
                    copy_chunks=False,
                    # joining an identical stream: no chunk waited for longer than this
                    # call could take in all
                    timeout=self._patience(sdk_kwargs),
                )
            except SdkTimeout as exc:  # this call's own, or its opener's: the SDK's error
                raise exc.original from None
            except UpstreamTimeoutError as exc:  # waited out another's stream
                raise self._timeout_error("chat/completions") from exc
            return AsyncWrappedStream(
                stream,
                self._types.ChatCompletionChunk,
                functools.partial(self._timeout_error, "chat/completions"),
            )

        async def call() -> dict[str, Any]:
            try:
                return sdk_dump(await self._original(**sdk_kwargs))
            except self._types.openai.APITimeoutError as exc:
                raise SdkTimeout(exc) from exc

        patience = self._patience(sdk_kwargs)
        try:
            result = await self._cache.fetch(request, call, control=control, timeout=patience)
        except SdkTimeout as exc:  # this call's own, or a call it waited for that allowed
            raise exc.original from None  # no more time than this one: the SDK's error
        except UpstreamTimeoutError as exc:  # waited out another call: the SDK's own error
            raise self._timeout_error("chat/completions") from exc
        return attach_info(self._types.ChatCompletion.model_validate(result.response), result.info)


class AsyncCachedEmbeddings(_Wrapped):
    """Replaces ``client.embeddings.create``: cached per input item."""

    async def create(self, **kwargs: Any) -> Any:
        """``embeddings.create``, cached per item; a raw / streaming-response call is the SDK's."""
        sdk_kwargs, fields, control = split_call(kwargs)
        if wants_http_response(self._default_headers, kwargs):
            return await self._original(**sdk_kwargs)
        encoding = fields.pop("encoding_format", None)
        try:
            check_encoding_format(encoding)
        except InvalidRequestError:  # (as a refused input: the SDK's own call, its error)
            return await self._original(**sdk_kwargs)
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
                timeout=self._patience(sdk_kwargs),
            )
        except InvalidRequestError:  # (refused before any call: as chat's, the SDK's own)
            return await self._original(**sdk_kwargs)
        except SdkTimeout as exc:
            raise exc.original from None
        except UpstreamTimeoutError as exc:  # waited out another call: the SDK's own error
            raise self._timeout_error("embeddings") from exc
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
