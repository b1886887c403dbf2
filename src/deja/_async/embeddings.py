"""Embeddings cached per input item: a batch sends only the items not in the cache.

The source of truth is src/deja/_async/embeddings.py; the sync twin in src/deja/_sync/ is
generated from it by scripts/unasync.py.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from deja._async.cache import AsyncCache
from deja._embedding_items import (
    DEFAULT_EMBEDDING_INPUTS,
    EmbeddingBatch,
    Fetched,
    embedding_items,
    float32_base64,
    identity,
    item_requests,
    token_shares,
    usage_totals,
)
from deja.controls import CacheControl, in_mode, parse_controls
from deja.errors import ProviderError
from deja.prices import PriceTable, packaged_prices
from deja.request import Request
from deja.result import CacheInfo, CacheResult, CacheStatus

__all__ = [
    "EmbeddingBatch",
    "acached_embeddings",
    "embedding_items",
    "embeddings_of_tenant",
    "float32_base64",
]

logger = logging.getLogger(__name__)

FetchMissing = Callable[[list[Any]], Awaitable[Mapping[str, Any]]]
OnEmbeddings = Callable[[dict[str, Any], list[Any]], Awaitable[CacheControl | None]]
"""The post-cache hooks of a batch: ``on_response(answer, inputs)`` runs on the fresh
upstream answer before its items are stored, ``inputs`` the inputs of its items, in their
order (the batch's inputs that were not served from the cache, each once), and may return
the options to store them with."""

# The tenant whose entries the items a call caches are, when the call names none (a
# Client's calls name none): set by embeddings_of_tenant around one call, in one thread or
# task only (a context variable; a task started inside takes it along).
_TENANT: ContextVar[str | None] = ContextVar("deja_embeddings_tenant", default=None)


@contextlib.contextmanager
def embeddings_of_tenant(tenant: str | None) -> Iterator[None]:
    """Within this block, the embeddings this thread or task looks up and caches through a
    client (whose calls name no tenant) are ``tenant``'s entries: what the semantic tier's
    remote embedder (:class:`deja.semantic.OpenAIEmbedder`) embeds for a tenant's prompt
    is that tenant's data, cleared with its other entries, found by no other tenant."""
    token = _TENANT.set(tenant)
    try:
        yield
    finally:
        _TENANT.reset(token)


# one upstream call's: its items' vectors..., the answer as it came, and each item's request
# and answer to store
_Answered = tuple[Fetched, Mapping[str, Any], list[tuple[Request, dict[str, Any]]]]


async def _fetch(
    fetch_one: Callable[[list[Any], list[Request]], Awaitable[_Answered]],
    items: list[Any],
    requests: list[Request],
    max_inputs: int,
    *,
    cache: AsyncCache | None,
    ctl: CacheControl,
    on_response: OnEmbeddings | None,
) -> Fetched:
    """Fetch ``items`` upstream with ``fetch_one`` (:func:`_fetch_one`'s call with the
    batch's settings) in calls of at most ``max_inputs`` items, one after the other.

    Each call's items are stored as it answers (a later call's failure loses none that
    were paid for), but the last call's: the post-cache hooks (``on_response``) see the
    request's answer once, all its calls' as one (a hook that counts, bills or logs saw one
    request as several), with ``items`` (the inputs of its items), and the options they
    ask for are the last call's items', and the earlier calls' again where they differ
    (deleted if the hooks asked not to store)."""
    parts: list[_Answered] = []
    for start in range(0, len(items), max_inputs):
        end = start + max_inputs
        part = await fetch_one(items[start:end], requests[start:end])
        if cache is not None and end < len(items):
            await cache.put_many(part[2], control=ctl)
        parts.append(part)
    if cache is not None:
        store_ctl = ctl
        if on_response is not None:
            hooks = on_response

            async def answered(answer: dict[str, Any]) -> CacheControl | None:
                return await hooks(answer, items)

            answer = _hooks_answer([answer for _, answer, _ in parts], parts[0][0].model)
            store_ctl = await cache.after_response(answered, answer, ctl)
        await cache.put_many(parts[-1][2], control=store_ctl)
        if store_ctl != ctl and len(parts) > 1:
            await _store_again(
                [pair for _, _, stored in parts[:-1] for pair in stored], cache, ctl, store_ctl
            )
    if len(parts) == 1:  # (the common case: one call, its answer as it came)
        return parts[0][0]
    whole = Fetched([], parts[0][0].model, {"prompt_tokens": 0, "total_tokens": 0}, 0.0, [], [])
    for fetched, _, _ in parts:
        whole.vectors += fetched.vectors
        for name in ("prompt_tokens", "total_tokens"):
            whole.usage[name] += fetched.usage[name]
        whole.cost += fetched.cost
        whole.responses += fetched.responses
        whole.costs += fetched.costs
    return whole


def _hooks_answer(answers: list[Mapping[str, Any]], model: str) -> dict[str, Any]:
    """The answer the post-cache hooks see: the upstream's, or its calls' as one (their
    items in order, indexed from 0, their tokens summed), of ``model``; each vector a copy
    (a hook's change to an embeddings answer is neither served nor stored: one that
    scaled a vector in place changed what was served and stored)."""
    data: list[dict[str, Any]] = []
    for answer in answers:
        for item in sorted(answer.get("data") or [], key=lambda d: d.get("index", 0)):
            data.append({**item, "index": len(data), "embedding": list(item["embedding"])})
    whole = {**answers[0], "data": data, "model": model}
    if len(answers) > 1:
        totals = [usage_totals(answer.get("usage")) for answer in answers]
        whole["usage"] = {name: sum(t[name] for t in totals) for name in totals[0]}
    return whole


async def _store_again(
    stored: list[tuple[Request, dict[str, Any]]],
    cache: AsyncCache,
    ctl: CacheControl,
    store_ctl: CacheControl,
) -> None:
    """The items ``stored`` with ``ctl`` as their call answered, as the post-cache hooks
    ask once the whole request is answered: stored again with ``store_ctl`` (its tags,
    its TTL), or deleted if it says not to store them (fail-open: a store that fails
    leaves them as they are, with a warning)."""
    if not store_ctl.no_store:
        await cache.put_many(stored, control=store_ctl)
        return
    for done, (request, _) in enumerate(stored):
        try:
            await cache.delete(cache.key(request, ctl))
        # (any failure: a remote vector index's own errors too; the answer is paid for and
        # is served, whatever its cleanup meets)
        except Exception as exc:
            logger.warning(
                "the post-cache hooks asked not to store an embeddings answer, but %d of its"
                " items stored before it was whole could not be deleted: %s",
                len(stored) - done,
                exc,
            )
            return


async def _fetch_one(
    items: list[Any],
    requests: list[Request],
    *,
    cache: AsyncCache | None,
    fetch_missing: FetchMissing,
    model: str,
    prices: PriceTable | None,
) -> _Answered:
    """Fetch ``items`` upstream in one call: their vectors, the answer, and each item's
    request and answer to store; without a cache each item is priced by ``prices``
    (default: the packaged table)."""
    answer = await fetch_missing(items)
    upstream_model = str(answer.get("model") or model)
    usage = usage_totals(answer.get("usage"))
    data = sorted(answer.get("data") or [], key=lambda d: d.get("index", 0))
    if len(data) != len(items):
        raise ProviderError(f"upstream returned {len(data)} embeddings for {len(items)} inputs")
    vectors: list[list[float]] = []
    stored: list[tuple[Request, dict[str, Any]]] = []
    costs: list[float] = []
    shares = token_shares(items, usage["prompt_tokens"])
    for request, item_data, tokens in zip(requests, data, shares, strict=True):
        vector = item_data.get("embedding")
        if not isinstance(vector, list):
            raise ProviderError("upstream embeddings must be float lists (encoding_format=float)")
        vectors.append(vector)
        item_response = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": upstream_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        stored.append((request, item_response))
        if cache is not None:
            costs.append(cache.cost(request, item_response))
        else:
            table = prices if prices is not None else packaged_prices()
            costs.append(table.response_cost(request.upstream, item_response))
    fetched = Fetched(vectors, upstream_model, usage, sum(costs), [r for _, r in stored], costs)
    return fetched, answer, stored


async def _stored(cache: AsyncCache, ctl: CacheControl, wanted: list[Request]) -> Fetched | None:
    """The items of ``wanted`` as another process's call stored them, once all are there."""
    found = await cache.get_many(wanted, control=ctl, count=False)
    responses = [f.response for f in found]
    if any(r is None for r in responses):
        return None
    answers = [r for r in responses if r is not None]
    costs = [f.info.saved_usd for f in found]
    return Fetched(
        [a["data"][0]["embedding"] for a in answers],
        str(answers[0].get("model") or wanted[0].model),
        {"prompt_tokens": 0, "total_tokens": 0},
        sum(costs),
        answers,
        costs,
    )


def _count_unserved(
    cache: AsyncCache, ctl: CacheControl, requests: list[Request], looked_up: list[CacheResult]
) -> None:
    """Count a batch's items that were not served from the cache: bypasses when the caller
    asked for no cache (nothing was looked up), else what was looked up, all as misses (the
    batch failed: an item found in the store saved nothing)."""
    if ctl.no_cache:
        for request in requests:
            cache.count(CacheResult(None, CacheInfo("bypass", cache.key(request, ctl))))
        return
    for found in looked_up:
        status: CacheStatus = "bypass" if found.info.status == "bypass" else "miss"
        cache.count(CacheResult(None, CacheInfo(status, found.info.key)))
    looked_up.clear()


def _age(served: list[CacheResult]) -> float | None:
    """A batch served whole from the cache is as old as its oldest item (HTTP's ``Age``
    of an answer made of several); items shared from a call in flight are of age 0."""
    ages = [found.info.age for found in served if found.info.age is not None]
    return max(ages) if ages else None


async def acached_embeddings(
    *,
    cache: AsyncCache | None,
    model: str,
    items: list[Any],
    params: Mapping[str, Any],
    api_base: str | None,
    control: Mapping[str, Any] | CacheControl | None,
    fetch_missing: FetchMissing,
    tenant: str | None = None,
    on_response: OnEmbeddings | None = None,
    timeout: float | None = None,
    prices: PriceTable | None = None,
    max_inputs: int = DEFAULT_EMBEDDING_INPUTS,
) -> EmbeddingBatch:
    """Look each item up, fetch the missing ones upstream, store them.

    The missing items go in calls of at most ``max_inputs`` each (the upstream's limit:
    :func:`~deja._embedding_items.embedding_input_limit`), one after the other.

    ``fetch_missing(items)`` must return an OpenAI embeddings body with float vectors.
    ``params`` are the other request fields that change the vectors (``dimensions``...);
    ``tenant`` scopes the keys (the proxy's callers never share entries across tenants;
    none named: the tenant of an enclosing :func:`embeddings_of_tenant` block, if any).
    Each stored item gets its share of the batch's tokens, by length, so a later hit on it
    reports a fair saving. Identical batches in flight at once make one upstream call
    (``timeout``: how long a caller waits for another's call, as :meth:`AsyncCache.fetch`,
    so for each of the calls a batch takes);
    ``on_response`` (the proxy's post-cache hooks, :data:`OnEmbeddings`) sees the upstream
    answer, with the inputs of its items (not the batch's: those served from the cache are
    not in it, nor an input given twice twice), and may change how its items are stored.
    ``prices``: what the items cost without a cache (with one,
    the cache's prices).
    """
    if isinstance(max_inputs, bool) or not isinstance(max_inputs, int) or max_inputs < 1:
        raise ValueError(f"max_inputs must be an int >= 1, not {max_inputs!r:.40}")
    ctl = parse_controls(control) if cache is None else in_mode(parse_controls(control), cache.mode)
    if tenant is None:
        tenant = _TENANT.get()
    requests = item_requests(
        model=model, items=items, params=params, api_base=api_base, tenant=tenant
    )
    vectors: list[list[float] | None] = [None] * len(items)
    saved = 0.0
    bypassed = cache is None or ctl.no_cache
    looked_up: list[CacheResult] = []
    if cache is not None and not ctl.no_cache:
        # one store round trip for the batch (Redis MGET), not one per item; counted at
        # the end, when it is known whether a miss was shared with an identical batch
        looked_up = await cache.get_many(requests, control=ctl, count=False)
        for i, found in enumerate(looked_up):
            if found.response is not None:
                vectors[i] = found.response["data"][0]["embedding"]
                saved += found.info.saved_usd
            bypassed = bypassed or found.info.status == "bypass"  # the breaker is open
    missing_all = [i for i, v in enumerate(vectors) if v is None]
    # an item given twice is fetched once (its later places copy the first's vector)
    first_of: dict[Any, int] = {}
    for i in missing_all:
        first_of.setdefault(identity(items[i]), i)
    missing = list(first_of.values())
    usage = {"prompt_tokens": 0, "total_tokens": 0}
    cost = 0.0
    upstream_model = requests[0].model if requests else model
    shared = False
    if missing:

        async def fetch() -> Fetched:
            fetch_one = functools.partial(
                _fetch_one,
                cache=cache,
                fetch_missing=fetch_missing,
                model=upstream_model,
                prices=prices,
            )
            return await _fetch(
                fetch_one,
                [items[i] for i in missing],
                [requests[i] for i in missing],
                max_inputs,
                cache=cache,
                ctl=ctl,
                on_response=on_response,
            )

        if timeout is not None:  # (its calls are made one after the other)
            timeout *= -(-len(missing) // max_inputs)
        try:
            if cache is None or bypassed:
                fetched = await fetch()
            else:
                # identical batches in flight at once make one upstream call (by their
                # keys), in this process and in the others sharing the store
                wanted = [requests[i] for i in missing]

                async def stored() -> Fetched | None:
                    return await _stored(cache, ctl, wanted)

                flight = "|".join(cache.key(request, ctl) for request in wanted)
                # (a batch whose items are not to be stored takes no cross-process lock:
                # the others would wait for what it never stores)
                fetched, shared = await cache.coalesce(
                    flight, fetch, stored=None if ctl.no_store else stored, timeout=timeout
                )
        except BaseException:
            if cache is not None:  # counted all the same, none of it served
                _count_unserved(cache, ctl, requests, looked_up)
            raise
        upstream_model = fetched.model
        for i, vector in zip(missing, fetched.vectors, strict=True):
            vectors[i] = vector
        if shared:  # another caller paid: what it cost is this caller's saving
            saved += fetched.cost
            for i, answer, item_cost in zip(missing, fetched.responses, fetched.costs, strict=True):
                looked_up[i] = CacheResult(
                    answer, CacheInfo("hit", looked_up[i].info.key, None, 0.0, 0.0, item_cost)
                )
        else:
            usage, cost = fetched.usage, fetched.cost
    if cache is not None:
        if ctl.no_cache:
            _count_unserved(cache, ctl, requests, looked_up)
        for found in looked_up:
            cache.count(found)
    for i in missing_all:
        vectors[i] = vectors[first_of[identity(items[i])]]
    status: CacheStatus = "miss" if missing and not shared else "hit"
    if bypassed:
        status = "bypass"
    key = looked_up[0].info.key if len(looked_up) == 1 else ""
    age = _age(looked_up) if status == "hit" else None
    info = CacheInfo(status, key, age=age, cost_usd=cost, saved_usd=saved)
    done = [v for v in vectors if v is not None]
    cached = 0 if status == "bypass" else len(vectors) - len(missing_all)
    if shared:
        cached = len(vectors)
    return EmbeddingBatch(vectors=done, model=upstream_model, usage=usage, info=info, cached=cached)
