"""The metrics interface, its null default, and the Prometheus exposition."""

from __future__ import annotations

import math
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from deja.metrics import Metrics, NullMetrics, PrometheusMetrics
from deja.stores.base import StoreUsage

Labels = frozenset[tuple[str, str]]

EXPECTED_FAMILIES = {
    # family name (as parsed) → type; counters are exposed with a single ``_total``.
    "deja_cache_requests": "counter",
    "deja_cache_lookup_seconds": "histogram",
    "deja_cache_errors": "counter",
    "deja_cache_entries": "gauge",
    "deja_cache_evictions": "counter",
    "deja_cache_saved_tokens": "counter",
    "deja_cache_saved_usd": "counter",
    "deja_singleflight_coalesced": "counter",
    "deja_semantic_similarity": "histogram",
    "deja_provider_cached_tokens": "counter",
    "deja_provider_cache_saved_usd": "counter",
    "deja_provider_cache_write_premium_usd": "counter",
    "deja_upstream_seconds": "histogram",
    "deja_upstream_errors": "counter",
    "deja_cache_breaker_open": "gauge",
    "deja_cache_write_breaker_open": "gauge",
    "deja_semantic_breaker_open": "gauge",
    "deja_semantic_embedding_errors": "counter",
    "deja_semantic_errors": "counter",
    "deja_semantic_embeddings": "counter",
    "deja_semantic_embedding_seconds": "histogram",
    "deja_semantic_embedding_usd": "counter",
    "deja_semantic_feedback": "counter",
    "deja_semantic_index_saves": "counter",
    "deja_semantic_index_save_seconds": "histogram",
    "deja_semantic_index_entries": "gauge",
    "deja_provider_cache_ttl_downgrades": "counter",
    "deja_provider_context_cache": "counter",
    "deja_provider_context_cache_usd": "counter",
    "deja_fallbacks": "counter",
}

DESIGN_NAMES = {
    "deja_cache_requests_total",
    "deja_cache_lookup_seconds",
    "deja_cache_errors_total",
    "deja_cache_entries",
    "deja_cache_evictions_total",
    "deja_cache_saved_tokens_total",
    "deja_cache_saved_usd_total",
    "deja_singleflight_coalesced_total",
    "deja_semantic_similarity",
    "deja_provider_cached_tokens_total",
    "deja_provider_cache_saved_usd_total",
    "deja_provider_cache_write_premium_usd_total",
    "deja_upstream_seconds",
    "deja_upstream_errors_total",
    "deja_cache_breaker_open",
    "deja_cache_write_breaker_open",
    "deja_semantic_breaker_open",
    "deja_semantic_embedding_errors_total",
    "deja_semantic_errors_total",
    "deja_semantic_embeddings_total",
    "deja_semantic_embedding_seconds",
    "deja_semantic_embedding_usd_total",
    "deja_semantic_feedback_total",
    "deja_semantic_index_saves_total",
    "deja_semantic_index_save_seconds",
    "deja_semantic_index_entries",
    "deja_provider_cache_ttl_downgrades_total",
    "deja_provider_context_cache_total",
    "deja_provider_context_cache_usd_total",
    "deja_fallbacks_total",
}


def scrape(metrics: PrometheusMetrics) -> dict[tuple[str, Labels], float]:
    """Every sample of the rendered exposition, ``_created`` timestamps left out."""
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode("utf-8")):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def families(metrics: PrometheusMetrics) -> dict[str, str]:
    return {
        family.name: family.type
        for family in text_string_to_metric_families(metrics.render().decode("utf-8"))
        if not family.name.endswith("_created")
    }


def labels(**pairs: str) -> Labels:
    return frozenset(pairs.items())


class FakeStore:
    """The smallest StoreStats: a usage() whose numbers the test moves."""

    def __init__(self, entries: int, evictions: int | None) -> None:
        self.entries = entries
        self.evictions = evictions
        self.calls = 0

    def usage(self) -> StoreUsage:
        self.calls += 1
        return StoreUsage(entries=self.entries, bytes=None, evictions=self.evictions)


class BrokenStore:
    def usage(self) -> StoreUsage:
        raise ConnectionError("store is down")


# -- the interface -------------------------------------------------------------------------


def test_null_metrics_satisfies_the_protocol() -> None:
    null = NullMetrics()
    assert isinstance(null, Metrics)
    # Every method exists and accepts the protocol's arguments.
    null.request("exact", "hit")
    null.lookup_seconds("memory", 0.001)
    null.store_error("redis", "get")
    null.saved(10, 0.5)
    null.coalesced()
    null.breaker_state("redis", True)
    null.similarity("hit", 0.97)
    null.provider_cached_tokens("openai", "read", 100)
    null.provider_cache_saved("anthropic", 0.01)
    null.provider_cache_write_premium("anthropic", 0.003)
    null.upstream_seconds("openai", 1.5)
    null.embedding("local:all-MiniLM-L6-v2-int8:384", 0.007, 0.0)
    null.semantic_feedback("wrong")
    null.semantic_index_saved(0.4, 1000)
    null.semantic_index_save_failed()
    null.provider_cache_ttl_downgraded("bedrock", 1)
    null.context_cache("gemini", "created", 0.01)


def test_prometheus_metrics_satisfies_the_protocol() -> None:
    assert isinstance(PrometheusMetrics(), Metrics)


# -- names ---------------------------------------------------------------------------------


def test_exposed_names_are_exactly_the_designed_ones() -> None:
    metrics = PrometheusMetrics()
    metrics.watch_store("memory", FakeStore(entries=1, evictions=0))
    assert families(metrics) == EXPECTED_FAMILIES
    text = metrics.render().decode("utf-8")
    assert "_total_total" not in text
    typed = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert typed >= DESIGN_NAMES
    # Only prometheus_client's own ``*_created`` companions are left over.
    assert all(name.endswith("_created") for name in typed - DESIGN_NAMES), typed


def test_content_type_and_render() -> None:
    metrics = PrometheusMetrics()
    assert metrics.content_type.startswith("text/plain")
    assert isinstance(metrics.render(), bytes)


# -- each method ---------------------------------------------------------------------------


def test_requests_by_tier_and_result() -> None:
    metrics = PrometheusMetrics()
    metrics.request("exact", "hit")
    metrics.request("exact", "hit")
    metrics.request("semantic", "semantic_hit")
    metrics.request("exact", "bypass")
    samples = scrape(metrics)
    requests = {key: value for key, value in samples.items() if key[0].startswith("deja_cache_r")}
    assert requests == {
        ("deja_cache_requests_total", labels(tier="exact", result="hit")): 2.0,
        ("deja_cache_requests_total", labels(tier="semantic", result="semantic_hit")): 1.0,
        ("deja_cache_requests_total", labels(tier="exact", result="bypass")): 1.0,
    }


def test_lookup_seconds_histogram() -> None:
    metrics = PrometheusMetrics()
    metrics.lookup_seconds("memory", 0.000004)  # a few microseconds
    metrics.lookup_seconds("memory", 0.0003)
    metrics.lookup_seconds("redis", 2.0)
    samples = scrape(metrics)
    memory = labels(store="memory")
    bucket = "deja_cache_lookup_seconds_bucket"
    assert samples[bucket, memory | labels(le="1e-05")] == 1.0
    assert samples[bucket, memory | labels(le="0.00025")] == 1.0
    assert samples[bucket, memory | labels(le="0.0005")] == 2.0
    assert samples[bucket, memory | labels(le="+Inf")] == 2.0
    assert samples["deja_cache_lookup_seconds_count", memory] == 2.0
    assert samples["deja_cache_lookup_seconds_sum", memory] == pytest.approx(0.000304)
    redis = labels(store="redis")
    assert samples[bucket, redis | labels(le="1.0")] == 0.0
    assert samples[bucket, redis | labels(le="2.5")] == 1.0
    assert samples["deja_cache_lookup_seconds_count", redis] == 1.0


def test_store_errors_by_store_and_op() -> None:
    metrics = PrometheusMetrics()
    metrics.store_error("redis", "get")
    metrics.store_error("redis", "get")
    metrics.store_error("s3", "set")
    samples = scrape(metrics)
    assert samples["deja_cache_errors_total", labels(store="redis", op="get")] == 2.0
    assert samples["deja_cache_errors_total", labels(store="s3", op="set")] == 1.0


def test_saved_tokens_and_usd() -> None:
    metrics = PrometheusMetrics()
    metrics.saved(1500, 0.007)
    metrics.saved(500, 0.003)
    metrics.saved(0, 0.0)  # a hit on a free model saves nothing, and that is fine
    samples = scrape(metrics)
    assert samples["deja_cache_saved_tokens_total", labels()] == 2000.0
    assert samples["deja_cache_saved_usd_total", labels()] == pytest.approx(0.01)


def test_coalesced() -> None:
    metrics = PrometheusMetrics()
    assert scrape(metrics)["deja_singleflight_coalesced_total", labels()] == 0.0
    metrics.coalesced()
    metrics.coalesced()
    assert scrape(metrics)["deja_singleflight_coalesced_total", labels()] == 2.0


def test_breaker_state_gauge() -> None:
    metrics = PrometheusMetrics()
    metrics.breaker_state("redis", True)
    assert scrape(metrics)["deja_cache_breaker_open", labels(store="redis")] == 1.0
    metrics.breaker_state("redis", False)
    metrics.breaker_state("s3", True)
    samples = scrape(metrics)
    assert samples["deja_cache_breaker_open", labels(store="redis")] == 0.0
    assert samples["deja_cache_breaker_open", labels(store="s3")] == 1.0


def test_similarity_histogram_over_zero_to_one() -> None:
    metrics = PrometheusMetrics()
    metrics.similarity("hit", 0.96)
    metrics.similarity("near_miss", 0.88)
    metrics.similarity("rejected", 0.93)
    samples = scrape(metrics)
    bucket = "deja_semantic_similarity_bucket"
    hit = labels(outcome="hit")
    assert samples[bucket, hit | labels(le="0.95")] == 0.0
    assert samples[bucket, hit | labels(le="0.975")] == 1.0
    assert samples[bucket, hit | labels(le="1.0")] == 1.0
    near = labels(outcome="near_miss")
    assert samples[bucket, near | labels(le="0.875")] == 0.0
    assert samples[bucket, near | labels(le="0.9")] == 1.0
    assert samples["deja_semantic_similarity_count", labels(outcome="rejected")] == 1.0
    assert samples["deja_semantic_similarity_sum", labels(outcome="rejected")] == 0.93


def test_provider_cached_tokens_by_provider_and_kind() -> None:
    metrics = PrometheusMetrics()
    metrics.provider_cached_tokens("openai", "read", 1024)
    metrics.provider_cached_tokens("openai", "read", 512)
    metrics.provider_cached_tokens("anthropic", "write", 2048)
    samples = scrape(metrics)
    name = "deja_provider_cached_tokens_total"
    assert samples[name, labels(provider="openai", kind="read")] == 1536.0
    assert samples[name, labels(provider="anthropic", kind="write")] == 2048.0


def test_provider_cache_read_savings_and_write_premiums_are_separate_counters() -> None:
    metrics = PrometheusMetrics()
    metrics.provider_cache_saved("anthropic", 0.01)
    metrics.provider_cache_write_premium("anthropic", 0.003)
    metrics.provider_cache_write_premium("anthropic", 0.001)
    # a counter cannot go down: a negative, NaN or infinite amount changes nothing
    metrics.provider_cache_saved("anthropic", -0.5)
    metrics.provider_cache_write_premium("anthropic", -0.5)
    metrics.provider_cache_write_premium("anthropic", math.nan)
    metrics.provider_cache_saved("openai", math.inf)
    samples = scrape(metrics)
    anthropic = labels(provider="anthropic")
    assert samples["deja_provider_cache_saved_usd_total", anthropic] == pytest.approx(0.01)
    assert samples["deja_provider_cache_write_premium_usd_total", anthropic] == pytest.approx(0.004)
    assert ("deja_provider_cache_saved_usd_total", labels(provider="openai")) not in samples


def test_upstream_seconds_histogram() -> None:
    metrics = PrometheusMetrics()
    metrics.upstream_seconds("openai", 0.8)
    metrics.upstream_seconds("openai", 45.0)
    samples = scrape(metrics)
    openai = labels(provider="openai")
    bucket = "deja_upstream_seconds_bucket"
    assert samples[bucket, openai | labels(le="1.0")] == 1.0
    assert samples[bucket, openai | labels(le="30.0")] == 1.0
    assert samples[bucket, openai | labels(le="60.0")] == 2.0
    assert samples["deja_upstream_seconds_count", openai] == 2.0
    assert samples["deja_upstream_seconds_sum", openai] == pytest.approx(45.8)


def test_embedding_calls_seconds_and_cost() -> None:
    metrics = PrometheusMetrics()
    metrics.embedding("openai:text-embedding-3-small:1536", 0.04, 0.00002)
    metrics.embedding("openai:text-embedding-3-small:1536", 0.06, 0.0)  # a cached embedding
    samples = scrape(metrics)
    embedder = labels(embedder="openai:text-embedding-3-small:1536")
    assert samples["deja_semantic_embeddings_total", embedder] == 2.0
    assert samples["deja_semantic_embedding_seconds_count", embedder] == 2.0
    assert samples["deja_semantic_embedding_seconds_sum", embedder] == pytest.approx(0.1)
    assert samples["deja_semantic_embedding_usd_total", embedder] == pytest.approx(0.00002)


def test_ttl_downgrades_and_context_cache_events() -> None:
    metrics = PrometheusMetrics()
    metrics.provider_cache_ttl_downgraded("bedrock", 2)
    metrics.provider_cache_ttl_downgraded("bedrock", 0)  # nothing downgraded: no change
    metrics.context_cache("gemini", "created", 0.25)
    metrics.context_cache("gemini", "reused")
    metrics.context_cache("gemini", "reused")
    samples = scrape(metrics)
    gemini = labels(provider="gemini")
    assert samples["deja_provider_cache_ttl_downgrades_total", labels(provider="bedrock")] == 2.0
    assert samples["deja_provider_context_cache_total", gemini | labels(event="created")] == 1.0
    assert samples["deja_provider_context_cache_total", gemini | labels(event="reused")] == 2.0
    assert samples["deja_provider_context_cache_usd_total", gemini] == pytest.approx(0.25)


# -- store usage, read at scrape time ------------------------------------------------------


def test_watch_store_reads_usage_at_scrape_time() -> None:
    metrics = PrometheusMetrics()
    store = FakeStore(entries=3, evictions=1)
    metrics.watch_store("memory", store)
    assert store.calls == 0  # watching costs nothing until a scrape
    samples = scrape(metrics)
    assert samples["deja_cache_entries", labels(store="memory")] == 3.0
    assert samples["deja_cache_evictions_total", labels(store="memory")] == 1.0
    store.entries, store.evictions = 7, 4
    samples = scrape(metrics)
    assert samples["deja_cache_entries", labels(store="memory")] == 7.0
    assert samples["deja_cache_evictions_total", labels(store="memory")] == 4.0
    assert store.calls == 2


def test_a_costly_usage_is_read_at_most_once_per_its_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import deja.metrics

    now = [1000.0]
    monkeypatch.setattr(deja.metrics.time, "monotonic", lambda: now[0])
    metrics = PrometheusMetrics()
    store = FakeStore(entries=3, evictions=0)
    store.usage_interval = 300.0  # type: ignore[attr-defined]  # as S3Store says
    metrics.watch_store("s3", store)
    assert scrape(metrics)["deja_cache_entries", labels(store="s3")] == 3.0
    store.entries = 9
    now[0] += 299
    assert scrape(metrics)["deja_cache_entries", labels(store="s3")] == 3.0  # the last figure
    now[0] += 2
    assert scrape(metrics)["deja_cache_entries", labels(store="s3")] == 9.0
    assert store.calls == 2


def test_watch_several_stores() -> None:
    metrics = PrometheusMetrics()
    metrics.watch_store("memory", FakeStore(entries=10, evictions=2))
    metrics.watch_store("disk", FakeStore(entries=1000, evictions=0))
    samples = scrape(metrics)
    assert samples["deja_cache_entries", labels(store="memory")] == 10.0
    assert samples["deja_cache_entries", labels(store="disk")] == 1000.0
    assert samples["deja_cache_evictions_total", labels(store="disk")] == 0.0


def test_stores_on_one_back_end_are_counted_once(tmp_path: Any) -> None:
    """A sync and an async cache's DiskStores on one directory (or RedisStores on one
    database) showed twice the entries it holds."""
    from deja.stores.disk import DiskStore

    metrics = PrometheusMetrics()
    shared = [DiskStore(tmp_path / "one"), DiskStore(tmp_path / "one")]
    other = DiskStore(tmp_path / "two")
    for n, store in enumerate([*shared, other]):
        store.set(f"k{n}", b"v", None)
        metrics.watch_store("disk", store)
    assert shared[0].usage().entries == 2 and other.usage().entries == 1
    assert scrape(metrics)["deja_cache_entries", labels(store="disk")] == 3.0
    for store in (*shared, other):
        store.close()


def test_watch_store_ignores_stores_without_usage() -> None:
    metrics = PrometheusMetrics()
    metrics.watch_store("plain", object())
    samples = scrape(metrics)
    assert not [key for key in samples if key[0] == "deja_cache_entries"]


def test_a_failing_store_is_left_out_of_the_scrape() -> None:
    metrics = PrometheusMetrics()
    metrics.watch_store("redis", BrokenStore())
    metrics.watch_store("memory", FakeStore(entries=2, evictions=0))
    metrics.request("exact", "miss")
    samples = scrape(metrics)
    assert ("deja_cache_entries", labels(store="redis")) not in samples
    assert samples["deja_cache_entries", labels(store="memory")] == 2.0
    assert samples["deja_cache_requests_total", labels(tier="exact", result="miss")] == 1.0


# -- isolation and robustness --------------------------------------------------------------


def test_two_instances_do_not_collide() -> None:
    first = PrometheusMetrics()
    second = PrometheusMetrics()
    first.request("exact", "hit")
    first.watch_store("memory", FakeStore(entries=5, evictions=0))
    assert scrape(first)["deja_cache_requests_total", labels(tier="exact", result="hit")] == 1.0
    second_samples = scrape(second)
    assert not [key for key in second_samples if key[0] == "deja_cache_requests_total"]
    assert not [key for key in second_samples if key[0] == "deja_cache_entries"]


def test_uses_the_registry_it_is_given() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)
    assert metrics.registry is registry
    metrics.coalesced()
    assert registry.get_sample_value("deja_singleflight_coalesced_total") == 1.0


def test_bad_values_never_raise_nor_corrupt_series() -> None:
    metrics = PrometheusMetrics()
    metrics.saved(100, 0.5)
    metrics.saved(-5, math.nan)
    metrics.saved(10, math.inf)
    metrics.provider_cached_tokens("openai", "read", 0)
    metrics.provider_cached_tokens("openai", "read", -3)
    metrics.lookup_seconds("memory", "slow")  # type: ignore[arg-type]
    metrics.similarity("hit", None)  # type: ignore[arg-type]
    metrics.upstream_seconds("openai", object())  # type: ignore[arg-type]
    metrics.watch_store("weird", None)
    samples = scrape(metrics)
    assert samples["deja_cache_saved_tokens_total", labels()] == 110.0
    assert samples["deja_cache_saved_usd_total", labels()] == 0.5
    names = {name for name, _ in samples}
    # No label child was created by a call that failed.
    assert not names & {
        "deja_provider_cached_tokens_total",
        "deja_cache_lookup_seconds_count",
        "deja_semantic_similarity_count",
        "deja_upstream_seconds_count",
    }


def test_several_workers_publish_their_own_stores_figures(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In multiprocess mode a per-process store is not read at scrape time (only the
    answering worker's would be); each worker writes its figures into the shared files,
    evictions as a counter that only grows."""
    from deja.stores.memory import MemoryStore

    store = MemoryStore(max_entries=2)
    metrics = PrometheusMetrics()
    metrics.watch_store("memory", store)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert b"deja_cache_evictions" not in metrics.render()  # left to the shared files
    published: list[tuple[str, float]] = []

    class Recorder:
        def labels(self, name: str) -> Any:
            return self

        def set(self, value: float) -> None:
            published.append(("entries", value))

        def inc(self, value: float) -> None:
            published.append(("evictions+", value))

    metrics._usage._shared = (Recorder(), Recorder())
    for i in range(5):
        store.set(f"k{i}", b"v", None)
    metrics.publish_store_usage()
    metrics.publish_store_usage()  # nothing new evicted: nothing added
    store.set("k9", b"v", None)
    metrics.publish_store_usage()
    assert published == [
        ("entries", 2),
        ("evictions+", 3),
        ("entries", 2),
        ("entries", 2),
        ("evictions+", 1),
    ]


def test_a_store_that_cannot_count_evictions_exports_none() -> None:
    """The disk store reported 0 evictions however many it made: an alert on evictions
    could never fire for it. A store that cannot tell exports no series at all."""
    metrics = PrometheusMetrics()
    metrics.watch_store("disk", FakeStore(entries=3, evictions=None))
    text = metrics.render().decode()
    assert 'deja_cache_entries{store="disk"} 3.0' in text
    assert 'deja_cache_evictions_total{store="disk"}' not in text


def test_a_cache_given_prometheus_metrics_exports_its_store_s_figures() -> None:
    """Only the proxy watched its store: a library user's metrics had no entries series."""
    import deja
    from tests.helpers import chat_request, chat_response

    metrics = PrometheusMetrics()
    cache = deja.Cache(store=deja.MemoryStore(max_entries=2), metrics=metrics)
    for n in range(5):
        cache.put(chat_request(f"q{n}"), chat_response())
    text = metrics.render().decode()
    assert 'deja_cache_entries{store="memory"} 2.0' in text
    assert 'deja_cache_evictions_total{store="memory"} 3.0' in text


def test_two_caches_of_one_metrics_object_add_up_their_stores() -> None:
    """Each cache watched its store under the store's name: the second replaced the first,
    and deja_cache_entries showed one cache's entries while the requests counted both."""
    import deja
    from tests.helpers import chat_request, chat_response

    metrics = PrometheusMetrics()
    first = deja.Cache(store=deja.MemoryStore(), metrics=metrics)
    second = deja.Cache(store=deja.MemoryStore(), metrics=metrics)
    for n in range(5):
        first.put(chat_request(f"a{n}"), chat_response())
    second.put(chat_request("b"), chat_response())
    deja.Cache(store=first.store, metrics=metrics)  # the same store again: counted once
    assert 'deja_cache_entries{store="memory"} 6.0' in metrics.render().decode()


def test_redis_stores_name_their_database_as_their_usage_source() -> None:
    """Two databases of one server (the URL's path or its ?db=N) were one source: their
    entries scraped as one store's."""
    pytest.importorskip("redis")
    import redis

    from deja.stores.redis import RedisStore

    sources = [
        RedisStore(url=url).usage_source
        for url in ("redis://h:1/0", "redis://h:1/1", "redis://h:1?db=2", "redis://h:2/0")
    ]
    assert len(set(sources)) == 4
    assert RedisStore(host="h", port=1, db=3).usage_source not in sources
    assert RedisStore(url="redis://u:secret@h:1/0").usage_source == sources[0]  # (no password)
    assert RedisStore(client=redis.Redis()).usage_source is None  # its server unknown


def test_a_caches_breaker_gauges_read_closed_from_its_start() -> None:
    """They had no sample until the store first failed: an alert on them saw no data."""
    import deja

    metrics = PrometheusMetrics()
    deja.Cache(metrics=metrics)
    samples = scrape(metrics)
    assert samples[("deja_cache_breaker_open", labels(store="memory"))] == 0.0
    assert samples[("deja_cache_write_breaker_open", labels(store="memory"))] == 0.0
