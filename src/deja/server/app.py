"""The caching proxy: an OpenAI-compatible ASGI app in front of the configured upstreams.

Routes (``/v1`` prefix optional): ``POST /chat/completions``, ``/completions``,
``/embeddings``; ``GET /models``; ``GET /health`` (liveness, no auth), ``/health/ready``
(the cache store answers); ``GET /metrics`` (Prometheus); admin routes under ``/cache/``
for the master key only. Every answer that went through the cache carries ``x-deja-cache``
(``hit``, ``miss``, ``bypass``...), ``x-deja-cache-key``, ``x-deja-cost-usd`` and, on a
hit, ``age``; a hit's body is the stored bytes as they were. ``POST /cache/feedback``
(any caller, its own entries) reports a wrong semantic hit by its ``x-deja-cache-key``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from deja._async.cache import AsyncCache
from deja._async.client import _PROVIDER_OPTIONS, AsyncClient
from deja._async.embeddings import acached_embeddings, embedding_items
from deja._async.streams import aopen_uncached
from deja.config import ModelDeployment, Settings, build_cache
from deja.controls import CacheControl, from_header, merge, parse_controls
from deja.errors import (
    ControlError,
    DejaError,
    InvalidRequestError,
    KeyBuilderError,
    ProviderError,
    StoreError,
    UpstreamConnectionError,
    UpstreamTimeoutError,
)
from deja.keys import scope_prefix
from deja.metrics import PrometheusMetrics
from deja.request import Request, RequestKind
from deja.result import CacheInfo
from deja.server.auth import Auth, Caller
from deja.server.http import (
    HTTPError,
    Receive,
    Scope,
    Send,
    error_body,
    joined_header,
    read_body,
    send_json,
    send_raw,
)
from deja.server.workers import aggregated_exposition, aggregated_stats, multiprocess
from deja.streaming import SSE_DONE, sse_event

__all__ = ["HookError", "ProxyApp", "Route"]

logger = logging.getLogger("deja.server")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# Upstream failures worth trying the next deployment of the same model name for
_FAILOVER = (UpstreamTimeoutError, UpstreamConnectionError)


class HookError(DejaError):
    """A user hook raised; the request fails with a 500 that names the hook."""


@dataclass(frozen=True, slots=True)
class Route:
    """One model name: its deployments, tried in order when one fails, and the upstream
    call options of each (built once: every request reads them)."""

    name: str
    deployments: tuple[ModelDeployment, ...]
    options: tuple[dict[str, Any], ...]
    # callers may name s3:// / gs:// files: every deployment allows it
    storage_urls: bool = False


def _cache_headers(info: CacheInfo, *, cost_known: bool = True) -> list[tuple[bytes, bytes]]:
    """The cache's response headers. ``cost_known=False`` (a stream fetched upstream: its
    headers leave before its usage arrives) leaves the cost out rather than say 0."""
    headers = [
        (b"x-deja-cache", info.status.encode()),
        (b"x-deja-cache-key", info.key.encode()),
    ]
    if cost_known:
        headers.append((b"x-deja-cost-usd", f"{info.cost_usd:.8f}".encode()))
    if info.saved_usd:
        headers.append((b"x-deja-saved-usd", f"{info.saved_usd:.8f}".encode()))
    if info.similarity is not None:
        headers.append((b"x-deja-similarity", f"{info.similarity:.4f}".encode()))
    if info.age is not None:
        headers.append((b"age", str(int(info.age)).encode()))
    return headers


_SERVED = frozenset({"hit", "semantic_hit"})
_SEMANTIC_PROBE_SECONDS = 5.0
_NO_STORE = CacheControl(no_store=True)


def _failover_worthy(exc: ProviderError) -> bool:
    return isinstance(exc, _FAILOVER) or (exc.status_code or 0) >= 500 or exc.status_code == 429


class ProxyApp:
    """The proxy as an ASGI 3 application, built from validated :class:`~deja.config.Settings`.

    ``cache`` and ``client`` may be injected (tests); otherwise they are built from the
    settings: the configured cache (none: every request goes upstream) and one pooled
    upstream client. Call :meth:`aclose` (the ASGI lifespan does) to close both.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        cache: AsyncCache | None = None,
        client: AsyncClient | None = None,
        metrics: PrometheusMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else PrometheusMetrics()
        if cache is None and settings.caching is not None:
            cache = build_cache(settings, asynchronous=True, metrics=self.metrics)
        self.cache = cache
        if cache is not None:
            self.metrics.watch_store(cache.store.name, cache.store)
        self.client = (
            client
            if client is not None
            else AsyncClient(
                max_retries=0,
                metrics=self.metrics,
                cache_control_injection_points=settings.cache_control_injection_points,
            )
        )
        self.auth = Auth(settings.general)
        self.routes = self._routes(settings.model_list)
        self._max_body = settings.general.max_request_bytes
        self._body_timeout = settings.general.request_body_timeout
        self._pre_hooks: list[tuple[str, Callable[..., Any]]] = []
        self._post_hooks: list[tuple[str, Callable[..., Any]]] = []
        for spec in settings.hooks:
            if spec.async_pre_llm_hook:
                self._pre_hooks.append(
                    (spec.async_pre_llm_hook, spec.load(spec.async_pre_llm_hook))
                )
            if spec.async_post_cache_hook:
                self._post_hooks.append(
                    (spec.async_post_cache_hook, spec.load(spec.async_post_cache_hook))
                )
            if spec.key_builder and self.cache is not None:
                self.cache.key_builder = _tenant_key_builder(
                    spec.key_builder, spec.load(spec.key_builder)
                )
        self._handlers: dict[tuple[str, str], Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            ("POST", "/chat/completions"): self._chat,
            ("POST", "/completions"): self._completions,
            ("POST", "/embeddings"): self._embeddings,
            ("GET", "/models"): self._models,
            ("GET", "/health"): self._health,
            ("GET", "/health/ready"): self._ready,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/cache/ping"): self._admin_ping,
            ("GET", "/cache/stats"): self._admin_stats,
            ("POST", "/cache/delete"): self._admin_delete,
            ("POST", "/cache/invalidate"): self._admin_invalidate,
            ("POST", "/cache/flush"): self._admin_flush,
            ("POST", "/cache/explain"): self._admin_explain,
            ("POST", "/cache/feedback"): self._feedback,
        }
        if not settings.general.master_key:
            logger.warning(
                "no general_settings.master_key: authentication is OFF, every caller shares one "
                "tenant, and the /cache admin routes are disabled"
            )

    @staticmethod
    def _routes(model_list: tuple[ModelDeployment, ...]) -> dict[str, Route]:
        grouped: dict[str, list[ModelDeployment]] = {}
        for deployment in model_list:
            grouped.setdefault(deployment.model_name, []).append(deployment)
        return {
            name: Route(
                name,
                tuple(deps),
                tuple(_deployment_options(d) for d in deps),
                storage_urls=all(d.litellm_params.get("allow_storage_urls") is True for d in deps),
            )
            for name, deps in grouped.items()
        }

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.cache is not None:  # before the first request, not during it
                    await self.cache.load_semantic()
                problem = await self._semantic_problem()
                if problem is not None:
                    logger.error(
                        "the semantic tier cannot work (%s): requests are answered by the"
                        " exact tier only until it can",
                        problem,
                    )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """Close the upstream client and the cache store."""
        await self.client.aclose()
        if self.cache is not None:
            await self.cache.aclose()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"].rstrip("/") or "/"
        if path.startswith("/v1/"):
            path = path[3:]
        handler = self._handlers.get((scope["method"], path))
        if handler is None and scope["method"] == "GET" and path.startswith("/models/"):
            handler = self._model
        try:
            if handler is None:
                raise self._not_found(scope["method"], path)
            await handler(scope, receive, send)
        except HTTPError as exc:
            if exc.status == 499:  # the client went away: nobody to answer
                return
            body = (
                exc.body
                if exc.body is not None
                else error_body(exc.status, exc.message, param=exc.param, code=exc.code)
            )
            await send_raw(send, exc.status, body, exc.headers)

    def _not_found(self, method: str, path: str) -> HTTPError:
        if path in ("/responses", "/messages"):
            return HTTPError(
                404, f"{path} is not served by this deja version", code="not_implemented"
            )
        if any(p == path for _, p in self._handlers):
            return HTTPError(405, f"{method} is not allowed on {path}")
        return HTTPError(404, f"no route {method} {path}", code="not_found")

    # -- inputs ---------------------------------------------------------------------------

    def _caller(self, scope: Scope) -> Caller:
        return self.auth.identify(scope)

    async def _json_body(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        raw = await read_body(scope, receive, self._max_body, self._body_timeout)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HTTPError(
                400, f"the body is not valid JSON: {exc}", code="invalid_json"
            ) from None
        if not isinstance(body, dict):
            raise HTTPError(400, "the body must be a JSON object", code="invalid_json")
        return body

    def _route(self, body: Mapping[str, Any], caller: Caller) -> Route:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise HTTPError(400, "'model' is required and must be a string", param="model")
        route = self.routes.get(model)
        if route is None:
            raise HTTPError(
                404, f"the model {model!r} does not exist", param="model", code="model_not_found"
            )
        if not caller.may_use(model):
            raise HTTPError(403, f"this key may not use the model {model!r}", param="model")
        return route

    def _controls(self, scope: Scope, body: dict[str, Any]) -> CacheControl:
        options = body.pop("cache", None)
        try:
            from_body = parse_controls(options)
        except ControlError as exc:
            # An option inside the object is cache.<name>; a "cache" that is not an object
            # (which parse_controls names "cache" too) is the field itself.
            inside = exc.option is not None and isinstance(options, Mapping)
            raise HTTPError(
                400, str(exc), param=f"cache.{exc.option}" if inside else "cache"
            ) from None
        try:
            return merge(from_header(joined_header(scope, b"cache-control")), from_body)
        except ControlError as exc:  # a Cache-Control header, not a body parameter
            raise HTTPError(400, str(exc)) from None

    async def _pre_llm(self, body: dict[str, Any]) -> dict[str, Any]:
        for name, hook in self._pre_hooks:
            try:
                result = await _maybe_await(hook(body))
            except Exception as exc:
                # the operator's bug: its detail goes to the log, not to every caller
                logger.exception("pre-LLM hook %s failed", name)
                raise HookError(f"hook {name} failed (the proxy's log has why)") from exc
            if isinstance(result, dict):
                body = result
        return body

    def _on_response(
        self, body: dict[str, Any], ctl: CacheControl
    ) -> Callable[[dict[str, Any]], Awaitable[CacheControl | None]] | None:
        if not self._post_hooks:
            return None

        async def run(response: dict[str, Any]) -> CacheControl | None:
            # The answer is paid for by now: a hook that fails, or asks for what is no cache
            # option, costs the caller nothing; the answer is served and not stored.
            options: dict[str, Any] = {}
            for name, hook in self._post_hooks:
                try:
                    result = await _maybe_await(hook(response, body))
                except Exception:
                    logger.exception("post-cache hook %s failed: the answer is not stored", name)
                    return merge(ctl, _NO_STORE)
                if isinstance(result, Mapping):
                    options.update(result)
                elif result is not None:
                    logger.warning(
                        "post-cache hook %s returned a %s, not cache options: ignored",
                        name,
                        type(result).__name__,
                    )
            if not options:
                return None
            try:
                extra = parse_controls(options)
            except ControlError as exc:
                logger.error("post-cache hooks asked for %s: the answer is not stored", exc)
                return merge(ctl, _NO_STORE)
            if extra.namespace is not None and extra.namespace != ctl.namespace:
                logger.error(
                    "post-cache hooks asked for namespace %r, but the key is chosen before the"
                    " call (set it in a pre-call hook): the answer is not stored",
                    extra.namespace,
                )
                return merge(ctl, _NO_STORE)
            return merge(ctl, extra)

        return run

    # -- upstream -------------------------------------------------------------------------

    async def _call(self, route: Route, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        last: ProviderError | None = None
        remaining = len(route.deployments)
        for deployment, options in zip(route.deployments, route.options, strict=True):
            remaining -= 1
            try:
                return await self.client.arequest(path, payload, **options)
            except ProviderError as exc:
                if not _failover_worthy(exc):
                    raise
                last = exc
                if remaining:  # the last one's error is the answer: there is no next
                    logger.warning(
                        "deployment %s of %s failed (%s); trying the next",
                        deployment.model,
                        route.name,
                        type(exc).__name__,
                    )
        assert last is not None  # a route has at least one deployment
        raise last

    async def _open(self, route: Route, path: str, payload: Mapping[str, Any]) -> Any:
        last: ProviderError | None = None
        for options in route.options:
            try:
                return await self.client.astream(path, payload, **options)
            except ProviderError as exc:
                if not _failover_worthy(exc):
                    raise
                last = exc
        assert last is not None
        raise last

    # -- completion routes ----------------------------------------------------------------

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(scope, receive, send, kind="chat", path="/chat/completions")

    async def _completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._generate(scope, receive, send, kind="completion", path="/completions")

    async def _generate(
        self, scope: Scope, receive: Receive, send: Send, *, kind: str, path: str
    ) -> None:
        caller = self._caller(scope)
        body = await self._json_body(scope, receive)
        route = self._route(body, caller)
        ctl = self._controls(scope, body)
        try:
            body = await self._pre_llm(body)
            if not route.storage_urls:
                _refuse_storage_urls(body.get("messages"))
            deployment = route.deployments[0]
            request = Request.from_body(
                {**body, "model": deployment.model},
                kind="chat" if kind == "chat" else "completion",
                api_base=route.options[0]["api_base"],
                tenant=caller.tenant,
            )
            stream = bool(body.get("stream"))
            if stream:
                await self._stream(send, receive, route, path, body=body, request=request, ctl=ctl)
                return
            payload = {k: v for k, v in body.items() if k != "model"}
            info, data = await self._complete(
                route, path, payload=payload, request=request, ctl=ctl, body=body
            )
        except HTTPError:
            raise
        except Exception as exc:
            raise _http_error(exc) from exc
        await send_raw(send, 200, data, _cache_headers(info))

    async def _complete(
        self,
        route: Route,
        path: str,
        *,
        payload: dict[str, Any],
        request: Request,
        ctl: CacheControl,
        body: dict[str, Any],
    ) -> tuple[CacheInfo, bytes]:
        async def call() -> dict[str, Any]:
            return await self._call(route, path, payload)

        if self.cache is None:
            response = await call()
            return CacheInfo("bypass", ""), orjson.dumps(response)
        result = await self.cache.fetch(
            request, call, control=ctl, on_response=self._on_response(body, ctl)
        )
        data = result.response_bytes
        assert data is not None  # fetch returns a response or raises
        return result.info, data

    async def _stream(
        self,
        send: Send,
        receive: Receive,
        route: Route,
        path: str,
        *,
        body: dict[str, Any],
        request: Request,
        ctl: CacheControl,
    ) -> None:
        options = body.get("stream_options") or {}
        include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        payload = {k: v for k, v in body.items() if k != "model"}
        # deja always asks for usage, to price and store the answer; the caller gets the
        # usage chunk only if it asked for it
        payload["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }

        async def open_stream() -> Any:
            return await self._open(route, path, payload)

        if self.cache is None:
            stream = await aopen_uncached(open_stream, include_usage=include_usage)
        else:
            stream = await self.cache.stream(
                request,
                open_stream,
                control=ctl,
                include_usage=include_usage,
                on_response=self._on_response(body, ctl),
            )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": _SSE_HEADERS
                + _cache_headers(stream.info, cost_known=stream.info.status in _SERVED),
            }
        )

        async def relay() -> None:
            try:
                async for chunk in stream:
                    await send(
                        {"type": "http.response.body", "body": sse_event(chunk), "more_body": True}
                    )
                await send({"type": "http.response.body", "body": SSE_DONE, "more_body": False})
            except ProviderError as exc:
                # the status is sent: report the failure in-band, as OpenAI does, and end
                event = {
                    "error": {
                        "message": _caller_message(exc),
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
                await send(
                    {"type": "http.response.body", "body": sse_event(event), "more_body": False}
                )
            except OSError:  # a server that raises when the client went away mid-stream
                pass

        # A server may drop what is sent to a client that went away without raising: the
        # request's receive channel says so (http.disconnect). Then this reader stops and
        # leaves the stream; the last to leave closes the upstream, and nothing is stored.
        relaying = asyncio.ensure_future(relay())
        watching = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((relaying, watching), return_when=asyncio.FIRST_COMPLETED)
            if relaying.done():
                relaying.result()  # an unexpected error goes on up
            else:
                logger.info("client left mid-stream: stream %s abandoned", stream.info.key or "-")
        finally:
            for task in (relaying, watching):
                task.cancel()
            await asyncio.gather(relaying, watching, return_exceptions=True)
            await stream.aclose()

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = self._caller(scope)
        body = await self._json_body(scope, receive)
        route = self._route(body, caller)
        ctl = self._controls(scope, body)
        if "input" not in body:
            raise HTTPError(400, "'input' is required", param="input")
        encoding = body.pop("encoding_format", None)
        if encoding not in (None, "float", "base64"):
            raise HTTPError(
                400, "encoding_format must be 'float' or 'base64'", param="encoding_format"
            )
        deployment = route.deployments[0]
        try:
            body = await self._pre_llm(body)
            params = {k: v for k, v in body.items() if k not in ("model", "input")}

            async def fetch_missing(items: list[Any]) -> Mapping[str, Any]:
                return await self._call(
                    route, "/embeddings", {**params, "input": items, "encoding_format": "float"}
                )

            batch = await acached_embeddings(
                cache=self.cache,
                model=deployment.model,
                items=embedding_items(body["input"]),
                params=params,
                api_base=route.options[0]["api_base"],
                control=ctl,
                fetch_missing=fetch_missing,
                tenant=caller.tenant,
            )
        except HTTPError:
            raise
        except Exception as exc:
            raise _http_error(exc) from exc
        await send_json(
            send,
            200,
            batch.response(encoding_format=encoding),
            # a batch part served, part fetched is a "miss": say how much was served
            [
                *_cache_headers(batch.info),
                (b"x-deja-cached-items", f"{batch.cached}/{len(batch.vectors)}".encode()),
            ],
        )

    # -- plain routes ---------------------------------------------------------------------

    async def _models(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = self._caller(scope)
        data = [_model_object(name) for name in self.routes if caller.may_use(name)]
        await send_json(send, 200, {"object": "list", "data": data})

    async def _model(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /models/{name}``: one model the caller may use (a name may hold slashes)."""
        caller = self._caller(scope)
        name = scope["path"].rstrip("/").split("/models/", 1)[1]
        if name not in self.routes or not caller.may_use(name):
            raise HTTPError(
                404, f"the model {name!r} does not exist", param="model", code="model_not_found"
            )
        await send_json(send, 200, _model_object(name))

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"status": "ok"})

    async def _semantic_problem(self) -> str | None:
        """What keeps the semantic tier from working, found by one search of its index (a
        Redis without the RediSearch module, a Qdrant server down, an index of vectors of
        another size), or ``None``."""
        semantic = self.cache.semantic if self.cache is not None else None
        if semantic is None:
            return None
        try:
            import numpy as np

            probe = np.zeros(semantic.embedder.dim, dtype=np.float32)
            probe[0] = 1.0
            search = semantic.index.search
            await asyncio.wait_for(
                asyncio.to_thread(search, probe, scope="deja:health", k=1),
                timeout=_SEMANTIC_PROBE_SECONDS,
            )
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.cache is None:
            await send_json(send, 200, {"status": "ok", "cache": None})
            return
        started = time.perf_counter()
        try:
            await self.cache.store.aget(f"{self.cache.key_prefix}health")
        except Exception as exc:
            await send_json(
                send,
                503,
                {
                    "status": "unavailable",
                    "cache": self.cache.store.name,
                    "error": type(exc).__name__,
                },
            )
            return
        ms = (time.perf_counter() - started) * 1000
        ready: dict[str, Any] = {
            "status": "ok",
            "cache": self.cache.store.name,
            "latency_ms": round(ms, 3),
        }
        if self.cache.semantic is not None:
            # still ready without it (the exact tier answers), but say so
            problem = await self._semantic_problem()
            ready["semantic"] = "ok" if problem is None else "unavailable"
            if problem is not None:
                ready["semantic_error"] = problem
        await send_json(send, 200, ready)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        # a scrape reads the stores' usage (blocking I/O): never on the event loop
        if multiprocess():
            body = await asyncio.to_thread(aggregated_exposition, self.metrics.store_usage)
        else:
            body = await asyncio.to_thread(self.metrics.render)
        await send_raw(send, 200, body, content_type=self.metrics.content_type.encode())

    # -- admin ----------------------------------------------------------------------------

    def _admin(self, scope: Scope) -> AsyncCache:
        if not self.settings.general.master_key:
            raise HTTPError(403, "admin routes are disabled: no master_key is configured")
        if not self.auth.identify(scope).is_admin:
            raise HTTPError(401, "admin routes need the master key", code="invalid_api_key")
        if self.cache is None:
            raise HTTPError(404, "no cache is configured")
        return self.cache

    async def _admin_ping(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache = self._admin(scope)
        started = time.perf_counter()
        try:
            await cache.store.aget(f"{cache.key_prefix}ping")
        except Exception as exc:
            await send_json(
                send,
                503,
                {"status": "unhealthy", "store": cache.store.name, "error": type(exc).__name__},
            )
            return
        await send_json(
            send,
            200,
            {
                "status": "healthy",
                "store": cache.store.name,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )

    async def _admin_stats(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache = self._admin(scope)
        if multiprocess():  # every worker's counters, not only this one's
            figures = aggregated_stats()
            figures |= {"store": cache.store.name, "key_prefix": cache.key_prefix}
            await send_json(send, 200, figures)
            return
        stats = cache.stats()
        await send_json(
            send,
            200,
            {
                "exact": {
                    "hits": stats.hits,
                    "misses": stats.misses,
                    "bypasses": stats.bypasses,
                    "coalesced": stats.coalesced,
                },
                "semantic": {"hits": stats.semantic_hits},
                "hit_ratio": stats.hit_ratio,
                "store_errors": stats.store_errors,
                "saved_tokens": stats.saved_tokens,
                "saved_usd": stats.saved_usd,
                "store": cache.store.name,
                "key_prefix": cache.key_prefix,
            },
        )

    async def _admin_body(
        self, scope: Scope, receive: Receive
    ) -> tuple[AsyncCache, dict[str, Any]]:
        cache = self._admin(scope)
        return cache, await self._json_body(scope, receive)

    def _admin_answer(self, cache: AsyncCache, answer: dict[str, Any]) -> dict[str, Any]:
        """An admin change's answer, saying so when it reached this worker's cache only."""
        if multiprocess() and cache.store.name == "memory":
            answer["warning"] = (
                "in-memory cache with several workers: only the worker that answered was"
                " changed (use a shared store: disk, redis, s3)"
            )
        return answer

    def _admin_tenants(self, body: Mapping[str, Any]) -> tuple[str | None, ...]:
        """The tenant an admin call names, or, when it names none, every tenant."""
        tenant = body.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise HTTPError(400, "'tenant' must be a string", param="tenant")
        return (tenant,) if tenant is not None else self.auth.tenants

    async def _admin_request(
        self, body: Mapping[str, Any], tenant: str | None
    ) -> tuple[Request, CacheControl]:
        """The request an admin call describes, as ``tenant`` would have sent it: through
        the pre-LLM hooks, which may change what is keyed."""
        request_body = body.get("request")
        if not isinstance(request_body, dict):
            raise HTTPError(
                400,
                "give 'key', or 'request' with the request body that made the entry",
                param="request",
            )
        request_body = dict(request_body)
        route = self._route(request_body, _ADMIN_CALLER)
        ctl = parse_controls(request_body.pop("cache", None))
        try:
            request_body = await self._pre_llm(request_body)
        except HookError as exc:
            raise _http_error(exc) from exc
        deployment = route.deployments[0]
        kind: RequestKind = "chat" if "messages" in request_body else "completion"
        request = Request.from_body(
            {**request_body, "model": deployment.model},
            kind=kind,
            api_base=route.options[0]["api_base"],
            tenant=tenant,
        )
        return request, ctl

    async def _admin_delete(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache, body = await self._admin_body(scope, receive)
        try:
            if isinstance(body.get("key"), str):
                key = body["key"]
                deleted = await cache.delete(key)
                await send_json(
                    send, 200, self._admin_answer(cache, {"deleted": deleted, "key": key})
                )
                return
            # a request without a tenant: its entry for every tenant
            keys = []
            for tenant in self._admin_tenants(body):
                request, ctl = await self._admin_request(body, tenant)
                keys.append(cache.key(request, ctl))
            gone = [key for key in keys if await cache.delete(key)]
        except (InvalidRequestError, ControlError) as exc:
            raise HTTPError(400, str(exc)) from None
        except StoreError as exc:
            raise HTTPError(503, str(exc)) from None
        key = gone[0] if gone else keys[0]
        answer = {"deleted": bool(gone), "key": key, "keys": gone}
        await send_json(send, 200, self._admin_answer(cache, answer))

    async def _admin_invalidate(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache, body = await self._admin_body(scope, receive)
        tag, namespace = body.get("tag"), body.get("namespace")
        for name, value in (("tag", tag), ("namespace", namespace)):
            if value is not None and not isinstance(value, str):
                raise HTTPError(400, f"'{name}' must be a string", param=name)
        tenants = self._admin_tenants(body)  # none named: every tenant's entries
        try:
            deleted = 0
            for tenant in tenants:
                if tag is not None:
                    deleted += await cache.delete_tag(tag, namespace=namespace, tenant=tenant)
                elif namespace is not None:
                    deleted += await cache.clear(namespace=namespace, tenant=tenant)
                else:
                    raise HTTPError(400, "give 'tag' or 'namespace' (and optionally 'tenant')")
        except ControlError as exc:
            raise HTTPError(400, str(exc)) from None
        except StoreError as exc:
            raise HTTPError(503, str(exc)) from None
        await send_json(send, 200, self._admin_answer(cache, {"deleted": deleted}))

    async def _admin_flush(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache = self._admin(scope)
        try:
            deleted = await cache.clear()
        except StoreError as exc:
            raise HTTPError(503, str(exc)) from None
        answer = {"deleted": deleted, "key_prefix": cache.key_prefix}
        await send_json(send, 200, self._admin_answer(cache, answer))

    async def _admin_explain(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache, body = await self._admin_body(scope, receive)
        if "request" not in body:  # the request body itself, maybe with the tenant beside it
            request_body = dict(body)
            body = {"request": request_body}
            if "tenant" in request_body:
                body["tenant"] = request_body.pop("tenant")
        tenant = self._admin_tenants(body)[0]
        try:
            request, ctl = await self._admin_request(body, tenant)
            explained = {"tenant": tenant, **cache.explain(request, ctl)}
            if tenant is None and len(self.auth.tenants) > 1:
                explained["note"] = (
                    "explained as the master key's request; name 'tenant' to explain a"
                    " virtual key's (its entries are kept apart)"
                )
        except (InvalidRequestError, ControlError, KeyBuilderError) as exc:
            raise HTTPError(400, str(exc)) from None
        if cache.semantic is not None and ctl.semantic:
            try:  # which earlier prompts it would be served for, and why (not)
                explained["semantic"] = await cache.explain_semantic(request, ctl)
            except Exception as exc:
                raise HTTPError(503, f"the semantic tier failed: {exc!r}") from None
        await send_json(send, 200, explained)

    # -- feedback (any caller, on its own entries) ----------------------------------------

    async def _feedback(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``{"key": <x-deja-cache-key of a semantic hit>, "correct": false}``: report a
        wrong (or right) semantic hit. The master key may report on any entry; any other
        caller only on entries of its own tenant, in the cache's namespace or in the one it
        names (``"namespace"``, as it was set on the request). Entries of other scopes are
        as unknown to it as entries that do not exist (404)."""
        caller = self._caller(scope)
        body = await self._json_body(scope, receive)
        key, correct, namespace = body.get("key"), body.get("correct"), body.get("namespace")
        if not isinstance(key, str) or not key:
            raise HTTPError(
                400, "'key' (the x-deja-cache-key of the answer) is required", param="key"
            )
        if not isinstance(correct, bool):
            raise HTTPError(400, "'correct' is required and must be true or false", param="correct")
        if namespace is not None and not isinstance(namespace, str):
            raise HTTPError(400, "'namespace' must be a string", param="namespace")
        cache = self.cache
        if cache is None or cache.semantic is None:
            raise HTTPError(404, "no semantic cache is configured: nothing takes feedback")
        own = scope_prefix(
            cache.key_prefix, caller.tenant, namespace if namespace is not None else cache.namespace
        )
        report = None
        if caller.is_admin or key.startswith(own):
            try:
                report = await cache.feedback(key, correct=correct)
            except StoreError as exc:
                raise HTTPError(503, str(exc)) from None
        if report is None:
            raise HTTPError(404, "no semantic entry with that key", param="key", code="not_found")
        await send_json(
            send, 200, {"key": key, "strikes": report.strikes, "forgotten": report.forgotten}
        )


_ADMIN_CALLER = Caller(tenant=None, models=(), is_admin=True)


def _deployment_options(deployment: ModelDeployment) -> dict[str, Any]:
    params = deployment.litellm_params
    options: dict[str, Any] = {"model": deployment.model, "api_base": params.get("api_base")}
    if params.get("api_key") is not None:
        options["api_key"] = params["api_key"]
    if params.get("timeout") is not None:
        options["timeout"] = float(params["timeout"])  # type: ignore[arg-type]
    if params.get("extra_headers"):
        options["extra_headers"] = params["extra_headers"]
    if params.get("cache_control_injection_points"):
        options["injection_points"] = params["cache_control_injection_points"]
    # the deployment's Bedrock and Vertex AI settings: the client's provider options
    provider = {
        name: value
        for name, value in params.items()
        if name in _PROVIDER_OPTIONS and value is not None
    }
    if provider:
        options["provider_options"] = provider
    return options


def _tenant_key_builder(name: str, hook: Callable[..., Any]) -> Callable[[Request], str]:
    """The proxy's ``key_builder(request, tenant)`` hook as the cache's builder."""

    def build(request: Request) -> str:
        try:
            digest = hook(request, request.tenant)
        except Exception as exc:
            raise HookError(f"hook {name} failed: {exc!r}") from exc
        if not isinstance(digest, str):
            raise HookError(f"hook {name} returned {type(digest).__name__}, not a digest string")
        return digest

    build.__qualname__ = name
    return build


# Where a content part names a file the provider fetches itself (OpenAI's image_url.url,
# file.file_data / file_id; Converse's s3Location.uri; Gemini's fileData.fileUri).
_URL_FIELDS = frozenset({"url", "file_data", "file_id", "uri", "fileUri"})
_STORAGE_SCHEMES = ("s3://", "gs://")


def _refuse_storage_urls(messages: object) -> None:
    """A 400 for an ``s3://`` or ``gs://`` URL in the messages' content parts: Bedrock and
    Vertex AI read such an object with the credentials the request is signed with, the
    deployment's, so a caller could read whatever the proxy's cloud identity may (a
    deployment allows them with ``allow_storage_urls: true``). A message whose content is
    a string (most) costs one look."""
    if not isinstance(messages, list):
        return
    stack: list[Any] = [
        content
        for message in messages
        if isinstance(message, dict) and isinstance(content := message.get("content"), list)
    ]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for name, inner in item.items():
                if (
                    name in _URL_FIELDS
                    and isinstance(inner, str)
                    and inner[:5].lower().startswith(_STORAGE_SCHEMES)
                ):
                    raise HTTPError(
                        400,
                        f"{inner[:5]} URLs are read with the proxy's cloud credentials; this "
                        "model does not allow them (its deployment sets allow_storage_urls)",
                        param="messages",
                    )
                if isinstance(inner, (dict, list)):
                    stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)


def _model_object(name: str) -> dict[str, Any]:
    """A model as OpenAI's ``/models`` lists it."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "deja"}


def _caller_message(exc: ProviderError) -> str:
    """What a caller is told of an upstream failure: the upstream's address and the
    transport's detail (host, port) stay in the proxy's log."""
    text = str(exc)
    if not exc.url:
        return text
    logger.warning("upstream failure: %s", text)
    detail = f": {exc.__cause__}" if exc.__cause__ is not None else ""
    if detail and text.endswith(detail):
        text = text[: -len(detail)]
    return text.replace(exc.url, "the upstream")


async def _disconnected(receive: Receive) -> None:
    """Return when the client has gone (the request body is read by then)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


def _http_error(exc: Exception) -> HTTPError:
    """The HTTP answer for an exception on the request path."""
    if isinstance(exc, HookError) or (
        isinstance(exc, KeyBuilderError) and isinstance(exc.__cause__, HookError)
    ):
        return HTTPError(500, str(exc), code="hook_failed")
    if isinstance(exc, KeyBuilderError):
        return HTTPError(500, str(exc), code="key_builder_failed")
    if isinstance(exc, (InvalidRequestError, ControlError)):
        return HTTPError(400, str(exc))
    if isinstance(exc, UpstreamTimeoutError):
        return HTTPError(504, _caller_message(exc), code="upstream_timeout")
    if isinstance(exc, UpstreamConnectionError):
        return HTTPError(502, _caller_message(exc), code="upstream_unreachable")
    if isinstance(exc, ProviderError) and exc.status_code in (401, 403):
        # the upstream refused the deployment's credentials: the proxy's failure, not the
        # caller's key (an SDK would tell the caller to fix theirs); its detail (a masked
        # provider key) stays in the log
        logger.error("upstream refused the deployment's credentials: %s", exc)
        return HTTPError(
            502,
            f"the upstream refused the proxy's credentials ({exc.status_code})",
            code="upstream_auth_failed",
        )
    if isinstance(exc, ProviderError):
        # an upstream that answered 2xx with something unusable is a bad gateway, not a 200
        status = exc.status_code if exc.status_code and exc.status_code >= 400 else 502
        body = (
            orjson.dumps(exc.body) if isinstance(exc.body, dict) and "error" in exc.body else None
        )
        headers: list[tuple[bytes, bytes]] = []
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers.append((b"retry-after", str(int(retry_after)).encode()))
        return HTTPError(status, _caller_message(exc), body=body, headers=headers)
    logger.exception("unexpected error on the request path")
    return HTTPError(500, f"internal error: {type(exc).__name__}")
