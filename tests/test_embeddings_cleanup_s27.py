"""An embeddings request answered in several calls whose post-cache hooks ask not to store
it: the items of the calls before the last, stored as each answered, are deleted. A
failure of that cleanup (a store's, a remote vector index's: not only ``StoreError``)
failed the request, paid for; it is a warning, and the answer is served."""

from __future__ import annotations

from typing import Any

import pytest

import deja
from deja._async.embeddings import acached_embeddings
from deja.controls import CacheControl
from tests.helpers import FaultyStore


class _Refusing(Exception):
    """Not a StoreError: what a remote index's client may raise."""


async def test_a_cleanup_that_fails_any_way_still_serves_the_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FaultyStore()
    cache = deja.AsyncCache(store=store)

    async def delete_fails(key: str) -> bool:
        raise _Refusing("the index is read-only")

    cache.delete = delete_fails  # type: ignore[method-assign]
    calls: list[list[Any]] = []

    async def fetch_missing(items: list[Any]) -> dict[str, Any]:
        calls.append(items)
        data = [
            {"object": "embedding", "index": i, "embedding": [0.1, float(i)]}
            for i, _ in enumerate(items)
        ]
        return {
            "object": "list",
            "data": data,
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": len(items), "total_tokens": len(items)},
        }

    async def no_store(answer: Any, inputs: Any) -> CacheControl:
        return CacheControl(no_store=True)

    with caplog.at_level("WARNING"):
        batch = await acached_embeddings(
            cache=cache,
            model="text-embedding-3-small",
            items=["a", "b", "c"],
            params={},
            api_base=None,
            control=None,
            fetch_missing=fetch_missing,
            on_response=no_store,
            max_inputs=2,
        )
    assert len(calls) == 2 and len(batch.vectors) == 3
    said = [r.getMessage() for r in caplog.records if "could not be deleted" in r.getMessage()]
    assert said and "2 of its items" in said[0]
