"""The Cache façade: hits, TTL, controls, namespaces, tags, admission and fail-open."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import deja
from deja.errors import ControlError, InvalidRequestError, StoreError
from deja.keys import make_key
from deja.stores.base import SyncStore
from deja.stores.memory import MemoryStore
from deja.testing import FakeClock
from tests.helpers import FaultyStore, chat_request, chat_response


class Upstream:
    """A counting stand-in for the provider call."""

    def __init__(self, response: dict[str, Any] | None = None) -> None:
        self.calls = 0
        self.response = response or chat_response()

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return self.response

    async def acall(self) -> dict[str, Any]:
        return self()


def test_miss_then_hit(clock: FakeClock) -> None:
    cache = deja.Cache(clock=clock)
    up = Upstream()
    first = cache.fetch(chat_request(), up)
    clock.advance(3)
    second = cache.fetch(chat_request(), up)
    assert up.calls == 1
    assert first.info.status == "miss" and not first.info.hit
    assert second.info.status == "hit" and second.info.hit
    assert second.response == first.response == up.response
    assert second.info.key == first.info.key == cache.key(chat_request())
    assert second.info.age == pytest.approx(3)
    # gpt-4o list price: 20 input tokens at $2.50/M + 5 output at $10/M
    assert first.info.cost_usd == pytest.approx(20 * 2.5e-6 + 5 * 10e-6)
    assert second.info.cost_usd == 0.0
    assert second.info.saved_usd == pytest.approx(first.info.cost_usd)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.saved_tokens) == (1, 1, 25)
    assert stats.hit_ratio == 0.5


async def test_async_miss_then_hit(clock: FakeClock) -> None:
    cache = deja.AsyncCache(clock=clock)
    up = Upstream()
    first = await cache.fetch(chat_request(), up.acall)
    second = await cache.fetch(chat_request(), up.acall)
    assert up.calls == 1
    assert (first.info.status, second.info.status) == ("miss", "hit")
    assert second.response == up.response


def test_sync_and_async_caches_share_a_store(clock: FakeClock) -> None:
    import asyncio

    store = MemoryStore(clock=clock)
    deja.Cache(store=store, clock=clock).put(chat_request(), chat_response())
    result = asyncio.run(deja.AsyncCache(store=store, clock=clock).get(chat_request()))
    assert result.info.status == "hit"


def test_get_and_put(clock: FakeClock) -> None:
    cache = deja.Cache(clock=clock)
    assert cache.get(chat_request()).response is None
    assert cache.get(chat_request()).info.status == "miss"
    assert cache.put(chat_request(), chat_response()) is True
    assert cache.get(chat_request()).response == chat_response()


def test_default_ttl_and_per_request_ttl(clock: FakeClock) -> None:
    cache = deja.Cache(ttl=60, clock=clock)
    cache.put(chat_request("a"), chat_response())
    cache.put(chat_request("b"), chat_response(), control={"ttl": 600})
    clock.advance(61)
    assert cache.get(chat_request("a")).info.status == "miss"
    assert cache.get(chat_request("b")).info.status == "hit"
    clock.advance(600)
    assert cache.get(chat_request("b")).info.status == "miss"


def test_s_maxage_limits_the_acceptable_age(clock: FakeClock) -> None:
    cache = deja.Cache(clock=clock)
    cache.put(chat_request(), chat_response())
    clock.advance(30)
    assert cache.get(chat_request(), control={"s-maxage": 60}).info.status == "hit"
    assert cache.get(chat_request(), control={"s-maxage": 10}).info.status == "miss"
    assert cache.get(chat_request(), control={"s-max-age": 10}).info.status == "miss"
    assert cache.get(chat_request()).info.status == "hit"  # the entry itself is still there


def test_no_cache_skips_lookup_but_stores() -> None:
    cache = deja.Cache()
    up = Upstream()
    cache.fetch(chat_request(), up)
    fresh = cache.fetch(chat_request(), up, control={"no-cache": True})
    assert up.calls == 2 and fresh.info.status == "bypass"
    assert cache.stats().bypasses == 1


def test_no_store_and_use_cache_false() -> None:
    cache = deja.Cache()
    up = Upstream()
    cache.fetch(chat_request(), up, control={"no-store": True})
    assert cache.get(chat_request()).response is None
    cache.fetch(chat_request(), up, control={"use-cache": False})
    assert cache.get(chat_request()).response is None
    assert up.calls == 2


def test_unknown_or_bad_controls_are_errors() -> None:
    cache = deja.Cache()
    with pytest.raises(ControlError, match="no_cach"):
        cache.get(chat_request(), control={"no_cach": True})
    with pytest.raises(ControlError, match="ttl"):
        cache.put(chat_request(), chat_response(), control={"ttl": "soon"})
    with pytest.raises(InvalidRequestError):
        cache.key_for(model="gpt-4o", messages="hello")  # type: ignore[arg-type]


def test_namespaces_are_isolated_and_cleared_alone() -> None:
    cache = deja.Cache()
    cache.put(chat_request(), chat_response("a"), control={"namespace": "a"})
    cache.put(chat_request(), chat_response("b"), control={"namespace": "b"})
    cache.put(chat_request(), chat_response("default"))
    got = lambda ns: cache.get(chat_request(), control={"namespace": ns} if ns else None).response  # noqa: E731
    assert got("a")["choices"][0]["message"]["content"] == "a"
    assert got("b")["choices"][0]["message"]["content"] == "b"
    assert cache.clear(namespace="a") == 1
    assert got("a") is None
    assert got("b") is not None and got(None) is not None


def test_tenants_never_share_entries() -> None:
    cache = deja.Cache()
    a = deja.Request.chat(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], tenant="team-a"
    )
    b = deja.Request.chat(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], tenant="team-b"
    )
    cache.put(a, chat_response())
    assert cache.get(b).info.status == "miss"
    assert cache.key(a) != cache.key(b)
    assert cache.clear(tenant="team-a") == 1


def test_clear_touches_only_this_prefix() -> None:
    store = MemoryStore()
    mine = deja.Cache(store=store, key_prefix="app:")
    other = deja.Cache(store=store, key_prefix="other:")
    mine.put(chat_request("1"), chat_response())
    mine.put(chat_request("2"), chat_response(), control={"namespace": "n"})
    other.put(chat_request("1"), chat_response())
    store.set("unrelated", b"x", None)
    assert mine.clear() == 2
    assert other.get(chat_request("1")).info.status == "hit"
    assert store.get("unrelated") == b"x"


def test_prefix_versioning_invalidates_without_deleting() -> None:
    store = MemoryStore()
    deja.Cache(store=store, key_prefix="deja:prompt-v1:").put(chat_request(), chat_response())
    v2 = deja.Cache(store=store, key_prefix="deja:prompt-v2:")
    assert v2.get(chat_request()).info.status == "miss"
    assert len(store) == 1


def test_targeted_deletion_with_key_for() -> None:
    cache = deja.Cache()
    cache.put(chat_request(), chat_response())
    key = cache.key_for(
        model="gpt-4o", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert key == cache.key(chat_request())
    assert cache.delete(key) is True
    assert cache.delete(key) is False
    assert cache.get(chat_request()).response is None
    cache.put(chat_request(), chat_response())
    assert cache.delete_request(chat_request()) is True


def test_delete_tag() -> None:
    cache = deja.Cache()
    cache.put(chat_request("1"), chat_response(), control={"tags": ["doc:1"]})
    cache.put(chat_request("2"), chat_response(), control={"tags": ["doc:1", "doc:2"]})
    cache.put(chat_request("3"), chat_response(), control={"tags": ["doc:2"]})
    cache.put(chat_request("4"), chat_response(), control={"tags": ["doc:1"], "namespace": "other"})
    assert cache.delete_tag("doc:1", namespace=None) == 2  # one namespace: no namespace
    assert cache.get(chat_request("1")).response is None
    assert cache.get(chat_request("2")).response is None
    assert cache.get(chat_request("3")).response is not None
    assert cache.get(chat_request("4"), control={"namespace": "other"}).response is not None
    assert cache.delete_tag("doc:1", namespace="other") == 1


def test_delete_tag_reads_alone_only_the_keys_gone_before_it() -> None:
    """A key the batch read finds empty is read again alone (a cluster node down reads as
    empty); the second pass read again each key its first had just deleted."""

    class Counting(MemoryStore):
        reads = 0

        def get(self, key: str) -> bytes | None:
            Counting.reads += 1
            return super().get(key)

        def get_many(self, keys: Any) -> list[bytes | None]:  # (a batch: not counted)
            return [MemoryStore.get(self, key) for key in keys]

    cache = deja.Cache(store=Counting())
    for n in range(20):
        cache.put(chat_request(str(n)), chat_response(), control={"tags": ["doc"]})
    assert cache.delete(cache.key(chat_request("0"))) is True  # gone before delete_tag
    Counting.reads = 0
    assert cache.delete_tag("doc") == 19
    assert Counting.reads == 2  # the one key gone before, read alone once in each pass


def test_delete_tag_reaches_every_namespace_unless_one_is_named() -> None:
    cache = deja.Cache(namespace="v1")
    for namespace in ("v1", "v2", None):
        control = (
            {"tags": ["doc:42"], "namespace": namespace} if namespace else {"tags": ["doc:42"]}
        )
        cache.put(chat_request("the doc"), chat_response(), control=control)
    cache.put(chat_request("other doc"), chat_response(), control={"tags": ["doc:7"]})
    assert cache.delete_tag("doc:42") == 2  # v1 (the cache's default) and v2
    for namespace in ("v1", "v2"):
        assert cache.get(chat_request("the doc"), control={"namespace": namespace}).entry is None
    assert cache.get(chat_request("other doc")).entry is not None
    assert cache.delete_tag("doc:42") == 0


class NoTagStore(SyncStore):
    name = "notags"

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.inner.set(key, value, ttl)

    def delete(self, key: str) -> bool:
        return self.inner.delete(key)

    def clear(self, prefix: str) -> int:
        return self.inner.clear(prefix)


def test_tags_on_a_store_without_tag_index_are_a_clear_error() -> None:
    cache = deja.Cache(store=NoTagStore())
    with pytest.raises(ControlError, match="tag"):
        cache.put(chat_request(), chat_response(), control={"tags": ["x"]})
    with pytest.raises(ControlError, match="tag"):
        cache.delete_tag("x")


@pytest.mark.parametrize(
    ("response", "stored"),
    [
        (chat_response(), True),
        (
            chat_response(
                None,
                finish_reason="tool_calls",
                tool_calls=[
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            ),
            True,
        ),
        (chat_response(finish_reason="content_filter"), False),
        (chat_response(finish_reason=None), False),
        (chat_response(None), False),
        (chat_response(""), False),
        (chat_response(finish_reason="length"), True),
        ({"error": {"message": "bad"}}, False),
        ({"choices": []}, False),
        # answers the server cut off itself (DeepSeek, OpenRouter, vLLM): partial, and
        # served again for the whole TTL before
        (chat_response("Par", finish_reason="insufficient_system_resource"), False),
        (chat_response("Par", finish_reason="error"), False),
        (chat_response("Par", finish_reason="abort"), False),
    ],
    ids=[
        "plain",
        "tool-calls-only",
        "content-filter",
        "unfinished",
        "no-content",
        "empty",
        "length",
        "error",
        "no-choices",
        "deepseek-interrupted",
        "openrouter-error",
        "vllm-abort",
    ],
)
def test_admission(response: dict[str, Any], stored: bool) -> None:
    cache = deja.Cache()
    assert cache.put(chat_request(), response) is stored
    assert (cache.get(chat_request()).response is not None) is stored


def test_truncated_answers_can_be_refused() -> None:
    cache = deja.Cache(admission=deja.AdmissionPolicy(store_truncated=False))
    assert cache.put(chat_request(), chat_response(finish_reason="length")) is False


def test_upstream_errors_are_never_cached() -> None:
    cache = deja.Cache()
    calls = 0

    def failing() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise deja.RateLimitError("slow down", retry_after=1.0)

    for _ in range(2):
        with pytest.raises(deja.RateLimitError):
            cache.fetch(chat_request(), failing)
    assert calls == 2
    up = Upstream()
    assert cache.fetch(chat_request(), up).info.status == "miss" and up.calls == 1


def test_max_entry_bytes_and_compression() -> None:
    store = MemoryStore()
    big = chat_response("word " * 5000)
    cache = deja.Cache(store=store, max_entry_bytes=2_000, compress_min_bytes=10**9)
    assert cache.put(chat_request(), big) is False
    cache = deja.Cache(store=store, compress_min_bytes=1024)
    assert cache.put(chat_request(), big) is True
    raw = store.get(cache.key(chat_request()))
    assert raw is not None and raw[:4] == b"DJ\x01\x01" and len(raw) < 2_000
    assert cache.get(chat_request()).response == big


def test_undecodable_entry_is_a_miss_and_is_deleted() -> None:
    store = MemoryStore()
    metrics = deja.PrometheusMetrics()
    cache = deja.Cache(store=store, metrics=metrics)
    key = cache.key(chat_request())
    store.set(key, b"not an entry", None)
    assert cache.get(chat_request()).info.status == "miss"
    assert store.get(key) is None
    assert b'deja_cache_errors_total{op="decode",store="memory"} 1.0' in metrics.render()


def test_store_failures_fail_open(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    store = FaultyStore(clock=clock)
    metrics = deja.PrometheusMetrics()
    cache = deja.Cache(store=store, metrics=metrics, clock=clock, breaker_threshold=100)
    store.fail_ops = {"get", "set"}
    up = Upstream()
    with caplog.at_level(logging.WARNING, logger="deja"):
        for _ in range(3):
            result = cache.fetch(chat_request(), up)
            assert result.info.status == "miss" and result.response == up.response
    assert up.calls == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one warning per breaker window, not one per call
    text = metrics.render().decode()
    # per fetch: a failed lookup and a failed write (the leader does not look again)
    assert 'deja_cache_errors_total{op="get",store="faulty"} 3.0' in text
    assert 'deja_cache_errors_total{op="set",store="faulty"} 3.0' in text
    assert cache.stats().store_errors == 6
    store.fail_ops = set()
    cache.fetch(chat_request(), up)
    assert cache.fetch(chat_request(), up).info.status == "hit"


def test_garbage_from_the_store_is_a_miss() -> None:
    store = FaultyStore()
    cache = deja.Cache(store=store)
    cache.put(chat_request(), chat_response())
    store.garbage = "a str, not bytes"
    assert cache.get(chat_request()).info.status == "miss"
    store.garbage = 12345
    assert cache.fetch(chat_request(), Upstream()).info.status == "miss"


def test_breaker_opens_then_probes(clock: FakeClock) -> None:
    import time as _time

    store = FaultyStore()
    metrics = deja.PrometheusMetrics()
    cache = deja.Cache(store=store, metrics=metrics, breaker_threshold=3, breaker_reset=0.05)
    store.fail_ops = {"get"}
    statuses = [cache.get(chat_request()).info.status for _ in range(5)]
    assert statuses == ["miss", "miss", "miss", "bypass", "bypass"]
    assert store.calls["get"] == 3  # an open breaker does not touch the store
    assert b'deja_cache_breaker_open{store="faulty"} 1.0' in metrics.render()
    store.fail_ops = set()
    _time.sleep(0.06)  # the breaker's timer is monotonic, by design not the wall clock
    assert cache.get(chat_request()).info.status == "miss"  # the probe reaches the store
    assert b'deja_cache_breaker_open{store="faulty"} 0.0' in metrics.render()
    cache.put(chat_request(), chat_response())
    assert cache.get(chat_request()).info.status == "hit"


def test_a_probe_that_never_reports_is_given_up() -> None:
    """A probe's caller cancelled (a client gone) never reports: the breaker stayed
    half-open for the life of the process, every later lookup a bypass, nothing stored."""
    from deja.breaker import CircuitBreaker

    now = [0.0]
    breaker = CircuitBreaker(threshold=1, reset_after=1.0, clock=lambda: now[0])
    assert breaker.failure() and not breaker.allow()
    now[0] = 1.0
    assert breaker.allow()  # the probe, whose outcome never comes
    assert not breaker.allow()  # one at a time
    now[0] = 1.9
    assert not breaker.allow()
    now[0] = 2.0
    assert breaker.allow()  # given up: the next call probes
    assert breaker.success() and breaker.allow()


async def test_a_cancelled_lookup_probe_does_not_leave_the_store_skipped() -> None:
    import asyncio

    class Store(MemoryStore):
        mode = "ok"

        async def aget(self, key: str) -> bytes | None:
            if self.mode == "fail":
                raise ConnectionError("down")
            if self.mode == "hang":
                await asyncio.sleep(3600)
            return await super().aget(key)

    store = Store()
    cache = deja.AsyncCache(store=store, breaker_threshold=2, breaker_reset=0.05)
    await cache.put(chat_request(), chat_response())
    store.mode = "fail"
    for _ in range(2):
        await cache.get(chat_request())
    await asyncio.sleep(0.06)
    store.mode = "hang"
    probe = asyncio.ensure_future(cache.get(chat_request()))
    await asyncio.sleep(0.01)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    store.mode = "ok"
    await asyncio.sleep(0.06)
    assert (await cache.get(chat_request())).info.status == "hit"


def test_a_store_that_refuses_writes_still_serves_its_entries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full Redis under noeviction (or a read-only user) answers reads and refuses
    writes: the failed writes used to open the breaker that skips lookups, and 29% of an
    audit's answerable hits went upstream. Writes have their own breaker now."""
    import time as _time

    store = FaultyStore()
    metrics = deja.PrometheusMetrics()
    cache = deja.Cache(store=store, metrics=metrics, breaker_threshold=2, breaker_reset=0.5)
    cache.put(chat_request("cached"), chat_response())
    store.fail_ops = {"set"}
    up = Upstream()
    with caplog.at_level(logging.WARNING, logger="deja"):
        for i in range(6):
            assert cache.fetch(chat_request(f"new {i}"), up).info.status == "miss"
            assert cache.fetch(chat_request("cached"), up).info.status == "hit"
    assert store.calls["set"] == 3  # two failures open the writes' breaker (one is stored)
    assert b'deja_cache_breaker_open{store="faulty"} 1.0' not in metrics.render()
    assert b'deja_cache_write_breaker_open{store="faulty"} 1.0' in metrics.render()
    assert any("refuses writes" in r.getMessage() for r in caplog.records)
    store.fail_ops = set()
    _time.sleep(0.55)
    with caplog.at_level(logging.WARNING, logger="deja"):
        assert cache.fetch(chat_request("new 0"), up).info.status == "miss"  # the write probe
    assert cache.get(chat_request("new 0")).info.status == "hit"
    assert b'deja_cache_write_breaker_open{store="faulty"} 0.0' in metrics.render()
    assert any("accepts writes again" in r.getMessage() for r in caplog.records)


def test_management_calls_raise_store_errors() -> None:
    store = FaultyStore()
    cache = deja.Cache(store=store)
    store.fail_ops = {"delete", "clear"}
    with pytest.raises(StoreError):
        cache.delete("k")
    with pytest.raises(StoreError):
        cache.clear()


def test_metrics_after_one_miss_and_two_hits() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    metrics = deja.PrometheusMetrics()
    store = MemoryStore()
    metrics.watch_store("memory", store)
    cache = deja.Cache(store=store, metrics=metrics)
    up = Upstream()
    for _ in range(3):
        cache.fetch(chat_request(), up)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    assert samples[("deja_cache_requests_total", (("result", "miss"), ("tier", "exact")))] == 1
    assert samples[("deja_cache_requests_total", (("result", "hit"), ("tier", "exact")))] == 2
    assert samples[("deja_cache_saved_tokens_total", ())] == 50
    assert samples[("deja_cache_saved_usd_total", ())] == pytest.approx(
        2 * (20 * 2.5e-6 + 5 * 10e-6)
    )
    # three fetches: the miss looks up twice (the leader re-checks), each hit once
    assert samples[("deja_cache_lookup_seconds_count", (("store", "memory"),))] == 4
    assert samples[("deja_cache_entries", (("store", "memory"),))] == 1


def test_prompts_and_answers_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    secret = "SENTINEL-7f3a9c"
    store = FaultyStore()
    cache = deja.Cache(store=store)
    request = chat_request(f"my password is {secret}")
    response = chat_response(f"noted: {secret}")
    with caplog.at_level(logging.DEBUG):
        cache.fetch(request, lambda: response)
        cache.fetch(request, lambda: response)
        cache.put(request, chat_response(secret, finish_reason="content_filter"))
        store.fail_ops = {"get", "set"}
        cache.fetch(request, lambda: response)
    assert any("CACHE HIT" in r.getMessage() for r in caplog.records)
    assert any("CACHE MISS" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in str(record.args)


def test_key_matches_the_pure_function() -> None:
    cache = deja.Cache(key_prefix="x:", namespace="ns")
    assert cache.key(chat_request()) == make_key(chat_request(), key_prefix="x:", namespace="ns")
    info = cache.explain(chat_request(), {"namespace": "other"})
    assert info["key"] == make_key(chat_request(), key_prefix="x:", namespace="other")


def test_custom_key_builder_in_the_cache() -> None:
    cache = deja.Cache(key_builder=lambda request: "same-for-all")
    cache.put(chat_request("a"), chat_response())
    assert cache.get(chat_request("b")).info.status == "hit"


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        deja.Cache(ttl=-1)
    with pytest.raises(ValueError):
        deja.Cache(max_entry_bytes=0)
    with pytest.raises(ControlError):
        deja.Cache(namespace="")


def test_decoded_entries_are_reused_but_never_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    import deja._sync.cache as sync_cache

    decoded = 0
    real_decode = sync_cache.decode

    def counting_decode(data: bytes) -> Any:
        nonlocal decoded
        decoded += 1
        return real_decode(data)

    monkeypatch.setattr(sync_cache, "decode", counting_decode)
    cache = deja.Cache()
    cache.put(chat_request(), chat_response("first"))
    for _ in range(5):
        assert cache.get(chat_request()).response == chat_response("first")
    assert decoded == 1  # the memory store hands back the same bytes: decoded once
    cache.put(chat_request(), chat_response("second"))  # overwrite: a new bytes object
    assert cache.get(chat_request()).response == chat_response("second")
    assert decoded == 2
    cache.delete(cache.key(chat_request()))
    assert cache.get(chat_request()).response is None
    # each hit hands out its own response object
    cache.put(chat_request(), chat_response())
    a, b = cache.get(chat_request()), cache.get(chat_request())
    assert a.response is not b.response and a.response == b.response


def test_decoded_entry_memo_is_bounded() -> None:
    from deja._sync import cache as sync_cache

    cache = deja.Cache(store=MemoryStore(max_entries=None))
    for i in range(sync_cache._MEMO_ENTRIES + 10):
        cache.put(chat_request(str(i)), chat_response())
        assert cache.get(chat_request(str(i))).info.status == "hit"
    assert cache._memo is not None and len(cache._memo) <= sync_cache._MEMO_ENTRIES
    assert cache._memo_bytes <= sync_cache._MEMO_BYTES


def test_no_memo_for_stores_that_return_copies(tmp_path: Any) -> None:
    cache = deja.Cache(store=deja.DiskStore(tmp_path))
    cache.put(chat_request(), chat_response())
    assert cache.get(chat_request()).info.status == "hit"
    assert cache._memo is None


def test_delete_tag_namespace_none_is_the_default_namespace() -> None:
    cache = deja.Cache(namespace="prod")
    cache.put(chat_request("tagged"), chat_response(), control={"tags": ["doc:1"]})
    assert cache.delete_tag("doc:1", namespace=None) == 1
    assert cache.get(chat_request("tagged")).entry is None


def test_delete_tag_spares_entries_stored_again_without_the_tag() -> None:
    cache = deja.Cache()
    cache.put(chat_request("doc"), chat_response(), control={"tags": ["doc:1"]})
    cache.put(chat_request("doc"), chat_response(), control={"tags": ["doc:2"]})  # retagged
    cache.put(
        chat_request("spaced"), chat_response(), control={"tags": ["doc:1"], "namespace": "v2"}
    )
    assert cache.delete_tag("doc:1", namespace="v2") == 1
    cache.put(chat_request("spaced"), chat_response(), control={"namespace": "v2"})  # untagged now
    assert cache.delete_tag("doc:1") == 0  # the records name both; neither carries the tag
    assert cache.get(chat_request("doc")).entry is not None
    assert cache.get(chat_request("spaced"), control={"namespace": "v2"}).entry is not None
    assert cache.delete_tag("doc:2") == 1


def test_a_miss_whose_upstream_call_failed_is_counted() -> None:
    """A lookup that found nothing is a miss whether or not the upstream then answered
    (an outage must not raise the hit ratio); so are the callers that shared the failed
    call; a no-cache call that failed is a bypass."""
    cache = deja.Cache()

    def failing() -> dict[str, Any]:
        raise deja.UpstreamConnectionError("down")

    for _ in range(2):
        with pytest.raises(deja.UpstreamConnectionError):
            cache.fetch(chat_request(), failing)
    with pytest.raises(deja.UpstreamConnectionError):
        cache.fetch(chat_request(), failing, control={"no-cache": True})
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.bypasses) == (0, 2, 1)


def test_an_audio_answer_is_kept_until_its_audio_expires() -> None:
    """``modalities: ["text", "audio"]`` answers have no text content, only
    ``message.audio`` (sound, transcript, and an id a later turn may cite until
    ``expires_at``): they were never stored; now they are, for no longer than the id lives."""
    now = [1_700_000_000.0]
    cache = deja.Cache(ttl=3600, clock=lambda: now[0])

    def spoken(expires_at: float) -> dict[str, Any]:
        response = chat_response(None)
        response["choices"][0]["message"]["audio"] = {
            "id": "audio_abc",
            "data": "UklGRg==",
            "transcript": "Paris.",
            "expires_at": expires_at,
        }
        return response

    asked = chat_request("Say the capital of France", modalities=["text", "audio"])
    assert cache.put(asked, spoken(now[0] + 120))
    assert cache.get(asked).info.status == "hit"
    now[0] += 121
    assert cache.get(asked).info.status == "miss"  # the id it carries is gone upstream
    assert not cache.put(asked, spoken(now[0] - 1))  # already expired: not stored


def test_a_batch_stores_audio_answers_until_their_audio_expires() -> None:
    now = [1_700_000_000.0]
    cache = deja.Cache(ttl=3600, clock=lambda: now[0])
    spoken = chat_response(None)
    spoken["choices"][0]["message"]["audio"] = {
        "id": "audio_abc",
        "data": "UklGRg==",
        "transcript": "Paris.",
        "expires_at": now[0] + 60,
    }
    asked = chat_request("Say it", modalities=["text", "audio"])
    later = {**spoken, "choices": [{**spoken["choices"][0]}]}
    later["choices"][0]["message"] = {
        **spoken["choices"][0]["message"],
        "audio": {**spoken["choices"][0]["message"]["audio"], "expires_at": 1.8e12},  # in ms
    }
    other = chat_request("Say it again", modalities=["text", "audio"])
    assert cache.put_many([(asked, spoken), (other, later), (chat_request(), chat_response())]) == 3
    now[0] += 61
    assert cache.get(asked).info.status == "miss"
    assert cache.get(other).info.status == "hit"  # a figure in ms: the cache's own TTL
    assert cache.get(chat_request()).info.status == "hit"
    now[0] += 3600
    assert cache.get(other).info.status == "miss"


def test_a_burst_that_finds_no_free_connection_does_not_skip_the_store() -> None:
    """5,000 concurrent requests on one loop waited for 50 Redis connections: the waits
    that ran out (StoreBusy) opened the breaker, and stored answers became paid calls."""
    from deja.errors import StoreBusy

    class Busy(MemoryStore):
        busy = False

        def get(self, key: str) -> bytes | None:
            if self.busy:
                raise StoreBusy("no redis connection free within 0.25 s")
            return super().get(key)

    store = Busy()
    cache = deja.Cache(store=store, breaker_threshold=2)
    cache.put(chat_request(), chat_response())
    store.busy = True
    assert [cache.get(chat_request()).info.status for _ in range(5)] == ["miss"] * 5
    store.busy = False
    assert cache.get(chat_request()).info.status == "hit"  # not bypassed
    assert cache.stats().store_errors == 5


def test_a_flapping_store_says_answering_again_once_per_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cluster with one master down: lookups in flight that succeeded closed the breaker
    as soon as failures opened it, and each close logged "answering again" (21 against 7
    failure warnings, which are one per breaker window, in an audit)."""
    cache = deja.Cache(store=FaultyStore(), breaker_threshold=1, breaker_reset=1.0)
    with caplog.at_level(logging.WARNING, logger="deja"):
        for _ in range(10):  # fail (opens), then a call that was in flight succeeds (closes)
            cache._store_failed("get", ConnectionError("node down"))
            cache._store_recovered()
    said = [r.getMessage() for r in caplog.records]
    assert sum("failed on get" in m for m in said) == 1
    assert sum("answering again" in m for m in said) == 1


def test_an_entry_whose_tag_write_failed_is_not_stored_beyond_the_tag_s_reach() -> None:
    """The entry was written, then its tag failed (a Redis filling up between the two
    commands): it stayed stored untagged, and invalidating the tag left its answer served."""

    class TagFailsOnce(deja.MemoryStore):
        failed = False

        def tag(self, tag: str, keys: Any, ttl: float | None) -> None:
            if not self.failed:
                self.failed = True
                raise ConnectionError("OOM command not allowed when used memory > 'maxmemory'")
            super().tag(tag, keys, ttl)

    cache = deja.Cache(store=TagFailsOnce())
    tagged = {"tags": ["doc:42"]}
    up = Upstream()
    assert cache.fetch(chat_request(), up, control=tagged).info.status == "miss"
    assert cache.get(chat_request()).info.status == "miss"  # not stored untagged
    assert cache.fetch(chat_request(), up, control=tagged).info.status == "miss"  # stored now
    assert cache.get(chat_request()).info.status == "hit"
    assert cache.delete_tag("doc:42") == 1
    assert cache.get(chat_request()).info.status == "miss"


def test_a_delete_tag_cut_short_is_finished_by_its_retry() -> None:
    """The store failed halfway through the deletes: the tag's records were dropped first,
    so the retry found nothing (0) and the entries not yet deleted stayed served."""

    class FailsAfter(deja.MemoryStore):
        deletes_left = 1_000

        def delete(self, key: str) -> bool:
            if self.deletes_left == 0:
                raise ConnectionError("the store went away")
            self.deletes_left -= 1
            return super().delete(key)

    store = FailsAfter()
    cache = deja.Cache(store=store)
    for n in range(6):
        cache.put(chat_request(f"doc {n}"), chat_response(), control={"tags": ["doc"]})
    store.deletes_left = 2
    with pytest.raises(StoreError):
        cache.delete_tag("doc")
    store.deletes_left = 1_000
    assert cache.delete_tag("doc") == 4
    assert all(cache.get(chat_request(f"doc {n}")).entry is None for n in range(6))
    assert cache.delete_tag("doc") == 0


async def test_entries_tagged_while_a_delete_tag_runs_are_deleted_too() -> None:
    cache = deja.AsyncCache()
    await cache.put(chat_request("before"), chat_response(), control={"tags": ["doc"]})
    store = cache.store
    real_get_many = store.aget_many

    async def get_many_then_tag(keys: Any) -> Any:  # an entry tagged between read and drop
        store.aget_many = real_get_many  # type: ignore[method-assign]
        values = await real_get_many(keys)
        await cache.put(chat_request("meanwhile"), chat_response(), control={"tags": ["doc"]})
        return values

    store.aget_many = get_many_then_tag  # type: ignore[method-assign]
    assert await cache.delete_tag("doc") == 2
    assert (await cache.get(chat_request("meanwhile"))).entry is None


def test_a_miss_asks_a_store_that_failed_to_answer_only_once() -> None:
    """The leader of a miss looks again before calling (an identical call may have just
    stored the answer), but not when the store has just failed to answer: a hung S3
    endpoint cost each miss two read timeouts (plus the write's)."""
    store = FaultyStore()
    store.fail_ops = {"get"}
    cache = deja.Cache(store=store)
    assert cache.fetch(chat_request("q"), chat_response).info.status == "miss"
    assert store.read == [cache.key(chat_request("q"))]  # (nor the invalidations' marks)
    store.fail_ops = set()
    store.read.clear()
    assert cache.fetch(chat_request("new"), chat_response).info.status == "miss"
    key = cache.key(chat_request("new"))
    assert store.read.count(key) == 2  # absent: looked at again as the leader


async def test_an_entry_stored_again_during_a_delete_tag_keeps_no_stale_answer() -> None:
    """An entry deleted by the first pass and stored again (a miss answered at once) before
    the records were dropped lost its record: it stayed served, out of the tag's reach."""
    cache = deja.AsyncCache()
    doc = chat_request("doc")
    await cache.put(doc, chat_response("v1"), control={"tags": ["doc"]})
    store = cache.store
    real_delete = store.adelete

    async def delete_then_store_again(key: str) -> bool:
        store.adelete = real_delete  # type: ignore[method-assign]
        gone = await real_delete(key)
        await cache.put(doc, chat_response("v2"), control={"tags": ["doc"]})
        return gone

    store.adelete = delete_then_store_again  # type: ignore[method-assign]
    assert await cache.delete_tag("doc") == 2
    assert (await cache.get(doc)).entry is None
