"""Embedding batches: one store round trip, one upstream call for identical batches in
flight, clear errors, and the breaker's bypass (cached per item; see test_client too)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import deja
from deja.stores.memory import MemoryStore
from deja.testing import FakeOpenAIServer

EMBED = "/v1/embeddings"
MODEL = "text-embedding-3-small"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


class CountingStore(MemoryStore):
    """A MemoryStore that counts its single and batched reads and writes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def get(self, key: str) -> bytes | None:
        self._count("get")
        return super().get(key)

    def get_many(self, keys: Any) -> list[bytes | None]:
        self._count("get_many")
        return [super(CountingStore, self).get(k) for k in keys]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._count("set")
        super().set(key, value, ttl)

    def set_many(self, items: Any, ttl: float | None) -> None:
        self._count("set_many")
        for key, value in items.items():
            super().set(key, value, ttl)


def test_a_batch_is_one_store_round_trip_each_way(server: FakeOpenAIServer) -> None:
    store = CountingStore()
    client = deja.Client(cache=deja.Cache(store=store), api_base=server.base_url, api_key="k")
    items = [f"chunk {i}" for i in range(300)]
    client.embedding(model=MODEL, input=items)
    assert store.calls == {"get_many": 1, "set_many": 1}
    again = client.embedding(model=MODEL, input=items)
    assert again.cache.status == "hit" and store.calls == {"get_many": 2, "set_many": 1}
    assert server.count(EMBED) == 1


async def test_identical_batches_in_flight_make_one_upstream_call(
    server: FakeOpenAIServer,
) -> None:
    server.delay_next(0.3)
    client = deja.AsyncClient(cache=deja.AsyncCache(), api_base=server.base_url, api_key="k")
    items = [f"chunk {i}" for i in range(50)]
    answers = await asyncio.gather(*(client.aembedding(model=MODEL, input=items) for _ in range(4)))
    assert server.count(EMBED) == 1
    assert sorted(a.cache.status for a in answers) == ["hit", "hit", "hit", "miss"]
    paid = next(a for a in answers if a.cache.status == "miss")
    assert all(a.data == paid.data for a in answers)
    shared = [a for a in answers if a.cache.status == "hit"]
    assert all(a.cache.saved_usd == pytest.approx(paid.cache.cost_usd) for a in shared)
    await client.aclose()


async def test_a_caller_joining_a_batch_in_flight_keeps_its_own_timeout(
    server: FakeOpenAIServer,
) -> None:
    # it waited for the leader's call, however long that took
    server.delay_next(1.5)
    client = deja.AsyncClient(
        cache=deja.AsyncCache(), api_base=server.base_url, api_key="k", max_retries=0
    )
    leader = asyncio.ensure_future(client.aembedding(model=MODEL, input=["a", "b"], timeout=10))
    await asyncio.sleep(0.2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(deja.UpstreamTimeoutError):
        await client.aembedding(model=MODEL, input=["a", "b"], timeout=0.3)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert (await leader).cache.status == "miss" and server.count(EMBED) == 1
    await client.aclose()


async def test_a_leaders_timeout_is_not_raised_to_a_caller_that_allowed_more(
    server: FakeOpenAIServer,
) -> None:
    server.delay_next(0.6)
    client = deja.AsyncClient(
        cache=deja.AsyncCache(), api_base=server.base_url, api_key="k", max_retries=0
    )
    leader = asyncio.ensure_future(client.aembedding(model=MODEL, input=["a", "b"], timeout=0.3))
    await asyncio.sleep(0.1)
    follower = await client.aembedding(model=MODEL, input=["a", "b"], timeout=10)
    with pytest.raises(deja.UpstreamTimeoutError):
        await leader
    assert follower.cache.status == "miss" and server.count(EMBED) == 2  # it asked itself
    await client.aclose()


@pytest.mark.parametrize("bad", [[[[1, 2]]], [[{"a": 1}]], [[1, [2]]], [[]]])
def test_inputs_nested_too_deep_are_invalid_requests(server: FakeOpenAIServer, bad: Any) -> None:
    client = deja.Client(cache=deja.Cache(), api_base=server.base_url, api_key="k")
    with pytest.raises(deja.InvalidRequestError, match="token arrays"):
        client.embedding(model=MODEL, input=bad)
    assert server.count(EMBED) == 0


def test_strings_and_token_arrays_mixed_are_refused_whatever_is_cached(
    server: FakeOpenAIServer,
) -> None:
    # OpenAI takes one shape; with "hello" cached, the mix went up as [[7, 8]] alone: a 200
    client = deja.Client(cache=deja.Cache(), api_base=server.base_url, api_key="k")
    client.embedding(model=MODEL, input="hello")
    for mixed in (["hello", [7, 8]], [[7, 8], "hello"]):
        with pytest.raises(deja.InvalidRequestError, match="a list of token arrays"):
            client.embedding(model=MODEL, input=mixed)
    assert server.count(EMBED) == 1


def test_with_the_breaker_open_a_batch_bypasses_the_cache(server: FakeOpenAIServer) -> None:
    class Down(MemoryStore):
        def get_many(self, keys: Any) -> list[bytes | None]:
            raise ConnectionError("store down")

        def get(self, key: str) -> bytes | None:
            raise ConnectionError("store down")

    cache = deja.Cache(store=Down(), breaker_threshold=1)
    client = deja.Client(cache=cache, api_base=server.base_url, api_key="k")
    statuses = [client.embedding(model=MODEL, input=["a", "b"]).cache.status for _ in range(2)]
    assert statuses == ["miss", "bypass"]  # the failure opens the breaker; then skipped


def test_a_batch_without_the_cache_or_that_failed_is_counted(server: FakeOpenAIServer) -> None:
    cache = deja.Cache()
    client = deja.Client(cache=cache, api_base=server.base_url, api_key="k", max_retries=0)
    client.embedding(model=MODEL, input=["a"])  # a miss, stored
    bypassed = client.embedding(model=MODEL, input=["a", "b"], cache={"no-cache": True})
    assert bypassed.cache.status == "bypass"
    stats = cache.stats()
    assert (stats.misses, stats.bypasses, stats.hits) == (1, 2, 0)  # each item counts
    server.fail_next(503)
    with pytest.raises(deja.ProviderError):
        client.embedding(model=MODEL, input=["a", "c"])  # "a" was found, "c" failed
    stats = cache.stats()
    # none of it was served: misses, nothing saved (an outage lowers the hit ratio)
    assert (stats.misses, stats.bypasses, stats.hits, stats.saved_usd) == (3, 2, 0, 0.0)


async def test_a_shared_batch_counts_as_hits_with_their_saving(server: FakeOpenAIServer) -> None:
    server.delay_next(0.3)
    cache = deja.AsyncCache()
    client = deja.AsyncClient(cache=cache, api_base=server.base_url, api_key="k")
    items = ["alpha", "beta", "gamma"]
    first, second = await asyncio.gather(
        client.aembedding(model=MODEL, input=items), client.aembedding(model=MODEL, input=items)
    )
    stats = cache.stats()
    assert (stats.misses, stats.hits) == (3, 3)  # the follower's items were served
    follower = first if first.cache.status == "hit" else second
    assert follower.cache.saved_usd > 0
    assert stats.saved_usd == pytest.approx(follower.cache.saved_usd)
    await client.aclose()


def test_a_tagged_batch_is_one_tag_write_per_tag(server: FakeOpenAIServer) -> None:
    class TagCounting(MemoryStore):
        tag_writes = 0

        def tag(self, tag: str, keys: Any, ttl: float | None) -> None:
            TagCounting.tag_writes += 1
            super().tag(tag, keys, ttl)

    cache = deja.Cache(store=TagCounting())
    client = deja.Client(cache=cache, api_base=server.base_url, api_key="k")
    client.embedding(model=MODEL, input=[f"c{i}" for i in range(200)], cache={"tags": ["doc:1"]})
    assert TagCounting.tag_writes == 2  # the namespace's record and the tenant's
    assert cache.delete_tag("doc:1") == 200


def test_a_batch_locks_under_its_items_key_prefix_and_scope() -> None:
    """A Redis user limited to the cache's prefix (``~deja:*``) may take the lock."""
    from deja._embedding_items import batch_lock_name, item_requests

    cache = deja.Cache(key_prefix="team-a:")
    keys = [
        cache.key(r)
        for r in item_requests(model=MODEL, items=["x", "y"], params={}, api_base=None, tenant="t1")
    ]
    name = batch_lock_name("|".join(keys))
    scope = keys[0].rpartition(":")[0]
    assert name.startswith("team-a:") and name.startswith(scope + ":batch-")
    assert batch_lock_name("|".join(reversed(keys))) != name  # another flight


async def test_a_large_batch_is_encoded_and_decoded_off_the_event_loop(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,048 embeddings took ~0.8 s of compressing (and ~0.7 s of reading back) on the
    event loop, which no other request could use meanwhile: a large batch is done in a
    thread; a small one where it is (a thread costs more than it saves)."""
    import threading

    from deja._async.cache import AsyncCache

    loop_thread = threading.get_ident()
    threads: dict[str, set[bool]] = {"encode": set(), "decode": set()}
    encoded, examined = AsyncCache._encoded, AsyncCache._examine

    def encoding(self: Any, *args: Any, **kwargs: Any) -> Any:
        threads["encode"].add(threading.get_ident() == loop_thread)
        return encoded(self, *args, **kwargs)

    def examining(self: Any, *args: Any, **kwargs: Any) -> Any:
        threads["decode"].add(threading.get_ident() == loop_thread)
        return examined(self, *args, **kwargs)

    monkeypatch.setattr(AsyncCache, "_encoded", encoding)
    monkeypatch.setattr(AsyncCache, "_examine", examining)
    client = deja.AsyncClient(cache=deja.AsyncCache(), api_base=server.base_url, api_key="k")
    large = [f"item {i}" for i in range(64)]
    await client.aembedding(model=MODEL, input=large)
    await client.aembedding(model=MODEL, input=large)
    assert threads == {"encode": {False}, "decode": {False}}  # never on the loop's thread
    for found in threads.values():
        found.clear()
    await client.aembedding(model=MODEL, input=["one", "two"])
    assert threads == {"encode": {True}, "decode": {True}}


async def test_a_repeated_large_batch_is_decoded_once(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large batch is read in a thread, which did not fill the decoded entries' memo: a
    repeated 256-input batch decoded every vector again, each time (63 ms against 29 ms)."""
    import deja._async.cache as async_cache

    decoded = 0
    real = async_cache.decode

    def counting(data: bytes) -> Any:
        nonlocal decoded
        decoded += 1
        return real(data)

    monkeypatch.setattr(async_cache, "decode", counting)
    client = deja.AsyncClient(cache=deja.AsyncCache(), api_base=server.base_url, api_key="k")
    large = [f"item {i}" for i in range(64)]
    await client.aembedding(model=MODEL, input=large)
    await client.aembedding(model=MODEL, input=large)
    first = decoded
    assert first == 64  # the first hits decode each entry once
    answer = await client.aembedding(model=MODEL, input=large)
    assert decoded == first and answer["data"][63]["index"] == 63  # from the memo now


def test_a_batch_served_whole_is_as_old_as_its_oldest_item(server: FakeOpenAIServer) -> None:
    client = deja.Client(
        cache=deja.Cache(store=MemoryStore()), api_base=server.base_url, api_key="k"
    )
    client.embedding(model=MODEL, input="older")
    time.sleep(1.1)
    client.embedding(model=MODEL, input="newer")
    assert client.embedding(model=MODEL, input="newer").cache.age < 1.0
    both = client.embedding(model=MODEL, input=["newer", "older"]).cache
    assert both.status == "hit"
    assert both.age is not None and both.age >= 1.0
    # a batch with an item fetched upstream is new: no age
    mixed = client.embedding(model=MODEL, input=["older", "unseen"]).cache
    assert mixed.status == "miss" and mixed.age is None


# -- the upstream's limit on the inputs of one call ----------------------------------------


def test_a_batch_past_openai_s_limit_goes_in_calls_of_at_most_2048(
    server: FakeOpenAIServer,
) -> None:
    """Client.embedding sent any number of inputs in one call: past OpenAI's 2,048 the
    upstream refused it (a 400), where the proxy had refused it itself. Its misses go in
    calls of at most 2,048 now, the answer in the order asked."""
    client = deja.Client(cache=deja.Cache(), api_base=server.base_url, api_key="k")
    items = [f"item {i}" for i in range(2049)]
    first = client.embedding(model=MODEL, input=items)
    assert [len(r.body["input"]) for r in server.requests] == [2048, 1]
    assert first.cache.status == "miss" and len(first.data) == 2049
    assert [d.index for d in first.data] == list(range(2049))
    assert first.usage.prompt_tokens > 0  # (both calls' tokens)
    again = client.embedding(model=MODEL, input=items)
    assert again.cache.status == "hit" and server.count(EMBED) == 2
    assert [d.embedding for d in again.data] == [d.embedding for d in first.data]
    alone = deja.Client(api_base=server.base_url, api_key="k")  # (no cache)
    assert alone.embedding(model=MODEL, input=items[-1]).data[0].embedding == (
        first.data[-1].embedding
    )


def test_a_provider_with_a_lower_limit_gets_calls_of_its_own_size(
    server: FakeOpenAIServer,
) -> None:
    """Mistral takes 256 inputs a call ("Too many inputs in request, split into more
    batches"): a batch of 300 went in one call and failed."""
    server.max_embedding_inputs = 256
    client = deja.Client(cache=deja.Cache(), api_base=server.base_url, api_key="k")
    answer = client.embedding(model="mistral/mistral-embed", input=[f"x{i}" for i in range(300)])
    assert [len(r.body["input"]) for r in server.requests] == [256, 44]
    assert len(answer.data) == 300


def test_a_batch_that_fails_part_way_keeps_what_its_calls_before_paid_for(
    server: FakeOpenAIServer,
) -> None:
    """Each call's items are stored as it answers: a later call's failure (here the
    upstream refusing an empty input, as OpenAI does) loses none of the earlier ones."""
    server.max_embedding_inputs = 256
    client = deja.Client(cache=deja.Cache(), api_base=server.base_url, api_key="k")
    items = [f"x{i}" for i in range(256)]
    with pytest.raises(deja.BadRequestError):
        client.embedding(model="mistral/mistral-embed", input=[*items, ""])
    assert [len(r.body["input"]) for r in server.requests] == [256, 1]
    kept = client.embedding(model="mistral/mistral-embed", input=items)
    assert kept.cache.status == "hit" and server.count(EMBED) == 2


def test_the_limits_are_one_table() -> None:
    from deja._embedding_items import EMBEDDING_INPUT_LIMITS, embedding_input_limit
    from deja.server import app

    assert app._MAX_EMBEDDING_INPUTS == EMBEDDING_INPUT_LIMITS["openai"] == 2048
    assert embedding_input_limit("mistral") == 256
    assert embedding_input_limit("hosted_vllm") == 2048  # (a server of no known limit)
