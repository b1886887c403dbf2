"""Embeddings cached per input item: a batch sends only the items not in the cache.

The source of truth is src/deja/_async/embeddings.py; the sync twin in src/deja/_sync/ is
generated from it by scripts/unasync.py.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deja._async.cache import AsyncCache
from deja.controls import CacheControl, in_mode, parse_controls
from deja.errors import InvalidRequestError, ProviderError
from deja.prices import packaged_prices
from deja.request import Request
from deja.result import CacheInfo, CacheStatus

__all__ = ["EmbeddingBatch", "acached_embeddings", "embedding_items", "float32_base64"]

FetchMissing = Callable[[list[Any]], Awaitable[Mapping[str, Any]]]


def _identity(item: Any) -> Any:
    """A hashable stand-in for one input item (a string, or a list of token ids)."""
    return tuple(item) if isinstance(item, list) else item


@dataclass(slots=True)
class EmbeddingBatch:
    """The assembled answer: one vector per input item, in order."""

    vectors: list[list[float]]
    model: str
    usage: dict[str, int]
    info: CacheInfo
    # how many of the items came from the cache (``info.status`` is "hit" only when all
    # did, "miss" when any was fetched)
    cached: int = 0

    def response(self, *, encoding_format: str | None = None) -> dict[str, Any]:
        """An OpenAI embeddings body; ``base64`` encodes the vectors as float32 bytes."""
        return {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": float32_base64(v) if encoding_format == "base64" else v,
                }
                for i, v in enumerate(self.vectors)
            ],
            "model": self.model,
            "usage": dict(self.usage),
        }


def float32_base64(vector: Sequence[float]) -> str:
    """A vector as OpenAI's ``encoding_format: base64``: little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_items(value: object) -> list[Any]:
    """The input items of an embeddings call (a string, strings, or token arrays)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)) and value:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [list(value)]  # one tokenized input
        if all(isinstance(v, (str, Sequence)) for v in value):
            return list(value)
    raise InvalidRequestError("input must be a string, a list of strings, or token arrays")


def _usage_totals(usage: object) -> dict[str, int]:
    if isinstance(usage, Mapping):
        prompt = usage.get("prompt_tokens")
        total = usage.get("total_tokens", prompt)
        if isinstance(prompt, int) and isinstance(total, int):
            return {"prompt_tokens": prompt, "total_tokens": total}
    return {"prompt_tokens": 0, "total_tokens": 0}


def _token_shares(items: Sequence[Any], total: int) -> list[int]:
    """Split a batch's prompt tokens over its items by length (the API reports one total)."""
    sizes = [len(item) if isinstance(item, (str, list)) else 1 for item in items]
    weight = sum(sizes) or 1
    shares = [total * size // weight for size in sizes]
    shares[-1] += total - sum(shares)
    return shares


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
) -> EmbeddingBatch:
    """Look each item up, fetch the missing ones in one upstream call, store them.

    ``fetch_missing(items)`` must return an OpenAI embeddings body with float vectors.
    ``params`` are the other request fields that change the vectors (``dimensions``...);
    ``tenant`` scopes the keys (the proxy's callers never share entries across tenants).
    Each stored item gets its share of the batch's tokens, by length, so a later hit on it
    reports a fair saving.
    """
    ctl = parse_controls(control) if cache is None else in_mode(parse_controls(control), cache.mode)
    requests = [
        Request.from_body(
            {**params, "model": model, "input": item},
            kind="embedding",
            api_base=api_base,
            tenant=tenant,
        )
        for item in items
    ]
    vectors: list[list[float] | None] = [None] * len(items)
    saved = 0.0
    if cache is not None and not ctl.no_cache:
        for i, request in enumerate(requests):
            found = await cache.get(request, control=ctl)
            if found.response is not None:
                vectors[i] = found.response["data"][0]["embedding"]
                saved += found.info.saved_usd
    missing_all = [i for i, v in enumerate(vectors) if v is None]
    # an item given twice is fetched once (its later places copy the first's vector)
    first_of: dict[Any, int] = {}
    for i in missing_all:
        first_of.setdefault(_identity(items[i]), i)
    missing = list(first_of.values())
    usage = {"prompt_tokens": 0, "total_tokens": 0}
    cost = 0.0
    upstream_model = requests[0].model if requests else model
    if missing:
        answer = await fetch_missing([items[i] for i in missing])
        upstream_model = str(answer.get("model") or upstream_model)
        usage = _usage_totals(answer.get("usage"))
        data = sorted(answer.get("data") or [], key=lambda d: d.get("index", 0))
        if len(data) != len(missing):
            raise ProviderError(
                f"upstream returned {len(data)} embeddings for {len(missing)} inputs"
            )
        shares = _token_shares([items[i] for i in missing], usage["prompt_tokens"])
        for i, item_data, tokens in zip(missing, data, shares, strict=True):
            vector = item_data.get("embedding")
            if not isinstance(vector, list):
                raise ProviderError(
                    "upstream embeddings must be float lists (encoding_format=float)"
                )
            vectors[i] = vector
            item_response = {
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                "model": upstream_model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
            if cache is not None:
                cost += cache.cost(requests[i], item_response)
                await cache.put(requests[i], item_response, control=ctl)
            else:
                cost += packaged_prices().response_cost(requests[i].upstream, item_response)
    for i in missing_all:
        vectors[i] = vectors[first_of[_identity(items[i])]]
    status: CacheStatus = "miss" if missing else "hit"
    if cache is None or ctl.no_cache:
        status = "bypass"
    info = CacheInfo(status, "", cost_usd=cost, saved_usd=saved)
    done = [v for v in vectors if v is not None]
    cached = 0 if status == "bypass" else len(vectors) - len(missing_all)
    return EmbeddingBatch(vectors=done, model=upstream_model, usage=usage, info=info, cached=cached)
